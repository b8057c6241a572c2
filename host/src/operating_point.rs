//! The operating point: how a model's decision threshold is chosen from
//! out-of-fold predictions (`--threshold-rule`).
//!
//! The box flags a scan when its tumour probability reaches the threshold,
//! and the threshold is set to reach a target sensitivity. Two rules:
//!
//! * [`ThresholdRule::Quantile`]: the highest threshold whose out-of-fold
//!   sensitivity reaches the target, i.e. an empirical low quantile of the
//!   tumour scores. At a target of 0.97 on 155 tumours it is the 5th lowest
//!   tumour score, so a handful of odd scans set it.
//! * [`ThresholdRule::LogitNormal`]: the same quantile of a normal
//!   distribution fitted robustly (median, 1.4826 × median absolute
//!   deviation) to the tumour scores' log-odds. It reads the whole
//!   distribution, not its five lowest members, and a few scans the model
//!   cannot see do not drag it down.
//!
//! Which one transfers to scans from elsewhere is an empirical question;
//! `docs/validation.md` has the comparison and its command.

use serde::{Deserialize, Serialize};

use crate::metrics::threshold_for_sensitivity;

/// How the threshold is chosen from out-of-fold probabilities.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThresholdRule {
    /// Highest threshold whose out-of-fold sensitivity reaches the target.
    #[default]
    Quantile,
    /// Target quantile of a robust normal fit to the tumour log-odds.
    LogitNormal,
}

/// What a rule was given and what it chose (recorded in the model).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// The rule.
    pub rule: ThresholdRule,
    /// The sensitivity it aims at.
    pub target_sensitivity: f64,
    /// Positive-class probabilities it read.
    pub positives: usize,
    /// Negative-class probabilities it read.
    pub negatives: usize,
    /// Median log-odds of the positives (logit-normal only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub median_logit: Option<f64>,
    /// Robust spread of the positives' log-odds (logit-normal only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub spread_logit: Option<f64>,
    /// The threshold on the tumour probability.
    pub threshold: f32,
    /// When the threshold was chosen on part of the training images only
    /// (`retrain --threshold-on reviewed`), which part.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chosen_on: Option<String>,
}

/// Probabilities are clamped to this distance from 0 and 1 before taking
/// log-odds (an f32 softmax saturates at about 1e-7).
const CLAMP: f64 = 1e-7;

fn logit(p: f32) -> f64 {
    let p = f64::from(p).clamp(CLAMP, 1.0 - CLAMP);
    (p / (1.0 - p)).ln()
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

/// The standard normal quantile function (Acklam's rational
/// approximation, relative error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p <= 0.0 {
        f64::NEG_INFINITY
    } else if p >= 1.0 {
        f64::INFINITY
    } else if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

impl ThresholdRule {
    /// Choose the threshold for `target` sensitivity from `probs` and
    /// `labels` (1 = positive).
    pub fn choose(self, probs: &[f32], labels: &[u8], target: f64) -> OperatingPoint {
        let positives = labels.iter().filter(|&&y| y == 1).count();
        let mut point = OperatingPoint {
            rule: self,
            target_sensitivity: target,
            positives,
            negatives: labels.len() - positives,
            median_logit: None,
            spread_logit: None,
            threshold: threshold_for_sensitivity(probs, labels, target),
            chosen_on: None,
        };
        if self == ThresholdRule::LogitNormal && positives >= 2 {
            let mut l: Vec<f64> = probs
                .iter()
                .zip(labels)
                .filter(|(_, y)| **y == 1)
                .map(|(p, _)| logit(*p))
                .collect();
            l.sort_by(f64::total_cmp);
            let m = median(&l);
            let mut dev: Vec<f64> = l.iter().map(|x| (x - m).abs()).collect();
            dev.sort_by(f64::total_cmp);
            let s = 1.4826 * median(&dev);
            // More than half the scores equal (or not finite): no spread to
            // fit, and the quantile rule's threshold stands.
            if s > 0.0 && s.is_finite() && m.is_finite() {
                let t = m + normal_quantile(1.0 - target) * s;
                point.median_logit = Some(m);
                point.spread_logit = Some(s);
                point.threshold = (1.0 / (1.0 + (-t).exp())) as f32;
            }
        }
        point
    }

    /// Only the threshold.
    pub fn threshold(self, probs: &[f32], labels: &[u8], target: f64) -> f32 {
        self.choose(probs, labels, target).threshold
    }

    /// The name used on the command line and in the model.
    pub fn name(self) -> &'static str {
        match self {
            ThresholdRule::Quantile => "quantile",
            ThresholdRule::LogitNormal => "logit-normal",
        }
    }
}

/// Metadata key of the operating point in a model.
pub const MANIFEST_KEY: &str = "scanside.operating_point";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantile_matches_known_values() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.03, -1.880_793_607_947_47),
            (0.001, -3.090_232_306_167_813),
        ] {
            assert!(
                (normal_quantile(p) - z).abs() < 1e-8,
                "{p}: {}",
                normal_quantile(p)
            );
        }
    }

    #[test]
    fn quantile_rule_is_the_empirical_quantile() {
        let probs = [0.9, 0.8, 0.7, 0.6, 0.2, 0.1];
        let labels = [1, 1, 1, 1, 0, 0];
        let p = ThresholdRule::Quantile.choose(&probs, &labels, 0.75);
        assert_eq!(p.threshold, 0.7);
        assert_eq!((p.positives, p.negatives), (4, 2));
        assert_eq!(p.median_logit, None);
    }

    #[test]
    fn logit_normal_ignores_a_few_outlying_positives() {
        // 40 positives with log-odds spread evenly over [2, 6], and 3 the
        // model scores as near-certain negatives.
        let mut probs: Vec<f32> = (0..40)
            .map(|i| {
                let l = 2.0 + 4.0 * f64::from(i) / 39.0;
                (1.0 / (1.0 + (-l).exp())) as f32
            })
            .collect();
        probs.extend([1e-5, 2e-5, 3e-5]);
        let labels = vec![1u8; probs.len()];
        let q = ThresholdRule::Quantile.threshold(&probs, &labels, 0.97);
        let n = ThresholdRule::LogitNormal.choose(&probs, &labels, 0.97);
        // The quantile is pulled to the outliers; the robust fit is not.
        assert!(q < 1e-4, "{q}");
        let m = n.median_logit.unwrap();
        assert!((m - 4.0).abs() < 0.2, "{m}");
        let t = logit(n.threshold);
        let expected = m + normal_quantile(0.03) * n.spread_logit.unwrap();
        assert!((t - expected).abs() < 1e-4, "{t} vs {expected}");
        assert!(n.threshold > 0.5 && n.threshold < 0.95, "{}", n.threshold);
    }

    #[test]
    fn logit_normal_falls_back_to_the_quantile_without_spread() {
        // Most tumour scores saturated at the same value: MAD 0.
        let probs = [1.0, 1.0, 1.0, 1.0, 0.2, 0.1];
        let labels = [1, 1, 1, 1, 1, 0];
        let p = ThresholdRule::LogitNormal.choose(&probs, &labels, 0.8);
        assert_eq!(
            p.threshold,
            ThresholdRule::Quantile.threshold(&probs, &labels, 0.8)
        );
        assert_eq!(p.spread_logit, None);
    }

    #[test]
    fn logit_normal_falls_back_to_the_quantile_with_one_positive() {
        let p = ThresholdRule::LogitNormal.choose(&[0.3, 0.1], &[1, 0], 0.97);
        assert_eq!(p.threshold, 0.3);
        assert_eq!(p.median_logit, None);
    }

    #[test]
    fn rule_names_round_trip_through_serde() {
        for r in [ThresholdRule::Quantile, ThresholdRule::LogitNormal] {
            let s = serde_json::to_string(&r).unwrap();
            assert_eq!(s, format!("\"{}\"", r.name()));
            assert_eq!(serde_json::from_str::<ThresholdRule>(&s).unwrap(), r);
        }
    }
}
