//! The out-of-scope corpus generates from its sources: at least 200
//! pictures, every category, each one a PNG the shared decoder reads (the
//! guard's end-to-end test, `tests/scope_guard.rs`, runs them through the
//! shipped model).

use std::collections::BTreeSet;

use scanside_e2e::{scope_corpus, team_dicom, workspace};
use scanside_shared::preprocess::{DecodeLimits, load_rgb};

#[test]
fn the_corpus_has_every_category_and_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let pictures = scope_corpus::generate(
        dir.path(),
        &workspace().join(scope_corpus::PHOTO_WHEEL),
        &team_dicom().join("CT_small.dcm"),
    )
    .unwrap();
    assert!(pictures.len() >= 200, "{} pictures", pictures.len());
    let categories: BTreeSet<_> = pictures.iter().map(|p| p.category).collect();
    assert_eq!(categories.len(), 9, "{categories:?}");
    for p in &pictures {
        let img = load_rgb(&p.path, &DecodeLimits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", p.path.display()));
        assert!(
            img.width() >= 16 && img.height() >= 16,
            "{}",
            p.path.display()
        );
    }
}
