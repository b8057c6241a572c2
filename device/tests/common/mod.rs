//! Helpers the device's binary tests share.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The team's data folder, read in place: `$SCANSIDE_SHARED/data`, by
/// default `../shared/data` beside the checkout.
pub fn team_data() -> PathBuf {
    std::env::var_os("SCANSIDE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared"))
        .join("data")
}

/// Spawn `command` with stdin piped (the simulated button), stdout
/// discarded, and its stderr lines (log and LED lines) delivered on the
/// returned channel as they are written.
pub fn spawn_with_stderr_lines(command: &mut Command) -> (Child, Receiver<String>) {
    let mut child = command
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("scanside-device starts");
    let (tx, lines) = channel();
    let pipe = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, lines)
}
