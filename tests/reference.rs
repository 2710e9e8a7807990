//! Every model that a PyTorch reference file measures must be in the zoo and match it exactly:
//! parameters, trainable parameters, buffers, MACs, output shape, and every leaf module's output
//! shape, parameters and MACs, in execution order. The figures come from running
//! torch/torchvision, never from archscope: `tests/data/torchvision.json` (see
//! ../shared/reference/README.md) and `tests/data/torchvision_zoo.json` (written by
//! `scripts/torch_reference.py`, whose docstring explains every field).
//!
//! Nothing is skipped silently: the only exceptions are the three lists below, each entry with
//! its reason, and each checked to still be needed.

use std::collections::BTreeSet;

use crate::common::{data_json, options_for, read_json, root, u64s};
use archscope::{analyze, zoo, Dtype};
use serde_json::Value;

/// Models a reference file measures that the zoo does not have: (model, why).
const NOT_IN_ZOO: &[(&str, &str)] = &[];

/// Our layers that PyTorch runs as a *function* (no module, so no reference row) in a model
/// where modules of the same type exist elsewhere, so that the type filter below would count
/// them if the model file did not say so: each must be marked `functional: true` there (it then
/// has no PyTorch module type and is left out of the per-layer comparison; the totals still
/// include it). (model, our layer path, why)
const FUNCTIONAL: &[(&str, &str, &str)] = &[
    ("densenet121", "relu5", DENSENET_RELU),
    ("densenet161", "relu5", DENSENET_RELU),
    ("densenet169", "relu5", DENSENET_RELU),
    ("densenet201", "relu5", DENSENET_RELU),
    ("inception_v3", "Mixed_6a.branch_pool", INCEPTION_POOL),
    ("inception_v3", "Mixed_7a.branch_pool", INCEPTION_POOL),
];
const DENSENET_RELU: &str =
    "DenseNet.forward: F.relu(features); the dense layers' ReLUs are modules";
const INCEPTION_POOL: &str =
    "InceptionB/InceptionD.forward: F.max_pool2d; maxpool1 and maxpool2 are MaxPool2d modules";

/// Reference rows of a module type that archscope has no op for yet, left out of the per-layer
/// comparison; only allowed for rows with no parameters whose output is their input's shape.
/// (model, PyTorch module type, why)
const NO_OP_YET: &[(&str, &str, &str)] = &[];

/// The shared reference file; `tests/data/torchvision.json` is a committed copy for clones
/// without `../shared` (a test below checks the two are identical when both exist).
fn reference() -> Value {
    let shared = root().join("../shared/reference/torchvision.json");
    if shared.exists() {
        read_json(&shared)
    } else {
        data_json("torchvision.json")
    }
}

fn u64_of(m: &Value, key: &str) -> u64 {
    m[key]
        .as_u64()
        .unwrap_or_else(|| panic!("reference has no integer `{key}`"))
}

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

macro_rules! check_eq {
    ($ours:expr, $theirs:expr, $($msg:tt)+) => {{
        let (ours, theirs) = (&$ours, &$theirs);
        if ours != theirs {
            return Err(format!("{}: archscope {:?}, PyTorch {:?}", format!($($msg)+), ours, theirs));
        }
    }};
}

/// Compares one zoo model with its reference entry; the first difference is the error.
fn check_model(name: &str, m: &Value) -> Result<(), String> {
    let net = zoo::build(name, &options_for(&u64s(&m["input"])))
        .ok_or_else(|| {
            format!("{name} is not in the zoo (add it, or list it in NOT_IN_ZOO with a reason)")
        })?
        .map_err(|e| format!("{name} does not build: {e}"))?;
    let a = analyze(&net, Dtype::F32).map_err(|e| format!("{name} does not analyse: {e}"))?;
    let t = &a.totals;
    check_eq!(t.params, u64_of(m, "params"), "{name} params");
    check_eq!(t.trainable, u64_of(m, "trainable"), "{name} trainable");
    check_eq!(t.buffers, u64_of(m, "buffers"), "{name} buffers");
    check_eq!(t.macs, u64_of(m, "macs"), "{name} MACs");
    check_eq!(a.outputs.len(), 1, "{name} number of outputs");
    check_eq!(a.outputs[0].1 .0, u64s(&m["output"]), "{name} output");

    // Reference rows, less the module types we cannot express yet.
    let no_op: Vec<&str> = NO_OP_YET
        .iter()
        .filter(|(model, _, _)| *model == name)
        .map(|(_, ty, _)| *ty)
        .collect();
    let all_rows = m["layers"].as_array().unwrap();
    for ty in &no_op {
        let rows: Vec<&Value> = all_rows.iter().filter(|l| l["type"] == *ty).collect();
        check!(
            !rows.is_empty(),
            "{name}: NO_OP_YET lists {ty}, which the reference no longer has"
        );
        for l in rows {
            check!(
                l["params"] == 0 && l["in"] == l["out"],
                "{name}: NO_OP_YET row {} has parameters or changes the shape",
                l["name"]
            );
        }
        check!(
            !net.nodes.iter().any(|n| n.layer.torch_type() == Some(*ty)),
            "{name}: archscope now has {ty} layers: remove it from NO_OP_YET"
        );
    }
    let ref_layers: Vec<&Value> = all_rows
        .iter()
        .filter(|l| !no_op.iter().any(|ty| l["type"] == *ty))
        .collect();

    // Leaf modules: compare our layers whose PyTorch module type the reference lists
    // (functional ops such as torch.flatten or F.relu have no module and no row; the model
    // files mark the functional calls of ops that also exist as modules, such as those in
    // FUNCTIONAL, `functional: true`).
    let types: BTreeSet<&str> = ref_layers
        .iter()
        .map(|l| l["type"].as_str().unwrap())
        .collect();
    let functional: Vec<&str> = FUNCTIONAL
        .iter()
        .filter(|(model, _, _)| *model == name)
        .map(|(_, layer, _)| *layer)
        .collect();
    for f in &functional {
        let node = net.nodes.iter().find(|n| n.name == *f);
        check!(
            node.is_some(),
            "{name}: FUNCTIONAL lists `{f}`, which the model does not have"
        );
        let ty = node.unwrap().layer.torch_type();
        check!(
            ty.is_none(),
            "{name}: `{f}` is a functional call in torchvision but the model file gives it the \
             module type {ty:?}: mark it `functional: true`"
        );
    }
    let ours: Vec<_> = net
        .nodes
        .iter()
        .zip(&a.layers)
        .filter(|(n, _)| n.layer.torch_type().is_some_and(|t| types.contains(t)))
        .collect();
    for (k, ((node, stats), rl)) in ours.iter().zip(&ref_layers).enumerate() {
        let what = format!("{name}: layer {k}, {} vs torch {}", stats.name, rl["name"]);
        check_eq!(
            node.layer.torch_type().unwrap(),
            rl["type"].as_str().unwrap(),
            "{what}: type"
        );
        check_eq!(stats.outputs[0].0, u64s(&rl["out"]), "{what}: output shape");
        check_eq!(stats.params.total(), u64_of(rl, "params"), "{what}: params");
        if let Some(macs) = rl.get("macs") {
            check_eq!(stats.macs, macs.as_u64().unwrap(), "{what}: MACs");
        }
    }
    check_eq!(
        ours.len(),
        ref_layers.len(),
        "{name}: number of leaf layers"
    );
    Ok(())
}

/// Checks every model of a reference file; reports all the failing models at once.
fn check_file(file: &str, r: &Value, at_least: usize) {
    let models = r["models"].as_object().unwrap();
    assert!(
        models.len() >= at_least,
        "{file}: only {} models",
        models.len()
    );
    let mut failures = Vec::new();
    for (name, m) in models {
        if let Some((_, why)) = NOT_IN_ZOO.iter().find(|(n, _)| n == name) {
            assert!(
                zoo::source(name).is_none(),
                "{name} is in the zoo now: remove it from NOT_IN_ZOO ({why})"
            );
            continue;
        }
        if let Err(e) = check_model(name, m) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{file}: {} model(s) differ from PyTorch:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn copy_matches_shared_reference() {
    let shared = root().join("../shared/reference/torchvision.json");
    if shared.exists() {
        assert_eq!(
            std::fs::read(shared).unwrap(),
            std::fs::read(root().join("tests/data/torchvision.json")).unwrap(),
            "tests/data/torchvision.json is stale: copy ../shared/reference/torchvision.json over it"
        );
    }
}

#[test]
fn zoo_matches_pytorch_exactly() {
    check_file("torchvision.json", &reference(), 8);
}

#[test]
fn zoo_matches_torchvision_zoo_reference_exactly() {
    check_file(
        "torchvision_zoo.json",
        &data_json("torchvision_zoo.json"),
        30,
    );
}

/// Every exception names a model that a reference file measures (no stale entries).
#[test]
fn exceptions_name_measured_models() {
    let files = [reference(), data_json("torchvision_zoo.json")];
    let measured = |name: &str| files.iter().any(|f| f["models"].get(name).is_some());
    let listed = NOT_IN_ZOO
        .iter()
        .map(|(m, _)| *m)
        .chain(FUNCTIONAL.iter().map(|(m, _, _)| *m))
        .chain(NO_OP_YET.iter().map(|(m, _, _)| *m));
    for m in listed {
        assert!(
            measured(m),
            "{m} is listed as an exception but no reference file measures it"
        );
    }
}
