//! The sizes a layer's expressions see at every spatial rank (docs/FORMAT.md, "Expressions"):
//! `in_ch`, and `in_l` on N×C×L, `in_h`, `in_w` on N×C×H×W, `in_d`, `in_h`, `in_w` on
//! N×C×D×H×W; a size of another rank is an unknown parameter, and none of them can name a
//! model parameter. Every expected shape is derived by hand beside its assertion.

use crate::common::{build_error, layer, yaml_analysis};

fn shape(a: &archscope::Analysis, name: &str) -> Vec<u64> {
    layer(a, name).outputs[0].0.clone()
}

#[test]
fn sequence_binds_in_l() {
    let a = yaml_analysis(
        r#"
format: "archscope/1"
name: seq
inputs:
  x: [4, 100]
nodes:
  - {id: a, op: conv1d, out: $(in_ch * 2), kernel: $(in_l // 10)}
  - {id: b, op: conv1d, out: $in_l, kernel: 1}
"#,
    );
    // a: out = 4·2 = 8, kernel = 100 // 10 = 10, L = 100 − 10 + 1 = 91.
    assert_eq!(shape(&a, "a"), [1, 8, 91]);
    // b: out = in_l = 91 (a's length), kernel 1 keeps L = 91.
    assert_eq!(shape(&a, "b"), [1, 91, 91]);
}

#[test]
fn volume_binds_in_d_in_h_in_w() {
    let a = yaml_analysis(
        r#"
format: "archscope/1"
name: vol
inputs:
  x: [3, 8, 16, 32]
nodes:
  - {id: a, op: conv3d, out: $(in_d + in_h + in_w), kernel: [$in_d, 3, 3]}
  - {id: b, op: conv3d, out: $(in_d * 100 + in_h), kernel: [1, 1, $(in_w // 10)]}
"#,
    );
    // a: out = 8 + 16 + 32 = 56; kernel [8, 3, 3]: D 8 − 8 + 1 = 1, H 16 − 3 + 1 = 14,
    // W 32 − 3 + 1 = 30.
    assert_eq!(shape(&a, "a"), [1, 56, 1, 14, 30]);
    // b sees a's output: out = 1·100 + 14 = 114; kernel [1, 1, 30 // 10 = 3]: W 30 − 3 + 1 = 28.
    assert_eq!(shape(&a, "b"), [1, 114, 1, 14, 28]);
}

#[test]
fn image_keeps_in_h_in_w() {
    let a = yaml_analysis(
        r#"
format: "archscope/1"
name: img
inputs:
  x: [3, 20, 30]
nodes:
  - {id: a, op: conv2d, out: $(in_h + in_w), kernel: 1}
  - {id: b, op: conv2d, out: $in_ch, kernel: [$(in_h // 10), $(in_w // 10)]}
"#,
    );
    // a: out = 20 + 30 = 50, kernel 1 keeps 20×30.
    assert_eq!(shape(&a, "a"), [1, 50, 20, 30]);
    // b: out = in_ch = 50; kernel [2, 3]: H 20 − 2 + 1 = 19, W 30 − 3 + 1 = 28.
    assert_eq!(shape(&a, "b"), [1, 50, 19, 28]);
}

#[test]
fn a_size_of_another_rank_is_unknown() {
    // Every size name each rank does not bind.
    for (input, op, name) in [
        ("[3, 20, 30]", "conv2d", "in_l"),
        ("[3, 20, 30]", "conv2d", "in_d"),
        ("[4, 100]", "conv1d", "in_h"),
        ("[4, 100]", "conv1d", "in_w"),
        ("[4, 100]", "conv1d", "in_d"),
        ("[3, 8, 16, 32]", "conv3d", "in_l"),
    ] {
        let text = format!(
            "format: \"archscope/1\"\nname: m\ninputs:\n  x: {input}\nnodes:\n  - {{id: a, op: {op}, out: ${name}, kernel: 1}}\n"
        );
        let e = build_error("m.yaml", &text).to_string();
        assert!(
            e.contains(&format!("unknown parameter `{name}`")),
            "{input} {name}: {e}"
        );
    }
}

#[test]
fn the_sizes_cannot_name_a_parameter() {
    for name in ["in_l", "in_d"] {
        let text = format!(
            "format: \"archscope/1\"\nname: m\nparams: {{{name}: 3}}\ninputs:\n  x: [4, 100]\nnodes:\n  - {{id: a, op: conv1d, out: 8, kernel: 1}}\n"
        );
        let e = build_error("m.yaml", &text).to_string();
        assert!(
            e.contains(&format!("parameter `{name}` has the name of a builtin")),
            "{name}: {e}"
        );
    }
}
