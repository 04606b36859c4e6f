module github.com/bulwarkhq/bulwark/services/redaction

go 1.26.8

replace (
	github.com/bulwarkhq/bulwark/gen/go => ../../gen/go
	github.com/bulwarkhq/bulwark/services/platform => ../platform
)
