//! The prefetching batch loader: a worker thread walks the epoch's order, decodes
//! and augments each batch's items on a rayon pool, and sends finished batches
//! through a bounded channel. At most `prefetch` batches wait in the queue (plus
//! the one being built), so memory depends on the queue depth, never on the
//! dataset's size.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use vct_augment::{
    item_rng, write_chw, AugmentError, DecodeOptions, Mixup, Normalize, Pipeline, RgbImage,
};

use crate::dataset::{CorruptPolicy, SkipKind, Skipped};
use crate::error::config;
use crate::{epoch_order, DataError, Dataset};

/// Domain tag of the per-batch Mixup/CutMix stream.
const MIX_STREAM: u64 = 0x4d49_5855_5000_0000;

/// How a [`Loader`] walks an epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoaderConfig {
    /// Images per batch (the last batch may be smaller unless `drop_last`).
    pub batch_size: usize,
    /// The run's seed.
    pub seed: u64,
    /// The epoch (0-based); with `seed` it fixes the order and every augmentation.
    pub epoch: u64,
    /// Images this epoch; 0 = one pass over the dataset. Larger than the dataset
    /// cycles with a fresh shuffle per pass.
    pub items_per_epoch: usize,
    /// Shuffle the order (training) or keep the dataset order (evaluation).
    pub shuffle: bool,
    /// Class-balanced sampling (each position draws a concept uniformly).
    pub balanced: bool,
    /// Pixel normalisation of the output tensor.
    pub normalize: Normalize,
    /// Decoding threads; 0 = all available cores.
    pub threads: usize,
    /// Finished batches that may wait in the queue (at least 1).
    pub prefetch: usize,
    /// Drop a final partial batch.
    pub drop_last: bool,
    /// Images that fail to decode: skip (logged, counted) or fail the epoch.
    pub policy: CorruptPolicy,
    /// Decoding settings.
    pub decode: DecodeOptions,
    /// Mixup / CutMix applied to every batch (targets mixed accordingly).
    pub mixup: Option<Mixup>,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 32,
            seed: 0,
            epoch: 0,
            items_per_epoch: 0,
            shuffle: true,
            balanced: false,
            normalize: Normalize::ImageNet,
            threads: 0,
            prefetch: 2,
            drop_last: false,
            policy: CorruptPolicy::Skip,
            decode: DecodeOptions::default(),
            mixup: None,
        }
    }
}

/// One batch.
#[derive(Debug, Clone)]
pub struct LoadedBatch {
    /// `[N, 3, H, W]` `f32`, normalised, on the CPU.
    pub images: Tensor,
    /// `[N, C]` `f32` multi-hot targets (one-hot for single-label data; mixed
    /// when Mixup/CutMix is on).
    pub targets: Tensor,
    /// Each image's concept indices (one for single-label data).
    pub labels: Vec<Vec<usize>>,
    /// Each image's index in the dataset.
    pub indices: Vec<usize>,
    /// Images of this batch that were skipped (policy `skip`).
    pub skipped: Vec<Skipped>,
}

/// Counts for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Batches yielded so far.
    pub batches_done: usize,
    /// Batches this epoch ([`Loader::len`]).
    pub batches_total: usize,
    /// Images yielded so far.
    pub items_done: usize,
    /// Images this epoch.
    pub items_total: usize,
    /// Images skipped so far.
    pub skipped: usize,
}

/// An iterator of [`LoadedBatch`]es for one epoch, prepared in the background.
///
/// Dropping it stops the worker after the batch in progress.
#[derive(Debug)]
pub struct Loader {
    rx: Option<Receiver<Result<LoadedBatch, DataError>>>,
    worker: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    progress: Progress,
    skipped: Vec<Skipped>,
}

impl Loader {
    /// Starts loading `dataset`'s epoch `config.epoch` through `pipeline`, whose
    /// output must have one fixed size (end it with a crop or exact resize).
    /// Configuration errors arrive as the first item.
    pub fn new(dataset: Arc<Dataset>, pipeline: Arc<Pipeline>, config: LoaderConfig) -> Loader {
        let order = epoch_order(
            &dataset,
            config.items_per_epoch,
            config.seed,
            config.epoch,
            config.shuffle,
            config.balanced,
        );
        let bs = config.batch_size.max(1);
        let batches_total = if config.drop_last {
            order.len() / bs
        } else {
            order.len().div_ceil(bs)
        };
        let items_total = if config.drop_last {
            batches_total * bs
        } else {
            order.len()
        };
        let (tx, rx) = sync_channel(config.prefetch.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let stop_w = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("vct-data-loader".into())
            .spawn(move || work(&dataset, &pipeline, &config, &order, &tx, &stop_w));
        let (worker, rx) = match spawned {
            Ok(h) => (Some(h), rx),
            Err(e) => {
                let (tx, rx) = sync_channel(1);
                let _ = tx.send(Err(DataError::Worker(e.to_string())));
                (None, rx)
            }
        };
        Loader {
            rx: Some(rx),
            worker,
            stop,
            progress: Progress {
                batches_total,
                items_total,
                ..Progress::default()
            },
            skipped: Vec::new(),
        }
    }

    /// Number of batches this epoch (fewer arrive only if whole batches are skipped).
    pub fn len(&self) -> usize {
        self.progress.batches_total
    }

    /// True when the epoch has no batches.
    pub fn is_empty(&self) -> bool {
        self.progress.batches_total == 0
    }

    /// Counts so far.
    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// Every image skipped so far this epoch, with the reason.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }
}

impl Iterator for Loader {
    type Item = Result<LoadedBatch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.rx.as_ref()?.recv().ok()?;
        match &item {
            Ok(b) => {
                self.progress.batches_done += 1;
                self.progress.items_done += b.indices.len();
                self.progress.skipped += b.skipped.len();
                self.skipped.extend(b.skipped.iter().cloned());
            }
            Err(_) => self.rx = None,
        }
        Some(item)
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver makes a blocked send fail, so the worker exits.
        self.rx = None;
        if let Some(h) = self.worker.take() {
            let _ = h.join();
        }
    }
}

/// One decoded, augmented, normalised image.
type Prepared = Result<RgbImage, AugmentError>;

fn work(
    data: &Dataset,
    pipeline: &Pipeline,
    cfg: &LoaderConfig,
    order: &[(usize, u64)],
    tx: &SyncSender<Result<LoadedBatch, DataError>>,
    stop: &AtomicBool,
) {
    if cfg.batch_size == 0 {
        let _ = tx.send(Err(config("batch size", 0, "at least 1")));
        return;
    }
    let threads = if cfg.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        cfg.threads
    };
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("vct-data-{i}"))
        .build()
    {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.send(Err(DataError::Worker(e.to_string())));
            return;
        }
    };
    for (b, chunk) in order.chunks(cfg.batch_size).enumerate() {
        if stop.load(Ordering::Relaxed) || (cfg.drop_last && chunk.len() < cfg.batch_size) {
            return;
        }
        let result = match pipeline.output_size() {
            Some(size) => load_batch(data, pipeline, cfg, b, chunk, size, &pool),
            None => {
                let prepared: Vec<Prepared> = pool.install(|| {
                    chunk
                        .par_iter()
                        .map(|&(idx, key)| {
                            let img = data.items[idx].load(&cfg.decode)?;
                            let mut rng = item_rng(cfg.seed, cfg.epoch, key);
                            pipeline.apply(img, &mut rng)
                        })
                        .collect()
                });
                assemble(data, cfg, b, chunk, prepared, &pool)
            }
        };
        let failed = result.is_err();
        match result {
            Ok(None) => continue,
            Ok(Some(batch)) => {
                if tx.send(Ok(batch)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
        if failed {
            return;
        }
    }
}

/// One batch of a pipeline with a fixed output size: each image is decoded,
/// augmented and normalised by [`Pipeline::load_into`] straight into its slot
/// of the batch buffer (per-thread scratch buffers, no image allocated per
/// item); the slots of skipped images are then closed up. `None` when every
/// image of the batch was skipped.
fn load_batch(
    data: &Dataset,
    pipeline: &Pipeline,
    cfg: &LoaderConfig,
    batch_index: usize,
    chunk: &[(usize, u64)],
    (w, h): (u32, u32),
    pool: &rayon::ThreadPool,
) -> Result<Option<LoadedBatch>, DataError> {
    let per = 3 * w as usize * h as usize;
    let mut images = vec![0f32; per * chunk.len()];
    let results: Vec<Result<(), AugmentError>> = pool.install(|| {
        images
            .par_chunks_mut(per)
            .zip(chunk.par_iter())
            .map(|(out, &(idx, key))| {
                let mut rng = item_rng(cfg.seed, cfg.epoch, key);
                let item = &data.items[idx];
                pipeline.load_into(
                    item.image_source(),
                    &cfg.decode,
                    &mut rng,
                    cfg.normalize,
                    out,
                )
            })
            .collect()
    });
    let mut skipped = Vec::new();
    let mut good = Vec::with_capacity(chunk.len());
    for (slot, (&(idx, _), r)) in chunk.iter().zip(results).enumerate() {
        match r {
            Ok(()) => {
                // Close up the slots of skipped images.
                let to = good.len();
                if to != slot {
                    images.copy_within(slot * per..(slot + 1) * per, to * per);
                }
                good.push(idx);
            }
            Err(e) => skip_or_fail(data, cfg, idx, e, &mut skipped)?,
        }
    }
    if good.is_empty() {
        return Ok(None);
    }
    images.truncate(good.len() * per);
    finish(data, cfg, batch_index, &good, images, (w, h), skipped).map(Some)
}

/// Records a skipped image under policy `skip`; any other error is returned.
fn skip_or_fail(
    data: &Dataset,
    cfg: &LoaderConfig,
    idx: usize,
    e: AugmentError,
    skipped: &mut Vec<Skipped>,
) -> Result<(), DataError> {
    if cfg.policy == CorruptPolicy::Skip && is_data_error(&e) {
        let path = data.items[idx].path().to_path_buf();
        let reason = e.to_string();
        eprintln!("vct-data: skipped {}: {reason}", path.display());
        skipped.push(Skipped {
            path,
            reason,
            kind: SkipKind::Unreadable,
        });
        Ok(())
    } else {
        Err(e.into())
    }
}

/// Stacks one batch; `None` when every image of it was skipped.
fn assemble(
    data: &Dataset,
    cfg: &LoaderConfig,
    batch_index: usize,
    chunk: &[(usize, u64)],
    prepared: Vec<Prepared>,
    pool: &rayon::ThreadPool,
) -> Result<Option<LoadedBatch>, DataError> {
    let mut skipped = Vec::new();
    let mut good = Vec::with_capacity(chunk.len());
    for (&(idx, _), p) in chunk.iter().zip(prepared) {
        match p {
            Ok(v) => good.push((idx, v)),
            Err(e) => skip_or_fail(data, cfg, idx, e, &mut skipped)?,
        }
    }
    let Some((_, first)) = good.first() else {
        return Ok(None);
    };
    let (w, h) = first.dimensions();
    let per = 3 * w as usize * h as usize;
    let n = good.len();
    if let Some((idx, img)) = good.iter().find(|(_, img)| img.dimensions() != (w, h)) {
        // Position in the batch as loaded, before skipped images were removed.
        let index = chunk.iter().position(|c| c.0 == *idx).unwrap_or(0);
        return Err(AugmentError::SizeMismatch {
            index,
            got: img.dimensions(),
            expected: (w, h),
        }
        .into());
    }
    // Normalise straight into the batch buffer, in parallel: no per-image f32
    // buffers and no serial copy between the pool's batches.
    let mut images = vec![0f32; per * n];
    pool.install(|| {
        images
            .par_chunks_mut(per)
            .zip(good.par_iter())
            .try_for_each(|(out, (_, img))| write_chw(img, cfg.normalize, out))
    })?;
    let good: Vec<usize> = good.iter().map(|(idx, _)| *idx).collect();
    finish(data, cfg, batch_index, &good, images, (w, h), skipped).map(Some)
}

/// Adds the targets, labels and Mixup/CutMix to `images` (`[n, 3, h, w]` of the
/// dataset items `good`).
fn finish(
    data: &Dataset,
    cfg: &LoaderConfig,
    batch_index: usize,
    good: &[usize],
    mut images: Vec<f32>,
    (w, h): (u32, u32),
    skipped: Vec<Skipped>,
) -> Result<LoadedBatch, DataError> {
    let n = good.len();
    let k = data.concepts.len();
    let mut targets = vec![0f32; n * k];
    let mut labels = Vec::with_capacity(n);
    let mut indices = Vec::with_capacity(n);
    for (i, idx) in good.iter().enumerate() {
        let item = &data.items[*idx];
        for &l in &item.labels {
            targets[i * k + l] = 1.0;
        }
        labels.push(item.labels.clone());
        indices.push(*idx);
    }
    if let Some(mix) = &cfg.mixup {
        let mut rng = item_rng(cfg.seed ^ MIX_STREAM, cfg.epoch, batch_index as u64);
        mix.apply_slices(
            &mut images,
            [n, 3, h as usize, w as usize],
            &mut targets,
            &mut rng,
        )?;
    }
    Ok(LoadedBatch {
        images: Tensor::from_vec(images, (n, 3, h as usize, w as usize), &Device::Cpu)?,
        targets: Tensor::from_vec(targets, (n, k), &Device::Cpu)?,
        labels,
        indices,
        skipped,
    })
}

/// True for errors of the image itself (skippable), false for configuration
/// errors of the pipeline (which would hit every image).
fn is_data_error(e: &AugmentError) -> bool {
    matches!(
        e,
        AugmentError::Io { .. }
            | AugmentError::EmptyFile { .. }
            | AugmentError::Decode { .. }
            | AugmentError::TooLarge { .. }
    )
}
