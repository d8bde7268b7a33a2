//! A frozen backbone's embeddings, computed once: training the head on them makes an
//! epoch a pass over a matrix instead of a pass of the backbone over every image.
//!
//! What the cached path applies: the evaluation preprocessing (shorter-side resize and
//! centre crop, the recipe's filter and normalisation) to training and validation images
//! alike, the mirror average of `average_horizontal_flips` (in training too), the
//! backbone in inference mode (running batch-norm statistics, no dropout or drop path),
//! and per epoch the same shuffled order (and `num_items_per_epoch` cycling) as the
//! image loader. What it cannot apply: anything that changes per epoch — random crops
//! and flips, RandAugment, Mixup / CutMix. The result equals training the frozen
//! backbone's head on images with that same deterministic preprocessing.
//!
//! The cache lives in the run folder (`embeddings/`), keyed by a hash of the backbone's
//! weights, the preprocessing and every image file (path, size, modification time); a
//! change in any of them rebuilds it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use vct_arch::Classifier;
use vct_data::{epoch_order, Dataset};

use crate::checkpoint::fnv1a64;
use crate::data::FolderSource;
use crate::outputs::write_atomic;
use crate::trainer::{eval_embeddings, Batch, BatchLabels, BatchSource, Batches, Input};
use crate::TrainError;

/// The embeddings, targets and labels of one set, a row per readable image.
#[derive(Debug)]
struct Set {
    dataset: Arc<Dataset>,
    embeddings: Tensor,
    targets: Tensor,
    /// Row of each dataset item, `None` for an unreadable one.
    rows: Vec<Option<u32>>,
}

impl Set {
    fn batch(&self, items: &[usize], multi_label: bool) -> Result<Option<Batch>, TrainError> {
        let rows: Vec<u32> = items.iter().filter_map(|&i| self.rows[i]).collect();
        if rows.is_empty() {
            return Ok(None);
        }
        let idx = Tensor::new(rows.as_slice(), self.embeddings.device())?;
        let targets = self.targets.index_select(&idx, 0)?;
        let labels = if multi_label {
            BatchLabels::MultiHot(targets.flatten_all()?.to_vec1()?)
        } else {
            BatchLabels::Single(
                items
                    .iter()
                    .filter(|&&i| self.rows[i].is_some())
                    .map(|&i| self.dataset.items[i].labels.first().copied().unwrap_or(0))
                    .collect(),
            )
        };
        Ok(Some(Batch {
            input: Input::Embeddings(self.embeddings.index_select(&idx, 0)?),
            targets,
            labels,
            // Training batches only: nothing asks the cache for per-image results.
            paths: Vec::new(),
        }))
    }
}

/// The cached embeddings of a run's training (and validation) images.
#[derive(Debug)]
pub struct EmbeddingCache {
    train: Set,
    val: Option<Set>,
    batch_size: usize,
    items_per_epoch: usize,
    seed: u64,
    multi_label: bool,
    skipped: Vec<(PathBuf, String)>,
    /// The cache files (train, val).
    pub files: Vec<PathBuf>,
    /// Whether they were computed now (false: read from an earlier run).
    pub computed: bool,
}

/// The backbone's weights as a digest (the head is trained, the backbone is not).
fn backbone_digest(model: &Classifier) -> Result<u64, TrainError> {
    let mut h = Vec::new();
    for e in model.entries() {
        if e.group == vct_arch::params::Group::Backbone {
            h.extend_from_slice(e.name.as_bytes());
            let v: Vec<f32> = e.var.as_tensor().flatten_all()?.to_vec1()?;
            h.extend_from_slice(&fnv1a64(bytemuck_f32(&v)).to_le_bytes());
        }
    }
    Ok(fnv1a64(&h))
}

fn bytemuck_f32(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any byte is a valid u8; the length is exact.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// The key of one set's cache: weights, preprocessing, and every file.
fn key(
    weights: u64,
    source: &FolderSource,
    dataset: &Dataset,
    flip_average: bool,
) -> Result<String, TrainError> {
    let mut k = format!(
        "v1|{weights:016x}|{}|{flip_average}|",
        serde_json::to_string(source.preprocess()).unwrap_or_default()
    );
    for it in &dataset.items {
        let meta = std::fs::metadata(it.path()).ok();
        let (size, mtime) = meta
            .map(|m| {
                let t = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                (m.len(), t)
            })
            .unwrap_or((0, 0));
        k.push_str(&format!(
            "{}|{size}|{mtime}|{:?}\n",
            it.path().display(),
            it.labels
        ));
    }
    Ok(format!("{:016x}", fnv1a64(k.as_bytes())))
}

fn read_cached(
    path: &Path,
    device: &Device,
    n: usize,
) -> Option<(Tensor, Tensor, Vec<Option<u32>>)> {
    let t = candle_core::safetensors::load(path, &Device::Cpu).ok()?;
    let emb = t.get("embeddings")?.to_device(device).ok()?;
    let targets = t.get("targets")?.to_device(device).ok()?;
    let present: Vec<u8> = t.get("present")?.to_vec1().ok()?;
    if present.len() != n {
        return None;
    }
    let mut row = 0u32;
    let rows = present
        .iter()
        .map(|&p| {
            (p == 1).then(|| {
                row += 1;
                row - 1
            })
        })
        .collect();
    Some((emb, targets, rows))
}

/// Embeds every image of `dataset` (dataset order, evaluation preprocessing) or reads
/// the cache written for the same key.
#[allow(clippy::too_many_arguments)]
fn embed_set(
    model: &Classifier,
    flip_average: bool,
    source: &FolderSource,
    dataset: &Arc<Dataset>,
    dir: &Path,
    name: &str,
    weights: u64,
    skipped: &mut Vec<(PathBuf, String)>,
    computed: &mut bool,
) -> Result<(Set, PathBuf), TrainError> {
    let key = key(weights, source, dataset, flip_average)?;
    let path = dir.join(format!("{name}-{key}.safetensors"));
    let n = dataset.items.len();
    let device = model.device();
    if let Some((embeddings, targets, rows)) = read_cached(&path, device, n) {
        let set = Set {
            dataset: dataset.clone(),
            embeddings,
            targets,
            rows,
        };
        return Ok((set, path));
    }
    *computed = true;
    let mut embs = Vec::new();
    let mut targets = Vec::new();
    let mut rows = vec![None; n];
    let mut next = 0u32;
    for batch in source.eval_batches(dataset) {
        let b = batch.map_err(|e| TrainError::Component(e.to_string()))?;
        for s in &b.skipped {
            skipped.push((s.path.clone(), s.reason.clone()));
        }
        if b.indices.is_empty() {
            continue;
        }
        let x = b.images.to_device(device)?;
        embs.push(
            eval_embeddings(model, flip_average, &x)?
                .detach()
                .to_device(&Device::Cpu)?,
        );
        targets.push(b.targets.to_dtype(DType::F32)?);
        for &i in &b.indices {
            rows[i] = Some(next);
            next += 1;
        }
    }
    if embs.is_empty() {
        return Err(TrainError::Component(format!(
            "no {name} image could be read to compute its embedding"
        )));
    }
    let embeddings = Tensor::cat(&embs, 0)?;
    let targets = Tensor::cat(&targets, 0)?;
    let present: Vec<u8> = rows.iter().map(|r| u8::from(r.is_some())).collect();
    let present = Tensor::from_vec(present, n, &Device::Cpu)?;
    std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let bytes = safetensors::serialize(
        [
            ("embeddings", &embeddings),
            ("present", &present),
            ("targets", &targets),
        ],
        None,
    )
    .map_err(|e| TrainError::Component(format!("serialising the embedding cache: {e}")))?;
    write_atomic(&path, &bytes)?;
    // Caches of other keys (older weights, changed files) would never be read again.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if f.starts_with(&format!("{name}-")) && e.path() != path {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let set = Set {
        dataset: dataset.clone(),
        embeddings: embeddings.to_device(device)?,
        targets: targets.to_device(device)?,
        rows,
    };
    Ok((set, path))
}

impl EmbeddingCache {
    /// The embeddings of `source`'s images under `model`'s (frozen) backbone, computed
    /// now or read from `out/embeddings/`.
    pub fn build(
        model: &Classifier,
        flip_average: bool,
        source: &FolderSource,
        out: &Path,
    ) -> Result<EmbeddingCache, TrainError> {
        let dir = out.join("embeddings");
        let weights = backbone_digest(model)?;
        let mut skipped = Vec::new();
        let mut computed = false;
        let (train, tf) = embed_set(
            model,
            flip_average,
            source,
            source.train_set(),
            &dir,
            "train",
            weights,
            &mut skipped,
            &mut computed,
        )?;
        let mut files = vec![tf];
        let val = match source.val_set() {
            Some(v) => {
                let (set, vf) = embed_set(
                    model,
                    flip_average,
                    source,
                    v,
                    &dir,
                    "val",
                    weights,
                    &mut skipped,
                    &mut computed,
                )?;
                files.push(vf);
                Some(set)
            }
            None => None,
        };
        Ok(EmbeddingCache {
            train,
            val,
            batch_size: source.batch_size(),
            items_per_epoch: source.items_per_epoch(),
            seed: source.seed(),
            multi_label: source.multi_label(),
            skipped,
            files,
            computed,
        })
    }
}

impl BatchSource for EmbeddingCache {
    fn train_epoch(&self, epoch: usize) -> Result<Batches<'_>, TrainError> {
        // The loader's order for this epoch, so the cached path visits what the image
        // path would.
        let order: Vec<usize> = epoch_order(
            &self.train.dataset,
            self.items_per_epoch,
            self.seed,
            epoch as u64,
            true,
            false,
        )
        .into_iter()
        .map(|(i, _)| i)
        .collect();
        let bs = self.batch_size;
        let chunks: Vec<Vec<usize>> = order.chunks(bs).map(<[usize]>::to_vec).collect();
        Ok(Box::new(chunks.into_iter().filter_map(move |c| {
            self.train.batch(&c, self.multi_label).transpose()
        })))
    }

    fn train_steps(&self) -> usize {
        self.items_per_epoch.div_ceil(self.batch_size)
    }

    fn validation(&self) -> Option<Result<Batches<'_>, TrainError>> {
        let val = self.val.as_ref()?;
        let n = val.dataset.items.len();
        let chunks: Vec<Vec<usize>> = (0..n)
            .collect::<Vec<_>>()
            .chunks(self.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        Some(Ok(Box::new(chunks.into_iter().filter_map(move |c| {
            val.batch(&c, self.multi_label).transpose()
        }))))
    }

    fn skipped(&self) -> Vec<(PathBuf, String)> {
        self.skipped.clone()
    }
}
