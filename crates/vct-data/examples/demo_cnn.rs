//! Checks that the demo dataset is easy: generates it, trains a three-layer CNN
//! with candle-nn for a few epochs through the `Loader`, prints validation
//! accuracy per epoch. Run: `cargo run -p vct-data --example demo_cnn`.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{conv2d, linear, AdamW, Conv2dConfig, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use vct_augment::{Pipeline, RandomFlip, RandomResizedCrop, Resize};
use vct_data::demo::{generate, DemoConfig};
use vct_data::{Dataset, Loader, LoaderConfig};

struct Net {
    c1: candle_nn::Conv2d,
    c2: candle_nn::Conv2d,
    c3: candle_nn::Conv2d,
    fc: candle_nn::Linear,
}

impl Net {
    fn new(vb: VarBuilder) -> candle_core::Result<Net> {
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        Ok(Net {
            c1: conv2d(3, 16, 3, cfg, vb.pp("c1"))?,
            c2: conv2d(16, 32, 3, cfg, vb.pp("c2"))?,
            c3: conv2d(32, 64, 3, cfg, vb.pp("c3"))?,
            fc: linear(64 * 16, 4, vb.pp("fc"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.c1.forward(x)?.relu()?.max_pool2d(2)?;
        let x = self.c2.forward(&x)?.relu()?.max_pool2d(2)?;
        let x = self
            .c3
            .forward(&x)?
            .relu()?
            .max_pool2d(2)?
            .flatten_from(1)?;
        self.fc.forward(&x)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let summary = generate(dir.path(), &DemoConfig::default())?;
    println!(
        "generated {summary:?} in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let train = Arc::new(Dataset::open(&dir.path().join("train"))?);
    let val = Arc::new(Dataset::open_with_concepts(
        &dir.path().join("val"),
        &train.concepts,
    )?);
    let aug = Arc::new(
        Pipeline::default()
            .push(RandomResizedCrop::new(32, (0.5, 1.0), (0.75, 4.0 / 3.0)))
            .push(RandomFlip::new(0.5, false)),
    );
    let eval = Arc::new(Pipeline::default().push(Resize::square(32)));
    let varmap = VarMap::new();
    let net = Net::new(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
    let mut opt = AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr: 2e-3,
            ..Default::default()
        },
    )?;
    let start = Instant::now();
    for epoch in 0..12u64 {
        let cfg = LoaderConfig {
            batch_size: 32,
            seed: 1,
            epoch,
            threads: 2,
            ..LoaderConfig::default()
        };
        for b in Loader::new(train.clone(), aug.clone(), cfg) {
            let b = b?;
            let labels: Vec<u32> = b.labels.iter().map(|l| l[0] as u32).collect();
            let y = Tensor::new(labels, &Device::Cpu)?;
            let loss = candle_nn::loss::cross_entropy(&net.forward(&b.images)?, &y)?;
            opt.backward_step(&loss)?;
        }
        let (mut right, mut total) = (0usize, 0usize);
        let vcfg = LoaderConfig {
            batch_size: 50,
            shuffle: false,
            threads: 2,
            ..LoaderConfig::default()
        };
        for b in Loader::new(val.clone(), eval.clone(), vcfg) {
            let b = b?;
            let pred: Vec<u32> = net.forward(&b.images)?.argmax(D::Minus1)?.to_vec1()?;
            right += pred
                .iter()
                .zip(&b.labels)
                .filter(|(p, l)| **p as usize == l[0])
                .count();
            total += pred.len();
        }
        println!(
            "epoch {epoch}: val accuracy {:.1}% ({right}/{total}), {:.1} s",
            100.0 * right as f64 / total as f64,
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
