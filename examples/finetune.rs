//! Fine-tune a template on a folder of images from Rust, with vct-train:
//!
//! ```sh
//! cargo run --release --example finetune -- Clarifai_ResNext IMAGES OUT [--random-init] [key=value ...]
//! ```
//!
//! IMAGES is `IMAGES/<concept>/<image>` or `IMAGES/{train,val}/<concept>/<image>`;
//! `key=value` overrides a hyperparameter (`num_epochs=5`, `image_size=224`).
//! Pretrained weights are found as `cargo xtask train` finds them (an explicit
//! file in the run config, `$VCT_WEIGHTS_DIR`, the Hugging Face cache);
//! `--random-init` starts from random weights instead.

use vct_hparams::{HyperParams, Template};
use vct_train::{config::RunConfig, run::summary_text, run::RunOptions, session};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: finetune TEMPLATE IMAGES OUT [--random-init] [key=value ...]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [template, images, out, rest @ ..] = args.as_slice() else {
        return Err(usage.into());
    };
    let mut hp = HyperParams::defaults(template.parse::<Template>()?);
    for assignment in rest.iter().filter(|a| *a != "--random-init") {
        hp = hp.with_override(assignment)?;
    }
    let mut config = RunConfig::new(hp, images);
    if rest.iter().any(|a| a == "--random-init") {
        config = config.random_init();
    }
    let summary = session::train(&config, RunOptions::new(out))?;
    println!("{}", summary_text(&summary));
    println!("model: {}", summary.out.join("model.safetensors").display());
    Ok(())
}
