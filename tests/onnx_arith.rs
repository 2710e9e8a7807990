//! Arithmetic with constant numbers (the `scalar` layer) read from ONNX and written back:
//! tests/data/onnx/arith.onnx (scripts/onnx_arith.py: a convolution, then `x * 0.5 + 1`,
//! `x / 3 - 2`, `2 - x`, `1 / (x*x + 1)`, `x ** 2`, exported by PyTorch) reads with PyTorch's
//! parameter count and onnx's inferred shapes, and runs to onnxruntime's output
//! (tests/data/onnx_arith.json), each profiler preset charging what the tool measured; a YAML model using every operator exports and reads back with
//! the same figures and outputs.

use crate::common::{data_json, net, root, u64s};
use archscope::convention::recount;
use archscope::onnx::export::{export, ExportOptions};
use archscope::onnx::{self};
use archscope::tensor::Tensor;
use archscope::{analyze, exec, BuildOptions, Convention, Dtype};

#[test]
fn torch_export_reads_and_runs_as_onnxruntime() {
    let r = data_json("onnx_arith.json");
    let shape: Vec<usize> = u64s(&r["input_shape"])
        .iter()
        .map(|&d| d as usize)
        .collect();
    let bytes = std::fs::read(root().join("tests/data/onnx/arith.onnx")).expect("arith.onnx");
    let (net, imp) = onnx::build("arith.onnx", &bytes, &BuildOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let a = analyze(&net, Dtype::F32).unwrap();
    assert_eq!(a.totals.params, r["params"].as_u64().unwrap());
    // Layer by layer: every ONNX node but the Constants is one layer, in order, with the shape
    // onnx's shape inference gives its output.
    let nodes = r["nodes"].as_array().unwrap();
    assert_eq!(
        net.nodes.len(),
        nodes.len() + 1,
        "the input and one layer per node"
    );
    for (k, want) in nodes.iter().enumerate() {
        let node = &net.nodes[k + 1];
        assert_eq!(
            node.out_shapes[0].0,
            u64s(&want["shape"]),
            "{}",
            want["name"]
        );
        let scalar = matches!(
            want["op"].as_str().unwrap(),
            "Sub" | "Div" | "Pow" | "Reciprocal"
        );
        if scalar {
            assert_eq!(a.layers[k + 1].op, "scalar", "{}", want["name"]);
        }
    }
    // The ten layers: conv, ×0.5, +1, /3, −2, 2−x, x·x (a multiply of two computed tensors),
    // +1, 1/x, x^2; and the concat. Eight are `scalar`.
    assert_eq!(a.layers.iter().filter(|l| l.op == "scalar").count(), 8);
    // A scalar layer costs one FLOP per element: 1×4×8×8 = 256.
    let s = a.layers.iter().find(|l| l.op == "scalar").unwrap();
    assert_eq!((s.macs, s.flops), (0, 256));
    // What each profiler charged the PyTorch model: the convolution alone (the script's
    // measurement), which each preset reproduces (the arithmetic charged by none).
    presets_reproduce(&net, &a, &r["conventions"], "arith.onnx");
    let w = onnx::weights(&net, &imp)
        .unwrap()
        .expect("the file holds its weights");
    let n: usize = shape.iter().product();
    // The script's input: x[i] = sin(0.1 i).
    let x: Vec<f32> = (0..n).map(|i| (0.1 * i as f64).sin() as f32).collect();
    let out = exec::run(&net, &w, &[Tensor::new(shape, x)], None).unwrap();
    let got = &out.outputs[0];
    let want_shape: Vec<usize> = u64s(&r["output_shape"])
        .iter()
        .map(|&d| d as usize)
        .collect();
    assert_eq!(got.shape, want_shape);
    let want = r["onnxruntime_output"].as_array().unwrap();
    assert_eq!(got.data.len(), want.len());
    for (k, (g, w)) in got.data.iter().zip(want).enumerate() {
        let w = w.as_f64().unwrap();
        assert!(
            (f64::from(*g) - w).abs() <= 1e-4,
            "output {k}: archscope {g}, onnxruntime {w}"
        );
    }
}

const EVERY_OPERATOR: &str = r#"format: "archscope/1"
name: arith
inputs:
  image: [2, 5, 5]
nodes:
  - {id: conv, op: conv, out: 3, kernel: 3, padding: 1}
  - {id: a, op: scalar, in: conv, operator: add, value: 1.5}
  - {id: s, op: scalar, in: a, operator: sub, value: 0.25}
  - {id: r, op: scalar, in: s, operator: rsub, value: 2}
  - {id: m, op: scalar, in: r, operator: mul, value: 0.5}
  - {id: d, op: scalar, in: m, operator: div, value: 3}
  - {id: p, op: scalar, in: d, operator: pow, value: 2}
  - {id: q, op: scalar, in: p, operator: add, value: 1}
  - {id: v, op: scalar, in: q, operator: rdiv, value: 4}
"#;

#[test]
fn every_operator_exports_and_reads_back() {
    let net = net(EVERY_OPERATOR);
    let w = exec::init_weights(&net, 7).expect("weights");
    let m = export(&net, Some(&w), ExportOptions::default()).expect("exports");
    let bytes = onnx::proto::encode_model(&m);
    let (back, imp) = onnx::build("arith.onnx", &bytes, &BuildOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (
        analyze(&net, Dtype::F32).unwrap(),
        analyze(&back, Dtype::F32).unwrap(),
    );
    let rows = |x: &archscope::Analysis| -> Vec<(String, Vec<u64>, u64)> {
        x.layers
            .iter()
            .map(|l| (l.label.clone(), l.outputs[0].0.clone(), l.flops))
            .collect()
    };
    assert_eq!(rows(&b), rows(&a));
    // The conv's 2·3·9 + 3 = 57 parameters; the eight scalar layers 3·5·5 = 75 FLOPs each.
    assert_eq!(a.totals.params, 57);
    assert_eq!(
        a.layers
            .iter()
            .filter(|l| l.op == "scalar")
            .map(|l| l.flops)
            .collect::<Vec<_>>(),
        vec![75; 8]
    );
    assert_eq!(
        (b.totals.params, b.totals.macs, b.totals.flops),
        (a.totals.params, a.totals.macs, a.totals.flops)
    );
    let wb = onnx::weights(&back, &imp)
        .unwrap()
        .expect("the file holds them");
    let x: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
    let want = exec::run(&net, &w, &[Tensor::new(vec![1, 2, 5, 5], x.clone())], None).unwrap();
    let got = exec::run(&back, &wb, &[Tensor::new(vec![1, 2, 5, 5], x)], None).unwrap();
    assert_eq!(got.outputs[0].shape, want.outputs[0].shape);
    assert_eq!(got.outputs[0].data, want.outputs[0].data);
}

/// Each profiler preset, applied to the analysis `a` of `net`, gives the total MACs that tool
/// measured on the PyTorch model (`conventions`, from the script), and charges nothing for the
/// `scalar` layers (no tool charges the arithmetic).
pub(crate) fn presets_reproduce(
    net: &archscope::Network,
    a: &archscope::Analysis,
    conventions: &serde_json::Value,
    label: &str,
) {
    for (tool, c) in [
        ("torchvision", Convention::Torchvision),
        ("fvcore", Convention::Fvcore),
        ("ptflops", Convention::Ptflops),
        ("thop", Convention::Thop),
        ("torchinfo", Convention::Torchinfo),
    ] {
        let mut b = a.clone();
        recount(net, &mut b, c).unwrap();
        assert_eq!(
            b.totals.macs,
            conventions[tool].as_u64().unwrap(),
            "{label}: {tool}"
        );
        let charged: u64 = b
            .layers
            .iter()
            .filter(|l| l.op == "scalar")
            .map(|l| l.macs)
            .sum();
        assert_eq!(charged, 0, "{label}: {tool}");
    }
}
