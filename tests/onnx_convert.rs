//! `archscope convert model.onnx`: every committed ONNX file (tests/data/onnx/, written by
//! scripts/onnx_reference.py) converts to archscope YAML that reads back to the imported
//! model's figures (parameters, trainable, buffers, MACs, FLOPs, and per layer: type, output
//! shapes, parameters, MACs, receptive field); batch norms fold into `bn:` when the export kept
//! them (training=PRESERVE, do_constant_folding=False) and are absent when torch.onnx folded
//! them (eval mode); ResNet's BasicBlocks become blocks with `repeat`; the converted weights
//! run the YAML to onnxruntime's outputs. Also: receptive fields of imported torchvision models
//! equal the zoo YAML's, layer by layer.

use crate::common;
use crate::common::read_onnx as read;

use crate::common::{assert_rejected, data_json, root, scratch, u64s};
use archscope::onnx::{self, convert};
use archscope::{analyze, exec, zoo, Analysis, BuildOptions, Dtype, Network};

pub(crate) fn opts(batch: u64) -> BuildOptions {
    BuildOptions {
        batch,
        ..Default::default()
    }
}

/// The committed ONNX files, read from the directory (so a new file is covered).
pub(crate) fn committed() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join("tests/data/onnx"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".onnx"))
        // The dynamo exporter's graph-only file is refused by design (tests/onnx_gpt.rs), and
        // so are the graph-only torch.onnx.export Swins (tests/onnx_swin_graph.rs) and MaxViT
        // (tests/onnx_maxvit_dynamo.rs).
        .filter(|n| {
            ![
                "gpt_tiny_dynamo_graph.onnx",
                "maxvit_tiny_torch_graph.onnx",
                "swin_tiny_torch_graph.onnx",
                "swin_v2_tiny_torch_graph.onnx",
            ]
            .contains(&n.as_str())
        })
        .collect();
    v.sort();
    v
}

/// Imports `file`, converts it; returns the imported network, the import and the conversion.
pub(crate) fn converted(file: &str, batch: u64) -> (Network, onnx::Import, convert::Converted) {
    // The file with symbolic height and width (tests/onnx_dynamic.rs) is sized as
    // `--input 3x224x224` sizes it.
    // The GPT-2s with symbolic batch and sequence (tests/onnx_gpt_dynamic.rs), at 16 tokens.
    let input = if file.starts_with("gpt_") {
        file.contains("_dynamic").then_some(&[16u64][..])
    } else {
        file.contains("_dynamic").then_some(&[3u64, 224, 224][..])
    };
    let imp = onnx::import_sized(file, &read(file), batch, input)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let net =
        onnx::build_imported(file, &imp, &opts(batch)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let c = convert::convert(file, &imp).unwrap_or_else(|e| panic!("{file}: convert: {e}"));
    (net, imp, c)
}

pub(crate) fn read_back(file: &str, c: &convert::Converted, batch: u64) -> Network {
    Network::from_yaml(file, &c.text, &opts(batch))
        .unwrap_or_else(|e| panic!("{file}: the converted YAML does not build: {e}\n{}", c.text))
}

/// Every layer as (type, output shapes, parameters, MACs, receptive field), sorted: the
/// converted model names and nests layers differently, the layers themselves are the same.
fn layer_rows(a: &Analysis) -> Vec<String> {
    let mut v: Vec<String> = a
        .layers
        .iter()
        .filter(|l| l.op != "input")
        .map(crate::common::layer_row)
        .collect();
    v.sort();
    v
}

#[test]
fn every_committed_onnx_file_reads_back_to_the_same_figures() {
    let files = committed();
    // scripts/onnx_reference.py writes nine (graph-only torchvision exports, the tiny CNN, the
    // tiny ResNet three ways); scripts/ultralytics_onnx.py four (Ultralytics' exporter on this
    // repository's own detector files: v8_like and v11_like cut before the decoding, the tiny
    // one whole and cut); scripts/onnx_dynamic.py one (resnet18 with symbolic height and width);
    // scripts/onnx_vit.py three (a tiny ViT: TorchScript exporter with and without weights,
    // dynamo with weights); scripts/onnx_convert_reference.py one (a tiny MobileNetV2 with
    // weights); scripts/onnx_swin.py seven (`archscope export` of a tiny Swin-T, Swin-V2-T and
    // MaxViT-T with weights; with `--torch`, torch.onnx.export of a tiny Swin and Swin-V2; with
    // `--dynamo`, the dynamo exporter's; its `--graph` files are refused, above); scripts/onnx_gpt.py three (a tiny GPT-2: the same three ways as
    // the ViT); scripts/onnx_arith.py one (arithmetic with constant numbers after a conv);
    // scripts/onnx_const.py eight (four models with constant, buffer and learned tensors, each
    // by both exporters); scripts/onnx_inputs.py five (the tiny GPT-2 with an attention-mask
    // input from both exporters, a two-tower network with and without weights, the tiny GPT-2
    // with an untied head graph only; with `--dynamic`, two more: that GPT-2 with dynamic
    // batch and sequence axes from both exporters);
    // scripts/onnx_convert_named.py two (inception_v3 graph only, a tiny network of GoogLeNet's
    // Inception modules with weights); scripts/onnx_maxvit.py five (the Einsum model, the
    // learned log-scale with and without weights, torch.onnx.export's tiny MaxViT, and with
    // `--dynamo` the dynamo exporter's; its graph-only MaxViT is refused, above).
    assert_eq!(files.len(), 51, "{files:?}");
    for f in &files {
        let (net, _, c) = converted(f, 1);
        let back = read_back(f, &c, 1);
        let a = analyze(&net, Dtype::F32).unwrap();
        let b = analyze(&back, Dtype::F32).unwrap();
        assert_eq!(a.totals.params, b.totals.params, "{f} params");
        assert_eq!(a.totals.trainable, b.totals.trainable, "{f} trainable");
        assert_eq!(a.totals.buffers, b.totals.buffers, "{f} buffers");
        assert_eq!(a.totals.macs, b.totals.macs, "{f} MACs");
        assert_eq!(a.totals.flops, b.totals.flops, "{f} FLOPs");
        assert_eq!(layer_rows(&a), layer_rows(&b), "{f} layers");
        let out = |n: &Network| n.nodes[n.outputs[0].node].out_shapes[0].0.clone();
        assert_eq!(out(&net), out(&back), "{f} output");
    }
}

#[test]
fn torchvision_figures_survive_conversion() {
    // Against PyTorch's own counts, not only against the import.
    let reference = data_json("torchvision_zoo.json");
    for m in [
        "resnet18",
        "mobilenet_v2",
        "efficientnet_b0",
        "googlenet",
        "convnext_tiny",
    ] {
        let f = format!("{m}_graph.onnx");
        let (_, _, c) = converted(&f, 1);
        let a = analyze(&read_back(&f, &c, 1), Dtype::F32).unwrap();
        let r = &reference["models"][m];
        assert_eq!(a.totals.params, r["params"].as_u64().unwrap(), "{m} params");
        assert_eq!(
            a.totals.buffers,
            r["buffers"].as_u64().unwrap(),
            "{m} buffers"
        );
        assert_eq!(a.totals.macs, r["macs"].as_u64().unwrap(), "{m} MACs");
    }
}

#[test]
fn resnet_basic_blocks_become_repeated_blocks() {
    // torchvision's resnet18: four stages of two BasicBlocks; stages 2 to 4 open with a
    // stride-2 block that has a downsampling shortcut (a 1×1 convolution and its batch norm).
    let (_, _, c) = converted("resnet18_graph.onnx", 1);
    assert_eq!(
        c.blocks,
        vec![
            ("layer1".to_string(), 2),
            ("layer2".to_string(), 2),
            ("layer3".to_string(), 2),
            ("layer4".to_string(), 2)
        ]
    );
    // One block definition for the four stages: the width is a parameter, the stride one
    // whose default (1) the first block of stages 2 to 4 overrides, and the shortcut a layer
    // switched on there (`first_only`), as the zoo's resnet writes `project`.
    assert_eq!(
        c.definitions,
        vec![(
            "layer_block".to_string(),
            (1..=4)
                .map(|k| (format!("layer{k}"), 0))
                .collect::<Vec<_>>()
        )]
    );
    for line in [
        "  layer_block:\n    params: {width: required, stride: 1, first_only: false}\n",
        "      - {id: conv1, op: conv2d, out: \"$width\", kernel: 3, stride: \"$stride\", padding: 1, bias: false, bn: true, act: relu}\n",
        "      - {id: downsample_0, op: conv2d, in: \"$in\", when: \"$first_only\", out: \"$width\", kernel: 1, stride: 2, bias: false, bn: true}\n",
        "  - {id: layer1, use: layer_block, repeat: 2, with: {width: 64}}\n",
        "  - {id: layer2, use: layer_block, repeat: 2, with: {width: 128}, first: {stride: 2, first_only: true}}\n",
        "  - {id: layer4, use: layer_block, repeat: 2, with: {width: 512}, first: {stride: 2, first_only: true}}\n",
    ] {
        assert!(c.text.contains(line), "{line}\n{}", c.text);
    }
    assert_eq!(c.text.matches("use: layer_block").count(), 4, "{}", c.text);
    // 20 batch norms (1 + 4 stages × 2 blocks × 2 + 3 shortcuts) and 17 ReLUs (1 + 8 × 2).
    assert_eq!((c.folded_bn, c.folded_act), (20, 17));
    let back = read_back("resnet18_graph.onnx", &c, 1);
    let names: Vec<&str> = back.nodes.iter().map(|n| n.name.as_str()).collect();
    for want in [
        "layer1.0.conv1",
        "layer1.0.conv1.bn",
        "layer1.0.conv1.relu",
        "layer2.0.downsample_0",
        "layer2.0.downsample_0.bn",
        "layer2.1.conv2.bn",
        "layer4.1.add.relu",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    // The shortcut exists in each stage's first block only.
    assert!(
        !names.iter().any(|n| n.starts_with("layer2.1.downsample")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("layer1.0.downsample")),
        "{names:?}"
    );
}

#[test]
fn convnext_stages_become_repeated_blocks() {
    // torchvision's convnext_tiny: stages of 3, 3, 9 and 3 CNBlocks at features.1, .3, .5, .7
    // (the downsamplers between them at .2, .4, .6, single modules of one structure, and the
    // LayerNorm2d modules features.0.1 and classifier.0, two more).
    let (_, _, c) = converted("convnext_tiny_graph.onnx", 1);
    let stages: Vec<(String, usize)> = [
        ("features_1", 3),
        ("features_3", 3),
        ("features_5", 9),
        ("features_7", 3),
    ]
    .iter()
    .map(|(a, n)| (a.to_string(), *n))
    .collect();
    let one = |id: &str| (id.to_string(), 1);
    assert_eq!(
        c.blocks,
        vec![
            one("features_0"),
            stages[0].clone(),
            one("features"),
            stages[1].clone(),
            one("features"),
            stages[2].clone(),
            one("features"),
            stages[3].clone(),
            one("classifier"),
        ]
    );
    // One definition for the four stages: the width, the MLP's hidden width (4 × width) and
    // the layer scale's shape differ between stages.
    assert_eq!(
        c.definitions,
        vec![
            (
                "features_block".to_string(),
                vec![("features_0".to_string(), 1), ("classifier".to_string(), 0)]
            ),
            (
                "features_block_2".to_string(),
                stages.iter().map(|(g, _)| (g.clone(), 0)).collect()
            ),
            (
                "features_block_3".to_string(),
                [2, 4, 6]
                    .iter()
                    .map(|&k| ("features".to_string(), k))
                    .collect()
            ),
        ]
    );
    for line in [
        "  features_block_2:\n    params: {width: required, block_3_width: required, shape: required}\n",
        "  - {id: features_1, use: features_block_2, repeat: 3, with: {width: 96, block_3_width: 384, shape: [96, 1, 1]}}\n",
        "  - {id: features_5, use: features_block_2, repeat: 9, with: {width: 384, block_3_width: 1536, shape: [384, 1, 1]}}\n",
        // The downsampler features.4: LayerNorm2d(192), then a 2×2 stride-2 convolution to 384.
        "  - {id: features, use: features_block_3, repeat: {count: 1, from: 4}, with: {width: 384}}\n",
    ] {
        assert!(c.text.contains(line), "{line}\n{}", c.text);
    }
}

#[test]
fn efficientnet_stages_become_repeated_blocks() {
    // torchvision's efficientnet_b0: stages features.2 to features.6 of 2, 2, 3, 3 and 4
    // MBConv blocks; each stage's first block changes the width (and all but features.5's the
    // stride) and has no residual sum, which the others have.
    let (_, _, c) = converted("efficientnet_b0_graph.onnx", 1);
    // features.7.0, the one block of the last stage, uses the same definition.
    let want: Vec<(String, usize)> = [2, 2, 3, 3, 4, 1]
        .iter()
        .enumerate()
        .map(|(k, n)| (format!("features_{}", k + 2), *n))
        .collect();
    assert_eq!(c.blocks, want);
    // One definition for the five stages: kernel 3 or 5 (and its padding), the widths, the
    // squeeze-excitation width, and the stride of the first block (2 but in features.5).
    assert_eq!(
        c.definitions,
        vec![(
            "features_block".to_string(),
            want.iter().map(|(g, _)| (g.clone(), 0)).collect()
        )]
    );
    for line in [
        "    params: {width: required, kernel: required, stride: 1, padding: required, block_2_fc1_width: required, block_3_0_width: required, rest_only: false}\n",
        "      - {id: add, op: add, in: [block_3_0, \"$in\"], when: \"$rest_only\"}\n",
        "  - {id: features_5, use: features_block, repeat: 3, with: {width: 672, kernel: 5, padding: 2, block_2_fc1_width: 28, block_3_0_width: 112, rest_only: true}, first: {width: 480, block_2_fc1_width: 20, rest_only: false}}\n",
        "  - {id: features_6, use: features_block, repeat: 4, with: {width: 1152, kernel: 5, padding: 2, block_2_fc1_width: 48, block_3_0_width: 192, rest_only: true}, first: {width: 672, stride: 2, block_2_fc1_width: 28, rest_only: false}}\n",
    ] {
        assert!(c.text.contains(line), "{line}\n{}", c.text);
    }
    let back = read_back("efficientnet_b0_graph.onnx", &c, 1);
    let names: Vec<&str> = back.nodes.iter().map(|n| n.name.as_str()).collect();
    assert!(names.contains(&"features_6.3.add"), "{names:?}");
    assert!(!names.contains(&"features_6.0.add"), "{names:?}");
}

#[test]
fn batch_norms_fold_when_the_export_kept_them() {
    let reference = data_json("onnx_reference.json");
    // The tiny ResNet has 10 batch norms, each after a convolution, over 8 + 4·8 + 5·16 = 120
    // channels: 240 affine parameters, 240 statistics.
    for (file, bn_nodes, folded) in [
        ("tiny_resnet.onnx", 10, 10),
        ("tiny_resnet_nofold.onnx", 10, 10),
        ("tiny_resnet_eval.onnx", 0, 0),
    ] {
        let key = file.trim_end_matches(".onnx");
        let r = &reference[key];
        assert_eq!(r["batchnorm_nodes"].as_u64().unwrap(), bn_nodes, "{file}");
        let (_, _, c) = converted(file, 1);
        assert_eq!(c.folded_bn, folded, "{file}");
        let a = analyze(&read_back(file, &c, 1), Dtype::F32).unwrap();
        if bn_nodes > 0 {
            // PyTorch's counts.
            assert_eq!(a.totals.params, r["params"].as_u64().unwrap(), "{file}");
            assert_eq!(a.totals.buffers, r["buffers"].as_u64().unwrap(), "{file}");
            assert!(!c.text.contains("no BatchNormalization node"), "{file}");
        } else {
            // Folded by the exporter: each norm's 2·C affine values are gone, its convolution
            // gained a C-wide bias: 11,122 − 240 + 120.
            assert_eq!(
                a.totals.params,
                r["params"].as_u64().unwrap() - 240 + 120,
                "{file}"
            );
            assert_eq!(a.totals.buffers, 0, "{file}");
            assert!(
                c.text.contains("# The file has no BatchNormalization node. If the model has batch norms, torch.onnx.export\n# in eval mode folded each"),
                "{}",
                c.text
            );
        }
    }
}

#[test]
fn converted_weights_run_as_onnxruntime() {
    let reference = data_json("onnx_reference.json");
    for file in [
        "tiny_resnet.onnx",
        "tiny_resnet_eval.onnx",
        "tiny_resnet_nofold.onnx",
        "tiny_cnn.onnx",
    ] {
        let r = &reference[file.trim_end_matches(".onnx")];
        let shape: Vec<usize> = u64s(&r["input_shape"])
            .iter()
            .map(|&d| d as usize)
            .collect();
        let (net, imp, c) = converted(file, shape[0] as u64);
        let back = read_back(file, &c, shape[0] as u64);
        let bytes = convert::safetensors_bytes(&c.weights).unwrap();
        let w = exec::load_safetensors(&back, &bytes, "converted.safetensors")
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let n: usize = shape.iter().product();
        // The script's input: x[i] = sin(0.1 i).
        let x: Vec<f32> = (0..n).map(|i| (0.1 * i as f64).sin() as f32).collect();
        let input = archscope::tensor::Tensor::new(shape.clone(), x);
        let got = exec::run(&back, &w, std::slice::from_ref(&input), None).unwrap();
        let direct_w = onnx::weights(&net, &imp).unwrap().unwrap();
        let direct = exec::run(&net, &direct_w, &[input], None).unwrap();
        let want: Vec<f64> = r["onnxruntime_output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let y = &got.outputs[0];
        assert_eq!(y.data.len(), want.len(), "{file}");
        for (k, (g, o)) in y.data.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(*g) - o).abs() <= 1e-4,
                "{file} output {k}: converted {g}, onnxruntime {o}"
            );
        }
        // The same layers on the same weights: the ONNX file run directly gives the same.
        for (k, (g, d)) in y.data.iter().zip(&direct.outputs[0].data).enumerate() {
            assert!(
                (g - d).abs() <= 1e-6,
                "{file} output {k}: converted {g}, direct {d}"
            );
        }
    }
}

#[test]
fn the_cli_writes_yaml_and_weights() {
    let dir = scratch("onnx-convert-cli");
    let yaml = dir.join("m.yaml");
    let st = dir.join("m.safetensors");
    let onnx_file = root().join("tests/data/onnx/tiny_resnet.onnx");
    let out = common::archscope(&[
        "convert",
        onnx_file.to_str().unwrap(),
        "-o",
        yaml.to_str().unwrap(),
        "--weights-out",
        st.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = std::fs::read_to_string(&yaml).unwrap();
    assert!(text.contains("repeat: 2"), "{text}");
    let npy_y = dir.join("y.npy");
    let npy_o = dir.join("o.npy");
    common::ok(&[
        "run",
        yaml.to_str().unwrap(),
        "--weights",
        st.to_str().unwrap(),
        "--save-output",
        npy_y.to_str().unwrap(),
    ]);
    common::ok(&[
        "run",
        onnx_file.to_str().unwrap(),
        "--save-output",
        npy_o.to_str().unwrap(),
    ]);
    assert_eq!(
        common::read_saved_npy(&npy_y),
        common::read_saved_npy(&npy_o)
    );
    let graph_only = root().join("tests/data/onnx/resnet18_graph.onnx");
    assert_rejected(
        &[
            "convert",
            graph_only.to_str().unwrap(),
            "-o",
            yaml.to_str().unwrap(),
            "--weights-out",
            st.to_str().unwrap(),
        ],
        "holds no weights (a graph-only export: its weights are graph inputs)",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Receptive fields of imported models equal the zoo YAML model's: over the layers that set
/// them (convolutions, pools, linear layers), the multiset of (type, output shape, parameters,
/// receptive field) is the same. The ONNX file writes each batch norm and activation as its
/// own node where the zoo fuses them, and names layers differently, so only these are paired.
#[test]
fn imported_receptive_fields_equal_the_zoo() {
    for m in ["resnet18", "googlenet", "mobilenet_v2", "efficientnet_b0"] {
        let f = format!("{m}_graph.onnx");
        let (net, _, _) = converted(&f, 1);
        let zoo_net =
            Network::from_yaml(m, zoo::source(m).unwrap(), &BuildOptions::default()).unwrap();
        let rows = |a: &Analysis| -> Vec<String> {
            let mut v: Vec<String> = a
                .layers
                .iter()
                .filter(|l| l.weighted || l.op.contains("pool"))
                .map(|l| format!("{} {:?} {} {:?}", l.op, l.outputs, l.params.total(), l.rf))
                .collect();
            v.sort();
            v
        };
        let a = analyze(&net, Dtype::F32).unwrap();
        let z = analyze(&zoo_net, Dtype::F32).unwrap();
        let (ra, rz) = (rows(&a), rows(&z));
        assert!(ra.len() > 20, "{m}: {} layers", ra.len());
        assert_eq!(ra, rz, "{m}");
        // And the fields are there: the last convolution's field is finite and large.
        assert!(
            a.layers.iter().filter(|l| l.rf.is_some()).count() > 20,
            "{m}"
        );
    }
}
