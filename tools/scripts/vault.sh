#!/usr/bin/env bash
# Builds a real Vault server binary into bin/vault from the Go module pinned in
# tools/vault (no registry ships one). The first build takes 15-25 minutes on
# two cores; the result is reused while its inputs are unchanged, and the Go
# build cache makes a rebuild after a clean checkout fast.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
key=$( (cat tools/vault/go.mod tools/vault/go.sum tools/vault/main.go; go version) | sha256sum | cut -c1-16)
if [ -x bin/vault ] && [ "$(cat bin/.vault-key 2>/dev/null)" = "$key" ]; then
  echo "vault: bin/vault is up to date"; exit 0
fi
mkdir -p bin
echo "vault: building bin/vault (slow the first time on a machine)"
GOWORK=off go -C tools/vault build -trimpath -ldflags "-s -w" -o "$root/bin/vault" .
echo "$key" > bin/.vault-key
bin/vault version
