//! What the integration tests share (each `tests/*.rs` that needs it declares `mod common;`):
//! the built binary run as a user runs it, with what its exit status and stderr must say; the
//! committed reference files of `tests/data/`; zoo models and YAML text built, analysed and
//! checked; the bad-input corpus; scratch directories; `.npy` and safetensors bytes; and the
//! external programs some tests use where installed (Graphviz's `dot`, Chromium), said loudly
//! when missing. Nothing here computes an expected figure: every expectation is written beside
//! its assertion, in the test that makes it.

// Each test crate uses a part of this module.
#![allow(dead_code)]

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use archscope::check::{self, CheckReport};
use archscope::receptive::Field;
use archscope::{analyze, exec, zoo, Analysis, BuildOptions, Dtype, Error, LayerStats, Network};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Paths and reference files.

/// The crate's root (`CARGO_MANIFEST_DIR`): the binary runs there, and relative paths in the
/// tests are relative to it.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A JSON file, parsed (a panic naming the file when it is missing or not JSON).
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// `tests/data/FILE`, parsed: the reference figures the scripts in `scripts/` measured.
pub fn data_json(file: &str) -> Value {
    read_json(&root().join("tests/data").join(file))
}

/// A JSON array of whole numbers (a shape, an input with its batch).
pub fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| {
            x.as_u64()
                .unwrap_or_else(|| panic!("not a whole number: {x}"))
        })
        .collect()
}

/// The same, as `usize` (tensor shapes).
pub fn usizes(v: &Value) -> Vec<usize> {
    u64s(v).into_iter().map(|d| d as usize).collect()
}

/// The build options of a measured input `[N, C, H, W…]` (batch first, as the reference files
/// write it): batch N, input size C×H×W….
pub fn options_for(input: &[u64]) -> BuildOptions {
    BuildOptions {
        batch: input[0],
        input: Some(input[1..].to_vec()),
        ..BuildOptions::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The built binary.

/// `archscope ARGS`, run in the crate's root with `COLUMNS` unset (tables at full width, as
/// when stdout is not a terminal); callers add environment variables before running it.
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_archscope"));
    c.args(args).current_dir(root()).env_remove("COLUMNS");
    c
}

/// Runs a command to its end, with its stdout and stderr.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// `archscope ARGS`, run to its end.
pub fn archscope(args: &[&str]) -> Output {
    output(&mut command(args))
}

/// A run's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The stdout of a run that must have succeeded (exit 0); otherwise a panic with its stderr.
pub fn succeeded(what: &dyn Debug, out: Output) -> Vec<u8> {
    assert_eq!(out.status.code(), Some(0), "{what:?}: {}", stderr(&out));
    out.stdout
}

/// The stdout of a run that reached a verdict: exit 0 (passed) or 1 (a check or a budget
/// failed), never 2 (bad input) or a signal.
pub fn reached_verdict(what: &dyn Debug, out: Output) -> Vec<u8> {
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{what:?}: {:?}\n{}",
        out.status,
        stderr(&out)
    );
    out.stdout
}

/// The stdout of `archscope ARGS`, which must succeed.
pub fn ok(args: &[&str]) -> Vec<u8> {
    succeeded(&args, archscope(args))
}

/// The stdout of `archscope ARGS`, which must succeed, as text.
pub fn ok_text(args: &[&str]) -> String {
    String::from_utf8(ok(args)).unwrap_or_else(|e| panic!("{args:?}: stdout is not UTF-8: {e}"))
}

/// The stdout of `archscope ARGS … --format json`, which must succeed, parsed.
pub fn json(args: &[&str]) -> Value {
    serde_json::from_slice(&ok(args)).unwrap_or_else(|e| panic!("{args:?}: not JSON: {e}"))
}

/// Asserts that a run was refused as bad input or usage: exit 2, a message that starts with
/// `error: ` and contains `needle`, and no panic. Returns the message.
pub fn refused(what: &dyn Debug, out: &Output, needle: &str) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{what:?}\n{err}");
    assert!(err.starts_with("error: "), "{what:?}\n{err}");
    assert!(err.contains(needle), "{what:?}: no `{needle}` in\n{err}");
    assert!(!err.contains("panicked"), "{what:?}\n{err}");
    err
}

/// `archscope ARGS` is refused with a message containing `needle` (see [`refused`]).
pub fn assert_rejected(args: &[&str], needle: &str) -> String {
    refused(&args, &archscope(args), needle)
}

// ---------------------------------------------------------------------------------------------
// Scratch directories.

/// A fresh, empty directory for files a test writes, named after the test crate, the process
/// and `name`, so that tests running side by side never share one.
pub fn scratch(name: &str) -> Scratch {
    // Unique within the process (all test files share one binary): the pid, then a counter.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("archscope-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    Scratch(dir)
}

/// A scratch directory that is removed when the test that made it ends (passing or failing:
/// `Drop` runs while a panic unwinds), so the suite leaves nothing in the temp directory.
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A path as the `&str` a command line takes.
pub fn arg(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", p.display()))
}

// ---------------------------------------------------------------------------------------------
// Models.

/// A zoo model built with `opts`.
pub fn zoo_net_with(name: &str, opts: &BuildOptions) -> Network {
    zoo::build(name, opts)
        .unwrap_or_else(|| panic!("{name} is not in the zoo"))
        .unwrap_or_else(|e| panic!("{name} does not build: {e}"))
}

/// A zoo model at its own input, batch 1.
pub fn zoo_net(name: &str) -> Network {
    zoo_net_with(name, &BuildOptions::default())
}

/// The names of every zoo model.
pub fn zoo_names() -> Vec<&'static str> {
    zoo::MODELS.iter().map(|(name, _)| *name).collect()
}

/// The static analysis (float32) of a network.
pub fn analysis(net: &Network) -> Analysis {
    analyze(net, Dtype::F32).unwrap_or_else(|e| panic!("{e}"))
}

/// The analysis of a zoo model at its own input, batch 1.
pub fn zoo_analysis(name: &str) -> Analysis {
    analysis(&zoo_net(name))
}

/// A network from YAML text, read as a file named `m.yaml`.
pub fn net(yaml: &str) -> Network {
    Network::from_yaml("m.yaml", yaml, &BuildOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// The analysis of YAML text (see [`net`]).
pub fn yaml_analysis(yaml: &str) -> Analysis {
    analysis(&net(yaml))
}

/// The analysis of a model file, by its path relative to the crate's root (which names it in
/// messages).
pub fn file_analysis(rel: &str) -> Analysis {
    let text = std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let net =
        Network::from_yaml(rel, &text, &BuildOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    analysis(&net)
}

/// The error reading `bytes` as the ONNX file `name`; a panic if it reads.
pub fn refused_onnx(name: &str, bytes: &[u8]) -> Error {
    match archscope::onnx::build(name, bytes, &BuildOptions::default()) {
        Ok(_) => panic!("{name}: read, expected an error"),
        Err(e) => e,
    }
}

/// The error of building and analysing `text`, read as file `file`; a panic if there is none.
pub fn build_error(file: &str, text: &str) -> Error {
    match Network::from_yaml(file, text, &BuildOptions::default())
        .and_then(|net| analyze(&net, Dtype::F32).map(|_| ()))
    {
        Ok(()) => panic!("{file}: expected an error"),
        Err(e) => e,
    }
}

/// Layer `name` of an analysis.
pub fn layer<'a>(a: &'a Analysis, name: &str) -> &'a LayerStats {
    a.layers
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no layer {name}"))
}

/// The index of layer `name` in an analysis (and in its network's nodes).
pub fn layer_index(a: &Analysis, name: &str) -> usize {
    a.layers
        .iter()
        .position(|l| l.name == name)
        .unwrap_or_else(|| panic!("no layer {name}"))
}

/// The receptive field of layer `name`.
pub fn field_of<'a>(a: &'a Analysis, name: &str) -> &'a Field {
    layer(a, name)
        .rf
        .as_ref()
        .unwrap_or_else(|| panic!("{name} has no field"))
}

/// The entry of layer `name` in the `layers` list of a command's JSON output.
pub fn json_layer<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layer list in {v}"))
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no layer {name} in the JSON"))
}

/// Runs `check` with seeded weights (seed 0) and asserts that every figure of every layer
/// agrees with the analysis, naming the layers that do not. Returns the report.
pub fn checked(net: &Network) -> CheckReport {
    let name = &net.name;
    let a = analysis(net);
    let w = exec::init_weights(net, 0).unwrap_or_else(|e| panic!("{name}: {e}"));
    let report = check::check(net, &a, &w, 0).unwrap_or_else(|e| panic!("{name}: {e}"));
    let bad: Vec<String> = report
        .rows
        .iter()
        .filter(|r| !r.ok())
        .map(|r| format!("{}: {:?}", r.name, r.mismatches()))
        .collect();
    assert!(bad.is_empty(), "{name}: {bad:?}");
    report
}

/// The files of the bad-input corpus, `tests/data/bad/*.yaml`, in name order.
pub fn bad_corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("tests/data/bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

// ---------------------------------------------------------------------------------------------
// File formats.

/// Little-endian float32 bytes.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A `.npy` file of format version 1.0: the signature, the header's length, `header` as
/// given, then `data`.
pub fn npy_with_header(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// A `.npy` file as NumPy writes it (version 1.0, header padded to 64 bytes): `descr` '<f4' or
/// '<f8', C order, `shape`; the values little-endian.
pub fn npy_bytes(shape: &[usize], values: &[f64], descr: &str) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let data: Vec<u8> = if descr == "<f8" {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    } else {
        values
            .iter()
            .flat_map(|&v| (v as f32).to_le_bytes())
            .collect()
    };
    npy_with_header(&header, &data)
}

/// Reads back a float32 `.npy` written by `--save-output`, checking that its header's shape
/// and the data that follows agree exactly (a complete, valid file).
pub fn read_saved_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    let inner = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data = &bytes[10 + hlen..];
    assert_eq!(
        data.len(),
        4 * shape.iter().product::<usize>(),
        "the header's shape {shape:?} and the data disagree"
    );
    let values = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (shape, values)
}

/// A safetensors file: the 8-byte little-endian header length, the header, the data.
pub fn safetensors_bytes(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header);
    b.extend_from_slice(data);
    b
}

/// FNV-1a, 32 bits (scripts/torchvision_weights.py `fnv1a32`).
pub fn fnv1a32(name: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The deterministic values the reference scripts give a tensor named `name` of `shape`
/// (scripts/torchvision_weights.py `formula`, bit for bit): weights scaled by their fan-in,
/// biases and running means small, running variances near 1, other vectors near 1.
pub fn formula(name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let h = u64::from(fnv1a32(name));
    (0..n as u64)
        .map(|i| {
            let x = (i.wrapping_mul(2_654_435_761) & 0xffff_ffff) ^ h;
            let u = x as f64 * 2.0 / 4_294_967_296.0 - 1.0;
            let v = if name.ends_with("running_var") {
                1.0 + 0.5 * u
            } else if name.ends_with("running_mean") || name.ends_with("bias") {
                0.1 * u
            } else if shape.len() >= 2 {
                u * (3.0 / (n / shape[0]) as f64).sqrt()
            } else {
                1.0 + 0.1 * u
            };
            v as f32
        })
        .collect()
}

/// A safetensors file of a state dict written by a reference script as `[name, shape]` or
/// `[name, shape, dtype]` entries: float32 tensors (the default) by [`formula`], int64 ones
/// (`num_batches_tracked`) zero.
pub fn formula_safetensors(state: &Value) -> Vec<u8> {
    use safetensors::tensor::Dtype as D;
    let tensors: Vec<StTensor> = state
        .as_array()
        .unwrap_or_else(|| panic!("not a state dict: {state}"))
        .iter()
        .map(|t| {
            let name = t[0].as_str().unwrap().to_string();
            let shape = usizes(&t[1]);
            match t.get(2).map_or("float32", |d| d.as_str().unwrap()) {
                "float32" => {
                    let b = formula(&name, &shape)
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect();
                    (name, shape, D::F32, b)
                }
                "int64" => {
                    let n: usize = shape.iter().product();
                    (name, shape, D::I64, vec![0u8; 8 * n])
                }
                other => panic!("{name}: dtype {other}"),
            }
        })
        .collect();
    safetensors_of(&tensors)
}

/// One tensor of a safetensors file: name, shape, dtype and little-endian bytes.
pub type StTensor = (String, Vec<usize>, safetensors::tensor::Dtype, Vec<u8>);

/// A safetensors file of `tensors`.
pub fn safetensors_of(tensors: &[StTensor]) -> Vec<u8> {
    use safetensors::tensor::TensorView;
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, s, d, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, &None).unwrap()
}

/// A reference script's tensor as a safetensors entry: `values` written as int64 when the
/// script's dtype is `"int64"`, else as float32.
pub fn st_tensor(name: String, shape: Vec<usize>, dtype: &str, values: &[f32]) -> StTensor {
    use safetensors::tensor::Dtype as D;
    match dtype {
        "int64" => {
            let b = values
                .iter()
                .flat_map(|v| (*v as i64).to_le_bytes())
                .collect();
            (name, shape, D::I64, b)
        }
        _ => (
            name,
            shape,
            D::F32,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
    }
}

/// A safetensors file of a state dict a reference script wrote as `[name, shape, dtype]` or
/// `[name, shape, dtype, extra]` entries: float32 parameters by [`formula`] (or the script's
/// `values`, or a constant `fill`, given in `extra`), int64 buffers with the `values` the script
/// wrote.
pub fn reference_state_file(state: &Value) -> Vec<u8> {
    let tensors: Vec<StTensor> = state
        .as_array()
        .unwrap_or_else(|| panic!("not a state dict: {state}"))
        .iter()
        .map(|t| {
            let name = t[0].as_str().unwrap().to_string();
            let shape = usizes(&t[1]);
            let n: usize = shape.iter().product();
            let values = match (t[2].as_str().unwrap(), t.get(3)) {
                ("int64", Some(e)) => e["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap() as f32)
                    .collect(),
                ("float32", Some(e)) if e.get("values").is_some() => f32s(&e["values"]),
                ("float32", Some(e)) => vec![e["fill"].as_f64().unwrap() as f32; n],
                ("float32", None) => formula(&name, &shape),
                other => panic!("{name}: {other:?}"),
            };
            let dtype = t[2].as_str().unwrap();
            st_tensor(name, shape, dtype, &values)
        })
        .collect();
    safetensors_of(&tensors)
}

/// Every tensor of a network's seeded weights (`exec::init_weights(net, 0)`) by its state-dict
/// name (`prefix.name`): the buffers a model computes itself, such as a relative-position index.
pub fn own_tensors(net: &Network) -> std::collections::HashMap<String, Vec<f32>> {
    let own = exec::init_weights(net, 0).unwrap();
    let mut by_name = std::collections::HashMap::new();
    for (k, node) in net.nodes.iter().enumerate() {
        for (spec, t) in node.layer.weights().iter().zip(&own.per_node[k]) {
            by_name.insert(
                format!("{}.{}", net.tensor_prefix[k], spec.name),
                t.data.clone(),
            );
        }
    }
    by_name
}

/// Asserts that both paths of the executor ([`outputs_both_ways`]) give `want` (a reference
/// script's output) on `x`, each element within 1e-4 of the largest magnitude of `want`.
pub fn assert_output_both_ways(
    label: &str,
    net: &Network,
    w: &exec::Weights,
    x: &exec::Tensor,
    want: &[f32],
) {
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
    for (path, out) in outputs_both_ways(net, w, x) {
        assert_eq!(out.data.len(), want.len(), "{label} ({path})");
        let worst = out
            .data
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-4 * scale,
            "{label} ({path}): max |Δ| {worst} of {scale}"
        );
    }
}

/// Builds `inputs` (name → dims without the batch) and `nodes` (YAML lines), runs it as written
/// and planned with weights and input seeded by `(weight_seed, input_seed)`, and returns (inputs, weights per node, output as
/// written, output planned). With `bitwise`, asserts that the two outputs agree bit for bit
/// (not so when the plan folds a batch norm into the weights, which rounds differently).
pub fn run_as_written_and_planned(
    batch: usize,
    inputs: &[(&str, Vec<usize>)],
    nodes: &[String],
    bitwise: bool,
    (weight_seed, input_seed): (u64, u64),
) -> (
    Vec<exec::Tensor>,
    Vec<Vec<exec::Tensor>>,
    exec::Tensor,
    exec::Tensor,
) {
    let ins: Vec<String> = inputs
        .iter()
        .map(|(n, d)| {
            let d: Vec<String> = d.iter().map(|v| v.to_string()).collect();
            format!("{n}: [{}]", d.join(", "))
        })
        .collect();
    let yaml = format!(
        "inputs: {{{}}}\nnodes:\n{}\n",
        ins.join(", "),
        nodes
            .iter()
            .map(|l| format!("  - {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let net = Network::from_yaml(
        "model.yaml",
        &yaml,
        &BuildOptions {
            batch: batch as u64,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{yaml}\n{e}"));
    let w = exec::init_weights(&net, weight_seed).unwrap();
    let x = exec::random_input(&net, input_seed).unwrap();
    let r = exec::run(&net, &w, &x, None).unwrap();
    let planned = exec::run_planned(&net, &w, &exec::plan(&net, &w), &x, None).unwrap();
    for (a, b) in r.outputs[0].data.iter().zip(&planned.outputs[0].data) {
        assert!(
            !bitwise || a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "{yaml}: {a} as written, {b} planned"
        );
    }
    (
        x,
        w.per_node,
        r.outputs[0].clone(),
        planned.outputs[0].clone(),
    )
}

/// The network's first output on `x` by both paths of the executor: `exec::run` (every layer
/// as written, what `check` uses) and the inference plan (what `run` uses), labelled.
pub fn outputs_both_ways(
    net: &Network,
    w: &exec::Weights,
    x: &exec::Tensor,
) -> [(&'static str, exec::Tensor); 2] {
    let inputs = std::slice::from_ref(x);
    let direct = exec::run(net, w, inputs, None).unwrap_or_else(|e| panic!("{}: {e}", net.name));
    let planned = exec::run_planned(net, w, &exec::plan(net, w), inputs, None)
        .unwrap_or_else(|e| panic!("{}: {e}", net.name));
    let first = |mut v: Vec<exec::Tensor>| v.swap_remove(0);
    [
        ("run", first(direct.outputs)),
        ("plan", first(planned.outputs)),
    ]
}

/// A JSON array of numbers as f32 (a reference output).
pub fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("not a number: {x}")) as f32)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// External programs.

/// Writes a line past the test harness's output capture (straight to the stderr handle, in
/// one write, not through `eprintln!`, which libtest captures for passing tests), so that a
/// check that did not run is seen.
pub fn loud(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("\n{line}\n").as_bytes());
}

/// Whether Graphviz's `dot` can be run. When it cannot, says loudly what `missed` (what was
/// not checked because of it).
pub fn have_dot(missed: &str) -> bool {
    let ok = Command::new("dot").arg("-V").output().is_ok();
    if !ok {
        loud(&format!(
            "!!!!! Graphviz's `dot` is not installed (apt-get install graphviz): {missed} !!!!!"
        ));
    }
    ok
}

/// The Chromium binary: `$ARCHSCOPE_CHROMIUM`, or the first of chromium, chromium-browser,
/// google-chrome on PATH.
pub fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ARCHSCOPE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Says loudly that browser test `test` did not run for want of Chromium.
pub fn no_browser(test: &str) {
    loud(&format!(
        "!!!!! BROWSER TEST `{test}` DID NOT RUN: no Chromium found (install Debian's `chromium`, \
         or set ARCHSCOPE_CHROMIUM to a Chromium binary). The report page was NOT checked in a browser. !!!!!"
    ));
}

/// The per-unit spans of one axis of a windowed field.
pub fn rf_units(f: &Field, axis: usize) -> Vec<(i64, i64)> {
    f.units
        .as_ref()
        .expect("a windowed field has per-unit spans")[axis]
        .iter()
        .map(|s| s.expect("every unit sees something"))
        .collect()
}

/// The largest and smallest extent of a field, per axis.
pub fn rf_sizes(f: &Field) -> Vec<(archscope::receptive::Q, archscope::receptive::Q)> {
    f.axes.iter().map(|a| (a.size, a.min_size)).collect()
}

/// `n` with a comma every three digits (`3,157,200`), as Ultralytics prints counts: written here,
/// apart from the crate's own formatter, so that a test of printed figures checks it.
pub fn commas(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A committed ONNX file of `tests/data/onnx/`, read.
pub fn read_onnx(name: &str) -> Vec<u8> {
    let p = root().join("tests/data/onnx").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// An ONNX file's bytes imported with the default options (a failure panics, naming the file).
pub fn import_onnx(name: &str, bytes: &[u8]) -> (Network, archscope::onnx::Import) {
    archscope::onnx::build(name, bytes, &BuildOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Asserts that archscope's output `got` has onnxruntime's `want` (a reference script's
/// figures) to within 1e-4 absolute, and that `want` is not a zero model's output (some value
/// above 0.1 in magnitude: the weights reached the layers).
pub fn assert_onnxruntime_output(label: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{label}");
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (f64::from(*g) - w).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= 1e-4,
        "{label}: archscope and onnxruntime differ by {worst}"
    );
    assert!(want.iter().any(|v| v.abs() > 0.1), "{label}: {want:?}");
}

/// [`layer_row`] of every layer with parameters or MACs, in the network's order.
pub fn weighted_rows(a: &Analysis) -> Vec<String> {
    a.layers
        .iter()
        .filter(|l| l.params.total() > 0 || l.macs > 0)
        .map(layer_row)
        .collect()
}

/// One layer as (type, output shapes, parameters, MACs, receptive field): what two
/// descriptions of the same network must agree on when they name and nest layers differently
/// (an ONNX import and its YAML, a conversion and what it was converted from).
pub fn layer_row(l: &LayerStats) -> String {
    format!(
        "{} {:?} {} {} {:?}",
        l.op,
        l.outputs,
        l.params.total(),
        l.macs,
        l.rf
    )
}

/// The entry of `d["models"]` whose `model` is `model` (a reference script's record).
pub fn record<'a>(d: &'a Value, model: &str) -> &'a Value {
    d["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == model)
        .unwrap_or_else(|| panic!("{model} recorded"))
}
