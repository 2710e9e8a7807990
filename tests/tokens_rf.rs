//! Tensor layouts and receptive fields on tokens: which dimension holds which input axis
//! (`NetNode::out_layouts`), fields that follow spatial axes into tokens, "the whole input"
//! after a layer that mixes tokens globally, a linear layer per position, and the located error
//! of a linear layer whose last dimension is a spatial axis. Every figure is derived by hand
//! beside its assertion.

use crate::common;

use crate::common::{build_error, field_of, json, layer, net, scratch, yaml_analysis};
use archscope::layers::{Layout, Role};
use archscope::receptive::Q;

/// A ViT-like stem on a 3×32×32 image: an 8×8/8 patch convolution (4×4 patches of 8 features),
/// its spatial axes flattened into 16 tokens, a softmax over the tokens (global token mixing,
/// as attention is), then a linear layer per token.
const PATCHES: &str = "inputs: {x: [3, 32, 32]}
nodes:
  - {id: patch, op: conv2d, out: 8, kernel: 8, stride: 8}
  - {id: tokens, op: flatten, start_dim: 2}
  - {id: mix, op: softmax, dim: 2}
  - {id: perpos, op: linear, out: 8, in: tokens}
";

#[test]
fn layouts_at_build() {
    use Role::*;
    let n = net(PATCHES);
    let lay = |name: &str| -> Layout {
        n.nodes.iter().find(|x| x.name == name).unwrap().out_layouts[0].clone()
    };
    assert_eq!(lay("x"), Layout(vec![Batch, Channel, Space(0), Space(1)]));
    assert_eq!(
        lay("patch"),
        Layout(vec![Batch, Channel, Space(0), Space(1)])
    );
    // flatten(2) of N×8×4×4: the 4×4 grid row-major into 16 tokens.
    assert_eq!(
        lay("tokens"),
        Layout(vec![Batch, Channel, Tokens(vec![0, 1])])
    );
    assert_eq!(lay("tokens").letters(2), "N×C×T(H·W)");
    // A node's input layouts are its producers' output layouts.
    let perpos = n.nodes.iter().find(|x| x.name == "perpos").unwrap();
    assert_eq!(perpos.in_layouts, vec![lay("tokens")]);
}

#[test]
fn tokens_keep_the_patch_field_and_global_mixing_sees_the_whole_input() {
    let a = yaml_analysis(PATCHES);
    // The patch convolution: size 8, jump 8, start (8−1)/2 = 7/2 on both axes.
    let p = field_of(&a, "patch");
    assert_eq!(p.axes.len(), 2);
    for ax in &p.axes {
        assert_eq!(
            (ax.size, ax.jump, ax.start),
            (Q::from(8), Q::from(8), Q::new(7, 2))
        );
    }
    // Flattening the grid into tokens moves no unit: the same field per input axis.
    let t = field_of(&a, "tokens");
    assert_eq!(t.axes, p.axes);
    assert!(!t.whole);
    // A softmax over the tokens mixes all 16: every unit sees the whole 32×32 input.
    let m = field_of(&a, "mix");
    assert!(m.whole);
    for ax in &m.axes {
        assert_eq!((ax.size, ax.min_size), (Q::from(32), Q::from(32)));
        assert_eq!(ax.start, Q::new(31, 2));
    }
    // A linear on the last dimension of N×8×16 mixes the tokens (token mixing): the output
    // N×8×8 has no token axis left (its last is features), so no field.
    assert!(layer(&a, "perpos").rf.is_none());
}

#[test]
fn whole_input_is_said_per_layer_in_rf() {
    let dir = scratch("tokens_rf_whole");
    let path = dir.join("m.yaml");
    std::fs::write(&path, PATCHES).unwrap();
    let p = path.to_str().unwrap();
    let v = json(&["rf", p, "--format", "json"]);
    let layers = v["layers"].as_array().unwrap();
    let rf = |name: &str| {
        layers
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))["rf"]
            .clone()
    };
    assert_eq!(rf("mix")["whole_input"], true);
    assert_eq!(rf("mix")["size"], serde_json::json!([32, 32]));
    assert!(rf("tokens").get("whole_input").is_none());
    assert_eq!(rf("tokens")["size"], serde_json::json!([8, 8]));
    // Not a spatial field at all: null, a distinct state.
    assert!(rf("perpos").is_null());
    let text = common::ok_text(&["rf", p]);
    let row = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("{name} in\n{text}"))
    };
    let row_mix = row("mix");
    assert!(
        row_mix.contains("whole input (global token mixing)"),
        "{row_mix}"
    );
    let row_perpos = row("perpos");
    assert!(
        row_perpos.contains("global") && !row_perpos.contains("whole input"),
        "{row_perpos}"
    );
    // `summary`'s RF column says it too.
    let summary = common::ok_text(&["summary", p]);
    let srow = summary
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("mix"))
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(srow.contains("whole input"), "{srow}");
    assert!(
        text.contains("Final field (`mix`): the whole 32×32 input — a layer before it mixes the tokens globally (self-attention); jump 8."),
        "{text}"
    );
}

#[test]
fn linear_on_a_spatial_last_axis_is_a_located_error() {
    // The tokens of a patch convolution, unflattened: linear on N×768×14×14's width.
    let text = "inputs: {x: [3, 224, 224]}
nodes:
  - {id: patch, op: conv2d, out: 768, kernel: 16, stride: 16}
  - {id: qkv, op: linear, out: 2304}
";
    let e = build_error("vit.yaml", text).to_string();
    assert!(
        e.starts_with("linear applies to the last dimension, and the last dimension of this 768×14×14 input (N×C×H×W) is the width (spatial axis 1): it would mix the 14 positions along it instead of the 768 channels"),
        "{e}"
    );
    assert!(e.contains("vit.yaml:4:5"), "{e}");
    assert!(e.contains("in layer `qkv`"), "{e}");
    assert!(
        e.contains("flatten first: `{op: flatten}`")
            && e.contains("permute first: `{op: permute, dims: [0, 2, 3, 1]}`"),
        "{e}"
    );
    // A signal N×C×L: the length.
    let text = "inputs: {x: [4, 100]}\nnodes:\n  - {id: fc, op: linear, out: 10}\n";
    let e = build_error("sig.yaml", text).to_string();
    assert!(
        e.contains("the last dimension of this 4×100 input (N×C×L) is the length (spatial axis 0): it would mix the 100 positions along it instead of the 4 channels"),
        "{e}"
    );
    assert!(e.contains("dims: [0, 2, 1]"), "{e}");
    // The same linear on tokens whose last axis is the features builds (per token).
    let ok = "inputs: {x: [3, 32, 32]}
nodes:
  - {id: patch, op: conv2d, out: 8, kernel: 8, stride: 8}
  - {op: flatten, start_dim: 1}
  - {id: fc, op: linear, out: 10}
";
    let a = yaml_analysis(ok);
    // flatten(1) of N×8×4×4 mixes channels with space: a CNN head, no field after it.
    assert!(layer(&a, "fc").rf.is_none());
}

#[test]
fn convnext_fields_pass_through_its_channels_last_blocks() {
    // ConvNeXt-T's block: depthwise 7×7 (on N×C×H×W), then permute to N×H×W×C, layer norm,
    // two per-position linears and the permute back. Only the 7×7 convolution widens the field
    // (6 units of the current jump per block); the permutes and linears move none. By hand:
    // stem 4×4/4: size 4, jump 4. Stage 1, 3 blocks: 4 + 3·6·4 = 76; downsample 2×2/2:
    // + 1·4 = 80, jump 8. Stage 2: 80 + 3·6·8 = 224; + 8 = 232, jump 16. Stage 3:
    // 232 + 9·6·16 = 1096; + 16 = 1112, jump 32. Stage 4: 1112 + 3·6·32 = 1688, jump 32.
    let a = common::analysis(&common::zoo_net("convnext_tiny"));
    let last = a
        .layers
        .iter()
        .rev()
        .find(|l| l.rf.is_some())
        .expect("a layer with a field");
    assert_eq!(last.name, "stage4.2.sum");
    let f = last.rf.as_ref().unwrap();
    for ax in &f.axes {
        assert_eq!((ax.size, ax.jump), (Q::from(1688), Q::from(32)));
    }
    // The first block's permute keeps the depthwise convolution's field: 4 + 6·4 = 28.
    let p = field_of(&a, "stage1.0.to_last");
    for ax in &p.axes {
        assert_eq!((ax.size, ax.jump), (Q::from(28), Q::from(4)));
    }
}
