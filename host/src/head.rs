//! The classification head: a small dense network on pooled features,
//! trained with candle.
//!
//! Inputs are standardised with the training rows' mean and standard
//! deviation (folded into the first layer at export). The network is
//! `hidden.len()` ReLU layers with dropout, then a 2-way softmax; Adam(W)
//! minimises cross-entropy weighted by inverse class frequency. Training stops
//! early on an inner validation split (whole duplicate groups, stratified,
//! original views only), or runs a fixed number of epochs for the final fit.
//! Everything random (initialisation, shuffling, dropout, the split) comes
//! from one seeded ChaCha generator, so a fit is reproducible. An ensemble
//! recipe trains several such networks with different seeds and merges them
//! into one network that averages their logits ([`merge`]).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::adamw::InPlaceAdamW;
use crate::features::{Asymmetry, Blocks, FeatureTransform, Pooling};

/// The head's architecture and training recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    /// How feature maps are pooled into vectors.
    pub pooling: Pooling,
    /// Element-wise transform of the pooled vector (absent in recipes
    /// recorded before it existed: `none`).
    #[serde(default)]
    pub transform: FeatureTransform,
    /// Left–right asymmetry features after the global ones. Absent in
    /// recipes recorded before it existed, and not recorded when `none`, so
    /// a model without it keeps the bytes (and id) it had before: `none`.
    #[serde(default, skip_serializing_if = "Asymmetry::is_none")]
    pub asymmetry: Asymmetry,
    /// Which backbone blocks are pooled: the last only, or VGG16's block 4
    /// too. Absent in recipes recorded before it existed, and not recorded
    /// when `last`, so older models keep their bytes (and id): `last`.
    #[serde(default, skip_serializing_if = "Blocks::is_last")]
    pub blocks: Blocks,
    /// Members of the ensemble: heads trained with different seeds (and
    /// validation splits) whose logits are averaged. The average is exact
    /// and is exported as one wider head (see [`merge`]). Absent in older
    /// recipes: 1.
    #[serde(default = "one_member")]
    pub ensemble: usize,
    /// How the head is fitted: Adam on the dense network (the fields
    /// below), or a logistic regression fitted to convergence (no hidden
    /// layer, one member; [`crate::logistic`]). Absent in recipes recorded
    /// before it existed, and not recorded when Adam: [`Solver::Adam`].
    #[serde(default, skip_serializing_if = "Solver::is_adam")]
    pub solver: Solver,
    /// Widths of the hidden ReLU layers.
    pub hidden: Vec<usize>,
    /// How much each reviewed device scan of the dataset (a file named by
    /// its content hash, as `scanside review` writes them) counts in the
    /// head's loss against one other image: a new site's own scans can
    /// outweigh the larger set it joins. Absent in recipes recorded before
    /// it existed, and not recorded when 1: 1. A model trained on data
    /// without reviewed scans records 1 (the weight changed nothing), so
    /// its id does not depend on this setting.
    #[serde(default = "unit_weight", skip_serializing_if = "is_unit_weight")]
    pub reviewed_weight: f32,
    /// Dropout probability after each hidden layer (training only).
    pub dropout: f32,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Decoupled weight decay (0 = plain Adam).
    pub weight_decay: f64,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Upper bound on epochs.
    pub max_epochs: usize,
    /// Epochs without validation improvement before stopping.
    pub patience: usize,
    /// Fraction of training groups held out for early stopping.
    pub validation_fraction: f64,
    /// Seed for everything random.
    pub seed: u64,
}

fn one_member() -> usize {
    1
}

/// The default [`HeadConfig::reviewed_weight`]: each reviewed device scan
/// counts ten times, chosen by the site-adaptation benchmark
/// (docs/validation.md, "Weighting a site's own scans"). It changes nothing
/// for a dataset without reviewed scans, such as the team set.
pub const DEFAULT_REVIEWED_WEIGHT: f32 = 10.0;

fn unit_weight() -> f32 {
    1.0
}

fn is_unit_weight(w: &f32) -> bool {
    *w == 1.0
}

/// How a head's weights are found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Solver {
    /// Mini-batch Adam(W) on the dense network, early-stopped (the
    /// recipe's `hidden`, `dropout`, `learning_rate`, … apply).
    #[default]
    Adam,
    /// L2-regularised logistic regression minimised to convergence, on the
    /// head input as it is (not standardised): a linear head.
    Logistic {
        /// Inverse regularisation strength (scikit-learn's `C`).
        c: f64,
    },
}

impl Solver {
    /// `true` for [`Solver::Adam`].
    pub fn is_adam(&self) -> bool {
        *self == Solver::Adam
    }
}

impl Default for HeadConfig {
    /// The default recipe, chosen by duplicate-grouped cross-validation
    /// among the candidates in docs/training.md, "Choosing the head"
    /// (`cargo run --example recipes`), and block 4 by cross-validation
    /// together with the site-adaptation benchmark (docs/validation.md,
    /// "Multi-block features").
    fn default() -> Self {
        HeadConfig {
            pooling: Pooling::AvgMax,
            transform: FeatureTransform::Log1p,
            asymmetry: Asymmetry::None,
            blocks: Blocks::Block4Last,
            ensemble: 5,
            solver: Solver::Adam,
            hidden: vec![256],
            reviewed_weight: DEFAULT_REVIEWED_WEIGHT,
            dropout: 0.7,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            batch_size: 64,
            max_epochs: 150,
            patience: 6,
            validation_fraction: 0.15,
            seed: 42,
        }
    }
}

/// Training rows: pooled feature vectors with labels and provenance.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    /// Width of each row.
    pub dim: usize,
    /// Rows, flattened.
    pub x: Vec<f32>,
    /// Label per row (1 = positive).
    pub y: Vec<u8>,
    /// Duplicate group per row.
    pub group: Vec<usize>,
    /// Whether the row is an original view (not augmented).
    pub original: Vec<bool>,
    /// Weight of the row in the loss (times its class weight).
    pub weight: Vec<f32>,
}

impl Samples {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Append a row of weight 1.
    pub fn push(&mut self, x: &[f32], y: u8, group: usize, original: bool) {
        self.push_weighted(x, y, group, original, 1.0);
    }

    /// Append a row with a loss weight.
    pub fn push_weighted(&mut self, x: &[f32], y: u8, group: usize, original: bool, weight: f32) {
        debug_assert!(self.dim == 0 || self.dim == x.len());
        self.dim = x.len();
        self.x.extend_from_slice(x);
        self.y.push(y);
        self.group.push(group);
        self.original.push(original);
        self.weight.push(weight);
    }

    /// Class weights `W / (2 W_class)`, `W` the total row weight (the row
    /// count when every weight is 1), so that both classes weigh the same
    /// in total; a class without rows counts as weight 1.
    pub fn class_weights(&self) -> [f32; 2] {
        let positives: f32 = self
            .y
            .iter()
            .zip(&self.weight)
            .filter(|(y, _)| **y == 1)
            .map(|(_, w)| w)
            .sum();
        let total: f32 = self.weight.iter().sum();
        // A class without rows counts as weight 1 (the floor applies only
        // then, so that rows weighted below 1 keep their balance).
        let floor = |w: f32| if w > 0.0 { w } else { 1.0 };
        let negatives = floor(total - positives);
        let positives = floor(positives);
        [total / (2.0 * negatives), total / (2.0 * positives)]
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.dim..(i + 1) * self.dim]
    }

    fn subset(&self, rows: &[usize]) -> Samples {
        let mut s = Samples::default();
        for &i in rows {
            s.push_weighted(
                self.row(i),
                self.y[i],
                self.group[i],
                self.original[i],
                self.weight[i],
            );
        }
        s
    }
}

/// One dense layer: `y = x · weight + bias`, weight `inputs × outputs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DenseLayer {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// Row-major `inputs × outputs`.
    pub weight: Vec<f32>,
    /// `outputs` biases.
    pub bias: Vec<f32>,
}

/// Loss after one epoch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct EpochLoss {
    /// Mean weighted cross-entropy over the training rows.
    pub train: f32,
    /// Same on the inner validation rows, when there are some.
    pub validation: Option<f32>,
}

/// How long to train.
#[derive(Clone, Copy, Debug)]
pub enum Stopping {
    /// Hold out groups and stop when their loss stops improving.
    EarlyOnValidation,
    /// Train on everything for exactly this many epochs.
    FixedEpochs(usize),
}

/// A trained head.
#[derive(Clone, Debug, Serialize)]
pub struct TrainedHead {
    /// Per-feature mean of the training rows.
    pub mean: Vec<f32>,
    /// Per-feature `1 / std` of the training rows.
    pub inv_std: Vec<f32>,
    /// The dense layers; ReLU between them, softmax after the last.
    pub layers: Vec<DenseLayer>,
    /// Epoch (1-based) whose weights were kept.
    pub best_epoch: usize,
    /// Loss per epoch.
    pub history: Vec<EpochLoss>,
}

struct Net {
    weights: Vec<Var>,
    biases: Vec<Var>,
}

impl Net {
    fn new(dims: &[usize], rng: &mut ChaCha8Rng, dev: &Device) -> Result<Net> {
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for pair in dims.windows(2) {
            let (i, o) = (pair[0], pair[1]);
            // Glorot uniform, as Keras initialises Dense layers.
            let limit = (6.0 / (i + o) as f32).sqrt();
            let w: Vec<f32> = (0..i * o)
                .map(|_| rng.random_range(-limit..limit))
                .collect();
            weights.push(Var::from_vec(w, (i, o), dev)?);
            biases.push(Var::zeros(o, DType::F32, dev)?);
        }
        Ok(Net { weights, biases })
    }

    fn vars(&self) -> Vec<Var> {
        self.weights.iter().chain(&self.biases).cloned().collect()
    }

    fn forward(&self, x: &Tensor, dropout: Option<(f32, &mut ChaCha8Rng)>) -> Result<Tensor> {
        let mut h = x.clone();
        let last = self.weights.len() - 1;
        let mut dropout = dropout;
        for (l, (w, b)) in self.weights.iter().zip(&self.biases).enumerate() {
            h = h.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
            if l < last {
                h = h.relu()?;
                if let Some((p, rng)) = dropout.as_mut()
                    && *p > 0.0
                {
                    let keep = 1.0 - *p;
                    let mask: Vec<f32> = (0..h.elem_count())
                        .map(|_| {
                            if rng.random::<f32>() < keep {
                                1.0 / keep
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    let mask = Tensor::from_vec(mask, h.shape(), h.device())?;
                    h = (h * mask)?;
                }
            }
        }
        Ok(h)
    }

    fn snapshot(&self) -> Result<Vec<Tensor>> {
        Ok(self
            .vars()
            .iter()
            .map(|v| v.as_tensor().copy())
            .collect::<candle_core::Result<_>>()?)
    }

    fn restore(&self, saved: &[Tensor]) -> Result<()> {
        for (v, t) in self.vars().iter().zip(saved) {
            v.set(t)?;
        }
        Ok(())
    }
}

/// Weighted mean cross-entropy of `logits` against `y` with row weights `w`.
fn weighted_ce(logits: &Tensor, y: &Tensor, w: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, 1)?;
    let picked = logp.gather(&y.unsqueeze(1)?, 1)?.squeeze(1)?;
    let total = (picked * w)?.sum_all()?;
    Ok((total.neg()? / w.sum_all()?.to_scalar::<f32>()? as f64)?)
}

/// Standardise rows with the given statistics.
fn standardise(s: &Samples, mean: &[f32], inv_std: &[f32]) -> Vec<f32> {
    s.x.chunks_exact(s.dim)
        .flat_map(|r| {
            r.iter()
                .zip(mean)
                .zip(inv_std)
                .map(|((v, m), k)| (v - m) * k)
        })
        .collect()
}

/// Mean and inverse standard deviation per column.
fn column_stats(s: &Samples) -> (Vec<f32>, Vec<f32>) {
    let n = s.len() as f64;
    let mut mean = vec![0f64; s.dim];
    let mut sq = vec![0f64; s.dim];
    for r in s.x.chunks_exact(s.dim) {
        for (j, &v) in r.iter().enumerate() {
            mean[j] += v as f64;
            sq[j] += (v as f64) * (v as f64);
        }
    }
    let mean: Vec<f64> = mean.iter().map(|m| m / n).collect();
    let inv_std = sq
        .iter()
        .zip(&mean)
        .map(|(q, m)| {
            let var = (q / n - m * m).max(0.0);
            (1.0 / (var.sqrt() + 1e-3)) as f32
        })
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), inv_std)
}

/// Split rows into (train, validation) by whole groups, stratified by label;
/// validation keeps original views only.
fn split_groups(s: &Samples, fraction: f64, rng: &mut ChaCha8Rng) -> (Vec<usize>, Vec<usize>) {
    let mut groups_by_label: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..s.len() {
        seen.entry(s.group[i]).or_insert(s.y[i]);
    }
    for (&g, &label) in &seen {
        groups_by_label[label as usize].push(g);
    }
    let mut held = std::collections::HashSet::new();
    for groups in groups_by_label.iter_mut() {
        groups.shuffle(rng);
        let k = ((groups.len() as f64) * fraction).round().max(1.0) as usize;
        held.extend(
            groups
                .iter()
                .take(k.min(groups.len().saturating_sub(1)))
                .copied(),
        );
    }
    let train = (0..s.len())
        .filter(|&i| !held.contains(&s.group[i]))
        .collect();
    let val = (0..s.len())
        .filter(|&i| held.contains(&s.group[i]) && s.original[i])
        .collect();
    (train, val)
}

struct Prepared {
    x: Tensor,
    y: Tensor,
    w: Tensor,
    n: usize,
}

fn prepare(
    s: &Samples,
    mean: &[f32],
    inv_std: &[f32],
    class_w: [f32; 2],
    dev: &Device,
) -> Result<Prepared> {
    let n = s.len();
    Ok(Prepared {
        x: Tensor::from_vec(standardise(s, mean, inv_std), (n, s.dim), dev)?,
        y: Tensor::from_vec(s.y.iter().map(|&v| v as u32).collect::<Vec<_>>(), n, dev)?,
        w: Tensor::from_vec(
            s.y.iter()
                .zip(&s.weight)
                .map(|(&v, &w)| class_w[v as usize] * w)
                .collect::<Vec<_>>(),
            n,
            dev,
        )?,
        n,
    })
}

/// Train a head on `samples`: `cfg.ensemble` members with seeds
/// `cfg.seed + k · MEMBER_SEED_STRIDE`, merged into one head whose logits are the
/// members' mean. `best_epoch` is the members' median best epoch and
/// `history` the first member's.
///
/// With [`Solver::Logistic`] the one deterministic fit of
/// [`crate::logistic::fit`] on every row (`stopping` does not apply); the
/// recipe must have no hidden layer and one member.
pub fn fit(samples: &Samples, cfg: &HeadConfig, stopping: Stopping) -> Result<TrainedHead> {
    if let Solver::Logistic { c } = cfg.solver {
        if !cfg.hidden.is_empty() || cfg.ensemble > 1 || !(c > 0.0 && c.is_finite()) {
            return Err(crate::Error::Config(format!(
                "a logistic head has no hidden layer, one member and C > 0 \
                 (recipe: hidden {:?}, ensemble {}, C {c})",
                cfg.hidden, cfg.ensemble
            )));
        }
        return Ok(crate::logistic::fit(samples, c));
    }
    let members = (0..cfg.ensemble.max(1) as u64)
        .map(|k| {
            let member = HeadConfig {
                seed: cfg.seed.wrapping_add(k * MEMBER_SEED_STRIDE),
                ..cfg.clone()
            };
            fit_one(samples, &member, stopping)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(merge(members))
}

/// Seeds of ensemble members are this far apart, so that the members of
/// neighbouring folds (whose seeds differ by 1) never share one.
const MEMBER_SEED_STRIDE: u64 = 1_000_003;

/// One head whose logits are the mean of the members' logits: exact, for
/// members of the same architecture.
///
/// Each member's standardisation is folded into its first layer (the merged
/// head standardises with mean 0 and scale 1). With hidden layers, the
/// first layers are placed side by side, middle layers block-diagonally,
/// and the output layers stacked and scaled by `1 / members`, so the merged
/// network runs every member in parallel and sums their logits / members.
/// Without hidden layers the one layer is both first and last: the members'
/// layers overlap and are averaged.
pub fn merge(mut members: Vec<TrainedHead>) -> TrainedHead {
    if members.len() == 1 {
        return members.pop().expect("one member");
    }
    let k = members.len();
    let mut epochs: Vec<usize> = members.iter().map(|m| m.best_epoch).collect();
    epochs.sort_unstable();
    let folded: Vec<Vec<DenseLayer>> = members.iter().map(fold_standardisation).collect();
    let depth = folded[0].len();
    let inputs = folded[0][0].inputs;
    let layers = (0..depth)
        .map(|l| {
            let parts: Vec<&DenseLayer> = folded.iter().map(|m| &m[l]).collect();
            let last = l + 1 == depth;
            // Rows (inputs) and columns (outputs) of the merged layer:
            // the first layer shares its inputs, the last its outputs.
            let rows: usize = if l == 0 {
                inputs
            } else {
                parts.iter().map(|p| p.inputs).sum()
            };
            let cols: usize = if last {
                2
            } else {
                parts.iter().map(|p| p.outputs).sum()
            };
            let mut weight = vec![0.0f32; rows * cols];
            let mut bias = vec![0.0f32; cols];
            let (mut r0, mut c0) = (0, 0);
            for p in parts {
                let scale = if last { 1.0 / k as f32 } else { 1.0 };
                for i in 0..p.inputs {
                    for o in 0..p.outputs {
                        weight[(r0 + i) * cols + c0 + o] += scale * p.weight[i * p.outputs + o];
                    }
                }
                for o in 0..p.outputs {
                    bias[c0 + o] += scale * p.bias[o];
                }
                if l > 0 {
                    r0 += p.inputs;
                }
                if !last {
                    c0 += p.outputs;
                }
            }
            DenseLayer {
                inputs: rows,
                outputs: cols,
                weight,
                bias,
            }
        })
        .collect();
    let first = members.swap_remove(0);
    TrainedHead {
        mean: vec![0.0; inputs],
        inv_std: vec![1.0; inputs],
        layers,
        best_epoch: epochs[epochs.len() / 2],
        history: first.history,
    }
}

/// A head's layers with its standardisation folded into the first:
/// `(x − m) ⊙ s · W + b = x · (s ⊙ W) + (b − (m ⊙ s) · W)`.
pub fn fold_standardisation(head: &TrainedHead) -> Vec<DenseLayer> {
    let mut layers = head.layers.clone();
    let first = &mut layers[0];
    for j in 0..first.inputs {
        let (m, s) = (head.mean[j], head.inv_std[j]);
        for o in 0..first.outputs {
            let v = head.layers[0].weight[j * first.outputs + o];
            first.weight[j * first.outputs + o] = v * s;
            first.bias[o] -= m * s * v;
        }
    }
    layers
}

/// Train one network on `samples`.
fn fit_one(samples: &Samples, cfg: &HeadConfig, stopping: Stopping) -> Result<TrainedHead> {
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let (train_rows, val_rows) = match stopping {
        Stopping::EarlyOnValidation => split_groups(samples, cfg.validation_fraction, &mut rng),
        Stopping::FixedEpochs(_) => ((0..samples.len()).collect(), Vec::new()),
    };
    let train = samples.subset(&train_rows);
    let val = samples.subset(&val_rows);
    let (mean, inv_std) = column_stats(&train);
    let class_w = train.class_weights();
    let tr = prepare(&train, &mean, &inv_std, class_w, &dev)?;
    let va = (!val.is_empty())
        .then(|| prepare(&val, &mean, &inv_std, class_w, &dev))
        .transpose()?;

    let mut dims = vec![samples.dim];
    dims.extend(&cfg.hidden);
    dims.push(2);
    let net = Net::new(&dims, &mut rng, &dev)?;
    let mut opt = InPlaceAdamW::new(
        net.vars(),
        ParamsAdamW {
            lr: cfg.learning_rate,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )?;
    let epochs = match stopping {
        Stopping::EarlyOnValidation => cfg.max_epochs,
        Stopping::FixedEpochs(e) => e,
    };
    let mut order: Vec<u32> = (0..tr.n as u32).collect();
    let mut history = Vec::new();
    let mut best = (f32::INFINITY, 0usize, None);
    for epoch in 1..=epochs {
        order.shuffle(&mut rng);
        let mut total = 0f64;
        for chunk in order.chunks(cfg.batch_size.max(1)) {
            let idx = Tensor::from_slice(chunk, chunk.len(), &dev)?;
            let xb = tr.x.index_select(&idx, 0)?;
            let yb = tr.y.index_select(&idx, 0)?;
            let wb = tr.w.index_select(&idx, 0)?;
            let logits = net.forward(&xb, Some((cfg.dropout, &mut rng)))?;
            let loss = weighted_ce(&logits, &yb, &wb)?;
            opt.backward_step(&loss)?;
            total += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
        }
        let train_loss = (total / tr.n as f64) as f32;
        let validation = match &va {
            Some(v) => {
                Some(weighted_ce(&net.forward(&v.x, None)?, &v.y, &v.w)?.to_scalar::<f32>()?)
            }
            None => None,
        };
        history.push(EpochLoss {
            train: train_loss,
            validation,
        });
        if let Some(vl) = validation {
            if vl < best.0 - 1e-5 {
                best = (vl, epoch, Some(net.snapshot()?));
            } else if epoch - best.1 >= cfg.patience {
                break;
            }
        }
    }
    let best_epoch = match best {
        (_, e, Some(saved)) => {
            net.restore(&saved)?;
            e
        }
        _ => history.len(),
    };
    let layers = net
        .weights
        .iter()
        .zip(&net.biases)
        .map(|(w, b)| {
            let (i, o) = w.as_tensor().dims2()?;
            Ok(DenseLayer {
                inputs: i,
                outputs: o,
                weight: w.as_tensor().flatten_all()?.to_vec1()?,
                bias: b.as_tensor().to_vec1()?,
            })
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(TrainedHead {
        mean,
        inv_std,
        layers,
        best_epoch,
        history,
    })
}

impl TrainedHead {
    /// Positive-class probability for each row of `x` (flattened, width
    /// `mean.len()`), computed with candle.
    pub fn predict(&self, x: &[f32]) -> Result<Vec<f32>> {
        let dim = self.mean.len();
        let n = x.len() / dim;
        if n == 0 {
            return Ok(Vec::new());
        }
        let dev = Device::Cpu;
        let standard: Vec<f32> = x
            .chunks_exact(dim)
            .flat_map(|r| {
                r.iter()
                    .zip(&self.mean)
                    .zip(&self.inv_std)
                    .map(|((v, m), k)| (v - m) * k)
            })
            .collect();
        let mut h = Tensor::from_vec(standard, (n, dim), &dev)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let w = Tensor::from_slice(&layer.weight, (layer.inputs, layer.outputs), &dev)?;
            let b = Tensor::from_slice(&layer.bias, layer.outputs, &dev)?;
            h = h.matmul(&w)?.broadcast_add(&b)?;
            if l + 1 < self.layers.len() {
                h = h.relu()?;
            }
        }
        let p = candle_nn::ops::softmax(&h, 1)?;
        Ok(p.narrow(1, 1, 1)?.flatten_all()?.to_vec1()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two separable clouds: the head must learn them, reproducibly.
    fn toy() -> Samples {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut s = Samples::default();
        for i in 0..120 {
            let y = (i % 2) as u8;
            let centre = if y == 1 { 1.0 } else { -1.0 };
            let x: Vec<f32> = (0..8)
                .map(|_| centre + rng.random_range(-0.8..0.8))
                .collect();
            s.push(&x, y, i, true);
        }
        s
    }

    fn small() -> HeadConfig {
        HeadConfig {
            ensemble: 1,
            hidden: vec![16],
            learning_rate: 1e-2,
            max_epochs: 60,
            ..HeadConfig::default()
        }
    }

    #[test]
    fn learns_separable_data_and_is_reproducible() {
        let s = toy();
        let a = fit(&s, &small(), Stopping::EarlyOnValidation).unwrap();
        let b = fit(&s, &small(), Stopping::EarlyOnValidation).unwrap();
        assert_eq!(a.layers, b.layers);
        let p = a.predict(&s.x).unwrap();
        let correct = p
            .iter()
            .zip(&s.y)
            .filter(|(p, y)| (**p >= 0.5) == (**y == 1))
            .count();
        assert!(correct >= 114, "{correct}/120");
    }

    /// Logit of a probability.
    fn logit(p: f32) -> f32 {
        (p / (1.0 - p)).ln()
    }

    #[test]
    fn a_merged_ensemble_averages_its_members_logits() {
        let s = toy();
        for hidden in [vec![], vec![16], vec![8, 4]] {
            let cfg = HeadConfig {
                hidden: hidden.clone(),
                ..small()
            };
            let members: Vec<TrainedHead> = (0..3)
                .map(|k| {
                    let c = HeadConfig {
                        seed: 11 + k,
                        ..cfg.clone()
                    };
                    fit_one(&s, &c, Stopping::FixedEpochs(5)).unwrap()
                })
                .collect();
            let merged = merge(members.clone());
            let widths: Vec<usize> = merged.layers.iter().map(|l| l.outputs).collect();
            let expected: Vec<usize> = hidden.iter().map(|h| 3 * h).chain([2]).collect();
            assert_eq!(widths, expected);
            let got = merged.predict(&s.x).unwrap();
            let each: Vec<Vec<f32>> = members.iter().map(|m| m.predict(&s.x).unwrap()).collect();
            for (i, p) in got.iter().enumerate() {
                let mean = each.iter().map(|m| logit(m[i])).sum::<f32>() / 3.0;
                assert!((logit(*p) - mean).abs() < 1e-3, "{hidden:?} row {i}: {p}");
            }
        }
    }

    #[test]
    fn an_ensemble_fit_is_its_members_merged() {
        let s = toy();
        let cfg = HeadConfig {
            ensemble: 2,
            ..small()
        };
        let fitted = fit(&s, &cfg, Stopping::FixedEpochs(4)).unwrap();
        let members = (0..2)
            .map(|k| {
                let c = HeadConfig {
                    seed: cfg.seed + k * MEMBER_SEED_STRIDE,
                    ..cfg.clone()
                };
                fit_one(&s, &c, Stopping::FixedEpochs(4)).unwrap()
            })
            .collect();
        assert_eq!(fitted.layers, merge(members).layers);
    }

    /// Recipes recorded before `transform`, `ensemble` and `asymmetry`
    /// existed read back with them off; the default recipe records no
    /// `asymmetry` (so its models keep their bytes and ids), a recipe that
    /// uses it does, and both round-trip.
    #[test]
    fn recipes_record_only_what_they_use_and_old_ones_still_read() {
        let mut old = serde_json::to_value(HeadConfig::default()).unwrap();
        assert!(old.get("asymmetry").is_none(), "{old}");
        for key in ["transform", "ensemble"] {
            old.as_object_mut().unwrap().remove(key);
        }
        let read: HeadConfig = serde_json::from_value(old).unwrap();
        assert_eq!(read.transform, FeatureTransform::None);
        assert_eq!(read.ensemble, 1);
        assert_eq!(read.asymmetry, Asymmetry::None);

        let with = HeadConfig {
            asymmetry: Asymmetry::LeftRight,
            ..HeadConfig::default()
        };
        let json = serde_json::to_value(&with).unwrap();
        assert_eq!(json["asymmetry"], "left_right");
        assert_eq!(serde_json::from_value::<HeadConfig>(json).unwrap(), with);
    }

    #[test]
    fn fixed_epochs_runs_exactly_that_many() {
        let h = fit(&toy(), &small(), Stopping::FixedEpochs(7)).unwrap();
        assert_eq!(h.history.len(), 7);
        assert!(h.history.iter().all(|e| e.validation.is_none()));
    }

    #[test]
    fn validation_split_keeps_groups_whole() {
        let mut s = toy();
        for g in s.group.iter_mut() {
            *g /= 4;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (train, val) = split_groups(&s, 0.2, &mut rng);
        for v in &val {
            assert!(train.iter().all(|t| s.group[*t] != s.group[*v]));
        }
        assert!(!val.is_empty());
    }
}
