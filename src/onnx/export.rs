//! ONNX export (`archscope export`): the built [`Network`] walked in topological order, each
//! layer writing its own nodes through [`Kernel::onnx`](crate::layers::Kernel::onnx) into an
//! [`Emit`], collected into a `ModelProto` — nodes named by layer path (a layer's further nodes
//! `path/OpType_k`), each layer's output tensor named by its path (`path:k` for output k > 0),
//! weights as initializers under the names a weights file gives them (`weights_names:`, e.g.
//! torchvision's `layer3.0.bn1.running_var`; the executor's seeded or loaded values), or,
//! graph only, as graph inputs with their shapes;
//! every intermediate's type and shape in `value_info`. Shapes are static: the batch and input
//! size the network was built with. No IO: the CLI writes the bytes.

use std::collections::HashMap;

use crate::error::Diagnostic;
use crate::exec::{tensor_name, Weights};
use crate::layers::onnx::{self as ir, AttrValue, ConstData, Emit, MAX_OPSET, MIN_OPSET};
use crate::Network;

use super::proto::{
    attribute_proto::AttributeType, dtype, tensor_f32, tensor_i64, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto,
    TypeProto, ValueInfoProto, IR_VERSION,
};

/// The default opset `archscope export` writes.
pub const DEFAULT_OPSET: u32 = 17;

/// Largest ONNX file archscope writes: protobuf's 2 GiB message limit (weights are stored in
/// the file; external data is not written).
pub const MAX_MODEL_BYTES: u64 = (1 << 31) - 1;

/// What to export.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    /// The opset ([`MIN_OPSET`] to [`MAX_OPSET`]).
    pub opset: u32,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            opset: DEFAULT_OPSET,
        }
    }
}

/// The names of every layer's weights, in [`Kernel::weights`](crate::layers::Kernel::weights)
/// order (a tied weight last, under its owner's name): the names a weights file gives them
/// (`net.tensor_prefix`: the layer path, or what `weights_names:` maps it to), so that the
/// initializers read back as a `.safetensors` file `run --weights` takes.
fn weight_names(net: &Network) -> Vec<Vec<String>> {
    let index: HashMap<&str, usize> = net
        .nodes
        .iter()
        .enumerate()
        .map(|(k, n)| (n.name.as_str(), k))
        .collect();
    net.nodes
        .iter()
        .enumerate()
        .map(|(k, node)| {
            let mut names: Vec<String> = node
                .layer
                .weights()
                .iter()
                .map(|s| tensor_name(&net.tensor_prefix[k], s.name))
                .collect();
            if let Some(t) = node.layer.tied() {
                let owner = index.get(t.layer.as_str()).copied();
                let prefix = owner.map_or(t.layer.as_str(), |o| net.tensor_prefix[o].as_str());
                names.push(tensor_name(prefix, t.weight));
            }
            names
        })
        .collect()
}

/// The names of every layer's output tensors: its path, `path:slot` after the first;
/// `path/value` when a weight already has that name (a `parameter`'s tensor is named by its
/// path alone).
fn tensor_names(net: &Network, weights: &[Vec<String>]) -> Vec<Vec<String>> {
    let taken: std::collections::HashSet<&str> =
        weights.iter().flatten().map(String::as_str).collect();
    net.nodes
        .iter()
        .map(|node| {
            (0..node.out_shapes.len())
                .map(|slot| {
                    let name = if slot == 0 {
                        node.name.clone()
                    } else {
                        format!("{}:{slot}", node.name)
                    };
                    if taken.contains(name.as_str()) {
                        format!("{name}/value")
                    } else {
                        name
                    }
                })
                .collect()
        })
        .collect()
}

/// A float tensor's type with these dimensions.
fn value_info(name: &str, dims: &[i64], elem: i32) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| tensor_shape_proto::Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                            denotation: None,
                        })
                        .collect(),
                }),
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}

fn attribute(name: &str, v: &AttrValue) -> AttributeProto {
    let mut a = AttributeProto {
        name: Some(name.to_string()),
        ..Default::default()
    };
    let t = match v {
        AttrValue::Int(i) => {
            a.i = Some(*i);
            AttributeType::Int
        }
        AttrValue::Ints(v) => {
            a.ints = v.clone();
            AttributeType::Ints
        }
        AttrValue::Float(f) => {
            a.f = Some(*f);
            AttributeType::Float
        }
        AttrValue::Floats(v) => {
            a.floats = v.clone();
            AttributeType::Floats
        }
        AttrValue::Str(s) => {
            a.s = Some(s.as_bytes().to_vec());
            AttributeType::String
        }
    };
    a.r#type = Some(t as i32);
    a
}

/// Refuses, before any weight is allocated, a model whose weights would not fit in one ONNX
/// file ([`MAX_MODEL_BYTES`]), naming the layer where they pass it. The export checks again
/// with the constants the layers add.
pub fn check_size(net: &Network) -> Result<(), Diagnostic> {
    let mut bytes: u64 = 0;
    for node in &net.nodes {
        for spec in node.layer.weights() {
            let n = spec
                .shape
                .iter()
                .fold(1u64, |a, &d| a.saturating_mul(d as u64));
            bytes = bytes.saturating_add(n.saturating_mul(4));
        }
        if bytes > MAX_MODEL_BYTES {
            return Err(too_large(&node.name));
        }
    }
    Ok(())
}

fn too_large(layer: &str) -> Diagnostic {
    Diagnostic::new(format!(
        "the model's tensors pass 2 GiB at layer `{layer}`: an ONNX file holds at most 2 GiB (protobuf's limit), and archscope writes no external data"
    ))
    .layer(layer)
    .help("export with --no-weights (the graph only), or a smaller model")
}

/// A weight's value_info declaring its kind as torch.export's exporter does (the metadata
/// `pkg.torch.export.graph_signature.InputSpec.kind`: `PARAMETER`, or `BUFFER` for running
/// statistics and a `scalar`'s buffer), so that the reader counts each as it was
/// (src/onnx/arith.rs).
fn kind_info(
    name: &str,
    dims: &[i64],
    kind: crate::tensor::WeightKind,
) -> super::proto::ValueInfoProto {
    let mut v = value_info(name, dims, dtype::FLOAT);
    let k = match kind {
        crate::tensor::WeightKind::Buffer => "BUFFER",
        crate::tensor::WeightKind::Trainable | crate::tensor::WeightKind::Frozen => "PARAMETER",
    };
    v.metadata_props.push(super::proto::StringStringEntryProto {
        key: Some(super::reader::KIND_KEY.to_string()),
        value: Some(k.to_string()),
    });
    v
}

/// The network as an ONNX model. `weights`: the executor's tensors (seeded or loaded), stored
/// as initializers; `None`: the graph only, every weight a graph input with its shape. A layer
/// with no ONNX form is an error naming it.
pub fn export(
    net: &Network,
    weights: Option<&Weights>,
    opts: ExportOptions,
) -> Result<ModelProto, Diagnostic> {
    if !(MIN_OPSET..=MAX_OPSET).contains(&opts.opset) {
        return Err(Diagnostic::new(format!(
            "opset {} is outside what archscope exports ({MIN_OPSET} to {MAX_OPSET})",
            opts.opset
        ))
        .help(format!("write --opset {DEFAULT_OPSET} (the default) or another value from {MIN_OPSET} to {MAX_OPSET}")));
    }
    let mut g = GraphProto {
        name: Some(net.name.clone()),
        ..Default::default()
    };
    let mut bytes: u64 = 0;
    let mut add_bytes = |n: u64, layer: &str| -> Result<(), Diagnostic> {
        bytes = bytes.saturating_add(n);
        if bytes > MAX_MODEL_BYTES {
            return Err(too_large(layer));
        }
        Ok(())
    };
    let wnames_all = weight_names(net);
    let tnames = tensor_names(net, &wnames_all);
    for (k, node) in net.nodes.iter().enumerate() {
        let outputs = &tnames[k];
        if node.layer.is_input() {
            let mut v = value_info(&outputs[0], &ir::dims(&node.out_shapes[0]), dtype::FLOAT);
            v.doc_string = Some("model input".to_string());
            g.input.push(v);
            continue;
        }
        let inputs: Vec<String> = node
            .inputs
            .iter()
            .map(|&(p, s)| tnames[p][s].clone())
            .collect();
        let specs = node.layer.weights();
        let wnames = &wnames_all[k];
        for (j, spec) in specs.iter().enumerate() {
            let dims: Vec<i64> = spec.shape.iter().map(|&d| d as i64).collect();
            match weights {
                Some(w) => {
                    let n: u64 = spec.shape.iter().map(|&d| d as u64).product();
                    add_bytes(n.saturating_mul(4), &node.name)?;
                    let t = &w.per_node[k][j];
                    g.initializer.push(tensor_f32(&wnames[j], &dims, &t.data));
                    g.value_info.push(kind_info(&wnames[j], &dims, spec.kind));
                }
                None => {
                    // Marked for tools (scripts/onnx_export_check.py draws values for them).
                    let mut v = value_info(&wnames[j], &dims, dtype::FLOAT);
                    v.doc_string = Some(
                        if matches!(spec.init, crate::tensor::Init::Fixed(_)) {
                            "weight (fixed values)"
                        } else if spec.name.is_empty() {
                            "weight (parameter)"
                        } else {
                            "weight"
                        }
                        .to_string(),
                    );
                    v.metadata_props = kind_info(&wnames[j], &dims, spec.kind).metadata_props;
                    g.input.push(v);
                }
            }
        }
        let mut e = Emit::new(
            opts.opset,
            &node.name,
            &inputs,
            &node.in_shapes,
            outputs,
            &node.out_shapes,
            wnames,
        );
        node.layer.onnx(&mut e)?;
        for c in &e.consts {
            match &c.data {
                ConstData::F32(v) => {
                    add_bytes(v.len() as u64 * 4, &node.name)?;
                    g.initializer.push(tensor_f32(&c.name, &c.dims, v));
                }
                ConstData::I64(v) => {
                    add_bytes(v.len() as u64 * 8, &node.name)?;
                    g.initializer.push(tensor_i64(&c.name, &c.dims, v));
                }
            }
        }
        for n in &e.nodes {
            g.node.push(NodeProto {
                input: n.inputs.clone(),
                output: n.outputs.clone(),
                name: Some(n.name.clone()),
                op_type: Some(n.op_type.to_string()),
                attribute: n.attrs.iter().map(|(k, v)| attribute(k, v)).collect(),
                ..Default::default()
            });
        }
        for (s, out) in outputs.iter().enumerate() {
            g.value_info.push(value_info(
                out,
                &ir::dims(&node.out_shapes[s]),
                dtype::FLOAT,
            ));
        }
    }
    // The model's outputs, each its layer's tensor; one named twice (or a model input) goes
    // through an `Identity` under the output's own name.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for o in &net.outputs {
        let name = tnames[o.node][o.slot].clone();
        let dims = ir::dims(&net.nodes[o.node].out_shapes[o.slot]);
        let again = seen.insert(name.clone(), 0).is_some();
        if again || net.nodes[o.node].layer.is_input() {
            let alias = format!("{}/output", o.name);
            g.node.push(NodeProto {
                input: vec![name],
                output: vec![alias.clone()],
                name: Some(alias.clone()),
                op_type: Some("Identity".to_string()),
                ..Default::default()
            });
            g.output.push(value_info(&alias, &dims, dtype::FLOAT));
        } else {
            g.value_info
                .retain(|v| v.name.as_deref() != Some(name.as_str()));
            g.output.push(value_info(&name, &dims, dtype::FLOAT));
        }
    }
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(i64::from(opts.opset)),
        }],
        producer_name: Some("archscope".to_string()),
        producer_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        graph: Some(g),
        ..Default::default()
    })
}

/// [`export`], encoded as the bytes of a `.onnx` file.
pub fn export_bytes(
    net: &Network,
    weights: Option<&Weights>,
    opts: ExportOptions,
) -> Result<Vec<u8>, Diagnostic> {
    Ok(super::proto::encode_model(&export(net, weights, opts)?))
}
