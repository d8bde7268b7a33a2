//! A training step through the vct-kernels backend equals one through stock candle ops.
//!
//! Two identically seeded networks take one SGD step on the same batch, one under
//! `KernelBackend::Candle`, one under `KernelBackend::Rust`; the loss, every gradient,
//! every updated parameter and every running statistic must agree within 1e-4 relative
//! (max-norm of the difference over max-norm of the stock tensor).
//!
//! Why ResNet-18 and one-block-per-stage ResNet-50 / ResNeXt-50 rather than the full
//! 50-layer nets: in training mode a freshly initialised deep batch-norm network is
//! extremely sensitive to rounding. A pre-activation within ~1e-7 of zero flips its
//! ReLU under any change of summation order, and batch norm spreads that to every
//! sample. Measured at batch 2 × 64×64, stock ops against *stock ops* on the input plus
//! 1e-6 noise already differ by 0.3–0.5 (ResNet-50), ~2 (ResNeXt-50, BN-Inception) and
//! 2e-3 (Inception-v2) in the worst gradient, so no two float32 implementations can
//! agree to 1e-4 there. Even the shallow nets hit such a flip on some inputs (seen:
//! ResNeXt [1,1,1,1] at 3×48 and 2×64, 3e-3 and 2e-2, with stock-vs-perturbed-stock
//! flipping as often), so the inputs here are fixed ones without a flip. The shallow
//! nets still run every kernel on the same layer kinds (stem conv 7×7/2 + max pool
//! 3×3/2, bottleneck 1×1 / 3×3 stride 2 / grouped 32×4d, downsample 1×1/2, batch norm,
//! and on the 16×16 maps of the first stage 3×3 stride 1 by Winograd);
//! vct-kernels' own tests compare each kernel on every layer shape.
//!
//! The ignored `*_onednn_*` tests (they need oneDNN installed; `.ci/run` runs them) take
//! the same steps under `KernelBackend::OneDnn` (oneDNN convolution, batch norm and
//! pooling) and compare them with `KernelBackend::Rust`.

use candle_core::{Device, Tensor, Var};
use vct_arch::params::{Group, ParamStore};
use vct_arch::{Backbone, Head, LinearHead, ResNet, ResNetConfig};
use vct_kernels::{with_backend, KernelBackend};

/// Max-norm difference relative to the max norm of the reference.
fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    let scale = b
        .iter()
        .fold(0f64, |m, &v| m.max((v as f64).abs()))
        .max(1e-12);
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    diff / scale
}

/// A deterministic input batch (candle's `randn` is not seeded).
fn input(n: usize, size: usize) -> Tensor {
    let len = n * 3 * size * size;
    let v: Vec<f32> = (0..len)
        .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 3.0 + ((i / 7) as f32 * 0.1).sin())
        .collect();
    Tensor::from_vec(v, (n, 3, size, size), &Device::Cpu).unwrap()
}

struct Net {
    store: ParamStore,
    backbone: ResNet,
    head: LinearHead,
}

fn net(cfg: &ResNetConfig) -> Net {
    let store = ParamStore::new(7, &Device::Cpu);
    let backbone = ResNet::new(&store.scope(Group::Backbone), cfg).unwrap();
    let head = LinearHead::new(
        &store.scope(Group::Head).pp("fc"),
        "weight",
        "bias",
        backbone.out_dim(),
        5,
    )
    .unwrap();
    Net {
        store,
        backbone,
        head,
    }
}

/// One step: loss, gradients by name, then `p ← p − 0.1·g` in place.
fn step(net: &Net, x: &Tensor, labels: &Tensor) -> (f32, Vec<(String, Tensor)>) {
    let logits = net
        .head
        .forward(&net.backbone.forward(x, true).unwrap(), true)
        .unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits, labels).unwrap();
    let grads = loss.backward().unwrap();
    let mut out = Vec::new();
    for e in net.store.entries().into_iter().filter(|e| e.trainable) {
        let var: Var = e.var;
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {}", e.name))
            .clone();
        var.set(&(var.as_tensor() - (&g * 0.1).unwrap()).unwrap())
            .unwrap();
        out.push((e.name, g));
    }
    (loss.to_scalar().unwrap(), out)
}

fn check(name: &str, cfg: ResNetConfig, n: usize, size: usize) {
    compare(
        name,
        cfg,
        n,
        size,
        KernelBackend::Candle,
        KernelBackend::Rust,
    );
}

/// One step under `reference` and one under `other` agree within 1e-4.
fn compare(
    name: &str,
    cfg: ResNetConfig,
    n: usize,
    size: usize,
    reference: KernelBackend,
    other: KernelBackend,
) {
    let x = input(n, size);
    let labels: Vec<u32> = (0..n as u32).map(|i| (i * 3) % 5).collect();
    let labels = Tensor::new(labels.as_slice(), &Device::Cpu).unwrap();
    let (stock, ours) = (net(&cfg), net(&cfg));
    let (l_stock, g_stock) = with_backend(reference, || step(&stock, &x, &labels));
    let (l_ours, g_ours) = with_backend(other, || step(&ours, &x, &labels));
    let dl = ((l_ours - l_stock) / l_stock).abs();
    assert!(dl < 1e-4, "{name}: loss {l_ours} vs stock {l_stock}");
    assert_eq!(g_stock.len(), g_ours.len());
    for ((pname, gs), (_, go)) in g_stock.iter().zip(&g_ours) {
        let d = rel_diff(go, gs);
        assert!(d < 1e-4, "{name}: gradient of {pname} differs by {d:.2e}");
    }
    let (after_stock, after_ours) = (stock.store.entries(), ours.store.entries());
    assert_eq!(after_stock.len(), after_ours.len());
    for (s, o) in after_stock.iter().zip(&after_ours) {
        let d = rel_diff(o.var.as_tensor(), s.var.as_tensor());
        assert!(
            d < 1e-4,
            "{name}: {} after the step differs by {d:.2e}",
            s.name
        );
    }
}

#[test]
fn resnet18_step_matches_stock_ops() {
    check("resnet18", ResNetConfig::resnet18(), 2, 64);
}

#[test]
fn resnet50_one_block_per_stage_step_matches_stock_ops() {
    let cfg = ResNetConfig {
        layers: [1, 1, 1, 1],
        ..ResNetConfig::resnet50()
    };
    check("resnet50 [1,1,1,1]", cfg, 2, 64);
}

#[test]
fn resnext50_one_block_per_stage_step_matches_stock_ops() {
    let cfg = ResNetConfig {
        layers: [1, 1, 1, 1],
        ..ResNetConfig::resnext50_32x4d()
    };
    check("resnext50_32x4d [1,1,1,1]", cfg, 4, 64);
}

#[test]
#[ignore = "needs oneDNN 2.x (Debian's libdnnl2); .ci/run runs it"]
fn resnet18_onednn_step_matches_rust() {
    let (rust, dnnl) = (KernelBackend::Rust, KernelBackend::OneDnn);
    compare(
        "resnet18 onednn",
        ResNetConfig::resnet18(),
        2,
        64,
        rust,
        dnnl,
    );
}

#[test]
#[ignore = "needs oneDNN 2.x (Debian's libdnnl2); .ci/run runs it"]
fn resnet50_one_block_per_stage_onednn_step_matches_rust() {
    let cfg = ResNetConfig {
        layers: [1, 1, 1, 1],
        ..ResNetConfig::resnet50()
    };
    let (rust, dnnl) = (KernelBackend::Rust, KernelBackend::OneDnn);
    compare("resnet50 [1,1,1,1] onednn", cfg, 2, 64, rust, dnnl);
}

#[test]
#[ignore = "needs oneDNN 2.x (Debian's libdnnl2); .ci/run runs it"]
fn resnext50_one_block_per_stage_onednn_step_matches_rust() {
    let cfg = ResNetConfig {
        layers: [1, 1, 1, 1],
        ..ResNetConfig::resnext50_32x4d()
    };
    let (rust, dnnl) = (KernelBackend::Rust, KernelBackend::OneDnn);
    compare("resnext50_32x4d [1,1,1,1] onednn", cfg, 4, 64, rust, dnnl);
}
