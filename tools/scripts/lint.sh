#!/usr/bin/env bash
# Static checks: proto lint and format, breaking changes (see below), that
# gen/ is exactly what the protos generate, go vet on every module, and that
# every module also builds on its own (GOWORK=off), as a user vendoring one
# service would build it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
tools/scripts/tools.sh
bin/buf lint
bin/buf format --diff --exit-code
# Breaking changes: the working tree against HEAD, and every commit that ever
# touched the protos against its parent, so no landed change broke a client.
bin/buf breaking --against ".git#ref=HEAD"
for c in $(git log --format=%H -- proto buf.yaml); do
  git rev-parse -q --verify "$c~1" >/dev/null || continue
  git cat-file -e "$c~1:buf.yaml" 2>/dev/null || continue
  bin/buf breaking ".git#ref=$c" --against ".git#ref=$c~1" || { echo "lint: commit $c breaks the API" >&2; exit 1; }
done
tools/scripts/generate.sh
if [ -n "$(git status --porcelain -- gen/)" ]; then
  echo "lint: gen/ differs from a fresh generation; run 'make generate' and commit:" >&2
  git status --short -- gen/ >&2; exit 1
fi
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "lint: gofmt would change these files; run 'gofmt -w' on them:" >&2; echo "$unformatted" >&2; exit 1
fi
go vet github.com/bulwarkhq/bulwark/...
for dir in $(go list -m -f '{{.Dir}}'); do
  (cd "$dir" && GOWORK=off go build ./...) || { echo "lint: $dir does not build with GOWORK=off" >&2; exit 1; }
done
echo "lint: ok"
