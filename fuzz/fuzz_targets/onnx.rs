//! Fuzz target: any bytes as an ONNX file (`archscope summary model.onnx` and the rest read it
//! through `onnx::build`). Reading must never panic, hang or allocate without bound; a refusal
//! must be located (a byte offset and field path, an ONNX node, a named tensor or graph input)
//! and say what to do; a model that builds must analyse. The in-tree, bounded version of this
//! target is tests/onnx_fuzz.rs (the same checks over seeded mutants of tests/data/onnx/).

#![no_main]

use archscope::{analyze, onnx, BuildOptions, Dtype};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = BuildOptions {
        batch: 1,
        max_layers: 2_000,
        ..Default::default()
    };
    match onnx::build("fuzz.onnx", data, &opts) {
        Ok((net, _)) => {
            let _ = analyze(&net, Dtype::F32);
        }
        Err(e) => {
            let d = e.diagnostic();
            let located = d.message.contains("at byte ")
                || d.layer.as_deref().is_some_and(|l| l.starts_with("ONNX node #"))
                || d.notes.iter().any(|n| n.starts_with("from ONNX "))
                || d.message.starts_with("fuzz.onnx: ")
                || d.message.starts_with("tensor `");
            assert!(located, "an error without a location: {e}");
            assert!(d.help.as_deref().is_some_and(|h| !h.is_empty()), "no help: {e}");
        }
    }
});
