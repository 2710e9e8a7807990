//! MaxViT against PyTorch: tests/data/maxvit_reference.json (scripts/maxvit_reference.py) holds,
//! for small chains of torchvision's own MaxViT modules — `WindowPartition`, `SwapAxes` for
//! grid attention, `RelativePositionalMultiHeadAttention`, `SwapAxes`, `WindowDepartition`
//! (block and grid attention, batch 2, rectangular maps, one head, one window) — PyTorch's
//! output with every parameter set by `formula` and the buffer as torchvision computes it, the
//! parameter and buffer counts, what FlopCounterMode, fvcore, ptflops, thop and torchinfo
//! measured, and what autograd saved; and torchvision's `maxvit_t` logits at 224×224 under
//! `formula` weights. Each case here: the same tensors loaded by name give the same output by
//! both executor paths (≤ 1e-4), archscope's own buffer equals torchvision's, the counts and
//! every preset's charge are equal, the training rule saves what autograd saved, and `check`
//! agrees; the zoo model loads torchvision's state-dict names and gives its logits. The errors
//! name the key, the line and the fix.

use crate::common;

use crate::common::{checked, data_json, f32s, formula, outputs_both_ways, usizes};
use archscope::{analyze, convention, exec, BuildOptions, Convention, Dtype, Network};
use serde_json::Value;

fn doc() -> Value {
    data_json("maxvit_reference.json")
}

/// The tool versions the figures hold for: thop 0.1.1, as tests/data/conventions.json (thop
/// 2.x, ultralytics-thop, also counts `torch.einsum`).
#[test]
fn reference_versions() {
    let v = &doc()["produced_with"];
    assert_eq!(v["thop"], "0.1.1-2209072238");
    assert_eq!(v["ptflops"], "0.7.5");
    assert_eq!(v["fvcore"], "0.1.5.post20221221");
    assert_eq!(v["torchinfo"], "1.8.0");
}

fn cases() -> Vec<Value> {
    let cases = doc()["cases"].as_array().unwrap().clone();
    assert_eq!(cases.len(), 6);
    cases
}

/// The case's chain on its N×C×H×W input (at batch `batch`, default the case's).
fn case_net_at(case: &Value, batch: Option<u64>) -> Network {
    let shape = usizes(&case["input_shape"]);
    let yaml = format!(
        "format: \"archscope/1\"\nname: case\ninputs:\n  x: [{}, {}, {}]\nnodes:\n{}",
        shape[1],
        shape[2],
        shape[3],
        case["layer"].as_str().unwrap()
    );
    let opts = BuildOptions {
        batch: batch.unwrap_or(shape[0] as u64),
        ..BuildOptions::default()
    };
    Network::from_yaml("case.yaml", &yaml, &opts).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

fn case_net(case: &Value) -> Network {
    case_net_at(case, None)
}

fn op_index(net: &Network) -> usize {
    net.nodes.iter().position(|n| n.name == "op").unwrap()
}

#[test]
fn chains_match_pytorch() {
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
        let x = exec::Tensor::new(shape.clone(), formula("input", &shape));
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
fn own_buffer_is_torchvisions() {
    // archscope's relative_position_index for a fresh model against torchvision's.
    for case in cases() {
        let layer = case["layer"].as_str().unwrap();
        let net = case_net(&case);
        let w = exec::init_weights(&net, 0).unwrap();
        let k_op = op_index(&net);
        let specs = net.nodes[k_op].layer.weights();
        let t = case["state"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t[0] == "op.relative_position_index")
            .unwrap();
        let k = specs
            .iter()
            .position(|s| s.name == "relative_position_index")
            .unwrap();
        assert_eq!(specs[k].shape, usizes(&t[1]), "{layer}");
        let want: Vec<f32> = t[3]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap() as f32)
            .collect();
        assert_eq!(w.per_node[k_op][k].data, want, "{layer}");
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
        for (c, key) in [
            (Convention::Torchvision, "flopcounter_macs"),
            (Convention::Fvcore, "fvcore"),
            (Convention::Ptflops, "ptflops"),
            (Convention::Thop, "thop"),
            (Convention::Torchinfo, "torchinfo"),
        ] {
            // ptflops runs batch 1 and reports per sample.
            let net = case_net_at(&case, (c == Convention::Ptflops).then_some(1));
            let mut a = analyze(&net, Dtype::F32).unwrap();
            convention::recount(&net, &mut a, c).unwrap();
            assert_eq!(a.totals.macs, u(key), "{layer}: {key}");
        }
        checked(&net);
    }
}

#[test]
fn saved_for_backward_as_autograd_keeps() {
    // The chain's partitions and swaps save nothing (copies and views), so what autograd kept
    // is the attention's.
    for case in cases() {
        let layer = case["layer"].as_str().unwrap();
        let net = case_net(&case);
        let saved: u64 = net
            .nodes
            .iter()
            .filter(|n| !n.layer.is_input())
            .map(|n| {
                let t = n
                    .layer
                    .training(&n.in_shapes, &n.out_shapes, true, 4)
                    .unwrap();
                assert!(
                    t.saved.inputs.is_empty() && !t.saved.output,
                    "{layer} {}",
                    n.name
                );
                t.saved.extra_bytes
            })
            .sum();
        assert_eq!(
            saved,
            4 * case["saved_elements"].as_u64().unwrap(),
            "{layer}"
        );
    }
}

fn one_model(input: &str, nodes: &str) -> String {
    format!("format: \"archscope/1\"\nname: m\ninputs:\n  x: {input}\nnodes:\n{nodes}")
}

#[test]
fn errors_are_located_with_a_fix() {
    // A partition size that does not divide the map: at `size` (line 6), with the sizes that do.
    let e = common::build_error(
        "m.yaml",
        &one_model("[64, 28, 30]", "  - {op: window_partition, size: 7}\n"),
    )
    .to_string();
    assert!(
        e.contains("a partition size of 7 does not divide the 28×30 map of the input 1×64×28×30"),
        "{e}"
    );
    assert!(e.contains("m.yaml:6:"), "{e}");
    assert!(e.contains("(1, 2)"), "{e}");
    // A head size that does not divide the features.
    let e = common::build_error(
        "m.yaml",
        &one_model(
            "[48, 14, 14]",
            "  - {op: window_partition, size: 7}\n  - {op: relative_position_attention, head_dim: 32, size: 7}\n",
        ),
    )
    .to_string();
    assert!(
        e.contains("a head size of 32 does not divide the 48 features"),
        "{e}"
    );
    assert!(e.contains("m.yaml:7:"), "{e}");
    // The attention's size against the partition's tokens (grid attention's partition size is
    // H/7, its attention's 7).
    let e = common::build_error(
        "m.yaml",
        &one_model(
            "[64, 14, 14]",
            "  - {op: window_partition, size: 2}\n  - {op: relative_position_attention, head_dim: 32, size: 7}\n",
        ),
    )
    .to_string();
    assert!(
        e.contains(
            "a partition size of 7 makes 49 tokens per group, but the input 1×49×4×64 has 4"
        ),
        "{e}"
    );
    assert!(e.contains("max_seq_len is size²"), "{e}");
    // Attention on a map that was not partitioned.
    let e = common::build_error(
        "m.yaml",
        &one_model(
            "[64, 49, 49]",
            "  - {op: relative_position_attention, head_dim: 32, size: 7}\n",
        ),
    )
    .to_string();
    assert!(e.contains("has input positions there"), "{e}");
    assert!(e.contains("window_partition"), "{e}");
    // A departition grid that does not hold the windows.
    let e = common::build_error(
        "m.yaml",
        &one_model(
            "[64, 14, 14]",
            "  - {op: window_partition, size: 7}\n  - {op: window_departition, size: 7, grid: [2, 1]}\n",
        ),
    )
    .to_string();
    assert!(
        e.contains("a grid of 2×1 windows is 2, but the input 1×4×49×64 holds 4"),
        "{e}"
    );
    assert!(e.contains("m.yaml:7:"), "{e}");
    // Both stochastic-depth schedules at once.
    let e = common::build_error(
        "m.yaml",
        &one_model(
            "[8, 4, 4]",
            "  - {op: stochastic_depth, p: 0.2, depth: [1, 10], linspace: [1, 10]}\n",
        ),
    )
    .to_string();
    assert!(
        e.contains("`depth` and `linspace` are two schedules"),
        "{e}"
    );
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
            t[3]["values"][5] = 25.into();
        }
    }
    let w = exec::load_safetensors(&net, &common::reference_state_file(&state), "x.safetensors")
        .unwrap();
    let s = usizes(&case["input_shape"]);
    let x = exec::Tensor::zeros(&s);
    let e = exec::run(&net, &w, &[x], None).unwrap_err().to_string();
    assert!(
        e.contains("relative_position_index holds 25 at position 5, outside the 25 rows"),
        "{e}"
    );
}

#[test]
fn zoo_model_loads_torchvision_names_and_gives_its_logits() {
    // maxvit_t at 1×3×224×224 (its smallest input): PyTorch's logits with every parameter set
    // by `formula` under its torchvision state-dict name. The same tensors, by name, through
    // the model file's `weights_names:` (the int64 relative_position_index buffers are the
    // model's own, which `own_buffer_is_torchvisions` checks against torchvision's), run by
    // both executor paths.
    let m = &doc()["model"];
    let shape = usizes(&m["input_shape"]);
    let net = common::zoo_net_with(
        "maxvit_t",
        &common::options_for(&common::u64s(&m["input_shape"])),
    );
    let buffers = common::own_tensors(&net);
    let tensors: Vec<common::StTensor> = m["state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let n = t[0].as_str().unwrap().to_string();
            let s = usizes(&t[1]);
            let vals = if t[3].as_bool().unwrap() {
                formula(&n, &s)
            } else if n.ends_with("num_batches_tracked") {
                vec![0.0]
            } else if n.ends_with("running_var") || n.ends_with("running_mean") {
                // torchvision's fresh batch norm statistics.
                vec![if n.ends_with("running_var") { 1.0 } else { 0.0 }; s.iter().product()]
            } else {
                buffers
                    .get(&n)
                    .unwrap_or_else(|| panic!("no buffer {n}"))
                    .clone()
            };
            common::st_tensor(n, s, t[2].as_str().unwrap(), &vals)
        })
        .collect();
    let file = common::safetensors_of(&tensors);
    let w = exec::load_safetensors(&net, &file, "maxvit_t.safetensors")
        .unwrap_or_else(|e| panic!("{e}"));
    let x = exec::Tensor::new(shape.clone(), formula("input", &shape));
    common::assert_output_both_ways("maxvit_t", &net, &w, &x, &f32s(&m["logits"]));
}

#[test]
fn linspace_is_numpys_schedule() {
    // np.linspace(0, 0.2, 11)[3] is 3·(0.2/10) = 0.06, while 0.2·3/10 (`depth: [3, 10]`, the
    // other models' schedule) is 0.06000000000000001; the last rate is p itself.
    let rate = |key: &str| {
        let net = common::net(&format!(
            "inputs: {{x: [8, 4, 4]}}\nnodes:\n  - {{id: drop, op: stochastic_depth, p: 0.2, {key}}}\n"
        ));
        let label = net.nodes[1].layer.label();
        label
            .strip_prefix("stochastic depth ")
            .and_then(|r| r.strip_suffix(" row"))
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(rate("linspace: [3, 10]").to_bits(), 0.06f64.to_bits());
    assert_eq!(
        rate("depth: [3, 10]").to_bits(),
        (0.2 * 3.0 / 10.0f64).to_bits()
    );
    assert_ne!(rate("linspace: [3, 10]"), rate("depth: [3, 10]"));
    assert_eq!(rate("linspace: [10, 10]").to_bits(), 0.2f64.to_bits());
    assert_eq!(rate("linspace: [0, 10]"), 0.0);
    let e = common::build_error(
        "m.yaml",
        "inputs: {x: [8, 4, 4]}\nnodes:\n  - {id: drop, op: stochastic_depth, p: 0.2, linspace: [11, 10]}\n",
    )
    .to_string();
    assert!(
        e.contains("`linspace: [11, 10]`: block 11 is outside 0..=10"),
        "{e}"
    );
    assert!(e.contains("m.yaml:3:"), "{e}");
    assert!(e.contains("write `linspace: [k, n]`"), "{e}");
}
