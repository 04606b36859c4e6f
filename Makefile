# Bulwark's everyday commands. Each target is a thin wrapper over a script in
# tools/scripts, so CI and people run exactly the same steps.
.PHONY: help run run-split demo bench test lint generate build tools vault deps clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

run: ## run the all-in-one Bulwark on :8080 with embedded defaults
	go run ./tools/bulwark

run-split: deps vault ## run every service as its own process (dev stack)
	go run ./tools/devstack

demo: ## scripted tour against a running `make run`
	go run ./tools/bulwark demo

bench: deps vault ## added latency of the all-in-one and split mode vs the provider simulator (tools/bench)
	go run ./tools/bench --target allinone --rate 100 --duration 20s
	go run ./tools/bench --target split --rate 100 --duration 20s

test: ## run every test of every module with -race against real Redis, NATS and Vault
	tools/scripts/test.sh

lint: ## buf lint/format/breaking, generated-code check, go vet, GOWORK=off builds
	tools/scripts/lint.sh

generate: tools ## regenerate gen/ from proto/
	tools/scripts/generate.sh

build: ## build every module, then every binary into bin/
	go build github.com/bulwarkhq/bulwark/...
	go build -o bin/ ./services/*/cmd/* ./tools/bulwark ./tools/bulwarkctl ./tools/provsim/cmd/provsim

tools: ## build pinned tools into bin/ and install the TypeScript generator
	tools/scripts/tools.sh

vault: ## build a real Vault server into bin/vault (slow the first time)
	tools/scripts/vault.sh

deps: ## start Redis and NATS (JetStream) locally when they are not running
	tools/scripts/deps.sh

clean: ## remove build outputs and local data
	rm -rf bin .data gen/ts/dist
