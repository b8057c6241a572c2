#!/usr/bin/env python3
"""Decision agreement of static int8 models with f32, per range method.

    PYTHON bench/static_ranges.py runs/static-ranges

Reads what `cargo run --release -p scanside --example static_ranges` wrote
(the int8 models, the preprocessed tensors of every image, meta.json), runs
the f32 model and each int8 model in ONNX Runtime on exactly those tensors,
and prints a Markdown table: decision agreement with f32 at the model's
threshold, max |Δp|, and accuracy of each against the folder labels. The
probabilities go to OUT/ort_probabilities.json, and the 30 images whose f32
probability is nearest the threshold (in logit space) to OUT/nearest.txt:
the images to check in tract, where a full run per method takes an hour.
ONNX Runtime is not a stand-in for tract here: on AVX2 CPUs without VNNI
its u8 x s8 kernels saturate, so its static results drift much further
from f32 than tract's (see docs/int8.md, "The static scheme's range
method").
Needs numpy and onnxruntime. A benchmark, not a test.
"""
import json
import pathlib
import sys

import numpy as np
import onnxruntime as ort


def probabilities(model, inputs, name, positive):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    out = [session.run(None, {name: x[None]})[0][0][positive] for x in inputs]
    return np.array(out, dtype=np.float64)


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs/static-ranges")
    meta = json.loads((out / "meta.json").read_text())
    shape = meta["input_shape"][1:]
    inputs = np.fromfile(out / "inputs.f32", dtype="<f4").reshape([-1, *shape])
    labels = np.array(meta["labels"])
    assert len(inputs) == len(labels), (len(inputs), len(labels))
    t = meta["threshold"]
    name, positive = meta["input_name"], meta["positive_index"]
    ref = probabilities(meta["f32_model"], inputs, name, positive)
    dump = {"files": meta["files"], "f32": ref.tolist()}
    accuracy = lambda p: float(np.mean((p >= t) == (labels == 1)))
    print(f"{len(labels)} images; threshold {t:.4f}; "
          f"calibration on {meta['calibration_images']} images; ONNX Runtime {ort.__version__}")
    print()
    print("| range method | decision agreement | max \\|Δp\\| | accuracy (f32 " f"{accuracy(ref):.1%}) |")
    print("|---|---|---|---|")
    for method in meta["methods"]:
        p = probabilities(out / f"static-{method}.onnx", inputs, name, positive)
        dump[method] = p.tolist()
        agree = float(np.mean((p >= t) == (ref >= t)))
        print(f"| {method} | {agree:.1%} ({int(round(agree * len(p)))}/{len(p)}) "
              f"| {np.max(np.abs(p - ref)):.4f} | {accuracy(p):.1%} |")
    (out / "ort_probabilities.json").write_text(json.dumps(dump))
    logit = lambda p: np.log(np.clip(p, 1e-9, 1) / np.clip(1 - p, 1e-9, 1))
    nearest = np.argsort(np.abs(logit(ref) - logit(np.float64(t))), kind="stable")[:30]
    (out / "nearest.txt").write_text("".join(meta["files"][i] + "\n" for i in nearest))


if __name__ == "__main__":
    main()
