//! Swin's `shifted_window_attention` against PyTorch: tests/data/swin_reference.json
//! (scripts/swin_reference.py) holds, for one-layer models of torchvision's
//! `ShiftedWindowAttention` and `ShiftedWindowAttentionV2` (no shift, shifted with the mask,
//! padded, rectangular, the shift dropped where the window covers the map, V2's logit clamp),
//! PyTorch's output with every parameter and the input set by `formula` and the buffers as
//! torchvision computes them, the parameter and buffer counts, and what FlopCounterMode,
//! fvcore, ptflops, thop and torchinfo measured on that module. Each case here: the same
//! tensors loaded by name give the same output by both executor paths (≤ 1e-4), archscope's
//! own buffers equal torchvision's, the counts and every preset's charge are equal, and `check`
//! agrees (the kernel's tallied MACs with the analysis). The errors name the key and the fix.

use crate::common;

use crate::common::{checked, data_json, f32s, formula, outputs_both_ways, usizes};
use archscope::{analyze, convention, exec, BuildOptions, Convention, Dtype, Network};
use serde_json::Value;

fn case_net(case: &Value) -> Network {
    let layer = case["layer"].as_str().unwrap();
    let shape = usizes(&case["input_shape"]);
    // The model input is N×C×H×W; a permute makes the N×H×W×C map the op reads.
    let [h, w, c] = [shape[1], shape[2], shape[3]];
    // The padded cases need `pad: true` (torchvision pads; archscope asks for it).
    let pad = h % window_of(case)[0] != 0 || w % window_of(case)[1] != 0;
    let yaml = format!(
        "format: \"archscope/1\"\nname: case\ninputs:\n  x: [{c}, {h}, {w}]\nnodes:\n  - {{op: permute, dims: [0, 2, 3, 1]}}\n  - {{id: op, {}{}\n",
        if pad { "pad: true, " } else { "" },
        layer.trim_start_matches('{')
    );
    let opts = BuildOptions {
        batch: shape[0] as u64,
        ..BuildOptions::default()
    };
    Network::from_yaml("case.yaml", &yaml, &opts).unwrap_or_else(|e| panic!("{layer}: {e}"))
}

/// The window of a case, from its state: relative_position_index has (wh·ww)² entries and the
/// table (V1) or coordinates (V2) (2wh−1)·(2ww−1) rows.
fn window_of(case: &Value) -> [usize; 2] {
    let layer = case["layer"].as_str().unwrap();
    let w = layer.split("window: ").nth(1).unwrap();
    if let Some(rest) = w.strip_prefix('[') {
        let v: Vec<usize> = rest
            .split(']')
            .next()
            .unwrap()
            .split(", ")
            .map(|x| x.parse().unwrap())
            .collect();
        [v[0], v[1]]
    } else {
        let n = w.split(',').next().unwrap().parse().unwrap();
        [n, n]
    }
}

/// The N×H×W×C values `v` as the N×C×H×W model input (the model permutes them back).
fn nchw(shape: &[usize], v: &[f32]) -> exec::Tensor {
    let [n, h, w, c] = [shape[0], shape[1], shape[2], shape[3]];
    let mut out = vec![0f32; v.len()];
    for b in 0..n {
        for y in 0..h {
            for x in 0..w {
                for k in 0..c {
                    out[((b * c + k) * h + y) * w + x] = v[((b * h + y) * w + x) * c + k];
                }
            }
        }
    }
    exec::Tensor::new(vec![n, c, h, w], out)
}

/// The attention layer of a case's network.
fn op_index(net: &Network) -> usize {
    net.nodes.iter().position(|n| n.name == "op").unwrap()
}

fn cases() -> Vec<Value> {
    let doc = data_json("swin_reference.json");
    let cases = doc["cases"].as_array().unwrap().clone();
    assert_eq!(cases.len(), 9);
    cases
}

#[test]
fn outputs_match_pytorch() {
    for case in cases() {
        let layer = case["layer"].as_str().unwrap();
        let net = case_net(&case);
        let shape = usizes(&case["input_shape"]);
        let w = exec::load_safetensors(
            &net,
            &common::reference_state_file(&case["state"]),
            "x.safetensors",
        )
        .unwrap_or_else(|e| panic!("{layer}: {e}"));
        let x = nchw(&shape, &formula("input", &shape));
        let want = f32s(&case["output"]);
        assert_eq!(usizes(&case["output_shape"]), shape, "{layer}");
        for (path, out) in outputs_both_ways(&net, &w, &x) {
            assert_eq!(out.shape, shape, "{layer} ({path})");
            let worst = out
                .data
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
                .fold(0f32, f32::max);
            assert!(worst <= 1e-4, "{layer} ({path}): max relative |Δ| {worst}");
        }
    }
}

#[test]
fn own_buffers_are_torchvisions() {
    // The buffers archscope computes for a fresh model (relative_position_index, V2's
    // relative_coords_table) against the values torchvision registered.
    for case in cases() {
        let layer = case["layer"].as_str().unwrap();
        let net = case_net(&case);
        let w = exec::init_weights(&net, 0).unwrap();
        let k_op = op_index(&net);
        let specs = net.nodes[k_op].layer.weights();
        let mut seen = 0;
        for t in case["state"].as_array().unwrap() {
            let Some(vals) = t.get(3).and_then(|e| e.get("values")) else {
                continue;
            };
            let name = t[0].as_str().unwrap().trim_start_matches("op.");
            let k = specs
                .iter()
                .position(|s| s.name == name)
                .unwrap_or_else(|| panic!("{layer}: no buffer {name}"));
            assert_eq!(specs[k].shape, usizes(&t[1]), "{layer} {name}");
            let want = f32s(vals);
            let got = &w.per_node[k_op][k].data;
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst <= 1e-6, "{layer} {name}: |Δ| {worst}");
            seen += 1;
        }
        let v2 = layer.contains("v2: true");
        assert_eq!(seen, if v2 { 2 } else { 1 }, "{layer}");
    }
}

#[test]
fn counts_and_every_preset_match_the_tools() {
    for case in cases() {
        let layer = case["layer"].as_str().unwrap();
        let net = case_net(&case);
        let a = analyze(&net, Dtype::F32).unwrap();
        let u = |k: &str| case[k].as_u64().unwrap();
        assert_eq!(a.totals.params, u("params"), "{layer} params");
        assert_eq!(a.totals.buffers, u("buffers"), "{layer} buffers");
        assert_eq!(a.totals.macs, u("flopcounter_macs"), "{layer} MACs");
        let batch = usizes(&case["input_shape"])[0] as u64;
        for (c, key) in [
            (Convention::Torchvision, "flopcounter_macs"),
            (Convention::Fvcore, "fvcore"),
            (Convention::Ptflops, "ptflops"),
            (Convention::Thop, "thop"),
            (Convention::Torchinfo, "torchinfo"),
        ] {
            // ptflops runs batch 1 and reports per sample: the cases it measured at batch 2
            // are compared at batch 1.
            let (net, a) = if c == Convention::Ptflops && batch != 1 {
                let mut one = case.clone();
                one["input_shape"][0] = 1.into();
                let n = case_net(&one);
                let a = analyze(&n, Dtype::F32).unwrap();
                (n, a)
            } else {
                (case_net(&case), a.clone())
            };
            let mut a = a;
            convention::recount(&net, &mut a, c).unwrap();
            assert_eq!(a.totals.macs, u(key), "{layer}: {key}");
        }
        checked(&net);
    }
}

#[test]
fn saved_for_backward_as_autograd_keeps() {
    // The training rule's saved tensors against what autograd kept on the CPU
    // (saved_tensors_hooks: each storage once, parameters and buffers left out).
    for case in cases() {
        let layer = case["layer"].as_str().unwrap();
        let net = case_net(&case);
        let node = &net.nodes[op_index(&net)];
        let t = node
            .layer
            .training(&node.in_shapes, &node.out_shapes, true, 4)
            .unwrap();
        assert_eq!(
            t.saved.extra_bytes,
            4 * case["saved_elements"].as_u64().unwrap(),
            "{layer} {:?}",
            node.in_shapes
        );
    }
}

/// The op on an N×C×H×W input `[c, h, w]` permuted to channels last; the op's line is 7.
fn one_layer(input: &str, layer: &str) -> String {
    format!(
        "format: \"archscope/1\"\nname: m\ninputs:\n  x: {input}\nnodes:\n  - {{op: permute, dims: [0, 2, 3, 1]}}\n  - {{id: attn, op: shifted_window_attention, {layer}}}\n"
    )
}

#[test]
fn errors_are_located_with_a_fix() {
    // Heads not dividing the channels: at the `heads` value (line 7), with the head counts
    // that fit.
    let e = common::build_error("m.yaml", &one_layer("[96, 56, 56]", "heads: 5, window: 7"))
        .to_string();
    assert!(e.contains("5 heads do not divide the 96 channels"), "{e}");
    assert!(e.contains("m.yaml:7:"), "{e}");
    assert!(e.contains("1, 2, 3, 4, 6, 8, 12, 16"), "{e}");
    // A window that does not divide the map, without `pad: true`.
    let e = common::build_error("m.yaml", &one_layer("[96, 28, 30]", "heads: 3, window: 8"))
        .to_string();
    assert!(
        e.contains("the 8×8 window divides neither side of the 28×30 map"),
        "{e}"
    );
    assert!(e.contains("`pad: true` to pad the map to 32×32"), "{e}");
    let e = common::build_error("m.yaml", &one_layer("[96, 28, 32]", "heads: 3, window: 8"))
        .to_string();
    assert!(
        e.contains("does not divide the height 28 of the 28×32 map"),
        "{e}"
    );
    // A shift as large as the window.
    let e = common::build_error(
        "m.yaml",
        &one_layer("[96, 56, 56]", "heads: 3, window: 7, shift: 7"),
    )
    .to_string();
    assert!(
        e.contains("a shift of 7 is not smaller than the window's 7"),
        "{e}"
    );
    assert!(e.contains("`shift: 3`"), "{e}");
    // V2 with a window of 1 (torchvision divides by window − 1).
    let e = common::build_error(
        "m.yaml",
        &one_layer("[8, 8, 8]", "heads: 2, window: [1, 4], v2: true"),
    )
    .to_string();
    assert!(e.contains("v2 needs a window of at least 2"), "{e}");
    // An N×C×H×W map, not permuted: located at the layer, with the permute to write.
    let text = "format: \"archscope/1\"\nname: m\ninputs:\n  x: [96, 56, 56]\nnodes:\n  - {id: attn, op: shifted_window_attention, heads: 3, window: 7}\n";
    let e = common::build_error("m.yaml", text).to_string();
    assert!(e.contains("needs a channels-last N×H×W×C map"), "{e}");
    assert!(e.contains("m.yaml:6:"), "{e}");
    assert!(e.contains("{op: permute, dims: [0, 2, 3, 1]}"), "{e}");
}

#[test]
fn a_wrong_index_buffer_is_an_error() {
    // A checkpoint's relative_position_index out of the table's range is reported, not read
    // out of bounds.
    let case = &cases()[0];
    let net = case_net(case);
    let mut state = case["state"].clone();
    for t in state.as_array_mut().unwrap() {
        if t[0] == "op.relative_position_index" {
            t[3]["values"][5] = 49.into();
        }
    }
    let w = exec::load_safetensors(&net, &common::reference_state_file(&state), "x.safetensors")
        .unwrap();
    let s = usizes(&case["input_shape"]);
    let x = exec::Tensor::zeros(&[s[0], s[3], s[1], s[2]]);
    let e = exec::run(&net, &w, &[x], None).unwrap_err().to_string();
    assert!(
        e.contains("relative_position_index holds 49 at position 5, outside the 49 rows"),
        "{e}"
    );
}

#[test]
fn zoo_models_load_torchvision_names_and_give_its_logits() {
    // swin_t and swin_v2_t at 1×3×64×64 (every stage's map padded to the window): PyTorch's
    // logits with every parameter set by `formula` under its torchvision state-dict name. The
    // same tensors, by name, through the zoo models' `weights_names:` (the buffers — the int64
    // relative_position_index and V2's coordinates — are the model's own, which
    // `own_buffers_are_torchvisions` checks against torchvision's), run by both executor paths.
    let doc = data_json("swin_reference.json");
    let models = doc["models"].as_object().unwrap();
    assert_eq!(models.len(), 2);
    for (name, m) in models {
        let shape = usizes(&m["input_shape"]);
        let net =
            common::zoo_net_with(name, &common::options_for(&common::u64s(&m["input_shape"])));
        let buffers = common::own_tensors(&net);
        let tensors: Vec<common::StTensor> = m["state"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let n = t[0].as_str().unwrap().to_string();
                let s = usizes(&t[1]);
                let is_param = t[3].as_bool().unwrap();
                let vals = if is_param {
                    formula(&n, &s)
                } else {
                    buffers
                        .get(&n)
                        .unwrap_or_else(|| panic!("{name}: no buffer {n}"))
                        .clone()
                };
                common::st_tensor(n, s, t[2].as_str().unwrap(), &vals)
            })
            .collect();
        let file = common::safetensors_of(&tensors);
        let w = exec::load_safetensors(&net, &file, "x.safetensors")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let x = exec::Tensor::new(shape.clone(), formula("input", &shape));
        common::assert_output_both_ways(name, &net, &w, &x, &f32s(&m["logits"]));
    }
}
