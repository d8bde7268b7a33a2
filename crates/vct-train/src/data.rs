//! From paths to batches: opens the training and validation sets with vct-data,
//! builds the recipe's augmentation pipelines with vct-augment, and feeds the
//! trainer through [`BatchSource`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::Device;
use vct_augment::{
    CenterCrop, Normalize, Pipeline, RandomCrop, RandomFlip, RandomResizedCrop, Resize, Transform,
};
use vct_data::{Dataset, LoadedBatch, Loader, LoaderConfig, Skipped};
use vct_hparams::HyperParams;

use crate::config::{Extras, ValSource};
use crate::recipe::{InputNorm, Preprocess, TrainCrop};
use crate::run::DataSummary;
use crate::trainer::{Batch, BatchLabels, BatchSource, Batches, Input};
use crate::TrainError;

fn data_err(e: impl std::fmt::Display) -> TrainError {
    TrainError::Component(e.to_string())
}

/// The pixel normalisation of an [`InputNorm`].
pub fn normalize(norm: InputNorm) -> Normalize {
    match norm {
        InputNorm::ImageNet => Normalize::ImageNet,
        InputNorm::Bgr255 => Normalize::Bgr255 {
            mean: vct_augment::BGR_MEAN,
        },
        InputNorm::Symmetric => Normalize::Symmetric,
    }
}

/// The training augmentation of a recipe, with RandAugment `(n, m, std)` last if asked.
pub fn train_pipeline(p: &Preprocess, randaugment: Option<(usize, f64, f64)>) -> Pipeline {
    let mut t: Vec<Box<dyn Transform>> = Vec::new();
    match p.train_crop {
        TrainCrop::RandomResized { min_scale } => t.push(Box::new(
            RandomResizedCrop::new(p.size as u32, (min_scale, 1.0), (3.0 / 4.0, 4.0 / 3.0))
                .with_filter(p.filter),
        )),
        TrainCrop::ShorterSideRandom => {
            t.push(Box::new(
                Resize::shorter_side(p.size as u32).with_filter(p.filter),
            ));
            t.push(Box::new(RandomCrop::new(p.size as u32)));
        }
    }
    if p.flip_probability > 0.0 {
        t.push(Box::new(RandomFlip::new(
            p.flip_probability,
            p.flip_vertical,
        )));
    }
    if let Some((n, m, std)) = randaugment {
        t.push(Box::new(vct_augment::RandAugment::new(n, m, std)));
    }
    Pipeline::new(t)
}

/// The evaluation preprocessing of a recipe: resize the shorter side, centre crop.
pub fn eval_pipeline(p: &Preprocess) -> Pipeline {
    Pipeline::new(vec![
        Box::new(Resize::shorter_side(p.eval_resize as u32).with_filter(p.filter)),
        Box::new(CenterCrop::new(p.size as u32)),
    ])
}

/// Opens the training set and its validation set.
pub fn open_datasets(
    data: &Path,
    val: &ValSource,
    seed: u64,
) -> Result<(Dataset, Option<Dataset>), TrainError> {
    let (train_path, found_val) = match vct_data::find_splits(data) {
        Some((train, val)) => (train, val),
        None => (data.to_path_buf(), None),
    };
    let train = Dataset::open(&train_path).map_err(data_err)?;
    match val {
        ValSource::None => Ok((train, None)),
        ValSource::Path(p) => {
            let v = Dataset::open_with_concepts(p, &train.concepts).map_err(data_err)?;
            Ok((train, Some(v)))
        }
        ValSource::Split(f) => {
            let (t, v) = vct_data::split(&train, *f, seed).map_err(data_err)?;
            Ok((t, Some(v)))
        }
        ValSource::Auto => match found_val {
            Some(p) => {
                let v = Dataset::open_with_concepts(&p, &train.concepts).map_err(data_err)?;
                Ok((train, Some(v)))
            }
            None if train.items.len() >= 20 => {
                let (t, v) = vct_data::split(&train, 0.1, seed).map_err(data_err)?;
                Ok((t, Some(v)))
            }
            None => Ok((train, None)),
        },
    }
}

/// Refuses data the hyperparameters' output cannot train: a softmax template
/// (one concept per image) on a training or validation set with a row of
/// several concepts or none. The error names that row and the setting.
pub fn check_labels(
    hparams: &HyperParams,
    train: &Dataset,
    val: Option<&Dataset>,
) -> Result<(), TrainError> {
    if hparams.multi_label() {
        return Ok(());
    }
    let setting = match hparams {
        HyperParams::RsbA1(_) => "concepts_mutually_exclusive = true",
        _ => "logreg = 0",
    };
    let hint = match hparams {
        HyperParams::RsbA1(_) => "set concepts_mutually_exclusive = false for multi-label data",
        _ => "set logreg = 1 for multi-label data",
    };
    for set in std::iter::once(train).chain(val) {
        set.require_single_label()
            .map_err(|source| TrainError::NotSingleLabel {
                template: hparams.template().name().to_string(),
                setting,
                hint,
                source: Box::new(source),
            })?;
    }
    Ok(())
}

/// Converts a loaded batch into the trainer's batch (without paths: the loaded batch
/// has only dataset indices).
pub fn to_batch(b: LoadedBatch, multi_label: bool, device: &Device) -> Result<Batch, TrainError> {
    let labels = if multi_label {
        BatchLabels::MultiHot(b.targets.flatten_all()?.to_vec1::<f32>()?)
    } else {
        BatchLabels::Single(
            b.labels
                .iter()
                .map(|l| l.first().copied().unwrap_or(0))
                .collect(),
        )
    };
    Ok(Batch {
        input: Input::Images(b.images.to_device(device)?),
        targets: b.targets.to_device(device)?,
        labels,
        paths: Vec::new(),
    })
}

/// The trainer's data: datasets, pipelines and loader settings.
#[derive(Debug)]
pub struct FolderSource {
    train: Arc<Dataset>,
    val: Option<Arc<Dataset>>,
    train_pipeline: Arc<Pipeline>,
    eval_pipeline: Arc<Pipeline>,
    batch_size: usize,
    items_per_epoch: usize,
    seed: u64,
    normalize: Normalize,
    device: Device,
    skipped: Arc<Mutex<Vec<Skipped>>>,
    mixup: Option<vct_augment::Mixup>,
    multi_label: bool,
    preprocess: Preprocess,
}

impl FolderSource {
    /// A source over `train` (and `val`) for a recipe's preprocessing. With
    /// `deterministic`, training images get the evaluation preprocessing (no random crop,
    /// flip or extras): what a cache of a frozen backbone's embeddings computes.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        train: Dataset,
        val: Option<Dataset>,
        preprocess: &Preprocess,
        batch_size: usize,
        items_per_epoch: usize,
        seed: u64,
        device: Device,
        extras: Extras,
        deterministic: bool,
    ) -> Result<FolderSource, TrainError> {
        if batch_size == 0 {
            return Err(TrainError::TooLarge {
                what: "batch_size".into(),
                value: "0".into(),
                limit: "at least 1".into(),
            });
        }
        // Labels for the metrics are multi-hot when either set has an image of
        // other than one concept, so validation rows keep all their concepts.
        let multi_label = train.multi_label || val.as_ref().is_some_and(|v| v.multi_label);
        let train_pipeline = if deterministic {
            eval_pipeline(preprocess)
        } else {
            train_pipeline(preprocess, extras.randaugment)
        };
        Ok(FolderSource {
            multi_label,
            train: Arc::new(train),
            val: val.map(Arc::new),
            train_pipeline: Arc::new(train_pipeline),
            eval_pipeline: Arc::new(eval_pipeline(preprocess)),
            batch_size,
            items_per_epoch,
            seed,
            normalize: normalize(preprocess.norm),
            device,
            skipped: Arc::new(Mutex::new(Vec::new())),
            mixup: if deterministic { None } else { extras.mixup },
            preprocess: preprocess.clone(),
        })
    }

    /// The training set.
    pub fn train_set(&self) -> &Arc<Dataset> {
        &self.train
    }

    /// The validation set.
    pub fn val_set(&self) -> Option<&Arc<Dataset>> {
        self.val.as_ref()
    }

    /// The recipe's preprocessing.
    pub fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }

    /// Images per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Training images per epoch.
    pub fn items_per_epoch(&self) -> usize {
        self.items_per_epoch
    }

    /// The run seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether labels are multi-hot.
    pub fn multi_label(&self) -> bool {
        self.multi_label
    }

    /// Every image of `dataset` in its order, through the evaluation preprocessing.
    pub fn eval_batches(&self, dataset: &Arc<Dataset>) -> Loader {
        self.loader(dataset, &self.eval_pipeline, 0, dataset.items.len(), false)
    }

    /// Image counts for `run.json`.
    pub fn summary(&self, train: &Path, val: Option<&Path>) -> DataSummary {
        DataSummary {
            train: train.display().to_string(),
            train_images: self.train.items.len(),
            val: val.map(|v| v.display().to_string()),
            val_images: self.val.as_ref().map(|v| v.items.len()).unwrap_or(0),
            skipped: self.train.skipped.len()
                + self.val.as_ref().map(|v| v.skipped.len()).unwrap_or(0),
            skipped_files: self
                .train
                .skipped
                .iter()
                .chain(self.val.iter().flat_map(|v| v.skipped.iter()))
                .map(|s| format!("{}: {}", s.path.display(), s.reason))
                .collect(),
        }
    }

    fn loader(
        &self,
        dataset: &Arc<Dataset>,
        pipeline: &Arc<Pipeline>,
        epoch: u64,
        items: usize,
        training: bool,
    ) -> Loader {
        Loader::new(
            dataset.clone(),
            pipeline.clone(),
            LoaderConfig {
                batch_size: self.batch_size,
                seed: self.seed,
                epoch,
                items_per_epoch: items,
                shuffle: training,
                mixup: if training { self.mixup } else { None },
                normalize: self.normalize,
                ..LoaderConfig::default()
            },
        )
    }

    fn batches<'a>(
        &'a self,
        dataset: &'a Dataset,
        loader: Loader,
        multi_label: bool,
    ) -> Batches<'a> {
        Box::new(loader.map(move |b| {
            let b = b.map_err(data_err)?;
            if !b.skipped.is_empty() {
                if let Ok(mut all) = self.skipped.lock() {
                    for s in &b.skipped {
                        // An unreadable file is met once per epoch: count it once
                        // (vct-data logs each one as it meets it).
                        if !all.iter().any(|k| k.path == s.path) {
                            all.push(s.clone());
                        }
                    }
                }
            }
            let paths = b
                .indices
                .iter()
                .map(|&i| dataset.items[i].path().to_path_buf())
                .collect();
            let mut batch = to_batch(b, multi_label, &self.device)?;
            batch.paths = paths;
            Ok(batch)
        }))
    }
}

impl BatchSource for FolderSource {
    fn train_epoch(&self, epoch: usize) -> Result<Batches<'_>, TrainError> {
        let loader = self.loader(
            &self.train,
            &self.train_pipeline,
            epoch as u64,
            self.items_per_epoch,
            true,
        );
        Ok(self.batches(&self.train, loader, self.multi_label))
    }

    fn train_steps(&self) -> usize {
        self.items_per_epoch.div_ceil(self.batch_size)
    }

    fn skipped(&self) -> Vec<(PathBuf, String)> {
        self.skipped
            .lock()
            .map(|v| {
                v.iter()
                    .map(|s| (s.path.clone(), s.reason.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn validation(&self) -> Option<Result<Batches<'_>, TrainError>> {
        let val = self.val.as_ref()?;
        let loader = self.loader(val, &self.eval_pipeline, 0, val.items.len(), false);
        Some(Ok(self.batches(val, loader, self.multi_label)))
    }
}
