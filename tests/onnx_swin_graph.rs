//! Graph-only Swin and Swin-V2 as `torch.onnx.export` (TorchScript, `export_params=False`)
//! writes them (scripts/onnx_swin.py --graph: the tiny models of tests/onnx_swin_torch.rs,
//! committed as tests/data/onnx/*_torch_graph.onnx). Neither file holds what identifies the
//! layer: Swin's relative-position bias is one folded 1×heads×L×L graph input with no values
//! (the table and its index are gone), Swin-V2's index and coordinate buffers are graph
//! inputs with no values. Each is refused at the attention, naming what the file shows and
//! what it cannot (src/onnx/swin_traced.rs, docs/ONNX.md "Not yet").

use crate::common::{data_json, read_onnx as read, refused_onnx};

fn error(file: &str) -> String {
    refused_onnx(file, &read(file)).to_string()
}

/// The graph inputs the script recorded, by name (shape).
fn inputs(name: &str) -> Vec<(String, Vec<u64>)> {
    let r = data_json("onnx_swin_graph_reference.json");
    r["models"][name]["onnx"]["inputs"]
        .as_object()
        .expect("inputs")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn a_graph_only_swin_says_its_bias_table_cannot_be_known() {
    // The exporter's folded bias of the first block: 2 heads, 4×4 windows = 16 tokens, one
    // graph input of 1×2×16×16 (named `onnx::Add_…`, with no values).
    let ins = inputs("swin_tiny_torch_graph");
    let folded: Vec<&str> = ins
        .iter()
        .filter(|(_, d)| d == &[1, 2, 16, 16])
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(folded.len(), 2, "one per block: {ins:?}");
    assert!(
        !ins.iter()
            .any(|(n, _)| n.ends_with("relative_position_index")
                || n.ends_with("relative_position_bias_table")),
        "{ins:?}"
    );
    let e = error("swin_tiny_torch_graph.onnx");
    assert!(
        e.contains("in the windowed attention `/features/features.1/features.1.0/attn` (torch.onnx.export's form, read as one layer)"),
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
        e.contains("The file shows 2 heads and windows of 16 tokens (1×16, 2×8, 4×4, 8×2, 16×1); it cannot show whether those 512 values are a table of (2·wh − 1)·(2·ww − 1)·2 parameters gathered by a 256-entry index buffer (PyTorch's count) or free values"),
        "{e}"
    );
    assert!(
        e.contains("export with the weights (export_params=True"),
        "{e}"
    );
}

#[test]
fn a_graph_only_swin_v2_says_its_buffers_have_no_values() {
    // The buffers are graph inputs (no values): the 16² index and the 7×7 coordinates.
    let ins = inputs("swin_v2_tiny_torch_graph");
    let shape = |leaf: &str| {
        ins.iter()
            .find(|(n, _)| n == &format!("features.1.0.attn.{leaf}"))
            .map(|(_, d)| d.clone())
    };
    assert_eq!(shape("relative_position_index"), Some(vec![256]));
    assert_eq!(shape("relative_coords_table"), Some(vec![1, 7, 7, 2]));
    let e = error("swin_v2_tiny_torch_graph.onnx");
    assert!(
        e.contains("in the windowed attention `/features/features.1/features.1.0/attn`"),
        "{e}"
    );
    assert!(
        e.contains("`features.1.0.attn.relative_position_index` (shape [256], a buffer the layer computes from its window, which a graph-only export declares as a graph input) has no values, nor "),
        "{e}"
    );
    assert!(
        e.contains("`features.1.0.attn.relative_coords_table` [1, 7, 7, 2]"),
        "{e}"
    );
    assert!(
        e.contains("archscope computes the region on a probe input with the file's values to check that it is torchvision's layer"),
        "{e}"
    );
}
