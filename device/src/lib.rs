//! scanside device firmware: the box beside the scanner.
//!
//! A radiographer presses a button; the box classifies the newest scan and
//! shows the result on three LEDs; every result is recorded in the audit log
//! (`scanside_shared::audit`). The pieces, from the pins up:
//!
//! - [`clock`]: a millisecond clock trait (tests use a fake one);
//! - [`button`]: debouncing and short / long press detection on any
//!   `embedded_hal::digital::InputPin`;
//! - [`leds`]: LED patterns (heartbeat, busy, result, error) on three
//!   `OutputPin`s;
//! - [`controller`]: the state machine, with no hardware at all;
//! - [`panel`]: the four wired together, generic over the pin traits, so a
//!   board backend (or a mock) only supplies pins;
//! - [`sim`]: the simulated board (in-memory pins); [`boards`]: the real
//!   ones (`rpi`, `cdev` cargo features);
//! - [`config`], [`inbox`] and [`appliance`]: the TOML configuration, the
//!   folder scans arrive in, and the main loop that ties panel, model,
//!   inbox and audit log together; [`worker`]: the thread that owns the
//!   model; [`systemd`]: readiness and watchdog; [`dicom_scp`]: the DICOM
//!   storage node that receives scans straight from the scanner;
//!   [`archive`]: the optional, size-capped copy of every classified scan
//!   (with its Grad-CAM overlay); [`durable`]: the crash-safe file writes
//!   both use; [`export`]: the bundle of records and archived scans for the
//!   host; [`model_store`]: installing a new model and rolling back;
//!   [`access`]: the permission checks on the configuration and the model.
//!
//! This crate depends only on `scanside-shared` (`host → shared ← device`).
//! scanside is research software, not a medical device.

pub mod access;
pub mod appliance;
pub mod archive;
pub mod boards;
pub mod button;
pub mod clock;
pub mod config;
pub mod controller;
pub mod dicom_scp;
pub mod durable;
pub mod error;
pub mod export;
pub mod inbox;
pub mod leds;
pub mod model_store;
pub mod panel;
pub mod sim;
pub mod systemd;
pub mod worker;

pub use error::{Error, Result};

/// Firmware version (the workspace version).
pub const VERSION: &str = scanside_shared::SCANSIDE_VERSION;
