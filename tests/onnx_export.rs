//! `archscope export`: the ONNX files it writes, decoded back with the protobuf types, against
//! figures derived by hand or published by torchvision (ResNet-18's nodes, weights and
//! tensors); every zoo model's graph-only export against its parameter and buffer count; the
//! models that have no ONNX form named with the layer at fault; the command line's errors; and
//! the committed onnxruntime comparison (`scripts/onnx_export_check.py` →
//! `tests/data/onnx_export_check.json`) against the list docs/ONNX_EXPORT.md claims.

use std::collections::BTreeMap;

use crate::common::*;
use archscope::exec;
use archscope::onnx::export::{export, ExportOptions};
use archscope::onnx::proto::{decode_model, ModelProto};

fn op_counts(m: &ModelProto) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for n in &m.graph.as_ref().expect("graph").node {
        *c.entry(n.op_type.clone().unwrap_or_default()).or_insert(0) += 1;
    }
    c
}

/// Elements of a value_info's tensor type.
fn numel(v: &archscope::onnx::proto::ValueInfoProto) -> u64 {
    use archscope::onnx::proto::{tensor_shape_proto::dimension::Value, type_proto};
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.clone())
    else {
        panic!("{:?} is not a tensor", v.name)
    };
    t.shape
        .expect("shape")
        .dim
        .iter()
        .map(|d| match d.value {
            Some(Value::DimValue(x)) => x as u64,
            _ => panic!("{:?}: a dimension without a value", v.name),
        })
        .product()
}

fn doc(v: &archscope::onnx::proto::ValueInfoProto) -> &str {
    v.doc_string.as_deref().unwrap_or("")
}

#[test]
fn resnet18_nodes_weights_and_shapes() {
    let net = zoo_net("resnet18");
    let w = exec::init_weights(&net, 0).expect("weights");
    let m = export(&net, Some(&w), ExportOptions::default()).expect("exports");
    // Round trip through the bytes.
    let bytes = archscope::onnx::proto::encode_model(&m);
    let m = decode_model("resnet18.onnx", &bytes).expect("decodes");
    assert_eq!(m.opset_import[0].version, Some(17));
    // By hand: a stem convolution, two basic blocks of two convolutions in each of four stages
    // (16), a projecting 1×1 convolution in stages 2–4 (3): 20 convolutions, each with its
    // batch norm; ReLU after the stem and after each block's first convolution and sum
    // (1 + 8 + 8 = 17); 8 residual sums; a max pool, a global pool, a flatten, the classifier.
    let want: BTreeMap<String, usize> = [
        ("Conv", 20),
        ("BatchNormalization", 20),
        ("Relu", 17),
        ("Add", 8),
        ("MaxPool", 1),
        ("GlobalAveragePool", 1),
        ("Reshape", 1),
        ("Gemm", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(op_counts(&m), want);
    let g = m.graph.as_ref().expect("graph");
    // Weights under torchvision's state-dict names (the model's `weights_names:`), the ones
    // `run --weights` reads: 11,689,512 parameters (torchvision's published figure) and the
    // running mean and variance of 20 batch norms over 64 + 4·64 + 5·128 + 5·256 + 5·512 = 4,800
    // channels.
    let weights: u64 = g
        .initializer
        .iter()
        .filter(|t| !t.name.as_deref().unwrap_or("").contains('/'))
        .map(|t| t.dims.iter().product::<i64>() as u64)
        .sum();
    assert_eq!(weights, 11_689_512 + 2 * 4_800);
    let names: Vec<&str> = g
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    for n in [
        "layer3.0.bn1.running_var",
        "layer2.0.downsample.0.weight",
        "fc.bias",
        "bn1.weight",
    ] {
        assert!(names.contains(&n), "no initializer {n}");
    }
    // The stored values are the executor's: the first convolution's first elements.
    let conv1 = g
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some("conv1.weight"))
        .expect("conv1.weight");
    let raw = conv1.raw_data.as_ref().expect("raw data");
    let first = f32::from_le_bytes(raw[..4].try_into().expect("4 bytes"));
    assert_eq!(
        first,
        w.per_node[net
            .nodes
            .iter()
            .position(|n| n.name == "conv1")
            .expect("conv1")][0]
            .data[0]
    );
    // One input, one output, 1×3×224×224 → 1×1000; every other layer's tensor typed.
    assert_eq!(g.input.len(), 1);
    assert_eq!(numel(&g.input[0]), 3 * 224 * 224);
    assert_eq!(doc(&g.input[0]), "model input");
    assert_eq!(g.output.len(), 1);
    assert_eq!(g.output[0].name.as_deref(), Some("fc"));
    assert_eq!(numel(&g.output[0]), 1000);
    let layer4 = g
        .value_info
        .iter()
        .find(|v| v.name.as_deref() == Some("layer4.1.sum.relu"))
        .expect("layer4's last ReLU");
    assert_eq!(numel(layer4), 512 * 7 * 7);
    // Every layer between the input and the classifier has a typed tensor of its analysed
    // shape's elements (the analysis' shapes are checked against PyTorch in tests/reference.rs).
    let mut typed = 0;
    for node in &net.nodes {
        if node.name == "fc" || node.inputs.is_empty() {
            continue;
        }
        let v = g
            .value_info
            .iter()
            .find(|v| v.name.as_deref() == Some(node.name.as_str()))
            .unwrap_or_else(|| panic!("{}: no value_info", node.name));
        assert_eq!(
            numel(v),
            node.out_shapes[0].0.iter().product::<u64>(),
            "{}",
            node.name
        );
        typed += 1;
    }
    assert!(typed > 60, "{typed}");
}

/// Every zoo model exports graph-only, with one weight graph input per tensor the executor
/// allocates: their elements are the model's parameters plus buffers.
#[test]
fn every_zoo_model_exports_with_its_parameter_count() {
    let mut exported = 0;
    let mut refused: Vec<String> = Vec::new();
    for name in zoo_names() {
        let net = zoo_net(name);
        let a = analysis(&net);
        match export(&net, None, ExportOptions::default()) {
            Ok(m) => {
                let g = m.graph.as_ref().expect("graph");
                let weights: u64 = g
                    .input
                    .iter()
                    .filter(|v| doc(v).starts_with("weight"))
                    .map(numel)
                    .sum();
                assert_eq!(weights, a.totals.params + a.totals.buffers, "{name}");
                assert!(
                    g.initializer
                        .iter()
                        .all(|t| t.name.as_deref().unwrap_or("").contains('/')),
                    "{name}: a weight stored in a graph-only export"
                );
                let inputs = g.input.iter().filter(|v| doc(v) == "model input").count();
                assert_eq!(inputs, 1, "{name}");
                assert_eq!(g.output.len(), net.outputs.len(), "{name}");
                exported += 1;
            }
            Err(e) => refused.push(format!("{name}: {e}")),
        }
    }
    assert!(refused.is_empty(), "{refused:#?}");
    assert_eq!(exported, zoo_names().len());
}

#[test]
fn cli_writes_a_file_that_decodes() {
    let dir = scratch("cli");
    let f = dir.join("lenet5.onnx");
    let out = archscope(&["export", "lenet5", "-o", arg(&f), "--opset", "20"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m = decode_model("lenet5.onnx", &std::fs::read(&f).expect("written")).expect("decodes");
    assert_eq!(m.opset_import[0].version, Some(20));
    // LeNet-5 as the zoo writes it (full C3 table), by hand: C1 6·(25 + 1) = 156, C3
    // 16·(6·25 + 1) = 2,416, C5 120·(16·25 + 1) = 48,120, F6 84·(120 + 1) = 10,164, output
    // 10·(84 + 1) = 850: 61,706.
    let g = m.graph.expect("graph");
    let weights: i64 = g
        .initializer
        .iter()
        .filter(|t| !t.name.as_deref().unwrap_or("").contains('/'))
        .map(|t| t.dims.iter().product::<i64>())
        .sum();
    assert_eq!(weights, 61_706);
}

#[test]
fn cli_errors() {
    let dir = scratch("errors");
    let f = dir.join("m.onnx");
    assert_rejected(
        &["export", "lenet5", "-o", arg(&f), "--opset", "16"],
        "--opset 16 is outside what archscope exports",
    );
    assert_rejected(
        &["export", "lenet5", "-o", arg(&f), "--opset", "22"],
        "give 17 to 21",
    );
    // A layer with no ONNX form: named, with its path.
    let yaml = dir.join("lrn.yaml");
    std::fs::write(
        &yaml,
        "format: \"archscope/1\"\nname: m\ninputs:\n  x: [8, 4, 4]\nnodes:\n  - {id: norm, op: local_response_norm, size: 4}\n",
    )
    .expect("write");
    let err = assert_rejected(
        &["export", arg(&yaml), "-o", arg(&f)],
        "local response norm of even size 4",
    );
    assert!(err.contains("in layer `norm`"), "{err}");
    assert!(!f.exists(), "a file was written for a refused export");
    // A directory cannot be written.
    assert_rejected(&["export", "lenet5", "-o", arg(&dir)], "cannot write");
}

/// The scripted onnxruntime comparison: every model docs/ONNX_EXPORT.md names is in the JSON,
/// checked by onnx.checker and within 1e-4 of `archscope run`.
#[test]
fn onnxruntime_check_covers_the_documented_models() {
    let doc = std::fs::read_to_string(root().join("docs/ONNX_EXPORT.md")).expect("docs");
    let start = doc
        .find("<!-- checked models -->")
        .expect("the marked list")
        + 23;
    let end = doc[start..].find("<!-- end -->").expect("its end") + start;
    let claimed: Vec<String> = doc[start..end]
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|s| s.trim_matches('`').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let data = data_json("onnx_export_check.json");
    assert_eq!(data["tolerance"].as_f64(), Some(1e-4));
    let rows = data["models"].as_array().expect("models");
    let got: Vec<String> = rows
        .iter()
        .map(|r| r["model"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(got, claimed);
    // The figures docs/ONNX_EXPORT.md states: 49 models, the largest difference 5.3e-5.
    assert_eq!(rows.len(), 49);
    let largest = rows
        .iter()
        .filter_map(|r| r["max_abs_diff"].as_f64())
        .fold(0.0, f64::max);
    assert!((5.25e-5..5.35e-5).contains(&largest), "{largest}");
    for r in rows {
        let d = r["max_abs_diff"].as_f64().unwrap_or_else(|| panic!("{r}"));
        assert!(d <= 1e-4 && r["ok"] == true, "{r}");
        assert!(
            zoo_names().contains(&r["model"].as_str().expect("name")),
            "{r}"
        );
    }
}

/// `onnx.checker.check_model(full_check=True)` passed on every zoo model's graph-only export
/// (scripts/onnx_export_check.py --checker-all): the stored list is exactly the zoo, all ok.
#[test]
fn onnx_checker_passes_on_every_zoo_model() {
    let data = data_json("onnx_export_check.json");
    let rows = data["checker"]["models"].as_array().expect("checker rows");
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["model"].as_str().expect("name"))
        .collect();
    assert_eq!(names, zoo_names());
    assert_eq!(names.len(), 70);
    for r in rows {
        assert_eq!(r["ok"], true, "{r}");
    }
}

/// A model whose weights pass 2 GiB is refused before any weight is allocated (614,400,000
/// parameters of one linear layer: 2.46 GB of f32), naming the layer; graph-only it exports.
#[test]
fn over_two_gib_is_refused_before_allocating() {
    let dir = scratch("big");
    let yaml = dir.join("big.yaml");
    std::fs::write(
        &yaml,
        "format: \"archscope/1\"\nname: big\ninputs:\n  x: [1024]\nnodes:\n  - {id: fc, op: linear, out: 600000, bias: false}\n",
    )
    .expect("write");
    let f = dir.join("big.onnx");
    let err = assert_rejected(
        &["export", arg(&yaml), "-o", arg(&f)],
        "an ONNX file holds at most 2 GiB",
    );
    assert!(err.contains("in layer `fc`"), "{err}");
    assert!(!f.exists());
    let out = archscope(&["export", arg(&yaml), "-o", arg(&f), "--no-weights"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Export, then read back with archscope's own ONNX reader (`archscope::onnx::build`): for every
/// zoo model it reads, the re-imported network has the same parameters, buffers, MACs and output
/// shapes: all 70. The test fails if one cannot be read back, naming the reader's error.
#[test]
fn export_then_import_gives_the_same_figures() {
    let mut same = Vec::new();
    let mut unread = Vec::new();
    for name in zoo_names() {
        let net = zoo_net(name);
        let a = analysis(&net);
        let m = export(&net, None, ExportOptions::default()).expect("exports");
        let bytes = archscope::onnx::proto::encode_model(&m);
        let opts = archscope::BuildOptions::default();
        match archscope::onnx::build(&format!("{name}.onnx"), &bytes, &opts) {
            Ok((back, _)) => {
                let b = analysis(&back);
                assert_eq!(
                    (b.totals.params, b.totals.buffers, b.totals.macs),
                    (a.totals.params, a.totals.buffers, a.totals.macs),
                    "{name}: (params, buffers, MACs) after the round trip"
                );
                let shapes = |n: &archscope::Network| -> Vec<Vec<u64>> {
                    n.outputs
                        .iter()
                        .map(|o| n.nodes[o.node].out_shapes[o.slot].0.clone())
                        .collect()
                };
                assert_eq!(shapes(&back), shapes(&net), "{name}: output shapes");
                same.push(name);
            }
            Err(e) => unread.push((name, e.to_string().lines().next().unwrap_or("").to_string())),
        }
    }
    // What the reader does not read back yet (its limits, not the export's), each the first
    // error the reader gives. None is left: the ViTs' attention is read back as one layer
    // (tests/onnx_vit.rs compares them layer by layer); the ConvNeXts' LayerNorm2d, Sobel's
    // magnitude, the Swins' and MaxViT's windowed attention and GPT-2 read back through the
    // reader's patterns (tests/onnx_roundtrip.rs).
    let unread_names: Vec<&str> = unread.iter().map(|(n, _)| *n).collect();
    assert!(unread_names.is_empty(), "{unread:#?}");
    assert_eq!(same.len(), zoo_names().len());
    assert_eq!(same.len(), 70);
}

#[test]
fn every_weight_of_resnet18_declares_its_kind() {
    // torchvision's resnet18 by hand: 20 convolutions' weights, 20 batch norms' weight and bias
    // (40), the classifier's weight and bias: 62 parameters; each batch norm's running mean and
    // variance: 40 buffers. With weights they are initializers, graph only graph inputs; each is
    // declared by a value_info or graph input carrying torch.export's kind (docs/ONNX_EXPORT.md).
    let net = zoo_net("resnet18");
    let w = exec::init_weights(&net, 0).expect("weights");
    for weights in [Some(&w), None] {
        let m = export(&net, weights, ExportOptions::default()).expect("exports");
        let g = m.graph.as_ref().expect("graph");
        let declared = |name: &str| -> Option<String> {
            g.value_info
                .iter()
                .chain(&g.input)
                .filter(|v| v.name.as_deref() == Some(name))
                .flat_map(|v| &v.metadata_props)
                .find(|p| {
                    p.key.as_deref() == Some("pkg.torch.export.graph_signature.InputSpec.kind")
                })
                .and_then(|p| p.value.clone())
        };
        // The weights: initializers (or graph inputs) named by state-dict path, not the
        // `path/what_k` constants a layer needs.
        let names: Vec<String> = if weights.is_some() {
            g.initializer
                .iter()
                .filter_map(|t| t.name.clone())
                .collect()
        } else {
            g.input
                .iter()
                .skip(1)
                .filter_map(|v| v.name.clone())
                .collect()
        };
        let names: Vec<&String> = names.iter().filter(|n| !n.contains('/')).collect();
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for n in &names {
            let k = declared(n).unwrap_or_else(|| panic!("{n}: no declared kind"));
            *count.entry(k).or_default() += 1;
        }
        let want: BTreeMap<String, usize> =
            [("BUFFER".to_string(), 40), ("PARAMETER".to_string(), 62)].into();
        assert_eq!(count, want, "with weights: {}", weights.is_some());
    }
}
