//! The remaining attention gaps of issue #13: attention refuses an embedding on the wrong axis
//! (from the layouts); summary, JSON and diagrams split attention MACs into projections, Q·Kᵀ
//! and attention·V and show heads × head size in an "attention" category; a `parameter` shows
//! its literal shape; a tied weight's copy is in the executor's memory budget and a file that
//! also holds the tied layer's own name (GPT-2's `lm_head.weight`) loads when the tensors are
//! equal; `init: normal` draws normal values with `std`; `add_bias_kv` / `add_zero_attn`.

use crate::common;

use crate::common::{analysis, build_error, layer, net, zoo_analysis, zoo_net};
use archscope::dot::{to_dot, DotOptions, Show};
use archscope::exec;
use archscope::report::{self, Format};

// ---------------------------------------------------------------------------------------------
// 1. The embedding on the wrong axis.

/// ViT's patch embedding flattened but not transposed: N×768×(14·14) is channels × tokens, and
/// attention over it would take the 768 channels as positions.
const VIT_NO_TRANSPOSE: &str = r#"format: "archscope/1"
name: m
inputs: {x: [3, 32, 32]}
nodes:
  - {id: patch, op: conv, out: 8, kernel: 16, stride: 16}
  - {id: flat, op: flatten, start_dim: 2}
  - {id: attn, op: multi_head_attention, heads: 2}
"#;

#[test]
fn attention_on_channels_by_tokens_is_refused_with_the_transpose() {
    let e = build_error("m.yaml", VIT_NO_TRANSPOSE).to_string();
    // Located at the attention node (line 7).
    assert!(e.contains("m.yaml:7:"), "{e}");
    assert!(
        e.contains("multi_head_attention attends over dimension 1 and takes the features from the last one, and its query 8×4 is laid out N×C×T(H·W): the last dimension is tokens (height × width flattened) — it would attend over the 8 channels as positions with the 4 positions as features"),
        "{e}"
    );
    assert!(
        e.contains("put the features last first: `{op: transpose, dims: [1, 2]}`"),
        "{e}"
    );
    // With the transpose it builds: 4 tokens of 8 features.
    let fixed = VIT_NO_TRANSPOSE.replace(
        "  - {id: attn,",
        "  - {id: tokens, op: transpose, dims: [1, 2]}\n  - {id: attn,",
    );
    let a = analysis(&net(&fixed));
    assert_eq!(layer(&a, "attn").outputs[0].0, vec![1, 4, 8]);
}

#[test]
fn attention_on_a_signal_and_sdpa_on_channels_are_refused() {
    // A model input of rank 3 is N×C×L: 8 channels, 5 positions.
    let e = build_error(
        "m.yaml",
        "format: \"archscope/1\"\nname: m\ninputs: {x: [8, 5]}\nnodes:\n  - {id: a, op: mha, heads: 2}\n",
    )
    .to_string();
    assert!(e.contains("m.yaml:5:"), "{e}");
    assert!(
        e.contains(
            "its query 8×5 is laid out N×C×L: the last dimension is the length (spatial axis 0)"
        ),
        "{e}"
    );
    // scaled_dot_product_attention on the key: N×C×T(H·W) again (query and value correct).
    let e = build_error(
        "m.yaml",
        r#"format: "archscope/1"
name: m
inputs: {x: [4, 4, 4]}
nodes:
  - {id: k, op: flatten, start_dim: 2}
  - {id: q, op: transpose, dims: [1, 2]}
  - {id: a, op: sdpa, in: [q, k, q]}
"#,
    )
    .to_string();
    assert!(e.contains("m.yaml:7:"), "{e}");
    assert!(
        e.contains("scaled_dot_product_attention attends over dimension 1 and takes the features from the last one, and its key 4×16 is laid out N×C×T(H·W)"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Attention MACs by product, heads, the attention category.

/// ViT-B/16's first encoder block by hand: L = 197 tokens, E = 768, 12 heads of 64.
/// Projections 4·197·768² = 464,781,312; Q·Kᵀ and attention·V 197²·768 = 29,805,312 each.
#[test]
fn vit_attention_split_by_hand() {
    let a = zoo_analysis("vit_b_16");
    let name = "encoder.layers.encoder_layer_0.self_attention";
    let l = layer(&a, name);
    let s = l.attention.expect("an attention layer");
    assert_eq!((s.heads, s.head_dim, s.queries, s.keys), (12, 64, 197, 197));
    assert_eq!(s.projections, 4 * 197 * 768 * 768);
    assert_eq!(s.projections, 464_781_312);
    assert_eq!(s.scores, 197 * 197 * 768);
    assert_eq!(s.scores, 29_805_312);
    assert_eq!(s.values, 29_805_312);
    assert_eq!(s.total(), l.macs);
    assert_eq!(l.category.legend(), "attention");
    // JSON: per layer, the model's sums (12 blocks) and the category totals.
    let v: serde_json::Value =
        serde_json::from_str(&report::summary(&a, Format::Json, None)).unwrap();
    let j = common::json_layer(&v, name);
    assert_eq!(j["attention"]["heads"], 12);
    assert_eq!(j["attention"]["head_dim"], 64);
    assert_eq!(j["attention"]["scores"], 29_805_312u64);
    assert_eq!(v["attention_macs"]["scores"], 12 * 29_805_312u64);
    assert_eq!(v["attention_macs"]["values"], 12 * 29_805_312u64);
    assert_eq!(v["attention_macs"]["projections"], 12 * 464_781_312u64);
    assert_eq!(v["macs_by_category"]["attention"], 12 * 524_391_936u64);
    // The categories add up to the model's MACs.
    let sum: u64 = v["macs_by_category"]
        .as_object()
        .unwrap()
        .values()
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(sum, a.totals.macs);
    // The table: an attention table with heads × size and tokens, and the totals' split.
    let t = report::summary(&a, Format::Table, None);
    assert!(t.contains("Heads × size"), "{t}");
    assert!(t.contains("12 × 64"), "{t}");
    assert!(t.contains("197×197"), "{t}");
    assert!(t.contains("attention Q·Kᵀ"), "{t}");
    assert!(t.contains(&(12 * 29_805_312u64).to_string()), "{t}");
    // The diagram: the attention colour in the legend, heads and the split in the node.
    let d = to_dot(&zoo_net("vit_b_16"), &a, &DotOptions::default());
    assert!(d.contains("12 heads × 64, 197×197 tokens"), "{d}");
    assert!(
        d.contains("proj 464.78 M · Q·Kᵀ 29.81 M · A·V 29.81 M"),
        "{d}"
    );
    assert!(d.contains("attention"), "legend");
}

/// Swin-T's first block: a 56×56 map of 96 channels in 64 windows of 7×7 = 49 tokens, 3 heads
/// of 32. Projections 4·3136·96² = 115,605,504; each product 64·49²·96 = 14,751,744.
#[test]
fn swin_window_attention_split_by_hand() {
    let a = zoo_analysis("swin_t");
    let l = a
        .layers
        .iter()
        .find(|l| l.op == "shifted_window_attention")
        .unwrap();
    let s = l.attention.unwrap();
    assert_eq!(
        (s.heads, s.head_dim, s.windows, s.queries, s.keys),
        (3, 32, 64, 49, 49)
    );
    assert_eq!(s.projections, 4 * 56 * 56 * 96 * 96);
    assert_eq!(s.scores, 64 * 49 * 49 * 96);
    assert_eq!(s.scores, 14_751_744);
    assert_eq!(s.values, s.scores);
    assert_eq!(s.total(), l.macs);
    let t = report::summary(&a, Format::Table, None);
    assert!(t.contains("64 windows × 49×49"), "{t}");
}

/// GPT-2's attention is F.scaled_dot_product_attention on N×12×L×64 (no projections: those
/// are its Conv1D layers): 12 heads × 64; each product 12·1024²·64 = 805,306,368.
#[test]
fn gpt2_sdpa_split_by_hand() {
    let a = zoo_analysis("gpt2");
    let l = a
        .layers
        .iter()
        .find(|l| l.op == "scaled_dot_product_attention")
        .unwrap();
    let s = l.attention.unwrap();
    assert_eq!(
        (s.heads, s.head_dim, s.queries, s.keys),
        (12, 64, 1024, 1024)
    );
    assert_eq!(s.projections, 0);
    assert_eq!(s.scores, 805_306_368);
    assert_eq!(s.values, 805_306_368);
    assert!(l.label.contains("12 heads×64"), "{}", l.label);
}

// ---------------------------------------------------------------------------------------------
// 3. A parameter's literal shape.

#[test]
fn a_parameter_shows_its_literal_shape() {
    let a = zoo_analysis("vit_b_16");
    let t = report::summary(&a, Format::Table, None);
    let row = t
        .lines()
        .find(|l| l.contains("class_token") && !l.contains("batch_class_token"))
        .unwrap();
    // [1, 1, 768] whole, not 1×768 as if dimension 0 were a batch.
    assert!(row.contains("1×1×768"), "{row}");
    // The expanded class token has a batch: 1×768 per sample.
    let row = t.lines().find(|l| l.contains("batch_class_token")).unwrap();
    assert!(row.contains(" 1×768 "), "{row}");
    let opts = DotOptions {
        show: Show {
            shape: true,
            ..Show::default()
        },
        ..DotOptions::default()
    };
    let d = to_dot(&zoo_net("vit_b_16"), &a, &opts);
    assert!(d.contains("out 1×1×768"), "the class token's node");
    // Its edge to the expand: the literal shape too.
    assert!(
        d.contains("\"class_token\" -> \"batch_class_token\" [label=\" 1×1×768 \"]"),
        "the class token's edge"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Tied weights: memory and loading.

const TIED: &str = r#"format: "archscope/1"
name: tied
inputs:
  ids: {tokens: 3, vocab: 10}
nodes:
  - {id: wte, op: embedding, num: 10, dim: 4}
  - {id: lm_head, op: linear, out: 10, bias: false, tied: wte}
"#;

#[test]
fn a_tied_weights_copy_is_in_the_memory_budget() {
    let net = net(TIED);
    // Weights: the 10×4 table, and the executor's copy of it for lm_head: 2·40·4 bytes.
    let need = exec::check_memory(&net, exec::MEMORY_BUDGET, 0).unwrap();
    assert_eq!(need.weights, 2 * 40 * 4);
    // The copy is really allocated: lm_head holds one tensor of 10×4.
    let w = exec::init_weights(&net, 0).unwrap();
    let k = net.nodes.iter().position(|n| n.name == "lm_head").unwrap();
    assert_eq!(w.per_node[k].len(), 1);
    assert_eq!(w.per_node[k][0].shape, vec![10, 4]);
}

fn st_file(tensors: &[(&str, Vec<f32>)]) -> Vec<u8> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<(String, Vec<u8>)> = tensors
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, vec![10, 4], b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, &None).unwrap()
}

#[test]
fn a_tied_layers_own_name_loads_when_equal() {
    let net = net(TIED);
    let table: Vec<f32> = (0..40).map(|i| i as f32 * 0.25 - 3.0).collect();
    // The table alone, and the table saved twice (as a GPT-2 state dict saved with its tied
    // duplicate holds `lm_head.weight` beside `transformer.wte.weight`): both load, lm_head
    // uses the table.
    for file in [
        st_file(&[("wte.weight", table.clone())]),
        st_file(&[
            ("wte.weight", table.clone()),
            ("lm_head.weight", table.clone()),
        ]),
    ] {
        let w = exec::load_safetensors(&net, &file, "w.safetensors").unwrap();
        assert_eq!(w.per_node[1][0].data, table);
    }
    // A different lm_head.weight is refused: the model ties them.
    let mut other = table.clone();
    other[7] += 1.0;
    let e = exec::load_safetensors(
        &net,
        &st_file(&[("wte.weight", table), ("lm_head.weight", other)]),
        "w.safetensors",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("tensor `lm_head.weight` in w.safetensors differs from `wte.weight`, which layer `lm_head` shares (`tied: wte`)"),
        "{e}"
    );
    assert!(e.contains("drop `lm_head.weight` from the file"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// 5. init: normal.

/// Moments of 200,000 draws: mean 0 and standard deviation `std` within 5 standard errors,
/// and the kurtosis of a normal (3; a uniform's is 1.8) and its share within one standard
/// deviation (68.27 %; a uniform of the same variance has 57.7 %).
fn moments(yaml_init: &str, std: f64) {
    let n = 200_000usize;
    let net = net(&format!(
        "format: \"archscope/1\"\nname: p\ninputs: {{x: [1]}}\nnodes:\n  - {{id: p, op: parameter, shape: [{n}], {yaml_init}}}\n  - {{id: y, op: add, in: [x, p]}}\n"
    ));
    let w = exec::init_weights(&net, 7).unwrap();
    let k = net.nodes.iter().position(|n| n.name == "p").unwrap();
    let v: Vec<f64> = w.per_node[k][0]
        .data
        .iter()
        .map(|&x| f64::from(x))
        .collect();
    let nf = n as f64;
    let mean = v.iter().sum::<f64>() / nf;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / nf;
    let m4 = v.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / nf;
    // Standard errors: mean σ/√n; variance σ²·√(2/n); kurtosis √(24/n).
    assert!(mean.abs() < 5.0 * std / nf.sqrt(), "mean {mean}");
    assert!(
        (var - std * std).abs() < 5.0 * std * std * (2.0 / nf).sqrt(),
        "variance {var}, want {}",
        std * std
    );
    let kurt = m4 / (var * var);
    assert!(
        (kurt - 3.0).abs() < 5.0 * (24.0 / nf).sqrt(),
        "kurtosis {kurt}"
    );
    let within = v.iter().filter(|x| x.abs() < std).count() as f64 / nf;
    assert!((within - 0.6827).abs() < 0.005, "share within 1σ {within}");
}

#[test]
fn init_normal_draws_normal_values() {
    moments("init: normal, std: 0.5", 0.5);
    // The default standard deviation: 0.02.
    moments("init: normal", 0.02);
}

#[test]
fn std_without_normal_is_refused() {
    let e = build_error(
        "m.yaml",
        "format: \"archscope/1\"\nname: p\ninputs: {x: [1]}\nnodes:\n  - {id: p, op: parameter, shape: [4], init: zeros, std: 0.1}\n  - {id: y, op: add, in: [x, p]}\n",
    )
    .to_string();
    assert!(e.contains("m.yaml:5:"), "{e}");
    assert!(e.contains("`std` has no effect with `init: zeros`"), "{e}");
    let e = build_error(
        "m.yaml",
        "format: \"archscope/1\"\nname: p\ninputs: {x: [1]}\nnodes:\n  - {id: p, op: parameter, shape: [4], std: -1}\n  - {id: y, op: add, in: [x, p]}\n",
    )
    .to_string();
    assert!(
        e.contains("`std: -1` is not a positive standard deviation"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. add_bias_kv and add_zero_attn (PyTorch's outputs and every tool's charge: tests/attention.rs
// on scripts/attention_reference.py's four cases).

#[test]
fn bias_kv_and_zero_attn_by_hand() {
    // E = 16, 4 heads, L = 5: in_proj 3·16² + 48, out_proj 16² + 16, bias_k and bias_v 16
    // each: 1,120 parameters. Keys attended: 5 + 1 (bias) + 1 (zero) = 7, so each product is
    // 5·7·16 = 560 MACs; projections 4·5·16² = 5,120.
    let a = analysis(&net(
        "format: \"archscope/1\"\nname: m\ninputs: {x_cl: [16, 5]}\nnodes:\n  - {id: x, op: transpose, dims: [1, 2]}\n  - {id: a, op: mha, heads: 4, add_bias_kv: true, add_zero_attn: true}\n",
    ));
    let l = layer(&a, "a");
    assert_eq!(l.params.total(), 3 * 256 + 48 + 256 + 16 + 32);
    assert_eq!(l.params.total(), 1_120);
    let s = l.attention.unwrap();
    assert_eq!((s.queries, s.keys), (5, 7));
    assert_eq!((s.projections, s.scores, s.values), (5_120, 560, 560));
    assert_eq!(l.macs, 5_120 + 2 * 560);
    assert!(l.label.contains("bias k/v, zero attn"), "{}", l.label);
}

#[test]
fn extra_keys_with_causal_are_refused() {
    let e = build_error(
        "m.yaml",
        "format: \"archscope/1\"\nname: m\ninputs: {x_cl: [16, 5]}\nnodes:\n  - {id: x, op: transpose, dims: [1, 2]}\n  - {id: a, op: mha, heads: 4, causal: true, add_zero_attn: true}\n",
    )
    .to_string();
    assert!(e.contains("m.yaml:6:"), "{e}");
    assert!(
        e.contains("`add_zero_attn` with `causal: true`: PyTorch pads the attention mask so that every query sees the appended key"),
        "{e}"
    );
    assert!(e.contains("give the causal mask as an input"), "{e}");
}
