//! ONNX models with more than one data input (`scripts/onnx_inputs.py`, figures in
//! tests/data/onnx_inputs_reference.json): transformers' GPT2LMHeadModel exported with
//! `input_ids` and `attention_mask` as graph inputs by both torch exporters reads back with a
//! token input, a plain N×S mask input and each attention a `scaled_dot_product_attention`
//! with `mask: keys` and `causal: true`, PyTorch's parameters and the MACs FlopCounterMode and
//! fvcore charge it, and `run` with a mask padded on the right equals onnxruntime's logits; a
//! changed mask computation is refused at its node; a two-tower network whose graph inputs
//! come second tower first reads with both images as inputs in the file's order, with and
//! without weights. The `mask: keys` form of the attention: the same outputs as the additive
//! mask it stands for, transformers' average over every key for a query that sees none, its
//! errors, and `archscope export` of it read back.

use crate::common::{assert_onnxruntime_output, data_json, f32s, weighted_rows};
use crate::common::{import_onnx as import, read_onnx as read};
use archscope::convention::recount;
use archscope::onnx::{self, proto};
use archscope::tensor::Tensor;
use archscope::{analyze, exec, BuildOptions, Convention, Dtype, Network};

fn reference() -> serde_json::Value {
    data_json("onnx_inputs_reference.json")
}

fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

const MASKED: [&str; 2] = ["gpt_tiny_mask.onnx", "gpt_tiny_mask_dynamo.onnx"];

/// The labels of a network's scaled-dot-product attentions (shared with onnx_gpt_dynamic).
pub(crate) fn attentions(net: &Network) -> Vec<String> {
    net.nodes
        .iter()
        .filter(|n| n.layer.op() == "scaled_dot_product_attention")
        .map(|n| n.layer.label())
        .collect()
}

#[test]
fn gpt2_with_an_attention_mask_input_gives_pytorch_figures() {
    let r = &reference()["gpt_mask"];
    // PyTorch's count, as for the unmasked files (tests/onnx_gpt.rs derives 29,184 by hand).
    assert_eq!(r["params"], 29_184);
    // The tools charge the padded mask nothing: the same with an all-ones mask.
    assert_eq!(r["tools_padded"], r["tools_ones"]);
    // The unmasked TorchScript file, layer by layer (it equals the zoo's gpt2.yaml there).
    let (plain, _) = import("gpt_tiny.onnx", &read("gpt_tiny.onnx"));
    let plain_rows = weighted_rows(&analyze(&plain, Dtype::F32).unwrap());
    for f in MASKED {
        let (net, imp) = import(f, &read(f));
        assert!(
            imp.yaml
                .contains("  input_ids: {tokens: 16, vocab: 100}\n  attention_mask: [16]\n"),
            "{f}: {}",
            imp.yaml
        );
        let a = analyze(&net, Dtype::F32).unwrap();
        assert_eq!(a.totals.params, 29_184, "{f}");
        assert_eq!(
            attentions(&net),
            [
                "attention, 2 heads×16, causal, key mask",
                "attention, 2 heads×16, causal, key mask"
            ],
            "{f}"
        );
        if f == "gpt_tiny_mask.onnx" {
            assert_eq!(weighted_rows(&a), plain_rows, "{f}: layer by layer");
        }
        // FlopCounterMode's and fvcore's measurements of the masked model.
        for (tool, c) in [
            ("torchvision", Convention::Torchvision),
            ("fvcore", Convention::Fvcore),
        ] {
            let mut b = a.clone();
            recount(&net, &mut b, c).unwrap();
            assert_eq!(
                b.totals.macs,
                r["tools_padded"][tool].as_u64().unwrap(),
                "{f}: {tool}"
            );
        }
    }
}

#[test]
fn gpt2_with_a_padded_mask_runs_to_onnxruntime_logits() {
    let r = &reference()["gpt_mask"];
    let ids = f32s(&r["ids"]);
    let mask = f32s(&r["mask"]);
    // Padded on the right: 11 tokens, then 5 zeros.
    assert_eq!(r["valid"], 11);
    assert_eq!(mask.iter().filter(|&&m| m == 0.0).count(), 5);
    for f in MASKED {
        let (net, imp) = import(f, &read(f));
        let w = onnx::weights(&net, &imp).unwrap().expect("weights");
        let inputs = [
            Tensor::new(vec![1, 16], ids.clone()),
            Tensor::new(vec![1, 16], mask.clone()),
        ];
        let y = exec::run(&net, &w, &inputs, None).expect("runs").outputs;
        assert_eq!(y[0].shape, vec![1, 16, 100], "{f}");
        // Every token's logits (a padded query still sees the 11 tokens before it), and those
        // of the 11 tokens alone against PyTorch's.
        assert_onnxruntime_output(f, &y[0].data, &f64s(&r["files"][f]["ort_logits"]));
        let torch = f64s(&r["torch_logits"]);
        assert_onnxruntime_output(f, &y[0].data[..1100], &torch[..1100]);
        // With every key kept: the same logits for the 11 tokens (a causal query before the
        // padding sees no padded key), others for the 5 after them (they now see the padding).
        let ones = [
            Tensor::new(vec![1, 16], ids.clone()),
            Tensor::new(vec![1, 16], vec![1.0; 16]),
        ];
        let z = exec::run(&net, &w, &ones, None).unwrap().outputs;
        assert_eq!(&z[0].data[..1100], &y[0].data[..1100], "{f}");
        let moved = z[0].data[1100..]
            .iter()
            .zip(&y[0].data[1100..])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(moved > 1e-2, "{f}: {moved}");
    }
}

/// The TorchScript masked file with `edit` applied to its graph, read back.
fn edited(edit: impl FnOnce(&mut proto::GraphProto)) -> Result<Network, String> {
    let f = "gpt_tiny_mask.onnx";
    let mut m = proto::decode_model(f, &read(f)).expect("decodes");
    edit(m.graph.as_mut().unwrap());
    let bytes = proto::encode_model(&m);
    onnx::build(f, &bytes, &BuildOptions::default())
        .map(|(n, _)| n)
        .map_err(|e| e.to_string())
}

fn node<'a>(g: &'a mut proto::GraphProto, name: &str) -> &'a mut proto::NodeProto {
    g.node
        .iter_mut()
        .find(|n| n.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no node {name}"))
}

#[test]
fn a_changed_mask_computation_is_refused_at_its_node() {
    // As exported: read.
    edited(|_| {}).expect("reads");
    // Layer 0's masked value −5 instead of the lowest f32.
    let e = edited(|g| {
        let c = node(g, "/m/transformer/h.0/attn/Constant_7");
        let t = c.attribute[0].t.as_mut().unwrap();
        assert_eq!(proto::tensor_to_f32(t).unwrap(), [f32::NEG_INFINITY]);
        t.raw_data = None;
        t.float_data = vec![-5.0];
    })
    .unwrap_err();
    assert!(
        e.contains("computed from input `attention_mask`, holds -5"),
        "{e}"
    );
    assert!(e.contains("`/m/transformer/h.0/attn/Add` (Add)"), "{e}");
    // 0 and the lowest f32 swapped: kept pairs masked.
    let e = edited(|g| {
        let w = node(g, "/m/transformer/h.0/attn/Where");
        w.input.swap(1, 2);
    })
    .unwrap_err();
    assert!(
        e.contains(
            "with every key kept is neither causal (−∞ exactly above the diagonal) nor zero"
        ),
        "{e}"
    );
    // The causal part and the padding combined by Or, not And: with every key kept nothing is
    // masked (no causal rule), and with the first 8 of 16 keys kept, query 8 still sees key 8.
    let e = edited(|g| {
        let a = node(g, "/m/transformer/And_1");
        a.op_type = Some("Or".into());
    })
    .unwrap_err();
    assert!(
        e.contains("is not transformers' mask of the keys: with key 8 of sample 0 left out, the pair of query 8 is not masked"),
        "{e}"
    );
    assert!(
        e.contains("help: archscope reads an attention-mask input"),
        "{e}"
    );
}

#[test]
fn a_two_tower_network_reads_both_images_in_the_file_order() {
    let r = &reference()["two_tower"];
    // PyTorch's count by hand: left conv 3·8·9 + 8 = 224, right conv 1·4·25 + 4 = 104, the
    // bias 4, head 12·5 + 5 = 65: 397. MACs: left 8·8·8·27 = 13,824, right 4·4·4·25 = 1,600,
    // head 60: 15,484 (FlopCounterMode's, the script).
    assert_eq!(r["params"], 397);
    assert_eq!(r["macs"], 15_484);
    for f in ["two_tower.onnx", "two_tower_graph.onnx"] {
        // The graph inputs: the right image first; graph only, the weights after them.
        assert_eq!(r["files"][f]["inputs"][0], "right", "{f}");
        assert_eq!(r["files"][f]["inputs"][1], "left", "{f}");
        let (net, imp) = import(f, &read(f));
        assert!(
            imp.yaml
                .contains("inputs:\n  right: [1, 12, 12]\n  left: [3, 8, 8]\nnodes:"),
            "{f}: {}",
            imp.yaml
        );
        let a = analyze(&net, Dtype::F32).unwrap();
        assert_eq!((a.totals.params, a.totals.macs), (397, 15_484), "{f}");
        if f == "two_tower.onnx" {
            let w = onnx::weights(&net, &imp).unwrap().expect("weights");
            let inputs = [
                Tensor::new(vec![1, 1, 12, 12], f32s(&r["right"])),
                Tensor::new(vec![1, 3, 8, 8], f32s(&r["left"])),
            ];
            let y = exec::run(&net, &w, &inputs, None).unwrap().outputs;
            assert_eq!(y[0].shape, vec![1, 5]);
            assert_onnxruntime_output(f, &y[0].data, &f64s(&r["files"][f]["ort_output"]));
        } else {
            // The learned bias, read only by an Add, is a weight of the graph-only file.
            assert!(!imp.has_weights);
            assert!(!imp.yaml.contains("  bias: ["), "{}", imp.yaml);
        }
    }
}

/// q 2×5×4 per sample (2 heads), k 2×6×4, v 2×6×3, the key mask 6, two samples; `layers`
/// before the attention (which reads `v`, or `vp` when they write it).
fn keys_net_with(attn: &str, mask_input: &str, layers: &str) -> Network {
    let v = if layers.contains("id: vp") { "vp" } else { "v" };
    let yaml = format!(
        "format: archscope/1\nname: keys\ninputs:\n  q: [2, 5, 4]\n  k: [2, 6, 4]\n  v: [2, 6, 3]\n  m: {mask_input}\nnodes:\n{layers}  - {{id: a, op: scaled_dot_product_attention, in: [q, k, {v}, m]{attn}}}\noutputs: [a]\n"
    );
    let opts = BuildOptions {
        batch: 2,
        ..BuildOptions::default()
    };
    Network::from_yaml("keys.yaml", &yaml, &opts).expect("builds")
}

fn keys_net(attn: &str, mask_input: &str) -> Network {
    keys_net_with(attn, mask_input, "")
}

fn seq(n: usize, k: f32) -> Vec<f32> {
    (0..n).map(|i| ((i as f32) * k).sin()).collect()
}

#[test]
fn a_mask_of_the_keys_is_the_additive_mask_it_stands_for() {
    let keyed = keys_net(", mask: keys, causal: true", "[6]");
    let additive = keys_net("", "[1, 5, 6]");
    let (q, k, v) = (seq(80, 0.37), seq(96, 0.23), seq(72, 0.51));
    // Sample 0 keeps keys 0…3 (padded on the right); sample 1 keeps none.
    let keep = [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    // The additive mask by hand: 0 where key j of sample b is kept and j ≤ i, else the
    // lowest f32 (transformers' finfo.min).
    let mut add = vec![0f32; 2 * 5 * 6];
    for b in 0..2 {
        for i in 0..5 {
            for j in 0..6 {
                if keep[b * 6 + j] == 0.0 || j > i {
                    add[(b * 5 + i) * 6 + j] = f32::MIN;
                }
            }
        }
    }
    let t = |s: Vec<usize>, d: &[f32]| Tensor::new(s, d.to_vec());
    let run = |net: &Network, m: Tensor| {
        let w = exec::init_weights(net, 1).unwrap();
        let ins = [
            t(vec![2, 2, 5, 4], &q),
            t(vec![2, 2, 6, 4], &k),
            t(vec![2, 2, 6, 3], &v),
            m,
        ];
        exec::run(net, &w, &ins, None).unwrap().outputs.remove(0)
    };
    let a = run(&keyed, t(vec![2, 6], &keep));
    let b = run(&additive, t(vec![2, 1, 5, 6], &add));
    assert_eq!(a.shape, vec![2, 2, 5, 3]);
    assert_eq!(a.data, b.data);
    // Sample 1 sees no key: every score is the lowest f32, so each query averages all six
    // values, as transformers' model does.
    for h in 0..2 {
        for c in 0..3 {
            let mean: f32 = (0..6).map(|j| v[((2 + h) * 6 + j) * 3 + c]).sum::<f32>() / 6.0;
            for i in 0..5 {
                let got = a.data[((2 + h) * 5 + i) * 3 + c];
                assert!((got - mean).abs() < 1e-6, "{h} {i} {c}: {got} vs {mean}");
            }
        }
    }
    // The figures: the mask costs one addition per score, as an additive one.
    let (x, y) = (
        analyze(&keyed, Dtype::F32).unwrap(),
        analyze(&additive, Dtype::F32).unwrap(),
    );
    assert_eq!(
        (x.totals.macs, x.totals.flops),
        (y.totals.macs, y.totals.flops)
    );
    // 2 samples × 2 heads × 5 × 6 × (4 + 3) = 840 MACs.
    assert_eq!(x.totals.macs, 840);
}

#[test]
fn a_mask_of_the_keys_has_its_shape_and_input() {
    let build = |attn: &str, m: &str, ins: &str| {
        let yaml = format!(
            "format: archscope/1\nname: keys\ninputs:\n  q: [2, 5, 4]\n  k: [2, 6, 4]\n  v: [2, 6, 3]\n  m: {m}\nnodes:\n  - {{id: a, op: sdpa, in: {ins}{attn}}}\noutputs: [a]\n"
        );
        Network::from_yaml("keys.yaml", &yaml, &BuildOptions::default())
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = build(", mask: keys", "[5]", "[q, k, v, m]");
    assert!(
        e.contains("the key mask is 1×5, but this attention has 1 samples of 6 keys"),
        "{e}"
    );
    assert!(e.contains("give a mask of 1×6"), "{e}");
    let e = build(", mask: keys", "[6]", "[q, k, v]");
    assert!(e.contains("`mask: keys` without a mask input"), "{e}");
    let e = build(", mask: key", "[6]", "[q, k, v, m]");
    assert!(e.contains("is not one of additive, keys"), "{e}");
}

#[test]
fn a_mask_of_the_keys_exports_and_reads_back() {
    use archscope::onnx::export::{export, ExportOptions};
    // A layer norm on v, so that the file carries a weight: in a file without any, a
    // graph input read only in a weight position (k, v: MatMul's second operand) would be read
    // as a graph-only export's weight (docs/ONNX.md).
    let net = keys_net_with(
        ", mask: keys, causal: true",
        "[6]",
        "  - {id: vp, op: layernorm, in: v, dims: 1}\n",
    );
    let w = exec::init_weights(&net, 1).unwrap();
    let m = export(&net, Some(&w), ExportOptions::default()).expect("exports");
    let bytes = proto::encode_model(&m);
    let opts = BuildOptions {
        batch: 2,
        ..BuildOptions::default()
    };
    let (back, imp) = onnx::build("keys.onnx", &bytes, &opts).expect("reads back");
    assert_eq!(
        attentions(&back),
        ["attention, 2 heads×4, causal, key mask"]
    );
    assert!(imp.yaml.contains("  m: [6]\n"), "{}", imp.yaml);
    let ins = |keep: Vec<f32>| {
        [
            Tensor::new(vec![2, 2, 5, 4], seq(80, 0.37)),
            Tensor::new(vec![2, 2, 6, 4], seq(96, 0.23)),
            Tensor::new(vec![2, 2, 6, 3], seq(72, 0.51)),
            Tensor::new(vec![2, 6], keep),
        ]
    };
    let keep = vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0];
    let wb = onnx::weights(&back, &imp)
        .unwrap()
        .expect("the file holds them");
    let a = exec::run(&net, &w, &ins(keep.clone()), None)
        .unwrap()
        .outputs;
    let b = exec::run(&back, &wb, &ins(keep), None).unwrap().outputs;
    assert_eq!(a[0].data, b[0].data);
}

#[test]
fn a_graph_only_head_cannot_be_told_tied_from_untied() {
    // TorchScript's graph-only export of the tied tiny GPT-2 (scripts/onnx_gpt.py) and of the
    // same model with its own head (tie_word_embeddings=False): the same graph inputs, name
    // for name but the anonymous head's number, dim for dim. So no rule can tie the one head
    // without tying the other: the anonymous 32×100 input is counted as its own weight, the
    // untied model's PyTorch count, and the tied file's 3,200 over PyTorch's (docs/ONNX.md).
    let r = &reference()["untied"];
    let (a, b) = (
        r["inputs"].as_array().unwrap(),
        r["tied_inputs"].as_array().unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x[1], y[1]);
        let (nx, ny) = (x[0].as_str().unwrap(), y[0].as_str().unwrap());
        assert!(nx == ny || (nx.starts_with("onnx::MatMul_") && ny.starts_with("onnx::MatMul_")));
    }
    assert_eq!(a.last().unwrap()[1], serde_json::json!([32, 100]));
    // PyTorch: 29,184 tied; untied, the head's 32·100 more.
    assert_eq!(r["tied_params"], 29_184);
    assert_eq!(r["params"], 29_184 + 3_200);
    for f in ["gpt_tiny_untied_graph.onnx", "gpt_tiny_graph.onnx"] {
        let (net, _) = import(f, &read(f));
        let t = analyze(&net, Dtype::F32).unwrap().totals;
        assert_eq!((t.params, t.macs), (32_384, 477_184), "{f}");
    }
}

#[test]
fn mutants_of_the_masked_gpt2_file() {
    // The seeded mutation fuzz of tests/onnx_fuzz.rs (700 mutants) over the TorchScript file
    // with an attention-mask input: the mask's evaluation under mutation — no panic, every
    // refusal located, with a help line.
    let (n, built) = crate::onnx_fuzz::fuzz_seed("gpt_tiny_mask.onnx", 24);
    assert!(built < n, "{built} of {n}");
}
