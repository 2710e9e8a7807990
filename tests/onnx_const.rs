//! Arithmetic with constant, buffer and learned tensors read from ONNX (`scalar` with a tensor
//! `value` and `shape`, `kind: buffer|parameter`; src/onnx/arith.rs): tests/data/onnx/const_*.onnx
//! (scripts/onnx_const.py: a normalisation wrapper with plain tensors and with registered
//! buffers around a small conv net, per-channel constants, a learned scalar gain, each exported
//! by TorchScript and by dynamo) read with PyTorch's parameters and buffers (the one documented
//! exception: TorchScript's registered buffers read as parameters), each profiler preset's
//! measured total, and outputs within 1e-4 of onnxruntime's (tests/data/onnx_const.json);
//! `archscope export` writes them back with the same figures and outputs bit for bit; a tensor
//! that does not broadcast is a located error.

use crate::common::refused_onnx;
use crate::common::{
    assert_onnxruntime_output, build_error, data_json, import_onnx, net, read_onnx, u64s, usizes,
};
use crate::onnx_arith::presets_reproduce;
use archscope::onnx::export::{export, ExportOptions};
use archscope::onnx::{self, proto};
use archscope::tensor::Tensor;
use archscope::{analyze, exec, BuildOptions, Dtype, Network};

/// The script's input: x[i] = sin(0.1 i) over the flattened input.
fn input(r: &serde_json::Value) -> Tensor {
    let shape = usizes(&r["input_shape"]);
    let n: usize = shape.iter().product();
    Tensor::new(
        shape,
        (0..n).map(|i| (0.1 * i as f64).sin() as f32).collect(),
    )
}

/// Every committed file: (model, exporter).
fn files(r: &serde_json::Value) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for (m, rec) in r["models"].as_object().unwrap() {
        for e in rec["exports"].as_object().unwrap().keys() {
            v.push((m.clone(), e.clone()));
        }
    }
    v
}

#[test]
fn both_exporters_read_with_pytorchs_counts_and_run_as_onnxruntime() {
    let r = data_json("onnx_const.json");
    let files = files(&r);
    // Four models by two exporters.
    assert_eq!(files.len(), 8);
    for (model, exporter) in &files {
        let rec = &r["models"][model];
        let e = &rec["exports"][exporter];
        let file = e["file"].as_str().unwrap();
        let (net, imp) = import_onnx(file, &read_onnx(file));
        let a = analyze(&net, Dtype::F32).unwrap();
        let (params, buffers) = (
            rec["params"].as_u64().unwrap(),
            rec["buffers"].as_u64().unwrap(),
        );
        // TorchScript writes a registered buffer as an initializer like a parameter's, and
        // declares no kinds: the file cannot tell them apart, and the rule reads a parameter.
        let want = if exporter == "torchscript" {
            (params + buffers, 0)
        } else {
            (params, buffers)
        };
        assert_eq!(
            (a.totals.params, a.totals.buffers),
            want,
            "{file}: parameters and buffers"
        );
        // Each constant or learned operand is one `scalar` layer (the Pow/Mul/Add/Div/Sub
        // nodes other than the products of two computed tensors).
        let scalars = a.layers.iter().filter(|l| l.op == "scalar").count();
        let want_scalars = match model.as_str() {
            "norm" | "norm_buffer" => 2,
            // ×scale, +shift, ^expo, +1, num/·, num−·.
            "channel" => 6,
            // ×gain, −offset, /s, −s, +0.5.
            "gain" => 5,
            other => panic!("{other}"),
        };
        assert_eq!(scalars, want_scalars, "{file}");
        // What each profiler charged the PyTorch model; no tool charges the arithmetic.
        presets_reproduce(&net, &a, &rec["conventions"], file);
        let w = onnx::weights(&net, &imp)
            .unwrap()
            .expect("the file holds its weights");
        let out = exec::run(&net, &w, &[input(&r)], None).unwrap();
        assert_eq!(out.outputs[0].shape, usizes(&e["output_shape"]), "{file}");
        let want: Vec<f64> = e["onnxruntime_output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_onnxruntime_output(file, &out.outputs[0].data, &want);
    }
}

#[test]
fn the_exporters_write_what_the_rule_reads() {
    // The facts the rule rests on, as the script recorded them from the files: TorchScript
    // writes plain tensors as `Constant` nodes and declares no kinds; dynamo declares each
    // initializer's kind, and leaves the numbers it lifts (`val_0`, `scalar_tensor_default`)
    // undeclared.
    let r = data_json("onnx_const.json");
    let inits = |m: &str, e: &str| -> Vec<(String, Vec<u64>, Option<String>)> {
        r["models"][m]["exports"][e]["initializers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["name"].as_str().unwrap().to_string(),
                    u64s(&i["dims"]),
                    i["kind"].as_str().map(String::from),
                )
            })
            .collect()
    };
    let kind = |m: &str, e: &str, name: &str| {
        inits(m, e)
            .into_iter()
            .find(|i| i.0 == name)
            .unwrap_or_else(|| panic!("{m} {e}: no {name}"))
            .2
    };
    let nodes = |m: &str, e: &str| -> usize {
        r["models"][m]["exports"][e]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| *n == "Constant")
            .count()
    };
    assert_eq!(nodes("norm", "torchscript"), 2);
    assert!(inits("norm", "torchscript").iter().all(|i| i.0 != "mean"));
    assert_eq!(
        kind("norm", "dynamo", "mean").as_deref(),
        Some("CONSTANT_TENSOR")
    );
    assert_eq!(kind("norm_buffer", "torchscript", "mean"), None);
    assert_eq!(
        kind("norm_buffer", "dynamo", "mean").as_deref(),
        Some("BUFFER")
    );
    assert_eq!(kind("gain", "torchscript", "gain"), None);
    assert_eq!(kind("gain", "dynamo", "gain").as_deref(), Some("PARAMETER"));
    assert_eq!(kind("gain", "dynamo", "val_0"), None);
    assert_eq!(kind("channel", "dynamo", "scalar_tensor_default"), None);
    assert_eq!(nodes("channel", "dynamo"), 0);
}

/// Exports `net` with `w`, reads it back, and asserts the same figures layer by layer and the
/// same outputs bit for bit on `x`; returns the network read back.
fn round_trip(label: &str, net: &Network, w: &exec::Weights, x: &Tensor) -> Network {
    let m = export(net, Some(w), ExportOptions::default()).expect("exports");
    let bytes = proto::encode_model(&m);
    let (back, imp) = onnx::build(label, &bytes, &BuildOptions::default())
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let (a, b) = (
        analyze(net, Dtype::F32).unwrap(),
        analyze(&back, Dtype::F32).unwrap(),
    );
    let rows = |x: &archscope::Analysis| -> Vec<(String, Vec<u64>, u64, u64, u64)> {
        x.layers
            .iter()
            .filter(|l| l.op != "input")
            .map(|l| {
                (
                    l.label.clone(),
                    l.outputs[0].0.clone(),
                    l.params.total(),
                    l.params.buffers,
                    l.flops,
                )
            })
            .collect()
    };
    assert_eq!(rows(&b), rows(&a), "{label}");
    let wb = onnx::weights(&back, &imp)
        .unwrap()
        .expect("the file holds them");
    let want = exec::run(net, w, std::slice::from_ref(x), None).unwrap();
    let got = exec::run(&back, &wb, std::slice::from_ref(x), None).unwrap();
    assert_eq!(got.outputs[0].shape, want.outputs[0].shape, "{label}");
    assert_eq!(got.outputs[0].data, want.outputs[0].data, "{label}");
    back
}

#[test]
fn imported_files_export_and_read_back_bit_for_bit() {
    let r = data_json("onnx_const.json");
    for (model, exporter) in files(&r) {
        let file = r["models"][&model]["exports"][&exporter]["file"]
            .as_str()
            .unwrap()
            .to_string();
        let (net, imp) = import_onnx(&file, &read_onnx(&file));
        let w = onnx::weights(&net, &imp).unwrap().unwrap();
        round_trip(&file, &net, &w, &input(&r));
    }
}

const KINDS: &str = r#"format: "archscope/1"
name: kinds
inputs:
  image: [3, 6, 6]
nodes:
  - {id: mean, op: scalar, operator: sub, value: [0.485, 0.456, 0.406], shape: [1, 3, 1, 1], kind: buffer}
  - {id: std, op: scalar, in: mean, operator: div, value: [0.229, 0.224, 0.225], shape: [1, 3, 1, 1]}
  - {id: conv, op: conv, out: 4, kernel: 3, padding: 1}
  - {id: gain, op: scalar, in: conv, operator: mul, value: 1.5, shape: [1], kind: parameter}
  - {id: expo, op: scalar, in: gain, operator: pow, value: [2, 1, 3, 2, 1, 1], shape: [6]}
  - {id: num, op: scalar, in: expo, operator: rdiv, value: [1, 2, 3, 4], shape: [4, 1, 1]}
  - {id: offset, op: scalar, in: num, operator: rsub, kind: parameter}
"#;

#[test]
fn yaml_constants_of_every_kind_export_and_read_back() {
    let net = net(KINDS);
    let a = analyze(&net, Dtype::F32).unwrap();
    // The convolution's 3·4·9 + 4 = 112, the gain's 1 and the offset's 1 parameters; the mean's
    // 3 buffers; the std, exponents and numerators count nowhere.
    assert_eq!((a.totals.params, a.totals.buffers), (114, 3));
    // 1×3×6×6 = 108 FLOPs for each of the two before the convolution, 1×4×6×6 = 144 for each
    // of the four after.
    let flops: Vec<u64> = a
        .layers
        .iter()
        .filter(|l| l.op == "scalar")
        .map(|l| l.flops)
        .collect();
    assert_eq!(flops, vec![108, 108, 144, 144, 144, 144]);
    let w = exec::init_weights(&net, 3).expect("weights");
    let x = Tensor::new(
        vec![1, 3, 6, 6],
        (0..108).map(|i| (i as f32 * 0.37).sin()).collect(),
    );
    let back = round_trip("kinds.onnx", &net, &w, &x);
    let b = analyze(&back, Dtype::F32).unwrap();
    assert_eq!((b.totals.params, b.totals.buffers), (114, 3));
    // Graph only: the buffer and the parameters are graph inputs declared as such, and read
    // back as what they were (the rank-0 offset too, which no weight position would show).
    let m = export(&net, None, ExportOptions::default()).expect("exports");
    let (g, _) = onnx::build(
        "kinds_graph.onnx",
        &proto::encode_model(&m),
        &BuildOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let c = analyze(&g, Dtype::F32).unwrap();
    assert_eq!(
        (c.totals.params, c.totals.buffers, c.totals.flops),
        (114, 3, a.totals.flops)
    );
}

/// The dynamo `norm` file with its mean's dims changed to `dims` (values to match).
fn norm_with_mean(dims: &[i64]) -> Vec<u8> {
    let mut m = proto::decode_model("x", &read_onnx("const_norm_dynamo.onnx")).unwrap();
    let g = m.graph.as_mut().unwrap();
    let t = g
        .initializer
        .iter_mut()
        .find(|t| t.name.as_deref() == Some("mean"))
        .unwrap();
    let n: i64 = dims.iter().product();
    *t = proto::tensor_f32("mean", dims, &vec![0.5; n as usize]);
    proto::encode_model(&m)
}

#[test]
fn a_tensor_that_does_not_broadcast_is_refused_at_its_node() {
    let e = refused_onnx("bad.onnx", &norm_with_mean(&[1, 4, 1, 1]));
    let msg = e.to_string();
    assert!(
        msg.contains("bad.onnx: this `Sub`'s tensor `mean` of shape 1×4×1×1 is 4 in its dimension 1 where the computed tensor (1×3×8×8) has 3: archscope reads a tensor that broadcasts into the computed one"),
        "{msg}"
    );
    assert!(msg.contains("ONNX node #0 `node_sub` (Sub)"), "{msg}");
    // One that would enlarge the computed tensor (8 rows where it has 1 batch).
    let e = refused_onnx("big.onnx", &norm_with_mean(&[2, 3, 1, 1]));
    assert!(
        e.to_string().contains(
            "of shape 2×3×1×1 is 2 in its dimension 0 where the computed tensor (1×3×8×8) has 1"
        ),
        "{e}"
    );
    // More dimensions than the computed tensor.
    let e = refused_onnx("rank.onnx", &norm_with_mean(&[1, 1, 3, 1, 1]));
    assert!(
        e.to_string()
            .contains("of shape 1×1×3×1×1 has 5 dimensions and the computed tensor 4"),
        "{e}"
    );
    // The YAML side: located at `shape`.
    let e = build_error(
        "m.yaml",
        "format: archscope/1\nname: m\ninputs:\n  image: [3, 4, 4]\nnodes:\n  - {id: s, op: scalar, operator: sub, value: [1, 2], shape: [2, 1, 1]}\n",
    );
    let msg = e.to_string();
    assert!(
        msg.contains("`shape: [2, 1, 1]` does not broadcast against the input 1×3×4×4: its dimension 0 is 2 where the input's dimension 1 is 3"),
        "{msg}"
    );
    assert!(msg.contains("m.yaml:6:"), "{msg}");
}

#[test]
fn a_learned_tensor_read_twice_is_counted_once() {
    // The TorchScript `norm_buffer` file (mean and std initializers, read as parameters by the
    // rule) with its `Sub` made an `Add` and its `Div` a `Mul` by the same `mean`: one
    // `parameter` layer of 3 elements that both read, so 516 + 3 parameters.
    let mut m = proto::decode_model("x", &read_onnx("const_norm_buffer_torchscript.onnx")).unwrap();
    let g = m.graph.as_mut().unwrap();
    g.node[0].op_type = Some("Add".into());
    g.node[1].op_type = Some("Mul".into());
    g.node[1].input[1] = "mean".into();
    let (net, _) = onnx::build(
        "twice.onnx",
        &proto::encode_model(&m),
        &BuildOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let a = analyze(&net, Dtype::F32).unwrap();
    assert_eq!(a.totals.params, 519);
    let ops: Vec<&str> = a.layers.iter().map(|l| l.op).take(4).collect();
    assert_eq!(ops, ["input", "parameter", "add", "multiply"]);
    // As a `scalar` (a Sub, then a Div by the same learned tensor): the first reader counts
    // it (kind: parameter), the second reads its values as a constant.
    let g = m.graph.as_mut().unwrap();
    g.node[0].op_type = Some("Sub".into());
    g.node[1].op_type = Some("Div".into());
    let (net, _) = onnx::build(
        "twice.onnx",
        &proto::encode_model(&m),
        &BuildOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let a = analyze(&net, Dtype::F32).unwrap();
    assert_eq!(a.totals.params, 519);
    let labels: Vec<&str> = a.layers[1..3].iter().map(|l| l.label.as_str()).collect();
    assert_eq!(labels, ["x − c[1×3×1×1] (learned)", "x / c[1×3×1×1]"]);
}
