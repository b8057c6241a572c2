//! The out-of-scope guard: "not for me" instead of a guess.
//!
//! A model answers tumour / no tumour for anything that decodes: a CT slice
//! saved as PNG, a page of text, noise. The guard stands in front of that
//! answer, computed from what the network already produces (no second
//! network), in two stages:
//!
//! 1. [`InputLimits`]: cheap checks on the decoded picture, before any
//!    inference — a near-constant image, an extreme aspect ratio, colour
//!    where MR slices are grey.
//! 2. [`FeatureGuard`]: how far the head's input (the pooled backbone
//!    features, graph tensor [`POOLED_TENSOR`]) lies from the training
//!    images' features, as the negative log-likelihood of a probabilistic
//!    PCA fitted to them: features standardised with the training mean and
//!    spread, then `Σ zᵢ²/λᵢ` over the leading components plus `‖r‖²/σ²`
//!    for the residual `r` outside them, divided by the feature width. An
//!    image like the training images scores about 1; the threshold is
//!    chosen by the host on out-of-fold scores so that a set fraction of
//!    training images pass (`scanside train`, see `docs/guard.md`).
//!
//! The guard travels in the model's metadata under [`MANIFEST_KEY`] as JSON
//! ([`GuardSpec`], vectors as base64 of little-endian `f32`). A model
//! without it has no guard: every decoded image is answered, as before.
//! Host and device call the same [`GuardSpec::check_input`] and
//! [`FeatureGuard::score`], so both refuse the same scans.

use base64::Engine as _;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Metadata key of the [`GuardSpec`].
pub const MANIFEST_KEY: &str = "scanside.guard";

/// Version of the [`GuardSpec`] layout.
pub const GUARD_FORMAT_VERSION: u32 = 1;

/// The graph tensor the feature guard reads: the dense head's input.
pub const POOLED_TENSOR: &str = "scanside/pooled";

/// The label an out-of-scope scan gets instead of a class label.
pub const OUT_OF_SCOPE: &str = "out_of_scope";

/// Cheap checks on the decoded picture (8-bit RGB, before crop and resize).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputLimits {
    /// Least standard deviation of the grey level (0–255): below it the
    /// picture is near-constant (blank, a flat fill).
    pub min_grey_std: f32,
    /// Largest ratio of the long side to the short side.
    pub max_aspect: f32,
    /// Largest mean colourfulness, `max(r, g, b) − min(r, g, b)` averaged
    /// over the pixels (0–255): MR slices are grey (0).
    pub max_colourfulness: f32,
}

impl Default for InputLimits {
    /// Limits that every image of the external set passes, and every image
    /// of the team set but one tinted slice (measured: `docs/guard.md`).
    fn default() -> Self {
        InputLimits {
            min_grey_std: 4.0,
            max_aspect: 2.5,
            max_colourfulness: 12.0,
        }
    }
}

/// What the cheap checks measured on one picture.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputStats {
    /// Standard deviation of the grey level.
    pub grey_std: f32,
    /// Long side / short side.
    pub aspect: f32,
    /// Mean `max − min` over the three channels.
    pub colourfulness: f32,
}

impl InputStats {
    /// Measure a picture.
    pub fn of(image: &RgbImage) -> Self {
        let (w, h) = image.dimensions();
        let n = f64::from(w) * f64::from(h);
        let (mut sum, mut sum2, mut colour) = (0f64, 0f64, 0f64);
        for p in image.pixels() {
            let [r, g, b] = p.0;
            let grey = (f64::from(r) + f64::from(g) + f64::from(b)) / 3.0;
            sum += grey;
            sum2 += grey * grey;
            colour += f64::from(r.max(g).max(b) - r.min(g).min(b));
        }
        let (mean, colour) = if n > 0.0 {
            (sum / n, colour / n)
        } else {
            (0.0, 0.0)
        };
        let var = if n > 0.0 {
            (sum2 / n - mean * mean).max(0.0)
        } else {
            0.0
        };
        let (long, short) = (w.max(h), w.min(h).max(1));
        InputStats {
            grey_std: var.sqrt() as f32,
            aspect: long as f32 / short as f32,
            colourfulness: colour as f32,
        }
    }
}

/// Why a scan is out of scope.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "check")]
pub enum ScopeReason {
    /// The picture is near-constant.
    NearConstant {
        /// Its grey-level standard deviation.
        grey_std: f32,
    },
    /// The picture is much longer than it is wide, or the reverse.
    AspectRatio {
        /// Long side / short side.
        aspect: f32,
    },
    /// The picture is in colour.
    Colour {
        /// Mean colourfulness.
        colourfulness: f32,
    },
    /// Its features are far from the training images'.
    Features,
}

impl ScopeReason {
    /// The check's name, as in JSON's `check` field (`near_constant`,
    /// `aspect_ratio`, `colour`, `features`).
    pub fn check(&self) -> &'static str {
        match self {
            ScopeReason::NearConstant { .. } => "near_constant",
            ScopeReason::AspectRatio { .. } => "aspect_ratio",
            ScopeReason::Colour { .. } => "colour",
            ScopeReason::Features => "features",
        }
    }
}

impl std::fmt::Display for ScopeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScopeReason::NearConstant { grey_std } => {
                write!(f, "near-constant picture (grey std {grey_std:.1})")
            }
            ScopeReason::AspectRatio { aspect } => {
                write!(f, "aspect ratio {aspect:.1}:1, not a slice")
            }
            ScopeReason::Colour { colourfulness } => {
                write!(
                    f,
                    "colour picture (colourfulness {colourfulness:.1}); MR is grey"
                )
            }
            ScopeReason::Features => write!(f, "unlike the training images"),
        }
    }
}

/// The guard's verdict on one scan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScopeCheck {
    /// Whether the model's answer stands.
    pub in_scope: bool,
    /// The feature guard's score ([`FeatureGuard::score`]); `None` when a
    /// cheap check refused the picture before inference.
    pub score: Option<f32>,
    /// The score above which a scan is out of scope.
    pub threshold: f32,
    /// Why it is out of scope (`None` when in scope).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<ScopeReason>,
}

/// The statistics of the feature guard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureGuard {
    /// Feature width (the head's input width).
    pub width: usize,
    /// Training mean per feature.
    #[serde(with = "f32_base64")]
    pub mean: Vec<f32>,
    /// 1 / training standard deviation per feature (floored).
    #[serde(with = "f32_base64")]
    pub inv_std: Vec<f32>,
    /// Orthonormal principal directions of the standardised features, one
    /// row of `width` per component, largest variance first.
    #[serde(with = "f32_base64")]
    pub components: Vec<f32>,
    /// Variance along each component.
    #[serde(with = "f32_base64")]
    pub variances: Vec<f32>,
    /// Variance per dimension left outside the components (the PPCA noise).
    pub residual_variance: f32,
    /// Scores above this are out of scope.
    pub threshold: f32,
}

impl FeatureGuard {
    /// Number of principal components.
    pub fn rank(&self) -> usize {
        self.variances.len()
    }

    /// Check the shapes: every vector the right length, every variance
    /// positive and finite.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let (w, k) = (self.width, self.rank());
        if w == 0 {
            return Err("feature width 0".into());
        }
        if self.mean.len() != w || self.inv_std.len() != w {
            return Err(format!(
                "mean/inv_std of {}/{} values for width {w}",
                self.mean.len(),
                self.inv_std.len()
            ));
        }
        if self.components.len() != k * w {
            return Err(format!(
                "{} component values for {k} components of width {w}",
                self.components.len()
            ));
        }
        let positive = |v: f32| v.is_finite() && v > 0.0;
        if !self.variances.iter().all(|&v| positive(v)) || !positive(self.residual_variance) {
            return Err("a variance is not a positive number".into());
        }
        if !self.threshold.is_finite() || self.threshold <= 0.0 {
            return Err(format!("threshold {} is not positive", self.threshold));
        }
        Ok(())
    }

    /// The score of one feature vector: PPCA negative log-likelihood over
    /// the feature width (about 1 for training-like features; NaN or
    /// infinite features score infinity).
    ///
    /// # Errors
    /// If `features` is not [`FeatureGuard::width`] long.
    pub fn score(&self, features: &[f32]) -> Result<f32> {
        if features.len() != self.width {
            return Err(Error::Inference(format!(
                "the guard reads {} features, the model gave {}",
                self.width,
                features.len()
            )));
        }
        let x: Vec<f64> = features
            .iter()
            .zip(&self.mean)
            .zip(&self.inv_std)
            .map(|((&f, &m), &s)| (f64::from(f) - f64::from(m)) * f64::from(s))
            .collect();
        let total: f64 = x.iter().map(|v| v * v).sum();
        let (mut inside, mut explained) = (0f64, 0f64);
        for (row, &var) in self
            .components
            .chunks_exact(self.width)
            .zip(&self.variances)
        {
            let z: f64 = row.iter().zip(&x).map(|(&c, &v)| f64::from(c) * v).sum();
            inside += z * z / f64::from(var);
            explained += z * z;
        }
        let residual = (total - explained).max(0.0);
        let score = (inside + residual / f64::from(self.residual_variance)) / self.width as f64;
        Ok(if score.is_finite() {
            score as f32
        } else {
            f32::INFINITY
        })
    }
}

/// Everything the guard stores in a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardSpec {
    /// [`GUARD_FORMAT_VERSION`].
    pub format_version: u32,
    /// The cheap checks.
    pub input: InputLimits,
    /// The feature guard.
    pub features: FeatureGuard,
    /// How the threshold was chosen, for the model card.
    pub fitted: GuardFit,
}

/// How a guard was fitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardFit {
    /// Training images (original views) and all views the statistics saw.
    pub images: usize,
    /// Rows fitted (images × views).
    pub rows: usize,
    /// The fraction of training images meant to pass out of fold.
    pub pass_target: f32,
    /// The fraction that did pass out of fold at the threshold.
    pub oof_pass_rate: f32,
    /// Out-of-fold scores at the 50th, 90th and 99th percentile.
    pub oof_quantiles: [f32; 3],
}

impl GuardSpec {
    /// Read the guard from a model's metadata value.
    pub fn from_json(value: &str) -> Result<Self> {
        let spec: GuardSpec = serde_json::from_str(value)
            .map_err(|e| Error::Manifest(format!("{MANIFEST_KEY}: {e}")))?;
        if spec.format_version != GUARD_FORMAT_VERSION {
            return Err(Error::Manifest(format!(
                "{MANIFEST_KEY}: format version {}, this scanside reads {GUARD_FORMAT_VERSION}",
                spec.format_version
            )));
        }
        spec.features
            .validate()
            .map_err(|e| Error::Manifest(format!("{MANIFEST_KEY}: {e}")))?;
        Ok(spec)
    }

    /// The metadata value.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a guard serialises")
    }

    /// The cheap checks on a decoded picture: `Some` when it is out of
    /// scope.
    pub fn check_input(&self, image: &RgbImage) -> Option<ScopeCheck> {
        let s = InputStats::of(image);
        let l = &self.input;
        let reason = if s.grey_std < l.min_grey_std {
            ScopeReason::NearConstant {
                grey_std: s.grey_std,
            }
        } else if s.aspect > l.max_aspect {
            ScopeReason::AspectRatio { aspect: s.aspect }
        } else if s.colourfulness > l.max_colourfulness {
            ScopeReason::Colour {
                colourfulness: s.colourfulness,
            }
        } else {
            return None;
        };
        Some(ScopeCheck {
            in_scope: false,
            score: None,
            threshold: self.features.threshold,
            reason: Some(reason),
        })
    }

    /// The feature check on the head's input.
    pub fn check_features(&self, features: &[f32]) -> Result<ScopeCheck> {
        let score = self.features.score(features)?;
        let in_scope = score <= self.features.threshold;
        Ok(ScopeCheck {
            in_scope,
            score: Some(score),
            threshold: self.features.threshold,
            reason: (!in_scope).then_some(ScopeReason::Features),
        })
    }
}

/// `Vec<f32>` as base64 of its little-endian bytes: a fifth of the JSON
/// number text, and exact.
mod f32_base64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(
        v: &[f32],
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Vec<f32>, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)?;
        if bytes.len() % 4 != 0 {
            return Err(serde::de::Error::custom(format!(
                "{} bytes is not a whole number of f32",
                bytes.len()
            )));
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guard of width 3 with one component along the first axis.
    fn guard() -> GuardSpec {
        GuardSpec {
            format_version: GUARD_FORMAT_VERSION,
            input: InputLimits::default(),
            features: FeatureGuard {
                width: 3,
                mean: vec![1.0, 0.0, 0.0],
                inv_std: vec![1.0, 2.0, 1.0],
                components: vec![1.0, 0.0, 0.0],
                variances: vec![4.0],
                residual_variance: 0.25,
                threshold: 1.5,
            },
            fitted: GuardFit {
                images: 10,
                rows: 30,
                pass_target: 0.99,
                oof_pass_rate: 1.0,
                oof_quantiles: [0.5, 1.0, 1.5],
            },
        }
    }

    #[test]
    fn score_is_ppca_likelihood_over_width() {
        let g = guard();
        // x̃ = (2, 0.5·2, 0.5): inside 2²/4 = 1, residual 1 + 0.25 = 1.25 → 5.
        let s = g.features.score(&[3.0, 0.5, 0.5]).unwrap();
        assert!((s - (1.0 + 5.0) / 3.0).abs() < 1e-6, "{s}");
        assert_eq!(g.features.score(&[1.0, 0.0, 0.0]).unwrap(), 0.0);
        assert_eq!(
            g.features.score(&[f32::NAN, 0.0, 0.0]).unwrap(),
            f32::INFINITY
        );
        assert!(g.features.score(&[1.0]).is_err());
        let c = g.check_features(&[3.0, 0.5, 0.5]).unwrap();
        assert!(!c.in_scope && c.reason == Some(ScopeReason::Features));
        assert!(g.check_features(&[1.5, 0.1, 0.1]).unwrap().in_scope);
    }

    #[test]
    fn check_names_are_the_json_tags() {
        for r in [
            ScopeReason::NearConstant { grey_std: 1.0 },
            ScopeReason::AspectRatio { aspect: 3.0 },
            ScopeReason::Colour {
                colourfulness: 20.0,
            },
            ScopeReason::Features,
        ] {
            assert_eq!(serde_json::to_value(&r).unwrap()["check"], r.check());
        }
    }

    #[test]
    fn json_round_trip_is_exact_and_checked() {
        let g = guard();
        let json = g.to_json();
        assert_eq!(GuardSpec::from_json(&json).unwrap(), g);
        let mut bad = g.clone();
        bad.features.variances = vec![0.0];
        let e = GuardSpec::from_json(&bad.to_json())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("scanside.guard") && e.contains("variance"),
            "{e}"
        );
        let mut short = g;
        short.features.mean.pop();
        assert!(GuardSpec::from_json(&short.to_json()).is_err());
    }

    #[test]
    fn cheap_checks_refuse_flat_long_and_colour_pictures() {
        let g = guard();
        let flat = RgbImage::from_pixel(64, 64, image::Rgb([90, 90, 90]));
        let reason = |img: &RgbImage| g.check_input(img).and_then(|c| c.reason);
        assert!(matches!(
            reason(&flat),
            Some(ScopeReason::NearConstant { .. })
        ));
        let stripes = |w: u32, h: u32, colour: bool| {
            RgbImage::from_fn(w, h, |x, _| {
                let v = if x % 2 == 0 { 200 } else { 20 };
                if colour {
                    image::Rgb([v, v / 2, 40])
                } else {
                    image::Rgb([v, v, v])
                }
            })
        };
        assert_eq!(reason(&stripes(64, 64, false)), None);
        assert!(matches!(
            reason(&stripes(300, 64, false)),
            Some(ScopeReason::AspectRatio { .. })
        ));
        assert!(matches!(
            reason(&stripes(64, 64, true)),
            Some(ScopeReason::Colour { .. })
        ));
    }
}
