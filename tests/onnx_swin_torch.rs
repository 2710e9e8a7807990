//! Swin and Swin-V2 as `torch.onnx.export` (the TorchScript exporter) writes them, read as
//! `shifted_window_attention` layers (src/onnx/swin_traced.rs, src/onnx/fold.rs): tiny
//! one-stage models built from torchvision's classes (an unshifted and a shifted block,
//! 4×4 windows on an 8×8 map; scripts/onnx_swin.py --torch, committed under
//! tests/data/onnx/*_torch.onnx) against PyTorch's parameters, buffers, MACs and per-layer
//! figures and onnxruntime's output (tests/data/onnx_swin_torch_reference.json); the
//! exporter's shared initializers counted as PyTorch counts its parameters; a bias constant
//! that is no relative-position table and a changed mask refused at their `Add`; the
//! full-size swin_t / swin_v2_t exports read when the script left them in
//! $TMPDIR/archscope_onnx_swin/.

use crate::common::data_json;
use crate::common::refused_onnx;
use crate::common::{import_onnx as import, read_onnx as read};
use crate::onnx_swin::{edited, ours_rows, run_as_onnxruntime, torch_rows};
use archscope::onnx::proto;
use archscope::{analyze, Analysis, Dtype};

const TINY: [&str; 2] = ["swin_tiny_torch", "swin_v2_tiny_torch"];

/// (params, trainable, buffers, MACs) of an analysis (shared with onnx_swin_dynamo and
/// onnx_maxvit_torch).
pub(crate) fn totals(a: &Analysis) -> (u64, u64, u64, u64) {
    (
        a.totals.params,
        a.totals.trainable,
        a.totals.buffers,
        a.totals.macs,
    )
}

/// The same four figures of a script's PyTorch record.
pub(crate) fn torch_totals(r: &serde_json::Value) -> (u64, u64, u64, u64) {
    let g = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k}"));
    (g("params"), g("trainable"), g("buffers"), g("macs"))
}

#[test]
fn tiny_exports_have_pytorchs_figures_layer_by_layer() {
    let reference = data_json("onnx_swin_torch_reference.json");
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
    // By hand, the V1 attention (C 16, 2 heads, 4×4 windows): qkv 16·48 + 48, proj 16·16 + 16,
    // table 7·7·2 = 98: 1,186 parameters and the 16² index as a buffer (256).
    let (net, _) = import("swin_tiny_torch.onnx", &read("swin_tiny_torch.onnx"));
    let a = analyze(&net, Dtype::F32).expect("analyses");
    let l = a
        .layers
        .iter()
        .find(|l| l.op == "shifted_window_attention")
        .expect("an attention");
    assert_eq!(
        (l.params.total(), l.params.buffers),
        (16 * 48 + 48 + 16 * 16 + 16 + 98, 256)
    );
}

#[test]
fn shared_initializers_count_once_per_module() {
    // The exporter stores equal tensors once (the zero biases, the LayerNorms' ones) and gives
    // each other parameter of that value as an `Identity` of it, under its own name. archscope
    // counts a tensor once per layer that reads it (directly or through such an Identity), as
    // PyTorch counts each module's parameter.
    let reference = data_json("onnx_swin_torch_reference.json");
    for name in TINY {
        let f = format!("{name}.onnx");
        let m = proto::decode_model(&f, &read(&f)).expect("decodes");
        let g = m.graph.as_ref().expect("graph");
        let identities = g
            .node
            .iter()
            .filter(|n| n.op_type.as_deref() == Some("Identity"))
            .count();
        let held: u64 = g
            .initializer
            .iter()
            .map(|t| t.dims.iter().product::<i64>() as u64)
            .sum();
        let r = &reference["models"][name];
        assert_eq!(
            identities as u64,
            r["onnx"]["shared_by_identity"].as_u64().unwrap(),
            "{f}"
        );
        assert!(identities > 0, "{f}: the file shares tensors");
        let (params, _, buffers, _) = torch_totals(&r["torch"]);
        // Each Identity gives one more module its own copy: counted, the import has PyTorch's
        // parameters and buffers although the file stores those tensors once.
        let (net, _) = import(&f, &read(&f));
        let a = analyze(&net, Dtype::F32).expect("analyses");
        assert_eq!(
            (a.totals.params, a.totals.buffers),
            (params, buffers),
            "{f}"
        );
        assert!(held > 0, "{f}");
    }
}

#[test]
fn tiny_exports_run_as_onnxruntime() {
    run_as_onnxruntime("onnx_swin_torch_reference.json", &TINY);
}

#[test]
fn a_bias_that_is_no_table_is_refused_at_its_add() {
    // The first block's folded 1×2×16×16 bias: one entry changed, so that two positions of the
    // same relative offset (tokens (0, 0) and (1, 1) share the zero offset) disagree.
    let e = edited("swin_tiny_torch.onnx", |_, inits| {
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
        e.contains("in the windowed attention `/features/features.1/features.1.0/attn` (torch.onnx.export's form, read as one layer)"),
        "{e}"
    );
    assert!(
        e.contains("the constant added here is no relative-position bias of the layer's 4×4 windows (1 entries disagree with the table they give): head 0, tokens (1, 1) hold"),
        "{e}"
    );
    assert!(e.contains("(Add)"), "{e}");
}

#[test]
fn a_changed_mask_is_refused_at_its_add() {
    // The shifted block's mask fills with −50 instead of torchvision's −100.
    let e = edited("swin_tiny_torch.onnx", |nodes, _| {
        let mut changed = 0;
        for n in nodes.iter_mut().filter(|n| {
            n.op_type.as_deref() == Some("Constant")
                && n.name
                    .as_deref()
                    .is_some_and(|s| s.starts_with("/features/features.1/features.1.1/attn/"))
        }) {
            let t = n.attribute[0].t.as_mut().expect("a tensor");
            if t.data_type == Some(proto::dtype::FLOAT)
                && proto::tensor_to_f32(t).is_ok_and(|v| v == [-100.0])
            {
                t.raw_data = Some((-50f32).to_le_bytes().to_vec());
                t.float_data.clear();
                changed += 1;
            }
        }
        assert!(changed > 0, "the −100 fill");
    });
    assert!(
        e.contains("`/features/features.1/features.1.1/attn`"),
        "{e}"
    );
    assert!(
        e.contains("the mask added here differs from the one the layer builds for window [4, 4] and shift [2, 2]"),
        "{e}"
    );
    assert!(e.contains("hold -50 where the layer has -100"), "{e}");
    assert!(e.contains("(Add)"), "{e}");
}

#[test]
fn full_size_exports_read_when_present() {
    // scripts/onnx_swin.py --torch leaves torchvision's swin_t (224²) and swin_v2_t (256²)
    // there, exported unchanged; the figures are torch_reference's (the zoo's YAML figures).
    let reference = data_json("onnx_swin_torch_reference.json");
    let dir = std::env::temp_dir().join("archscope_onnx_swin");
    for name in ["swin_t", "swin_v2_t"] {
        let path = dir.join(format!("{name}_torch.onnx"));
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let (net, _) = import(&format!("{name}_torch.onnx"), &bytes);
        let a = analyze(&net, Dtype::F32).expect("analyses");
        assert_eq!(
            totals(&a),
            torch_totals(&reference["full"][name]["torch"]),
            "{name}"
        );
    }
    // The committed figures are PyTorch's for the zoo's models (tests/data reference).
    assert_eq!(
        torch_totals(&reference["full"]["swin_t"]["torch"]),
        (28_288_354, 28_288_354, 28_812, 4_490_566_656)
    );
}

#[test]
fn a_probe_over_the_limit_is_refused() {
    // The tiny Swin's input declared with a batch of 5,000: the first attention's input is then
    // 5,000 × 8 × 8 × 16 = 5,120,000 elements, over the 2^22 = 4,194,304 the reader computes
    // on its probe (docs/ONNX.md "Limits"); refused before anything that size is made.
    let mut m = proto::decode_model("swin_tiny_torch.onnx", &read("swin_tiny_torch.onnx"))
        .expect("decodes");
    let g = m.graph.as_mut().expect("graph");
    let Some(proto::type_proto::Value::TensorType(t)) =
        g.input[0].r#type.as_mut().and_then(|t| t.value.as_mut())
    else {
        panic!("a tensor type")
    };
    t.shape.as_mut().expect("shape").dim[0].value =
        Some(proto::tensor_shape_proto::dimension::Value::DimValue(5000));
    let e = refused_onnx("big.onnx", &proto::encode_model(&m)).to_string();
    assert!(
        e.contains("`/features/features.1/features.1.0/attn`"),
        "{e}"
    );
    assert!(
        e.contains("its input has 5120000 elements: archscope computes the region on a probe of at most 4194304"),
        "{e}"
    );
}
