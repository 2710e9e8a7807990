//! `multi_head_attention` and `scaled_dot_product_attention` against PyTorch:
//! tests/data/attention_reference.json (scripts/attention_reference.py) holds, for one-layer
//! models of each op and its options, PyTorch's output with every state-dict tensor and every
//! input set by the script's `formula`, and what each profiler charged for the call. The same
//! tensors loaded by name give the same outputs on both executor paths (≤ 1e-4 relative);
//! `check` passes on each model; every `--convention` preset equals its tool's figure; a
//! small transformer block passes `check`; and the new mistakes are refused with a location
//! and a fix.

use crate::common;

use crate::common::{
    analysis, build_error, checked, data_json, f32s, formula, formula_safetensors, u64s, usizes,
};
use archscope::convention::{recount, Convention};
use archscope::{exec, BuildOptions, Network};
use serde_json::Value;

/// The one-layer model of a reference case: its inputs as declared, the layer as `op`. A
/// model input of rank 3 is channels first (N×C×L), so each token input `t` (L×E per sample)
/// is declared transposed, `t_cl: [E, L]`, and turned into N×L×E by `{id: t, op: transpose}`
/// (masks are declared as they are).
fn case_net(case: &Value) -> Network {
    let layer = case["layer"].as_str().unwrap();
    let mut inputs = String::new();
    let mut nodes = String::new();
    for (name, shape) in case["inputs"].as_object().unwrap() {
        let dims: Vec<String> = u64s(shape).iter().map(|d| d.to_string()).collect();
        if is_mask(name) {
            inputs += &format!("  {name}: [{}]\n", dims.join(", "));
        } else {
            let r = dims.len();
            let mut swapped = dims.clone();
            swapped.swap(r - 2, r - 1);
            inputs += &format!("  {name}_cl: [{}]\n", swapped.join(", "));
            nodes += &format!(
                "  - {{id: {name}, op: transpose, in: {name}_cl, dims: [{}, {}]}}\n",
                r - 1,
                r
            );
        }
    }
    let yaml = format!(
        "format: \"archscope/1\"\nname: case\ninputs:\n{inputs}nodes:\n{nodes}  - {{id: op, {}\n",
        layer.trim_start_matches('{')
    );
    let opts = BuildOptions {
        batch: case["batch"].as_u64().unwrap(),
        ..BuildOptions::default()
    };
    Network::from_yaml("case.yaml", &yaml, &opts).unwrap_or_else(|e| panic!("{layer}: {e}\n{yaml}"))
}

fn is_mask(input: &str) -> bool {
    input == "mask"
}

/// The model input for reference input `name` of per-sample shape `shape`: the script's
/// values (N×…×L×E, row-major), transposed to N×…×E×L unless it is a mask (see [`case_net`]).
fn case_input(name: &str, batch: usize, shape: &[usize]) -> exec::Tensor {
    let mut dims = vec![batch];
    dims.extend(shape);
    let v = formula(name, &dims);
    if is_mask(name) {
        return exec::Tensor::new(dims, v);
    }
    let r = dims.len();
    let (rows, cols) = (dims[r - 2], dims[r - 1]);
    let mut t = vec![0f32; v.len()];
    for (b, block) in v.chunks(rows * cols).enumerate() {
        for i in 0..rows {
            for j in 0..cols {
                t[b * rows * cols + j * rows + i] = block[i * cols + j];
            }
        }
    }
    dims.swap(r - 2, r - 1);
    exec::Tensor::new(dims, t)
}

fn cases() -> Vec<Value> {
    let doc = data_json("attention_reference.json");
    let cases = doc["cases"].as_array().unwrap().clone();
    assert_eq!(cases.len(), 20);
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
            .map(|(input, shape)| case_input(input, batch, &usizes(shape)))
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
/// path runs (self-attention, an even head count, biases, no float mask, no `add_bias_kv` or
/// `add_zero_attn`), which FlopCounterMode
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
                && !layer.contains("heads: 3,")
                && !layer.contains("add_bias_kv")
                && !layer.contains("add_zero_attn"),
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
inputs: {x_cl: [32, 10]}
nodes:
  - {id: x, op: transpose, dims: [1, 2]}
  - {id: ln1, op: layernorm}
  - {id: attn, op: multi_head_attention, heads: 4, need_weights: false}
  - {id: res1, op: add, in: [attn, x]}
  - {id: ln2, op: layernorm}
  - {id: causal, op: multi_head_attention, heads: 2, causal: true}
  - {id: res2, op: add, in: [causal, res1]}
  - {id: sdpa, op: scaled_dot_product_attention, in: [res2, res1, res2], causal: true}
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

/// Builds `layer` on `inputs` and expects `needle` and `help` in the error. An input named
/// `t_cl` (channels first, N×E×L) is first turned into the token tensor `t` (N×L×E) by a
/// transpose, as a model input of rank 3 is N×C×L.
fn refused(layer: &str, inputs: &str, needle: &str, help: &str) {
    let mut nodes = String::new();
    for part in inputs.split(['{', ',', ' ']) {
        if let Some(t) = part.strip_suffix("_cl:") {
            nodes += &format!("  - {{id: {t}, op: transpose, in: {t}_cl, dims: [1, 2]}}\n");
        }
    }
    let yaml =
        format!("format: \"archscope/1\"\nname: m\ninputs: {inputs}\nnodes:\n{nodes}  - {layer}\n");
    let e = build_error("m.yaml", &yaml).to_string();
    assert!(e.contains(needle), "{layer}: {e}");
    assert!(e.contains(help), "{layer}: {e}");
}

#[test]
fn mistakes_are_refused_with_a_fix() {
    // Heads that do not divide the embedding: located at the `heads` value (line 6).
    refused(
        "{id: a, op: multi_head_attention, heads: 5}",
        "{x_cl: [12, 4]}",
        "5 heads do not divide the embedding of 12 features",
        "use a head count that divides 12: 1, 2, 3, 4, 6, 12",
    );
    let e = build_error(
        "m.yaml",
        "format: \"archscope/1\"\nname: m\ninputs: {x_cl: [12, 4]}\nnodes:\n  - {id: x, op: transpose, dims: [1, 2]}\n  - {id: a, op: mha, heads: 5}\n",
    )
    .to_string();
    assert!(e.contains("m.yaml:6:"), "{e}");
    // Query, key and value that do not fit.
    refused(
        "{id: a, op: multi_head_attention, in: [q, k, v], heads: 2}",
        "{q_cl: [8, 4], k_cl: [8, 6], v_cl: [8, 5]}",
        "the key 1×6×8 has 6 positions but the value 1×5×8 has 5",
        "same length S",
    );
    refused(
        "{id: a, op: multi_head_attention, in: [q, k, v], heads: 2}",
        "{q_cl: [8, 4], k_cl: [12, 6], v_cl: [8, 6]}",
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
        "{x_cl: [8, 4], m: [4, 5]}",
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
        "{x_cl: [8, 4]}",
        "self-attention reads keys and values from the query itself",
        "`in: [q, k, v]`",
    );
}

/// The executor's limit on one buffer (docs/FORMAT.md "Limits"): the scores of one head of a
/// 70,000-token attention (4.9·10⁹ elements) are refused before anything is allocated, from
/// inputs of only 70,000 elements each (1×70000×1 per sample: one head of 70,000 positions
/// with one feature; an N×C×L input of 70,000 channels would be refused as channels by
/// positions).
#[test]
fn scores_beyond_the_executor_limit_are_refused() {
    let net = common::net(
        "format: \"archscope/1\"\nname: long\ninputs: {q: [1, 70000, 1], k: [1, 70000, 1], v: [1, 70000, 1]}\nnodes:\n  - {id: a, op: sdpa, in: [q, k, v]}\n",
    );
    let w = exec::init_weights(&net, 0).unwrap();
    let xs: Vec<exec::Tensor> = (0..3)
        .map(|_| exec::Tensor::new(vec![1, 1, 70000, 1], vec![0.5; 70000]))
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

/// `multi_head_attention` equals the same attention written out with the tensor ops (learned
/// weights as `parameter`s, matmul and add for the three projections, reshape and permute to
/// heads, matmul, a scale, softmax, matmul, back to tokens, the output projection) given the
/// same weights — outputs to rounding, and the same MACs (the
/// projections plus both products: an independent description of the same computation).
#[test]
fn the_op_equals_the_attention_written_out() {
    use safetensors::tensor::{Dtype, TensorView};
    const OP: &str = r#"
format: "archscope/1"
name: op
inputs: {x_cl: [8, 6]}
nodes:
  - {id: x, op: transpose, dims: [1, 2]}
  - {id: attn, op: multi_head_attention, heads: 2}
"#;
    const OUT: &str = r#"
format: "archscope/1"
name: written_out
inputs: {x_cl: [8, 6]}
nodes:
  - {id: x, op: transpose, dims: [1, 2]}
  - {id: wq, op: parameter, shape: [8, 8]}
  - {id: bq, op: parameter, shape: [8]}
  - {id: wk, op: parameter, shape: [8, 8]}
  - {id: bk, op: parameter, shape: [8]}
  - {id: wv, op: parameter, shape: [8, 8]}
  - {id: bv, op: parameter, shape: [8]}
  - {id: wo, op: parameter, shape: [8, 8]}
  - {id: bo, op: parameter, shape: [8]}
  - {id: qm, op: matmul, in: [x, wq]}
  - {id: q, op: add, in: [qm, bq]}
  - {id: km, op: matmul, in: [x, wk]}
  - {id: k, op: add, in: [km, bk]}
  - {id: vm, op: matmul, in: [x, wv]}
  - {id: v, op: add, in: [vm, bv]}
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
  - {id: om, op: matmul, in: [ot, wo]}
  - {id: out, op: add, in: [om, bo]}
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
    // The transpose of an 8×8 row-major matrix.
    let t = |w: &[f32]| -> Vec<f32> { (0..64).map(|i| w[(i % 8) * 8 + i / 8]).collect() };
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
            // x·Wᵀ as matmul(x, Wᵀ): the parameters hold the transposed weights.
            ("wq", vec![8, 8], t(&wq)),
            ("bq", vec![8], bq),
            ("wk", vec![8, 8], t(&wk)),
            ("bk", vec![8], bk),
            ("wv", vec![8, 8], t(&wv)),
            ("bv", vec![8], bv),
            // 1/√d for d = 4.
            ("scale", vec![1], vec![0.5]),
            ("wo", vec![8, 8], t(&wo)),
            ("bo", vec![8], bo),
        ]),
        "out.safetensors",
    )
    .unwrap();
    let x = exec::Tensor::new(vec![1, 8, 6], formula("x", &[1, 8, 6]));
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
