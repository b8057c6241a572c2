//! The one preprocessing path: decode → RGB → resize → normalise → tensor.
//!
//! Host (training, evaluation) and device (classification) both call
//! [`preprocess_file`] or [`preprocess_bytes`], so a scan becomes the same
//! tensor, bit for bit, on either side. The steps are public one by one
//! because the host trainer inserts augmentation between cropping/resizing
//! and normalising ([`load_rgb`] → [`resize_rgb`] → augment → [`tensor_from_rgb`]).
//!
//! The choices, in order:
//!
//! 1. **Decode** by content, not by file extension (a PNG named `.jpg` is read
//!    as PNG). JPEG, PNG, BMP and TIFF; grey, grey+alpha, RGB, RGBA, 8 and
//!    16 bit. DICOM files (the `DICM` marker, or a `.dcm` name) are read by
//!    [`crate::dicom`], which windows MR values to an 8-bit picture and
//!    refuses other modalities. Decoding is bounded by [`DecodeLimits`]: an image that would need
//!    more pixels or memory is refused before it is decoded.
//! 2. **To RGB, 8 bit**: grey is copied to all three channels; alpha is
//!    dropped (as Pillow's `convert("RGB")` does); 16-bit samples are scaled
//!    to 8 bit over the full range (`round(v / 257)`), unlike Pillow, which
//!    clips 16-bit grey at 255.
//! 3. **Crop** (optional, [`ContentCrop`]) to the head's bounding box, so
//!    black margins and frames of varying size do not change the scale.
//! 4. **Resize** to the model's square input, ignoring aspect ratio (as Keras
//!    `flow_from_directory(target_size=…)` does), with the filter named in the
//!    spec ([`ResizeFilter::Triangle`], i.e. bilinear with antialiasing when
//!    shrinking). An image already at the input size is not resampled.
//! 5. **Normalise** per the backbone's convention ([`Normalisation`]) and lay
//!    the values out as NHWC or NCHW ([`Layout`]), batch of one.
//!
//! ```
//! use scanside_shared::preprocess::{tensor_from_rgb, PreprocessSpec};
//! let spec = PreprocessSpec::vgg16_caffe(2);
//! let img = image::RgbImage::from_pixel(2, 2, image::Rgb([123, 117, 104]));
//! let t = tensor_from_rgb(&img, &spec).unwrap();
//! assert_eq!(t.shape, [1, 2, 2, 3]);
//! // Caffe: BGR order, ImageNet mean subtracted, no scaling.
//! assert!((t.data[0] - (104.0 - 103.939)).abs() < 1e-6);
//! assert!((t.data[2] - (123.0 - 123.68)).abs() < 1e-6);
//! ```

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, dicom};

/// Decode limits live in [`crate::limits`], below both decoders.
pub use crate::limits::DecodeLimits;

/// Memory layout of the model input tensor (batch of one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[1, height, width, 3]` (Keras / TensorFlow exports).
    Nhwc,
    /// `[1, 3, height, width]` (PyTorch / model-zoo exports).
    Nchw,
}

/// How pixel values become network inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalisation {
    /// Keras "caffe" mode (Keras VGG16/ResNet50): channels reordered to BGR,
    /// ImageNet mean `[103.939, 116.779, 123.68]` (B, G, R) subtracted, no
    /// scaling.
    CaffeBgrMean,
    /// torchvision mode: RGB scaled to `[0, 1]`, then
    /// `(x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]`.
    TorchvisionMeanStd,
    /// RGB scaled to `[0, 1]`.
    UnitScale,
}

/// The resampling filter used to bring a scan to the model's input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    /// Bilinear (tent) filter, widened when shrinking so every source pixel
    /// contributes (`image::imageops::FilterType::Triangle`; Pillow's
    /// `BILINEAR` is the same filter, within one grey level).
    Triangle,
    /// Catmull–Rom cubic (`FilterType::CatmullRom`, Pillow's `BICUBIC`).
    CatmullRom,
}

impl ResizeFilter {
    fn filter_type(self) -> image::imageops::FilterType {
        match self {
            ResizeFilter::Triangle => image::imageops::FilterType::Triangle,
            ResizeFilter::CatmullRom => image::imageops::FilterType::CatmullRom,
        }
    }
}

/// Cropping a slice to the head before resizing.
///
/// Pixels brighter than `threshold` (brightest channel, 0–255) are
/// foreground; the bounding box of the largest 8-connected foreground region
/// (the head, not a thin frame or a text overlay) is kept, grown by
/// `margin_percent` of its size on each side. If that region covers less
/// than 1 % of the image, the image is kept whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContentCrop {
    /// Foreground threshold on the brightest channel.
    pub threshold: u8,
    /// Margin around the region, in percent of its width/height.
    pub margin_percent: u8,
}

impl Default for ContentCrop {
    fn default() -> Self {
        ContentCrop {
            threshold: 45,
            margin_percent: 2,
        }
    }
}

/// Everything that decides how a scan becomes a tensor. Stored in every
/// model's metadata, so the device preprocesses exactly as training did.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PreprocessSpec {
    /// Crop to the head before resizing (`None`: use the whole image).
    #[serde(default)]
    pub crop: Option<ContentCrop>,
    /// Side of the square input, in pixels.
    pub size: u32,
    /// Tensor layout expected by the network.
    pub layout: Layout,
    /// Pixel normalisation expected by the network.
    pub normalisation: Normalisation,
    /// Resampling filter.
    pub resize: ResizeFilter,
}

impl PreprocessSpec {
    /// The Keras VGG16 convention (NHWC, caffe BGR-mean, bilinear) at
    /// `size`, without cropping.
    pub fn vgg16_caffe(size: u32) -> Self {
        PreprocessSpec {
            crop: None,
            size,
            layout: Layout::Nhwc,
            normalisation: Normalisation::CaffeBgrMean,
            resize: ResizeFilter::Triangle,
        }
    }

    /// Shape of the input tensor for a batch of `n`.
    pub fn input_shape(&self, n: usize) -> [usize; 4] {
        let s = self.size as usize;
        match self.layout {
            Layout::Nhwc => [n, s, s, 3],
            Layout::Nchw => [n, 3, s, s],
        }
    }

    /// A short stable text naming this spec, for cache keys and reports.
    pub fn key(&self) -> String {
        serde_json::to_string(self).expect("spec serialises")
    }
}

/// A preprocessed image: a batch-of-one tensor in the spec's layout.
#[derive(Clone, Debug, PartialEq)]
pub struct InputTensor {
    /// `[1, h, w, 3]` or `[1, 3, h, w]`.
    pub shape: [usize; 4],
    /// Values in row-major order.
    pub data: Vec<f32>,
}

/// Decode image bytes, bounded by `limits`. `origin` names the file in errors.
/// A multi-frame DICOM object gives its middle frame.
pub fn decode(bytes: &[u8], origin: &Path, limits: &DecodeLimits) -> Result<DynamicImage> {
    decode_frame(bytes, origin, limits, dicom::FrameChoice::Middle)
}

/// [`decode`], with the frame to take from a multi-frame DICOM object. Any
/// other file has one frame, 0.
pub fn decode_frame(
    bytes: &[u8],
    origin: &Path,
    limits: &DecodeLimits,
    frame: dicom::FrameChoice,
) -> Result<DynamicImage> {
    let decode_err = |reason: String| Error::Decode {
        path: origin.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(decode_err("empty file".into()));
    }
    if dicom::has_dicom_preamble(bytes) || dicom::has_dicom_extension(origin) {
        return Ok(dicom::decode_dicom(bytes, origin, limits, frame)?.image);
    }
    if let dicom::FrameChoice::Index(i @ 1..) = frame {
        return Err(decode_err(format!(
            "frame {i} asked for, but this is a single-frame image (frame 0)"
        )));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(e.to_string()))?;
    if reader.format().is_none() {
        return Err(decode_err(
            "unknown format (expected JPEG, PNG, BMP, TIFF or DICOM)".into(),
        ));
    }
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_side);
    image_limits.max_image_height = Some(limits.max_side);
    image_limits.max_alloc = Some(limits.max_alloc_bytes);
    reader.limits(image_limits);
    reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => Error::TooLarge {
            path: origin.to_path_buf(),
            reason: format!(
                "{l} (limit: {} px a side, {} MiB)",
                limits.max_side,
                limits.max_alloc_bytes >> 20
            ),
        },
        other => decode_err(other.to_string()),
    })
}

/// Convert any decoded image to 8-bit RGB (see the module docs for the rules).
pub fn to_rgb8(image: DynamicImage) -> RgbImage {
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        // image's conversion scales 16-bit samples with rounding (v / 257)
        // and drops alpha; grey is replicated to the three channels.
        other => other.to_rgb8(),
    }
}

/// Read and decode a file into 8-bit RGB.
pub fn load_rgb(path: &Path, limits: &DecodeLimits) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(to_rgb8(decode(&bytes, path, limits)?))
}

/// Crop an image to its largest bright region (see [`ContentCrop`]).
pub fn crop_to_content(image: &RgbImage, crop: &ContentCrop) -> RgbImage {
    use imageproc::region_labelling::{Connectivity, connected_components};
    let (w, h) = image.dimensions();
    // Nothing to crop in a line, and imageproc 0.27's labelling panics on a
    // single bright pixel (its union-find is one label short).
    if w < 2 || h < 2 {
        return image.clone();
    }
    let mask = image::GrayImage::from_fn(w, h, |x, y| {
        let p = image.get_pixel(x, y).0;
        image::Luma([if p.into_iter().max().unwrap_or(0) > crop.threshold {
            255
        } else {
            0
        }])
    });
    let labels = connected_components(&mask, Connectivity::Eight, image::Luma([0u8]));
    // Per label: area and bounding box (x0, y0, x1, y1), inclusive.
    let mut regions: std::collections::HashMap<u32, (u64, [u32; 4])> = Default::default();
    for (x, y, l) in labels.enumerate_pixels() {
        if l.0[0] == 0 {
            continue;
        }
        let r = regions.entry(l.0[0]).or_insert((0, [x, y, x, y]));
        r.0 += 1;
        r.1 = [r.1[0].min(x), r.1[1].min(y), r.1[2].max(x), r.1[3].max(y)];
    }
    let largest = regions
        .into_iter()
        .max_by_key(|(label, (area, _))| (*area, std::cmp::Reverse(*label)));
    let Some((_, (area, [x0, y0, x1, y1]))) = largest else {
        return image.clone();
    };
    if area * 100 < u64::from(w) * u64::from(h) {
        return image.clone();
    }
    let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
    let (mx, my) = (
        bw * u32::from(crop.margin_percent) / 100,
        bh * u32::from(crop.margin_percent) / 100,
    );
    let (left, top) = (x0.saturating_sub(mx), y0.saturating_sub(my));
    let (right, bottom) = ((x1 + mx).min(w - 1), (y1 + my).min(h - 1));
    image::imageops::crop_imm(image, left, top, right - left + 1, bottom - top + 1).to_image()
}

/// Bring an RGB image to the model input: crop per the spec (if any), then
/// resize to the square input with the spec's filter. An image that is
/// already `size × size` (after cropping) is not resampled.
pub fn resize_rgb(image: &RgbImage, spec: &PreprocessSpec) -> RgbImage {
    let cropped;
    let source = match &spec.crop {
        Some(c) => {
            cropped = crop_to_content(image, c);
            &cropped
        }
        None => image,
    };
    image::imageops::resize(source, spec.size, spec.size, spec.resize.filter_type())
}

/// Caffe means, in B, G, R order.
const CAFFE_MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];
/// torchvision means and standard deviations, in R, G, B order.
const TORCH_MEAN_RGB: [f32; 3] = [0.485, 0.456, 0.406];
const TORCH_STD_RGB: [f32; 3] = [0.229, 0.224, 0.225];

/// Normalise an already resized RGB image into the network's input tensor.
///
/// Fails if the image is not `spec.size` square (call [`resize_rgb`] first).
pub fn tensor_from_rgb(image: &RgbImage, spec: &PreprocessSpec) -> Result<InputTensor> {
    let s = spec.size as usize;
    if image.width() != spec.size || image.height() != spec.size {
        return Err(Error::Inference(format!(
            "image is {}×{}, model input is {s}×{s}",
            image.width(),
            image.height()
        )));
    }
    // Value of output channel `c` (in the network's channel order) for pixel p.
    let channel = |p: &image::Rgb<u8>, c: usize| -> f32 {
        match spec.normalisation {
            Normalisation::CaffeBgrMean => f32::from(p.0[2 - c]) - CAFFE_MEAN_BGR[c],
            Normalisation::TorchvisionMeanStd => {
                (f32::from(p.0[c]) / 255.0 - TORCH_MEAN_RGB[c]) / TORCH_STD_RGB[c]
            }
            Normalisation::UnitScale => f32::from(p.0[c]) / 255.0,
        }
    };
    let mut data = vec![0f32; s * s * 3];
    for (x, y, p) in image.enumerate_pixels() {
        let (x, y) = (x as usize, y as usize);
        for c in 0..3 {
            let at = match spec.layout {
                Layout::Nhwc => (y * s + x) * 3 + c,
                Layout::Nchw => c * s * s + y * s + x,
            };
            data[at] = channel(p, c);
        }
    }
    Ok(InputTensor {
        shape: spec.input_shape(1),
        data,
    })
}

/// The whole path for bytes already in memory. `origin` names them in errors.
pub fn preprocess_bytes(
    bytes: &[u8],
    origin: &Path,
    spec: &PreprocessSpec,
    limits: &DecodeLimits,
) -> Result<InputTensor> {
    let rgb = to_rgb8(decode(bytes, origin, limits)?);
    tensor_from_rgb(&resize_rgb(&rgb, spec), spec)
}

/// The whole path for a file: decode → RGB → resize → normalise.
pub fn preprocess_file(
    path: &Path,
    spec: &PreprocessSpec,
    limits: &DecodeLimits,
) -> Result<InputTensor> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    preprocess_bytes(&bytes, path, spec, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(layout: Layout, normalisation: Normalisation) -> PreprocessSpec {
        PreprocessSpec {
            crop: None,
            size: 2,
            layout,
            normalisation,
            resize: ResizeFilter::Triangle,
        }
    }

    fn two_by_two() -> RgbImage {
        RgbImage::from_fn(2, 2, |x, y| image::Rgb([10 * x as u8, 20 * y as u8, 200]))
    }

    #[test]
    fn nchw_puts_channels_first() {
        let t =
            tensor_from_rgb(&two_by_two(), &spec(Layout::Nchw, Normalisation::UnitScale)).unwrap();
        assert_eq!(t.shape, [1, 3, 2, 2]);
        // R plane: x * 10 / 255 at (y, x); G plane starts at 4.
        assert_eq!(t.data[1], 10.0 / 255.0);
        assert_eq!(t.data[4 + 2], 20.0 / 255.0);
        assert_eq!(t.data[8], 200.0 / 255.0);
    }

    #[test]
    fn torchvision_uses_rgb_mean_and_std() {
        let t = tensor_from_rgb(
            &two_by_two(),
            &spec(Layout::Nhwc, Normalisation::TorchvisionMeanStd),
        )
        .unwrap();
        assert!((t.data[2] - (200.0 / 255.0 - 0.406) / 0.225).abs() < 1e-6);
    }

    #[test]
    fn wrong_size_is_refused() {
        let s = PreprocessSpec::vgg16_caffe(3);
        assert!(tensor_from_rgb(&two_by_two(), &s).is_err());
    }

    #[test]
    fn empty_and_junk_bytes_name_the_file() {
        let limits = DecodeLimits::default();
        let e = decode(b"", Path::new("a b.jpg"), &limits).unwrap_err();
        assert!(e.to_string().contains("a b.jpg"), "{e}");
        let e = decode(b"hello, not an image", Path::new("x.jpg"), &limits).unwrap_err();
        assert!(e.to_string().contains("x.jpg: not a readable image"), "{e}");
    }

    #[test]
    fn oversized_image_is_refused_before_decoding() {
        let img = RgbImage::new(300, 10);
        let mut png = Vec::new();
        img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let limits = DecodeLimits {
            max_side: 256,
            max_alloc_bytes: 1 << 20,
        };
        let e = decode(&png, Path::new("wide.png"), &limits).unwrap_err();
        assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    }

    #[test]
    fn crop_keeps_the_largest_region_not_the_frame() {
        // A 100×80 image: a one-pixel white frame, a 40×30 head at (30, 20),
        // a 3×3 speck of text at (90, 5).
        let img = RgbImage::from_fn(100, 80, |x, y| {
            let frame = x == 0 || y == 0 || x == 99 || y == 79;
            let head = (30..70).contains(&x) && (20..50).contains(&y);
            let text = (90..93).contains(&x) && (5..8).contains(&y);
            image::Rgb(if frame || head || text {
                [200, 200, 200]
            } else {
                [5, 5, 5]
            })
        });
        let c = ContentCrop {
            threshold: 45,
            margin_percent: 10,
        };
        let out = crop_to_content(&img, &c);
        // 40×30 grown by 4 and 3 pixels each side.
        assert_eq!(out.dimensions(), (48, 36));
        assert_eq!(out.get_pixel(4, 3).0, [200, 200, 200]);
        assert_eq!(out.get_pixel(3, 3).0, [5, 5, 5]);
    }

    #[test]
    fn crop_keeps_an_all_dark_image_whole() {
        let img = RgbImage::from_pixel(20, 20, image::Rgb([10, 10, 10]));
        assert_eq!(crop_to_content(&img, &ContentCrop::default()), img);
    }

    /// imageproc 0.27's `connected_components` sizes its union-find one
    /// short and panics on a single bright pixel; tiny images are kept
    /// whole instead (found by `tests/tests/bad_input.rs`, which trains on a
    /// 1 × 1 image).
    #[test]
    fn crop_keeps_one_pixel_and_one_line_images_whole() {
        for (w, h) in [(1, 1), (1, 7), (7, 1)] {
            let img = RgbImage::from_pixel(w, h, image::Rgb([200, 200, 200]));
            assert_eq!(crop_to_content(&img, &ContentCrop::default()), img);
        }
    }

    #[test]
    fn sixteen_bit_grey_scales_over_full_range() {
        let img =
            image::ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 1, vec![65535u16, 257 * 100])
                .unwrap();
        let rgb = to_rgb8(DynamicImage::ImageLuma16(img));
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(1, 0).0, [100, 100, 100]);
    }
}
