//! Swin and Swin-V2 as the dynamo exporter (`torch.onnx.export(..., dynamo=True)`) writes
//! them, read as `shifted_window_attention` layers (src/onnx/swin_traced.rs): the regions found
//! by the `namespace` metadata the exporter keeps on each node (its node names carry no module
//! scope). Tiny one-stage models of torchvision's classes (an unshifted and a shifted block;
//! Swin 4×4 windows on an 8×8 map, Swin-V2 3×3 windows on a 6×6 map; scripts/onnx_swin.py
//! --dynamo,
//! committed as tests/data/onnx/*_dynamo.onnx) against PyTorch's parameters, buffers, MACs and
//! per-layer figures and onnxruntime's output (tests/data/onnx_swin_dynamo_reference.json);
//! V2's folded `cpb_mlp.0` product and `exp(logit_scale)` recovered; a changed bias and a
//! changed folded product refused at their node; the full-size swin_t / swin_v2_t exports
//! read when the script left them in $TMPDIR/archscope_onnx_swin/.

use crate::common::data_json;
use crate::common::{import_onnx as import, read_onnx as read};
use crate::onnx_swin::{edited, ours_rows, run_as_onnxruntime, torch_rows};
use crate::onnx_swin_torch::{torch_totals, totals};
use archscope::onnx::proto;
use archscope::{analyze, Dtype};

const TINY: [&str; 2] = ["swin_tiny_dynamo", "swin_v2_tiny_dynamo"];

#[test]
fn tiny_dynamo_exports_have_pytorchs_figures_layer_by_layer() {
    let reference = data_json("onnx_swin_dynamo_reference.json");
    for name in TINY {
        let f = format!("{name}.onnx");
        let (net, imp) = import(&f, &read(&f));
        assert!(imp.has_weights, "{f}");
        let a = analyze(&net, Dtype::F32).expect("analyses");
        let r = &reference["models"][name]["torch"];
        assert_eq!(
            totals(&a),
            torch_totals(r),
            "{f}: (params, trainable, buffers, MACs)"
        );
        assert_eq!(ours_rows(&a), torch_rows(r), "{f}: layer by layer");
        let attn: Vec<_> = a
            .layers
            .iter()
            .filter(|l| l.op == "shifted_window_attention")
            .collect();
        assert_eq!(
            attn.len(),
            2,
            "{f}: both blocks' attention read as one layer each"
        );
    }
    // By hand, the V2 attention (C 16, 2 heads, 3×3 windows): qkv 16·48 + 48, proj 16·16 +
    // 16, logit_scale 2, cpb_mlp 512·2 + 512 + 2·512: 3,634 parameters; buffers the 5·5·2
    // coordinates and the 9² index: 131. The dynamo file holds neither cpb_mlp.0.weight nor
    // logit_scale (folded), yet both count.
    let (net, _) = import(
        "swin_v2_tiny_dynamo.onnx",
        &read("swin_v2_tiny_dynamo.onnx"),
    );
    let a = analyze(&net, Dtype::F32).expect("analyses");
    let l = a
        .layers
        .iter()
        .find(|l| l.op == "shifted_window_attention")
        .expect("an attention");
    assert_eq!(
        (l.params.total(), l.params.buffers),
        (
            16 * 48 + 48 + 16 * 16 + 16 + 2 + 512 * 2 + 512 + 2 * 512,
            5 * 5 * 2 + 81
        )
    );
}

#[test]
fn tiny_dynamo_exports_run_as_onnxruntime() {
    run_as_onnxruntime("onnx_swin_dynamo_reference.json", &TINY);
}

#[test]
fn the_v2_folded_products_are_not_in_the_file() {
    // What makes the V2 file different: no `cpb_mlp.0.weight` nor `logit_scale` tensor, but a
    // 1×5×5×512 constant per block (the coordinates times the weight) and a 2×1×1 one (the
    // exp of the clamped scale).
    let f = "swin_v2_tiny_dynamo.onnx";
    let m = proto::decode_model(f, &read(f)).expect("decodes");
    let g = m.graph.as_ref().expect("graph");
    let names: Vec<&str> = g
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with("cpb_mlp.0.weight") || n.ends_with("logit_scale")),
        "{names:?}"
    );
    let folded = g
        .initializer
        .iter()
        .filter(|t| t.dims == [1, 5, 5, 512])
        .count();
    assert_eq!(folded, 2);
    assert!(g.initializer.iter().any(|t| t.dims == [2, 1, 1]));
}

#[test]
fn a_changed_dynamo_bias_is_refused_at_its_add() {
    // The first block's folded 1×2×16×16 bias (`unsqueeze`): one entry changed, so that two
    // positions of the same relative offset (tokens (0, 0) and (1, 1)) disagree.
    let e = edited("swin_tiny_dynamo.onnx", |_, inits| {
        let t = inits
            .iter_mut()
            .find(|t| t.dims == [1, 2, 16, 16])
            .expect("the folded bias");
        let mut v = proto::tensor_to_f32(t).expect("data");
        v[17] += 1.0; // head 0, tokens (1, 1)
        t.raw_data = Some(v.iter().flat_map(|x| x.to_le_bytes()).collect());
        t.float_data.clear();
    });
    assert!(
        e.contains("in the windowed attention `features.1.0.attn` (torch.onnx.export's form, read as one layer)"),
        "{e}"
    );
    assert!(
        e.contains("the constant added here is no relative-position bias of the layer's 4×4 windows (1 entries disagree with the table they give): head 0, tokens (1, 1) hold"),
        "{e}"
    );
    assert!(e.contains("(Add)"), "{e}");
}

#[test]
fn a_folded_cpb_product_that_is_no_product_is_refused() {
    // The first block's 1×5×5×512 product of the coordinates by cpb_mlp.0's weight: the
    // centre row 12 (offset (0, 0), coordinates (0, 0)) must be 0 for any weight; made 1 at
    // unit 0.
    let e = edited("swin_v2_tiny_dynamo.onnx", |_, inits| {
        let t = inits
            .iter_mut()
            .find(|t| t.dims == [1, 5, 5, 512])
            .expect("the folded product");
        let mut v = proto::tensor_to_f32(t).expect("data");
        v[12 * 512] = 1.0;
        t.raw_data = Some(v.iter().flat_map(|x| x.to_le_bytes()).collect());
        t.float_data.clear();
    });
    assert!(e.contains("`features.1.0.attn`"), "{e}");
    assert!(
        e.contains("the constant added to cpb_mlp.0's bias is no product of the layer's relative coordinates by a weight: unit 0, row 12 holds 1 where the best fit gives"),
        "{e}"
    );
}

#[test]
fn full_size_dynamo_exports_read_when_present() {
    // scripts/onnx_swin.py --dynamo leaves torchvision's swin_t (224²) and swin_v2_t (256²)
    // there, exported unchanged (all metadata kept); the figures are torch_reference's.
    let reference = data_json("onnx_swin_dynamo_reference.json");
    let dir = std::env::temp_dir().join("archscope_onnx_swin");
    for name in ["swin_t", "swin_v2_t"] {
        let path = dir.join(format!("{name}_dynamo.onnx"));
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let (net, _) = import(&format!("{name}_dynamo.onnx"), &bytes);
        let a = analyze(&net, Dtype::F32).expect("analyses");
        assert_eq!(
            totals(&a),
            torch_totals(&reference["full"][name]["torch"]),
            "{name}"
        );
    }
    // The committed figures are PyTorch's for the zoo's models.
    assert_eq!(
        torch_totals(&reference["full"]["swin_t"]["torch"]),
        (28_288_354, 28_288_354, 28_812, 4_490_566_656)
    );
    assert_eq!(
        torch_totals(&reference["full"]["swin_v2_t"]["torch"]),
        (28_351_570, 28_351_570, 54_552, 5_939_690_496)
    );
}
