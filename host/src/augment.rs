//! Augmented views of a training image.
//!
//! View 0 is the image as the device will see it. Views `1..` are random but
//! reproducible variations of it: horizontal flip, a small rotation and
//! scale about the centre, brightness and contrast. The randomness is seeded
//! by the image's content hash and the view number, so a view is the same
//! tensor on every run and can be cached. Views of one image always stay in
//! that image's fold (cross-validation splits images, then expands views).
//!
//! Augmentation happens at the model's input resolution, between
//! [`resize_rgb`](scanside_shared::preprocess::resize_rgb) and
//! [`tensor_from_rgb`](scanside_shared::preprocess::tensor_from_rgb).

use image::{Rgb, RgbImage};
use imageproc::geometric_transformations::{Border, Interpolation, Projection, warp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Version of the augmentation recipe; part of every cache key.
pub const RECIPE: &str = "aug-v1(flip0.5,rot±10,scale0.9-1.1,bright±0.1,contrast±0.1)";

/// The random parameters of one view.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewParams {
    /// Mirror left–right.
    pub flip: bool,
    /// Rotation in degrees.
    pub rotate_deg: f32,
    /// Scale factor about the centre.
    pub scale: f32,
    /// Added brightness, as a fraction of 255.
    pub brightness: f32,
    /// Contrast factor about mid-grey.
    pub contrast: f32,
}

impl ViewParams {
    /// The parameters of view `view` (≥ 1) of the image with `sha256`.
    pub fn for_view(sha256: &str, view: usize) -> Self {
        let seed_bytes =
            scanside_shared::sha256_hex(format!("{sha256}/{view}/{RECIPE}").as_bytes());
        let seed = u64::from_str_radix(&seed_bytes[..16], 16).expect("hex");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        ViewParams {
            flip: rng.random_bool(0.5),
            rotate_deg: rng.random_range(-10.0..=10.0),
            scale: rng.random_range(0.9..=1.1),
            brightness: rng.random_range(-0.1..=0.1),
            contrast: rng.random_range(0.9..=1.1),
        }
    }
}

/// Apply a view's parameters to a square image at model resolution.
pub fn apply(image: &RgbImage, p: &ViewParams) -> RgbImage {
    let (w, h) = (image.width() as f32, image.height() as f32);
    let (cx, cy) = (w / 2.0, h / 2.0);
    let mut transform = Projection::translate(cx, cy)
        * Projection::rotate(p.rotate_deg.to_radians())
        * Projection::scale(p.scale, p.scale);
    if p.flip {
        transform = transform * Projection::scale(-1.0, 1.0);
    }
    transform = transform * Projection::translate(-cx, -cy);
    let mut out = warp(
        image,
        transform,
        Interpolation::Bilinear,
        Border::Constant(Rgb([0, 0, 0])),
    );
    for px in out.pixels_mut() {
        for v in px.0.iter_mut() {
            let x = f32::from(*v);
            let y = (x - 127.5) * p.contrast + 127.5 + p.brightness * 255.0;
            *v = y.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// The image for view `view`: view 0 is the image unchanged.
pub fn view(image: &RgbImage, sha256: &str, view: usize) -> RgbImage {
    if view == 0 {
        image.clone()
    } else {
        apply(image, &ViewParams::for_view(sha256, view))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient() -> RgbImage {
        RgbImage::from_fn(32, 32, |x, y| Rgb([(x * 8) as u8, (y * 8) as u8, 100]))
    }

    #[test]
    fn views_are_reproducible_and_distinct() {
        let img = gradient();
        assert_eq!(view(&img, "abc", 0), img);
        assert_eq!(view(&img, "abc", 1), view(&img, "abc", 1));
        assert_ne!(view(&img, "abc", 1), view(&img, "abc", 2));
        assert_ne!(
            ViewParams::for_view("abc", 1),
            ViewParams::for_view("abd", 1)
        );
    }

    #[test]
    fn identity_parameters_keep_the_image() {
        let img = gradient();
        let same = ViewParams {
            flip: false,
            rotate_deg: 0.0,
            scale: 1.0,
            brightness: 0.0,
            contrast: 1.0,
        };
        assert_eq!(apply(&img, &same), img);
    }

    #[test]
    fn flip_mirrors_columns() {
        let img = gradient();
        let flip = ViewParams {
            flip: true,
            rotate_deg: 0.0,
            scale: 1.0,
            brightness: 0.0,
            contrast: 1.0,
        };
        let out = apply(&img, &flip);
        // Mirror about the centre line x = 16: column 31 → column 1 (bilinear
        // sampling at pixel centres keeps interior columns exact).
        assert_eq!(out.get_pixel(1, 5), img.get_pixel(31, 5));
        assert_eq!(out.get_pixel(20, 7), img.get_pixel(12, 7));
    }
}
