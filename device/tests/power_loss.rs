//! SIGKILL and power cuts against the audit log.
//!
//! This test binary is its own child: run with `SCANSIDE_AUDIT_CHILD=LOG`
//! it appends records to `LOG` in a loop through the firmware's
//! `AuditWriter` (append, `fdatasync`) and prints each record's sequence
//! number once `append` has returned, i.e. once the firmware would count
//! it as recorded. The parent kills it with SIGKILL at pseudo-random
//! moments, 200 times, and after every kill reads the log with the
//! firmware's reader: every sequence number the child reported must be
//! there, intact, in order. After every fourth kill the parent also leaves
//! a torn frame at the end (what a power cut in the middle of a write
//! leaves), which the reader must report and skip, and the next writer
//! must write past. The log is never repaired by hand.
//!
//! (A plain `harness = false` test: the child mode is not a test of its
//! own.)

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use scanside_shared::audit::{
    AUDIT_FORMAT_VERSION, AuditEvent, AuditRecord, AuditWriter, ErrorKind, encode_frame, read_log,
};

const CHILD_ENV: &str = "SCANSIDE_AUDIT_CHILD";
const KILLS: usize = 200;

fn record(seq: u64) -> AuditRecord {
    AuditRecord {
        format_version: AUDIT_FORMAT_VERSION,
        unix_ms: seq,
        firmware_version: scanside_device::VERSION.into(),
        event: AuditEvent::Error {
            scan: None,
            model: None,
            kind: ErrorKind::NoScan,
            detail: format!("record {seq}"),
        },
    }
}

/// The child: append until killed, reporting each record once written.
fn append_forever(log: &Path, first: u64) -> ! {
    let mut writer = AuditWriter::open(log).expect("open the log");
    let mut out = std::io::stdout().lock();
    for seq in first.. {
        writer.append(&record(seq)).expect("append");
        writeln!(out, "{seq}")
            .and_then(|()| out.flush())
            .expect("report");
    }
    unreachable!()
}

/// A small deterministic generator for kill delays and torn lengths.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn main() {
    if let Some(log) = std::env::var_os(CHILD_ENV) {
        let first = std::env::var("SCANSIDE_AUDIT_FIRST").map_or(0, |v| v.parse().unwrap());
        append_forever(Path::new(&log), first);
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let me = std::env::current_exe().unwrap();
    let mut rng = XorShift(0x5ca9_51de);
    let mut reported: Vec<u64> = Vec::new();
    let mut torn = 0;
    let mut next = 0u64;
    for kill in 0..KILLS {
        let mut child = Command::new(&me)
            .env(CHILD_ENV, &log)
            .env("SCANSIDE_AUDIT_FIRST", next.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.parse::<u64>().ok())
                .collect::<Vec<u64>>()
        });
        std::thread::sleep(Duration::from_micros(2_000 + rng.next() % 30_000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let seen = reader.join().unwrap();
        // The record after the last reported one may be on disk unreported.
        next = seen.last().map_or(next + 1, |last| last + 2);
        reported.extend(seen);

        if kill % 4 == 3 {
            // A power cut mid-write: part of a frame, no delimiter.
            let frame = encode_frame(&record(next));
            let cut = 1 + (rng.next() as usize) % (frame.len() - 1);
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            f.write_all(&frame[..cut]).unwrap();
            next += 1;
            torn += 1;
        }

        let contents = read_log(&log).unwrap();
        let on_disk: std::collections::BTreeSet<u64> =
            contents.records.iter().map(|r| r.unix_ms).collect();
        for seq in &reported {
            assert!(
                on_disk.contains(seq),
                "kill {kill}: record {seq} was reported written but is not in the log"
            );
        }
        for r in &contents.records {
            assert_eq!(*r, record(r.unix_ms), "kill {kill}: record changed");
        }
        let order: Vec<u64> = contents.records.iter().map(|r| r.unix_ms).collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "kill {kill}: out of order"
        );
        if kill % 4 == 3 {
            assert!(
                contents.torn_tail.is_some(),
                "kill {kill}: the torn frame was not reported"
            );
        }
        // Earlier torn frames, closed by the next writer's delimiter, are
        // reported as damaged and skipped; nothing else is.
        let expected_damaged = torn - usize::from(kill % 4 == 3);
        assert!(
            contents.damaged.len() <= expected_damaged,
            "kill {kill}: {} damaged frames, {expected_damaged} torn writes",
            contents.damaged.len()
        );
    }
    assert!(
        reported.len() > KILLS,
        "the children wrote too little to test anything ({} records)",
        reported.len()
    );
    println!(
        "power_loss: {KILLS} SIGKILLs, {torn} torn writes, {} reported records all intact",
        reported.len()
    );
}
