//! DICOM files: read one MR image object and turn its stored values into the
//! 8-bit picture the model was trained on.
//!
//! The model learnt from JPEG/PNG slices, i.e. pictures a viewer had already
//! windowed to 8 bits. A DICOM file holds the scanner's stored values, so
//! this module reproduces that display step, in this order:
//!
//! 1. **Read** the object with `dicom-object`; decode the pixel data of one
//!    frame with `dicom-pixeldata` (the transfer syntaxes it can decode:
//!    [`supported_transfer_syntaxes`]). The middle frame, `⌊n/2⌋` counting
//!    from 0, unless [`FrameChoice::Index`] says otherwise.
//! 2. **Refuse** what the model is not for, before decoding: a Modality other
//!    than `MR`, no Pixel Data, a transfer syntax this build cannot decode,
//!    pixel data shorter than its header says (a truncated file), an image
//!    beyond the [`DecodeLimits`], and what this version cannot window
//!    faithfully: enhanced objects (per-frame functional groups) and
//!    uncompressed `YBR_FULL_422`.
//! 3. **Rescale** (grey images): `v = stored × RescaleSlope + RescaleIntercept`
//!    (1 and 0 when absent).
//! 4. **Window** to 0–255 with the file's first Window Center/Width value and
//!    its VOI LUT Function (`LINEAR`, the default; `LINEAR_EXACT`; `SIGMOID`),
//!    as DICOM PS3.3 C.11.2.1.2 defines them ([`Voi`]). Without a window:
//!    images stored in at most 8 bits are taken as they are (they already
//!    are display values, e.g. a secondary capture of a JPEG); deeper images
//!    are stretched between the 0.5th and 99.5th percentiles of their values
//!    (a min–max that a few hot pixels cannot spoil).
//! 5. **Round** half away from zero and clamp to 0–255; **invert** for
//!    `MONOCHROME1` (where low values are white).
//! 6. Colour images (`RGB`, `YBR_FULL`, and JPEG-compressed `YBR_FULL_422`)
//!    are converted to 8-bit RGB and not windowed.
//!
//! The result is an ordinary [`image::DynamicImage`], so the rest of
//! [`crate::preprocess`] treats a DICOM slice exactly as a JPEG.
//!
//! Nothing from the file that identifies a patient leaves this module:
//! [`DicomSlice`] carries SHA-256 hashes of the Study and SOP Instance UIDs,
//! never names, IDs or dates.

use std::io::Cursor;
use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{
    ConvertOptions, DecodedPixelData, ModalityLutOption, PhotometricInterpretation, PixelDecoder,
    PlanarConfiguration, VoiLutOption,
};
use image::{DynamicImage, GrayImage, RgbImage};

use crate::limits::DecodeLimits;
use crate::{Error, Result};

/// Which frame of a multi-frame object to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FrameChoice {
    /// Frame `⌊n/2⌋` of `n` (counting from 0): frame 0 of a single-frame
    /// object.
    #[default]
    Middle,
    /// This frame, counting from 0.
    Index(u32),
}

/// A VOI LUT function of DICOM PS3.3 C.11.2.1.2 with its window, mapping
/// rescaled values to 0–255.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Voi {
    /// `LINEAR` (the default when the file names none).
    Linear {
        /// Window Center.
        center: f64,
        /// Window Width (at least 1).
        width: f64,
    },
    /// `LINEAR_EXACT`.
    LinearExact {
        /// Window Center.
        center: f64,
        /// Window Width (above 0).
        width: f64,
    },
    /// `SIGMOID`.
    Sigmoid {
        /// Window Center.
        center: f64,
        /// Window Width (above 0).
        width: f64,
    },
    /// No window in the file; stretch between these values (the 0.5th and
    /// 99.5th percentiles).
    Stretch {
        /// Maps to 0.
        low: f64,
        /// Maps to 255.
        high: f64,
    },
    /// No window and at most 8 stored bits: values are display values.
    Identity,
}

impl Voi {
    /// The output value in 0–255 (not rounded) for a rescaled value `x`.
    pub fn apply(&self, x: f64) -> f64 {
        const Y_MAX: f64 = 255.0;
        let y = match *self {
            Voi::Linear { center, width } => {
                let (c, w) = (center - 0.5, width - 1.0);
                if x <= c - w / 2.0 {
                    0.0
                } else if x > c + w / 2.0 {
                    Y_MAX
                } else {
                    ((x - c) / w + 0.5) * Y_MAX
                }
            }
            Voi::LinearExact { center, width } => {
                if x <= center - width / 2.0 {
                    0.0
                } else if x > center + width / 2.0 {
                    Y_MAX
                } else {
                    ((x - center) / width + 0.5) * Y_MAX
                }
            }
            Voi::Sigmoid { center, width } => Y_MAX / (1.0 + (-4.0 * (x - center) / width).exp()),
            Voi::Stretch { low, high } if high > low => (x - low) / (high - low) * Y_MAX,
            Voi::Stretch { .. } => 0.0,
            Voi::Identity => x,
        };
        y.clamp(0.0, Y_MAX)
    }
}

/// A DICOM slice ready for the preprocessing path, and what was done to it.
#[derive(Clone, Debug)]
pub struct DicomSlice {
    /// The 8-bit picture (grey or RGB).
    pub image: DynamicImage,
    /// Transfer syntax UID of the file.
    pub transfer_syntax: String,
    /// Frames in the object, and the one used (counting from 0).
    pub frames: (u32, u32),
    /// How grey values were brought to 8 bits (`None` for colour images).
    pub voi: Option<Voi>,
    /// SHA-256 of the Study Instance UID, when present.
    pub study_uid_sha256: Option<[u8; 32]>,
    /// SHA-256 of the SOP Instance UID, when present.
    pub sop_instance_uid_sha256: Option<[u8; 32]>,
}

/// True when `bytes` start with a DICOM file preamble (`DICM` at offset 128).
pub fn has_dicom_preamble(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM")
}

/// True when the file name ends in `.dcm` or `.dicom` (any case).
pub fn has_dicom_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("dcm") || e.eq_ignore_ascii_case("dicom"))
}

/// The transfer syntaxes whose pixel data this build decodes, as
/// `(uid, name)`, sorted by UID.
pub fn supported_transfer_syntaxes() -> Vec<(String, String)> {
    use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
    let mut list: Vec<(String, String)> = TransferSyntaxRegistry
        .iter()
        .filter(|ts| ts.can_decode_all())
        .map(|ts| (ts.uid().to_string(), ts.name().to_string()))
        .collect();
    list.sort();
    list
}

/// Read a DICOM image object from memory and window it to 8 bits (see the
/// module docs). `origin` names the file in errors.
pub fn decode_dicom(
    bytes: &[u8],
    origin: &Path,
    limits: &DecodeLimits,
    frame: FrameChoice,
) -> Result<DicomSlice> {
    let decode_err = |reason: String| Error::Decode {
        path: origin.to_path_buf(),
        reason,
    };
    let refused = |reason: String| Error::Refused {
        path: origin.to_path_buf(),
        reason,
    };
    if !has_dicom_preamble(bytes) {
        return Err(decode_err(
            "not a DICOM file (no \"DICM\" marker after the 128-byte preamble)".into(),
        ));
    }
    crate::dicom_lengths::check_declared_lengths(bytes).map_err(decode_err)?;
    let obj = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always)
        .from_reader(Cursor::new(bytes))
        .map_err(|e| decode_err(format!("malformed DICOM: {}", first_line(&e))))?;

    let text = |tag| -> Option<String> {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).trim().to_string())
    };
    match text(tags::MODALITY).as_deref() {
        Some("MR") => {}
        Some(other) if !other.is_empty() => {
            return Err(refused(format!(
                "modality is {other}; scanside reads MR images only"
            )));
        }
        _ => {
            return Err(refused(
                "no Modality attribute; scanside reads MR images only".into(),
            ));
        }
    }
    let ts_uid = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_string();
    check_transfer_syntax(&ts_uid).map_err(refused)?;
    let Some(pixel_data) = obj.element_opt(tags::PIXEL_DATA).ok().flatten() else {
        return Err(refused("no Pixel Data: not an image".into()));
    };
    let has = |tag| obj.element_opt(tag).ok().flatten().is_some();
    if has(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)
        || has(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
    {
        return Err(refused(
            "an enhanced (functional-group) object: its window and rescale are \
             per frame, which this version does not read"
                .into(),
        ));
    }
    let header = ImageHeader::read(&obj).map_err(decode_err)?;
    header
        .check_limits(limits)
        .map_err(|reason| Error::TooLarge {
            path: origin.to_path_buf(),
            reason,
        })?;
    // Native (uncompressed) pixel data must be as long as the header says;
    // shorter means the file was cut off.
    if let Ok(raw) = pixel_data.to_bytes() {
        if header.photometric == "YBR_FULL_422" {
            return Err(refused(
                "uncompressed YBR_FULL_422 (chroma subsampled) is not supported".into(),
            ));
        }
        let expected = header.frame_bytes() * u64::from(header.frames);
        if (raw.len() as u64) < expected {
            return Err(decode_err(format!(
                "truncated: pixel data has {} bytes, the header needs {expected}",
                raw.len()
            )));
        }
    }
    let index = match frame {
        FrameChoice::Middle => header.frames / 2,
        FrameChoice::Index(i) if i < header.frames => i,
        FrameChoice::Index(i) => {
            return Err(decode_err(format!(
                "frame {i} asked for, the object has {} (counting from 0)",
                header.frames
            )));
        }
    };
    // dicom-rs's decoders can panic on malformed compressed data (fuzzing
    // found an RLE segment that decodes short: an index past its end in
    // dicom-transfer-syntax-registry 0.10.1). A bad file must be an error
    // naming it, not the end of the process; `obj` is only read, so nothing
    // is left half-changed by an unwind.
    let pixels = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        obj.decode_pixel_data_frame(index)
    }))
    .map_err(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        decode_err(format!("pixel data: the DICOM decoder failed ({why})"))
    })?
    .map_err(|e| decode_err(format!("pixel data: {}", first_line(&e))))?;

    let (image, voi) = if header.samples_per_pixel == 1 {
        let (image, voi) = window_grey(&obj, &pixels, &header).map_err(decode_err)?;
        (DynamicImage::ImageLuma8(image), Some(voi))
    } else {
        (
            DynamicImage::ImageRgb8(colour_rgb(&pixels).map_err(decode_err)?),
            None,
        )
    };
    Ok(DicomSlice {
        image,
        transfer_syntax: ts_uid,
        frames: (header.frames, index),
        voi,
        study_uid_sha256: text(tags::STUDY_INSTANCE_UID).map(|u| crate::sha256(u.as_bytes())),
        sop_instance_uid_sha256: text(tags::SOP_INSTANCE_UID).map(|u| crate::sha256(u.as_bytes())),
    })
}

/// The first line of an error's message (dicom-rs errors can carry
/// backtraces in their `Display`).
fn first_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// Whether the registry can decode this transfer syntax's pixel data.
fn check_transfer_syntax(uid: &str) -> std::result::Result<(), String> {
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
    match TransferSyntaxRegistry.get(uid) {
        None => Err(format!("unknown transfer syntax {uid}")),
        Some(ts) if !ts.can_decode_all() => Err(format!(
            "transfer syntax {} ({uid}) is not supported by this build",
            ts.name()
        )),
        Some(_) => Ok(()),
    }
}

/// The image attributes of group 0028 this module needs.
#[derive(Debug)]
struct ImageHeader {
    rows: u32,
    columns: u32,
    samples_per_pixel: u16,
    bits_allocated: u16,
    bits_stored: u16,
    frames: u32,
    photometric: String,
}

impl ImageHeader {
    fn read(obj: &DefaultDicomObject) -> std::result::Result<Self, String> {
        let int = |tag, name: &str| -> std::result::Result<u32, String> {
            obj.element_opt(tag)
                .ok()
                .flatten()
                .ok_or_else(|| format!("missing {name}"))?
                .to_int::<u32>()
                .map_err(|e| format!("bad {name}: {e}"))
        };
        let optional_int = |tag, default: u32| -> u32 {
            obj.element_opt(tag)
                .ok()
                .flatten()
                .and_then(|e| e.to_int::<u32>().ok())
                .unwrap_or(default)
        };
        let photometric = obj
            .element_opt(tags::PHOTOMETRIC_INTERPRETATION)
            .ok()
            .flatten()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default();
        let small = |value: u32, name: &str| {
            u16::try_from(value).map_err(|_| format!("bad {name}: {value}"))
        };
        let bits_allocated = int(tags::BITS_ALLOCATED, "Bits Allocated")?;
        let header = ImageHeader {
            rows: int(tags::ROWS, "Rows")?,
            columns: int(tags::COLUMNS, "Columns")?,
            samples_per_pixel: small(
                optional_int(tags::SAMPLES_PER_PIXEL, 1),
                "Samples per Pixel",
            )?,
            bits_allocated: small(bits_allocated, "Bits Allocated")?,
            bits_stored: small(
                optional_int(tags::BITS_STORED, bits_allocated),
                "Bits Stored",
            )?,
            frames: optional_int(tags::NUMBER_OF_FRAMES, 1).max(1),
            photometric,
        };
        if header.rows == 0 || header.columns == 0 {
            return Err(format!(
                "empty image ({} × {})",
                header.columns, header.rows
            ));
        }
        if !matches!(header.samples_per_pixel, 1 | 3) {
            return Err(format!(
                "{} samples per pixel (1 or 3 expected)",
                header.samples_per_pixel
            ));
        }
        if !matches!(header.bits_allocated, 8 | 16 | 32) {
            return Err(format!(
                "{} bits allocated (8, 16 or 32 expected)",
                header.bits_allocated
            ));
        }
        Ok(header)
    }

    /// Bytes of one native frame.
    fn frame_bytes(&self) -> u64 {
        u64::from(self.rows)
            * u64::from(self.columns)
            * u64::from(self.samples_per_pixel)
            * u64::from(self.bits_allocated / 8)
    }

    /// Refuse images beyond the decode limits before decoding anything.
    fn check_limits(&self, limits: &DecodeLimits) -> std::result::Result<(), String> {
        let side = self.rows.max(self.columns);
        // Checked first: with both sides bounded the products below cannot
        // overflow. Memory: the decoded frames, plus per pixel of the frame
        // used its stored and rescaled f64 values, a sorted copy for the
        // percentiles and the 8-bit result (25 bytes).
        let needed = (side <= limits.max_side).then(|| {
            self.frame_bytes().saturating_mul(u64::from(self.frames))
                + u64::from(self.rows) * u64::from(self.columns) * 25
        });
        if needed.is_none_or(|n| n > limits.max_alloc_bytes) {
            return Err(format!(
                "{} × {} px, {} frame(s) (limit: {} px a side, {} MiB)",
                self.columns,
                self.rows,
                self.frames,
                limits.max_side,
                limits.max_alloc_bytes >> 20
            ));
        }
        Ok(())
    }
}

/// Rescale, window, round and (for MONOCHROME1) invert one grey frame.
fn window_grey(
    obj: &DefaultDicomObject,
    pixels: &DecodedPixelData<'_>,
    header: &ImageHeader,
) -> std::result::Result<(GrayImage, Voi), String> {
    let first = |tag| -> Option<f64> {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_multi_float64().ok())
            .and_then(|v| v.first().copied())
            .filter(|v| v.is_finite())
    };
    let slope = first(tags::RESCALE_SLOPE).unwrap_or(1.0);
    let intercept = first(tags::RESCALE_INTERCEPT).unwrap_or(0.0);
    // Stored values (sign and bits stored honoured), no LUT applied.
    let options = ConvertOptions::new()
        .with_modality_lut(ModalityLutOption::None)
        .with_voi_lut(VoiLutOption::Identity);
    let stored: Vec<f64> = pixels
        .to_vec_frame_with_options(0, &options)
        .map_err(|e| format!("pixel values: {}", first_line(&e)))?;
    let values: Vec<f64> = stored.iter().map(|v| v * slope + intercept).collect();

    let function = obj
        .element_opt(tags::VOILUT_FUNCTION)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).trim().to_ascii_uppercase());
    let window = first(tags::WINDOW_CENTER).zip(first(tags::WINDOW_WIDTH));
    let voi = match (window, function.as_deref()) {
        (Some((center, width)), Some("LINEAR_EXACT")) if width > 0.0 => {
            Voi::LinearExact { center, width }
        }
        (Some((center, width)), Some("SIGMOID")) if width > 0.0 => Voi::Sigmoid { center, width },
        (Some((center, width)), _) if width >= 1.0 => Voi::Linear { center, width },
        _ if header.bits_stored <= 8 => Voi::Identity,
        _ => {
            let (low, high) = percentiles(&values, 0.005, 0.995);
            Voi::Stretch { low, high }
        }
    };
    let n = (header.rows * header.columns) as usize;
    if values.len() < n {
        return Err(format!(
            "frame has {} values, {} × {} expected",
            values.len(),
            header.columns,
            header.rows
        ));
    }
    let invert = header.photometric == "MONOCHROME1";
    let grey: Vec<u8> = values[..n]
        .iter()
        .map(|&x| {
            let y = voi.apply(x).round() as u8;
            if invert { 255 - y } else { y }
        })
        .collect();
    let image = GrayImage::from_raw(header.columns, header.rows, grey)
        .ok_or_else(|| "pixel buffer does not match the image size".to_string())?;
    Ok((image, voi))
}

/// An 8-bit colour frame as RGB: planes interleaved, YBR_FULL(_422)
/// converted with the ITU-R BT.601 full-range matrix (as pydicom does).
/// Encapsulated colour (JPEG and the like) arrives already as RGB.
fn colour_rgb(pixels: &DecodedPixelData<'_>) -> std::result::Result<RgbImage, String> {
    if pixels.bits_allocated() != 8 {
        return Err(format!(
            "{}-bit colour is not supported (8-bit expected)",
            pixels.bits_allocated()
        ));
    }
    let (w, h) = (pixels.columns(), pixels.rows());
    let n = w as usize * h as usize;
    let data = pixels
        .frame_data(0)
        .map_err(|e| format!("pixel data: {}", first_line(&e)))?;
    if data.len() < 3 * n {
        return Err(format!(
            "colour frame has {} bytes, {} expected",
            data.len(),
            3 * n
        ));
    }
    let mut rgb: Vec<u8> = match pixels.planar_configuration() {
        PlanarConfiguration::Standard => data[..3 * n].to_vec(),
        PlanarConfiguration::PixelFirst => (0..n)
            .flat_map(|i| [data[i], data[n + i], data[2 * n + i]])
            .collect(),
    };
    match pixels.photometric_interpretation() {
        PhotometricInterpretation::Rgb => {}
        PhotometricInterpretation::YbrFull | PhotometricInterpretation::YbrFull422 => {
            for p in rgb.chunks_exact_mut(3) {
                let (y, cb, cr) = (
                    f32::from(p[0]),
                    f32::from(p[1]) - 128.0,
                    f32::from(p[2]) - 128.0,
                );
                let to_u8 = |v: f32| (v + 0.5).floor().clamp(0.0, 255.0) as u8;
                p[0] = to_u8(y + 1.402 * cr);
                p[1] = to_u8(y - 0.114 * 1.772 / 0.587 * cb - 0.299 * 1.402 / 0.587 * cr);
                p[2] = to_u8(y + 1.772 * cb);
            }
        }
        other => {
            return Err(format!(
                "photometric interpretation {other:?} is not supported"
            ));
        }
    }
    RgbImage::from_raw(w, h, rgb).ok_or_else(|| "pixel buffer does not match the image size".into())
}

/// The values at fractions `lo` and `hi` of the sorted data (nearest rank:
/// index `round(p × (n − 1))`).
fn percentiles(values: &[f64], lo: f64, hi: f64) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |p: f64| sorted[(p * (sorted.len() - 1) as f64).round() as usize];
    (at(lo), at(hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_window_follows_the_standard() {
        // PS3.3 C.11.2.1.2.1: with c = 128, w = 256 the window is the identity
        // on 0..=255.
        let voi = Voi::Linear {
            center: 128.0,
            width: 256.0,
        };
        for x in [0.0, 1.0, 100.0, 254.0, 255.0] {
            assert!((voi.apply(x) - x).abs() < 1e-9, "{x}");
        }
        assert_eq!(voi.apply(-5.0), 0.0);
        assert_eq!(voi.apply(300.0), 255.0);
    }

    #[test]
    fn linear_exact_and_sigmoid_are_centred() {
        let exact = Voi::LinearExact {
            center: 50.0,
            width: 100.0,
        };
        assert_eq!(exact.apply(50.0), 127.5);
        assert_eq!(exact.apply(0.0), 0.0);
        assert_eq!(exact.apply(100.0), 255.0);
        let sigmoid = Voi::Sigmoid {
            center: 50.0,
            width: 100.0,
        };
        assert_eq!(sigmoid.apply(50.0), 127.5);
        // Half a width below the centre: 255 / (1 + e²).
        let low = 255.0 / (1.0 + 2f64.exp());
        assert!((sigmoid.apply(0.0) - low).abs() < 1e-9);
        assert!((sigmoid.apply(100.0) - (255.0 - low)).abs() < 1e-9);
    }

    #[test]
    fn stretch_of_a_flat_image_is_black() {
        assert_eq!(
            Voi::Stretch {
                low: 7.0,
                high: 7.0
            }
            .apply(7.0),
            0.0
        );
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (0..=200).map(f64::from).collect();
        assert_eq!(percentiles(&v, 0.005, 0.995), (1.0, 199.0));
    }

    #[test]
    fn not_dicom_is_a_decode_error_naming_the_file() {
        let e = decode_dicom(
            b"hello",
            Path::new("a b.dcm"),
            &DecodeLimits::default(),
            FrameChoice::Middle,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("a b.dcm: ") && msg.contains("DICM"),
            "{msg}"
        );
    }
}
