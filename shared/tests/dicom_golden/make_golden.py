#!/usr/bin/env python3
"""Generate the DICOM golden fixtures, independently of scanside.

Run from this folder: `python3 make_golden.py` (needs numpy, pydicom 3 and,
for the JPEG-LS and JPEG 2000 samples, pylibjpeg with pylibjpeg-libjpeg and
pylibjpeg-openjpeg). It does two things:

1. Writes small synthetic DICOM objects (no patient data) that exercise what
   the team's samples do not: MONOCHROME1, rescale slope/intercept, several
   window values, LINEAR_EXACT and SIGMOID, multi-frame, no window (8-bit and
   16-bit), RGB and YBR_FULL colour, no pixel data, a transfer syntax no decoder
   handles (MPEG-2), an enhanced MR object (functional groups, not read
   yet), a non-MR modality.
2. For every fixture and every MR sample in ../shared/data/dicom, decodes the
   pixel data with pydicom and computes the 8-bit picture scanside must make,
   with numpy, from the rules written out below (DICOM PS3.3 C.11.2.1.2):

   frame   : the middle one, n // 2
   rescale : v = stored * RescaleSlope + RescaleIntercept (1 and 0 if absent)
   window  : first WindowCenter/WindowWidth value, VOILUTFunction
             LINEAR (default) | LINEAR_EXACT | SIGMOID, output 0..255;
             no window: BitsStored <= 8 -> identity, else stretch between the
             0.5th and 99.5th percentiles (nearest rank, round(p * (n - 1)))
   round   : floor(y + 0.5), clip to 0..255; MONOCHROME1: 255 - y
   colour  : RGB as stored; YBR_FULL -> RGB as pydicom's pixel_array converts it

The expected pictures go into golden.json as SHA-256 of the row-major bytes
(grey: one byte a pixel; colour: R, G, B), with size, mean and the window
used, so a mismatch says how far off it is.
"""
import hashlib
import json
import pathlib

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

HERE = pathlib.Path(__file__).resolve().parent
TEAM = HERE.parents[3] / "shared" / "data" / "dicom"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RNG = np.random.default_rng(20261127)


def base(modality="MR", sop_class=MR_STORAGE):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[modality, str(RNG.random())])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["study", str(RNG.random())])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["series", str(RNG.random())])
    ds.Modality = modality
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = "SYNTH-0001"
    ds.PatientBirthDate = "19700101"
    return ds


def phantom(w, h, low, high, seed):
    """An ellipse 'head' with a brighter blob, values in [low, high]."""
    y, x = np.mgrid[0:h, 0:w]
    head = ((x - w / 2) / (w * 0.4)) ** 2 + ((y - h / 2) / (h * 0.45)) ** 2 <= 1
    blob = ((x - w * (0.35 + 0.1 * seed)) ** 2 + (y - h * 0.4) ** 2) <= (min(w, h) * 0.12) ** 2
    img = np.full((h, w), float(low))
    img[head] = low + (high - low) * 0.45
    img[blob & head] = low + (high - low) * 0.9
    img += RNG.normal(0, (high - low) * 0.03, img.shape)
    img[0, 0] = high  # a hot pixel the robust stretch must ignore
    return np.clip(img, low, high)


def set_grey(ds, frames, bits_stored, signed=False):
    arr = np.asarray(frames)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = arr.shape[-2:]
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    dtype = {(8, False): np.uint8, (16, False): np.uint16, (16, True): np.int16}[
        (ds.BitsAllocated, signed)
    ]
    if arr.ndim == 3:
        ds.NumberOfFrames = arr.shape[0]
    ds.PixelData = np.round(arr).astype(dtype).tobytes()


def fixtures():
    out = {}

    ds = base()
    set_grey(ds, phantom(40, 30, 0, 3000, 0), 12)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.RescaleSlope, ds.RescaleIntercept = 2, -100
    ds.WindowCenter, ds.WindowWidth = 2500, 5000
    out["mono1_rescale.dcm"] = ds

    ds = base()
    set_grey(ds, phantom(33, 47, -500, 1500, 1), 16, signed=True)
    ds.WindowCenter, ds.WindowWidth = [400, 40], [1200, 80]  # first value wins
    ds.VOILUTFunction = "LINEAR_EXACT"
    out["signed_two_windows_exact.dcm"] = ds

    ds = base()
    set_grey(ds, phantom(32, 32, 0, 1000, 2), 10)
    ds.WindowCenter, ds.WindowWidth = 500, 600
    ds.VOILUTFunction = "SIGMOID"
    out["sigmoid.dcm"] = ds

    ds = base()
    set_grey(ds, [phantom(24, 20, 0, 4000, s) * (1 + 0.5 * s) / 2 for s in range(3)], 12)
    out["multiframe_no_window.dcm"] = ds

    ds = base(sop_class="1.2.840.10008.5.1.4.1.1.7")
    set_grey(ds, phantom(36, 28, 10, 240, 0), 8)
    out["secondary_capture_8bit.dcm"] = ds

    for name, photometric in [("rgb.dcm", "RGB"), ("ybr_full.dcm", "YBR_FULL")]:
        ds = base()
        grey = phantom(20, 16, 0, 255, 0)
        rgb = np.stack([grey, grey * 0.8, 255 - grey], axis=-1).round().astype(np.uint8)
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
        ds.Rows, ds.Columns = rgb.shape[:2]
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PhotometricInterpretation = photometric
        if photometric == "YBR_FULL":
            rgb = convert_color_space(rgb, "RGB", "YBR_FULL")
        ds.PixelData = rgb.tobytes()
        out[name] = ds

    ds = base()
    out["no_pixel_data.dcm"] = ds

    ds = base()
    set_grey(ds, phantom(16, 16, 0, 255, 0), 8)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2: not decodable
    ds.PixelData = encapsulate([bytes(ds.PixelData)])
    ds["PixelData"].VR = "OB"
    out["unsupported_syntax.dcm"] = ds

    ds = base(sop_class="1.2.840.10008.5.1.4.1.1.4.1")  # Enhanced MR
    set_grey(ds, [phantom(16, 16, 0, 1000, s) for s in range(2)], 12)
    item = Dataset()
    voi = Dataset()
    voi.WindowCenter, voi.WindowWidth = 500, 1000
    item.FrameVOILUTSequence = [voi]
    ds.SharedFunctionalGroupsSequence = [item]
    out["enhanced_mr.dcm"] = ds

    ds = base(modality="CT")
    set_grey(ds, phantom(16, 16, 0, 2000, 0), 12)
    out["ct_as_secondary_capture.dcm"] = ds
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    return out


def first(value):
    if value is None:
        return None
    if isinstance(value, pydicom.multival.MultiValue):
        return float(value[0])
    return float(value)


def expected(ds):
    """The 8-bit picture and a description of the window used."""
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        arr = arr[frames // 2]
    if ds.SamplesPerPixel == 3:
        # pydicom 3's pixel_array already converts YBR_FULL to RGB.
        return arr.astype(np.uint8), "colour"
    x = arr.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1) + float(
        ds.get("RescaleIntercept", 0) or 0
    )
    c, w = first(ds.get("WindowCenter")), first(ds.get("WindowWidth"))
    function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper()
    if c is not None and w is not None and function == "LINEAR_EXACT" and w > 0:
        y = np.where(
            x <= c - w / 2, 0.0, np.where(x > c + w / 2, 255.0, ((x - c) / w + 0.5) * 255.0)
        )
        how = f"linear_exact {c} {w}"
    elif c is not None and w is not None and function == "SIGMOID" and w > 0:
        y = 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
        how = f"sigmoid {c} {w}"
    elif c is not None and w is not None and w >= 1:
        cc, ww = c - 0.5, w - 1.0
        y = np.where(
            x <= cc - ww / 2, 0.0, np.where(x > cc + ww / 2, 255.0, ((x - cc) / ww + 0.5) * 255.0)
        )
        how = f"linear {c} {w}"
    elif ds.BitsStored <= 8:
        y = x
        how = "identity"
    else:
        s = np.sort(x.ravel())
        lo = s[int(np.floor(0.005 * (s.size - 1) + 0.5))]
        hi = s[int(np.floor(0.995 * (s.size - 1) + 0.5))]
        y = (x - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(x)
        how = f"stretch {lo} {hi}"
    y8 = np.floor(np.clip(y, 0.0, 255.0) + 0.5).astype(np.uint8)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        y8 = 255 - y8
    return y8, how


def main():
    cases = []
    for name, ds in fixtures().items():
        ds.save_as(HERE / name, enforce_file_format=True)
    for path in sorted(HERE.glob("*.dcm")) + sorted(TEAM.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        where = "team" if path.parent == TEAM else "fixture"
        case = {"file": path.name, "where": where}
        refusal = None
        if ds.get("Modality") != "MR":
            refusal = "modality"
        elif "PixelData" not in ds:
            refusal = "no pixel data"
        elif ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.100":
            refusal = "transfer syntax"
        elif "SharedFunctionalGroupsSequence" in ds or "PerFrameFunctionalGroupsSequence" in ds:
            refusal = "enhanced"
        else:
            try:
                img, how = expected(ds)
            except ValueError:
                refusal = "truncated"
        if refusal:
            case["refused"] = refusal
        else:
            case.update(
                width=int(img.shape[1]),
                height=int(img.shape[0]),
                channels=1 if img.ndim == 2 else 3,
                mean=float(img.mean()),
                window=how,
                sha256=hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest(),
            )
        cases.append(case)
        print(case)
    (HERE / "golden.json").write_text(json.dumps(cases, indent=1) + "\n")


if __name__ == "__main__":
    main()
