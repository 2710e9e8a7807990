//! The library's enums as clap values (`src/cli/values.rs`): each flag accepts exactly the
//! names it accepted when the CLI had enums of its own — where a flag takes only some of an
//! enum's values (`train --dtype`, `check`/`run --format`), the others are refused with
//! the list, exit 2 — and the aliases (`--rankdir lr`, `--format gv`) still work.

use std::process::{Command, Output};

fn archscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_archscope"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("COLUMNS")
        .output()
        .unwrap()
}

/// The exit code and stderr of a refused value.
fn refused(args: &[&str]) -> String {
    let o = archscope(args);
    assert_eq!(o.status.code(), Some(2), "{args:?}");
    String::from_utf8(o.stderr).unwrap()
}

#[test]
fn a_subset_of_an_enum_refuses_the_rest_with_the_list() {
    let e = refused(&[
        "train",
        "lenet5",
        "--dataset-size",
        "8",
        "--batch",
        "8",
        "--epochs",
        "1",
        "--dtype",
        "int8",
    ]);
    assert!(
        e.contains("invalid value 'int8' for '--dtype <DTYPE>'"),
        "{e}"
    );
    assert!(e.contains("[possible values: f32, f16, bf16]"), "{e}");
    let e = refused(&["check", "lenet5", "--format", "csv"]);
    assert!(
        e.contains("[possible values: table, markdown, json]"),
        "{e}"
    );
    let e = refused(&["run", "lenet5", "--format", "csv"]);
    assert!(
        e.contains("[possible values: table, markdown, json]"),
        "{e}"
    );
    let e = refused(&[
        "train",
        "lenet5",
        "--dataset-size",
        "8",
        "--batch",
        "8",
        "--epochs",
        "1",
        "--format",
        "markdown",
    ]);
    assert!(e.contains("[possible values: table, json]"), "{e}");
}

#[test]
fn whole_enums_list_every_value() {
    let e = refused(&["summary", "lenet5", "--dtype", "f64"]);
    assert!(e.contains("[possible values: f32, f16, bf16, int8]"), "{e}");
    let e = refused(&["summary", "lenet5", "--convention", "flops"]);
    assert!(
        e.contains("[possible values: torchvision, fvcore, ptflops, thop, torchinfo]"),
        "{e}"
    );
    let e = refused(&["compare", "lenet5", "--sort", "size"]);
    assert!(
        e.contains("[possible values: macs, params, flops, memory, depth, rf, name]"),
        "{e}"
    );
    let e = refused(&[
        "train",
        "lenet5",
        "--dataset-size",
        "8",
        "--batch",
        "8",
        "--epochs",
        "1",
        "--optimizer",
        "lion",
    ]);
    assert!(
        e.contains("[possible values: sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw]"),
        "{e}"
    );
    let e = refused(&["dot", "lenet5", "--collapse", "all"]);
    assert!(
        e.contains("[possible values: none, blocks, repeats]"),
        "{e}"
    );
    let e = refused(&["dot", "lenet5", "--rankdir", "BT"]);
    assert!(e.contains("[possible values: TB, LR]"), "{e}");
}

#[test]
fn accepted_values_and_aliases_reach_the_library() {
    // `--rankdir lr` is the alias of LR: the graph is laid out left to right.
    let o = archscope(&["dot", "lenet5", "--rankdir", "lr", "--format", "gv"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8(o.stdout).unwrap().contains("rankdir=LR"));
    // The element type named is the one the analysis counted memory in.
    let o = archscope(&["summary", "lenet5", "--dtype", "bf16", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dtype"], "bf16");
}
