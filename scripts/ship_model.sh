#!/usr/bin/env bash
# Regenerate the shipped model: train with the default recipe on the team
# dataset, copy the int8 model to models/, record its SHA-256 in the model
# card, the device configs and the device test that pin it, and the
# decisions on four reference scans in models/expected.jsonl
# (read in place from the dataset; nothing from it is copied).
#
#   scripts/ship_model.sh [DATA [TRAIN FLAGS…]]   # default ../shared/data/brain-mri
#
# The model is scored on the external validation set too (validation only,
# never trained on; $SCANSIDE_SHIP_VALIDATE, default ../shared/data/external,
# skipped if absent), so its figures are in runs/shipped/validation.json and
# the model's metadata.
#
# Then update the figures in models/README.md from runs/shipped/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."

data=${1:-../shared/data/brain-mri}
shift || true
validate=${SCANSIDE_SHIP_VALIDATE:-../shared/data/external}
flags=("$@")
[ -d "$validate" ] && flags+=(--validate "$validate")
profile=${SCANSIDE_PROFILE:-release}
cargo build --quiet --profile "$profile" -p scanside --bin scanside
dir=${CARGO_TARGET_DIR:-target}/$([ "$profile" = dev ] && echo debug || echo "$profile")
scanside=$dir/scanside

"$scanside" train --data "$data" --out runs/shipped "${flags[@]}"
model=models/brain-mri-vgg16-int8.onnx
old_sha=$(sha256sum "$model" | cut -d' ' -f1)
cp runs/shipped/model-int8.onnx "$model"
sha=$(sha256sum "$model" | cut -d' ' -f1)
# The device configs pin the shipped model, and a device test checks the pin.
for f in device/device.toml device/device.example.toml device/tests/run_binary.rs; do
    sed -i "s/$old_sha/$sha/" "$f"
done
sed -i "s/^\(- SHA-256 of the model file: \`\)[0-9a-f]*\`/\1$sha\`/" models/README.md
grep -q "$sha" models/README.md || { echo "models/README.md has no SHA-256 line to update" >&2; exit 1; }

# Reference decisions: two scans of each class, paths relative to DATA.
: > models/expected.jsonl
for f in "yes/Y1.jpg" "yes/Y10.jpg" "no/1 no.jpeg" "no/10 no.jpg"; do
    "$scanside" classify --model "$model" --json "$data/$f" \
        | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(json.dumps({"file": sys.argv[1], "label": r["label"], "probability": r["probability"]}))' "$f" \
        >> models/expected.jsonl
done
echo "shipped $model ($sha); card and models/expected.jsonl updated"
