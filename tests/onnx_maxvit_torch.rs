//! `Einsum`, MaxViT as `torch.onnx.export` (the TorchScript exporter) writes it, and `Exp` of a
//! learned tensor (src/onnx/einsum.rs, src/onnx/maxvit_traced.rs, src/onnx/learned_exp.rs),
//! against PyTorch's figures and onnxruntime's outputs (scripts/onnx_maxvit.py,
//! tests/data/onnx_maxvit_reference.json):
//! - `einsum_mix.onnx`: five torch.einsum equations (Q·Kᵀ with the heads moved, ·V back to the
//!   tokens' layout, by a learned matrix, a permutation, a broadcast batched product);
//! - `maxvit_tiny_torch.onnx`: torchvision's MaxVit at tests/data/onnx/maxvit_tiny.yaml's size,
//!   its attentions read as `relative_position_attention` layers, layer by layer PyTorch's and
//!   the YAML model's; a changed bias refused at its `Add`;
//! - `exp_scale.onnx` and `exp_scale_graph.onnx`: a convolution times `logit_scale.exp()`;
//! - torchvision's maxvit_t at 224² when the script left it in $TMPDIR/archscope_onnx_maxvit/.

use crate::common::{data_json, import_onnx as import, read_onnx as read, u64s, usizes};
use crate::onnx_swin::{edited, ours_rows, torch_rows};
use crate::onnx_swin_torch::{torch_totals, totals};
use archscope::onnx::{self, proto};
use archscope::{analyze, exec, Analysis, Dtype};

fn reference() -> serde_json::Value {
    data_json("onnx_maxvit_reference.json")
}

fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

/// Runs `file` with its own weights on the reference input; asserts onnxruntime's output.
pub(crate) fn runs_as_onnxruntime(file: &str, r: &serde_json::Value) {
    let (net, imp) = import(file, &read(file));
    let w = onnx::weights(&net, &imp)
        .expect("weights")
        .expect("the file holds its weights");
    let x: Vec<f32> = f64s(&r["input"]).iter().map(|&v| v as f32).collect();
    let input = archscope::tensor::Tensor::new(usizes(&r["input_shape"]), x);
    let out = exec::run(&net, &w, &[input], None).expect("runs");
    assert_eq!(
        out.outputs[0].shape,
        usizes(&r["output_shape"]),
        "{file}: output shape"
    );
    crate::common::assert_onnxruntime_output(file, &out.outputs[0].data, &f64s(&r["output"]));
}

fn count(a: &Analysis, op: &str) -> usize {
    a.layers.iter().filter(|l| l.op == op).count()
}

#[test]
fn einsum_equations_read_as_products_with_pytorchs_figures() {
    let r = &reference()["models"]["einsum_mix"];
    let (net, imp) = import("einsum_mix.onnx", &read("einsum_mix.onnx"));
    assert!(imp.has_weights);
    let a = analyze(&net, Dtype::F32).expect("analyses");
    // PyTorch's 250 parameters; FlopCounterMode's MACs (torch.einsum runs each contraction as
    // one bmm: addmm 1,440 / 2 for the four nn.Linear, bmm 1,072 / 2 for the einsums).
    assert_eq!(totals(&a), torch_totals(&r["torch"]));
    assert_eq!(
        r["torch"]["flops_by_op"]["aten.bmm"].as_u64(),
        Some(2 * (128 + 128 + 160 + 120))
    );
    // By hand, per equation (b = 1): bihd,bjhd->bhij 2·4·4·4 = 128, bhij,bjhd->bihd 128,
    // bij,kj->bik 4·8·5 = 160 (a linear layer), bik->bki none, ...ij,...jk->...ik 2·5·4·3 = 120.
    let einsum_macs: u64 = a
        .layers
        .iter()
        .filter(|l| l.op == "matmul")
        .map(|l| l.macs)
        .sum();
    assert_eq!(einsum_macs, 128 + 128 + 120);
    assert_eq!(
        count(&a, "matmul"),
        3,
        "three contractions of computed tensors"
    );
    // q, k, v, r and the einsum by the learned 5×8 matrix.
    assert_eq!(count(&a, "linear"), 5);
    let w = a
        .layers
        .iter()
        .find(|l| l.op == "linear" && l.params.total() == 40)
        .expect("the learned matrix as a linear layer without bias");
    assert_eq!(w.macs, 160);
    assert_eq!(
        r["onnx"]["equations"].as_array().map(Vec::len),
        Some(5),
        "the file holds the five equations"
    );
}

#[test]
fn einsum_mix_runs_as_onnxruntime() {
    runs_as_onnxruntime(
        "einsum_mix.onnx",
        &reference()["models"]["einsum_mix"]["onnx"],
    );
}

/// einsum_mix.onnx with its Einsum number `k` given equation `eq`.
fn with_equation(k: usize, eq: &str) -> String {
    edited("einsum_mix.onnx", |nodes, _| {
        let n = nodes
            .iter_mut()
            .filter(|n| n.op_type.as_deref() == Some("Einsum"))
            .nth(k)
            .expect("an Einsum");
        n.attribute[0].s = Some(eq.as_bytes().to_vec());
    })
}

#[test]
fn an_equation_archscope_cannot_express_is_refused_with_the_node() {
    // The first Einsum reads q and k, both N×4×2×4 (b i h d, b j h d).
    let cases = [
        // The batch moved from the front.
        ("bihd,bjhd->hbij", "archscope keeps the batch first"),
        // `j` only in the second operand and not the output: summed out of one operand.
        (
            "bihd,bjhd->bhi",
            "label `j` of operand 1 is in neither the other operand nor the output",
        ),
        // No summed label: an elementwise product.
        ("bihd,bihd->bihd", "no label is summed"),
        // A diagonal.
        ("bihh,bjhd->bhij", "operand 0 repeats label `h`"),
        // Labels that do not fit the operand's rank.
        (
            "bih,bjhd->bhij",
            "term `bih` has 3 labels for an operand of rank 4",
        ),
    ];
    for (eq, want) in cases {
        let e = with_equation(0, eq);
        assert!(e.contains(&format!("Einsum `{eq}`: {want}")), "{eq}: {e}");
        assert!(e.contains("(Einsum)"), "{eq}: the node named: {e}");
        assert!(
            e.contains("help: archscope reads an Einsum that is a contraction"),
            "{eq}: {e}"
        );
    }
    // The learned matrix (`bij,kj->bik`) with its other label `k` summed too: no linear layer.
    let e = with_equation(2, "bij,kj->bi");
    assert!(
        e.contains("operand 1 is a constant (kj): archscope reads a computed tensor by a constant matrix with one summed label"),
        "{e}"
    );
}

#[test]
fn tiny_maxvit_has_pytorchs_figures_layer_by_layer() {
    let r = &reference()["models"]["maxvit_tiny_torch"];
    let (net, imp) = import("maxvit_tiny_torch.onnx", &read("maxvit_tiny_torch.onnx"));
    assert!(imp.has_weights);
    let a = analyze(&net, Dtype::F32).expect("analyses");
    // PyTorch's 14,482 parameters, 1,456 buffers (the four 16×16 relative_position_index and
    // the batch norms') and 614,432 MACs.
    assert_eq!(totals(&a), torch_totals(&r["torch"]));
    assert_eq!(ours_rows(&a), torch_rows(&r["torch"]), "layer by layer");
    // Block and grid attention of both stages, one layer each.
    assert_eq!(count(&a, "relative_position_attention"), 4);
    assert_eq!(count(&a, "matmul"), 0, "no Einsum left as a product");
    // The same model written as the zoo writes maxvit_t: equal layer by layer (output shape,
    // parameters, MACs of each layer with parameters or MACs).
    let yaml = archscope::graph::Network::from_yaml(
        "maxvit_tiny.yaml",
        &std::fs::read_to_string(crate::common::root().join("tests/data/onnx/maxvit_tiny.yaml"))
            .expect("reads"),
        &Default::default(),
    )
    .expect("builds");
    let y = analyze(&yaml, Dtype::F32).expect("analyses");
    assert_eq!(totals(&a), totals(&y));
    assert_eq!(ours_rows(&a), ours_rows(&y));
    // Each attention's receptive field is the YAML's (the same layer type on the same input).
    let fields = |a: &Analysis| -> Vec<String> {
        a.layers
            .iter()
            .filter(|l| l.op == "relative_position_attention")
            .map(|l| format!("{:?} {:?}", l.outputs, l.params))
            .collect()
    };
    assert_eq!(fields(&a), fields(&y));
    // By hand, the first attention (D 8, heads of 4 features: 2 heads, 4×4 partitions): to_qkv
    // 8·24 + 24, merge 8·8 + 8, table 7·7·2 = 98: 386 parameters, the 16² index (256).
    let l = a
        .layers
        .iter()
        .find(|l| l.op == "relative_position_attention")
        .expect("an attention");
    assert_eq!(
        (l.params.total(), l.params.buffers),
        (8 * 24 + 24 + 8 * 8 + 8 + 98, 256)
    );
}

#[test]
fn tiny_maxvit_runs_as_onnxruntime() {
    let r = &reference()["models"]["maxvit_tiny_torch"]["onnx"];
    runs_as_onnxruntime("maxvit_tiny_torch.onnx", r);
}

#[test]
fn a_bias_that_is_no_table_is_refused_at_its_add() {
    // The first attention's folded 1×2×16×16 bias with one entry changed: tokens (1, 1) and
    // (0, 0) share the zero offset and now disagree.
    let e = edited("maxvit_tiny_torch.onnx", |_, inits| {
        let t = inits
            .iter_mut()
            .find(|t| t.dims == [1, 2, 16, 16])
            .expect("a folded bias");
        let mut v = proto::tensor_to_f32(t).expect("data");
        v[17] += 1.0;
        t.raw_data = Some(v.iter().flat_map(|x| x.to_le_bytes()).collect());
        t.float_data.clear();
    });
    assert!(
        e.contains("(torch.onnx.export's form, read as one layer)"),
        "{e}"
    );
    assert!(e.contains("attn_layer.1`"), "{e}");
    assert!(
        e.contains("the constant added here is no relative-position bias of the layer's 4×4 windows (1 entries disagree with the table they give): head 0, tokens (1, 1) hold"),
        "{e}"
    );
    assert!(e.contains("(Add)"), "{e}");
}

#[test]
fn a_changed_scale_is_refused_on_the_probe() {
    // k scaled by 0.5 instead of torchvision's 1/√8: the region computes another function.
    let e = edited("maxvit_tiny_torch.onnx", |nodes, _| {
        let mut changed = 0;
        for n in nodes.iter_mut().filter(|n| {
            n.op_type.as_deref() == Some("Constant")
                && n.name
                    .as_deref()
                    .is_some_and(|s| s.contains("/attn_layer.1/"))
        }) {
            let t = n.attribute[0].t.as_mut().expect("a tensor");
            if t.data_type == Some(proto::dtype::FLOAT)
                && proto::tensor_to_f32(t)
                    .is_ok_and(|v| v.len() == 1 && (v[0] - 8f32.sqrt().recip()).abs() < 1e-6)
            {
                t.raw_data = Some(0.5f32.to_le_bytes().to_vec());
                t.float_data.clear();
                changed += 1;
            }
        }
        assert!(changed > 0, "the 1/√8 scale");
    });
    assert!(
        e.contains("on a probe input the region computes another function than the layer"),
        "{e}"
    );
}

#[test]
fn exp_of_a_parameter_is_a_learned_scale() {
    let r = &reference()["models"]["exp_scale"];
    for file in ["exp_scale.onnx", "exp_scale_graph.onnx"] {
        let (net, imp) = import(file, &read(file));
        assert_eq!(imp.has_weights, file == "exp_scale.onnx");
        let a = analyze(&net, Dtype::F32).expect("analyses");
        // PyTorch's 113 parameters: the convolution's 4·3·3·3 + 4 and logit_scale's one.
        assert_eq!(totals(&a), torch_totals(&r["torch"]), "{file}");
        let s = a
            .layers
            .iter()
            .find(|l| l.op == "scalar")
            .expect("a scalar layer");
        assert_eq!((s.params.trainable, s.macs), (1, 0), "{file}");
        assert!(
            imp.yaml.contains("kind: parameter, exp: true"),
            "{}",
            imp.yaml
        );
    }
    runs_as_onnxruntime("exp_scale.onnx", &r["onnx"]);
}

#[test]
fn full_size_maxvit_reads_when_present() {
    // scripts/onnx_maxvit.py leaves torchvision's maxvit_t (224², random weights) and its
    // input there; the figures are torch_reference's (the zoo YAML's).
    full_size_reads_when_present("maxvit_t", "maxvit_t_torch.onnx");
}

/// The full-size maxvit_t export `file` that `scripts/onnx_maxvit.py` leaves in the temporary
/// directory (reference entry `key`), when present: PyTorch's totals, the zoo's layers, and
/// `run` on the script's input equal to onnxruntime's output.
pub(crate) fn full_size_reads_when_present(key: &str, file: &str) {
    let doc = reference();
    let r = &doc["full"][key];
    assert_eq!(
        torch_totals(&r["torch"]),
        (30_919_624, 30_919_624, 100_438, 5_558_046_720)
    );
    let dir = std::env::temp_dir().join("archscope_onnx_maxvit");
    let Ok(bytes) = std::fs::read(dir.join(file)) else {
        return;
    };
    let (net, imp) = import(file, &bytes);
    let a = analyze(&net, Dtype::F32).expect("analyses");
    assert_eq!(totals(&a), torch_totals(&r["torch"]));
    let zoo = crate::common::zoo_analysis("maxvit_t");
    assert_eq!(
        ours_rows(&a),
        ours_rows(&zoo),
        "the zoo's maxvit_t layer by layer"
    );
    let Ok(raw) = std::fs::read(dir.join("maxvit_t_input.f32")) else {
        return;
    };
    let x: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let w = onnx::weights(&net, &imp)
        .expect("weights")
        .expect("weights");
    let shape = u64s(&r["onnx"]["input_shape"])
        .iter()
        .map(|&d| d as usize)
        .collect();
    let out = exec::run(&net, &w, &[archscope::tensor::Tensor::new(shape, x)], None).expect("runs");
    crate::common::assert_onnxruntime_output(
        file,
        &out.outputs[0].data,
        &f64s(&r["onnx"]["output"]),
    );
}

#[test]
fn a_learned_log_scale_exports_and_reads_back() {
    // archscope export writes the scalar's `exp: true` as `Exp` of its weight: read back, the
    // same parameters and layers, and the same output bit for bit.
    let r = &reference()["models"]["exp_scale"]["onnx"];
    let (net, imp) = import("exp_scale.onnx", &read("exp_scale.onnx"));
    let w = onnx::weights(&net, &imp)
        .expect("weights")
        .expect("weights");
    let m = onnx::export::export(&net, Some(&w), Default::default()).expect("exports");
    assert!(
        m.graph
            .as_ref()
            .expect("a graph")
            .node
            .iter()
            .any(|n| n.op_type.as_deref() == Some("Exp")),
        "the Exp written"
    );
    let bytes = proto::encode_model(&m);
    let (back, bimp) = import("exp_back.onnx", &bytes);
    let (a, b) = (
        analyze(&net, Dtype::F32).expect("analyses"),
        analyze(&back, Dtype::F32).expect("analyses"),
    );
    assert_eq!(totals(&b), totals(&a));
    let labels =
        |a: &Analysis| -> Vec<String> { a.layers.iter().map(|l| l.label.clone()).collect() };
    assert_eq!(labels(&b), labels(&a));
    assert!(
        labels(&a).iter().any(|l| l == "x × exp(c) (learned)"),
        "{:?}",
        labels(&a)
    );
    let wb = onnx::weights(&back, &bimp)
        .expect("weights")
        .expect("weights");
    let x: Vec<f32> = f64s(&r["input"]).iter().map(|&v| v as f32).collect();
    let input = || archscope::tensor::Tensor::new(usizes(&r["input_shape"]), x.clone());
    let y1 = exec::run(&net, &w, &[input()], None).expect("runs");
    let y2 = exec::run(&back, &wb, &[input()], None).expect("runs");
    assert_eq!(y1.outputs[0].data, y2.outputs[0].data);
}
