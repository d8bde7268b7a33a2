//! The architecture walk: emits a [`Classifier`]'s eval-mode forward pass as
//! ONNX nodes, from its [`ModelConfig`] and the same config tables vct-arch builds
//! from ([`ResNetConfig`], [`InceptionConfig`]'s block table and [`Layout`]'s
//! names), with every conv + batch norm folded. Channel counts and group
//! counts come from the weights' shapes; strides, paddings and pools mirror
//! `resnet.rs` / `inception.rs` (the tract tests hold the two together).

use std::collections::HashMap;

use candle_core::Tensor;
use vct_arch::inception::{BlockSpec, BranchPool, Layout, Role};
use vct_arch::layers::{same_padding, BnNames, SLIM_BN, TORCH_BN};
use vct_arch::resnet::{BlockKind, BN_EPS};
use vct_arch::{Arch, Classifier, HeadKind, InceptionConfig, ResNetConfig};

use crate::error::{ExportError, Result};
use crate::fold::{fold_conv_bn, BatchNorm};
use crate::graph::{attr_int, torch_pool_pads, Fmap, Graph, Pads};

/// The model's tensors by state-dict name, as f32 host values.
pub(crate) struct Weights {
    arch: Arch,
    map: HashMap<String, Tensor>,
}

impl Weights {
    pub fn new(model: &Classifier) -> Weights {
        Weights {
            arch: model.arch(),
            map: model.state_dict().into_iter().collect(),
        }
    }

    /// Values and shape of `name`.
    pub fn get(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let t = self
            .map
            .get(name)
            .ok_or_else(|| ExportError::MissingTensor {
                arch: self.arch.name().into(),
                name: name.into(),
            })?;
        let dims = t.dims().to_vec();
        let values = t
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok((values, dims))
    }

    /// Values of `name`, which must hold `len` of them.
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let (v, dims) = self.get(name)?;
        if v.len() != len {
            return Err(ExportError::BadTensor {
                arch: self.arch.name().into(),
                name: name.into(),
                shape: dims,
                expected: format!("{len} values"),
            });
        }
        Ok(v)
    }

    /// The batch norm under `prefix` with `names`, over `channels`.
    pub fn batch_norm(
        &self,
        prefix: &str,
        names: BnNames,
        eps: f64,
        channels: usize,
    ) -> Result<BatchNorm> {
        let get = |n: &str| self.vector(&format!("{prefix}.{n}"), channels);
        Ok(BatchNorm {
            gamma: names.weight.map(get).transpose()?,
            beta: get(names.bias)?,
            mean: get(names.mean)?,
            var: get(names.var)?,
            eps,
        })
    }
}

/// How a convolution pads.
#[derive(Debug, Clone, Copy)]
enum ConvPad {
    /// PyTorch `padding=p` on every side.
    Torch(usize),
    /// TF "SAME" (extra zero at the bottom/right), at the input's size.
    Same,
}

/// A convolution (optionally with bias) and the batch norm after it.
struct ConvSpec<'a> {
    weight: String,
    bias: Option<String>,
    bn: Option<(String, BnNames, f64)>,
    stride: usize,
    pad: ConvPad,
    relu: bool,
    weights: &'a Weights,
}

impl ConvSpec<'_> {
    fn emit(&self, g: &mut Graph, x: &Fmap) -> Result<Fmap> {
        let (w, dims) = self.weights.get(&self.weight)?;
        let out = dims.first().copied().unwrap_or(0);
        let bias = match &self.bias {
            Some(b) => Some(self.weights.vector(b, out)?),
            None => None,
        };
        let (w, b) = match &self.bn {
            Some((prefix, names, eps)) => {
                let bn = self.weights.batch_norm(prefix, *names, *eps, out)?;
                fold_conv_bn(&w, bias.as_deref(), &bn)
            }
            None => (w, bias.unwrap_or_else(|| vec![0.0; out])),
        };
        let k = |i: usize| dims.get(i).copied().unwrap_or(1);
        let pads: Pads = match self.pad {
            ConvPad::Torch(p) => [p; 4],
            ConvPad::Same => {
                let (_, top, bottom) = same_padding(x.h, k(2), self.stride);
                let (_, left, right) = same_padding(x.w, k(3), self.stride);
                [top, left, bottom, right]
            }
        };
        let layer = self
            .weight
            .trim_end_matches("weights")
            .trim_end_matches("weight");
        let y = g.conv(x, layer, (&w, &dims), &b, self.stride, pads)?;
        Ok(if self.relu { g.relu(&y) } else { y })
    }
}

/// Emits the backbone on `x`; returns the embeddings `[batch, dim]` (named `out` if given).
pub(crate) fn backbone(
    g: &mut Graph,
    model: &Classifier,
    w: &Weights,
    x: &Fmap,
    out: Option<&str>,
) -> Result<String> {
    let arch = model.arch();
    let features = match arch.resnet_config() {
        Some(rc) => resnet(g, &rc, w, x)?,
        None => {
            let ic = match arch {
                Arch::BnInception => InceptionConfig::bn_inception(),
                _ => InceptionConfig::inception_v2(model.config().depth_multiplier),
            };
            inception(g, &ic, w, x)?
        }
    };
    let pooled = g.node("GlobalAveragePool", &[&features.name], vec![], None);
    Ok(g.node("Flatten", &[&pooled], vec![attr_int("axis", 1)], out))
}

/// The conv + batch norm pair `conv_name` / `bn_name` of a ResNet (PyTorch padding `k / 2`).
fn resnet_conv<'a>(
    w: &'a Weights,
    conv: &str,
    bn: &str,
    stride: usize,
    pad: usize,
    relu: bool,
) -> ConvSpec<'a> {
    ConvSpec {
        weight: format!("{conv}.weight"),
        bias: None,
        bn: Some((bn.to_string(), TORCH_BN, BN_EPS)),
        stride,
        pad: ConvPad::Torch(pad),
        relu,
        weights: w,
    }
}

fn kernel_of(w: &Weights, weight: &str) -> Result<usize> {
    let (_, dims) = w.get(weight)?;
    Ok(dims.get(2).copied().unwrap_or(1))
}

/// ResNet / ResNeXt as `resnet.rs` builds it: stem, four stages of blocks
/// (v1.5: the stride on the 3×3 conv), a projection shortcut where the shape changes.
fn resnet(g: &mut Graph, cfg: &ResNetConfig, w: &Weights, x: &Fmap) -> Result<Fmap> {
    let x = resnet_conv(w, "conv1", "bn1", 2, 3, true).emit(g, x)?;
    let pads = torch_pads_2d(g, &x, 3, 2, 1, false, (0, 0))?;
    let mut x = g.pool(&x, None, 3, 2, pads)?;
    for (si, &blocks) in cfg.layers.iter().enumerate() {
        for bi in 0..blocks {
            let prefix = format!("layer{}.{bi}", si + 1);
            let stride = if si > 0 && bi == 0 { 2 } else { 1 };
            let convs = match cfg.block {
                BlockKind::Basic => vec![stride, 1],
                BlockKind::Bottleneck => vec![1, stride, 1],
            };
            let mut y = x.clone();
            for (i, &st) in convs.iter().enumerate() {
                let conv = format!("{prefix}.conv{}", i + 1);
                let k = kernel_of(w, &format!("{conv}.weight"))?;
                // The last BN's ReLU comes after the residual sum.
                let relu = i + 1 < convs.len();
                let bn = format!("{prefix}.bn{}", i + 1);
                y = resnet_conv(w, &conv, &bn, st, k / 2, relu).emit(g, &y)?;
            }
            let shortcut = if stride != 1 || x.c != y.c {
                let d = format!("{prefix}.downsample");
                resnet_conv(w, &format!("{d}.0"), &format!("{d}.1"), stride, 0, false)
                    .emit(g, &x)?
            } else {
                x.clone()
            };
            x = g.add_relu(&y, &shortcut);
        }
    }
    Ok(x)
}

/// Pads of a pool over `x` along each side separately (non-square maps).
fn torch_pads_2d(
    g: &Graph,
    x: &Fmap,
    kernel: usize,
    stride: usize,
    pad: usize,
    ceil: bool,
    extend: (usize, usize),
) -> Result<Pads> {
    let one = |size: usize, ext: usize| {
        torch_pool_pads(size + ext, kernel, stride, pad, ceil)
            .map(|(b, a)| (b, a + ext))
            .ok_or_else(|| ExportError::InputTooSmall {
                input: g.input_desc.clone(),
                layer: format!("pool after {}", x.name),
                size,
                kernel,
            })
    };
    let (t, b) = one(x.h, extend.0)?;
    let (l, r) = one(x.w, extend.1)?;
    Ok([t, l, b, r])
}

fn same_pads(x: &Fmap, kernel: usize, stride: usize) -> Pads {
    let (_, t, b) = same_padding(x.h, kernel, stride);
    let (_, l, r) = same_padding(x.w, kernel, stride);
    [t, l, b, r]
}

/// The conv + batch norm + ReLU at `path` in `layout` (`ConvBn` of `inception.rs`).
fn inception_conv<'a>(
    w: &'a Weights,
    layout: Layout,
    path: &str,
    stride: usize,
) -> Result<ConvSpec<'a>> {
    Ok(match layout {
        Layout::Pretrainedmodels => {
            let weight = format!("{path}.weight");
            let k = kernel_of(w, &weight)?;
            ConvSpec {
                weight,
                bias: Some(format!("{path}.bias")),
                bn: Some((format!("{path}_bn"), TORCH_BN, layout.bn_eps())),
                stride,
                pad: ConvPad::Torch(k / 2),
                relu: true,
                weights: w,
            }
        }
        Layout::TfSlim => ConvSpec {
            weight: format!("{path}.weights"),
            bias: None,
            bn: Some((format!("{path}.BatchNorm"), SLIM_BN, layout.bn_eps())),
            stride,
            pad: ConvPad::Same,
            relu: true,
            weights: w,
        },
    })
}

/// 3×3 stride-2 max pool between stages: ceil mode (pretrainedmodels) or SAME.
/// `replicate_odd`: the pool branch of a reduction block, where vct-arch first
/// appends one replicated row / column to odd sides; that copy of the last
/// element never changes a maximum whose window also holds the original, so it
/// is the same as end padding that no maximum picks.
fn down_pool(g: &mut Graph, layout: Layout, x: &Fmap, replicate_odd: bool) -> Result<Fmap> {
    let pads = match layout {
        Layout::Pretrainedmodels => {
            let ext = if replicate_odd {
                (x.h % 2, x.w % 2)
            } else {
                (0, 0)
            };
            torch_pads_2d(g, x, 3, 2, 0, true, ext)?
        }
        Layout::TfSlim => same_pads(x, 3, 2),
    };
    g.pool(x, None, 3, 2, pads)
}

/// The 3×3 stride-1 pool of a regular block's fourth branch.
fn branch_pool(g: &mut Graph, layout: Layout, x: &Fmap, pool: BranchPool) -> Result<Fmap> {
    let avg = match pool {
        BranchPool::Avg => Some(layout == Layout::Pretrainedmodels),
        BranchPool::Max => None,
    };
    let pads = match layout {
        // Stride 1: ceil mode adds no overhang, so PyTorch's pad 1 is the whole story
        // (and count_include_pad=True divides by 9 everywhere, as ONNX's flag does).
        Layout::Pretrainedmodels => torch_pads_2d(g, x, 3, 1, 1, true, (0, 0))?,
        // SAME: the divisor counts real elements only.
        Layout::TfSlim => same_pads(x, 3, 1),
    };
    g.pool(x, avg, 3, 1, pads)
}

/// BN-Inception / Inception-v2 as `inception.rs` builds it: the layout's stem,
/// then the block table.
fn inception(g: &mut Graph, cfg: &InceptionConfig, w: &Weights, x: &Fmap) -> Result<Fmap> {
    let layout = cfg.layout;
    let conv = |g: &mut Graph, path: &str, stride: usize, x: &Fmap| -> Result<Fmap> {
        inception_conv(w, layout, path, stride)?.emit(g, x)
    };
    let mut x = match layout {
        Layout::Pretrainedmodels => {
            let x = conv(g, "conv1_7x7_s2", 2, x)?;
            let x = down_pool(g, layout, &x, false)?;
            let x = conv(g, "conv2_3x3_reduce", 1, &x)?;
            let x = conv(g, "conv2_3x3", 1, &x)?;
            down_pool(g, layout, &x, false)?
        }
        Layout::TfSlim => {
            // Separable 7×7/2: depthwise (no bias), pointwise with bias, ReLU; no BN.
            let depthwise = ConvSpec {
                weight: "Conv2d_1a_7x7.depthwise_weights".into(),
                bias: None,
                bn: None,
                stride: 2,
                pad: ConvPad::Same,
                relu: false,
                weights: w,
            };
            let pointwise = ConvSpec {
                weight: "Conv2d_1a_7x7.pointwise_weights".into(),
                bias: Some("Conv2d_1a_7x7.biases".into()),
                bn: None,
                stride: 1,
                pad: ConvPad::Same,
                relu: true,
                weights: w,
            };
            let x = depthwise.emit(g, x)?;
            let x = pointwise.emit(g, &x)?;
            let x = down_pool(g, layout, &x, false)?;
            let x = conv(g, "Conv2d_2b_1x1", 1, &x)?;
            let x = conv(g, "Conv2d_2c_3x3", 1, &x)?;
            down_pool(g, layout, &x, false)?
        }
    };
    for spec in &cfg.blocks {
        let (name, reduce) = match *spec {
            BlockSpec::Mixed { name, .. } => (name, false),
            BlockSpec::Reduce { name, .. } => (name, true),
        };
        let path = |role: Role| layout.conv_path(name, role, reduce);
        // Reduction blocks put the stride on each branch's last 3×3.
        let st = if reduce { 2 } else { 1 };
        let mut outs = Vec::with_capacity(4);
        if !reduce {
            outs.push(conv(g, &path(Role::One), 1, &x)?);
        }
        let t = conv(g, &path(Role::ThreeReduce), 1, &x)?;
        outs.push(conv(g, &path(Role::Three), st, &t)?);
        let d = conv(g, &path(Role::DoubleReduce), 1, &x)?;
        let d = conv(g, &path(Role::Double1), 1, &d)?;
        outs.push(conv(g, &path(Role::Double2), st, &d)?);
        outs.push(match *spec {
            BlockSpec::Mixed { pool, .. } => {
                let p = branch_pool(g, layout, &x, pool)?;
                conv(g, &path(Role::PoolProj), 1, &p)?
            }
            BlockSpec::Reduce { .. } => down_pool(g, layout, &x, true)?,
        });
        x = g.concat_channels(&outs)?;
    }
    Ok(x)
}

/// Emits the head on `emb` (`dim` wide); returns the logits `[batch, classes]`.
pub(crate) fn head(g: &mut Graph, model: &Classifier, w: &Weights, emb: &str) -> Result<String> {
    let classes = model.num_classes();
    let dim = model.out_dim();
    match model.config().head {
        HeadKind::Linear => {
            let (wn, bn) = model.arch().family().linear_head_names();
            let weight = w.vector(wn, classes * dim)?;
            let bias = w.vector(bn, classes)?;
            let wi = g.init_f32("head.weight", &[classes, dim], &weight);
            let bi = g.init_f32("head.bias", &[classes], &bias);
            Ok(gemm(g, emb, &wi, &bi))
        }
        HeadKind::NormEmbed { .. } => {
            // logits = s · ⟨e/‖e‖, w_c/‖w_c‖⟩ + b_c (heads.rs); the class weights
            // are constants, so they are normalised and scaled here once.
            let weight = w.vector("embed_head.weight", classes * dim)?;
            let bias = w.vector("embed_head.bias", classes)?;
            let scale = f64::from(w.vector("embed_head.scale", 1)?[0]);
            let mut folded = Vec::with_capacity(weight.len());
            for row in weight.chunks(dim) {
                let norm = row
                    .iter()
                    .map(|&v| f64::from(v).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let norm = norm.max(1e-12);
                folded.extend(row.iter().map(|&v| (f64::from(v) / norm * scale) as f32));
            }
            let wi = g.init_f32("head.normalized_weight", &[classes, dim], &folded);
            let bi = g.init_f32("head.bias", &[classes], &bias);
            let sq = g.node("Mul", &[emb, emb], vec![], None);
            let axes = g.init_i64("head.norm_axes", &[1], &[1]);
            let sum = g.node(
                "ReduceSum",
                &[&sq, &axes],
                vec![attr_int("keepdims", 1)],
                None,
            );
            let norm = g.node("Sqrt", &[&sum], vec![], None);
            // l2_normalize's floor against division by zero.
            let floor = g.init_f32("head.norm_floor", &[], &[1e-12]);
            let norm = g.node("Max", &[&norm, &floor], vec![], None);
            let unit = g.node("Div", &[emb, &norm], vec![], None);
            Ok(gemm(g, &unit, &wi, &bi))
        }
    }
}

fn gemm(g: &mut Graph, x: &str, w: &str, b: &str) -> String {
    g.node("Gemm", &[x, w, b], vec![attr_int("transB", 1)], None)
}
