#!/usr/bin/env bash
# Scan → probability latency, batch 1: tract f32, tract int8 and (when the
# onnxruntime wheel is importable) ONNX Runtime on the same model files and
# image, each in its own process so peak RSS is its own. Prints a Markdown
# table. Not a test: figures depend on the machine.
#
#   bench/latency.sh [F32_MODEL] [INT8_MODEL] [IMAGE] [RUNS]
#
# Defaults: runs/latest/model.onnx, runs/latest/model-int8.onnx, the first
# tumour image of the team dataset, 10 runs. THREADS (default: all cores)
# sets the inference threads of both engines. PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

f32=${1:-runs/latest/model.onnx}
int8=${2:-runs/latest/model-int8.onnx}
image=${3:-../shared/data/brain-mri/yes/Y1.jpg}
runs=${4:-10}
threads=${THREADS:-$(nproc)}
python=${PYTHON:-python3}
profile=${SCANSIDE_PROFILE:-release}

cargo build --quiet --profile "$profile" -p scanside --example latency
dir=${CARGO_TARGET_DIR:-target}/$([ "$profile" = dev ] && echo debug || echo "$profile")
bin=$dir/examples/latency

rows=()
for model in "$f32" "$int8"; do
    rows+=("$("$bin" "$model" "$image" "$runs" "$threads")")
done
if "$python" -c 'import onnxruntime' 2>/dev/null; then
    for model in "$f32" "$int8"; do
        rows+=("$("$python" bench/ort_latency.py "$model" "$image" "$runs" "$threads")")
    done
else
    echo "(onnxruntime not importable by $python: ONNX Runtime rows skipped)" >&2
fi

echo "image: $image; $runs runs after one warm-up; $threads inference threads; $(nproc) cores"
echo
echo "| engine | model | load ms | decode ms | preprocess ms | inference ms (median) | total ms | peak RSS MiB | p(tumour) |"
echo "|---|---|---|---|---|---|---|---|---|"
for row in "${rows[@]}"; do
    "$python" - "$row" <<'PY'
import json, os, sys
r = json.loads(sys.argv[1])
print(f"| {r['engine']} | {os.path.basename(r['model'])} | {r['load_ms']:.0f} | {r['decode_ms']:.1f} | "
      f"{r['preprocess_ms']:.1f} | {r['inference_ms']:.0f} | {r['total_ms']:.0f} | {r['peak_rss_mib']:.0f} | {r['probability']:.4f} |")
PY
done
