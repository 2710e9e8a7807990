//! Diagrams (`archscope dot`): DOT snapshots of zoo models at each collapse level, every DOT
//! parsed back with graphviz-rust's parser, and — where Graphviz's `dot` is installed — SVG
//! renders that are well-formed XML with exactly one node per drawn layer or folded group. The
//! expected counts come from `summary` (its JSON layer list, its `--depth 1` rows), never from
//! the diagram code.

use crate::common::{
    analysis, archscope, arg, command, have_dot, json, ok as stdout, ok_text, output, refused,
    root, scratch, zoo_names, zoo_net,
};
use archscope::dot::{self, Collapse, DotOptions, RankDir, Show};
use archscope::{zoo, Network};
use graphviz_rust::dot_structures::{Graph, Stmt};

fn dot_of(model: &str, opts: &DotOptions) -> String {
    let net = zoo_net(model);
    dot::to_dot(&net, &analysis(&net), opts)
}

fn opts(collapse: Collapse) -> DotOptions {
    DotOptions {
        collapse,
        ..DotOptions::default()
    }
}

/// Layer names and model-output count from `summary --format json`.
fn summary(model: &str) -> (Vec<String>, usize) {
    let v = json(&["summary", model, "--format", "json"]);
    let names = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    (names, v["outputs"].as_array().unwrap().len())
}

/// Rows of `summary --depth 1` (one per top-level layer, block instance or repeat run; a layer's
/// fused `id.bn`/`id.relu` fold into its row).
fn depth1_rows(model: &str) -> usize {
    let csv = ok_text(&["summary", model, "--depth", "1", "--format", "csv"]);
    // The header and the totals row are not layer rows.
    csv.lines().count() - 2
}

/// Layers that are a fused `bn`/`act` of another: docs/FORMAT.md names them `id.bn`, `id.relu`…,
/// so a layer whose path without its last component is another layer's path.
fn fused_children(names: &[String]) -> usize {
    names
        .iter()
        .filter(|n| {
            n.rsplit_once('.')
                .is_some_and(|(parent, _)| names.iter().any(|m| m == parent))
        })
        .count()
}

/// Node statements in a parsed graph, clusters included.
fn count_nodes(stmts: &[Stmt]) -> usize {
    stmts
        .iter()
        .map(|s| match s {
            Stmt::Node(_) => 1,
            Stmt::Subgraph(g) => count_nodes(&g.stmts),
            _ => 0,
        })
        .sum()
}

fn parse(dot_text: &str) -> Graph {
    graphviz_rust::parse(dot_text).unwrap_or_else(|e| panic!("DOT does not parse: {e}"))
}

fn stmts(g: &Graph) -> &[Stmt] {
    match g {
        Graph::Graph { stmts, .. } | Graph::DiGraph { stmts, .. } => stmts,
    }
}

/// `<g class="node">` elements of a well-formed SVG.
fn svg_nodes(svg: &[u8]) -> usize {
    let text = std::str::from_utf8(svg).expect("SVG is UTF-8");
    // Graphviz writes a DOCTYPE line; roxmltree refuses DTDs unless allowed.
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, opts).expect("SVG is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("g") && n.attribute("class") == Some("node"))
        .count()
}

#[test]
fn snapshot_lenet5_every_layer() {
    insta::assert_snapshot!("lenet5_none", dot_of("lenet5", &opts(Collapse::None)));
}

#[test]
fn snapshot_googlenet_blocks() {
    insta::assert_snapshot!(
        "googlenet_blocks",
        dot_of("googlenet", &opts(Collapse::Blocks))
    );
}

#[test]
fn snapshot_resnet18_repeats() {
    insta::assert_snapshot!(
        "resnet18_repeats",
        dot_of("resnet18", &opts(Collapse::Repeats))
    );
}

#[test]
fn snapshot_residual_example_every_layer_lr_all_figures() {
    // A small file with a residual shortcut, a projection and a block instance, drawn left to
    // right with every figure.
    let text = std::fs::read_to_string(root().join("examples/squeeze_excitation.yaml")).unwrap();
    let net = Network::from_yaml("squeeze_excitation.yaml", &text, &Default::default()).unwrap();
    let a = analysis(&net);
    let o = DotOptions {
        rankdir: RankDir::LeftRight,
        show: Show {
            shape: true,
            params: true,
            macs: true,
            flops: true,
            rf: true,
            memory: true,
        },
        ..DotOptions::default()
    };
    insta::assert_snapshot!("squeeze_excitation_lr_all", dot::to_dot(&net, &a, &o));
}

/// Top-level block instances and layers: docs/FORMAT.md names a block instance `id`, or `id.K`
/// when repeated, and everything inside it `id.…` / `id.K.…`; a fused layer is `id.bn`.
fn top_level_units(names: &[String]) -> usize {
    let mut seen: Vec<String> = Vec::new();
    for n in names {
        let mut parts = n.split('.');
        let mut key = parts.next().unwrap().to_string();
        if let Some(k) = parts
            .next()
            .filter(|k| k.bytes().all(|b| b.is_ascii_digit()))
        {
            key = format!("{key}.{k}");
        }
        if !seen.contains(&key) {
            seen.push(key);
        }
    }
    seen.len()
}

#[test]
fn every_zoo_dot_parses_back_with_one_node_per_drawn_unit() {
    for model in zoo_names() {
        let (names, outputs) = summary(model);
        // Every drawing adds one node per model output and the legend.
        let extra = outputs + 1;
        let fused = names.len() - fused_children(&names);
        // In the ResNet family every top-level block is a `repeat:` run, so folding runs leaves
        // the rows of `summary --depth 1`; models without any `repeat:` of a block fold
        // nothing. (Other models mix both; their repeat count is not derived independently
        // here, but their DOT must still parse.)
        let source = zoo::source(model).unwrap();
        let repeats_expected = if model.starts_with("resnet")
            || model.starts_with("resnext")
            || model.starts_with("wide_resnet")
        {
            Some(depth1_rows(model))
        } else if !source.contains("use:") || !source.contains("repeat:") {
            Some(fused)
        } else {
            None
        };
        for (collapse, fuse, expected) in [
            (Collapse::None, true, Some(fused)),
            (Collapse::None, false, Some(names.len())),
            (Collapse::Blocks, true, Some(top_level_units(&names))),
            (Collapse::Repeats, true, repeats_expected),
        ] {
            let o = DotOptions {
                collapse,
                fuse,
                ..DotOptions::default()
            };
            let g = parse(&dot_of(model, &o));
            if let Some(expected) = expected {
                assert_eq!(
                    count_nodes(stmts(&g)),
                    expected + extra,
                    "{model} {collapse:?} fuse={fuse}"
                );
            }
        }
    }
}

#[test]
fn dot_is_deterministic() {
    for model in ["googlenet", "resnet50"] {
        for c in [Collapse::None, Collapse::Blocks, Collapse::Repeats] {
            assert_eq!(dot_of(model, &opts(c)), dot_of(model, &opts(c)), "{model}");
        }
    }
    let a = stdout(&["dot", "resnet18", "--collapse", "repeats"]);
    let b = stdout(&["dot", "resnet18", "--collapse", "repeats"]);
    assert_eq!(a, b);
}

#[test]
fn shortcuts_are_dashed_and_parallel_branches_are_not() {
    // ResNet-18: 8 basic blocks; layer2.0, layer3.0 and layer4.0 project their shortcut through
    // a 1×1 conv (a branch of its own, drawn solid); the other 5 add their input unchanged.
    let text = dot_of("resnet18", &opts(Collapse::None));
    assert_eq!(text.matches("style=dashed").count(), 5, "{text}");
    // GoogLeNet's inception branches are parallel: nothing is a shortcut.
    let text = dot_of("googlenet", &opts(Collapse::None));
    assert_eq!(text.matches("style=dashed").count(), 0);
}

#[test]
fn clusters_edges_and_figures() {
    let text = dot_of("resnet18", &opts(Collapse::None));
    // One cluster per block instance, labelled with its arguments.
    assert_eq!(text.matches("subgraph \"cluster_").count(), 8);
    assert!(text.contains("label=\"layer2.0 = basic(width: 128, stride: 2, project: true)\""));
    // Edges carry the shape without batch; the stem's conv feeds 64×112×112 to the max-pool.
    assert!(
        text.contains("\"conv1\" -> \"maxpool\" [label=\" 64×112×112 \"]"),
        "{text}"
    );
    // The stem's batch norm and ReLU are drawn inside conv1's node.
    assert!(text.contains("+ bn + relu"));
    // --show rf: ResNet-50 ends with a 427-pixel receptive field (PyTorch gradients,
    // docs/RECEPTIVE_FIELD.md).
    let o = DotOptions {
        show: Show {
            rf: true,
            ..Show::none()
        },
        ..DotOptions::default()
    };
    assert!(dot_of("resnet50", &o).contains("RF 427"));
    // --collapse repeats sums a run: layer1 of ResNet-50 is 215,808 parameters and 667.94 M
    // MACs (torchvision, README's --depth 1 table).
    let text = dot_of("resnet50", &opts(Collapse::Repeats));
    assert!(text.contains("bottleneck ×3 (32 layers)"));
    assert!(text.contains("215.81 K params<br/>667.94 M MACs"), "{text}");
    // --collapse blocks: inception3a = 1×1 (192·64) + 3×3 reduce (192·96) + 3×3 (96·128·9)
    // + 5×5 reduce (192·16) + "5×5" (16·32·9) + pool proj (192·32) weights, plus 2 per BN
    // channel (64+96+128+16+32+32 = 368): 155136 + 736 = 155872.
    let text = dot_of("googlenet", &opts(Collapse::Blocks));
    assert!(text.contains("155.87 K params"), "{text}");
}

#[test]
fn cli_writes_dot_and_reports_missing_graphviz() {
    let text = ok_text(&["dot", "lenet5", "--rankdir", "LR"]);
    assert!(text.starts_with("digraph \"lenet5\" {"));
    assert!(text.contains("rankdir=LR"));
    parse(&text);
    // --input and --batch apply: the edge out of the input carries the new size.
    let text = ok_text(&["dot", "resnet18", "--input", "320", "--batch", "4"]);
    assert!(text.contains("label=\" 3×320×320 \""), "{text}");
    // Without `dot` on PATH, SVG and PNG are refused with exit code 2 and the package names.
    let empty = scratch("no-graphviz");
    for format in ["svg", "png"] {
        let file = empty.join(format!("x.{format}"));
        let args = ["dot", "lenet5", "--format", format, "-o", arg(&file)];
        let out = output(command(&args).env("PATH", &empty));
        let err = refused(&args, &out, "apt-get install graphviz");
        assert!(err.contains("brew install graphviz"), "{err}");
    }
}

#[test]
fn svg_renders_with_one_node_per_layer_or_group() {
    if !have_dot("svg_renders_with_one_node_per_layer_or_group did not run") {
        return;
    }
    for model in ["lenet5", "alexnet", "resnet18", "googlenet"] {
        let (names, outputs) = summary(model);
        let svg = stdout(&["dot", model, "--no-fuse", "--format", "svg"]);
        assert_eq!(
            svg_nodes(&svg),
            names.len() + outputs + 1,
            "{model} --no-fuse"
        );
        let svg = stdout(&["dot", model, "--format", "svg"]);
        assert_eq!(
            svg_nodes(&svg),
            names.len() - fused_children(&names) + outputs + 1,
            "{model}"
        );
    }
    for (model, collapse) in [("googlenet", "blocks"), ("resnet50", "repeats")] {
        let (_, outputs) = summary(model);
        let svg = stdout(&["dot", model, "--collapse", collapse, "--format", "svg"]);
        assert_eq!(
            svg_nodes(&svg),
            depth1_rows(model) + outputs + 1,
            "{model} {collapse}"
        );
    }
}

#[test]
fn png_and_svg_files_by_extension() {
    if !have_dot("png_and_svg_files_by_extension did not run") {
        return;
    }
    let dir = scratch("png-svg");
    let png = dir.join("lenet5.png");
    stdout(&["dot", "lenet5", "-o", png.to_str().unwrap()]);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let svg = dir.join("lenet5.svg");
    stdout(&["dot", "lenet5", "-o", svg.to_str().unwrap()]);
    let (names, outputs) = summary("lenet5");
    assert_eq!(
        svg_nodes(&std::fs::read(&svg).unwrap()),
        names.len() - fused_children(&names) + outputs + 1
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gallery_sources_draw() {
    // docs/gallery/inception.yaml is inception3a of the zoo's GoogLeNet on its 192×28×28 input:
    // the same 155,872 parameters (derived in `clusters_edges_and_figures`).
    let text = ok_text(&[
        "dot",
        "docs/gallery/inception.yaml",
        "--show",
        "shape,params,macs",
    ]);
    parse(&text);
    assert!(
        text.contains("inception3a · input 192×28×28 · 155.87 K params"),
        "{text}"
    );
    assert!(text.contains("out 256×28×28"));
}

/// Blocks inside blocks: a stage holding a run of two residual units and a pool.
const NESTED: &str = r#"
format: "archscope/1"
name: nested
inputs:
  x: [8, 16, 16]
blocks:
  unit:
    params: {out: 8}
    nodes:
      - {id: conv, op: conv, out: $out, kernel: 3, padding: 1, bn: true, act: relu}
      - {id: sum, op: add, in: [conv, $in]}
  stage:
    params: {out: required}
    nodes:
      - {id: units, use: unit, repeat: 2, with: {out: $out}}
      - {id: pool, op: maxpool, kernel: 2}
nodes:
  - {id: stage1, use: stage, with: {out: 8}}
  - {id: head, op: conv, out: 4, kernel: 1}
"#;

#[test]
fn nested_blocks_at_each_collapse_level() {
    let net = Network::from_yaml("nested.yaml", NESTED, &Default::default()).unwrap();
    let a = analysis(&net);
    let draw = |c| dot::to_dot(&net, &a, &opts(c));
    // Every layer: the stage's cluster holds the two units' clusters.
    let none = draw(Collapse::None);
    insta::assert_snapshot!("nested_none", none);
    assert_eq!(none.matches("subgraph \"cluster_").count(), 3);
    assert_eq!(
        none.matches("style=dashed").count(),
        2,
        "one identity per unit"
    );
    // Runs: `stage1.units` (2 units, 2 × (conv, bn, relu, add) = 8 layers) folds inside the
    // stage's cluster.
    let runs = draw(Collapse::Repeats);
    insta::assert_snapshot!("nested_repeats", runs);
    assert!(runs.contains("unit ×2 (8 layers)"));
    assert_eq!(runs.matches("subgraph \"cluster_").count(), 1);
    // Blocks: the stage is one node of 9 layers, with no cluster.
    let blocks = draw(Collapse::Blocks);
    assert!(blocks.contains("stage (9 layers)"));
    assert_eq!(blocks.matches("subgraph \"cluster_").count(), 0);
    for text in [&none, &runs, &blocks] {
        parse(text);
    }
}

#[test]
fn every_graphviz_format_by_extension_or_a_clear_refusal() {
    let dir = scratch("ext");
    // An extension Graphviz does not write is refused (exit 2), and no file is written: never
    // DOT text under a picture's name.
    let odd = dir.join("lenet5.docx");
    let err = refused(
        &"-o lenet5.docx",
        &archscope(&["dot", "lenet5", "-o", arg(&odd)]),
        "from its extension `.docx`",
    );
    assert!(err.contains(".pdf"), "{err}");
    assert!(!odd.exists());
    // .gv is DOT text, like .dot.
    let gv = dir.join("lenet5.gv");
    stdout(&["dot", "lenet5", "-o", gv.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&gv)
        .unwrap()
        .starts_with("digraph \"lenet5\" {"));
    if have_dot("every_graphviz_format_by_extension_or_a_clear_refusal did not check the files Graphviz writes") {
        // Each file starts with its format's signature.
        for (ext, magic) in [
            ("pdf", &b"%PDF-"[..]),
            ("jpg", &b"\xff\xd8\xff"[..]),
            ("jpeg", &b"\xff\xd8\xff"[..]),
            ("gif", &b"GIF8"[..]),
            ("ps", &b"%!PS"[..]),
            ("eps", &b"%!PS"[..]),
            ("svgz", &b"\x1f\x8b"[..]),
            ("json", &b"{"[..]),
        ] {
            let f = dir.join(format!("lenet5.{ext}"));
            stdout(&["dot", "lenet5", "-o", f.to_str().unwrap()]);
            let bytes = std::fs::read(&f).unwrap();
            assert!(bytes.starts_with(magic), "{ext}: {:?}", &bytes[..8]);
        }
        // --format names it without a file.
        assert!(stdout(&["dot", "lenet5", "--format", "pdf"]).starts_with(b"%PDF-"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
