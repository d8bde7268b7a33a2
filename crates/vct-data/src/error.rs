//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading a dataset or loading batches.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A path could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The path is neither a folder, a `.csv` / `.jsonl` manifest nor CIFAR-10 binaries.
    #[error("{path}: not a dataset: expected a folder of concept folders, a .csv or .jsonl manifest, or CIFAR-10 .bin files")]
    NotADataset {
        /// The path.
        path: PathBuf,
    },
    /// The dataset has no usable image.
    #[error("{path}: no images found ({skipped} files skipped); expected images in concept folders or manifest rows")]
    Empty {
        /// The dataset root or manifest.
        path: PathBuf,
        /// Files skipped while scanning.
        skipped: usize,
    },
    /// A concept folder has no usable image.
    #[error("{path}: concept folder has no images ({skipped} files skipped)")]
    EmptyConcept {
        /// The concept folder.
        path: PathBuf,
        /// Files skipped in it.
        skipped: usize,
    },
    /// A manifest row is malformed.
    #[error("{path}:{line}: {reason}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// A concept name is not usable.
    #[error("invalid concept name {name:?}: {reason}")]
    Concept {
        /// The name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// An item's concept is not among the given concepts.
    #[error("{path}: concept {concept:?} is not one of the model's {known} concepts")]
    UnknownConcept {
        /// The image, folder or manifest.
        path: PathBuf,
        /// The concept.
        concept: String,
        /// How many concepts are known.
        known: usize,
    },
    /// An image has several concepts or none where exactly one is expected.
    #[error(
        "{location}: image {image} has {} where exactly one per image is expected",
        concept_list(concepts)
    )]
    NotSingleLabel {
        /// The manifest and line (`train.csv:7`), or the image.
        location: String,
        /// The image.
        image: PathBuf,
        /// Its concepts (empty for none).
        concepts: Vec<String>,
    },
    /// An image could not be read (policy `fail`).
    #[error(transparent)]
    Image(#[from] vct_augment::AugmentError),
    /// A setting is out of range.
    #[error("invalid {what}: {value}, expected {expected}")]
    Config {
        /// The setting.
        what: &'static str,
        /// The value given.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// JSON (de)serialisation failed.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser error.
        source: serde_json::Error,
    },
    /// The loader's worker thread stopped unexpectedly.
    #[error("the loader's worker thread stopped: {0}")]
    Worker(String),
}

fn concept_list(concepts: &[String]) -> String {
    match concepts {
        [] => "no concept".to_string(),
        _ => format!("{} concepts ({})", concepts.len(), concepts.join(", ")),
    }
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn config(
    what: &'static str,
    value: impl std::fmt::Debug,
    expected: &'static str,
) -> DataError {
    DataError::Config {
        what,
        value: format!("{value:?}"),
        expected,
    }
}
