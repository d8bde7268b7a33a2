//! A small builder of ONNX graphs over the prost types: named initializers,
//! nodes with attributes, and NCHW feature maps whose channel count and spatial
//! size are tracked statically (the batch dimension stays symbolic), so that
//! every padding is computed exactly as vct-arch computes it at that size.

use crate::error::{ExportError, Result};
use crate::proto::{attribute_proto::AttributeType, tensor_proto::DataType};
use crate::proto::{AttributeProto, NodeProto, TensorProto};

/// A feature map `[batch, c, h, w]` in the graph.
#[derive(Debug, Clone)]
pub(crate) struct Fmap {
    /// Value name.
    pub name: String,
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

/// Padding of a window op: `[top, left, bottom, right]` (ONNX's `pads` order).
pub(crate) type Pads = [usize; 4];

/// Output size of a window of `kernel` at `stride` over `size + pads`.
fn window_out(size: usize, pad: usize, kernel: usize, stride: usize) -> Option<usize> {
    (size + pad).checked_sub(kernel).map(|n| n / stride + 1)
}

/// Nodes and initializers under construction.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    names: usize,
    /// Architecture name, for error messages.
    pub arch: String,
    /// The export's input size, for error messages.
    pub input_desc: String,
}

pub(crate) fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

pub(crate) fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn ints(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

impl Graph {
    /// An empty graph for `arch` at input size `input_desc` (both for error messages).
    pub fn new(arch: &str, input_desc: String) -> Graph {
        Graph {
            arch: arch.into(),
            input_desc,
            ..Graph::default()
        }
    }

    /// A fresh value name starting with `hint`.
    fn fresh(&mut self, hint: &str) -> String {
        self.names += 1;
        format!("{hint}:{}", self.names)
    }

    /// Adds an f32 initializer (raw little-endian data) named `name`.
    pub fn init_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            name: Some(name.into()),
            dims: ints(dims),
            data_type: Some(DataType::Float as i32),
            raw_data: Some(raw),
            ..Default::default()
        });
        name.to_string()
    }

    /// Adds an int64 initializer named `name`.
    pub fn init_i64(&mut self, name: &str, dims: &[usize], data: &[i64]) -> String {
        self.initializers.push(TensorProto {
            name: Some(name.into()),
            dims: ints(dims),
            data_type: Some(DataType::Int64 as i32),
            int64_data: data.to_vec(),
            ..Default::default()
        });
        name.to_string()
    }

    /// Adds a node with one output; returns the output's name (`out`, or fresh from `op`).
    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
        out: Option<&str>,
    ) -> String {
        let output = match out {
            Some(o) => o.to_string(),
            None => self.fresh(op),
        };
        let name = self.fresh(&format!("node_{op}"));
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            name: Some(name),
            op_type: Some(op.into()),
            attribute: attributes,
            ..Default::default()
        });
        output
    }

    /// `Conv` with weight `[o, i/g, kh, kw]` and bias `[o]` (initializers
    /// `{layer}conv_weight` / `{layer}conv_bias`, `layer` being the state-dict
    /// prefix such as `layer1.0.conv1.`); the group count follows from the input channels.
    pub fn conv(
        &mut self,
        x: &Fmap,
        layer: &str,
        weight: (&[f32], &[usize]),
        bias: &[f32],
        stride: usize,
        pads: Pads,
    ) -> Result<Fmap> {
        let (w, dims) = weight;
        let bad = |expected: String| ExportError::BadTensor {
            arch: self.arch.clone(),
            name: layer.into(),
            shape: dims.to_vec(),
            expected,
        };
        let [o, ig, kh, kw] = match *dims {
            [o, ig, kh, kw] => [o, ig, kh, kw],
            _ => return Err(bad("a 4-d convolution weight".into())),
        };
        if ig == 0 || !x.c.is_multiple_of(ig) || o % (x.c / ig) != 0 || bias.len() != o {
            return Err(bad(format!(
                "[out, {} / groups, kh, kw] with out divisible by groups and a bias of out values",
                x.c
            )));
        }
        let groups = x.c / ig;
        let h = window_out(x.h, pads[0] + pads[2], kh, stride);
        let wd = window_out(x.w, pads[1] + pads[3], kw, stride);
        let (h, wd) = match (h, wd) {
            (Some(h), Some(w)) => (h, w),
            _ => {
                return Err(ExportError::InputTooSmall {
                    input: self.input_desc.clone(),
                    layer: layer.into(),
                    size: x.h.min(x.w),
                    kernel: kh.max(kw),
                })
            }
        };
        let wn = self.init_f32(&format!("{layer}conv_weight"), dims, w);
        let bn = self.init_f32(&format!("{layer}conv_bias"), &[o], bias);
        let name = self.node(
            "Conv",
            &[&x.name, &wn, &bn],
            vec![
                attr_ints("kernel_shape", &ints(&[kh, kw])),
                attr_ints("strides", &ints(&[stride, stride])),
                attr_ints("pads", &ints(&pads)),
                attr_ints("dilations", &[1, 1]),
                attr_int("group", groups as i64),
            ],
            None,
        );
        Ok(Fmap {
            name,
            c: o,
            h,
            w: wd,
        })
    }

    /// `MaxPool` or `AveragePool` (`avg = Some(count_include_pad)`) with explicit pads.
    pub fn pool(
        &mut self,
        x: &Fmap,
        avg: Option<bool>,
        kernel: usize,
        stride: usize,
        pads: Pads,
    ) -> Result<Fmap> {
        let h = window_out(x.h, pads[0] + pads[2], kernel, stride);
        let w = window_out(x.w, pads[1] + pads[3], kernel, stride);
        let (h, w) = match (h, w) {
            (Some(h), Some(w)) => (h, w),
            _ => {
                return Err(ExportError::InputTooSmall {
                    input: self.input_desc.clone(),
                    layer: format!(
                        "{}pool after {}",
                        if avg.is_some() { "avg " } else { "max " },
                        x.name
                    ),
                    size: x.h.min(x.w),
                    kernel,
                })
            }
        };
        let mut attributes = vec![
            attr_ints("kernel_shape", &ints(&[kernel, kernel])),
            attr_ints("strides", &ints(&[stride, stride])),
            attr_ints("pads", &ints(&pads)),
        ];
        let op = match avg {
            Some(count_include_pad) => {
                attributes.push(attr_int("count_include_pad", i64::from(count_include_pad)));
                "AveragePool"
            }
            None => "MaxPool",
        };
        let name = self.node(op, &[&x.name], attributes, None);
        Ok(Fmap { name, c: x.c, h, w })
    }

    /// `Relu`.
    pub fn relu(&mut self, x: &Fmap) -> Fmap {
        Fmap {
            name: self.node("Relu", &[&x.name], vec![], None),
            ..x.clone()
        }
    }

    /// `relu(a + b)` (a residual join).
    pub fn add_relu(&mut self, a: &Fmap, b: &Fmap) -> Fmap {
        let sum = self.node("Add", &[&a.name, &b.name], vec![], None);
        Fmap {
            name: self.node("Relu", &[&sum], vec![], None),
            ..a.clone()
        }
    }

    /// Channel concatenation of maps of one spatial size.
    pub fn concat_channels(&mut self, parts: &[Fmap]) -> Result<Fmap> {
        let first = &parts[0];
        if let Some(p) = parts.iter().find(|p| (p.h, p.w) != (first.h, first.w)) {
            return Err(ExportError::InputTooSmall {
                input: self.input_desc.clone(),
                layer: format!(
                    "concat of {} ({}×{}) and {} ({}×{})",
                    first.name, first.h, first.w, p.name, p.h, p.w
                ),
                size: p.h.min(p.w),
                kernel: first.h.min(first.w),
            });
        }
        let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        let name = self.node("Concat", &names, vec![attr_int("axis", 1)], None);
        Ok(Fmap {
            name,
            c: parts.iter().map(|p| p.c).sum(),
            h: first.h,
            w: first.w,
        })
    }
}

/// Explicit `(before, after)` padding along one side that gives a plain ONNX
/// pool the size PyTorch's `nn.MaxPool2d` / `nn.AvgPool2d` (symmetric `pad`)
/// gives, as vct-arch's pooling computes it: in ceil mode a window may overhang
/// the end (taken as end padding, which a max pool never picks) but must start
/// inside the input or the left padding. `None`: the input is smaller than the window.
pub(crate) fn torch_pool_pads(
    size: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    ceil: bool,
) -> Option<(usize, usize)> {
    let extra = if ceil { stride - 1 } else { 0 };
    let mut out = (size + 2 * pad + extra).checked_sub(kernel)? / stride + 1;
    if ceil && (out - 1) * stride >= size + pad {
        out -= 1;
    }
    let needed = (out - 1) * stride + kernel;
    Some((pad, pad.max(needed.saturating_sub(size + pad))))
}
