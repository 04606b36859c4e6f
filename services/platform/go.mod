module github.com/bulwarkhq/bulwark/services/platform

go 1.26.8

replace (
	github.com/bulwarkhq/bulwark/gen/go => ../../gen/go
)
