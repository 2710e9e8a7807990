//! `repeat: {count, from}` (docs/FORMAT.md, "Nodes"): instances `id.from` … `id.(from+count-1)`,
//! several nodes of one list filling later index ranges of one id (torchvision's MobileNetV2
//! `features.2`–`features.3`, `features.4`–`features.6`, … as `archscope convert` writes them);
//! `index`, `first:`, the `id` reference, `summary --depth`, dot's collapsed runs and the
//! weight names follow the ranges; overlapping ranges, a plain node sharing the id and bad
//! mappings are errors with their location, what is wrong and what to write.

use crate::common::{self, build_error, layer, net, scratch};
use archscope::{BuildOptions, Network};

/// The first output shape of layer `name`.
fn out(a: &archscope::Analysis, name: &str) -> Vec<u64> {
    layer(a, name).outputs[0].0.clone()
}

/// Two blocks filling `features.1`–`features.2` and `features.3`–`features.5`; `c2`'s width
/// is `w + index`, so each layer's output says which index it got.
const RANGES: &str = r#"format: "archscope/1"
name: ranges
inputs: {x: [8, 16, 16]}
blocks:
  b:
    params: {w: required, s: 1}
    nodes:
      - {id: c1, op: conv, out: $w, kernel: 3, padding: 1, stride: $s, act: relu}
      - {id: c2, op: conv, out: $(w + index), kernel: 1}
  b2:
    params: {w: required}
    nodes:
      - {id: c1, op: conv, out: $w, kernel: 3, padding: 1}
nodes:
  - {id: stem, op: conv, out: 8, kernel: 1}
  - {id: features, use: b, repeat: {count: 2, from: 1}, with: {w: 8}, first: {s: 2}}
  - {id: mid, op: relu, in: features.2}
  - {id: features, use: b2, repeat: {count: 3, from: 3}, with: {w: 16}}
  - {id: pool, op: global_avgpool, in: features}
"#;

#[test]
fn instances_take_the_indices_from_the_first_one() {
    let n = net(RANGES);
    let names: Vec<&str> = n.nodes.iter().map(|x| x.name.as_str()).collect();
    for want in [
        "features.1.c1",
        "features.1.c1.relu",
        "features.2.c2",
        "features.3.c1",
        "features.5.c1",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    for absent in ["features.0.c1", "features.6.c1", "features.c1"] {
        assert!(!names.contains(&absent), "{absent} in {names:?}");
    }
    let a = common::analysis(&n);
    // `index` is the instance's own index: c2's width is w + index (8 + 1, 8 + 2).
    assert_eq!(out(&a, "features.1.c2"), vec![1, 9, 8, 8]);
    assert_eq!(out(&a, "features.2.c2"), vec![1, 10, 8, 8]);
    // `first:` applies to the node's first instance (index 1: stride 2, 16 → 8), not index 0.
    assert_eq!(out(&a, "features.1.c1"), vec![1, 8, 8, 8]);
    // The second node's first instance gets no `first:` of the other node: stride 1.
    assert_eq!(out(&a, "features.3.c1"), vec![1, 16, 8, 8]);
    // The second node reads the first node's last instance (features.2: 10 channels): 3×3×10
    // weights per output channel and a bias, 16 outputs.
    assert_eq!(layer(&a, "features.3.c1").params.total(), 16 * (10 * 9 + 1));
    // `in: features.2` is that instance; `features` after both nodes is the last instance
    // of the last node (16 channels).
    let mid = n.nodes.iter().find(|x| x.name == "mid").unwrap();
    let src = &n.nodes[mid.inputs[0].0];
    assert_eq!(src.name, "features.2.c2");
    assert_eq!(out(&a, "pool"), vec![1, 16, 1, 1]);
    let pool = n.nodes.iter().find(|x| x.name == "pool").unwrap();
    assert_eq!(n.nodes[pool.inputs[0].0].name, "features.5.c1");
}

#[test]
fn a_mapping_without_from_and_a_single_instance_keep_the_index() {
    // `from` defaults to 0; with the mapping the path always has the index, even for one copy.
    let text = "inputs: {x: [4]}\nnodes:\n  - {id: a, op: relu, repeat: {count: 1, from: 17}}\n  - {id: b, op: relu, repeat: {count: 2}}\n";
    let n = net(text);
    let names: Vec<&str> = n.nodes.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, vec!["x", "a.17", "b.0", "b.1"]);
    // The plain form is unchanged: `repeat: 2` is `id.0`, `id.1`; `repeat: 1` has no index.
    let n = net("inputs: {x: [4]}\nnodes:\n  - {id: a, op: relu, repeat: 1}\n  - {id: b, op: relu, repeat: 2}\n");
    let names: Vec<&str> = n.nodes.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, vec!["x", "a", "b.0", "b.1"]);
}

#[test]
fn switched_off_ranges_pass_their_input() {
    // A node switched off by `when` still claims its range; its instances and its id stand
    // for its input, and the next node of the id reads that.
    let text = "inputs: {x: [4]}\nnodes:\n  - {id: f, op: relu, repeat: {count: 2, from: 0}}\n  - {id: f, op: relu, repeat: {count: 2, from: 2}, when: false}\n  - {id: g, op: sigmoid, in: f.3}\n  - {id: f, op: relu, repeat: {count: 1, from: 4}}\n";
    let n = net(text);
    let names: Vec<&str> = n.nodes.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, vec!["x", "f.0", "f.1", "g", "f.4"]);
    let g = n.nodes.iter().find(|x| x.name == "g").unwrap();
    assert_eq!(n.nodes[g.inputs[0].0].name, "f.1");
    // The next node takes the node before it, as always (here `g`).
    let f4 = n.nodes.iter().find(|x| x.name == "f.4").unwrap();
    assert_eq!(n.nodes[f4.inputs[0].0].name, "g");
}

#[test]
fn depth_and_dot_name_each_block_of_a_shared_id() {
    let dir = scratch("repeat-from");
    // Adjacent ranges (no `mid` between them): summary --depth 1 gives one row for
    // `features`, naming both blocks with their counts; dot --collapse repeats one node.
    let adjacent = dir.join("adjacent.yaml");
    std::fs::write(
        &adjacent,
        RANGES.replace("  - {id: mid, op: relu, in: features.2}\n", ""),
    )
    .unwrap();
    let out = common::ok_text(&["summary", common::arg(&adjacent), "--depth", "1"]);
    assert!(
        out.contains("│ features ┆ b ×2 + b2 ×3 (9 layers) ┆"),
        "{out}"
    );
    let dot = common::ok_text(&["dot", common::arg(&adjacent), "--collapse", "repeats"]);
    assert!(
        dot.contains("<b>features</b></td></tr><tr><td>b ×2 + b2 ×3 (9 layers)</td>"),
        "{dot}"
    );
    // With `mid` between them: two rows, and two drawing nodes, the second named after its
    // first instance, wired stem → features → mid → features.3 → pool.
    let f = dir.join("m.yaml");
    std::fs::write(&f, RANGES).unwrap();
    let out = common::ok_text(&["summary", common::arg(&f), "--depth", "1"]);
    assert!(out.contains("│ features ┆ b ×2 (6 layers)  ┆"), "{out}");
    assert!(out.contains("│ features ┆ b2 ×3 (3 layers) ┆"), "{out}");
    let dot = common::ok_text(&["dot", common::arg(&f), "--collapse", "repeats"]);
    assert!(
        dot.contains("<b>features</b></td></tr><tr><td>b ×2 (6 layers)</td>"),
        "{dot}"
    );
    assert!(
        dot.contains("<b>features.3</b></td></tr><tr><td>b2 ×3 (3 layers)</td>"),
        "{dot}"
    );
    for edge in [
        "\"stem\" -> \"features\"",
        "\"features\" -> \"mid\"",
        "\"mid\" -> \"features.3\"",
        "\"features.3\" -> \"pool\"",
    ] {
        assert!(dot.contains(edge), "{edge}\n{dot}");
    }
    // Expanded, each instance is its own cluster, under its own index.
    let dot = common::ok_text(&["dot", common::arg(&f)]);
    for k in 1..=5 {
        assert!(
            dot.contains(&format!("subgraph \"cluster_features.{k}\"")),
            "{dot}"
        );
    }
    assert!(!dot.contains("cluster_features.0\""), "{dot}");
}

#[test]
fn weights_are_read_under_the_instance_paths() {
    // A weights file with every tensor under its layer path (`features.3.c1.weight`) loads,
    // and runs to the same output as the seeded weights it holds; the same file with
    // `features.3` renamed `features.0` is refused, naming the tensor it lacks.
    let n = net(RANGES);
    let mut tensors = Vec::new();
    for node in &n.nodes {
        for (k, w) in node.layer.weights().iter().enumerate() {
            let len: usize = w.shape.iter().product();
            let data: Vec<f32> = (0..len)
                .map(|i| ((i * 7 + k) % 13) as f32 / 13.0 - 0.5)
                .collect();
            tensors.push((format!("{}.{}", node.name, w.name), w.shape.clone(), data));
        }
    }
    assert!(tensors.iter().any(|t| t.0 == "features.3.c1.weight"));
    assert!(!tensors.iter().any(|t| t.0.starts_with("features.0.")));
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let dir = scratch("repeat-from-weights");
    let f = dir.join("m.yaml");
    std::fs::write(&f, RANGES).unwrap();
    let good = dir.join("good.safetensors");
    std::fs::write(
        &good,
        archscope::onnx::convert::safetensors_bytes(&tensors).unwrap(),
    )
    .unwrap();
    common::ok(&["run", common::arg(&f), "--weights", common::arg(&good)]);
    let bad: Vec<_> = tensors
        .iter()
        .map(|(name, s, d)| {
            (
                name.replace("features.3.", "features.0."),
                s.clone(),
                d.clone(),
            )
        })
        .collect();
    let mut bad = bad;
    bad.sort_by(|a, b| a.0.cmp(&b.0));
    let badf = dir.join("bad.safetensors");
    std::fs::write(
        &badf,
        archscope::onnx::convert::safetensors_bytes(&bad).unwrap(),
    )
    .unwrap();
    let out = common::archscope(&["run", common::arg(&f), "--weights", common::arg(&badf)]);
    let err = common::refused(&"renamed", &out, "features.3.c1.weight");
    assert!(err.contains("features.3.c1.weight"), "{err}");
}

/// Error text and location (line, column) of building `text`.
fn error(text: &str) -> (String, (usize, usize), String) {
    let e = build_error("m.yaml", text);
    let d = e.diagnostic();
    let loc = d
        .loc
        .as_ref()
        .map(|l| (l.line, l.column))
        .expect("a location");
    (d.message.clone(), loc, d.help.clone().unwrap_or_default())
}

#[test]
fn overlapping_ranges_are_errors() {
    let text = RANGES.replace("repeat: {count: 3, from: 3}", "repeat: {count: 3, from: 2}");
    let (msg, loc, help) = error(&text);
    assert_eq!(
        msg,
        "`features` repeats from 2, but the node at m.yaml:16:5 already fills `features` up to `features.2`: the ranges overlap"
    );
    // At the `from:` value of the second node.
    assert_eq!(loc, (18, 54));
    assert!(help.contains("write `from: 3` or more"), "{help}");
    // A range before an earlier one is the same error (ranges follow the file order).
    let text = RANGES.replace("repeat: {count: 3, from: 3}", "repeat: {count: 1, from: 0}");
    let (msg, _, help) = error(&text);
    assert!(msg.contains("repeats from 0, but the node at m.yaml:16:5 already fills `features` up to `features.2`"), "{msg}");
    assert!(help.contains("`from: 3`"), "{help}");
}

#[test]
fn a_plain_node_cannot_share_a_ranged_id() {
    // Before the ranged node …
    let text = RANGES.replace("{id: stem, op: conv", "{id: features, op: conv");
    let e = build_error("m.yaml", &text);
    let d = e.diagnostic();
    assert_eq!(d.message, "the name `features` is defined twice");
    assert_eq!(d.loc.as_ref().map(|l| (l.line, l.column)), Some((16, 5)));
    assert!(
        d.help
            .as_deref()
            .unwrap_or("")
            .contains("only nodes that all give `repeat: {count, from}` may share an id"),
        "{:?}",
        d.help
    );
    // … and after it.
    let text = RANGES.replace("{id: mid, op: relu", "{id: features, op: relu");
    let e = build_error("m.yaml", &text);
    let d = e.diagnostic();
    assert_eq!(d.message, "the name `features` is defined twice");
    assert_eq!(d.loc.as_ref().map(|l| (l.line, l.column)), Some((17, 5)));
    assert!(
        d.help
            .as_deref()
            .unwrap_or("")
            .contains("only nodes that all give `repeat: {count, from}` may share one"),
        "{:?}",
        d.help
    );
}

#[test]
fn bad_repeat_mappings_are_errors() {
    let cases = [
        (
            "{count: 2, frm: 4}",
            "`repeat` has no key `frm`",
            "did you mean `from`?",
        ),
        (
            "{from: 4}",
            "`repeat` as a mapping needs `count`",
            "write `repeat: {count: N, from: K}`",
        ),
        (
            "{count: 0, from: 4}",
            "`repeat: 0` must be between 1 and 100000",
            "`when: false`",
        ),
        (
            "{count: 2, from: -1}",
            "`repeat: {from: -1}` must be between 0 and 100000",
            "`from` is the index of the first instance",
        ),
        (
            "{count: 2, from: 100001}",
            "`repeat: {from: 100001}` must be between 0 and 100000",
            "`from` is the index of the first instance",
        ),
    ];
    for (v, want, help) in cases {
        let text = format!("inputs: {{x: [4]}}\nnodes:\n  - {{id: a, op: relu, repeat: {v}}}\n");
        let (msg, loc, h) = error(&text);
        assert_eq!(msg, want, "{v}");
        assert_eq!(loc.0, 3, "{v}");
        assert!(h.contains(help), "{v}: {h}");
    }
}

#[test]
fn the_format_example_builds() {
    // docs/FORMAT.md's example ("Index ranges"), with an inverted residual block `ir`.
    let text = r#"inputs: {x: [3, 64, 64]}
blocks:
  ir:
    params: {width: required, out: required, stride: 1}
    nodes:
      - {id: expand, op: conv, out: $width, kernel: 1, act: relu6}
      - {id: dw, op: conv, out: $width, kernel: 3, stride: $stride, padding: 1, groups: $width, act: relu6}
      - {id: project, op: conv, out: $out, kernel: 1}
nodes:
  - {id: features_0, op: conv, out: 32, kernel: 3, stride: 2, padding: 1}
  - {id: features, use: ir, repeat: {count: 2, from: 2}, with: {width: 144, out: 24}, first: {width: 96, stride: 2}}
  - {id: features, use: ir, repeat: {count: 3, from: 4}, with: {width: 192, out: 32}, first: {width: 144, stride: 2}}
  - {id: head, op: conv, out: 1280, kernel: 1}
"#;
    let n = net(text);
    let head = n.nodes.iter().find(|x| x.name == "head").unwrap();
    assert_eq!(n.nodes[head.inputs[0].0].name, "features.6.project");
    let a = common::analysis(&n);
    assert_eq!(out(&a, "features.2.dw"), vec![1, 96, 16, 16]);
    assert_eq!(out(&a, "features.3.dw"), vec![1, 144, 16, 16]);
    assert_eq!(out(&a, "features.4.dw"), vec![1, 144, 8, 8]);
    assert_eq!(out(&a, "features.6.project"), vec![1, 32, 8, 8]);
}

#[test]
fn from_at_its_limit_builds() {
    let text =
        "inputs: {x: [4]}\nnodes:\n  - {id: a, op: relu, repeat: {count: 2, from: 100000}}\n";
    let n = Network::from_yaml("m.yaml", text, &BuildOptions::default()).unwrap();
    let names: Vec<&str> = n.nodes.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, vec!["x", "a.100000", "a.100001"]);
}
