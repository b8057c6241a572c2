//! Soak of everything around inference: many scans through read → hash →
//! decode → preprocess → audit record, with the model stubbed out.
//!
//! `cargo run --release -p scanside-device --example soak_pipeline -- COUNT IMAGE…`
//!
//! Cycles through the images COUNT times in all, the way the appliance
//! handles a scan except for the network (the probability is a stand-in
//! computed from the tensor), appending every record (fsynced) to an audit
//! log in a temporary folder. Prints the resident memory (VmRSS) every
//! tenth of the run and the growth from the first tenth to the end, which
//! must stay under 5 MB. `bench/soak.sh` runs it; see docs/reliability.md,
//! "Soak".

use std::path::PathBuf;
use std::time::Instant;

use scanside_shared::audit::{
    AUDIT_FORMAT_VERSION, AuditEvent, AuditRecord, AuditWriter, Decision, ModelRef, ScanRef,
};
use scanside_shared::preprocess::{DecodeLimits, PreprocessSpec, preprocess_bytes};
use scanside_shared::sha256;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args
        .next()
        .and_then(|c| c.parse().ok())
        .expect("usage: soak_pipeline COUNT IMAGE…");
    let images: Vec<(PathBuf, Vec<u8>)> = args
        .map(PathBuf::from)
        .map(|p| {
            let bytes = std::fs::read(&p).expect("readable image");
            (p, bytes)
        })
        .collect();
    assert!(!images.is_empty(), "usage: soak_pipeline COUNT IMAGE…");
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut audit = AuditWriter::open(&dir.path().join("audit.log")).expect("audit log");
    let spec = PreprocessSpec::vgg16_caffe(224);
    let limits = DecodeLimits::default();
    let model = ModelRef {
        id: "stub".into(),
        sha256: [0; 32],
    };
    let step = (count / 10).max(1);
    let start = Instant::now();
    let mut first = None;
    for i in 0..count {
        let (path, bytes) = &images[i % images.len()];
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tensor = preprocess_bytes(bytes, path, &spec, &limits).expect("a good image");
        // Stand-in for the network: a number from the tensor, in [0, 1].
        let probability = (tensor.data.iter().sum::<f32>().abs() % 1.0).clamp(0.0, 1.0);
        audit
            .append(&AuditRecord {
                format_version: AUDIT_FORMAT_VERSION,
                unix_ms: i as u64,
                firmware_version: scanside_device::VERSION.into(),
                event: AuditEvent::Classified {
                    scan: ScanRef {
                        name_sha256: sha256(name.as_bytes()),
                        content_sha256: sha256(bytes),
                    },
                    model: model.clone(),
                    probability,
                    decision: if probability >= 0.5 {
                        Decision::TumourSuspected
                    } else {
                        Decision::NoTumour
                    },
                    latency_ms: 0,
                },
            })
            .expect("append");
        if (i + 1) % step == 0 {
            let rss = rss_mib();
            let first = *first.get_or_insert(rss);
            println!(
                "{:>7} scans  {:>7.1} s  RSS {rss:.1} MiB  (+{:.1} MiB since {step} scans)",
                i + 1,
                start.elapsed().as_secs_f64(),
                rss - first
            );
        }
    }
    let growth = rss_mib() - first.unwrap_or_else(rss_mib);
    println!(
        "{count} scans in {:.1} s ({:.2} ms per scan); RSS growth after the first tenth: {growth:.1} MiB",
        start.elapsed().as_secs_f64(),
        start.elapsed().as_secs_f64() * 1e3 / count as f64
    );
}
