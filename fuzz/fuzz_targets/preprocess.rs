//! The shared decode → RGB → resize → normalise path on arbitrary bytes,
//! as an image file and as a `.dcm` file: never a panic; a result is a
//! tensor of the right size with finite values.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use scanside_shared::preprocess::{DecodeLimits, PreprocessSpec, preprocess_bytes};

fuzz_target!(|data: &[u8]| {
    // Small limits keep each run fast; the logic is the same.
    let limits = DecodeLimits {
        max_side: 2048,
        max_alloc_bytes: 64 << 20,
    };
    let spec = PreprocessSpec::vgg16_caffe(32);
    for name in ["scan.jpg", "scan.dcm"] {
        if let Ok(t) = preprocess_bytes(data, Path::new(name), &spec, &limits) {
            assert_eq!(t.data.len(), 32 * 32 * 3);
            assert!(t.data.iter().all(|v| v.is_finite()));
        }
    }
});
