module github.com/bulwarkhq/bulwark/services/redaction

go 1.26.8

replace (
	github.com/bulwarkhq/bulwark/gen/go => ../../gen/go
	github.com/bulwarkhq/bulwark/services/platform => ../platform
)

require (
	github.com/nyaruka/phonenumbers v1.8.1 // indirect
	golang.org/x/crypto v0.59.0 // indirect
	golang.org/x/text v0.44.0 // indirect
	google.golang.org/protobuf v1.36.11 // indirect
)
