//! Augmented views of a training image.
//!
//! View 0 is the image as the device will see it. Views `1..` are random but
//! reproducible variations of it: horizontal flip, a small rotation and
//! scale about the centre, brightness and contrast. The randomness is seeded
//! by the image's content hash and the view number, so a view is the same
//! tensor on every run and can be cached. Views of one image always stay in
//! that image's fold (cross-validation splits images, then expands views).
//!
//! With [`Augmentation::Cutout`], half the views also get a grey square
//! (the ImageNet mean, 0 after caffe normalisation) of 1/7 to 2/7 of the
//! side at a random place: a stand-in for a signal void or a one-sided
//! artefact, so that a defect on one side is not by itself evidence of a
//! tumour (docs/training.md, "Choosing the head").
//!
//! Augmentation happens at the model's input resolution, between
//! [`resize_rgb`](scanside_shared::preprocess::resize_rgb) and
//! [`tensor_from_rgb`](scanside_shared::preprocess::tensor_from_rgb).

use image::{Rgb, RgbImage};
use imageproc::geometric_transformations::{Border, Interpolation, Projection, warp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Version of the standard augmentation recipe; part of every cache key.
pub const RECIPE: &str = "aug-v1(flip0.5,rot±10,scale0.9-1.1,bright±0.1,contrast±0.1)";

/// The standard recipe plus cutout; part of every cache key.
pub const RECIPE_CUTOUT: &str =
    "aug-v1(flip0.5,rot±10,scale0.9-1.1,bright±0.1,contrast±0.1)+cutout0.5(1/7-2/7,imagenet-mean)";

/// The ImageNet mean colour, RGB, rounded: 0 after caffe normalisation.
const CUTOUT_GREY: Rgb<u8> = Rgb([124, 117, 104]);

/// Which augmentation recipe makes views `1..`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Augmentation {
    /// [`RECIPE`]: flip, rotation, scale, brightness, contrast.
    #[default]
    Standard,
    /// [`RECIPE_CUTOUT`]: the same, and a grey square in half the views.
    Cutout,
}

impl Augmentation {
    /// The recipe's versioned name, as cache keys and models record it.
    pub fn recipe(self) -> &'static str {
        match self {
            Augmentation::Standard => RECIPE,
            Augmentation::Cutout => RECIPE_CUTOUT,
        }
    }

    /// The recipe a model recorded (`head.augmentation`); any recipe but
    /// [`RECIPE_CUTOUT`] is the standard one.
    pub fn from_recipe(recorded: &str) -> Self {
        if recorded == RECIPE_CUTOUT {
            Augmentation::Cutout
        } else {
            Augmentation::Standard
        }
    }
}

/// A grey square, as fractions of the image: its side, and where its
/// top-left corner sits along the free width and height.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cutout {
    /// Horizontal position in `0..=1` of the free width.
    pub x: f32,
    /// Vertical position in `0..=1` of the free height.
    pub y: f32,
    /// Side, as a fraction of the shorter image side.
    pub side: f32,
}

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
    /// A grey square over the result ([`Augmentation::Cutout`] only).
    pub cutout: Option<Cutout>,
}

impl ViewParams {
    /// The parameters of view `view` (≥ 1) of the image with `sha256`
    /// under `augmentation`. The standard recipe's views are the ones
    /// cached before cutout existed.
    pub fn for_view(sha256: &str, view: usize, augmentation: Augmentation) -> Self {
        let recipe = augmentation.recipe();
        let seed_bytes =
            scanside_shared::sha256_hex(format!("{sha256}/{view}/{recipe}").as_bytes());
        let seed = u64::from_str_radix(&seed_bytes[..16], 16).expect("hex");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        ViewParams {
            flip: rng.random_bool(0.5),
            rotate_deg: rng.random_range(-10.0..=10.0),
            scale: rng.random_range(0.9..=1.1),
            brightness: rng.random_range(-0.1..=0.1),
            contrast: rng.random_range(0.9..=1.1),
            cutout: (augmentation == Augmentation::Cutout && rng.random_bool(0.5)).then(|| {
                Cutout {
                    x: rng.random_range(0.0..=1.0),
                    y: rng.random_range(0.0..=1.0),
                    side: rng.random_range(1.0 / 7.0..=2.0 / 7.0),
                }
            }),
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
    if let Some(c) = p.cutout {
        let side = (c.side * w.min(h)) as u32;
        let x0 = (c.x * (w - side as f32)) as u32;
        let y0 = (c.y * (h - side as f32)) as u32;
        for y in y0..(y0 + side).min(out.height()) {
            for x in x0..(x0 + side).min(out.width()) {
                out.put_pixel(x, y, CUTOUT_GREY);
            }
        }
    }
    out
}

/// The image for view `view` under `augmentation`: view 0 is the image
/// unchanged.
pub fn view(image: &RgbImage, sha256: &str, view: usize, augmentation: Augmentation) -> RgbImage {
    if view == 0 {
        image.clone()
    } else {
        apply(image, &ViewParams::for_view(sha256, view, augmentation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The standard recipe draws no cutout and keeps the name its cached
    /// views were keyed by; cutout draws one in about half the views, and
    /// a model's recorded recipe reads back.
    #[test]
    fn cutout_is_only_in_its_own_recipe() {
        assert_eq!(
            RECIPE,
            "aug-v1(flip0.5,rot±10,scale0.9-1.1,bright±0.1,contrast±0.1)"
        );
        let with: usize = (1..=200)
            .map(|v| {
                assert!(
                    ViewParams::for_view("abc", v, Augmentation::Standard)
                        .cutout
                        .is_none()
                );
                usize::from(
                    ViewParams::for_view("abc", v, Augmentation::Cutout)
                        .cutout
                        .is_some(),
                )
            })
            .sum();
        assert!(
            (70..=130).contains(&with),
            "{with} of 200 views with cutout"
        );
        for a in [Augmentation::Standard, Augmentation::Cutout] {
            assert_eq!(Augmentation::from_recipe(a.recipe()), a);
        }
        assert_eq!(Augmentation::from_recipe("aug-v0"), Augmentation::Standard);
    }

    #[test]
    fn cutout_greys_a_square_of_its_side() {
        let img = RgbImage::from_pixel(70, 70, Rgb([200, 10, 10]));
        let p = ViewParams {
            flip: false,
            rotate_deg: 0.0,
            scale: 1.0,
            brightness: 0.0,
            contrast: 1.0,
            cutout: Some(Cutout {
                x: 1.0,
                y: 0.0,
                side: 2.0 / 7.0,
            }),
        };
        let out = apply(&img, &p);
        let grey = out.pixels().filter(|px| **px == CUTOUT_GREY).count();
        assert_eq!(grey, 20 * 20);
        // Flush with the right edge, at the top.
        assert_eq!(*out.get_pixel(69, 0), CUTOUT_GREY);
        assert_eq!(*out.get_pixel(50, 19), CUTOUT_GREY);
        assert_eq!(*out.get_pixel(50, 20), Rgb([200, 10, 10]));
        assert_eq!(*out.get_pixel(49, 0), Rgb([200, 10, 10]));
    }

    fn gradient() -> RgbImage {
        RgbImage::from_fn(32, 32, |x, y| Rgb([(x * 8) as u8, (y * 8) as u8, 100]))
    }

    #[test]
    fn views_are_reproducible_and_distinct() {
        let img = gradient();
        let std = Augmentation::Standard;
        assert_eq!(view(&img, "abc", 0, std), img);
        assert_eq!(view(&img, "abc", 1, std), view(&img, "abc", 1, std));
        assert_ne!(view(&img, "abc", 1, std), view(&img, "abc", 2, std));
        assert_ne!(
            ViewParams::for_view("abc", 1, std),
            ViewParams::for_view("abd", 1, std)
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
            cutout: None,
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
            cutout: None,
        };
        let out = apply(&img, &flip);
        // Mirror about the centre line x = 16: column 31 → column 1 (bilinear
        // sampling at pixel centres keeps interior columns exact).
        assert_eq!(out.get_pixel(1, 5), img.get_pixel(31, 5));
        assert_eq!(out.get_pixel(20, 7), img.get_pixel(12, 7));
    }
}
