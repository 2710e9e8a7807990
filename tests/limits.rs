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
    // (`--rf-sample 0`: the receptive-field measurement, whose work bound would stop it
    // first, is not what this case is about.)
    let out = archscope_limited(&["check", p, "--rf-sample", "0"], 1 << 20);
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

#[test]
fn receptive_field_work_limit() {
    // `check` measures receptive fields by running every layer on indicator images (one per
    // input row and per column): the work is images × the pixels of the input and of every
    // layer's output, bounded in all by 2^32 elements, checked before anything is allocated.
    assert_eq!(archscope::exec::reach::MAX_REACH_WORK, 1 << 36);
    let dir = scratch("reach");
    // The work of one image: the pixels of the input and of each layer's output, and the FLOPs
    // of each layer's one-channel copy. 810 9×9 convolutions (padding 4) on 64×64: each
    // 4,096 pixels + 2·81·4,096 FLOPs = 667,648, so 4,096 + 810 · 667,648 = 540,798,976 per
    // image; 64 + 64 = 128 images: 69,222,268,928, over 2^36 = 68,719,476,736.
    let deep = dir.join("deep.yaml");
    std::fs::write(
        &deep,
        "inputs: {x: [1, 64, 64]}\nnodes:\n  - {id: c, op: conv, out: 1, kernel: 9, padding: 4, repeat: 810}\n",
    )
    .unwrap();
    let p = deep.to_str().unwrap();
    let err = assert_rejected(
        &["check", p],
        "would take 69222268928 operations (128 indicator images × 540798976 each",
    );
    assert!(
        err.contains("over the bound of 2^36 (`exec::reach::MAX_REACH_WORK`)"),
        "{err}"
    );
    // The largest sample that fits: 2^36 / 540,798,976 / 2 = 63 rows and 63 columns.
    assert!(err.contains("`--rf-sample 63`"), "{err}");
    // A sample of 2 rows and 2 columns (the first and the last) measures, and agrees with the
    // analysis.
    let out = archscope(&["check", p, "--rf-sample", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}\n{text}", stderr(&out));
    assert!(text.contains("811 layers, 0 disagree"), "{text}");
    assert!(
        stderr(&out).contains("compared on 811 of 811 layers"),
        "{}",
        stderr(&out)
    );
    // 0 skips the measurement, and says so; 1 is no sample.
    let out = archscope(&["check", p, "--rf-sample", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("receptive fields not measured: --rf-sample 0"),
        "{}",
        stderr(&out)
    );
    assert_rejected(&["check", p, "--rf-sample", "1"], "at least 2 rows");
    // 100,000 3×3 ones on 128×128 (a file of a hundred bytes): 16,384 + 100,000 · (16,384 +
    // 2·9·16,384) = 31,129,616,384 per image, 256 images. Even a sample of 2 rows and 2 columns is
    // over the bound, and the message says so before anything runs.
    std::fs::write(
        &deep,
        "inputs: {x: [1, 128, 128]}\nnodes:\n  - {id: c, op: conv, out: 1, kernel: 3, padding: 1, repeat: 100000}\n",
    )
    .unwrap();
    let err = assert_rejected(&["check", p], "would take 7969181794304 operations");
    assert!(
        err.contains("`--rf-sample 0` skips the measurement (even a sample of 2"),
        "{err}"
    );
    // A window's taps count: one 255×255 convolution on 512×512 (258×258 out) is 262,144 +
    // 66,564 · (1 + 2·65,025) = 8,656,976,908 per image: over the bound with all 1,024 images,
    // although its pixels alone would not be.
    std::fs::write(
        &deep,
        "inputs: {x: [1, 512, 512]}\nnodes:\n  - {id: c, op: conv, out: 1, kernel: 255}\n",
    )
    .unwrap();
    assert_rejected(&["check", p], "(1024 indicator images × 8656976908 each");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn weights_names_limits_and_mistakes() {
    // At most 1,024 rules (each layer with weights is matched against every rule).
    assert_eq!(archscope::spec::MAX_WEIGHTS_NAMES, 1024);
    let head = "inputs: {x: [3, 8, 8]}\nnodes:\n  - {id: c, op: conv, out: 4, kernel: 3}\n";
    let rules = |n: usize| -> String {
        let mut t = format!("{head}weights_names:\n  c: conv\n");
        for i in 1..n {
            t.push_str(&format!("  d{i}: e{i}\n"));
        }
        t
    };
    // 1,024 rules are read (the 1,023 that match no layer are then reported) …
    let e = build(&rules(1024)).unwrap_err().to_string();
    assert!(
        e.contains("the `weights_names:` rule for `d1` matches no layer that has weights"),
        "{e}"
    );
    // … 1,025 are not.
    let e = build(&rules(1025)).unwrap_err().to_string();
    assert!(
        e.contains("`weights_names` has 1025 rules; at most 1024"),
        "{e}"
    );
    // A pattern with more `*` than its name, a component that is no name, two layers on one
    // name: each located, with the fix.
    let e = build(&format!("{head}weights_names:\n  \"*\": conv\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`*` has 1 `*` but its tensor name `conv` has 0"),
        "{e}"
    );
    assert!(e.contains("m.yaml:5:8"), "{e}");
    let e = build(&format!("{head}weights_names:\n  c: conv-1\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`conv-1` is not a valid tensor-name prefix: component `conv-1`"),
        "{e}"
    );
    let two = "inputs: {x: [3, 8, 8]}\nnodes:\n  - {id: a, op: conv, out: 4, kernel: 3}\n  - {id: b, op: conv, out: 4, kernel: 3}\nweights_names:\n  a: b\n";
    let e = build(two).unwrap_err().to_string();
    assert!(
        e.contains("layers `a` and `b` would both read their tensors as `b.…`"),
        "{e}"
    );
}
