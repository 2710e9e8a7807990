//! The documented limits (docs/FORMAT.md, "Limits") and exit codes (0 success, 1 a check or
//! budget failed, 2 bad input or usage), through the built binary as a user meets them: every
//! file of the bad-input corpus exits 2 with a located message, within a second (release
//! builds) and under a 1 GiB address-space limit; each limit has a case just over it.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use archscope::graph::{MAX_ELEMENTS, MAX_LAYERS, MAX_LINKS, MAX_REPEAT};
use archscope::yaml::{MAX_NESTING, MAX_SOURCE_BYTES};
use archscope::{BuildOptions, Network};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn archscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_archscope"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

/// Runs the binary with its address space limited to `kib` KiB (Linux and other Unixes, via
/// the shell's `ulimit -v`).
#[cfg(unix)]
fn archscope_limited(args: &[&str], kib: u64) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_archscope"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

#[cfg(not(unix))]
fn archscope_limited(args: &[&str], _kib: u64) -> Output {
    archscope(args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh scratch directory for generated inputs.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("archscope-limits-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Expects exit 2 and an `error:` message naming `needle`.
fn assert_rejected(args: &[&str], needle: &str) -> String {
    let out = archscope(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}\n{err}");
    assert!(err.starts_with("error: "), "{args:?}\n{err}");
    assert!(err.contains(needle), "{args:?}: no `{needle}` in\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// Every corpus file: exit 2, an `error:` message with `file:line:column` or a layer, a
/// `help:`, no panic; within a second in a release build (best of three runs, so that a busy
/// machine does not fail the test) and within 1 GiB of address space.
#[test]
fn corpus_exits_2_fast_and_bounded() {
    let dir = root().join("tests/data/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let budget = if cfg!(debug_assertions) {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(1)
    };
    for path in files {
        let rel = path
            .strip_prefix(root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            let out = archscope_limited(&["summary", &rel], 1 << 20);
            best = best.min(start.elapsed());
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{rel}\n{err}");
            assert!(err.starts_with("error: "), "{rel}\n{err}");
            assert!(
                err.contains(&format!("--> {rel}:")) || err.contains("= in layer `"),
                "{rel}: no location\n{err}"
            );
            assert!(err.contains("help: "), "{rel}: no help\n{err}");
            assert!(!err.contains("panicked"), "{rel}\n{err}");
            if best <= budget {
                break;
            }
        }
        assert!(best <= budget, "{rel} took {best:?}");
    }
}

#[test]
fn source_size_limit() {
    let dir = scratch("size");
    // 10 MB, generated here rather than committed.
    let big = dir.join("ten_megabytes.yaml");
    let mut text = String::from("inputs: {image: [3, 32, 32]}\nnodes:\n");
    while text.len() < 10_000_000 {
        text.push_str("  - {op: relu}\n");
    }
    std::fs::write(&big, &text).unwrap();
    let start = Instant::now();
    let out = archscope_limited(&["summary", big.to_str().unwrap()], 1 << 20);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("at most {MAX_SOURCE_BYTES} bytes")),
        "{err}"
    );
    assert!(err.contains("ten_megabytes.yaml:1:1"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // Just over the limit, through the library.
    let over = format!("{}{}", "#".repeat(MAX_SOURCE_BYTES), "\n");
    let e = Network::from_yaml("m.yaml", &over, &BuildOptions::default()).unwrap_err();
    assert!(e.to_string().contains("at most"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_binary_and_missing_files() {
    let dir = scratch("files");
    let binary = dir.join("weights.yaml");
    std::fs::write(
        &binary,
        b"inputs: {image: [3, 8, 8]}\n\xff\xfe\x00\x80 not text",
    )
    .unwrap();
    let err = assert_rejected(&["summary", binary.to_str().unwrap()], "not UTF-8");
    assert!(err.contains("weights.yaml:2:1"), "{err}");
    let empty = dir.join("empty.yaml");
    std::fs::write(&empty, "").unwrap();
    assert_rejected(&["summary", empty.to_str().unwrap()], "the file is empty");
    assert_rejected(&["summary", "no/such/model.yaml"], "no file or zoo model");
    assert_rejected(&["summary", dir.to_str().unwrap()], "cannot read");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn build(text: &str) -> Result<Network, archscope::Error> {
    Network::from_yaml("m.yaml", text, &BuildOptions::default())
}

#[test]
fn layer_and_repeat_limits() {
    // `repeat` at its limit builds (a chain of MAX_REPEAT layers) …
    let ok = format!("inputs: {{x: [4]}}\nnodes:\n  - {{op: relu, repeat: {MAX_REPEAT}}}\n");
    assert_eq!(build(&ok).unwrap().nodes.len(), MAX_REPEAT as usize + 1);
    // … one more is an error at the `repeat:` value.
    let over = format!(
        "inputs: {{x: [4]}}\nnodes:\n  - {{op: relu, repeat: {}}}\n",
        MAX_REPEAT + 1
    );
    let e = build(&over).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("between 1 and {MAX_REPEAT}")),
        "{e}"
    );
    assert_eq!(
        e.diagnostic().loc.as_ref().map(|l| (l.line, l.column)),
        Some((3, 24))
    );
    // Layers after expansion: three repeats of MAX_REPEAT layers.
    let text = format!(
        "inputs: {{x: [4]}}\nblocks:\n  b:\n    nodes: [{{op: relu, repeat: {MAX_REPEAT}}}]\nnodes:\n  - {{use: b, repeat: 3}}\n"
    );
    let e = build(&text).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("more than {MAX_LAYERS} layers")),
        "{e}"
    );
    // The option lowers it.
    let opts = BuildOptions {
        max_layers: 10,
        ..Default::default()
    };
    let e = archscope::zoo::build("resnet18", &opts)
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("more than 10 layers"), "{e}");
    // Switched-off layers count: block instances that expand to nothing are not free.
    assert_rejected(
        &["summary", "tests/data/bad/repeat_switched_off_limit.yaml"],
        &format!("more than {MAX_LAYERS} layers"),
    );
}

#[test]
fn links_and_nesting_limits() {
    assert_rejected(
        &["summary", "tests/data/bad/links_limit.yaml"],
        &format!("more than {MAX_LINKS} connections"),
    );
    assert_rejected(
        &["summary", "tests/data/bad/deep_nesting.yaml"],
        &format!("nested deeper than {MAX_NESTING} levels"),
    );
    assert_rejected(
        &["summary", "tests/data/bad/blocks_nested_too_deep.yaml"],
        "blocks nested deeper than 32 levels",
    );
    assert_rejected(
        &["summary", "tests/data/bad/expr_deep_nesting.yaml"],
        "more than 64 deep",
    );
}

#[test]
fn name_rank_and_output_limits() {
    use archscope::layers::{MAX_INPUT_RANK, MAX_OUTPUTS};
    use archscope::spec::MAX_NAME_LEN;
    let id = "a".repeat(MAX_NAME_LEN);
    build(&format!(
        "inputs: {{x: [4]}}\nnodes:\n  - {{id: {id}, op: relu}}\n"
    ))
    .unwrap();
    let e = build(&format!(
        "inputs: {{x: [4]}}\nnodes:\n  - {{id: {id}b, op: relu}}\n"
    ))
    .unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("names are at most {MAX_NAME_LEN}")),
        "{e}"
    );
    let dims = |n: usize| vec!["2"; n].join(", ");
    build(&format!(
        "inputs: {{x: [{}]}}\nnodes:\n  - {{op: relu}}\n",
        dims(MAX_INPUT_RANK)
    ))
    .unwrap();
    let e = build(&format!(
        "inputs: {{x: [{}]}}\nnodes:\n  - {{op: relu}}\n",
        dims(MAX_INPUT_RANK + 1)
    ))
    .unwrap_err();
    assert!(
        e.to_string().contains(&format!("at most {MAX_INPUT_RANK}")),
        "{e}"
    );
    let split = |n: usize| format!("inputs: {{x: [{n}]}}\nnodes:\n  - {{op: split, parts: {n}}}\n");
    assert_eq!(
        build(&split(MAX_OUTPUTS)).unwrap().nodes[1]
            .out_shapes
            .len(),
        MAX_OUTPUTS
    );
    let e = build(&split(MAX_OUTPUTS + 1)).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("at most {MAX_OUTPUTS} outputs")),
        "{e}"
    );
}

#[test]
fn element_limits() {
    // Exactly 2^40 elements is accepted by the static analysis …
    assert_eq!(MAX_ELEMENTS, 1 << 40);
    let at = "inputs: {x: [1024, 1024, 1048576]}\nnodes:\n  - {op: relu}\n";
    let net = build(at).unwrap();
    archscope::analyze(&net, archscope::Dtype::F32).unwrap();
    // … one more element is not.
    assert_rejected(
        &["summary", "tests/data/bad/elements_over_2pow40.yaml"],
        "more than 2^40 elements",
    );
    // The executor allocates at most 2^32 elements per tensor: a model the analysis accepts
    // (2^32 + 2^16 elements) is refused by `check` and `run` before any allocation.
    assert_eq!(archscope::exec::MAX_TENSOR_ELEMENTS, 1 << 32);
    let dir = scratch("elements");
    let big = dir.join("big.yaml");
    std::fs::write(
        &big,
        "inputs: {x: [1, 65536, 65537]}\nnodes:\n  - {id: r, op: relu}\n",
    )
    .unwrap();
    let p = big.to_str().unwrap();
    let out = archscope(&["summary", p]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for cmd in ["check", "run"] {
        let out = archscope_limited(&[cmd, p], 1 << 20);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd}\n{err}");
        assert!(
            err.contains("more than the executor allocates (2^32"),
            "{cmd}\n{err}"
        );
        assert!(err.contains("= in layer `x`"), "{cmd}\n{err}");
    }
    // Weights over the limit: a 65537×65536 linear layer.
    std::fs::write(
        &big,
        "inputs: {x: [65536]}\nnodes:\n  - {id: fc, op: linear, out: 65537}\n",
    )
    .unwrap();
    let out = archscope_limited(&["check", p], 1 << 20);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("the weight `fc.weight`"), "{err}");
    // PReLU's slopes were built as a list before their size was checked: 2^40 channels
    // made `check` abort on a 4 TiB allocation.
    std::fs::write(
        &big,
        "inputs: {x: [1099511627776]}\nnodes:\n  - {id: p, op: prelu, per_channel: true}\n",
    )
    .unwrap();
    let out = archscope_limited(&["check", p], 1 << 20);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("the weight `p.weight`"), "{err}");
    // An im2col buffer over the limit although input, weights and output fit: a 255×255
    // kernel over a two-channel 512×512 image (one channel would take the direct depthwise
    // kernel, which needs no buffer).
    std::fs::write(
        &big,
        "inputs: {x: [2, 512, 512]}\nnodes:\n  - {id: c, op: conv, out: 1, kernel: 255}\n",
    )
    .unwrap();
    let out = archscope_limited(&["check", p], 1 << 20);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("im2col buffer"), "{err}");
    // Replicate padding, which PyTorch does not bound, with a stride as large: a 3×3 output
    // (4 + 2·100000 − 3)/100000 + 1, but a padded input of 200004² = 4·10^10 elements.
    std::fs::write(
        &big,
        "inputs: {x: [1, 4, 4]}\nnodes:\n  - {id: c, op: conv, out: 1, kernel: 3, stride: 100000, padding: 100000, padding_mode: replicate}\n",
    )
    .unwrap();
    let out = archscope_limited(&["check", p], 1 << 20);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("padded input (1×1×200004×200004)"), "{err}");
    // A depthwise convolution whose padding and dilation are both huge: a 4×4 output, but the
    // flattened padded plane of the stride-1 kernel would be 2000004² elements; the row
    // kernel runs it instead, within the memory limit.
    std::fs::write(
        &big,
        "inputs: {x: [2, 4, 4]}\nnodes:\n  - {id: c, op: conv, out: 2, groups: 2, kernel: 3, padding: 1000000, dilation: 1000000}\n",
    )
    .unwrap();
    let out = archscope_limited(&["run", p], 1 << 20);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn exit_codes() {
    let code = |args: &[&str]| archscope(args).status.code();
    // 0: success.
    for args in [
        vec!["summary", "resnet18"],
        vec!["rf", "lenet5"],
        vec!["dot", "lenet5"],
        vec!["check", "lenet5"],
        vec!["audit", "resnet18", "--max-params", "25M"],
        vec!["zoo"],
        vec!["ops"],
        vec!["--help"],
        vec!["--version"],
        vec!["summary", "--help"],
    ] {
        assert_eq!(code(&args), Some(0), "{args:?}");
    }
    // 1: a budget failed (the design findings alone do not fail).
    assert_eq!(
        code(&[
            "audit",
            "tests/data/audit/planted.yaml",
            "--max-params",
            "10M"
        ]),
        Some(1)
    );
    assert_eq!(code(&["audit", "resnet50", "--max-macs", "1G"]), Some(1));
    // 2: bad input or usage.
    for args in [
        vec!["summary", "tests/data/bad/cycle.yaml"],
        vec!["summary", "no/such/file.yaml"],
        vec!["summary", "resnet5"],
        vec!["summary", "resnet50", "--input", "3x0x224"],
        vec!["summary", "resnet50", "--batch", "0"],
        vec!["summary", "resnet50", "--format", "yaml"],
        vec!["rf", "resnet50", "--format", "csv"],
        vec!["audit", "resnet50", "--max-params", "lots"],
        vec!["run", "lenet5", "--npy", "Cargo.toml"],
        vec!["run", "lenet5", "--weights", "Cargo.toml"],
        vec!["summary"],
        vec!["frobnicate"],
    ] {
        let out = archscope(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{}", stderr(&out));
        assert!(!out.stderr.is_empty(), "{args:?}");
        assert!(!stderr(&out).contains("panicked"), "{args:?}");
    }
}

/// A reader that closes the pipe early does not make archscope panic.
#[cfg(unix)]
#[test]
fn closed_stdout_is_not_a_panic() {
    let out = Command::new("sh")
        .arg("-c")
        .arg("\"$0\" summary resnet152 | head -c 10 > /dev/null; \"$0\" dot resnet152 | head -c 10 > /dev/null")
        .arg(env!("CARGO_BIN_EXE_archscope"))
        .current_dir(root())
        .output()
        .unwrap();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

#[test]
fn weights_and_arrays_are_checked() {
    let dir = scratch("io");
    let npy = dir.join("x.npy");
    // A header announcing 2^62 values (found by fuzzing: the byte count overflowed).
    let header =
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 8, 3057304865202095901), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    std::fs::write(&npy, &bytes).unwrap();
    assert_rejected(
        &["run", "lenet5", "--npy", npy.to_str().unwrap()],
        "2^32 elements",
    );
    let st = dir.join("w.safetensors");
    std::fs::write(&st, u64::MAX.to_le_bytes()).unwrap();
    assert_rejected(
        &["run", "lenet5", "--weights", st.to_str().unwrap()],
        "not a readable safetensors file",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Expression work (issue 14): a parameter used three times by the next, thirty deep, once
/// cost 3^30 evaluations (a 1.3 KB file that never finished). Each parameter is now evaluated
/// once per scope; what is left is bounded by `expr::MAX_EXPR_WORK` in total.
#[test]
fn expression_work_is_bounded() {
    use archscope::expr::MAX_EXPR_WORK;
    // p(i) = p(i−1) + p(i−1) − p(i−1) = p(i−1), so p30 = p0 = 8 (hand derivation): the layer
    // has 8 output channels.
    let params: Vec<String> = (1..=30)
        .map(|i| format!("p{i}: \"$(p{0} + p{0} - p{0})\"", i - 1))
        .collect();
    let text = format!(
        "inputs: {{image: [3, 8, 8]}}\nblocks:\n  b:\n    params: {{p0: 8, {}}}\n    nodes:\n      - {{op: conv, out: $p30, kernel: 1}}\n{}nodes:\n  - {{use: b}}\n",
        params.join(", "),
        ""
    );
    // Every parameter must be used in its block: the chain uses each one but p30, which the
    // layer uses.
    let net = build(&text).unwrap();
    assert_eq!(net.nodes.last().unwrap().out_shapes[0].0, vec![1, 8, 8, 8]);
    // The budget: a 400 KB expression read once per layer. 100 layers read 40 MB, under the
    // budget; 200 layers 80 MB, over it, and the error names the limit and the layer.
    let big = format!("\"$(8{})\"", " + 0".repeat(100_000));
    assert_eq!(big.len(), 400_006);
    let model = |repeat: usize| {
        format!("inputs: {{image: [3, 8, 8]}}\nparams: {{big: {big}}}\nnodes:\n  - {{id: c, op: conv, out: $big, kernel: 1, repeat: {repeat}}}\n")
    };
    const { assert!(100 * 400_006 < MAX_EXPR_WORK && 200 * 400_006 > MAX_EXPR_WORK) };
    let net = build(&model(100)).unwrap();
    assert_eq!(net.nodes.last().unwrap().out_shapes[0].0, vec![1, 8, 8, 8]);
    let e = build(&model(200)).unwrap_err();
    let d = e.diagnostic();
    assert!(
        d.message
            .contains(&format!("more than {MAX_EXPR_WORK} steps to evaluate")),
        "{e}"
    );
    assert!(d.loc.is_some() && d.layer.is_some(), "{e}");
    // Lists of lists of parameters grow exponentially too: bounded by `MAX_LIST_VALUES`
    // (tests/data/bad/list_param_growth.yaml, 3^30 values asked for).
}

/// Automatic names never take a name given explicitly (issue 14: a valid file was refused
/// with "the name `relu_2` is defined twice"). Unnamed nodes 1 and 2 are both `relu`, so each
/// takes its position (`relu_1`, `relu_2`); `relu_2` is an explicit id, so node 2 takes the
/// first free of `relu_2_1`, `relu_2_2`, … (docs/FORMAT.md, "Nodes").
#[test]
fn automatic_names_skip_explicit_ids() {
    let net = build("inputs: {image: [3, 8, 8]}\nnodes:\n  - {id: c, op: conv, out: 4, kernel: 1}\n  - {op: relu}\n  - {op: relu}\n  - {id: relu_2, op: relu, in: c}\n  - {id: relu_2_1x, op: add, in: [relu_2, relu_2_1]}\n").unwrap();
    let names: Vec<&str> = net.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["image", "c", "relu_1", "relu_2_1", "relu_2", "relu_2_1x"]
    );
    // And when `relu_2_1` is taken too, the next.
    let net = build("inputs: {image: [3, 8, 8]}\nnodes:\n  - {id: relu_2_1, op: conv, out: 4, kernel: 1}\n  - {op: relu}\n  - {op: relu}\n  - {id: relu_2, op: relu, in: relu_2_1}\n").unwrap();
    let names: Vec<&str> = net.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["image", "relu_2_1", "relu_1", "relu_2_2", "relu_2"]);
}

/// CSV and Markdown outputs survive any model name (issue 14): RFC 4180 quoting in every CSV
/// (`summary` sweeps, `compare`), `|` and `\` escaped in every Markdown table and title.
#[test]
fn csv_and_markdown_escape_names() {
    let dir = scratch("escape");
    let path = dir.join("m.yaml");
    std::fs::write(
        &path,
        "name: 'a,\"b\"|c\\d'\ninputs: {image: [3, 8, 8]}\nnodes:\n  - {op: conv, out: 4, kernel: 1}\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let stdout = |args: &[&str]| {
        let o = archscope(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    // The name is `a,"b"|c\d`: quoted, quotes doubled.
    let csv = stdout(&["compare", p, "--format", "csv"]);
    assert_eq!(
        csv.lines().nth(1).unwrap().split_once(",3x8x8").unwrap().0,
        "\"a,\"\"b\"\"|c\\d\""
    );
    let csv = stdout(&["summary", p, "--batch", "1,2", "--format", "csv"]);
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("\"a,\"\"b\"\"|c\\d\",3x8x8,1,"),
        "{csv}"
    );
    // Markdown: `|` → `\|`, `\` → `\\`; every table row keeps its column count.
    let md = stdout(&["compare", p, "--format", "markdown"]);
    assert!(md.contains("| a,\"b\"\\|c\\\\d "), "{md}");
    let cols = |l: &str| l.replace("\\|", "").matches('|').count();
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
    assert!(
        rows.len() >= 3 && rows.iter().all(|l| cols(l) == cols(rows[0])),
        "{md}"
    );
    let md = stdout(&["summary", p, "--format", "markdown"]);
    assert!(md.starts_with("**a,\"b\"\\|c\\\\d: input"), "{md}");
}

/// A name or value is never echoed whole into a message (issue 14: a 3 MB op name was):
/// quoted text is cut to `error::MAX_QUOTED_CHARS` characters with its size, and every line
/// of a message to `error::MAX_MESSAGE_LINE` bytes.
#[test]
fn long_values_are_cut_in_messages() {
    let op = "x".repeat(3_000_000);
    let e = build(&format!(
        "inputs: {{image: [3, 8, 8]}}\nnodes:\n  - {{op: {op}}}\n"
    ))
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.len() < 2_000, "{} bytes", msg.len());
    assert!(
        msg.contains(&format!("unknown op `{}…(3000000 bytes)`", "x".repeat(80))),
        "{msg}"
    );
    // Through the binary too.
    let dir = scratch("longop");
    let path = dir.join("m.yaml");
    std::fs::write(
        &path,
        format!("inputs: {{image: [3, 8, 8]}}\nnodes:\n  - {{op: {op}}}\n"),
    )
    .unwrap();
    let err = assert_rejected(&["summary", path.to_str().unwrap()], "…(3000000 bytes)");
    assert!(err.len() < 2_000, "{} bytes", err.len());
}
