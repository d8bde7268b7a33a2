//! The loop on an in-memory data source: loss falls, outputs are written,
//! resume after epoch 1 equals an uninterrupted run, NaN stops the run.

use std::sync::atomic::Ordering;

use candle_core::{Device, Tensor};
use vct_hparams::{HyperParams, Template};
use vct_train::outputs::ExistingRun;
use vct_train::progress::ProgressMode;
use vct_train::run::{train_on, DataSummary, RunOptions};
use vct_train::trainer::{Batch, BatchLabels, BatchSource, Batches};
use vct_train::TrainError;

/// Two classes of 32×32 images: bright top half vs bright bottom half, with a
/// seeded per-image brightness jitter.
struct Halves {
    n: usize,
    batch: usize,
}

impl Halves {
    fn batch(&self, start: usize, epoch: usize) -> Result<Batch, TrainError> {
        let dev = Device::Cpu;
        let count = self.batch.min(self.n - start);
        let mut pixels = Vec::with_capacity(count * 3 * 32 * 32);
        let mut labels = Vec::new();
        let mut targets = Vec::new();
        for k in 0..count {
            // The epoch permutes which items form a batch (as a shuffling loader does).
            let item = (start + k + epoch * 3) % self.n;
            let class = item % 2;
            let jitter = ((item * 37) % 11) as f32 / 20.0;
            for _c in 0..3 {
                for y in 0..32 {
                    for _x in 0..32 {
                        let top = y < 16;
                        let bright = (class == 0) == top;
                        pixels.push(if bright { 1.0 + jitter } else { -1.0 });
                    }
                }
            }
            labels.push(class);
            targets.extend(if class == 0 {
                [1.0f32, 0.0]
            } else {
                [0.0, 1.0]
            });
        }
        Ok(Batch {
            images: Tensor::from_vec(pixels, (count, 3, 32, 32), &dev)?,
            targets: Tensor::from_vec(targets, (count, 2), &dev)?,
            labels: BatchLabels::Single(labels),
        })
    }
}

impl BatchSource for Halves {
    fn train_epoch(&self, epoch: usize) -> Result<Batches<'_>, TrainError> {
        let starts: Vec<usize> = (0..self.n).step_by(self.batch).collect();
        Ok(Box::new(
            starts.into_iter().map(move |s| self.batch(s, epoch)),
        ))
    }
    fn train_steps(&self) -> usize {
        self.n.div_ceil(self.batch)
    }
    fn validation(&self) -> Option<Result<Batches<'_>, TrainError>> {
        Some(Ok(Box::new(
            (0..self.n)
                .step_by(self.batch)
                .map(move |s| self.batch(s, 0)),
        )))
    }
}

fn hparams(epochs: u32, lr: f64) -> HyperParams {
    HyperParams::defaults(Template::InceptionV2)
        .with_override("image_size=32")
        .and_then(|h| h.with_override("batch_size=8"))
        .and_then(|h| h.with_override(&format!("num_epochs={epochs}")))
        .and_then(|h| h.with_override("logreg=0"))
        .and_then(|h| h.with_override(&format!("per_item_lrate={lr:e}")))
        .unwrap()
}

fn options(out: &std::path::Path) -> RunOptions {
    let mut o = RunOptions::new(out);
    o.progress = ProgressMode::Quiet;
    o.seed = 3;
    o
}

fn concepts() -> Vec<String> {
    vec!["top".into(), "bottom".into()]
}

fn weights(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let t = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = t
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn trains_writes_outputs_and_resumes_exactly() {
    let data = Halves { n: 16, batch: 8 };
    let hp = hparams(2, 0.002);
    let full = tempfile::tempdir().unwrap();
    let summary = train_on(
        &hp,
        &data,
        &concepts(),
        DataSummary::default(),
        &options(full.path()),
    )
    .unwrap();
    assert_eq!(summary.epochs, 2);
    let hist: Vec<f64> = std::fs::read_to_string(full.path().join("events.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"event\":\"step\""))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(hist.len(), 4);
    assert!(hist[3] < hist[0], "loss did not fall: {hist:?}");
    for f in [
        "model.safetensors",
        "run.json",
        "metrics.json",
        "confusion.csv",
        "curves.svg",
        "events.jsonl",
    ] {
        assert!(full.path().join(f).exists(), "{f} missing");
    }
    assert!(full
        .path()
        .join("checkpoints/last/optimizer.safetensors")
        .exists());
    let csv = std::fs::read_to_string(full.path().join("confusion.csv")).unwrap();
    assert!(csv.starts_with("true\\predicted,top,bottom\n"), "{csv}");

    // Refuses to clobber the run.
    let err = train_on(
        &hp,
        &data,
        &concepts(),
        DataSummary::default(),
        &options(full.path()),
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::OutDirInUse { .. }), "{err}");

    // One epoch, then resume for the second: same weights bit for bit.
    let split = tempfile::tempdir().unwrap();
    train_on(
        &hparams(1, 0.002),
        &data,
        &concepts(),
        DataSummary::default(),
        &options(split.path()),
    )
    .unwrap();
    let mut resume = options(split.path());
    resume.existing = ExistingRun::Resume;
    let resumed = train_on(&hp, &data, &concepts(), DataSummary::default(), &resume).unwrap();
    assert_eq!(resumed.epochs, 2);
    let (a, b) = (
        weights(&full.path().join("checkpoints/last/model.safetensors")),
        weights(&split.path().join("checkpoints/last/model.safetensors")),
    );
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let diff = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(x == y, "{name} differs after resume (max |diff| {diff})");
    }
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_checkpoint() {
    let data = Halves { n: 16, batch: 8 };
    let out = tempfile::tempdir().unwrap();
    train_on(
        &hparams(1, 0.002),
        &data,
        &concepts(),
        DataSummary::default(),
        &options(out.path()),
    )
    .unwrap();
    let before = weights(&out.path().join("checkpoints/last/model.safetensors"));
    let mut resume = options(out.path());
    resume.existing = ExistingRun::Resume;
    let err = train_on(
        &hparams(3, 1e30),
        &data,
        &concepts(),
        DataSummary::default(),
        &resume,
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::NonFiniteLoss { .. }), "{err}");
    assert!(err.to_string().contains("checkpoints/last"), "{err}");
    assert_eq!(
        before,
        weights(&out.path().join("checkpoints/last/model.safetensors"))
    );
}

#[test]
fn a_stop_request_ends_the_run_cleanly() {
    let data = Halves { n: 16, batch: 8 };
    let out = tempfile::tempdir().unwrap();
    let opts = options(out.path());
    opts.stop.store(true, Ordering::SeqCst);
    let s = train_on(
        &hparams(2, 0.002),
        &data,
        &concepts(),
        DataSummary::default(),
        &opts,
    )
    .unwrap();
    assert_eq!(s.epochs, 0);
    assert_eq!(
        s.record.stop_reason,
        Some(vct_train::trainer::StopReason::Interrupted)
    );
}
