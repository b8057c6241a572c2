//! Activation ranges for int8 quantization, measured in tract.
//!
//! Static post-training quantization needs, for every tensor that will be
//! stored as 8 bits, the range of values it takes on real inputs. This module
//! runs the f32 model in tract on calibration images with the tensors of
//! interest exposed as extra outputs, and keeps per tensor its minimum, its
//! maximum and a histogram of non-negative values, from which
//! [`RangeMethod::MinMax`] or [`RangeMethod::Percentile`] derive the range.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use scanside_shared::preprocess::{DecodeLimits, PreprocessSpec, preprocess_file};

use crate::{Error, Result};

/// Bins of each histogram.
const BINS: usize = 2048;

/// How a tensor's clipping range is chosen from its calibration values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", content = "percentile", rename_all = "kebab-case")]
pub enum RangeMethod {
    /// The largest value seen.
    MinMax,
    /// The given percentile (e.g. 99.999) of all values seen: rare
    /// outliers saturate instead of stretching the scale for everyone.
    Percentile(f64),
}

impl std::fmt::Display for RangeMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RangeMethod::MinMax => write!(f, "minmax"),
            RangeMethod::Percentile(p) => write!(f, "p{p}"),
        }
    }
}

impl std::str::FromStr for RangeMethod {
    type Err = String;

    /// `minmax` or `p<percentile>`, e.g. `p99.999`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "minmax" {
            return Ok(RangeMethod::MinMax);
        }
        let p = s
            .strip_prefix('p')
            .and_then(|p| p.parse::<f64>().ok())
            .filter(|p| (50.0..=100.0).contains(p))
            .ok_or_else(|| format!("`{s}`: expected `minmax` or `p<percentile in 50..=100>`"))?;
        Ok(RangeMethod::Percentile(p))
    }
}

/// What was seen of one tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorStats {
    /// Smallest value.
    pub min: f32,
    /// Largest value.
    pub max: f32,
    /// Upper edge of the histogram; bins are `edge / BINS` wide.
    edge: f32,
    /// Counts of non-negative values per bin (values above `edge` grow it).
    counts: Vec<u64>,
}

impl Default for TensorStats {
    fn default() -> Self {
        TensorStats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            edge: 0.0,
            counts: vec![0; BINS],
        }
    }
}

impl TensorStats {
    /// Record values.
    pub fn add(&mut self, values: &[f32]) {
        let (lo, hi) = values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
        if hi > 0.0 && self.edge == 0.0 {
            self.edge = hi;
        }
        while hi > self.edge {
            // Double the range: merge bins pairwise into the lower half.
            for i in 0..BINS / 2 {
                self.counts[i] = self.counts[2 * i] + self.counts[2 * i + 1];
            }
            self.counts[BINS / 2..].fill(0);
            self.edge *= 2.0;
        }
        if self.edge > 0.0 {
            let per_bin = BINS as f32 / self.edge;
            for &v in values.iter().filter(|v| **v >= 0.0) {
                self.counts[((v * per_bin) as usize).min(BINS - 1)] += 1;
            }
        }
    }

    /// Merge another tensor's statistics into this one.
    pub fn merge(&mut self, other: &TensorStats) {
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.edge == 0.0 {
            return;
        }
        let mut other = other.clone();
        // Bring both to the larger edge (edges differ by powers of two only
        // if they started equal; otherwise re-bin by upper edges).
        let edge = self.edge.max(other.edge);
        for s in [&mut *self, &mut other] {
            if s.edge == 0.0 || s.edge == edge {
                s.edge = edge;
                continue;
            }
            let mut counts = vec![0; BINS];
            for (i, &c) in s.counts.iter().enumerate() {
                let upper = (i + 1) as f32 * s.edge / BINS as f32;
                let j = ((upper / edge * BINS as f32).ceil() as usize).clamp(1, BINS) - 1;
                counts[j] += c;
            }
            s.counts = counts;
            s.edge = edge;
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// The upper end of the range by `method` (never above `max`).
    pub fn upper(&self, method: RangeMethod) -> f32 {
        match method {
            RangeMethod::MinMax => self.max,
            RangeMethod::Percentile(p) => {
                let total: u64 = self.counts.iter().sum();
                if total == 0 {
                    return self.max;
                }
                let wanted = (p / 100.0 * total as f64).ceil() as u64;
                let mut seen = 0;
                for (i, &c) in self.counts.iter().enumerate() {
                    seen += c;
                    if seen >= wanted {
                        let upper = (i + 1) as f32 * self.edge / BINS as f32;
                        return upper.min(self.max);
                    }
                }
                self.max
            }
        }
    }
}

/// Statistics per tensor name.
pub type Calibration = BTreeMap<String, TensorStats>;

/// Run `model` in tract on `files`, exposing `tensors` as outputs, and
/// collect their statistics. Images run in parallel, one per core.
pub fn calibrate(
    model: &ModelProto,
    tensors: &[String],
    files: &[PathBuf],
    spec: &PreprocessSpec,
    limits: &DecodeLimits,
) -> Result<Calibration> {
    let tract = |e: TractError| Error::Tract(format!("calibration model: {e:#}"));
    let mut inference = tract_onnx::onnx()
        .model_for_proto_model(model)
        .map_err(tract)?;
    inference
        .select_outputs_by_name(tensors)
        .map_err(|e| Error::Onnx(format!("calibration tensors: {e:#}")))?;
    let plan = inference
        .with_input_fact(0, f32::fact(spec.input_shape(1)).into())
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(tract)?;
    let empty = || -> Calibration {
        tensors
            .iter()
            .map(|t| (t.clone(), TensorStats::default()))
            .collect()
    };
    files
        .par_iter()
        .map(|file| -> Result<Calibration> {
            let input = preprocess_file(file, spec, limits)?;
            let x = Tensor::from_shape(&input.shape, &input.data).map_err(tract)?;
            let outputs = plan.run(tvec!(x.into())).map_err(tract)?;
            let mut cal = empty();
            for (name, out) in tensors.iter().zip(outputs.iter()) {
                let view = out.to_plain_array_view::<f32>().map_err(tract)?;
                let stats = cal.get_mut(name).expect("present");
                match view.as_slice() {
                    Some(s) => stats.add(s),
                    None => stats.add(&view.iter().copied().collect::<Vec<_>>()),
                }
            }
            Ok(cal)
        })
        .try_reduce(empty, |mut a, b| {
            for (name, s) in &b {
                a.get_mut(name).expect("present").merge(s);
            }
            Ok(a)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minmax_and_percentile_ranges() {
        let mut s = TensorStats::default();
        // 10 000 values in [0, 1) and one outlier at 100.
        let values: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        s.add(&values);
        s.add(&[100.0, -3.0]);
        assert_eq!(s.min, -3.0);
        assert_eq!(s.max, 100.0);
        assert_eq!(s.upper(RangeMethod::MinMax), 100.0);
        let p99 = s.upper(RangeMethod::Percentile(99.0));
        assert!((0.98..1.1).contains(&p99), "p99 = {p99}");
        assert_eq!(s.upper(RangeMethod::Percentile(100.0)), 100.0);
    }

    #[test]
    fn merging_equals_adding_everything_to_one() {
        let a_values: Vec<f32> = (0..1000).map(|i| i as f32 * 0.01).collect();
        let b_values: Vec<f32> = (0..1000).map(|i| i as f32 * 0.04).collect();
        let mut one = TensorStats::default();
        one.add(&a_values);
        one.add(&b_values);
        let (mut a, mut b) = (TensorStats::default(), TensorStats::default());
        a.add(&a_values);
        b.add(&b_values);
        a.merge(&b);
        assert_eq!((a.min, a.max), (one.min, one.max));
        for p in [50.0, 90.0, 99.0] {
            let (x, y) = (
                a.upper(RangeMethod::Percentile(p)),
                one.upper(RangeMethod::Percentile(p)),
            );
            assert!((x - y).abs() <= 0.05 * y, "p{p}: merged {x} vs one {y}");
        }
    }

    #[test]
    fn method_parses_from_flags() {
        assert_eq!("minmax".parse(), Ok(RangeMethod::MinMax));
        assert_eq!("p99.99".parse(), Ok(RangeMethod::Percentile(99.99)));
        assert!("p120".parse::<RangeMethod>().is_err());
        assert!("entropy".parse::<RangeMethod>().is_err());
    }
}
