//! Access to the raw f32 data behind a candle CPU storage, and argument checks.

use crate::error::KernelError;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Tensor};

/// The contiguous f32 slice a layout designates in a CPU storage.
pub(crate) fn f32_slice<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    op: &'static str,
    what: &'static str,
) -> Result<&'a [f32], KernelError> {
    let CpuStorage::F32(v) = s else {
        return Err(not_f32(s, op, what));
    };
    v.get(contiguous_range(l, op, what)?)
        .ok_or(KernelError::NotContiguous { op, what })
}

/// [`f32_slice`], writable (for in-place ops).
pub(crate) fn f32_slice_mut<'a>(
    s: &'a mut CpuStorage,
    l: &Layout,
    op: &'static str,
    what: &'static str,
) -> Result<&'a mut [f32], KernelError> {
    let CpuStorage::F32(v) = s else {
        return Err(not_f32(s, op, what));
    };
    v.get_mut(contiguous_range(l, op, what)?)
        .ok_or(KernelError::NotContiguous { op, what })
}

fn not_f32(s: &CpuStorage, op: &'static str, what: &'static str) -> KernelError {
    KernelError::DType {
        op,
        what,
        got: format!("{:?}", s.dtype()),
    }
}

/// The element range of a contiguous layout.
fn contiguous_range(
    l: &Layout,
    op: &'static str,
    what: &'static str,
) -> Result<std::ops::Range<usize>, KernelError> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or(KernelError::NotContiguous { op, what })?;
    Ok(start..end)
}

/// Checks that a tensor is an f32 CPU tensor with `rank` dimensions, and makes it contiguous.
pub(crate) fn prepare(
    t: &Tensor,
    rank: usize,
    op: &'static str,
    what: &'static str,
) -> candle_core::Result<Tensor> {
    if !t.device().is_cpu() {
        return Err(KernelError::Device {
            op,
            what,
            got: format!("{:?}", t.device().location()),
        }
        .into());
    }
    if t.dtype() != candle_core::DType::F32 {
        return Err(KernelError::DType {
            op,
            what,
            got: format!("{:?}", t.dtype()),
        }
        .into());
    }
    if t.rank() != rank {
        return Err(KernelError::Shape {
            op,
            what,
            got: t.dims().to_vec(),
            expected: format!("{rank} dimensions"),
        }
        .into());
    }
    // `contiguous` is free for contiguous tensors and differentiable otherwise.
    t.contiguous()
}
