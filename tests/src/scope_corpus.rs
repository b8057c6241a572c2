//! The out-of-scope corpus: pictures that are not brain MR slices, made at
//! test time (nothing copied from the team folder).
//!
//! Categories ([`Category`]): natural photographs and tiny face photographs
//! from the scikit-image 0.24.0 wheel (`skimage/data`, fetched by
//! `scripts/setup.sh` into `third_party/`, read in place; each photograph
//! also in grey, centre-cropped and turned, so the colour check cannot do
//! all the work); text pages; screenshots and photos of a screen;
//! gradients; noise; flat fills; the team CT sample rendered to PNG at three
//! windows; synthetic body-part-like pictures (chest, abdomen, limb, pelvis
//! cross-sections). Every picture is written as a PNG into a folder
//! per category; [`generate`] returns them with their category.

use std::io::Read;
use std::path::{Path, PathBuf};

use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::mono_font::ascii::{FONT_6X10, FONT_9X18, FONT_10X20};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::text::Text;
use image::{DynamicImage, GrayImage, Luma, Rgb, RgbImage};
use imageproc::drawing::{draw_filled_ellipse_mut, draw_filled_rect_mut};
use imageproc::rect::Rect;
use rand::{Rng, SeedableRng};

/// The wheel holding the sample photographs, as `scripts/setup.sh` fetches
/// it (pinned by SHA-256 there).
pub const PHOTO_WHEEL: &str =
    "third_party/scikit_image-0.24.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl";

/// What kind of non-brain picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// Natural photographs (as they are, grey, cropped, turned).
    Photo,
    /// Small face photographs, enlarged.
    Face,
    /// Pages of text.
    Text,
    /// Screenshots and photographs of a screen.
    Screen,
    /// Linear and radial gradients.
    Gradient,
    /// Noise of several kinds.
    Noise,
    /// Near-constant fills.
    Flat,
    /// The team CT sample as PNG.
    Ct,
    /// Synthetic cross-sections of other body parts.
    Body,
}

impl Category {
    /// Its folder name.
    pub fn name(self) -> &'static str {
        match self {
            Category::Photo => "photo",
            Category::Face => "face",
            Category::Text => "text",
            Category::Screen => "screen",
            Category::Gradient => "gradient",
            Category::Noise => "noise",
            Category::Flat => "flat",
            Category::Ct => "ct",
            Category::Body => "body",
        }
    }
}

/// One generated picture.
#[derive(Clone, Debug)]
pub struct Picture {
    /// The PNG file.
    pub path: PathBuf,
    /// Its category.
    pub category: Category,
}

/// Photographs of the wheel used (the rest are not photographs or are
/// too small).
const PHOTOS: [&str; 24] = [
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "clock_motion.png",
    "coffee.png",
    "coins.png",
    "color.png",
    "grass.png",
    "gravel.png",
    "horse.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "logo.png",
    "microaneurysms.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "page.png",
    "retina.jpg",
    "rocket.jpg",
    "text.png",
    "phantom.png",
];

/// Make the corpus under `dir`: `wheel` is the scikit-image wheel,
/// `ct_sample` the team's `CT_small.dcm`.
pub fn generate(dir: &Path, wheel: &Path, ct_sample: &Path) -> Result<Vec<Picture>, String> {
    let mut out = Vec::new();
    let mut save = |category: Category, name: String, img: DynamicImage| -> Result<(), String> {
        let folder = dir.join(category.name());
        std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
        let path = folder.join(format!("{name}.png"));
        img.save(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        out.push(Picture { path, category });
        Ok(())
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(24);

    // Photographs and faces from the wheel.
    let file = std::fs::File::open(wheel).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let mut member = |name: &str| -> Result<Vec<u8>, String> {
        let mut f = zip
            .by_name(&format!("skimage/data/{name}"))
            .map_err(|e| format!("{}: {name}: {e}", wheel.display()))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        Ok(bytes)
    };
    for name in PHOTOS {
        let img = image::load_from_memory(&member(name)?).map_err(|e| format!("{name}: {e}"))?;
        let stem = name.split('.').next().unwrap_or(name);
        let category = if name == "phantom.png" {
            Category::Body
        } else {
            Category::Photo
        };
        let grey = DynamicImage::ImageLuma8(img.to_luma8());
        let (w, h) = (grey.width(), grey.height());
        let crop = grey.crop_imm(w / 6, h / 6, w * 2 / 3, h * 2 / 3);
        save(
            category,
            stem.to_string(),
            DynamicImage::ImageRgb8(img.to_rgb8()),
        )?;
        save(category, format!("{stem}-grey"), grey.clone())?;
        save(category, format!("{stem}-crop"), crop)?;
        save(category, format!("{stem}-turned"), grey.rotate90())?;
    }
    let faces = member("lfw_subset.npy")?;
    for (k, face) in npy_faces(&faces)?.into_iter().step_by(5).enumerate() {
        let big = image::imageops::resize(&face, 150, 150, image::imageops::FilterType::Triangle);
        save(
            Category::Face,
            format!("face{k:02}"),
            DynamicImage::ImageLuma8(big),
        )?;
    }

    // Text pages.
    let words = "the quick brown fox jumps over the lazy dog report page scanner \
                 patient study series radiology department invoice total date";
    let words: Vec<&str> = words.split_whitespace().collect();
    for k in 0..20 {
        let (w, h) = (360 + 20 * (k % 4), 480 + 10 * (k % 3));
        let (ink, paper) = if k % 5 == 4 {
            (Rgb888::WHITE, Rgb([20, 20, 20]))
        } else {
            (Rgb888::BLACK, Rgb([245, 245, 240]))
        };
        let mut page = RgbImage::from_pixel(w, h, paper);
        let font = [&FONT_6X10, &FONT_9X18, &FONT_10X20][k as usize % 3];
        let line_h = font.character_size.height as i32 + 4;
        let mut y = 20;
        while y < h as i32 - 10 {
            let n = rng.random_range(3..9);
            let line: Vec<&str> = (0..n)
                .map(|_| words[rng.random_range(0..words.len())])
                .collect();
            draw_text(
                &mut page,
                &line.join(" "),
                12,
                y,
                MonoTextStyle::new(font, ink),
            );
            y += line_h;
        }
        save(
            Category::Text,
            format!("page{k:02}"),
            DynamicImage::ImageRgb8(page),
        )?;
    }

    // Screenshots (windows, bars, text), and the same photographed: blurred,
    // darkened at the edges, with sensor noise.
    for k in 0..10 {
        let mut shot = RgbImage::from_pixel(480, 320, Rgb([60, 63, 70]));
        for _ in 0..rng.random_range(3..7) {
            let (x, y) = (rng.random_range(0..380), rng.random_range(0..240));
            let (w, h) = (rng.random_range(80..300u32), rng.random_range(40..200u32));
            let fill = [rng.random_range(150..255u8); 3];
            draw_filled_rect_mut(&mut shot, Rect::at(x, y).of_size(w, h), Rgb(fill));
            draw_filled_rect_mut(&mut shot, Rect::at(x, y).of_size(w, 14), Rgb([40, 90, 160]));
            for line in 0..(h as i32 / 14).saturating_sub(1) {
                draw_text(
                    &mut shot,
                    "File  Edit  View  Series 3  W 400 L 40",
                    x + 4,
                    y + 26 + 12 * line,
                    MonoTextStyle::new(&FONT_6X10, Rgb888::BLACK),
                );
            }
        }
        let photographed = if k % 2 == 1 {
            let blurred = image::imageops::blur(&shot, 1.5);
            RgbImage::from_fn(480, 320, |x, y| {
                let p = blurred.get_pixel(x, y).0;
                let (dx, dy) = (x as f32 / 240.0 - 1.0, y as f32 / 160.0 - 1.0);
                let vignette = 1.0 - 0.35 * (dx * dx + dy * dy);
                let n: f32 = rng.random_range(-12.0..12.0);
                Rgb(p.map(|c| (c as f32 * vignette + n).clamp(0.0, 255.0) as u8))
            })
        } else {
            shot
        };
        save(
            Category::Screen,
            format!("screen{k:02}"),
            DynamicImage::ImageRgb8(photographed),
        )?;
    }

    // Gradients: linear at eight angles, radial at four centres.
    for k in 0..8 {
        let a = k as f32 * std::f32::consts::PI / 8.0;
        let img = GrayImage::from_fn(256, 256, |x, y| {
            let t = ((x as f32 - 128.0) * a.cos() + (y as f32 - 128.0) * a.sin()) / 362.0 + 0.5;
            Luma([(t.clamp(0.0, 1.0) * 255.0) as u8])
        });
        save(
            Category::Gradient,
            format!("linear{k}"),
            DynamicImage::ImageLuma8(img),
        )?;
    }
    for k in 0..4 {
        let (cx, cy) = (64.0 + 128.0 * (k % 2) as f32, 64.0 + 128.0 * (k / 2) as f32);
        let img = GrayImage::from_fn(256, 256, |x, y| {
            let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt() / 300.0;
            Luma([((1.0 - d).clamp(0.0, 1.0) * 255.0) as u8])
        });
        save(
            Category::Gradient,
            format!("radial{k}"),
            DynamicImage::ImageLuma8(img),
        )?;
    }

    // Noise: uniform, Gaussian-like (sum of uniforms), salt and pepper,
    // and smooth (blurred) noise, each four times.
    for k in 0..16 {
        let mut img = GrayImage::from_fn(224, 224, |_, _| {
            let v: f32 = match k / 4 {
                0 => rng.random_range(0.0..255.0),
                1 => {
                    128.0
                        + (0..4)
                            .map(|_| rng.random_range(-40.0..40.0f32))
                            .sum::<f32>()
                }
                2 => match rng.random_range(0..10) {
                    0 => 255.0,
                    1 => 0.0,
                    _ => 100.0,
                },
                _ => rng.random_range(0.0..255.0),
            };
            Luma([v.clamp(0.0, 255.0) as u8])
        });
        if k / 4 == 3 {
            img = image::imageops::contrast(&image::imageops::blur(&img, 4.0 + k as f32), 400.0);
        }
        save(
            Category::Noise,
            format!("noise{k:02}"),
            DynamicImage::ImageLuma8(img),
        )?;
    }

    // Flat fills (one with a faint ripple).
    for (k, v) in [0u8, 128, 255, 40].into_iter().enumerate() {
        let img = GrayImage::from_fn(200, 200, |x, _| Luma([v.saturating_add((x % 3) as u8)]));
        save(
            Category::Flat,
            format!("flat{k}"),
            DynamicImage::ImageLuma8(img),
        )?;
    }

    // The CT sample, rendered at its own window, a brain window and a bone
    // window.
    for (name, window) in [
        ("default", None),
        ("brain", Some((40.0, 80.0))),
        ("bone", Some((500.0, 2000.0))),
    ] {
        save(
            Category::Ct,
            format!("ct-{name}"),
            render_ct(ct_sample, window)?,
        )?;
    }

    // Body-part-like cross-sections: chest (two dark lungs, spine, heart),
    // abdomen (organs), limb (skin, muscle, one or two bones), pelvis.
    for k in 0..20 {
        let mut img = GrayImage::from_pixel(256, 256, Luma([0]));
        let jitter = |rng: &mut rand_chacha::ChaCha8Rng, v: i32| v + rng.random_range(-10..10);
        match k % 4 {
            0 => {
                draw_filled_ellipse_mut(
                    &mut img,
                    (128, 128),
                    jitter(&mut rng, 115),
                    jitter(&mut rng, 80),
                    Luma([150]),
                );
                for side in [-1, 1] {
                    draw_filled_ellipse_mut(
                        &mut img,
                        (128 + side * 50, 120),
                        jitter(&mut rng, 38),
                        jitter(&mut rng, 55),
                        Luma([25]),
                    );
                }
                draw_filled_ellipse_mut(&mut img, (128, 190), 14, 14, Luma([240]));
                draw_filled_ellipse_mut(&mut img, (140, 125), 25, 22, Luma([170]));
            }
            1 => {
                draw_filled_ellipse_mut(
                    &mut img,
                    (128, 128),
                    jitter(&mut rng, 110),
                    jitter(&mut rng, 85),
                    Luma([120]),
                );
                for _ in 0..5 {
                    let (x, y) = (rng.random_range(70..190), rng.random_range(80..180));
                    let g = rng.random_range(80..200u8);
                    draw_filled_ellipse_mut(
                        &mut img,
                        (x, y),
                        rng.random_range(10..35),
                        rng.random_range(10..30),
                        Luma([g]),
                    );
                }
                draw_filled_ellipse_mut(&mut img, (128, 195), 13, 12, Luma([235]));
            }
            2 => {
                draw_filled_ellipse_mut(
                    &mut img,
                    (128, 128),
                    jitter(&mut rng, 70),
                    jitter(&mut rng, 60),
                    Luma([110]),
                );
                draw_filled_ellipse_mut(
                    &mut img,
                    (128, 128),
                    jitter(&mut rng, 62),
                    jitter(&mut rng, 52),
                    Luma([140]),
                );
                let bones = 1 + k % 2;
                for b in 0..bones {
                    draw_filled_ellipse_mut(&mut img, (118 + 22 * b, 128), 13, 13, Luma([245]));
                    draw_filled_ellipse_mut(&mut img, (118 + 22 * b, 128), 6, 6, Luma([60]));
                }
            }
            _ => {
                draw_filled_ellipse_mut(
                    &mut img,
                    (128, 128),
                    jitter(&mut rng, 120),
                    jitter(&mut rng, 75),
                    Luma([130]),
                );
                for side in [-1, 1] {
                    draw_filled_ellipse_mut(&mut img, (128 + side * 60, 128), 30, 22, Luma([235]));
                    draw_filled_ellipse_mut(&mut img, (128 + side * 25, 95), 18, 12, Luma([235]));
                }
                draw_filled_ellipse_mut(&mut img, (128, 140), 18, 14, Luma([70]));
            }
        }
        let img = image::imageops::blur(&img, 1.2);
        let noisy = GrayImage::from_fn(256, 256, |x, y| {
            let v = img.get_pixel(x, y).0[0] as f32 + rng.random_range(-8.0..8.0);
            Luma([v.clamp(0.0, 255.0) as u8])
        });
        save(
            Category::Body,
            format!("body{k:02}"),
            DynamicImage::ImageLuma8(noisy),
        )?;
    }
    Ok(out)
}

/// The faces of `lfw_subset.npy`: a NumPy `<f8` array of shape
/// `(n, 25, 25)`, values in [0, 1].
fn npy_faces(bytes: &[u8]) -> Result<Vec<GrayImage>, String> {
    if !bytes.starts_with(b"\x93NUMPY\x01\x00") || bytes.len() < 10 {
        return Err("lfw_subset.npy: not a version 1 .npy file".into());
    }
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + header_len]);
    if !header.contains("'<f8'") || !header.contains(", 25, 25)") {
        return Err(format!("lfw_subset.npy: unexpected header {header}"));
    }
    let data = &bytes[10 + header_len..];
    Ok(data
        .chunks_exact(25 * 25 * 8)
        .map(|face| {
            GrayImage::from_fn(25, 25, |x, y| {
                let at = 8 * (y * 25 + x) as usize;
                let v = f64::from_le_bytes(face[at..at + 8].try_into().expect("8 bytes"));
                Luma([(v.clamp(0.0, 1.0) * 255.0) as u8])
            })
        })
        .collect())
}

/// A CT file rendered to 8-bit grey: Hounsfield units (the modality LUT)
/// windowed at `(centre, width)`, or over their full range (`None`).
fn render_ct(path: &Path, window: Option<(f64, f64)>) -> Result<DynamicImage, String> {
    use dicom_pixeldata::{ConvertOptions, PixelDecoder, VoiLutOption};
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let obj = dicom_object::open_file(path).map_err(|e| err(&e))?;
    let pixels = obj.decode_pixel_data().map_err(|e| err(&e))?;
    let hu: Vec<f64> = pixels
        .to_vec_frame_with_options(
            0,
            &ConvertOptions::new().with_voi_lut(VoiLutOption::Identity),
        )
        .map_err(|e| err(&e))?;
    let (lo, hi) = match window {
        Some((centre, width)) => (centre - width / 2.0, centre + width / 2.0),
        None => hu
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            }),
    };
    let (w, h) = (pixels.columns(), pixels.rows());
    let grey: Vec<u8> = hu
        .iter()
        .take((w * h) as usize)
        .map(|&v| ((v - lo) / (hi - lo).max(1e-9) * 255.0).clamp(0.0, 255.0) as u8)
        .collect();
    let img = GrayImage::from_raw(w, h, grey)
        .ok_or_else(|| err(&format!("{w} × {h} pixels expected")))?;
    Ok(DynamicImage::ImageLuma8(img))
}

/// Draw `text` with its top-left at `(x, y)`.
fn draw_text(img: &mut RgbImage, text: &str, x: i32, y: i32, style: MonoTextStyle<'_, Rgb888>) {
    let _ = Text::with_baseline(
        text,
        Point::new(x, y),
        style,
        embedded_graphics::text::Baseline::Top,
    )
    .draw(&mut scanside_shared::explain::Canvas(img));
}
