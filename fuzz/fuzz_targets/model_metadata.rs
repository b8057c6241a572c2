//! The model-metadata parsers: arbitrary bytes as an ONNX file
//! (`parse_onnx` + `manifest_of`), and arbitrary key/value pairs as
//! `scanside.*` metadata (`ModelManifest::from_props`). Never a panic; a
//! manifest that parses writes back to the same manifest.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use scanside_shared::classifier::{manifest_of, parse_onnx};
use scanside_shared::manifest::ModelManifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(proto) = parse_onnx(data, Path::new("model.onnx")) {
        let _ = manifest_of(&proto);
    }
    // NUL-separated key, value, key, value …; keys get the prefix.
    let text = String::from_utf8_lossy(data);
    let parts: Vec<&str> = text.split('\0').collect();
    let pairs: Vec<(String, &str)> = parts
        .chunks(2)
        .filter(|kv| kv.len() == 2)
        .map(|kv| (format!("scanside.{}", kv[0]), kv[1]))
        .collect();
    if let Ok(m) = ModelManifest::from_props(pairs.iter().map(|(k, v)| (k.as_str(), *v))) {
        let props = m.to_props();
        let again =
            ModelManifest::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .expect("a manifest reads back what it writes");
        assert_eq!(again.model_id, m.model_id);
        assert_eq!(again.threshold.to_bits(), m.threshold.to_bits());
    }
});
