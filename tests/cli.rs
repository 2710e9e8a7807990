//! The built binary as a user runs it: figures, formats and exit codes.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn archscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_archscope"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn json(args: &[&str]) -> Value {
    let out = archscope(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn reference(model: &str) -> Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("tests/data/torchvision.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["models"][model].clone()
}

#[test]
fn summary_resnet50_json_matches_torchvision() {
    let r = reference("resnet50");
    let v = json(&["summary", "resnet50", "--format", "json"]);
    assert_eq!(v["model"], "resnet50");
    assert_eq!(v["input"], r["input"]);
    assert_eq!(v["totals"]["params"], r["params"]);
    assert_eq!(v["totals"]["trainable"], r["trainable"]);
    assert_eq!(v["totals"]["buffers"], r["buffers"]);
    assert_eq!(v["totals"]["macs"], r["macs"]);
    assert_eq!(v["outputs"][0]["shape"], r["output"]);
    // Parameter memory is 4 bytes per parameter in f32, 2 in f16.
    assert_eq!(
        v["totals"]["param_bytes"].as_u64().unwrap(),
        4 * r["params"].as_u64().unwrap()
    );
    let half = json(&["summary", "resnet50", "--format", "json", "--dtype", "f16"]);
    assert_eq!(
        half["totals"]["param_bytes"].as_u64().unwrap(),
        2 * r["params"].as_u64().unwrap()
    );
    // The documented per-layer keys.
    let conv1 = &v["layers"][1];
    for key in [
        "name",
        "op",
        "inputs",
        "output",
        "params",
        "trainable",
        "buffers",
        "macs",
        "flops",
        "activation_bytes",
    ] {
        assert!(conv1.get(key).is_some(), "missing {key}");
    }
    assert_eq!(conv1["output"], serde_json::json!([1, 64, 112, 112]));
    assert_eq!(conv1["activation_bytes"], 64 * 112 * 112 * 4);
}

#[test]
fn batch_and_input_size() {
    let r = reference("resnet18");
    let macs = r["macs"].as_u64().unwrap();
    // MACs are linear in the batch; parameters do not change.
    let v = json(&["summary", "resnet18", "--batch", "8", "--format", "json"]);
    assert_eq!(v["totals"]["macs"].as_u64().unwrap(), 8 * macs);
    assert_eq!(v["totals"]["params"], r["params"]);
    assert_eq!(v["outputs"][0]["shape"], serde_json::json!([8, 1000]));
    // 320²: the stem gives ⌊(320 + 6 - 7)/2⌋ + 1 = 160.
    for input in ["3x320x320", "320x320", "320"] {
        let v = json(&["summary", "resnet18", "--input", input, "--format", "json"]);
        assert_eq!(
            v["layers"][1]["output"],
            serde_json::json!([1, 64, 160, 160]),
            "{input}"
        );
    }
}

#[test]
fn table_markdown_csv_and_depth() {
    let out = archscope(&["summary", "resnet50"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("25557032") && text.contains("4089184256"));
    assert!(text.contains("25.56 M"));
    let out = archscope(&["summary", "resnet50", "--depth", "1"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("bottleneck ×6"), "{text}");
    assert!(!text.contains("layer3.0.conv1"));
    let md = String::from_utf8(archscope(&["summary", "alexnet", "--format", "markdown"]).stdout)
        .unwrap();
    assert!(md.contains("| Layer"));
    let csv =
        String::from_utf8(archscope(&["summary", "lenet5", "--format", "csv"]).stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "layer,op,output,params,macs,flops,activation_bytes,rf"
    );
    // LeNet-5's c1: 6·(1·25) + 6 = 156 parameters, 28²·6·25 = 117600 MACs.
    assert!(
        csv.lines()
            .any(|l| l.starts_with("c1,") && l.contains(",156,117600,") && l.ends_with(",5")),
        "{csv}"
    );
}

#[test]
fn zoo_and_ops() {
    let v = json(&["zoo", "--format", "json"]);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for m in [
        "lenet5",
        "mlp3",
        "alexnet",
        "vgg16",
        "vgg16_bn",
        "googlenet",
        "resnet18",
        "resnet50",
    ] {
        assert!(names.contains(&m), "{m}");
    }
    let ops = String::from_utf8(archscope(&["ops"]).stdout).unwrap();
    assert!(ops.contains("conv_transpose2d") && ops.contains("max_unpool2d"));
}

#[test]
fn bad_input_exits_2_with_location() {
    let out = archscope(&["summary", "tests/data/bad/channel_mismatch_add.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("error: add inputs disagree in channels"),
        "{err}"
    );
    assert!(
        err.contains("tests/data/bad/channel_mismatch_add.yaml:5:5"),
        "{err}"
    );
    assert!(err.contains("1×1 convolution"), "{err}");
    for args in [
        vec!["summary", "resnet5"],
        vec!["summary", "no/such/file.yaml"],
        vec!["summary", "resnet50", "--input", "3x0x224"],
        vec!["summary", "resnet50", "--batch", "0"],
        vec!["summary"],
        vec!["frobnicate"],
    ] {
        let out = archscope(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    let out = archscope(&["summary", "resnet5"]);
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("did you mean the zoo model `resnet50`"));
    // Every file of the corpus: exit 2 and no panic.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad");
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let out = archscope(&["summary", p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", p.display());
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

#[test]
fn check_measures_receptive_fields() {
    // lenet5 on 32×32: c1, an unpadded 5×5 convolution (28×28), unit i reads rows i..i+4; s2
    // averages 2×2 (14×14), unit i reads c1 2i, 2i+1, so rows 2i..2i+5; c3, 5×5 (10×10), reads
    // s2 i..i+4, so rows 2i..2i+13; s4, 2×2 (5×5), reads c3 2i, 2i+1, so rows 4i..4i+15. Central
    // units: c1 (14, 14) rows 14–18, s2 (7, 7) 14–19, c3 (5, 5) 10–23, s4 (2, 2) 8–23. Flattened
    // layers have no field to compare.
    let v = json(&["check", "lenet5", "--format", "json"]);
    let rf = |name: &str| {
        v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()["rf"]
            .clone()
    };
    for (name, rows) in [
        ("c1", "14–18"),
        ("s2", "14–19"),
        ("c3", "10–23"),
        ("s4", "8–23"),
    ] {
        let want = format!("rows {rows}, cols {rows}");
        assert_eq!(
            rf(name),
            serde_json::json!({"analysed": want, "measured": want, "ok": true}),
            "{name}"
        );
    }
    assert_eq!(rf("c5")["measured"], "—");
    let out = archscope(&["check", "lenet5"]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("Receptive field (measured)"), "{table}");
    assert!(table.contains("rows 8–23, cols 8–23"), "{table}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("compared on 7 of 13 layers"), "{err}");
}

/// When Graphviz's `dot` fails without a word on stderr (a 199k-layer graph killed for memory,
/// issue 14), the message says how it ended and what to do, not "failed to render the svg:"
/// and nothing. A stand-in `dot` on PATH dies by SIGKILL, or exits 1 with a message.
#[cfg(unix)]
#[test]
fn dot_failures_say_how_dot_ended() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("archscope-fakedot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("dot");
    let run = |script: &str| {
        std::fs::write(&fake, script).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new(env!("CARGO_BIN_EXE_archscope"))
            .args(["dot", "lenet5", "--format", "svg"])
            .env("PATH", path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8(out.stderr).unwrap()
    };
    let killed = run("#!/bin/sh\n[ \"$1\" = -V ] && exit 0\ncat >/dev/null\nkill -9 $$\n");
    assert!(
        killed.contains("`dot` was killed (signal 9, SIGKILL")
            && killed.contains("with no message on stderr")
            && killed.contains("the graph has 13 layers")
            && killed.contains("--collapse blocks"),
        "{killed}"
    );
    let failed = run("#!/bin/sh\n[ \"$1\" = -V ] && exit 0\ncat >/dev/null\necho 'Error: trouble in layout' >&2\nexit 3\n");
    assert!(
        failed.contains(
            "`dot` exited with status 3 while rendering the svg: Error: trouble in layout"
        ),
        "{failed}"
    );
}
