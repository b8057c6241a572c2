#!/usr/bin/env python3
"""Generate the golden preprocessing fixtures, independently of scanside.

Run from this folder: `python3 make_golden.py` (needs numpy and Pillow).
It draws small synthetic scans (no real patient data), saves them in several
formats and pixel types, and computes the tensor scanside must produce for
each with Pillow and numpy only:

  decode (Pillow) -> 8-bit RGB -> [crop to the head] -> resize (Pillow BILINEAR)
  -> normalise (numpy)

The normalisations are written out here from their definitions:
  caffe       : BGR order, minus [103.939, 116.779, 123.68], no scaling
  torchvision : RGB / 255, minus [0.485, 0.456, 0.406], over [0.229, 0.224, 0.225]
  unit        : RGB / 255
16-bit samples are scaled to 8 bit as round(v / 257) (Pillow would clip).
Alpha is dropped.
The head crop is written out here from its definition (scanside's
`ContentCrop`): foreground = brightest channel > threshold; the largest
8-connected foreground region (ties: the one met first in raster order),
found by a plain breadth-first search (`crop_reference.py`); its bounding box grown by
floor(size * margin / 100) pixels each side, clipped to the image; the
image kept whole if that region is under 1 % of it or the image is one
pixel wide or high.

Outputs: the images, one `<name>.<norm>.f32` (little-endian float32, in the
stated layout) per case, and `golden.json` describing each case and how
exact the match must be ("exact" when no resampling or lossy decoding is
involved; else a tolerance in grey levels).
"""
import json

import numpy as np
from PIL import Image

from crop_reference import crop_to_head

SIZE = 32
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
TORCH_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
TORCH_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def phantom(w, h, seed):
    """A brain-slice-like pattern: an ellipse, a bright blob, smooth ramps."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = w / 2, h / 2
    ell = ((x - cx) / (0.42 * w)) ** 2 + ((y - cy) / (0.45 * h)) ** 2 < 1
    img = np.where(ell, 90 + 60 * np.sin(x / 5) * np.cos(y / 7), 0)
    blob = ((x - 0.6 * w) ** 2 + (y - 0.4 * h) ** 2) < (0.1 * w) ** 2
    img = np.where(blob, 230, img) + rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255)


def rgb_phantom(w, h, seed):
    g = phantom(w, h, seed)
    return np.stack([g, np.clip(g * 0.8 + 20, 0, 255), np.clip(255 - g, 0, 255)], -1)


def normalise(rgb_u8, norm):
    x = rgb_u8.astype(np.float32)
    if norm == "caffe":
        return x[..., ::-1] - CAFFE_MEAN_BGR
    if norm == "torchvision":
        return (x / np.float32(255) - TORCH_MEAN) / TORCH_STD
    return x / np.float32(255)


def reference_rgb(path):
    im = Image.open(path)
    if im.mode in ("I;16", "I;16B", "I"):
        a = np.asarray(im).astype(np.float64)
        g = np.floor(a / 257 + 0.5).astype(np.uint8)
        return np.stack([g, g, g], -1), im.size
    return np.asarray(im.convert("RGB")), im.size


cases = []


def case(name, exact, tol=0.0, layout="nhwc", norms=("caffe", "torchvision", "unit"), crop=None):
    rgb, (w, h) = reference_rgb(name)
    if crop is not None:
        rgb = np.ascontiguousarray(crop_to_head(rgb, crop["threshold"], crop["margin_percent"]))
        h, w = rgb.shape[:2]
    if (w, h) != (SIZE, SIZE):
        rgb = np.asarray(Image.fromarray(rgb).resize((SIZE, SIZE), Image.BILINEAR))
    for norm in norms:
        t = normalise(rgb, norm)
        if layout == "nchw":
            t = np.transpose(t, (2, 0, 1))
        out = f"{name}.{'crop.' if crop else ''}{norm}.{layout}.f32"
        t.astype("<f4").tofile(out)
        cases.append({"image": name, "size": SIZE, "layout": layout, "normalisation": norm,
                      "expected": out, "exact": exact, "tolerance_grey_levels": tol,
                      **({"crop": crop} if crop else {})})


# Exact: lossless formats already at the model size.
Image.fromarray(phantom(SIZE, SIZE, 1).astype(np.uint8), "L").save("grey32.png")
case("grey32.png", True)
case("grey32.png", True, layout="nchw", norms=("caffe",))
Image.fromarray(rgb_phantom(SIZE, SIZE, 2).astype(np.uint8), "RGB").save("rgb32.bmp")
case("rgb32.bmp", True)
rgba = np.dstack([rgb_phantom(SIZE, SIZE, 3), np.full((SIZE, SIZE), 128)]).astype(np.uint8)
Image.fromarray(rgba, "RGBA").save("rgba32.png")
case("rgba32.png", True)
Image.fromarray(rgb_phantom(SIZE, SIZE, 4).astype(np.uint8), "RGB").save("rgb32.tiff")
case("rgb32.tiff", True)
g16 = (phantom(SIZE, SIZE, 5) * 257 + np.random.default_rng(5).integers(0, 200, (SIZE, SIZE)))
Image.fromarray(np.clip(g16, 0, 65535).astype(np.uint16)).save("grey16_32.png")
case("grey16_32.png", True)

# Resampled: Pillow's BILINEAR and image's Triangle are the same filter but
# round differently; allow one grey level.
Image.fromarray(phantom(100, 75, 6).astype(np.uint8), "L").save("grey100x75.png")
case("grey100x75.png", False, 1.0)
Image.fromarray(rgb_phantom(45, 61, 7).astype(np.uint8), "RGB").save("rgb45x61 with spaces.png")
case("rgb45x61 with spaces.png", False, 1.0)

# Lossy decoding: libjpeg (Pillow) and zune-jpeg (image) differ slightly.
Image.fromarray(rgb_phantom(SIZE, SIZE, 8).astype(np.uint8), "RGB").save("rgb32.JPG", quality=92)
case("rgb32.JPG", False, 3.0)

# Cropped to the head (scanside's default crop), then resampled.
CROP = {"threshold": 45, "margin_percent": 2}
# Grey: an off-centre head, a one-pixel frame, a speck of burnt-in text.
scan = np.zeros((90, 120))
scan[8:68, 20:70] = phantom(50, 60, 9)
scan[0, :] = scan[-1, :] = scan[:, 0] = scan[:, -1] = 200
scan[4:7, 110:114] = 255
scan += np.random.default_rng(9).normal(0, 3, scan.shape)
Image.fromarray(np.clip(scan, 0, 255).astype(np.uint8), "L").save("offcentre120x90.png")
case("offcentre120x90.png", False, 1.0, crop=CROP)
# RGB: the head bright in the red channel only (the brightest channel
# counts); a larger blue patch below the threshold is background. A wider
# margin than the default, so that a wrong margin shows.
scan = np.zeros((131, 97, 3))
scan[20:60, 5:90, 2] = 40
scan[70:125, 30:80, 0] = phantom(50, 55, 10)
Image.fromarray(np.clip(scan, 0, 255).astype(np.uint8), "RGB").save("red head 97x131.png")
case("red head 97x131.png", False, 1.0, crop={**CROP, "margin_percent": 10})

with open("golden.json", "w") as f:
    json.dump(cases, f, indent=1)
print(f"{len(cases)} cases")
