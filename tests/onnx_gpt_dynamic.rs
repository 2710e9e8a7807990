//! GPT-2 exported with dynamic batch and sequence axes and an attention-mask input
//! (`scripts/onnx_inputs.py --dynamic`, figures in tests/data/onnx_gpt_dynamic_reference.json):
//! the tiny GPT-2 of tests/onnx_inputs.rs written by both torch exporters with `batch` and
//! `sequence` symbols on `input_ids` and `attention_mask` reads at batch 1, 2 and 4 and 16, 8
//! and 5 tokens (`--batch`, and `--input` for the length; the mask's `sequence` is bound to the
//! ids' by its symbol) with PyTorch's parameters, FlopCounterMode's MACs at that batch and
//! length, and `run` with a mask padded on the right equal to onnxruntime's and PyTorch's
//! logits; the shape arithmetic folds with the bound sizes, not the export's. A length not
//! given, a length over the position table and a mask axis of another symbol are each refused
//! naming the input and the dimension. The full-size gpt2 exported so is checked where the
//! script's output directory holds it.

use crate::common::{archscope, assert_onnxruntime_output, data_json, f32s, json, read_onnx};
use crate::common::{read_saved_npy, root, stderr, weighted_rows};
use crate::onnx_inputs::attentions;
use archscope::onnx::{self, proto};
use archscope::tensor::Tensor;
use archscope::{analyze, exec, BuildOptions, Dtype, Network};
use std::path::PathBuf;

const FILES: [&str; 2] = [
    "gpt_tiny_mask_dynamic.onnx",
    "gpt_tiny_mask_dynamic_dynamo.onnx",
];

fn reference() -> serde_json::Value {
    data_json("onnx_gpt_dynamic_reference.json")
}

fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// `bytes` read at `batch` × `length` tokens (`--batch`, `--input length`).
fn read_at(
    f: &str,
    bytes: &[u8],
    batch: u64,
    length: u64,
) -> Result<(Network, onnx::Import), String> {
    let imp = onnx::import_sized(f, bytes, batch, Some(&[length])).map_err(|e| e.to_string())?;
    let opts = BuildOptions {
        batch,
        ..BuildOptions::default()
    };
    let net = onnx::build_imported(f, &imp, &opts).map_err(|e| e.to_string())?;
    Ok((net, imp))
}

#[test]
fn tiny_dynamic_gpt2_reads_at_each_batch_and_length_with_pytorch_figures() {
    let r = &reference()["tiny"];
    // PyTorch's count (tests/onnx_gpt.rs derives 29,184 by hand).
    assert_eq!(r["params"], 29_184);
    let settings = r["settings"].as_array().unwrap();
    let bl: Vec<(u64, u64)> = settings
        .iter()
        .map(|s| (s["batch"].as_u64().unwrap(), s["length"].as_u64().unwrap()))
        .collect();
    assert_eq!(bl, [(1, 16), (2, 8), (4, 5)]);
    // FlopCounterMode's MACs by hand, N samples of L tokens: per layer the four Conv1D,
    // N·L·(32·96 + 32·32 + 32·128 + 128·32) = N·L·12,288, and Q·Kᵀ and ·V of 2 heads,
    // 2·N·2·L·L·16 = 64·N·L²; the head N·L·32·100 = N·L·3,200. 1×16: 2·(196,608 + 16,384) +
    // 51,200 = 477,184; 2×8: 2·(196,608 + 8,192) + 51,200 = 460,800; 4×5: 2·(245,760 +
    // 6,400) + 64,000 = 568,320.
    let by_hand = |n: u64, l: u64| 2 * (n * l * 12_288 + 64 * n * l * l) + n * l * 3_200;
    for (s, &(n, l)) in settings.iter().zip(&bl) {
        assert_eq!(s["macs"].as_u64().unwrap(), by_hand(n, l), "{n}×{l}");
    }
    assert_eq!(by_hand(1, 16), 477_184);
    // The static export (tests/onnx_inputs.rs) at its 1×16, layer by layer.
    let (fixed, _) =
        crate::common::import_onnx("gpt_tiny_mask.onnx", &read_onnx("gpt_tiny_mask.onnx"));
    let fixed_rows = weighted_rows(&analyze(&fixed, Dtype::F32).unwrap());
    for f in FILES {
        // Both inputs declare the two symbols.
        let want = serde_json::json!([
            ["input_ids", ["batch", "sequence"]],
            ["attention_mask", ["batch", "sequence"]]
        ]);
        assert_eq!(r["files"][f]["inputs"], want, "{f}");
        assert!(r["files"][f]["bytes"].as_u64().unwrap() < 200_000, "{f}");
        let bytes = read_onnx(f);
        for (s, &(n, l)) in settings.iter().zip(&bl) {
            let (net, imp) = read_at(f, &bytes, n, l).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(
                imp.yaml.contains(&format!(
                    "  input_ids: {{tokens: {l}, vocab: 100}}\n  attention_mask: [{l}]\n"
                )),
                "{f}: {}",
                imp.yaml
            );
            let a = analyze(&net, Dtype::F32).unwrap();
            assert_eq!(a.totals.params, 29_184, "{f} {n}×{l}");
            assert_eq!(a.totals.macs, s["macs"].as_u64().unwrap(), "{f} {n}×{l}");
            let head = "attention, 2 heads×16, causal, key mask";
            assert_eq!(attentions(&net), [head, head], "{f} {n}×{l}");
            // The logits: N × L × 100.
            let out = net.nodes.last().unwrap().out_shapes[0].0.clone();
            assert_eq!(out, vec![n, l, 100], "{f} {n}×{l}");
            if f == FILES[0] && (n, l) == (1, 16) {
                assert_eq!(weighted_rows(&a), fixed_rows, "{f}: layer by layer");
            }
        }
    }
}

#[test]
fn tiny_dynamic_gpt2_runs_to_onnxruntime_and_pytorch_logits() {
    let r = &reference()["tiny"];
    for f in FILES {
        let bytes = read_onnx(f);
        for s in r["settings"].as_array().unwrap() {
            let (n, l) = (
                s["batch"].as_u64().unwrap() as usize,
                s["length"].as_u64().unwrap() as usize,
            );
            let (net, imp) = read_at(f, &bytes, n as u64, l as u64).unwrap();
            let w = onnx::weights(&net, &imp).unwrap().expect("weights");
            let mask = f32s(&s["mask"]);
            // Padded on the right: sample b loses its last 2·b tokens (one kept at least).
            for b in 0..n {
                let kept = mask[b * l..(b + 1) * l]
                    .iter()
                    .filter(|&&m| m == 1.0)
                    .count();
                assert_eq!(
                    kept,
                    l.saturating_sub(2 * b).max(1),
                    "{f} {n}×{l} sample {b}"
                );
            }
            let inputs = [
                Tensor::new(vec![n, l], f32s(&s["ids"])),
                Tensor::new(vec![n, l], mask),
            ];
            let y = exec::run(&net, &w, &inputs, None).expect("runs").outputs;
            assert_eq!(y[0].shape, vec![n, l, 100], "{f}");
            let label = format!("{f} {n}×{l}");
            assert_onnxruntime_output(&label, &y[0].data, &f64s(&s["ort_logits"][f]));
            assert_onnxruntime_output(&label, &y[0].data, &f64s(&s["torch_logits"]));
        }
    }
}

#[test]
fn the_binary_reads_the_dynamic_file_at_batch_and_length() {
    let p = root().join("tests/data/onnx").join(FILES[0]);
    let p = p.to_string_lossy();
    let r = &reference()["tiny"];
    let s = &r["settings"][2];
    assert_eq!(
        (s["batch"].as_u64(), s["length"].as_u64()),
        (Some(4), Some(5))
    );
    let j = json(&[
        "summary", &p, "--batch", "4", "--input", "5", "--format", "json",
    ]);
    assert_eq!(j["totals"]["params"], 29_184);
    assert_eq!(j["totals"]["macs"], s["macs"]);
}

/// The TorchScript file with `edit` applied to its graph, read at 1 × `length`.
fn edited(length: Option<u64>, edit: impl FnOnce(&mut proto::GraphProto)) -> String {
    let f = FILES[0];
    let mut m = proto::decode_model(f, &read_onnx(f)).expect("decodes");
    edit(m.graph.as_mut().unwrap());
    let bytes = proto::encode_model(&m);
    let r = match length {
        Some(l) => read_at(f, &bytes, 1, l).map(|_| ()),
        None => onnx::build(f, &bytes, &BuildOptions::default())
            .map(|_| ())
            .map_err(|e| e.to_string()),
    };
    r.expect_err("refused")
}

#[test]
fn a_dimension_that_cannot_be_bound_is_refused_naming_the_input_and_dimension() {
    // No length given.
    for f in FILES {
        let e = onnx::build(f, &read_onnx(f), &BuildOptions::default())
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tensor `input_ids` has shape [?, ?]: a dynamic dimension other than the batch (dimension 1, `sequence`)"),
            "{e}"
        );
        assert!(e.contains("give the sequence length with --input"), "{e}");
    }
    let o = archscope(&[
        "summary",
        &root()
            .join("tests/data/onnx")
            .join(FILES[0])
            .to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("(dimension 1, `sequence`)"),
        "{}",
        stderr(&o)
    );
    // Longer than the 16 positions of the table.
    for f in FILES {
        let e = read_at(f, &read_onnx(f), 1, 17).map(|_| ()).unwrap_err();
        assert!(e.contains("input `input_ids`"), "{f}: {e}");
        assert!(e.contains("dimension 1 (`sequence`) of 17"), "{f}: {e}");
        assert!(e.contains("16 positions"), "{f}: {e}");
    }
    // The mask's length under a symbol of its own: nothing binds it.
    let e = edited(Some(8), |g| {
        let i = g
            .input
            .iter_mut()
            .find(|i| i.name.as_deref() == Some("attention_mask"))
            .unwrap();
        let Some(proto::type_proto::Value::TensorType(t)) =
            i.r#type.as_mut().unwrap().value.as_mut()
        else {
            panic!("a tensor input")
        };
        t.shape.as_mut().unwrap().dim[1].value = Some(
            proto::tensor_shape_proto::dimension::Value::DimParam("mask_length".into()),
        );
    });
    assert!(
        e.contains("tensor `attention_mask` has shape [?, ?]: a dynamic dimension other than the batch (dimension 1, `mask_length`)"),
        "{e}"
    );
    assert!(
        e.contains("export it with one of the first input's, `batch`, `sequence`"),
        "{e}"
    );
}

/// The script's output directory (~500 MB files, not committed).
fn big_dir() -> PathBuf {
    std::env::var_os("ARCHSCOPE_ONNX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/archscope_onnx"))
}

/// transformers' full-size gpt2 exported with dynamic axes and a mask input (`--big`):
/// PyTorch's 124,439,808 parameters and FlopCounterMode's MACs at each batch and length the
/// script measured, and at 2 × 8 tokens `run` against onnxruntime's logits. Checked only where
/// the file exists; the committed tiny files cover the same structure.
fn gpt2_dynamic(f: &str) {
    let r = reference();
    let p = big_dir().join(f);
    let (Some(g), Ok(bytes)) = (r.get("gpt2"), std::fs::read(&p)) else {
        eprintln!(
            "{}: not there, skipped (scripts/onnx_inputs.py --dynamic --big writes it)",
            p.display()
        );
        return;
    };
    assert_eq!(g["params"], 124_439_808);
    for s in g["macs"].as_array().unwrap() {
        let (n, l) = (s["batch"].as_u64().unwrap(), s["length"].as_u64().unwrap());
        let (net, imp) = read_at(f, &bytes, n, l).unwrap_or_else(|e| panic!("{f}: {e}"));
        let a = analyze(&net, Dtype::F32).unwrap();
        assert_eq!(a.totals.params, 124_439_808, "{f} {n}×{l}");
        assert_eq!(a.totals.macs, s["macs"].as_u64().unwrap(), "{f} {n}×{l}");
        if (n, l) != (2, 8) {
            continue;
        }
        let w = onnx::weights(&net, &imp).unwrap().expect("weights");
        let dir = big_dir();
        let (is, ids) = read_saved_npy(&dir.join("gpt2_mask_dynamic_ids.npy"));
        let (ms, mask) = read_saved_npy(&dir.join("gpt2_mask_dynamic_mask.npy"));
        let (_, want) = read_saved_npy(&dir.join(format!("{f}.ort.npy")));
        let y = exec::run(
            &net,
            &w,
            &[Tensor::new(is, ids), Tensor::new(ms, mask)],
            None,
        )
        .expect("runs")
        .outputs;
        let worst = y[0]
            .data
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("{f}: run vs onnxruntime at 2×8: {worst:e}");
        assert!(worst <= 1e-4, "{f}: {worst}");
    }
}

#[test]
fn gpt2_torchscript_dynamic_when_present() {
    gpt2_dynamic("gpt2_mask_dynamic.onnx");
}

#[test]
fn gpt2_dynamo_dynamic_when_present() {
    gpt2_dynamic("gpt2_mask_dynamic_dynamo.onnx");
}
