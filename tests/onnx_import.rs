//! The ONNX reader against PyTorch and onnxruntime. Graph-only exports of five torchvision
//! models (written by scripts/onnx_reference.py, committed under tests/data/onnx/) must give
//! PyTorch's own parameter, buffer and MAC counts (tests/data/torchvision_zoo.json, measured by
//! scripts/torch_reference.py) and the zoo YAML model's per-layer output shapes; a small CNN
//! exported with its weights must run to onnxruntime's output within 1e-4; bad files are
//! located errors.

use crate::common::read_onnx as read;
use crate::common::{data_json, u64s};
use archscope::onnx::{self, proto};
use archscope::{analyze, exec, zoo, BuildOptions, Dtype, Network};

const MODELS: &[&str] = &[
    "resnet18",
    "mobilenet_v2",
    "efficientnet_b0",
    "googlenet",
    "convnext_tiny",
];

fn build(name: &str, batch: u64) -> Network {
    let opts = BuildOptions {
        batch,
        ..Default::default()
    };
    onnx::build(name, &read(name), &opts)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .0
}

/// Output shapes of the layers that carry weights (conv, linear, norms), in a canonical order:
/// the ONNX graph and the zoo YAML name and order branches differently.
fn weighted_shapes(net: &Network) -> Vec<(u64, Vec<u64>)> {
    let mut v: Vec<(u64, Vec<u64>)> = net
        .nodes
        .iter()
        .filter(|n| !n.layer.weights().is_empty())
        .map(|n| {
            let params: u64 = n
                .layer
                .weights()
                .iter()
                .map(|w| w.shape.iter().product::<usize>() as u64)
                .sum();
            (params, n.out_shapes[0].0.clone())
        })
        .collect();
    v.sort();
    v
}

/// ConvNeXt-T's five LayerNorm2d layers as (parameters, output shape), in either layout (2·C
/// parameters: weight and bias).
fn ln2d() -> Vec<(u64, Vec<u64>)> {
    let mut v = Vec::new();
    for (c, h) in [(96, 56), (96, 56), (192, 28), (384, 14), (768, 7), (768, 1)] {
        v.push((2 * c, vec![1, h, h, c]));
        v.push((2 * c, vec![1, c, h, h]));
    }
    v
}

#[test]
fn torchvision_exports_match_pytorch_and_the_zoo() {
    let ln = ln2d();
    let reference = data_json("torchvision_zoo.json");
    for &m in MODELS {
        let net = build(&format!("{m}_graph.onnx"), 1);
        let a = analyze(&net, Dtype::F32).unwrap();
        let r = &reference["models"][m];
        assert_eq!(a.totals.params, r["params"].as_u64().unwrap(), "{m} params");
        assert_eq!(
            a.totals.trainable,
            r["trainable"].as_u64().unwrap(),
            "{m} trainable"
        );
        assert_eq!(
            a.totals.buffers,
            r["buffers"].as_u64().unwrap(),
            "{m} buffers"
        );
        assert_eq!(a.totals.macs, r["macs"].as_u64().unwrap(), "{m} MACs");
        let out = &net.nodes[net.outputs[0].node].out_shapes[0].0;
        assert_eq!(out, &u64s(&r["output"]), "{m} output shape");
        // Layer by layer: every weighted layer's output shape and size as in the zoo's YAML.
        let zoo_net =
            Network::from_yaml(m, zoo::source(m).unwrap(), &BuildOptions::default()).unwrap();
        if m == "convnext_tiny" {
            // PyTorch exports torchvision's LayerNorm2d (stem, downsamplers, head) as
            // Transpose → LayerNormalization → Transpose: a channels-last `layernorm` between
            // two permutes, where the zoo writes `layernorm2d`. Same parameters and MACs
            // (checked above); the five norms' output layout differs, the rest must agree.
            let strip = |v: Vec<(u64, Vec<u64>)>| -> Vec<(u64, Vec<u64>)> {
                v.into_iter()
                    .filter(|(p, s)| !ln.contains(&(*p, s.clone())))
                    .collect()
            };
            assert_eq!(
                strip(weighted_shapes(&net)),
                strip(weighted_shapes(&zoo_net)),
                "{m} layers"
            );
            continue;
        }
        assert_eq!(
            weighted_shapes(&net),
            weighted_shapes(&zoo_net),
            "{m} layers"
        );
    }
}

#[test]
fn symbolic_batch_takes_the_batch_option() {
    // resnet18's batch dimension is symbolic in the file: --batch 4 gives 4 × the MACs.
    let reference = data_json("torchvision_zoo.json");
    let net = build("resnet18_graph.onnx", 4);
    let a = analyze(&net, Dtype::F32).unwrap();
    assert_eq!(
        a.totals.macs,
        4 * reference["models"]["resnet18"]["macs"].as_u64().unwrap()
    );
    assert_eq!(
        net.nodes[net.outputs[0].node].out_shapes[0].0,
        vec![4, 1000]
    );
}

#[test]
fn graph_only_files_have_no_weights() {
    let (net, imp) = onnx::build(
        "resnet18_graph.onnx",
        &read("resnet18_graph.onnx"),
        &BuildOptions::default(),
    )
    .unwrap();
    assert!(!imp.has_weights);
    assert!(onnx::weights(&net, &imp).unwrap().is_none());
}

#[test]
fn tiny_cnn_runs_as_onnxruntime() {
    let reference = data_json("onnx_reference.json");
    let r = &reference["tiny_cnn"];
    let shape: Vec<usize> = u64s(&r["input_shape"])
        .iter()
        .map(|&d| d as usize)
        .collect();
    let (net, imp) = onnx::build(
        "tiny_cnn.onnx",
        &read("tiny_cnn.onnx"),
        &BuildOptions {
            batch: shape[0] as u64,
            ..Default::default()
        },
    )
    .unwrap();
    let a = analyze(&net, Dtype::F32).unwrap();
    assert_eq!(a.totals.params, r["params"].as_u64().unwrap());
    assert_eq!(a.totals.buffers, r["buffers"].as_u64().unwrap());
    let w = onnx::weights(&net, &imp)
        .unwrap()
        .expect("the file holds its weights");
    let n: usize = shape.iter().product();
    // The script's input: x[i] = sin(0.1 i).
    let x: Vec<f32> = (0..n).map(|i| (0.1 * i as f64).sin() as f32).collect();
    let input = archscope::tensor::Tensor::new(shape, x);
    let out = exec::run(&net, &w, &[input], None).unwrap();
    let want: Vec<f64> = r["onnxruntime_output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let got = &out.outputs[0];
    assert_eq!(got.shape, vec![2, 5]);
    for (k, (g, w)) in got.data.iter().zip(&want).enumerate() {
        assert!(
            (f64::from(*g) - w).abs() <= 1e-4,
            "output {k}: archscope {g}, onnxruntime {w}"
        );
    }
}

#[test]
fn truncated_file_is_a_located_error() {
    let bytes = read("tiny_cnn.onnx");
    let e = onnx::import("tiny_cnn.onnx", &bytes[..bytes.len() / 2], 1).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("tiny_cnn.onnx: not a readable ONNX model"),
        "{msg}"
    );
    assert!(msg.contains("truncated"), "{msg}");
}

/// A model decoded, changed by `f`, and imported again.
fn edited(f: impl FnOnce(&mut proto::ModelProto)) -> archscope::Error {
    let mut m = proto::decode_model("tiny_cnn.onnx", &read("tiny_cnn.onnx")).unwrap();
    f(&mut m);
    let bytes = proto::encode_model(&m);
    onnx::build("edited.onnx", &bytes, &BuildOptions::default()).unwrap_err()
}

#[test]
fn unsupported_operator_names_the_node_and_its_inputs() {
    let e = edited(|m| {
        let g = m.graph.as_mut().unwrap();
        let k = g
            .node
            .iter()
            .position(|n| n.op_type.as_deref() == Some("Relu"))
            .unwrap();
        g.node[k].op_type = Some("Celu".into());
    });
    let d = e.diagnostic();
    assert_eq!(
        d.message,
        "edited.onnx: archscope cannot map the ONNX operator `Celu`"
    );
    let layer = d.layer.as_deref().unwrap();
    assert!(
        layer.starts_with("ONNX node #") && layer.ends_with("(Celu)"),
        "{layer}"
    );
    assert!(d.notes[0].starts_with("its inputs: `"), "{:?}", d.notes);
    assert!(d.help.as_deref().unwrap().contains("docs/ONNX.md"));
}

#[test]
fn missing_initializer_is_named() {
    let e = edited(|m| {
        let g = m.graph.as_mut().unwrap();
        g.initializer
            .retain(|t| t.name.as_deref() != Some("fc.weight"));
    });
    let msg = e.to_string();
    assert!(
        msg.contains("input `fc.weight` is neither a graph input, an initializer nor an earlier node's output"),
        "{msg}"
    );
}

#[test]
fn dynamic_spatial_dimension_is_refused() {
    let e = edited(|m| {
        let g = m.graph.as_mut().unwrap();
        let t = g.input[0].r#type.as_mut().unwrap();
        let Some(proto::type_proto::Value::TensorType(tt)) = t.value.as_mut() else {
            panic!("tensor input")
        };
        tt.shape.as_mut().unwrap().dim[2].value = Some(
            proto::tensor_shape_proto::dimension::Value::DimParam("height".into()),
        );
    });
    let msg = e.to_string();
    assert!(
        msg.contains(
            "tensor `image` has shape [?, 3, ?, 16]: a dynamic dimension other than the batch"
        ),
        "{msg}"
    );
}

#[test]
fn declared_shape_mismatch_names_the_tensor() {
    // value_info for the Flatten output claiming 13 features where there are 12.
    let e = edited(|m| {
        let g = m.graph.as_mut().unwrap();
        let flat = g
            .node
            .iter()
            .find(|n| n.op_type.as_deref() == Some("Flatten"))
            .unwrap()
            .output[0]
            .clone();
        let mut vi = g.output[0].clone();
        vi.name = Some(flat.clone());
        if let Some(proto::type_proto::Value::TensorType(tt)) =
            vi.r#type.as_mut().unwrap().value.as_mut()
        {
            let dims = &mut tt.shape.as_mut().unwrap().dim;
            dims[1].value = Some(proto::tensor_shape_proto::dimension::Value::DimValue(13));
        }
        g.value_info.push(vi);
    });
    let msg = e.to_string();
    assert!(
        msg.contains("the file declares a per-sample shape [13], archscope computes [12]"),
        "{msg}"
    );
}

#[test]
fn node_count_is_limited() {
    let mut m = proto::decode_model("tiny_cnn.onnx", &read("tiny_cnn.onnx")).unwrap();
    let g = m.graph.as_mut().unwrap();
    let extra = onnx::MAX_NODES + 1 - g.node.len();
    let filler = proto::NodeProto {
        op_type: Some("Identity".into()),
        ..Default::default()
    };
    g.node.extend(std::iter::repeat_n(filler, extra));
    let e = onnx::reader::import_model("big.onnx", &m, 1).unwrap_err();
    assert_eq!(
        e.message,
        format!(
            "big.onnx: the graph has {} nodes; archscope reads at most {}",
            onnx::MAX_NODES + 1,
            onnx::MAX_NODES
        )
    );
}
