//! `report.html`: a training or evaluation run as one self-contained page.
//!
//! Plots are inline SVG ([`crate::plots`]), thumbnails are PNG data URIs,
//! the style sheet is inline and there is no script: the file opens
//! offline in any browser and can be mailed as it is. The page is also
//! well-formed XML (polyglot HTML), which the tests check with an XML parser
//! before a headless browser opens it.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use image::DynamicImage;

use scanside_shared::classifier::NOTICE;
use scanside_shared::manifest::ModelManifest;
use scanside_shared::preprocess::{DecodeLimits, load_rgb};

use crate::dataset::{Dataset, Skipped};
use crate::dedup::Groups;
use crate::evaluate::Evaluation;
use crate::metrics::{Confusion, Metrics};
use crate::report::{headline_rows, pct};
use crate::train::TrainOutcome;
use crate::{Result, plots};

/// Section ids of a training report, in page order (`int8` only when the
/// run quantized).
pub const TRAINING_SECTIONS: [&str; 11] = [
    "data",
    "duplicates",
    "metrics",
    "confusion",
    "roc",
    "threshold",
    "calibration",
    "loss",
    "errors",
    "int8",
    "model",
];

/// Section id of the external-validation section (training reports with
/// `--validate`, and `evaluate --validate` pages).
pub const VALIDATION_SECTION: &str = "validation";

/// The external-validation section: a table of every set's figures and
/// the ROC and sensitivity curves of the out-of-fold predictions (when
/// given) and every set on one plot each.
fn validation_section(
    page: &mut Page,
    results: &[crate::validation::ValidationResult],
    oof: Option<plots::Curve<'_>>,
    threshold: f32,
) -> Result<()> {
    let mut t = String::from(
        "<p>Each folder was scored by the finished model and never used to fit it. When the \
         training images are known (<code>train</code>, <code>retrain</code>), images that are \
         copies of one (same bytes, or perceptual-hash near-duplicates) are left out and listed. \
         Intervals: 95 % bootstrap over the folder's near-duplicate groups.</p>\
         <table><tr><th class=\"l\">folder</th><th>engine</th><th>n</th><th>left out</th>\
         <th>AUC (95 % CI)</th><th>accuracy</th><th>sensitivity</th><th>specificity</th>\
         <th>accuracy at 0.5</th><th>sensitivity at 0.5</th><th>specificity at 0.5</th></tr>",
    );
    for r in results {
        let m = &r.at_threshold;
        let _ = write!(
            t,
            "<tr><td class=\"l\"><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{:.3} ({:.3}–{:.3})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.folder.display().to_string()),
            esc(&r.engine),
            r.n,
            r.excluded.len(),
            r.auc,
            r.auc_ci[0],
            r.auc_ci[1],
            pct(m.accuracy),
            pct(m.sensitivity),
            pct(m.specificity),
            pct(r.at_half.accuracy),
            pct(r.at_half.sensitivity),
            pct(r.at_half.specificity),
        );
    }
    let _ = write!(t, "</table><p>At the model's threshold {threshold:.4}.</p>");
    let pairs: Vec<(String, Vec<u8>, Vec<f32>)> = results
        .iter()
        .filter(|r| r.engine != "int8")
        .map(|r| {
            let (y, p) = r.pairs();
            (r.folder.display().to_string(), y, p)
        })
        .collect();
    let mut curves: Vec<plots::Curve<'_>> = oof.into_iter().collect();
    curves.extend(pairs.iter().map(|(name, y, p)| plots::Curve {
        name: name.clone(),
        probs: p,
        labels: y,
    }));
    t.push_str(&plots(&[
        plots::roc_overlay(&curves, threshold)?,
        plots::sensitivity_overlay(&curves, threshold)?,
    ]));
    for r in results.iter().filter(|r| !r.excluded.is_empty()) {
        let _ = write!(
            t,
            "<p>Left out of <code>{}</code> ({}):</p><ul>",
            esc(&r.folder.display().to_string()),
            r.excluded.len()
        );
        for x in r.excluded.iter().take(20) {
            let what = match x.distance {
                0 => "the same bytes as".to_string(),
                d => format!("a near-copy (hash distance {d}) of"),
            };
            let _ = write!(
                t,
                "<li><code>{}</code>: {what} training image <code>{}</code></li>",
                esc(&x.file.display().to_string()),
                esc(&x.training_file.display().to_string()),
            );
        }
        t.push_str("</ul>");
    }
    page.section(VALIDATION_SECTION, "External validation", t);
    Ok(())
}

/// Section id of an evaluation report's out-of-scope guard section (only
/// for a model with a guard).
pub const SCOPE_SECTION: &str = "scope";

/// Section ids of an evaluation report, in page order (with
/// [`SCOPE_SECTION`] too for a model with a guard).
pub const EVALUATION_SECTIONS: [&str; 8] = [
    "data",
    "metrics",
    "confusion",
    "roc",
    "threshold",
    "calibration",
    "errors",
    "model",
];

/// Escape text for HTML (and XML) content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page under construction: sections in order.
struct Page {
    title: String,
    sections: Vec<(String, String, String)>,
}

impl Page {
    fn new(title: &str) -> Page {
        Page {
            title: title.into(),
            sections: Vec::new(),
        }
    }

    fn section(&mut self, id: &str, heading: &str, body: String) {
        self.sections.push((id.into(), heading.into(), body));
    }

    fn render(&self) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\" xmlns=\"http://www.w3.org/1999/xhtml\">\n<head>\n\
             <meta charset=\"utf-8\" />\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
             <h1>{}</h1>\n<p class=\"notice\">{}: every figure here is research evidence, not clinical validation.</p>\n<nav><ul>",
            esc(&self.title),
            esc(&self.title),
            esc(NOTICE)
        );
        for (id, heading, _) in &self.sections {
            let _ = write!(h, "<li><a href=\"#{id}\">{}</a></li>", esc(heading));
        }
        h.push_str("</ul></nav>\n");
        for (id, heading, body) in &self.sections {
            let _ = write!(
                h,
                "<section id=\"{id}\">\n<h2>{}</h2>\n{body}\n</section>\n",
                esc(heading)
            );
        }
        h.push_str("</body>\n</html>\n");
        h
    }
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}\
.notice{background:#fff3cd;border:1px solid #e0c36a;padding:.6em}\
nav ul{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.4em 1.2em}\
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
th{background:#f3f3f3}td.l,th.l{text-align:left}\
figure{display:inline-block;margin:.3em;text-align:center;font-size:.8em;max-width:150px;vertical-align:top}\
figure img{display:block;margin:auto;border:1px solid #999}.plots svg{margin:.3em}\
code{font-size:.9em;word-break:break-all}";

/// A thumbnail of an image file as an `<img>` with a data URI, or a note
/// that it could not be read.
fn thumbnail(path: &Path, alt: &str) -> String {
    match load_rgb(path, &DecodeLimits::default()) {
        Ok(rgb) => {
            let small = DynamicImage::ImageRgb8(rgb).thumbnail(128, 128).to_rgb8();
            let png = scanside_shared::explain::png_bytes(&small);
            format!(
                "<img alt=\"{}\" width=\"{}\" height=\"{}\" src=\"data:image/png;base64,{}\" />",
                esc(alt),
                small.width(),
                small.height(),
                base64::engine::general_purpose::STANDARD.encode(png)
            )
        }
        Err(e) => format!("<span>(cannot show: {})</span>", esc(&e.to_string())),
    }
}

fn figure(path: &Path, name: &str, caption: &str) -> String {
    format!(
        "<figure>{}<figcaption>{}<br />{}</figcaption></figure>",
        thumbnail(path, name),
        esc(name),
        esc(caption)
    )
}

fn skipped_list(skipped: &[Skipped]) -> String {
    if skipped.is_empty() {
        return "<p>No file was skipped.</p>".into();
    }
    let mut h = format!("<p>{} files skipped:</p><ul>", skipped.len());
    for s in skipped {
        let _ = write!(
            h,
            "<li><code>{}</code>: {}</li>",
            esc(&s.path.display().to_string()),
            esc(&s.reason)
        );
    }
    h.push_str("</ul>");
    h
}

fn confusion_table(c: &Confusion, labels: &[String], note: &str) -> String {
    format!(
        "<p>{}</p><table><tr><th></th><th>predicted {p}</th><th>predicted {n}</th></tr>\
         <tr><th class=\"l\">actual {p}</th><td>{}</td><td>{}</td></tr>\
         <tr><th class=\"l\">actual {n}</th><td>{}</td><td>{}</td></tr></table>",
        esc(note),
        c.tp,
        c.fn_,
        c.fp,
        c.tn,
        p = esc(&labels[1]),
        n = esc(&labels[0])
    )
}

/// One image's out-of-sample probability, for the error gallery.
pub struct Scored<'a> {
    /// The file.
    pub path: &'a Path,
    /// Its name relative to the data folder.
    pub name: String,
    /// True label (1 = positive).
    pub label: u8,
    /// Positive-class probability.
    pub probability: f32,
}

fn confident_errors(
    scored: &[Scored<'_>],
    threshold: f32,
    labels: &[String],
    note: &str,
) -> String {
    let mut wrong: Vec<&Scored<'_>> = scored
        .iter()
        .filter(|s| (s.probability >= threshold) != (s.label == 1))
        .collect();
    wrong.sort_by(|a, b| {
        let conf = |s: &Scored<'_>| (s.probability - f32::from(s.label)).abs();
        conf(b).total_cmp(&conf(a))
    });
    let mut h = format!(
        "<p>{} of {} images are on the wrong side of the threshold {threshold:.3}{note}. The {} most confidently wrong:</p><div>",
        wrong.len(),
        scored.len(),
        wrong.len().min(8)
    );
    for s in wrong.iter().take(8) {
        let caption = format!(
            "actual {}, p = {:.3}",
            labels[usize::from(s.label)],
            s.probability
        );
        h.push_str(&figure(s.path, &s.name, &caption));
    }
    h.push_str("</div>");
    h
}

fn model_table(manifest: &ModelManifest, files: &[(String, PathBuf)]) -> String {
    let mut h = String::from("<table>");
    for (name, path) in files {
        let size = std::fs::metadata(path).map_or("missing".into(), |m| {
            format!("{:.1} MB", m.len() as f64 / 1e6)
        });
        let _ = write!(
            h,
            "<tr><th class=\"l\">{}</th><td class=\"l\"><code>{}</code> ({size})</td></tr>",
            esc(name),
            esc(&path.display().to_string())
        );
    }
    for (k, v) in manifest.to_props() {
        let _ = write!(
            h,
            "<tr><th class=\"l\">{}</th><td class=\"l\"><code>{}</code></td></tr>",
            esc(&k),
            esc(&v)
        );
    }
    h.push_str("</table>");
    h
}

fn plots(svgs: &[String]) -> String {
    format!("<div class=\"plots\">{}</div>", svgs.concat())
}

/// What the probabilities in a report's curves are.
struct Probabilities<'a> {
    values: &'a [f32],
    labels: &'a [u8],
    /// For the page text.
    what: &'a str,
    /// For the ROC legend.
    short: &'a str,
}

/// The curves every report has: ROC, threshold sweep, calibration.
fn curve_sections(page: &mut Page, p: &Probabilities<'_>, threshold: f32, auc: f64) -> Result<()> {
    let (probs, labels, what) = (p.values, p.labels, p.what);
    page.section(
        "roc",
        "ROC curve",
        format!(
            "<p>{what}; the dot is the operating threshold.</p>{}",
            plots(&[plots::roc(probs, labels, threshold, auc, p.short)?])
        ),
    );
    page.section(
        "threshold",
        "Sensitivity and specificity vs threshold",
        format!(
            "<p>{what}. Moving the threshold trades missed tumours against false alarms.</p>{}",
            plots(&[plots::threshold_sweep(probs, labels, threshold)?])
        ),
    );
    page.section(
        "calibration",
        "Calibration",
        format!(
            "<p>{what}. Points on the diagonal mean a probability of 0.8 is right 8 times in 10.</p>{}",
            plots(&[plots::calibration(probs, labels)?])
        ),
    );
    Ok(())
}

/// The training report of a finished run.
pub fn training(o: &TrainOutcome, dataset: &Dataset, groups: &Groups) -> Result<String> {
    let s = &o.summary;
    let m = &o.manifest;
    let labels: Vec<u8> = dataset.items.iter().map(|i| i.label).collect();
    let mut page = Page::new(&format!("scanside training report: {}", m.model_id));

    page.section(
        "data",
        "Data",
        format!(
            "<p>Folder <code>{}</code>: {} images used, {} <b>{}</b> and {} <b>{}</b>.</p>{}",
            esc(&dataset
                .roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")),
            s.n,
            s.class_counts[1],
            esc(&m.labels[1]),
            s.class_counts[0],
            esc(&m.labels[0]),
            skipped_list(&o.skipped)
        ),
    );

    let multi = groups.multi_member();
    let mut dup = format!(
        "<p>{} near-duplicate pairs (perceptual hash) form {} groups of {} images; \
         each group stays inside one fold, so no image is tested against its own twin. A few groups:</p>",
        s.near_duplicate_pairs, s.duplicate_groups, s.images_in_duplicate_groups
    );
    for members in multi.iter().take(4) {
        dup.push_str("<div>");
        for &i in members.iter().take(3) {
            let item = &dataset.items[i];
            let name = dataset.relative(&item.path).display().to_string();
            dup.push_str(&figure(&item.path, &name, ""));
        }
        dup.push_str("</div>");
    }
    page.section("duplicates", "Near-duplicates", dup);

    let mut t = format!(
        "<p>Stratified, duplicate-grouped {} folds × {} repeats. Each fold is scored at the threshold \
         chosen on the other folds of its repeat; the model's threshold {:.4} is the highest with \
         out-of-fold sensitivity ≥ {}.</p>\
         <table><tr><th class=\"l\">metric</th><th>mean ± std</th><th>95 % bootstrap interval</th><th>at 0.5</th></tr>",
        s.folds, s.repeats, s.threshold, s.target_sensitivity
    );
    for r in headline_rows(s) {
        let _ = write!(
            t,
            "<tr><th class=\"l\">{}</th><td>{} ± {}</td><td>{} – {}</td><td>{}</td></tr>",
            r.name,
            pct(r.mean),
            pct(r.std),
            pct(r.ci[0]),
            pct(r.ci[1]),
            pct(r.at_half)
        );
    }
    t.push_str("</table><table><tr><th>repeat</th><th>fold</th><th>epochs</th><th>n</th><th>accuracy</th><th>sensitivity</th><th>specificity</th><th>AUC</th><th>threshold</th></tr>");
    for f in &s.per_fold {
        let _ = write!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            f.repeat + 1,
            f.fold + 1,
            f.best_epoch,
            f.metrics.n,
            pct(f.metrics.accuracy),
            pct(f.metrics.sensitivity),
            pct(f.metrics.specificity),
            f.metrics.auc,
            f.metrics.threshold
        );
    }
    t.push_str("</table>");
    page.section("metrics", "Cross-validated metrics", t);

    page.section(
        "confusion",
        "Confusion matrix",
        confusion_table(
            &s.confusion,
            &m.labels,
            "Repeat-averaged out-of-fold probabilities at the model's threshold.",
        ),
    );
    let oof = Probabilities {
        values: &o.oof,
        labels: &labels,
        what: "Out-of-fold probabilities (each image scored by heads that never saw it, averaged over repeats)",
        short: "out of fold",
    };
    curve_sections(&mut page, &oof, s.threshold, s.auc)?;
    page.section(
        "loss",
        "Loss per epoch",
        format!(
            "<p>The final head is fitted on all images for {} epoch(s), the median of the folds' \
             early-stopping epochs; it has no held-out data of its own, so validation loss is \
             shown for the folds (a fold's curve ends where it stopped).</p>{}",
            o.head.history.len(),
            plots(&[plots::losses(&o.head.history, &o.fold_histories)?])
        ),
    );
    if !o.validation.is_empty() {
        let oof_curve = plots::Curve {
            name: "cross-validation (out of fold)".into(),
            probs: &o.oof,
            labels: &labels,
        };
        validation_section(&mut page, &o.validation, Some(oof_curve), s.threshold)?;
    }
    let scored: Vec<Scored<'_>> = dataset
        .items
        .iter()
        .zip(&o.oof)
        .map(|(item, &p)| Scored {
            path: &item.path,
            name: dataset.relative(&item.path).display().to_string(),
            label: item.label,
            probability: p,
        })
        .collect();
    page.section(
        "errors",
        "Most confidently wrong (out of fold)",
        confident_errors(
            &scored,
            s.threshold,
            &m.labels,
            " (out-of-fold probabilities)",
        ),
    );
    let mut files = vec![("f32 model".to_string(), o.model_path.clone())];
    if let Some(q) = &o.int8 {
        let verdict = match q.report.accept() {
            Ok(()) => format!(
                "written to <code>{}</code>",
                esc(&q.model_path.display().to_string())
            ),
            Err(e) => format!("<b>not written</b>: {}", esc(&e.to_string())),
        };
        page.section(
            "int8",
            "Int8 model",
            format!(
                "<p>{verdict}. {:.1} MB (f32 {:.1} MB); decision agreement on the training images {:.2} %, \
                 max |Δp| {:.4}; out-of-fold accuracy {} (f32 {}).</p>{}",
                q.report.int8_bytes as f64 / 1e6,
                q.report.f32_bytes as f64 / 1e6,
                100.0 * q.report.training.decision_agreement,
                q.report.training.max_abs_diff,
                pct(q.report.oof_int8.accuracy),
                pct(q.report.oof_f32.accuracy),
                plots(&[plots::agreement(&q.report.training_pairs, s.threshold)?])
            ),
        );
        files.push(("int8 model".into(), q.model_path.clone()));
    }
    page.section(
        "model",
        "Model",
        format!(
            "<p>Export verified in tract on {} training images: max |Δp| = {:.2e}.</p>{}",
            o.verification.images,
            o.verification.max_abs_diff,
            model_table(m, &files)
        ),
    );
    Ok(page.render())
}

/// The report of `evaluate`: a model on a labelled folder.
pub fn evaluation(e: &Evaluation, model: &Path, data: &Path) -> Result<String> {
    let manifest = &e.manifest;
    let mut page = Page::new(&format!("scanside evaluation: {}", e.model_id));
    let m = &e.metrics;
    let probs: Vec<f32> = e.predictions.iter().map(|p| p.probability).collect();
    let labels: Vec<u8> = e.predictions.iter().map(|p| p.label).collect();
    let positives = labels.iter().filter(|&&y| y == 1).count();
    page.section(
        "data",
        "Data",
        format!(
            "<p>Folder <code>{}</code>: {} images scored, {positives} <b>{}</b> and {} <b>{}</b>. \
             If the model was trained on any of them, these figures are optimistic.</p>{}",
            esc(&data.display().to_string()),
            m.n,
            esc(&manifest.labels[1]),
            m.n - positives,
            esc(&manifest.labels[0]),
            skipped_list(&e.skipped)
        ),
    );
    let mut t = String::from("<table><tr><th class=\"l\">metric</th><th>value</th></tr>");
    for (name, v) in Metrics::named(m) {
        let shown = if name == "auc" {
            format!("{v:.3}")
        } else {
            pct(v)
        };
        let _ = write!(t, "<tr><th class=\"l\">{name}</th><td>{shown}</td></tr>");
    }
    let _ = write!(
        t,
        "<tr><th class=\"l\">threshold</th><td>{:.4}</td></tr></table>",
        m.threshold
    );
    page.section("metrics", "Metrics at the model's threshold", t);
    if let Some(g) = &e.scope {
        let passed = g.passed_metrics.as_ref().map_or(String::new(), |p| {
            format!(
                " On the {} passed images the model's accuracy is {}, sensitivity {}, \
                 specificity {}.",
                g.passed,
                pct(p.accuracy),
                pct(p.sensitivity),
                pct(p.specificity)
            )
        });
        let refused = g.refused_accuracy.map_or(String::new(), |a| {
            format!(
                " On the refused ones it would have been right {} of the time.",
                pct(a)
            )
        });
        let by: Vec<String> = g
            .refused_by
            .iter()
            .map(|(k, v)| format!("{} {v}", esc(k)))
            .collect();
        page.section(
            SCOPE_SECTION,
            "Out-of-scope guard",
            format!(
                "<p>The model's guard let {} of {} images through ({}) and refused {} \
                 (by check: {}); the box gives no tumour / no-tumour answer for a refused \
                 image. The metrics above are over every image, as the model would have \
                 answered.{passed}{refused}</p>",
                g.passed,
                g.passed + g.refused,
                pct(g.pass_rate),
                g.refused,
                if by.is_empty() {
                    "none".into()
                } else {
                    by.join(", ")
                }
            ),
        );
    }
    page.section(
        "confusion",
        "Confusion matrix",
        confusion_table(&m.confusion, &manifest.labels, "At the model's threshold."),
    );
    let on_folder = Probabilities {
        values: &probs,
        labels: &labels,
        what: "The model's probabilities on this folder",
        short: "this folder",
    };
    curve_sections(&mut page, &on_folder, m.threshold, m.auc)?;
    let scored: Vec<Scored<'_>> = e
        .predictions
        .iter()
        .map(|p| Scored {
            path: &p.path,
            name: p
                .path
                .strip_prefix(data)
                .unwrap_or(&p.path)
                .display()
                .to_string(),
            label: p.label,
            probability: p.probability,
        })
        .collect();
    page.section(
        "errors",
        "Most confidently wrong",
        confident_errors(&scored, m.threshold, &manifest.labels, ""),
    );
    page.section(
        "model",
        "Model",
        model_table(manifest, &[("model".into(), model.to_path_buf())]),
    );
    Ok(page.render())
}

/// The page of `evaluate --validate`: a model file on several folders.
pub fn validation(v: &crate::evaluate::Validated, model: &Path) -> Result<String> {
    let mut page = Page::new(&format!("scanside validation: {}", v.model_id));
    validation_section(&mut page, &v.sets, None, v.manifest.threshold)?;
    page.section(
        "model",
        "Model",
        model_table(&v.manifest, &[("model".into(), model.to_path_buf())]),
    );
    Ok(page.render())
}

/// Section ids of a retrain comparison page, in page order.
pub const COMPARISON_SECTIONS: [&str; 5] =
    ["decision", "metrics", "changes", "regression", "changed"];

/// The retrain comparison (`comparison.html`): the decision and why,
/// parent and candidate side by side, the regression scans and every
/// image whose decision changed, with thumbnails.
pub fn comparison(c: &crate::retrain::Comparison) -> Result<String> {
    let mut page = Page::new(&format!("scanside retrain of {}", c.parent_model_id));
    let decision = match &c.candidate_model_id {
        Some(id) => format!(
            "<p><b>Promoted</b> as <code>{}</code>{}.</p>",
            esc(id),
            c.promoted_to.as_ref().map_or(String::new(), |p| format!(
                ", written to <code>{}</code>",
                esc(&p.display().to_string())
            ))
        ),
        None => {
            let mut h = String::from(
                "<p><b>Refused</b>: nothing was written to the models folder.</p><ul>",
            );
            for r in &c.reasons {
                let _ = write!(h, "<li>{}</li>", esc(r));
            }
            h.push_str("</ul>");
            h
        }
    };
    page.section(
        "decision",
        "Decision",
        format!(
            "{decision}<p>Rule: no headline metric may be worse than the parent's by more than {}.</p>",
            pct(c.tolerance)
        ),
    );
    let mut t = format!(
        "<p>{} images; {}×{} duplicate-grouped folds, the same for both. The parent is scored by \
         its own recipe trained on the old images of each training fold; the regression row is \
         the parent model file itself on {} reviewed scans it never saw, against the candidate's \
         out-of-fold predictions. The parent's other training data {} its recorded hash.</p>\
         <table><tr><th class=\"l\">metric</th><th>parent</th><th>candidate</th><th class=\"l\"></th></tr>",
        c.n,
        c.repeats,
        c.folds,
        c.regression_images,
        if c.parent_data_verified {
            "matches"
        } else {
            "does NOT match"
        }
    );
    for m in &c.metrics {
        let _ = write!(
            t,
            "<tr><th class=\"l\">{}</th><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            esc(&m.metric),
            pct(m.parent),
            pct(m.candidate),
            if m.worse { "worse" } else { "" }
        );
    }
    t.push_str("</table>");
    page.section("metrics", "Parent and candidate", t);
    let mut ch = String::from("<ul>");
    for x in &c.changes {
        let _ = write!(ch, "<li>{}</li>", esc(x));
    }
    ch.push_str("</ul>");
    page.section("changes", "What changed", ch);
    let name = |p: &Path| {
        p.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    };
    let mut reg = format!("<p>{} scans.</p><div>", c.regression.len());
    for r in &c.regression {
        let caption = format!(
            "{}{}: parent p = {:.3}, candidate p = {:.3}",
            r.label,
            if r.disputed { " (disputed)" } else { "" },
            r.parent_probability,
            r.candidate_probability
        );
        reg.push_str(&figure(&r.file, &name(&r.file), &caption));
    }
    reg.push_str("</div>");
    page.section("regression", "Regression set", reg);
    let mut changed = format!("<p>{} images.</p><div>", c.changed.len());
    for d in &c.changed {
        let caption = format!(
            "{} ({}): {} {:.3} → {} {:.3}",
            d.label,
            d.set,
            d.parent_decision,
            d.parent_probability,
            d.candidate_decision,
            d.candidate_probability
        );
        changed.push_str(&figure(&d.file, &name(&d.file), &caption));
    }
    changed.push_str("</div>");
    page.section("changed", "Decisions that changed", changed);
    Ok(page.render())
}
