//! The crate's error type: every failure names the operation, the thing and the value.

/// What can go wrong calling into oneDNN through this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No oneDNN 2.x library could be loaded on this machine.
    #[error("oneDNN could not be loaded: {reason}")]
    NotLoaded {
        /// What was tried and why each failed, and how to install or point at the library.
        reason: String,
    },
    /// A oneDNN C call returned a status other than `dnnl_success`.
    #[error("{op}: oneDNN call {call} failed with {status}")]
    Dnnl {
        /// The operation of this crate that made the call.
        op: &'static str,
        /// The C function that failed.
        call: &'static str,
        /// The `dnnl_status_t` name, e.g. `dnnl_unimplemented`.
        status: &'static str,
    },
    /// A slice does not have the length the shape implies.
    #[error("{op}: {what} has {got} elements, expected {expected}")]
    BufferLen {
        /// The operation.
        op: &'static str,
        /// Which buffer.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length the shape implies.
        expected: usize,
    },
    /// A shape parameter is out of range.
    #[error("{op}: {what} is {got}, expected {expected}")]
    Shape {
        /// The operation.
        op: &'static str,
        /// Which parameter.
        what: &'static str,
        /// Its value.
        got: String,
        /// What would have been valid.
        expected: String,
    },
    /// Max-pooling backward was called without the workspace its forward pass produced.
    #[error("{op}: {what}")]
    Workspace {
        /// The operation.
        op: &'static str,
        /// What is wrong with the workspace.
        what: String,
    },
    /// A thread panicked while holding the oneDNN context lock.
    #[error("the oneDNN context lock is poisoned (a thread panicked while using it)")]
    Poisoned,
}

/// This crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Whether oneDNN declined the shape rather than failed on it: it has no implementation
    /// for it (`dnnl_unimplemented`). Callers may compute such a shape another way; every
    /// other error is a real failure.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            Error::Dnnl {
                status: "dnnl_unimplemented",
                ..
            }
        )
    }
}
