//! ONNX external data (`src/onnx/external.rs`, the CLI's reader in `src/cli/common.rs`): a
//! small CNN exported by `torch.onnx.export(..., dynamo=True)` as torch writes it by default,
//! its weights in `tiny_dynamo.onnx.data` beside the model (`scripts/onnx_external.py`,
//! tests/data/onnx_external/). Its figures are PyTorch's, `run` gives onnxruntime's output,
//! `convert --weights-out` carries the external weights; a missing or short data file and a
//! location outside the model's folder are refused with the tensor, the file and the fix.

use std::path::Path;

use crate::common::{self, archscope, arg, data_json, ok, read_saved_npy, refused, scratch};
use archscope::onnx::proto::{self, ModelProto};
use serde_json::Value;

const DIR: &str = "tests/data/onnx_external";

fn reference() -> Value {
    data_json("onnx_external/reference.json")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Runs `model` on the reference input; returns the saved output.
fn run_on_reference(model: &str, extra: &[&str], dir: &Path) -> (Vec<usize>, Vec<f32>) {
    let r = reference();
    let shape: Vec<usize> = r["input_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let x = dir.join("x.npy");
    std::fs::write(&x, common::npy_bytes(&shape, &floats(&r["input"]), "<f4")).unwrap();
    let y = dir.join("y.npy");
    let mut args = vec!["run", model, "--npy", arg(&x), "--save-output", arg(&y)];
    args.extend_from_slice(extra);
    ok(&args);
    read_saved_npy(&y)
}

fn assert_onnxruntime_output(out: &(Vec<usize>, Vec<f32>)) {
    let r = reference();
    let want = floats(&r["output"]);
    let shape: Vec<usize> = r["output_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(out.0, shape);
    let worst = out
        .1
        .iter()
        .zip(&want)
        .map(|(a, b)| (f64::from(*a) - b).abs())
        .fold(0.0, f64::max);
    assert!(worst <= 1e-4, "largest difference from onnxruntime {worst}");
}

#[test]
fn the_exporter_wrote_external_data() {
    // The committed file is what the test is about: its weights are not inside it.
    let bytes = std::fs::read(format!("{DIR}/tiny_dynamo.onnx")).unwrap();
    let m: ModelProto = proto::decode_model("tiny_dynamo.onnx", &bytes).unwrap();
    let mut external: Vec<String> = m
        .graph
        .unwrap()
        .initializer
        .iter()
        .filter(|t| !t.external_data.is_empty())
        .map(|t| t.name.clone().unwrap())
        .collect();
    external.sort();
    let want: Vec<String> = reference()["external_tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(external, want);
    assert!(!want.is_empty());
}

/// `summary FILE`'s params, buffers and MACs are PyTorch's (the reference).
fn assert_pytorch_figures(file: &str) {
    let r = reference();
    let s = common::json(&["summary", file, "--format", "json"]);
    let totals = |v: &Value| ["params", "buffers", "macs"].map(|k| v[k].as_u64());
    assert_eq!(totals(&s["totals"]), totals(&r), "{file}");
}

#[test]
fn external_weights_give_pytorchs_figures_and_onnxruntimes_output() {
    let file = format!("{DIR}/tiny_dynamo.onnx");
    assert_pytorch_figures(&file);
    let dir = scratch("external-run");
    assert_onnxruntime_output(&run_on_reference(&file, &[], &dir));
}

#[test]
fn convert_carries_external_weights() {
    let dir = scratch("external-convert");
    let (yaml, weights) = (dir.join("m.yaml"), dir.join("m.safetensors"));
    let file = format!("{DIR}/tiny_dynamo.onnx");
    ok(&[
        "convert",
        &file,
        "-o",
        arg(&yaml),
        "--weights-out",
        arg(&weights),
    ]);
    let out = run_on_reference(arg(&yaml), &["--weights", arg(&weights)], &dir);
    assert_onnxruntime_output(&out);
}

/// The model copied into a scratch folder, with `data` as its data file (none if `None`).
fn copied(dir: &Path, data: Option<&[u8]>) -> String {
    let model = dir.join("tiny_dynamo.onnx");
    std::fs::copy(format!("{DIR}/tiny_dynamo.onnx"), &model).unwrap();
    if let Some(d) = data {
        std::fs::write(dir.join("tiny_dynamo.onnx.data"), d).unwrap();
    }
    arg(&model).to_string()
}

#[test]
fn a_missing_data_file_names_the_tensor_and_the_file() {
    let dir = scratch("external-missing");
    let model = copied(&dir, None);
    let out = archscope(&["summary", &model]);
    let e = refused(&"missing", &out, "cannot read its external data");
    assert!(e.contains("tensor `conv1.weight`"), "{e}");
    assert!(e.contains("tiny_dynamo.onnx.data"), "{e}");
    assert!(
        e.contains("help: an ONNX model's external data is a file beside the model"),
        "{e}"
    );
}

#[test]
fn a_short_data_file_says_where_the_bytes_end() {
    let full = std::fs::read(format!("{DIR}/tiny_dynamo.onnx.data")).unwrap();
    let dir = scratch("external-short");
    let model = copied(&dir, Some(&full[..full.len() - 4]));
    let out = archscope(&["run", &model]);
    let e = refused(&"short", &out, "cannot read its external data");
    assert!(
        e.contains(&format!(
            "holds {} bytes, and the tensor's bytes end at {}",
            full.len() - 4,
            full.len()
        )),
        "{e}"
    );
}

#[test]
fn a_location_outside_the_models_folder_is_refused() {
    let bytes = std::fs::read(format!("{DIR}/tiny_dynamo.onnx")).unwrap();
    let mut m: ModelProto = proto::decode_model("tiny_dynamo.onnx", &bytes).unwrap();
    for t in &mut m.graph.as_mut().unwrap().initializer {
        for e in &mut t.external_data {
            if e.key.as_deref() == Some("location") {
                e.value = Some("../tiny_dynamo.onnx.data".into());
            }
        }
    }
    let dir = scratch("external-escape");
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::copy(
        format!("{DIR}/tiny_dynamo.onnx.data"),
        dir.join("tiny_dynamo.onnx.data"),
    )
    .unwrap();
    let model = sub.join("m.onnx");
    std::fs::write(&model, proto::encode_model(&m)).unwrap();
    let out = archscope(&["summary", arg(&model)]);
    let e = refused(
        &"escape",
        &out,
        "external data location `../tiny_dynamo.onnx.data` has an empty, `.` or `..` step",
    );
    assert!(e.contains("tensor `"), "{e}");
}

/// The exporter's unoptimised graph of the same model (`optimize=False`: `CastLike` of
/// constants like the input, `Expand`, `Shape` kept) gives the same figures and output.
#[test]
fn the_unoptimized_dynamo_graph_reads_with_castlike() {
    let r = reference();
    let ops: Vec<&str> = r["unoptimized_ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(ops.contains(&"CastLike"), "{ops:?}");
    let file = format!("{DIR}/tiny_dynamo_unoptimized.onnx");
    assert_pytorch_figures(&file);
    let dir = scratch("external-unoptimized");
    assert_onnxruntime_output(&run_on_reference(&file, &[], &dir));
}
