//! The human-readable training report (`report.md` beside the model).

use std::fmt::Write;

use crate::dataset::Dataset;
use crate::dedup::Groups;
use crate::int8::Int8Report;
use crate::metrics::Metrics;
use crate::operating_point::ThresholdRule;
use crate::quantize::Scheme;
use crate::train::{CvSummary, TrainOptions, TrainOutcome};
use crate::validation::ValidationResult;

/// A fraction as a percentage with one decimal, `n/a` when undefined.
pub(crate) fn pct(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else {
        format!("{:.1} %", 100.0 * v)
    }
}

/// One headline metric of a cross-validation summary, as the reports show it.
pub struct HeadlineRow {
    /// Metric name (`accuracy`, …, `auc`).
    pub name: &'static str,
    /// Mean over folds.
    pub mean: f64,
    /// Standard deviation over folds.
    pub std: f64,
    /// 95 % bootstrap interval (NaN when absent).
    pub ci: [f64; 2],
    /// Mean at the plain 0.5 decision.
    pub at_half: f64,
}

/// The six headline metrics of `s`, in report order.
pub fn headline_rows(s: &CvSummary) -> Vec<HeadlineRow> {
    [
        ("accuracy", s.accuracy),
        ("sensitivity", s.sensitivity),
        ("specificity", s.specificity),
        ("precision", s.precision),
        ("f1", s.f1),
        ("auc", s.auc),
    ]
    .into_iter()
    .map(|(name, mean)| HeadlineRow {
        name,
        mean,
        std: s.std.get(name).copied().unwrap_or(f64::NAN),
        ci: s
            .ci
            .get(&format!("{name}_ci"))
            .copied()
            .unwrap_or([f64::NAN; 2]),
        at_half: s.at_half.get(name).copied().unwrap_or(f64::NAN),
    })
    .collect()
}

/// Render the report as Markdown.
pub fn markdown(
    o: &TrainOutcome,
    dataset: &Dataset,
    groups: &Groups,
    opts: &TrainOptions,
) -> String {
    let s = &o.summary;
    let m = &o.manifest;
    let mut r = String::new();
    let w = &mut r;
    let _ = writeln!(w, "# scanside training report\n");
    let _ = writeln!(
        w,
        "> {} — every figure below is research evidence, not clinical validation.\n",
        s.notice
    );
    let _ = writeln!(
        w,
        "- model: `{}` → `{}`",
        m.model_id,
        o.model_path.display()
    );
    let _ = writeln!(
        w,
        "- scanside {}; backbone {} (weights SHA-256 `{}`)",
        m.scanside_version, m.backbone.name, m.backbone.weights_sha256
    );
    let _ = writeln!(w, "- preprocessing: {}", m.preprocessing.key());
    let _ = writeln!(w, "- training data SHA-256: `{}`", m.training_data_sha256);
    match m
        .extra
        .get(scanside_shared::guard::MANIFEST_KEY)
        .and_then(|v| scanside_shared::guard::GuardSpec::from_json(v).ok())
    {
        Some(g) => {
            let _ = writeln!(
                w,
                "- out-of-scope guard: {} principal components of the head's input, \
                 threshold {:.3}; {} of the training images pass out of fold (target {}; \
                 out-of-fold score quantiles 50/90/99 %: {:.2} / {:.2} / {:.2}); see docs/guard.md\n",
                g.features.rank(),
                g.features.threshold,
                pct(f64::from(g.fitted.oof_pass_rate)),
                pct(f64::from(g.fitted.pass_target)),
                g.fitted.oof_quantiles[0],
                g.fitted.oof_quantiles[1],
                g.fitted.oof_quantiles[2]
            );
        }
        None => {
            let _ = writeln!(
                w,
                "- out-of-scope guard: none (trained with `--no-guard`)\n"
            );
        }
    }

    let _ = writeln!(w, "## Data\n");
    for root in &dataset.roots {
        let _ = writeln!(w, "- folder: `{}`", root.display());
    }
    let _ = writeln!(
        w,
        "- images used: {} ({} `{}`, {} `{}`)",
        s.n, s.class_counts[1], m.labels[1], s.class_counts[0], m.labels[0]
    );
    let _ = writeln!(w, "- skipped: {}", o.skipped.len());
    for sk in &o.skipped {
        let _ = writeln!(w, "  - `{}`: {}", sk.path.display(), sk.reason);
    }
    let _ = writeln!(
        w,
        "- near-duplicates (perceptual hash distance ≤ {}): {} linked pairs forming {} groups of {} images; each group stays in one fold",
        opts.dedup_distance,
        s.near_duplicate_pairs,
        s.duplicate_groups,
        s.images_in_duplicate_groups
    );
    for members in groups.multi_member().iter().take(20) {
        let names: Vec<String> = members
            .iter()
            .map(|&i| format!("`{}`", dataset.relative(&dataset.items[i].path).display()))
            .collect();
        let _ = writeln!(w, "  - {}", names.join(", "));
    }
    if groups.multi_member().len() > 20 {
        let _ = writeln!(
            w,
            "  - … ({} more groups)",
            groups.multi_member().len() - 20
        );
    }

    let _ = writeln!(w, "\n## Cross-validated performance\n");
    let _ = writeln!(
        w,
        "Stratified, duplicate-grouped {}-fold × {} repeats; {} augmented views per training image; test folds see original images only.",
        s.folds, s.repeats, opts.augmented_views
    );
    let rule = match o.operating_point.rule {
        ThresholdRule::Quantile => "rule `quantile`: the highest reaching".to_string(),
        ThresholdRule::LogitNormal => format!(
            "rule `logit-normal`: median {:.2} and robust spread {:.2} of the tumour log-odds, the quantile for",
            o.operating_point.median_logit.unwrap_or(f64::NAN),
            o.operating_point.spread_logit.unwrap_or(f64::NAN)
        ),
    };
    let on = o
        .operating_point
        .chosen_on
        .as_ref()
        .map_or(String::new(), |c| format!(" of {c}"));
    let _ = writeln!(
        w,
        "Operating threshold {:.4} ({rule} sensitivity ≥ {} on out-of-fold predictions{on}; per-fold figures use a threshold chosen on the other folds of their repeat).\n",
        s.threshold, s.target_sensitivity
    );
    let _ = writeln!(
        w,
        "| metric | mean ± std over folds | 95 % bootstrap CI | at 0.5 |"
    );
    let _ = writeln!(w, "|---|---|---|---|");
    for r in headline_rows(s) {
        let _ = writeln!(
            w,
            "| {} | {} ± {} | {} – {} | {} |",
            r.name,
            pct(r.mean),
            pct(r.std),
            pct(r.ci[0]),
            pct(r.ci[1]),
            pct(r.at_half)
        );
    }
    if !s.per_source.is_empty() {
        let _ = writeln!(
            w,
            "\nPer source (repeat-averaged out-of-fold probabilities at the threshold):\n"
        );
        let _ = writeln!(
            w,
            "| source | n | accuracy | sensitivity | specificity | AUC |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|");
        for src in &s.per_source {
            let m = &src.metrics;
            let _ = writeln!(
                w,
                "| `{}` | {} | {} | {} | {} | {:.3} |",
                src.folder.display(),
                m.n,
                pct(m.accuracy),
                pct(m.sensitivity),
                pct(m.specificity),
                m.auc
            );
        }
    }
    let c = s.confusion;
    let _ = writeln!(
        w,
        "\nConfusion (repeat-averaged out-of-fold probabilities at the threshold):\n"
    );
    let _ = writeln!(
        w,
        "| | predicted {} | predicted {} |",
        m.labels[1], m.labels[0]
    );
    let _ = writeln!(w, "|---|---|---|");
    let _ = writeln!(w, "| actual {} | {} | {} |", m.labels[1], c.tp, c.fn_);
    let _ = writeln!(w, "| actual {} | {} | {} |", m.labels[0], c.fp, c.tn);

    let _ = writeln!(w, "\n## Final model\n");
    let _ = writeln!(
        w,
        "- head: {}",
        serde_json::to_string(&m.head).unwrap_or_default()
    );
    let _ = writeln!(
        w,
        "- export verified in tract on {} training images: max |Δp| = {:.2e}{}",
        o.verification.images,
        o.verification.max_abs_diff,
        o.verification
            .guard_max_rel_diff
            .map_or(String::new(), |d| format!(
                ", guard score max |Δ| = {d:.2e} of its threshold"
            ))
    );
    let _ = writeln!(
        w,
        "- final fit loss by epoch: {}",
        o.head
            .history
            .iter()
            .map(|e| format!("{:.3}", e.train))
            .collect::<Vec<_>>()
            .join(" ")
    );

    if !o.validation.is_empty() {
        let _ = writeln!(w, "\n## External validation\n");
        w.push_str(&validation_markdown(&o.validation));
    }

    if !o.sizes.is_empty() {
        let _ = writeln!(w, "\n## Input size\n");
        let _ = writeln!(
            w,
            "Smallest size within 0.5 pt of the best cross-validated accuracy is chosen.\n"
        );
        let _ = writeln!(
            w,
            "| size | accuracy @ threshold | accuracy @ 0.5 | AUC | f32 backbone ms (1 thread) | chosen |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|");
        for r in &o.sizes {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {:.3} | {:.0} | {} |",
                r.size,
                pct(r.accuracy),
                pct(r.accuracy_at_half),
                r.auc,
                r.backbone_ms,
                if r.chosen { "yes" } else { "" }
            );
        }
    }
    if let Some(q) = &o.int8 {
        let _ = writeln!(w, "\n## Int8 model\n");
        let verdict = match q.report.accept() {
            Ok(()) => format!("written to `{}`", q.model_path.display()),
            Err(e) => format!("**not written**: {e}"),
        };
        let _ = writeln!(w, "{verdict}\n");
        w.push_str(&int8_markdown(&q.report));
    }

    let _ = writeln!(w, "\n## Stages\n");
    let _ = writeln!(w, "| stage | wall s | peak RSS MiB |");
    let _ = writeln!(w, "|---|---|---|");
    for t in &o.timings {
        let _ = writeln!(
            w,
            "| {} | {:.1} | {:.0} |",
            t.stage, t.seconds, t.peak_rss_mib
        );
    }
    let _ = writeln!(
        w,
        "\n({} views extracted, the rest read from the feature cache.)",
        o.views_computed
    );
    r
}

/// Validation results as a Markdown table, with what was left out.
pub fn validation_markdown(results: &[ValidationResult]) -> String {
    let mut r = String::new();
    let w = &mut r;
    let _ = writeln!(
        w,
        "The final model on labelled folders it was never fitted to; copies of training images left out; 95 % bootstrap intervals over each folder's near-duplicate groups.\n"
    );
    let _ = writeln!(
        w,
        "| folder | engine | n | left out | AUC (95 % CI) | threshold | accuracy | sensitivity | specificity | accuracy @ 0.5 | sensitivity @ 0.5 | specificity @ 0.5 |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for v in results {
        let m = &v.at_threshold;
        let _ = writeln!(
            w,
            "| `{}` | {} | {} | {} | {:.3} ({:.3}–{:.3}) | {:.4} | {} | {} | {} | {} | {} | {} |",
            v.folder.display(),
            v.engine,
            v.n,
            v.excluded.len(),
            v.auc,
            v.auc_ci[0],
            v.auc_ci[1],
            m.threshold,
            pct(m.accuracy),
            pct(m.sensitivity),
            pct(m.specificity),
            pct(v.at_half.accuracy),
            pct(v.at_half.sensitivity),
            pct(v.at_half.specificity)
        );
    }
    r
}

/// A Markdown table of the headline metrics, f32 against int8.
fn change_table(w: &mut String, heading: &str, f32: &Metrics, int8: &Metrics) {
    let _ = writeln!(w, "| {heading} | f32 | int8 | change |");
    let _ = writeln!(w, "|---|---|---|---|");
    for (name, a, b) in [
        ("accuracy", f32.accuracy, int8.accuracy),
        ("sensitivity", f32.sensitivity, int8.sensitivity),
        ("specificity", f32.specificity, int8.specificity),
        ("auc", f32.auc, int8.auc),
    ] {
        let _ = writeln!(
            w,
            "| {name} | {} | {} | {:+.2} pt |",
            pct(a),
            pct(b),
            100.0 * (b - a)
        );
    }
}

/// The int8 check as Markdown: recipe, agreement and the metric changes.
pub fn int8_markdown(q: &Int8Report) -> String {
    let mut r = String::new();
    let w = &mut r;
    let _ = match q.recipe.scheme {
        Scheme::Static => writeln!(
            w,
            "- recipe: static int8; {} activation ranges from {} calibration images; weights {}; activations {}",
            q.recipe.range, q.recipe.calibration_images, q.recipe.weights, q.recipe.activations
        ),
        Scheme::Weights => writeln!(
            w,
            "- recipe: int8 weights ({}), f32 activations and compute",
            q.recipe.weights
        ),
    };
    let _ = writeln!(
        w,
        "- size: {:.1} MB (f32 {:.1} MB)",
        q.int8_bytes as f64 / 1e6,
        q.f32_bytes as f64 / 1e6
    );
    let _ = writeln!(
        w,
        "- training images, run in tract: decision agreement {:.2} % (minimum {:.2} %), max |Δp| {:.4}, mean |Δp| {:.5}",
        100.0 * q.training.decision_agreement,
        100.0 * q.options.min_agreement,
        q.training.max_abs_diff,
        q.training.mean_abs_diff
    );
    let _ = writeln!(
        w,
        "- out of fold (same folds, threshold {:.4}): decision agreement {:.2} %\n",
        q.oof_f32.threshold,
        100.0 * q.oof_decision_agreement
    );
    change_table(w, "out-of-fold metric", &q.oof_f32, &q.oof_int8);
    for v in &q.validation {
        let _ = writeln!(
            w,
            "\n`{}` ({} images, threshold {:.4}): decision agreement {:.2} %, max |Δp| {:.4}\n",
            v.folder.display(),
            v.agreement.images,
            v.f32.threshold,
            100.0 * v.agreement.decision_agreement,
            v.agreement.max_abs_diff
        );
        change_table(w, "metric", &v.f32, &v.int8);
    }
    let guards = q
        .guard
        .iter()
        .map(|g| ("training images".to_string(), g))
        .chain(q.validation.iter().filter_map(|v| {
            v.guard
                .as_ref()
                .map(|g| (format!("`{}`", v.folder.display()), g))
        }))
        .collect::<Vec<_>>();
    if !guards.is_empty() {
        let _ = writeln!(w);
    }
    for (set, g) in guards {
        let _ = writeln!(
            w,
            "- out-of-scope guard, {set} ({} images): verdict agreement {:.2} %, pass rate f32 {:.1} % / int8 {:.1} %, max |Δscore| {:.3} % of the threshold",
            g.images,
            100.0 * g.verdict_agreement,
            100.0 * g.f32_pass_rate,
            100.0 * g.int8_pass_rate,
            100.0 * g.max_rel_diff
        );
    }
    let _ = writeln!(
        w,
        "\nRefused if agreement (of decisions, and of the guard's verdicts) < {:.2} % or accuracy drops by more than {:.2} pt (out of fold, and on each validation folder).",
        100.0 * q.options.min_agreement,
        100.0 * q.options.max_accuracy_drop
    );
    r
}
