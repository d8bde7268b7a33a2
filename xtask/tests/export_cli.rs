//! `cargo xtask export` on a tiny trained run: the ONNX file, preprocessed as
//! its own metadata says and run in tract, gives `predict`'s probabilities and
//! embedding; the safetensors bundle loads back into the same model; incomplete
//! runs are refused by name.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use candle_core::{Device, Tensor};
use prost::Message;
use tract_onnx::prelude::{tvec, Framework, InferenceModelExt, Tensor as TractTensor};
use vct_augment::{CenterCrop, DecodeOptions, Pipeline, Resize};
use vct_export::proto::ModelProto;
use vct_export::{ChannelOrder, ExportConfig};
use vct_hparams::{HyperParams, Template};
use vct_train::config::{RunConfig, ValSource};
use vct_train::run::Progress;
use vct_train::run::RunOptions;
use vct_train::session::{self, TrainedModel};

fn xtask(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("xtask runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The network input of `image` as the exported metadata describes it.
fn input_from_metadata(image: &Path, config: &ExportConfig) -> Vec<f32> {
    let p = &config.metadata.preprocess;
    let img = vct_augment::decode_file(image, &DecodeOptions::default()).unwrap();
    let pipeline = Pipeline::new(vec![
        Box::new(Resize::shorter_side(p.resize_shorter_side as u32)),
        Box::new(CenterCrop::new(p.input_size[0] as u32)),
    ]);
    let img = pipeline
        .apply(img, &mut vct_augment::item_rng(0, 0, 0))
        .unwrap();
    let plane = (img.width() * img.height()) as usize;
    let mut x = vec![0f32; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            let src = match p.channel_order {
                ChannelOrder::Rgb => c,
                ChannelOrder::Bgr => 2 - c,
            };
            let v = f32::from(px.0[src]) / 255.0 * p.scale;
            x[c * plane + i] = (v - p.mean[c]) / p.std[c];
        }
    }
    x
}

/// Runs the ONNX file in tract on `image`, prepared as its metadata says, and
/// checks its probabilities and embedding against `predict`'s; returns the input.
fn assert_onnx_matches_predict(
    trained: &TrainedModel,
    onnx: &[u8],
    config: &ExportConfig,
    image: &Path,
) -> Vec<f32> {
    let concepts = &trained.record.concepts;
    let predicted = trained.predict_one(image, concepts.len(), true).unwrap();
    let x = input_from_metadata(image, config);
    let [h, w] = config.metadata.preprocess.input_size;
    let runnable = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = TractTensor::from_shape(&[1, 3, h, w], &x).unwrap();
    let out = runnable.run(tvec!(input.into())).unwrap();
    let probs = out[0].as_slice::<f32>().unwrap();
    let emb = out[1].as_slice::<f32>().unwrap();
    for (concept, p) in &predicted.concepts {
        let i = concepts.iter().position(|c| c == concept).unwrap();
        assert!(
            (probs[i] - p).abs() <= 1e-4,
            "{}: {concept}: onnx {} vs predict {p}",
            image.display(),
            probs[i]
        );
    }
    let want = predicted.embedding.unwrap();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = emb
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= 1e-4 * scale,
        "{}: embedding off by {worst} (scale {scale})",
        image.display()
    );
    x
}

#[test]
fn export_a_trained_run_to_onnx_and_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = vct_data::demo::DemoConfig {
        seed: 3,
        size: 40,
        train_per_class: 4,
        val_per_class: 2,
    };
    vct_data::demo::generate(&data, &cfg).unwrap();
    // The transfer template: BN-Inception, normalised-embedding head, BGR 0..255
    // input and flip-averaged embeddings.
    let mut hp = HyperParams::defaults(Template::TransferEmbedNorm);
    for s in [
        "image_size=32",
        "batch_size=8",
        "num_epochs=1",
        "lrate=0.05",
    ] {
        hp = hp.with_override(s).unwrap();
    }
    let run = tmp.path().join("run");
    let mut opts = RunOptions::new(&run);
    opts.progress = Progress::Quiet;
    session::train(&RunConfig::new(hp, &data).random_init(), opts).unwrap();
    let run_s = run.to_str().unwrap();

    let onnx = tmp.path().join("exported.onnx");
    let (ok, stdout, err) = xtask(&[
        "export",
        "--model",
        run_s,
        "--format",
        "onnx",
        "--embeddings",
        "--out",
        onnx.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains("flip-averaged embeddings"), "{stdout}");

    let bytes = std::fs::read(&onnx).unwrap();
    let proto = ModelProto::decode(&bytes[..]).unwrap();
    let props: HashMap<String, String> = proto
        .metadata_props
        .iter()
        .map(|p| (p.key.clone().unwrap(), p.value.clone().unwrap()))
        .collect();
    assert_eq!(props["template"], "Clarifai_InceptionTransferEmbedNorm");
    assert_eq!(props["channel_order"], "BGR");
    let config: ExportConfig = serde_json::from_str(&props["vct_config"]).unwrap();
    assert!(config.metadata.flip_average);
    assert_eq!(config.model.head, "norm_embed");

    let trained = TrainedModel::load(&run, &Device::Cpu).unwrap();
    assert_eq!(&config.metadata.concepts, &trained.record.concepts);
    let image = data.join("val/circle/0000.png");
    let x = assert_onnx_matches_predict(&trained, &bytes, &config, &image);
    let [h, w] = config.metadata.preprocess.input_size;

    // The bundle, in its default place, loads back into the same model.
    let (ok, stdout, err) = xtask(&["export", "--model", run_s, "--format", "safetensors"]);
    assert!(ok, "{err}");
    assert!(stdout.contains("bundle"), "{stdout}");
    let (model, bundle) = vct_export::load_bundle(&run.join("bundle"), &Device::Cpu).unwrap();
    assert_eq!(bundle.metadata, config.metadata);
    let xt = Tensor::from_vec(x, (1, 3, h, w), &Device::Cpu).unwrap();
    let a: Vec<f32> = model
        .forward(&xt, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = trained
        .model
        .forward(&xt, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(a, b);

    let (ok, _, err) = xtask(&[
        "export",
        "--model",
        run_s,
        "--format",
        "safetensors",
        "--embeddings",
    ]);
    assert!(!ok);
    assert!(
        err.contains("--embeddings applies to --format onnx"),
        "{err}"
    );
}

#[test]
fn export_of_an_incomplete_run_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("empty-run");
    std::fs::create_dir_all(&dir).unwrap();
    let (ok, _, err) = xtask(&[
        "export",
        "--model",
        dir.to_str().unwrap(),
        "--format",
        "onnx",
    ]);
    assert!(!ok);
    assert!(
        err.contains("is not a complete vct run: run.json is missing"),
        "{err}"
    );
    assert!(!dir.join("model.onnx").exists());
}

#[test]
#[ignore = "reads ../shared/data; run by .ci/run"]
fn shared_data_export_coco128_multilabel() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/coco128_multilabel");
    if !root.is_dir() {
        eprintln!("skipping: {} is absent", root.display());
        return;
    }
    // Multi-label photos of varied sizes: sigmoid outputs, shorter-side resize.
    let tmp = tempfile::tempdir().unwrap();
    let mut hp = HyperParams::defaults(Template::InceptionV2);
    for s in ["image_size=32", "batch_size=16", "num_epochs=1", "logreg=1"] {
        hp = hp.with_override(s).unwrap();
    }
    let run = tmp.path().join("run");
    let mut opts = RunOptions::new(&run);
    opts.progress = Progress::Quiet;
    let mut config = RunConfig::new(hp, root.join("train.csv"));
    config.data.val = ValSource::Path(root.join("val.csv"));
    session::train(&config, opts).unwrap();

    let onnx = tmp.path().join("coco.onnx");
    let (ok, _, err) = xtask(&[
        "export",
        "--model",
        run.to_str().unwrap(),
        "--format",
        "onnx",
        "--embeddings",
        "--out",
        onnx.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let bytes = std::fs::read(&onnx).unwrap();
    let proto = ModelProto::decode(&bytes[..]).unwrap();
    let config = proto
        .metadata_props
        .iter()
        .find(|p| p.key.as_deref() == Some("vct_config"))
        .and_then(|p| p.value.clone())
        .unwrap();
    let config: ExportConfig = serde_json::from_str(&config).unwrap();
    assert_eq!(config.metadata.probabilities.name(), "sigmoid");
    let trained = TrainedModel::load(&run, &Device::Cpu).unwrap();
    assert_eq!(config.metadata.concepts.len(), trained.model.num_classes());
    // A landscape, a portrait and a grayscale JPEG.
    for name in ["000000000009.jpg", "000000000036.jpg", "000000000086.jpg"] {
        assert_onnx_matches_predict(&trained, &bytes, &config, &root.join("train").join(name));
    }
}
