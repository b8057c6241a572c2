//! Fitting the out-of-scope guard ([`scanside_shared::guard`]) to a model's
//! training features.
//!
//! The statistics (mean, spread, principal components of the standardised
//! head inputs) come from every view of every training image. The threshold
//! comes from out-of-fold scores: for each cross-validation fold the
//! statistics are fitted without that fold and its original views are
//! scored, so the chosen quantile is what *unseen* in-distribution slices
//! score, not what the fitted images themselves score (those sit closer to
//! their own subspace). The final statistics are fitted on all images; with
//! more data they score new in-distribution slices a little lower, so the
//! pass rate on new slices is at least the out-of-fold one.

use nalgebra::{DMatrix, SymmetricEigen};
use serde::{Deserialize, Serialize};

use scanside_shared::guard::{
    FeatureGuard, GUARD_FORMAT_VERSION, GuardFit, GuardSpec, InputLimits,
};

use crate::{Error, Result};

/// How the guard is fitted (recorded in the recipe).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardOptions {
    /// Principal components kept.
    pub components: usize,
    /// Fraction of training images that must pass out of fold.
    pub pass_target: f32,
}

impl Default for GuardOptions {
    fn default() -> Self {
        GuardOptions {
            components: 32,
            pass_target: 0.99,
        }
    }
}

impl GuardOptions {
    /// The guard options a model's recipe records (`head.guard`; absent:
    /// the model was made without a guard).
    pub fn recorded(head: &serde_json::Value) -> Option<GuardOptions> {
        head.get("guard")
            .and_then(|g| serde_json::from_value(g.clone()).ok())
    }

    /// How the recipe names these options (`none` for no guard).
    pub fn describe(guard: Option<&GuardOptions>) -> String {
        guard.map_or("none".into(), |g| {
            format!("{} components, pass {}", g.components, g.pass_target)
        })
    }
}

/// Standard deviations below this (in feature units) count as this, so a
/// feature constant over the training set cannot divide by zero.
const MIN_STD: f64 = 1e-3;

/// Fit the statistics (threshold left at infinity) to `rows`, each of
/// `width` features.
pub fn fit_statistics(rows: &[&[f32]], width: usize, components: usize) -> Result<FeatureGuard> {
    let n = rows.len();
    if n < 3 || rows.iter().any(|r| r.len() != width) {
        return Err(Error::Config(format!(
            "the guard needs at least 3 feature rows of width {width}, got {n}"
        )));
    }
    let mut mean = vec![0f64; width];
    for r in rows {
        for (m, &v) in mean.iter_mut().zip(*r) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut var = vec![0f64; width];
    for r in rows {
        for ((s, &v), m) in var.iter_mut().zip(*r).zip(&mean) {
            *s += (f64::from(v) - m).powi(2);
        }
    }
    let inv_std: Vec<f64> = var
        .iter()
        .map(|s| 1.0 / (s / (n - 1) as f64).sqrt().max(MIN_STD))
        .collect();
    // Standardised rows, n × width.
    let x = DMatrix::<f64>::from_fn(n, width, |i, j| {
        (f64::from(rows[i][j]) - mean[j]) * inv_std[j]
    });
    // PCA through the n × n Gram matrix (n rows ≪ width features).
    let gram = &x * x.transpose();
    let total: f64 = gram.trace() / (n - 1) as f64;
    let eigen = SymmetricEigen::new(gram);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
    let k = components.min(n - 2).min(width - 1);
    let mut basis = Vec::with_capacity(k * width);
    let mut variances = Vec::with_capacity(k);
    for &c in order.iter().take(k) {
        let mu = eigen.eigenvalues[c].max(0.0);
        if mu <= 1e-9 * total.max(1e-12) {
            break;
        }
        // v = Xᵀu / √μ is a unit vector along the component.
        let v = x.transpose() * eigen.eigenvectors.column(c) / mu.sqrt();
        basis.extend(v.iter().map(|&e| e as f32));
        variances.push((mu / (n - 1) as f64) as f32);
    }
    let explained: f64 = variances.iter().map(|&v| f64::from(v)).sum();
    let rest = (width - variances.len()) as f64;
    let residual_variance = ((total - explained) / rest).max(1e-6) as f32;
    Ok(FeatureGuard {
        width,
        mean: mean.iter().map(|&m| m as f32).collect(),
        inv_std: inv_std.iter().map(|&s| s as f32).collect(),
        components: basis,
        variances,
        residual_variance,
        threshold: f32::INFINITY,
    })
}

/// The value at or below which `pass` of `scores` lie (the smallest score
/// that lets at least that fraction pass).
fn pass_quantile(scores: &[f32], pass: f32) -> f32 {
    let mut s = scores.to_vec();
    s.sort_by(f32::total_cmp);
    let at = ((pass * s.len() as f32).ceil() as usize).clamp(1, s.len()) - 1;
    s[at]
}

/// Fit the guard: `rows[item][view]` head inputs, `fold_of[item]` the
/// cross-validation fold of each item (`folds` of them).
pub fn fit(
    rows: &[Vec<Vec<f32>>],
    fold_of: &[usize],
    folds: usize,
    opts: GuardOptions,
) -> Result<GuardSpec> {
    let width = rows
        .first()
        .and_then(|r| r.first())
        .map(Vec::len)
        .ok_or_else(|| Error::Config("no training rows to fit the guard to".into()))?;
    let all_views = |keep: &dyn Fn(usize) -> bool| -> Vec<&[f32]> {
        rows.iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .flat_map(|(_, vs)| vs.iter().map(Vec::as_slice))
            .collect()
    };
    let mut oof = vec![f32::NAN; rows.len()];
    for f in 0..folds {
        let stats = fit_statistics(&all_views(&|i| fold_of[i] != f), width, opts.components)?;
        for (i, vs) in rows.iter().enumerate().filter(|(i, _)| fold_of[*i] == f) {
            oof[i] = stats.score(&vs[0])?;
        }
    }
    let threshold = pass_quantile(&oof, opts.pass_target);
    let mut features = fit_statistics(&all_views(&|_| true), width, opts.components)?;
    features.threshold = threshold;
    let passed = oof.iter().filter(|&&s| s <= threshold).count();
    let spec = GuardSpec {
        format_version: GUARD_FORMAT_VERSION,
        input: InputLimits::default(),
        features,
        fitted: GuardFit {
            images: rows.len(),
            rows: rows.iter().map(Vec::len).sum(),
            pass_target: opts.pass_target,
            oof_pass_rate: passed as f32 / rows.len() as f32,
            oof_quantiles: [0.5, 0.9, 0.99].map(|q| pass_quantile(&oof, q)),
        },
    };
    spec.features
        .validate()
        .map_err(|e| Error::Config(format!("the fitted guard is unusable: {e}")))?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Items on a 2-D plane inside 40 dimensions, plus small noise.
    fn plane(n: usize, seed: u64) -> Vec<Vec<Vec<f32>>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let (a, b): (f32, f32) = (rng.random_range(-3.0..3.0), rng.random_range(-3.0..3.0));
                vec![
                    (0..40)
                        .map(|j| {
                            let on = if j % 2 == 0 { a } else { b };
                            on + rng.random_range(-0.05..0.05)
                        })
                        .collect(),
                ]
            })
            .collect()
    }

    #[test]
    fn recovers_the_subspace_and_refuses_what_leaves_it() {
        let rows = plane(120, 1);
        let folds: Vec<usize> = (0..rows.len()).map(|i| i % 5).collect();
        let spec = fit(
            &rows,
            &folds,
            5,
            GuardOptions {
                components: 4,
                pass_target: 0.95,
            },
        )
        .unwrap();
        let g = &spec.features;
        assert!(g.variances[0] > 100.0 * g.variances[2], "{:?}", g.variances);
        assert!(spec.fitted.oof_pass_rate >= 0.95);
        // New points of the plane pass; points off it do not.
        let fresh = plane(50, 2);
        let passed = fresh
            .iter()
            .filter(|r| g.score(&r[0]).unwrap() <= g.threshold)
            .count();
        assert!(passed >= 45, "{passed} of 50 fresh in-plane points passed");
        let mut off = fresh[0][0].clone();
        off[0] += 3.0;
        off[1] -= 3.0;
        assert!(g.score(&off).unwrap() > 10.0 * g.threshold);
    }

    #[test]
    fn quantile_lets_the_fraction_pass() {
        let s: Vec<f32> = (1..=100).map(|v| v as f32).collect();
        assert_eq!(pass_quantile(&s, 0.99), 99.0);
        assert_eq!(pass_quantile(&s, 1.0), 100.0);
        assert_eq!(pass_quantile(&s, 0.0), 1.0);
    }
}
