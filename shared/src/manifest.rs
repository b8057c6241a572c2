//! The model manifest: what a scanside model says about itself.
//!
//! A scanside model is one ONNX file. Everything needed to use it correctly
//! travels inside it as ONNX `metadata_props`, one key per fact, all under the
//! `scanside.` prefix; structured values are JSON. The host writes them at
//! export ([`ModelManifest::to_props`]); host and device read them back
//! ([`ModelManifest::from_props`]) and refuse a model that lacks any.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::preprocess::PreprocessSpec;
use crate::{Error, Result};

/// Version of the metadata layout described here.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// Prefix of every scanside metadata key.
pub const KEY_PREFIX: &str = "scanside.";

/// Where the frozen feature extractor came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackboneInfo {
    /// Human name, e.g. `vgg16-imagenet-notop`.
    pub name: String,
    /// SHA-256 of the backbone's weights (its initializers, canonical order).
    pub weights_sha256: String,
    /// Tensor the source graph was cut at.
    pub cut_at: String,
}

/// Where a retrained model came from (`scanside retrain`): its parent,
/// the chain of models before it, and what changed. A model trained from
/// scratch has none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// Model ids from the first model of the chain to the parent, in order.
    pub chain: Vec<String>,
    /// SHA-256 of the parent model file.
    pub parent_sha256: String,
    /// The parent's training-data hash (this model's own is in
    /// [`ModelManifest::training_data_sha256`]).
    pub parent_training_data_sha256: String,
    /// What changed against the parent, one sentence each.
    pub changes: Vec<String>,
    /// SHA-256 of every device scan labelled in review that this model was
    /// trained on, over the whole chain: the next retrain's regression set
    /// is the reviewed scans *not* listed here.
    pub reviewed_images: Vec<String>,
}

impl Lineage {
    /// The parent's model id.
    pub fn parent_model_id(&self) -> &str {
        self.chain.last().map_or("", String::as_str)
    }
}

/// Everything a scanside model carries about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelManifest {
    /// [`MANIFEST_FORMAT_VERSION`] at the time of writing.
    pub format_version: u32,
    /// Unique id of this model (content-derived at export).
    pub model_id: String,
    /// scanside version that wrote the model.
    pub scanside_version: String,
    /// Name of the graph input.
    pub input_name: String,
    /// How scans become the input tensor.
    pub preprocessing: PreprocessSpec,
    /// Class labels, in the order of the softmax output.
    pub labels: Vec<String>,
    /// The label that means "tumour suspected".
    pub positive_class: String,
    /// Operating threshold on the positive-class probability.
    pub threshold: f32,
    /// SHA-256 over the sorted (label, image SHA-256) list of the training set.
    pub training_data_sha256: String,
    /// The frozen feature extractor.
    pub backbone: BackboneInfo,
    /// The trained head (pooling, layer sizes, training recipe).
    pub head: serde_json::Value,
    /// Cross-validated metrics of the recipe that produced this model.
    pub cv_metrics: serde_json::Value,
    /// Parent and changes, for a retrained model.
    pub lineage: Option<Lineage>,
    /// Other `scanside.*` keys (e.g. a quantization recipe), kept verbatim.
    pub extra: BTreeMap<String, String>,
}

const K_FORMAT: &str = "scanside.format_version";
const K_MODEL_ID: &str = "scanside.model_id";
const K_VERSION: &str = "scanside.version";
const K_INPUT: &str = "scanside.input_name";
const K_PREPROCESSING: &str = "scanside.preprocessing";
const K_LABELS: &str = "scanside.labels";
const K_POSITIVE: &str = "scanside.positive_class";
const K_THRESHOLD: &str = "scanside.threshold";
const K_DATA: &str = "scanside.training_data_sha256";
const K_BACKBONE: &str = "scanside.backbone";
const K_HEAD: &str = "scanside.head";
const K_CV: &str = "scanside.cv_metrics";
const K_LINEAGE: &str = "scanside.lineage";

const KNOWN_KEYS: [&str; 13] = [
    K_FORMAT,
    K_MODEL_ID,
    K_VERSION,
    K_INPUT,
    K_PREPROCESSING,
    K_LABELS,
    K_POSITIVE,
    K_THRESHOLD,
    K_DATA,
    K_BACKBONE,
    K_HEAD,
    K_CV,
    K_LINEAGE,
];

impl ModelManifest {
    /// Index of the positive class in the softmax output.
    pub fn positive_index(&self) -> usize {
        self.labels
            .iter()
            .position(|l| *l == self.positive_class)
            .expect("validated at construction")
    }

    /// The label for a positive-class probability at the operating threshold.
    pub fn label_for(&self, probability: f32) -> &str {
        if probability >= self.threshold {
            &self.positive_class
        } else {
            self.labels
                .iter()
                .find(|l| **l != self.positive_class)
                .expect("two labels")
        }
    }

    /// The manifest as ONNX metadata key/value pairs.
    pub fn to_props(&self) -> Vec<(String, String)> {
        let mut props = vec![
            (K_FORMAT.to_string(), self.format_version.to_string()),
            (K_MODEL_ID.to_string(), self.model_id.clone()),
            (K_VERSION.to_string(), self.scanside_version.clone()),
            (K_INPUT.to_string(), self.input_name.clone()),
            (K_PREPROCESSING.to_string(), json(&self.preprocessing)),
            (K_LABELS.to_string(), json(&self.labels)),
            (K_POSITIVE.to_string(), self.positive_class.clone()),
            (K_THRESHOLD.to_string(), self.threshold.to_string()),
            (K_DATA.to_string(), self.training_data_sha256.clone()),
            (K_BACKBONE.to_string(), json(&self.backbone)),
            (K_HEAD.to_string(), json(&self.head)),
            (K_CV.to_string(), json(&self.cv_metrics)),
        ];
        if let Some(lineage) = &self.lineage {
            props.push((K_LINEAGE.to_string(), json(lineage)));
        }
        props.extend(self.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        props
    }

    /// Read a manifest from ONNX metadata pairs. Keys outside the `scanside.`
    /// prefix are ignored; a missing or malformed key is an error naming it.
    pub fn from_props<'a>(props: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let map: BTreeMap<&str, &str> = props
            .into_iter()
            .filter(|(k, _)| k.starts_with(KEY_PREFIX))
            .collect();
        let get = |key: &str| -> Result<&str> {
            map.get(key)
                .copied()
                .ok_or_else(|| Error::Manifest(format!("missing key `{key}`")))
        };
        fn parse<T: serde::de::DeserializeOwned>(key: &str, value: &str) -> Result<T> {
            serde_json::from_str(value)
                .map_err(|e| Error::Manifest(format!("key `{key}`: {e} (value: {value:.80})")))
        }
        let format_version: u32 = parse(K_FORMAT, get(K_FORMAT)?)?;
        if format_version > MANIFEST_FORMAT_VERSION {
            return Err(Error::Manifest(format!(
                "format version {format_version} is newer than this scanside understands ({MANIFEST_FORMAT_VERSION})"
            )));
        }
        let threshold_text = get(K_THRESHOLD)?;
        let threshold: f32 = threshold_text.parse().map_err(|_| {
            Error::Manifest(format!(
                "key `{K_THRESHOLD}`: not a number: {threshold_text}"
            ))
        })?;
        if !(0.0..=1.0).contains(&threshold) {
            return Err(Error::Manifest(format!(
                "key `{K_THRESHOLD}`: {threshold} is outside [0, 1]"
            )));
        }
        let manifest = ModelManifest {
            format_version,
            model_id: get(K_MODEL_ID)?.to_string(),
            scanside_version: get(K_VERSION)?.to_string(),
            input_name: get(K_INPUT)?.to_string(),
            preprocessing: parse(K_PREPROCESSING, get(K_PREPROCESSING)?)?,
            labels: parse(K_LABELS, get(K_LABELS)?)?,
            positive_class: get(K_POSITIVE)?.to_string(),
            threshold,
            training_data_sha256: get(K_DATA)?.to_string(),
            backbone: parse(K_BACKBONE, get(K_BACKBONE)?)?,
            head: parse(K_HEAD, get(K_HEAD)?)?,
            cv_metrics: parse(K_CV, get(K_CV)?)?,
            lineage: map
                .get(K_LINEAGE)
                .map(|v| parse(K_LINEAGE, v))
                .transpose()?,
            extra: map
                .iter()
                .filter(|(k, _)| !KNOWN_KEYS.contains(k))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        if manifest.labels.len() != 2 {
            return Err(Error::Manifest(format!(
                "key `{K_LABELS}`: expected two labels, found {:?}",
                manifest.labels
            )));
        }
        if !manifest.labels.contains(&manifest.positive_class) {
            return Err(Error::Manifest(format!(
                "key `{K_POSITIVE}`: `{}` is not one of the labels {:?}",
                manifest.positive_class, manifest.labels
            )));
        }
        Ok(manifest)
    }
}

/// A manifest value as compact JSON.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("manifest values serialise")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> ModelManifest {
        ModelManifest {
            format_version: MANIFEST_FORMAT_VERSION,
            model_id: "m-0123".into(),
            scanside_version: "0.1.0".into(),
            input_name: "input".into(),
            preprocessing: PreprocessSpec::vgg16_caffe(224),
            labels: vec!["no".into(), "yes".into()],
            positive_class: "yes".into(),
            threshold: 0.25,
            training_data_sha256: "ab".repeat(32),
            backbone: BackboneInfo {
                name: "vgg16".into(),
                weights_sha256: "cd".repeat(32),
                cut_at: "pool5".into(),
            },
            head: serde_json::json!({"hidden": [256]}),
            cv_metrics: serde_json::json!({"accuracy": 0.9}),
            lineage: None,
            extra: BTreeMap::from([("scanside.quantization".into(), "{}".into())]),
        }
    }

    #[test]
    fn props_round_trip() {
        let m = sample();
        let props = m.to_props();
        let back =
            ModelManifest::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn lineage_round_trips_and_is_optional() {
        let mut m = sample();
        m.lineage = Some(Lineage {
            chain: vec!["scanside-root".into(), "scanside-parent".into()],
            parent_sha256: "ef".repeat(32),
            parent_training_data_sha256: "12".repeat(32),
            changes: vec!["data: +3 reviewed scans".into()],
            reviewed_images: vec!["34".repeat(32)],
        });
        let props = m.to_props();
        assert!(props.iter().any(|(k, _)| k == K_LINEAGE));
        let back =
            ModelManifest::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.lineage.unwrap().parent_model_id(), "scanside-parent");
        // A model without the key (trained from scratch, or older) has none.
        assert!(!sample().to_props().iter().any(|(k, _)| k == K_LINEAGE));
        let bad: Vec<_> = props
            .into_iter()
            .map(|(k, v)| {
                if k == K_LINEAGE {
                    (k, "[1]".into())
                } else {
                    (k, v)
                }
            })
            .collect();
        let e = ModelManifest::from_props(bad.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .unwrap_err();
        assert!(e.to_string().contains(K_LINEAGE), "{e}");
    }

    #[test]
    fn missing_key_is_named() {
        let props: Vec<_> = sample()
            .to_props()
            .into_iter()
            .filter(|(k, _)| k != K_THRESHOLD)
            .collect();
        let e = ModelManifest::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .unwrap_err();
        assert!(e.to_string().contains("scanside.threshold"), "{e}");
    }

    #[test]
    fn bad_positive_class_is_refused() {
        let mut m = sample();
        m.positive_class = "maybe".into();
        let props = m.to_props();
        let e = ModelManifest::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .unwrap_err();
        assert!(e.to_string().contains("maybe"), "{e}");
    }

    #[test]
    fn labels_follow_the_threshold() {
        let m = sample();
        assert_eq!(m.label_for(0.25), "yes");
        assert_eq!(m.label_for(0.2499), "no");
        assert_eq!(m.positive_index(), 1);
    }
}
