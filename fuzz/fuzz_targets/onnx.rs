//! Fuzz target: any bytes as an ONNX file (`archscope summary model.onnx` and the rest read it
//! through `onnx::build`). Reading must never panic, hang or allocate without bound; a refusal
//! must be located (a byte offset and field path, an ONNX node, a named tensor or graph input)
//! and say what to do; a model that builds must analyse. A model that builds also goes through
//! what `archscope convert` and `archscope run` do with it: `onnx::convert::convert`, whose
//! YAML, when it converts, must build again to the same parameters, buffers and MACs; and the
//! file's weights (`onnx::weights`, or seeded ones for a graph-only file) through `run`'s
//! inference plan (`exec::plan`, `exec::run_planned`) on a seeded input, for a model small
//! enough to run quickly (outputs of the shapes the analysis gives). The in-tree, bounded
//! version of this target is tests/onnx_fuzz.rs (the same checks over seeded mutants of
//! tests/data/onnx/).

#![no_main]

use archscope::{analyze, exec, onnx, BuildOptions, Dtype, Network};
use libfuzzer_sys::fuzz_target;

/// Bounds the executor's work for one input: elements of any tensor and MACs in all.
const MAX_RUN_ELEMENTS: u64 = 1 << 18;
const MAX_RUN_MACS: u64 = 1 << 24;

fn located(d: &archscope::Diagnostic) -> bool {
    d.message.contains("at byte ")
        || d.layer.is_some()
        || d.notes.iter().any(|n| n.starts_with("from ONNX "))
        || d.message.starts_with("fuzz.onnx: ")
        || d.message.starts_with("tensor `")
        || d.message.starts_with("the ONNX initializer for `")
        || d.message.starts_with("the ONNX file holds no initializer for `")
}

fuzz_target!(|data: &[u8]| {
    let opts = BuildOptions {
        batch: 1,
        max_layers: 2_000,
        ..Default::default()
    };
    let (net, imp) = match onnx::build("fuzz.onnx", data, &opts) {
        Ok(r) => r,
        Err(e) => {
            let d = e.diagnostic();
            let located = d.message.contains("at byte ")
                || d.layer.as_deref().is_some_and(|l| l.starts_with("ONNX node #"))
                || d.notes.iter().any(|n| n.starts_with("from ONNX "))
                || d.message.starts_with("fuzz.onnx: ")
                || d.message.starts_with("tensor `");
            assert!(located, "an error without a location: {e}");
            assert!(d.help.as_deref().is_some_and(|h| !h.is_empty()), "no help: {e}");
            return;
        }
    };
    let Ok(a) = analyze(&net, Dtype::F32) else {
        return;
    };

    // `archscope convert`: a refusal is located; what it writes reads back to the same figures.
    match onnx::convert::convert("fuzz.onnx", &imp) {
        Ok(c) => {
            let back = Network::from_yaml("fuzz.yaml", &c.text, &opts).unwrap_or_else(|e| {
                panic!("the converted YAML does not build: {e}\n{}", c.text)
            });
            let b = analyze(&back, Dtype::F32).expect("the converted model analyses");
            assert_eq!(a.totals.params, b.totals.params, "params\n{}", c.text);
            assert_eq!(a.totals.buffers, b.totals.buffers, "buffers\n{}", c.text);
            assert_eq!(a.totals.macs, b.totals.macs, "MACs\n{}", c.text);
        }
        Err(d) => {
            assert!(located(&d), "a convert error without a location: {d:?}");
            assert!(d.help.as_deref().is_some_and(|h| !h.is_empty()), "no help: {d:?}");
        }
    }

    // `archscope run`'s path, on small models only.
    let big = a.layers.iter().any(|l| {
        l.outputs.iter().any(|s| {
            s.0.iter()
                .try_fold(1u64, |p, &d| p.checked_mul(d))
                .map_or(true, |n| n > MAX_RUN_ELEMENTS)
        })
    });
    if big || a.totals.macs > MAX_RUN_MACS || exec::check_memory(&net, 1 << 28, 0).is_err() {
        return;
    }
    let w = match onnx::weights(&net, &imp) {
        Ok(Some(w)) => w,
        Ok(None) => match exec::init_weights(&net, 7) {
            Ok(w) => w,
            Err(_) => return,
        },
        Err(d) => {
            assert!(located(&d), "a weights error without a location: {d:?}");
            assert!(d.help.as_deref().is_some_and(|h| !h.is_empty()), "no help: {d:?}");
            return;
        }
    };
    let Ok(x) = exec::random_input(&net, 7) else {
        return;
    };
    let plan = exec::plan(&net, &w);
    if let Ok(r) = exec::run_planned(&net, &w, &plan, &x, None) {
        for (k, o) in r.outputs.iter().enumerate() {
            let want: Vec<usize> = net.nodes[net.outputs[k].node].out_shapes[net.outputs[k].slot]
                .0
                .iter()
                .map(|&d| d as usize)
                .collect();
            assert_eq!(o.shape, want, "output {k}: the plan's shape differs from the analysis");
        }
    }
});
