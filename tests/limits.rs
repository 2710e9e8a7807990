//! The documented limits (docs/FORMAT.md, "Limits") and exit codes (0 success, 1 a check or
//! budget failed, 2 bad input or usage), through the built binary as a user meets them: every
//! file of the bad-input corpus exits 2 with a located message under a 1 GiB address-space
//! limit and a 20 s CPU-time limit (a hang guard that kills, not a timing); each limit has a
//! case just over it.

use std::process::{Command, Output};

use crate::common::{
    archscope, assert_rejected, bad_corpus, f32_bytes, npy_with_header, ok_text, output, refused,
    root, safetensors_bytes as safetensors, scratch, stderr,
};
use archscope::graph::{MAX_ELEMENTS, MAX_LAYERS, MAX_LINKS, MAX_REPEAT};
use archscope::yaml::{MAX_NESTING, MAX_SOURCE_BYTES};
use archscope::{BuildOptions, Network};

/// Runs the binary with its address space limited to `kib` KiB (Linux and other Unixes, via
/// the shell's `ulimit -v`).
#[cfg(unix)]
fn archscope_limited(args: &[&str], kib: u64) -> Output {
    output(
        Command::new("sh")
            .arg("-c")
            // Address space capped at `kib` and CPU time at 20 s: a runaway allocation or a
            // hang is killed and fails the test on its exit status (no wall-clock assertion,
            // which a loaded machine would break).
            .arg(format!(
                "ulimit -v {kib} && ulimit -t 20 && exec \"$0\" \"$@\""
            ))
            .arg(env!("CARGO_BIN_EXE_archscope"))
            .args(args)
            .current_dir(root()),
    )
}

#[cfg(not(unix))]
fn archscope_limited(args: &[&str], _kib: u64) -> Output {
    archscope(args)
}

/// Expects `archscope ARGS`, run under 1 GiB of address space and 20 s of CPU time, to be
/// refused with a message containing `needle` (see `common::refused`).
fn assert_rejected_limited(args: &[&str], needle: &str) -> String {
    refused(&args, &archscope_limited(args, 1 << 20), needle)
}

/// Every corpus file: exit 2, an `error:` message with `file:line:column` or a layer, a
/// `help:`, no panic; within 1 GiB of address space and 20 s of CPU time (`archscope_limited`
/// kills it past either, and the exit status then fails the test).
#[test]
fn corpus_exits_2_and_bounded() {
    for path in bad_corpus() {
        let rel = path
            .strip_prefix(root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let out = archscope_limited(&["summary", &rel], 1 << 20);
        let err = refused(&rel, &out, "");
        assert!(
            err.contains(&format!("--> {rel}:")) || err.contains("= in layer `"),
            "{rel}: no location\n{err}"
        );
        assert!(err.contains("help: "), "{rel}: no help\n{err}");
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
    let out = archscope_limited(&["summary", big.to_str().unwrap()], 1 << 20);
    let err = refused(
        &"ten_megabytes.yaml",
        &out,
        &format!("at most {MAX_SOURCE_BYTES} bytes"),
    );
    assert!(err.contains("ten_megabytes.yaml:1:1"), "{err}");
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
    ok_text(&["summary", p]);
    for cmd in ["check", "run"] {
        let err = assert_rejected_limited(&[cmd, p], "more than the executor allocates (2^32");
        assert!(err.contains("= in layer `x`"), "{cmd}\n{err}");
    }
    // Weights over the limit: a 65537×65536 linear layer.
    std::fs::write(
        &big,
        "inputs: {x: [65536]}\nnodes:\n  - {id: fc, op: linear, out: 65537}\n",
    )
    .unwrap();
    assert_rejected_limited(&["check", p], "the weight `fc.weight`");
    // PReLU's slopes were built as a list before their size was checked: 2^40 channels
    // made `check` abort on a 4 TiB allocation.
    std::fs::write(
        &big,
        "inputs: {x: [1099511627776]}\nnodes:\n  - {id: p, op: prelu, per_channel: true}\n",
    )
    .unwrap();
    assert_rejected_limited(&["check", p], "the weight `p.weight`");
    // An im2col buffer over the limit although input, weights and output fit: a 255×255
    // kernel over a two-channel 512×512 image (one channel would take the direct depthwise
    // kernel, which needs no buffer).
    std::fs::write(
        &big,
        "inputs: {x: [2, 512, 512]}\nnodes:\n  - {id: c, op: conv, out: 1, kernel: 255}\n",
    )
    .unwrap();
    // Its 2·255² taps × 258² positions, 8.6·10^9 elements, are first over the memory budget
    // (32.25 GiB at `c`, its scratch 32.25 GiB); with the budget raised, over the per-tensor
    // limit, before anything that size is allocated.
    let err = assert_rejected_limited(&["check", p], "needs 32.25 GiB at once at layer `c`");
    assert!(err.contains("scratch 32.25 GiB"), "{err}");
    assert_rejected_limited(&["run", p, "--memory-budget", "1TiB"], "im2col buffer");
    // Replicate padding, which PyTorch does not bound, with a stride as large: a 3×3 output
    // (4 + 2·100000 − 3)/100000 + 1, but a padded input of 200004² = 4·10^10 elements.
    std::fs::write(
        &big,
        "inputs: {x: [1, 4, 4]}\nnodes:\n  - {id: c, op: conv, out: 1, kernel: 3, stride: 100000, padding: 100000, padding_mode: replicate}\n",
    )
    .unwrap();
    // Declared as the convolution's workspace, it is over the memory budget first (4·10^10
    // elements, 149.02 GiB); with the budget raised, over the per-tensor limit.
    assert_rejected_limited(&["check", p], "scratch 149.02 GiB");
    assert_rejected_limited(
        &["run", p, "--memory-budget", "1TiB"],
        "padded input (1×1×200004×200004)",
    );
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
    let failed = |args: &[&str], needle: &str| {
        let out = archscope(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}\n{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(needle), "{args:?}: no `{needle}` in\n{text}");
    };
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
    failed(
        &[
            "audit",
            "tests/data/audit/planted.yaml",
            "--max-params",
            "10M",
        ],
        "FAIL max_params: 12.36 M (12362932) > 10.00 M",
    );
    failed(
        &["audit", "resnet50", "--max-macs", "1G"],
        "FAIL max_macs: 4.09 G (4089184256) > 1.00 G",
    );
    // 2: bad input or usage, each with what is wrong.
    for (args, needle) in [
        (
            vec!["summary", "tests/data/bad/cycle.yaml"],
            "the layers a → b → c form a cycle",
        ),
        (
            vec!["summary", "no/such/file.yaml"],
            "no file or zoo model named `no/such/file.yaml`",
        ),
        (
            vec!["summary", "resnet5"],
            "did you mean the zoo model `resnet50`",
        ),
        (
            vec!["summary", "resnet50", "--input", "3x0x224"],
            "--input 3x0x224: expected positive integers",
        ),
        (
            vec!["summary", "resnet50", "--batch", "0"],
            "--batch 0: expected positive integers",
        ),
        (
            vec!["summary", "resnet50", "--format", "yaml"],
            "invalid value 'yaml' for '--format <FORMAT>'",
        ),
        (
            vec!["check", "resnet50", "--format", "csv"],
            "invalid value 'csv' for '--format <FORMAT>'",
        ),
        (
            vec!["run", "resnet50", "--format", "csv"],
            "invalid value 'csv' for '--format <FORMAT>'",
        ),
        (
            vec!["summary", "resnet50", "--depth", "0"],
            "the depth is at least 1",
        ),
        (
            vec!["dot", "lenet5", "-o", "/tmp/archscope-limits-unknown.foo"],
            "from its extension `.foo`",
        ),
        (
            vec!["audit", "resnet50", "--max-params", "lots"],
            "--max-params `lots`: unknown unit `lots`",
        ),
        (
            vec!["run", "lenet5", "--npy", "Cargo.toml"],
            "Cargo.toml is not a readable .npy array",
        ),
        (
            vec!["run", "lenet5", "--weights", "Cargo.toml"],
            "Cargo.toml is not a valid safetensors file",
        ),
        (
            vec!["summary"],
            "the following required arguments were not provided",
        ),
        (vec!["frobnicate"], "unrecognized subcommand 'frobnicate'"),
    ] {
        assert_rejected(&args, needle);
    }
}

/// A reader that closes the pipe early does not make archscope panic.
#[cfg(unix)]
#[test]
fn closed_stdout_is_not_a_panic() {
    let out = output(
        Command::new("sh")
            .arg("-c")
            .arg("\"$0\" summary resnet152 | head -c 10 > /dev/null; \"$0\" dot resnet152 | head -c 10 > /dev/null")
            .arg(env!("CARGO_BIN_EXE_archscope"))
            .current_dir(root()),
    );
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
    std::fs::write(&npy, npy_with_header(header, &[])).unwrap();
    assert_rejected(
        &["run", "lenet5", "--npy", npy.to_str().unwrap()],
        "2^32 elements",
    );
    let st = dir.join("w.safetensors");
    std::fs::write(&st, u64::MAX.to_le_bytes()).unwrap();
    assert_rejected(
        &["run", "lenet5", "--weights", st.to_str().unwrap()],
        "is not a valid safetensors file: the header length at byte 0 says 18446744073709551615 bytes",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn report_layer_limit() {
    use archscope::html::{MAX_DIAGRAM_LAYERS, MAX_REPORT_LAYERS};
    let dir = scratch("report");
    // A chain of relus: the input and MAX_REPORT_LAYERS of them is one layer too many …
    let over = dir.join("over.yaml");
    std::fs::write(
        &over,
        format!("inputs: {{x: [4]}}\nnodes:\n  - {{op: relu, repeat: {MAX_REPORT_LAYERS}}}\n"),
    )
    .unwrap();
    let page = dir.join("over.html");
    let err = assert_rejected(
        &[
            "report",
            over.to_str().unwrap(),
            "-o",
            page.to_str().unwrap(),
        ],
        &format!("a report page holds at most {MAX_REPORT_LAYERS}"),
    );
    assert!(
        err.contains(&format!("would hold {} layers", MAX_REPORT_LAYERS + 1)),
        "{err}"
    );
    assert!(!page.exists(), "nothing written");
    // … one fewer relu is a page (no diagram: over the diagram limit).
    let at = dir.join("at.yaml");
    std::fs::write(
        &at,
        format!(
            "inputs: {{x: [4]}}\nnodes:\n  - {{op: relu, repeat: {}}}\n",
            MAX_REPORT_LAYERS - 1
        ),
    )
    .unwrap();
    ok_text(&["report", at.to_str().unwrap(), "-o", page.to_str().unwrap()]);
    let text = std::fs::read_to_string(&page).unwrap();
    assert!(text.contains(&format!(
        "the report draws diagrams of at most {MAX_DIAGRAM_LAYERS}"
    )));
}

/// Binary inputs are read with a size cap derived from what the model needs (a `.npy`: its
/// header and every input element in float64; a `.safetensors`: its header and every weight in
/// f64; an image: 64 MiB), so that /dev/zero or an endless pipe costs no more than the cap
/// (issue 14: each was read until memory ran out). Under 1 GiB of address space.
#[cfg(unix)]
#[test]
fn binary_inputs_are_read_with_a_cap() {
    // lenet5's input is 1×1×32×32: 12 + 65,536 + 8·1024 = 73,740 bytes at most.
    assert_eq!(archscope::exec::io::npy_byte_limit(&[1, 1, 32, 32]), 73_740);
    for (flag, needle) in [
        ("--npy", "/dev/zero is larger than 73740 bytes, the most a .npy array for this model's input can hold"),
        ("--weights", "/dev/zero is larger than"),
        ("--image", "/dev/zero is larger than 67108864 bytes, the most an image file may have (64 MiB)"),
    ] {
        let err = assert_rejected_limited(&["run", "lenet5", flag, "/dev/zero"], needle);
        assert!(err.contains("help: "), "{err}");
    }
    // The weights' cap: the header allowance (1 MiB + 1 KiB per layer and tensor) and lenet5's
    // 61,706 parameters in f64 and 8 bytes per layer.
    assert_rejected(
        &["run", "lenet5", "--weights", "/dev/zero"],
        "a .safetensors file of this model's weights can hold",
    );
    // An endless pipe.
    let out = output(
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 1048576; yes | \"$0\" run lenet5 --npy /dev/stdin")
            .arg(env!("CARGO_BIN_EXE_archscope"))
            .current_dir(root()),
    );
    refused(
        &"yes | run --npy /dev/stdin",
        &out,
        "/dev/stdin is larger than 73740 bytes",
    );
}

/// `run --repeat` is 1 to 1000; sweeps list at most 64 settings (sizes × batches), counted
/// before anything is parsed or built; a batch or size beyond 2^40 is said as given, never
/// saturated (issue 14: `--repeat 18446744073709551615` panicked, `--repeat 100000000` ran for
/// ever, 20,000 batches grew to gigabytes, `--batch 18446744073709551615` was echoed as
/// 9223372036854775807).
#[test]
fn repeat_and_sweep_caps() {
    for (v, needle) in [
        (
            "18446744073709551615",
            "18446744073709551615 is not in 1..=1000",
        ),
        ("100000000", "100000000 is not in 1..=1000"),
        ("1001", "1001 is not in 1..=1000"),
        ("0", "0 is not in 1..=1000"),
        ("18446744073709551616", "--repeat"),
    ] {
        assert_rejected(&["run", "lenet5", "--repeat", v], needle);
    }
    let text = ok_text(&["run", "mlp3", "--repeat", "1000"]);
    assert!(text.contains("over 1000 run(s)"), "{text}");
    let many: Vec<String> = (1..=20_000).map(|b| b.to_string()).collect();
    assert_rejected(
        &["summary", "lenet5", "--batch", &many.join(",")],
        "--input and --batch give 1 × 20000 = 20000 settings; a sweep has at most 64",
    );
    let sizes: Vec<String> = (32..1032).map(|s| s.to_string()).collect();
    assert_rejected(
        &[
            "compare",
            "lenet5",
            "--input",
            &sizes.join(","),
            "--batch",
            &many[..1000].join(","),
        ],
        "1000 × 1000 = 1000000 settings; a sweep has at most 64",
    );
    // 8 × 8 = 64 is the most.
    ok_text(&["summary", "mlp3", "--batch", "1,2,3,4,5,6,7,8"]);
    assert_rejected(
        &["summary", "lenet5", "--batch", "18446744073709551615"],
        "the batch is 18446744073709551615, more than a tensor may hold (2^40",
    );
    let err = assert_rejected(
        &["summary", "lenet5", "--input", "1099511627777"],
        "an --input size is 1099511627777",
    );
    assert!(!err.contains("9223372036854775807"), "{err}");
}

/// The executor's total memory is computed from the network before anything is allocated,
/// against a budget (3 GiB; `run --memory-budget`, 1 MiB to 1 TiB): a model of four tensors
/// each just under the 2^32-element limit is an error naming the layer, never an allocation
/// abort (issue 14: SIGABRT).
#[test]
fn memory_budget() {
    assert_eq!(archscope::exec::MEMORY_BUDGET, 3 << 30);
    // By hand, x: [4] → fc (linear, out 2) → r (relu) at batch 1, in f32 bytes: weights
    // 2·4 + 2 = 10 values, 40 bytes. The caller's input copy (16) is alive throughout. At x:
    // + x's output 16 → 32. At fc: + its output 8 → 40, + scratch of its largest input 16 →
    // 56 (the peak); x dies there → 24. At r: + 8 → 32, + scratch 8 → 40. Total 40 + 56 = 96.
    let net = build(
        "inputs: {x: [4]}
nodes:
  - {id: fc, op: linear, out: 2}
  - {id: r, op: relu}
",
    )
    .unwrap();
    let need = archscope::exec::check_memory(&net, 96, 0).unwrap();
    assert_eq!(
        (need.weights, need.activations, need.peak_layer),
        (40, 56, 1)
    );
    assert_eq!(need.total(), 96);
    let e = archscope::exec::check_memory(&net, 95, 0).unwrap_err();
    assert!(
        e.message.contains("needs 96 B at once at layer `fc`"),
        "{e}"
    );
    // Weights alone over the budget: named at the layer whose weights cross it.
    let e = archscope::exec::check_memory(&net, 39, 0).unwrap_err();
    assert!(
        e.message
            .contains("needs 40 B at once at layer `fc` (weights read so far"),
        "{e}"
    );
    // Extra weights (the plan's copies) count with them: 96 + 1 is over 96.
    let e = archscope::exec::check_memory(&net, 96, 1).unwrap_err();
    assert!(
        e.message.contains("needs 97 B at once at layer `fc`"),
        "{e}"
    );
    let dir = scratch("budget");
    let p = dir.join("four.yaml");
    // x is 65535² = 4,294,836,225 elements (16 GiB of f32), under the per-tensor limit; a, b, c
    // and d are as large. At x itself: the caller's copy of the input and x's output, 32 GiB.
    std::fs::write(
        &p,
        "inputs: {x: [65535, 65535]}\nnodes:\n  - {id: a, op: relu}\n  - {id: b, op: sigmoid, in: x}\n  - {id: c, op: tanh, in: x}\n  - {id: d, op: add, in: [a, b, c]}\n",
    )
    .unwrap();
    let p = p.to_str().unwrap();
    for cmd in ["run", "check"] {
        let err = assert_rejected_limited(
            &[cmd, p],
            "running the model needs 32.00 GiB at once at layer `x`",
        );
        assert!(
            err.contains("more than the executor's memory budget of 3.00 GiB"),
            "{err}"
        );
        assert!(err.contains("= in layer `x`"), "{err}");
    }
    // A budget that lets the input through names the next layer over it: with 40 GiB, at `a`
    // the input (twice) and a's output are alive, plus a scratch allowance of a's input: 64 GiB.
    let err = assert_rejected(
        &["run", p, "--memory-budget", "40GiB"],
        "needs 64.00 GiB at once at layer `a`",
    );
    assert!(err.contains("budget of 40.00 GiB"), "{err}");
    // Weights alone: a 40000×40000 linear layer is 6.4 GB of f32.
    let q = dir.join("fc.yaml");
    std::fs::write(
        &q,
        "inputs: {x: [40000]}\nnodes:\n  - {id: fc, op: linear, out: 40000}\n",
    )
    .unwrap();
    let err = assert_rejected(
        &["run", q.to_str().unwrap()],
        "at layer `fc` (weights read so far",
    );
    assert!(err.contains("weights 5.96 GiB"), "{err}");
    assert_rejected(
        &["run", "lenet5", "--memory-budget", "2TiB"],
        "give 1MiB to 1TiB",
    );
    assert_rejected(
        &["run", "lenet5", "--memory-budget", "1KiB"],
        "give 1MiB to 1TiB",
    );
    assert_rejected(
        &["run", "lenet5", "--memory-budget", "lots"],
        "--memory-budget",
    );
    // lenet5 in 1 MiB: its 61,706 parameters are 241 KiB; its activations fit too.
    ok_text(&["run", "lenet5", "--memory-budget", "1MiB"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `outputs: []` is refused where the file is read (issue 14: `summary` and `check` accepted
/// it and `run` panicked).
#[test]
fn empty_outputs_are_refused() {
    for cmd in ["summary", "check", "run"] {
        let err = assert_rejected(
            &[cmd, "tests/data/bad/outputs_empty.yaml"],
            "`outputs` is an empty list: a model needs at least one output",
        );
        assert!(err.contains("outputs_empty.yaml:5:"), "{err}");
    }
}

/// Every fault of a safetensors file is said in words with the byte offset or the tensor name
/// and what to do (issue 14: the reader's enum names `HeaderTooSmall`, `TensorInvalidInfo`,
/// `MetadataIncompleteBuffer` …; and a tensor named twice was accepted, the last winning).
#[test]
fn safetensors_errors_in_words() {
    let dir = scratch("safetensors");
    let model = dir.join("fc.yaml");
    std::fs::write(
        &model,
        "inputs: {x: [2]}\nnodes:\n  - {id: fc, op: linear, out: 1}\n",
    )
    .unwrap();
    let model = model.to_str().unwrap();
    let good_header = r#"{"fc.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},"fc.bias":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#;
    let data = f32_bytes(&[1.0, 2.0, 0.5]);
    // Byte offsets below: `good_header` is 124 bytes, so the data starts at byte 8 + 124 = 132
    // and its 12 bytes end at 144; the gap case's header is one byte longer ("12,16" for
    // "8,12"): fc.bias's data offset 12 is byte 133 + 12 = 145, fc.weight's end 133 + 8 = 141.
    assert_eq!(good_header.len(), 124);
    let file = dir.join("w.safetensors");
    let w = file.to_str().unwrap();
    // The well-formed file runs: fc(x) = 1·3 + 2·4 + 0.5 = 11.5, by hand.
    std::fs::write(&file, safetensors(good_header.as_bytes(), &data)).unwrap();
    let npy = dir.join("x.npy");
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
    std::fs::write(&npy, npy_with_header(header, &f32_bytes(&[3.0, 4.0]))).unwrap();
    let text = ok_text(&["run", model, "--weights", w, "--npy", npy.to_str().unwrap()]);
    assert!(text.contains("min 11.5000, max 11.5000"), "{text}");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![1, 2, 3], "it is 3 bytes; the file starts with an 8-byte header length"),
        (
            [&1000u64.to_le_bytes()[..], b"{}{}"].concat(),
            "the header length at byte 0 says 1000 bytes, but only 4 follow (the file is truncated)",
        ),
        (
            u64::MAX.to_le_bytes().to_vec(),
            "the header length at byte 0 says 18446744073709551615 bytes, more than the 100000000 a header may have",
        ),
        (safetensors(b"{\"a\xff\":1}", &[]), "is not UTF-8 text at byte 11"),
        (safetensors(b"{\"fc.weight\": ", &[]), "does not parse at byte"),
        (
            safetensors(
                r#"{"fc.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},"fc.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[8,16]}}"#.as_bytes(),
                &f32_bytes(&[1.0, 2.0, 3.0, 4.0]),
            ),
            "its header names the tensor `fc.weight` twice",
        ),
        (
            safetensors(
                r#"{"fc.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[0,4]}}"#.as_bytes(),
                &f32_bytes(&[1.0]),
            ),
            "tensor `fc.weight`: F32 of shape [1, 2] is 8 bytes, but its data_offsets [0, 4] span 4 bytes",
        ),
        (
            safetensors(
                r#"{"fc.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},"fc.bias":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}"#.as_bytes(),
                &f32_bytes(&[1.0, 2.0, 0.0, 0.5]),
            ),
            "tensor `fc.bias` starts at byte 145 of the file (data offset 12), but the data before it ends at byte 141 (a gap)",
        ),
        (
            safetensors(good_header.as_bytes(), &[data.clone(), vec![0; 4]].concat()),
            "the tensors' data ends at byte 144, but the file is 148 bytes (trailing bytes after the last tensor)",
        ),
        (
            safetensors(good_header.as_bytes(), &data[..8]),
            "the tensors' data ends at byte 144, but the file is 140 bytes (truncated)",
        ),
        (
            safetensors(
                r#"{"fc.weight":{"dtype":"Q4","shape":[1,2],"data_offsets":[0,8]}}"#.as_bytes(),
                &data[..8],
            ),
            "tensor `fc.weight`: the dtype `Q4` is not one of safetensors'",
        ),
        (
            safetensors(r#"{"fc.weight":{"dtype":"F32","shape":[1,2]}}"#.as_bytes(), &[]),
            "tensor `fc.weight`: `data_offsets` is not a pair [begin, end] of byte offsets",
        ),
        (safetensors(b"[1, 2]", &[]), "does not parse at byte"),
    ];
    for (bytes, needle) in cases {
        std::fs::write(&file, &bytes).unwrap();
        let err = assert_rejected(&["run", model, "--weights", w], needle);
        assert!(
            err.contains(&format!("{w} is not a valid safetensors file: ")),
            "{err}"
        );
        assert!(
            err.contains("help: write it with safetensors' save_file"),
            "{err}"
        );
        for name in [
            "HeaderTooSmall",
            "TensorInvalidInfo",
            "MetadataIncompleteBuffer",
            "InvalidHeader",
        ] {
            assert!(!err.contains(name), "{err}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// CRC-32 (IEEE) of PNG chunks, bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A PNG signature and IHDR chunk (8-bit RGB) announcing `w`×`h` pixels, with correct CRCs,
/// and no image data.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend_from_slice(&13u32.to_be_bytes());
    b.extend_from_slice(&ihdr);
    b.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    // An empty IDAT (the decoder reads up to the first) and IEND.
    for chunk in [&b"IDAT"[..], &b"IEND"[..]] {
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(chunk);
        b.extend_from_slice(&crc32(chunk).to_be_bytes());
    }
    b
}

/// Image errors in words, with sizes (issue 14: a decoder's Debug structure, or `Memory limit
/// exceeded` with no sizes). An image over 16384 pixels a side or 2^26 pixels is refused from
/// its header, before any pixel is decoded.
#[test]
fn image_errors_in_words() {
    let dir = scratch("image");
    let file = dir.join("x.png");
    let f = file.to_str().unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"just text".to_vec(), "its first bytes are neither a PNG nor a JPEG signature"),
        (
            png_header(100_000, 100_000),
            "is 100000×100000 pixels; archscope reads images of at most 16384 pixels a side and 67108864 pixels (64 Mpx) in all",
        ),
        (png_header(16384, 16384), "is 16384×16384 pixels"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(), "it is Gif; archscope reads PNG and JPEG"),
        (png_header(8, 8), "cannot read the image"),
        (b"\x89PNG\r\n\x1a\n\x00\x00".to_vec(), "cannot read the image"),
    ];
    for (bytes, needle) in cases {
        std::fs::write(&file, &bytes).unwrap();
        let err = assert_rejected_limited(&["run", "lenet5", "--image", f], needle);
        assert!(err.contains(f), "{err}");
        assert!(err.contains("help: "), "{err}");
        // No decoder structure dumps.
        assert!(
            !err.contains(" { ") && !err.contains("Memory limit exceeded"),
            "{err}"
        );
    }
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
    let e = build(&format!("{head}weights_names:\n  c: conv/1\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`conv/1` is not a valid tensor-name prefix: component `conv/1`"),
        "{e}"
    );
    // A layer path has no `-` (a tensor name may: RegNet's `block1-0`).
    let e = build(&format!("{head}weights_names:\n  c-1: conv\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`c-1` is not a valid layer-path pattern: component `c-1`"),
        "{e}"
    );
    let two = "inputs: {x: [3, 8, 8]}\nnodes:\n  - {id: a, op: conv, out: 4, kernel: 3}\n  - {id: b, op: conv, out: 4, kernel: 3}\nweights_names:\n  a: b\n";
    let e = build(two).unwrap_err().to_string();
    assert!(
        e.contains("layers `a` and `b` would both read their tensors as `b.…`"),
        "{e}"
    );
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
    // The name is `a,"b"|c\d`: quoted, quotes doubled.
    let csv = ok_text(&["compare", p, "--format", "csv"]);
    assert_eq!(
        csv.lines().nth(1).unwrap().split_once(",3x8x8").unwrap().0,
        "\"a,\"\"b\"\"|c\\d\""
    );
    let csv = ok_text(&["summary", p, "--batch", "1,2", "--format", "csv"]);
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("\"a,\"\"b\"\"|c\\d\",3x8x8,1,"),
        "{csv}"
    );
    // Markdown: `|` → `\|`, `\` → `\\`; every table row keeps its column count.
    let md = ok_text(&["compare", p, "--format", "markdown"]);
    assert!(md.contains("| a,\"b\"\\|c\\\\d "), "{md}");
    let cols = |l: &str| l.replace("\\|", "").matches('|').count();
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
    assert!(
        rows.len() >= 3 && rows.iter().all(|l| cols(l) == cols(rows[0])),
        "{md}"
    );
    let md = ok_text(&["summary", p, "--format", "markdown"]);
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

#[test]
fn token_and_learned_tensor_limits() {
    use archscope::layers::{MAX_INPUT_RANK, MAX_PARAMETER_ELEMENTS, MAX_TOKENS};
    let model = |inputs: &str, node: &str| {
        format!("format: \"archscope/1\"\nname: m\ninputs: {inputs}\nnodes:\n  - {node}\n")
    };
    // Tokens per sample: 2^20 builds, one more is refused with the limit.
    let at = |n: u64| {
        model(
            &format!("{{ids: {{tokens: {n}, vocab: 10}}}}"),
            "{op: embedding, num: 10, dim: 1}",
        )
    };
    assert!(build(&at(MAX_TOKENS)).is_ok());
    let e = build(&at(MAX_TOKENS + 1)).unwrap_err().to_string();
    assert!(
        e.contains(
            "a token input of 1048577 tokens per sample; archscope takes at most 1048576 (2^20)"
        ),
        "{e}"
    );
    // A learned tensor of 2^32 elements builds; one more row is refused (parameter and
    // embedding table alike).
    let param = |rows: u64| {
        model(
            "{x: [4]}",
            &format!("{{op: parameter, shape: [{rows}, 65536]}}"),
        )
    };
    assert_eq!(MAX_PARAMETER_ELEMENTS, 65536 * 65536);
    assert!(build(&param(65536)).is_ok());
    let e = build(&param(65537)).unwrap_err().to_string();
    assert!(
        e.contains("a learned tensor of 65537×65536 = 4295032832 elements; archscope's largest is 2^32 = 4294967296"),
        "{e}"
    );
    let e = build(&model(
        "{ids: {tokens: 4, vocab: 10}}",
        "{op: embedding, num: 65537, dim: 65536}",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("a learned tensor of 65537×65536"), "{e}");
    // Rank: an unsqueeze past 9 dimensions (batch included) is refused.
    let dims = ["1"; MAX_INPUT_RANK].join(", ");
    let e = build(&model(
        &format!("{{x: [{dims}]}}"),
        "{op: unsqueeze, dim: 1}",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("at most 9 dimensions"), "{e}");
}

/// ONNX files (docs/FORMAT.md, "Limits", the ONNX rows): each limit just over, from the binary,
/// under 1 GiB of address space.
#[test]
fn onnx_limits() {
    use archscope::onnx::{proto, MAX_NODES, MAX_ONNX_BYTES};
    use proto::tensor_shape_proto::{dimension::Value as Dim, Dimension};
    let value = |name: &str, dims: &[i64]| proto::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(proto::TypeProto {
            value: Some(proto::type_proto::Value::TensorType(
                proto::type_proto::Tensor {
                    elem_type: Some(proto::dtype::FLOAT),
                    shape: Some(proto::TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|&d| Dimension {
                                value: Some(Dim::DimValue(d)),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                },
            )),
            ..Default::default()
        }),
        ..Default::default()
    };
    let node = |op: &str, i: &[&str], o: &str| proto::NodeProto {
        op_type: Some(op.into()),
        name: Some(o.into()),
        input: i.iter().map(|s| s.to_string()).collect(),
        output: vec![o.into()],
        ..Default::default()
    };
    // x: 1×3×8×8 → Relu → y.
    let model = |nodes: Vec<proto::NodeProto>, inits: Vec<proto::TensorProto>, x: &[i64]| {
        proto::ModelProto {
            ir_version: Some(proto::IR_VERSION),
            opset_import: vec![proto::OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(17),
            }],
            graph: Some(proto::GraphProto {
                node: nodes,
                initializer: inits,
                input: vec![value("x", x)],
                output: vec![value("y", &[])],
                ..Default::default()
            }),
            ..Default::default()
        }
    };
    let dir = scratch("onnx-limits");
    let refused_file = |name: &str, m: &proto::ModelProto, needle: &str| {
        let f = dir.join(name);
        std::fs::write(&f, proto::encode_model(m)).expect("write");
        let msg = assert_rejected_limited(&["summary", f.to_str().expect("utf-8")], needle);
        let _ = std::fs::remove_file(&f);
        msg
    };
    let relu = || vec![node("Relu", &["x"], "y")];
    // The base model reads.
    let f = dir.join("ok.onnx");
    std::fs::write(
        &f,
        proto::encode_model(&model(relu(), vec![], &[1, 3, 8, 8])),
    )
    .expect("write");
    ok_text(&["summary", f.to_str().expect("utf-8")]);

    // File size: 2 GiB (a sparse file one byte over: refused from its size, nothing read).
    let big = dir.join("big.onnx");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(MAX_ONNX_BYTES + 1))
        .expect("a sparse file");
    assert_eq!(MAX_ONNX_BYTES, 2 << 30);
    assert_rejected_limited(
        &["summary", big.to_str().expect("utf-8")],
        "is larger than 2147483648 bytes, the most archscope reads from an ONNX file",
    );
    let _ = std::fs::remove_file(&big);

    // Nodes: 200,000 (the YAML side's layer limit), one over.
    assert_eq!(MAX_NODES, MAX_LAYERS);
    let mut nodes = relu();
    nodes.extend((0..MAX_NODES).map(|k| node("Identity", &["y"], &format!("i{k}"))));
    refused_file(
        "nodes.onnx",
        &model(nodes, vec![], &[1, 3, 8, 8]),
        &format!(
            "the graph has {} nodes; archscope reads at most {MAX_NODES}",
            MAX_NODES + 1
        ),
    );

    // An initializer of more than 2^40 elements (declared; no data needed to refuse it).
    let huge = proto::TensorProto {
        name: Some("w".into()),
        dims: vec![1 << 20, (1 << 20) + 1],
        data_type: Some(proto::dtype::FLOAT),
        ..Default::default()
    };
    refused_file(
        "init.onnx",
        &model(relu(), vec![huge], &[1, 3, 8, 8]),
        &format!(
            "initializer `w` has {} elements; at most {MAX_ELEMENTS}",
            (1u64 << 40) + (1 << 20)
        ),
    );

    // A graph input of more than 2^40 elements.
    refused_file(
        "input.onnx",
        &model(relu(), vec![], &[1, 1 << 20, (1 << 20) + 1]),
        "graph input `x` has shape [1, 1048576, 1048577]: more than 2^40 elements",
    );

    // A folded constant of more than 2^20 elements.
    let shape = proto::tensor_i64("s", &[1], &[(1 << 20) + 1]);
    let mut nodes = vec![node("ConstantOfShape", &["s"], "c")];
    nodes.extend(relu());
    refused_file(
        "fold.onnx",
        &model(nodes, vec![shape], &[1, 3, 8, 8]),
        &format!(
            "a constant of {} elements; archscope folds constants of at most {}",
            (1 << 20) + 1,
            archscope::onnx::reader::MAX_FOLDED_ELEMENTS
        ),
    );

    // A pool's kernel, stride or pad over 2^40.
    let mut pool = node("MaxPool", &["x"], "y");
    pool.attribute = vec![
        proto::AttributeProto {
            name: Some("kernel_shape".into()),
            ints: vec![2, 2],
            ..Default::default()
        },
        proto::AttributeProto {
            name: Some("strides".into()),
            ints: vec![1, (1 << 40) + 1],
            ..Default::default()
        },
    ];
    refused_file(
        "stride.onnx",
        &model(vec![pool], vec![], &[1, 3, 8, 8]),
        &format!(
            "a kernel size, stride, dilation or pad of {}; archscope takes at most 2^40",
            (1u64 << 40) + 1
        ),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn repeat_from_limits() {
    // A first index `from` at its limit builds; one more is an error at the value (column 48
    // of `  - {id: a, op: relu, repeat: {count: 1, from: 100001}}`).
    let ok = format!("inputs: {{x: [4]}}\nnodes:\n  - {{id: a, op: relu, repeat: {{count: 1, from: {MAX_REPEAT}}}}}\n");
    assert_eq!(build(&ok).unwrap().nodes[1].name, format!("a.{MAX_REPEAT}"));
    let over = format!(
        "inputs: {{x: [4]}}\nnodes:\n  - {{id: a, op: relu, repeat: {{count: 1, from: {}}}}}\n",
        MAX_REPEAT + 1
    );
    let e = build(&over).unwrap_err();
    assert!(
        e.to_string().contains(&format!(
            "`repeat: {{from: {}}}` must be between 0 and {MAX_REPEAT}",
            MAX_REPEAT + 1
        )),
        "{e}"
    );
    assert_eq!(
        e.diagnostic().loc.as_ref().map(|l| (l.line, l.column)),
        Some((3, 48))
    );
}

#[test]
fn scalar_constant_limit() {
    use archscope::layers::MAX_CONSTANT_ELEMENTS;
    // A `scalar`'s constant of 2^20 elements builds; one more row is refused from `shape`,
    // before `value` fills it.
    let model = |rows: u64| {
        format!(
            "format: \"archscope/1\"\nname: m\ninputs: {{x: [{rows}, 1024]}}\nnodes:\n  - {{op: scalar, operator: mul, value: 1, shape: [{rows}, 1024], kind: parameter}}\n"
        )
    };
    assert_eq!(MAX_CONSTANT_ELEMENTS, 1024 * 1024);
    assert!(build(&model(1024)).is_ok());
    let e = build(&model(1025)).unwrap_err().to_string();
    assert!(
        e.contains("a constant of 1049600 elements; archscope's largest is 2^20 = 1048576"),
        "{e}"
    );
}

#[test]
fn receptive_field_live_memory_limit() {
    // The measurement runs chunks of indicator images; the one-channel tensors alive at once
    // in a chunk are kept under 2^24 elements (`exec::reach::MAX_REACH_LIVE`, 64 MiB) by
    // taking fewer images per chunk. 300 branches (1×1 convolutions of one channel) of a
    // 1×1024×4 input, read together by one concatenation: one image's one-channel tensors are
    // 4,096 elements each, and after the last branch the input and the 300 branches are alive,
    // 301 · 4,096 = 1,232,896 elements (at the concatenation, the 300 branches and its output:
    // as many). A chunk of 2^20 / 4,096 = 256 images would hold 256 · 1,232,896 · 4 bytes =
    // 1.26 GB while the forward pass needs 4.9 MB; at most 2^24 / 1,232,896 = 13 images are
    // taken (64 MiB).
    assert_eq!(archscope::exec::reach::MAX_REACH_LIVE, 1 << 24);
    let mut yaml = String::from("inputs: {x: [1, 1024, 4]}\nnodes:\n");
    let branches: Vec<String> = (0..300).map(|i| format!("b{i}")).collect();
    for b in &branches {
        yaml += &format!("  - {{id: {b}, op: conv, in: x, out: 1, kernel: 1}}\n");
    }
    yaml += &format!(
        "  - {{id: cat, op: concat, in: [{}]}}\n",
        branches.join(", ")
    );
    let net = build(&yaml).unwrap();
    assert_eq!(archscope::exec::reach::live_elements(&net), 1_232_896);
    assert_eq!(archscope::exec::reach::chunk_images(&net, 4096), 13);
    // And the measurement in such chunks agrees with the analysis on every layer.
    let report = crate::common::checked(&net);
    assert_eq!(report.rf_skipped, None);
    assert_eq!(report.rf_compared(), 302);
}

/// A model of `nodes` over the graph input `x` (1×2×4×4) with output `y`, in opset 17.
fn onnx_model(
    nodes: Vec<archscope::onnx::proto::NodeProto>,
    inits: Vec<archscope::onnx::proto::TensorProto>,
) -> Vec<u8> {
    use archscope::onnx::proto::{self, tensor_shape_proto::dimension::Value as Dim};
    let value = |name: &str, dims: &[i64]| proto::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(proto::TypeProto {
            value: Some(proto::type_proto::Value::TensorType(
                proto::type_proto::Tensor {
                    elem_type: Some(proto::dtype::FLOAT),
                    shape: Some(proto::TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|&d| proto::tensor_shape_proto::Dimension {
                                value: Some(Dim::DimValue(d)),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                },
            )),
            ..Default::default()
        }),
        ..Default::default()
    };
    proto::encode_model(&proto::ModelProto {
        ir_version: Some(proto::IR_VERSION),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(proto::GraphProto {
            name: Some("limits".into()),
            node: nodes,
            initializer: inits,
            input: vec![value("x", &[1, 2, 4, 4])],
            output: vec![value("y", &[])],
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn onnx_node(
    op: &str,
    name: &str,
    inputs: &[&str],
    output: &str,
) -> archscope::onnx::proto::NodeProto {
    archscope::onnx::proto::NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

#[test]
fn onnx_folded_range_limit() {
    use archscope::onnx::{proto, reader::MAX_FOLDED_ELEMENTS};
    // Range(0, n, 1) folds to n elements: 2^20 reads, one more is refused at the node, before
    // anything that size is made (src/onnx/fold.rs).
    let model = |n: i64| {
        onnx_model(
            vec![
                onnx_node("Range", "range", &["start", "limit", "delta"], "r"),
                onnx_node("Relu", "relu", &["x"], "y"),
            ],
            vec![
                proto::tensor_i64("start", &[], &[0]),
                proto::tensor_i64("limit", &[], &[n]),
                proto::tensor_i64("delta", &[], &[1]),
            ],
        )
    };
    assert_eq!(MAX_FOLDED_ELEMENTS, 1 << 20);
    let dir = scratch("onnx-range-limit");
    let (ok, over) = (dir.join("ok.onnx"), dir.join("over.onnx"));
    std::fs::write(&ok, model(1 << 20)).expect("write");
    std::fs::write(&over, model((1 << 20) + 1)).expect("write");
    ok_text(&["summary", ok.to_str().expect("utf-8")]);
    let msg = assert_rejected_limited(
        &["summary", over.to_str().expect("utf-8")],
        "folding this node of constant inputs makes a Range of 1048577 elements: more than the 1048576 elements archscope computes",
    );
    assert!(msg.contains("ONNX node #0 `range` (Range)"), "{msg}");
}

#[test]
fn onnx_folding_totals() {
    use archscope::onnx::{
        proto,
        reader::{MAX_FOLDED_TOTAL, MAX_FOLD_WORK},
    };
    // Node #0 folds a 1024×1024 constant (ConstantOfShape, 2^20 elements); nodes #1… each
    // fold another (Add of it to the last, or MatMul of it by itself, 2^30 multiply-adds
    // each). Each node is within the per-node limits; the file's totals are bounded: 2^26
    // elements (64 values) and 2^32 multiply-adds (4 MatMuls).
    assert_eq!((MAX_FOLDED_TOTAL, MAX_FOLD_WORK), (1 << 26, 1 << 32));
    let model = |op: &str, count: usize, one: bool| {
        let mut c = onnx_node("ConstantOfShape", "c0", &["shape"], "c0");
        if one {
            c.attribute = vec![proto::AttributeProto {
                name: Some("value".into()),
                t: Some(proto::tensor_f32("v", &[1], &[1.0])),
                r#type: Some(proto::attribute_proto::AttributeType::Tensor as i32),
                ..Default::default()
            }];
        }
        let mut nodes = vec![c];
        for k in 1..=count {
            let a = if op == "Add" {
                format!("c{}", k - 1)
            } else {
                "c0".into()
            };
            nodes.push(onnx_node(
                op,
                &format!("n{k}"),
                &[&a, "c0"],
                &format!("c{k}"),
            ));
        }
        nodes.push(onnx_node("Relu", "relu", &["x"], "y"));
        onnx_model(nodes, vec![proto::tensor_i64("shape", &[2], &[1024, 1024])])
    };
    let dir = scratch("onnx-fold-totals");
    let file = |name: &str, bytes: Vec<u8>| {
        let f = dir.join(name);
        std::fs::write(&f, bytes).expect("write");
        f.to_str().expect("utf-8").to_string()
    };
    // 1 + 63 values: 2^26 elements, read (about 512 MiB of f64 kept while reading).
    ok_text(&["summary", &file("adds_ok.onnx", model("Add", 63, true))]);
    // 1 + 64: refused at node #64, within 1 GiB of address space (before: each node kept its
    // 8 MiB, 200,000 nodes of a 6 MB file asked for 1.6 TB).
    let msg = assert_rejected_limited(
        &["summary", &file("adds.onnx", model("Add", 64, true))],
        "folding this node brings the constants folded in this file to 68157440 elements; archscope folds at most 67108864 in all",
    );
    assert!(msg.contains("ONNX node #64 `n64` (Add)"), "{msg}");
    // Products of zeros (each computed quickly, counted all the same): 4 read, the 5th is
    // refused at node #5.
    ok_text(&[
        "summary",
        &file("matmuls_ok.onnx", model("MatMul", 4, false)),
    ]);
    let msg = assert_rejected_limited(
        &["summary", &file("matmuls.onnx", model("MatMul", 5, false))],
        "folding this MatMul brings the multiply-adds of the MatMuls folded in this file to 5368709120; archscope folds at most 4294967296 in all",
    );
    assert!(msg.contains("ONNX node #5 `n5` (MatMul)"), "{msg}");
}

#[test]
fn onnx_protobuf_nesting_limit() {
    use archscope::onnx::proto;
    // A graph whose node holds a graph attribute whose node holds a graph attribute …: 40
    // levels of three messages (GraphProto, NodeProto, AttributeProto) under the model, 120
    // deep (1,159 bytes): past prost's recursion limit (100), and the locator of decoding
    // errors stops its walk there too (`MAX_WALK_DEPTH`, src/onnx/proto.rs): a located
    // refusal, not a stack overflow.
    let mut g = proto::GraphProto {
        name: Some("inner".into()),
        ..Default::default()
    };
    for _ in 0..40 {
        g = proto::GraphProto {
            node: vec![proto::NodeProto {
                op_type: Some("If".into()),
                attribute: vec![proto::AttributeProto {
                    name: Some("then_branch".into()),
                    g: Some(g),
                    r#type: Some(proto::attribute_proto::AttributeType::Graph as i32),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
    }
    let m = proto::ModelProto {
        ir_version: Some(proto::IR_VERSION),
        graph: Some(g),
        ..Default::default()
    };
    let e = crate::common::refused_onnx("deep.onnx", &proto::encode_model(&m)).to_string();
    // The path to the place (100 messages, over 2 KB) is cut in the message, and with it the
    // walk's reason; the refusal is located all the same.
    assert!(
        e.contains("deep.onnx: not a readable ONNX model (1159 bytes): at byte "),
        "{e}"
    );
    assert!(
        e.contains("ModelProto.graph > GraphProto.node[0] > NodeProto.attribute[0] > AttributeProto.g > GraphProto.node[0]"),
        "{e}"
    );
}

/// `convert` looks for blocks inside blocks down to `MAX_NEST_DEPTH` levels below the top
/// level: a model of modules nested two levels deeper (each module a convolution and the
/// module inside it) converts to the top-level block and MAX_NEST_DEPTH nested definitions,
/// the innermost module left as layers of the deepest block, and reads back to the same figures.
#[test]
fn convert_nesting_depth_limit() {
    use archscope::onnx::convert::{self, MAX_NEST_DEPTH};
    use archscope::onnx::export::{export_bytes, ExportOptions};
    let levels = MAX_NEST_DEPTH + 2;
    let mut text = String::from("inputs: {x: [4, 8, 8]}\nblocks:\n");
    text.push_str("  l1: {nodes: [{id: a, op: conv, out: 4, kernel: 1}, {id: b, op: conv, out: 4, kernel: 1}]}\n");
    for k in 2..=levels {
        text.push_str(&format!(
            "  l{k}: {{nodes: [{{id: a, op: conv, out: 4, kernel: 1}}, {{id: inner, use: l{}}}]}}\n",
            k - 1
        ));
    }
    text.push_str(&format!(
        "nodes:\n  - {{id: stage, use: l{levels}, repeat: 2}}\n"
    ));
    let net = build(&text).unwrap();
    let bytes = export_bytes(&net, None, ExportOptions::default()).unwrap();
    let imp = archscope::onnx::import_sized("deep.onnx", &bytes, 1, None).unwrap();
    let c = convert::convert("deep.onnx", &imp).unwrap();
    assert_eq!(c.blocks, vec![("stage".to_string(), 2)]);
    assert_eq!(c.definitions.len(), 1 + MAX_NEST_DEPTH, "{}", c.text);
    let back = build(&c.text).unwrap();
    let names: Vec<&str> = back.nodes.iter().map(|n| n.name.as_str()).collect();
    let deepest = format!("stage.1{}.inner_b", ".inner".repeat(MAX_NEST_DEPTH));
    assert!(
        names.contains(&deepest.as_str()),
        "{deepest} not in {names:?}"
    );
    let mut original: Vec<&str> = net.nodes.iter().map(|n| n.name.as_str()).collect();
    let nested = format!("stage.1{}.b", ".inner".repeat(levels - 1));
    assert!(original.contains(&nested.as_str()), "{original:?}");
    let mut converted = names.clone();
    original.sort_unstable();
    converted.sort_unstable();
    assert_eq!(original.len(), converted.len());
    let (a, b) = (
        archscope::analyze(&net, archscope::Dtype::F32).unwrap(),
        archscope::analyze(&back, archscope::Dtype::F32).unwrap(),
    );
    assert_eq!(
        (a.totals.params, a.totals.macs),
        (b.totals.params, b.totals.macs)
    );
}

#[test]
fn onnx_window_candidate_limit() {
    use archscope::onnx::export::{export, ExportOptions};
    use archscope::onnx::proto;
    // The graph-only tiny Swin-V2 as archscope exports it (its index and weights graph inputs
    // of known shape), its shifted attention's index declared 720² entries long (windows of 720
    // tokens, within MAX_WINDOW_TOKENS; 720 has 30 divisors: 30 window shapes) and one of its
    // roll's `Slice`s starting at 1, 2, …, 12 (the shifts the roll's starts allow): over a
    // thousand candidate layers (window shape × shift pair), over the 256 compared (`MAX_CANDIDATES`
    // in src/onnx/swin.rs).
    let f = "swin_v2_tiny.yaml";
    let text = String::from_utf8(crate::common::read_onnx(f)).expect("UTF-8");
    let net = Network::from_yaml(f, &text, &BuildOptions::default()).expect("builds");
    let mut m = export(&net, None, ExportOptions::default()).expect("exports");
    let g = m.graph.as_mut().expect("graph");
    let idx = g
        .input
        .iter_mut()
        .find(|v| v.name.as_deref() == Some("stage1.1.attn.relative_position_index"))
        .expect("the index input");
    let Some(proto::type_proto::Value::TensorType(t)) =
        idx.r#type.as_mut().and_then(|t| t.value.as_mut())
    else {
        panic!("a tensor type")
    };
    let dims = &mut t.shape.as_mut().expect("shape").dim;
    dims.truncate(1);
    dims[0].value = Some(proto::tensor_shape_proto::dimension::Value::DimValue(
        720 * 720,
    ));
    let starts: Vec<i64> = (1..=12).collect();
    g.initializer
        .push(proto::tensor_i64("many_starts", &[12], &starts));
    let slice = g
        .node
        .iter_mut()
        .find(|n| {
            n.op_type.as_deref() == Some("Slice")
                && n.name
                    .as_deref()
                    .is_some_and(|s| s.starts_with("stage1.1.attn"))
        })
        .expect("a Slice of the shifted attention");
    slice.input[1] = "many_starts".into();
    let e = crate::common::refused_onnx("candidates.onnx", &proto::encode_model(&m)).to_string();
    assert!(
        e.contains("in the windowed attention `stage1.1.attn` (read as one layer)"),
        "{e}"
    );
    assert!(
        e.contains("more layers fit its weights and input [1, 8, 8, 16] than the 256 archscope compares (window shapes × shifts)"),
        "{e}"
    );
}

/// gpt_tiny_mask_dynamic.onnx (TorchScript, symbolic batch and sequence) with `k` `Identity`
/// nodes between its first Conv1D's back-reshape target (the `Concat` after the `Gemm`) and the
/// `Reshape` reading it, read at 16 tokens: the layer kinds, or the error.
fn chained_gpt(k: usize) -> Result<Vec<&'static str>, String> {
    use archscope::onnx::proto;
    let f = "gpt_tiny_mask_dynamic.onnx";
    let mut m = proto::decode_model(f, &crate::common::read_onnx(f)).expect("decodes");
    let g = m.graph.as_mut().expect("graph");
    let r = g
        .node
        .iter()
        .position(|n| n.name.as_deref() == Some("/m/transformer/h.0/attn/c_attn/Reshape_1"))
        .expect("the back-reshape");
    let target = g.node[r].input[1].clone();
    let mut prev = target.clone();
    let mut ids = Vec::new();
    for j in 0..k {
        let y = format!("chain{j}");
        ids.push(onnx_node("Identity", &y, &[&prev], &y));
        prev = y;
    }
    g.node[r].input[1] = prev;
    g.node.splice(r..r, ids);
    let bytes = proto::encode_model(&m);
    let imp =
        archscope::onnx::import_sized(f, &bytes, 1, Some(&[16])).map_err(|e| e.to_string())?;
    let net = Network::from_yaml("g.yaml", &imp.yaml, &BuildOptions::default())
        .map_err(|e| e.to_string())?;
    let a = archscope::analyze(&net, archscope::Dtype::F32).map_err(|e| e.to_string())?;
    Ok(a.layers.iter().map(|l| l.op).collect())
}

#[test]
fn onnx_fold_chain_limit() {
    // The back-reshape's target is a `Concat` of shape arithmetic written after the `Gemm`,
    // folded ahead of its turn (`MAX_FOLD_CHAIN` = 32 producers deep, src/onnx/gpt.rs): with
    // 31 `Identity`s in between, the chain still fits and the model reads as without them;
    // with 32 it does not, and the Conv1D's flattening reshape is refused at its own turn.
    let plain = chained_gpt(0).expect("reads");
    assert_eq!(chained_gpt(31).expect("reads"), plain);
    let e = chained_gpt(32).expect_err("over the chain limit");
    assert!(
        e.contains("a reshape of [1, 16, 32] to [16, 32] changes the batch dimension"),
        "{e}"
    );
}
