#!/usr/bin/env bash
# The project's test command (see README): Rust unit and integration tests, including the
# real-database template proofs (skipped with a notice when a server is not installed, unless
# VHI_REQUIRE_DB_TESTS=1), then the Helm chart tests with the real Helm engine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets --locked
if [ -f tests/chart/run.sh ]; then
  bash tests/chart/run.sh
fi
