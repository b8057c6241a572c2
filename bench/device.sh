#!/usr/bin/env bash
# Device figures on this machine (not a test: they depend on the machine).
#
#   bench/device.sh [MODEL] [IMAGE] [RUNS]
#
# 1. Button → LED result latency of the appliance with its stage breakdown
#    (device/examples/press_latency.rs, in process, simulated board).
# 2. Peak RSS of the real `scanside-device run` (simulated board) after
#    start-up, and after RUNS presses that each classify a scan: VmHWM from
#    /proc/PID/status, read before SIGTERM.
# 3. What the scan archive with Grad-CAM overlays adds per scan
#    (device/examples/overlay_cost.rs: explain + overlay PNG + archive
#    write vs plain classification), on 4 team images.
# Defaults: the shipped int8 model, the first tumour image of the team
# dataset, 10 runs. SCANSIDE_PROFILE (default release) picks the build.
set -euo pipefail
cd "$(dirname "$0")/.."

model=${1:-models/brain-mri-vgg16-int8.onnx}
image=${2:-../shared/data/brain-mri/yes/Y1.jpg}
runs=${3:-10}
profile=${SCANSIDE_PROFILE:-release}

cargo build --quiet --profile "$profile" -p scanside-device --bins --example press_latency --example overlay_cost
dir=${CARGO_TARGET_DIR:-target}/$([ "$profile" = dev ] && echo debug || echo "$profile")

echo "== button → LED result ($runs presses after one warm-up, $(nproc) cores)"
"$dir/examples/press_latency" "$model" "$image" "$runs" 2>/dev/null

echo "== peak RSS of scanside-device run"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/inbox"
cat >"$work/device.toml" <<TOML
model = "$(realpath "$model")"
inbox = "$work/inbox"
audit_log = "$work/audit.log"
board = "sim"
[timing]
inbox_settle_ms = 0
TOML
mkfifo "$work/stdin"
"$dir/scanside-device" run --config "$work/device.toml" <"$work/stdin" 2>"$work/stderr" &
pid=$!
exec 3>"$work/stdin"
hwm() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status"; }
wait_for() { # COUNT PATTERN
    until [ "$(grep -c "$2" "$work/stderr" || true)" -ge "$1" ]; do
        kill -0 "$pid" 2>/dev/null || { cat "$work/stderr"; exit 1; }
        sleep 0.1
    done
}
wait_for 1 "ready;"
echo "after start-up (model verified, warm-up inference): $(hwm) MiB"
ext=${image##*.}
for i in $(seq "$runs"); do
    cp "$image" "$work/inbox/scan-$i.$ext"
    sleep 0.2
    echo >&3
    wait_for "$i" "^classified "
done
echo "after $runs classified scans: $(hwm) MiB"
kill -TERM "$pid"
wait "$pid"
echo "exit status $? after SIGTERM"

echo "== archive with Grad-CAM overlays: time added per scan ($runs runs per image after one warm-up)"
data=$(dirname "$(dirname "$image")")
"$dir/examples/overlay_cost" "$model" "$runs" "$image" "$data/yes/Y10.jpg" "$data/no/1 no.jpeg" "$data/no/no 10.jpg"
