//! The 1-D and 3-D layer types against PyTorch: tests/data/nd_ops_reference.json
//! (scripts/nd_ops_reference.py) holds, for one-layer models of every new op and its options,
//! PyTorch's output with every state-dict tensor and the input set by the script's `formula`.
//! The same tensors loaded by name, run by `exec::run` (every layer as written: what `check`
//! uses) and by the inference plan (what `run` uses), give the same outputs; and `check`
//! passes on each model (shapes, parameters, buffers, MACs and the measured receptive field).

use std::path::PathBuf;

use archscope::{analyze, check, exec, BuildOptions, Dtype, Network};

fn data(file: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// FNV-1a, 32 bits (scripts/torchvision_weights.py `fnv1a32`).
fn fnv1a32(name: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// scripts/torchvision_weights.py `formula`, bit for bit.
fn formula(name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let h = u64::from(fnv1a32(name));
    (0..n as u64)
        .map(|i| {
            let x = (i.wrapping_mul(2_654_435_761) & 0xffff_ffff) ^ h;
            let u = x as f64 * 2.0 / 4_294_967_296.0 - 1.0;
            let v = if name.ends_with("running_var") {
                1.0 + 0.5 * u
            } else if name.ends_with("running_mean") || name.ends_with("bias") {
                0.1 * u
            } else if shape.len() >= 2 {
                u * (3.0 / (n / shape[0]) as f64).sqrt()
            } else {
                1.0 + 0.1 * u
            };
            v as f32
        })
        .collect()
}

fn safetensors_file(tensors: &[(String, Vec<usize>)]) -> Vec<u8> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape)| {
            let b = formula(name, shape)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            (name.clone(), shape.clone(), b)
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, &None).unwrap()
}

fn usizes(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn every_new_op_matches_pytorch() {
    let doc = data("nd_ops_reference.json");
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
        let state: Vec<(String, Vec<usize>)> = case["state"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t[0].as_str().unwrap().to_string(), usizes(&t[1])))
            .collect();
        let w = exec::load_safetensors(&net, &safetensors_file(&state), "x.safetensors")
            .unwrap_or_else(|e| panic!("{layer}: {e}"));
        let x = exec::Tensor::new(shape.clone(), formula("input", &shape));
        let want: Vec<f32> = case["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let want_shape = usizes(&case["output_shape"]);
        let direct = exec::run(&net, &w, std::slice::from_ref(&x), None).unwrap();
        let planned = exec::run_planned(
            &net,
            &w,
            &exec::plan(&net, &w),
            std::slice::from_ref(&x),
            None,
        )
        .unwrap();
        for (path, out) in [("run", &direct.outputs[0]), ("plan", &planned.outputs[0])] {
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
        let a = analyze(&net, Dtype::F32).unwrap();
        let report = check::check(&net, &a, &w, 0).unwrap();
        let bad: Vec<String> = report
            .rows
            .iter()
            .filter(|r| !r.ok())
            .map(|r| format!("{}: {:?}", r.name, r.mismatches()))
            .collect();
        assert!(bad.is_empty(), "{layer}: {bad:?}");
    }
}

/// `check` on a small network: every figure agrees, and receptive fields are compared on
/// `min_compared` layers or more.
fn checks(yaml: &str, min_compared: usize) {
    let net = Network::from_yaml("m.yaml", yaml, &BuildOptions::default()).unwrap();
    let a = analyze(&net, Dtype::F32).unwrap();
    let w = exec::init_weights(&net, 0).unwrap();
    let report = check::check(&net, &a, &w, 0).unwrap();
    let bad: Vec<String> = report
        .rows
        .iter()
        .filter(|r| !r.ok())
        .map(|r| format!("{}: {:?}", r.name, r.mismatches()))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
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
