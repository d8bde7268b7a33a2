//! `cargo xtask arch <name> [--size N] [--width W] [--classes N]`: the layer
//! table of an architecture — output shapes and parameter counts.

use std::process::ExitCode;

use candle_core::Device;
use vct_arch::{Arch, Classifier, ModelConfig};

/// Arguments of `cargo xtask arch`.
#[derive(Debug, clap::Args)]
pub struct ArchArgs {
    /// Architecture: resnet18, resnet34, resnet50, resnet101, resnet152,
    /// resnext50_32x4d, resnext101_32x8d, bninception, inception_v2.
    name: String,
    /// Input height (and width unless --width is given).
    #[arg(long, default_value_t = 224)]
    size: usize,
    /// Input width (default: --size).
    #[arg(long)]
    width: Option<usize>,
    /// Number of classes of the head.
    #[arg(long, default_value_t = 1000)]
    classes: usize,
}

/// Prints the layer table.
pub fn run(args: ArchArgs) -> anyhow::Result<ExitCode> {
    let arch = Arch::from_name(&args.name)?;
    let model = Classifier::new(&ModelConfig::new(arch, args.classes), &Device::Cpu)?;
    let (h, w) = (args.size, args.width.unwrap_or(args.size));
    let rows = model.layer_table(h, w)?;
    println!("{arch}, input 1x3x{h}x{w}, {} classes", args.classes);
    println!("{:<22} {:>22} {:>12}", "layer", "output", "params");
    for r in &rows {
        println!(
            "{:<22} {:>22} {:>12}",
            r.name,
            format!("{:?}", r.shape),
            r.params
        );
    }
    println!("{:<22} {:>22} {:>12}", "total", "", model.num_params());
    Ok(ExitCode::SUCCESS)
}
