//! `archscope convert`'s blocks inside blocks (docs/ONNX.md, "convert", "Blocks inside
//! blocks"): the modules inside a block definition's instances (RegNetY's squeeze-excitation
//! `se`, R(2+1)D's `conv1`/`conv2`, MaxViT's `mbconv`/`window`/`grid` layers inside a stage)
//! become block nodes of the definition, with definitions of their own; the zoo's exports
//! convert back to the zoo's layer paths and figures (torchvision's, tests/data/
//! torchvision_zoo.json and video_audio_reference.json); and a weighted file with nested blocks (scripts/onnx_swin.py's
//! MaxViT, `archscope export` with weights) runs with its converted weights, loaded by the
//! nested paths, to onnxruntime's output.

use crate::common::{self, data_json, u64s, zoo_net};
use crate::onnx_convert::{converted, read_back};
use archscope::onnx::export::{export_bytes, ExportOptions};
use archscope::onnx::{self, convert};
use archscope::{analyze, exec, Dtype, Network};

fn names(net: &Network) -> Vec<&str> {
    net.nodes.iter().map(|n| n.name.as_str()).collect()
}

fn defs(v: &[(&str, &[(&str, usize)])]) -> Vec<(String, Vec<(String, usize)>)> {
    v.iter()
        .map(|(b, us)| {
            (
                b.to_string(),
                us.iter().map(|(u, k)| (u.to_string(), *k)).collect(),
            )
        })
        .collect()
}

/// The zoo model `model` exported graph-only, imported and converted.
fn zoo_converted(model: &str) -> (Network, Network, convert::Converted) {
    let zoo = zoo_net(model);
    let bytes = export_bytes(&zoo, None, ExportOptions::default()).unwrap();
    let file = format!("{model}.onnx");
    let imp = onnx::import_sized(&file, &bytes, 1, None).unwrap();
    let c = convert::convert(&file, &imp).unwrap();
    let back = read_back(&file, &c, 1);
    (zoo, back, c)
}

/// torchvision's parameters, buffers and MACs (from `reference`: tests/data/
/// torchvision_zoo.json, or video_audio_reference.json for the video models).
fn assert_torchvision_figures(reference: &str, model: &str, back: &Network) {
    let b = analyze(back, Dtype::F32).unwrap();
    let r = &data_json(reference)["models"][model];
    assert_eq!(
        (b.totals.params, b.totals.buffers, b.totals.macs),
        (
            r["params"].as_u64().unwrap(),
            r["buffers"].as_u64().unwrap(),
            r["macs"].as_u64().unwrap()
        ),
        "{model}"
    );
}

#[test]
fn regnet_y_squeeze_excitation_is_a_block_inside_the_bottleneck() {
    // The zoo's regnet_y_400mf: each bottleneck uses `squeeze_excitation` as its node `se`
    // (fc1 reduces to a quarter of the block's input width, fc2 restores the width).
    let (zoo, back, c) = zoo_converted("regnet_y_400mf");
    // `block1` and each stage's first bottleneck (a projection shortcut) use one definition,
    // the other bottlenecks (an identity shortcut) another; both use the `se` block.
    assert_eq!(
        c.definitions,
        defs(&[
            (
                "block_block",
                &[("block1", 0), ("block2", 0), ("block3", 0), ("block4", 0)]
            ),
            (
                "block_block_2",
                &[("block2", 1), ("block3", 1), ("block4", 1)]
            ),
            ("se_block", &[("se", 0), ("se", 0)]),
        ])
    );
    for line in [
        "      - {id: se, use: se_block, with: {width: \"$se_fc1_width\", fc2_width: \"$width\"}}\n",
        "  se_block:\n    params: {width: required, fc2_width: required}\n    nodes:\n      - {id: avgpool, op: global_avgpool}\n      - {id: fc1, op: conv2d, out: \"$width\", kernel: 1, act: relu}\n",
        // block2's first: 48 → 104 channels, squeeze 48 / 4 = 12; the others 104 / 4 = 26.
        "  - {id: block2, use: block_block, repeat: {count: 1, from: 0}, with: {width: 104, groups: 13, se_fc1_width: 12}}\n",
        "  - {id: block2, use: block_block_2, repeat: {count: 2, from: 1}, with: {width: 104, groups: 13, se_fc1_width: 26}}\n",
    ] {
        assert!(c.text.contains(line), "{line}\n{}", c.text);
    }
    // The zoo's layer paths, every one.
    let (mut pz, mut pb) = (names(&zoo), names(&back));
    pz.sort_unstable();
    pb.sort_unstable();
    assert_eq!(pz, pb);
    assert!(pb.contains(&"block3.5.se.fc2.sigmoid"), "{pb:?}");
    assert_torchvision_figures("torchvision_zoo.json", "regnet_y_400mf", &back);
}

#[test]
fn r2plus1d_conv2plus1d_modules_are_blocks_inside_the_basic_block() {
    // The zoo's r2plus1d_18: each basic block's `conv1` and `conv2` are (2+1)-D convolutions
    // (a spatial 1×3×3 then a temporal 3×1×1); conv2's has no activation after its temporal
    // convolution, so it is a second definition.
    let (_, back, c) = zoo_converted("r2plus1d_18");
    assert_eq!(
        c.definitions,
        defs(&[
            (
                "layer_block",
                &[("layer1", 0), ("layer2", 0), ("layer3", 0), ("layer4", 0)]
            ),
            ("conv_block", &[("conv1", 0)]),
            ("conv_block_2", &[("conv2", 0)]),
        ])
    );
    for line in [
        "      - {id: conv1, use: conv_block, with: {width: \"$width\", stride: \"$stride\", t_width: \"$conv1_t_width\", t_stride: \"$conv1_t_stride\"}}\n",
        "      - {id: t, op: conv3d, out: \"$t_width\", kernel: [3, 1, 1], padding: [1, 0, 0], bias: false, bn: true}\n",
        // torchvision's midplanes: 64·128·27 // (64·9 + 3·128) = 230 in layer2's first block.
        "  - {id: layer2, use: layer_block, repeat: 2, with: {width: 288, conv1_t_width: 128}, first: {width: 230, stride: [1, 2, 2], conv1_t_stride: [2, 1, 1], first_only: true}}\n",
    ] {
        assert!(c.text.contains(line), "{line}\n{}", c.text);
    }
    let n = names(&back);
    for want in [
        "layer1.0.conv1.s",
        "layer2.0.conv1.t.bn",
        "layer4.1.conv2.t.bn",
        "layer3.0.downsample.bn",
    ] {
        assert!(n.contains(&want), "{want} not in {n:?}");
    }
    // The zoo's stem (`stem.s`, `stem.t`) is a module alone at the top level, not a block
    // node here (`stem_s`, `stem_t`).
    assert!(n.contains(&"stem_s.bn"), "{n:?}");
    assert_torchvision_figures("video_audio_reference.json", "r2plus1d_18", &back);
}

#[test]
fn maxvit_nested_blocks_weights_load_by_path_and_run_as_onnxruntime() {
    // scripts/onnx_swin.py's tiny MaxViT (`archscope export` with weights): each stage's
    // MBConv, window and grid attention are blocks inside the stage's block.
    let file = "maxvit_tiny.onnx";
    let r = &data_json("onnx_swin_reference.json")["models"]["maxvit_tiny"]["onnx"];
    let shape: Vec<usize> = u64s(&r["input_shape"])
        .iter()
        .map(|&d| d as usize)
        .collect();
    let (net, imp, c) = converted(file, shape[0] as u64);
    assert_eq!(
        c.blocks,
        vec![("stage1".to_string(), 1), ("stage2".to_string(), 1)]
    );
    assert_eq!(
        c.definitions,
        defs(&[
            ("stage_block", &[("stage1", 0), ("stage2", 0)]),
            ("mbconv_block", &[("mbconv", 0)]),
            ("window_block", &[("window", 0)]),
            ("grid_block", &[("grid", 0)]),
        ])
    );
    assert!(
        c.text.contains("      - {id: mbconv, use: mbconv_block, with: {width: \"$width\", conv_a_width: \"$mbconv_conv_a_width\", se_fc1_width: \"$mbconv_se_fc1_width\"}}\n"),
        "{}",
        c.text
    );
    let back = read_back(file, &c, shape[0] as u64);
    let have: Vec<&str> = c.weights.iter().map(|w| w.0.as_str()).collect();
    for want in [
        "stage1.mbconv.se_fc1.weight",
        "stage2.window.attn.relative_position_bias_table",
        "stage2.grid.fc2.bias",
        "stage1.mbconv.conv_a.bn.running_var",
    ] {
        assert!(have.contains(&want), "{want} not in {have:?}");
    }
    assert_eq!(c.weights.len(), imp.weights.len());
    let bytes = convert::safetensors_bytes(&c.weights).unwrap();
    let w = exec::load_safetensors(&back, &bytes, "converted.safetensors").unwrap();
    let x: Vec<f32> = r["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let input = archscope::tensor::Tensor::new(shape, x);
    let got = exec::run(&back, &w, std::slice::from_ref(&input), None).unwrap();
    let want: Vec<f64> = r["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    common::assert_onnxruntime_output(file, &got.outputs[0].data, &want);
    // The same as the imported file run on its own weights.
    let direct_w = onnx::weights(&net, &imp).unwrap().unwrap();
    let direct = exec::run(&net, &direct_w, &[input], None).unwrap();
    for (k, (g, d)) in got.outputs[0]
        .data
        .iter()
        .zip(&direct.outputs[0].data)
        .enumerate()
    {
        assert!(
            (g - d).abs() <= 1e-6,
            "output {k}: converted {g}, direct {d}"
        );
    }
}
