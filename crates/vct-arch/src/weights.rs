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

/// How to load a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Fail on any missing, unexpected or mismatched backbone key (default true).
    /// Non-strict loads what fits and reports the rest.
    pub strict: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { strict: true }
    }
}

/// What a load did, key by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The file read.
    pub path: PathBuf,
    /// Number of tensors set from the file.
    pub loaded: usize,
    /// Model tensors the file lacks (backbone).
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

fn read_pickle(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if legacy::is_legacy(path) {
        return legacy::read(path);
    }
    let top = candle_core::pickle::read_all(path).map_err(|e| file_err(path, e))?;
    if !top.is_empty() {
        return Ok(top);
    }
    // Training checkpoints (mmpretrain, timm train scripts) nest the weights.
    for key in ["state_dict", "model", "model_state_dict", "state_dict_ema"] {
        if let Ok(t) = candle_core::pickle::read_all_with_key(path, Some(key)) {
            if !t.is_empty() {
                return Ok(t);
            }
        }
    }
    Err(file_err(
        path,
        "no tensors found (looked at the top level and under state_dict / model / model_state_dict)",
    ))
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
        "pth" | "pt" | "bin" | "ckpt" | "tar" => read_pickle(path),
        _ => st().or_else(|_| read_pickle(path)).map_err(|_| {
            file_err(path, "neither a safetensors nor a PyTorch checkpoint (expected .safetensors, .pth or .pt)")
        }),
    }
}

/// Equal shapes once size-1 dimensions are dropped: BN-Inception files converted
/// from Caffe store norm tensors as `[1, C]` where PyTorch now uses `[C]`.
fn same_but_unit_dims(a: &[usize], b: &[usize]) -> bool {
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
    /// Strict: nothing is changed unless every backbone key matches.
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
        for e in self.entries() {
            let head = e.group == Group::Head;
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
                if ckpt_head.contains(k.as_str()) {
                    report.head_ignored.push(k.clone());
                } else {
                    report.unexpected.push(k.clone());
                }
            }
        }
        if opts.strict && !report.is_clean() {
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

/// Reader of PyTorch's legacy (pre-1.6, non-zip) `torch.save` format, in which
/// older checkpoints such as `pretrainedmodels`' BN-Inception were written:
/// four pickles (magic number, protocol version, system info, the object with
/// storages as persistent ids), a pickled list of storage keys, then each
/// storage as an 8-byte element count and its raw little-endian data.
mod legacy {
    use std::collections::HashMap;
    use std::io::{Cursor, Read};
    use std::path::Path;

    use candle_core::pickle::{Object, Stack};
    use candle_core::{DType, Device, Tensor};

    use super::file_err;
    use crate::error::Result;

    /// `\x80\x02` `LONG1 10` 0x1950a86a20f9469cfc6c `STOP`: the pickled magic number.
    const MAGIC: [u8; 15] = [
        0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
    ];

    /// Whether the file starts with the legacy magic number.
    pub fn is_legacy(path: &Path) -> bool {
        let mut head = [0u8; 15];
        std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .map(|_| head == MAGIC)
            .unwrap_or(false)
    }

    fn pickle(r: &mut Cursor<&[u8]>, path: &Path, what: &str) -> Result<Object> {
        let mut st = Stack::empty();
        st.read_loop(r)
            .and_then(|_| st.finalize())
            .map_err(|e| file_err(path, format!("legacy PyTorch file, bad {what} pickle: {e}")))
    }

    struct Spec {
        storage: String,
        dtype: DType,
        offset: usize,
        size: Vec<usize>,
        stride: Vec<usize>,
    }

    fn usizes(o: Object) -> Option<Vec<usize>> {
        match o {
            Object::Tuple(v) | Object::List(v) => v
                .into_iter()
                .map(|x| x.int_or_long().ok().map(|i| i as usize))
                .collect(),
            _ => None,
        }
    }

    /// A `_rebuild_tensor(_v2)` / `_rebuild_parameter` reduction → its storage view.
    fn spec(o: Object) -> Option<Spec> {
        let (callable, args) = o.reduce().ok()?;
        let (_, func) = callable.class().ok()?;
        let mut args = args.tuple().ok()?;
        match func.as_str() {
            "_rebuild_parameter" => spec(args.into_iter().next()?),
            "_rebuild_tensor" | "_rebuild_tensor_v2" if args.len() >= 4 => {
                let stride = usizes(args.remove(3))?;
                let size = usizes(args.remove(2))?;
                let offset = args.remove(1).int_or_long().ok()? as usize;
                let mut id = args.remove(0).persistent_load().ok()?.tuple().ok()?;
                if id.len() < 3 {
                    return None;
                }
                let storage = id.remove(2).unicode().ok()?;
                let (_, class) = id.remove(1).class().ok()?;
                let dtype = match class.as_str() {
                    "FloatStorage" => DType::F32,
                    "DoubleStorage" => DType::F64,
                    "HalfStorage" => DType::F16,
                    "LongStorage" => DType::I64,
                    "ByteStorage" => DType::U8,
                    _ => return None,
                };
                Some(Spec {
                    storage,
                    dtype,
                    offset,
                    size,
                    stride,
                })
            }
            _ => None,
        }
    }

    /// Reads every tensor of a legacy checkpoint (a state dict, or one under
    /// `state_dict` / `model`).
    pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>> {
        let bytes = std::fs::read(path).map_err(|e| file_err(path, e))?;
        let mut r = Cursor::new(&bytes[MAGIC.len()..]);
        pickle(&mut r, path, "protocol version")?;
        pickle(&mut r, path, "system info")?;
        let mut obj = pickle(&mut r, path, "object")?;
        let keys = match pickle(&mut r, path, "storage keys")? {
            Object::List(v) => v
                .into_iter()
                .filter_map(|k| k.unicode().ok())
                .collect::<Vec<_>>(),
            _ => return Err(file_err(path, "legacy PyTorch file: no storage key list")),
        };
        // Storages follow in key order: u64 element count, then the data.
        let mut specs = Vec::new();
        for _ in 0..2 {
            let items = match obj {
                Object::Dict(items) => items,
                Object::Build { callable, .. } => match *callable {
                    Object::Dict(items) => items,
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            };
            let mut nested = None;
            for (k, v) in items {
                let Ok(name) = k.unicode() else { continue };
                if matches!(name.as_str(), "state_dict" | "model") && matches!(v, Object::Dict(_)) {
                    nested = Some(v);
                } else if let Some(sp) = spec(v) {
                    specs.push((name, sp));
                }
            }
            match nested {
                Some(n) if specs.is_empty() => obj = n,
                _ => break,
            }
        }
        let mut elem_size: HashMap<&str, usize> = HashMap::new();
        for (_, sp) in &specs {
            elem_size.insert(sp.storage.as_str(), sp.dtype.size_in_bytes());
        }
        let mut pos = MAGIC.len() + r.position() as usize;
        let mut storages: HashMap<String, (usize, usize)> = HashMap::new();
        for key in &keys {
            let mut cur = Cursor::new(bytes.get(pos..).unwrap_or(&[]));
            let mut n = [0u8; 8];
            cur.read_exact(&mut n).map_err(|_| {
                file_err(
                    path,
                    format!("legacy PyTorch file truncated at storage {key}"),
                )
            })?;
            let numel = u64::from_le_bytes(n) as usize;
            let es = elem_size.get(key.as_str()).copied().unwrap_or(4);
            let start = pos + 8;
            let end = numel
                .checked_mul(es)
                .and_then(|b| b.checked_add(start))
                .unwrap_or(usize::MAX);
            if end > bytes.len() {
                return Err(file_err(
                    path,
                    format!("legacy PyTorch file truncated in storage {key}"),
                ));
            }
            storages.insert(key.clone(), (start, numel));
            pos = end;
        }
        let mut out = Vec::with_capacity(specs.len());
        for (name, sp) in specs {
            let Some(&(start, numel)) = storages.get(&sp.storage) else {
                return Err(file_err(
                    path,
                    format!(
                        "legacy PyTorch file: tensor {name} refers to missing storage {}",
                        sp.storage
                    ),
                ));
            };
            let es = sp.dtype.size_in_bytes();
            let data = &bytes[start..start + numel * es];
            // Gather through the strides (views need not be contiguous). First
            // bound the last element read, so garbage sizes cannot overflow or
            // allocate without limit.
            let n: usize = sp.size.iter().product();
            let last = sp
                .size
                .iter()
                .zip(&sp.stride)
                .try_fold(sp.offset, |acc, (&d, &st)| {
                    d.checked_sub(1).map_or(Some(acc), |d1| {
                        d1.checked_mul(st).and_then(|x| x.checked_add(acc))
                    })
                });
            if n > 0 && last.is_none_or(|l| l >= numel) {
                return Err(file_err(
                    path,
                    format!("legacy PyTorch file: tensor {name} reads past its storage"),
                ));
            }
            let mut idx = Vec::with_capacity(n);
            let mut counter = vec![0usize; sp.size.len()];
            for _ in 0..n {
                let off = sp.offset
                    + counter
                        .iter()
                        .zip(&sp.stride)
                        .map(|(c, s)| c * s)
                        .sum::<usize>();
                if off >= numel {
                    return Err(file_err(
                        path,
                        format!("legacy PyTorch file: tensor {name} reads past its storage"),
                    ));
                }
                idx.push(off);
                for d in (0..counter.len()).rev() {
                    counter[d] += 1;
                    if counter[d] < sp.size[d] {
                        break;
                    }
                    counter[d] = 0;
                }
            }
            let mut raw = Vec::with_capacity(n * es);
            for &i in &idx {
                raw.extend_from_slice(&data[i * es..(i + 1) * es]);
            }
            let t = Tensor::from_raw_buffer(&raw, sp.dtype, sp.size.as_slice(), &Device::Cpu)?;
            out.push((name, t));
        }
        if out.is_empty() {
            return Err(file_err(path, "legacy PyTorch file without tensors"));
        }
        Ok(out)
    }
}
