//! Errors of the architecture crate.

use std::path::PathBuf;

/// Everything that can go wrong building a model or moving its weights.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    /// A tensor operation failed inside candle.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// An architecture name that is not one of the known ones.
    #[error("unknown architecture `{name}`; expected one of: {expected}")]
    UnknownArch {
        /// The name that was asked for.
        name: String,
        /// The accepted names, comma separated.
        expected: String,
    },
    /// A configuration value out of its range.
    #[error("invalid configuration `{key}` = {value}: expected {expected}")]
    InvalidConfig {
        /// The configuration key.
        key: String,
        /// The value given.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// An input tensor of the wrong shape or type.
    #[error("invalid input: got {got}, expected {expected}")]
    InvalidInput {
        /// What was given.
        got: String,
        /// What was expected.
        expected: String,
    },
    /// A weights file could not be read or parsed.
    #[error("cannot read weights file {path}: {reason}")]
    WeightsFile {
        /// The file.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// A weights file that does not fit the model: keys by name.
    #[error("weights file {path} does not match the {arch} model:\n{report}")]
    WeightsMismatch {
        /// The file.
        path: PathBuf,
        /// The model's architecture name.
        arch: String,
        /// Missing / unexpected / mismatched keys, one per line.
        report: String,
    },
    /// A tensor a `VarBuilder` could not provide as the model needs it.
    #[error("cannot build {arch} from the VarBuilder: tensor `{key}` {problem}")]
    VarBuilderTensor {
        /// The model's architecture name.
        arch: String,
        /// The model's state-dict name of the tensor.
        key: String,
        /// What is wrong: missing, unreadable or mis-shaped, with the name looked up.
        problem: String,
    },
    /// Pretrained weights that could not be found anywhere.
    #[error("pretrained weights for {arch} not found; looked for:\n{looked}\n{hint}")]
    WeightsNotFound {
        /// The architecture.
        arch: String,
        /// Every place searched, one per line.
        looked: String,
        /// How to provide the file.
        hint: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
}

/// So that model code composes with candle code under `?` (and implements
/// `candle_nn::ModuleT`): candle errors come back as they were, others wrapped.
impl From<ArchError> for candle_core::Error {
    fn from(e: ArchError) -> Self {
        match e {
            ArchError::Candle(e) => e,
            other => candle_core::Error::wrap(other),
        }
    }
}

/// Result with [`ArchError`].
pub type Result<T> = std::result::Result<T, ArchError>;
