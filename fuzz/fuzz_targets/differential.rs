//! Differential fuzz target, in the manner of tract's proptests: the bytes choose a small
//! random network — any layer type of the registry (`layers::REGISTRY`, so a new type is fuzzed
//! without touching this file), any of its keys with values drawn from a palette of plausible
//! ones (small integers, pairs, quadruples, booleans, rates, mode names), random inputs of rank
//! 1 to 4, merges and two-input layers fed by earlier layers, fused `bn`/`act`, one or two
//! outputs. Networks the builder refuses are skipped (the `yaml_pipeline` target checks those
//! errors). Each valid one is then
//!
//! 1. run through the inference plan (`exec::plan` + `exec::run_planned`, what `archscope run`
//!    uses: folded batch norms, fused activations, in-place merges, Winograd) and the reference
//!    path (`exec::run`, every layer as written, what `archscope check` uses): every output must
//!    have the same shape and agree within rounding (NaN where NaN, the same infinities);
//! 2. checked (`check::check`): shapes, parameters, buffers, MACs and receptive fields measured
//!    by the executor must agree with the static analysis.

#![no_main]

use archscope::layers::{Arity, REGISTRY};
use archscope::{analyze, check, exec, BuildOptions, Dtype, Network};
use libfuzzer_sys::fuzz_target;

/// Reads the fuzz bytes as a stream of choices (zeros once exhausted).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn below(&mut self, n: usize) -> usize {
        self.u8() as usize % n
    }
}

const WORDS: &[&str] = &[
    "same",
    "valid",
    "zeros",
    "reflect",
    "replicate",
    "circular",
    "nearest",
    "bilinear",
    "bicubic",
    "none",
    "tanh",
    "row",
    "batch",
    "relu",
    "channel",
];
const FLOATS: &[&str] = &["0.0", "0.1", "0.5", "1.0", "2.0", "1.0e-5"];

/// A value for any key, from the palette.
fn value(b: &mut Bytes) -> String {
    match b.below(8) {
        0 | 1 | 2 => (b.below(6) + 1).to_string(),
        3 => format!("[{}, {}]", b.below(4) + 1, b.below(4) + 1),
        4 => match b.below(4) {
            0 => "true".into(),
            1 => "false".into(),
            2 => "0".into(),
            _ => format!("-{}", b.below(3) + 1),
        },
        5 => FLOATS[b.below(FLOATS.len())].into(),
        6 => WORDS[b.below(WORDS.len())].into(),
        _ => format!(
            "[{}, {}, {}, {}]",
            b.below(3),
            b.below(3),
            b.below(3),
            b.below(3)
        ),
    }
}

const ACTS: &[&str] = &[
    "relu",
    "relu6",
    "sigmoid",
    "hardswish",
    "leaky_relu",
    "gelu",
    "tanh",
];

/// The YAML text of the network the bytes describe.
fn network(b: &mut Bytes) -> String {
    let shape = match b.below(4) {
        0 => format!("[{}]", b.below(8) + 1),
        1 => format!("[{}, {}]", b.below(4) + 1, b.below(6) + 1),
        _ => format!(
            "[{}, {}, {}]",
            b.below(4) + 1,
            b.below(9) + 1,
            b.below(9) + 1
        ),
    };
    let mut text = format!("name: fuzz\ninputs:\n  x: {shape}\nnodes:\n");
    let ops: Vec<_> = REGISTRY.iter().filter(|t| t.name != "input").collect();
    let layers = b.below(5) + 1;
    let mut names = vec!["x".to_string()];
    for i in 0..layers {
        let t = ops[b.below(ops.len())];
        let id = format!("l{i}");
        let mut node = format!("  - {{id: {id}, op: {}", t.name);
        let pick = |b: &mut Bytes| names[names.len() - 1 - b.below(names.len())].clone();
        let two = matches!(t.arity, Arity::Exactly(2) | Arity::AtLeast(2));
        if two || b.below(4) == 0 {
            let first = pick(b);
            if two || b.below(2) == 0 {
                node += &format!(", in: [{first}, {}]", pick(b));
            } else {
                node += &format!(", in: {first}");
            }
        }
        for key in t.keys {
            if b.below(2) == 0 {
                node += &format!(", {key}: {}", value(b));
            }
        }
        if t.fused_bn.is_some() && b.below(3) == 0 {
            node += ", bn: true";
        }
        if b.below(4) == 0 {
            node += &format!(", act: {}", ACTS[b.below(ACTS.len())]);
        }
        node += "}\n";
        text += &node;
        names.push(id);
    }
    if layers > 1 && b.below(3) == 0 {
        let other = names[1 + b.below(layers - 1)].clone();
        text += &format!("outputs: [{}, {other}]\n", names[layers]);
    }
    text
}

/// Bounds the work of one input: tensors and MACs of a small network.
const MAX_ELEMENTS: u64 = 1 << 16;
const MAX_MACS: u64 = 1 << 22;

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let batch = b.below(2) as u64 + 1;
    let seed = b.u8() as u64;
    let text = network(&mut b);
    let opts = BuildOptions {
        batch,
        max_layers: 64,
        ..Default::default()
    };
    let Ok(net) = Network::from_yaml("fuzz.yaml", &text, &opts) else {
        return;
    };
    let Ok(a) = analyze(&net, Dtype::F32) else {
        return;
    };
    let big = a.layers.iter().any(|l| {
        l.outputs.iter().any(|s| {
            s.0.iter()
                .try_fold(1u64, |p, &d| p.checked_mul(d))
                .map_or(true, |n| n > MAX_ELEMENTS)
        })
    });
    if big || a.totals.macs > MAX_MACS {
        return;
    }
    let w = exec::init_weights(&net, seed).expect("weights of a small valid network");
    let x = exec::random_input(&net, seed).expect("input of a small valid network");
    let plain = exec::run(&net, &w, &x, None)
        .unwrap_or_else(|e| panic!("exec::run failed on a valid network: {e}\n{text}"));
    let plan = exec::plan(&net, &w);
    let fast = exec::run_planned(&net, &w, &plan, &x, None)
        .unwrap_or_else(|e| panic!("exec::run_planned failed on a valid network: {e}\n{text}"));
    assert_eq!(plain.outputs.len(), fast.outputs.len());
    for (k, (p, f)) in plain.outputs.iter().zip(&fast.outputs).enumerate() {
        assert_eq!(p.shape, f.shape, "output {k}: shapes differ\n{text}");
        let scale = p
            .data
            .iter()
            .filter(|v| v.is_finite())
            .fold(1f32, |m, v| m.max(v.abs()));
        for (i, (u, v)) in p.data.iter().zip(&f.data).enumerate() {
            let same = if u.is_nan() || v.is_nan() {
                u.is_nan() && v.is_nan()
            } else if u.is_infinite() || v.is_infinite() {
                u == v
            } else {
                (u - v).abs() <= 1e-4 * scale
            };
            assert!(
                same,
                "output {k}, element {i}: reference {u} vs plan {v} (scale {scale})\n{text}"
            );
        }
    }
    let report = check::check(&net, &a, &w, seed)
        .unwrap_or_else(|e| panic!("check failed to run on a valid network: {e}\n{text}"));
    assert_eq!(
        report.failures(),
        0,
        "check disagrees with the analysis: {:?}\n{text}",
        report.disagreements()
    );
});
