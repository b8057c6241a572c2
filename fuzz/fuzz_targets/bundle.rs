//! The export-bundle reader on arbitrary bytes: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scanside_shared::bundle::parse_bundle;

fuzz_target!(|data: &[u8]| {
    let _ = parse_bundle(data);
});
