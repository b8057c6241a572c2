//! L2-regularised logistic regression, fitted to convergence: the linear
//! head of `--logistic C`.
//!
//! The objective is the class-weighted log-loss plus a ridge penalty on the
//! weights (not the bias),
//! `Σᵢ wᵢ [ln(1 + e^{zᵢ}) − yᵢ zᵢ] + ‖β‖² / (2C)`, `zᵢ = xᵢ·β + b`, with
//! the class and row weights the dense heads use
//! ([`Samples::class_weights`] times each row's own). It is convex
//! and, with `C` finite, strongly convex in `β`, so the minimum is unique:
//! the fit needs no seed, no early stopping and no inner validation split,
//! and it is the same on every run. It is minimised by L-BFGS (memory 10,
//! backtracking Armijo line search) in f64 until the gradient vanishes.
//!
//! Unlike the dense heads the rows are not standardised: the recipe is
//! meant for inputs of a known scale, the unit-length vectors of
//! `--feature-transform sqrt-l2`, where `C` then reads as it does in
//! scikit-learn's `LogisticRegression` on the same rows.

use crate::head::{DenseLayer, EpochLoss, Samples, TrainedHead};

/// Pairs of (step, gradient change) L-BFGS remembers.
const MEMORY: usize = 10;
/// Iteration cap (the fits here converge in well under a hundred).
const MAX_ITERATIONS: usize = 2000;
/// Converged when the largest gradient component is below this fraction of
/// the total row weight.
const GRADIENT_TOLERANCE: f64 = 1e-7;

/// The objective and its gradient (`d` weights, then the bias) at `theta`.
struct Problem<'a> {
    x: &'a [f32],
    y: &'a [u8],
    w: Vec<f64>,
    dim: usize,
    inv_c: f64,
}

impl Problem<'_> {
    fn value_and_gradient(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        let (beta, bias) = (&theta[..self.dim], theta[self.dim]);
        let mut grad = vec![0.0; self.dim + 1];
        let mut loss = 0.0;
        for ((row, &y), &w) in self.x.chunks_exact(self.dim).zip(self.y).zip(&self.w) {
            let z = bias
                + row
                    .iter()
                    .zip(beta)
                    .map(|(&a, b)| f64::from(a) * b)
                    .sum::<f64>();
            // ln(1 + e^z), stable for either sign of z.
            let softplus = z.max(0.0) + (-z.abs()).exp().ln_1p();
            loss += w * (softplus - f64::from(y) * z);
            let residual = w * (sigmoid(z) - f64::from(y));
            for (g, &a) in grad.iter_mut().zip(row) {
                *g += residual * f64::from(a);
            }
            grad[self.dim] += residual;
        }
        let ridge: f64 = beta.iter().map(|b| b * b).sum::<f64>() * 0.5 * self.inv_c;
        for (g, b) in grad.iter_mut().zip(beta) {
            *g += b * self.inv_c;
        }
        (loss + ridge, grad)
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Fit the logistic regression with inverse regularisation strength `c`
/// to `samples` (every row; augmented views count as rows). The head has
/// one layer whose two logits are `∓z / 2`, so its softmax is `σ(z)`;
/// `best_epoch` is the number of L-BFGS iterations and `history` the
/// objective per iteration (divided by the total row weight).
pub fn fit(samples: &Samples, c: f64) -> TrainedHead {
    let dim = samples.dim;
    let class_w = samples.class_weights();
    let problem = Problem {
        x: &samples.x,
        y: &samples.y,
        w: samples
            .y
            .iter()
            .zip(&samples.weight)
            .map(|(&v, &w)| f64::from(class_w[v as usize] * w))
            .collect(),
        dim,
        inv_c: 1.0 / c.max(f64::MIN_POSITIVE),
    };
    let total_weight: f64 = problem.w.iter().sum::<f64>().max(1.0);
    let (theta, history) = minimise(&problem, total_weight);
    let (beta, bias) = (&theta[..dim], theta[dim]);
    let mut weight = Vec::with_capacity(dim * 2);
    for b in beta {
        weight.push((-0.5 * b) as f32);
        weight.push((0.5 * b) as f32);
    }
    TrainedHead {
        mean: vec![0.0; dim],
        inv_std: vec![1.0; dim],
        layers: vec![DenseLayer {
            inputs: dim,
            outputs: 2,
            weight,
            bias: vec![(-0.5 * bias) as f32, (0.5 * bias) as f32],
        }],
        best_epoch: history.len(),
        history: history
            .into_iter()
            .map(|f| EpochLoss {
                train: (f / total_weight) as f32,
                validation: None,
            })
            .collect(),
    }
}

/// L-BFGS from zero; the minimiser and the objective after each iteration.
fn minimise(problem: &Problem, scale: f64) -> (Vec<f64>, Vec<f64>) {
    let mut theta = vec![0.0; problem.dim + 1];
    let (mut f, mut g) = problem.value_and_gradient(&theta);
    let mut memory: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::new();
    let mut history = Vec::new();
    for _ in 0..MAX_ITERATIONS {
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) <= GRADIENT_TOLERANCE * scale {
            break;
        }
        // Two-loop recursion: direction = −H·g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(memory.len());
        for (s, y, rho) in memory.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        let gamma = match memory.last() {
            Some((s, y, _)) => dot(s, y) / dot(y, y),
            None => 1.0 / g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12),
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y, rho), a) in memory.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
        }
        let direction: Vec<f64> = q.iter().map(|v| -v).collect();
        let slope = dot(&g, &direction);
        if slope >= 0.0 {
            // Not a descent direction (rounding): start the memory afresh.
            memory.clear();
            continue;
        }
        // Backtracking line search with the Armijo condition.
        let mut step = 1.0;
        let step_taken = loop {
            let candidate: Vec<f64> = theta
                .iter()
                .zip(&direction)
                .map(|(t, d)| t + step * d)
                .collect();
            let (fc, gc) = problem.value_and_gradient(&candidate);
            if fc <= f + 1e-4 * step * slope {
                break Some((candidate, fc, gc));
            }
            if step < 1e-12 {
                break None;
            }
            step *= 0.5;
        };
        // No step decreases the objective: θ is a minimum to rounding.
        let Some((next, f_next, g_next)) = step_taken else {
            break;
        };
        let s: Vec<f64> = next.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_next.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        let improvement = f - f_next;
        theta = next;
        f = f_next;
        g = g_next;
        history.push(f);
        if sy > 1e-12 {
            if memory.len() == MEMORY {
                memory.remove(0);
            }
            memory.push((s, y, 1.0 / sy));
        }
        if improvement.abs() <= 1e-13 * f.abs().max(1.0) {
            break;
        }
    }
    (theta, history)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn clouds(n: usize, dim: usize, overlap: f32, seed: u64) -> Samples {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut s = Samples::default();
        for i in 0..n {
            let y = u8::from(i % 3 == 0);
            let centre = if y == 1 { 0.5 } else { -0.5 };
            let x: Vec<f32> = (0..dim)
                .map(|j| {
                    let shift = if j < 2 { centre } else { 0.0 };
                    shift + rng.random_range(-overlap..overlap)
                })
                .collect();
            s.push(&x, y, i, true);
        }
        s
    }

    #[test]
    fn the_fit_is_the_minimum_of_the_objective() {
        let s = clouds(90, 5, 1.0, 3);
        let c = 0.7;
        let head = fit(&s, c);
        let layer = &head.layers[0];
        let mut theta: Vec<f64> = (0..5)
            .map(|j| f64::from(layer.weight[2 * j + 1]) * 2.0)
            .collect();
        theta.push(f64::from(layer.bias[1]) * 2.0);
        let positives = s.y.iter().filter(|&&v| v == 1).count() as f64;
        let n = s.len() as f64;
        let problem = Problem {
            x: &s.x,
            y: &s.y,
            w: s.y
                .iter()
                .map(|&v| {
                    if v == 1 {
                        n / (2.0 * positives)
                    } else {
                        n / (2.0 * (n - positives))
                    }
                })
                .collect(),
            dim: 5,
            inv_c: 1.0 / c,
        };
        let (f, g) = problem.value_and_gradient(&theta);
        // Stationary (up to the f32 rounding of the exported weights)…
        assert!(g.iter().all(|v| v.abs() < 1e-3), "gradient {g:?}");
        // …and no nearby point is lower.
        for j in 0..6 {
            for h in [-1e-2, 1e-2] {
                let mut t = theta.clone();
                t[j] += h;
                assert!(problem.value_and_gradient(&t).0 >= f - 1e-9);
            }
        }
        // The ridge pulls weights towards zero: a smaller C, smaller weights.
        let norm = |h: &TrainedHead| h.layers[0].weight.iter().map(|v| v * v).sum::<f32>();
        assert!(norm(&fit(&s, 0.01)) < norm(&head));
    }

    #[test]
    fn the_head_separates_the_classes_and_is_deterministic() {
        let s = clouds(120, 8, 0.6, 9);
        let head = fit(&s, 1.0);
        assert_eq!(head.layers.len(), 1);
        let p = head.predict(&s.x).unwrap();
        let correct = p
            .iter()
            .zip(&s.y)
            .filter(|(p, y)| (**p > 0.5) == (**y == 1))
            .count();
        assert!(
            correct as f64 / s.len() as f64 > 0.9,
            "{correct} of {}",
            s.len()
        );
        // The two logits are ∓z/2, so the softmax is σ(z).
        let layer = &head.layers[0];
        assert_eq!(layer.bias[0], -layer.bias[1]);
        assert_eq!(fit(&s, 1.0).layers, head.layers);
        // The objective never rises.
        assert!(
            head.history
                .windows(2)
                .all(|w| w[1].train <= w[0].train + 1e-7)
        );
    }

    #[test]
    fn a_row_of_weight_w_counts_as_w_copies() {
        let s = clouds(60, 4, 1.0, 5);
        // Rows 0..10 weighted 3, against the same rows pushed three times.
        let (mut weighted, mut copied) = (Samples::default(), Samples::default());
        for i in 0..s.len() {
            let row = &s.x[i * 4..(i + 1) * 4];
            let w = if i < 10 { 3.0 } else { 1.0 };
            weighted.push_weighted(row, s.y[i], i, true, w);
            for _ in 0..w as usize {
                copied.push(row, s.y[i], i, true);
            }
        }
        assert_eq!(weighted.class_weights(), copied.class_weights());
        let (a, b) = (fit(&weighted, 1.0), fit(&copied, 1.0));
        for (x, y) in a.layers[0].weight.iter().zip(&b.layers[0].weight) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
        // And the weight matters: unweighted, the fit differs.
        let plain = fit(&s, 1.0);
        let moved = plain.layers[0]
            .weight
            .iter()
            .zip(&a.layers[0].weight)
            .any(|(x, y)| (x - y).abs() > 1e-3);
        assert!(moved);
    }
}
