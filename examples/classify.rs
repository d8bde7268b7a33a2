//! Classify a photo with torchvision's ImageNet weights, with vct-arch alone:
//!
//! ```sh
//! cargo run --release --example classify -- WEIGHTS PHOTO [ARCH]
//! ```
//!
//! WEIGHTS: torchvision's `.pth` (e.g. `resnet50-0676ba61.pth` from
//! download.pytorch.org) or a `.safetensors` with the same names (timm's
//! `resnet50.tv_in1k`); ARCH defaults to `resnet50` (any of
//! `vct_arch::Arch::ALL`). Prints the five most probable ImageNet class indices.

use std::path::Path;

use vct_arch::candle_core::{DType, Device, D};
use vct_arch::candle_nn::{ops::softmax, VarBuilder};
use vct_arch::{Arch, Classifier, ModelConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [weights, photo, rest @ ..] = args.as_slice() else {
        return Err("usage: classify WEIGHTS PHOTO [ARCH]".into());
    };
    let arch = Arch::from_name(rest.first().map_or("resnet50", String::as_str))?;
    let device = Device::Cpu;
    let vb = if weights.ends_with(".safetensors") {
        // SAFETY: the weights file is not modified while it is mapped.
        unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &device) }
    } else {
        VarBuilder::from_pth(weights, DType::F32, &device)
    }
    .map_err(|e| format!("{weights}: {e}"))?;
    let model = Classifier::load(vb, &ModelConfig::new(arch, 1000))?;
    let x = arch.preprocess().load(Path::new(photo), &device)?;
    let probs = softmax(&model.forward(&x, false)?, D::Minus1)?;
    let mut top: Vec<(usize, f32)> = probs
        .squeeze(0)?
        .to_vec1::<f32>()?
        .into_iter()
        .enumerate()
        .collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("top-5 of {photo} ({arch}):");
    for (class, p) in &top[..5] {
        println!("{class:>4} {p:.6}");
    }
    Ok(())
}
