//! One Inception-BN builder for BN-Inception (Ioffe & Szegedy 2015) in the
//! `pretrainedmodels` layout and Inception-v2 in the TF-slim layout.
//!
//! Both networks are the same kind of stack: a stem, then inception blocks
//! described by a table of channel counts ([`BN_INCEPTION_BLOCKS`],
//! [`INCEPTION_V2_BLOCKS`]). A [`Layout`] says how tensors are named and how
//! convolutions and pools pad (PyTorch with ceil-mode pools vs TF "SAME").

use candle_core::Tensor;

use crate::error::{ArchError, Result};
use crate::layers::{self, BatchNorm2d, Conv2d, ConvCfg, Padding, SLIM_BN, TORCH_BN};
use crate::params::{Init, Scope};
use crate::{Backbone, Tracer};

/// Pooling of the fourth branch of a regular block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchPool {
    /// 3×3 average pool, stride 1.
    Avg,
    /// 3×3 max pool, stride 1.
    Max,
}

/// One inception block: channel counts of its branches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockSpec {
    /// Four branches, stride 1: 1×1; 1×1→3×3; 1×1→3×3→3×3; pool→1×1.
    Mixed {
        /// Block name in the layout (`3a` / `Mixed_3b`).
        name: &'static str,
        /// 1×1 branch output.
        b1: usize,
        /// 3×3 branch: reduce, output.
        b3: (usize, usize),
        /// Double 3×3 branch: reduce, output (of both 3×3 convs).
        d3: (usize, usize),
        /// Pool type of the fourth branch.
        pool: BranchPool,
        /// 1×1 projection after the pool.
        proj: usize,
    },
    /// Three branches, stride 2: 1×1→3×3/2; 1×1→3×3→3×3/2; max pool 3×3/2.
    Reduce {
        /// Block name in the layout.
        name: &'static str,
        /// 3×3 branch: reduce, output.
        b3: (usize, usize),
        /// Double 3×3 branch: reduce, output.
        d3: (usize, usize),
    },
}

use BlockSpec::{Mixed, Reduce};
use BranchPool::{Avg, Max};

/// BN-Inception's blocks, as in `pretrainedmodels.bninception` (input 192 channels).
#[rustfmt::skip]
pub const BN_INCEPTION_BLOCKS: [BlockSpec; 10] = [
    Mixed { name: "3a", b1: 64, b3: (64, 64), d3: (64, 96), pool: Avg, proj: 32 },
    Mixed { name: "3b", b1: 64, b3: (64, 96), d3: (64, 96), pool: Avg, proj: 64 },
    Reduce { name: "3c", b3: (128, 160), d3: (64, 96) },
    Mixed { name: "4a", b1: 224, b3: (64, 96), d3: (96, 128), pool: Avg, proj: 128 },
    Mixed { name: "4b", b1: 192, b3: (96, 128), d3: (96, 128), pool: Avg, proj: 128 },
    Mixed { name: "4c", b1: 160, b3: (128, 160), d3: (128, 160), pool: Avg, proj: 128 },
    Mixed { name: "4d", b1: 96, b3: (128, 192), d3: (160, 192), pool: Avg, proj: 128 },
    Reduce { name: "4e", b3: (128, 192), d3: (192, 256) },
    Mixed { name: "5a", b1: 352, b3: (192, 320), d3: (160, 224), pool: Avg, proj: 128 },
    Mixed { name: "5b", b1: 352, b3: (192, 320), d3: (192, 224), pool: Max, proj: 128 },
];

/// Inception-v2's blocks, as in TF-slim `inception_v2_base` (before the depth multiplier).
/// Block for block the same channel counts as BN-Inception except the pool
/// projections of `Mixed_4d` and `Mixed_4e` (96 in TF-slim, where BN-Inception's
/// `4c` and `4d` have 128).
#[rustfmt::skip]
pub const INCEPTION_V2_BLOCKS: [BlockSpec; 10] = [
    Mixed { name: "Mixed_3b", b1: 64, b3: (64, 64), d3: (64, 96), pool: Avg, proj: 32 },
    Mixed { name: "Mixed_3c", b1: 64, b3: (64, 96), d3: (64, 96), pool: Avg, proj: 64 },
    Reduce { name: "Mixed_4a", b3: (128, 160), d3: (64, 96) },
    Mixed { name: "Mixed_4b", b1: 224, b3: (64, 96), d3: (96, 128), pool: Avg, proj: 128 },
    Mixed { name: "Mixed_4c", b1: 192, b3: (96, 128), d3: (96, 128), pool: Avg, proj: 128 },
    Mixed { name: "Mixed_4d", b1: 160, b3: (128, 160), d3: (128, 160), pool: Avg, proj: 96 },
    Mixed { name: "Mixed_4e", b1: 96, b3: (128, 192), d3: (160, 192), pool: Avg, proj: 96 },
    Reduce { name: "Mixed_5a", b3: (128, 192), d3: (192, 256) },
    Mixed { name: "Mixed_5b", b1: 352, b3: (192, 320), d3: (160, 224), pool: Avg, proj: 128 },
    Mixed { name: "Mixed_5c", b1: 352, b3: (192, 320), d3: (192, 224), pool: Max, proj: 128 },
];

/// How a network is named and padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `pretrainedmodels` BN-Inception: `inception_3a_1x1` + `inception_3a_1x1_bn`,
    /// conv biases, BN eps 1e-5, ceil-mode max pools, pad-counting avg pools.
    Pretrainedmodels,
    /// TF-slim: `Mixed_3b.Branch_0.Conv2d_0a_1x1.weights` + `.BatchNorm.beta`,
    /// no conv biases, BN without scale, eps 1e-3, "SAME" padding everywhere.
    TfSlim,
}

/// Role of a conv inside a block (names differ by layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The 1×1 branch.
    One,
    /// The 3×3 branch's 1×1 reduction.
    ThreeReduce,
    /// The 3×3 branch's 3×3 conv (stride 2 in reduction blocks).
    Three,
    /// The double-3×3 branch's 1×1 reduction.
    DoubleReduce,
    /// The double-3×3 branch's first 3×3 conv.
    Double1,
    /// The double-3×3 branch's second 3×3 conv (stride 2 in reduction blocks).
    Double2,
    /// The 1×1 projection after the pool branch's pool.
    PoolProj,
}

impl Layout {
    /// Prefix shared by every tensor name of block `block`.
    fn block_prefix(self, block: &str) -> String {
        match self {
            Layout::Pretrainedmodels => format!("inception_{block}_"),
            Layout::TfSlim => format!("{block}."),
        }
    }

    /// Batch-norm epsilon of every layer: 1e-5 (PyTorch) or 1e-3 (TF-slim).
    pub fn bn_eps(self) -> f64 {
        match self {
            Layout::Pretrainedmodels => 1e-5,
            Layout::TfSlim => 1e-3,
        }
    }

    /// Scope path of a conv in block `block` with `role` (`reduce`: a
    /// [`BlockSpec::Reduce`] block); for exporters that walk the block table.
    pub fn conv_path(self, block: &str, role: Role, reduce: bool) -> String {
        match self {
            Layout::Pretrainedmodels => {
                let r = match role {
                    Role::One => "1x1",
                    Role::ThreeReduce => "3x3_reduce",
                    Role::Three => "3x3",
                    Role::DoubleReduce => "double_3x3_reduce",
                    Role::Double1 => "double_3x3_1",
                    Role::Double2 => "double_3x3_2",
                    Role::PoolProj => "pool_proj",
                };
                format!("inception_{block}_{r}")
            }
            Layout::TfSlim => {
                // Reduce blocks have no 1×1 branch, so their branch numbers shift by one.
                let off = usize::from(reduce);
                let (branch, conv) = match role {
                    Role::One => (0, "Conv2d_0a_1x1"),
                    Role::ThreeReduce => (1, "Conv2d_0a_1x1"),
                    Role::Three => (
                        1,
                        if reduce {
                            "Conv2d_1a_3x3"
                        } else {
                            "Conv2d_0b_3x3"
                        },
                    ),
                    Role::DoubleReduce => (2, "Conv2d_0a_1x1"),
                    Role::Double1 => (2, "Conv2d_0b_3x3"),
                    Role::Double2 => (
                        2,
                        if reduce {
                            "Conv2d_1a_3x3"
                        } else {
                            "Conv2d_0c_3x3"
                        },
                    ),
                    Role::PoolProj => (3, "Conv2d_0b_1x1"),
                };
                format!("{block}.Branch_{}.{conv}", branch - off)
            }
        }
    }
}

/// Conv + BN + ReLU, named per layout.
#[derive(Debug)]
struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl ConvBn {
    fn new(
        root: &Scope,
        layout: Layout,
        path: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
    ) -> Result<ConvBn> {
        match layout {
            Layout::Pretrainedmodels => {
                let cfg = ConvCfg {
                    bias: true,
                    ..ConvCfg::new(k, stride, k / 2)
                };
                Ok(ConvBn {
                    conv: Conv2d::new(&root.pp(path), cin, cout, cfg, None)?,
                    bn: BatchNorm2d::new(
                        &root.pp(format!("{path}_bn")),
                        cout,
                        TORCH_BN,
                        layout.bn_eps(),
                        1.0,
                    )?,
                })
            }
            Layout::TfSlim => {
                let s = root.pp(path);
                let cfg = ConvCfg {
                    padding: Padding::Same,
                    ..ConvCfg::new(k, stride, 0)
                };
                // slim.variance_scaling_initializer(): factor 2, fan_in, truncated normal.
                let std = (2.0 / (cin * k * k) as f64).sqrt();
                Ok(ConvBn {
                    conv: Conv2d::named(
                        &s,
                        "weights",
                        "biases",
                        cin,
                        cout,
                        cfg,
                        Init::TruncNormal(std),
                    )?,
                    bn: BatchNorm2d::new(&s.pp("BatchNorm"), cout, SLIM_BN, layout.bn_eps(), 1.0)?,
                })
            }
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        // A conv bias is absorbed by the batch norm (no per-element add).
        layers::conv_bn(&self.conv, &self.bn, x, train, true)
    }
}

/// A built block: the 1×1 and pool branches exist only in regular blocks;
/// their absence makes it a stride-2 reduction block.
#[derive(Debug)]
struct Block {
    /// Parameter-name prefix (`inception_3a_` / `Mixed_3b.`).
    prefix: String,
    one: Option<ConvBn>,
    three: [ConvBn; 2],
    double: [ConvBn; 3],
    pool: Option<(BranchPool, ConvBn)>,
}

#[derive(Debug)]
enum Stem {
    /// conv 7×7/2 → max pool → conv 1×1 → conv 3×3 → max pool, every conv with BN.
    Bn {
        conv1: ConvBn,
        conv2_reduce: ConvBn,
        conv2: ConvBn,
    },
    /// TF-slim: separable 7×7/2 (depthwise, pointwise, bias, ReLU; no BN) → max pool →
    /// conv 1×1 → conv 3×3 → max pool.
    Slim {
        depthwise: Conv2d,
        pointwise: Conv2d,
        conv2b: ConvBn,
        conv2c: ConvBn,
    },
}

/// Configuration of an Inception-BN network.
#[derive(Debug, Clone, PartialEq)]
pub struct InceptionConfig {
    /// Naming and padding convention.
    pub layout: Layout,
    /// The block table.
    pub blocks: Vec<BlockSpec>,
    /// TF-slim channel multiplier: every conv gets `max(int(d * m), 16)` channels (1.0 = none).
    pub depth_multiplier: f64,
}

impl InceptionConfig {
    /// BN-Inception, `pretrainedmodels` layout.
    pub fn bn_inception() -> InceptionConfig {
        InceptionConfig {
            layout: Layout::Pretrainedmodels,
            blocks: BN_INCEPTION_BLOCKS.to_vec(),
            depth_multiplier: 1.0,
        }
    }

    /// Inception-v2, TF-slim layout, with a depth multiplier.
    pub fn inception_v2(depth_multiplier: f64) -> InceptionConfig {
        InceptionConfig {
            layout: Layout::TfSlim,
            blocks: INCEPTION_V2_BLOCKS.to_vec(),
            depth_multiplier,
        }
    }

    fn depth(&self, d: usize) -> usize {
        match self.layout {
            Layout::Pretrainedmodels => d,
            // TF-slim: depth = lambda d: max(int(d * depth_multiplier), min_depth=16)
            Layout::TfSlim => ((d as f64 * self.depth_multiplier) as usize).max(16),
        }
    }
}

/// BN-Inception / Inception-v2 backbone with global average pooling.
#[derive(Debug)]
pub struct Inception {
    layout: Layout,
    stem: Stem,
    blocks: Vec<Block>,
    out_dim: usize,
}

impl Inception {
    /// Builds the backbone under `s`.
    pub fn new(s: &Scope, cfg: &InceptionConfig) -> Result<Inception> {
        if !(cfg.depth_multiplier > 0.0 && cfg.depth_multiplier.is_finite()) {
            return Err(ArchError::InvalidConfig {
                key: "depth_multiplier".into(),
                value: cfg.depth_multiplier.to_string(),
                expected: "a finite number > 0".into(),
            });
        }
        let layout = cfg.layout;
        let d = |c: usize| cfg.depth(c);
        let stem = match layout {
            Layout::Pretrainedmodels => Stem::Bn {
                conv1: ConvBn::new(s, layout, "conv1_7x7_s2", 3, 64, 7, 2)?,
                conv2_reduce: ConvBn::new(s, layout, "conv2_3x3_reduce", 64, 64, 1, 1)?,
                conv2: ConvBn::new(s, layout, "conv2_3x3", 64, 192, 3, 1)?,
            },
            Layout::TfSlim => {
                let st = s.pp("Conv2d_1a_7x7");
                let c64 = d(64);
                let mult = (c64 / 3).min(8);
                let dw_cfg = ConvCfg {
                    padding: Padding::Same,
                    groups: 3,
                    ..ConvCfg::new(7, 2, 0)
                };
                let pw_cfg = ConvCfg {
                    bias: true,
                    ..ConvCfg::new(1, 1, 0)
                };
                Stem::Slim {
                    depthwise: Conv2d::named(
                        &st,
                        "depthwise_weights",
                        "",
                        3,
                        3 * mult,
                        dw_cfg,
                        Init::TruncNormal(1.0),
                    )?,
                    pointwise: Conv2d::named(
                        &st,
                        "pointwise_weights",
                        "biases",
                        3 * mult,
                        c64,
                        pw_cfg,
                        Init::TruncNormal(1.0),
                    )?,
                    conv2b: ConvBn::new(s, layout, "Conv2d_2b_1x1", c64, d(64), 1, 1)?,
                    conv2c: ConvBn::new(s, layout, "Conv2d_2c_3x3", d(64), d(192), 3, 1)?,
                }
            }
        };
        let mut cin = d(192);
        let mut blocks = Vec::with_capacity(cfg.blocks.len());
        for spec in &cfg.blocks {
            let mk = |name: &str,
                      role: Role,
                      reduce: bool,
                      ci: usize,
                      co: usize,
                      k: usize,
                      st: usize| {
                ConvBn::new(
                    s,
                    layout,
                    &layout.conv_path(name, role, reduce),
                    ci,
                    co,
                    k,
                    st,
                )
            };
            match *spec {
                BlockSpec::Mixed {
                    name,
                    b1,
                    b3,
                    d3,
                    pool,
                    proj,
                } => {
                    let (b1, b3, d3, proj) =
                        (d(b1), (d(b3.0), d(b3.1)), (d(d3.0), d(d3.1)), d(proj));
                    blocks.push(Block {
                        prefix: layout.block_prefix(name),
                        one: Some(mk(name, Role::One, false, cin, b1, 1, 1)?),
                        three: [
                            mk(name, Role::ThreeReduce, false, cin, b3.0, 1, 1)?,
                            mk(name, Role::Three, false, b3.0, b3.1, 3, 1)?,
                        ],
                        double: [
                            mk(name, Role::DoubleReduce, false, cin, d3.0, 1, 1)?,
                            mk(name, Role::Double1, false, d3.0, d3.1, 3, 1)?,
                            mk(name, Role::Double2, false, d3.1, d3.1, 3, 1)?,
                        ],
                        pool: Some((pool, mk(name, Role::PoolProj, false, cin, proj, 1, 1)?)),
                    });
                    cin = b1 + b3.1 + d3.1 + proj;
                }
                BlockSpec::Reduce { name, b3, d3 } => {
                    let (b3, d3) = ((d(b3.0), d(b3.1)), (d(d3.0), d(d3.1)));
                    blocks.push(Block {
                        prefix: layout.block_prefix(name),
                        one: None,
                        three: [
                            mk(name, Role::ThreeReduce, true, cin, b3.0, 1, 1)?,
                            mk(name, Role::Three, true, b3.0, b3.1, 3, 2)?,
                        ],
                        double: [
                            mk(name, Role::DoubleReduce, true, cin, d3.0, 1, 1)?,
                            mk(name, Role::Double1, true, d3.0, d3.1, 3, 1)?,
                            mk(name, Role::Double2, true, d3.1, d3.1, 3, 2)?,
                        ],
                        pool: None,
                    });
                    cin += b3.1 + d3.1;
                }
            }
        }
        Ok(Inception {
            layout,
            stem,
            blocks,
            out_dim: cin,
        })
    }

    /// 3×3 stride-2 max pool between stages (ceil mode / SAME).
    fn down_pool(&self, x: &Tensor) -> Result<Tensor> {
        match self.layout {
            Layout::Pretrainedmodels => layers::max_pool2d(x, (3, 3), (2, 2), (0, 0), true),
            Layout::TfSlim => layers::max_pool2d_same(x, 3, 2),
        }
    }

    /// The pool branch of a reduction block. Its 3×3/2 convs (pad 1) give
    /// ceil(n/2), the ceil-mode pool (pad 0) gives ceil((n-1)/2): equal for even
    /// n only, and `pretrainedmodels` (like the Caffe original) fails to
    /// concatenate at odd sizes (e.g. 3c sees 3×3 at a 48×48 input). Odd sides get
    /// one replicated row/column at the end first, so the last window (starting at
    /// the last element) exists; its maximum is that element, as with −∞ padding.
    /// Even sizes, 224 among them, are unchanged.
    fn reduce_pool(&self, x: &Tensor) -> Result<Tensor> {
        if self.layout != Layout::Pretrainedmodels {
            return self.down_pool(x);
        }
        let (_, _, h, w) = x.dims4()?;
        let x = x.pad_with_same(2, 0, h % 2)?.pad_with_same(3, 0, w % 2)?;
        self.down_pool(&x)
    }

    fn branch_pool(&self, x: &Tensor, pool: BranchPool) -> Result<Tensor> {
        match (self.layout, pool) {
            (Layout::Pretrainedmodels, BranchPool::Avg) => {
                layers::avg_pool2d(x, (3, 3), (1, 1), (1, 1), true, true)
            }
            (Layout::Pretrainedmodels, BranchPool::Max) => {
                layers::max_pool2d(x, (3, 3), (1, 1), (1, 1), true)
            }
            (Layout::TfSlim, BranchPool::Avg) => layers::avg_pool2d_same(x, 3, 1),
            (Layout::TfSlim, BranchPool::Max) => layers::max_pool2d_same(x, 3, 1),
        }
    }

    /// Feature map of the last block (`inception_5b` / `Mixed_5c` concat).
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.features_traced(x, train, &mut |_, _, _| {})
    }

    /// [`Inception::features`], reporting each layer's name, parameter-name
    /// prefixes and output to `trace`.
    pub fn features_traced(
        &self,
        x: &Tensor,
        train: bool,
        trace: &mut Tracer<'_>,
    ) -> Result<Tensor> {
        let mut x = match &self.stem {
            Stem::Bn {
                conv1,
                conv2_reduce,
                conv2,
            } => {
                let x = conv1.forward(x, train)?;
                trace("conv1_7x7_s2", &["conv1_7x7_s2"], &x);
                let x = self.down_pool(&x)?;
                trace("pool1_3x3_s2", &[], &x);
                let x = conv2_reduce.forward(&x, train)?;
                trace("conv2_3x3_reduce", &["conv2_3x3_reduce"], &x);
                let x = conv2.forward(&x, train)?;
                trace("conv2_3x3", &["conv2_3x3.", "conv2_3x3_bn."], &x);
                let x = self.down_pool(&x)?;
                trace("pool2_3x3_s2", &[], &x);
                x
            }
            Stem::Slim {
                depthwise,
                pointwise,
                conv2b,
                conv2c,
            } => {
                let x = pointwise.forward_no_bias(&depthwise.forward(x, train)?, train)?;
                let x = match pointwise.bias() {
                    Some(b) => layers::bias_act(&x, b, train, true)?,
                    None => layers::relu(&x)?,
                };
                trace("Conv2d_1a_7x7", &["Conv2d_1a_7x7."], &x);
                let x = self.down_pool(&x)?;
                trace("MaxPool_2a_3x3", &[], &x);
                let x = conv2b.forward(&x, train)?;
                trace("Conv2d_2b_1x1", &["Conv2d_2b_1x1."], &x);
                let x = conv2c.forward(&x, train)?;
                trace("Conv2d_2c_3x3", &["Conv2d_2c_3x3."], &x);
                let x = self.down_pool(&x)?;
                trace("MaxPool_3a_3x3", &[], &x);
                x
            }
        };
        for block in &self.blocks {
            let mut outs = Vec::with_capacity(4);
            if let Some(one) = &block.one {
                outs.push(one.forward(&x, train)?);
            }
            outs.push(block.three[1].forward(&block.three[0].forward(&x, train)?, train)?);
            let mut c = x.clone();
            for conv in &block.double {
                c = conv.forward(&c, train)?;
            }
            outs.push(c);
            outs.push(match &block.pool {
                Some((pool, proj)) => proj.forward(&self.branch_pool(&x, *pool)?, train)?,
                None => self.reduce_pool(&x)?,
            });
            x = Tensor::cat(&outs, 1)?;
            trace(
                block.prefix.trim_end_matches(['_', '.']),
                &[&block.prefix],
                &x,
            );
        }
        Ok(x)
    }
}

impl Backbone for Inception {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        layers::global_avg_pool(&self.features(x, train)?)
    }

    fn out_dim(&self) -> usize {
        self.out_dim
    }

    fn forward_traced(&self, x: &Tensor, train: bool, trace: &mut Tracer<'_>) -> Result<Tensor> {
        layers::global_avg_pool(&self.features_traced(x, train, trace)?)
    }
}

impl candle_nn::ModuleT for Inception {
    /// Embeddings `[N, out_dim]`, as [`Backbone::forward`].
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Ok(Backbone::forward(self, xs, train)?)
    }
}
