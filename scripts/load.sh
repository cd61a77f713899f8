#!/usr/bin/env bash
# The load suite (load-tests/README.md): builds the harness in release and runs every scenario
# against loopback mocks; prints one table with pushd's throughput as a ratio of a raw HTTP/2
# client. Under 10 minutes on 2 cores. Extra arguments go to pushd-load, e.g. `--smoke`,
# `fanout`, `--store memory`, `--memory-devices 250000`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin pushd-load
if [ "$#" -eq 0 ]; then
  set -- all
fi
exec ./target/release/pushd-load "$@"
