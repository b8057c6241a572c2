#!/usr/bin/env python3
"""Independent check of the backbone pins in host/src/backbone.rs.

Computes, with the `onnx` Python package, the weights SHA-256 that
`scanside import-backbone` pins: over the initializers the notop cut keeps
(those feeding nodes up to `functional_1/block5_pool_1/MaxPool2d:0`), sorted
by name, each hashed as name bytes, a zero byte, dims (i64 LE), data type
(i32 LE) and the little-endian data. Usage: backbone_fingerprint.py MODEL.onnx
"""
import hashlib
import struct
import sys

import onnx
from onnx import numpy_helper

CUT = "functional_1/block5_pool_1/MaxPool2d:0"

model = onnx.load(sys.argv[1])
g = model.graph
producer = {o: n for n in g.node for o in n.output}
needed, stack, keep = set(), [CUT], set()
while stack:
    t = stack.pop()
    if t in needed:
        continue
    needed.add(t)
    if t in producer:
        n = producer[t]
        keep.add(n.name)
        stack.extend(i for i in n.input if i)
h = hashlib.sha256()
for init in sorted((i for i in g.initializer if i.name in needed), key=lambda i: i.name.encode()):
    arr = numpy_helper.to_array(init)
    h.update(init.name.encode() + b"\0")
    h.update(struct.pack("<%dq" % len(init.dims), *init.dims))
    h.update(struct.pack("<i", init.data_type))
    h.update(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
print(h.hexdigest())
