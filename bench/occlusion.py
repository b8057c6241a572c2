#!/usr/bin/env python3
"""Occlusion probe: how a model's decision on normal slices reacts to one
local defect (a patch set to the ImageNet mean, i.e. 0 after caffe
normalisation, on a 7 x 7 grid of 32-pixel patches) - a stand-in for a
signal void or a one-sided artefact. Prints, per model, the share of
(slice, patch) pairs whose decision flips from "no tumour" to "tumour
suspected" at the model's own threshold, and the mean change of the
tumour log-odds. Not a test; research evidence about a model.

  python3 bench/occlusion.py MODEL.onnx [MODEL.onnx ...] [--data DIR] [--n 12]

Preprocessing follows each model's `scanside.preprocessing` metadata
(NHWC caffe only), including the head crop, which is re-implemented from
its definition in shared/tests/golden/make_golden.py. Needs onnxruntime,
numpy, Pillow.
"""
import argparse
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "shared", "tests", "golden"))
from crop_reference import crop_to_head  # noqa: E402

MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
GRID = 7


def tensor(path, spec):
    rgb = np.asarray(Image.open(path).convert("RGB"))
    crop = spec.get("crop")
    if crop:
        rgb = np.ascontiguousarray(crop_to_head(rgb, crop["threshold"], crop["margin_percent"]))
    size = spec["size"]
    x = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR), np.float32)
    return (x[..., ::-1] - MEAN_BGR)[None]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data", default="../shared/data/brain-mri")
    ap.add_argument("--n", type=int, default=12, help="normal slices (every k-th, sorted)")
    a = ap.parse_args()
    files = sorted(os.listdir(os.path.join(a.data, "no")))
    files = files[:: max(1, len(files) // a.n)][: a.n]
    for model in a.models:
        s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        meta = s.get_modelmeta().custom_metadata_map
        spec = json.loads(meta["scanside.preprocessing"])
        if spec["layout"] != "nhwc" or spec["normalisation"] != "caffe_bgr_mean":
            sys.exit(f"{model}: NHWC caffe models only")
        t = float(meta["scanside.threshold"])
        pos = json.loads(meta["scanside.labels"]).index(meta["scanside.positive_class"])
        name = s.get_inputs()[0].name

        def log_odds(x):
            p = s.run(None, {name: x})[0][0].astype(np.float64)
            return np.log(max(p[pos], 1e-30)) - np.log(max(p[1 - pos], 1e-30)), p[pos]

        flips, pairs, shifts, base_pos = 0, 0, [], 0
        for f in files:
            x = tensor(os.path.join(a.data, "no", f), spec)
            lo, p = log_odds(x)
            if p >= t:
                base_pos += 1
                continue
            step = spec["size"] // GRID
            for i in range(GRID):
                for j in range(GRID):
                    y = x.copy()
                    y[0, i * step:(i + 1) * step, j * step:(j + 1) * step, :] = 0
                    lo2, p2 = log_odds(y)
                    flips += p2 >= t
                    pairs += 1
                    shifts.append(lo2 - lo)
        shifts = np.array(shifts)
        print(f"{os.path.basename(model)} (threshold {t:.4f}, crop {bool(spec.get('crop'))}): "
              f"{len(files)} normal slices, {base_pos} already above the threshold; "
              f"one occluded patch flips {flips}/{pairs} = {100 * flips / max(pairs, 1):.1f} % "
              f"to tumour; tumour log-odds change mean {shifts.mean():+.2f}, "
              f"median {np.median(shifts):+.2f}, 95th percentile {np.percentile(shifts, 95):+.2f}")


if __name__ == "__main__":
    main()
