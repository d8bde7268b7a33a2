"""PyTorch builds of the Inception networks for the speed comparisons in bench/.

- `bninception(classes)`: `pretrainedmodels.bninception` with global average pooling
  (its fixed 7×7 pool works at 224 only), as vct's BN-Inception.
- `inception_v2(classes, depth_multiplier)`: a port of TF-slim's `inception_v2` as
  `crates/vct-arch/src/inception.rs` builds it (torchvision and timm have no Inception-v2):
  a depthwise-separable 7×7/2 stem (depthwise ×8, pointwise with bias, ReLU, no batch
  norm), TF "SAME" padding everywhere (timm's `Conv2dSame` / `MaxPool2dSame`), average
  pools that divide by the real elements only, convolutions without bias followed by a
  scale-free batch norm (eps 1e-3) and ReLU, and the blocks of `INCEPTION_V2_BLOCKS`.
  `python bench/torch_inception.py` prints its parameter count, which must equal
  `cargo xtask arch inception_v2`'s.
"""
import torch
from torch import nn
from timm.layers import create_conv2d, create_pool2d

# (name, b1, (b3 reduce, b3), (d3 reduce, d3), pool, proj); Reduce blocks have b1 None.
INCEPTION_V2_BLOCKS = [
    ("Mixed_3b", 64, (64, 64), (64, 96), "avg", 32),
    ("Mixed_3c", 64, (64, 96), (64, 96), "avg", 64),
    ("Mixed_4a", None, (128, 160), (64, 96), None, None),
    ("Mixed_4b", 224, (64, 96), (96, 128), "avg", 128),
    ("Mixed_4c", 192, (96, 128), (96, 128), "avg", 128),
    ("Mixed_4d", 160, (128, 160), (128, 160), "avg", 96),
    ("Mixed_4e", 96, (128, 192), (160, 192), "avg", 96),
    ("Mixed_5a", None, (128, 192), (192, 256), None, None),
    ("Mixed_5b", 352, (192, 320), (160, 224), "avg", 128),
    ("Mixed_5c", 352, (192, 320), (192, 224), "max", 128),
]


class ConvBn(nn.Sequential):
    """TF-slim conv2d: no bias, batch norm without scale (eps 1e-3), ReLU."""

    def __init__(self, cin, cout, k, stride=1):
        bn = nn.BatchNorm2d(cout, eps=1e-3)
        bn.weight.requires_grad_(False)  # slim's batch_norm has beta only
        super().__init__(
            create_conv2d(cin, cout, k, stride=stride, padding="same", bias=False),
            bn,
            nn.ReLU(inplace=True),
        )


def same_pool(kind, stride):
    if kind == "avg":
        return create_pool2d("avg", 3, stride, padding="same", count_include_pad=False)
    return create_pool2d("max", 3, stride, padding="same")


class Block(nn.Module):
    def __init__(self, cin, b1, b3, d3, pool, proj, depth):
        super().__init__()
        reduce = b1 is None
        s = 2 if reduce else 1
        self.one = None if reduce else ConvBn(cin, depth(b1), 1)
        self.three = nn.Sequential(
            ConvBn(cin, depth(b3[0]), 1), ConvBn(depth(b3[0]), depth(b3[1]), 3, s)
        )
        self.double3 = nn.Sequential(
            ConvBn(cin, depth(d3[0]), 1),
            ConvBn(depth(d3[0]), depth(d3[1]), 3),
            ConvBn(depth(d3[1]), depth(d3[1]), 3, s),
        )
        if reduce:
            self.pool = same_pool("max", 2)
            self.out = cin + depth(b3[1]) + depth(d3[1])
        else:
            self.pool = nn.Sequential(same_pool(pool, 1), ConvBn(cin, depth(proj), 1))
            self.out = depth(b1) + depth(b3[1]) + depth(d3[1]) + depth(proj)

    def forward(self, x):
        outs = [] if self.one is None else [self.one(x)]
        outs += [self.three(x), self.double3(x), self.pool(x)]
        return torch.cat(outs, 1)


class InceptionV2(nn.Module):
    def __init__(self, classes, depth_multiplier=1.0):
        super().__init__()

        def depth(d):
            return max(int(d * depth_multiplier), 16)

        c64 = depth(64)
        mult = min(c64 // 3, 8)
        self.stem = nn.Sequential(
            create_conv2d(3, 3 * mult, 7, stride=2, padding="same", groups=3, bias=False),
            nn.Conv2d(3 * mult, c64, 1, bias=True),
            nn.ReLU(inplace=True),
            same_pool("max", 2),
            ConvBn(c64, depth(64), 1),
            ConvBn(depth(64), depth(192), 3),
            same_pool("max", 2),
        )
        cin = depth(192)
        blocks = []
        for _, b1, b3, d3, pool, proj in INCEPTION_V2_BLOCKS:
            blocks.append(Block(cin, b1, b3, d3, pool, proj, depth))
            cin = blocks[-1].out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def inception_v2(classes, depth_multiplier=1.0):
    return InceptionV2(classes, depth_multiplier)


def bninception(classes):
    import pretrainedmodels

    m = pretrainedmodels.bninception(num_classes=1000, pretrained=None)
    m.last_linear = nn.Linear(m.last_linear.in_features, classes)
    m.global_pool = nn.AdaptiveAvgPool2d(1)
    return m


if __name__ == "__main__":
    for name, m in [("inception_v2", inception_v2(1000)), ("bninception", bninception(1000))]:
        n = sum(p.numel() for p in m.parameters() if p.requires_grad)
        y = m(torch.randn(2, 3, 224, 224))
        print(f"{name}: {n} trainable parameters, output {tuple(y.shape)}")
