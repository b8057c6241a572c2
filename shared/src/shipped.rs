//! Where the shipped model is found when no `--model` is given.
//!
//! Looked up in order: the `SCANSIDE_MODEL` environment variable, the
//! packaged location `/usr/share/scanside/models/`, then `models/` of the
//! source checkout this binary was built from. The first that exists wins;
//! naming a model explicitly always overrides all three.

use std::path::PathBuf;

use crate::{Error, Result};

/// File name of the shipped int8 model.
pub const SHIPPED_MODEL_FILE: &str = "brain-mri-vgg16-int8.onnx";

/// Environment variable that names the default model.
pub const MODEL_ENV: &str = "SCANSIDE_MODEL";

/// Where installed packages put the shipped model.
pub const PACKAGED_MODEL_DIR: &str = "/usr/share/scanside/models";

/// The candidate paths of the default model, in lookup order.
pub fn candidates() -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os(MODEL_ENV) {
        c.push(PathBuf::from(p));
    }
    c.push(PathBuf::from(PACKAGED_MODEL_DIR).join(SHIPPED_MODEL_FILE));
    c.push(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("models")
            .join(SHIPPED_MODEL_FILE),
    );
    c
}

/// The model to use: `explicit` if given, else the first existing
/// candidate, else an error listing where it looked.
pub fn resolve(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p);
    }
    let all = candidates();
    // An explicitly set environment variable must exist: a typo there should
    // not silently fall through to another model.
    if std::env::var_os(MODEL_ENV).is_some() {
        let p = &all[0];
        return if p.exists() {
            Ok(p.clone())
        } else {
            Err(Error::io(
                p,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{MODEL_ENV} names a model that does not exist"),
                ),
            ))
        };
    }
    all.iter().find(|p| p.exists()).cloned().ok_or_else(|| {
        Error::io(
            &all[all.len() - 1],
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "no --model given and no shipped model found (looked at {})",
                    all.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        )
    })
}
