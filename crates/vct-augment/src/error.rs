//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while decoding or transforming an image.
#[derive(Debug, thiserror::Error)]
pub enum AugmentError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("{path}: empty file (0 bytes), expected an image")]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// The bytes are not an image in a supported format, or are corrupt.
    #[error("{path}: cannot decode image: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// The image has more pixels than the decompression-bomb limit.
    #[error("{path}: image is {width}x{height} = {pixels} pixels, over the limit of {limit} pixels (DecodeOptions::max_pixels); possible decompression bomb")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// `width * height`.
        pixels: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A transform parameter is out of range.
    #[error("invalid {what}: {value}, expected {expected}")]
    Param {
        /// The parameter.
        what: &'static str,
        /// The value given.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
    /// Images of one batch differ in size.
    #[error("batch image {index} is {got:?} (width, height), expected {expected:?} like the first image")]
    SizeMismatch {
        /// Position in the batch.
        index: usize,
        /// Its size.
        got: (u32, u32),
        /// The first image's size.
        expected: (u32, u32),
    },
    /// The resizer failed.
    #[error("resize failed: {0}")]
    Resize(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

pub(crate) fn param(
    what: &'static str,
    value: impl std::fmt::Debug,
    expected: &'static str,
) -> AugmentError {
    AugmentError::Param {
        what,
        value: format!("{value:?}"),
        expected,
    }
}
