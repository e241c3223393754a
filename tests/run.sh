#!/usr/bin/env bash
# The project's test command (see README): the documentation's links and anchors (offline; skipped
# with a notice when node is not installed, unless CI=1), Rust unit and integration tests,
# including the real-database template proofs (skipped with a notice when a server is not
# installed, unless VHI_REQUIRE_DB_TESTS=1), then the Helm chart tests with the real Helm engine.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  bash tests/docs/run.sh
elif [ -n "${CI:-}" ] && [ "${CI}" != 0 ] && [ "${CI}" != false ]; then
  echo "tests/run.sh: node and npm are needed to check the documentation's links (CI is set, so this fails); install Node.js 18 or later" >&2
  exit 2
else
  echo "tests/run.sh: SKIPPED the documentation link check: node or npm is not installed (install Node.js 18 or later to run it)"
fi
cargo test --all-targets --locked --no-fail-fast
if [ -f tests/chart/run.sh ]; then
  bash tests/chart/run.sh
fi
