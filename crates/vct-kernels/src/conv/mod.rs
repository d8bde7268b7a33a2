//! 2-D convolution (grouped, strided, padded) with input and weight gradients.
//!
//! One candle op pair — `Conv` forward, `ConvBackward` for the gradients — computes on
//! the backend chosen when the op is built: the Rust kernels (`rust`: Winograd
//! F(2×2, 3×3) for 3×3 stride-1 convolutions in `winograd`, otherwise im2col + GEMM,
//! grouped convolutions as one pass of per-group GEMMs over one column buffer — small
//! groups in `small_gemm`'s register-blocked loops — pointwise convolutions as plain
//! GEMMs on the input), or oneDNN, with the Rust kernel for shapes
//! oneDNN declines. The input gradient is skipped when the input does not track gradients
//! (the network's input image). Tensors that are not `f32` on the CPU, and the `Candle`
//! backend, use candle's own `conv2d`.

mod gemm;
mod geom;
mod lower;
mod rust;
mod small_gemm;
#[cfg(test)]
mod tests;
mod winograd;

use crate::backend::{route, KernelBackend, OpKind, Route};
use crate::error::KernelError;
use crate::onednn::attempt;
use crate::storage::{f32_slice, prepare};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use geom::{geometry, Geom};
use rust::Epilogue;

/// 2-D convolution of an NCHW tensor, PyTorch's `conv2d` without dilation.
///
/// `w` has shape `(C_out, C_in / groups, kh, kw)`, `bias` (optional) `(C_out,)`.
/// Differentiable w.r.t. `x`, `w` and `bias`; the input gradient is computed only if
/// `x` tracks gradients (a `Var` or the result of tracked ops).
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: (usize, usize),
    padding: (usize, usize),
    groups: usize,
) -> candle_core::Result<Tensor> {
    const OP: &str = "conv2d";
    let y = match route(x)? {
        Route::Stock => crate::stock::conv2d(x, w, stride, padding, groups)?,
        Route::Kernels(backend) => {
            let x = prepare(x, 4, OP, "input")?;
            let w = prepare(w, 4, OP, "weight")?;
            let g = geometry(x.dims(), w.dims(), stride, padding, groups)?;
            x.apply_op2(
                &w,
                Conv {
                    g,
                    backend,
                    epilogue: None,
                },
            )?
        }
    };
    match bias {
        None => Ok(y),
        Some(b) => {
            let cout = w.dim(0)?;
            if b.dims() != [cout] {
                return Err(KernelError::Shape {
                    op: OP,
                    what: "bias",
                    got: b.dims().to_vec(),
                    expected: format!("({cout},), one value per output channel"),
                }
                .into());
            }
            crate::ops::bias_act(&y, b, false)
        }
    }
}

/// `relu?(conv2d(x, w) + bias)` for inference: the bias add and ReLU run on each output
/// plane right after its GEMM (no extra pass), e.g. a convolution with its batch norm
/// folded into `w` and `bias`. Differentiable when any input tracks gradients (then it
/// is a convolution followed by [`crate::ops::bias_act`]).
pub fn conv2d_bias_act(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    stride: (usize, usize),
    padding: (usize, usize),
    groups: usize,
    relu: bool,
) -> candle_core::Result<Tensor> {
    const OP: &str = "conv2d_bias_act";
    let cout = w.dim(0)?;
    if bias.dims() != [cout] {
        return Err(KernelError::Shape {
            op: OP,
            what: "bias",
            got: bias.dims().to_vec(),
            expected: format!("({cout},), one value per output channel"),
        }
        .into());
    }
    let backend = match route(x)? {
        Route::Kernels(b) if !(x.track_op() || w.track_op() || bias.track_op()) => b,
        _ => {
            let y = conv2d(x, w, None, stride, padding, groups)?;
            return crate::ops::bias_act(&y, bias, relu);
        }
    };
    let x = prepare(x, 4, OP, "input")?;
    let w = prepare(w, 4, OP, "weight")?;
    let g = geometry(x.dims(), w.dims(), stride, padding, groups)?;
    let epilogue = Epilogue {
        bias: prepare(bias, 1, OP, "bias")?.to_vec1()?,
        relu,
    };
    x.apply_op2_no_bwd(
        &w,
        &Conv {
            g,
            backend,
            epilogue: Some(epilogue),
        },
    )
}

/// The oneDNN shape of a convolution.
fn dnnl_shape(g: &Geom) -> vct_onednn::Conv2dShape {
    vct_onednn::Conv2dShape {
        n: g.n,
        c_in: g.cin,
        h: g.h,
        w: g.w,
        c_out: g.cout,
        kh: g.kh,
        kw: g.kw,
        stride: (g.sh, g.sw),
        pad: (g.ph, g.pw),
        groups: g.groups,
    }
}

/// Forward convolution op: inputs `x`, `w`.
struct Conv {
    g: Geom,
    backend: KernelBackend,
    /// Bias and ReLU applied in the same pass (inference only: no backward).
    epilogue: Option<Epilogue>,
}

impl CustomOp2 for Conv {
    fn name(&self) -> &'static str {
        "vct-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        const OP: &str = "conv2d";
        let _span = crate::profile::Span::new(crate::profile::Kernel::ConvForward);
        let x = f32_slice(s1, l1, OP, "input")?;
        let w = f32_slice(s2, l2, OP, "weight")?;
        let g = self.g;
        let mut y = vec![0f32; g.n * g.out_image()];
        let shape = Shape::from((g.n, g.cout, g.oh, g.ow));
        if self.backend == KernelBackend::OneDnn {
            let s = dnnl_shape(&g);
            let bias = self.epilogue.as_ref().map(|e| e.bias.as_slice());
            let done = attempt(OpKind::Conv, OP, || {
                vct_onednn::conv2d_forward(&s, x, w, bias, &mut y)
            })?;
            if done.is_some() {
                if self.epilogue.as_ref().is_some_and(|e| e.relu) {
                    y.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                return Ok((CpuStorage::F32(y), shape));
            }
        }
        rust::forward(&g, x, w, &mut y, self.epilogue.as_ref())?;
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let want_dx = x.track_op();
        let want_dw = w.track_op();
        if !want_dx && !want_dw {
            return Ok((None, None));
        }
        if self.epilogue.is_some() {
            // conv2d_bias_act only builds this op for inputs that track nothing.
            return Err(KernelError::MissingForwardState {
                op: "conv2d_bias_act",
            }
            .into());
        }
        let g = self.g;
        let dy = grad_res.contiguous()?;
        let packed = x.apply_op3_no_bwd(
            w,
            &dy,
            &ConvBackward {
                g,
                backend: self.backend,
                want_dx,
                want_dw,
            },
        )?;
        let dx_len = if want_dx { g.n * g.in_image() } else { 0 };
        let dx = if want_dx {
            Some(packed.narrow(0, 0, dx_len)?.reshape(x.shape())?)
        } else {
            None
        };
        // The weight gradient lives until the optimizer step, so it gets storage of its
        // own: a view would keep the whole `[dx | dw]` buffer (activation-sized) alive
        // until then, once per layer.
        let dw = if want_dw {
            let dw = packed.narrow(0, dx_len, g.weight_len())?;
            let dw = if want_dx { dw.force_contiguous()? } else { dw };
            Some(dw.reshape(w.shape())?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// Backward op: inputs `x`, `w`, `dy`; output `[dx (flat, if wanted), dw (if wanted)]`.
struct ConvBackward {
    g: Geom,
    backend: KernelBackend,
    want_dx: bool,
    want_dw: bool,
}

impl CustomOp3 for ConvBackward {
    fn name(&self) -> &'static str {
        "vct-conv2d-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        const OP: &str = "conv2d backward";
        let _span = crate::profile::Span::new(crate::profile::Kernel::ConvBackward);
        let x = f32_slice(s1, l1, OP, "input")?;
        let w = f32_slice(s2, l2, OP, "weight")?;
        let dy = f32_slice(s3, l3, OP, "output gradient")?;
        let g = self.g;
        if dy.len() != g.n * g.out_image() {
            return Err(KernelError::Shape {
                op: OP,
                what: "output gradient",
                got: l3.dims().to_vec(),
                expected: format!("({}, {}, {}, {})", g.n, g.cout, g.oh, g.ow),
            }
            .into());
        }
        let dx_len = if self.want_dx { g.n * g.in_image() } else { 0 };
        let total = dx_len + if self.want_dw { g.weight_len() } else { 0 };
        let mut out = vec![0f32; total];
        let (dx, dw) = out.split_at_mut(dx_len);
        let mut dx = self.want_dx.then_some(dx);
        let mut dw = self.want_dw.then_some(dw);
        if self.backend == KernelBackend::OneDnn {
            let s = dnnl_shape(&g);
            if let Some(d) = dx.as_deref_mut() {
                let done = attempt(OpKind::Conv, OP, || {
                    vct_onednn::conv2d_backward_data(&s, w, dy, d)
                })?;
                if done.is_some() {
                    dx = None;
                }
            }
            if let Some(d) = dw.as_deref_mut() {
                let done = attempt(OpKind::Conv, OP, || {
                    vct_onednn::conv2d_backward_weights(&s, x, dy, d, None)
                })?;
                if done.is_some() {
                    dw = None;
                }
            }
        }
        // Whatever oneDNN did not compute (everything, under the Rust backend).
        if dx.is_some() || dw.is_some() {
            rust::backward(&g, x, w, dy, dx, dw)?;
        }
        Ok((CpuStorage::F32(out), Shape::from(total)))
    }
}
