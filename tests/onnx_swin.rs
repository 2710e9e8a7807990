//! Windowed attention read from ONNX (src/onnx/swin.rs): tiny Swin-T, Swin-V2-T and MaxViT-T
//! (tests/data/onnx/{swin,swin_v2,maxvit}_tiny.yaml, the zoo's structure at 32×32) exported by
//! `archscope export` with random weights (scripts/onnx_swin.py, committed under
//! tests/data/onnx/), read back: PyTorch's parameters, buffers and MACs
//! (tests/data/onnx_swin_reference.json, measured as scripts/torch_reference.py measures the
//! zoo), the YAML's layers one by one (kind, output shape, parameters, MACs, receptive field),
//! and `run` with the files' weights against onnxruntime's output on the script's input; the
//! graph-only export reads back the same; a changed attention is a located error naming the
//! node, the layer and what its form has there. The full zoo models' round trips are in
//! tests/onnx_roundtrip.rs.

use crate::common::refused_onnx;
use std::collections::BTreeMap;

use crate::common::{data_json, u64s};
use crate::common::{import_onnx as import, read_onnx as read};
use archscope::onnx::export::{export, ExportOptions};
use archscope::onnx::{self, proto};
use archscope::{analyze, exec, Analysis, BuildOptions, Dtype, Network};

const TINY: [&str; 3] = ["swin_tiny", "swin_v2_tiny", "maxvit_tiny"];

fn yaml(name: &str) -> Network {
    let f = format!("{name}.yaml");
    let text = String::from_utf8(read(&f)).expect("UTF-8");
    Network::from_yaml(&f, &text, &BuildOptions::default()).expect("builds")
}

/// Per layer with parameters or MACs: kind, output shapes, parameters, MACs, receptive field,
/// sorted (the two sides name layers differently).
fn rows(a: &Analysis) -> Vec<String> {
    let mut v = crate::common::weighted_rows(a);
    v.sort();
    v
}

fn kinds(a: &Analysis) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for l in &a.layers {
        *m.entry(l.op).or_insert(0) += 1;
    }
    m
}

/// (output shape, parameters, MACs) of the leaf modules PyTorch measured with parameters or
/// MACs, in order.
pub(crate) fn torch_rows(r: &serde_json::Value) -> Vec<(Vec<u64>, u64, u64)> {
    r["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            (
                u64s(&l["out"]),
                l["params"].as_u64().unwrap_or(0),
                l["macs"].as_u64().unwrap_or(0),
            )
        })
        .filter(|(_, p, m)| p + m > 0)
        .collect()
}

/// (output shape, parameters, MACs) of each layer with parameters or MACs, in order.
pub(crate) fn ours_rows(a: &Analysis) -> Vec<(Vec<u64>, u64, u64)> {
    a.layers
        .iter()
        .filter(|l| l.params.total() + l.macs > 0)
        .map(|l| (l.outputs[0].0.clone(), l.params.total(), l.macs))
        .collect()
}

#[test]
fn tiny_models_have_pytorchs_figures() {
    let reference = data_json("onnx_swin_reference.json");
    for name in TINY {
        let r = &reference["models"][name]["torch"];
        let a = analyze(&yaml(name), Dtype::F32).expect("analyses");
        assert_eq!(
            (
                a.totals.params,
                a.totals.trainable,
                a.totals.buffers,
                a.totals.macs
            ),
            (
                r["params"].as_u64().unwrap(),
                r["trainable"].as_u64().unwrap(),
                r["buffers"].as_u64().unwrap(),
                r["macs"].as_u64().unwrap()
            ),
            "{name}: (params, trainable, buffers, MACs) against PyTorch"
        );
        assert_eq!(ours_rows(&a), torch_rows(r), "{name}: layer by layer");
    }
    // Swin-T tiny by hand: the attention of stage 1 (C 16, 2 heads, 4×4 windows): qkv 16·48 + 48,
    // proj 16·16 + 16, table 7·7·2 = 98: 1,186 parameters; PyTorch's row says the same.
    let r = &reference["models"]["swin_tiny"]["torch"]["layers"];
    let attn = r
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "features.1.0.attn")
        .expect("features.1.0.attn");
    assert_eq!(attn["params"], 16 * 48 + 48 + 16 * 16 + 16 + 98);
}

#[test]
fn committed_exports_read_back_as_the_yaml() {
    let reference = data_json("onnx_swin_reference.json");
    for (name, op, count) in [
        ("swin_tiny", "shifted_window_attention", 3),
        ("swin_v2_tiny", "shifted_window_attention", 3),
        ("maxvit_tiny", "relative_position_attention", 4),
    ] {
        let f = format!("{name}.onnx");
        let (net, _) = import(&f, &read(&f));
        let a = analyze(&net, Dtype::F32).expect("analyses");
        let y = analyze(&yaml(name), Dtype::F32).expect("analyses");
        let r = &reference["models"][name]["torch"];
        assert_eq!(
            (a.totals.params, a.totals.buffers, a.totals.macs),
            (
                r["params"].as_u64().unwrap(),
                r["buffers"].as_u64().unwrap(),
                r["macs"].as_u64().unwrap()
            ),
            "{f}: PyTorch's figures"
        );
        assert_eq!(a.totals.flops, y.totals.flops, "{f}: FLOPs");
        assert_eq!(rows(&a), rows(&y), "{f}: layer by layer");
        assert_eq!(kinds(&a).get(op), Some(&count), "{f}: {:?}", kinds(&a));
        assert_eq!(
            net.outputs
                .iter()
                .map(|o| net.nodes[o.node].out_shapes[o.slot].0.clone())
                .collect::<Vec<_>>(),
            vec![u64s(&reference["models"][name]["onnx"]["output_shape"])],
            "{f}"
        );
    }
}

#[test]
fn committed_exports_run_as_onnxruntime() {
    run_as_onnxruntime("onnx_swin_reference.json", &TINY);
}

/// Each committed file `name.onnx` run with its own weights on the reference's input gives
/// onnxruntime's output (the reference JSON of its script).
pub(crate) fn run_as_onnxruntime(reference: &str, names: &[&str]) {
    let reference = data_json(reference);
    for name in names {
        let r = &reference["models"][name]["onnx"];
        let f = format!("{name}.onnx");
        let (net, imp) = import(&f, &read(&f));
        let w = onnx::weights(&net, &imp)
            .expect("weights")
            .expect("the file holds its weights");
        let shape: Vec<usize> = u64s(&r["input_shape"])
            .iter()
            .map(|&d| d as usize)
            .collect();
        let x: Vec<f32> = r["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let out =
            exec::run(&net, &w, &[archscope::tensor::Tensor::new(shape, x)], None).expect("runs");
        let want: Vec<f64> = r["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        crate::common::assert_onnxruntime_output(&f, &out.outputs[0].data, &want);
    }
}

#[test]
fn graph_only_exports_read_back_as_the_yaml() {
    for name in TINY {
        let net = yaml(name);
        let m = export(&net, None, ExportOptions::default()).expect("exports");
        let bytes = proto::encode_model(&m);
        let (back, imp) = import(&format!("{name}_graph.onnx"), &bytes);
        assert!(!imp.has_weights, "{name}");
        let (a, y) = (
            analyze(&back, Dtype::F32).expect("analyses"),
            analyze(&net, Dtype::F32).expect("analyses"),
        );
        assert_eq!(
            (
                a.totals.params,
                a.totals.buffers,
                a.totals.macs,
                a.totals.flops
            ),
            (
                y.totals.params,
                y.totals.buffers,
                y.totals.macs,
                y.totals.flops
            ),
            "{name}"
        );
        assert_eq!(rows(&a), rows(&y), "{name}: layer by layer");
    }
}

/// A committed file, changed by `f`, imported: the error's text.
pub(crate) fn edited(
    file: &str,
    f: impl FnOnce(&mut Vec<proto::NodeProto>, &mut Vec<proto::TensorProto>),
) -> String {
    let mut m = proto::decode_model(file, &read(file)).expect("decodes");
    let g = m.graph.as_mut().expect("graph");
    f(&mut g.node, &mut g.initializer);
    let bytes = proto::encode_model(&m);
    refused_onnx("edited.onnx", &bytes).to_string()
}

const HELP: &str = "help: archscope reads Swin's shifted-window attention and MaxViT's relative-position attention as `archscope export` writes them";

#[test]
fn a_softmax_over_another_axis_is_a_located_error() {
    let e = edited("swin_tiny.onnx", |nodes, _| {
        let s = nodes
            .iter_mut()
            .find(|n| n.op_type.as_deref() == Some("Softmax"))
            .expect("a Softmax");
        s.attribute[0].i = Some(2);
    });
    assert!(
        e.contains("in the windowed attention `stage1.0.attn` (read as one layer)"),
        "{e}"
    );
    assert!(
        e.contains("the layer's form has `Softmax` (axis -1) here, the file `Softmax` (axis 2)"),
        "{e}"
    );
    assert!(e.contains("(Softmax)"), "{e}");
    assert!(e.contains(HELP), "{e}");
}

#[test]
fn another_scale_is_a_located_error() {
    // Stage 1's q scale is 1/√8 (C 16, 2 heads): 0.5 instead.
    let e = edited("swin_tiny.onnx", |nodes, inits| {
        let mul = nodes
            .iter()
            .find(|n| {
                n.op_type.as_deref() == Some("Mul")
                    && n.name
                        .as_deref()
                        .is_some_and(|s| s.starts_with("stage1.0.attn/"))
            })
            .expect("the q scale")
            .input[1]
            .clone();
        let t = inits
            .iter_mut()
            .find(|t| t.name.as_deref() == Some(mul.as_str()))
            .expect("the scale");
        assert_eq!(proto::tensor_to_f32(t).expect("data"), [8f32.powf(-0.5)]);
        t.raw_data = Some(0.5f32.to_le_bytes().to_vec());
        t.float_data.clear();
    });
    assert!(e.contains("`stage1.0.attn`"), "{e}");
    assert!(
        e.contains("the layer's form reads the constant [0.3535533"),
        "{e}"
    );
    assert!(e.contains("(Mul)"), "{e}");
}

#[test]
fn an_op_outside_the_form_is_a_located_error() {
    // MaxViT's block attention: its Softmax replaced by a Relu.
    let e = edited("maxvit_tiny.onnx", |nodes, _| {
        let n = nodes
            .iter_mut()
            .find(|n| {
                n.op_type.as_deref() == Some("Softmax")
                    && n.name
                        .as_deref()
                        .is_some_and(|s| s.starts_with("stage1.window.attn/"))
            })
            .expect("the softmax");
        n.op_type = Some("Relu".into());
        n.attribute.clear();
    });
    assert!(
        e.contains("in the windowed attention `stage1.window.attn`"),
        "{e}"
    );
    assert!(
        e.contains("the layer's form has `Softmax` (axis -1) here, the file `Relu`"),
        "{e}"
    );
}

#[test]
fn a_second_input_is_a_located_error() {
    // The value product of the first Swin block reading the stem's output instead of V.
    let e = edited("swin_tiny.onnx", |nodes, _| {
        let sm = nodes
            .iter()
            .find(|n| n.op_type.as_deref() == Some("Softmax"))
            .expect("a Softmax")
            .output[0]
            .clone();
        let n = nodes
            .iter_mut()
            .find(|n| n.op_type.as_deref() == Some("MatMul") && n.input[0] == sm)
            .expect("softmax·V");
        n.input[1] = "stem_norm".into();
    });
    assert!(e.contains("`stage1.0.attn`"), "{e}");
    assert!(
        e.contains("a second computed input `stem_norm` (besides `stage1.0.norm1`)"),
        "{e}"
    );
}

#[test]
fn a_window_over_the_token_limit_is_refused_before_building() {
    // The graph-only tiny Swin with its first index declared 1,025² entries long: windows of
    // 1,025 tokens, one over the limit of 1,024 (docs/ONNX.md "Limits"); the layer is not
    // built (its index alone would hold 1,025² numbers per candidate).
    let net = yaml("swin_tiny");
    let mut m = export(&net, None, ExportOptions::default()).expect("exports");
    let g = m.graph.as_mut().expect("graph");
    let idx = g
        .input
        .iter_mut()
        .find(|v| v.name.as_deref() == Some("stage1.0.attn.relative_position_index"))
        .expect("the index input");
    let Some(proto::type_proto::Value::TensorType(t)) =
        idx.r#type.as_mut().and_then(|t| t.value.as_mut())
    else {
        panic!("a tensor type")
    };
    let dim = &mut t.shape.as_mut().expect("shape").dim[0];
    dim.value = Some(proto::tensor_shape_proto::dimension::Value::DimValue(
        1025 * 1025,
    ));
    let e = refused_onnx("big.onnx", &proto::encode_model(&m)).to_string();
    assert!(
        e.contains("in the windowed attention `stage1.0.attn`"),
        "{e}"
    );
    assert!(
        e.contains("its relative_position_index has 1050625 entries: windows of 1025 tokens, more than the 1024 archscope reads"),
        "{e}"
    );
}
