//! DICOM decoding against pictures computed independently with pydicom and
//! numpy (`tests/dicom_golden/make_golden.py`), on the project's synthetic
//! fixtures and on the team's MR samples in `../shared/data/dicom` (read in
//! place, never copied).

use std::path::{Path, PathBuf};

use scanside_shared::Error;
use scanside_shared::dicom::{FrameChoice, Voi, decode_dicom, supported_transfer_syntaxes};
use scanside_shared::preprocess::{DecodeLimits, PreprocessSpec, preprocess_file};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    file: String,
    #[serde(rename = "where")]
    location: String,
    refused: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    channels: Option<u8>,
    mean: Option<f64>,
    window: Option<String>,
    sha256: Option<String>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dicom_golden")
}

fn team_samples() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/dicom");
    assert!(
        dir.is_dir(),
        "the team's DICOM samples are expected at {} (see the README)",
        dir.display()
    );
    dir
}

fn cases() -> Vec<Case> {
    serde_json::from_slice(&std::fs::read(fixtures().join("golden.json")).unwrap()).unwrap()
}

fn path_of(case: &Case) -> PathBuf {
    match case.location.as_str() {
        "team" => team_samples().join(&case.file),
        _ => fixtures().join(&case.file),
    }
}

fn decode(
    path: &Path,
    frame: FrameChoice,
) -> scanside_shared::Result<scanside_shared::dicom::DicomSlice> {
    decode_dicom(
        &std::fs::read(path).unwrap(),
        path,
        &DecodeLimits::default(),
        frame,
    )
}

#[test]
fn pictures_match_pydicom_and_numpy() {
    let cases = cases();
    assert!(cases.iter().filter(|c| c.location == "team").count() >= 8);
    let mut compared = 0;
    for case in cases.iter().filter(|c| c.refused.is_none()) {
        let path = path_of(case);
        let slice =
            decode(&path, FrameChoice::Middle).unwrap_or_else(|e| panic!("{}: {e}", case.file));
        let image = &slice.image;
        assert_eq!(
            (image.width(), image.height(), image.color().channel_count()),
            (
                case.width.unwrap(),
                case.height.unwrap(),
                case.channels.unwrap()
            ),
            "{}",
            case.file
        );
        let bytes = image.as_bytes();
        let mean = bytes.iter().map(|&b| f64::from(b)).sum::<f64>() / bytes.len() as f64;
        assert_eq!(
            scanside_shared::sha256_hex(bytes),
            case.sha256.clone().unwrap(),
            "{}: picture differs from pydicom/numpy (mean {mean:.3} vs {:.3}, window {:?} vs {})",
            case.file,
            case.mean.unwrap(),
            slice.voi,
            case.window.clone().unwrap()
        );
        compared += 1;
    }
    assert!(compared >= 13, "compared {compared} pictures");
}

#[test]
fn refusals_name_the_file_and_the_reason() {
    for case in cases().iter().filter(|c| c.refused.is_some()) {
        let path = path_of(case);
        let err = decode(&path, FrameChoice::Middle).expect_err(&case.file);
        let msg = err.to_string();
        assert!(msg.contains(&case.file), "{msg}");
        match case.refused.as_deref().unwrap() {
            "modality" => {
                assert!(matches!(err, Error::Refused { .. }), "{msg}");
                assert!(
                    msg.contains("modality is CT") && msg.contains("MR"),
                    "{msg}"
                );
            }
            "no pixel data" => {
                assert!(matches!(err, Error::Refused { .. }), "{msg}");
                assert!(msg.contains("no Pixel Data"), "{msg}");
            }
            "enhanced" => {
                assert!(matches!(err, Error::Refused { .. }), "{msg}");
                assert!(msg.contains("functional-group"), "{msg}");
            }
            "transfer syntax" => {
                assert!(matches!(err, Error::Refused { .. }), "{msg}");
                assert!(msg.contains("transfer syntax"), "{msg}");
            }
            "truncated" => {
                assert!(matches!(err, Error::Decode { .. }), "{msg}");
                assert!(msg.contains("truncated"), "{msg}");
            }
            other => panic!("unknown refusal {other}"),
        }
    }
}

#[test]
fn every_team_transfer_syntax_decodes_to_the_same_picture() {
    let dir = team_samples();
    let reference = decode(&dir.join("MR_small.dcm"), FrameChoice::Middle).unwrap();
    let supported = supported_transfer_syntaxes();
    for name in [
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
    ] {
        let slice = decode(&dir.join(name), FrameChoice::Middle).unwrap();
        assert_eq!(slice.image, reference.image, "{name}");
        assert!(
            supported
                .iter()
                .any(|(uid, _)| *uid == slice.transfer_syntax),
            "{name}: {} not listed as supported",
            slice.transfer_syntax
        );
        assert_ne!(slice.transfer_syntax, reference.transfer_syntax, "{name}");
    }
}

#[test]
fn middle_frame_by_default_and_any_frame_on_request() {
    let path = fixtures().join("multiframe_no_window.dcm");
    let middle = decode(&path, FrameChoice::Middle).unwrap();
    assert_eq!(middle.frames, (3, 1));
    let one = decode(&path, FrameChoice::Index(1)).unwrap();
    assert_eq!(one.image, middle.image);
    let zero = decode(&path, FrameChoice::Index(0)).unwrap();
    assert_ne!(zero.image, middle.image);
    assert!(matches!(middle.voi, Some(Voi::Stretch { .. })));
    let err = decode(&path, FrameChoice::Index(3))
        .unwrap_err()
        .to_string();
    assert!(err.contains("frame 3") && err.contains("has 3"), "{err}");
}

#[test]
fn images_beyond_the_limits_are_refused_before_decoding() {
    let path = team_samples().join("MR_small.dcm");
    let limits = DecodeLimits {
        max_side: 32,
        max_alloc_bytes: 1 << 20,
    };
    let err = decode_dicom(
        &std::fs::read(&path).unwrap(),
        &path,
        &limits,
        FrameChoice::Middle,
    )
    .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("64 × 64"), "{err}");
}

#[test]
fn no_patient_data_leaves_the_decoder() {
    // The fixtures carry a synthetic patient name, ID and birth date.
    let slice = decode(&fixtures().join("mono1_rescale.dcm"), FrameChoice::Middle).unwrap();
    let shown = format!("{slice:?}");
    for secret in ["Synthetic^Phantom", "SYNTH-0001", "19700101"] {
        assert!(!shown.contains(secret), "{secret} leaked");
    }
    assert!(slice.study_uid_sha256.is_some() && slice.sop_instance_uid_sha256.is_some());
}

#[test]
fn the_shared_path_reads_dicom_by_content_and_by_name() {
    // By content: the team sample, through the ordinary preprocessing call.
    let spec = PreprocessSpec::vgg16_caffe(32);
    let limits = DecodeLimits::default();
    let dir = team_samples();
    let tensor = preprocess_file(&dir.join("MR_small.dcm"), &spec, &limits).unwrap();
    assert_eq!(tensor.shape, [1, 32, 32, 3]);
    // Grey picture: the three channels of a pixel differ only by the means.
    let first = &tensor.data[..3];
    assert!(((first[0] + 103.939) - (first[2] + 123.68)).abs() < 1e-4);
    // By name: a `.dcm` that is not DICOM gets a DICOM error, not "unknown format".
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("scan 1.dcm");
    std::fs::write(&fake, vec![7u8; 300]).unwrap();
    let err = preprocess_file(&fake, &spec, &limits)
        .unwrap_err()
        .to_string();
    assert!(err.contains("scan 1.dcm") && err.contains("DICM"), "{err}");
}

/// From fuzzing (`fuzz/fuzz_targets/preprocess.rs`): an element whose
/// declared length (2.9 GB, 4 GB, 1 MB) runs past the end of the file.
/// The DICOM parser would allocate and zero-fill it before reading (4 GB
/// resident for a file of a few hundred bytes); `dicom_lengths` refuses it
/// first, naming the element.
#[test]
fn a_value_length_beyond_the_end_of_the_file_is_an_error() {
    let meta = dicom_object::FileMetaTableBuilder::new()
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.4")
        .media_storage_sop_instance_uid("1.2.3.4")
        .transfer_syntax("1.2.840.10008.1.2.1")
        .build()
        .unwrap();
    let mut bytes = vec![0u8; 128];
    bytes.extend_from_slice(b"DICM");
    meta.write(&mut bytes).unwrap();
    // (0008,0060) Modality CS "MR", explicit VR little endian.
    bytes.extend_from_slice(&[0x08, 0x00, 0x60, 0x00, b'C', b'S', 2, 0, b'M', b'R']);
    for length in [0xAD4C_0000u32, 0xFFFF_FFF0, 1 << 20] {
        let mut file = bytes.clone();
        // (7FE0,0010) Pixel Data OB, the declared length, then 16 bytes.
        file.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
        file.extend_from_slice(&length.to_le_bytes());
        file.extend_from_slice(&[7u8; 16]);
        let err = decode_dicom(
            &file,
            Path::new("claims too much.dcm"),
            &DecodeLimits::default(),
            FrameChoice::Middle,
        )
        .expect_err("a value longer than the file");
        let msg = err.to_string();
        assert!(msg.contains("claims too much.dcm"), "{msg}");
        assert!(
            msg.contains("(7FE0,0010)") && msg.contains(&length.to_string()),
            "{msg}"
        );
    }
}

/// From fuzzing (`scripts/fuzz.sh 1800 preprocess`, 2026-11-27): an RLE
/// Lossless object whose segment decodes to fewer bytes than the image
/// needs. dicom-transfer-syntax-registry 0.10.1's RLE reader then indexes
/// past the decoded segment and panics; the decoder must turn that into an
/// error naming the file (the device classifies the next scan; the host
/// skips the file), not take the process down. Built from the team's RLE
/// sample, read in place: its first segment's PackBits bytes become
/// no-ops (`0x80`), which decode to nothing.
#[test]
fn a_short_rle_segment_is_an_error_not_a_panic() {
    let mut file = std::fs::read(team_samples().join("MR_small_RLE.dcm")).unwrap();
    // Pixel Data (7FE0,0010) OB with undefined length, then the basic
    // offset table item and the first fragment item (FFFE,E000).
    let find = |from: usize, pattern: &[u8]| {
        from + file[from..]
            .windows(pattern.len())
            .position(|w| w == pattern)
            .expect("pattern in the RLE sample")
    };
    let pixel_data = find(0, &[0xE0, 0x7F, 0x10, 0x00, b'O', b'B']);
    let item = [0xFE, 0xFF, 0x00, 0xE0];
    let offset_table = find(pixel_data, &item);
    let table_len =
        u32::from_le_bytes(file[offset_table + 4..offset_table + 8].try_into().unwrap());
    let fragment_item = find(offset_table + 8 + table_len as usize, &item);
    let fragment = fragment_item + 8;
    let offset = |i: usize| {
        let at = fragment + 4 + 4 * i;
        u32::from_le_bytes(file[at..at + 4].try_into().unwrap()) as usize
    };
    let segment = fragment + offset(0)..fragment + offset(1);
    assert!(segment.len() > 16, "the sample's first RLE segment");
    file[segment].fill(0x80);

    let err = decode_dicom(
        &file,
        Path::new("short segment.dcm"),
        &DecodeLimits::default(),
        FrameChoice::Middle,
    )
    .expect_err("a segment shorter than the image");
    let msg = err.to_string();
    assert!(msg.contains("short segment.dcm"), "{msg}");
    assert!(msg.contains("pixel data"), "{msg}");
}
