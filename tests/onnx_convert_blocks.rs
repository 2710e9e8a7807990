//! `archscope convert`'s repeated blocks (docs/ONNX.md, "convert"): stages of one structure
//! share one block definition, and runs of alike modules that start after index 0 (torchvision
//! MobileNetV2's `features.2`–`features.3`, `features.4`–`features.6`, …) become block nodes
//! with `repeat: {count, from}` that keep PyTorch's layer paths. The block counts of every
//! committed ONNX file; a tiny MobileNetV2 of torchvision's own class, with weights
//! (scripts/onnx_convert_reference.py), reads back to PyTorch's parameter and buffer counts
//! and its converted weights load by path and run to onnxruntime's output.

use crate::common::{self, data_json, root, scratch, u64s};
use crate::onnx_convert::{committed, converted, read_back};
use archscope::onnx::{self, convert};
use archscope::{analyze, exec, Dtype};

/// (repeated-block nodes, block definitions) per committed ONNX file: the figures of
/// docs/ONNX.md's table. Every file is listed (a new file must be added here).
#[test]
fn block_counts_of_every_committed_file() {
    let want: &[(&str, usize, usize)] = &[
        ("arith.onnx", 0, 0),
        ("const_channel_dynamo.onnx", 0, 0),
        ("const_channel_torchscript.onnx", 0, 0),
        ("const_gain_dynamo.onnx", 0, 0),
        ("const_gain_torchscript.onnx", 0, 0),
        ("const_norm_buffer_dynamo.onnx", 0, 0),
        ("const_norm_buffer_torchscript.onnx", 0, 0),
        ("const_norm_dynamo.onnx", 0, 0),
        ("const_norm_torchscript.onnx", 0, 0),
        // The four stages of CNBlocks (one definition), the three downsamplers `features.2`,
        // `.4`, `.6` (LayerNorm2d + convolution: a second), and the two LayerNorm2d modules
        // `features.0.1` and `classifier.0` (exported as permute, layer norm, permute: a third).
        ("convnext_tiny_graph.onnx", 9, 3),
        // Five stages and the one-block last stage `features.7.0`, of the same definition.
        ("efficientnet_b0_graph.onnx", 6, 1),
        // scripts/onnx_maxvit.py's Einsum and Exp models: no modules of one structure.
        ("einsum_mix.onnx", 0, 0),
        ("exp_scale.onnx", 0, 0),
        ("exp_scale_graph.onnx", 0, 0),
        // inception3a … inception5b (tests/onnx_convert_named.rs).
        ("googlenet_graph.onnx", 9, 1),
        // GPT-2's `transformer.h.0` and `h.1`: one run of two, its `mlp` (c_fc, GELU, c_proj)
        // a block inside; the dynamo exporter flattens the module paths
        // (`m_transformer_h_0_ln_1`), so its nodes have no numbered siblings.
        ("gpt_tiny.onnx", 1, 2),
        ("gpt_tiny_dynamo.onnx", 0, 0),
        ("gpt_tiny_graph.onnx", 1, 2),
        // Each layer's attention also reads the mask input, from outside the block: no
        // `repeat` chain (a block reads only what the instance before it gives it).
        ("gpt_tiny_mask.onnx", 0, 0),
        ("gpt_tiny_mask_dynamic.onnx", 0, 0),
        ("gpt_tiny_mask_dynamic_dynamo.onnx", 0, 0),
        ("gpt_tiny_mask_dynamo.onnx", 0, 0),
        ("gpt_tiny_untied_graph.onnx", 1, 2),
        // Mixed_5b–5d, 6b–6e, 7b–7c: three definitions (tests/onnx_convert_named.rs).
        ("inception_v3_graph.onnx", 9, 3),
        // `archscope export`'s node names are layer paths: the two stages `stage1`, `stage2`
        // (named, each of one block of the same structure), with the blocks inside a stage,
        // `mbconv`, `window` and `grid` (tests/onnx_convert_nested.rs).
        ("maxvit_tiny.onnx", 2, 4),
        // The dynamo exporter's node names carry no module path (one stage besides).
        ("maxvit_tiny_dynamo.onnx", 0, 0),
        // torch.onnx.export's MaxViT: `blocks.0` and `blocks.1` (one MaxVitLayer each), one run
        // of two whose first instance differs in sizes only; inside, the MBConv
        // (`layers.0.layers.MBconv`), its `layers` and their squeeze-excitation.
        ("maxvit_tiny_torch.onnx", 1, 4),
        // Five runs and features.17 alone, of one definition.
        ("mobilenet_v2_graph.onnx", 6, 1),
        ("resnet18_dynamic_graph.onnx", 4, 1),
        ("resnet18_graph.onnx", 4, 1),
        // `stage1` (a run of two: the second block's window shifted) and `stage2` (one
        // unshifted block, named).
        ("swin_tiny.onnx", 2, 1),
        // The dynamo exporter's node names carry no module path (the attentions keep theirs,
        // from the namespace metadata, but the layers around them do not).
        ("swin_tiny_dynamo.onnx", 0, 0),
        // The two blocks `features.1.0` and `features.1.1`: one run of two.
        ("swin_tiny_torch.onnx", 1, 1),
        ("swin_v2_tiny.onnx", 2, 1),
        ("swin_v2_tiny_dynamo.onnx", 0, 0),
        ("swin_v2_tiny_torch.onnx", 1, 1),
        ("tiny_cnn.onnx", 0, 0),
        ("tiny_inception.onnx", 3, 1),
        ("tiny_mobilenet_v2.onnx", 2, 1),
        ("tiny_resnet.onnx", 2, 1),
        ("tiny_resnet_eval.onnx", 2, 1),
        ("tiny_resnet_nofold.onnx", 2, 1),
        ("two_tower.onnx", 0, 0),
        ("two_tower_graph.onnx", 0, 0),
        // `encoder.layers.encoder_layer_0` and `_1` (tests/onnx_convert_named.rs); the dynamo
        // exporter flattens the paths.
        ("vit_tiny.onnx", 2, 1),
        ("vit_tiny_dynamo.onnx", 0, 0),
        ("vit_tiny_graph.onnx", 2, 1),
        // Ultralytics' numbered modules alone (`model.2`, `model.6`: C2f blocks of one
        // structure) and the Detect head's `cv2.k`, one per scale (one structure, each reading
        // its own scale) besides the runs.
        ("yolo_tiny.onnx", 7, 4),
        ("yolo_tiny_predecode.onnx", 7, 4),
        ("yolo_v11_like_n_predecode_graph.onnx", 14, 4),
        ("yolo_v8_like_n_predecode_graph.onnx", 15, 4),
    ];
    let files = committed();
    let listed: Vec<&str> = want.iter().map(|w| w.0).collect();
    assert_eq!(files, listed);
    for &(f, groups, defs) in want {
        let (_, _, c) = converted(f, 1);
        assert_eq!((c.blocks.len(), c.definitions.len()), (groups, defs), "{f}");
        // Each top-level block node is a `use:` of a written definition, and each definition is
        // used (blocks inside blocks in the definitions).
        let top = c.text.split("\nnodes:\n").nth(1).unwrap();
        assert_eq!(top.matches(", use: ").count(), groups, "{f}");
        for (b, users) in &c.definitions {
            assert!(c.text.contains(&format!("\n  {b}:\n")), "{f}: {b}");
            assert_eq!(
                c.text.matches(&format!("use: {b},")).count()
                    + c.text.matches(&format!("use: {b}}}")).count(),
                users.len(),
                "{f}: {b}"
            );
        }
        // The header says so.
        assert!(
            c.text.contains(&format!(
                "; {groups} block nodes ({defs} block definitions)."
            )),
            "{f}"
        );
    }
}

#[test]
fn mobilenet_v2_runs_keep_pytorch_paths() {
    // torchvision's mobilenet_v2: features.1 (expansion 1, another structure) stays layers;
    // the runs of inverted residuals features.2–3, 4–6, 7–10, 11–13 and 14–16 (t, c,
    // n, s of torchvision's table: 6,24,2,2 · 6,32,3,2 · 6,64,4,2 · 6,96,3,1 · 6,160,3,2) are
    // five block nodes of one definition, each with its index range of `features`.
    let (net, _, c) = converted("mobilenet_v2_graph.onnx", 1);
    // features.17 alone (tests/onnx_convert_named.rs) uses the same definition.
    let want: Vec<(String, usize)> = [2, 3, 4, 3, 3, 1]
        .iter()
        .map(|&n| ("features".to_string(), n))
        .collect();
    assert_eq!(c.blocks, want);
    assert_eq!(
        c.definitions,
        vec![(
            "features_block".to_string(),
            [2, 4, 7, 11, 14, 17]
                .iter()
                .map(|&k| ("features".to_string(), k))
                .collect::<Vec<_>>()
        )]
    );
    for line in [
        "    params: {width: required, stride: 1, conv_2_width: required, rest_only: false}\n",
        "      - {id: conv_1_0, op: conv2d, out: \"$width\", kernel: 3, stride: \"$stride\", padding: 1, groups: \"$width\", bias: false, bn: true, act: relu6}\n",
        "      - {id: add, op: add, in: [conv_2, \"$in\"], when: \"$rest_only\"}\n",
        // Hidden width 6 × 16 = 96 in features.2, 6 × 24 = 144 in features.3; stride 2 first.
        "  - {id: features, use: features_block, repeat: {count: 2, from: 2}, with: {width: 144, conv_2_width: 24, rest_only: true}, first: {width: 96, stride: 2, rest_only: false}}\n",
        // features.11 keeps stride 1 (s = 1 in the table).
        "  - {id: features, use: features_block, repeat: {count: 3, from: 11}, with: {width: 576, conv_2_width: 96, rest_only: true}, first: {width: 384, rest_only: false}}\n",
    ] {
        assert!(c.text.contains(line), "{line}\n{}", c.text);
    }
    let back = read_back("mobilenet_v2_graph.onnx", &c, 1);
    let names: Vec<&str> = back.nodes.iter().map(|n| n.name.as_str()).collect();
    for want in [
        "features.2.conv_0_0",
        "features.2.conv_1_0.bn",
        "features.3.add",
        "features.4.conv_1_0.relu6",
        "features.10.conv_2.bn",
        "features.16.add",
        "features.17.conv_2",
        "features_1_conv_1",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    // The first of each run has no residual sum.
    for k in [2, 4, 7, 11, 14] {
        assert!(
            !names.contains(&format!("features.{k}.add").as_str()),
            "features.{k}.add"
        );
    }
    // Same figures as the import (and PyTorch's: tests/onnx_convert.rs).
    let a = analyze(&net, Dtype::F32).unwrap();
    let b = analyze(&back, Dtype::F32).unwrap();
    assert_eq!(
        (a.totals.params, a.totals.buffers, a.totals.macs),
        (b.totals.params, b.totals.buffers, b.totals.macs)
    );
    let zoo = data_json("torchvision_zoo.json");
    let m = &zoo["models"]["mobilenet_v2"];
    assert_eq!(
        (b.totals.params, b.totals.buffers),
        (
            m["params"].as_u64().unwrap(),
            m["buffers"].as_u64().unwrap()
        )
    );
    // summary --depth 1 folds the five runs and features.17 (16 instances) into one
    // `features` row.
    let dir = scratch("convert-mobilenet");
    let f = dir.join("m.yaml");
    std::fs::write(&f, &c.text).unwrap();
    let out = common::ok_text(&["summary", common::arg(&f), "--depth", "1"]);
    assert!(
        out.contains("│ features ") && out.contains("features_block ×16 ("),
        "{out}"
    );
}

#[test]
fn tiny_mobilenet_v2_weights_load_by_path_and_run_as_onnxruntime() {
    let r = &data_json("onnx_convert_reference.json")["tiny_mobilenet_v2"];
    let shape: Vec<usize> = u64s(&r["input_shape"])
        .iter()
        .map(|&d| d as usize)
        .collect();
    let file = "tiny_mobilenet_v2.onnx";
    let (net, imp, c) = converted(file, shape[0] as u64);
    assert!(
        c.text
            .contains("  - {id: features, use: features_block, repeat: {count: 2, from: 2}, ")
            && c.text
                .contains("  - {id: features, use: features_block, repeat: {count: 3, from: 4}, "),
        "{}",
        c.text
    );
    let names = [
        "features.2.conv_0_0.weight",
        "features.3.conv_1_0.bn.running_var",
        "features.6.conv_2.bn.bias",
        "features_1_conv_0_0.weight",
    ];
    converted_weights_run_as_onnxruntime(file, &net, &imp, &c, r, &names);
    // The CLI: convert --weights-out, then run --weights.
    let dir = scratch("convert-tiny-mobilenet");
    let yaml = dir.join("m.yaml");
    let st = dir.join("m.safetensors");
    let onnx_file = root().join("tests/data/onnx").join(file);
    common::ok(&[
        "convert",
        common::arg(&onnx_file),
        "-o",
        common::arg(&yaml),
        "--weights-out",
        common::arg(&st),
    ]);
    let ya = dir.join("y.npy");
    let yb = dir.join("o.npy");
    common::ok(&[
        "run",
        common::arg(&yaml),
        "--weights",
        common::arg(&st),
        "--save-output",
        common::arg(&ya),
    ]);
    common::ok(&[
        "run",
        common::arg(&onnx_file),
        "--save-output",
        common::arg(&yb),
    ]);
    assert_eq!(common::read_saved_npy(&ya), common::read_saved_npy(&yb));
}

/// The converted model of a committed weighted file (`c`, from `converted`) read back: PyTorch's
/// parameters and buffers (the reference `r` of its script), one tensor per state-dict entry
/// with `names` among them, and its converted weights, loaded by path, run to onnxruntime's
/// output within 1e-4 and within 1e-6 of running the imported file itself.
pub(crate) fn converted_weights_run_as_onnxruntime(
    file: &str,
    net: &archscope::Network,
    imp: &onnx::Import,
    c: &convert::Converted,
    r: &serde_json::Value,
    names: &[&str],
) {
    let shape: Vec<usize> = u64s(&r["input_shape"])
        .iter()
        .map(|&d| d as usize)
        .collect();
    let back = read_back(file, c, shape[0] as u64);
    let b = analyze(&back, Dtype::F32).unwrap();
    assert_eq!(b.totals.params, r["params"].as_u64().unwrap());
    assert_eq!(b.totals.buffers, r["buffers"].as_u64().unwrap());
    // One tensor per PyTorch state-dict entry, under the paths the converted model gives them.
    assert_eq!(c.weights.len(), r["state_dict"].as_array().unwrap().len());
    let have: Vec<&str> = c.weights.iter().map(|w| w.0.as_str()).collect();
    for want in names {
        assert!(have.contains(want), "{want} not in {have:?}");
    }
    let bytes = convert::safetensors_bytes(&c.weights).unwrap();
    let w = exec::load_safetensors(&back, &bytes, "converted.safetensors").unwrap();
    let n: usize = shape.iter().product();
    let x: Vec<f32> = (0..n).map(|i| (0.1 * i as f64).sin() as f32).collect();
    let input = archscope::tensor::Tensor::new(shape, x);
    let got = exec::run(&back, &w, std::slice::from_ref(&input), None).unwrap();
    let want: Vec<f64> = r["onnxruntime_output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    common::assert_onnxruntime_output(file, &got.outputs[0].data, &want);
    let direct_w = onnx::weights(net, imp).unwrap().unwrap();
    let direct = exec::run(net, &direct_w, &[input], None).unwrap();
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
