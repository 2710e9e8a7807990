//! Byte-identical output: the built binary, run several times with one and with two rayon
//! threads, prints exactly the same bytes for `summary`, `rf`, `dot`, `compare` (and its SVG
//! chart), `audit` and `check` on a few models of different shapes (a chain, residual
//! blocks, inception branches, dense concatenations, squeeze-excitation gates, a U-Net).
//! Timings go to stderr, which is not compared.

use std::path::PathBuf;
use std::process::Command;

const RUNS: usize = 3;

fn run(args: &[&str], threads: &str) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_archscope"))
        .args(args)
        .env("RAYON_NUM_THREADS", threads)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.is_empty(), "{args:?}: no output");
    out.stdout
}

/// Runs `args` RUNS times under each thread count; every output must equal the first.
fn assert_deterministic(args: &[&str]) {
    let first = run(args, "1");
    for threads in ["1", "2"] {
        for k in 0..RUNS {
            let again = run(args, threads);
            assert!(
                again == first,
                "{args:?} differs on run {k} with RAYON_NUM_THREADS={threads}:\n--- first\n{}\n--- now\n{}",
                String::from_utf8_lossy(&first),
                String::from_utf8_lossy(&again)
            );
        }
    }
}

const MODELS: [&str; 6] = [
    "lenet5",
    "resnet18",
    "googlenet",
    "examples/densenet121.yaml",
    "mobilenet_v3_small",
    "unet",
];

#[test]
fn summary_rf_dot_audit() {
    for m in MODELS {
        for args in [
            vec!["summary", m],
            vec!["summary", m, "--format", "json"],
            vec!["summary", m, "--format", "csv", "--depth", "1"],
            vec!["summary", m, "--input", "256,320", "--batch", "1,4"],
            vec!["rf", m],
            vec!["rf", m, "--format", "json"],
            vec!["dot", m],
            vec![
                "dot",
                m,
                "--collapse",
                "repeats",
                "--show",
                "shape,rf,memory",
            ],
            vec!["audit", m, "--max-params", "10M", "--min-rf", "100"],
            vec!["audit", m, "--format", "json"],
        ] {
            assert_deterministic(&args);
        }
    }
}

#[test]
fn compare_and_chart() {
    let mut args = vec!["compare"];
    args.extend(MODELS);
    assert_deterministic(&args);
    args.extend([
        "--format",
        "json",
        "--sort",
        "macs",
        "--baseline",
        "resnet18",
    ]);
    assert_deterministic(&args);
    // The SVG chart, written to a file.
    let dir = std::env::temp_dir().join(format!("archscope-determinism-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let charts: Vec<Vec<u8>> = (0..2 * RUNS)
        .map(|k| {
            let path: PathBuf = dir.join(format!("chart{k}.svg"));
            let mut a = vec!["compare", "lenet5", "resnet18", "googlenet", "--chart"];
            let p = path.to_str().unwrap().to_string();
            a.push(&p);
            run(&a, if k % 2 == 0 { "1" } else { "2" });
            std::fs::read(&path).unwrap()
        })
        .collect();
    assert!(charts.iter().all(|c| c == &charts[0]));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `check` runs the executor (multi-threaded kernels), yet its stdout is the same bytes: the
/// figures it compares are exact, and the forward-pass time is on stderr.
#[test]
fn check() {
    for m in ["lenet5", "mlp3", "squeezenet1_1"] {
        assert_deterministic(&["check", m]);
        assert_deterministic(&["check", m, "--format", "json"]);
    }
    assert_deterministic(&["check", "resnet18", "--input", "64"]);
}
