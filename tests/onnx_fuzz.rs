//! A bounded, deterministic mutation fuzz of the ONNX reader, in-tree (the coverage-guided
//! target is `fuzz/fuzz_targets/onnx.rs`, run with cargo-fuzz: docs/FUZZING.md). Seeds: every
//! `.onnx` file under tests/data/onnx/ (the directory is read, so a file added there is
//! mutated too), in eight shards that run in parallel. Each mutant — bytes flipped, cut,
//! inserted, deleted or duplicated, varints and lengths overwritten with extreme values, or the
//! decoded model edited (dims, attributes, op types, inputs, data types, node order) and
//! encoded again — goes through `onnx::build` and, when it builds, the analysis. None may
//! panic; every refusal must be a located error (a byte offset, an ONNX node, a tensor or
//! graph input named) with a help line. The generator is a fixed xorshift salted with the
//! file's name, so a failure names the seed file and mutant number that reproduce it.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::common::{fnv1a32, root};
use archscope::onnx::{self, proto};
use archscope::{analyze, BuildOptions, Dtype};

/// Mutants per seed file and kind (bytes, structure).
const BYTE_MUTANTS: usize = 400;
const MODEL_MUTANTS: usize = 300;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Values that break assumptions: zero, negatives, one past a limit, huge.
const INTS: &[i64] = &[
    0,
    -1,
    -2,
    1,
    2,
    3,
    7,
    64,
    (1 << 20) + 1,
    1 << 31,
    1 << 40,
    i64::MAX,
    i64::MIN,
];

/// A varint of `v` (as protobuf writes a u64).
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn mutate_bytes(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        let len = b.len().max(1);
        let at = rng.below(len);
        match rng.below(7) {
            0 => {
                if let Some(x) = b.get_mut(at) {
                    *x ^= 1 << rng.below(8);
                }
            }
            1 => b.truncate(at),
            2 => {
                let n = 1 + rng.below(8);
                let ins: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(at.min(b.len())..at.min(b.len()), ins);
            }
            3 => {
                let end = (at + 1 + rng.below(64)).min(b.len());
                b.drain(at.min(end)..end);
            }
            4 => {
                let end = (at + 1 + rng.below(64)).min(b.len());
                let chunk = b[at.min(end)..end].to_vec();
                let to = rng.below(b.len().max(1)).min(b.len());
                b.splice(to..to, chunk);
            }
            5 => {
                // An extreme varint (a length, a dim, a tag) written over the bytes at `at`.
                let v = *rng.pick(&[0u64, 1, 127, 128, 1 << 31, 1 << 40, u64::MAX]);
                let bytes = varint(v);
                let end = (at + bytes.len()).min(b.len());
                b.splice(at.min(end)..end, bytes);
            }
            _ => {
                if let Some(x) = b.get_mut(at) {
                    *x = *rng.pick(&[0x00, 0xff, 0x80, 0x7f, 0x08, 0x0a, 0x12, 0x3a]);
                }
            }
        }
    }
    b
}

const OPS: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "Relu",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Div",
    "Reshape",
    "Flatten",
    "Transpose",
    "Concat",
    "Split",
    "Slice",
    "Pad",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "BatchNormalization",
    "LayerNormalization",
    "Softmax",
    "Resize",
    "Gather",
    "Squeeze",
    "Unsqueeze",
    "ReduceMean",
    "Clip",
    "Erf",
    "Sigmoid",
    "Shape",
    "Constant",
    "ConstantOfShape",
    "Identity",
    "Where",
    "Celu",
    "",
];

fn mutate_model(rng: &mut Rng, seed: &proto::ModelProto) -> proto::ModelProto {
    let mut m = seed.clone();
    let Some(g) = m.graph.as_mut() else {
        return m;
    };
    for _ in 0..1 + rng.below(3) {
        let nn = g.node.len();
        match rng.below(10) {
            0 if nn > 0 => {
                let k = rng.below(nn);
                g.node[k].op_type = Some(rng.pick(OPS).to_string());
            }
            1 if nn > 0 => {
                // An attribute's ints or int set to extreme values.
                let k = rng.below(nn);
                let na = g.node[k].attribute.len();
                if na > 0 {
                    let a = &mut g.node[k].attribute[rng.below(na)];
                    if a.ints.is_empty() {
                        a.i = Some(*rng.pick(INTS));
                    } else {
                        let j = rng.below(a.ints.len());
                        a.ints[j] = *rng.pick(INTS);
                        if rng.below(4) == 0 {
                            a.ints.pop();
                        }
                    }
                }
            }
            2 if nn > 0 => {
                // An input dropped, emptied or renamed to another node's output.
                let k = rng.below(nn);
                let ni = g.node[k].input.len();
                if ni > 0 {
                    let j = rng.below(ni);
                    match rng.below(3) {
                        0 => {
                            g.node[k].input.remove(j);
                        }
                        1 => g.node[k].input[j].clear(),
                        _ => {
                            let other = rng.below(nn);
                            if let Some(o) = g.node[other].output.first().cloned() {
                                g.node[k].input[j] = o;
                            }
                        }
                    }
                }
            }
            3 if !g.initializer.is_empty() => {
                let k = rng.below(g.initializer.len());
                let t = &mut g.initializer[k];
                if t.dims.is_empty() {
                    t.dims.push(*rng.pick(INTS));
                } else {
                    let j = rng.below(t.dims.len());
                    t.dims[j] = *rng.pick(INTS);
                }
            }
            4 if !g.initializer.is_empty() => {
                let k = rng.below(g.initializer.len());
                g.initializer[k].data_type = Some(rng.below(24) as i32);
            }
            5 if !g.initializer.is_empty() => {
                let k = rng.below(g.initializer.len());
                g.initializer.remove(k);
            }
            6 if nn > 1 => {
                let (a, b) = (rng.below(nn), rng.below(nn));
                g.node.swap(a, b);
            }
            7 => {
                // A graph input's or output's dim changed, made symbolic, or dropped.
                let vs = if rng.below(2) == 0 {
                    &mut g.input
                } else {
                    &mut g.output
                };
                if let Some(v) = vs.first_mut() {
                    if let Some(proto::type_proto::Value::TensorType(tt)) =
                        v.r#type.as_mut().and_then(|t| t.value.as_mut())
                    {
                        if let Some(s) = tt.shape.as_mut() {
                            let nd = s.dim.len();
                            if nd > 0 {
                                let j = rng.below(nd);
                                use proto::tensor_shape_proto::dimension::Value;
                                s.dim[j].value = match rng.below(3) {
                                    0 => Some(Value::DimParam("d".into())),
                                    1 => None,
                                    _ => Some(Value::DimValue(*rng.pick(INTS))),
                                };
                            }
                        }
                    }
                }
            }
            8 => {
                let v = *rng.pick(&[0i64, 7, 10, 11, 13, 17, 21, 23, 24, 1 << 40]);
                if let Some(o) = m.opset_import.first_mut() {
                    o.version = Some(v);
                }
                return m;
            }
            _ if nn > 0 => {
                let k = rng.below(nn);
                g.node.remove(k);
            }
            _ => {}
        }
    }
    m
}

/// Imports and builds `bytes` (`Ok(true)`: it built); a refusal must be located and carry a
/// help line.
fn check_one(what: &str, bytes: &[u8]) -> Result<bool, String> {
    let opts = BuildOptions {
        batch: 1,
        max_layers: 5_000,
        ..Default::default()
    };
    let r = catch_unwind(AssertUnwindSafe(|| {
        match onnx::build("fuzz.onnx", bytes, &opts) {
            Ok((net, _)) => {
                // The analysis of whatever built must not panic either; its own refusals
                // (an overflow) are errors, fine here.
                let _ = analyze(&net, Dtype::F32);
                None
            }
            Err(e) => Some(e),
        }
    }));
    let e = match r {
        Ok(None) => return Ok(true),
        Ok(Some(e)) => e,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Err(format!("{what}: panicked: {msg}"));
        }
    };
    let d = e.diagnostic();
    let text = e.to_string();
    let located = d.message.contains("at byte ")
        || d.layer
            .as_deref()
            .is_some_and(|l| l.starts_with("ONNX node #"))
        || d.notes.iter().any(|n| n.starts_with("from ONNX "))
        || d.message.starts_with("fuzz.onnx: graph input `")
        || d.message.starts_with("fuzz.onnx: graph output `")
        || d.message.starts_with("fuzz.onnx: initializer `")
        || d.message.starts_with("fuzz.onnx: tensor `")
        || d.message.starts_with("tensor `")
        || d.message
            .starts_with("fuzz.onnx: the model uses ONNX opset")
        || d.message
            .starts_with("fuzz.onnx: the ONNX model has no graph")
        || d.message.starts_with("fuzz.onnx: the graph has");
    if !located {
        return Err(format!("{what}: an error without a location:\n{text}"));
    }
    if d.help.as_deref().unwrap_or("").is_empty() {
        return Err(format!("{what}: an error without a help line:\n{text}"));
    }
    Ok(false)
}

pub(crate) fn fuzz_seed(file: &str, salt: u64) -> (usize, usize) {
    let seed = std::fs::read(root().join("tests/data/onnx").join(file)).expect("seed file");
    let model = proto::decode_model(file, &seed).expect("the seed decodes");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ salt);
    let mut failures = Vec::new();
    let mut built = 0;
    check_one(&format!("{file} as is"), &seed).expect("the seed itself reads");
    for k in 0..BYTE_MUTANTS {
        let b = mutate_bytes(&mut rng, &seed);
        match check_one(&format!("{file} byte mutant {k}"), &b) {
            Err(f) => failures.push(f),
            Ok(b) => built += usize::from(b),
        }
    }
    for k in 0..MODEL_MUTANTS {
        let m = mutate_model(&mut rng, &model);
        let b = proto::encode_model(&m);
        match check_one(&format!("{file} model mutant {k}"), &b) {
            Err(f) => failures.push(f),
            Ok(b) => built += usize::from(b),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} mutants failed; the first ones:\n{}",
        failures.len(),
        BYTE_MUTANTS + MODEL_MUTANTS,
        failures
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    (BYTE_MUTANTS + MODEL_MUTANTS, built)
}

/// Every committed file of tests/data/onnx/, sorted: the directory is read, not listed, so a
/// file added later is mutated too.
fn seeds() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join("tests/data/onnx"))
        .expect("tests/data/onnx")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".onnx"))
        .collect();
    v.sort();
    v
}

/// The test binary runs the shards in parallel; each stays well under the 20 s a test may take.
const SHARDS: usize = 8;

/// The seeds of shard `k` (every SHARDS-th file), each with its own generator (salted with its
/// name, so that adding a file changes no other file's mutants).
fn shard(k: usize) {
    let files = seeds();
    // The 43 files committed when this was written (tests/onnx_convert_blocks.rs lists them).
    assert!(files.len() >= 43, "{files:?}");
    for f in files.iter().skip(k).step_by(SHARDS) {
        let (n, built) = fuzz_seed(f, u64::from(fnv1a32(f)));
        // The mutants reach past the first check (some refused), and each one was read.
        assert!(built < n, "{f}: {built} of {n}");
    }
}

#[test]
fn mutants_0() {
    shard(0);
}

#[test]
fn mutants_1() {
    shard(1);
}

#[test]
fn mutants_2() {
    shard(2);
}

#[test]
fn mutants_3() {
    shard(3);
}

#[test]
fn mutants_4() {
    shard(4);
}

#[test]
fn mutants_5() {
    shard(5);
}

#[test]
fn mutants_6() {
    shard(6);
}

#[test]
fn mutants_7() {
    shard(7);
}

#[test]
fn the_small_cnn_has_readable_mutants() {
    // Some structural mutants stay readable (an attribute the reader ignores, a dim of an
    // unused output): the generator reaches past the first check.
    let (n, built) = fuzz_seed("tiny_cnn.onnx", 1);
    assert!(built > 0 && built < n, "{built} of {n}");
}
