#!/usr/bin/env bash
# Bounded coverage-guided fuzzing with cargo fuzz (libFuzzer + AddressSanitizer) of
#   review: admission::review over arbitrary request bodies
#   render: render::parse_documents + render::render over arbitrary manifests
# Usage: scripts/fuzz.sh SECONDS            (each target fuzzes SECONDS; CI uses 30)
#        scripts/fuzz.sh SECONDS review     (one target)
# A crash stops the script with a non-zero status; the input is in fuzz/artifacts/TARGET/ and
# belongs in tests/reliability_fuzz.rs as a regression test.
#
# The machine has one stable toolchain. cargo fuzz passes nightly-only -Z flags (sanitizer,
# coverage instrumentation) to rustc; RUSTC_BOOTSTRAP=1 makes the stable compiler accept them.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then TARGETS=(review render); fi

FUZZ=${CARGO_FUZZ:-target/tools/bin/cargo-fuzz}
if [ ! -x "$FUZZ" ]; then
  echo "== installing cargo-fuzz into target/tools"
  cargo install cargo-fuzz --locked --root target/tools
fi
export RUSTC_BOOTSTRAP=1

# Seeds: the captured AdmissionReviews and database variants of them; example manifests.
mkdir -p fuzz/corpus/review fuzz/corpus/render
# (one cp per source, so a seed named like a fixture cannot make cp refuse)
cp tests/fixtures/*.json fuzz/corpus/review/
cp fuzz/seeds/review/* fuzz/corpus/review/
cp examples/*.yaml fuzz/corpus/render/
cp fuzz/seeds/render/* fuzz/corpus/render/

echo "== building fuzz targets (release, ASan)"
"$FUZZ" build -O
mkdir -p target/fuzz-logs
for t in "${TARGETS[@]}"; do
  echo "== fuzzing $t for ${SECS}s"
  log="target/fuzz-logs/$t.log"
  status=0
  "$FUZZ" run -O "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$SECS" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E "^#[0-9]+ +DONE|^stat::number_of_executed_units|^stat::peak_rss_mb|ERROR|SUMMARY|panicked|Test unit written|^Done" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log"
    echo "FUZZ FAILURE in $t (exit $status); inputs in fuzz/artifacts/$t/, log in $log"
    exit 1
  fi
done
echo "fuzzing passed: ${TARGETS[*]} for ${SECS}s each"
