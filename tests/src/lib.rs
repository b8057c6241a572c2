//! End-to-end tests across crates live in `tests/tests/`; this library holds
//! the helpers they share.

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// The team dataset, read in place: `$SCANSIDE_SHARED/data/brain-mri`, by
/// default `../shared/data/brain-mri` beside the checkout.
pub fn team_data() -> PathBuf {
    std::env::var_os("SCANSIDE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared"))
        .join("data/brain-mri")
}
