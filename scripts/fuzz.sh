#!/usr/bin/env bash
# Run every cargo-fuzz target for a while and print what it found.
#
#   scripts/fuzz.sh [SECONDS] [TARGET…]      default: 600 s, every target
#
# Installs cargo-fuzz (crates.io) and uses the nightly toolchain (libFuzzer
# needs it). Working corpora live outside the checkout, in
# ${SCANSIDE_FUZZ_DIR:-~/.cache/scanside/fuzz}/<target>, seeded from the
# team data in place (images and DICOM files) and from small inputs made
# here; crashes are written to fuzz/artifacts/<target>/ (not committed:
# each one found becomes an ordinary test). Two targets run at a time
# (one per core), with libFuzzer's 2 GB memory limit (a larger single
# allocation counts as a finding: that is how shared/src/dicom_lengths.rs
# came about). The last lines of each run's log (libFuzzer's "Done N
# runs in S seconds") are printed at the end; docs/experiments/fuzzing.md
# records them.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
shift || true
targets=("$@")
all=(preprocess audit_log device_config model_metadata bundle)
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
work=${SCANSIDE_FUZZ_DIR:-$HOME/.cache/scanside/fuzz}
data=${SCANSIDE_SHARED:-../shared}/data

command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal

# Every corpus folder, also when running a few targets: the seeding below
# fills several of them.
for t in "${all[@]}" "${targets[@]}"; do mkdir -p "$work/$t"; done
# Seeds (copies in the working corpus outside the checkout; the data stay
# where they are).
# (awk, not head: under pipefail an early-closing pipe fails the script)
find "$data/brain-mri" -type f | sort | awk 'NR % 6 == 1' | while read -r f; do
    cp "$f" "$work/preprocess/seed-$(sha256sum "$f" | cut -c1-16)"
done
find "$data/dicom" -type f | while read -r f; do
    cp "$f" "$work/preprocess/seed-$(sha256sum "$f" | cut -c1-16)"
done
cp device/device.example.toml device/device.toml "$work/device_config/" 2>/dev/null || true
cp models/brain-mri-vgg16-int8.onnx "$work/model_metadata/seed-shipped.onnx"
printf 'model_id\0m\0threshold\0000.5\0' >"$work/model_metadata/seed-props"

cargo +nightly fuzz build --release >/dev/null
logs=$(mktemp -d)
run() { # TARGET
    # The model seed is the 15 MB shipped model: small slices of it keep
    # model_metadata at hundreds of runs a second instead of five.
    local extra=()
    [ "$1" = model_metadata ] && extra=(-max_len=16384)
    cargo +nightly fuzz run --release "$1" "$work/$1" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 "${extra[@]}" \
        >"$logs/$1.log" 2>&1 || echo "$1: FAILED (see fuzz/artifacts/$1/)" >>"$logs/failures"
}
i=0
for t in "${targets[@]}"; do
    run "$t" &
    i=$((i + 1))
    if (( i % 2 == 0 )); then wait; fi
done
wait
for t in "${targets[@]}"; do
    echo "== $t ($seconds s)"
    grep -E "^Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb|ERROR|SUMMARY" "$logs/$t.log" || tail -5 "$logs/$t.log"
    echo "corpus: $(ls "$work/$t" | wc -l) inputs"
done
if [ -f "$logs/failures" ]; then cat "$logs/failures"; exit 1; fi
