//! The exit statuses of both binaries (`scanside`, `scanside-device`), one
//! convention for scripts and for systemd (docs/commands.md, "Exit codes").

/// Everything asked for was done.
pub const SUCCESS: u8 = 0;
/// An error stopped the command (nothing, or only what it says, was done).
pub const FAILURE: u8 = 1;
/// The command line was wrong (clap's own status).
pub const USAGE: u8 = 2;
/// Some inputs failed (each has its error line) and the rest were done.
pub const PARTIAL: u8 = 3;
/// A quality gate said no: `retrain` did not promote its candidate, or
/// the int8 model failed its check. Nothing was written where the result
/// would have gone.
pub const REFUSED: u8 = 4;
/// The configuration is invalid (`EX_CONFIG` of sysexits.h); restarting
/// will not help, so the device's unit does not restart on it.
pub const CONFIG: u8 = 78;

/// The status for a batch of `inputs` of which `failed` failed:
/// [`SUCCESS`], [`PARTIAL`], or [`FAILURE`] when none succeeded.
pub fn for_batch(inputs: usize, failed: usize) -> u8 {
    match failed {
        0 => SUCCESS,
        f if f < inputs => PARTIAL,
        _ => FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_partial_only_when_some_inputs_succeeded() {
        assert_eq!(for_batch(3, 0), SUCCESS);
        assert_eq!(for_batch(3, 1), PARTIAL);
        assert_eq!(for_batch(3, 3), FAILURE);
        assert_eq!(for_batch(0, 0), SUCCESS);
    }
}
