//! The library's enums as clap values (`src/cli/values.rs`): each flag accepts exactly the
//! names it accepted when the CLI had enums of its own — where a flag takes only some of an
//! enum's values (`train --dtype`, `check`/`run --format`), the others are refused with
//! the list, exit 2 — and the aliases (`--rankdir lr`, `--format gv`) still work.

use crate::common::{assert_rejected, json, ok_text};

/// `train lenet5` with the plan's required sizes, then `extra`, refused with `needle`.
fn train_rejected(extra: &[&str], needle: &str) -> String {
    let mut args = vec![
        "train",
        "lenet5",
        "--dataset-size",
        "8",
        "--batch",
        "8",
        "--epochs",
        "1",
    ];
    args.extend_from_slice(extra);
    assert_rejected(&args, needle)
}

#[test]
fn a_subset_of_an_enum_refuses_the_rest_with_the_list() {
    let e = train_rejected(
        &["--dtype", "int8"],
        "invalid value 'int8' for '--dtype <DTYPE>'",
    );
    assert!(e.contains("[possible values: f32, f16, bf16]"), "{e}");
    assert_rejected(
        &["check", "lenet5", "--format", "csv"],
        "[possible values: table, markdown, json]",
    );
    assert_rejected(
        &["run", "lenet5", "--format", "csv"],
        "[possible values: table, markdown, json]",
    );
    train_rejected(&["--format", "markdown"], "[possible values: table, json]");
}

#[test]
fn whole_enums_list_every_value() {
    assert_rejected(
        &["summary", "lenet5", "--dtype", "f64"],
        "[possible values: f32, f16, bf16, int8]",
    );
    assert_rejected(
        &["summary", "lenet5", "--convention", "flops"],
        "[possible values: torchvision, fvcore, ptflops, thop, torchinfo]",
    );
    assert_rejected(
        &["compare", "lenet5", "--sort", "size"],
        "[possible values: macs, params, flops, memory, depth, rf, name]",
    );
    train_rejected(
        &["--optimizer", "lion"],
        "[possible values: sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw]",
    );
    assert_rejected(
        &["dot", "lenet5", "--collapse", "all"],
        "[possible values: none, blocks, repeats]",
    );
    assert_rejected(
        &["dot", "lenet5", "--rankdir", "BT"],
        "[possible values: TB, LR]",
    );
}

#[test]
fn accepted_values_and_aliases_reach_the_library() {
    // `--rankdir lr` is the alias of LR: the graph is laid out left to right.
    assert!(
        ok_text(&["dot", "lenet5", "--rankdir", "lr", "--format", "gv"]).contains("rankdir=LR")
    );
    // The element type named is the one the analysis counted memory in.
    let v = json(&["summary", "lenet5", "--dtype", "bf16", "--format", "json"]);
    assert_eq!(v["dtype"], "bf16");
}
