#!/usr/bin/env bash
# Prove the ARM device builds give x86's answers, under qemu-user.
#
#   scripts/arm_check.sh [TARGET…]     # default: aarch64-unknown-linux-gnu
#
# For each target (aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf):
#  1. cross-build `scanside-device` (release, features rpi,cdev: the binary
#     the .deb ships);
#  2. run `scanside-device classify --json` under qemu on one tumour and one
#     no-tumour scan of the team set, and one DICOM MR sample in JPEG-LS
#     (decoded by CharLS, C++), with the shipped int8 model, and compare
#     with the native x86-64 build on the same files: decisions must be
#     equal and probabilities within 1e-5; says whether they are bit-identical;
#  3. run the device state-machine tests (the crate's unit tests and
#     device/tests/panel.rs) for the target under qemu (cargo's runner from
#     .cargo/config.toml).
# Prints the time each step took. Needs scripts/setup.sh's cross tools.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64-unknown-linux-gnu)
data=${SCANSIDE_SHARED:-../shared}/data/brain-mri
scans=("$data/yes/Y1.jpg" "$data/no/1 no.jpeg" "$data/../dicom/MR_small_jpeg_ls_lossless.dcm")
model=models/brain-mri-vgg16-int8.onnx
target_dir=${CARGO_TARGET_DIR:-target}
features=(--features rpi,cdev)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf '\n== %s\n' "$*"; SECONDS=0; }
took() { echo "   ($SECONDS s)"; }

step "x86-64 reference (native release build)"
cargo build --quiet --release -p scanside-device "${features[@]}"
"$target_dir/release/scanside-device" classify --json --model "$model" "${scans[@]}" >"$work/x86_64.jsonl"
cat "$work/x86_64.jsonl"
took

for target in "${targets[@]}"; do
  case "$target" in
    aarch64-unknown-linux-gnu) qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu) ;;
    armv7-unknown-linux-gnueabihf) qemu=(qemu-arm -L /usr/arm-linux-gnueabihf) ;;
    *) echo "arm_check.sh: unknown target $target" >&2; exit 2 ;;
  esac
  step "$target: cross build (release)"
  cargo build --quiet --release -p scanside-device "${features[@]}" --target "$target"
  bin=$target_dir/$target/release/scanside-device
  file "$bin" | sed 's/^/   /'
  took

  step "$target: classify under ${qemu[0]}"
  "${qemu[@]}" "$bin" classify --json --model "$model" "${scans[@]}" >"$work/$target.jsonl"
  cat "$work/$target.jsonl"
  took
  python3 - "$work/x86_64.jsonl" "$work/$target.jsonl" "$target" "${#scans[@]}" <<'PY'
import json, struct, sys
ref = [json.loads(l) for l in open(sys.argv[1])]
arm = [json.loads(l) for l in open(sys.argv[2])]
target = sys.argv[3]
assert len(ref) == len(arm) == int(sys.argv[4]), (ref, arm)
f32 = lambda x: struct.unpack("<f", struct.pack("<f", x))[0]
identical = True
for r, a in zip(ref, arm):
    assert r["file"] == a["file"], (r, a)
    assert r["label"] == a["label"], f"{target}: {a['file']}: decision {a['label']} != x86 {r['label']}"
    d = abs(r["probability"] - a["probability"])
    assert d <= 1e-5, f"{target}: {a['file']}: |Δp| = {d:.3g} > 1e-5"
    identical &= f32(r["probability"]) == f32(a["probability"])
    print(f"   {a['file']}: {a['label']}, p = {a['probability']:.9g} (x86 {r['probability']:.9g}, |Δp| = {d:.3g})")
print(f"   {target}: decisions equal, probabilities within 1e-5; bit-identical: {'yes' if identical else 'no'}")
PY

  step "$target: device state-machine tests under ${qemu[0]}"
  cargo test --quiet --release -p scanside-device "${features[@]}" --target "$target" --lib --test panel
  took
done
