//! The real `scanside-device run` as a DICOM storage node, driven by a real
//! client: dcmtk's `echoscu` and `storescu` (installed by
//! `scripts/setup.sh`) send the team's samples over loopback; a raw
//! `dicom-ul` client drops a transfer halfway and holds associations open.
//! Then a press on the simulated board classifies what arrived, and the
//! audit log and the logs are checked for what they record and what they
//! must never contain.

use std::io::Write;
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use dicom_dictionary_std::{tags, uids};
use dicom_object::{InMemDicomObject, open_file};
use dicom_ul::ClientAssociationOptions;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use scanside_shared::audit::{AuditEvent, read_log};
use scanside_shared::shipped::SHIPPED_MODEL_FILE;

mod common;
use common::{spawn_with_stderr_lines, team_data, workspace};

fn samples() -> PathBuf {
    let dir = team_data().join("dicom");
    assert!(dir.is_dir(), "DICOM samples not found at {}", dir.display());
    dir
}

/// The running firmware with the storage node on a free loopback port.
struct Node {
    child: Child,
    stderr: Receiver<String>,
    lines: Vec<String>,
    port: u16,
}

impl Node {
    fn start(dir: &Path) -> Node {
        let model = workspace().join("models").join(SHIPPED_MODEL_FILE);
        let config = dir.join("device.toml");
        std::fs::write(
            &config,
            format!(
                "model = {model:?}\ninbox = {:?}\naudit_log = {:?}\nboard = \"sim\"\n\
                 [timing]\ndebounce_ms = 20\nresult_ms = 300\npoll_ms = 5\ninbox_settle_ms = 0\n\
                 [dicom]\nae_title = \"SCANSIDE\"\nport = 0\nbind = \"127.0.0.1\"\n\
                 calling_ae_titles = [\"MRI1\", \"PACS\"]\nmax_associations = 2\ntimeout_s = 2\n",
                dir.join("inbox"),
                dir.join("audit.log")
            ),
        )
        .unwrap();
        let (child, stderr) = spawn_with_stderr_lines(
            Command::new(env!("CARGO_BIN_EXE_scanside-device"))
                .args(["run", "--config"])
                .arg(&config),
        );
        let mut node = Node {
            child,
            stderr,
            lines: Vec::new(),
            port: 0,
        };
        let line = node.wait_for("the listening line", |l| l.contains("listening on"));
        node.port = line
            .rsplit(':')
            .next()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        node
    }

    /// Wait for a stderr line matching `done` (lines already seen count).
    fn wait_for(&mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        self.wait_for_after(0, what, done)
    }

    /// Wait for a stderr line matching `done` among the lines after the
    /// first `seen`.
    fn wait_for_after(&mut self, seen: usize, what: &str, done: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.lines.iter().skip(seen).find(|l| done(l)) {
            return l.clone();
        }
        let start = Instant::now();
        loop {
            while let Ok(line) = self.stderr.try_recv() {
                self.lines.push(line.clone());
                if done(&line) {
                    return line;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no {what}; stderr:\n{}",
                self.lines.join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn count(&mut self, needle: &str) -> usize {
        while let Ok(line) = self.stderr.try_recv() {
            self.lines.push(line);
        }
        self.lines.iter().filter(|l| l.contains(needle)).count()
    }

    fn dcmtk(&self, tool: &str, args: &[&str], files: &[PathBuf]) -> Output {
        Command::new(tool)
            .args(args)
            .args(["127.0.0.1", &self.port.to_string()])
            .args(files)
            .output()
            .unwrap_or_else(|e| panic!("{tool} (dcmtk) runs: {e}; run scripts/setup.sh"))
    }

    fn press(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit status {status}");
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            self.lines.push(line);
        }
        self.lines
    }
}

/// The files in the inbox itself (not `processed/` or `rejected/`),
/// temporary ones included.
fn inbox_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("inbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn dataset(path: &Path) -> InMemDicomObject {
    open_file(path).unwrap().into_inner()
}

/// Every attribute arrived unchanged, and the pixel data decodes to the
/// same picture (storescu may re-fragment encapsulated pixel data, and drops
/// Data Set Trailing Padding, as the standard allows).
fn assert_intact(original: &Path, stored: &Path) {
    let (sent, got) = (dataset(original), dataset(stored));
    let padding = dicom_core::Tag(0xFFFC, 0xFFFC);
    let mut compared = 0;
    for element in sent.iter() {
        let tag = element.header().tag;
        if tag == tags::PIXEL_DATA || tag == padding {
            continue;
        }
        assert!(
            got.element(tag).ok() == Some(element),
            "{}: {tag} changed in transit",
            original.display()
        );
        compared += 1;
    }
    assert!(compared > 20 && got.iter().count() > compared);
    let picture = |p: &Path| {
        scanside_shared::dicom::decode_dicom(
            &std::fs::read(p).unwrap(),
            p,
            &Default::default(),
            Default::default(),
        )
        .unwrap()
        .image
    };
    assert_eq!(picture(original), picture(stored), "{}", original.display());
}

fn client(calling: &str) -> ClientAssociationOptions<'static> {
    ClientAssociationOptions::new()
        .calling_ae_title(calling.to_string())
        .called_ae_title("SCANSIDE")
        .with_abstract_syntax(uids::MR_IMAGE_STORAGE)
}

#[test]
fn a_scanner_sends_over_dicom_and_a_press_classifies_what_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path());
    let samples = samples();

    // C-ECHO from a listed caller; an unknown caller and a wrong called
    // title are rejected at association.
    let o = node.dcmtk("echoscu", &["-aet", "MRI1", "-aec", "SCANSIDE"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    node.wait_for("the echo", |l| l.contains("C-ECHO from MRI1"));
    let o = node.dcmtk("echoscu", &["-aet", "STRANGER", "-aec", "SCANSIDE"], &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Calling AE Title Not Recognized"));
    node.wait_for("the rejection", |l| l.contains("rejected STRANGER"));
    let o = node.dcmtk("echoscu", &["-aet", "MRI1", "-aec", "SOMEONE"], &[]);
    assert!(!o.status.success());

    // The MR sample in five transfer syntaxes: each arrives intact (same
    // data set, same transfer syntax) under a name that hides its UIDs.
    let sends = [
        ("MR_small.dcm", "-xe"),
        ("MR_small_bigendian.dcm", "-xb"),
        ("MR_small_RLE.dcm", "-xr"),
        ("MR_small_jpeg_ls_lossless.dcm", "-xt"),
        ("MR_small_jp2klossless.dcm", "-xv"),
    ];
    for (i, (name, propose)) in sends.iter().enumerate() {
        let original = samples.join(name);
        let o = node.dcmtk(
            "storescu",
            &[propose, "-aet", "MRI1", "-aec", "SCANSIDE"],
            std::slice::from_ref(&original),
        );
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(node.count("dicom: stored object"), i + 1, "{name}");
        let files = inbox_files(dir.path());
        assert_eq!(files.len(), 1, "{name}: {files:?}");
        let stored = &files[0];
        let stored_name = stored.file_name().unwrap().to_str().unwrap();
        assert!(
            stored_name.ends_with(".dcm") && !stored_name.contains("1.3.6"),
            "{stored_name}"
        );
        assert_eq!(
            open_file(stored).unwrap().meta().transfer_syntax(),
            open_file(&original).unwrap().meta().transfer_syntax(),
            "{name}"
        );
        assert_intact(&original, stored);
        if i + 1 < sends.len() {
            std::fs::remove_file(stored).unwrap();
        }
    }

    // A CT image: refused at negotiation (with only its own context
    // proposed, the log names it); a CT object dressed as secondary capture:
    // refused by modality with a failure status. Nothing written.
    let o = node.dcmtk(
        "storescu",
        &["-R", "-aet", "MRI1", "-aec", "SCANSIDE"],
        &[samples.join("CT_small.dcm")],
    );
    assert!(!o.status.success());
    node.wait_for("the CT refusal", |l| {
        l.contains("proposed CT Image Storage") && l.contains("not accepted")
    });
    let ct_as_sc = workspace().join("shared/tests/dicom_golden/ct_as_secondary_capture.dcm");
    let o = node.dcmtk(
        "storescu",
        &["-aet", "PACS", "-aec", "SCANSIDE"],
        &[ct_as_sc],
    );
    assert!(!o.status.success(), "storescu reports the failure status");
    node.wait_for("the modality refusal", |l| {
        l.contains("refused: modality is CT")
    });
    assert_eq!(inbox_files(dir.path()).len(), 1);

    // A client that drops the connection halfway through a data set leaves
    // no file, partial or temporary, in the inbox.
    let bytes = std::fs::read(samples.join("MR_small.dcm")).unwrap();
    let seen = node.count("");
    let mut assoc = client("MRI1").establish(("127.0.0.1", node.port)).unwrap();
    let pc = assoc.presentation_contexts()[0].id;
    let command = InMemDicomObject::command_from_element_iter([
        dicom_core::DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            dicom_core::VR::UI,
            dicom_core::dicom_value!(Str, uids::MR_IMAGE_STORAGE),
        ),
        dicom_core::DataElement::new(
            tags::COMMAND_FIELD,
            dicom_core::VR::US,
            dicom_core::dicom_value!(U16, [0x0001]),
        ),
        dicom_core::DataElement::new(
            tags::MESSAGE_ID,
            dicom_core::VR::US,
            dicom_core::dicom_value!(U16, [1]),
        ),
        dicom_core::DataElement::new(
            tags::PRIORITY,
            dicom_core::VR::US,
            dicom_core::dicom_value!(U16, [0]),
        ),
        dicom_core::DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            dicom_core::VR::US,
            dicom_core::dicom_value!(U16, [0x0000]),
        ),
        dicom_core::DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            dicom_core::VR::UI,
            dicom_core::dicom_value!(Str, "1.2.3.4.5.6.7"),
        ),
    ]);
    let mut command_bytes = Vec::new();
    command
        .write_dataset_with_ts(
            &mut command_bytes,
            &dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
        )
        .unwrap();
    for (value_type, is_last, data) in [
        (PDataValueType::Command, true, command_bytes),
        (PDataValueType::Data, false, bytes[300..2000].to_vec()),
    ] {
        assoc
            .send(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: pc,
                    value_type,
                    is_last,
                    data,
                }],
            })
            .unwrap();
    }
    assoc.inner_stream().shutdown(Shutdown::Both).unwrap();
    drop(assoc);
    node.wait_for_after(seen, "the dropped association", |l| {
        l.contains("association with MRI1 ended")
    });
    assert_eq!(
        inbox_files(dir.path()).len(),
        1,
        "{:?}",
        inbox_files(dir.path())
    );

    // At most two associations at once; idle ones are dropped after
    // `timeout_s`, which frees the places again.
    let first = client("MRI1").establish(("127.0.0.1", node.port)).unwrap();
    let second = client("PACS").establish(("127.0.0.1", node.port)).unwrap();
    assert!(client("MRI1").establish(("127.0.0.1", node.port)).is_err());
    node.wait_for("the limit", |l| l.contains("associations already open"));
    std::thread::sleep(Duration::from_secs(4));
    let third = client("MRI1").establish(("127.0.0.1", node.port));
    assert!(third.is_ok(), "idle associations were not dropped");
    drop((first, second, third));

    // The button flow picks up what arrived over the network.
    node.press();
    node.wait_for("the classification", |l| l.starts_with("classified scan"));
    assert!(inbox_files(dir.path()).is_empty());
    let lines = node.stop();

    let log = read_log(&dir.path().join("audit.log")).unwrap();
    let received: Vec<_> = log
        .records
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::Received {
                scan,
                refused,
                calling_ae_title,
                ..
            } => Some((scan.is_some(), refused.clone(), calling_ae_title.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        received.iter().filter(|(stored, ..)| *stored).count(),
        sends.len()
    );
    let refused: Vec<_> = received
        .iter()
        .filter_map(|(_, r, ae)| r.clone().map(|r| (r, ae.clone())))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].0.contains("modality is CT") && refused[0].1 == "PACS");
    // The pydicom samples are 64 × 64 slices, unlike the training images:
    // the shipped model's guard may refuse them. Either way one was answered.
    assert!(log.records.iter().any(|r| matches!(
        r.event,
        AuditEvent::Classified { .. } | AuditEvent::OutOfScope { .. }
    )));

    // Neither the audit log nor the log lines carry patient data.
    let sample = dataset(&samples.join("MR_small.dcm"));
    let audit_bytes = std::fs::read(dir.path().join("audit.log")).unwrap();
    let all_lines = lines.join("\n");
    for tag in [
        tags::PATIENT_NAME,
        tags::PATIENT_ID,
        tags::SOP_INSTANCE_UID,
        tags::STUDY_INSTANCE_UID,
    ] {
        let value = sample
            .element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(['\0', ' '])
            .to_string();
        assert!(value.len() >= 4, "{tag}: {value:?}");
        assert!(!all_lines.contains(&value), "{value} in the log");
        assert!(
            !audit_bytes
                .windows(value.len())
                .any(|w| w == value.as_bytes()),
            "{value} in the audit log"
        );
    }
}

#[test]
fn classify_reads_dicom_and_refuses_what_the_model_is_not_for() {
    let samples = samples();
    let files = [
        "MR_small_jpeg_ls_lossless.dcm",
        "CT_small.dcm",
        "MR_truncated.dcm",
    ];
    let o = Command::new(env!("CARGO_BIN_EXE_scanside-device"))
        .args(["classify", "--json", "--model"])
        .arg(workspace().join("models").join(SHIPPED_MODEL_FILE))
        .args(files.iter().map(|f| samples.join(f)))
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "two refusals make the exit code say so"
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let p = lines[0]["probability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p), "{}", lines[0]);
    let ct = lines[1]["error"].as_str().unwrap();
    assert!(
        ct.contains("CT_small.dcm") && ct.contains("modality is CT"),
        "{ct}"
    );
    let cut = lines[2]["error"].as_str().unwrap();
    assert!(
        cut.contains("MR_truncated.dcm") && cut.contains("truncated"),
        "{cut}"
    );
}

#[test]
fn classify_takes_the_middle_frame_unless_told_otherwise() {
    let multi = workspace().join("shared/tests/dicom_golden/multiframe_no_window.dcm");
    let classify = |frame: Option<&str>| -> serde_json::Value {
        let mut command = Command::new(env!("CARGO_BIN_EXE_scanside-device"));
        command.args(["classify", "--json", "--model"]);
        command.arg(workspace().join("models").join(SHIPPED_MODEL_FILE));
        if let Some(frame) = frame {
            command.args(["--frame", frame]);
        }
        let o = command.arg(&multi).output().unwrap();
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let p = |v: &serde_json::Value| v["probability"].as_f64().unwrap();
    let (middle, first, second) = (classify(None), classify(Some("0")), classify(Some("1")));
    assert_eq!(
        p(&middle),
        p(&second),
        "the middle of three frames is frame 1"
    );
    assert_ne!(p(&middle), p(&first));
    let beyond = classify(Some("3"));
    let error = beyond["error"].as_str().unwrap();
    assert!(
        error.contains("frame 3") && error.contains("has 3"),
        "{error}"
    );
}
