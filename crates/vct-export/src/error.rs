//! Errors of an export; each names the file, key or value concerned.

use std::path::PathBuf;

/// Everything that can stop an export or the reading of a bundle.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The model's architecture or weights failed in vct-arch.
    #[error(transparent)]
    Arch(#[from] vct_arch::ArchError),
    /// A tensor operation failed inside candle.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A metadata value out of its range.
    #[error("export metadata `{key}` = {value}: expected {expected}")]
    InvalidMetadata {
        /// The metadata key.
        key: String,
        /// The value given.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// A tensor the architecture needs is not in the model's state dict.
    #[error("the {arch} model has no tensor `{name}` (expected by the exporter's walk of the architecture)")]
    MissingTensor {
        /// Architecture name.
        arch: String,
        /// The tensor's state-dict name.
        name: String,
    },
    /// A tensor of the state dict has a shape the exporter cannot use.
    #[error("tensor `{name}` of the {arch} model has shape {shape:?}, expected {expected}")]
    BadTensor {
        /// Architecture name.
        arch: String,
        /// The tensor's state-dict name.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// What the exporter expected.
        expected: String,
    },
    /// The network's spatial size collapsed below a layer's window.
    #[error(
        "input size {input}: layer `{layer}` sees {size} pixels, fewer than its window {kernel}"
    )]
    InputTooSmall {
        /// The export input side.
        input: String,
        /// Layer (state-dict name of its weight, or pool).
        layer: String,
        /// The spatial size reaching it.
        size: usize,
        /// Its kernel.
        kernel: usize,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A bundle's `config.json` or `model.safetensors` is not what vct writes.
    #[error("{path} is not a vct export bundle file: {reason}")]
    BadBundle {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result with [`ExportError`].
pub type Result<T> = std::result::Result<T, ExportError>;
