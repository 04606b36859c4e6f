#!/usr/bin/env bash
# Builds the pinned tools of tools/go.mod (buf, the Go protoc plugins,
# grpc-health-probe, gotestsum) into bin/, and installs the TypeScript
# generator and client dependencies with npm ci.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
mkdir -p bin
GOWORK=off go -C tools build -o "$root/bin/" \
  github.com/bufbuild/buf/cmd/buf \
  google.golang.org/protobuf/cmd/protoc-gen-go \
  connectrpc.com/connect/cmd/protoc-gen-connect-go \
  github.com/grpc-ecosystem/grpc-health-probe \
  gotest.tools/gotestsum
if [ ! -d gen/ts/node_modules ] || [ gen/ts/package-lock.json -nt gen/ts/node_modules/.package-lock.json ]; then
  (cd gen/ts && npm ci --no-audit --no-fund --loglevel=error)
fi
