//! Weights I/O: reading `.safetensors` and PyTorch `.pth`/`.pt` checkpoints
//! into a [`Classifier`] with a named-keys report, saving, and finding
//! pretrained files (explicit path → `VCT_WEIGHTS_DIR` → Hugging Face cache).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::{ArchError, Result};
use crate::model::{Arch, Classifier};
use crate::params::Group;

mod pickle;
mod pth;

/// What the head of the model may do when the file's does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadMode {
    /// Starting from pretrained weights: a head missing from the file or of
    /// another shape (another class count, another head type) keeps its fresh
    /// initialisation and is reported in [`LoadReport::head_reinitialised`].
    #[default]
    FineTune,
    /// Restoring a trained model (evaluation, prediction, resuming): every
    /// tensor of the model, head included, must be in the file with its shape,
    /// and the file may hold nothing else. Any difference is an error, whatever
    /// [`LoadOptions::strict`] says.
    Exact,
}

/// How to load a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Fail on any missing, unexpected or mismatched backbone key (default true).
    /// Non-strict loads what fits and reports the rest.
    pub strict: bool,
    /// What a head that does not fit means (default [`LoadMode::FineTune`]).
    pub mode: LoadMode,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions::fine_tune()
    }
}

impl LoadOptions {
    /// Strict backbone, head re-initialised when it does not fit (the default).
    pub fn fine_tune() -> Self {
        LoadOptions {
            strict: true,
            mode: LoadMode::FineTune,
        }
    }

    /// Loads what fits and reports the rest (backbone and head).
    pub fn non_strict() -> Self {
        LoadOptions {
            strict: false,
            mode: LoadMode::FineTune,
        }
    }

    /// Every tensor, head included, must match: for restoring a trained model.
    pub fn exact() -> Self {
        LoadOptions {
            strict: true,
            mode: LoadMode::Exact,
        }
    }
}

/// What a load did, key by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The file read.
    pub path: PathBuf,
    /// Number of tensors set from the file.
    pub loaded: usize,
    /// Model tensors the file lacks (backbone; the head too in [`LoadMode::Exact`]).
    pub missing: Vec<String>,
    /// File tensors the model does not have.
    pub unexpected: Vec<String>,
    /// Tensors present in both with a different shape or a non-float dtype: `key: detail`.
    pub mismatched: Vec<String>,
    /// Head tensors kept at their fresh initialisation (class count differs, or a
    /// different head): normal fine-tuning, not an error.
    pub head_reinitialised: Vec<String>,
    /// The file's classifier tensors that the model's head did not use.
    pub head_ignored: Vec<String>,
}

impl LoadReport {
    /// True when no backbone key was missing, unexpected or mismatched.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "loaded {} tensors from {}",
            self.loaded,
            self.path.display()
        )?;
        let lists = [
            ("missing in file", &self.missing),
            ("unexpected in file", &self.unexpected),
            ("shape/dtype mismatch", &self.mismatched),
            ("head re-initialised", &self.head_reinitialised),
            ("checkpoint head ignored", &self.head_ignored),
        ];
        for (what, keys) in lists {
            if !keys.is_empty() {
                writeln!(f, "  {what} ({}): {}", keys.len(), keys.join(", "))?;
            }
        }
        Ok(())
    }
}

fn file_err(path: &Path, reason: impl fmt::Display) -> ArchError {
    ArchError::WeightsFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads every tensor of a `.safetensors` or PyTorch (`.pth`, `.pt`, `.bin`, `.ckpt`) file.
pub fn read_checkpoint(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if !path.is_file() {
        return Err(file_err(path, "no such file"));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let st = || -> Result<Vec<(String, Tensor)>> {
        let m = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| file_err(path, format!("not a valid safetensors file: {e}")))?;
        Ok(m.into_iter().collect())
    };
    match ext.as_str() {
        "safetensors" => st(),
        "pth" | "pt" | "bin" | "ckpt" | "tar" => pth::read(path),
        _ if pth::is_torch_file(path) => pth::read(path),
        _ => st().map_err(|_| {
            file_err(path, "neither a safetensors nor a PyTorch checkpoint (expected .safetensors, .pth or .pt)")
        }),
    }
}

/// Equal shapes once size-1 dimensions are dropped: BN-Inception files converted
/// from Caffe store norm tensors as `[1, C]` where PyTorch now uses `[C]`.
pub(crate) fn same_but_unit_dims(a: &[usize], b: &[usize]) -> bool {
    let sq = |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
    sq(a) == sq(b) && a.iter().product::<usize>() == b.iter().product::<usize>()
}

fn is_float(dt: DType) -> bool {
    matches!(dt, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
}

impl Classifier {
    /// Loads a checkpoint file (see [`read_checkpoint`]) into the model.
    pub fn load_weights(&self, path: &Path, opts: LoadOptions) -> Result<LoadReport> {
        let tensors = read_checkpoint(path)?;
        self.load_tensors(tensors, path, opts)
    }

    /// Loads named tensors (checkpoint names in any supported dialect) into the model.
    /// Strict: nothing is changed unless every backbone key matches;
    /// [`LoadMode::Exact`]: nothing is changed unless every key, head included, matches.
    pub fn load_tensors(
        &self,
        tensors: Vec<(String, Tensor)>,
        source: &Path,
        opts: LoadOptions,
    ) -> Result<LoadReport> {
        let family = self.arch().family();
        let mut file: BTreeMap<String, Tensor> = BTreeMap::new();
        for (k, t) in tensors {
            if let Some(m) = family.map_key(&k) {
                file.insert(m, t);
            }
        }
        let (hw, hb) = family.linear_head_names();
        let ckpt_head: HashSet<&str> = [hw, hb].into_iter().collect();
        let mut report = LoadReport {
            path: source.to_path_buf(),
            ..LoadReport::default()
        };
        let mut plan = Vec::new();
        let mut used = HashSet::new();
        let exact = opts.mode == LoadMode::Exact;
        for e in self.entries() {
            // Only fine-tuning lets the head differ; exact loads treat it as any tensor.
            let head = e.group == Group::Head && !exact;
            match file.get(&e.name) {
                Some(t) => {
                    used.insert(e.name.clone());
                    let want = e.var.dims().to_vec();
                    if !is_float(t.dtype()) {
                        report.mismatched.push(format!(
                            "{}: dtype {:?}, expected a float tensor",
                            e.name,
                            t.dtype()
                        ));
                    } else if t.dims() != want.as_slice() && !same_but_unit_dims(t.dims(), &want) {
                        if head {
                            report.head_reinitialised.push(format!(
                                "{}: file {:?}, model {:?}",
                                e.name,
                                t.dims(),
                                want
                            ));
                        } else {
                            report.mismatched.push(format!(
                                "{}: file shape {:?}, model shape {:?}",
                                e.name,
                                t.dims(),
                                want
                            ));
                        }
                    } else {
                        plan.push((e.var.clone(), t.reshape(want)?));
                    }
                }
                None if head => report
                    .head_reinitialised
                    .push(format!("{}: not in file", e.name)),
                None => report.missing.push(e.name.clone()),
            }
        }
        for k in file.keys() {
            if !used.contains(k) {
                if ckpt_head.contains(k.as_str()) && !exact {
                    report.head_ignored.push(k.clone());
                } else {
                    report.unexpected.push(k.clone());
                }
            }
        }
        if (opts.strict || exact) && !report.is_clean() {
            return Err(ArchError::WeightsMismatch {
                path: source.to_path_buf(),
                arch: self.arch().to_string(),
                report: report.to_string(),
            });
        }
        for (var, t) in plan {
            let t = t.to_dtype(DType::F32)?.to_device(var.device())?;
            var.set(&t)?;
            report.loaded += 1;
        }
        Ok(report)
    }

    /// Saves every tensor (parameters and running statistics) under its
    /// state-dict name to a `.safetensors` file, atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let map: HashMap<String, Tensor> = self.state_dict().into_iter().collect();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("model.safetensors");
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let werr = |e: &dyn fmt::Display| ArchError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        candle_core::safetensors::save(&map, &tmp).map_err(|e| werr(&e))?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            werr(&e)
        })
    }

    /// Resolves this architecture's pretrained file with `lookup` and loads it.
    pub fn load_pretrained(&self, lookup: &WeightsLookup, opts: LoadOptions) -> Result<LoadReport> {
        let path = lookup.resolve(self.arch())?;
        self.load_weights(&path, opts)
    }
}

/// Where a pretrained file for an architecture may be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PretrainedSource {
    /// File names tried in a weights directory, in order.
    pub files: Vec<String>,
    /// Hugging Face Hub repository and file, if published there.
    pub hub: Option<(String, String)>,
}

/// The pretrained source of each architecture (timm's Hub names for ResNets;
/// BN-Inception is only distributed by `pretrainedmodels`, as a `.pth`).
pub fn pretrained_source(arch: Arch) -> PretrainedSource {
    let n = arch.name();
    let mut files = vec![format!("{n}.safetensors"), format!("{n}.pth")];
    let hub_repo = match arch {
        Arch::ResNet50 => Some("timm/resnet50.a1_in1k".to_string()),
        Arch::ResNet18
        | Arch::ResNet34
        | Arch::ResNet101
        | Arch::ResNet152
        | Arch::ResNeXt50_32x4d
        | Arch::ResNeXt101_32x8d => Some(format!("timm/{n}.tv_in1k")),
        Arch::BnInception => {
            files.push("bn_inception-52deb4733.pth".into());
            None
        }
        Arch::InceptionV2 => None,
    };
    PretrainedSource {
        files,
        hub: hub_repo.map(|r| (r, "model.safetensors".to_string())),
    }
}

/// Where to look for pretrained weights, in order: an explicit file, a
/// weights directory, the Hugging Face Hub cache. Never touches the network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeightsLookup {
    /// A file given by the user (used as is).
    pub explicit: Option<PathBuf>,
    /// A directory of weight files (`VCT_WEIGHTS_DIR`).
    pub weights_dir: Option<PathBuf>,
    /// Hugging Face Hub cache root (`HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`).
    pub hf_cache: Option<PathBuf>,
}

impl WeightsLookup {
    /// `explicit` plus the directories named by the environment.
    pub fn from_env(explicit: Option<PathBuf>) -> WeightsLookup {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let hf_cache = env("HF_HUB_CACHE")
            .or_else(|| env("HF_HOME").map(|h| h.join("hub")))
            .or_else(|| env("HOME").map(|h| h.join(".cache").join("huggingface").join("hub")));
        WeightsLookup {
            explicit,
            weights_dir: env("VCT_WEIGHTS_DIR"),
            hf_cache,
        }
    }

    /// The file to load for `arch`, or an error listing every place searched.
    pub fn resolve(&self, arch: Arch) -> Result<PathBuf> {
        if let Some(p) = &self.explicit {
            if p.is_file() {
                return Ok(p.clone());
            }
            return Err(ArchError::WeightsNotFound {
                arch: arch.to_string(),
                looked: format!(
                    "  explicit path {} (does not exist or is not a file)",
                    p.display()
                ),
                hint: "fix the path given for the pretrained weights".into(),
            });
        }
        let src = pretrained_source(arch);
        let mut looked = Vec::new();
        match &self.weights_dir {
            Some(dir) => {
                for f in &src.files {
                    let p = dir.join(f);
                    if p.is_file() {
                        return Ok(p);
                    }
                    looked.push(format!("  {} (VCT_WEIGHTS_DIR)", p.display()));
                }
            }
            None => looked.push(format!(
                "  VCT_WEIGHTS_DIR is not set (would look for {})",
                src.files.join(", ")
            )),
        }
        if let Some((repo, file)) = &src.hub {
            match &self.hf_cache {
                Some(cache) => match hub_cached_file(cache, repo, file) {
                    Ok(p) => return Ok(p),
                    Err(why) => looked.push(format!("  {file} of {repo} in the Hugging Face cache {} ({why})", cache.display())),
                },
                None => looked.push(format!("  {file} of {repo}: no Hugging Face cache directory (set HF_HUB_CACHE or HF_HOME)")),
            }
        }
        let hint = match &src.hub {
            Some((repo, file)) => format!(
                "provide it with an explicit path, put {} in $VCT_WEIGHTS_DIR, or download it once with `huggingface-cli download {repo} {file}`",
                src.files[0]
            ),
            None => format!("provide it with an explicit path or put {} in $VCT_WEIGHTS_DIR", src.files.join(" or ")),
        };
        Err(ArchError::WeightsNotFound {
            arch: arch.to_string(),
            looked: looked.join("\n"),
            hint,
        })
    }
}

/// A file in the Hugging Face Hub cache layout (as the `hf-hub` crate and
/// `huggingface_hub` write it): `models--{org}--{name}/refs/main` holds the
/// commit, the file is `models--{org}--{name}/snapshots/{commit}/{file}`.
pub fn hub_cached_file(
    cache: &Path,
    repo: &str,
    file: &str,
) -> std::result::Result<PathBuf, String> {
    let dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let refs = dir.join("refs").join("main");
    let commit = std::fs::read_to_string(&refs).map_err(|_| format!("no {}", refs.display()))?;
    let p = dir.join("snapshots").join(commit.trim()).join(file);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!("no {}", p.display()))
    }
}
