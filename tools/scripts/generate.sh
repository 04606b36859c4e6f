#!/usr/bin/env bash
# Regenerates gen/ from proto/ with local plugins only. The generated folders
# are removed first (buf's clean option would also delete the hand-written
# gen/go/go.mod and gen/ts/package.json).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
for need in /usr/bin/protoc /usr/bin/grpc_python_plugin; do
  [ -x "$need" ] || { echo "generate: $need is missing: apt-get install protobuf-compiler protobuf-compiler-grpc" >&2; exit 1; }
done
rm -rf gen/go/bulwark gen/ts/src/gen gen/python/bulwark
PATH="$root/bin:$PATH" bin/buf generate
