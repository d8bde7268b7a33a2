//! PyTorch `torch.save` files: the zip format (torch >= 1.6) and the legacy
//! format (older files such as pretrainedmodels' BN-Inception), both read with
//! this crate's pickle reader ([`super::pickle`]).
//!
//! Tensors are `_rebuild_tensor(_v2/_v3)` reductions (possibly wrapped in
//! `_rebuild_parameter(_with_state)` or `_rebuild_from_type_v2`) over a storage
//! named by a persistent id `('storage', torch.FloatStorage, key, location,
//! numel[, view])`; each is gathered through its storage offset and strides, so
//! views and non-contiguous tensors read as `torch.load` gives them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use zip::read::{ArchiveOffset, Config};
use zip::ZipArchive;

use super::file_err;
use super::pickle::{self, Value};
use crate::error::Result;

/// `\x80\x02` `LONG1 10` 0x1950a86a20f9469cfc6c `STOP`: the legacy format's pickled magic number.
const LEGACY_MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
];

/// Where the weights sit in training checkpoints that nest them (mmpretrain and
/// timm train scripts: `state_dict`; others `model`, ...), tried in order.
const NESTED_KEYS: [&str; 5] = [
    "state_dict",
    "model",
    "model_state_dict",
    "state_dict_ema",
    "module",
];

fn head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(15);
    File::open(path)?.take(15).read_to_end(&mut head)?;
    Ok(head)
}

/// Whether the file starts like a torch.save file (zip or legacy).
pub(super) fn is_torch_file(path: &Path) -> bool {
    head(path).is_ok_and(|h| h == LEGACY_MAGIC || h.starts_with(b"PK\x03\x04"))
}

/// Reads every tensor of a torch.save file (the state dict at the top level or
/// under one of [`NESTED_KEYS`]), in the file's order.
pub(super) fn read(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let head = head(path).map_err(|e| file_err(path, e))?;
    if head == LEGACY_MAGIC {
        read_legacy(path)
    } else if head.starts_with(b"PK\x03\x04") {
        read_zip(path)
    } else {
        Err(file_err(
            path,
            "not a PyTorch checkpoint: neither a zip archive (torch >= 1.6) nor the legacy torch.save format",
        ))
    }
}

/// Element size and candle dtype of a torch storage class (`None`: no candle dtype).
fn storage_class(class: &str) -> Option<(usize, Option<DType>)> {
    Some(match class {
        "FloatStorage" => (4, Some(DType::F32)),
        "DoubleStorage" => (8, Some(DType::F64)),
        "HalfStorage" => (2, Some(DType::F16)),
        "BFloat16Storage" => (2, Some(DType::BF16)),
        "LongStorage" => (8, Some(DType::I64)),
        "IntStorage" => (4, Some(DType::I32)),
        "ShortStorage" => (2, Some(DType::I16)),
        "ByteStorage" | "BoolStorage" => (1, Some(DType::U8)),
        "CharStorage" | "QInt8Storage" | "QUInt8Storage" | "QUInt4x2Storage"
        | "QUInt2x4Storage" | "UntypedStorage" => (1, None),
        "QInt32Storage" => (4, None),
        "ComplexHalfStorage" => (4, None),
        "ComplexFloatStorage" => (8, None),
        "ComplexDoubleStorage" => (16, None),
        _ => return None,
    })
}

/// Element size and candle dtype of a `torch.<dtype>` (`_rebuild_tensor_v3`'s dtype argument).
fn torch_dtype(name: &str) -> Option<(usize, Option<DType>)> {
    Some(match name {
        "float32" | "float" => (4, Some(DType::F32)),
        "float64" | "double" => (8, Some(DType::F64)),
        "float16" | "half" => (2, Some(DType::F16)),
        "bfloat16" => (2, Some(DType::BF16)),
        "int64" | "long" => (8, Some(DType::I64)),
        "int32" | "int" => (4, Some(DType::I32)),
        "int16" | "short" => (2, Some(DType::I16)),
        "uint8" | "bool" => (1, Some(DType::U8)),
        "uint32" => (4, Some(DType::U32)),
        "float8_e4m3fn" => (1, Some(DType::F8E4M3)),
        "uint16" => (2, None),
        "uint64" => (8, None),
        "int8" | "float8_e5m2" | "float8_e4m3fnuz" | "float8_e5m2fnuz" => (1, None),
        _ => return None,
    })
}

/// A storage reference: `('storage', class, key, location, numel[, view])`.
#[derive(Debug, Clone)]
struct StorageRef {
    key: String,
    class: String,
    elem: usize,
    dtype: Option<DType>,
    /// Element offset of a legacy storage view into its root storage.
    view_offset: usize,
}

fn storage_ref(id: &Value) -> std::result::Result<StorageRef, String> {
    let Value::PersistentId(id) = id else {
        return Err("its storage is not a persistent id".into());
    };
    let Some(t) = id.as_seq() else {
        return Err(format!("unexpected storage id {id:?}"));
    };
    if t.len() < 5 || t[0].as_str() != Some("storage") {
        return Err(format!(
            "unexpected storage id (expected ('storage', type, key, location, numel)), got {} fields",
            t.len()
        ));
    }
    let class = match &t[1] {
        Value::Global(_, c) => c.clone(),
        other => return Err(format!("storage type is not a class name: {other:?}")),
    };
    let key = match &t[2] {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        other => return Err(format!("storage key is not a string: {other:?}")),
    };
    let Some((elem, dtype)) = storage_class(&class) else {
        return Err(format!("unknown storage type {class}"));
    };
    // Legacy views: (view key, offset, size) into the root storage.
    let view_offset = match t.get(5).and_then(|v| v.as_seq()) {
        Some([_, off, _]) => off
            .as_int()
            .and_then(|o| usize::try_from(o).ok())
            .ok_or("bad storage view offset")?,
        _ => 0,
    };
    Ok(StorageRef {
        key,
        class,
        elem,
        dtype,
        view_offset,
    })
}

/// How one tensor lies in its storage.
#[derive(Debug, Clone)]
struct Spec {
    storage: StorageRef,
    elem: usize,
    dtype: Option<DType>,
    /// Offset in elements.
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

fn dims(v: &Value, what: &str) -> std::result::Result<Vec<usize>, String> {
    v.as_seq()
        .and_then(|s| {
            s.iter()
                .map(|x| x.as_int().and_then(|i| usize::try_from(i).ok()))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| format!("bad tensor {what} {v:?}"))
}

/// The tensor a value rebuilds: `None` if it is not a tensor reduction,
/// `Some(Err)` if it is one that cannot be read.
fn tensor_spec(v: &Value) -> Option<std::result::Result<Spec, String>> {
    let Value::Object(o) = v else { return None };
    call_spec(&o.callable, &o.args)
}

fn call_spec(callable: &Value, args: &Value) -> Option<std::result::Result<Spec, String>> {
    let Value::Global(module, name) = callable else {
        return None;
    };
    let args = args.as_seq()?;
    match (module.as_str(), name.as_str()) {
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            tensor_spec(args.first()?)
        }
        // Tensor subclasses: (func, type, func's args, state).
        ("torch._tensor", "_rebuild_from_type_v2" | "_rebuild_from_type") if args.len() >= 3 => {
            call_spec(&args[0], &args[2])
        }
        ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2" | "_rebuild_tensor_v3") => {
            Some(rebuild_spec(name, args))
        }
        _ => None,
    }
}

fn rebuild_spec(func: &str, args: &[Value]) -> std::result::Result<Spec, String> {
    if args.len() < 4 {
        return Err(format!("{func} with {} arguments", args.len()));
    }
    let storage = storage_ref(&args[0])?;
    let offset = args[1]
        .as_int()
        .and_then(|o| usize::try_from(o).ok())
        .ok_or_else(|| format!("bad storage offset {:?}", args[1]))?;
    let size = dims(&args[2], "size")?;
    let stride = dims(&args[3], "stride")?;
    if size.len() != stride.len() {
        return Err(format!(
            "size {size:?} and stride {stride:?} of different ranks"
        ));
    }
    let (elem, dtype) = if func == "_rebuild_tensor_v3" {
        // v3 tensors (dtypes without a typed storage) name their dtype; the
        // storage is untyped bytes.
        match args.get(6) {
            Some(Value::Global(_, d)) => {
                torch_dtype(d).ok_or_else(|| format!("unknown dtype torch.{d}"))?
            }
            other => return Err(format!("_rebuild_tensor_v3 without a dtype: {other:?}")),
        }
    } else {
        (storage.elem, storage.dtype)
    };
    Ok(Spec {
        storage,
        elem,
        dtype,
        offset,
        size,
        stride,
    })
}

/// The named tensors of the state dict inside `top`: `top` itself if it holds
/// tensors, else the first of [`NESTED_KEYS`] that does.
fn state_dict(top: &Value) -> std::result::Result<Vec<(String, Spec)>, String> {
    let tensors_of = |d: &[(Value, Value)]| -> std::result::Result<Vec<(String, Spec)>, String> {
        let mut out = Vec::new();
        for (k, v) in d {
            let Some(name) = k.as_str() else { continue };
            match tensor_spec(v) {
                Some(Ok(s)) => out.push((name.to_string(), s)),
                Some(Err(e)) => return Err(format!("tensor {name}: {e}")),
                None => {}
            }
        }
        Ok(out)
    };
    let Some(d) = top.as_dict() else {
        return Err(
            "the pickled object is not a dict (a whole pickled module, or no checkpoint?); save model.state_dict() instead"
                .into(),
        );
    };
    let found = tensors_of(d)?;
    if !found.is_empty() {
        return Ok(found);
    }
    for key in NESTED_KEYS {
        let nested = d
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .and_then(|(_, v)| v.as_dict());
        if let Some(nd) = nested {
            let found = tensors_of(nd)?;
            if !found.is_empty() {
                return Ok(found);
            }
        }
    }
    let keys: Vec<&str> = d.iter().filter_map(|(k, _)| k.as_str()).take(20).collect();
    Err(format!(
        "no tensors found at the top level or under {} (top-level keys: {})",
        NESTED_KEYS.join(" / "),
        keys.join(", ")
    ))
}

/// Builds a tensor from its storage's bytes, gathering through the strides.
fn gather(
    name: &str,
    sp: &Spec,
    storage: &[u8],
    big_endian: bool,
) -> std::result::Result<Tensor, String> {
    let Some(dtype) = sp.dtype else {
        return Err(format!(
            "tensor {name}: storage type {} has no equivalent here (only float, integer and bool tensors are read)",
            sp.storage.class
        ));
    };
    let es = sp.elem;
    let numel_storage = storage.len() / es;
    let start = sp.storage.view_offset.saturating_add(sp.offset);
    // Bound the element count and the last element read first, so garbage
    // sizes can neither overflow nor allocate without limit (only a view with
    // zero strides has more elements than its storage).
    let n = sp
        .size
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n / 1024 <= numel_storage)
        .ok_or_else(|| {
            format!(
                "tensor {name}: size {:?} is far larger than its storage {} of {numel_storage} elements",
                sp.size, sp.storage.key
            )
        })?;
    let last = sp
        .size
        .iter()
        .zip(&sp.stride)
        .try_fold(start, |acc, (&d, &st)| {
            d.checked_sub(1).map_or(Some(acc), |d1| {
                d1.checked_mul(st).and_then(|x| x.checked_add(acc))
            })
        });
    if n > 0 && last.is_none_or(|l| l >= numel_storage) {
        return Err(format!(
            "tensor {name} (size {:?}, stride {:?}, offset {start}) reads past its storage {} of {numel_storage} elements",
            sp.size, sp.stride, sp.storage.key
        ));
    }
    if n == 0 {
        return Tensor::zeros(sp.size.as_slice(), dtype, &Device::Cpu)
            .map_err(|e| format!("tensor {name}: {e}"));
    }
    let mut contiguous = true;
    let mut expect = 1usize;
    for (&d, &st) in sp.size.iter().zip(&sp.stride).rev() {
        if d != 1 && st != expect {
            contiguous = false;
        }
        expect = expect.saturating_mul(d);
    }
    let mut raw = if contiguous {
        storage[start * es..(start + n) * es].to_vec()
    } else {
        let mut raw = Vec::with_capacity(n * es);
        let mut counter = vec![0usize; sp.size.len()];
        for _ in 0..n {
            let off = start
                + counter
                    .iter()
                    .zip(&sp.stride)
                    .map(|(c, s)| c * s)
                    .sum::<usize>();
            raw.extend_from_slice(&storage[off * es..(off + 1) * es]);
            for d in (0..counter.len()).rev() {
                counter[d] += 1;
                if counter[d] < sp.size[d] {
                    break;
                }
                counter[d] = 0;
            }
        }
        raw
    };
    if big_endian && es > 1 {
        for c in raw.chunks_exact_mut(es) {
            c.reverse();
        }
    }
    Tensor::from_raw_buffer(&raw, dtype, &sp.size, &Device::Cpu)
        .map_err(|e| format!("tensor {name}: {e}"))
}

fn opened_zip(
    path: &Path,
    offset: ArchiveOffset,
) -> zip::result::ZipResult<ZipArchive<BufReader<File>>> {
    let f = File::open(path)?;
    ZipArchive::with_config(
        Config {
            archive_offset: offset,
        },
        BufReader::new(f),
    )
}

/// Opens torch's zip archive.
///
/// torch (miniz) ends every archive with a zip64 end record (56 bytes) and
/// locator (20 bytes) between the central directory and the classic end
/// record, while the classic record's fields stay below their 0xFFFF/0xFFFFFFFF
/// limits. The `zip` crate (9.x, with the default `ArchiveOffset::Detect`) then
/// reads the archive as zip32 and first looks for the central directory where
/// the end record minus the directory size points, i.e. 76 bytes into the
/// directory. If a central header starts exactly there — the first header,
/// for `<stem>/data.pkl`, is 46 + 30 bytes long when the archive's stem has 21
/// characters, e.g. `resnext50_32x4d_state.pth` — it takes the 76 bytes for
/// data prepended to the archive, reads one header past the directory's end
/// and fails with "Invalid Central Directory header", without trying the
/// recorded offset. torch writes nothing before the archive, so the offset is
/// known to be 0; detection stays as a fallback for archives that were
/// prepended to something.
fn open_zip(path: &Path) -> Result<ZipArchive<BufReader<File>>> {
    opened_zip(path, ArchiveOffset::Known(0)).or_else(|e0| {
        opened_zip(path, ArchiveOffset::Detect)
            .map_err(|_| file_err(path, format!("not a readable zip archive: {e0}")))
    })
}

fn read_entry(zip: &mut ZipArchive<BufReader<File>>, name: &str, path: &Path) -> Result<Vec<u8>> {
    let mut f = zip
        .by_name(name)
        .map_err(|e| file_err(path, format!("zip entry {name}: {e}")))?;
    let mut buf = Vec::with_capacity(usize::try_from(f.size()).unwrap_or(0).min(1 << 30));
    f.read_to_end(&mut buf)
        .map_err(|e| file_err(path, format!("zip entry {name}: {e}")))?;
    Ok(buf)
}

fn read_zip(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let mut zip = open_zip(path)?;
    // The pickle is `<stem>/data.pkl` (the stem is the name the file was saved
    // under); TorchScript archives hold more pickles, the root one is shortest.
    let pkl = zip
        .file_names()
        .filter_map(|n| n.ok())
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .map(|n| n.into_owned())
        .min_by_key(|n| n.len())
        .ok_or_else(|| file_err(path, "zip archive without data.pkl: not a torch.save file"))?;
    let prefix = pkl[..pkl.len() - "data.pkl".len()].to_string();
    let data = read_entry(&mut zip, &pkl, path)?;
    let (top, _) = pickle::load(&data).map_err(|e| file_err(path, format!("{pkl}: {e}")))?;
    let specs = state_dict(&top).map_err(|e| file_err(path, e))?;
    // Files without a byteorder record predate it and are little-endian.
    let big_endian = match zip.index_for_name(&format!("{prefix}byteorder")) {
        Some(_) => {
            read_entry(&mut zip, &format!("{prefix}byteorder"), path)?.trim_ascii() == b"big"
        }
        None => false,
    };
    // One storage in memory at a time: group the tensors by storage.
    let mut by_storage: Vec<(String, Vec<usize>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, (_, sp)) in specs.iter().enumerate() {
        let k = sp.storage.key.as_str();
        match index.get(k) {
            Some(&j) => by_storage[j].1.push(i),
            None => {
                index.insert(k, by_storage.len());
                by_storage.push((k.to_string(), vec![i]));
            }
        }
    }
    let mut out: Vec<Option<Tensor>> = vec![None; specs.len()];
    for (key, idx) in &by_storage {
        let record = format!("{prefix}data/{key}");
        let bytes = read_entry(&mut zip, &record, path)?;
        for &i in idx {
            let (name, sp) = &specs[i];
            out[i] = Some(gather(name, sp, &bytes, big_endian).map_err(|e| file_err(path, e))?);
        }
    }
    Ok(specs
        .into_iter()
        .zip(out)
        .filter_map(|((name, _), t)| t.map(|t| (name, t)))
        .collect())
}

/// Every storage the object refers to, by key (legacy files store all of them,
/// also those of objects outside the state dict, back to back).
fn all_storages(top: &Value) -> HashMap<String, StorageRef> {
    let mut out = HashMap::new();
    let mut todo = vec![top];
    while let Some(v) = todo.pop() {
        if let Value::PersistentId(_) = v {
            if let Ok(s) = storage_ref(v) {
                out.entry(s.key.clone()).or_insert(s);
            }
        }
        todo.extend(v.children());
    }
    out
}

/// Reads PyTorch's legacy (pre-1.6, non-zip) format: five pickles (magic
/// number, protocol version, system info, the object with storages as
/// persistent ids, the list of storage keys), then each storage in key order
/// as an 8-byte element count and its raw data.
fn read_legacy(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, e))?;
    let mut pos = LEGACY_MAGIC.len();
    let mut next = |what: &str| -> Result<Value> {
        let (v, n) = pickle::load(&bytes[pos..]).map_err(|e| {
            file_err(
                path,
                format!("legacy PyTorch file, bad {what} pickle at byte {pos}: {e}"),
            )
        })?;
        pos += n;
        Ok(v)
    };
    next("protocol version")?;
    let info = next("system info")?;
    let obj = next("object")?;
    let keys = match next("storage keys")? {
        Value::List(v) => v
            .iter()
            .map(|k| match k {
                Value::Str(s) => Some(s.clone()),
                Value::Int(i) => Some(i.to_string()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| file_err(path, "legacy PyTorch file: storage keys are not strings"))?,
        _ => return Err(file_err(path, "legacy PyTorch file: no storage key list")),
    };
    let big_endian = info.as_dict().is_some_and(|d| {
        d.iter()
            .any(|(k, v)| k.as_str() == Some("little_endian") && *v == Value::Bool(false))
    });
    let specs =
        state_dict(&obj).map_err(|e| file_err(path, format!("legacy PyTorch file: {e}")))?;
    let types = all_storages(&obj);
    let mut storages: HashMap<&str, &[u8]> = HashMap::new();
    for key in &keys {
        let truncated = || {
            file_err(
                path,
                format!("legacy PyTorch file truncated in storage {key}"),
            )
        };
        let count = bytes.get(pos..pos + 8).ok_or_else(truncated)?;
        let numel = u64::from_le_bytes(count.try_into().map_err(|_| truncated())?);
        let Some(sr) = types.get(key) else {
            return Err(file_err(
                path,
                format!("legacy PyTorch file: storage {key} is listed but no object refers to it, so its element size is unknown"),
            ));
        };
        let start = pos + 8;
        let end = usize::try_from(numel)
            .ok()
            .and_then(|n| n.checked_mul(sr.elem))
            .and_then(|b| b.checked_add(start))
            .filter(|&e| e <= bytes.len())
            .ok_or_else(truncated)?;
        storages.insert(key.as_str(), &bytes[start..end]);
        pos = end;
    }
    let mut out = Vec::with_capacity(specs.len());
    for (name, sp) in specs {
        let Some(data) = storages.get(sp.storage.key.as_str()) else {
            return Err(file_err(
                path,
                format!(
                    "legacy PyTorch file: tensor {name} refers to storage {}, which the file does not hold",
                    sp.storage.key
                ),
            ));
        };
        let t = gather(&name, &sp, data, big_endian)
            .map_err(|e| file_err(path, format!("legacy PyTorch file: {e}")))?;
        out.push((name, t));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: Vec<usize>, stride: Vec<usize>, offset: usize) -> Spec {
        Spec {
            storage: StorageRef {
                key: "0".into(),
                class: "FloatStorage".into(),
                elem: 4,
                dtype: Some(DType::F32),
                view_offset: 0,
            },
            elem: 4,
            dtype: Some(DType::F32),
            offset,
            size,
            stride,
        }
    }

    #[test]
    fn gather_checks_bounds_before_reading() {
        let storage: Vec<u8> = (0..6u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let t = gather("t", &spec(vec![2, 2], vec![1, 3], 1), &storage, false).unwrap();
        assert_eq!(t.to_vec2::<f32>().unwrap(), [[1., 4.], [2., 5.]]);
        // Broadcast (zero stride) views are materialised.
        let t = gather("b", &spec(vec![3], vec![0], 2), &storage, false).unwrap();
        assert_eq!(t.to_vec1::<f32>().unwrap(), [2., 2., 2.]);
        let t = gather("e", &spec(vec![0, 5], vec![5, 1], 99), &storage, false).unwrap();
        assert_eq!(t.dims(), [0, 5]);
        for (sp, want) in [
            (spec(vec![2, 3], vec![3, 1], 1), "reads past its storage"),
            (spec(vec![7], vec![1], 0), "reads past its storage"),
            (spec(vec![usize::MAX, 2], vec![0, 0], 0), "far larger"),
            (spec(vec![1 << 40], vec![0], 0), "far larger"),
            (
                spec(vec![3, 2], vec![usize::MAX / 2, 1], 0),
                "reads past its storage",
            ),
        ] {
            let e = gather("x", &sp, &storage, false).unwrap_err();
            assert!(e.contains(want) && e.contains("tensor x"), "{e}");
        }
        // Big-endian storages are byte-swapped.
        let be: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let t = gather("be", &spec(vec![2], vec![1], 0), &be, true).unwrap();
        assert_eq!(t.to_vec1::<f32>().unwrap(), [1.5, -2.0]);
    }
}
