//! Primitive layers: convolution, batch norm, pooling, activation, linear, drop path.
//!
//! Every architecture in this crate builds on these functions and types only. The
//! compute is vct-kernels': its ops route each tensor themselves (the Rust kernels or
//! oneDNN for f32 CPU tensors, stock candle ops for other devices or under the `Candle`
//! backend), so nothing here branches on the backend. The pooling functions follow
//! PyTorch semantics (padding, ceil mode, `count_include_pad`) plus TF "SAME" variants
//! for the TF-slim layout.
//!
//! Train vs eval: in eval mode weights are used detached, so inference builds
//! no autograd graph (a graph over `Var`s keeps every activation alive).

use candle_core::{Tensor, Var, D};

use crate::error::Result;
use crate::params::{Init, MaskRng, Scope};

/// The tensor behind `v`: tracked for autograd in training, detached in eval.
fn val(v: &Var, train: bool) -> Tensor {
    if train {
        v.as_tensor().clone()
    } else {
        v.as_detached_tensor()
    }
}

/// TF "SAME" along one dimension: `(output size, padding before, padding after)`.
pub fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let (out, (before, after)) = vct_kernels::pool::same_padding(size, kernel, stride);
    (out, before, after)
}

/// How a convolution pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// The same number of zeros on every side (PyTorch `padding=p`).
    Explicit(usize),
    /// TF "SAME": output = ceil(input / stride), extra zero on the bottom/right when odd.
    Same,
}

/// 2-D convolution, OIHW weights, optional bias.
#[derive(Debug)]
pub struct Conv2d {
    weight: Var,
    bias: Option<Var>,
    kernel: usize,
    stride: usize,
    padding: Padding,
    groups: usize,
}

/// Configuration of a [`Conv2d`].
#[derive(Debug, Clone, Copy)]
pub struct ConvCfg {
    /// Square kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Padding.
    pub padding: Padding,
    /// Groups (1 = dense, `in` = depthwise).
    pub groups: usize,
    /// Whether there is a bias.
    pub bias: bool,
}

impl ConvCfg {
    /// Dense, no bias, PyTorch padding.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> ConvCfg {
        ConvCfg {
            kernel,
            stride,
            padding: Padding::Explicit(padding),
            groups: 1,
            bias: false,
        }
    }
}

impl Conv2d {
    /// Creates `weight` (and `bias`) under `s`; the weight init defaults to
    /// kaiming-normal fan-out (torchvision's ResNet init), bias zeros.
    pub fn new(
        s: &Scope,
        cin: usize,
        cout: usize,
        cfg: ConvCfg,
        init: Option<Init>,
    ) -> Result<Conv2d> {
        let k = cfg.kernel;
        let fan_out = (cout * k * k) as f64;
        let init = init.unwrap_or(Init::Normal((2.0 / fan_out).sqrt()));
        let weight = s.param("weight", &[cout, cin / cfg.groups, k, k], init)?;
        let bias = if cfg.bias {
            Some(s.param("bias", &[cout], Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            kernel: k,
            stride: cfg.stride,
            padding: cfg.padding,
            groups: cfg.groups,
        })
    }

    /// Like [`Conv2d::new`] with explicit weight / bias names (TF-slim layouts).
    #[allow(clippy::too_many_arguments)]
    pub fn named(
        s: &Scope,
        weight_name: &str,
        bias_name: &str,
        cin: usize,
        cout: usize,
        cfg: ConvCfg,
        init: Init,
    ) -> Result<Conv2d> {
        let k = cfg.kernel;
        let weight = s.param(weight_name, &[cout, cin / cfg.groups, k, k], init)?;
        let bias = if cfg.bias {
            Some(s.param(bias_name, &[cout], Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            kernel: k,
            stride: cfg.stride,
            padding: cfg.padding,
            groups: cfg.groups,
        })
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Var> {
        self.bias.as_ref()
    }

    /// Applies the convolution.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.forward_no_bias(x, train)?;
        match &self.bias {
            Some(b) => bias_act(&y, b, train, false),
            None => Ok(y),
        }
    }

    /// The convolution without its bias (for a following batch norm to absorb it,
    /// see [`BatchNorm2d::forward_after_biased_conv`]).
    pub fn forward_no_bias(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let w = val(&self.weight, train);
        let y = match self.padding {
            Padding::Explicit(p) => conv2d(x, &w, p, self.stride, self.groups)?,
            Padding::Same => {
                let (_, _, h, wd) = x.dims4()?;
                let (_, pt, pb) = same_padding(h, self.kernel, self.stride);
                let (_, pl, pr) = same_padding(wd, self.kernel, self.stride);
                if pt == pb && pl == pr && pt == pl {
                    conv2d(x, &w, pt, self.stride, self.groups)?
                } else {
                    let xp = x.pad_with_zeros(2, pt, pb)?.pad_with_zeros(3, pl, pr)?;
                    conv2d(&xp, &w, 0, self.stride, self.groups)?
                }
            }
        };
        Ok(y)
    }
}

impl Conv2d {
    /// `relu?(conv(x, w) + bias)` with the given (folded) weight and bias, this
    /// convolution's stride, padding and groups: the inference path, one pass.
    pub fn forward_bias_act(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        relu: bool,
    ) -> Result<Tensor> {
        let run = |x: &Tensor, p: usize| {
            vct_kernels::conv::conv2d_bias_act(
                x,
                w,
                bias,
                (self.stride, self.stride),
                (p, p),
                self.groups,
                relu,
            )
        };
        Ok(match self.padding {
            Padding::Explicit(p) => run(x, p)?,
            Padding::Same => {
                let (_, _, h, wd) = x.dims4()?;
                let (_, pt, pb) = same_padding(h, self.kernel, self.stride);
                let (_, pl, pr) = same_padding(wd, self.kernel, self.stride);
                if pt == pb && pl == pr && pt == pl {
                    run(x, pt)?
                } else {
                    let xp = x.pad_with_zeros(2, pt, pb)?.pad_with_zeros(3, pl, pr)?;
                    run(&xp, 0)?
                }
            }
        })
    }

    /// The weight, detached.
    pub fn weight(&self) -> Tensor {
        self.weight.as_detached_tensor()
    }
}

/// `relu?(bn(conv(x)))`. In inference the batch norm is folded into the convolution
/// (weights scaled per output channel, its shift as the bias): one convolution with a
/// fused bias and ReLU, no batch-norm pass. In training, the convolution then the batch
/// norm (which absorbs a conv bias, see [`BatchNorm2d::forward_after_biased_conv`]).
pub fn conv_bn(
    conv: &Conv2d,
    bn: &BatchNorm2d,
    x: &Tensor,
    train: bool,
    relu: bool,
) -> Result<Tensor> {
    if !train && vct_kernels::use_kernels(x) {
        let (scale, shift) = bn.eval_affine(conv.bias())?;
        let w = conv.weight();
        let c = w.dim(0)?;
        let folded = w.broadcast_mul(&scale.reshape((c, 1, 1, 1))?)?;
        return conv.forward_bias_act(x, &folded, &shift, relu);
    }
    let z = conv.forward_no_bias(x, train)?;
    match (conv.bias(), relu) {
        (Some(b), _) => bn.forward_after_biased_conv(&z, b, train, relu),
        (None, true) => bn.forward_relu(&z, train),
        (None, false) => bn.forward(&z, train),
    }
}

/// The convolution primitive.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    padding: usize,
    stride: usize,
    groups: usize,
) -> Result<Tensor> {
    let (s, p) = ((stride, stride), (padding, padding));
    Ok(vct_kernels::conv::conv2d(x, w, None, s, p, groups)?)
}

/// Batch normalisation over NCHW channels, PyTorch semantics.
#[derive(Debug)]
pub struct BatchNorm2d {
    weight: Option<Var>,
    bias: Var,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

/// State-dict names of a batch norm's tensors.
#[derive(Debug, Clone, Copy)]
pub struct BnNames {
    /// Scale (gamma); `None` = no scale (TF-slim `scale=False`).
    pub weight: Option<&'static str>,
    /// Shift (beta).
    pub bias: &'static str,
    /// Running mean.
    pub mean: &'static str,
    /// Running variance.
    pub var: &'static str,
}

/// PyTorch's names: `weight`, `bias`, `running_mean`, `running_var`.
pub const TORCH_BN: BnNames = BnNames {
    weight: Some("weight"),
    bias: "bias",
    mean: "running_mean",
    var: "running_var",
};

/// TF-slim's names with `scale=False`: `beta`, `moving_mean`, `moving_variance`.
pub const SLIM_BN: BnNames = BnNames {
    weight: None,
    bias: "beta",
    mean: "moving_mean",
    var: "moving_variance",
};

impl BatchNorm2d {
    /// Creates a batch norm over `c` channels; `gamma0` is the initial scale
    /// (0 for zero-init residual branches).
    pub fn new(s: &Scope, c: usize, names: BnNames, eps: f64, gamma0: f64) -> Result<BatchNorm2d> {
        let weight = match names.weight {
            Some(n) => Some(s.param(n, &[c], Init::Const(gamma0))?),
            None => None,
        };
        Ok(BatchNorm2d {
            weight,
            bias: s.param(names.bias, &[c], Init::Const(0.0))?,
            running_mean: s.buffer(names.mean, &[c], Init::Const(0.0))?,
            running_var: s.buffer(names.var, &[c], Init::Const(1.0))?,
            eps,
            momentum: 0.1,
        })
    }

    /// Normalises with batch statistics (and updates the running ones, momentum
    /// 0.1, unbiased variance as PyTorch) in training, running statistics in eval.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_impl(x, train, false, None)
    }

    /// `relu(forward(x))`, fused into one pass by the vct-kernels backend.
    pub fn forward_relu(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_impl(x, train, true, None)
    }

    /// `relu?(forward(x + b))` for the output `x` of a convolution whose bias `b`
    /// was not added (see [`Conv2d::forward_no_bias`]), without the per-element
    /// add: in eval the bias folds into the running mean (`x + b - rm`); in
    /// training batch norm subtracts the batch mean, so the bias cancels
    /// exactly and only enters the running-mean update. As in PyTorch, where
    /// its gradient is zero up to rounding, the bias then gets no gradient.
    pub fn forward_after_biased_conv(
        &self,
        x: &Tensor,
        conv_bias: &Var,
        train: bool,
        relu: bool,
    ) -> Result<Tensor> {
        self.forward_impl(x, train, relu, Some(&conv_bias.as_detached_tensor()))
    }

    /// Inference-mode batch norm as a per-channel `(scale, shift)` from the running
    /// statistics (detached): `bn(x) = x · scale + shift`; with `conv_bias`, for the output
    /// of a convolution whose bias was not added.
    pub fn eval_affine(&self, conv_bias: Option<&Var>) -> Result<(Tensor, Tensor)> {
        let inv = (self.running_var.as_detached_tensor() + self.eps)?
            .sqrt()?
            .recip()?;
        let scale = match &self.weight {
            Some(g) => (g.as_detached_tensor() * inv)?,
            None => inv,
        };
        let mut rm = self.running_mean.as_detached_tensor();
        if let Some(b) = conv_bias {
            rm = (rm - b.as_detached_tensor())?;
        }
        let shift = (self.bias.as_detached_tensor() - (rm * &scale)?)?;
        Ok((scale, shift))
    }

    /// `shift`: a per-channel constant already subtracted from the input.
    fn forward_impl(
        &self,
        x: &Tensor,
        train: bool,
        fuse_relu: bool,
        shift: Option<&Tensor>,
    ) -> Result<Tensor> {
        let c = x.dim(1)?;
        let gamma = match &self.weight {
            Some(g) => val(g, train),
            None => Tensor::ones(c, x.dtype(), x.device())?,
        };
        let beta = val(&self.bias, train);
        let (rm, rv) = (
            self.running_mean.as_detached_tensor(),
            self.running_var.as_detached_tensor(),
        );
        if train {
            let (y, stats) =
                vct_kernels::bn::batch_norm_train(x, &gamma, &beta, self.eps, fuse_relu)?;
            let (mut rm, rv) =
                vct_kernels::bn::update_running_stats(&rm, &rv, &stats, self.momentum)?;
            if let Some(b) = shift {
                rm = (rm + (b * self.momentum)?)?;
            }
            self.running_mean.set(&rm)?;
            self.running_var.set(&rv)?;
            Ok(y)
        } else {
            let rm = match shift {
                Some(b) => (rm - b)?,
                None => rm,
            };
            let bn = vct_kernels::bn::batch_norm_eval;
            Ok(bn(x, &gamma, &beta, &rm, &rv, self.eps, fuse_relu)?)
        }
    }
}

/// Fully connected layer, PyTorch layout `[out, in]` weight.
#[derive(Debug)]
pub struct Linear {
    weight: Var,
    bias: Option<Var>,
}

impl Linear {
    /// PyTorch's default init: uniform ±1/sqrt(in) for weight and bias.
    pub fn new(s: &Scope, cin: usize, cout: usize, bias: bool) -> Result<Linear> {
        Linear::named(s, "weight", "bias", cin, cout, bias)
    }

    /// [`Linear::new`] with explicit tensor names.
    pub fn named(
        s: &Scope,
        wname: &str,
        bname: &str,
        cin: usize,
        cout: usize,
        bias: bool,
    ) -> Result<Linear> {
        let b = 1.0 / (cin.max(1) as f64).sqrt();
        let weight = s.param(wname, &[cout, cin], Init::Uniform(b))?;
        let bias = if bias {
            Some(s.param(bname, &[cout], Init::Uniform(b))?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// The weight `[out, in]`.
    pub fn weight(&self) -> &Var {
        &self.weight
    }

    /// `x @ W^T + b` for `x` of shape `[N, in]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = x.matmul(&val(&self.weight, train).t()?)?;
        match &self.bias {
            Some(b) => Ok(y.broadcast_add(&val(b, train))?),
            None => Ok(y),
        }
    }
}

/// `x + b` per channel (NCHW), then ReLU if `relu_after`: one fused op.
pub fn bias_act(x: &Tensor, b: &Var, train: bool, relu_after: bool) -> Result<Tensor> {
    Ok(vct_kernels::ops::bias_act(x, &val(b, train), relu_after)?)
}

/// ReLU.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    Ok(vct_kernels::ops::relu(x)?)
}

/// `relu(a + b)` (a residual join), one fused op.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(vct_kernels::ops::add_relu(a, b)?)
}

/// Mean over the spatial dimensions: `[N, C, H, W]` → `[N, C]`, any H×W.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    Ok(x.mean(D::Minus1)?.mean(D::Minus1)?)
}

/// Dropout: zeroes each element with probability `rate` in training and
/// rescales the rest by 1/(1-rate); identity in eval. Masks from a seed.
#[derive(Debug)]
pub struct Dropout {
    rate: f64,
    rng: MaskRng,
}

impl Dropout {
    /// Dropout with `rate`, masks drawn from `rng`.
    pub fn new(rate: f64, rng: MaskRng) -> Dropout {
        Dropout { rate, rng }
    }

    /// Identity in eval or at rate 0.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.rate <= 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 - self.rate;
        let mask: Vec<f32> = self.rng.with(|rng| {
            (0..x.elem_count())
                .map(|_| {
                    if rng.uniform() < keep {
                        (1.0 / keep) as f32
                    } else {
                        0.0
                    }
                })
                .collect()
        });
        let m = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok((x * m)?)
    }
}

/// Stochastic depth: zeroes whole samples of a residual branch with
/// probability `rate` in training and rescales the rest by 1/(1-rate).
#[derive(Debug)]
pub struct DropPath {
    rate: f64,
    rng: MaskRng,
}

impl DropPath {
    /// Drop path with `rate`, masks drawn from `rng`.
    pub fn new(rate: f64, rng: MaskRng) -> DropPath {
        DropPath { rate, rng }
    }

    /// Identity in eval or at rate 0.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.rate <= 0.0 {
            return Ok(x.clone());
        }
        let n = x.dim(0)?;
        let keep = 1.0 - self.rate;
        let mask: Vec<f32> = self.rng.with(|rng| {
            (0..n)
                .map(|_| {
                    if rng.uniform() < keep {
                        (1.0 / keep) as f32
                    } else {
                        0.0
                    }
                })
                .collect()
        });
        let m = Tensor::from_vec(mask, (n, 1, 1, 1), x.device())?.to_dtype(x.dtype())?;
        Ok(x.broadcast_mul(&m)?)
    }
}

// Pooling: vct-kernels' ops, PyTorch semantics and TF "SAME" variants.

/// Max pooling with PyTorch semantics (`nn.MaxPool2d`).
pub fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    ceil_mode: bool,
) -> Result<Tensor> {
    Ok(vct_kernels::pool::max_pool2d(
        x, kernel, stride, padding, ceil_mode,
    )?)
}

/// Average pooling with PyTorch semantics (`nn.AvgPool2d`).
pub fn avg_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    ceil_mode: bool,
    count_include_pad: bool,
) -> Result<Tensor> {
    Ok(vct_kernels::pool::avg_pool2d(
        x,
        kernel,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
    )?)
}

/// Max pooling with TF "SAME" padding (padding never wins the max).
pub fn max_pool2d_same(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    Ok(vct_kernels::pool::max_pool2d_same(x, kernel, stride)?)
}

/// Average pooling with TF "SAME" padding (the divisor counts real elements only).
pub fn avg_pool2d_same(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    Ok(vct_kernels::pool::avg_pool2d_same(x, kernel, stride)?)
}
