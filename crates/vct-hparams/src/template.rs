//! The five template names and what each one is.

use std::fmt;
use std::str::FromStr;

use crate::HparamsError;

/// A named template: an architecture, a training recipe and a hyperparameter set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Template {
    /// ResNet-50 with the "ResNet strikes back" A1 recipe.
    RsbA1,
    /// BN-Inception from pretrained weights, step schedule.
    InceptionBatchNorm,
    /// Inception-v2 from random weights, step schedule.
    InceptionV2,
    /// ResNeXt-50 32x4d from pretrained weights, step schedule.
    ResNext,
    /// BN-Inception backbone with a normalised-embedding transfer head.
    TransferEmbedNorm,
}

/// Human-readable facts about a template, for listings and docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateInfo {
    /// Canonical name, exactly as Clarifai spells it.
    pub name: &'static str,
    /// The network it trains.
    pub architecture: &'static str,
    /// Where its initial weights come from.
    pub init: &'static str,
    /// How the learning rate moves during training.
    pub schedule: &'static str,
    /// One sentence on when to pick it.
    pub purpose: &'static str,
}

impl Template {
    /// Every template, in a stable order.
    pub const ALL: [Template; 5] = [
        Template::RsbA1,
        Template::InceptionBatchNorm,
        Template::InceptionV2,
        Template::ResNext,
        Template::TransferEmbedNorm,
    ];

    /// The canonical name (`MMClassification_ResNet_50_RSB_A1`, ...).
    pub const fn name(self) -> &'static str {
        self.info().name
    }

    /// Facts about this template.
    pub const fn info(self) -> TemplateInfo {
        match self {
            Template::RsbA1 => TemplateInfo {
                name: "MMClassification_ResNet_50_RSB_A1",
                architecture: "ResNet-50",
                init: "ImageNet-1k weights or random (pretrained_weights)",
                schedule: "linear warmup, then cosine to a minimum lr",
                purpose: "strong general-purpose classifier; the RSB-A1 recipe (LAMB, BCE) tuned for fine-tuning",
            },
            Template::InceptionBatchNorm => TemplateInfo {
                name: "Clarifai_InceptionBatchNorm",
                architecture: "BN-Inception",
                init: "pretrained weights file",
                schedule: "step decay (init_epochs, then every step_epochs)",
                purpose: "fast, light fine-tuning of a pretrained Inception network",
            },
            Template::InceptionV2 => TemplateInfo {
                name: "Clarifai_InceptionV2",
                architecture: "Inception-v2",
                init: "random",
                schedule: "step decay (init_epochs, then every step_epochs)",
                purpose: "training from scratch when no pretrained weights fit the domain",
            },
            Template::ResNext => TemplateInfo {
                name: "Clarifai_ResNext",
                architecture: "ResNeXt-50 32x4d",
                init: "pretrained weights file",
                schedule: "step decay (init_epochs, then every step_epochs)",
                purpose: "higher-accuracy fine-tuning of a pretrained ResNeXt",
            },
            Template::TransferEmbedNorm => TemplateInfo {
                name: "Clarifai_InceptionTransferEmbedNorm",
                architecture: "BN-Inception + normalised-embedding head",
                init: "pretrained weights file",
                schedule: "constant lrate; backbone lr x base_gradient_multiplier",
                purpose: "transfer learning on small data: mostly trains the head on normalised embeddings",
            },
        }
    }

    /// Parses a template name, ignoring case; `None` when it names no template.
    pub fn parse_loose(name: &str) -> Option<Template> {
        Template::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The closest template name to `name`, for did-you-mean hints.
    pub fn closest(name: &str) -> Option<Template> {
        crate::rules::closest(name, Template::ALL.iter().map(|t| t.name()))
            .and_then(Template::parse_loose)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Template {
    type Err = HparamsError;

    /// Case-insensitive, as typed on a command line.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Template::parse_loose(s).ok_or_else(|| HparamsError::UnknownTemplate {
            name: s.to_string(),
            suggestion: Template::closest(s),
        })
    }
}
