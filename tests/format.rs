//! The format expresses the field's patterns: each example in `examples/` is checked against
//! figures computed by hand (derivations in the comments), not by archscope.

use crate::common::{data_json, file_analysis, layer, yaml_analysis};
use archscope::Analysis;

fn shape(a: &Analysis, i: usize) -> Vec<u64> {
    a.outputs[i].1 .0.clone()
}

#[test]
fn densenet_growth_and_transition() {
    let a = file_analysis("examples/densenet_block.yaml");
    // Dense layer on c channels: bn 2c + conv1x1 c·128 + bn 256 + conv3x3 128·32·9 (36864).
    let dense = |c: u64| 2 * c + c * 128 + 256 + 36864;
    // Transition on 160 channels: bn 320 + conv1x1 160·80.
    assert_eq!(
        a.totals.params,
        dense(64) + dense(96) + dense(128) + 320 + 160 * 80
    );
    // Running mean/var of every batch norm: 2·(64+128) + 2·(96+128) + 2·(128+128) + 2·160.
    assert_eq!(
        a.totals.buffers,
        2 * (64 + 128) + 2 * (96 + 128) + 2 * (128 + 128) + 2 * 160
    );
    assert_eq!(
        layer(&a, "denseblock1.2.out").outputs[0].0,
        vec![1, 160, 56, 56]
    );
    assert_eq!(shape(&a, 0), vec![1, 80, 28, 28]);
}

#[test]
fn mobilenet_depthwise() {
    let a = file_analysis("examples/mobilenet_units.yaml");
    // unit1: dw 32·9 + bn 64 + pw 32·64 + bn 128; unit2: dw 64·9 + bn 128 + pw 64·128 + bn 256.
    assert_eq!(
        a.totals.params,
        (288 + 64 + 2048 + 128) + (576 + 128 + 8192 + 256)
    );
    // MACs: 112²·32·9 + 112²·64·32 + 56²·64·9 + 56²·128·64.
    assert_eq!(
        a.totals.macs,
        12544 * 32 * 9 + 12544 * 64 * 32 + 3136 * 64 * 9 + 3136 * 128 * 64
    );
    assert_eq!(shape(&a, 0), vec![1, 128, 56, 56]);
    assert!(layer(&a, "unit1.dw").label.contains("dw"));
}

#[test]
fn shufflenet_split_and_shuffle() {
    let a = file_analysis("examples/shufflenet_unit.yaml");
    // pw1 58·58 + bn 116, dw 58·9 + bn 116, pw2 58·58 + bn 116.
    assert_eq!(a.totals.params, 3364 + 116 + 522 + 116 + 3364 + 116);
    assert_eq!(layer(&a, "split").outputs.len(), 2);
    assert_eq!(
        layer(&a, "cat").inputs,
        vec!["split".to_string(), "pw2.relu".to_string()]
    );
    assert_eq!(layer(&a, "pw1").inputs, vec!["split:1".to_string()]);
    assert_eq!(shape(&a, 0), vec![1, 116, 28, 28]);
}

#[test]
fn squeeze_excitation_broadcast() {
    let a = file_analysis("examples/squeeze_excitation.yaml");
    assert_eq!(a.totals.params, (64 * 16 + 16) + (16 * 64 + 64));
    assert_eq!(a.totals.macs, 64 * 16 + 16 * 64);
    assert_eq!(shape(&a, 0), vec![1, 64, 56, 56]);
}

#[test]
fn unet_skips_and_transposed_convs() {
    let a = file_analysis("examples/unet_small.yaml");
    let conv = |i: u64, o: u64, k: u64| i * o * k * k + o;
    let params = conv(1, 16, 3)
        + conv(16, 16, 3)
        + conv(16, 32, 3)
        + conv(32, 32, 3)
        + conv(32, 64, 3)
        + conv(64, 64, 3)
        + conv(64, 32, 2)
        + conv(64, 32, 3)
        + conv(32, 32, 3)
        + conv(32, 16, 2)
        + conv(32, 16, 3)
        + conv(16, 16, 3)
        + conv(16, 2, 1);
    assert_eq!(a.totals.params, params);
    assert_eq!(layer(&a, "cat2").outputs[0].0, vec![1, 64, 32, 32]);
    assert_eq!(layer(&a, "cat1").outputs[0].0, vec![1, 32, 64, 64]);
    // Transposed 2×2/2 from 16² (64 → 32 channels): N·H_in·W_in·C_in·C_out·k² MACs.
    assert_eq!(layer(&a, "up2").macs, 16 * 16 * 64 * 32 * 4);
    assert_eq!(shape(&a, 0), vec![1, 2, 64, 64]);
}

#[test]
fn yolo_two_heads_with_model_params() {
    let a = file_analysis("examples/yolo_heads.yaml");
    // 3 anchors × (5 + 80 classes) = 255 channels per head.
    let bnconv = |i: u64, o: u64| i * o * 9 + 2 * o;
    assert_eq!(
        a.totals.params,
        bnconv(3, 16) + bnconv(16, 32) + bnconv(32, 64) + (64 * 255 + 255) + (96 * 255 + 255)
    );
    assert_eq!(shape(&a, 0), vec![1, 255, 8, 8]);
    assert_eq!(shape(&a, 1), vec![1, 255, 16, 16]);
    assert_eq!(layer(&a, "c1.leaky_relu").op, "leaky_relu");
}

#[test]
fn segnet_unpooling() {
    let a = file_analysis("examples/segnet_unpool.yaml");
    assert_eq!(a.totals.params, (3 * 8 * 9 + 8) + (8 * 8 * 9 + 8));
    assert_eq!(shape(&a, 0), vec![1, 8, 32, 32]);
}

#[test]
fn when_first_and_defaults() {
    // A projection that exists only where `first:` switches it on; `act: none` overrides the
    // defaults; `repeat` names instances `.0`, `.1`.
    let yaml = r#"
inputs: {x: [8, 16, 16]}
defaults:
  conv: {bias: false, act: relu}
blocks:
  res:
    params: {out: required, stride: 1, project: false}
    nodes:
      - {id: a, op: conv, out: $out, kernel: 3, stride: $stride, padding: 1}
      - {id: b, op: conv, out: $out, kernel: 3, padding: 1, act: none}
      - {id: proj, when: $project, op: conv, in: $in, out: $out, kernel: 1, stride: $stride, act: none}
      - {id: sum, op: add, in: [b, proj]}
nodes:
  - {id: stage, use: res, repeat: 2, with: {out: 16}, first: {stride: 2, project: true}}
"#;
    let a = yaml_analysis(yaml);
    let names: Vec<&str> = a.layers.iter().map(|l| l.name.as_str()).collect();
    assert!(names.contains(&"stage.0.proj"));
    assert!(!names.contains(&"stage.1.proj"));
    assert_eq!(
        layer(&a, "stage.1.sum").inputs,
        vec!["stage.1.b".to_string(), "stage.0.sum".to_string()]
    );
    // 8·16·9 + 16·16·9 + 8·16 (projection) + 2·(16·16·9).
    assert_eq!(
        a.totals.params,
        8 * 16 * 9 + 16 * 16 * 9 + 8 * 16 + 2 * 16 * 16 * 9
    );
    assert_eq!(shape(&a, 0), vec![1, 16, 8, 8]);
}

#[test]
fn densenet121_matches_pytorch() {
    // The full DenseNet-121 (the diagram benchmark's DenseNet-size graph) against torchvision's
    // densenet121 as measured in tests/data/torchvision_zoo.json.
    let v = data_json("torchvision_zoo.json");
    let r = &v["models"]["densenet121"];
    let a = file_analysis("examples/densenet121.yaml");
    assert_eq!(a.totals.params, r["params"].as_u64().unwrap());
    assert_eq!(a.totals.trainable, r["trainable"].as_u64().unwrap());
    assert_eq!(a.totals.buffers, r["buffers"].as_u64().unwrap());
    assert_eq!(a.totals.macs, r["macs"].as_u64().unwrap());
    assert_eq!(serde_json::json!(shape(&a, 0)), r["output"]);
}
