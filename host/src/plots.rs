//! The report's plots, drawn with plotters into SVG strings (inlined into
//! `report.html`, so the page needs no network and no image files).

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::head::EpochLoss;
use crate::metrics::{Confusion, calibration_bins, roc_curve};
use crate::{Error, Result};

/// A chart on an SVG string with linear axes.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

const SIZE: (u32, u32) = (460, 340);
const FONT: &str = "sans-serif";
const POINT: RGBColor = RGBColor(214, 39, 40);
const LINE: RGBColor = RGBColor(31, 119, 180);
const SECOND: RGBColor = RGBColor(255, 127, 14);

fn plot_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> Error {
    Error::Config(format!("drawing a report plot: {e}"))
}

/// Draw into a fresh SVG string.
fn svg(draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<()>) -> Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    Ok(out)
}

/// Unit-square chart with axis names.
fn unit_chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    x: &str,
    y: &str,
) -> Result<Chart<'a, 'b>> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(x)
        .y_desc(y)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_err)?;
    Ok(chart)
}

fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, position: SeriesLabelPosition) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 13))
        .draw()
        .map_err(plot_err)
}

/// Draw a line series (with dots of radius `dots` at its points, 0 for
/// none) and its legend entry.
fn labelled_line<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    points: impl IntoIterator<Item = (f64, f64)>,
    style: ShapeStyle,
    dots: u32,
    name: &str,
) -> Result<()> {
    chart
        .draw_series(LineSeries::new(points, style).point_size(dots))
        .map_err(plot_err)?
        .label(name)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style));
    Ok(())
}

/// ROC curve with the operating point marked.
/// `what` names the probabilities in the legend (e.g. "out of fold").
pub fn roc(probs: &[f32], labels: &[u8], threshold: f32, auc: f64, what: &str) -> Result<String> {
    let curve = roc_curve(probs, labels);
    let c = Confusion::at(probs, labels, threshold);
    let op = (1.0 - c.specificity(), c.sensitivity());
    svg(|root| {
        let mut chart = unit_chart(root, "ROC curve", "1 − specificity", "sensitivity")?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                BLACK.mix(0.3).stroke_width(1),
            ))
            .map_err(plot_err)?;
        labelled_line(
            &mut chart,
            curve,
            LINE.stroke_width(2),
            0,
            &format!("{what}, AUC {auc:.3}"),
        )?;
        chart
            .draw_series([Circle::new(op, 6, POINT.filled())])
            .map_err(plot_err)?
            .label(format!("operating point, threshold {threshold:.3}"))
            .legend(|(x, y)| Circle::new((x + 9, y), 5, POINT.filled()));
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// Sensitivity and specificity against the decision threshold.
pub fn threshold_sweep(probs: &[f32], labels: &[u8], threshold: f32) -> Result<String> {
    let steps: Vec<f64> = (0..=200).map(|i| f64::from(i) / 200.0).collect();
    let at = |t: f64| Confusion::at(probs, labels, t as f32);
    svg(|root| {
        let mut chart = unit_chart(
            root,
            "Sensitivity and specificity vs threshold",
            "threshold on the tumour probability",
            "rate",
        )?;
        labelled_line(
            &mut chart,
            steps.iter().map(|&t| (t, at(t).sensitivity())),
            LINE.stroke_width(2),
            0,
            "sensitivity",
        )?;
        labelled_line(
            &mut chart,
            steps.iter().map(|&t| (t, at(t).specificity())),
            SECOND.stroke_width(2),
            0,
            "specificity",
        )?;
        let t = f64::from(threshold);
        labelled_line(
            &mut chart,
            [(t, 0.0), (t, 1.02)],
            POINT.stroke_width(1),
            0,
            &format!("operating threshold {threshold:.3}"),
        )?;
        legend(&mut chart, SeriesLabelPosition::MiddleRight)
    })
}

/// Reliability diagram: observed tumour rate per bin of predicted
/// probability, against the diagonal of perfect calibration.
pub fn calibration(probs: &[f32], labels: &[u8]) -> Result<String> {
    let bins = calibration_bins(probs, labels, 10);
    svg(|root| {
        let mut chart = unit_chart(
            root,
            "Calibration (10 bins)",
            "mean predicted tumour probability",
            "observed tumour rate",
        )?;
        labelled_line(
            &mut chart,
            [(0.0, 0.0), (1.0, 1.0)],
            BLACK.mix(0.3).stroke_width(1),
            0,
            "perfect calibration",
        )?;
        labelled_line(
            &mut chart,
            bins.iter().map(|b| (b.0, b.1)),
            LINE.stroke_width(2),
            0,
            "model (dot area ∝ images)",
        )?;
        let most = bins.iter().map(|b| b.2).max().unwrap_or(1) as f64;
        chart
            .draw_series(bins.iter().map(|b| {
                let r = (3.0 + 9.0 * (b.2 as f64 / most).sqrt()) as i32;
                Circle::new((b.0, b.1), r, LINE.mix(0.6).filled())
            }))
            .map_err(plot_err)?;
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// Loss per epoch: the final fit's training loss, and the mean training and
/// inner-validation loss of the cross-validation folds (the final fit has
/// no held-out data; its epoch count comes from the folds' early stopping).
pub fn losses(final_fit: &[EpochLoss], folds: &[Vec<EpochLoss>]) -> Result<String> {
    let longest = folds
        .iter()
        .map(Vec::len)
        .chain([final_fit.len()])
        .max()
        .unwrap_or(1)
        .max(2);
    let mean_of = |pick: fn(&EpochLoss) -> Option<f32>| -> Vec<(f64, f64)> {
        (0..longest)
            .filter_map(|e| {
                let vals: Vec<f64> = folds
                    .iter()
                    .filter_map(|h| h.get(e).and_then(pick).map(f64::from))
                    .collect();
                (!vals.is_empty())
                    .then(|| ((e + 1) as f64, vals.iter().sum::<f64>() / vals.len() as f64))
            })
            .collect()
    };
    let fold_train = mean_of(|l| Some(l.train));
    let fold_val = mean_of(|l| l.validation);
    let final_train: Vec<(f64, f64)> = final_fit
        .iter()
        .enumerate()
        .map(|(e, l)| ((e + 1) as f64, f64::from(l.train)))
        .collect();
    let top = final_train
        .iter()
        .chain(&fold_train)
        .chain(&fold_val)
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(0.1)
        * 1.05;
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Loss per epoch", (FONT, 17))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d(1f64..longest as f64, 0f64..top)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("weighted cross-entropy")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_err)?;
        let series = [
            (final_train, LINE.to_rgba(), 3, "final fit: training"),
            (fold_train, LINE.mix(0.5), 1, "folds (mean): training"),
            (fold_val, SECOND.to_rgba(), 2, "folds (mean): validation"),
        ];
        for (points, colour, width, name) in series {
            if points.is_empty() {
                continue;
            }
            // Dots too, so a one-epoch fit still shows.
            labelled_line(&mut chart, points, colour.stroke_width(width), width, name)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// The int8 model's probability against the f32 model's, per image, with
/// the threshold lines: points off the diagonal are quantization error,
/// points in the off-diagonal quadrants changed decision.
pub fn agreement(pairs: &[[f32; 2]], threshold: f32) -> Result<String> {
    svg(|root| {
        let mut chart = unit_chart(
            root,
            "int8 vs f32, training images",
            "f32 tumour probability",
            "int8 tumour probability",
        )?;
        let t = f64::from(threshold);
        for line in [[(t, 0.0), (t, 1.0)], [(0.0, t), (1.0, t)]] {
            chart
                .draw_series(LineSeries::new(line, POINT.mix(0.6)))
                .map_err(plot_err)?;
        }
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                BLACK.mix(0.3).stroke_width(1),
            ))
            .map_err(plot_err)?;
        chart
            .draw_series(pairs.iter().map(|p| {
                Circle::new(
                    (f64::from(p[0]), f64::from(p[1])),
                    3,
                    LINE.mix(0.6).filled(),
                )
            }))
            .map_err(plot_err)?
            .label(format!("{} images; red lines: threshold", pairs.len()))
            .legend(|(x, y)| Circle::new((x + 9, y), 3, LINE.filled()));
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// One set of scored images in an overlay plot.
pub struct Curve<'a> {
    /// Legend name, e.g. "cross-validation (out of fold)".
    pub name: String,
    /// Positive-class probabilities.
    pub probs: &'a [f32],
    /// Labels (1 = positive).
    pub labels: &'a [u8],
}

const PALETTE: [RGBColor; 6] = [
    LINE,
    SECOND,
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

/// ROC curves of several sets on one plot, each with its operating point
/// at `threshold`.
pub fn roc_overlay(curves: &[Curve<'_>], threshold: f32) -> Result<String> {
    svg(|root| {
        let mut chart = unit_chart(root, "ROC curves", "1 − specificity", "sensitivity")?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                BLACK.mix(0.3).stroke_width(1),
            ))
            .map_err(plot_err)?;
        for (c, colour) in curves.iter().zip(PALETTE.iter().cycle()) {
            let auc = crate::metrics::auc(c.probs, c.labels);
            labelled_line(
                &mut chart,
                roc_curve(c.probs, c.labels),
                colour.stroke_width(2),
                0,
                &format!("{}, AUC {auc:.3}", c.name),
            )?;
            let at = Confusion::at(c.probs, c.labels, threshold);
            chart
                .draw_series([Circle::new(
                    (1.0 - at.specificity(), at.sensitivity()),
                    5,
                    colour.filled(),
                )])
                .map_err(plot_err)?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// Sensitivity (solid) and specificity (thin) of several sets against the
/// threshold, on a log-odds axis so that thresholds near 0 or 1 are
/// readable; the vertical line is the model's threshold.
pub fn sensitivity_overlay(curves: &[Curve<'_>], threshold: f32) -> Result<String> {
    let logit = |p: f64| (p / (1.0 - p)).ln();
    let steps: Vec<f64> = (0..=240).map(|i| -12.0 + f64::from(i) * 0.1).collect();
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Sensitivity and specificity vs threshold", (FONT, 17))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d(-12f64..12f64, 0f64..1.02f64)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("threshold, log-odds ln(t / (1 − t))")
            .y_desc("rate")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_err)?;
        for (c, colour) in curves.iter().zip(PALETTE.iter().cycle()) {
            let at = |l: f64| Confusion::at(c.probs, c.labels, (1.0 / (1.0 + (-l).exp())) as f32);
            labelled_line(
                &mut chart,
                steps.iter().map(|&l| (l, at(l).sensitivity())),
                colour.stroke_width(2),
                0,
                &format!("{}: sensitivity", c.name),
            )?;
            chart
                .draw_series(LineSeries::new(
                    steps.iter().map(|&l| (l, at(l).specificity())),
                    colour.mix(0.6).stroke_width(1),
                ))
                .map_err(plot_err)?;
        }
        let t = logit(f64::from(threshold).clamp(1e-6, 1.0 - 1e-6));
        labelled_line(
            &mut chart,
            [(t, 0.0), (t, 1.02)],
            POINT.stroke_width(1),
            0,
            &format!("threshold {threshold:.4} (thin: specificity)"),
        )?;
        legend(&mut chart, SeriesLabelPosition::MiddleRight)
    })
}
