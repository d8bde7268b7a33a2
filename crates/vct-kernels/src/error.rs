//! Errors of the kernels: each names the argument, the value found and what was expected.

/// An invalid argument or an unsupported tensor given to a kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A tensor had the wrong number of dimensions or a wrong size.
    #[error("{op}: {what} has shape {got:?}, expected {expected}")]
    Shape {
        /// The op that was called.
        op: &'static str,
        /// Which argument.
        what: &'static str,
        /// The shape found.
        got: Vec<usize>,
        /// What was expected, in words.
        expected: String,
    },
    /// A hyperparameter of the op was out of range.
    #[error("{op}: {what} = {got}, expected {expected}")]
    Param {
        /// The op that was called.
        op: &'static str,
        /// Which parameter.
        what: &'static str,
        /// The value found.
        got: String,
        /// What was expected, in words.
        expected: String,
    },
    /// The tensor is not f32.
    #[error("{op}: {what} has dtype {got}, expected f32")]
    DType {
        /// The op that was called.
        op: &'static str,
        /// Which argument.
        what: &'static str,
        /// The dtype found.
        got: String,
    },
    /// The tensor does not live on the CPU.
    #[error(
        "{op}: {what} is on {got}, these kernels run on the CPU only (use stock candle ops there)"
    )]
    Device {
        /// The op that was called.
        op: &'static str,
        /// Which argument.
        what: &'static str,
        /// The device found.
        got: String,
    },
    /// The storage was not contiguous where the kernel needs it to be.
    #[error("{op}: {what} is not contiguous, expected a contiguous tensor")]
    NotContiguous {
        /// The op that was called.
        op: &'static str,
        /// Which argument.
        what: &'static str,
    },
    /// The selected backend cannot run in this build or on this machine.
    #[error("kernel backend `{backend}` is unavailable: {reason}")]
    BackendUnavailable {
        /// The backend's name.
        backend: &'static str,
        /// Why, and how to get it.
        reason: String,
    },
    /// oneDNN failed on a shape it supports (out of memory, a poisoned lock, ...); shapes
    /// it has no implementation for fall back to the Rust kernels instead.
    #[error("{op}: oneDNN failed: {source}")]
    OneDnn {
        /// The op that was called.
        op: &'static str,
        /// oneDNN's error.
        source: vct_onednn::Error,
    },
    /// State saved by a forward pass was missing in the backward pass.
    #[error("{op}: backward ran without the state saved by its forward pass")]
    MissingForwardState {
        /// The op that was called.
        op: &'static str,
    },
}

impl From<KernelError> for candle_core::Error {
    fn from(e: KernelError) -> Self {
        candle_core::Error::wrap(e)
    }
}
