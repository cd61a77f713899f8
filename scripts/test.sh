#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
