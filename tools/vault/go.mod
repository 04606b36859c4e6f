module github.com/bulwarkhq/bulwark/tools/vault

go 1.26.8

require github.com/hashicorp/vault v1.19.5

replace (
	github.com/99designs/keyring => github.com/Jeffail/keyring v1.2.3
	github.com/hashicorp/vault/api => github.com/hashicorp/vault/api v1.16.0
	github.com/hashicorp/vault/sdk => github.com/hashicorp/vault/sdk v0.17.0
	github.com/ma314smith/signedxml v1.1.1 => github.com/moov-io/signedxml v1.1.1
)
