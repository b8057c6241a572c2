//! A corpus of bad inputs, generated at test time from one team image.
//!
//! Nothing here is a hand-picked blob: every file is made by code below
//! from a real scan: truncations and bit flips of its JPEG, PNG, BMP and
//! TIFF encodings at evenly spread offsets, empty files, junk text and
//! random bytes under image names, files with the wrong extension, headers
//! that declare enormous images (decompression bombs), 1 × 1 and very
//! elongated images, 16-bit and alpha images, folders and symbolic links
//! where files are expected, a file without read permission, and cut-off
//! DICOM files. Some of them are perfectly decodable (a flipped bit in a
//! BMP's pixels, a 16-bit PNG): a bad input is anything a robust program
//! must survive, not only what it must refuse.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, RgbImage};

/// Offsets per encoding at which a file is truncated, and again at which
/// a byte is bit-flipped.
const OFFSETS: usize = 16;

/// One generated input.
#[derive(Clone, Debug)]
pub struct BadInput {
    /// The file (or folder, or link).
    pub path: PathBuf,
    /// What was done to make it.
    pub kind: String,
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

/// `n` offsets spread over `1..len`.
fn spread(len: usize, n: usize) -> Vec<usize> {
    (0..n).map(|k| 1 + k * (len - 2) / n.max(1)).collect()
}

/// A PNG header declaring `width × height` RGB, with one tiny IDAT: a
/// decoder that trusts the header would try to allocate it all.
fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    // zlib: an empty stored block.
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 1],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// PNG chunks carry a CRC-32 (ISO-HDLC), the audit log's too.
fn crc32(bytes: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(bytes)
}

/// A baseline JPEG's start-of-frame patched to declare `width × height`.
fn jpeg_bomb(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let sof = out
        .windows(2)
        .position(|w| w == [0xff, 0xc0])
        .expect("a baseline JPEG has an SOF0 marker");
    out[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    out
}

/// A BMP header patched to declare `width × height`.
fn bmp_bomb(bmp: &[u8], width: i32, height: i32) -> Vec<u8> {
    let mut out = bmp.to_vec();
    out[18..22].copy_from_slice(&width.to_le_bytes());
    out[22..26].copy_from_slice(&height.to_le_bytes());
    out
}

/// Write the corpus into `dir` (created) from the image `source`; returns
/// every input. `dicom` (optional) is a DICOM file to cut off.
pub fn generate(dir: &Path, source: &Path, dicom: Option<&Path>) -> Vec<BadInput> {
    std::fs::create_dir_all(dir).unwrap();
    let mut out = Vec::new();
    let mut put = |name: &str, bytes: &[u8], kind: String| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        out.push(BadInput { path, kind });
    };
    // By content: the team set has PNGs named `.jpg`.
    let scan = image::ImageReader::open(source)
        .unwrap()
        .with_guessed_format()
        .unwrap()
        .decode()
        .unwrap()
        .thumbnail(96, 96)
        .to_rgb8();
    let rgb = DynamicImage::ImageRgb8(scan.clone());

    for (ext, format) in [
        ("jpg", ImageFormat::Jpeg),
        ("png", ImageFormat::Png),
        ("bmp", ImageFormat::Bmp),
        ("tiff", ImageFormat::Tiff),
    ] {
        let bytes = encode(&rgb, format);
        for (k, at) in spread(bytes.len(), OFFSETS).into_iter().enumerate() {
            put(
                &format!("truncated {k} at {at}.{ext}"),
                &bytes[..at],
                format!("{ext} truncated at byte {at} of {}", bytes.len()),
            );
            let mut flipped = bytes.clone();
            flipped[at] ^= 1 << (k % 8);
            put(
                &format!("flipped {k} at {at}.{ext}"),
                &flipped,
                format!("{ext} with bit {} of byte {at} flipped", k % 8),
            );
        }
        put(&format!("empty.{ext}"), b"", format!("empty .{ext}"));
    }
    put("empty.dcm", b"", "empty .dcm".into());
    put("no extension", b"", "empty, no extension".into());

    // Junk under image names.
    for k in 0..12 {
        let text = "not an image; patient notes ".repeat(1 + k * 7);
        put(
            &format!("text {k}.jpg"),
            text.as_bytes(),
            "text named .jpg".into(),
        );
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ k as u64;
        let junk: Vec<u8> = (0..(64 << k).min(100_000))
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let ext = ["jpg", "png", "bmp", "tif"][k % 4];
        put(
            &format!("junk {k}.{ext}"),
            &junk,
            format!("random bytes named .{ext}"),
        );
    }
    // Magic numbers followed by junk.
    for (k, magic) in [
        &b"\xff\xd8\xff\xe0"[..],
        b"\x89PNG\r\n\x1a\n",
        b"BM",
        b"II*\0",
        b"MM\0*",
        b"GIF89a",
    ]
    .iter()
    .enumerate()
    {
        let mut bytes = magic.to_vec();
        bytes.extend(b"\0\0\0\x10garbage after a valid signature");
        put(
            &format!("magic {k}.jpg"),
            &bytes,
            "image signature then junk".into(),
        );
    }

    // The wrong extension on a good file.
    put(
        "png named.jpg",
        &encode(&rgb, ImageFormat::Png),
        "PNG named .jpg".into(),
    );
    put(
        "jpeg named.png",
        &encode(&rgb, ImageFormat::Jpeg),
        "JPEG named .png".into(),
    );
    put(
        "bmp named.tiff",
        &encode(&rgb, ImageFormat::Bmp),
        "BMP named .tiff".into(),
    );

    // Decompression bombs.
    let jpeg = encode(&rgb, ImageFormat::Jpeg);
    let bmp = encode(&rgb, ImageFormat::Bmp);
    for (w, h) in [
        (65_535, 65_535),
        (100_000, 1),
        (1, 100_000),
        (20_000, 20_000),
    ] {
        put(
            &format!("bomb {w}x{h}.png"),
            &png_bomb(w, h),
            format!("PNG declaring {w} × {h}"),
        );
        let (jw, jh) = (w.min(65_535) as u16, h.min(65_535) as u16);
        put(
            &format!("bomb {jw}x{jh}.jpg"),
            &jpeg_bomb(&jpeg, jw, jh),
            format!("JPEG declaring {jw} × {jh}"),
        );
        put(
            &format!("bomb {w}x{h}.bmp"),
            &bmp_bomb(&bmp, w as i32, h as i32),
            format!("BMP declaring {w} × {h}"),
        );
    }

    // Odd but valid shapes and pixel formats.
    let tiny = DynamicImage::ImageRgb8(RgbImage::from_pixel(1, 1, image::Rgb([90, 90, 90])));
    for (ext, format) in [
        ("jpg", ImageFormat::Jpeg),
        ("png", ImageFormat::Png),
        ("bmp", ImageFormat::Bmp),
        ("tiff", ImageFormat::Tiff),
    ] {
        put(
            &format!("1x1.{ext}"),
            &encode(&tiny, format),
            format!("1 × 1 {ext}"),
        );
    }
    for (w, h) in [(4000, 1), (1, 4000), (3000, 2)] {
        let long = DynamicImage::ImageRgb8(image::imageops::resize(
            &scan,
            w,
            h,
            image::imageops::FilterType::Nearest,
        ));
        put(
            &format!("long {w}x{h}.png"),
            &encode(&long, ImageFormat::Png),
            format!("{w} × {h}"),
        );
    }
    let luma16 = DynamicImage::ImageLuma16(rgb.to_luma16());
    let rgb16 = DynamicImage::ImageRgb16(rgb.to_rgb16());
    let rgba = DynamicImage::ImageRgba8(rgb.to_rgba8());
    let la = DynamicImage::ImageLumaA8(rgb.to_luma_alpha8());
    put(
        "grey16.png",
        &encode(&luma16, ImageFormat::Png),
        "16-bit grey PNG".into(),
    );
    put(
        "rgb16.png",
        &encode(&rgb16, ImageFormat::Png),
        "16-bit RGB PNG".into(),
    );
    put(
        "rgb16.tiff",
        &encode(&rgb16, ImageFormat::Tiff),
        "16-bit RGB TIFF".into(),
    );
    put(
        "rgba.png",
        &encode(&rgba, ImageFormat::Png),
        "RGBA PNG".into(),
    );
    put(
        "grey alpha.png",
        &encode(&la, ImageFormat::Png),
        "grey + alpha PNG".into(),
    );

    // Cut-off DICOM.
    if let Some(dicom) = dicom {
        let bytes = std::fs::read(dicom).unwrap();
        for (k, at) in spread(bytes.len(), OFFSETS).into_iter().enumerate() {
            put(
                &format!("dicom cut {k}.dcm"),
                &bytes[..at],
                format!("DICOM cut at byte {at} of {}", bytes.len()),
            );
        }
    }

    // Not files.
    let folder = dir.join("folder.jpg");
    std::fs::create_dir_all(&folder).unwrap();
    out.push(BadInput {
        path: folder,
        kind: "a folder named .jpg".into(),
    });
    for (name, target, kind) in [
        ("dangling.jpg", "nowhere.jpg", "a link to nothing"),
        ("to folder.jpg", "folder.jpg", "a link to a folder"),
        ("loop.jpg", "loop.jpg", "a link to itself"),
    ] {
        let path = dir.join(name);
        std::os::unix::fs::symlink(target, &path).unwrap();
        out.push(BadInput {
            path,
            kind: kind.into(),
        });
    }
    let locked = dir.join("no permission.jpg");
    std::fs::write(&locked, encode(&rgb, ImageFormat::Jpeg)).unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    out.push(BadInput {
        path: locked,
        kind: "mode 000 (readable anyway when the tests run as root)".into(),
    });
    out
}
