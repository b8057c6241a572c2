//! The device configuration parser on arbitrary text: never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use scanside_device::config::DeviceConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = DeviceConfig::parse(text, Path::new("device.toml"));
    }
});
