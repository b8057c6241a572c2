//! scanside device firmware (placeholder).
//!
//! This crate will hold the scanner-side appliance: model loading and
//! verification, the inbox of scans, the button/LED state machine over
//! `embedded-hal` traits, the audit log and the board backends. It already
//! depends only on `scanside-shared`, as the design requires
//! (`host → shared ← device`).

/// Firmware version (the workspace version).
pub const VERSION: &str = scanside_shared::SCANSIDE_VERSION;
