//! Export → import round trips of the zoo models whose ONNX form needs a multi-node pattern to
//! read back (src/onnx/patterns.rs): the ConvNeXts, whose LayerNorm2d `archscope export` writes
//! as ReduceMean/Sub/Mul/ReduceMean/Add/Sqrt/Div with its weight and bias reshaped to
//! C×1×1, and Sobel, whose `magnitude` it writes as ReduceSumSquare then Sqrt. Each reads back
//! with the same figures layer by layer (every layer that holds parameters, buffers or MACs, in
//! order: its op, output shapes, parameters, buffers and MACs), and with its own exported
//! weights `run` gives the same output as the original network within 1e-4.
//!
//! The Swins' shifted-window attention and MaxViT's relative-position attention read back
//! through src/onnx/swin.rs (the file's nodes compared with the layer's own ONNX form), each
//! as one layer. GPT-2 reads back through src/onnx/gpt.rs (its embeddings, causal attention,
//! tanh GELU and tied head) layer by layer, graph only (with weights at the tiny size:
//! tests/onnx_gpt.rs). The ViTs are compared in tests/onnx_vit.rs.

use crate::common::{options_for, zoo_net_with};
use archscope::exec;
use archscope::onnx::export::{export, ExportOptions};
use archscope::tensor::Tensor;
use archscope::{analyze, BuildOptions, Dtype, Network};

/// One layer's (op, output shapes, parameters, buffers, MACs).
type Row = (&'static str, Vec<Vec<u64>>, u64, u64, u64);

/// (op, output shapes, parameters (trainable + frozen: ONNX has no frozen flag, so a fixed
/// filter such as Sobel's reads back trainable), buffers, MACs) of every layer with
/// parameters, buffers or MACs, in order.
fn weighted_layers(net: &Network) -> Vec<Row> {
    let a = analyze(net, Dtype::F32).expect("analyses");
    a.layers
        .iter()
        .filter(|l| l.params.trainable + l.params.frozen + l.params.buffers + l.macs > 0)
        .map(|l| {
            (
                l.op,
                l.outputs.iter().map(|s| s.0.clone()).collect(),
                l.params.trainable + l.params.frozen,
                l.params.buffers,
                l.macs,
            )
        })
        .collect()
}

/// Exports `net` with seeded weights, reads it back, and checks the figures layer by layer,
/// the totals and the outputs on a fixed input; returns the imported network.
fn round_trip(name: &str, net: &Network) -> Network {
    let w = exec::init_weights(net, 7).expect("weights");
    let m = export(net, Some(&w), ExportOptions::default()).expect("exports");
    let bytes = archscope::onnx::proto::encode_model(&m);
    let (back, imp) =
        archscope::onnx::build(&format!("{name}.onnx"), &bytes, &BuildOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        weighted_layers(&back),
        weighted_layers(net),
        "{name}: layer by layer"
    );
    let (a, b) = (
        analyze(net, Dtype::F32).unwrap().totals,
        analyze(&back, Dtype::F32).unwrap().totals,
    );
    assert_eq!(
        (b.params, b.buffers, b.macs, b.flops),
        (a.params, a.buffers, a.macs, a.flops),
        "{name}: totals"
    );
    let wb = archscope::onnx::weights(&back, &imp)
        .expect("weights fit")
        .expect("the file holds them");
    let shape: Vec<usize> = net.nodes[0].out_shapes[0]
        .0
        .iter()
        .map(|&d| d as usize)
        .collect();
    let count: usize = shape.iter().product();
    let x: Vec<f32> = (0..count).map(|i| ((i as f32) * 0.37).sin()).collect();
    let want = exec::run(net, &w, &[Tensor::new(shape.clone(), x.clone())], None).unwrap();
    let got = exec::run(&back, &wb, &[Tensor::new(shape, x)], None).unwrap();
    let (y, z) = (&want.outputs[0], &got.outputs[0]);
    assert_eq!(y.shape, z.shape, "{name}");
    let worst = y
        .data
        .iter()
        .zip(&z.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "{name}: outputs differ by {worst}");
    back
}

fn count(net: &Network, op: &str) -> usize {
    net.nodes.iter().filter(|n| n.layer.op() == op).count()
}

#[test]
fn convnexts_read_back_with_their_layernorm2d() {
    // At 64×64 (the figures are per-size; the patterns do not depend on it). A ConvNeXt has
    // a LayerNorm2d after the stem, before each of the 3 downsamplings and before the
    // classifier (5); its blocks' norms are channels-last LayerNorms (Transpose,
    // LayerNormalization, Transpose), read as ever.
    for (name, lns) in [("convnext_tiny", 5), ("convnext_small", 5)] {
        let net = zoo_net_with(name, &options_for(&[1, 3, 64, 64]));
        assert_eq!(count(&net, "layernorm2d"), lns, "{name}");
        let back = round_trip(name, &net);
        assert_eq!(count(&back, "layernorm2d"), lns, "{name}");
    }
}

#[test]
fn sobel_reads_back_with_its_magnitude() {
    let net = zoo_net_with("sobel", &BuildOptions::default());
    let back = round_trip("sobel", &net);
    assert_eq!(count(&back, "magnitude"), 1);
    // 18 parameters (2 filters of 3×3 on 1 channel), 903,168 MACs (18 per pixel at 224²).
    let t = analyze(&back, Dtype::F32).unwrap().totals;
    assert_eq!((t.params, t.macs), (18, 18 * 224 * 224));
}

#[test]
fn swins_read_back_with_their_windowed_attention() {
    // 12 blocks each (2, 2, 6, 2), every one a shifted_window_attention (src/onnx/swin.rs);
    // at the zoo's sizes (224² and 256²), with seeded weights.
    for name in ["swin_t", "swin_v2_t"] {
        let net = zoo_net_with(name, &BuildOptions::default());
        assert_eq!(count(&net, "shifted_window_attention"), 12, "{name}");
        let back = round_trip(name, &net);
        assert_eq!(count(&back, "shifted_window_attention"), 12, "{name}");
    }
}

#[test]
fn maxvit_reads_back_with_its_relative_position_attention() {
    // 11 MaxViT layers (2, 2, 5, 2), each a block and a grid attention: 22.
    let net = zoo_net_with("maxvit_t", &BuildOptions::default());
    assert_eq!(count(&net, "relative_position_attention"), 22);
    let back = round_trip("maxvit_t", &net);
    assert_eq!(count(&back, "relative_position_attention"), 22);
}

#[test]
fn gpt2_reads_back_with_its_embeddings_causal_attention_and_tied_head() {
    // The zoo's gpt2 at its 1,024 tokens, graph only (its 124,439,808 seeded weights would make
    // the test slow: the same export with weights runs to the same logits at the tiny size,
    // tests/onnx_gpt.rs). `archscope export` writes the ids' Cast and Gather, wpe's Gather of
    // 0…1023 and Expand, each attention's MatMul/Mul/Add of the causal constant/Softmax/MatMul,
    // the tanh GELU and the head's MatMul by the transpose of wte's table; each reads back as
    // the layer it came from (src/onnx/gpt.rs).
    let net = zoo_net_with("gpt2", &BuildOptions::default());
    let m = export(&net, None, ExportOptions::default()).expect("exports");
    let bytes = archscope::onnx::proto::encode_model(&m);
    let (back, imp) = archscope::onnx::build("gpt2.onnx", &bytes, &BuildOptions::default())
        .unwrap_or_else(|e| panic!("gpt2: {e}"));
    assert_eq!(
        weighted_layers(&back),
        weighted_layers(&net),
        "layer by layer"
    );
    let t = analyze(&back, Dtype::F32).unwrap().totals;
    // tests/data/gpt2_reference.json's PyTorch figures: the head is wte's table, counted
    // once; FlopCounterMode's MACs.
    assert_eq!((t.params, t.macs), (124_439_808, 145_824_153_600));
    assert_eq!(count(&back, "scaled_dot_product_attention"), 12);
    assert_eq!(count(&back, "gelu"), 12);
    assert_eq!(count(&back, "embedding"), 2);
    assert!(back.nodes.iter().any(|n| n.layer.tied().is_some()));
    assert!(imp.yaml.contains("ids: {tokens: 1024, vocab: 50257}"));
}
