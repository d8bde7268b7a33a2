//! The loop on an in-memory data source: loss falls, outputs are written,
//! resume after epoch 1 equals an uninterrupted run, NaN stops the run, hooks see
//! every step and epoch.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor};
use vct_hparams::{HyperParams, Template};
use vct_train::checkpoint::Checkpoints;
use vct_train::config::{DataConfig, RunConfig, ValSource};
use vct_train::outputs::ExistingRun;
use vct_train::run::{train_batches, DataSummary, Progress, RunOptions, RunSummary};
use vct_train::trainer::{
    Batch, BatchLabels, BatchSource, Batches, Control, EpochContext, EpochReport, Hook, Input,
    StepReport,
};
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
            input: Input::Images(Tensor::from_vec(pixels, (count, 3, 32, 32), &dev)?),
            targets: Tensor::from_vec(targets, (count, 2), &dev)?,
            labels: BatchLabels::Single(labels),
            paths: Vec::new(),
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

fn config(hp: HyperParams) -> RunConfig {
    RunConfig {
        hparams: hp,
        seed: 3,
        data: DataConfig {
            train: "/in-memory".into(),
            val: ValSource::Auto,
        },
        extras: Default::default(),
        init: Default::default(),
        device: "cpu".into(),
        early_stopping: None,
        vct_version: "test".into(),
    }
}

fn options(out: &std::path::Path) -> RunOptions {
    let mut o = RunOptions::new(out);
    o.progress = Progress::Quiet;
    o
}

fn concepts() -> Vec<String> {
    vec!["top".into(), "bottom".into()]
}

fn run(
    hp: HyperParams,
    out: &std::path::Path,
    existing: ExistingRun,
) -> Result<RunSummary, TrainError> {
    let mut o = options(out);
    o.existing = existing;
    train_batches(
        &config(hp),
        &Halves { n: 16, batch: 8 },
        &concepts(),
        DataSummary::default(),
        o,
    )
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

fn latest_model(out: &std::path::Path) -> std::path::PathBuf {
    Checkpoints::new(out)
        .latest_dir()
        .unwrap()
        .expect("a LATEST checkpoint")
        .join("model.safetensors")
}

#[test]
fn trains_writes_outputs_and_resumes_exactly() {
    let hp = hparams(2, 0.002);
    let full = tempfile::tempdir().unwrap();
    let summary = run(hp.clone(), full.path(), ExistingRun::Refuse).unwrap();
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
        "events.jsonl",
        "checkpoints/LATEST",
        "checkpoints/BEST",
    ] {
        assert!(full.path().join(f).exists(), "{f} missing");
    }
    let latest = std::fs::read_to_string(full.path().join("checkpoints/LATEST")).unwrap();
    assert_eq!(latest.trim(), "epoch-0002");
    assert!(full
        .path()
        .join("checkpoints/epoch-0002/optimizer.safetensors")
        .exists());
    // Folders neither pointer names are gone (epoch 0's initial state, for one).
    let best = std::fs::read_to_string(full.path().join("checkpoints/BEST")).unwrap();
    assert!(!full.path().join("checkpoints/epoch-0000").exists() || best.trim() == "epoch-0000");
    let csv = std::fs::read_to_string(full.path().join("confusion.csv")).unwrap();
    assert!(csv.starts_with("true\\predicted,top,bottom\n"), "{csv}");

    // Refuses to clobber the run.
    let err = run(hp.clone(), full.path(), ExistingRun::Refuse).unwrap_err();
    assert!(matches!(err, TrainError::OutDirInUse { .. }), "{err}");

    // One epoch, then resume for the second: same weights bit for bit, and the same
    // events (the resumed run's are appended, none doubled).
    let split = tempfile::tempdir().unwrap();
    run(hparams(1, 0.002), split.path(), ExistingRun::Refuse).unwrap();
    let resumed = run(hp.clone(), split.path(), ExistingRun::Resume).unwrap();
    assert_eq!(resumed.epochs, 2);
    let (a, b) = (
        weights(&latest_model(full.path())),
        weights(&latest_model(split.path())),
    );
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name} differs after resume");
    }
    let steps = |p: &std::path::Path| {
        std::fs::read_to_string(p.join("events.jsonl"))
            .unwrap()
            .lines()
            .filter(|l| l.contains("\"event\":\"step\""))
            .count()
    };
    assert_eq!(steps(split.path()), steps(full.path()));
    // A resume that changes the seed is refused by name.
    let mut c = config(hparams(3, 0.002));
    c.seed = 4;
    let mut o = options(split.path());
    o.existing = ExistingRun::Resume;
    let err = train_batches(
        &c,
        &Halves { n: 16, batch: 8 },
        &concepts(),
        DataSummary::default(),
        o,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("seed: the run has 3, asked for 4"), "{err}");
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_checkpoint() {
    let out = tempfile::tempdir().unwrap();
    run(hparams(1, 0.002), out.path(), ExistingRun::Refuse).unwrap();
    let before = weights(&latest_model(out.path()));
    // A huge learning rate on resume is refused (a resumed run keeps its settings)...
    let err = run(hparams(3, 1e30), out.path(), ExistingRun::Resume).unwrap_err();
    assert!(matches!(err, TrainError::ResumeChanges { .. }), "{err}");
    // ... so a new run with it shows the stop: the error names LATEST, which still
    // names the last good checkpoint.
    let nan = tempfile::tempdir().unwrap();
    let err = run(hparams(3, 1e30), nan.path(), ExistingRun::Refuse).unwrap_err();
    assert!(matches!(err, TrainError::NonFiniteLoss { .. }), "{err}");
    assert!(err.to_string().contains("checkpoints/LATEST"), "{err}");
    let latest = std::fs::read_to_string(nan.path().join("checkpoints/LATEST")).unwrap();
    assert_eq!(
        latest.trim(),
        "epoch-0000",
        "only the initial state is good"
    );
    assert_eq!(before, weights(&latest_model(out.path())));
}

#[test]
fn a_stop_request_ends_the_run_cleanly() {
    let out = tempfile::tempdir().unwrap();
    let opts = options(out.path());
    opts.stop.store(true, Ordering::SeqCst);
    let s = train_batches(
        &config(hparams(2, 0.002)),
        &Halves { n: 16, batch: 8 },
        &concepts(),
        DataSummary::default(),
        opts,
    )
    .unwrap();
    assert_eq!(s.epochs, 0);
    assert_eq!(
        s.record.stop_reason,
        Some(vct_train::trainer::StopReason::Interrupted)
    );
    // Resumable from its initial state.
    let resumed = run(hparams(2, 0.002), out.path(), ExistingRun::Resume).unwrap();
    assert_eq!(resumed.epochs, 2);
}

/// Records what the trainer tells its hooks.
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Hook for Recorder {
    fn on_step(&mut self, s: &StepReport) -> Result<(), TrainError> {
        self.0
            .lock()
            .unwrap()
            .push(format!("step {}", s.global_step));
        Ok(())
    }
    fn on_epoch_end(
        &mut self,
        e: &EpochReport<'_>,
        ctx: EpochContext<'_>,
    ) -> Result<Control, TrainError> {
        self.0.lock().unwrap().push(format!(
            "epoch {} best {:?}",
            e.point.epoch,
            ctx.state.best.as_ref().map(|b| b.epoch)
        ));
        Ok(Control::Continue)
    }
}

#[test]
fn extra_hooks_see_every_step_and_epoch_and_early_stopping_stops() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let out = tempfile::tempdir().unwrap();
    let mut o = options(out.path());
    o.hooks.push(Box::new(Recorder(log.clone())));
    // A learning rate of 0 (only batch-norm statistics move): the score soon stops
    // improving, and patience 1 stops the run one epoch after its best.
    let mut c = config(hparams(8, 0.0));
    c.early_stopping = Some(1);
    let s = train_batches(
        &c,
        &Halves { n: 16, batch: 8 },
        &concepts(),
        DataSummary::default(),
        o,
    )
    .unwrap();
    assert_eq!(
        s.record.stop_reason,
        Some(vct_train::trainer::StopReason::EarlyStopped)
    );
    let log = log.lock().unwrap().clone();
    let epochs = s.epochs;
    assert!(epochs < 8, "{log:?}");
    let mut want = Vec::new();
    for e in 1..=epochs {
        want.push(format!("step {}", 2 * e - 1));
        want.push(format!("step {}", 2 * e));
        want.push(String::new());
    }
    assert_eq!(log.len(), want.len(), "{log:?}");
    for (got, w) in log.iter().zip(&want) {
        if !w.is_empty() {
            assert_eq!(got, w);
        }
    }
    let best = s.record.best.unwrap().1;
    assert_eq!(
        log.last().unwrap(),
        &format!("epoch {epochs} best Some({best})")
    );
    assert_eq!(
        best + 1,
        epochs,
        "patience 1 stops one epoch after the best"
    );
}
