//! The safetensors bundle for candle users: a folder with `model.safetensors`
//! (vct-arch's state dict, batch norm NOT folded, so `Classifier::load_weights`
//! takes it as it is, and training can continue from it) and `config.json` (the
//! architecture, concepts, outputs and preprocessing; also stored in the
//! safetensors header under `vct_config`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use vct_arch::{Arch, Classifier, LoadOptions, ModelConfig};

use crate::error::{ExportError, Result};
use crate::metadata::{ExportConfig, ExportMetadata, WeightsInfo, FORMAT};
use crate::onnx::export_config;

/// File name of a bundle's weights.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of a bundle's config.
pub const CONFIG_FILE: &str = "config.json";

/// The files a bundle consists of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFiles {
    /// `DIR/model.safetensors`.
    pub weights: PathBuf,
    /// `DIR/config.json`.
    pub config: PathBuf,
}

impl BundleFiles {
    /// The two files of a bundle in `dir`.
    pub fn in_dir(dir: &Path) -> BundleFiles {
        BundleFiles {
            weights: dir.join(WEIGHTS_FILE),
            config: dir.join(CONFIG_FILE),
        }
    }
}

/// Writes the bundle of `model` with `metadata` into the folder `dir` (created
/// if needed; each file written atomically).
pub fn write_bundle(
    dir: &Path,
    model: &Classifier,
    metadata: &ExportMetadata,
) -> Result<BundleFiles> {
    metadata.validate(model.num_classes())?;
    let config = export_config(
        model,
        metadata,
        Some(WeightsInfo {
            file: WEIGHTS_FILE.into(),
            batch_norm_folded: false,
        }),
    );
    let files = BundleFiles::in_dir(dir);
    std::fs::create_dir_all(dir).map_err(|source| ExportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut tensors = Vec::new();
    for (name, t) in model.state_dict() {
        let t = t.to_dtype(DType::F32)?;
        let bytes: Vec<u8> = t
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        tensors.push((name, t.dims().to_vec(), bytes));
    }
    let views = tensors
        .iter()
        .map(|(name, dims, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, dims.clone(), bytes)
                .map(|v| (name.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ExportError::BadBundle {
            path: files.weights.clone(),
            reason: e.to_string(),
        })?;
    let header = HashMap::from([("vct_config".to_string(), config.to_json())]);
    let bytes =
        safetensors::serialize(views, Some(header)).map_err(|e| ExportError::BadBundle {
            path: files.weights.clone(),
            reason: e.to_string(),
        })?;
    crate::write_atomic(&files.weights, &bytes)?;
    crate::write_atomic(&files.config, config.to_json().as_bytes())?;
    Ok(files)
}

/// Reads and checks a bundle's `config.json`.
pub fn read_bundle_config(dir: &Path) -> Result<ExportConfig> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| ExportError::Io {
        path: path.clone(),
        source,
    })?;
    let config: ExportConfig = serde_json::from_str(&text).map_err(|e| ExportError::BadBundle {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if config.format != FORMAT {
        return Err(ExportError::BadBundle {
            path,
            reason: format!("format `{}`, expected `{FORMAT}`", config.format),
        });
    }
    Ok(config)
}

/// Rebuilds the model of a bundle on `device`: its architecture from
/// `config.json`, its weights from `model.safetensors` (every tensor must match).
pub fn load_bundle(dir: &Path, device: &Device) -> Result<(Classifier, ExportConfig)> {
    let config = read_bundle_config(dir)?;
    let files = BundleFiles::in_dir(dir);
    let bad = |reason: String| ExportError::BadBundle {
        path: files.config.clone(),
        reason,
    };
    let info = &config.model;
    let arch = Arch::from_name(&info.arch).map_err(|e| bad(e.to_string()))?;
    let mut mc = ModelConfig::new(arch, info.num_classes);
    mc.depth_multiplier = info.depth_multiplier;
    mc = match info.head.as_str() {
        "linear" => mc,
        "norm_embed" => mc.with_norm_embed_head(),
        other => {
            return Err(bad(format!(
                "model.head `{other}`, expected `linear` or `norm_embed`"
            )))
        }
    };
    if let Some(w) = &config.weights {
        if w.batch_norm_folded {
            return Err(bad(
                "weights.batch_norm_folded is true; vct-arch needs the unfolded state dict".into(),
            ));
        }
    }
    let model = Classifier::new(&mc, device)?;
    if model.out_dim() != info.embedding_dim {
        return Err(bad(format!(
            "model.embedding_dim {}, but {} builds {}",
            info.embedding_dim,
            info.arch,
            model.out_dim()
        )));
    }
    // Exact: every tensor, the head included, with its shape, and nothing else.
    model
        .load_weights(&files.weights, LoadOptions::exact())
        .map_err(|e| ExportError::BadBundle {
            path: files.weights.clone(),
            reason: format!(
                "it does not fit config.json's {} with {} classes and a {} head: {e}",
                info.arch, info.num_classes, info.head
            ),
        })?;
    Ok((model, config))
}
