//! The shared decode → RGB → head crop → resize → normalise path (the crop
//! as `train --crop` models use it) on arbitrary bytes, as an image file and as
//! a `.dcm` file: never a panic that escapes it; a result is a tensor of
//! the right size with finite values.
//!
//! libfuzzer-sys installs a panic hook that aborts at once, even for a
//! panic the code under test catches on purpose (`shared/src/dicom.rs`
//! catches dicom-rs decoder panics and reports the file). The target puts
//! the default hook back: an escaping panic still reaches libfuzzer-sys's
//! `catch_unwind` and aborts as a finding, with its message and backtrace.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use scanside_shared::preprocess::{ContentCrop, DecodeLimits, PreprocessSpec, preprocess_bytes};

static DEFAULT_PANIC_HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    DEFAULT_PANIC_HOOK.call_once(|| drop(std::panic::take_hook()));
    // Small limits keep each run fast; the logic is the same.
    let limits = DecodeLimits {
        max_side: 2048,
        max_alloc_bytes: 64 << 20,
    };
    let spec = PreprocessSpec {
        crop: Some(ContentCrop::default()),
        ..PreprocessSpec::vgg16_caffe(32)
    };
    for name in ["scan.jpg", "scan.dcm"] {
        if let Ok(t) = preprocess_bytes(data, Path::new(name), &spec, &limits) {
            assert_eq!(t.data.len(), 32 * 32 * 3);
            assert!(t.data.iter().all(|v| v.is_finite()));
        }
    }
});
