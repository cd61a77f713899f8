#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests.
# Installs promtool (Debian's `prometheus` package) if missing: tests/metrics.rs checks the
# /metrics output with it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing promtool (Debian package prometheus)…"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  else
    echo "promtool not found: install Debian's 'prometheus' package (tests/metrics.rs needs it)" >&2
  fi
fi
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
