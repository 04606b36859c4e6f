#!/usr/bin/env bash
# Static checks: proto lint and format, breaking changes against main, that
# gen/ is exactly what the protos generate, go vet on every module, and that
# every module also builds on its own (GOWORK=off), as a user vendoring one
# service would build it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
tools/scripts/tools.sh
bin/buf lint
bin/buf format --diff --exit-code
if git rev-parse --verify -q main >/dev/null && git cat-file -e main:buf.yaml 2>/dev/null; then
  bin/buf breaking --against ".git#branch=main"
else
  echo "lint: no buf.yaml on main yet; skipping the breaking-change check"
fi
tools/scripts/generate.sh
if [ -n "$(git status --porcelain -- gen/)" ]; then
  echo "lint: gen/ differs from a fresh generation; run 'make generate' and commit:" >&2
  git status --short -- gen/ >&2; exit 1
fi
go vet github.com/bulwarkhq/bulwark/...
for dir in $(go list -m -f '{{.Dir}}'); do
  (cd "$dir" && GOWORK=off go build ./...) || { echo "lint: $dir does not build with GOWORK=off" >&2; exit 1; }
done
echo "lint: ok"
