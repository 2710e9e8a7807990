//! Ultralytics weights through `run --weights` (docs/ULTRALYTICS.md "Weights"), without Python:
//! tests/data/ultralytics_weights_tiny.yaml (a tiny detector written for these tests in
//! Ultralytics' format: Conv, C2f, C3 repeated, C3k2, SPPF, C2PSA, the current Detect head
//! with a 4-bin DFL) was built by the installed `ultralytics` package with a fixed seed and
//! random batch-norm statistics, saved as Ultralytics saves a checkpoint and converted by
//! `scripts/ultralytics_weights.py tiny` into ultralytics_weights_tiny.safetensors under
//! Ultralytics' own state-dict names; ultralytics_weights_tiny.json holds the input and what
//! Ultralytics computed on it. archscope reads the file as it is (no renaming) and must
//! reproduce Ultralytics' raw head output (the box and class branches of every level, flattened
//! and concatenated: `preds["boxes"]`, `preds["scores"]`) within 1e-4 and the head's decoded
//! output within 1e-6 of its largest value.
//! The full-size check (yolov8n, yolov5n, yolo11n from Ultralytics' own files, at 640×640) is
//! scripted: tests/data/ultralytics_weights.json, checked for its verdicts below.

use crate::common;

use crate::common::{data_json, root};
use archscope::exec::{self, Weights};
use archscope::tensor::Tensor;
use archscope::ultralytics::{self, Options};
use archscope::yaml::Document;
use archscope::{graph, BuildOptions, Network};
use serde_json::Value;

const TOL: f64 = 1e-4;
/// The decoded output's tolerance, relative to its largest value (scripts/ultralytics_weights.py).
const REL_TOL: f64 = 1e-6;

/// The tiny model as translated, with one more output: the raw head output (the head's
/// `boxes` and `scores` layers concatenated on the channel axis, as Ultralytics' `preds`).
fn tiny_net() -> Network {
    let file = root().join("tests/data/ultralytics_weights_tiny.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let doc = Document::parse(&file.display().to_string(), &text).unwrap();
    let opts = Options {
        name: "ultralytics_weights_tiny".into(),
        scale: None,
        nc: None,
        input: Some((32, 32)),
    };
    let m = ultralytics::translate(&doc, &opts).unwrap_or_else(|e| panic!("{e}"));
    // The head is the last Ultralytics layer (12), and the translation's single output.
    let (before, after) = m.text.split_once("\noutputs: m12\n").expect("outputs: m12");
    let text = format!(
        "{before}\n  - {{id: raw_head, op: concat, in: [m12.boxes, m12.scores], dim: 1}}\noutputs: [m12, raw_head]\n{after}"
    );
    let tdoc = Document::parse("translated.yaml", &text).unwrap();
    graph::build_network(&tdoc, &BuildOptions::default()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn tiny_bytes() -> Vec<u8> {
    std::fs::read(root().join("tests/data/ultralytics_weights_tiny.safetensors")).unwrap()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn shape(v: &Value) -> Vec<usize> {
    common::usizes(v)
}

fn max_abs(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .fold(0.0, f64::max)
}

/// Runs the tiny model on the stored input (`planned`: BN folded and activations fused, as
/// `archscope run` does; else every layer as written); returns the head's output and the raw
/// head output.
fn outputs(net: &Network, w: &Weights, planned: bool) -> (Tensor, Tensor) {
    let want = data_json("ultralytics_weights_tiny.json");
    let x = Tensor::new(shape(&want["input_shape"]), f32s(&want["input"]));
    let r = if planned {
        let plan = exec::plan(net, w);
        exec::run_planned(net, w, &plan, &[x], None).unwrap()
    } else {
        exec::run(net, w, &[x], None).unwrap()
    };
    (r.outputs[0].clone(), r.outputs[1].clone())
}

#[test]
fn ultralytics_state_dict_names_load_as_they_are() {
    let net = tiny_net();
    let want = data_json("ultralytics_weights_tiny.json");
    assert_eq!(want["names"], "ultralytics");
    // The file holds Ultralytics' names, e.g. the C3's second bottleneck and the depthwise
    // class branch of the current Detect head (the script lists every tensor it wrote).
    let names: Vec<&str> = want["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for n in [
        "model.4.m.1.cv2.conv.weight",
        "model.8.m.0.attn.qkv.conv.weight",
        "model.12.cv3.0.0.0.conv.weight",
        "model.12.cv2.1.2.bias",
        "model.12.dfl.conv.weight",
    ] {
        assert!(names.contains(&n), "{n} in the converted file");
    }
    // Every tensor of the file is read (none missing, none left over: load_safetensors refuses
    // either), into the layers of that shape.
    exec::load_safetensors(&net, &tiny_bytes(), "tiny.safetensors")
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn run_with_ultralytics_weights_reproduces_the_raw_head_output() {
    let net = tiny_net();
    let w = exec::load_safetensors(&net, &tiny_bytes(), "tiny.safetensors").unwrap();
    let want = data_json("ultralytics_weights_tiny.json");
    let raw = f32s(&want["raw"]);
    // 2 levels (4×4 and 2×2 at 32×32): 20 anchors; 4·4 DFL bins + 2 classes.
    assert_eq!(shape(&want["raw_shape"]), vec![1, 18, 20]);
    for planned in [false, true] {
        let (out, got_raw) = outputs(&net, &w, planned);
        assert_eq!(got_raw.shape, vec![1, 18, 20]);
        let e = max_abs(&got_raw.data, &raw);
        assert!(e <= TOL, "raw head output (planned {planned}): max |Δ| {e}");
        // The head's output: decoded boxes (xywh in input pixels) and sigmoid scores, as
        // Ultralytics' model(x) returns them; compared relatively (largest difference over the
        // largest value: pixel coordinates are not small numbers).
        assert_eq!(out.shape, shape(&want["decoded_shape"]));
        let decoded = f32s(&want["decoded"]);
        let top = decoded.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
        let e = max_abs(&out.data, &decoded);
        assert!(
            e <= REL_TOL * top,
            "head output (planned {planned}): max |Δ| {e} of {top}"
        );
    }
}

#[test]
fn a_weights_file_under_other_names_is_refused_naming_the_tensor() {
    // The first Conv's weight renamed to archscope's old layer path: the file no longer holds
    // `model.0.conv.weight`, and the error says which tensor is missing.
    let bytes = tiny_bytes();
    let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + hlen]).unwrap();
    assert!(header.contains("\"model.0.conv.weight\""));
    let renamed = header.replace("\"model.0.conv.weight\"", "\"m0.weight\"");
    let mut file = (renamed.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(renamed.as_bytes());
    file.extend_from_slice(&bytes[8 + hlen..]);
    let e = match exec::load_safetensors(&tiny_net(), &file, "renamed.safetensors") {
        Ok(_) => panic!("a missing tensor is refused"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("model.0.conv.weight"), "{e}");
}

#[test]
fn the_scripted_full_size_check_passed() {
    // scripts/ultralytics_weights.py check wrote this on Ultralytics' own files (detectors,
    // segmenters and pose models at 640×640, classifiers at 224×224); a record that did not pass, or a raw
    // output compared over anything but every anchor (or every class), fails.
    let d = data_json("ultralytics_weights.json");
    let tol = d["tolerance"].as_f64().unwrap();
    assert_eq!(tol, TOL);
    assert_eq!(d["output_relative_tolerance"].as_f64().unwrap(), REL_TOL);
    let models = d["models"].as_array().unwrap();
    let names: Vec<&str> = models
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    for m in [
        "yolov8n",
        "yolov5n",
        "yolo11n",
        "yolov8n-seg",
        "yolo11n-seg",
        "yolov8n-cls",
        "yolo11n-cls",
        "yolov8n-pose",
        "yolo11n-pose",
    ] {
        assert!(names.contains(&m), "{m} checked");
    }
    for m in models {
        let what = m["model"].as_str().unwrap();
        assert_eq!(
            m["names"], "ultralytics",
            "{what}: read under Ultralytics' names"
        );
        let raw = m["raw_max_abs"].as_f64().unwrap();
        let out = m["output_max_rel"].as_f64().unwrap();
        assert!(raw <= tol, "{what}: raw head output {raw}");
        assert!(out <= REL_TOL, "{what}: model output {out} relative");
        match m["task"].as_str().unwrap() {
            "classify" => assert_eq!(m["raw_shape"], serde_json::json!([1, 1000]), "{what}"),
            task => {
                // 4·16 DFL bins + 80 classes (+ 32 mask coefficients), or 4·16 + nc + 17 key
                // points × 3 (the key-point branches before kpts_decode; nc from the decoded
                // output's 4 + nc + 51 rows: yolov8-pose.yaml has 1 class, yolo11-pose.yaml
                // 80), every anchor at 640.
                let rows = match task {
                    "segment" => 176,
                    "pose" => {
                        let out_rows = m["output_shape"][1].as_u64().unwrap();
                        64 + (out_rows - 4 - 51) + 51
                    }
                    _ => 144,
                };
                assert_eq!(m["raw_shape"], serde_json::json!([1, rows, 8400]), "{what}");
            }
        }
        if m["task"] == "segment" {
            let p = m["proto_max_abs"].as_f64().unwrap();
            assert!(p <= tol, "{what}: proto {p}");
        }
        assert_eq!(m["pass"], true, "{what}");
    }
}
