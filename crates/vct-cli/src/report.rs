//! `report.html`: a run's evaluation report (vct-report), filled from the run folder —
//! `run.json` for the settings, `events.jsonl` for the curves — and an evaluation that
//! kept every image's path and probabilities. `train` writes one into the run folder
//! (the best model on the validation set); `eval --report FILE` writes one for any data.

use std::path::Path;

use anyhow::Context as _;
use vct_report::{EpochRow, ImageRecord, ReportInput, ReportOptions, StepRow};
use vct_train::session::TrainedModel;
use vct_train::trainer::Evaluation;

/// The per-epoch and per-step rows of `events.jsonl` (none when the file is missing;
/// a line that is not an event, such as a line a crash cut short, is skipped).
pub fn history(events: &Path) -> (Vec<EpochRow>, Vec<StepRow>) {
    let Ok(text) = std::fs::read_to_string(events) else {
        return (Vec::new(), Vec::new());
    };
    let (mut epochs, mut steps) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let num = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
        let int = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_u64)
                .map(|n| n as usize)
        };
        match v.get("event").and_then(|e| e.as_str()) {
            Some("epoch") => {
                if let (Some(epoch), Some(train_loss)) = (int("epoch"), num("train_loss")) {
                    epochs.push(EpochRow {
                        epoch,
                        train_loss,
                        val_loss: num("val_loss"),
                        val_top1: num("val_top1"),
                        val_map: num("val_map"),
                        lr: num("lr").unwrap_or(f64::NAN),
                    });
                }
            }
            Some("step") => {
                if let (Some(epoch), Some(step)) = (int("epoch"), int("step")) {
                    steps.push(StepRow {
                        epoch,
                        step,
                        loss: num("loss"),
                        lr: num("lr").unwrap_or(f64::NAN),
                    });
                }
            }
            _ => {}
        }
    }
    (epochs, steps)
}

/// Where the run's validation images came from, in words.
fn val_name(model: &TrainedModel) -> String {
    use vct_train::config::ValSource;
    if let Some(v) = &model.record.data.val {
        return v.clone();
    }
    match &model.record.config.data.val {
        ValSource::Path(p) => p.display().to_string(),
        ValSource::Split(f) => format!("{:.0}% of the training images (seeded split)", 100.0 * f),
        ValSource::Auto => "10% of the training images (seeded split)".into(),
        ValSource::None => "none".into(),
    }
}

fn display(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The report of `model`'s run with `evaluation` (named `name`).
pub fn report_input(model: &TrainedModel, evaluation: Option<(String, Evaluation)>) -> ReportInput {
    let r = &model.record;
    let c = &r.config;
    let template = c.hparams.template();
    let hparams = serde_json::to_value(&c.hparams).unwrap_or_default();
    let hyperparameters = hparams
        .get("params")
        .and_then(|p| p.as_object())
        .map(|p| p.iter().map(|(k, v)| (k.clone(), display(v))).collect())
        .unwrap_or_default();
    let mut run = vec![
        ("template".to_string(), template.name().to_string()),
        ("architecture".into(), r.arch.clone()),
        ("initial weights".into(), r.init.clone()),
        (
            "output".into(),
            format!(
                "{:?}, label smoothing {}, {:?} loss reduction",
                r.loss.output, r.loss.label_smoothing, r.loss.reduction
            ),
        ),
        (
            "input".into(),
            format!(
                "{}×{} (evaluation: shorter side {}, centre crop), {:?}",
                r.preprocess.size, r.preprocess.size, r.preprocess.eval_resize, r.preprocess.norm
            ),
        ),
        (
            "flip-averaged evaluation".into(),
            r.flip_average_eval.to_string(),
        ),
        ("seed".into(), c.seed.to_string()),
        ("device".into(), c.device.clone()),
        ("vct".into(), r.vct_version.clone()),
    ];
    if let Some(reason) = r.stop_reason {
        run.push(("stopped".into(), format!("{reason:?}")));
    }
    if let Some((score, epoch)) = r.best {
        run.push(("best epoch".into(), format!("{epoch} (score {score:.4})")));
    }
    if c.init.freeze_backbone {
        run.push(("backbone".into(), "frozen (linear probing)".into()));
    }
    let d = &r.data;
    let mut data = vec![
        ("training data".to_string(), d.train.clone()),
        ("training images".into(), d.train_images.to_string()),
        ("validation data".into(), val_name(model)),
        ("validation images".into(), d.val_images.to_string()),
        ("concepts".into(), r.concepts.len().to_string()),
        ("skipped files".into(), d.skipped.to_string()),
    ];
    for s in d.skipped_files.iter().take(20) {
        data.push(("skipped".into(), s.clone()));
    }
    let (epochs, steps) = history(&model.dir.join("events.jsonl"));
    ReportInput {
        title: model.dir.display().to_string(),
        subtitle: format!("{template} ({}) — {} concepts", r.arch, r.concepts.len()),
        run,
        hyperparameters,
        data,
        epochs,
        steps,
        evaluation: evaluation.map(|(name, e)| vct_report::Evaluation {
            name,
            metrics: e.metrics,
            images: e
                .images
                .into_iter()
                .map(|i| ImageRecord {
                    path: i.path,
                    labels: i.labels,
                    probabilities: i.probabilities,
                })
                .collect(),
        }),
    }
}

/// Renders `input` and writes it to `path` atomically.
pub fn write_report(path: &Path, input: &ReportInput) -> anyhow::Result<()> {
    let html = vct_report::render(input, &ReportOptions::default())
        .with_context(|| format!("rendering {}", path.display()))?;
    vct_train::outputs::write_atomic(path, html.as_bytes())?;
    Ok(())
}

/// The report of a finished run in `dir`: its best model on its validation set (the
/// same folder or seeded split training used), or training curves alone without one.
pub fn run_report(dir: &Path, device: &candle_core::Device) -> anyhow::Result<ReportInput> {
    let model = TrainedModel::load(dir, device)?;
    let evaluation = match model.validation_set()? {
        Some(set) => {
            let name = format!(
                "best model ({}) on the validation set: {} ({} images)",
                dir.join("model.safetensors").display(),
                val_name(&model),
                set.items.len()
            );
            let batch = model.record.config.hparams.batch_size();
            Some((name, model.evaluate_images(set, batch)?))
        }
        None => None,
    };
    Ok(report_input(&model, evaluation))
}
