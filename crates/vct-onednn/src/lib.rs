//! Safe bindings to the oneDNN (DNNL) CPU primitives vct trains with.
//!
//! oneDNN is the library PyTorch's CPU path uses for convolution, batch norm and
//! pooling. This crate wraps its C API (hand-written declarations of oneDNN 2.x's `dnnl.h`)
//! behind functions over `&[f32]` / `&mut [f32]` NCHW buffers and shape structs. It
//! knows nothing of tensors: `vct-kernels` owns the candle ops and calls these functions
//! from inside them when its oneDNN backend is selected.
//!
//! The library is not linked: it is loaded at run time on first use (`libdnnl.so.2`, or
//! the file [`LIBRARY_ENV`] names), so the crate builds and runs anywhere. Where it cannot
//! be loaded, [`available`] is `false` and every operation returns [`Error::NotLoaded`]
//! saying what was tried.
//!
//! Primitives are created once per shape and cached; calls are serialised on one
//! engine and stream (oneDNN parallelises each primitive itself, with OpenMP).

mod error;
mod ffi;
mod loader;
mod shape;
mod sys;

pub use error::{Error, Result};
pub use loader::{library, load, LIBRARY_ENV};
pub use shape::{BatchNormShape, Conv2dShape, Pool2dShape, PoolKind};

/// Whether oneDNN could be loaded and its CPU engine created.
pub fn available() -> bool {
    sys::available()
}

/// Which memory layouts convolutions compute in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConvLayout {
    /// Blocked layouts for kernels larger than 1×1, NCHW for 1×1 (the default; fastest measured).
    Auto = 0,
    /// oneDNN's preferred layouts (e.g. `nChw16c`), the NCHW buffers reordered in and out.
    Blocked = 1,
    /// NCHW / OIHW directly, no reorders.
    Plain = 2,
}

/// Sets the layout policy of convolutions for all threads (results agree in every layout).
pub fn set_conv_layout(layout: ConvLayout) {
    sys::set_layout(layout);
}

/// Drops every cached primitive (they are re-created on the next call).
pub fn clear_cache() -> Result<()> {
    sys::clear_cache()
}

/// The indices a training-mode max pooling saved for its backward pass.
///
/// Produced by [`pool2d_forward_training`] and consumed by [`pool2d_backward`]; it
/// remembers the shape and kind it was made for, and is empty for average pooling.
#[derive(Debug, Clone)]
pub struct PoolWorkspace {
    // u64 so the buffer is 8-byte aligned whatever index type oneDNN stores in it.
    pub(crate) buf: Vec<u64>,
    pub(crate) shape: Pool2dShape,
    pub(crate) kind: PoolKind,
}

fn check_len(op: &'static str, what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got != expected {
        return Err(Error::BufferLen {
            op,
            what,
            got,
            expected,
        });
    }
    Ok(())
}

fn check_eps(op: &'static str, eps: f32) -> Result<()> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::Shape {
            op,
            what: "epsilon",
            got: eps.to_string(),
            expected: "a finite value >= 0".into(),
        });
    }
    Ok(())
}

/// Convolution forward: `dst = conv(src, weights) + bias`, PyTorch's `conv2d` semantics.
///
/// `src` is `(n, c_in, h, w)`, `weights` `(c_out, c_in / groups, kh, kw)`, `bias`
/// `(c_out,)`, `dst` `(n, c_out, out_h, out_w)`, all dense NCHW.
pub fn conv2d_forward(
    s: &Conv2dShape,
    src: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    dst: &mut [f32],
) -> Result<()> {
    const OP: &str = "conv2d_forward";
    s.validate(OP)?;
    check_len(OP, "src", src.len(), s.src_len())?;
    check_len(OP, "weights", weights.len(), s.weights_len())?;
    if let Some(b) = bias {
        check_len(OP, "bias", b.len(), s.c_out)?;
    }
    check_len(OP, "dst", dst.len(), s.dst_len())?;
    sys::conv_forward(s, src, weights, bias, dst)
}

/// Convolution backward w.r.t. the input: `diff_src` from `weights` and `diff_dst` (overwritten).
pub fn conv2d_backward_data(
    s: &Conv2dShape,
    weights: &[f32],
    diff_dst: &[f32],
    diff_src: &mut [f32],
) -> Result<()> {
    const OP: &str = "conv2d_backward_data";
    s.validate(OP)?;
    check_len(OP, "weights", weights.len(), s.weights_len())?;
    check_len(OP, "diff_dst", diff_dst.len(), s.dst_len())?;
    check_len(OP, "diff_src", diff_src.len(), s.src_len())?;
    sys::conv_backward_data(s, weights, diff_dst, diff_src)
}

/// Convolution backward w.r.t. weights and (if given) bias, from `src` and `diff_dst` (overwritten).
pub fn conv2d_backward_weights(
    s: &Conv2dShape,
    src: &[f32],
    diff_dst: &[f32],
    diff_weights: &mut [f32],
    diff_bias: Option<&mut [f32]>,
) -> Result<()> {
    const OP: &str = "conv2d_backward_weights";
    s.validate(OP)?;
    check_len(OP, "src", src.len(), s.src_len())?;
    check_len(OP, "diff_dst", diff_dst.len(), s.dst_len())?;
    check_len(OP, "diff_weights", diff_weights.len(), s.weights_len())?;
    if let Some(b) = diff_bias.as_deref() {
        check_len(OP, "diff_bias", b.len(), s.c_out)?;
    }
    sys::conv_backward_weights(s, src, diff_dst, diff_weights, diff_bias)
}

/// Training-mode batch norm: normalises with the batch statistics, which it writes out.
///
/// `dst = scale · (src − mean) / sqrt(var + eps) + shift` per channel; `mean` and the
/// biased `var` (both `(c,)`) receive the batch statistics.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward_training(
    s: &BatchNormShape,
    eps: f32,
    src: &[f32],
    scale: &[f32],
    shift: &[f32],
    dst: &mut [f32],
    mean: &mut [f32],
    var: &mut [f32],
) -> Result<()> {
    const OP: &str = "batch_norm_forward_training";
    s.validate(OP)?;
    check_eps(OP, eps)?;
    check_len(OP, "src", src.len(), s.len())?;
    check_len(OP, "dst", dst.len(), s.len())?;
    for (what, len) in [
        ("scale", scale.len()),
        ("shift", shift.len()),
        ("mean", mean.len()),
        ("var", var.len()),
    ] {
        check_len(OP, what, len, s.c)?;
    }
    sys::bn_forward_training(s, eps, src, scale, shift, dst, mean, var)
}

/// Inference-mode batch norm with given (running) `mean` and `var`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward_inference(
    s: &BatchNormShape,
    eps: f32,
    src: &[f32],
    scale: &[f32],
    shift: &[f32],
    mean: &[f32],
    var: &[f32],
    dst: &mut [f32],
) -> Result<()> {
    const OP: &str = "batch_norm_forward_inference";
    s.validate(OP)?;
    check_eps(OP, eps)?;
    check_len(OP, "src", src.len(), s.len())?;
    check_len(OP, "dst", dst.len(), s.len())?;
    for (what, len) in [
        ("scale", scale.len()),
        ("shift", shift.len()),
        ("mean", mean.len()),
        ("var", var.len()),
    ] {
        check_len(OP, what, len, s.c)?;
    }
    sys::bn_forward_inference(s, eps, src, scale, shift, mean, var, dst)
}

/// Batch-norm backward: gradients w.r.t. `src`, `scale` and `shift` (all overwritten).
///
/// `mean` and `var` are the statistics the forward pass normalised with. With
/// `global_stats` they are treated as constants (inference-mode forward); otherwise
/// as functions of `src` (training-mode forward).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    s: &BatchNormShape,
    eps: f32,
    global_stats: bool,
    src: &[f32],
    diff_dst: &[f32],
    scale: &[f32],
    mean: &[f32],
    var: &[f32],
    diff_src: &mut [f32],
    diff_scale: &mut [f32],
    diff_shift: &mut [f32],
) -> Result<()> {
    const OP: &str = "batch_norm_backward";
    s.validate(OP)?;
    check_eps(OP, eps)?;
    for (what, len) in [
        ("src", src.len()),
        ("diff_dst", diff_dst.len()),
        ("diff_src", diff_src.len()),
    ] {
        check_len(OP, what, len, s.len())?;
    }
    for (what, len) in [
        ("scale", scale.len()),
        ("mean", mean.len()),
        ("var", var.len()),
        ("diff_scale", diff_scale.len()),
        ("diff_shift", diff_shift.len()),
    ] {
        check_len(OP, what, len, s.c)?;
    }
    sys::bn_backward(
        s,
        eps,
        global_stats,
        src,
        diff_dst,
        scale,
        mean,
        var,
        diff_src,
        diff_scale,
        diff_shift,
    )
}

fn check_pool(op: &'static str, s: &Pool2dShape, src: usize, dst: usize) -> Result<()> {
    s.validate(op)?;
    check_len(op, "src", src, s.src_len())?;
    check_len(op, "dst", dst, s.dst_len())
}

/// Pooling forward for inference (no workspace kept).
pub fn pool2d_forward(s: &Pool2dShape, kind: PoolKind, src: &[f32], dst: &mut [f32]) -> Result<()> {
    const OP: &str = "pool2d_forward";
    check_pool(OP, s, src.len(), dst.len())?;
    sys::pool_forward(s, kind, src, dst, false).map(|_| ())
}

/// Pooling forward for training: also returns what [`pool2d_backward`] needs (max: the argmax).
pub fn pool2d_forward_training(
    s: &Pool2dShape,
    kind: PoolKind,
    src: &[f32],
    dst: &mut [f32],
) -> Result<PoolWorkspace> {
    const OP: &str = "pool2d_forward_training";
    check_pool(OP, s, src.len(), dst.len())?;
    sys::pool_forward(s, kind, src, dst, true)
}

/// Pooling backward: `diff_src` (overwritten) from `diff_dst` and the forward's workspace.
pub fn pool2d_backward(
    s: &Pool2dShape,
    kind: PoolKind,
    diff_dst: &[f32],
    diff_src: &mut [f32],
    workspace: &PoolWorkspace,
) -> Result<()> {
    const OP: &str = "pool2d_backward";
    check_pool(OP, s, diff_src.len(), diff_dst.len())?;
    if workspace.shape != *s || workspace.kind != kind {
        return Err(Error::Workspace {
            op: OP,
            what: format!(
                "workspace was made for {:?} {:?}, used with {:?} {:?}",
                workspace.kind, workspace.shape, kind, s
            ),
        });
    }
    sys::pool_backward(s, kind, diff_dst, diff_src, workspace)
}

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
