//! The ONNX export: graph, inputs and outputs, opset, metadata.

use std::path::Path;

use prost::Message;
use vct_arch::{Classifier, HeadKind};

use crate::error::Result;
use crate::graph::{attr_int, attr_ints, Fmap, Graph};
use crate::metadata::{
    ExportConfig, ExportMetadata, ModelInfo, Probabilities, WeightsInfo, FORMAT, FORMAT_VERSION,
};
use crate::proto::tensor_proto::DataType;
use crate::proto::tensor_shape_proto::{dimension, Dimension};
use crate::proto::{
    type_proto, GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::walk::{self, Weights};

/// ONNX operator set the graph is written for.
pub const OPSET: i64 = 17;
/// ONNX IR version that goes with [`OPSET`] (ONNX 1.12).
pub const IR_VERSION: i64 = 8;
/// Name of the graph input, `[batch, 3, height, width]` f32.
pub const INPUT: &str = "images";
/// Name of the probabilities output, `[batch, concepts]`.
pub const PROBABILITIES: &str = "probabilities";
/// Name of the optional embeddings output, `[batch, embedding_dim]`.
pub const EMBEDDINGS: &str = "embeddings";
/// Name of the symbolic batch dimension.
pub const BATCH_DIM: &str = "batch";

/// Options of an ONNX export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnnxOptions {
    /// Also output the embeddings (flip-averaged when the metadata says so).
    pub embeddings: bool,
}

/// The architecture part of the exported config.
pub fn model_info(model: &Classifier) -> ModelInfo {
    ModelInfo {
        arch: model.arch().name().into(),
        num_classes: model.num_classes(),
        embedding_dim: model.out_dim(),
        head: match model.config().head {
            HeadKind::Linear => "linear".into(),
            HeadKind::NormEmbed { .. } => "norm_embed".into(),
        },
        depth_multiplier: model.config().depth_multiplier,
    }
}

/// The full config of `model` with `metadata` (and, for a bundle, its weights file).
pub fn export_config(
    model: &Classifier,
    metadata: &ExportMetadata,
    weights: Option<WeightsInfo>,
) -> ExportConfig {
    ExportConfig {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        model: model_info(model),
        metadata: metadata.clone(),
        weights,
    }
}

fn tensor_value(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(n) => dimension::Value::DimValue(*n as i64),
                None => dimension::Value::DimParam(BATCH_DIM.into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The ONNX model of `model` in eval mode: batch norm folded into the
/// convolutions, input [`INPUT`] `[batch, 3, h, w]` at the metadata's input
/// size, output [`PROBABILITIES`] (sigmoid or softmax as the metadata says) and,
/// if asked, [`EMBEDDINGS`]; with `metadata.flip_average` both come from the
/// mean embedding of each image and its horizontal mirror, computed as one
/// batch of twice the size.
pub fn onnx_model(
    model: &Classifier,
    metadata: &ExportMetadata,
    opts: &OnnxOptions,
) -> Result<ModelProto> {
    metadata.validate(model.num_classes())?;
    let [h, w] = metadata.preprocess.input_size;
    let mut g = Graph::new(model.arch().name(), format!("{h}×{w}"));
    let weights = Weights::new(model);
    let dim = model.out_dim();
    let input = Fmap {
        name: INPUT.into(),
        c: 3,
        h,
        w,
    };
    let emb = if metadata.flip_average {
        let reversed: Vec<i64> = (0..w as i64).rev().collect();
        let idx = g.init_i64("flip.indices", &[w], &reversed);
        let mirrored = g.node("Gather", &[INPUT, &idx], vec![attr_int("axis", 3)], None);
        let both = g.node(
            "Concat",
            &[INPUT, &mirrored],
            vec![attr_int("axis", 0)],
            None,
        );
        let both = Fmap {
            name: both,
            ..input.clone()
        };
        let features = walk::backbone(&mut g, model, &weights, &both, None)?;
        // Rows 0..N are the images, N..2N their mirrors.
        let shape = g.init_i64("flip.shape", &[3], &[2, -1, dim as i64]);
        let pairs = g.node("Reshape", &[&features, &shape], vec![], None);
        g.node(
            "ReduceMean",
            &[&pairs],
            vec![attr_ints("axes", &[0]), attr_int("keepdims", 0)],
            Some(EMBEDDINGS),
        )
    } else {
        walk::backbone(&mut g, model, &weights, &input, Some(EMBEDDINGS))?
    };
    let logits = walk::head(&mut g, model, &weights, &emb)?;
    let probs = match metadata.probabilities {
        Probabilities::Sigmoid => g.node("Sigmoid", &[&logits], vec![], Some(PROBABILITIES)),
        Probabilities::Softmax => g.node(
            "Softmax",
            &[&logits],
            vec![attr_int("axis", 1)],
            Some(PROBABILITIES),
        ),
    };
    let mut outputs = vec![tensor_value(&probs, &[None, Some(model.num_classes())])];
    if opts.embeddings {
        outputs.push(tensor_value(&emb, &[None, Some(dim)]));
    }
    let config = export_config(model, metadata, None);
    let graph = GraphProto {
        name: Some(format!("vct_{}", model.arch().name())),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![tensor_value(INPUT, &[None, Some(3), Some(h), Some(w)])],
        output: outputs,
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("vct-export".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        model_version: Some(1),
        doc_string: Some(format!(
            "{} ({}) trained with vct {}: {} of {} concepts{}",
            metadata.template,
            model.arch().name(),
            metadata.vct_version,
            metadata.probabilities.name(),
            metadata.concepts.len(),
            if metadata.flip_average {
                ", on flip-averaged embeddings"
            } else {
                ""
            }
        )),
        graph: Some(graph),
        metadata_props: config
            .props()
            .into_iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k),
                value: Some(v),
            })
            .collect(),
        ..Default::default()
    })
}

/// [`onnx_model`] serialised as protobuf bytes (an `.onnx` file's content).
pub fn onnx_bytes(
    model: &Classifier,
    metadata: &ExportMetadata,
    opts: &OnnxOptions,
) -> Result<Vec<u8>> {
    Ok(onnx_model(model, metadata, opts)?.encode_to_vec())
}

/// Writes [`onnx_bytes`] to `path` (atomically: a temporary file, then a rename).
pub fn write_onnx(
    path: &Path,
    model: &Classifier,
    metadata: &ExportMetadata,
    opts: &OnnxOptions,
) -> Result<()> {
    let bytes = onnx_bytes(model, metadata, opts)?;
    crate::write_atomic(path, &bytes)
}
