//! The tensor ops against PyTorch: tests/data/tensor_ops_reference.json
//! (scripts/tensor_ops_reference.py) holds, for small models of every tensor op (reshape, view,
//! permute, transpose, (un)squeeze, (un)flatten, roll, pad in four modes, mean, sum, select,
//! slice with step and negative bounds, parameter + expand + concat (ViT's class token), a
//! position embedding, ConvNeXt's layer scale, embedding, a tied head, matmul/bmm with
//! broadcasting, softmax over any dim, layernorm2d, a channels-last linear), PyTorch's output
//! with every state-dict tensor and input set by the script's `formula`, and what each profiler
//! charges. Here: the same tensors loaded by name give the same outputs, run layer by layer
//! and by the inference plan; `check` passes on each model; each convention's total is the
//! tool's; and each new mistake is an error that says where and what to write.

use crate::common;

use crate::common::{analysis, checked, data_json, f32s, formula, formula_safetensors, usizes};
use archscope::convention::recount;
use archscope::{exec, BuildOptions, Convention, Network};
use serde_json::Value;

fn inputs_of(case: &Value) -> Vec<exec::Tensor> {
    case["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let name = i["name"].as_str().unwrap();
            let shape = usizes(&i["shape"]);
            let n: usize = shape.iter().product();
            let data = match i["vocab"].as_u64() {
                // Token ids: (7·i + 3) mod vocab, as the script writes them.
                Some(v) => (0..n as u64).map(|k| ((7 * k + 3) % v) as f32).collect(),
                None => formula(if name == "x" { "input" } else { name }, &shape),
            };
            exec::Tensor::new(shape, data)
        })
        .collect()
}

fn build(case: &Value, batch: u64) -> Network {
    let name = case["name"].as_str().unwrap();
    let opts = BuildOptions {
        batch,
        ..BuildOptions::default()
    };
    Network::from_yaml("case.yaml", case["yaml"].as_str().unwrap(), &opts)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_tensor_op_matches_pytorch() {
    let doc = data_json("tensor_ops_reference.json");
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 37);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let net = build(case, 2);
        let w = exec::load_safetensors(&net, &formula_safetensors(&case["state"]), "x.safetensors")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let xs = inputs_of(case);
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
            assert!(worst <= 1e-5, "{name} ({path}): max relative |Δ| {worst}");
        }
        // `check`: shapes, parameters, buffers, kernel-counted MACs and receptive fields.
        checked(&net);
    }
}

#[test]
fn every_convention_charges_what_the_tool_measured() {
    let doc = data_json("tensor_ops_reference.json");
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        for (tool, c) in [
            ("torchvision", Convention::Torchvision),
            ("fvcore", Convention::Fvcore),
            ("ptflops", Convention::Ptflops),
            ("thop", Convention::Thop),
            ("torchinfo", Convention::Torchinfo),
        ] {
            let m = &case["conventions"][tool];
            let net = build(case, m["batch"].as_u64().unwrap());
            let mut a = analysis(&net);
            recount(&net, &mut a, c).unwrap();
            assert_eq!(
                a.totals.macs,
                m["macs"].as_u64().unwrap(),
                "{name} under {tool}"
            );
        }
    }
}

const HEAD: &str = "format: \"archscope/1\"\nname: m\n";

/// The error of building `body` (after the format line), with its location and help.
fn error(body: &str) -> (String, String, String) {
    let text = format!("{HEAD}{body}");
    let e = common::build_error("m.yaml", &text);
    let d = e.diagnostic();
    let loc = d.loc.as_ref().map(|l| l.to_string()).unwrap_or_default();
    (d.message.clone(), loc, d.help.clone().unwrap_or_default())
}

#[test]
fn new_mistakes_are_located_with_a_fix() {
    // A reshape whose sizes do not multiply out: at the list, with -1 offered.
    let (m, loc, help) =
        error("inputs: {x: [197, 768]}\nnodes:\n  - {op: reshape, shape: [197, 12, 65]}\n");
    assert_eq!(
        m,
        "reshape to [197, 12, 65] needs 153660 elements, but each sample of the input 197×768 has 151296"
    );
    assert_eq!(loc, "m.yaml:5:26");
    assert_eq!(
        help,
        "the sizes must multiply to 151296; write -1 for one size to have it inferred"
    );
    // A permute that moves the batch: at the first dim.
    let (m, loc, help) =
        error("inputs: {x: [3, 8, 8]}\nnodes:\n  - {op: permute, dims: [1, 0, 2, 3]}\n");
    assert_eq!(
        m,
        "permute moves the batch: dims[0] is 1, but the batch stays dim 0"
    );
    assert_eq!(loc, "m.yaml:5:26");
    assert!(help.starts_with("start the list with 0"), "{help}");
    // Matmul inner sizes that differ: Q·K without the transpose.
    let (m, _, help) =
        error("inputs: {q: [4, 5, 8], k: [4, 5, 8]}\nnodes:\n  - {op: matmul, in: [q, k]}\n");
    assert_eq!(
        m,
        "matmul inner sizes differ: input 0 is 1×4×5×8 (…×5×8) but input 1 is 1×4×5×8 (…×5×8); 8 ≠ 5"
    );
    assert!(help.contains("{op: transpose, dims: [-2, -1]}"), "{help}");
    // A tied weight of a different shape: at `tied`.
    let (m, loc, help) = error(
        "inputs: {ids: {tokens: 7, vocab: 11}}\nnodes:\n  - {id: wte, op: embedding, num: 11, dim: 6}\n  - {op: linear, out: 10, bias: false, tied: wte}\n",
    );
    assert_eq!(
        m,
        "tied weight of a different shape: `wte.weight` is 11×6, but this layer needs 10×6"
    );
    assert_eq!(loc, "m.yaml:6:46");
    assert!(help.contains("`out: num`"), "{help}");
    // A tied name that is no layer: the nearest name offered.
    let (m, _, help) = error(
        "inputs: {ids: {tokens: 7, vocab: 11}}\nnodes:\n  - {id: wte, op: embedding, num: 11, dim: 6}\n  - {op: linear, out: 11, tied: wtf}\n",
    );
    assert_eq!(m, "`tied: wtf` names no layer computed before this one");
    assert!(help.starts_with("did you mean `wte`?"), "{help}");
    // Squeezing a dimension that is not 1 (PyTorch would silently do nothing).
    let (m, _, _) = error("inputs: {x: [3, 8, 8]}\nnodes:\n  - {op: squeeze, dim: 1}\n");
    assert_eq!(
        m,
        "squeeze of dim 1, which has size 3 in 1×3×8×8: PyTorch would leave the tensor unchanged"
    );
    // A token input without its vocabulary.
    let (m, _, help) =
        error("inputs: {ids: {tokens: 7}}\nnodes:\n  - {op: embedding, num: 11, dim: 6}\n");
    assert_eq!(m, "token input `ids` needs `vocab`");
    assert!(help.contains("{tokens: 1024, vocab: 50257}"), "{help}");
    // A learned tensor cannot be switched off.
    let (m, _, _) = error(
        "inputs: {x: [5, 8]}\nnodes:\n  - {id: pos, op: parameter, shape: [1, 5, 8], when: false}\n  - {op: add, in: [x, pos]}\n",
    );
    assert_eq!(
        m,
        "a layer without inputs cannot be switched off: nothing would stand for its name"
    );
}

#[test]
fn ids_outside_the_vocabulary_are_an_error_in_run() {
    let net = common::net(
        "format: \"archscope/1\"\nname: m\ninputs: {ids: {tokens: 4, vocab: 11}}\nnodes:\n  - {id: wte, op: embedding, num: 11, dim: 3}\n",
    );
    let w = exec::init_weights(&net, 0).unwrap();
    for (bad, what) in [(11.0, "11"), (-1.0, "-1"), (2.5, "2.5"), (f32::NAN, "NaN")] {
        let x = exec::Tensor::new(vec![1, 4], vec![0.0, 1.0, bad, 3.0]);
        let e = exec::run(&net, &w, &[x], None).unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "token id {what} (sample 0, position 2) is outside the vocabulary 0..11 of this embedding"
            )
        );
        assert_eq!(e.layer.as_deref(), Some("wte"));
    }
    // Random inputs (check) draw whole ids below the vocabulary.
    let xs = exec::random_input(&net, 7).unwrap();
    assert!(xs[0]
        .data
        .iter()
        .all(|&v| v.fract() == 0.0 && (0.0..11.0).contains(&v)));
}

#[test]
fn a_parameter_is_weights_not_activation_memory() {
    // ViT's class token and position embedding (1·1·8 + 1·6·8 = 56 parameters): counted as
    // parameters; their outputs (and the expand, a view) own no activation memory. The
    // timeline: the input (2·5·8·4 = 320 bytes), then the concat (2·6·8·4 = 384) with it, the
    // input freed after the concat, then the add (384) with the concat: the peak is 768 bytes.
    // Were the parameters activations, the class token's 32 bytes would be alive at the concat
    // and the position embedding's 192 at the add (960).
    let yaml = "format: \"archscope/1\"\nname: m\ninputs: {x: [5, 8]}\nnodes:\n  - {id: cls, op: parameter, shape: [1, 1, 8], init: zeros}\n  - {id: e, op: expand, in: [cls, x], shape: [1, -1]}\n  - {id: c, op: concat, in: [e, x], dim: 1}\n  - {id: pos, op: parameter, shape: [1, 6, 8]}\n  - {id: y, op: add, in: [c, pos]}\n";
    let opts = BuildOptions {
        batch: 2,
        ..BuildOptions::default()
    };
    let net = Network::from_yaml("m.yaml", yaml, &opts).unwrap();
    let a = analysis(&net);
    assert_eq!(a.totals.params, 56);
    assert_eq!(a.totals.peak_activation_bytes, 768);
    checked(&net);
}

#[test]
fn a_layer_scale_keeps_the_receptive_field() {
    // conv 3×3 → ConvNeXt's layer scale (a [4, 1, 1] parameter times the map) → conv 3×3: the
    // field of the second conv is that of the same model without the scale (5×5, no global
    // context: the parameter sees no pixel), and `check` measures it so.
    let body = |scale: bool| {
        format!(
            "format: \"archscope/1\"\nname: m\ninputs: {{x: [3, 16, 16]}}\nnodes:\n  - {{id: c1, op: conv, out: 4, kernel: 3, padding: 1}}\n{}  - {{id: c2, op: conv, out: 4, kernel: 3, padding: 1}}\n",
            if scale {
                "  - {id: g, op: parameter, shape: [4, 1, 1]}\n  - {id: s, op: multiply, in: [g, c1]}\n"
            } else {
                ""
            }
        )
    };
    let with = common::net(&body(true));
    let without = common::net(&body(false));
    let (a, b) = (analysis(&with), analysis(&without));
    let f = common::field_of(&a, "c2");
    assert_eq!(f, common::field_of(&b, "c2"));
    assert!(!f.global_context);
    let report = checked(&with);
    assert!(
        report.rf_compared() >= 3,
        "{} compared",
        report.rf_compared()
    );
}

#[test]
fn layouts_follow_the_tensor_ops() {
    use archscope::layers::Role::*;
    // ViT's front: 4×4 patches of an 8×8 image (2×2 = 4 tokens of 16 channels), flattened to
    // tokens, a class token concatenated (a sequence then: its first unit is no input
    // position), split into 2 heads of 8, heads first; the class token selected.
    let net = common::net(
        "format: \"archscope/1\"\nname: m\ninputs: {x: [3, 8, 8]}\nnodes:\n  - {id: p, op: conv, out: 16, kernel: 4, stride: 4}\n  - {id: f, op: flatten, start_dim: 2}\n  - {id: t, op: transpose, dims: [1, 2]}\n  - {id: cls, op: parameter, shape: [1, 1, 16]}\n  - {id: e, op: expand, in: [cls, t], shape: [1, -1]}\n  - {id: c, op: concat, in: [e, t], dim: 1}\n  - {id: h, op: reshape, shape: [5, 2, 8]}\n  - {id: q, op: permute, dims: [0, 2, 1, 3]}\n  - {id: s, op: select, in: c, dim: 1, index: 0}\n  - {id: ids, op: mean, in: t, dims: [1]}\n",
    );
    let roles = |name: &str| {
        let n = net.nodes.iter().find(|n| n.name == name).unwrap();
        n.out_layouts[0].0.clone()
    };
    assert_eq!(roles("p"), vec![Batch, Channel, Space(0), Space(1)]);
    assert_eq!(roles("t"), vec![Batch, Tokens(vec![0, 1]), Channel]);
    assert_eq!(roles("cls"), vec![Other, Other, Other]);
    assert_eq!(roles("c"), vec![Batch, Sequence, Channel]);
    assert_eq!(roles("h")[..2], [Batch, Sequence]);
    assert_eq!(roles("q")[..3], [Batch, roles("h")[2].clone(), Sequence]);
    assert_eq!(roles("s"), vec![Batch, Channel]);
    // The mean over the tokens (a pooled feature vector): batch and channels.
    assert_eq!(roles("ids"), vec![Batch, Channel]);
    // A token-id input is a sequence; its embedding adds the channels.
    let net = common::net(
        "format: \"archscope/1\"\nname: m\ninputs: {ids: {tokens: 6, vocab: 9}}\nnodes:\n  - {id: wte, op: embedding, num: 9, dim: 4}\n",
    );
    assert_eq!(net.nodes[0].out_layouts[0].0, vec![Batch, Sequence]);
    assert_eq!(
        net.nodes[1].out_layouts[0].0,
        vec![Batch, Sequence, Channel]
    );
}

#[test]
fn input_sets_the_length_of_a_token_input() {
    // `--input 12` on a model declared with 8 tokens: 12 ids per sample, the vocabulary kept.
    let dir = common::scratch("token_input");
    let file = dir.join("gpt.yaml");
    std::fs::write(
        &file,
        "format: \"archscope/1\"\nname: m\ninputs: {ids: {tokens: 8, vocab: 50}}\nnodes:\n  - {id: wte, op: embedding, num: 50, dim: 16}\n",
    )
    .unwrap();
    let v = common::json(&[
        "summary",
        common::arg(&file),
        "--input",
        "12",
        "--format",
        "json",
    ]);
    assert_eq!(
        common::json_layer(&v, "wte")["output"],
        serde_json::json!([1, 12, 16])
    );
}
