//! `train`'s peak memory against PyTorch's own: `torch.cuda.max_memory_allocated()` over three
//! training steps measured on an NVIDIA H200 (`tests/data/train_memory_cuda.json`, a copy of
//! ../shared/reference/train_memory_cuda.json, whose `method` says how). The estimate must be
//! within ±10 % of every measured peak, and the median error within ±5 % (docs/TRAINING.md
//! shows each error).

use crate::common::{data_json, options_for, root, u64s, zoo_net_with};
use archscope::train::{plan, Config, Optimizer};
use archscope::Dtype;
use serde_json::Value;

fn reference() -> Value {
    data_json("train_memory_cuda.json")
}

/// `train`'s plan for one measured configuration (`model`, `input` with its batch, `optimizer`).
fn plan_of(c: &Value) -> archscope::train::Plan {
    let name = c["model"].as_str().unwrap();
    let input = u64s(&c["input"]);
    let net = zoo_net_with(name, &options_for(&input));
    plan(
        &net,
        &Config {
            dataset_size: 1000,
            batch: input[0],
            epochs: 1,
            optimizer: Optimizer::parse(c["optimizer"].as_str().unwrap()).unwrap(),
            dtype: Dtype::F32,
            throughput_tflops: None,
        },
    )
    .unwrap()
}

/// (model, batch, optimizer, measured peak, estimated peak, relative error).
fn errors() -> Vec<(String, u64, String, u64, u64, f64)> {
    let r = reference();
    assert_eq!(r["produced_with"]["dtype"], "float32");
    let mut out = Vec::new();
    for c in r["configs"].as_array().unwrap() {
        let name = c["model"].as_str().unwrap();
        let batch = c["batch"].as_u64().unwrap();
        let opt = c["optimizer"].as_str().unwrap();
        let p = plan_of(c);
        let measured = c["peak_bytes"].as_u64().unwrap();
        let est = p.memory.peak.bytes;
        let err = est as f64 / measured as f64 - 1.0;
        out.push((name.to_string(), batch, opt.to_string(), measured, est, err));
    }
    out
}

#[test]
fn peak_within_ten_percent_of_every_cuda_measurement() {
    let errs = errors();
    assert_eq!(errs.len(), 5, "the reference holds five configurations");
    for (model, batch, opt, measured, est, err) in &errs {
        eprintln!(
            "{model} batch {batch} {opt}: measured {measured}, estimate {est}, {:+.1} %",
            err * 100.0
        );
    }
    for (model, batch, opt, measured, est, err) in &errs {
        assert!(
            err.abs() <= 0.10,
            "{model} batch {batch} {opt}: estimate {est} vs measured {measured} ({:+.1} %)",
            err * 100.0
        );
    }
    let mut e: Vec<f64> = errs.iter().map(|x| x.5).collect();
    e.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = e[e.len() / 2];
    assert!(
        median.abs() <= 0.05,
        "median error {:+.1} %",
        median * 100.0
    );
}

/// The liveness simulation against PyTorch's own memory profiler on the CPU
/// (`tests/data/train_liveness_cpu.json`, `scripts/training_liveness.py`): the CPU runs no
/// cuBLAS, so the estimate less its cuBLAS workspaces must be within ±1 % of each measured peak,
/// in the same phase of the step.
#[test]
fn liveness_matches_the_cpu_memory_timeline() {
    let r = data_json("train_liveness_cpu.json");
    let configs = r["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 4);
    for c in configs {
        let name = c["model"].as_str().unwrap();
        let p = plan_of(c);
        let peak = &p.memory.peak;
        let est = peak.bytes - peak.live.cublas_workspaces;
        let measured = c["peak_bytes"].as_u64().unwrap();
        let err = est as f64 / measured as f64 - 1.0;
        eprintln!(
            "{name} batch {}: CPU timeline {measured}, estimate {est} ({:+.2} %), {}",
            p.config.batch,
            err * 100.0,
            peak.phase.name()
        );
        assert!(err.abs() <= 0.01, "{name}: {est} vs {measured}");
        assert_eq!(
            peak.phase.name(),
            c["peak_phase"].as_str().unwrap(),
            "{name}"
        );
    }
}

/// The committed copy is the shared reference, byte for byte, where both exist.
#[test]
fn the_cuda_reference_is_the_shared_one() {
    let shared = root().join("../shared/reference/train_memory_cuda.json");
    if let Ok(s) = std::fs::read(&shared) {
        assert_eq!(
            s,
            std::fs::read(root().join("tests/data/train_memory_cuda.json")).unwrap(),
            "tests/data/train_memory_cuda.json is stale: copy ../shared/reference/train_memory_cuda.json over it"
        );
    }
    assert!(reference()["method"]
        .as_str()
        .unwrap()
        .contains("max_memory_allocated()"));
}
