//! GPT-2 from ONNX (src/onnx/gpt.rs): transformers' GPT2LMHeadModel in a tiny configuration
//! (vocabulary 100, 16 positions, width 32, 2 layers of 2 heads; `scripts/onnx_gpt.py`,
//! figures in tests/data/onnx_gpt_reference.json) exported by the TorchScript exporter with and
//! without weights and by the dynamo exporter with weights reads back with PyTorch's parameter
//! count (the tied head counted once), FlopCounterMode's MACs, the layers of the zoo's gpt2.yaml
//! at the same sizes, and `run` equal to onnxruntime's logits within 1e-4; the dynamo
//! exporter's graph-only file is refused with what it lacks and the two ways out; a mask that
//! is not causal is refused at its node; the token ids become a token input of the
//! vocabulary.

use crate::common::{data_json, root};
use crate::common::{import_onnx as import, read_onnx as read};
use archscope::onnx::{self, proto};
use archscope::tensor::Tensor;
use archscope::{analyze, exec, Analysis, BuildOptions, Dtype, Network};

/// The zoo's gpt2.yaml at the tiny configuration (its text with the sizes replaced).
fn tiny_zoo_yaml() -> String {
    let text = std::fs::read_to_string(root().join("models/gpt2.yaml")).expect("gpt2.yaml");
    let swaps = [
        (
            "ids: {tokens: 1024, vocab: 50257}",
            "ids: {tokens: 16, vocab: 100}",
        ),
        (
            "params: {vocab: 50257, positions: 1024, width: 768, heads: 12,",
            "params: {vocab: 100, positions: 16, width: 32, heads: 2,",
        ),
        ("use: block, repeat: 12}", "use: block, repeat: 2}"),
    ];
    let mut t = text.clone();
    for (a, b) in swaps {
        assert_eq!(t.matches(a).count(), 1, "{a}");
        t = t.replace(a, b);
    }
    t
}

fn tiny_zoo() -> Network {
    Network::from_yaml("gpt_tiny.yaml", &tiny_zoo_yaml(), &BuildOptions::default()).expect("builds")
}

/// Rows (op, outputs, parameters, MACs, field) of the layers with parameters or MACs, in order.
fn rows(a: &Analysis) -> Vec<String> {
    crate::common::weighted_rows(a)
}

fn ids() -> Vec<f32> {
    let r = data_json("onnx_gpt_reference.json");
    r["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as f32)
        .collect()
}

fn logits(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn tiny_gpt2_exports_give_pytorch_counts_and_the_zoo_layers() {
    let r = data_json("onnx_gpt_reference.json");
    let zoo = analyze(&tiny_zoo(), Dtype::F32).expect("analyses");
    // PyTorch's count (the script): wte 100·32, wpe 16·32, per layer 2 norms of 64, c_attn
    // 32·96 + 96, c_proj 32·32 + 32, c_fc 32·128 + 128, c_proj 128·32 + 32, ln_f 64; the
    // head is wte: 3,200 + 512 + 2·12,704 + 64 = 29,184.
    assert_eq!(r["params"], 29_184);
    assert_eq!(zoo.totals.params, 29_184);
    // FlopCounterMode's MACs: per layer the four Conv1D, 16·(32·96 + 32·32 + 32·128 + 128·32)
    // = 196,608, and the attention, Q·Kᵀ and ·V of 2 heads·16·16·16 each = 16,384; the head
    // 16·32·100: 2·(196,608 + 16,384) + 51,200 = 477,184.
    assert_eq!(r["macs"], 477_184);
    assert_eq!(zoo.totals.macs, 477_184);
    let zoo_rows = rows(&zoo);
    for f in [
        "gpt_tiny.onnx",
        "gpt_tiny_dynamo.onnx",
        "gpt_tiny_graph.onnx",
    ] {
        let (net, _) = import(f, &read(f));
        let a = analyze(&net, Dtype::F32).expect("analyses");
        assert_eq!(a.totals.macs, 477_184, "{f}");
        let count = |op: &str| net.nodes.iter().filter(|n| n.layer.op() == op).count();
        assert_eq!(count("scaled_dot_product_attention"), 2, "{f}");
        // Each read as causal (the exporters' mask: −∞ or the lowest f32 above the diagonal).
        assert!(
            net.nodes
                .iter()
                .filter(|n| n.layer.op() == "scaled_dot_product_attention")
                .all(|n| n.layer.label().contains(", causal")),
            "{f}"
        );
        assert_eq!(count("gelu"), 2, "{f}");
        assert_eq!(count("layernorm"), 5, "{f}");
        let got = rows(&a);
        match f {
            "gpt_tiny.onnx" => {
                // The tied head: one table, counted once.
                assert_eq!(a.totals.params, 29_184, "{f}");
                assert_eq!(got, zoo_rows, "{f}: layer by layer");
                assert!(net.nodes.iter().any(|n| n.layer.tied().is_some()), "{f}");
            }
            "gpt_tiny_dynamo.onnx" => {
                // The dynamo exporter folds wpe(arange(16)) into a 16×32 constant: a
                // `parameter` of the same 512 numbers (at 16 tokens = the 16 positions).
                assert_eq!(a.totals.params, 29_184, "{f}");
                let mut want = zoo_rows.clone();
                want[1] = want[1].replacen("embedding", "parameter", 1);
                let got_fixed: Vec<String> = got.clone();
                assert_eq!(got_fixed.len(), want.len(), "{f}");
                for (k, (g, w)) in got_fixed.iter().zip(&want).enumerate() {
                    if k == 1 {
                        assert!(
                            g.starts_with("parameter") && g.contains(" 512 0 "),
                            "{f}: {g}"
                        );
                    } else {
                        assert_eq!(g, w, "{f}: row {k}");
                    }
                }
            }
            _ => {
                // TorchScript's graph-only file: the head's wte.weight.T is an anonymous
                // graph input with no values, nothing ties it to wte: its 3,200 parameters
                // are counted again (docs/ONNX.md).
                assert_eq!(a.totals.params, 29_184 + 3_200, "{f}");
                assert!(net.nodes.iter().all(|n| n.layer.tied().is_none()), "{f}");
            }
        }
    }
}

#[test]
fn tiny_gpt2_runs_to_onnxruntime_logits() {
    let r = data_json("onnx_gpt_reference.json");
    let x = ids();
    for f in ["gpt_tiny.onnx", "gpt_tiny_dynamo.onnx"] {
        let (net, imp) = import(f, &read(f));
        let w = onnx::weights(&net, &imp)
            .expect("weights fit")
            .expect("the file holds them");
        let out = exec::run(&net, &w, &[Tensor::new(vec![1, 16], x.clone())], None).expect("runs");
        let y = &out.outputs[0];
        assert_eq!(y.shape, vec![1, 16, 100], "{f}");
        let ort = logits(&r["files"][f]["ort_logits"]);
        let d = worst(&y.data, &ort);
        assert!(d <= 1e-4, "{f}: {d}");
        let torch = logits(&r["torch_logits"]);
        assert!(worst(&y.data, &torch) <= 1e-4, "{f}");
    }
}

#[test]
fn the_token_input_is_read_as_tokens_of_the_vocabulary() {
    let (_, imp) = import("gpt_tiny.onnx", &read("gpt_tiny.onnx"));
    assert!(
        imp.yaml.contains("input_ids: {tokens: 16, vocab: 100}"),
        "{}",
        imp.yaml
    );
    let (net, _) = import("gpt_tiny.onnx", &read("gpt_tiny.onnx"));
    // A position embedding of the 16 positions and the token embedding.
    let emb: Vec<String> = net
        .nodes
        .iter()
        .filter(|n| n.layer.op() == "embedding")
        .map(|n| n.layer.label())
        .collect();
    assert_eq!(emb, ["embedding 100×32", "position embedding 16×32"]);
}

#[test]
fn the_dynamo_graph_only_file_names_what_is_missing() {
    let r = data_json("onnx_gpt_reference.json");
    // torch writes no initializer in it: the weights and the shape constants are undeclared.
    assert_eq!(r["files"]["gpt_tiny_dynamo_graph.onnx"]["initializers"], 0);
    let f = "gpt_tiny_dynamo_graph.onnx";
    let Err(e) = onnx::build(f, &read(f), &BuildOptions::default()) else {
        panic!("{f}: read, not refused");
    };
    let e = e.to_string();
    assert!(e.contains("input `val_6` is declared nowhere"), "{e}");
    assert!(e.contains("ONNX node #0 `node_view` (Reshape)"), "{e}");
    assert!(e.contains("export_params=True"), "{e}");
    assert!(e.contains("dynamo=False, export_params=False"), "{e}");
}

/// The tiny zoo model exported by `archscope export` with seeded weights, its first causal
/// mask constant changed by `edit`, read back.
fn export_with_mask(edit: impl Fn(&mut Vec<f32>)) -> Result<Network, String> {
    export_with_mask_weights(edit).map(|(n, _)| n)
}

/// [`export_with_mask`], with the weights read back from the file.
fn export_with_mask_weights(
    edit: impl Fn(&mut Vec<f32>),
) -> Result<(Network, exec::Weights), String> {
    use archscope::onnx::export::{export, ExportOptions};
    let net = tiny_zoo();
    let w = exec::init_weights(&net, 3).expect("weights");
    let mut m = export(&net, Some(&w), ExportOptions::default()).expect("exports");
    let g = m.graph.as_mut().expect("graph");
    let t = g
        .initializer
        .iter_mut()
        .find(|t| {
            t.name
                .as_deref()
                .is_some_and(|n| n.contains("h.0.attn.attention/causal"))
        })
        .expect("a causal mask constant");
    let mut v = proto::tensor_to_f32(t).expect("decodes");
    assert_eq!(v.len(), 16 * 16);
    edit(&mut v);
    t.raw_data = None;
    t.float_data = v;
    let bytes = proto::encode_model(&m);
    let (back, imp) = onnx::build("gpt_tiny_ours.onnx", &bytes, &BuildOptions::default())
        .map_err(|e| e.to_string())?;
    let wb = onnx::weights(&back, &imp)
        .map_err(|e| e.to_string())?
        .expect("the file holds them");
    Ok((back, wb))
}

#[test]
fn our_export_reads_back_and_a_changed_mask_is_refused_at_its_node() {
    // As written: −∞ above the diagonal (row 0 masks columns 1…15).
    let (back, wb) =
        export_with_mask_weights(|v| assert_eq!(v[1], f32::NEG_INFINITY)).expect("reads back");
    let net = tiny_zoo();
    let zoo = analyze(&net, Dtype::F32).unwrap();
    assert_eq!(rows(&analyze(&back, Dtype::F32).unwrap()), rows(&zoo));
    // With its exported weights (the tied head on wte's table), the logits of the original.
    let w = exec::init_weights(&net, 3).expect("weights");
    let x = ids();
    let run = |n: &Network, w: &exec::Weights| {
        exec::run(n, w, &[Tensor::new(vec![1, 16], x.clone())], None)
            .expect("runs")
            .outputs
            .remove(0)
    };
    let (y, z) = (run(&net, &w), run(&back, &wb));
    assert_eq!(z.shape, vec![1, 16, 100]);
    let d = worst(&y.data, &z.data);
    assert!(d <= 1e-4, "{d}");
    assert!(y.data.iter().any(|v| v.abs() > 1e-3));
    let causal = |n: &Network| -> Vec<bool> {
        n.nodes
            .iter()
            .filter(|n| n.layer.op() == "scaled_dot_product_attention")
            .map(|n| n.layer.label().contains("causal"))
            .collect()
    };
    assert_eq!(causal(&back), [true, true]);
    // All zeros in layer 0: no mask there, a plain attention.
    let plain = export_with_mask(|v| v.iter_mut().for_each(|x| *x = 0.0)).expect("reads");
    assert_eq!(causal(&plain), [false, true]);
    // Row 3 sees column 4: not causal.
    let e = export_with_mask(|v| v[3 * 16 + 4] = 0.0).unwrap_err();
    assert!(
        e.contains("is not causal (−∞ exactly above the diagonal)"),
        "{e}"
    );
    assert!(e.contains("transformer.h.0.attn.attention/Add"), "{e}");
    // A finite penalty is no mask archscope reads.
    let e = export_with_mask(|v| v[1] = -5.0).unwrap_err();
    assert!(
        e.contains("holds -5: archscope reads masks of 0 and −∞"),
        "{e}"
    );
}

#[test]
fn mutants_of_the_tiny_gpt2_files() {
    // The seeded mutation fuzz (tests/onnx_fuzz.rs: 700 mutants each) over the TorchScript
    // files with and without weights and the dynamo file: the GPT-2 patterns under mutation —
    // no panic, every refusal located, with a help line.
    for (f, salt) in [
        ("gpt_tiny.onnx", 21),
        ("gpt_tiny_graph.onnx", 22),
        ("gpt_tiny_dynamo.onnx", 23),
    ] {
        let (n, built) = crate::onnx_fuzz::fuzz_seed(f, salt);
        assert!(built < n, "{f}: {built} of {n}");
    }
}
