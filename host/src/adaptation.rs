//! The site-adaptation benchmark: how many labelled scans of a new site it
//! takes before the model's answers hold there.
//!
//! For each `k` and random draw, `k` scans of the new site (a labelled
//! folder the model was not trained on) go through the path a real site's
//! scans take: a device export bundle with their records and bytes,
//! `scanside import` into a dataset that holds the team set, `scanside
//! review` answering each with its true label, then the candidate that
//! `retrain` builds from that dataset (duplicate-grouped cross-validation,
//! the threshold from its out-of-fold predictions, the final fit). The
//! candidate is scored on the site's *other* scans:
//!
//! * site scans that are near-copies of team images are left out first;
//! * the draw takes whole near-duplicate groups of the site, so no scored
//!   scan is a near-copy of a drawn one;
//! * [`leaks`] checks every scored scan against every trained one (team set
//!   and drawn scans) and the run refuses if any pair is within the
//!   near-duplicate distance.
//!
//! The threshold is chosen six ways from the same out-of-fold predictions
//! (rule `quantile` or `logit-normal`; on all images, on the site's
//! reviewed scans only, or `auto` as `retrain` does), so the rules are
//! compared on the same models. The head's loss weighs each reviewed site
//! scan as the recipe says (`reviewed_weight`), as in `retrain`.
//! `examples/site_adaptation.rs` runs it and prints the table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use scanside_shared::audit::{
    AUDIT_FORMAT_VERSION, AuditEvent, AuditRecord, Decision, ModelRef, ScanRef,
};
use scanside_shared::bundle::{BundleEntry, encode_bundle};

use crate::dataset::{Dataset, DatasetOptions, Item};
use crate::metrics::{Metrics, auc};
use crate::operating_point::ThresholdRule;
use crate::train::{self, TrainOptions};
use crate::validation::ValidationSet;
use crate::{Error, Result, dedup, review};

/// Which site scans train and which are scored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteSplit {
    /// Indices of the drawn (trained-on) site items.
    pub drawn: Vec<usize>,
    /// Indices of the scored site items.
    pub held_out: Vec<usize>,
}

/// Draw about `k` site items as whole near-duplicate groups (in a seeded
/// random order, skipping a group that would overshoot `k`); every other
/// item is held out.
pub fn draw(groups: &dedup::Groups, k: usize, seed: u64) -> SiteSplit {
    let mut members = vec![Vec::new(); groups.count];
    for (i, &g) in groups.of_item.iter().enumerate() {
        members[g].push(i);
    }
    let mut order: Vec<usize> = (0..groups.count).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut drawn = Vec::new();
    for g in order {
        if drawn.len() + members[g].len() <= k {
            drawn.extend_from_slice(&members[g]);
        }
        if drawn.len() == k {
            break;
        }
    }
    drawn.sort_unstable();
    let held_out = (0..groups.of_item.len())
        .filter(|i| drawn.binary_search(i).is_err())
        .collect();
    SiteSplit { drawn, held_out }
}

/// Every `(trained, scored)` pair within `max_distance` of each other (or
/// with equal bytes): a scored image the model has in effect seen.
pub fn leaks(trained: &[Item], scored: &[Item], max_distance: u32) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for s in scored {
        for t in trained {
            if t.sha256 == s.sha256 || t.phash.dist(&s.phash) <= max_distance {
                out.push((t.path.clone(), s.path.clone()));
            }
        }
    }
    out
}

/// What the benchmark needs.
#[derive(Clone, Debug)]
pub struct AdaptationOptions {
    /// The recipe, with `data` the team set (trained on in every run).
    pub recipe: TrainOptions,
    /// The new site's labelled folder.
    pub site: PathBuf,
    /// Site scans added per run (0 = zero-shot).
    pub ks: Vec<usize>,
    /// Random draws per `k` > 0.
    pub draws: usize,
    /// Scratch folder for the datasets the runs build.
    pub work: PathBuf,
}

/// One run's figures on the held-out site scans at one threshold choice.
#[derive(Clone, Debug, Serialize)]
pub struct AdaptationRow {
    /// Site scans asked for.
    pub k: usize,
    /// Site scans drawn (whole near-duplicate groups: at most `k`).
    pub drawn: usize,
    /// Draw index.
    pub draw: usize,
    /// The threshold rule.
    pub rule: ThresholdRule,
    /// `all` (every training image's out-of-fold prediction), `site` (the
    /// reviewed site scans' only; `all` when k = 0) or `auto` (what
    /// `retrain` does by default: `site` with at least
    /// [`crate::retrain::MIN_REVIEWED_FOR_THRESHOLD`] site scans of each
    /// class, else `all`).
    pub threshold_on: &'static str,
    /// Held-out site scans scored.
    pub n: usize,
    /// Held-out AUC (the same for every threshold choice of a run).
    pub auc: f64,
    /// Metrics at the chosen threshold.
    pub metrics: Metrics,
}

/// Smallest number of reviewed site scans of each class for which the
/// `site` threshold is computed (below it the row is not produced).
pub const MIN_SITE_PER_CLASS: usize = 5;

/// The review answer for a label (`y` positive, `n` negative).
fn answer(label: u8) -> &'static str {
    if label == 1 { "y\n" } else { "n\n" }
}

/// Link (or copy, where links fail) every team image into `dir`'s class
/// folders under its own name, so the run's dataset is the team set plus
/// what review adds. Nothing is copied into the project.
fn team_dataset(team: &Dataset, dir: &Path) -> Result<()> {
    for item in &team.items {
        let class = dir.join(&team.labels[usize::from(item.label)]);
        std::fs::create_dir_all(&class).map_err(|e| Error::io(&class, e))?;
        let dest = class.join(item.path.file_name().expect("files have names"));
        let source = std::path::absolute(&item.path).map_err(|e| Error::io(&item.path, e))?;
        if std::os::unix::fs::symlink(&source, &dest).is_err() {
            std::fs::copy(&source, &dest).map_err(|e| Error::io(&dest, e))?;
        }
    }
    Ok(())
}

/// The device bundle a box at the site would export for `scans`: one
/// `Classified` record each (by `model`, with its probability) and the
/// scan's bytes.
fn site_bundle(scans: &[&Item], probabilities: &[f32], model: &ModelRef) -> Result<Vec<u8>> {
    let mut entries = Vec::new();
    for (n, (item, &p)) in scans.iter().zip(probabilities).enumerate() {
        let bytes = std::fs::read(&item.path).map_err(|e| Error::io(&item.path, e))?;
        let content = scanside_shared::sha256(&bytes);
        entries.push(BundleEntry::Record(AuditRecord {
            format_version: AUDIT_FORMAT_VERSION,
            unix_ms: 1 + n as u64,
            firmware_version: scanside_shared::SCANSIDE_VERSION.into(),
            event: AuditEvent::Classified {
                scan: ScanRef {
                    name_sha256: scanside_shared::sha256(
                        item.path
                            .file_name()
                            .map_or(&[][..], |f| f.as_encoded_bytes()),
                    ),
                    content_sha256: content,
                },
                model: model.clone(),
                probability: p,
                decision: if p >= 0.5 {
                    Decision::TumourSuspected
                } else {
                    Decision::NoTumour
                },
                latency_ms: 0,
            },
        }));
        let extension = item
            .path
            .extension()
            .map_or("img".into(), |e| e.to_string_lossy().to_lowercase());
        entries.push(BundleEntry::Scan {
            content_sha256: content,
            extension,
            bytes,
        });
    }
    Ok(encode_bundle(
        1,
        scanside_shared::SCANSIDE_VERSION,
        0,
        &entries,
    ))
}

/// Import `bundle` into the dataset `dir` and review every queued scan with
/// its true label (by content hash) into the class folders of `classes`.
fn import_and_review(
    bundle: &Path,
    dir: &Path,
    classes: &DatasetOptions,
    truth: &BTreeMap<String, u8>,
) -> Result<()> {
    review::import_bundle(bundle, dir)?;
    let answers: String = review::queue(dir)?
        .iter()
        .filter(|(_, q)| q.label.is_none())
        .map(|(_, q)| answer(truth[&q.content_sha256]))
        .collect();
    let s = review::review(
        dir,
        &classes.positive,
        &classes.negative,
        &mut answers.as_bytes(),
        &mut std::io::sink(),
        &mut |_| {},
    )?;
    if s.left != 0 {
        return Err(Error::Config(format!(
            "{}: {} scans left unreviewed",
            dir.display(),
            s.left
        )));
    }
    Ok(())
}

/// Run the benchmark: one row per (k, draw, rule, threshold source).
pub fn run(opts: &AdaptationOptions) -> Result<Vec<AdaptationRow>> {
    let recipe = &opts.recipe;
    let team = train::prepare(recipe)?;
    let site_opts = DatasetOptions {
        root: opts.site.clone(),
        ..recipe.data.clone()
    };
    // Site scans that are near-copies of team images are left out, as
    // `--validate` does: they would be scored as if unseen.
    let site = ValidationSet::load(
        &site_opts,
        &recipe.cache,
        &team.dataset.items,
        recipe.dedup_distance,
    )?;
    if !recipe.quiet {
        eprintln!(
            "site {}: {} scans ({} left out as near-copies of team images)",
            opts.site.display(),
            site.dataset.items.len(),
            site.excluded.len()
        );
    }
    let site = site.dataset;
    let site_groups = dedup::group(&site.items, recipe.dedup_distance);
    let truth: BTreeMap<String, u8> = site
        .items
        .iter()
        .map(|i| (i.sha256.clone(), i.label))
        .collect();
    // The zero-shot model: the recipe on the team set alone. Its
    // probabilities are what the site's box would have recorded.
    let team_cv = train::cross_validate(&team, recipe)?;
    let zero_shot = train::fit_final(&team, &team_cv, recipe)?;
    let box_p = train::predict_items(&team, recipe, &zero_shot.head, &site.items)?;
    let model = ModelRef {
        id: "scanside-zero-shot".into(),
        sha256: [0; 32],
    };

    let mut rows = Vec::new();
    for &k in &opts.ks {
        let draws = if k == 0 { 1 } else { opts.draws };
        for d in 0..draws {
            let split = draw(
                &site_groups,
                k,
                recipe.head.seed + 7919 * d as u64 + k as u64,
            );
            let dir = opts.work.join(format!("k{k}-d{d}"));
            let _ = std::fs::remove_dir_all(&dir);
            team_dataset(&team.dataset, &dir)?;
            if !split.drawn.is_empty() {
                let scans: Vec<&Item> = split.drawn.iter().map(|&i| &site.items[i]).collect();
                let p: Vec<f32> = split.drawn.iter().map(|&i| box_p[i]).collect();
                let bundle = opts.work.join(format!("k{k}-d{d}.scanside"));
                std::fs::write(&bundle, site_bundle(&scans, &p, &model)?)
                    .map_err(|e| Error::io(&bundle, e))?;
                import_and_review(&bundle, &dir, &recipe.data, &truth)?;
            }
            let run_opts = TrainOptions {
                data: DatasetOptions {
                    root: dir.clone(),
                    ..recipe.data.clone()
                },
                ..recipe.clone()
            };
            let prep = train::prepare(&run_opts)?;
            let held_out: Vec<Item> = split
                .held_out
                .iter()
                .map(|&i| site.items[i].clone())
                .collect();
            let leaked = leaks(&prep.dataset.items, &held_out, recipe.dedup_distance);
            if let Some((t, s)) = leaked.first() {
                return Err(Error::Config(format!(
                    "k = {k}, draw {d}: scored scan {} is a near-copy of trained scan {} \
                     ({} such pairs)",
                    s.display(),
                    t.display(),
                    leaked.len()
                )));
            }
            let cv = train::cross_validate(&prep, &run_opts)?;
            let last = train::fit_final(&prep, &cv, &run_opts)?;
            let p = train::predict_items(&prep, &run_opts, &last.head, &held_out)?;
            let y: Vec<u8> = held_out.iter().map(|i| i.label).collect();
            let held_auc = auc(&p, &y);
            // Review copies are named by their content hash.
            let is_site: Vec<bool> = prep
                .dataset
                .items
                .iter()
                .map(|i| truth.contains_key(&i.sha256) && i.is_reviewed_scan())
                .collect();
            let site_counts = [0u8, 1].map(|c| {
                (0..is_site.len())
                    .filter(|&i| is_site[i] && prep.labels[i] == c)
                    .count()
            });
            for rule in [ThresholdRule::Quantile, ThresholdRule::LogitNormal] {
                let enough = site_counts
                    .iter()
                    .all(|&c| c >= crate::retrain::MIN_REVIEWED_FOR_THRESHOLD);
                for threshold_on in ["all", "site", "auto"] {
                    let on_site = threshold_on == "site" || (threshold_on == "auto" && enough);
                    let mask: Vec<usize> = (0..is_site.len())
                        .filter(|&i| !on_site || is_site[i])
                        .collect();
                    if threshold_on == "site" && site_counts.iter().any(|&c| c < MIN_SITE_PER_CLASS)
                    {
                        continue;
                    }
                    let t = rule.threshold(
                        &mask.iter().map(|&i| cv.oof_mean[i]).collect::<Vec<_>>(),
                        &mask.iter().map(|&i| prep.labels[i]).collect::<Vec<_>>(),
                        recipe.target_sensitivity,
                    );
                    rows.push(AdaptationRow {
                        k,
                        drawn: split.drawn.len(),
                        draw: d,
                        rule,
                        threshold_on,
                        n: held_out.len(),
                        auc: held_auc,
                        metrics: Metrics::compute(&p, &y, t),
                    });
                }
            }
            if !recipe.quiet {
                eprintln!(
                    "k = {} (draw {d}): held-out AUC {held_auc:.3} on {} scans",
                    split.drawn.len(),
                    held_out.len()
                );
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_hasher::ImageHash;

    fn item(n: usize, bits: u64) -> Item {
        Item {
            path: PathBuf::from(format!("site/{n}.png")),
            label: (n % 2) as u8,
            sha256: format!("{n:064x}"),
            phash: ImageHash::from_bytes(&bits.to_be_bytes()).unwrap(),
            dims: (8, 8),
            source: 0,
        }
    }

    /// 40 site items: pairs (2i, 2i+1) are near-duplicates (1 bit apart),
    /// and pairs are far apart from each other.
    fn site() -> Vec<Item> {
        (0..40)
            .map(|n| {
                let base = (n as u64 / 2).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                item(n, if n % 2 == 0 { base } else { base ^ 1 })
            })
            .collect()
    }

    #[test]
    fn a_draw_takes_whole_groups_and_never_scores_a_near_copy_of_a_drawn_scan() {
        let items = site();
        let groups = dedup::group(&items, 6);
        assert_eq!(groups.count, 20, "the pairs are the only near-duplicates");
        for (k, seed) in [(0, 1), (10, 2), (11, 3), (25, 4), (40, 5)] {
            let s = draw(&groups, k, seed);
            assert_eq!(s.drawn.len() + s.held_out.len(), items.len());
            // Groups of two: an odd k is one short.
            assert_eq!(s.drawn.len(), k - k % 2, "k = {k}");
            let trained: Vec<Item> = s.drawn.iter().map(|&i| items[i].clone()).collect();
            let scored: Vec<Item> = s.held_out.iter().map(|&i| items[i].clone()).collect();
            assert!(leaks(&trained, &scored, 6).is_empty(), "k = {k}");
        }
        assert_ne!(draw(&groups, 10, 2).drawn, draw(&groups, 10, 3).drawn);
        assert_eq!(draw(&groups, 10, 2), draw(&groups, 10, 2));
    }

    #[test]
    fn leaks_finds_copies_and_near_copies() {
        let items = site();
        // Items 0 and 1 are near-copies; 0 and 2 are not.
        assert_eq!(leaks(&items[0..1], &items[1..2], 6).len(), 1);
        assert!(leaks(&items[0..1], &items[2..3], 6).is_empty());
        let mut same = items[2].clone();
        same.path = "elsewhere.png".into();
        same.phash = items[10].phash.clone();
        assert_eq!(
            leaks(&items[2..3], &[same], 0).len(),
            1,
            "equal bytes leak at any distance"
        );
    }
}
