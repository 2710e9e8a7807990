//! MaxViT as the dynamo exporter (`torch.onnx.export(..., dynamo=True)`) writes it, and as a
//! graph-only TorchScript export (src/onnx/maxvit_traced.rs; scripts/onnx_maxvit.py --dynamo,
//! tests/data/onnx_maxvit_reference.json):
//! - `maxvit_tiny_dynamo.onnx`: a one-stage tiny torchvision MaxVit exported with
//!   `optimize=False` (the dynamo exporter's default optimisation fuses the batch norms into
//!   the convolutions): its attentions found by the `namespace` metadata and read as
//!   `relative_position_attention` layers, PyTorch's parameters, buffers, MACs layer by layer,
//!   `run` equal to onnxruntime; a changed `relative_position_index` refused at the bias with
//!   MaxViT's help;
//! - `maxvit_tiny_torch_graph.onnx`: the two-stage tiny MaxViT without weights, refused at the
//!   first attention with what the file shows and lacks;
//! - torchvision's maxvit_t at 224² by the dynamo exporter, when the script left it in
//!   $TMPDIR/archscope_onnx_maxvit/.

use crate::common::{data_json, import_onnx as import, read_onnx as read, refused_onnx, u64s};
use crate::onnx_maxvit_torch::{full_size_reads_when_present, runs_as_onnxruntime};
use crate::onnx_swin::{edited, ours_rows, torch_rows};
use crate::onnx_swin_torch::{torch_totals, totals};
use archscope::onnx::proto;
use archscope::{analyze, Analysis, Dtype};

fn reference() -> serde_json::Value {
    data_json("onnx_maxvit_reference.json")
}

fn count(a: &Analysis, op: &str) -> usize {
    a.layers.iter().filter(|l| l.op == op).count()
}

const MAXVIT_HELP: &str = "help: archscope reads torchvision's MaxViT attention (`RelativePositionalMultiHeadAttention`) as torch.onnx.export writes it";

#[test]
fn tiny_dynamo_maxvit_has_pytorchs_figures_layer_by_layer() {
    let r = &reference()["models"]["maxvit_tiny_dynamo"];
    let f = "maxvit_tiny_dynamo.onnx";
    let (net, imp) = import(f, &read(f));
    assert!(imp.has_weights);
    // What the unoptimised export keeps: every batch norm a node (the stem's, the MBConv's
    // pre-norm and its two after convolutions), the bias tables and indices as initializers.
    assert_eq!(r["onnx"]["batch_norms"].as_u64(), Some(4));
    let inits: Vec<&str> = r["onnx"]["initializers"]
        .as_array()
        .expect("names")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        inits
            .iter()
            .filter(|n| n.ends_with(".relative_position_bias_table"))
            .count(),
        2,
        "{inits:?}"
    );
    let a = analyze(&net, Dtype::F32).expect("analyses");
    // PyTorch's 7,250 parameters, 697 buffers (the two 16×16 relative_position_index and the
    // four batch norms') and MACs.
    assert_eq!(totals(&a), torch_totals(&r["torch"]));
    assert_eq!(ours_rows(&a), torch_rows(&r["torch"]), "layer by layer");
    // The block and the grid attention, each one layer; no Einsum left as a product.
    assert_eq!(count(&a, "relative_position_attention"), 2);
    assert_eq!(count(&a, "matmul"), 0);
    assert_eq!(count(&a, "batchnorm2d"), 4);
    // By hand, an attention (D 8, heads of 4 features: 2 heads, 4×4 partitions): to_qkv
    // 8·24 + 24, merge 8·8 + 8, table 7·7·2 = 98: 386 parameters, the 16² index (256).
    for l in a
        .layers
        .iter()
        .filter(|l| l.op == "relative_position_attention")
    {
        assert_eq!(
            (l.params.total(), l.params.buffers),
            (8 * 24 + 24 + 8 * 8 + 8 + 98, 256)
        );
    }
}

#[test]
fn tiny_dynamo_maxvit_runs_as_onnxruntime() {
    runs_as_onnxruntime(
        "maxvit_tiny_dynamo.onnx",
        &reference()["models"]["maxvit_tiny_dynamo"]["onnx"],
    );
}

#[test]
fn a_changed_dynamo_index_is_refused_at_the_bias_with_maxvits_help() {
    // The file gathers the bias from the table by the index buffer (both initializers):
    // token (1, 1)'s offset to itself pointed at another row, so that two positions of the
    // same relative offset disagree.
    let e = edited("maxvit_tiny_dynamo.onnx", |_, inits| {
        let t = inits
            .iter_mut()
            .find(|t| {
                t.name.as_deref().is_some_and(|n| {
                    n.ends_with("window_attention.attn_layer.1.relative_position_index")
                })
            })
            .expect("the index");
        let mut v = proto::tensor_to_f64(t).expect("data");
        assert_eq!(v.len(), 256);
        v[17] = 0.0;
        t.raw_data = Some(v.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect());
        t.int64_data.clear();
    });
    assert!(
        e.contains("in the windowed attention `blocks.0.layers.0.layers.window_attention.attn_layer.1` (torch.onnx.export's form, read as one layer)"),
        "{e}"
    );
    assert!(
        e.contains(
            "the constant added here is no relative-position bias of the layer's 4×4 windows"
        ),
        "{e}"
    );
    assert!(e.contains(MAXVIT_HELP), "{e}");
    assert!(!e.contains("Swin attention"), "{e}");
}

/// The graph inputs the script recorded for the graph-only file, by name (shape).
fn graph_inputs() -> Vec<(String, Vec<u64>)> {
    reference()["models"]["maxvit_tiny_torch_graph"]["onnx"]["inputs"]
        .as_object()
        .expect("inputs")
        .iter()
        .map(|(k, v)| (k.clone(), u64s(v)))
        .collect()
}

#[test]
fn a_graph_only_maxvit_says_its_bias_table_cannot_be_known() {
    // The exporter folds each attention's table gathered by its index into one 1×heads×16×16
    // tensor: a graph input with no values; neither the table nor the index is in the file.
    let ins = graph_inputs();
    let folded: Vec<&str> = ins
        .iter()
        .filter(|(_, d)| d.len() == 4 && d[0] == 1 && d[2] == 16 && d[3] == 16)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(folded.len(), 4, "one per attention: {ins:?}");
    assert!(
        !ins.iter()
            .any(|(n, _)| n.ends_with("relative_position_index")
                || n.ends_with("relative_position_bias_table")),
        "{ins:?}"
    );
    let f = "maxvit_tiny_torch_graph.onnx";
    let e = refused_onnx(f, &read(f)).to_string();
    assert!(
        e.contains("in the windowed attention `/blocks.0/layers.0/layers/window_attention/attn_layer/attn_layer.1` (torch.onnx.export's form, read as one layer)"),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "its relative-position bias is graph input `{}` of shape [1, 2, 16, 16] with no values",
            folded[0]
        )),
        "{e}"
    );
    // What it shows, what it cannot: 7·7·2 = 98 table parameters and a 256-entry index
    // (PyTorch's count) against 512 free values.
    assert!(
        e.contains("The file shows 2 heads and partitions of 16 tokens (4×4); it cannot show whether those 512 values are a table of (2·4 − 1)²·2 = 98 parameters gathered by a 256-entry relative_position_index buffer (PyTorch's count) or free values, so the layer's parameters and buffers are not known"),
        "{e}"
    );
    assert!(
        e.contains("export with the weights (export_params=True"),
        "{e}"
    );
}

#[test]
fn full_size_dynamo_maxvit_reads_when_present() {
    // scripts/onnx_maxvit.py --dynamo leaves torchvision's maxvit_t (224², random weights)
    // exported with optimize=False and its input there; the figures are torch_reference's.
    full_size_reads_when_present("maxvit_t_dynamo", "maxvit_t_dynamo.onnx");
}
