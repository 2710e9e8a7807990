//! `--input` sizes an ONNX file whose input height and width are symbolic (exported with
//! `dynamic_axes` on them): tests/data/onnx/resnet18_dynamic_graph.onnx is torchvision's
//! resnet18 exported so by scripts/onnx_dynamic.py, the same export as resnet18_graph.onnx
//! (fixed 224×224) but for those two axes. Sized at 224 it must give the static file's figures
//! layer by layer; at 320, the zoo's resnet18 at `--input 320`. Without `--input` the import is
//! a located error that says to pass it; a size that contradicts the file's fixed channels, or
//! has the wrong number of axes, is refused with what to give.

use crate::common::{archscope, arg, assert_rejected, json, root, scratch, stderr};
use archscope::onnx;
use archscope::{analyze, BuildOptions, Dtype, Network};

const DYN: &str = "tests/data/onnx/resnet18_dynamic_graph.onnx";

fn path(rel: &str) -> String {
    root().join(rel).to_string_lossy().into_owned()
}

/// One layer's (op, output shapes, parameters, buffers, MACs).
type Row = (&'static str, Vec<Vec<u64>>, u64, u64, u64);

/// Per layer: (op, output shapes, trainable parameters, buffers, MACs).
fn layers(net: &Network) -> Vec<Row> {
    let a = analyze(net, Dtype::F32).expect("analyses");
    a.layers
        .iter()
        .map(|l| {
            (
                l.op,
                l.outputs.iter().map(|s| s.0.clone()).collect(),
                l.params.trainable,
                l.params.buffers,
                l.macs,
            )
        })
        .collect()
}

#[test]
fn input_sizes_a_symbolic_height_and_width_as_the_static_export() {
    let bytes = std::fs::read(path(DYN)).expect("read");
    let stat = std::fs::read(path("tests/data/onnx/resnet18_graph.onnx")).expect("read");
    let (want, _) = onnx::build("static.onnx", &stat, &BuildOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    // Every spelling --input accepts for an image: C×H×W, H×W, one size for a square.
    for given in [&[3, 224, 224][..], &[224, 224], &[224]] {
        let imp = onnx::import_sized(DYN, &bytes, 1, Some(given)).unwrap_or_else(|e| panic!("{e}"));
        let net = onnx::build_imported(DYN, &imp, &BuildOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            net.nodes[0].out_shapes[0].0,
            vec![1, 3, 224, 224],
            "{given:?}"
        );
        assert_eq!(
            layers(&net),
            layers(&want),
            "--input {given:?}: layer by layer"
        );
    }
}

#[test]
fn input_320_gives_the_zoo_figures_at_320_from_the_binary() {
    let got = json(&["summary", &path(DYN), "--input", "320", "--format", "json"]);
    let zoo = json(&["summary", "resnet18", "--input", "320", "--format", "json"]);
    for k in ["params", "buffers", "macs", "flops", "activation_bytes"] {
        assert_eq!(got["totals"][k], zoo["totals"][k], "{k}");
    }
    // resnet18 at 320×320: 3,701,657,600 MACs (conv1 alone 64·3·49·160² = 240,844,800).
    assert_eq!(got["totals"]["macs"], 3_701_657_600u64);
    // --batch still sizes the symbolic batch.
    let b = json(&[
        "summary",
        &path(DYN),
        "--input",
        "3x320x320",
        "--batch",
        "4",
        "--format",
        "json",
    ]);
    assert_eq!(b["totals"]["macs"], 4 * 3_701_657_600u64);
}

#[test]
fn without_input_the_error_names_the_axis_and_says_to_pass_it() {
    let out = archscope(&["summary", &path(DYN)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("tensor `image` has shape [?, 3, ?, ?]: a dynamic dimension other than the batch (dimension 2, `height`)"),
        "{e}"
    );
    assert!(e.contains("give the input's size with --input"), "{e}");
    assert!(e.contains("--input 3x224x224"), "{e}");
}

#[test]
fn an_input_that_contradicts_the_file_or_misses_axes_is_refused() {
    let e = assert_rejected(
        &["summary", &path(DYN), "--input", "4x224x224"],
        "gives dimension 1 of graph input `image` the size 4, but the file fixes it at 3",
    );
    assert!(e.contains("its input is 3×?×? per sample"), "{e}");
    let e = assert_rejected(
        &["summary", &path(DYN), "--input", "7x3x224x224"],
        "--input 7x3x224x224 does not fit graph input `image` of per-sample shape 3×?×?",
    );
    assert!(
        e.contains("give all 3 sizes after the batch (or those after the channels)"),
        "{e}"
    );
}

#[test]
fn convert_takes_input_for_a_symbolic_file_only() {
    let dir = scratch("convert_dynamic");
    let out = dir.join("r18.yaml");
    let o = archscope(&["convert", &path(DYN), "--input", "224", "-o", arg(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).expect("written");
    assert!(text.contains("image: [3, 224, 224]"), "{text}");
    // A file that fixes its sizes is not resized by convert: refused, not ignored.
    let e = assert_rejected(
        &[
            "convert",
            &path("tests/data/onnx/resnet18_graph.onnx"),
            "--input",
            "320",
            "-o",
            arg(&out),
        ],
        "--input sizes an ONNX file whose input sizes are symbolic, and this file fixes them",
    );
    assert!(
        e.contains("export the model again at the size you want"),
        "{e}"
    );
}
