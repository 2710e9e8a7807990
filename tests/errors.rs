//! The bad-input corpus: every file in `tests/data/bad/` must fail to build with a located,
//! actionable message (snapshotted), and never panic. Inputs too large to commit (a 10 MB
//! file, an expression a million parentheses deep, …) are generated here. Exit codes, time
//! and memory per file are checked through the binary in `tests/limits.rs`.

use crate::common::{bad_corpus, build_error};
use archscope::Error;

/// Every message says where (a position inside the file, or a layer path) and what to change.
fn assert_actionable(file: &str, text: &str, err: &Error) {
    let d = err.diagnostic();
    assert!(
        d.loc.is_some() || d.layer.is_some(),
        "{file}: no location in\n{err}"
    );
    if let Some(loc) = &d.loc {
        assert_eq!(loc.file, file);
        assert!(
            loc.line >= 1 && loc.line <= text.lines().count().max(1) + 1,
            "{file}: line {} out of range",
            loc.line
        );
    }
    assert!(
        d.help.is_some(),
        "{file}: no help (what to change) in\n{err}"
    );
}

#[test]
fn bad_inputs_give_located_messages() {
    let files = bad_corpus();
    assert!(files.len() >= 50, "{} files", files.len());
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let file = format!("bad/{name}.yaml");
        let err = build_error(&file, &text);
        assert_actionable(&file, &text, &err);
        insta::assert_snapshot!(name, err.to_string());
    }
}

/// The cases too large to commit: each rejected with its limit, located, with help.
#[test]
fn generated_inputs() {
    let head = "inputs: {image: [3, 32, 32]}\n";
    let cases: Vec<(&str, String)> = vec![
        // 10 MB of listed layers: over the 4 MiB source limit.
        (
            "ten_megabytes",
            format!(
                "{head}nodes:\n{}",
                "  - {op: relu}\n".repeat(10_000_000 / 15)
            ),
        ),
        // One expression nested a million parentheses deep (once a stack overflow).
        (
            "expression_million_parentheses",
            format!(
                "{head}nodes:\n  - {{op: conv, kernel: 1, out: \"$({}8{})\"}}\n",
                "(".repeat(1_000_000),
                ")".repeat(1_000_000)
            ),
        ),
        // A million unary minus signs (once a stack overflow).
        (
            "expression_million_signs",
            format!(
                "{head}nodes:\n  - {{op: conv, kernel: 1, out: \"$({}8)\"}}\n",
                "-".repeat(1_000_000)
            ),
        ),
        // 100,000 nested mappings.
        (
            "nested_mappings",
            format!(
                "{head}description: {}1{}\nnodes:\n  - {{op: relu}}\n",
                "{a: ".repeat(100_000),
                "}".repeat(100_000)
            ),
        ),
        // A long chain of parameters, each defined by the next.
        (
            "parameter_chain",
            format!(
                "{head}params: {{{}, p100: 8}}\nnodes:\n  - {{op: conv, kernel: 1, out: $p0}}\n",
                (0..100)
                    .map(|i| format!("p{i}: $p{}", i + 1))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    ];
    for (name, text) in cases {
        let file = format!("{name}.yaml");
        let err = build_error(&file, &text);
        assert_actionable(&file, &text, &err);
        insta::assert_snapshot!(format!("generated_{name}"), err.to_string());
    }
}
