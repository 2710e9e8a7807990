//! Bad ONNX files, from the built binary: each is refused with exit code 2 and a message that
//! says where (a byte offset and field path, a node's index, name and op type, a tensor's name)
//! what is wrong, and what to do. The files are built here from ONNX's own message types (a
//! one-convolution model, then one thing broken), written to a scratch directory and removed.

use crate::common::{archscope, arg, refused, scratch, stderr};
use archscope::onnx::proto::{
    self, tensor_shape_proto::dimension, type_proto, AttributeProto, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use prost::Message;

/// A dimension: a fixed size, or a symbolic name.
enum D {
    N(i64),
    P(&'static str),
}

fn value(name: &str, dims: &[D]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| proto::tensor_shape_proto::Dimension {
            value: Some(match d {
                D::N(v) => dimension::Value::DimValue(*v),
                D::P(p) => dimension::Value::DimParam((*p).to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(proto::dtype::FLOAT),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        name: Some(name.into()),
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: v.to_vec(),
        r#type: Some(proto::attribute_proto::AttributeType::Ints as i32),
        ..Default::default()
    }
}

/// x: N×3×8×8 (N symbolic) → Conv `conv` (w: 4×3×3×3, b: 4, pads 1) → Relu `relu` → y: N×4×8×8.
fn model() -> ModelProto {
    let w: Vec<f32> = (0..108).map(|k| k as f32 / 108.0).collect();
    let mut conv = node("conv", "Conv", &["x", "w", "b"], &["c"]);
    conv.attribute = vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1])];
    ModelProto {
        ir_version: Some(proto::IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("bad".into()),
            node: vec![conv, node("relu", "Relu", &["c"], &["y"])],
            initializer: vec![
                proto::tensor_f32("w", &[4, 3, 3, 3], &w),
                proto::tensor_f32("b", &[4], &[0.1, 0.2, 0.3, 0.4]),
            ],
            input: vec![value("x", &[D::P("N"), D::N(3), D::N(8), D::N(8)])],
            output: vec![value("y", &[D::P("N"), D::N(4), D::N(8), D::N(8)])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn graph(m: &mut ModelProto) -> &mut GraphProto {
    m.graph.as_mut().expect("graph")
}

/// `archscope summary FILE` on `bytes` (written as `name`) must be refused with `needle` in the
/// message; returns the message.
fn refused_bytes(name: &str, bytes: &[u8], needle: &str) -> String {
    let dir = scratch(name.trim_end_matches(".onnx"));
    let f = dir.join(name);
    std::fs::write(&f, bytes).expect("write");
    let out = archscope(&["summary", arg(&f)]);
    let msg = refused(&name, &out, needle);
    let _ = std::fs::remove_dir_all(&dir);
    // Messages name the file as given on the command line, or the ONNX node or graph input
    // (errors of the built layers).
    assert!(msg.contains(name) || msg.contains("from ONNX "), "{msg}");
    msg
}

fn refused_model(name: &str, m: &ModelProto, needle: &str) -> String {
    refused_bytes(name, &proto::encode_model(m), needle)
}

#[test]
fn the_valid_model_reads() {
    // The base every other test breaks: it reads, with the batch taken from --batch.
    let dir = scratch("valid");
    let f = dir.join("ok.onnx");
    std::fs::write(&f, proto::encode_model(&model())).expect("write");
    let out = archscope(&["summary", arg(&f), "--batch", "3", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    // 4·3·3·3 weights + 4 biases; MACs 3 (batch) · 4·8·8 outputs · 27.
    assert_eq!(v["totals"]["params"].as_u64(), Some(112));
    assert_eq!(v["totals"]["macs"].as_u64(), Some(3 * 4 * 8 * 8 * 27));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn truncated_protobuf_names_the_byte_offset() {
    let m = model();
    let bytes = proto::encode_model(&m);
    // prost writes ModelProto's fields in the order of their numbers: ir_version (1), graph
    // (7), opset_import (8). Cutting the opset field and 5 bytes more leaves the graph 5 short;
    // its key (1 byte) and length (a varint) start `header + g` bytes before the opset field.
    let g = m.graph.as_ref().unwrap().encoded_len();
    let o = m.opset_import[0].encoded_len();
    let opset = 1 + prost::length_delimiter_len(o) + o;
    let header = 1 + prost::length_delimiter_len(g);
    let at = bytes.len() - opset - header - g;
    let msg = refused_bytes(
        "cut.onnx",
        &bytes[..bytes.len() - opset - 5],
        "not a readable ONNX model",
    );
    assert!(
        msg.contains(&format!(
            "at byte {at}, ModelProto.graph: the field declares {g} bytes where {} remain in its message (the file is truncated or damaged)",
            g - 5
        )),
        "{msg}"
    );
    assert!(msg.contains("protobuf's decoder says:"), "{msg}");
    assert!(msg.contains("help: export the model again"), "{msg}");
}

#[test]
fn truncated_inside_a_node_names_the_path() {
    // A ModelProto (ir_version 9) whose graph holds one node whose `name` (NodeProto field 3,
    // key 0x1a) claims 200 bytes (varint c8 01) where the node holds 4 more.
    let mut nb = vec![0x1a, 0xc8, 0x01];
    nb.extend(b"conv");
    let mut graph_bytes = vec![0x0a]; // GraphProto.node (field 1)
    prost::encode_length_delimiter(nb.len(), &mut graph_bytes).unwrap();
    let node_in_graph = graph_bytes.len();
    graph_bytes.extend(&nb);
    let mut file = vec![0x08, 9, 0x3a]; // ir_version 9; ModelProto.graph (field 7)
    prost::encode_length_delimiter(graph_bytes.len(), &mut file).unwrap();
    let node_at = file.len() + node_in_graph;
    file.extend(&graph_bytes);
    let msg = refused_bytes("node.onnx", &file, "not a readable ONNX model");
    assert!(
        msg.contains(&format!(
            "at byte {node_at}, ModelProto.graph > GraphProto.node[0] > NodeProto.name: the field declares 200 bytes where 4 remain"
        )),
        "{msg}"
    );
}

#[test]
fn wrong_wire_type_names_the_field() {
    // The graph field (7) written a second time as a varint (key 7·8 + 0 = 56).
    let mut bytes = proto::encode_model(&model());
    let at = bytes.len();
    bytes.extend([56, 1]);
    let msg = refused_bytes("wire.onnx", &bytes, "not a readable ONNX model");
    assert!(
        msg.contains(&format!(
            "at byte {at}, ModelProto.graph[1]: the field is written as varint where ONNX's schema has it length-delimited"
        )),
        "{msg}"
    );
    // Not a protobuf at all: a text file renamed.
    let msg = refused_bytes(
        "text.onnx",
        b"format: archscope/1\nname: x\n",
        "not a readable ONNX model",
    );
    assert!(msg.contains("at byte 0"), "{msg}");
}

#[test]
fn missing_initializer_names_the_tensor_and_the_node() {
    let mut m = model();
    graph(&mut m)
        .initializer
        .retain(|t| t.name.as_deref() != Some("w"));
    let msg = refused_model(
        "noinit.onnx",
        &m,
        "input `w` is neither a graph input, an initializer nor an earlier node's output",
    );
    assert!(msg.contains("ONNX node #0 `conv` (Conv)"), "{msg}");
    assert!(msg.contains("its inputs: `x`, `w`, `b`"), "{msg}");
    assert!(msg.contains("a missing initializer?"), "{msg}");
}

#[test]
fn initializer_data_and_dims_disagree() {
    let mut m = model();
    let w: Vec<f32> = vec![0.5; 100];
    graph(&mut m).initializer[0] = proto::tensor_f32("w", &[4, 3, 3, 3], &w);
    let msg = refused_model(
        "count.onnx",
        &m,
        "tensor `w` declares 108 elements but holds 100",
    );
    assert!(msg.contains("ONNX node #0 `conv` (Conv)"), "{msg}");
    assert!(msg.contains("the file is damaged"), "{msg}");
}

#[test]
fn input_declared_against_its_initializer() {
    // Older exporters list initializers among the graph inputs too; the shapes must agree.
    let mut m = model();
    graph(&mut m)
        .input
        .push(value("w", &[D::N(4), D::N(3), D::N(5), D::N(5)]));
    let msg = refused_model(
        "listed.onnx",
        &m,
        "graph input `w` is declared [4, 3, 5, 5] but its initializer has dims [4, 3, 3, 3]",
    );
    assert!(msg.contains("help: export the model again"), "{msg}");
}

#[test]
fn weight_channels_against_the_input() {
    // The weight expects 5 input channels where x has 3 (`summary` never reads the weight's
    // data, so without this check it would count 4·3·9 weights where the file holds 4·5·9).
    let mut m = model();
    let w = vec![0.0f32; 4 * 5 * 9];
    graph(&mut m).initializer[0] = proto::tensor_f32("w", &[4, 5, 3, 3], &w);
    let msg = refused_model(
        "chan.onnx",
        &m,
        "weight `w` has shape [4, 5, 3, 3], which does not fit an input of 3 channels in 1 group(s)",
    );
    assert!(msg.contains("ONNX node #0 `conv` (Conv)"), "{msg}");
    // A bias of 3 for 4 output channels.
    let mut m = model();
    graph(&mut m).initializer[1] = proto::tensor_f32("b", &[3], &[0.0; 3]);
    let msg = refused_model(
        "bias.onnx",
        &m,
        "input 2 (`b`) has shape [3] where the layer needs [4]",
    );
    assert!(msg.contains("ONNX node #0 `conv` (Conv)"), "{msg}");
}

#[test]
fn dynamic_dimension_names_the_axis_and_what_to_pass() {
    let mut m = model();
    graph(&mut m).input[0] = value("x", &[D::P("N"), D::N(3), D::P("height"), D::N(8)]);
    let msg = refused_model(
        "dyn.onnx",
        &m,
        "tensor `x` has shape [?, 3, ?, 8]: a dynamic dimension other than the batch (dimension 2, `height`)",
    );
    assert!(
        msg.contains("give the input's size with --input (the sizes after the batch, e.g. --input 3x224x224, or 224x224 for the spatial sizes alone)"),
        "{msg}"
    );
    assert!(msg.contains("a symbolic batch takes --batch"), "{msg}");
    // The batch alone is fine (the valid model has a symbolic N); --input sizing the file is
    // tests/onnx_dynamic.rs.
}

#[test]
fn unsupported_operator_says_what_to_do() {
    let mut m = model();
    graph(&mut m).node[1].op_type = Some("Celu".into());
    let msg = refused_model(
        "celu.onnx",
        &m,
        "archscope cannot map the ONNX operator `Celu`",
    );
    assert!(msg.contains("ONNX node #1 `relu` (Celu)"), "{msg}");
    assert!(msg.contains("its inputs: `c`"), "{msg}");
    assert!(msg.contains("docs/ONNX.md lists the operators"), "{msg}");
    // A custom domain's operator.
    let mut m = model();
    graph(&mut m).node[1].domain = Some("com.microsoft".into());
    let msg = refused_model(
        "domain.onnx",
        &m,
        "operator `Relu` of domain `com.microsoft` is not a standard ONNX operator",
    );
    assert!(msg.contains("ONNX node #1 `relu`"), "{msg}");
}

#[test]
fn opset_out_of_range() {
    for v in [7, 24] {
        let mut m = model();
        m.opset_import[0].version = Some(v);
        let msg = refused_model(
            "opset.onnx",
            &m,
            &format!("the model uses ONNX opset {v}; archscope reads opsets 11 to 23"),
        );
        assert!(msg.contains("opset_version"), "{msg}");
    }
    // No default-domain opset at all.
    let mut m = model();
    m.opset_import.clear();
    refused_model("noopset.onnx", &m, "the model uses ONNX opset 0");
}

#[test]
fn external_data_is_refused_with_the_fix() {
    // The data file the tensor names is not beside the model: the tensor, the file, the fix.
    let mut m = model();
    let w = &mut graph(&mut m).initializer[0];
    w.raw_data = None;
    w.data_location = Some(proto::tensor_proto::DataLocation::External as i32);
    w.external_data = vec![proto::StringStringEntryProto {
        key: Some("location".into()),
        value: Some("weights.bin".into()),
    }];
    let msg = refused_model(
        "ext.onnx",
        &m,
        "tensor `w`: cannot read its external data (432 bytes at offset 0 of `weights.bin`)",
    );
    assert!(
        msg.contains("keep the .onnx and its data file together"),
        "{msg}"
    );
    // Marked external without a location: refused before anything is read.
    let mut m = model();
    let b = &mut graph(&mut m).initializer[1];
    b.raw_data = None;
    b.data_location = Some(proto::tensor_proto::DataLocation::External as i32);
    let mut one = b.clone();
    one.dims = vec![1];
    one.name = Some("one".into());
    graph(&mut m).initializer.push(one);
    let msg = refused_model(
        "ext1.onnx",
        &m,
        "its data is marked external but no `location` names the file",
    );
    assert!(msg.contains("save_as_external_data=False"), "{msg}");
}

#[test]
fn unknown_data_type_is_named() {
    let mut m = model();
    graph(&mut m).initializer[0].data_type = Some(8); // STRING
    let msg = refused_model("str.onnx", &m, "tensor `w` has data type 8 (STRING)");
    assert!(msg.contains("archscope reads float"), "{msg}");
}

#[test]
fn huge_declared_sizes_are_bounded() {
    // An initializer declaring 2^21 × 2^21 = 2^42 elements (no data): refused before any
    // allocation, against the YAML side's element limit.
    let mut m = model();
    graph(&mut m).initializer.push(TensorProto {
        name: Some("huge".into()),
        dims: vec![1 << 21, 1 << 21],
        data_type: Some(proto::dtype::FLOAT),
        ..Default::default()
    });
    refused_model(
        "huge.onnx",
        &m,
        &format!(
            "initializer `huge` has {} elements; at most {}",
            1u64 << 42,
            1u64 << 40
        ),
    );
    // A dimension that overflows 64 bits.
    let mut m = model();
    graph(&mut m).initializer.push(TensorProto {
        name: Some("over".into()),
        dims: vec![1 << 40, 1 << 40],
        data_type: Some(proto::dtype::FLOAT),
        ..Default::default()
    });
    refused_model(
        "over.onnx",
        &m,
        "initializer `over` has a negative or overflowing dimension",
    );
    // A field that declares more bytes than the file holds (a raw_data of 2^40 bytes): the
    // decoder refuses it before allocating.
    let mut bytes = proto::encode_model(&model());
    let at = bytes.len();
    // ModelProto field 7 (graph), length 2^40: key 0x3a, then the varint.
    bytes.push(0x3a);
    prost::encode_length_delimiter(1 << 40, &mut bytes).unwrap();
    let msg = refused_bytes("len.onnx", &bytes, "not a readable ONNX model");
    assert!(
        msg.contains(&format!(
            "at byte {at}, ModelProto.graph[1]: the field declares {} bytes",
            1u64 << 40
        )),
        "{msg}"
    );
    // A graph input of 2^41 elements per sample: the YAML side's element limit.
    let mut m = model();
    graph(&mut m).input[0] = value("x", &[D::N(1), D::N(3), D::N(1 << 20), D::N(1 << 20)]);
    refused_model(
        "big_input.onnx",
        &m,
        "graph input `x` has shape [1, 3, 1048576, 1048576]: more than 2^40 elements",
    );
    // A batch that takes it over.
    let mut m = model();
    graph(&mut m).input[0] = value("x", &[D::P("N"), D::N(3), D::N(1 << 19), D::N(1 << 19)]);
    let dir = scratch("batch");
    let f = dir.join("batch.onnx");
    std::fs::write(&f, proto::encode_model(&m)).expect("write");
    let out = archscope(&["summary", arg(&f), "--batch", "2"]);
    refused(
        &"--batch 2",
        &out,
        "graph input `x` has shape [2, 3, 524288, 524288]: more than 2^40 elements",
    );
    let _ = std::fs::remove_dir_all(&dir);
    // A constant of 2^20 + 1 elements to fold (ConstantOfShape): the folding limit.
    let mut m = model();
    let g = graph(&mut m);
    g.initializer
        .push(proto::tensor_i64("shape", &[1], &[(1 << 20) + 1]));
    g.node
        .insert(0, node("fill", "ConstantOfShape", &["shape"], &["filled"]));
    let msg = refused_model(
        "fold.onnx",
        &m,
        &format!(
            "a constant of {} elements; archscope folds constants of at most {}",
            (1 << 20) + 1,
            1 << 20
        ),
    );
    assert!(
        msg.contains("ONNX node #0 `fill` (ConstantOfShape)"),
        "{msg}"
    );
}

#[test]
fn mul_by_a_learned_tensor_or_a_lone_scalar_reads_and_a_tensor_that_does_not_broadcast_is_refused()
{
    // Regression (found by tests/onnx_roundtrip.rs on ConvNeXt's layer scale): the attention
    // pattern looked at the first value of every constant a Mul reads, and an initializer of
    // more than one float has no values decoded until it is used as a weight: index out of
    // bounds. Now a Mul by a learned 1×4×1×1 tensor reads as a `parameter` and a `multiply`.
    let mut m = model();
    let g = graph(&mut m);
    g.node[1].output[0] = "r".into();
    g.node.push(node("scale", "Mul", &["r", "gamma"], &["y"]));
    g.initializer.push(proto::tensor_f32(
        "gamma",
        &[1, 4, 1, 1],
        &[0.5, 1.0, 1.5, 2.0],
    ));
    let dir = scratch("mul_learned");
    let f = dir.join("mul.onnx");
    std::fs::write(&f, proto::encode_model(&m)).expect("write");
    let out = archscope(&["summary", arg(&f), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    // The convolution's 112 and the 4 of gamma.
    assert_eq!(v["totals"]["params"].as_u64(), Some(116));
    // A scalar Mul that is not the attention pattern (no Transpose/MatMul/Softmax chain after
    // it) by a number dynamo lifted (`val_0`) reads as a `scalar` layer: no parameters (the
    // convolution's 112 alone), one FLOP per element of the convolution's 1×4×8×8 output
    // (tests/data/onnx_arith.json's model checks the values against onnxruntime).
    let g = graph(&mut m);
    g.initializer.pop();
    g.initializer.push(proto::tensor_f32("val_0", &[], &[0.5]));
    g.node.last_mut().unwrap().input[1] = "val_0".into();
    let f = dir.join("scalar.onnx");
    std::fs::write(&f, proto::encode_model(&m)).expect("write");
    let out = archscope(&["summary", arg(&f), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["totals"]["params"].as_u64(), Some(112));
    let layers = v["layers"].as_array().expect("layers");
    let last = layers.last().expect("a layer");
    assert_eq!(last["op"], "scalar", "{last}");
    assert_eq!(last["label"], "x × 0.5", "{last}");
    assert_eq!(last["flops"].as_u64(), Some(4 * 8 * 8), "{last}");
    assert_eq!(last["macs"].as_u64(), Some(0), "{last}");
    // The same number under a state_dict name (`gamma`, as TorchScript writes a rank-0
    // nn.Parameter) is a learned parameter: 1 more (docs/ONNX.md, "Constant, buffer or
    // parameter").
    let g = graph(&mut m);
    g.initializer.pop();
    g.initializer.push(proto::tensor_f32("gamma", &[], &[0.5]));
    g.node.last_mut().unwrap().input[1] = "gamma".into();
    std::fs::write(&f, proto::encode_model(&m)).expect("write");
    let out = archscope(&["summary", arg(&f), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["totals"]["params"].as_u64(), Some(113));
    let last = v["layers"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["label"], "x × c (learned)", "{last}");
    // A Sub by a tensor of five numbers per channel, where the convolution has four, is
    // refused at the node.
    let g = graph(&mut m);
    g.node.last_mut().unwrap().op_type = Some("Sub".into());
    g.initializer.pop();
    g.initializer.push(proto::tensor_f32(
        "gamma",
        &[1, 5, 1, 1],
        &[0.5, 1.0, 1.5, 2.0, 2.5],
    ));
    let msg = refused_model(
        "sub.onnx",
        &m,
        "this `Sub`'s tensor `gamma` of shape 1×5×1×1 is 5 in its dimension 1 where the computed tensor (1×4×8×8) has 4",
    );
    assert!(msg.contains("ONNX node #2 `scale` (Sub)"), "{msg}");
}

#[test]
fn integer_division_in_shape_arithmetic_truncates() {
    // torch.chunk traces its chunk size as `(size + chunks − 1) / chunks` on int64 tensors, and
    // ONNX's Div of integers truncates. Here: the conv's output width 6, (6 + 2) / 3 = 2 (not
    // 2.67), times 2 = 4, the end of a Slice along the width: 1×4×6×6 → 1×4×6×4 (by hand; with
    // a real division the end would be 5.33, a width of 5, and MaxViT's q/k/v split — 26 / 3 —
    // read 9 columns instead of 8).
    let mut m = model();
    let g = graph(&mut m);
    g.input = vec![value("x", &[D::N(1), D::N(3), D::N(6), D::N(6)])];
    g.output = vec![value("y", &[D::N(1), D::N(4), D::N(6), D::N(4)])];
    g.initializer.extend([
        proto::tensor_i64("idx", &[1], &[3]),
        proto::tensor_i64("two", &[1], &[2]),
        proto::tensor_i64("three", &[1], &[3]),
        proto::tensor_i64("zero", &[1], &[0]),
        proto::tensor_i64("axis", &[1], &[3]),
    ]);
    g.node = vec![
        g.node[0].clone(),
        node("shape", "Shape", &["c"], &["s"]),
        node("width", "Gather", &["s", "idx"], &["w"]),
        node("plus", "Add", &["w", "two"], &["w2"]),
        node("div", "Div", &["w2", "three"], &["q"]),
        node("times", "Mul", &["q", "two"], &["end"]),
        node("slice", "Slice", &["c", "zero", "end", "axis"], &["y"]),
    ];
    let (net, _) = archscope::onnx::build(
        "chunk.onnx",
        &proto::encode_model(&m),
        &archscope::BuildOptions::default(),
    )
    .expect("reads");
    let out = &net.outputs[0];
    assert_eq!(net.nodes[out.node].out_shapes[out.slot].0, vec![1, 4, 6, 4]);
}
