//! `archscope convert` beyond numbered runs (docs/ONNX.md, "convert"): sibling modules whose
//! names differ by a trailing number or letter (googlenet's `inception3a` … `inception5b`,
//! inception_v3's `Mixed_5b` …, ViT's `encoder_layer_0` …) become block nodes of one shared
//! definition, each keeping its module path; a single numbered module with a run's structure
//! (MobileNetV2's `features.17`) uses the run's definition; a tiny network of GoogLeNet's own
//! `Inception` modules with weights (scripts/onnx_convert_named.py) converts, its weights load by
//! path and run to onnxruntime's output; and `archscope export` of zoo models converts back to
//! blocks with the zoo's layer paths and figures.

use crate::common::{self, data_json, u64s, zoo_net};
use crate::onnx_convert::{converted, read_back};
use crate::onnx_convert_blocks::converted_weights_run_as_onnxruntime;
use archscope::onnx::export::{export_bytes, ExportOptions};
use archscope::onnx::{self, convert};
use archscope::{analyze, Dtype, Network};

fn names(net: &Network) -> Vec<&str> {
    net.nodes.iter().map(|n| n.name.as_str()).collect()
}

fn ones(ids: &[&str]) -> Vec<(String, usize)> {
    ids.iter().map(|m| (m.to_string(), 1)).collect()
}

fn users(ids: &[&str]) -> Vec<(String, usize)> {
    ids.iter().map(|m| (m.to_string(), 0)).collect()
}

/// Parameters, buffers and MACs of the read-back model equal PyTorch's
/// (tests/data/torchvision_zoo.json) and the import's.
fn assert_torchvision_figures(model: &str, net: &Network, back: &Network) {
    let a = analyze(net, Dtype::F32).unwrap();
    let b = analyze(back, Dtype::F32).unwrap();
    let r = &data_json("torchvision_zoo.json")["models"][model];
    let want = (
        r["params"].as_u64().unwrap(),
        r["buffers"].as_u64().unwrap(),
        r["macs"].as_u64().unwrap(),
    );
    assert_eq!(
        (a.totals.params, a.totals.buffers, a.totals.macs),
        want,
        "{model}"
    );
    assert_eq!(
        (b.totals.params, b.totals.buffers, b.totals.macs),
        want,
        "{model}"
    );
}

#[test]
fn googlenet_inception_modules_share_one_block() {
    // torchvision's googlenet: nine Inception modules, named; each reads one tensor and is read
    // through its concatenation. One definition, the branch widths its parameters.
    let mods = [
        "inception3a",
        "inception3b",
        "inception4a",
        "inception4b",
        "inception4c",
        "inception4d",
        "inception4e",
        "inception5a",
        "inception5b",
    ];
    let (net, _, c) = converted("googlenet_graph.onnx", 1);
    assert_eq!(c.blocks, ones(&mods));
    assert_eq!(
        c.definitions,
        vec![("inception_block".to_string(), users(&mods))]
    );
    for line in [
        // GoogLeNet's Inception(192, 64, 96, 128, 16, 32, 32) and (832, 384, 192, 384, 48, 128, 128).
        "  - {id: inception3a, use: inception_block, with: {width: 64, branch2_0_conv_width: 96, branch2_1_conv_width: 128, branch3_0_conv_width: 16, branch3_1_conv_width: 32, branch4_1_conv_width: 32}}\n",
        "  - {id: inception5b, use: inception_block, with: {width: 384, branch2_0_conv_width: 192, branch2_1_conv_width: 384, branch3_0_conv_width: 48, branch3_1_conv_width: 128, branch4_1_conv_width: 128}}\n",
        // maxpool3 comes between inception3b and inception4a, which reads it.
        ", ceil: true}\n  - {id: inception4a, use: inception_block, with: {width: 192, ",
    ] {
        assert!(c.text.contains(line), "{line}\n{}", c.text);
    }
    let back = read_back("googlenet_graph.onnx", &c, 1);
    let n = names(&back);
    for want in [
        "inception3a.branch1_conv",
        "inception3a.branch2_0_conv.bn",
        "inception4e.branch4_0",
        "inception5b.branch3_1_conv.relu",
        "inception5b.concat",
    ] {
        assert!(n.contains(&want), "{want} not in {n:?}");
    }
    assert_torchvision_figures("googlenet", &net, &back);
}

#[test]
fn inception_v3_mixed_modules_share_three_blocks() {
    // torchvision's inception_v3: Mixed_5b–5d are InceptionA (5b's pool projection 32 wide,
    // 5c's and 5d's 64), 6b–6e InceptionC (7×7 width 128, 160, 160, 192), 7b–7c InceptionE;
    // Mixed_6a (InceptionB) and Mixed_7a (InceptionD) have no sibling of their structure and
    // stay layers.
    let (net, _, c) = converted("inception_v3_graph.onnx", 1);
    let a = ["Mixed_5b", "Mixed_5c", "Mixed_5d"];
    let cc = ["Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"];
    let e = ["Mixed_7b", "Mixed_7c"];
    let all: Vec<&str> = a.iter().chain(&cc).chain(&e).copied().collect();
    assert_eq!(c.blocks, ones(&all));
    assert_eq!(
        c.definitions,
        vec![
            ("Mixed_block".to_string(), users(&a)),
            ("Mixed_block_2".to_string(), users(&cc)),
            ("Mixed_block_3".to_string(), users(&e)),
        ]
    );
    let back = read_back("inception_v3_graph.onnx", &c, 1);
    let n = names(&back);
    for want in [
        "Mixed_5b.branch5x5_2_conv",
        "Mixed_6e.branch7x7dbl_5_conv.bn",
        "Mixed_7c.branch3x3_2b_conv",
        "Mixed_6a_branch3x3_conv",
        "Mixed_7a_branch7x7x3_4_conv",
    ] {
        assert!(n.contains(&want), "{want} not in {n:?}");
    }
    assert_torchvision_figures("inception_v3", &net, &back);
}

#[test]
fn vit_encoder_layers_share_one_block() {
    // The tiny ViT (scripts/onnx_vit.py): two encoder layers `encoder.layers.encoder_layer_0`
    // and `_1`, identical, each a node of one block with no parameters.
    for f in ["vit_tiny.onnx", "vit_tiny_graph.onnx"] {
        let (net, _, c) = converted(f, 1);
        let ids = [
            "encoder_layers_encoder_layer_0",
            "encoder_layers_encoder_layer_1",
        ];
        assert_eq!(c.blocks, ones(&ids), "{f}");
        assert_eq!(
            c.definitions,
            vec![("encoder_layer_block".to_string(), users(&ids))],
            "{f}"
        );
        assert!(
            c.text
                .contains("  - {id: encoder_layers_encoder_layer_1, use: encoder_layer_block}\n"),
            "{}",
            c.text
        );
        let back = read_back(f, &c, 1);
        let n = names(&back);
        for want in [
            "encoder_layers_encoder_layer_0.ln_1",
            "encoder_layers_encoder_layer_0.self_attention",
            "encoder_layers_encoder_layer_1.mlp_0.gelu",
            "encoder_layers_encoder_layer_1.add_2",
        ] {
            assert!(n.contains(&want), "{f}: {want} not in {n:?}");
        }
        let (x, y) = (
            analyze(&net, Dtype::F32).unwrap(),
            analyze(&back, Dtype::F32).unwrap(),
        );
        assert_eq!(
            (x.totals.params, x.totals.macs),
            (y.totals.params, y.totals.macs),
            "{f}"
        );
    }
}

#[test]
fn tiny_inception_weights_load_by_path_and_run_as_onnxruntime() {
    let r = &data_json("onnx_convert_named.json")["tiny_inception"];
    let shape: Vec<usize> = u64s(&r["input_shape"])
        .iter()
        .map(|&d| d as usize)
        .collect();
    let file = "tiny_inception.onnx";
    let (net, imp, c) = converted(file, shape[0] as u64);
    let mods = ["inception3a", "inception3b", "inception4a"];
    assert_eq!(c.blocks, ones(&mods));
    assert_eq!(
        c.definitions,
        vec![("inception_block".to_string(), users(&mods))]
    );
    let names = [
        "inception3a.branch1_conv.weight",
        "inception3b.branch2_1_conv.bn.running_var",
        "inception4a.branch4_1_conv.bn.bias",
        "conv1_conv.weight",
        "fc.bias",
    ];
    converted_weights_run_as_onnxruntime(file, &net, &imp, &c, r, &names);
}

#[test]
fn mobilenet_v2_last_block_uses_the_runs_definition() {
    // features.17 (160 → 320, stride 1, no residual sum: the first instance's form) is one
    // instance of the runs' block: `repeat: {count: 1, from: 17}` keeps its path.
    let (_, _, c) = converted("mobilenet_v2_graph.onnx", 1);
    assert!(
        c.text.contains("  - {id: features, use: features_block, repeat: {count: 1, from: 17}, with: {width: 960, conv_2_width: 320}}\n"),
        "{}",
        c.text
    );
    let back = read_back("mobilenet_v2_graph.onnx", &c, 1);
    let n = names(&back);
    for want in ["features.17.conv_0_0", "features.17.conv_2.bn"] {
        assert!(n.contains(&want), "{want} not in {n:?}");
    }
    assert!(!n.contains(&"features.17.add"), "{n:?}");
}

/// `archscope export` (graph only) of every zoo model, converted back: the zoo's parameters,
/// buffers and MACs; the import's layers (type, output shapes, parameters, MACs, receptive
/// field); block nodes where the zoo repeats its blocks (counts for some below); and, for the
/// models in [`SAME_PATHS`], every layer path of the zoo model and no other.
#[test]
fn exported_zoo_models_convert_back_to_blocks_and_paths() {
    let mut blocks_seen = 0;
    for model in common::zoo_names() {
        let zoo = zoo_net(model);
        let bytes = export_bytes(&zoo, None, ExportOptions::default()).unwrap();
        let file = format!("{model}.onnx");
        let imp = onnx::import_sized(&file, &bytes, 1, None).unwrap_or_else(|e| panic!("{e}"));
        let net = onnx::build_imported(&file, &imp, &Default::default()).unwrap();
        let c = convert::convert(&file, &imp).unwrap_or_else(|e| panic!("{model}: {e}"));
        let back = read_back(&file, &c, 1);
        let (a, i, b) = (
            analyze(&zoo, Dtype::F32).unwrap(),
            analyze(&net, Dtype::F32).unwrap(),
            analyze(&back, Dtype::F32).unwrap(),
        );
        assert_eq!(
            (a.totals.params, a.totals.buffers, a.totals.macs),
            (b.totals.params, b.totals.buffers, b.totals.macs),
            "{model}"
        );
        let rows = |x: &archscope::Analysis| {
            let mut v: Vec<String> = x.layers.iter().map(common::layer_row).collect();
            v.sort();
            v
        };
        assert_eq!(rows(&i), rows(&b), "{model}");
        if let Some((_, n)) = BLOCK_NODES.iter().find(|(m, _)| *m == model) {
            assert_eq!(c.blocks.len(), *n, "{model}: {:?}", c.blocks);
            blocks_seen += 1;
        }
        if SAME_PATHS.contains(&model) {
            let mut pz: Vec<&str> = names(&zoo);
            let mut pb: Vec<&str> = names(&back);
            pz.sort_unstable();
            pb.sort_unstable();
            assert_eq!(pz, pb, "{model}: layer paths");
        }
    }
    assert_eq!(blocks_seen, BLOCK_NODES.len());
}

/// Block nodes the export of these zoo models converts back to: resnet18's four stages;
/// googlenet's nine inception modules; inception_v3's nine (Mixed_6a and Mixed_7a have no
/// twin); mobilenet_v2's stages (`block2` … `block7`: six, the expansion-1 `block1` has no
/// twin); vit_b_16's twelve encoder layers; swin_t's nine: its stages (stage3's six blocks in
/// three runs of two, as the window shift alternates and only a run's first instance may
/// differ) and its three patch mergings `merge1` … `merge3`; convnext_tiny's four stages;
/// efficientnet_b0's five (`stage2`, `stage3` single, `stage4_rest` … `stage6_rest` runs).
const BLOCK_NODES: &[(&str, usize)] = &[
    ("resnet18", 4),
    ("googlenet", 9),
    ("inception_v3", 9),
    ("mobilenet_v2", 6),
    ("vit_b_16", 12),
    ("swin_t", 9),
    ("convnext_tiny", 4),
    ("efficientnet_b0", 5),
];

/// Zoo models whose export converts back with exactly the zoo's layer paths (the RegNetYs with
/// their squeeze-excitation a block inside the bottleneck block, tests/onnx_convert_nested.rs).
/// The others lose some: dropout and stochastic-depth layers have no ONNX node (ViT, Swin,
/// EfficientNet), a batch norm or activation that is a layer of its own in the zoo is folded into
/// the layer before it (DenseNet's `norm2` into `conv1.bn`), a module alone at the top level
/// that is neither numbered nor named with a number stays layers (R(2+1)D's `stem`,
/// EfficientNet's `stage1.first`), and the channel shuffle is three ONNX nodes (ShuffleNet).
const SAME_PATHS: &[&str] = &[
    "lenet5",
    "mlp3",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "regnet_x_400mf",
    "regnet_y_400mf",
    "regnet_y_16gf",
    "mobilenet_v1",
    "sobel",
    "r3d_18",
    "mc3_18",
];
