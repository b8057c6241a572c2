//! The audit log's wire format, frozen byte for byte, and its recovery from
//! a write cut short at any byte.

use scanside_shared::audit::{
    AUDIT_FORMAT_VERSION, AuditEvent, AuditRecord, AuditWriter, Decision, ErrorKind, ModelRef,
    ScanRef, encode_frame, parse_log, read_log,
};

fn classified() -> AuditRecord {
    AuditRecord {
        format_version: AUDIT_FORMAT_VERSION,
        unix_ms: 1_795_000_000_123,
        firmware_version: "0.1.0".into(),
        event: AuditEvent::Classified {
            scan: ScanRef {
                name_sha256: [0x11; 32],
                content_sha256: [0x22; 32],
            },
            model: ModelRef {
                id: "scanside-1f66f6179d2b-int8".into(),
                sha256: [0x33; 32],
            },
            probability: 0.75,
            decision: Decision::TumourSuspected,
            latency_ms: 423,
        },
    }
}

fn error() -> AuditRecord {
    AuditRecord {
        format_version: AUDIT_FORMAT_VERSION,
        unix_ms: 1_795_000_000_456,
        firmware_version: "0.1.0".into(),
        event: AuditEvent::Error {
            scan: None,
            model: None,
            kind: ErrorKind::NoScan,
            detail: "inbox is empty".into(),
        },
    }
}

/// Changing these bytes breaks every log already on a device: bump
/// `AUDIT_FORMAT_VERSION` and keep a reader for the old version instead.
const GOLDEN_ERROR: &str =
    "0f01c8bfd9f29e3405302e312e30010101140e696e626f7820697320656d707479c7814cd400";
const GOLDEN_CLASSIFIED: &str = "0e01fbbcd9f29e3405302e312e307c111111111111111111111111111111111111111111111111111111111111111122222222222222222222222222222222222222222222222222222222222222221a7363616e736964652d3166363666363137396432622d696e74383333333333333333333333333333333333333333333333333333333333333333010a403f02a70311924b8300";

#[test]
fn encoding_is_frozen() {
    assert_eq!(AUDIT_FORMAT_VERSION, 1);
    assert_eq!(hex::encode(encode_frame(&error())), GOLDEN_ERROR);
    assert_eq!(hex::encode(encode_frame(&classified())), GOLDEN_CLASSIFIED);
}

#[test]
fn frames_have_no_inner_zero_and_round_trip() {
    for r in [classified(), error()] {
        let f = encode_frame(&r);
        assert_eq!(f.last(), Some(&0));
        assert!(!f[..f.len() - 1].contains(&0));
        assert_eq!(parse_log(&f).records, [r]);
    }
}

#[test]
fn every_truncation_keeps_every_complete_record() {
    let records = [classified(), error(), classified(), error()];
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    for r in &records {
        bytes.extend(encode_frame(r));
        ends.push(bytes.len());
    }
    for cut in 0..=bytes.len() {
        let log = parse_log(&bytes[..cut]);
        let complete = ends.iter().filter(|&&e| e <= cut).count();
        assert_eq!(log.records, records[..complete], "cut at {cut}");
        assert!(log.damaged.is_empty(), "cut at {cut}: {:?}", log.damaged);
        let at_boundary = cut == 0 || ends.contains(&cut);
        assert_eq!(log.torn_tail.is_none(), at_boundary, "cut at {cut}");
    }
}

#[test]
fn a_damaged_record_is_skipped_and_the_rest_are_read() {
    let mut bytes = encode_frame(&classified());
    let second = bytes.len();
    bytes.extend(encode_frame(&error()));
    bytes.extend(encode_frame(&classified()));
    bytes[second + 5] ^= 0x40;
    let log = parse_log(&bytes);
    assert_eq!(log.records, [classified(), classified()]);
    assert_eq!(log.damaged.len(), 1);
    assert_eq!(log.damaged[0].offset, second);
}

#[test]
fn writer_appends_durably_and_recovers_after_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log/audit.log");
    let mut w = AuditWriter::open(&path).unwrap();
    w.append(&classified()).unwrap();
    w.append(&error()).unwrap();
    drop(w);
    // Power cut in the middle of a third record.
    let frame = encode_frame(&classified());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, &frame[..frame.len() / 2]).unwrap();
    drop(f);
    let torn = read_log(&path).unwrap();
    assert_eq!(torn.records, [classified(), error()]);
    assert!(torn.torn_tail.is_some());
    // After restart, new records follow the torn one and are all readable.
    let mut w = AuditWriter::open(&path).unwrap();
    w.append(&error()).unwrap();
    let log = read_log(&path).unwrap();
    assert_eq!(log.records, [classified(), error(), error()]);
    assert_eq!(log.damaged.len(), 1, "the torn half-record is reported");
    assert!(log.torn_tail.is_none());
}

fn received() -> AuditRecord {
    AuditRecord {
        format_version: AUDIT_FORMAT_VERSION,
        unix_ms: 1_795_000_000_789,
        firmware_version: "0.1.0".into(),
        event: AuditEvent::Received {
            scan: Some(ScanRef {
                name_sha256: [0x44; 32],
                content_sha256: [0x55; 32],
            }),
            study_uid_sha256: [0x66; 32],
            sop_instance_uid_sha256: [0x77; 32],
            calling_ae_title: "MRI1".into(),
            refused: None,
        },
    }
}

/// The DICOM receipt record, added after version 1 shipped: appended as a
/// new variant, so the frozen records above keep their bytes.
const GOLDEN_RECEIVED: &str = "950195c2d9f29e3405302e312e3002014444444444444444444444444444444444444444444444444444444444444444555555555555555555555555555555555555555555555555555555555555555566666666666666666666666666666666666666666666666666666666666666667777777777777777777777777777777777777777777777777777777777777777044d52493105d1ea8c4500";

#[test]
fn the_dicom_receipt_is_frozen_too_and_round_trips() {
    let frame = encode_frame(&received());
    assert_eq!(hex::encode(&frame), GOLDEN_RECEIVED);
    let log = parse_log(&[encode_frame(&error()), frame, encode_frame(&classified())].concat());
    assert_eq!(log.records, [error(), received(), classified()]);
}

fn disputed() -> AuditRecord {
    AuditRecord {
        format_version: AUDIT_FORMAT_VERSION,
        unix_ms: 1_795_000_001_000,
        firmware_version: "0.1.0".into(),
        event: AuditEvent::Disputed {
            refers_to_unix_ms: 1_795_000_000_123,
            scan: ScanRef {
                name_sha256: [0x11; 32],
                content_sha256: [0x22; 32],
            },
            model: ModelRef {
                id: "scanside-m".into(),
                sha256: [0x33; 32],
            },
            decision: Decision::TumourSuspected,
        },
    }
}

/// The "disagree" record, appended after the DICOM receipt: the earlier
/// records keep their bytes.
const GOLDEN_DISPUTED: &str = "8501e8c3d9f29e3405302e312e3003fbbcd9f29e34111111111111111111111111111111111111111111111111111111111111111122222222222222222222222222222222222222222222222222222222222222220a7363616e736964652d6d3333333333333333333333333333333333333333333333333333333333333333022d1cc34500";

#[test]
fn the_dispute_record_is_frozen_and_round_trips() {
    let frame = encode_frame(&disputed());
    assert_eq!(hex::encode(&frame), GOLDEN_DISPUTED);
    let log = parse_log(
        &[
            encode_frame(&classified()),
            frame,
            encode_frame(&received()),
        ]
        .concat(),
    );
    assert_eq!(log.records, [classified(), disputed(), received()]);
}

fn model_changed() -> AuditRecord {
    AuditRecord {
        format_version: AUDIT_FORMAT_VERSION,
        unix_ms: 1_795_000_002_000,
        firmware_version: "0.1.0".into(),
        event: AuditEvent::ModelChanged {
            previous: ModelRef {
                id: "scanside-a".into(),
                sha256: [0x44; 32],
            },
            current: ModelRef {
                id: "scanside-b".into(),
                sha256: [0x55; 32],
            },
        },
    }
}

/// The model-change record, appended after the dispute: earlier records
/// keep their bytes.
const GOLDEN_MODEL_CHANGED: &str = "6901d0cbd9f29e3405302e312e30040a7363616e736964652d6144444444444444444444444444444444444444444444444444444444444444440a7363616e736964652d625555555555555555555555555555555555555555555555555555555555555555c60f3b8300";

#[test]
fn the_model_change_record_is_frozen_and_round_trips() {
    let frame = encode_frame(&model_changed());
    assert_eq!(hex::encode(&frame), GOLDEN_MODEL_CHANGED);
    let log = parse_log(&[encode_frame(&disputed()), frame].concat());
    assert_eq!(log.records, [disputed(), model_changed()]);
}

fn out_of_scope() -> AuditRecord {
    AuditRecord {
        format_version: AUDIT_FORMAT_VERSION,
        unix_ms: 1_795_000_003_000,
        firmware_version: "0.1.0".into(),
        event: AuditEvent::OutOfScope {
            scan: ScanRef {
                name_sha256: [0x66; 32],
                content_sha256: [0x77; 32],
            },
            model: ModelRef {
                id: "scanside-c".into(),
                sha256: [0x88; 32],
            },
            probability: 0.25,
            score: Some(3.5),
            threshold: 1.5,
            reason: "unlike the training images".into(),
            latency_ms: 900,
        },
    }
}

/// The out-of-scope record, appended after the model change, and the
/// out-of-scope decision in a dispute: earlier records keep their bytes.
const GOLDEN_OUT_OF_SCOPE: &str = "7a01b8d3d9f29e3405302e312e3005666666666666666666666666666666666666666666666666666666666666666677777777777777777777777777777777777777777777777777777777777777770a7363616e736964652d6388888888888888888888888888888888888888888888888888888888888888880104803e01010360400124c03f1a756e6c696b652074686520747261696e696e6720696d616765738407af01673600";
const GOLDEN_DISPUTED_OUT_OF_SCOPE: &str = "8501e8c3d9f29e3405302e312e3003fbbcd9f29e34111111111111111111111111111111111111111111111111111111111111111122222222222222222222222222222222222222222222222222222222222222220a7363616e736964652d6d333333333333333333333333333333333333333333333333333333333333333303bb2cc43200";

#[test]
fn the_out_of_scope_record_is_frozen_and_round_trips() {
    let frame = encode_frame(&out_of_scope());
    assert_eq!(hex::encode(&frame), GOLDEN_OUT_OF_SCOPE);
    let mut disputed = disputed();
    if let AuditEvent::Disputed { decision, .. } = &mut disputed.event {
        *decision = Decision::OutOfScope;
    }
    assert_eq!(
        hex::encode(encode_frame(&disputed)),
        GOLDEN_DISPUTED_OUT_OF_SCOPE
    );
    let log = parse_log(
        &[
            encode_frame(&model_changed()),
            frame,
            encode_frame(&disputed),
        ]
        .concat(),
    );
    assert_eq!(log.records, [model_changed(), out_of_scope(), disputed]);
}
