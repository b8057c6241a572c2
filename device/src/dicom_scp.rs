//! The DICOM Storage SCP: the box as a storage node the scanner can send to.
//!
//! One listening thread accepts TCP connections; each association is served
//! on its own thread (at most `max_associations` at once), with `dicom-ul`
//! for the upper layer. What it does:
//!
//! - **Who may connect**: only the calling AE titles in the configuration,
//!   calling us by our AE title; anyone else gets an A-ASSOCIATE-RJ
//!   ("calling AE title not recognised"), as does a caller beyond the
//!   association limit.
//! - **What it accepts**: Verification (C-ECHO), MR Image Storage, Enhanced
//!   Secondary Capture Image Storage (C-STORE), in the transfer syntaxes the
//!   decoder reads. Other SOP classes (CT, Enhanced MR, …) are refused at
//!   negotiation, and the log says which were proposed.
//! - **What it stores**: an object whose Modality is `MR`, written to the
//!   inbox atomically: a dot-named temporary file, `fsync`, rename to
//!   `<hash>.dcm`, `fsync` of the folder. The name is a hash of the SOP
//!   Instance UID, never anything from the patient. Anything else is
//!   answered with a failure status and an error comment, and nothing is
//!   written. A peer that drops mid-transfer leaves nothing behind: an
//!   object is only written once all of it has arrived.
//! - **What it records**: one [`AuditEvent::Received`] per object, sent to
//!   the appliance's main loop (the one writer of the audit log), with
//!   SHA-256 hashes of the Study and SOP Instance UIDs and the sender's AE
//!   title; log lines carry the same hashes. Patient name, ID and birth
//!   date are never read.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use dicom_core::{DataElement, VR, dicom_value};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject, StandardDataDictionary};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::ServerAssociation;
use dicom_ul::association::Association;
use dicom_ul::association::server::{AccessControl, DefaultNegotiation, ServerAssociationOptions};
use dicom_ul::pdu::{
    AssociationRJServiceUserReason, PDataValue, PDataValueType, Pdu,
    PresentationContextResultReason, UserIdentity,
};

use scanside_shared::audit::{AuditEvent, ScanRef};
use scanside_shared::{sha256, sha256_hex};
use sha2::{Digest, Sha256};

use crate::config::DicomConfig;
use crate::{Error, Result};

/// The storage SOP classes accepted (plus Verification). Enhanced MR is
/// not: its window and rescale live in functional groups, which the
/// decoder does not read yet.
pub const STORAGE_SOP_CLASSES: [&str; 2] = [
    uids::MR_IMAGE_STORAGE,
    uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
];

/// Largest object accepted, in bytes (the decoder's own memory limit).
const MAX_OBJECT_BYTES: usize = 256 << 20;

/// Largest DIMSE command set accepted (real ones are a few hundred bytes).
const MAX_COMMAND_BYTES: usize = 64 << 10;

/// DIMSE status codes used in responses.
mod status {
    pub const SUCCESS: u16 = 0x0000;
    /// Refused: out of resources (the object could not be written).
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: cannot understand (not an object scanside can use).
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
}

/// A running Storage SCP: the address it listens on.
#[derive(Debug)]
pub struct StorageScp {
    local_addr: SocketAddr,
}

impl StorageScp {
    /// Bind the configured address and serve on background threads, writing
    /// accepted objects into `inbox` and sending one audit event per object
    /// to `audit`. Fails only if the port cannot be bound.
    pub fn spawn(config: &DicomConfig, inbox: &Path, audit: Sender<AuditEvent>) -> Result<Self> {
        let addr = SocketAddr::new(config.bind, config.port);
        let listener = TcpListener::bind(addr)
            .map_err(|e| Error::Dicom(format!("cannot listen on {addr} (`dicom.port`): {e}")))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::Dicom(e.to_string()))?;
        let active = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            options: options(config, active.clone()),
            ae_title: config.ae_title.trim().to_string(),
            inbox: inbox.to_path_buf(),
            active,
            max_connections: config.max_associations + 2,
        });
        remove_stale_temp_files(inbox);
        std::thread::Builder::new()
            .name("dicom-listener".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    match stream {
                        Ok(stream) => {
                            // A connection holds a slot from accept to close;
                            // beyond the limit (plus room for the peers the
                            // gatekeeper turns away politely) it is closed
                            // at once, so idle sockets cannot pile up.
                            let Some(slot) = Slot::take(&shared.active, shared.max_connections)
                            else {
                                eprintln!(
                                    "dicom: connection refused: {} connections already open",
                                    shared.max_connections
                                );
                                continue;
                            };
                            let (shared, audit) = (shared.clone(), audit.clone());
                            let spawned = std::thread::Builder::new()
                                .name("dicom-association".into())
                                .spawn(move || {
                                    let _slot = slot;
                                    serve_association(stream, &shared, &audit);
                                });
                            if let Err(e) = spawned {
                                eprintln!("dicom: cannot start a thread for a connection: {e}");
                            }
                        }
                        Err(e) => eprintln!("dicom: accept failed: {e}"),
                    }
                }
            })
            .map_err(|e| Error::Dicom(format!("cannot start the listener thread: {e}")))?;
        eprintln!(
            "dicom: storage SCP {} listening on {local_addr}; accepts calls from {}",
            config.ae_title,
            config.calling_ae_titles.join(", ")
        );
        Ok(StorageScp { local_addr })
    }

    /// The address actually bound (useful when the port is 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// What every association thread shares.
struct Shared {
    options: ServerAssociationOptions<'static, Gatekeeper, DefaultNegotiation>,
    ae_title: String,
    inbox: PathBuf,
    /// Connections being served (counted from accept to close).
    active: Arc<AtomicUsize>,
    /// Connections closed at accept beyond this many.
    max_connections: usize,
}

/// One connection's place in the count, given back when dropped (also when
/// the thread cannot start or the association panics).
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(active.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Temporary files of this node (`.<hash>.dcm.<pid>-<n>.part`) left by a
/// power cut or a crash: removed at start-up; the inbox ignores them anyway.
fn remove_stale_temp_files(inbox: &Path) {
    let removed = crate::durable::remove_stale_parts(inbox, |name| name.ends_with(".dcm"));
    if removed > 0 {
        eprintln!("dicom: removed {removed} unfinished temporary file(s) from the inbox");
    }
}

/// Admits listed callers that call us by our title, within the limit.
struct Gatekeeper {
    calling: HashSet<String>,
    /// Connections being served, the one asking included.
    active: Arc<AtomicUsize>,
    max: usize,
}

impl AccessControl for Gatekeeper {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> std::result::Result<(), AssociationRJServiceUserReason> {
        if called_ae_title.trim() != this_ae_title.trim() {
            eprintln!("dicom: rejected {calling_ae_title}: it called {called_ae_title}, not us");
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if !self.calling.contains(calling_ae_title.trim()) {
            eprintln!("dicom: rejected {calling_ae_title}: not in `dicom.calling_ae_titles`");
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        if self.active.load(Ordering::SeqCst) > self.max {
            eprintln!(
                "dicom: rejected {calling_ae_title}: {} associations already open",
                self.max
            );
            return Err(AssociationRJServiceUserReason::NoReasonGiven);
        }
        Ok(())
    }
}

fn options(
    config: &DicomConfig,
    active: Arc<AtomicUsize>,
) -> ServerAssociationOptions<'static, Gatekeeper, DefaultNegotiation> {
    let timeout = Duration::from_secs(config.timeout_s);
    let gatekeeper = Gatekeeper {
        calling: config
            .calling_ae_titles
            .iter()
            .map(|t| t.trim().to_string())
            .collect(),
        active,
        max: config.max_associations,
    };
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(gatekeeper)
        .ae_title(config.ae_title.trim().to_string())
        .with_abstract_syntax(uids::VERIFICATION)
        .max_pdu_length(65_536)
        .strict(true)
        .read_timeout(timeout)
        .write_timeout(timeout);
    for sop_class in STORAGE_SOP_CLASSES {
        options = options.with_abstract_syntax(sop_class);
    }
    // Only what the decoder reads: an object it could not classify is
    // better refused at negotiation than accepted and rejected later.
    for ts in TransferSyntaxRegistry.iter() {
        if ts.can_decode_all() {
            options = options.with_transfer_syntax(ts.uid());
        }
    }
    options
}

/// A C-STORE whose data set is still arriving.
struct PendingStore {
    message_id: u16,
    sop_class: String,
    sop_instance: String,
}

fn trim_uid(s: &str) -> String {
    s.trim_end_matches(['\0', ' ']).to_string()
}

fn serve_association(stream: TcpStream, shared: &Shared, audit: &Sender<AuditEvent>) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_string(), |a| a.to_string());
    let mut association = match shared.options.establish(stream) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "dicom: association from {peer} not established: {}",
                first_line(&e)
            );
            return;
        }
    };
    let calling = association.peer_ae_title().trim().to_string();
    log_refused_sop_classes(&association, &calling);
    if let Err(e) = receive_loop(&mut association, &calling, shared, audit) {
        eprintln!("dicom: association with {calling} ended: {e}");
    }
}

fn receive_loop(
    association: &mut ServerAssociation<TcpStream>,
    calling: &str,
    shared: &Shared,
    audit: &Sender<AuditEvent>,
) -> std::result::Result<(), String> {
    let implicit = IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let mut command = Vec::<u8>::new();
    let mut data = Vec::<u8>::new();
    let mut pending: Option<PendingStore> = None;
    loop {
        let pdu = association.receive().map_err(|e| first_line(&e))?;
        match pdu {
            Pdu::PData { data: values } => {
                for value in values {
                    let pc_id = value.presentation_context_id;
                    match value.value_type {
                        PDataValueType::Command => {
                            if command.len() + value.data.len() > MAX_COMMAND_BYTES {
                                return Err(
                                    "command set larger than 64 KiB: association dropped".into()
                                );
                            }
                            command.extend_from_slice(&value.data);
                            if !value.is_last {
                                continue;
                            }
                            let cmd = InMemDicomObject::read_dataset_with_ts(
                                command.as_slice(),
                                &implicit,
                            )
                            .map_err(|e| format!("unreadable command: {}", first_line(&e)))?;
                            command.clear();
                            let field = int(&cmd, tags::COMMAND_FIELD)?;
                            let message_id = int(&cmd, tags::MESSAGE_ID)?;
                            match field {
                                0x0030 => {
                                    eprintln!("dicom: C-ECHO from {calling}");
                                    send(association, pc_id, &echo_response(message_id))?;
                                }
                                0x0001 => {
                                    pending = Some(PendingStore {
                                        message_id,
                                        sop_class: text(&cmd, tags::AFFECTED_SOP_CLASS_UID),
                                        sop_instance: text(&cmd, tags::AFFECTED_SOP_INSTANCE_UID),
                                    });
                                    data.clear();
                                }
                                other => {
                                    eprintln!(
                                        "dicom: {calling} sent command 0x{other:04X}, which scanside does not serve"
                                    );
                                }
                            }
                        }
                        PDataValueType::Data => {
                            if data.len() + value.data.len() > MAX_OBJECT_BYTES {
                                return Err(format!(
                                    "object larger than {} MiB: association aborted",
                                    MAX_OBJECT_BYTES >> 20
                                ));
                            }
                            data.extend_from_slice(&value.data);
                            if !value.is_last {
                                continue;
                            }
                            let Some(store) = pending.take() else {
                                data.clear();
                                continue;
                            };
                            let ts = association
                                .presentation_contexts()
                                .iter()
                                .find(|pc| {
                                    pc.id == pc_id
                                        && pc.reason == PresentationContextResultReason::Acceptance
                                })
                                .map(|pc| pc.transfer_syntax.clone());
                            let (code, comment) = match ts {
                                None => (
                                    status::CANNOT_UNDERSTAND,
                                    Some("no accepted presentation context".to_string()),
                                ),
                                Some(ts) => {
                                    let outcome = store_object(&data, &ts, &store, calling, shared);
                                    let code = outcome.status;
                                    let _ = audit.send(outcome.event);
                                    (code, outcome.comment)
                                }
                            };
                            data.clear();
                            send(
                                association,
                                pc_id,
                                &store_response(&store, code, comment.as_deref()),
                            )?;
                        }
                    }
                }
            }
            Pdu::ReleaseRQ => {
                association
                    .send(&Pdu::ReleaseRP)
                    .map_err(|e| first_line(&e))?;
                return Ok(());
            }
            Pdu::AbortRQ { .. } => {
                return Err(if pending.is_some() {
                    "aborted by the peer mid-transfer; nothing was written".into()
                } else {
                    "aborted by the peer".into()
                });
            }
            other => return Err(format!("unexpected {} PDU", other.short_description())),
        }
    }
}

/// Log the SOP classes the peer proposed and we did not accept: each by
/// name when there are few (a sender offering one CT image), else a count
/// (senders such as `storescu` offer every class they know).
fn log_refused_sop_classes(association: &ServerAssociation<TcpStream>, calling: &str) {
    let mut refused: Vec<String> = association
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason != PresentationContextResultReason::Acceptance)
        .map(|pc| trim_uid(&pc.abstract_syntax))
        .collect();
    refused.sort();
    refused.dedup();
    refused.retain(|uid| !STORAGE_SOP_CLASSES.contains(&uid.as_str()) && uid != uids::VERIFICATION);
    match refused.len() {
        0 => {}
        1..=4 => eprintln!(
            "dicom: {calling} proposed {}: not accepted (scanside stores MR images only)",
            refused
                .iter()
                .map(|uid| sop_class_name(uid))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        n => eprintln!(
            "dicom: {calling} proposed {n} other SOP classes: not accepted (scanside stores MR images only)"
        ),
    }
}

/// What storing one object came to.
struct StoreOutcome {
    status: u16,
    comment: Option<String>,
    event: AuditEvent,
}

/// Check one received data set and write it into the inbox.
fn store_object(
    bytes: &[u8],
    ts_uid: &str,
    store: &PendingStore,
    calling: &str,
    shared: &Shared,
) -> StoreOutcome {
    let sop_hash = sha256(store.sop_instance.as_bytes());
    let label = &sha256_hex(store.sop_instance.as_bytes())[..12];
    let refuse = |status: u16, reason: String, study: [u8; 32]| {
        eprintln!("dicom: object {label} from {calling} refused: {reason}");
        StoreOutcome {
            status,
            comment: Some(reason.clone()),
            event: AuditEvent::Received {
                scan: None,
                study_uid_sha256: study,
                sop_instance_uid_sha256: sop_hash,
                calling_ae_title: calling.to_string(),
                refused: Some(reason),
            },
        }
    };
    if store.sop_instance.is_empty() {
        return refuse(
            status::CANNOT_UNDERSTAND,
            "no Affected SOP Instance UID".into(),
            sha256(b""),
        );
    }
    let Some(ts) = TransferSyntaxRegistry.get(ts_uid) else {
        return refuse(
            status::CANNOT_UNDERSTAND,
            format!("unknown transfer syntax {ts_uid}"),
            sha256(b""),
        );
    };
    // The parser allocates declared lengths before reading them: refuse
    // any that run past the end of what arrived.
    let encoding = scanside_shared::dicom_lengths::Encoding::of_transfer_syntax(ts_uid);
    if let Err(reason) = scanside_shared::dicom_lengths::check_data_set(bytes, encoding) {
        return refuse(
            status::CANNOT_UNDERSTAND,
            format!("unreadable data set: {reason}"),
            sha256(b""),
        );
    }
    let object = match InMemDicomObject::<StandardDataDictionary>::read_dataset_with_ts(bytes, ts) {
        Ok(o) => o,
        Err(e) => {
            return refuse(
                status::CANNOT_UNDERSTAND,
                format!("unreadable data set: {}", first_line(&e)),
                sha256(b""),
            );
        }
    };
    let study = sha256(text(&object, tags::STUDY_INSTANCE_UID).as_bytes());
    match text(&object, tags::MODALITY).as_str() {
        "MR" => {}
        "" => {
            return refuse(
                status::CANNOT_UNDERSTAND,
                "no Modality; scanside stores MR images only".into(),
                study,
            );
        }
        other => {
            return refuse(
                status::CANNOT_UNDERSTAND,
                format!("modality is {other}; scanside stores MR images only"),
                study,
            );
        }
    }
    if object
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .is_none()
    {
        return refuse(
            status::CANNOT_UNDERSTAND,
            "no Pixel Data: not an image".into(),
            study,
        );
    }
    let name = format!("{}.dcm", &sha256_hex(store.sop_instance.as_bytes())[..32]);
    match write_atomically(&shared.inbox, &name, bytes, ts_uid, store, &shared.ae_title) {
        Ok(content_sha256) => {
            eprintln!("dicom: stored object {label} from {calling} as {name}");
            StoreOutcome {
                status: status::SUCCESS,
                comment: None,
                event: AuditEvent::Received {
                    scan: Some(ScanRef {
                        name_sha256: sha256(name.as_bytes()),
                        content_sha256,
                    }),
                    study_uid_sha256: study,
                    sop_instance_uid_sha256: sop_hash,
                    calling_ae_title: calling.to_string(),
                    refused: None,
                },
            }
        }
        Err(e) => refuse(
            status::OUT_OF_RESOURCES,
            format!("cannot write {name} to {}: {e}", shared.inbox.display()),
            study,
        ),
    }
}

/// Write preamble, file meta group and the data set as received (no
/// re-encoding) to `name`, atomically ([`crate::durable`]). Returns the
/// SHA-256 of the file.
fn write_atomically(
    dir: &Path,
    name: &str,
    dataset: &[u8],
    ts_uid: &str,
    store: &PendingStore,
    ae_title: &str,
) -> std::io::Result<[u8; 32]> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(store.sop_class.as_str())
        .media_storage_sop_instance_uid(store.sop_instance.as_str())
        .transfer_syntax(ts_uid)
        .source_application_entity_title(ae_title)
        .build()
        .map_err(|e| std::io::Error::other(first_line(&e)))?;
    let mut header = Vec::with_capacity(512);
    header.extend_from_slice(&[0u8; 128]);
    header.extend_from_slice(b"DICM");
    meta.write(&mut header)
        .map_err(|e| std::io::Error::other(first_line(&e)))?;
    // Two copies of one object may arrive at once: the temporary names differ.
    crate::durable::write_atomically(dir, name, &[&header, dataset])?;
    let mut hasher = Sha256::new();
    hasher.update(&header);
    hasher.update(dataset);
    Ok(hasher.finalize().into())
}

fn int(object: &InMemDicomObject, tag: dicom_core::Tag) -> std::result::Result<u16, String> {
    object
        .element(tag)
        .map_err(|e| first_line(&e))?
        .to_int::<u16>()
        .map_err(|e| first_line(&e))
}

fn text(object: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    object
        .element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| trim_uid(&s).trim().to_string())
        .unwrap_or_default()
}

/// The first line of an error, at most 160 characters. dicom-ul's
/// "unexpected PDU" errors print the PDU itself, which may carry patient
/// data: those become a fixed text.
fn first_line(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    if text.to_ascii_lowercase().contains("unexpected pdu") {
        return "unexpected PDU from the peer".into();
    }
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(160)
        .collect()
}

fn sop_class_name(uid: &str) -> String {
    use dicom_core::dictionary::UidDictionary;
    let uid = trim_uid(uid);
    match dicom_dictionary_std::StandardSopClassDictionary.by_uid(&uid) {
        Some(entry) => format!("{} ({uid})", entry.name),
        None => uid,
    }
}

fn echo_response(message_id: u16) -> InMemDicomObject<StandardDataDictionary> {
    InMemDicomObject::command_from_element_iter([
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            dicom_value!(Str, uids::VERIFICATION),
        ),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [0x8030])),
        DataElement::new(
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            VR::US,
            dicom_value!(U16, [message_id]),
        ),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            dicom_value!(U16, [0x0101]),
        ),
        DataElement::new(tags::STATUS, VR::US, dicom_value!(U16, [status::SUCCESS])),
    ])
}

fn store_response(
    store: &PendingStore,
    code: u16,
    comment: Option<&str>,
) -> InMemDicomObject<StandardDataDictionary> {
    let mut elements = vec![
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            dicom_value!(Str, store.sop_class.as_str()),
        ),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [0x8001])),
        DataElement::new(
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            VR::US,
            dicom_value!(U16, [store.message_id]),
        ),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            dicom_value!(U16, [0x0101]),
        ),
        DataElement::new(tags::STATUS, VR::US, dicom_value!(U16, [code])),
        DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            dicom_value!(Str, store.sop_instance.as_str()),
        ),
    ];
    if let Some(comment) = comment {
        // Error Comment is LO: at most 64 characters.
        let short: String = comment.chars().take(64).collect();
        elements.push(DataElement::new(
            tags::ERROR_COMMENT,
            VR::LO,
            dicom_value!(Str, short),
        ));
    }
    InMemDicomObject::command_from_element_iter(elements)
}

fn send(
    association: &mut ServerAssociation<TcpStream>,
    pc_id: u8,
    command: &InMemDicomObject<StandardDataDictionary>,
) -> std::result::Result<(), String> {
    let mut bytes = Vec::new();
    command
        .write_dataset_with_ts(&mut bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| first_line(&e))?;
    association
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc_id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: bytes,
            }],
        })
        .map_err(|e| first_line(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_and_given_back_when_dropped() {
        let active = Arc::new(AtomicUsize::new(0));
        let a = Slot::take(&active, 2).unwrap();
        let b = Slot::take(&active, 2).unwrap();
        assert!(Slot::take(&active, 2).is_none());
        drop(a);
        let c = Slot::take(&active, 2).unwrap();
        assert_eq!(active.load(Ordering::SeqCst), 2);
        drop((b, c));
        assert_eq!(active.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn only_this_nodes_temporary_files_are_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join(".0123abcd.dcm.42-7.part");
        let others = [
            dir.path().join("scan.dcm"),
            dir.path().join(".export.part"),
            dir.path().join("0123abcd.dcm"),
        ];
        for f in others.iter().chain([&ours]) {
            std::fs::write(f, b"x").unwrap();
        }
        remove_stale_temp_files(dir.path());
        assert!(!ours.exists());
        assert!(others.iter().all(|f| f.exists()));
    }

    #[test]
    fn unexpected_pdu_errors_do_not_reach_the_log() {
        let e = "unexpected PDU PData { data: [PDataValue { data: [80, 65, 84] }] }";
        assert_eq!(first_line(&e), "unexpected PDU from the peer");
        assert_eq!(first_line(&"line one\nline two"), "line one");
    }
}
