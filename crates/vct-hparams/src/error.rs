//! Errors of this crate; each names the file, key or template it is about.

use std::path::PathBuf;

use crate::{Template, Violation};

/// Anything that can go wrong reading or checking hyperparameters.
#[derive(Debug, thiserror::Error)]
pub enum HparamsError {
    /// The name matches no template.
    #[error("unknown template \"{name}\"{}; templates: {}", suggestion.map(|t| format!(" (did you mean {t}?)")).unwrap_or_default(), Template::ALL.map(|t| t.name()).join(", "))]
    UnknownTemplate {
        /// What was given.
        name: String,
        /// The nearest real name, if one is close.
        suggestion: Option<Template>,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is not valid JSON / YAML / TOML.
    #[error("{path} is not valid {format}: {message}")]
    Syntax {
        /// The file (or `<input>`).
        path: PathBuf,
        /// JSON, YAML or TOML.
        format: &'static str,
        /// The parser's message, with its line and column.
        message: String,
    },
    /// The file extension names no supported format.
    #[error("{path}: unsupported extension (expected .json, .yaml, .yml or .toml)")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A YAML or TOML file, in a build of this crate without that format's feature.
    #[error("{path}: reading {format} needs vct-hparams' cargo feature `{feature}`, which this build leaves out")]
    FormatNotBuilt {
        /// The file.
        path: PathBuf,
        /// YAML or TOML.
        format: &'static str,
        /// The cargo feature to turn on.
        feature: &'static str,
    },
    /// No template was named, neither in the file nor by the caller.
    #[error("{origin}: no template given (add \"template\": \"<name>\" to the file or pass one explicitly)")]
    MissingTemplate {
        /// Where the params came from.
        origin: String,
    },
    /// The file names one template and the caller another.
    #[error("{origin}: the file is for template {in_file} but {requested} was requested")]
    TemplateMismatch {
        /// Where the params came from.
        origin: String,
        /// Template named in the file.
        in_file: Template,
        /// Template the caller asked for.
        requested: Template,
    },
    /// One or more keys break their rules; every violation is listed.
    #[error("{origin}: {n} invalid hyperparameter{s} for {template}:\n{list}", n = violations.len(), s = if violations.len() == 1 { "" } else { "s" }, list = violations.iter().map(|v| format!("  - {v}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// Where the params came from.
        origin: String,
        /// The template they were checked against.
        template: String,
        /// Every broken rule.
        violations: Vec<Violation>,
    },
}
