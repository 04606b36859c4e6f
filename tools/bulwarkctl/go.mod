module github.com/bulwarkhq/bulwark/tools/bulwarkctl

go 1.26.8

replace (
	github.com/bulwarkhq/bulwark/gen/go => ../../gen/go
	github.com/bulwarkhq/bulwark/services/platform => ../../services/platform
	github.com/bulwarkhq/bulwark/services/redaction => ../../services/redaction
)

require (
	github.com/bulwarkhq/bulwark/services/redaction v0.0.0-00010101000000-000000000000
	github.com/spf13/cobra v1.10.2
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/nyaruka/phonenumbers v1.8.1 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
	golang.org/x/crypto v0.59.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.44.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
