//! The bridge from the ops to `vct_onednn`'s slice functions: shape conversion, and the
//! one rule for its errors (a shape oneDNN has no implementation for falls back to the
//! Rust kernel and is counted; any other error is returned).

use crate::backend::{count_fallback, OpKind};
use crate::error::KernelError;

/// Runs a oneDNN call: `Some(value)` when it ran, `None` when oneDNN declined the shape
/// (counted; the caller runs the Rust kernel), an error for any other failure.
pub(crate) fn attempt<T>(
    kind: OpKind,
    op: &'static str,
    call: impl FnOnce() -> vct_onednn::Result<T>,
) -> Result<Option<T>, KernelError> {
    match call() {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_unsupported() => {
            count_fallback(kind, || format!("{op}: {e}"));
            Ok(None)
        }
        Err(source) => Err(KernelError::OneDnn { op, source }),
    }
}

/// Records that the op itself did not hand a shape to oneDNN (semantics oneDNN lacks).
pub(crate) fn declined(kind: OpKind, op: &'static str, why: impl FnOnce() -> String) {
    count_fallback(kind, || format!("{op}: {}", why()));
}
