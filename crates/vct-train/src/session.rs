//! The library's front door: train from a folder or manifest, evaluate a saved
//! model, and predict with it — what `cargo xtask train | eval | predict` call.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::Serialize;
use vct_arch::{Classifier, LoadOptions};
use vct_augment::DecodeOptions;
use vct_data::Dataset;
use vct_metrics::EvalMetrics;

use crate::config::{check_epoch_size, RunConfig, ValSource};
use crate::data::{check_labels, eval_pipeline, normalize, open_datasets, FolderSource};
use crate::outputs::ExistingRun;
use crate::recipe::Recipe;
use crate::run::{train_on, Progress, Resume, RunOptions, RunRecord, RunSummary, TrainData};
use crate::trainer::{
    eval_embeddings, eval_head, validate, validate_images, BatchSource, Evaluation,
};
use crate::TrainError;

/// Absolute, so `--resume` finds the images from any directory.
fn absolute(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// Trains the run `requested` describes into `opts.out`.
///
/// With `opts.existing == Resume`, the run in `opts.out` continues with its own
/// configuration: `requested` must equal it except where a resume may change it
/// ([`RunConfig::resume_with`]; build `requested` from the checkpoint's configuration
/// with only the settings a user gave changed — [`resume_config`] reads it).
pub fn train(requested: &RunConfig, opts: RunOptions) -> Result<RunSummary, TrainError> {
    let (config, resume) = if opts.existing == ExistingRun::Resume {
        let r = Resume::open(&opts.out)?;
        let config = r.state.config.resume_with(requested, r.state.epoch)?;
        (config, Some(r))
    } else {
        let mut config = requested.clone();
        config.data.train = absolute(&config.data.train);
        if let ValSource::Path(p) = &config.data.val {
            config.data.val = ValSource::Path(absolute(p));
        }
        (config, None)
    };
    let (train_set, val_set) = open_datasets(&config.data.train, &config.data.val, config.seed)?;
    check_labels(&config.hparams, &train_set, val_set.as_ref())?;
    if opts.progress != Progress::Quiet {
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
    let (items, _steps) = check_epoch_size(&config.hparams, train_set.items.len())?;
    let recipe = Recipe::new(&config.hparams, concepts.len(), config.seed, &config.init)?;
    let val_path = match &config.data.val {
        ValSource::Path(p) => Some(p.clone()),
        _ => vct_data::find_splits(&config.data.train).and_then(|(_, v)| v),
    };
    let frozen = recipe.backbone_frozen();
    let source = FolderSource::new(
        train_set,
        val_set,
        &recipe.preprocess,
        config.hparams.batch_size(),
        items,
        config.seed,
        opts.device.clone(),
        config.extras,
        frozen,
    )?;
    let summary = source.summary(&config.data.train, val_path.as_deref());
    // A frozen backbone never changes: each image's embedding is computed once.
    let data = if frozen {
        TrainData::FrozenCache(&source)
    } else {
        TrainData::Batches(&source)
    };
    train_on(&config, data, &concepts, summary, opts, resume)
}

/// The configuration of the run in `out` (from its newest checkpoint), for building
/// the `requested` configuration of a resume.
pub fn resume_config(out: &Path) -> Result<RunConfig, TrainError> {
    let checkpoints = crate::checkpoint::Checkpoints::new(out);
    let dir = checkpoints
        .latest_dir()?
        .ok_or_else(|| TrainError::NothingToResume {
            path: out.to_path_buf(),
            why: "no checkpoints/LATEST".into(),
        })?;
    Ok(crate::checkpoint::load_state(&dir)?.config)
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
        let record = RunRecord::read(&dir.join("run.json"))?;
        let mut init = record.config.init.clone();
        init.random_init = true;
        let recipe = Recipe::new(
            &record.config.hparams,
            record.concepts.len(),
            record.config.seed,
            &init,
        )?;
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
        let source = self.eval_source(self.open_data(data)?, batch_size)?;
        let batches = source
            .validation()
            .ok_or_else(|| TrainError::Component("no evaluation data".into()))??;
        validate(
            &self.model,
            self.record.loss().without_smoothing(),
            self.record.flip_average_eval,
            &self.record.concepts,
            batches,
        )
    }

    /// Opens a folder or manifest with the model's concepts.
    pub fn open_data(&self, data: &Path) -> Result<Dataset, TrainError> {
        let concepts = vct_data::Concepts::new(self.record.concepts.clone())
            .map_err(|e| TrainError::Component(e.to_string()))?;
        Dataset::open_with_concepts(data, &concepts)
            .map_err(|e| TrainError::Component(e.to_string()))
    }

    /// The validation set of the run, opened again as training opened it (the same
    /// folder, or the same seeded split); `None` for a run without one.
    pub fn validation_set(&self) -> Result<Option<Dataset>, TrainError> {
        let c = &self.record.config;
        Ok(open_datasets(&c.data.train, &c.data.val, c.seed)?.1)
    }

    /// [`TrainedModel::evaluate`] on `set`, keeping every image's path and
    /// probabilities.
    pub fn evaluate_images(
        &self,
        set: Dataset,
        batch_size: usize,
    ) -> Result<Evaluation, TrainError> {
        let source = self.eval_source(set, batch_size)?;
        let batches = source
            .validation()
            .ok_or_else(|| TrainError::Component("no evaluation data".into()))??;
        validate_images(
            &self.model,
            self.record.loss().without_smoothing(),
            self.record.flip_average_eval,
            &self.record.concepts,
            batches,
        )
    }

    fn eval_source(&self, set: Dataset, batch_size: usize) -> Result<FolderSource, TrainError> {
        FolderSource::new(
            set.clone(),
            Some(set),
            &self.record.preprocess,
            batch_size,
            0,
            self.record.config.seed,
            self.model.device().clone(),
            Default::default(),
            true,
        )
    }

    /// Scores one image: every concept's probability, best first, and optionally the
    /// embedding (flip-averaged when the model was trained so).
    pub fn predict_one(
        &self,
        path: &Path,
        top_k: usize,
        embeddings: bool,
    ) -> Result<Prediction, TrainError> {
        let pipeline = eval_pipeline(&self.record.preprocess);
        let norm = normalize(self.record.preprocess.norm);
        let mut rng = vct_augment::item_rng(self.record.config.seed, 0, 0);
        let source = vct_augment::ImageSource::File(path);
        let img = pipeline
            .load(source, &DecodeOptions::default(), &mut rng)
            .map_err(|e| match e {
                // Decoding errors name the file already.
                vct_augment::AugmentError::Io { .. }
                | vct_augment::AugmentError::EmptyFile { .. }
                | vct_augment::AugmentError::Decode { .. }
                | vct_augment::AugmentError::TooLarge { .. } => {
                    TrainError::Component(e.to_string())
                }
                e => TrainError::Component(format!("{}: {e}", path.display())),
            })?;
        let x = vct_augment::to_tensor(&[img], norm, self.model.device())
            .map_err(|e| TrainError::Component(e.to_string()))?;
        // One forward pass serves both the probabilities and the embedding.
        let emb = eval_embeddings(&self.model, self.record.flip_average_eval, &x)?;
        let logits = eval_head(&self.model, &emb)?;
        let probs: Vec<f32> = self
            .record
            .loss
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
        Ok(Prediction {
            image: path.to_path_buf(),
            concepts: ranked,
            embedding,
        })
    }

    /// Scores every image; an image that cannot be read or decoded gets its error, and
    /// the others are still scored.
    pub fn predict(
        &self,
        images: &[PathBuf],
        top_k: usize,
        embeddings: bool,
    ) -> Vec<Result<Prediction, TrainError>> {
        images
            .iter()
            .map(|p| self.predict_one(p, top_k, embeddings))
            .collect()
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
