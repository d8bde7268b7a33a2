//! The error of this crate: which key (or constructor argument) is wrong, its
//! value, and what was expected.

/// A schedule that cannot be built from the given numbers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchedError {
    /// One value is out of its range.
    #[error("{key} = {value}: expected {expected}")]
    Invalid {
        /// The key (hyperparameter name or constructor argument).
        key: String,
        /// The offending value, as written.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// The floor of a decaying schedule is above its starting rate.
    #[error(
        "{min_key} gives a minimum learning rate of {min_lr}, above the learning rate {lr} \
         from {lr_key}: expected {min_key} <= {lr_key}"
    )]
    MinAboveMax {
        /// The key of the floor (`min_lr`, `per_item_min_lrate`).
        min_key: String,
        /// The key of the starting rate (`lr`, `per_item_lrate`).
        lr_key: String,
        /// The floor.
        min_lr: f64,
        /// The starting rate.
        lr: f64,
    },
}

impl SchedError {
    /// An out-of-range value: the key, the value and what was expected.
    pub fn invalid(key: &str, value: impl ToString, expected: &str) -> SchedError {
        SchedError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }

    /// The same error with its keys renamed (constructor argument → hyperparameter
    /// key), so a user sees the name from their params file.
    pub fn renamed(self, rename: impl Fn(&str) -> String) -> SchedError {
        match self {
            SchedError::Invalid {
                key,
                value,
                expected,
            } => SchedError::Invalid {
                key: rename(&key),
                value,
                expected,
            },
            SchedError::MinAboveMax {
                min_key,
                lr_key,
                min_lr,
                lr,
            } => SchedError::MinAboveMax {
                min_key: rename(&min_key),
                lr_key: rename(&lr_key),
                min_lr,
                lr,
            },
        }
    }
}

/// Checks that a learning rate is finite and not negative.
pub(crate) fn check_rate(key: &str, value: f64) -> Result<(), SchedError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(SchedError::invalid(key, value, "a finite number >= 0"))
    }
}
