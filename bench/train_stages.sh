#!/usr/bin/env bash
# Benchmark of `scanside train`: each stage's wall time and peak RSS, cold
# (empty feature cache) and warm (everything cached), on one dataset.
#
#   bench/train_stages.sh [DATA] [-- extra train flags]
#
# Prints the stage tables from the two reports and the whole-run figures
# from GNU time. Not a test: the figures depend on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/brain-mri}
shift || true
[ "${1:-}" = "--" ] && shift
PROFILE=${SCANSIDE_PROFILE:-release}
cargo build --quiet --profile "$PROFILE" -p scanside --bin scanside
BIN=${CARGO_TARGET_DIR:-target}/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/scanside
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }

for run in cold warm; do
  /usr/bin/time -f "%e s wall, %M KiB peak RSS" -o "$WORK/$run.time" \
    "$BIN" train --data "$DATA" --out "$WORK/out" --cache "$WORK/cache" --quiet "$@" >/dev/null
  echo "## $run run: $(cat "$WORK/$run.time")"
  sed -n '/^| stage/,/^$/p' "$WORK/out/report.md"
  echo
done
