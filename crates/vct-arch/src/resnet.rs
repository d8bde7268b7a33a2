//! One ResNet for the whole family: ResNet-18/34/50/101/152 and ResNeXt, as
//! torchvision and timm build it (v1.5: the stride sits on the 3×3 conv), with
//! torchvision's state-dict names, stochastic depth and zero-init residual BN.

use candle_core::Tensor;

use crate::error::{ArchError, Result};
use crate::layers::{self, BatchNorm2d, Conv2d, ConvCfg, DropPath, TORCH_BN};
use crate::params::Scope;
use crate::{Backbone, Tracer};

/// Batch-norm epsilon of every ResNet / ResNeXt layer (torchvision's default).
pub const BN_EPS: f64 = 1e-5;

/// Residual block type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3×3 convs (ResNet-18/34), expansion 1.
    Basic,
    /// 1×1 → 3×3 (grouped for ResNeXt) → 1×1, expansion 4.
    Bottleneck,
}

impl BlockKind {
    fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// Configuration of a ResNet / ResNeXt backbone.
#[derive(Debug, Clone, PartialEq)]
pub struct ResNetConfig {
    /// Block type.
    pub block: BlockKind,
    /// Blocks per stage.
    pub layers: [usize; 4],
    /// Cardinality of the 3×3 conv (32 for ResNeXt 32x4d).
    pub groups: usize,
    /// Width per group (64 for ResNet, 4 for ResNeXt 32x4d).
    pub base_width: usize,
    /// Stochastic depth: the rate grows linearly from 0 at the first block to this at the last (timm).
    pub drop_path_rate: f64,
    /// Start each block's last BN scale at zero, so blocks begin as identities.
    pub zero_init_last_bn: bool,
}

impl ResNetConfig {
    fn plain(block: BlockKind, layers: [usize; 4]) -> ResNetConfig {
        ResNetConfig {
            block,
            layers,
            groups: 1,
            base_width: 64,
            drop_path_rate: 0.0,
            zero_init_last_bn: false,
        }
    }
    /// ResNet-18.
    pub fn resnet18() -> ResNetConfig {
        Self::plain(BlockKind::Basic, [2, 2, 2, 2])
    }
    /// ResNet-34.
    pub fn resnet34() -> ResNetConfig {
        Self::plain(BlockKind::Basic, [3, 4, 6, 3])
    }
    /// ResNet-50.
    pub fn resnet50() -> ResNetConfig {
        Self::plain(BlockKind::Bottleneck, [3, 4, 6, 3])
    }
    /// ResNet-101.
    pub fn resnet101() -> ResNetConfig {
        Self::plain(BlockKind::Bottleneck, [3, 4, 23, 3])
    }
    /// ResNet-152.
    pub fn resnet152() -> ResNetConfig {
        Self::plain(BlockKind::Bottleneck, [3, 8, 36, 3])
    }
    /// ResNeXt-50 32x4d.
    pub fn resnext50_32x4d() -> ResNetConfig {
        ResNetConfig {
            groups: 32,
            base_width: 4,
            ..Self::resnet50()
        }
    }
    /// ResNeXt-101 32x8d.
    pub fn resnext101_32x8d() -> ResNetConfig {
        ResNetConfig {
            groups: 32,
            base_width: 8,
            ..Self::resnet101()
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |key: &str, value: String, expected: &str| {
            Err(ArchError::InvalidConfig {
                key: key.into(),
                value,
                expected: expected.into(),
            })
        };
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return bad(
                "drop_path_rate",
                self.drop_path_rate.to_string(),
                "a rate in [0, 1)",
            );
        }
        if self.groups == 0 || self.base_width == 0 || self.layers.contains(&0) {
            return bad(
                "groups/base_width/layers",
                format!("{self:?}"),
                "all positive",
            );
        }
        if self.block == BlockKind::Basic && (self.groups != 1 || self.base_width != 64) {
            return bad(
                "groups/base_width",
                format!("{}/{}", self.groups, self.base_width),
                "1/64 for basic blocks (as torchvision)",
            );
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Downsample {
    conv: Conv2d,
    bn: BatchNorm2d,
}

#[derive(Debug)]
struct Block {
    convs: Vec<(Conv2d, BatchNorm2d)>,
    downsample: Option<Downsample>,
    drop_path: DropPath,
}

impl Block {
    #[allow(clippy::too_many_arguments)]
    fn new(
        s: &Scope,
        cfg: &ResNetConfig,
        cin: usize,
        planes: usize,
        stride: usize,
        drop_rate: f64,
    ) -> Result<Block> {
        let exp = cfg.block.expansion();
        let cout = planes * exp;
        let last_gamma = if cfg.zero_init_last_bn { 0.0 } else { 1.0 };
        // (cin, cout, kernel, stride, groups) per conv.
        let specs: Vec<(usize, usize, usize, usize, usize)> = match cfg.block {
            BlockKind::Basic => vec![(cin, planes, 3, stride, 1), (planes, planes, 3, 1, 1)],
            BlockKind::Bottleneck => {
                let width = planes * cfg.base_width / 64 * cfg.groups;
                vec![
                    (cin, width, 1, 1, 1),
                    (width, width, 3, stride, cfg.groups),
                    (width, cout, 1, 1, 1),
                ]
            }
        };
        let n = specs.len();
        let mut convs = Vec::with_capacity(n);
        for (i, (ci, co, k, st, g)) in specs.into_iter().enumerate() {
            let conv_cfg = ConvCfg {
                groups: g,
                ..ConvCfg::new(k, st, k / 2)
            };
            let conv = Conv2d::new(&s.pp(format!("conv{}", i + 1)), ci, co, conv_cfg, None)?;
            let gamma = if i + 1 == n { last_gamma } else { 1.0 };
            let bn = BatchNorm2d::new(&s.pp(format!("bn{}", i + 1)), co, TORCH_BN, BN_EPS, gamma)?;
            convs.push((conv, bn));
        }
        let downsample = if stride != 1 || cin != cout {
            let d = s.pp("downsample");
            Some(Downsample {
                conv: Conv2d::new(&d.pp("0"), cin, cout, ConvCfg::new(1, stride, 0), None)?,
                bn: BatchNorm2d::new(&d.pp("1"), cout, TORCH_BN, BN_EPS, 1.0)?,
            })
        } else {
            None
        };
        Ok(Block {
            convs,
            downsample,
            drop_path: DropPath::new(drop_rate, s.store().mask_rng()),
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = x.clone();
        let n = self.convs.len();
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            // The last BN's ReLU comes after the residual sum.
            y = layers::conv_bn(conv, bn, &y, train, i + 1 < n)?;
        }
        let y = self.drop_path.forward(&y, train)?;
        let shortcut = match &self.downsample {
            Some(d) => layers::conv_bn(&d.conv, &d.bn, x, train, false)?,
            None => x.clone(),
        };
        if train {
            layers::add_relu(&y, &shortcut)
        } else {
            // `y` is this block's own new output: the join may overwrite it.
            Ok(vct_kernels::ops::add_relu_in_place(y, &shortcut)?)
        }
    }
}

/// ResNet / ResNeXt backbone: stem, four stages, global average pooling.
#[derive(Debug)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    stages: Vec<Vec<Block>>,
    out_dim: usize,
}

impl ResNet {
    /// Builds the backbone under `s` with torchvision names (`conv1`, `layer1.0.conv1`, ...).
    pub fn new(s: &Scope, cfg: &ResNetConfig) -> Result<ResNet> {
        cfg.validate()?;
        let conv1 = Conv2d::new(&s.pp("conv1"), 3, 64, ConvCfg::new(7, 2, 3), None)?;
        let bn1 = BatchNorm2d::new(&s.pp("bn1"), 64, TORCH_BN, BN_EPS, 1.0)?;
        let total: usize = cfg.layers.iter().sum();
        let mut idx = 0usize;
        let mut cin = 64;
        let mut stages = Vec::with_capacity(4);
        for (si, &nblocks) in cfg.layers.iter().enumerate() {
            let planes = 64 << si;
            let ls = s.pp(format!("layer{}", si + 1));
            let mut blocks = Vec::with_capacity(nblocks);
            for bi in 0..nblocks {
                let stride = if si > 0 && bi == 0 { 2 } else { 1 };
                let rate = if total > 1 {
                    cfg.drop_path_rate * idx as f64 / (total - 1) as f64
                } else {
                    cfg.drop_path_rate
                };
                blocks.push(Block::new(
                    &ls.pp(bi.to_string()),
                    cfg,
                    cin,
                    planes,
                    stride,
                    rate,
                )?);
                cin = planes * cfg.block.expansion();
                idx += 1;
            }
            stages.push(blocks);
        }
        Ok(ResNet {
            conv1,
            bn1,
            stages,
            out_dim: cin,
        })
    }

    /// Feature map before pooling, `[N, out_dim, H/32, W/32]`.
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.features_traced(x, train, &mut |_, _, _| {})
    }

    /// [`ResNet::features`], reporting each layer's name, parameter-name
    /// prefixes and output to `trace`.
    pub fn features_traced(
        &self,
        x: &Tensor,
        train: bool,
        trace: &mut Tracer<'_>,
    ) -> Result<Tensor> {
        let x = layers::conv_bn(&self.conv1, &self.bn1, x, train, true)?;
        trace("conv1+bn1+relu", &["conv1.", "bn1."], &x);
        let mut x = layers::max_pool2d(&x, (3, 3), (2, 2), (1, 1), false)?;
        trace("maxpool", &[], &x);
        for (si, stage) in self.stages.iter().enumerate() {
            for (bi, block) in stage.iter().enumerate() {
                x = block.forward(&x, train)?;
                let name = format!("layer{}.{bi}", si + 1);
                trace(&name, &[&format!("{name}.")], &x);
            }
        }
        Ok(x)
    }
}

impl Backbone for ResNet {
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

impl candle_nn::ModuleT for ResNet {
    /// Embeddings `[N, out_dim]`, as [`Backbone::forward`].
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Ok(Backbone::forward(self, xs, train)?)
    }
}
