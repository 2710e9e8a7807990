//! The Ultralytics heads decoded inside the model, and Ultralytics' state-dict names, against
//! the installed `ultralytics` package: tests/data/ultralytics_head_reference.json
//! (scripts/ultralytics_head_reference.py) holds, for the files of tests/data/ultralytics/, each
//! model's `state_dict()` names and shapes, and, for four heads (Detect legacy and current,
//! Segment, Pose), the eval-mode output of `model(x)` with every tensor set by `formula` by its
//! state-dict name (DFL's fixed weights kept) on a `formula` input at 64×64: the decoded boxes
//! (xywh in pixels: anchor points and strides, dist2bbox), class sigmoids, mask coefficients
//! and prototypes, decoded key points.

use crate::common::{self, data_json, f32s, formula, outputs_both_ways, root, usizes};
use archscope::ultralytics::{self, Options};
use archscope::yaml::Document;
use archscope::{exec, graph, BuildOptions, Network};
use serde_json::Value;

/// The translation of `key` (`file.yaml` or `file.yaml:scale`) at `input`, built.
fn net(key: &str, input: Option<(u64, u64)>) -> Network {
    let (file, scale) = match key.split_once(':') {
        Some((f, s)) => (f, Some(s.to_string())),
        None => (key, None),
    };
    let path = root().join("tests/data/ultralytics").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let doc = Document::parse(file, &text).unwrap();
    let m = ultralytics::translate(
        &doc,
        &Options {
            name: file.trim_end_matches(".yaml").into(),
            scale,
            nc: None,
            input,
        },
    )
    .unwrap_or_else(|e| panic!("{key}: {e}"));
    let tdoc = Document::parse("translated.yaml", &m.text).unwrap();
    graph::build_network(&tdoc, &BuildOptions::default()).unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// A safetensors file of a state dict (`[name, shape, dtype]` entries): every float tensor by
/// `formula`, DFL's convolution 0, 1, …, reg_max − 1 (as Ultralytics fixes it), batch norm's
/// step counters 0.
fn state_file(state: &Value) -> (Vec<u8>, usize) {
    use safetensors::tensor::Dtype as D;
    let mut floats = 0;
    let tensors: Vec<common::StTensor> = state
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let name = t[0].as_str().unwrap().to_string();
            let shape = usizes(&t[1]);
            let n: usize = shape.iter().product();
            match t[2].as_str().unwrap() {
                "float32" => {
                    floats += 1;
                    let v: Vec<f32> = if name.ends_with("dfl.conv.weight") {
                        (0..n).map(|i| i as f32).collect()
                    } else {
                        formula(&name, &shape)
                    };
                    let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    (name, shape, D::F32, b)
                }
                "int64" => (name, shape, D::I64, vec![0u8; 8 * n]),
                other => panic!("{name}: dtype {other}"),
            }
        })
        .collect();
    (common::safetensors_of(&tensors), floats)
}

#[test]
fn the_translation_reads_ultralytics_state_dict_names() {
    // A file with exactly each model's `state_dict()` (names, shapes) loads: no tensor missing
    // and none left over (each an error of the reader), every float tensor a layer's.
    let doc = data_json("ultralytics_head_reference.json");
    let names = doc["names"].as_object().unwrap();
    assert_eq!(names.len(), 8, "every test file, v11_like at n and m");
    for (key, state) in names {
        let net = net(key, None);
        let (file, floats) = state_file(state);
        let w = exec::load_safetensors(&net, &file, "state_dict.safetensors")
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        let loaded: usize = w.per_node.iter().map(|v| v.len()).sum();
        assert_eq!(loaded, floats, "{key}: tensors loaded");
    }
    // The names themselves, as Ultralytics' modules hold them (v11_like n).
    let net = net("v11_like.yaml:n", None);
    let prefix = |layer: &str| {
        let k = net.nodes.iter().position(|n| n.name == layer).unwrap();
        net.tensor_prefix[k].clone()
    };
    assert_eq!(prefix("m0"), "model.0.conv");
    assert_eq!(prefix("m0.bn"), "model.0.bn");
    assert_eq!(prefix("m2.m_0.cv1"), "model.2.m.0.cv1.conv");
    assert_eq!(prefix("m10.m_0.attn.qkv"), "model.10.m.0.attn.qkv.conv");
    assert_eq!(prefix("m10.m_0.ffn_1.bn"), "model.10.m.0.ffn.1.bn");
    assert_eq!(prefix("m23.cv3_1_0_0"), "model.23.cv3.1.0.0.conv");
    assert_eq!(prefix("m23.cv2_2_2"), "model.23.cv2.2.2");
    assert_eq!(prefix("m23.dfl_conv"), "model.23.dfl.conv");
}

#[test]
fn decoded_heads_equal_ultralytics_eval_outputs() {
    let doc = data_json("ultralytics_head_reference.json");
    let input = usizes(&doc["input"]);
    let every = doc["proto_every"].as_u64().unwrap() as usize;
    let cases = doc["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 4, "Detect (legacy, current), Segment, Pose");
    let x = exec::Tensor::new(input.clone(), formula("input", &input));
    for (key, want) in cases {
        let net = net(key, Some((input[2] as u64, input[3] as u64)));
        let state = &doc["names"][key];
        let (file, _) = state_file(state);
        let w = exec::load_safetensors(&net, &file, "w.safetensors").unwrap();
        let want_out = f32s(&want["output"]);
        let shape = usizes(&want["output_shape"]);
        for (path, out) in outputs_both_ways(&net, &w, &x) {
            assert_eq!(out.shape, shape, "{key} ({path}): decoded shape");
            // Boxes are in pixels (up to the 64-pixel input and beyond): 1e-4 relative to the
            // value, absolute below 1.
            let mut worst = 0f32;
            for (i, (a, b)) in out.data.iter().zip(&want_out).enumerate() {
                let err = (a - b).abs() / b.abs().max(1.0);
                assert!(
                    err <= 1e-4,
                    "{key} ({path}): value {i} (row {}, anchor {}): {a} vs Ultralytics {b}",
                    i / shape[2],
                    i % shape[2]
                );
                worst = worst.max(err);
            }
            assert!(worst < 1e-4, "{key}: {worst}");
        }
        if want.get("proto").is_some() {
            let direct = exec::run(&net, &w, std::slice::from_ref(&x), None).unwrap();
            let proto = &direct.outputs[1];
            assert_eq!(
                proto.shape,
                usizes(&want["proto_shape"]),
                "{key}: prototypes"
            );
            let want_p = f32s(&want["proto"]);
            let got: Vec<f32> = proto.data.iter().step_by(every).copied().collect();
            assert_eq!(got.len(), want_p.len(), "{key}: prototype values");
            for (i, (a, b)) in got.iter().zip(&want_p).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "{key}: prototype value {}: {a} vs {b}",
                    i * every
                );
            }
        }
    }
}

#[test]
fn the_decoding_costs_no_profiler_macs_and_adds_no_parameters() {
    // Ultralytics keeps anchors and strides as plain tensors (not parameters or buffers) and
    // decodes with functional ops: archscope's dist2bbox and keypoint_decode have no
    // parameters, and thop charges them nothing (tests/ultralytics.rs checks the totals).
    // No other profiler preset charges them either (docs/COUNTING.md).
    let pose = net("v8_like_pose.yaml:n", None);
    for c in archscope::Convention::ALL {
        let mut a = archscope::analyze(&pose, archscope::Dtype::F32).unwrap();
        archscope::convention::recount(&pose, &mut a, c).unwrap();
        for name in ["m11.dbox", "m11.kpts_decoded"] {
            let l = a.layers.iter().find(|l| l.name == name).unwrap();
            assert_eq!(l.params.total(), 0, "{name}: parameters");
            assert_eq!(l.macs, 0, "{name}: {c:?}'s MACs");
        }
    }
    // archscope's own FLOPs count the arithmetic (docs/COUNTING.md): the pose file's two
    // levels at 64×64 (8×8 and 4×4) are 80 anchors; 14 FLOPs per box; 5 key points of
    // 3 values: 6 + 4 each.
    let small = net("v8_like_pose.yaml:n", Some((64, 64)));
    let a = archscope::analyze(&small, archscope::Dtype::F32).unwrap();
    let flops = |name: &str| a.layers.iter().find(|l| l.name == name).unwrap().flops;
    assert_eq!(flops("m11.dbox"), 80 * 14);
    assert_eq!(flops("m11.kpts_decoded"), 80 * 5 * 10);
}
