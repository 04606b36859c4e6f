#!/usr/bin/env bash
# Runs every test of every module in go.work with -race against the real
# servers (see deps.sh and vault.sh), including the generated TypeScript and
# Python clients, which are driven from Go tests in tools/devstack.
# Prints a summary; under CI (CI=true) a skipped test fails the run, because a
# skip would hide an integration that did not really run.
# Extra arguments go to `go test` (e.g. -run, -short).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
tools/scripts/deps.sh
tools/scripts/tools.sh
tools/scripts/vault.sh
export BULWARK_VAULT_BIN="$root/bin/vault"
mkdir -p .data
json=.data/test.json
status=0
bin/gotestsum --format pkgname-and-test-fails --jsonfile "$json" -- \
  -race -count=1 -timeout 25m "$@" github.com/bulwarkhq/bulwark/... || status=$?

count() { grep -E "\"Action\":\"$1\"" "$json" | grep -c '"Test":' || true; }
passed=$(count pass); failed=$(count fail); skipped=$(count skip)
echo "go test: $passed passed, $failed failed, $skipped skipped"
if [ "$skipped" -gt 0 ]; then
  echo "skipped tests:"; grep -E '"Action":"skip"' "$json" | grep '"Test":' | sed -E 's/.*"Package":"([^"]*)".*"Test":"([^"]*)".*/  \1 \2/'
  if [ "${CI:-}" = "true" ]; then echo "CI: skipped tests are not allowed (every integration must really run)"; status=1; fi
fi
exit $status
