//! Ultralytics detectors exported to ONNX by Ultralytics' own exporter
//! (`model.export(format="onnx", opset=17)`, which fuses every Conv+BatchNorm), read by the ONNX
//! reader. The files are exports of this repository's own model files in Ultralytics' format
//! (tests/data/ultralytics/v8_like.yaml at scale n, tests/data/ultralytics_weights_tiny.yaml),
//! written by `scripts/ultralytics_onnx.py --fixtures`; the figures they must give are what
//! Ultralytics itself reports for the exported (fused) model: `model.info()`'s parameters and
//! thop's MACs (ultralytics-thop, as `get_flops` runs it). The full-size check on Ultralytics'
//! own yolov8n (with and without weights, run against onnxruntime) is scripted
//! (tests/data/ultralytics_weights_onnx.json), its verdicts checked below.
//!
//! The box decoding the exporter traces (dist2bbox: Slice, Sub and Add with the anchor-point
//! constant, Div by 2, Mul by the stride constant) is read as one `dist2bbox` layer; the files
//! "cut before decoding" end at the head's `cat(DFL distances, sigmoid scores)`.

use crate::common::read_onnx as read;
use crate::common::{data_json, record, usizes};
use archscope::onnx;
use archscope::tensor::Tensor;
use archscope::{analyze, exec, BuildOptions, Dtype, Network};

fn figures(net: &Network) -> (u64, u64) {
    let a = analyze(net, Dtype::F32).unwrap();
    (a.totals.params, a.totals.macs)
}

#[test]
fn graph_only_v8_like_n_gives_ultralytics_parameters_and_macs() {
    let d = data_json("ultralytics_weights_onnx.json");
    let want = &record(&d, "v8_like:n")["ultralytics"];
    assert_eq!(want["imgsz"], 640);
    let name = "yolo_v8_like_n_predecode_graph.onnx";
    let (net, imp) =
        onnx::build(name, &read(name), &BuildOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!imp.has_weights, "a graph-only export");
    let (params, macs) = figures(&net);
    // Ultralytics' fused model: 2,927,500 parameters; thop 3,920,512,000 MACs at 640 (7.8 GFLOPs).
    assert_eq!(params, want["parameters"].as_u64().unwrap(), "parameters");
    assert_eq!(macs, want["thop_macs"].as_u64().unwrap(), "MACs");
}

#[test]
fn tiny_export_with_weights_runs_as_onnxruntime() {
    let d = data_json("ultralytics_weights_onnx_tiny.json");
    let shape = usizes(&d["input_shape"]);
    let x: Vec<f32> = d["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let name = "yolo_tiny_predecode.onnx";
    let (net, imp) =
        onnx::build(name, &read(name), &BuildOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let (params, macs) = figures(&net);
    let want = &d["ultralytics_fused"];
    assert_eq!(want["imgsz"], 32);
    assert_eq!(params, want["parameters"].as_u64().unwrap(), "parameters");
    assert_eq!(macs, want["thop_macs"].as_u64().unwrap(), "MACs");
    let w = onnx::weights(&net, &imp)
        .unwrap()
        .expect("the file holds its weights");
    let r = &d["onnxruntime"][name];
    let expect: Vec<f64> = r["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    // Both executor paths: every layer as written, and the plan `archscope run` follows.
    let plan = exec::plan(&net, &w);
    for planned in [false, true] {
        let input = Tensor::new(shape.clone(), x.clone());
        let out = if planned {
            exec::run_planned(&net, &w, &plan, &[input], None).unwrap()
        } else {
            exec::run(&net, &w, &[input], None).unwrap()
        };
        let got = &out.outputs[0];
        // 2 levels at 32×32 (4×4 and 2×2 cells): 20 anchors; 4 distances + 2 class scores.
        assert_eq!(got.shape, usizes(&r["shape"]));
        assert_eq!(got.shape, vec![1, 6, 20]);
        for (k, (g, e)) in got.data.iter().zip(&expect).enumerate() {
            assert!(
                (f64::from(*g) - e).abs() <= 1e-4,
                "output {k} (planned {planned}): archscope {g}, onnxruntime {e}"
            );
        }
    }
}

#[test]
fn tiny_whole_export_reads_the_box_decoding_as_dist2bbox() {
    // The whole export, decoding included: the traced Slice/Sub/Add/Div/Concat/Mul chain is one
    // `dist2bbox` layer whose levels come from the anchor and stride constants (4×4 cells at
    // stride 8, 2×2 at 16 for a 32×32 input), and the output equals onnxruntime's.
    let d = data_json("ultralytics_weights_onnx_tiny.json");
    let name = "yolo_tiny.onnx";
    let (net, imp) =
        onnx::build(name, &read(name), &BuildOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let decode: Vec<_> = net
        .nodes
        .iter()
        .filter(|n| n.layer.op() == "dist2bbox")
        .collect();
    assert_eq!(decode.len(), 1, "one dist2bbox layer");
    assert_eq!(decode[0].layer.label(), "dist2bbox /8,16");
    let (params, macs) = figures(&net);
    assert_eq!(
        params,
        d["ultralytics_fused"]["parameters"].as_u64().unwrap()
    );
    assert_eq!(macs, d["ultralytics_fused"]["thop_macs"].as_u64().unwrap());
    let w = onnx::weights(&net, &imp).unwrap().expect("weights");
    let x: Vec<f32> = d["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let input = Tensor::new(usizes(&d["input_shape"]), x);
    let out = exec::run(&net, &w, &[input], None).unwrap();
    let r = &d["onnxruntime"][name];
    let expect: Vec<f64> = r["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(out.outputs[0].shape, usizes(&r["shape"]));
    // Boxes in input pixels: compared relatively to the largest value (1e-6, a few ulps).
    let top = expect.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (k, (g, e)) in out.outputs[0].data.iter().zip(&expect).enumerate() {
        assert!(
            (f64::from(*g) - e).abs() <= 1e-6 * top,
            "output {k}: archscope {g}, onnxruntime {e}"
        );
    }
}

#[test]
fn the_scripted_yolov8n_check_passed() {
    // scripts/ultralytics_onnx.py on Ultralytics' own yolov8n (seeded, random BN statistics,
    // exported at 640 with its weights): cut before the decoding, archscope's parameters and
    // MACs equal Ultralytics' (3,151,904; 4,371,993,600) and `run` matches onnxruntime.
    let d = data_json("ultralytics_weights_onnx.json");
    assert_eq!(d["tolerance"].as_f64().unwrap(), 1e-4);
    for model in ["yolov8n.yaml", "v8_like:n"] {
        let r = record(&d, model);
        let p = &r["pass"];
        for k in [
            "archscope_with_weights",
            "archscope_graph_only",
            "run_whole",
            "archscope_cut_before_decoding",
            "archscope_cut_before_decoding_graph_only",
            "run_raw_head",
            "run_before_decoding",
        ] {
            assert_eq!(p[k], true, "{model}: {k}");
        }
        // With the weights in the file and graph only.
        for k in [
            "archscope_with_weights",
            "archscope_graph_only",
            "archscope_cut_before_decoding",
            "archscope_cut_before_decoding_graph_only",
        ] {
            let s = &r[k];
            assert_eq!(s["params"], r["ultralytics"]["parameters"], "{model}: {k}");
            assert_eq!(s["macs"], r["ultralytics"]["thop_macs"], "{model}: {k}");
        }
        for k in ["run_raw_head", "run_before_decoding"] {
            let e = r[k]["max_abs"].as_f64().unwrap();
            assert!(e <= 1e-4, "{model}: {k} {e}");
        }
        assert_eq!(r["run_raw_head"]["shape"][2], 8400, "{model}");
    }
}
