//! The error of this crate: each names the group, parameter or file it is about.

use std::path::PathBuf;

/// Anything that can go wrong building or running an optimizer.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// A configuration value is out of range.
    #[error("{key} = {value}: expected {expected}")]
    Invalid {
        /// The configuration key or group setting.
        key: String,
        /// The offending value.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// Two parameters share a name (state is keyed by name).
    #[error(
        "parameter `{name}` appears twice (groups `{first}` and `{second}`); names must be unique"
    )]
    DuplicateParam {
        /// The repeated name.
        name: String,
        /// Group of the first occurrence.
        first: String,
        /// Group of the second occurrence.
        second: String,
    },
    /// A parameter is not a float tensor.
    #[error("parameter `{name}` has dtype {dtype:?}: expected a float tensor")]
    NotFloat {
        /// The parameter.
        name: String,
        /// Its dtype.
        dtype: candle_core::DType,
    },
    /// Saved state does not fit this optimizer's parameters.
    #[error("optimizer state {origin}: {message}")]
    State {
        /// The file (or `<state dict>`).
        origin: String,
        /// What did not match: a missing or extra tensor, a shape.
        message: String,
    },
    /// A state file could not be written or renamed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl OptimError {
    /// An out-of-range configuration value.
    pub(crate) fn invalid(key: &str, value: impl ToString, expected: &str) -> OptimError {
        OptimError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }
}
