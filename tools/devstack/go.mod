module github.com/bulwarkhq/bulwark/tools/devstack

go 1.26.8

replace (
	github.com/bulwarkhq/bulwark/gen/go => ../../gen/go
	github.com/bulwarkhq/bulwark/services/audit => ../../services/audit
	github.com/bulwarkhq/bulwark/services/gateway => ../../services/gateway
	github.com/bulwarkhq/bulwark/services/identity => ../../services/identity
	github.com/bulwarkhq/bulwark/services/platform => ../../services/platform
	github.com/bulwarkhq/bulwark/services/ratelimit => ../../services/ratelimit
	github.com/bulwarkhq/bulwark/services/redaction => ../../services/redaction
	github.com/bulwarkhq/bulwark/services/router => ../../services/router
	github.com/bulwarkhq/bulwark/tools/provsim => ../provsim
)
