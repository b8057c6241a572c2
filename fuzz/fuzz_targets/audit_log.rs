//! The audit-log reader on arbitrary bytes: never a panic, and every record
//! it accepts encodes back to a frame that reads as the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scanside_shared::audit::{encode_frame, parse_log};

fuzz_target!(|data: &[u8]| {
    let log = parse_log(data);
    for record in &log.records {
        let again = parse_log(&encode_frame(record));
        assert_eq!(again.records.as_slice(), std::slice::from_ref(record));
    }
});
