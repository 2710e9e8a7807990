//! The 1-D and 3-D layer types against PyTorch: tests/data/nd_ops_reference.json
//! (scripts/nd_ops_reference.py) holds, for one-layer models of every new op and its options,
//! PyTorch's output with every state-dict tensor and the input set by the script's `formula`.
//! The same tensors loaded by name, run by `exec::run` (every layer as written: what `check`
//! uses) and by the inference plan (what `run` uses), give the same outputs; and `check`
//! passes on each model (shapes, parameters, buffers, MACs and the measured receptive field).

use crate::common;

use crate::common::{
    checked, data_json, f32s, formula, formula_safetensors, outputs_both_ways, usizes,
};
use archscope::{exec, BuildOptions, Network};

#[test]
fn every_new_op_matches_pytorch() {
    let doc = data_json("nd_ops_reference.json");
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 29);
    for case in cases {
        let layer = case["layer"].as_str().unwrap();
        let shape = usizes(&case["input_shape"]);
        let dims: Vec<String> = shape[1..].iter().map(|d| d.to_string()).collect();
        let yaml = format!(
            "format: \"archscope/1\"\nname: case\ninputs:\n  x: [{}]\nnodes:\n  - {{id: op, {}\n",
            dims.join(", "),
            layer.trim_start_matches('{')
        );
        let opts = BuildOptions {
            batch: shape[0] as u64,
            ..BuildOptions::default()
        };
        let net = Network::from_yaml("case.yaml", &yaml, &opts)
            .unwrap_or_else(|e| panic!("{layer}: {e}"));
        let w = exec::load_safetensors(&net, &formula_safetensors(&case["state"]), "x.safetensors")
            .unwrap_or_else(|e| panic!("{layer}: {e}"));
        let x = exec::Tensor::new(shape.clone(), formula("input", &shape));
        let want = f32s(&case["output"]);
        let want_shape = usizes(&case["output_shape"]);
        for (path, out) in outputs_both_ways(&net, &w, &x) {
            assert_eq!(out.shape, want_shape, "{layer} ({path})");
            let worst = out
                .data
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
                .fold(0f32, f32::max);
            assert!(worst <= 1e-5, "{layer} ({path}): max relative |Δ| {worst}");
        }
        // `check`: shapes, parameters, buffers, MACs and the measured receptive field.
        checked(&net);
    }
}

/// `check` on a small network: every figure agrees, and receptive fields are compared on
/// `min_compared` layers or more.
fn checks(yaml: &str, min_compared: usize) {
    let report = checked(&common::net(yaml));
    assert_eq!(report.rf_skipped, None);
    assert!(
        report.rf_compared() >= min_compared,
        "{} compared",
        report.rf_compared()
    );
}

#[test]
fn measured_fields_agree_in_one_and_three_dimensions() {
    // Strided, padded, dilated windows, a crop (slice) along the signal, a concatenation and
    // a pool: the analysed lattice of every unit against the reach the kernels give.
    checks(
        r#"
format: "archscope/1"
name: signal
inputs: {x: [2, 64]}
nodes:
  - {id: a, op: conv1d, out: 4, kernel: 5, stride: 2, padding: 2}
  - {id: p, op: maxpool1d, kernel: 3, stride: 2, padding: 1}
  - {id: s, op: slice, dim: 2, start: 2, end: 14}
  - {id: b, op: conv1d, out: 4, kernel: 3, dilation: 2, padding: 2}
  - {id: c, op: concat, in: [b, s], dim: 1}
  - {id: d, op: avgpool1d, kernel: 2}
"#,
        6,
    );
    // A clip: a 3-D stem with a fused batch norm (batchnorm3d) and ReLU, a frame-preserving
    // pool, a residual add, an adaptive pool that tiles evenly.
    checks(
        r#"
format: "archscope/1"
name: clip
inputs: {v: [2, 8, 16, 16]}
nodes:
  - {id: a, op: conv3d, out: 4, kernel: [3, 5, 5], stride: [1, 2, 2], padding: [1, 2, 2], bn: true, act: relu}
  - {id: p, op: maxpool3d, kernel: [1, 3, 3], stride: [1, 2, 2], padding: [0, 1, 1]}
  - {id: b, op: conv3d, out: 4, kernel: 3, padding: 1}
  - {id: s, op: add, in: [b, p]}
  - {id: g, op: adaptive_avgpool3d, size: [2, 2, 2]}
"#,
        7,
    );
}
