//! The library's front door: train from a folder or manifest, evaluate a saved
//! model, and predict with it — what `cargo xtask train | eval | predict` call.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::Serialize;
use vct_arch::{Classifier, LoadOptions};
use vct_augment::DecodeOptions;
use vct_data::Dataset;
use vct_hparams::HyperParams;
use vct_metrics::EvalMetrics;

use crate::data::{eval_pipeline, normalize, open_datasets, FolderSource, ValSource};
use crate::recipe::Recipe;
use crate::run::{train_on, RunOptions, RunRecord, RunSummary};
use crate::trainer::{eval_embeddings, eval_head, evaluate, BatchSource};
use crate::TrainError;

/// Trains `hparams` on the images at `data` (a folder `root/<concept>/<image>`,
/// a folder with `train/` and `val/`, or a CSV / JSONL manifest).
pub fn train(
    hparams: &HyperParams,
    data: &Path,
    val: &ValSource,
    opts: &RunOptions,
) -> Result<RunSummary, TrainError> {
    let (train_set, val_set) = open_datasets(data, val, opts.seed)?;
    if opts.progress != crate::progress::ProgressMode::Quiet {
        eprintln!(
            "data: {} training images, {} validation images, {} concepts{}",
            train_set.items.len(),
            val_set.as_ref().map(|v| v.items.len()).unwrap_or(0),
            train_set.concepts.len(),
            if train_set.skipped.is_empty() {
                String::new()
            } else {
                format!(", {} files skipped", train_set.skipped.len())
            }
        );
        for s in train_set.skipped.iter().take(10) {
            eprintln!("  skipped {}: {}", s.path.display(), s.reason);
        }
    }
    let concepts = train_set.concepts.names().to_vec();
    let recipe = Recipe::new(hparams, concepts.len(), opts.seed, opts.random_init)?;
    let items = hparams.items_per_epoch(train_set.items.len());
    let val_path = match val {
        ValSource::Path(p) => Some(p.clone()),
        _ => vct_data::find_splits(data).and_then(|(_, v)| v),
    };
    let source = FolderSource::new(
        train_set,
        val_set,
        &recipe.preprocess,
        hparams.batch_size(),
        items,
        opts.seed,
        opts.device.clone(),
        opts.extras,
    );
    // Absolute paths, so `--resume` finds the images from any directory.
    let absolute = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let summary = source.summary(
        &absolute(data),
        val_path.as_deref().map(absolute).as_deref(),
    );
    train_on(hparams, &source, &concepts, summary, opts)
}

/// A trained model loaded from a run folder, ready to evaluate and predict.
#[derive(Debug)]
pub struct TrainedModel {
    /// The run's record (template, concepts, preprocessing).
    pub record: RunRecord,
    /// The network with its trained weights.
    pub model: Classifier,
    /// Where it was loaded from.
    pub dir: PathBuf,
}

impl TrainedModel {
    /// Loads `dir/run.json` and `dir/model.safetensors`.
    pub fn load(dir: &Path, device: &Device) -> Result<TrainedModel, TrainError> {
        let run_json = dir.join("run.json");
        let text = std::fs::read_to_string(&run_json).map_err(|source| TrainError::Io {
            path: run_json.clone(),
            source,
        })?;
        let record: RunRecord =
            serde_json::from_str(&text).map_err(|e| TrainError::BadCheckpoint {
                path: run_json.clone(),
                reason: format!("not a vct run record: {e}"),
            })?;
        let recipe = Recipe::new(&record.hparams, record.concepts.len(), record.seed, true)?;
        let model = recipe.build_model(device)?;
        let weights = dir.join("model.safetensors");
        // A trained model must be restored whole: a missing or reshaped head
        // is an error, not a fresh random head.
        model
            .load_weights(&weights, LoadOptions::exact())
            .map_err(|e| TrainError::BadCheckpoint {
                path: weights.clone(),
                reason: e.to_string(),
            })?;
        Ok(TrainedModel {
            record,
            model,
            dir: dir.to_path_buf(),
        })
    }

    /// Evaluates on a folder or manifest whose concepts are the model's.
    pub fn evaluate(&self, data: &Path, batch_size: usize) -> Result<EvalMetrics, TrainError> {
        let concepts = vct_data::Concepts::new(self.record.concepts.clone())
            .map_err(|e| TrainError::Component(e.to_string()))?;
        let set = Dataset::open_with_concepts(data, &concepts)
            .map_err(|e| TrainError::Component(e.to_string()))?;
        let source = FolderSource::new(
            set.clone(),
            Some(set),
            &self.record.preprocess,
            batch_size,
            0,
            self.record.seed,
            self.model.device().clone(),
            Default::default(),
        );
        let batches = source
            .validation()
            .ok_or_else(|| TrainError::Component("no evaluation data".into()))??;
        evaluate(
            &self.model,
            self.record.output,
            self.record.flip_average_eval,
            &self.record.concepts,
            batches,
        )
    }

    /// Scores images: every concept's probability, best first, and optionally the
    /// embedding (flip-averaged when the model was trained so).
    pub fn predict(
        &self,
        images: &[PathBuf],
        top_k: usize,
        embeddings: bool,
    ) -> Result<Vec<Prediction>, TrainError> {
        let pipeline = eval_pipeline(&self.record.preprocess);
        let norm = normalize(self.record.preprocess.norm);
        let mut out = Vec::with_capacity(images.len());
        for path in images {
            let img = vct_augment::decode_file(path, &DecodeOptions::default())
                .map_err(|e| TrainError::Component(e.to_string()))?;
            let mut rng = vct_augment::item_rng(self.record.seed, 0, 0);
            let img = pipeline
                .apply(img, &mut rng)
                .map_err(|e| TrainError::Component(e.to_string()))?;
            let x = vct_augment::to_tensor(&[img], norm, self.model.device())
                .map_err(|e| TrainError::Component(e.to_string()))?;
            // One forward pass serves both the probabilities and the embedding.
            let emb = eval_embeddings(&self.model, self.record.flip_average_eval, &x)?;
            let logits = eval_head(&self.model, &emb)?;
            let probs: Vec<f32> = self
                .record
                .output
                .probabilities(&logits)?
                .flatten_all()?
                .to_vec1()?;
            let mut ranked: Vec<(String, f32)> =
                self.record.concepts.iter().cloned().zip(probs).collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            ranked.truncate(top_k.max(1));
            let embedding = if embeddings {
                Some(emb.flatten_all()?.to_vec1::<f32>()?)
            } else {
                None
            };
            out.push(Prediction {
                image: path.clone(),
                concepts: ranked,
                embedding,
            });
        }
        Ok(out)
    }
}

/// One image's prediction.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// The image file.
    pub image: PathBuf,
    /// Concepts with probabilities, best first.
    pub concepts: Vec<(String, f32)>,
    /// The embedding, when asked for.
    pub embedding: Option<Vec<f32>>,
}
