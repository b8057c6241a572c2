//! `scanside explain`: a Grad-CAM overlay per scan (see
//! [`scanside_shared::explain`] for what the map is).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use scanside_shared::classifier::{Classifier, NOTICE};
use scanside_shared::explain::png_bytes;

use crate::backbone::write_atomically;
use crate::{Error, Result};

/// One line of `explain` output (JSON form).
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ExplainLine<'a> {
    Explained {
        file: String,
        label: &'a str,
        probability: f32,
        threshold: f32,
        /// The guard's verdict, for a model with a guard.
        #[serde(skip_serializing_if = "Option::is_none")]
        scope: Option<&'a scanside_shared::guard::ScopeCheck>,
        overlay: String,
        model_id: &'a str,
        notice: &'static str,
    },
    Failed {
        file: String,
        error: String,
    },
}

/// Where the overlay of `file` goes: `<stem>.gradcam.png` in `out`, with
/// `-2`, `-3`, … when two inputs share a stem.
fn overlay_path(out: &Path, file: &Path, taken: &mut HashSet<PathBuf>) -> PathBuf {
    let stem = file
        .file_stem()
        .map_or_else(|| "scan".into(), |s| s.to_string_lossy().into_owned());
    let mut n = 1;
    loop {
        let name = match n {
            1 => format!("{stem}.gradcam.png"),
            _ => format!("{stem}-{n}.gradcam.png"),
        };
        let p = out.join(name);
        if taken.insert(p.clone()) {
            return p;
        }
        n += 1;
    }
}

/// Explain each file: write its overlay into `out` (created if needed) and
/// one line per file to `lines` (JSON objects when `json`). A file that
/// fails gets an error line naming it and the rest go on. Returns how many
/// files failed.
pub fn run(
    classifier: &Classifier,
    files: &[PathBuf],
    out: &Path,
    json: bool,
    lines: &mut dyn Write,
) -> Result<usize> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let m = classifier.manifest();
    let mut taken = HashSet::new();
    let mut failures = 0;
    for file in files {
        let name = file.display().to_string();
        let explained = std::fs::read(file)
            .map_err(|e| Error::io(file, e))
            .and_then(|bytes| Ok(classifier.explain_bytes(&bytes, file)?))
            .and_then(|x| {
                let path = overlay_path(out, file, &mut taken);
                write_atomically(&path, &png_bytes(&x.overlay(m.threshold)))?;
                Ok((x, path))
            });
        let line = match &explained {
            Ok((x, path)) => ExplainLine::Explained {
                file: name,
                label: &x.classification.label,
                probability: x.classification.probability,
                threshold: m.threshold,
                scope: x.classification.scope.as_ref(),
                overlay: path.display().to_string(),
                model_id: &m.model_id,
                notice: NOTICE,
            },
            Err(e) => {
                failures += 1;
                ExplainLine::Failed {
                    file: name,
                    error: e.to_string(),
                }
            }
        };
        let text = match (&line, json) {
            (_, true) => serde_json::to_string(&line).expect("serialises"),
            (
                ExplainLine::Explained {
                    file,
                    label,
                    probability,
                    overlay,
                    ..
                },
                false,
            ) => format!("{file}: {label} (p={probability:.3}) → {overlay}"),
            (ExplainLine::Failed { error, .. }, false) => format!("error: {error}"),
        };
        writeln!(lines, "{text}").map_err(|e| Error::io("<stdout>", e))?;
    }
    Ok(failures)
}
