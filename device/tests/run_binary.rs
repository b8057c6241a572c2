//! The real `scanside-device run` binary on the simulated board, as systemd
//! would run it: readiness and watchdog pings on a notify socket, a press
//! on stdin, the LED sequence read from stderr, SIGTERM to stop, then the
//! audit log and the inbox checked on disk.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use scanside_shared::audit::{AuditEvent, Decision, ErrorKind, read_log};
use scanside_shared::shipped::SHIPPED_MODEL_FILE;

mod common;
use common::{spawn_with_stderr_lines, team_data, workspace};

fn team_scan(rel: &str) -> PathBuf {
    let p = team_data().join("brain-mri").join(rel);
    assert!(p.is_file(), "team scan {} not found", p.display());
    p
}

/// The running binary, its stderr lines and its systemd messages.
struct Device {
    child: Child,
    stderr: Receiver<String>,
    notify: UnixDatagram,
    lines: Vec<String>,
    messages: Vec<String>,
}

impl Device {
    fn start(dir: &Path, model_sha256: &str) -> Device {
        let model = workspace().join("models").join(SHIPPED_MODEL_FILE);
        let config = dir.join("device.toml");
        std::fs::write(
            &config,
            format!(
                "model = {model:?}\nmodel_sha256 = \"{model_sha256}\"\ninbox = {:?}\n\
                 audit_log = {:?}\nboard = \"sim\"\n[timing]\ndebounce_ms = 20\n\
                 long_press_ms = 1000\nresult_ms = 600\npoll_ms = 5\ninbox_settle_ms = 0\n",
                dir.join("inbox"),
                dir.join("audit.log")
            ),
        )
        .unwrap();
        Device::spawn(&config, dir, &workspace())
    }

    /// Run the binary on `config` in the working directory `cwd`, with a
    /// notify socket in `dir`.
    fn spawn(config: &Path, dir: &Path, cwd: &Path) -> Device {
        let socket = dir.join("notify.sock");
        let notify = UnixDatagram::bind(&socket).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        // `exec` keeps the shell's PID, so WATCHDOG_PID names the firmware.
        let (child, stderr) = spawn_with_stderr_lines(
            Command::new("sh")
                .arg("-c")
                .arg(r#"WATCHDOG_PID=$$ exec "$0" run --config "$1""#)
                .arg(env!("CARGO_BIN_EXE_scanside-device"))
                .arg(config)
                .current_dir(cwd)
                .env("NOTIFY_SOCKET", &socket)
                .env("WATCHDOG_USEC", "200000"),
        );
        Device {
            child,
            stderr,
            notify,
            lines: Vec::new(),
            messages: Vec::new(),
        }
    }

    /// Collect output until `done` holds for a stderr line or a systemd
    /// message (or fail after `limit`).
    fn wait_for(&mut self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) {
        let start = Instant::now();
        loop {
            while let Ok(line) = self.stderr.try_recv() {
                let hit = done(&line);
                self.lines.push(line);
                if hit {
                    return;
                }
            }
            let mut buf = [0u8; 512];
            if let Ok(n) = self.notify.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = done(&message);
                self.messages.push(message);
                if hit {
                    return;
                }
            }
            assert!(
                start.elapsed() < limit,
                "no {what} within {limit:?}; stderr:\n{}\nsystemd: {:?}",
                self.lines.join("\n"),
                self.messages
            );
        }
    }

    fn press(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// SIGTERM, then wait for a clean exit and drain the output.
    fn stop(mut self) -> (Vec<String>, Vec<String>) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "exit status {status}");
        self.wait_for("STOPPING=1", Duration::from_secs(5), |m| {
            m.contains("STOPPING=1")
        });
        // The reader thread ends at EOF.
        std::thread::sleep(Duration::from_millis(100));
        self.lines.extend(self.stderr.try_iter());
        (self.lines, self.messages)
    }
}

/// (green, amber, red) from a `leds: green=1 amber=0 red=0` line.
fn lamps(line: &str) -> Option<(bool, bool, bool)> {
    let rest = line.strip_prefix("leds: ")?;
    let on: Vec<bool> = rest.split(' ').map(|kv| kv.ends_with("=1")).collect();
    Some((on[0], on[1], on[2]))
}

const SHIPPED_SHA256: &str = "383201995106c582ea756ea52d4c9af4a2b906155fae49cc225c4f3b81f843ab";

/// The README's "try the box on a laptop" command, as written: the example
/// config verbatim (its real-wiring polarity keys included), run from the
/// workspace root. A scan in its inbox and one press give a result LED and
/// an audit record.
#[test]
fn the_readme_quick_start_classifies_a_scan() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let command = "-- run --config device/device.example.toml";
    assert!(
        readme.contains(command),
        "the README no longer says `{command}`"
    );
    let text = std::fs::read_to_string(workspace().join("device/device.example.toml")).unwrap();
    let value = |key: &str| {
        let line = text
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no `{key}` in the example config"));
        PathBuf::from(line.split('"').nth(1).unwrap())
    };
    let (inbox, audit) = (value("inbox"), value("audit_log"));
    let before = read_log(&audit).map_or(0, |l| l.records.len());
    let dir = tempfile::tempdir().unwrap();
    let mut device = Device::spawn(
        Path::new("device/device.example.toml"),
        dir.path(),
        &workspace(),
    );
    device.wait_for("READY=1", Duration::from_secs(120), |m| {
        m.contains("READY=1")
    });
    let name = format!("quickstart-{}.jpg", std::process::id());
    std::fs::copy(team_scan("yes/Y1.jpg"), inbox.join(&name)).unwrap();
    // The example config waits `inbox_settle_ms` for a file to stop changing.
    std::thread::sleep(Duration::from_millis(2500));
    device.press();
    device.wait_for("a classification", Duration::from_secs(120), |l| {
        l.starts_with("classified ")
    });
    let (lines, _) = device.stop();
    assert!(
        lines.iter().any(|l| l.contains("ignored here")),
        "the sim board says it ignores the polarity keys: {lines:?}"
    );
    let seq: Vec<_> = lines.iter().filter_map(|l| lamps(l)).collect();
    assert!(seq.contains(&(false, false, true)), "red expected: {seq:?}");
    let log = read_log(&audit).unwrap();
    assert_eq!(log.records.len(), before + 1, "{:?}", log.records);
    assert!(matches!(
        &log.records[before].event,
        AuditEvent::Classified {
            decision: Decision::TumourSuspected,
            ..
        }
    ));
    let _ = std::fs::remove_file(inbox.join("processed").join(&name));

    // `log` prints record times as UTC date-times.
    let o = Command::new(env!("CARGO_BIN_EXE_scanside-device"))
        .arg("log")
        .arg(&audit)
        .output()
        .unwrap();
    assert!(o.status.success());
    let last = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let (time, rest) = last.split_once(' ').unwrap();
    assert!(rest.starts_with("classified scan "), "{last}");
    let t: jiff::Timestamp = time.parse().unwrap_or_else(|e| panic!("{last}: {e}"));
    assert!(time.ends_with('Z'), "{last}");
    let ms = u64::try_from(t.as_millisecond()).unwrap();
    assert_eq!(ms, log.records[before].unix_ms, "{last}");
}

#[test]
fn run_classifies_on_a_press_pings_the_watchdog_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut device = Device::start(dir.path(), SHIPPED_SHA256);
    device.wait_for("READY=1", Duration::from_secs(120), |m| {
        m.contains("READY=1")
    });
    assert!(device.messages.last().unwrap().contains("STATUS=ready"));

    let inbox = dir.path().join("inbox");
    std::fs::copy(team_scan("yes/Y1.jpg"), inbox.join("Y1.jpg")).unwrap();
    device.press();
    device.wait_for("a classification", Duration::from_secs(120), |l| {
        l.starts_with("classified ")
    });
    device.wait_for("a watchdog ping", Duration::from_secs(5), |m| {
        m.contains("WATCHDOG=1")
    });
    let (lines, _messages) = device.stop();

    // The LEDs: idle heartbeat, busy amber, steady red, dark at the end.
    let seq: Vec<_> = lines.iter().filter_map(|l| lamps(l)).collect();
    let busy = seq.iter().position(|&l| l == (false, true, false));
    let red = seq.iter().position(|&l| l == (false, false, true));
    assert!(
        matches!((busy, red), (Some(b), Some(r)) if b < r),
        "amber then red expected: {seq:?}"
    );
    assert_eq!(seq.last(), Some(&(false, false, false)), "dark at exit");
    // No file name in the log lines: scans are named by a hash.
    assert!(!lines.iter().any(|l| l.contains("Y1")), "{lines:?}");

    let log = read_log(&dir.path().join("audit.log")).unwrap();
    assert!(log.torn_tail.is_none() && log.damaged.is_empty());
    assert_eq!(log.records.len(), 1, "{:?}", log.records);
    let AuditEvent::Classified {
        decision, model, ..
    } = &log.records[0].event
    else {
        panic!("{:?}", log.records[0]);
    };
    assert_eq!(*decision, Decision::TumourSuspected);
    assert_eq!(hex::encode(model.sha256), SHIPPED_SHA256);
    assert!(inbox.join("processed/Y1.jpg").is_file());
    assert!(!inbox.join("Y1.jpg").exists());

    // Export: the record, no scan (the archive is off), said so; --since
    // filters; a bad --since is refused by name.
    let export = |since: &str| {
        Command::new(env!("CARGO_BIN_EXE_scanside-device"))
            .args(["export", "--config"])
            .arg(dir.path().join("device.toml"))
            .args(["--since", since, "--out"])
            .arg(dir.path().join("box.scanside"))
            .output()
            .unwrap()
    };
    let o = export("1970-01-01");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        said.contains("1 records, 0 scans, 0 overlays")
            && said.contains("1 referenced scans not in the archive"),
        "{said}"
    );
    let bundle = std::fs::read(dir.path().join("box.scanside")).unwrap();
    let read = scanside_shared::bundle::parse_bundle(&bundle);
    assert_eq!(read.manifest.unwrap().records, 1);
    let o = export("2999-01-01");
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 records"));
    let o = export("yesterday");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("`yesterday`"));
}

#[test]
fn run_with_a_tampered_model_blinks_red_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = "1".repeat(64);
    let mut device = Device::start(dir.path(), &wrong);
    device.wait_for("READY=1", Duration::from_secs(120), |m| {
        m.contains("READY=1")
    });
    let status = device.messages.last().unwrap().clone();
    assert!(status.contains("STATUS=out of service"), "{status}");
    assert!(status.contains("SHA-256"), "{status}");
    device.press();
    // Let it run: red keeps blinking, the press does nothing.
    device.wait_for("red blinking", Duration::from_secs(10), |l| {
        l == "leds: green=0 amber=0 red=0"
    });
    let (lines, _) = device.stop();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("error: out of service") && l.contains(&wrong)),
        "{lines:?}"
    );
    let seq: Vec<_> = lines.iter().filter_map(|l| lamps(l)).collect();
    assert!(seq.iter().all(|&(g, a, _)| !g && !a), "{seq:?}");
    let log = read_log(&dir.path().join("audit.log")).unwrap();
    assert_eq!(log.records.len(), 1);
    assert!(matches!(
        log.records[0].event,
        AuditEvent::Error {
            kind: ErrorKind::ModelFailure,
            ..
        }
    ));
}

/// A bad configuration exits with 78 (EX_CONFIG), which the unit does not
/// restart on, for `run` and for `config check`; a good one passes the
/// check without starting anything.
#[test]
fn a_bad_config_exits_78_and_config_check_says_why() {
    let bin = env!("CARGO_BIN_EXE_scanside-device");
    let example = workspace().join("device").join("device.example.toml");
    let o = Command::new(bin)
        .args(["config", "check", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("valid"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("device.toml");
    std::fs::write(
        &bad,
        "model = \"m.onnx\"\nmodel_sha256 = \"abc\"\ninbox = \"inbox\"\n\
         audit_log = \"audit.log\"\nboard = \"sim\"\n",
    )
    .unwrap();
    let missing = dir.path().join("no-such.toml");
    for (config, why) in [(&bad, "model_sha256"), (&missing, "cannot read")] {
        for args in [&["config", "check"][..], &["run"][..]] {
            let o = Command::new(bin)
                .args(args)
                .arg("--config")
                .arg(config)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert_eq!(
                o.status.code(),
                Some(78),
                "{args:?} {}: {stderr}",
                config.display()
            );
            assert!(stderr.contains(why), "{stderr}");
        }
    }
    let unit = std::fs::read_to_string(
        workspace()
            .join("device")
            .join("systemd")
            .join("scanside-device.service"),
    )
    .unwrap();
    assert!(unit.contains("RestartPreventExitStatus=78"), "{unit}");
}
