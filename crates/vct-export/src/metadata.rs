//! What an exported model means besides its weights: the concepts, how logits
//! become probabilities, and how images must be prepared. The caller (e.g.
//! `cargo xtask export`, from a run's `run.json`) fills it in; this crate writes
//! it into the ONNX `metadata_props` and the bundle's `config.json`.

use serde::{Deserialize, Serialize};

use crate::error::{ExportError, Result};

/// How logits become probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Probabilities {
    /// A sigmoid per concept (multi-label).
    Sigmoid,
    /// Softmax over the concepts (exactly one per image).
    Softmax,
}

impl Probabilities {
    /// `sigmoid` or `softmax`.
    pub fn name(self) -> &'static str {
        match self {
            Probabilities::Sigmoid => "sigmoid",
            Probabilities::Softmax => "softmax",
        }
    }
}

/// Order of the three input channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelOrder {
    /// Red, green, blue.
    #[serde(rename = "RGB")]
    Rgb,
    /// Blue, green, red (Caffe-converted weights such as BN-Inception's).
    #[serde(rename = "BGR")]
    Bgr,
}

impl ChannelOrder {
    /// `RGB` or `BGR`.
    pub fn name(self) -> &'static str {
        match self {
            ChannelOrder::Rgb => "RGB",
            ChannelOrder::Bgr => "BGR",
        }
    }
}

/// How a decoded image becomes the network input: resize the shorter side to
/// `resize_shorter_side` with `resize_filter` (the longer side scaled and
/// truncated, as torchvision's `Resize(int)`), centre-crop `input_size` (offset
/// `round((side - crop) / 2)`), then per channel, in `channel_order`,
/// `x = (pixel / 255 * scale - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Network input `[height, width]`; the ONNX input has exactly this size.
    pub input_size: [usize; 2],
    /// Side the shorter image side is resized to before the centre crop.
    pub resize_shorter_side: usize,
    /// Resize filter (vct: `bilinear`, Pillow's triangle filter with antialiasing).
    pub resize_filter: String,
    /// Channel order of the network input.
    pub channel_order: ChannelOrder,
    /// Multiplier taking pixels in [0, 1] to the range of `mean` and `std` (1 or 255).
    pub scale: f32,
    /// Per-channel mean, in `channel_order`, after scaling.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, in `channel_order`, after scaling.
    pub std: [f32; 3],
}

/// Everything an exported model carries besides its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportMetadata {
    /// Template the model was trained with (e.g. `Clarifai_ResNext`).
    pub template: String,
    /// vct version that trained it.
    pub vct_version: String,
    /// Concept names in output order.
    pub concepts: Vec<String>,
    /// How the outputs are computed from the logits.
    pub probabilities: Probabilities,
    /// Embeddings (and the probabilities computed from them) are the mean of the
    /// image's and its horizontal mirror's embeddings.
    pub flip_average: bool,
    /// Image preparation.
    pub preprocess: Preprocessing,
}

impl ExportMetadata {
    /// Checks the values against a model with `num_classes` outputs.
    pub fn validate(&self, num_classes: usize) -> Result<()> {
        let bad = |key: &str, value: String, expected: &str| {
            Err(ExportError::InvalidMetadata {
                key: key.into(),
                value,
                expected: expected.into(),
            })
        };
        if self.concepts.len() != num_classes {
            return bad(
                "concepts",
                format!("{} names", self.concepts.len()),
                &format!("one name per model output ({num_classes})"),
            );
        }
        let p = &self.preprocess;
        if p.input_size.iter().any(|&s| s < 32) {
            return bad(
                "preprocess.input_size",
                format!("{:?}", p.input_size),
                "[height, width], each at least 32 (as vct-arch accepts)",
            );
        }
        if p.resize_shorter_side < p.input_size[0].min(p.input_size[1]) {
            return bad(
                "preprocess.resize_shorter_side",
                p.resize_shorter_side.to_string(),
                "at least the smaller input side (the centre crop must fit)",
            );
        }
        if !(p.scale.is_finite() && p.scale > 0.0) {
            return bad(
                "preprocess.scale",
                p.scale.to_string(),
                "a finite number > 0",
            );
        }
        if p.mean.iter().any(|m| !m.is_finite()) {
            return bad("preprocess.mean", format!("{:?}", p.mean), "finite numbers");
        }
        if p.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return bad(
                "preprocess.std",
                format!("{:?}", p.std),
                "finite numbers > 0",
            );
        }
        Ok(())
    }
}

/// The architecture of an exported model, enough to rebuild it with vct-arch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Architecture name (`resnet50`, `bninception`, ...).
    pub arch: String,
    /// Number of outputs.
    pub num_classes: usize,
    /// Embedding width.
    pub embedding_dim: usize,
    /// `linear`, or `norm_embed` (cosine classifier with a learnt scale).
    pub head: String,
    /// Inception-v2 depth multiplier (1 elsewhere).
    pub depth_multiplier: f64,
}

/// The bundle's `config.json`, also stored whole under the ONNX metadata key `vct_config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportConfig {
    /// Always `vct-export`.
    pub format: String,
    /// Version of this layout (1).
    pub format_version: u32,
    /// The architecture.
    pub model: ModelInfo,
    /// Concepts, outputs and preprocessing.
    #[serde(flatten)]
    pub metadata: ExportMetadata,
    /// Bundle only: the weights file and whether batch norm is folded into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<WeightsInfo>,
}

/// How a bundle stores its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsInfo {
    /// File name inside the bundle folder.
    pub file: String,
    /// Whether batch norm is folded into the convolutions (false: vct-arch's state dict).
    pub batch_norm_folded: bool,
}

/// Name of the format in [`ExportConfig::format`].
pub const FORMAT: &str = "vct-export";
/// Current [`ExportConfig::format_version`].
pub const FORMAT_VERSION: u32 = 1;

impl ExportConfig {
    /// Flat `key → value` pairs for ONNX `metadata_props`: each field on its own
    /// (lists and objects as JSON) plus the whole config under `vct_config`.
    pub fn props(&self) -> Vec<(String, String)> {
        let m = &self.metadata;
        let p = &m.preprocess;
        let json = |v: serde_json::Value| v.to_string();
        vec![
            ("vct_version".into(), m.vct_version.clone()),
            ("template".into(), m.template.clone()),
            ("arch".into(), self.model.arch.clone()),
            ("concepts".into(), json(serde_json::json!(m.concepts))),
            ("probabilities".into(), m.probabilities.name().into()),
            ("flip_average".into(), m.flip_average.to_string()),
            ("input_size".into(), json(serde_json::json!(p.input_size))),
            (
                "resize".into(),
                json(serde_json::json!({
                    "shorter_side": p.resize_shorter_side,
                    "filter": p.resize_filter,
                    "center_crop": p.input_size,
                    "rule": "shorter side to shorter_side (longer side scaled and truncated, as torchvision's Resize(int)), then the centred crop",
                })),
            ),
            ("channel_order".into(), p.channel_order.name().into()),
            ("scale".into(), p.scale.to_string()),
            ("mean".into(), json(serde_json::json!(p.mean))),
            ("std".into(), json(serde_json::json!(p.std))),
            (
                "normalization".into(),
                "x = (pixel / 255 * scale - mean) / std per channel, in channel_order".into(),
            ),
            ("vct_config".into(), self.to_json()),
        ]
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and lists always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
