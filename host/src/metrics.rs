//! Binary classification metrics, thresholds and bootstrap intervals.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Counts of a 2×2 confusion matrix (positive = tumour).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// True positives.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// True negatives.
    pub tn: usize,
    /// False negatives.
    #[serde(rename = "fn")]
    pub fn_: usize,
}

impl Confusion {
    /// Count decisions `p >= threshold` against labels.
    pub fn at(probs: &[f32], labels: &[u8], threshold: f32) -> Self {
        let mut c = Confusion::default();
        for (&p, &y) in probs.iter().zip(labels) {
            match (p >= threshold, y == 1) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, false) => c.tn += 1,
                (false, true) => c.fn_ += 1,
            }
        }
        c
    }

    fn ratio(a: usize, b: usize) -> f64 {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    }

    /// Number of cases.
    pub fn n(&self) -> usize {
        self.tp + self.fp + self.tn + self.fn_
    }
    /// (TP + TN) / N.
    pub fn accuracy(&self) -> f64 {
        Self::ratio(self.tp + self.tn, self.n())
    }
    /// TP / (TP + FN), recall of the tumour class.
    pub fn sensitivity(&self) -> f64 {
        Self::ratio(self.tp, self.tp + self.fn_)
    }
    /// TN / (TN + FP).
    pub fn specificity(&self) -> f64 {
        Self::ratio(self.tn, self.tn + self.fp)
    }
    /// TP / (TP + FP).
    pub fn precision(&self) -> f64 {
        Self::ratio(self.tp, self.tp + self.fp)
    }
    /// Harmonic mean of precision and sensitivity.
    pub fn f1(&self) -> f64 {
        Self::ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

/// Area under the ROC curve (Mann–Whitney, ties count half). NaN if a class
/// is absent.
pub fn auc(probs: &[f32], labels: &[u8]) -> f64 {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[a].total_cmp(&probs[b]));
    // Average ranks over ties.
    let mut ranks = vec![0f64; probs.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && probs[idx[j + 1]] == probs[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    let pos = labels.iter().filter(|&&y| y == 1).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, y)| **y == 1)
        .map(|(r, _)| r)
        .sum();
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// The highest threshold whose sensitivity is at least `target`: the
/// ⌈target·P⌉-th highest positive probability.
pub fn threshold_for_sensitivity(probs: &[f32], labels: &[u8], target: f64) -> f32 {
    let mut pos: Vec<f32> = probs
        .iter()
        .zip(labels)
        .filter(|(_, y)| **y == 1)
        .map(|(p, _)| *p)
        .collect();
    if pos.is_empty() {
        return 0.5;
    }
    pos.sort_by(|a, b| b.total_cmp(a));
    let k = ((target * pos.len() as f64).ceil() as usize).clamp(1, pos.len());
    pos[k - 1]
}

/// The headline metrics of a set of predictions at one threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Number of cases.
    pub n: usize,
    /// Accuracy.
    pub accuracy: f64,
    /// Sensitivity (tumour recall).
    pub sensitivity: f64,
    /// Specificity.
    pub specificity: f64,
    /// Precision.
    pub precision: f64,
    /// F1.
    pub f1: f64,
    /// ROC AUC (threshold-free).
    pub auc: f64,
    /// The decision threshold on the tumour probability.
    pub threshold: f32,
    /// The confusion matrix.
    pub confusion: Confusion,
}

impl Metrics {
    /// Metrics of `probs` against `labels` at `threshold`.
    pub fn compute(probs: &[f32], labels: &[u8], threshold: f32) -> Self {
        let c = Confusion::at(probs, labels, threshold);
        Metrics {
            n: c.n(),
            accuracy: c.accuracy(),
            sensitivity: c.sensitivity(),
            specificity: c.specificity(),
            precision: c.precision(),
            f1: c.f1(),
            auc: auc(probs, labels),
            threshold,
            confusion: c,
        }
    }

    /// The scalar metrics by name (in [`METRIC_NAMES`] order), for summaries.
    pub fn named(&self) -> [(&'static str, f64); 6] {
        let values = [
            self.accuracy,
            self.sensitivity,
            self.specificity,
            self.precision,
            self.f1,
            self.auc,
        ];
        std::array::from_fn(|k| (METRIC_NAMES[k], values[k]))
    }
}

/// Names of the scalar metrics, in the order every summary uses.
pub const METRIC_NAMES: [&str; 6] = [
    "accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "f1",
    "auc",
];

/// Mean and (sample) standard deviation, ignoring NaN.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// 95 % percentile bootstrap intervals of every metric, resampling whole
/// duplicate groups with replacement (`group[i]` of case `i`).
///
/// `decisions[r][i]` is a score for case `i` in repeat `r` that means
/// "positive" when ≥ 0.5 (a probability shifted by its own threshold), so
/// each case can carry the threshold that was fitted without it. The
/// threshold metrics of a resample are averaged over repeats; the AUC is
/// computed on `probs` (e.g. repeat-averaged probabilities).
pub fn bootstrap_ci(
    decisions: &[Vec<f32>],
    probs: &[f32],
    labels: &[u8],
    group: &[usize],
    resamples: usize,
    seed: u64,
) -> Vec<(&'static str, [f64; 2])> {
    let n_groups = group.iter().max().map_or(0, |m| m + 1);
    let mut members = vec![Vec::new(); n_groups];
    for (i, &g) in group.iter().enumerate() {
        members[g].push(i);
    }
    members.retain(|m| !m.is_empty());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut samples: Vec<Vec<f64>> = (0..6).map(|_| Vec::with_capacity(resamples)).collect();
    let mut idx = Vec::new();
    for _ in 0..resamples {
        idx.clear();
        for _ in 0..members.len() {
            idx.extend_from_slice(&members[rng.random_range(0..members.len())]);
        }
        let y: Vec<u8> = idx.iter().map(|&i| labels[i]).collect();
        let mut sums = [0f64; 6];
        let mut counts = [0usize; 6];
        for d in decisions {
            let scores: Vec<f32> = idx.iter().map(|&i| d[i]).collect();
            for (k, (_, v)) in Metrics::compute(&scores, &y, 0.5)
                .named()
                .iter()
                .enumerate()
                .take(5)
            {
                if !v.is_nan() {
                    sums[k] += v;
                    counts[k] += 1;
                }
            }
        }
        sums[5] = auc(&idx.iter().map(|&i| probs[i]).collect::<Vec<_>>(), &y);
        counts[5] = usize::from(!sums[5].is_nan());
        for k in 0..6 {
            if counts[k] > 0 {
                samples[k].push(sums[k] / counts[k] as f64);
            }
        }
    }
    METRIC_NAMES
        .iter()
        .zip(samples.iter_mut())
        .map(|(name, s)| {
            s.sort_by(|a, b| a.total_cmp(b));
            let q = |f: f64| {
                if s.is_empty() {
                    f64::NAN
                } else {
                    s[((s.len() - 1) as f64 * f).round() as usize]
                }
            };
            (*name, [q(0.025), q(0.975)])
        })
        .collect()
}

/// The ROC curve as `(1 − specificity, sensitivity)` points from `(0, 0)` to
/// `(1, 1)`, one step per distinct probability (a decision is `p ≥ t`).
/// Empty if a class is absent.
pub fn roc_curve(probs: &[f32], labels: &[u8]) -> Vec<(f64, f64)> {
    let pos = labels.iter().filter(|&&y| y == 1).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return Vec::new();
    }
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut points = vec![(0.0, 0.0)];
    for (n, &i) in idx.iter().enumerate() {
        if labels[i] == 1 {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        // Emit once all items tied at this probability are in.
        if idx.get(n + 1).is_none_or(|&j| probs[j] != probs[i]) {
            points.push((fp / neg, tp / pos));
        }
    }
    points
}

/// Reliability of probabilities: for each of `bins` equal-width bins of
/// predicted probability, `(mean predicted, observed positive rate, count)`;
/// empty bins are left out.
pub fn calibration_bins(probs: &[f32], labels: &[u8], bins: usize) -> Vec<(f64, f64, usize)> {
    let mut acc = vec![(0.0f64, 0.0f64, 0usize); bins];
    for (&p, &y) in probs.iter().zip(labels) {
        let b = ((f64::from(p) * bins as f64) as usize).min(bins - 1);
        acc[b].0 += f64::from(p);
        acc[b].1 += f64::from(y);
        acc[b].2 += 1;
    }
    acc.into_iter()
        .filter(|b| b.2 > 0)
        .map(|(p, y, n)| (p / n as f64, y / n as f64, n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_and_rates() {
        let p = [0.9, 0.8, 0.3, 0.6, 0.1, 0.2];
        let y = [1, 1, 1, 0, 0, 0];
        let c = Confusion::at(&p, &y, 0.5);
        assert_eq!(
            c,
            Confusion {
                tp: 2,
                fp: 1,
                tn: 2,
                fn_: 1
            }
        );
        assert!((c.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        assert!((c.sensitivity() - 2.0 / 3.0).abs() < 1e-12);
        assert!((c.f1() - 4.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn auc_matches_pair_counting() {
        let p = [0.9, 0.8, 0.3, 0.6, 0.1, 0.3];
        let y = [1, 1, 1, 0, 0, 0];
        // Pairs (pos, neg): 9 in all; wins: 0.9 > all 3, 0.8 > all 3,
        // 0.3 > 0.1, ties 0.3 = 0.3 (half): 3 + 3 + 1 + 0.5 = 7.5.
        assert!((auc(&p, &y) - 7.5 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn threshold_reaches_the_target_sensitivity() {
        let p = [0.9, 0.8, 0.7, 0.2, 0.6, 0.1];
        let y = [1, 1, 1, 1, 0, 0];
        let t = threshold_for_sensitivity(&p, &y, 0.75);
        assert_eq!(t, 0.7);
        assert!(Confusion::at(&p, &y, t).sensitivity() >= 0.75);
        assert_eq!(threshold_for_sensitivity(&p, &y, 1.0), 0.2);
    }

    #[test]
    fn bootstrap_interval_contains_the_estimate() {
        let p: Vec<f32> = (0..40).map(|i| i as f32 / 40.0).collect();
        let y: Vec<u8> = (0..40).map(|i| u8::from(i >= 18)).collect();
        let g: Vec<usize> = (0..40).map(|i| i / 2).collect();
        let ci = bootstrap_ci(std::slice::from_ref(&p), &p, &y, &g, 300, 1);
        let acc = Metrics::compute(&p, &y, 0.5).accuracy;
        let (_, [lo, hi]) = ci[0];
        assert!(lo <= acc && acc <= hi, "{lo} {acc} {hi}");
        assert!(hi - lo > 0.0);
    }

    #[test]
    fn roc_curve_steps_through_ties_and_its_area_is_the_auc() {
        let probs = [0.9, 0.8, 0.8, 0.3, 0.2];
        let labels = [1, 1, 0, 1, 0];
        let roc = roc_curve(&probs, &labels);
        let third = 1.0 / 3.0;
        assert_eq!(
            roc,
            [
                (0.0, 0.0),
                (0.0, third),
                (0.5, 2.0 * third),
                (0.5, 1.0),
                (1.0, 1.0)
            ]
        );
        let trapezoid: f64 = roc
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
            .sum();
        assert!((trapezoid - auc(&probs, &labels)).abs() < 1e-12);
        assert!(roc_curve(&probs, &[1; 5]).is_empty());
    }

    #[test]
    fn calibration_bins_average_what_falls_in_them() {
        let bins = calibration_bins(&[0.05, 0.15, 0.12, 0.95, 1.0], &[0, 1, 0, 1, 1], 10);
        assert_eq!(bins.len(), 3);
        assert!((bins[0].0 - 0.05).abs() < 1e-6 && bins[0].1 == 0.0 && bins[0].2 == 1);
        assert!((bins[1].0 - 0.135).abs() < 1e-6 && bins[1].1 == 0.5 && bins[1].2 == 2);
        assert!((bins[2].0 - 0.975).abs() < 1e-6 && bins[2].1 == 1.0 && bins[2].2 == 2);
    }
}
