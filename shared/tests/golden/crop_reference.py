"""scanside's head crop written out from its definition, independently of
the Rust code (`ContentCrop` in shared/src/preprocess.rs): used by
make_golden.py for the golden tensors and by bench/occlusion.py."""
from collections import deque

import numpy as np


def crop_to_head(rgb, threshold, margin_percent):
    h, w = rgb.shape[:2]
    if w < 2 or h < 2:
        return rgb
    mask = rgb.max(axis=2) > threshold
    seen = np.zeros_like(mask)
    best = None  # (area, x0, y0, x1, y1)
    for y0 in range(h):
        for x0 in range(w):
            if not mask[y0, x0] or seen[y0, x0]:
                continue
            seen[y0, x0] = True
            queue, area = deque([(y0, x0)]), 0
            box = [x0, y0, x0, y0]
            while queue:
                y, x = queue.popleft()
                area += 1
                box = [min(box[0], x), min(box[1], y), max(box[2], x), max(box[3], y)]
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        v, u = y + dy, x + dx
                        if 0 <= v < h and 0 <= u < w and mask[v, u] and not seen[v, u]:
                            seen[v, u] = True
                            queue.append((v, u))
            if best is None or area > best[0]:
                best = (area, *box)
    if best is None or best[0] * 100 < w * h:
        return rgb
    _, x0, y0, x1, y1 = best
    mx = (x1 - x0 + 1) * margin_percent // 100
    my = (y1 - y0 + 1) * margin_percent // 100
    left, top = max(x0 - mx, 0), max(y0 - my, 0)
    right, bottom = min(x1 + mx, w - 1), min(y1 + my, h - 1)
    return rgb[top:bottom + 1, left:right + 1]
