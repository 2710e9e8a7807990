//! The integration tests as one test binary: each `tests/NAME.rs` is a module here (its own
//! `//!` paragraph says what it proves), compiled and linked once rather than once per file —
//! on CI's two cores the 43 separate binaries spent minutes of the README's test command in
//! compiling the shared harness and linking. `cargo test --release --test suite NAME::` runs
//! one file's tests. Two files stay binaries of their own (declared in Cargo.toml): they
//! measure every allocation under a counting global allocator, so nothing else may run in
//! their process. `tests/tidy.rs` fails on a `tests/*.rs` that is in neither place.

// The binary's allocator (src/main.rs). With glibc's malloc, checking unet took 24 s in
// tests/exec.rs against 9 s for `archscope check unet`: most of it returning freed buffers to
// the system.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod attention;
mod attention_gaps;
mod audit_nd;
mod blocked_conv;
mod claims;
mod cli;
mod cli_values;
mod common;
mod concat_plan;
mod conventions;
mod decisions;
mod depthwise_lanes;
mod detect;
mod determinism;
mod direct_product;
mod dot;
mod dot_nd;
mod errors;
mod exec;
mod flat_pools;
mod format;
mod implicit_conv;
mod input_completion;
mod kblocked_product;
mod kernels;
mod limits;
mod maxvit;
mod maxvit_rf;
mod nd_ops;
mod onnx_arith;
mod onnx_const;
mod onnx_convert;
mod onnx_convert_blocks;
mod onnx_convert_defaults;
mod onnx_convert_named;
mod onnx_convert_nested;
mod onnx_dynamic;
mod onnx_errors;
mod onnx_export;
mod onnx_external;
mod onnx_fold;
mod onnx_fuzz;
mod onnx_gpt;
mod onnx_gpt_dynamic;
mod onnx_import;
mod onnx_inputs;
mod onnx_maxvit_dynamo;
mod onnx_maxvit_torch;
mod onnx_roundtrip;
mod onnx_swin;
mod onnx_swin_dynamo;
mod onnx_swin_graph;
mod onnx_swin_torch;
mod onnx_vit;
mod onnx_yolo;
mod onnx_yolo11;
mod plan_buffers;
mod rank_env;
mod reference;
mod repeat_from;
mod report;
mod residual_fused;
mod rf;
mod rf_check;
mod se_gate;
mod se_means;
mod segmentation;
mod separable_pools;
mod small_models;
mod speed_kernels;
mod swin;
mod tensor_ops;
mod tidy;
mod tokens_rf;
mod train_memory;
mod transformers;
mod ultralytics;
mod ultralytics_cmds;
mod ultralytics_head;
mod ultralytics_predict;
mod ultralytics_weights;
mod vector_pools;
mod video_audio;
mod weights_names_star;
mod window_rf;
mod winograd_prepare;
mod zoo_papers;
mod zoo_scaled;
