//! `scanside-device`: the firmware for the box beside the scanner.
//!
//! Not built yet: the device issue (button/LED state machine over
//! embedded-hal, inbox, audit log, board backends) fills this crate. Until
//! then the binary says so instead of pretending to work.

fn main() -> std::process::ExitCode {
    eprintln!(
        "scanside-device {}: the device firmware is not implemented yet; \
         use `scanside classify` on the host",
        scanside_device::VERSION
    );
    std::process::ExitCode::FAILURE
}
