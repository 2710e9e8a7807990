//! `multi_head_attention` and `scaled_dot_product_attention` against PyTorch:
//! tests/data/attention_reference.json (scripts/attention_reference.py) holds, for one-layer
//! models of each op and its options, PyTorch's output with every state-dict tensor and every
//! input set by the script's `formula`, and what each profiler charged for the call. The same
//! tensors loaded by name give the same outputs on both executor paths (≤ 1e-4 relative);
//! `check` passes on each model; every `--convention` preset equals its tool's figure; a
//! small transformer block passes `check`; and the new mistakes are refused with a location
//! and a fix.

mod common;

use archscope::convention::{recount, Convention};
use archscope::{exec, BuildOptions, Network};
use common::{
    analysis, build_error, checked, data_json, f32s, formula, formula_safetensors, u64s, usizes,
};
use serde_json::Value;

/// The one-layer model of a reference case: its inputs as declared, the layer as `op`.
fn case_net(case: &Value) -> Network {
    let layer = case["layer"].as_str().unwrap();
    let inputs: Vec<String> = case["inputs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, shape)| {
            let dims: Vec<String> = u64s(shape).iter().map(|d| d.to_string()).collect();
            format!("  {name}: [{}]\n", dims.join(", "))
        })
        .collect();
    let yaml = format!(
        "format: \"archscope/1\"\nname: case\ninputs:\n{}nodes:\n  - {{id: op, {}\n",
        inputs.concat(),
        layer.trim_start_matches('{')
    );
    let opts = BuildOptions {
        batch: case["batch"].as_u64().unwrap(),
        ..BuildOptions::default()
    };
    Network::from_yaml("case.yaml", &yaml, &opts).unwrap_or_else(|e| panic!("{layer}: {e}"))
}

fn cases() -> Vec<Value> {
    let doc = data_json("attention_reference.json");
    let cases = doc["cases"].as_array().unwrap().clone();
    assert_eq!(cases.len(), 16);
    cases
}

#[test]
fn every_case_matches_pytorch() {
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let net = case_net(&case);
        let w = exec::load_safetensors(&net, &formula_safetensors(&case["state"]), "x.safetensors")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let batch = case["batch"].as_u64().unwrap() as usize;
        let xs: Vec<exec::Tensor> = case["inputs"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(input, shape)| {
                let mut dims = vec![batch];
                dims.extend(usizes(shape));
                exec::Tensor::new(dims.clone(), formula(input, &dims))
            })
            .collect();
        let want = f32s(&case["output"]);
        let want_shape = usizes(&case["output_shape"]);
        let direct = exec::run(&net, &w, &xs, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        let planned = exec::run_planned(&net, &w, &exec::plan(&net, &w), &xs, None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for (path, out) in [("run", &direct.outputs[0]), ("plan", &planned.outputs[0])] {
            assert_eq!(out.shape, want_shape, "{name} ({path})");
            let worst = out
                .data
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
                .fold(0f32, f32::max);
            assert!(worst <= 1e-4, "{name} ({path}): max relative |Δ| {worst}");
        }
        // `check`: shapes, parameters, and the MACs the attention kernel tallied.
        checked(&net);
    }
}

/// Every preset against the tool's own figure, measured with gradients enabled (the state
/// torchvision's published figures were taken in; docs/COUNTING.md "Attention" says what
/// `torch.no_grad()` changes). ptflops runs batch 1: its figure × N.
#[test]
fn every_preset_equals_its_tool() {
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let net = case_net(&case);
        let measured = &case["charges"]["grad"];
        let n = case["batch"].as_u64().unwrap();
        for c in Convention::ALL {
            let want = match c {
                Convention::Ptflops => measured["ptflops_batch1"].as_u64().unwrap() * n,
                _ => measured[c.name()].as_u64().unwrap(),
            };
            let mut a = analysis(&net);
            recount(&net, &mut a, c).unwrap();
            assert_eq!(a.totals.macs, want, "{name}: {}", c.name());
        }
    }
}

/// The no_grad measurements: identical to the grad ones except where PyTorch's fused fast
/// path runs (self-attention, an even head count, biases, no float mask), which FlopCounterMode
/// and fvcore do not see — the condition docs/COUNTING.md states.
#[test]
fn no_grad_differs_only_on_the_fast_path() {
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let (g, ng) = (&case["charges"]["grad"], &case["charges"]["no_grad"]);
        let layer = case["layer"].as_str().unwrap();
        let fast = name.starts_with("mha_self");
        assert_eq!(
            fast,
            layer.contains("multi_head_attention")
                && !layer.contains("in: [")
                && !layer.contains("bias: false")
                && !layer.contains("causal")
                && !layer.contains("heads: 1,")
                && !layer.contains("heads: 3,"),
            "{name}"
        );
        for tool in ["torchvision", "fvcore"] {
            if fast {
                assert_eq!(ng[tool], 0, "{name} {tool}");
            } else {
                assert_eq!(ng[tool], g[tool], "{name} {tool}");
            }
        }
        for tool in ["ptflops_batch1", "thop", "torchinfo"] {
            if !(fast && tool == "ptflops_batch1") {
                assert_eq!(ng[tool], g[tool], "{name} {tool}");
            }
        }
        // With the fast path off (as scripts/convention_reference.py measures), no_grad gives
        // the grad figures on every case.
        assert_eq!(case["charges"]["no_grad_no_fastpath"], *g, "{name}");
    }
}

/// The MACs by hand for two cases, independently of PyTorch's counter: torchvision's
/// FlopCounterMode charges the projections and both attention products.
#[test]
fn macs_by_hand() {
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let want = match name {
            // N = 2, L = 5, E = 16: 4·N·L·E² + 2·N·L²·E = 10,240 + 1,600.
            "mha_self" => 4 * 2 * 5 * 16 * 16 + 2 * 2 * 5 * 5 * 16,
            // 2 samples × 3 heads, L = 5, S = 7, E = 8, Ev = 6: 6·5·7·(8 + 6).
            "sdpa" => 6 * 5 * 7 * (8 + 6),
            _ => continue,
        };
        assert_eq!(case["charges"]["grad"]["torchvision"], want, "{name}");
        assert_eq!(analysis(&case_net(&case)).totals.macs, want, "{name}");
    }
}

const BLOCK: &str = r#"
format: "archscope/1"
name: block
inputs: {x: [10, 32]}
nodes:
  - {id: ln1, op: layernorm}
  - {id: attn, op: multi_head_attention, heads: 4, need_weights: false}
  - {id: res1, op: add, in: [attn, x]}
  - {id: ln2, op: layernorm}
  - {id: fc1, op: linear, out: 128}
  - {id: act, op: gelu}
  - {id: fc2, op: linear, out: 32}
  - {id: res2, op: add, in: [fc2, res1]}
  - {id: q, op: linear, in: res2, out: 32}
  - {id: sdpa, op: scaled_dot_product_attention, in: [q, res2, res2], causal: true}
"#;

#[test]
fn a_transformer_block_passes_check() {
    let net = common::net(BLOCK);
    let report = checked(&net);
    assert_eq!(report.rows.len(), net.nodes.len());
    // The attention layers' MACs by hand (batch 1): 4·10·32² + 2·10²·32 and 10·10·(32 + 32).
    let a = analysis(&net);
    assert_eq!(
        common::layer(&a, "attn").macs,
        4 * 10 * 32 * 32 + 2 * 100 * 32
    );
    assert_eq!(common::layer(&a, "sdpa").macs, 10 * 10 * 64);
}

fn refused(layer: &str, inputs: &str, needle: &str, help: &str) {
    let yaml = format!("format: \"archscope/1\"\nname: m\ninputs: {inputs}\nnodes:\n  - {layer}\n");
    let e = build_error("m.yaml", &yaml).to_string();
    assert!(e.contains(needle), "{layer}: {e}");
    assert!(e.contains(help), "{layer}: {e}");
}

#[test]
fn mistakes_are_refused_with_a_fix() {
    // Heads that do not divide the embedding: located at the `heads` value (line 5).
    refused(
        "{id: a, op: multi_head_attention, heads: 5}",
        "{x: [4, 12]}",
        "5 heads do not divide the embedding of 12 features",
        "use a head count that divides 12: 1, 2, 3, 4, 6, 12",
    );
    let e = build_error(
        "m.yaml",
        "format: \"archscope/1\"\nname: m\ninputs: {x: [4, 12]}\nnodes:\n  - {id: a, op: mha, heads: 5}\n",
    )
    .to_string();
    assert!(e.contains("m.yaml:5:"), "{e}");
    // Query, key and value that do not fit.
    refused(
        "{id: a, op: multi_head_attention, in: [q, k, v], heads: 2}",
        "{q: [4, 8], k: [6, 8], v: [5, 8]}",
        "the key 1×6×8 has 6 positions but the value 1×5×8 has 5",
        "same length S",
    );
    refused(
        "{id: a, op: multi_head_attention, in: [q, k, v], heads: 2}",
        "{q: [4, 8], k: [6, 12], v: [6, 8]}",
        "the key 1×6×12 has 12 features but `kdim` is 8",
        "write `kdim: 12`",
    );
    refused(
        "{id: a, op: sdpa, in: [q, k, v]}",
        "{q: [2, 4, 8], k: [2, 6, 4], v: [2, 6, 8]}",
        "the query 1×2×4×8 has 8 features per position but the key 1×2×6×4 has 4",
        "same last dimension E",
    );
    refused(
        "{id: a, op: sdpa, in: [q, k, v]}",
        "{q: [4, 4, 8], k: [2, 6, 8], v: [2, 6, 8]}",
        "do not share their leading dimensions",
        "`gqa: true`",
    );
    // Masks of the wrong shape.
    refused(
        "{id: a, op: multi_head_attention, in: [x, m], heads: 2}",
        "{x: [4, 8], m: [4, 5]}",
        "the attention mask is 1×4×5, but this attention has L×S = 4×4 scores per head",
        "(N·heads)×L×S",
    );
    refused(
        "{id: a, op: sdpa, in: [q, k, v, m]}",
        "{q: [2, 4, 8], k: [2, 6, 8], v: [2, 6, 8], m: [3, 4, 6]}",
        "the attention mask 1×3×4×6 does not broadcast to the scores 1×2×4×6",
        "aligned from the right",
    );
    // A mask and `causal` together.
    refused(
        "{id: a, op: sdpa, in: [q, k, v, m], causal: true}",
        "{q: [2, 4, 8], k: [2, 4, 8], v: [2, 4, 8], m: [1, 4, 4]}",
        "a causal attention with an explicit mask",
        "drop the mask input",
    );
    // Not N×L×E.
    refused(
        "{id: a, op: multi_head_attention, heads: 2}",
        "{x: [8, 4, 4]}",
        "needs N×L×E inputs (batch first), and its query is 1×8×4×4",
        "reshape the tokens",
    );
    // Self-attention with a kdim.
    refused(
        "{id: a, op: multi_head_attention, heads: 2, kdim: 4}",
        "{x: [4, 8]}",
        "self-attention reads keys and values from the query itself",
        "`in: [q, k, v]`",
    );
}

/// The executor's limit on one buffer (docs/FORMAT.md "Limits"): the scores of one head of a
/// 70,000-token attention (4.9·10⁹ elements) are refused before anything is allocated, from
/// inputs of only 70,000 elements each.
#[test]
fn scores_beyond_the_executor_limit_are_refused() {
    let net = common::net(
        "format: \"archscope/1\"\nname: long\ninputs: {q: [70000, 1], k: [70000, 1], v: [70000, 1]}\nnodes:\n  - {id: a, op: sdpa, in: [q, k, v]}\n",
    );
    let w = exec::init_weights(&net, 0).unwrap();
    let xs: Vec<exec::Tensor> = (0..3)
        .map(|_| exec::Tensor::new(vec![1, 70000, 1], vec![0.5; 70000]))
        .collect();
    let e = exec::run(&net, &w, &xs, None).unwrap_err().to_string();
    assert!(
        e.contains(
            "the attention's scores of one head (70000×70000) would have more than 2^32 elements"
        ),
        "{e}"
    );
    assert!(e.contains("shorter sequences"), "{e}");
}

/// The training rule's saved tensors against what autograd saved on the CPU
/// (`saved_for_backward`: each storage once, parameters left out), case by case: the same
/// inputs kept, and the same bytes in all (inputs, output and the op's own tensors) at f32.
#[test]
fn saved_for_backward_matches_autograd() {
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let net = case_net(&case);
        let node = net.nodes.iter().find(|n| n.name == "op").unwrap();
        let t = node
            .layer
            .training(&node.in_shapes, &node.out_shapes, true, 4)
            .unwrap();
        let measured = case["saved_for_backward"].as_array().unwrap();
        let total: u64 = measured.iter().map(|s| s[0].as_u64().unwrap()).sum();
        let inputs_kept = measured.iter().filter(|s| s[2].as_bool().unwrap()).count();
        assert_eq!(t.saved.inputs.len(), inputs_kept, "{name}");
        let numel = |s: &archscope::Shape| s.numel().unwrap();
        let ours = t
            .saved
            .inputs
            .iter()
            .map(|&i| 4 * numel(&node.in_shapes[i]))
            .sum::<u64>()
            + if t.saved.output {
                4 * numel(&node.out_shapes[0])
            } else {
                0
            }
            + t.saved.extra_bytes;
        assert_eq!(ours, total, "{name}: {measured:?}");
    }
}

/// `multi_head_attention` equals the same attention written out with the tensor ops (three
/// linears, reshape and permute to heads, matmul, a scale, softmax, matmul, back to tokens, the
/// output linear) given the same weights — outputs to rounding, and the same MACs (the
/// projections plus both products: an independent description of the same computation).
#[test]
fn the_op_equals_the_attention_written_out() {
    use safetensors::tensor::{Dtype, TensorView};
    const OP: &str = r#"
format: "archscope/1"
name: op
inputs: {x: [6, 8]}
nodes:
  - {id: attn, op: multi_head_attention, heads: 2}
"#;
    const OUT: &str = r#"
format: "archscope/1"
name: written_out
inputs: {x: [6, 8]}
nodes:
  - {id: q, op: linear, in: x, out: 8}
  - {id: k, op: linear, in: x, out: 8}
  - {id: v, op: linear, in: x, out: 8}
  - {id: qh, op: reshape, in: q, shape: [6, 2, 4]}
  - {id: qp, op: permute, dims: [0, 2, 1, 3]}
  - {id: kh, op: reshape, in: k, shape: [6, 2, 4]}
  - {id: kt, op: permute, dims: [0, 2, 3, 1]}
  - {id: vh, op: reshape, in: v, shape: [6, 2, 4]}
  - {id: vp, op: permute, dims: [0, 2, 1, 3]}
  - {id: s, op: matmul, in: [qp, kt]}
  - {id: scale, op: parameter, shape: [1], init: value, value: 0.5}
  - {id: ss, op: multiply, in: [s, scale]}
  - {id: p, op: softmax, dim: -1}
  - {id: o, op: matmul, in: [p, vp]}
  - {id: op, op: permute, dims: [0, 2, 1, 3]}
  - {id: ot, op: reshape, shape: [6, 8]}
  - {id: out, op: linear, out: 8}
"#;
    let f = |name: &str, shape: &[usize]| formula(name, shape);
    let (wq, wk, wv) = (
        f("q.weight", &[8, 8]),
        f("k.weight", &[8, 8]),
        f("v.weight", &[8, 8]),
    );
    let (bq, bk, bv) = (f("q.bias", &[8]), f("k.bias", &[8]), f("v.bias", &[8]));
    let (wo, bo) = (f("out.weight", &[8, 8]), f("out.bias", &[8]));
    let cat = |parts: &[&Vec<f32>]| {
        parts
            .iter()
            .flat_map(|p| p.iter().copied())
            .collect::<Vec<f32>>()
    };
    let file = |tensors: Vec<(&str, Vec<usize>, Vec<f32>)>| {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .into_iter()
            .map(|(n, s, v)| {
                (
                    n.to_string(),
                    s,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )
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
    };
    let op_net = common::net(OP);
    let out_net = common::net(OUT);
    let op_w = exec::load_safetensors(
        &op_net,
        &file(vec![
            ("attn.in_proj_weight", vec![24, 8], cat(&[&wq, &wk, &wv])),
            ("attn.in_proj_bias", vec![24], cat(&[&bq, &bk, &bv])),
            ("attn.out_proj.weight", vec![8, 8], wo.clone()),
            ("attn.out_proj.bias", vec![8], bo.clone()),
        ]),
        "op.safetensors",
    )
    .unwrap();
    let out_w = exec::load_safetensors(
        &out_net,
        &file(vec![
            ("q.weight", vec![8, 8], wq),
            ("q.bias", vec![8], bq),
            ("k.weight", vec![8, 8], wk),
            ("k.bias", vec![8], bk),
            ("v.weight", vec![8, 8], wv),
            ("v.bias", vec![8], bv),
            // 1/√d for d = 4.
            ("scale", vec![1], vec![0.5]),
            ("out.weight", vec![8, 8], wo),
            ("out.bias", vec![8], bo),
        ]),
        "out.safetensors",
    )
    .unwrap();
    let x = exec::Tensor::new(vec![1, 6, 8], formula("x", &[1, 6, 8]));
    let a = exec::run(&op_net, &op_w, std::slice::from_ref(&x), None).unwrap();
    let b = exec::run(&out_net, &out_w, std::slice::from_ref(&x), None).unwrap();
    assert_eq!(a.outputs[0].shape, b.outputs[0].shape);
    for (p, q) in a.outputs[0].data.iter().zip(&b.outputs[0].data) {
        assert!((p - q).abs() < 1e-5, "{p} vs {q}");
    }
    assert_eq!(
        analysis(&op_net).totals.macs,
        analysis(&out_net).totals.macs
    );
    checked(&out_net);
}
