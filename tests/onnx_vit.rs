//! Attention read from ONNX (src/onnx/attention.rs): torchvision's VisionTransformer exported by
//! both of torch.onnx.export's exporters (scripts/onnx_vit.py): a tiny ViT (image 32, patch 8,
//! 2 layers, hidden 32, 2 heads) with its weights (TorchScript and dynamo exporters) and graph
//! only (TorchScript) against PyTorch's counts (tests/data/onnx_vit_reference.json), against the
//! same model written as the zoo writes ViT-B/16 (tests/data/onnx/vit_tiny.yaml) layer by layer
//! (kind, output shape, parameters, MACs, receptive field, `check`), and `run` against
//! onnxruntime; a changed attention pattern is a located error. The full-size vit_b_16 exports
//! (330 MB with weights, 428 KB graph-only: not committed) are checked when the script's output
//! directory holds them ($ARCHSCOPE_ONNX_DIR, default /tmp/archscope_onnx).

use crate::common::refused_onnx;
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::common::{checked, data_json, read_saved_npy, root, u64s};
use crate::common::{import_onnx as import, read_onnx as read};
use archscope::onnx::{self, proto};
use archscope::{analyze, exec, Analysis, BuildOptions, Dtype, Network};

const FILES: [&str; 3] = [
    "vit_tiny.onnx",
    "vit_tiny_graph.onnx",
    "vit_tiny_dynamo.onnx",
];

fn tiny_yaml() -> Network {
    let p = root().join("tests/data/onnx/vit_tiny.yaml");
    let text = std::fs::read_to_string(&p).expect("vit_tiny.yaml");
    Network::from_yaml("vit_tiny.yaml", &text, &BuildOptions::default()).expect("builds")
}

/// Per layer with parameters or MACs: kind, output shapes, parameters, MACs, receptive field,
/// sorted (the two sides name layers differently).
fn rows(a: &Analysis) -> Vec<String> {
    let mut v = crate::common::weighted_rows(a);
    v.sort();
    v
}

/// How many layers of each kind, dropouts (which the exports leave out) not counted.
fn kinds(a: &Analysis) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for l in &a.layers {
        if l.op != "dropout" {
            *m.entry(l.op).or_insert(0) += 1;
        }
    }
    m
}

#[test]
fn tiny_vit_exports_give_pytorch_counts_and_the_yaml_layers() {
    let reference = data_json("onnx_vit_reference.json");
    let yaml = analyze(&tiny_yaml(), Dtype::F32).expect("analyses");
    // PyTorch's count of the tiny model (the script): conv 3·64·32 + 32, class token 32,
    // position embedding 17·32, per layer 2 norms of 64, attention 3·32·32 + 96 + 32·32 + 32,
    // MLP 32·64 + 64 + 64·32 + 32; final norm 64, head 330: 24,234.
    assert_eq!(yaml.totals.params, 24_234);
    for f in FILES {
        let r = &reference[f.trim_end_matches(".onnx")];
        let (net, _) = import(f, &read(f));
        let a = analyze(&net, Dtype::F32).expect("analyses");
        assert_eq!(
            a.totals.params,
            r["params"].as_u64().expect("params"),
            "{f}"
        );
        assert_eq!(
            a.totals.buffers,
            r["buffers"].as_u64().expect("buffers"),
            "{f}"
        );
        assert_eq!(
            (a.totals.params, a.totals.macs, a.totals.flops),
            (yaml.totals.params, yaml.totals.macs, yaml.totals.flops),
            "{f}"
        );
        assert_eq!(rows(&a), rows(&yaml), "{f}");
        let k = kinds(&a);
        assert_eq!(k, kinds(&yaml), "{f}");
        // The layer kinds the issue names: attention, norms, MLP, class token, position embedding.
        assert_eq!(k["multi_head_attention"], 2, "{f}");
        assert_eq!(k["layernorm"], 5, "{f}");
        assert_eq!(k["linear"], 5, "{f}");
        assert_eq!(k["parameter"], 2, "{f}");
        assert_eq!(k["expand"], 1, "{f}");
        let attn: Vec<String> = a
            .layers
            .iter()
            .filter(|l| l.op == "multi_head_attention")
            .map(|l| l.label.clone())
            .collect();
        assert_eq!(
            attn,
            ["attention 32, 2 heads×16", "attention 32, 2 heads×16"],
            "{f}"
        );
    }
}

#[test]
fn tiny_vit_check_agrees_as_the_yaml_does() {
    let yaml = checked(&tiny_yaml());
    let row = |r: &archscope::check::CheckRow| {
        format!(
            "{} {} {} {}",
            r.shape.measured, r.params.measured, r.macs.measured, r.rf.measured
        )
    };
    let mut want: Vec<String> = yaml.rows.iter().map(row).collect();
    want.sort();
    want.dedup();
    for f in ["vit_tiny.onnx", "vit_tiny_dynamo.onnx"] {
        let (net, _) = import(f, &read(f));
        let report = checked(&net);
        // Every row of the import is one the YAML model measures too (the import has no
        // dropouts, so fewer rows).
        let mut got: Vec<String> = report.rows.iter().map(row).collect();
        got.sort();
        got.dedup();
        for g in &got {
            assert!(
                want.contains(g),
                "{f}: {g} is not a row of the YAML model's check"
            );
        }
        assert!(report.rows.len() >= 20, "{f}: {} rows", report.rows.len());
    }
}

#[test]
fn tiny_vit_runs_as_onnxruntime() {
    let reference = data_json("onnx_vit_reference.json");
    for f in ["vit_tiny.onnx", "vit_tiny_dynamo.onnx"] {
        let r = &reference[f.trim_end_matches(".onnx")];
        let shape: Vec<usize> = u64s(&r["input_shape"])
            .iter()
            .map(|&d| d as usize)
            .collect();
        let (net, imp) = import(f, &read(f));
        let w = onnx::weights(&net, &imp)
            .expect("weights")
            .expect("the file holds its weights");
        let n: usize = shape.iter().product();
        // The script's input: x[i] = sin(0.1 i).
        let x: Vec<f32> = (0..n).map(|i| (0.1 * i as f64).sin() as f32).collect();
        let out =
            exec::run(&net, &w, &[archscope::tensor::Tensor::new(shape, x)], None).expect("runs");
        let want: Vec<f64> = r["onnxruntime_output"]
            .as_array()
            .expect("output")
            .iter()
            .map(|v| v.as_f64().expect("number"))
            .collect();
        let got = &out.outputs[0];
        assert_eq!(got.shape, vec![1, 10], "{f}");
        crate::common::assert_onnxruntime_output(f, &got.data, &want);
    }
}

/// The tiny graph-only file, changed by `f`, imported: the error's text.
fn edited(file: &str, f: impl FnOnce(&mut proto::ModelProto)) -> String {
    let mut m = proto::decode_model(file, &read(file)).expect("decodes");
    f(&mut m);
    let bytes = proto::encode_model(&m);
    refused_onnx("edited.onnx", &bytes).to_string()
}

const SCOPE: &str = "in the attention module `encoder.layers.encoder_layer_0.self_attention` (read as one multi_head_attention)";

fn first_softmax(m: &mut proto::ModelProto) -> &mut proto::NodeProto {
    m.graph
        .as_mut()
        .expect("graph")
        .node
        .iter_mut()
        .find(|n| n.op_type.as_deref() == Some("Softmax"))
        .expect("a Softmax")
}

#[test]
fn a_softmax_over_another_axis_is_a_located_error() {
    let e = edited("vit_tiny_graph.onnx", |m| {
        let s = first_softmax(m);
        let a = s
            .attribute
            .iter_mut()
            .find(|a| a.name.as_deref() == Some("axis"))
            .expect("axis");
        a.i = Some(1);
    });
    assert!(e.contains(SCOPE), "{e}");
    assert!(e.contains("Softmax over axis 1"), "{e}");
    assert!(e.contains("(Softmax)"), "{e}");
    assert!(
        e.contains("help: archscope reads torch.nn.MultiheadAttention"),
        "{e}"
    );
}

#[test]
fn an_op_outside_the_pattern_is_a_located_error() {
    let e = edited("vit_tiny_graph.onnx", |m| {
        first_softmax(m).op_type = Some("Relu".into());
    });
    assert!(e.contains(SCOPE), "{e}");
    assert!(
        e.contains("`Relu` of 1 computed input(s): not part of the attention pattern"),
        "{e}"
    );
}

#[test]
fn another_scale_is_a_located_error() {
    // The dynamo exporter scales q and kᵀ each by √(1/√d) = 0.5 (d = 16), one shared scalar;
    // 0.6 makes the scores' scale 0.36.
    let e = edited("vit_tiny_dynamo.onnx", |m| {
        let g = m.graph.as_mut().expect("graph");
        let mul = g
            .node
            .iter()
            .find(|n| n.op_type.as_deref() == Some("Mul"))
            .expect("a Mul")
            .input[1]
            .clone();
        let t = g
            .initializer
            .iter_mut()
            .find(|t| t.name.as_deref() == Some(mul.as_str()))
            .expect("the scale");
        assert_eq!(proto::tensor_to_f32(t).expect("data"), [0.5]);
        t.raw_data = Some(0.6f32.to_le_bytes().to_vec());
        t.float_data.clear();
    });
    assert!(e.contains(SCOPE), "{e}");
    assert!(e.contains("the scores are scaled by 0.36"), "{e}");
    assert!(e.contains("not 1/√16 = 0.25"), "{e}");
}

#[test]
fn a_second_input_is_a_located_error() {
    // softmax·V reading the position-embedded tokens (`add`, outside the module) instead of V:
    // a second computed input, as a cross-attention's keys or values would be.
    let e = edited("vit_tiny_dynamo.onnx", |m| {
        let g = m.graph.as_mut().expect("graph");
        let n = g
            .node
            .iter_mut()
            .find(|n| n.name.as_deref() == Some("node_scaled_dot_product_attention"))
            .expect("softmax·V of the first block");
        n.input[1] = "add".into();
    });
    assert!(e.contains(SCOPE), "{e}");
    assert!(
        e.contains("a second computed input `add` (the module reads `layer_norm` already)"),
        "{e}"
    );
}

#[test]
fn a_bias_on_some_projections_only_is_a_located_error() {
    // The first output projection's Gemm without its bias (C): the in-projection keeps its own.
    let e = edited("vit_tiny_dynamo.onnx", |m| {
        let g = m.graph.as_mut().expect("graph");
        let n = g
            .node
            .iter_mut()
            .find(|n| {
                n.op_type.as_deref() == Some("Gemm")
                    && n.input
                        .get(1)
                        .is_some_and(|w| w.ends_with("self_attention.out_proj.weight"))
            })
            .expect("an output projection");
        n.input.truncate(2);
    });
    assert!(e.contains(SCOPE), "{e}");
    assert!(
        e.contains("some projections have a bias and some not"),
        "{e}"
    );
}

/// The script's output directory (330 MB files, not committed).
fn big_dir() -> PathBuf {
    std::env::var_os("ARCHSCOPE_ONNX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/archscope_onnx"))
}

/// vit_b_16 exported by both exporters with weights and by the TorchScript one graph-only:
/// PyTorch's 86,567,656 parameters, the zoo model's MACs and layers, and (with weights) `run`
/// against onnxruntime's output on the script's input. Checked only where the file exists
/// (scripts/onnx_vit.py writes them; each test reads one file); the committed tiny files cover
/// the same structure.
fn vit_b_16_export(f: &str) {
    let dir = big_dir();
    let reference = data_json("onnx_vit_reference.json");
    assert_eq!(reference["vit_b_16"]["params"].as_u64(), Some(86_567_656));
    let p = dir.join(format!("{f}.onnx"));
    let Ok(bytes) = std::fs::read(&p) else {
        eprintln!(
            "{}: not there, skipped (scripts/onnx_vit.py writes it)",
            p.display()
        );
        return;
    };
    let zoo = crate::common::zoo_analysis("vit_b_16");
    assert_eq!(zoo.totals.params, 86_567_656);
    let (net, imp) = import(f, &bytes);
    drop(bytes);
    let a = analyze(&net, Dtype::F32).expect("analyses");
    assert_eq!(a.totals.params, 86_567_656, "{f}");
    assert_eq!(a.totals.buffers, 0, "{f}");
    assert_eq!(
        (a.totals.macs, a.totals.flops),
        (zoo.totals.macs, zoo.totals.flops),
        "{f}"
    );
    assert_eq!(rows(&a), rows(&zoo), "{f}");
    assert_eq!(kinds(&a), kinds(&zoo), "{f}");
    if f == "vit_b_16_graph" {
        assert!(!imp.has_weights);
        return;
    }
    let w = onnx::weights(&net, &imp)
        .expect("weights")
        .expect("weights held");
    let (xs, x) = read_saved_npy(&dir.join("vit_b_16_input.npy"));
    let (_, want) = read_saved_npy(&dir.join(format!("{f}_ort.npy")));
    let out = exec::run(&net, &w, &[archscope::tensor::Tensor::new(xs, x)], None).expect("runs");
    let worst = out.outputs[0]
        .data
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-4,
        "{f}: archscope and onnxruntime differ by {worst}"
    );
}

#[test]
fn vit_b_16_graph_only_when_present() {
    vit_b_16_export("vit_b_16_graph");
}

#[test]
fn vit_b_16_torchscript_with_weights_when_present() {
    vit_b_16_export("vit_b_16");
}

#[test]
fn vit_b_16_dynamo_with_weights_when_present() {
    vit_b_16_export("vit_b_16_dynamo");
}

/// `archscope export` then the reader: the zoo's three ViTs (graph only) read back with the same
/// layers — kind, output shape, parameters, MACs, receptive field — and totals.
#[test]
fn zoo_vits_round_trip_layer_by_layer() {
    use archscope::onnx::export::{export, ExportOptions};
    for name in ["vit_b_16", "vit_b_32", "vit_l_16"] {
        let net = crate::common::zoo_net(name);
        let a = crate::common::analysis(&net);
        let m = export(&net, None, ExportOptions::default()).expect("exports");
        let bytes = proto::encode_model(&m);
        let (back, _) = import(&format!("{name}.onnx"), &bytes);
        let b = crate::common::analysis(&back);
        assert_eq!(
            (
                b.totals.params,
                b.totals.buffers,
                b.totals.macs,
                b.totals.flops
            ),
            (
                a.totals.params,
                a.totals.buffers,
                a.totals.macs,
                a.totals.flops
            ),
            "{name}"
        );
        assert_eq!(rows(&b), rows(&a), "{name}");
        assert_eq!(kinds(&b), kinds(&a), "{name}");
    }
}

/// The tiny ViT YAML exported with seeded weights and read back runs to the same output as the
/// YAML model with those weights (the weights travel in PyTorch's layout through the packed
/// projection and back).
#[test]
fn tiny_vit_round_trip_runs_the_same() {
    use archscope::onnx::export::{export, ExportOptions};
    let net = tiny_yaml();
    let w = exec::init_weights(&net, 3).expect("weights");
    let m = export(&net, Some(&w), ExportOptions::default()).expect("exports");
    let (back, imp) = import("vit_tiny_export.onnx", &proto::encode_model(&m));
    let wb = onnx::weights(&back, &imp).expect("weights").expect("held");
    let x: Vec<f32> = (0..3 * 32 * 32)
        .map(|i| (0.1 * i as f64).sin() as f32)
        .collect();
    let input = || archscope::tensor::Tensor::new(vec![1, 3, 32, 32], x.clone());
    let ya = exec::run(&net, &w, &[input()], None).expect("runs");
    let yb = exec::run(&back, &wb, &[input()], None).expect("runs");
    let worst = ya.outputs[0]
        .data
        .iter()
        .zip(&yb.outputs[0].data)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-5, "{worst}");
    assert!(ya.outputs[0].data.iter().any(|v| v.abs() > 1e-3));
}

/// The seeded mutation fuzz of tests/onnx_fuzz.rs (bytes and structure; no panic, every
/// refusal located with a help line) over the tiny ViT files, whose attention modules go
/// through src/onnx/attention.rs: 700 mutants of each.
#[test]
fn mutants_of_the_tiny_vits() {
    for (f, salt) in [("vit_tiny_dynamo.onnx", 11), ("vit_tiny_graph.onnx", 12)] {
        let (n, built) = crate::onnx_fuzz::fuzz_seed(f, salt);
        assert_eq!(n, 700);
        assert!(built < n, "{f}: {built} of {n}");
    }
}
