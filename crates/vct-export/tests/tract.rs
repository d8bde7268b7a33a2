//! Every architecture and both heads exported to ONNX and run in tract (a real
//! ONNX runtime, pure Rust): its probabilities and embeddings, plain and
//! flip-averaged, equal vct's eval outputs within 1e-4 of the largest
//! magnitude, for a batch of 2 and of 1 from the same file (the batch
//! dimension is symbolic).

mod common;

use common::{Case, CLASSES};

use std::time::Instant;

use prost::Message;
use tract_onnx::prelude::{tvec, Framework, InferenceModelExt, Tensor as TractTensor};
use vct_arch::Arch;
use vct_export::check::{max_relative_error, reference_outputs};
use vct_export::proto::tensor_shape_proto::dimension::Value as Dim;
use vct_export::proto::{type_proto, ModelProto};
use vct_export::{onnx_bytes, OnnxOptions, Probabilities};

const TOLERANCE: f32 = 1e-4;

fn input_dims(model: &ModelProto) -> Vec<Dim> {
    let graph = model.graph.as_ref().unwrap();
    match &graph.input[0].r#type.as_ref().unwrap().value {
        Some(type_proto::Value::TensorType(t)) => t
            .shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| d.value.clone().unwrap())
            .collect(),
        other => panic!("input is not a tensor: {other:?}"),
    }
}

fn check(case: Case) {
    let started = Instant::now();
    let (model, meta, x) = case.prepare();
    let [h, w] = case.size;
    let classes = CLASSES;
    let bytes = onnx_bytes(&model, &meta, &OnnxOptions { embeddings: true }).unwrap();

    let proto = ModelProto::decode(&bytes[..]).unwrap();
    assert_eq!(proto.opset_import[0].version, Some(17));
    assert_eq!(
        input_dims(&proto),
        vec![
            Dim::DimParam("batch".into()),
            Dim::DimValue(3),
            Dim::DimValue(h as i64),
            Dim::DimValue(w as i64)
        ]
    );
    let nodes = &proto.graph.as_ref().unwrap().node;
    let ops: Vec<&str> = nodes.iter().filter_map(|n| n.op_type.as_deref()).collect();
    assert!(
        !ops.contains(&"BatchNormalization"),
        "batch norm must be folded"
    );

    let want = reference_outputs(&model, &meta, &x).unwrap();
    let dim = model.out_dim();
    let runnable = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let mut worst = 0f32;
    for n in [2, 1] {
        let xs: Vec<f32> = x
            .narrow(0, 0, n)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let input = TractTensor::from_shape(&[n, 3, h, w], &xs).unwrap();
        let out = runnable.run(tvec!(input.into())).unwrap();
        assert_eq!(out.len(), 2);
        let probs = out[0].as_slice::<f32>().unwrap();
        let emb = out[1].as_slice::<f32>().unwrap();
        let pe = max_relative_error(probs, &want.probabilities[..n * classes]);
        let ee = max_relative_error(emb, &want.embeddings[..n * dim]);
        worst = worst.max(pe).max(ee);
        assert!(
            pe <= TOLERANCE && ee <= TOLERANCE,
            "{} batch {n}: probabilities off by {pe:e}, embeddings by {ee:e} (relative)",
            case.arch
        );
    }
    // The probabilities must not be saturated, or the comparison would say little.
    assert!(
        want.probabilities.iter().any(|&p| p > 0.01 && p < 0.99),
        "{}: {:?}",
        case.arch,
        want.probabilities
    );
    eprintln!(
        "{} {}x{} {}{}{}: max relative error {worst:.1e}, {:.1}s",
        case.arch,
        h,
        w,
        case.probabilities.name(),
        if case.norm_embed { ", norm_embed" } else { "" },
        if case.flip_average {
            ", flip-averaged"
        } else {
            ""
        },
        started.elapsed().as_secs_f64()
    );
}

fn case_of(arch: Arch, probabilities: Probabilities, flip_average: bool) -> Case {
    common::case(arch, probabilities, flip_average)
}

#[test]
fn every_architecture_is_checked() {
    let cases = common::all_cases();
    for arch in Arch::ALL {
        assert!(cases.iter().any(|c| c.arch == arch), "{arch} has no case");
    }
    assert!(cases.iter().any(|c| c.norm_embed && c.flip_average));
}

#[test]
fn resnet18_softmax() {
    check(case_of(Arch::ResNet18, Probabilities::Softmax, false));
}

#[test]
fn resnet18_norm_embed_sigmoid_flip_averaged() {
    check(Case {
        norm_embed: true,
        ..case_of(Arch::ResNet18, Probabilities::Sigmoid, true)
    });
}

#[test]
fn resnet34_sigmoid_flip_averaged() {
    check(case_of(Arch::ResNet34, Probabilities::Sigmoid, true));
}

#[test]
fn resnet50_softmax() {
    check(case_of(Arch::ResNet50, Probabilities::Softmax, false));
}

#[test]
fn resnet101_sigmoid() {
    check(case_of(Arch::ResNet101, Probabilities::Sigmoid, false));
}

#[test]
fn resnet152_softmax_flip_averaged() {
    check(case_of(Arch::ResNet152, Probabilities::Softmax, true));
}

#[test]
fn resnext50_32x4d_sigmoid_flip_averaged() {
    check(case_of(Arch::ResNeXt50_32x4d, Probabilities::Sigmoid, true));
}

#[test]
fn resnext101_32x8d_softmax() {
    check(case_of(
        Arch::ResNeXt101_32x8d,
        Probabilities::Softmax,
        false,
    ));
}

#[test]
fn bninception_sigmoid() {
    check(case_of(Arch::BnInception, Probabilities::Sigmoid, false));
}

#[test]
fn bninception_norm_embed_softmax_flip_averaged() {
    // Clarifai_InceptionTransferEmbedNorm's model.
    check(Case {
        norm_embed: true,
        ..case_of(Arch::BnInception, Probabilities::Softmax, true)
    });
}

#[test]
fn inception_v2_softmax_non_square() {
    check(Case {
        size: [72, 56],
        ..case_of(Arch::InceptionV2, Probabilities::Softmax, false)
    });
}
