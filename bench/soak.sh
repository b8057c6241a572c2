#!/usr/bin/env bash
# Soak benchmarks (not tests: about 20 minutes for the first on this
# machine; figures in docs/reliability.md under "Soak").
#
#   bench/soak.sh [PRESSES] [PIPELINE_SCANS]     defaults: 2000 100000
#
# 1. PRESSES presses through the real `scanside-device run` loop (simulated
#    board, shipped model): before each press a team image is written to
#    the inbox (write, then rename), the press classifies it, and VmRSS of
#    the process is printed every tenth of the run.
# 2. PIPELINE_SCANS scans through read → hash → decode → preprocess →
#    audit record with inference stubbed out
#    (device/examples/soak_pipeline.rs).
# Memory must stay flat: growth after the first tenth < 5 MB.
set -euo pipefail
cd "$(dirname "$0")/.."

presses=${1:-2000}
scans=${2:-100000}
data=${SCANSIDE_SHARED:-../shared}/data/brain-mri
images=("$data/yes/Y1.jpg" "$data/yes/Y10.jpg" "$data/no/1 no.jpeg" "$data/no/no 10.jpg")

cargo build --quiet --release -p scanside-device --bins --example soak_pipeline
dir=${CARGO_TARGET_DIR:-target}/release

echo "== $presses presses through scanside-device run"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/inbox"
cat >"$work/device.toml" <<TOML
model = "$(realpath models/brain-mri-vgg16-int8.onnx)"
inbox = "$work/inbox"
audit_log = "$work/audit.log"
board = "sim"
[timing]
inbox_settle_ms = 0
result_ms = 100
TOML
mkfifo "$work/stdin"
"$dir/scanside-device" run --config "$work/device.toml" <"$work/stdin" 2>"$work/stderr" &
pid=$!
exec 3>"$work/stdin"
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status"; }
count() { grep -c "$1" "$work/stderr" || true; }
until [ "$(count "ready;")" -ge 1 ]; do sleep 0.1; done
step=$(( presses / 10 > 0 ? presses / 10 : 1 ))
start=$(date +%s)
first=""
for i in $(seq "$presses"); do
    image=${images[$(( i % ${#images[@]} ))]}
    cp "$image" "$work/inbox/.scan-$i.part"
    mv "$work/inbox/.scan-$i.part" "$work/inbox/scan-$i.${image##*.}"
    echo >&3
    until [ "$(count "^classified ")" -ge "$i" ]; do
        kill -0 "$pid" 2>/dev/null || { tail "$work/stderr"; exit 1; }
        sleep 0.05
    done
    rm -f "$work/inbox/processed/"*
    if (( i % step == 0 )); then
        now=$(rss)
        first=${first:-$now}
        echo "$i presses  $(( $(date +%s) - start )) s  RSS $now MiB  (+$(awk "BEGIN {print $now - $first}") MiB since press $step)"
    fi
done
kill -TERM "$pid"
wait "$pid"

echo "== $scans scans through decode + preprocess + audit log (inference stubbed)"
"$dir/examples/soak_pipeline" "$scans" "${images[@]}"
