//! YOLO11-style detectors exported to ONNX by Ultralytics' own exporter, with C2PSA's attention
//! traced as `Mul(q, scale) → Transpose → MatMul(·, k) → Softmax → Transpose → MatMul(v, ·)`,
//! which the reader maps onto one `scaled_dot_product_attention` (src/onnx/patterns.rs). The
//! committed files are exports of this repository's own model files in Ultralytics' format,
//! written by `scripts/ultralytics_onnx.py --fixtures`:
//! tests/data/onnx/yolo_v11_like_n_predecode_graph.onnx (tests/data/ultralytics/v11_like.yaml
//! at scale n, 640×640, graph only, cut before the box decoding) and the tiny files
//! (tests/data/ultralytics_weights_tiny.yaml, with C2PSA, at 32×32 with weights; their outputs
//! against onnxruntime are tests/onnx_yolo.rs). The figures they must give are Ultralytics' own
//! for the fused model (`model.info()`'s parameters, thop's MACs). The check on Ultralytics' own
//! yolo11n (with and without weights, run against onnxruntime) is scripted: its verdicts are in
//! tests/data/ultralytics_onnx_v11.json, checked below; the yolo11n file itself is not
//! committed (Ultralytics' YAML is AGPL-3.0).

use crate::common::read_onnx as read;
use crate::common::{data_json, record};
use archscope::onnx;
use archscope::{analyze, BuildOptions, Dtype, Network};

fn attention_layers(net: &Network) -> usize {
    net.nodes
        .iter()
        .filter(|n| n.layer.op() == "scaled_dot_product_attention")
        .count()
}

#[test]
fn graph_only_v11_like_n_gives_ultralytics_parameters_and_macs() {
    let d = data_json("ultralytics_onnx_v11.json");
    let want = &record(&d, "v11_like:n")["ultralytics"];
    assert_eq!(want["imgsz"], 640);
    let name = "yolo_v11_like_n_predecode_graph.onnx";
    let (net, imp) =
        onnx::build(name, &read(name), &BuildOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!imp.has_weights, "a graph-only export");
    // C2PSA [1024] at depth 0.5 × 2 repeats: one PSABlock, one attention.
    assert_eq!(attention_layers(&net), 1);
    let a = analyze(&net, Dtype::F32).unwrap();
    // Ultralytics' fused model: 2,584,102 parameters; thop 3,190,835,200 MACs at 640 (6.4 GFLOPs).
    assert_eq!(
        a.totals.params,
        want["parameters"].as_u64().unwrap(),
        "parameters"
    );
    assert_eq!(a.totals.macs, want["thop_macs"].as_u64().unwrap(), "MACs");
    assert_eq!(a.totals.params, 2_584_102);
    // The attention at 20×20 (400 tokens), 2 heads of key size 32 and value size 64: thop
    // counts its two matmuls, heads·N²·(kd + hd) = 2·400²·(32 + 64) = 30,720,000 MACs.
    let att: Vec<_> = a
        .layers
        .iter()
        .filter(|l| l.op == "scaled_dot_product_attention")
        .collect();
    assert_eq!(att[0].macs, 2 * 400 * 400 * (32 + 64));
}

#[test]
fn the_tiny_export_reads_its_c2psa_as_attention() {
    // ultralytics_weights_tiny.yaml's C2PSA [24]: one PSABlock of 12 hidden channels, 0 heads
    // by 12 // 64 in Ultralytics' rule, so 1 (max(1, …)) of key size 6 and value size 12, on
    // the 2×2 map of a 32×32 input.
    let d = data_json("ultralytics_weights_onnx_tiny.json");
    for name in ["yolo_tiny.onnx", "yolo_tiny_predecode.onnx"] {
        let (net, imp) = onnx::build(name, &read(name), &BuildOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(imp.has_weights);
        assert_eq!(attention_layers(&net), 1, "{name}");
        let a = analyze(&net, Dtype::F32).unwrap();
        assert_eq!(
            a.totals.params,
            d["ultralytics_fused"]["parameters"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            a.totals.macs,
            d["ultralytics_fused"]["thop_macs"].as_u64().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn the_scripted_yolo11n_check_passed() {
    // scripts/ultralytics_onnx.py on Ultralytics' own yolo11n (seeded, random BN statistics,
    // exported at 640 with its weights) and on v11_like at scale n: with the weights in the
    // file and graph only, whole and cut before the decoding, archscope's parameters and MACs
    // equal Ultralytics' (yolo11n: 2,616,248; 3,271,251,200), and `run` matches onnxruntime.
    let d = data_json("ultralytics_onnx_v11.json");
    assert_eq!(d["tolerance"].as_f64().unwrap(), 1e-4);
    let y = record(&d, "yolo11n.yaml");
    assert_eq!(y["ultralytics"]["parameters"], 2_616_248);
    assert_eq!(y["ultralytics"]["thop_macs"], 3_271_251_200u64);
    // The differences docs/ONNX.md and docs/ULTRALYTICS.md quote for yolo11n.
    let f = |k: &str, m: &str| y[k][m].as_f64().unwrap();
    assert!(f("run_raw_head", "max_abs") < 9.6e-7);
    assert!(f("run_before_decoding", "max_abs") < 3.4e-6);
    assert!(f("run_whole", "max_rel") < 2e-7 && f("run_whole", "max_abs") < 1.3e-4);
    for model in ["yolo11n.yaml", "v11_like:n"] {
        let r = record(&d, model);
        for k in [
            "archscope_with_weights",
            "archscope_graph_only",
            "archscope_cut_before_decoding",
            "archscope_cut_before_decoding_graph_only",
        ] {
            assert_eq!(r["pass"][k], true, "{model}: {k}");
            let s = &r[k];
            assert_eq!(s["params"], r["ultralytics"]["parameters"], "{model}: {k}");
            assert_eq!(s["macs"], r["ultralytics"]["thop_macs"], "{model}: {k}");
        }
        for k in ["run_raw_head", "run_before_decoding"] {
            assert_eq!(r["pass"][k], true, "{model}: {k}");
            let e = r[k]["max_abs"].as_f64().unwrap();
            assert!(e <= 1e-4, "{model}: {k} {e}");
        }
        // Decoded boxes in pixels (up to ~640): relatively, 1e-6 of the largest value.
        assert_eq!(r["pass"]["run_whole"], true, "{model}");
        assert!(
            r["run_whole"]["max_rel"].as_f64().unwrap() <= 1e-6,
            "{model}"
        );
        assert_eq!(r["run_raw_head"]["shape"][2], 8400, "{model}");
    }
}
