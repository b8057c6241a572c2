#!/usr/bin/env python3
"""Scan -> probability latency of one scanside model in ONNX Runtime, batch 1.

Usage: ort_latency.py MODEL IMAGE [RUNS] [THREADS]

The reference point for tract's figures (bench/latency.sh): same model file,
same image, same batch size, one JSON line with the same keys as the tract
`latency` example. Preprocessing follows the model's manifest (Pillow
bilinear resize, Keras caffe normalisation); only the inference time is
strictly comparable with tract's. Needs `pip install onnxruntime pillow numpy`.
"""
import json
import os
import resource
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    model, image = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else os.cpu_count()

    t = time.perf_counter()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t) * 1e3
    meta = session.get_modelmeta().custom_metadata_map
    spec = json.loads(meta["scanside.preprocessing"])
    if spec["normalisation"] != "caffe_bgr_mean" or spec["layout"] != "nhwc":
        sys.exit(f"ort_latency.py handles NHWC caffe models only, not {spec}")
    if spec.get("crop"):
        # Timing only: the head crop (connected components) is not
        # replicated here, so the tensor differs from scanside's a little;
        # the inference column is what compares with tract.
        print("ort_latency.py: preprocessing without the model's head crop", file=sys.stderr)
    size = spec["size"]
    labels = json.loads(meta["scanside.labels"])
    positive = labels.index(meta["scanside.positive_class"])
    name = session.get_inputs()[0].name

    stages = {k: [] for k in ("decode_ms", "preprocess_ms", "inference_ms", "total_ms")}
    probability = None
    for run in range(runs + 1):
        start = time.perf_counter()
        img = Image.open(image)
        img.load()
        img = img.convert("RGB")
        decode_ms = (time.perf_counter() - start) * 1e3
        t = time.perf_counter()
        x = np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.float32)
        x = (x[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32))[None]
        preprocess_ms = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        probability = float(session.run(None, {name: np.ascontiguousarray(x)})[0][0][positive])
        inference_ms = (time.perf_counter() - t) * 1e3
        if run > 0:
            for k, v in zip(stages, (decode_ms, preprocess_ms, inference_ms,
                                     (time.perf_counter() - start) * 1e3)):
                stages[k].append(v)
    out = {
        "engine": f"onnxruntime {ort.__version__}",
        "model": model,
        "model_id": meta.get("scanside.model_id"),
        "image": image,
        "runs": runs,
        "threads": threads,
        "load_ms": load_ms,
        **{k: float(np.median(v)) for k, v in stages.items()},
        "probability": probability,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
