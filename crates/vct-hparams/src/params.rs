//! The hyperparameter structs of the templates: keys, types and defaults as
//! Clarifai defines them (see REFERENCE.md §1). Doc comments on the fields become
//! the `description` of each property in the JSON Schema.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rules::{CrossRule, ParamSpec, Rule};

/// Which weights the RSB-A1 ResNet-50 starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
pub enum PretrainedWeights {
    /// Random initialisation.
    #[serde(rename = "None")]
    None,
    /// Weights trained on ImageNet-1k.
    #[serde(rename = "ImageNet-1k")]
    ImageNet1k,
}

/// The axis of the random flip augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
pub enum FlipDirection {
    /// Mirror left-right.
    #[serde(rename = "horizontal")]
    Horizontal,
    /// Mirror top-bottom.
    #[serde(rename = "vertical")]
    Vertical,
}

/// Hyperparameters of `MMClassification_ResNet_50_RSB_A1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RsbA1Params {
    /// Side of the square training and evaluation images, in pixels.
    pub image_size: u64,
    /// Number of images per optimisation step.
    pub batch_size: u64,
    /// Number of passes over the training data.
    pub num_epochs: u64,
    /// Learning rate per image; the rate of a step is batch_size × per_item_lrate.
    pub per_item_lrate: f64,
    /// Decoupled weight decay of the LAMB optimizer (not applied to norm and bias parameters).
    pub weight_decay: f64,
    /// Final learning rate of the cosine schedule per image; the floor is batch_size × per_item_min_lrate. At most per_item_lrate.
    pub per_item_min_lrate: f64,
    /// Number of steps of linear learning-rate warmup at the start of training.
    pub warmup_iters: u64,
    /// Fraction of the learning rate at which the warmup starts.
    pub warmup_ratio: f64,
    /// Initial weights: ImageNet-1k pretrained or random (None).
    pub pretrained_weights: PretrainedWeights,
    /// Probability that a training image is flipped.
    pub flip_probability: f64,
    /// Axis of the random flip.
    pub flip_direction: FlipDirection,
    /// True if every image has exactly one concept (softmax); false for multi-label (sigmoid + BCE).
    pub concepts_mutually_exclusive: bool,
}

impl Default for RsbA1Params {
    fn default() -> Self {
        RsbA1Params {
            image_size: 224,
            batch_size: 64,
            num_epochs: 60,
            per_item_lrate: 1.953125e-05,
            weight_decay: 0.01,
            per_item_min_lrate: 1.5625e-08,
            warmup_iters: 100,
            warmup_ratio: 0.0001,
            pretrained_weights: PretrainedWeights::ImageNet1k,
            flip_probability: 0.5,
            flip_direction: FlipDirection::Horizontal,
            concepts_mutually_exclusive: false,
        }
    }
}

impl RsbA1Params {
    /// The allowed values of every key.
    pub const SPECS: &'static [ParamSpec] = &[
        int("image_size", 32, Some(1024), 1),
        int("batch_size", 1, Some(256), 1),
        int("num_epochs", 1, Some(600), 1),
        float("per_item_lrate", 0.0, None),
        float("weight_decay", 0.0, Some(1.0)),
        float("per_item_min_lrate", 0.0, None),
        int("warmup_iters", 0, None, 1),
        float("warmup_ratio", 0.0, Some(1.0)),
        choice("pretrained_weights", &["None", "ImageNet-1k"]),
        float("flip_probability", 0.0, Some(1.0)),
        choice("flip_direction", &["horizontal", "vertical"]),
        boolean("concepts_mutually_exclusive"),
    ];

    /// Rules between keys: the cosine schedule may not end above where it starts.
    pub const CROSS_RULES: &'static [CrossRule] = &[CrossRule::AtMost {
        key: "per_item_min_lrate",
        limit: "per_item_lrate",
        why: "the cosine schedule falls from batch_size × per_item_lrate to batch_size × per_item_min_lrate",
    }];

    /// Learning rate of a step: batch_size × per_item_lrate.
    pub fn lrate(&self) -> f64 {
        self.batch_size as f64 * self.per_item_lrate
    }

    /// Floor of the cosine schedule: batch_size × per_item_min_lrate.
    pub fn min_lrate(&self) -> f64 {
        self.batch_size as f64 * self.per_item_min_lrate
    }
}

/// Hyperparameters shared by `Clarifai_InceptionBatchNorm`, `Clarifai_InceptionV2` and `Clarifai_ResNext`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClarifaiParams {
    /// Output layer: 1 = a sigmoid per concept (multi-label, positive when P > 0.5); 0 = softmax over concepts (exactly one per image).
    pub logreg: u8,
    /// Length in pixels of the shorter image side after resizing.
    pub image_size: u64,
    /// Number of images per optimisation step.
    pub batch_size: u64,
    /// Epochs trained at the initial learning rate before the first decrease.
    pub init_epochs: u64,
    /// Epochs between successive learning-rate decreases (each multiplies the rate by 0.1).
    pub step_epochs: u64,
    /// Number of epochs to train.
    pub num_epochs: u64,
    /// Learning rate per image; the rate of a step is batch_size × per_item_lrate.
    pub per_item_lrate: f64,
    /// Images drawn per epoch; 0 or null = the number of images in the dataset.
    pub num_items_per_epoch: Option<u64>,
}

impl Default for ClarifaiParams {
    fn default() -> Self {
        ClarifaiParams {
            logreg: 1,
            image_size: 256,
            batch_size: 64,
            init_epochs: 25,
            step_epochs: 7,
            num_epochs: 65,
            per_item_lrate: 7.8125e-05,
            num_items_per_epoch: Some(0),
        }
    }
}

impl ClarifaiParams {
    /// The allowed values of every key.
    pub const SPECS: &'static [ParamSpec] = &[
        int("logreg", 0, Some(1), 1),
        int("image_size", 32, Some(1024), 16),
        int("batch_size", 1, Some(128), 1),
        int("init_epochs", 1, Some(200), 1),
        int("step_epochs", 1, Some(200), 1),
        int("num_epochs", 1, Some(200), 1),
        float("per_item_lrate", 0.0, None),
        nullable_int("num_items_per_epoch", 0, None, 1),
    ];

    /// Learning rate of a step: batch_size × per_item_lrate.
    pub fn lrate(&self) -> f64 {
        self.batch_size as f64 * self.per_item_lrate
    }
}

/// Hyperparameters of `Clarifai_InceptionTransferEmbedNorm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TransferEmbedNormParams {
    /// Output layer: 1 = a sigmoid per concept (multi-label, positive when P > 0.5); 0 = softmax over concepts (exactly one per image).
    pub logreg: u8,
    /// Length in pixels of the shorter image side after resizing.
    pub image_size: u64,
    /// Number of images per optimisation step.
    pub batch_size: u64,
    /// Learning rate of each step (per minibatch, not per image), held constant.
    pub lrate: f64,
    /// Backbone learning rate as a fraction of lrate; 0 freezes the backbone.
    pub base_gradient_multiplier: f64,
    /// Number of epochs to train.
    pub num_epochs: u64,
    /// Images drawn per epoch; 0 or null = the number of images in the dataset.
    pub num_items_per_epoch: Option<u64>,
    /// Use the mean of an image's and its mirror image's embeddings at evaluation and prediction.
    pub average_horizontal_flips: bool,
}

impl Default for TransferEmbedNormParams {
    fn default() -> Self {
        TransferEmbedNormParams {
            logreg: 1,
            image_size: 256,
            batch_size: 128,
            lrate: 0.1,
            base_gradient_multiplier: 0.001,
            num_epochs: 20,
            num_items_per_epoch: Some(0),
            average_horizontal_flips: true,
        }
    }
}

impl TransferEmbedNormParams {
    /// The allowed values of every key.
    pub const SPECS: &'static [ParamSpec] = &[
        int("logreg", 0, Some(1), 1),
        int("image_size", 32, Some(1024), 16),
        int("batch_size", 1, Some(128), 1),
        float("lrate", 0.0, None),
        float("base_gradient_multiplier", 0.0, None),
        int("num_epochs", 1, Some(200), 1),
        nullable_int("num_items_per_epoch", 0, None, 1),
        boolean("average_horizontal_flips"),
    ];
}

const fn int(key: &'static str, min: u64, max: Option<u64>, step: u64) -> ParamSpec {
    ParamSpec {
        key,
        rule: Rule::Int {
            min,
            max,
            step,
            nullable: false,
        },
    }
}

const fn nullable_int(key: &'static str, min: u64, max: Option<u64>, step: u64) -> ParamSpec {
    ParamSpec {
        key,
        rule: Rule::Int {
            min,
            max,
            step,
            nullable: true,
        },
    }
}

const fn float(key: &'static str, min: f64, max: Option<f64>) -> ParamSpec {
    ParamSpec {
        key,
        rule: Rule::Float { min, max },
    }
}

const fn choice(key: &'static str, options: &'static [&'static str]) -> ParamSpec {
    ParamSpec {
        key,
        rule: Rule::Choice(options),
    }
}

const fn boolean(key: &'static str) -> ParamSpec {
    ParamSpec {
        key,
        rule: Rule::Bool,
    }
}
