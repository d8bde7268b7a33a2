//! `cargo xtask export --model RUN --format onnx|safetensors [--out FILE] [--embeddings]`:
//! a trained run as an ONNX model or a safetensors bundle, with the run's
//! concepts, outputs and preprocessing as metadata (see vct-export).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use candle_core::Device;
use clap::{Args, ValueEnum};
use vct_export::{ChannelOrder, ExportMetadata, OnnxOptions, Preprocessing, Probabilities};
use vct_train::loss::Output;
use vct_train::recipe::InputNorm;
use vct_train::run::RunRecord;
use vct_train::session::TrainedModel;
use vct_train::TrainError;

/// Arguments of `cargo xtask export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Run folder (`run.json` and `model.safetensors`, as `train` writes them).
    #[arg(long, value_name = "RUN")]
    model: PathBuf,
    /// `onnx`: one .onnx file; `safetensors`: a folder with model.safetensors + config.json.
    #[arg(long, value_enum)]
    format: Format,
    /// Output file (onnx) or folder (safetensors). Default: RUN/model.onnx or RUN/bundle/.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// ONNX: also output the embeddings (flip-averaged when the template says so).
    #[arg(long)]
    embeddings: bool,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// ONNX, opset 17, batch norm folded.
    Onnx,
    /// safetensors weights + config.json, for candle.
    Safetensors,
}

/// Why a run folder cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportCmdError {
    /// A file of the run is missing.
    #[error("{dir} is not a complete vct run: {missing} is missing (a finished `cargo xtask train` writes run.json and model.safetensors)")]
    IncompleteRun {
        /// The run folder.
        dir: PathBuf,
        /// The missing file's name.
        missing: &'static str,
    },
    /// `run.json` is unreadable or inconsistent.
    #[error("{path} is not a usable run record: {reason}")]
    BadRunRecord {
        /// The run.json file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The weights do not fit the model run.json describes.
    #[error("{weights} does not match {run_json}: {reason}")]
    WeightsMismatch {
        /// model.safetensors.
        weights: PathBuf,
        /// run.json.
        run_json: PathBuf,
        /// Which tensors differ, and how.
        reason: String,
    },
    /// An option that does not apply to the format.
    #[error(
        "--embeddings applies to --format onnx only (the safetensors bundle's model computes both)"
    )]
    EmbeddingsWithBundle,
}

/// The run, loaded and checked: every tensor of `model.safetensors` fits the
/// model that `run.json` describes, the head included (`TrainedModel::load`
/// loads exactly), and the record's architecture is its template's.
pub fn load_run(dir: &Path) -> Result<TrainedModel, ExportCmdError> {
    let run_json = dir.join("run.json");
    let weights = dir.join("model.safetensors");
    for (path, missing) in [(&run_json, "run.json"), (&weights, "model.safetensors")] {
        if !path.is_file() {
            return Err(ExportCmdError::IncompleteRun {
                dir: dir.to_path_buf(),
                missing,
            });
        }
    }
    let mismatch = |reason: String| ExportCmdError::WeightsMismatch {
        weights: weights.clone(),
        run_json: run_json.clone(),
        reason,
    };
    let trained = TrainedModel::load(dir, &Device::Cpu).map_err(|e| match e {
        TrainError::BadCheckpoint { path, reason } if path == weights => mismatch(reason),
        TrainError::BadCheckpoint { path, reason } => ExportCmdError::BadRunRecord { path, reason },
        other => ExportCmdError::BadRunRecord {
            path: run_json.clone(),
            reason: other.to_string(),
        },
    })?;
    let record = &trained.record;
    if record.arch != trained.model.arch().name() {
        return Err(ExportCmdError::BadRunRecord {
            path: run_json.clone(),
            reason: format!(
                "arch `{}`, but its template {} builds {}",
                record.arch,
                record.config.hparams.template(),
                trained.model.arch()
            ),
        });
    }
    Ok(trained)
}

/// The export metadata of a run: what `eval` and `predict` do to an image and
/// to the logits, from `run.json`.
pub fn metadata(record: &RunRecord) -> ExportMetadata {
    let p = &record.preprocess;
    // vct_augment's normalisation constants, in the network's channel order.
    let (channel_order, scale, mean, std) = match p.norm {
        InputNorm::ImageNet => (
            ChannelOrder::Rgb,
            1.0,
            vct_augment::IMAGENET_MEAN,
            vct_augment::IMAGENET_STD,
        ),
        InputNorm::Bgr255 => (ChannelOrder::Bgr, 255.0, vct_augment::BGR_MEAN, [1.0; 3]),
        InputNorm::Symmetric => (ChannelOrder::Rgb, 1.0, [0.5; 3], [0.5; 3]),
    };
    ExportMetadata {
        template: record.config.hparams.template().to_string(),
        vct_version: record.vct_version.clone(),
        concepts: record.concepts.clone(),
        probabilities: match record.loss.output {
            Output::Sigmoid => Probabilities::Sigmoid,
            Output::Softmax => Probabilities::Softmax,
        },
        flip_average: record.flip_average_eval,
        preprocess: Preprocessing {
            input_size: [p.size, p.size],
            resize_shorter_side: p.eval_resize,
            // vct_train::data::eval_pipeline: Resize::shorter_side (bilinear), centre crop.
            resize_filter: "bilinear".into(),
            channel_order,
            scale,
            mean,
            std,
        },
    }
}

/// Runs `cargo xtask export`.
pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    if args.embeddings && args.format == Format::Safetensors {
        return Err(ExportCmdError::EmbeddingsWithBundle.into());
    }
    let trained = load_run(&args.model)?;
    let meta = metadata(&trained.record);
    let model = &trained.model;
    let written = match args.format {
        Format::Onnx => {
            let out = args.out.unwrap_or_else(|| args.model.join("model.onnx"));
            let opts = OnnxOptions {
                embeddings: args.embeddings,
            };
            vct_export::write_onnx(&out, model, &meta, &opts)?;
            out
        }
        Format::Safetensors => {
            let out = args.out.unwrap_or_else(|| args.model.join("bundle"));
            vct_export::write_bundle(&out, model, &meta)?;
            out
        }
    };
    println!(
        "wrote {}: {} ({}), {} concepts, {} of {}×{} {} input{}",
        written.display(),
        meta.template,
        model.arch(),
        meta.concepts.len(),
        meta.probabilities.name(),
        meta.preprocess.input_size[0],
        meta.preprocess.input_size[1],
        meta.preprocess.channel_order.name(),
        match (args.format, args.embeddings, meta.flip_average) {
            (Format::Onnx, true, true) => ", and flip-averaged embeddings",
            (Format::Onnx, true, false) => ", and embeddings",
            _ => "",
        }
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vct_hparams::{HyperParams, Template};
    use vct_train::recipe::Recipe;
    use vct_train::run::{DataSummary, VERSION};

    /// A run folder built from a fresh model and its record (no training).
    fn run_folder(dir: &Path, template: Template, concepts: &[&str]) -> RunRecord {
        run_folder_with(dir, template, concepts, &[])
    }

    fn run_folder_with(
        dir: &Path,
        template: Template,
        concepts: &[&str],
        settings: &[&str],
    ) -> RunRecord {
        let mut hp = HyperParams::defaults(template)
            .with_override("image_size=32")
            .unwrap();
        for s in settings {
            hp = hp.with_override(s).unwrap();
        }
        let config = vct_train::config::RunConfig {
            seed: 3,
            ..vct_train::config::RunConfig::new(hp.clone(), dir).random_init()
        };
        let recipe = Recipe::new(&hp, concepts.len(), 3, &config.init).unwrap();
        let model = recipe.build_model(&Device::Cpu).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        model.save(&dir.join("model.safetensors")).unwrap();
        let record = RunRecord {
            vct_version: VERSION.into(),
            config,
            concepts: concepts.iter().map(|s| s.to_string()).collect(),
            arch: model.arch().name().into(),
            loss: recipe.loss,
            preprocess: recipe.preprocess.clone(),
            flip_average_eval: recipe.flip_average_eval,
            init: "random (seed 3)".into(),
            data: DataSummary::default(),
            stop_reason: None,
            best: None,
        };
        std::fs::write(
            dir.join("run.json"),
            serde_json::to_string(&record).unwrap(),
        )
        .unwrap();
        record
    }

    #[test]
    fn incomplete_runs_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let err = load_run(&dir).unwrap_err();
        assert!(
            matches!(
                err,
                ExportCmdError::IncompleteRun {
                    missing: "run.json",
                    ..
                }
            ),
            "{err}"
        );
        run_folder(&dir, Template::InceptionV2, &["a", "b"]);
        std::fs::remove_file(dir.join("model.safetensors")).unwrap();
        let err = load_run(&dir).unwrap_err();
        assert!(
            matches!(
                err,
                ExportCmdError::IncompleteRun {
                    missing: "model.safetensors",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("model.safetensors is missing"));
    }

    #[test]
    fn weights_that_do_not_fit_run_json_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let mut record = run_folder(&dir, Template::InceptionV2, &["a", "b"]);
        assert!(load_run(&dir).is_ok());

        // One more concept in run.json than the head of the weights has.
        record.concepts.push("c".into());
        std::fs::write(
            dir.join("run.json"),
            serde_json::to_string(&record).unwrap(),
        )
        .unwrap();
        let err = load_run(&dir).unwrap_err();
        assert!(
            matches!(err, ExportCmdError::WeightsMismatch { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains(
                "Logits.Conv2d_1c_1x1.weights: file shape [2, 1024], model shape [3, 1024]"
            ),
            "{err}"
        );

        // Another template (BN-Inception) over Inception-v2 weights.
        let other = run_folder(
            &tmp.path().join("other"),
            Template::InceptionBatchNorm,
            &["a", "b"],
        );
        std::fs::write(dir.join("run.json"), serde_json::to_string(&other).unwrap()).unwrap();
        let err = load_run(&dir).unwrap_err();
        assert!(
            matches!(err, ExportCmdError::WeightsMismatch { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("bninception"), "{err}");

        std::fs::write(dir.join("run.json"), "{\"template\": 1}").unwrap();
        let err = load_run(&dir).unwrap_err();
        assert!(matches!(err, ExportCmdError::BadRunRecord { .. }), "{err}");
    }

    #[test]
    fn metadata_follows_the_record() {
        let tmp = tempfile::tempdir().unwrap();
        let record = run_folder_with(
            &tmp.path().join("run"),
            Template::TransferEmbedNorm,
            &["x", "y"],
            &["logreg=0"],
        );
        let m = metadata(&record);
        assert_eq!(m.template, "Clarifai_InceptionTransferEmbedNorm");
        assert_eq!(m.concepts, ["x", "y"]);
        assert!(m.flip_average && record.flip_average_eval);
        assert_eq!(m.probabilities, Probabilities::Softmax);
        assert_eq!(m.preprocess.channel_order, ChannelOrder::Bgr);
        assert_eq!(m.preprocess.scale, 255.0);
        assert_eq!(m.preprocess.mean, [104.0, 117.0, 128.0]);
        assert_eq!(m.preprocess.input_size, [32, 32]);
        assert_eq!(
            m.preprocess.resize_shorter_side,
            record.preprocess.eval_resize
        );

        let record = run_folder(&tmp.path().join("rsb"), Template::RsbA1, &["x", "y"]);
        let m = metadata(&record);
        // RSB-A1: sigmoid + BCE unless the concepts are mutually exclusive.
        assert_eq!(m.probabilities, Probabilities::Sigmoid);
        assert_eq!(m.preprocess.channel_order, ChannelOrder::Rgb);
        assert_eq!(m.preprocess.mean, vct_augment::IMAGENET_MEAN);
        // RSB-A1 evaluates at size / 0.95 then crops.
        assert_eq!(m.preprocess.resize_shorter_side, 34);
    }
}
