//! Every zoo model that the PyTorch reference file measures must match it exactly: parameters,
//! trainable parameters, buffers, MACs, output shape, and every leaf module's output shape and
//! parameters, in execution order. The figures come from running torch/torchvision (see
//! ../shared/reference/README.md), never from archscope.

use std::collections::BTreeSet;
use std::path::PathBuf;

use archscope::{analyze, zoo, BuildOptions, Dtype};
use serde_json::Value;

/// The shared reference file; `tests/data/torchvision.json` is a committed copy for clones
/// without `../shared` (a test below checks the two are identical when both exist).
fn reference() -> Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/reference/torchvision.json");
    let path = if shared.exists() {
        shared
    } else {
        root.join("tests/data/torchvision.json")
    };
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn dims(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn copy_matches_shared_reference() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/reference/torchvision.json");
    if shared.exists() {
        assert_eq!(
            std::fs::read(shared).unwrap(),
            std::fs::read(root.join("tests/data/torchvision.json")).unwrap(),
            "tests/data/torchvision.json is stale: copy ../shared/reference/torchvision.json over it"
        );
    }
}

#[test]
fn zoo_matches_pytorch_exactly() {
    let r = reference();
    let models = r["models"].as_object().unwrap();
    assert!(models.len() >= 8);
    for (name, m) in models {
        let input = dims(&m["input"]);
        let opts = BuildOptions {
            batch: input[0],
            input: Some(input[1..].to_vec()),
        };
        let net = zoo::build(name, &opts)
            .unwrap_or_else(|| panic!("{name} is not in the zoo"))
            .unwrap();
        let a = analyze(&net, Dtype::F32).unwrap();
        let t = &a.totals;
        assert_eq!(t.params, m["params"].as_u64().unwrap(), "{name} params");
        assert_eq!(
            t.trainable,
            m["trainable"].as_u64().unwrap(),
            "{name} trainable"
        );
        assert_eq!(t.buffers, m["buffers"].as_u64().unwrap(), "{name} buffers");
        assert_eq!(t.macs, m["macs"].as_u64().unwrap(), "{name} MACs");
        assert_eq!(a.outputs.len(), 1);
        assert_eq!(a.outputs[0].1 .0, dims(&m["output"]), "{name} output");

        // Leaf modules: compare the layers whose PyTorch module type the reference lists
        // (functional ops such as torch.flatten or F.relu have no module and no row).
        let ref_layers = m["layers"].as_array().unwrap();
        let types: BTreeSet<&str> = ref_layers
            .iter()
            .map(|l| l["type"].as_str().unwrap())
            .collect();
        let ours: Vec<_> = net
            .nodes
            .iter()
            .zip(&a.layers)
            .filter(|(n, _)| n.layer.torch_type().is_some_and(|t| types.contains(t)))
            .collect();
        assert_eq!(
            ours.len(),
            ref_layers.len(),
            "{name}: number of leaf layers"
        );
        for ((node, stats), rl) in ours.iter().zip(ref_layers) {
            let what = format!("{name}: {} vs torch {}", stats.name, rl["name"]);
            assert_eq!(
                node.layer.torch_type().unwrap(),
                rl["type"].as_str().unwrap(),
                "{what}: type"
            );
            assert_eq!(stats.outputs[0].0, dims(&rl["out"]), "{what}: output shape");
            assert_eq!(
                stats.params.total(),
                rl["params"].as_u64().unwrap(),
                "{what}: params"
            );
            if let Some(macs) = rl.get("macs") {
                assert_eq!(stats.macs, macs.as_u64().unwrap(), "{what}: MACs");
            }
        }
    }
}
