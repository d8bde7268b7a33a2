//! What the exported files say: ONNX metadata, outputs and refusals; the
//! safetensors bundle's round trip and its refusals.

mod common;

use candle_core::Device;
use prost::Message;
use vct_arch::Arch;
use vct_export::bundle::{CONFIG_FILE, WEIGHTS_FILE};
use vct_export::proto::ModelProto;
use vct_export::{
    load_bundle, onnx::export_config, onnx_bytes, write_bundle, write_onnx, ExportConfig,
    ExportError, OnnxOptions, Probabilities,
};

fn props(model: &ModelProto) -> std::collections::HashMap<String, String> {
    model
        .metadata_props
        .iter()
        .map(|p| (p.key.clone().unwrap(), p.value.clone().unwrap()))
        .collect()
}

#[test]
fn onnx_metadata_carries_the_preprocessing_and_concepts() {
    let model = common::seeded_model(&common::config(Arch::BnInception, 3));
    let mut meta = common::metadata(&model, Probabilities::Sigmoid, true, [64, 64]);
    meta.template = "Clarifai_InceptionBatchNorm".into();
    meta.concepts = vec!["cat".into(), "dog \"big\"".into(), "ünïcode".into()];
    meta.preprocess.resize_shorter_side = 72;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("model.onnx");
    write_onnx(&path, &model, &meta, &OnnxOptions::default()).unwrap();
    let proto = ModelProto::decode(&std::fs::read(&path).unwrap()[..]).unwrap();
    let p = props(&proto);
    assert_eq!(p["template"], "Clarifai_InceptionBatchNorm");
    assert_eq!(p["vct_version"], "0.1.0");
    assert_eq!(p["arch"], "bninception");
    assert_eq!(p["probabilities"], "sigmoid");
    assert_eq!(p["flip_average"], "true");
    assert_eq!(p["channel_order"], "BGR");
    assert_eq!(p["scale"], "255");
    let concepts: Vec<String> = serde_json::from_str(&p["concepts"]).unwrap();
    assert_eq!(concepts, meta.concepts);
    let mean: Vec<f32> = serde_json::from_str(&p["mean"]).unwrap();
    assert_eq!(mean, vec![104.0, 117.0, 128.0]);
    let std: Vec<f32> = serde_json::from_str(&p["std"]).unwrap();
    assert_eq!(std, vec![1.0, 1.0, 1.0]);
    let size: Vec<usize> = serde_json::from_str(&p["input_size"]).unwrap();
    assert_eq!(size, vec![64, 64]);
    let resize: serde_json::Value = serde_json::from_str(&p["resize"]).unwrap();
    assert_eq!(resize["shorter_side"], 72);
    assert_eq!(resize["filter"], "bilinear");
    let config: ExportConfig = serde_json::from_str(&p["vct_config"]).unwrap();
    assert_eq!(config, export_config(&model, &meta, None));
    assert_eq!(config.model.embedding_dim, 1024);
    assert_eq!(config.model.head, "linear");

    // Without --embeddings the only output is the probabilities.
    let graph = proto.graph.unwrap();
    let outputs: Vec<_> = graph
        .output
        .iter()
        .map(|o| o.name.clone().unwrap())
        .collect();
    assert_eq!(outputs, ["probabilities"]);
    assert_eq!(proto.ir_version, Some(8));
    assert_eq!(proto.producer_name.as_deref(), Some("vct-export"));
}

#[test]
fn onnx_export_refuses_metadata_that_does_not_fit() {
    let model = common::seeded_model(&common::config(Arch::ResNet18, 3));
    let good = common::metadata(&model, Probabilities::Softmax, false, [64, 64]);
    let opts = OnnxOptions::default();

    let mut m = good.clone();
    m.concepts.pop();
    let err = onnx_bytes(&model, &m, &opts).unwrap_err();
    assert!(
        matches!(&err, ExportError::InvalidMetadata { key, .. } if key == "concepts"),
        "{err}"
    );
    assert!(err.to_string().contains("2 names"), "{err}");

    let mut m = good.clone();
    m.preprocess.input_size = [16, 64];
    let err = onnx_bytes(&model, &m, &opts).unwrap_err();
    assert!(err.to_string().contains("input_size"), "{err}");

    let mut m = good.clone();
    m.preprocess.std = [0.2, 0.0, 0.2];
    let err = onnx_bytes(&model, &m, &opts).unwrap_err();
    assert!(err.to_string().contains("preprocess.std"), "{err}");

    let mut m = good;
    m.preprocess.resize_shorter_side = 40;
    let err = onnx_bytes(&model, &m, &opts).unwrap_err();
    assert!(err.to_string().contains("resize_shorter_side"), "{err}");
}

#[test]
fn bundle_round_trips_to_identical_outputs() {
    let mut config = common::config(Arch::InceptionV2, 4);
    config.depth_multiplier = 0.5;
    let model = common::seeded_model(&config.with_norm_embed_head());
    let meta = common::metadata(&model, Probabilities::Softmax, true, [48, 48]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    let files = write_bundle(&dir, &model, &meta).unwrap();
    assert_eq!(files.weights, dir.join(WEIGHTS_FILE));

    let (loaded, cfg) = load_bundle(&dir, &Device::Cpu).unwrap();
    assert_eq!(cfg.metadata, meta);
    assert_eq!(cfg.model.depth_multiplier, 0.5);
    assert_eq!(cfg.model.head, "norm_embed");
    assert_eq!(
        cfg.weights.as_ref().map(|w| w.batch_norm_folded),
        Some(false)
    );
    let x = common::images(2, 48, 48, 3);
    let a: Vec<f32> = model
        .forward(&x, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = loaded
        .forward(&x, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(a, b);

    // The safetensors header carries the same config, for files that travel alone.
    let bytes = std::fs::read(&files.weights).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let embedded = &header.metadata().as_ref().unwrap()["vct_config"];
    let embedded: ExportConfig = serde_json::from_str(embedded).unwrap();
    assert_eq!(embedded, cfg);
}

#[test]
fn bundle_refuses_missing_files_and_mismatched_weights() {
    let model = common::seeded_model(&common::config(Arch::ResNet18, 3));
    let meta = common::metadata(&model, Probabilities::Softmax, false, [64, 64]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");

    let err = load_bundle(&dir, &Device::Cpu).unwrap_err();
    assert!(
        matches!(&err, ExportError::Io { path, .. } if path.ends_with(CONFIG_FILE)),
        "{err}"
    );

    write_bundle(&dir, &model, &meta).unwrap();
    // A config that claims 4 classes over weights of 3.
    let path = dir.join(CONFIG_FILE);
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["model"]["num_classes"] = 4.into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    let err = load_bundle(&dir, &Device::Cpu).unwrap_err();
    assert!(
        matches!(&err, ExportError::BadBundle { path, .. } if path.ends_with(WEIGHTS_FILE)),
        "{err}"
    );
    assert!(err.to_string().contains("4 classes"), "{err}");

    cfg["model"]["num_classes"] = 3.into();
    cfg["model"]["arch"] = "resnet19".into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    let err = load_bundle(&dir, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("resnet19"), "{err}");

    cfg["format"] = "something-else".into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    let err = load_bundle(&dir, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("something-else"), "{err}");

    std::fs::remove_file(dir.join(WEIGHTS_FILE)).unwrap();
    cfg["format"] = "vct-export".into();
    cfg["model"]["arch"] = "resnet18".into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    let err = load_bundle(&dir, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains(WEIGHTS_FILE), "{err}");
}
