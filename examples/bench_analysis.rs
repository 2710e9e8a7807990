//! Analysis speed on generated graphs: chains of 1k, 10k and 100k layers and a 1k-input
//! concat, parse → expand → build → analyse, in process; then DOT generation alone (graph
//! structure built and printed, from an analysed model) for ResNet-152, DenseNet-121 and a 10k
//! chain. Prints a Markdown table; figures go to docs/PERFORMANCE.md. Run with
//! `cargo run --release --example bench_analysis`.

use std::time::Instant;

use archscope::dot::{self, Collapse, DotOptions};
use archscope::{analyze, zoo, BuildOptions, Dtype, Network};

// The same allocator as the binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn chain(n: usize) -> String {
    let mut s =
        String::from("format: \"archscope/1\"\nname: chain\ninputs: {x: [8, 16, 16]}\nnodes:\n");
    for i in 0..n {
        if i % 2 == 0 {
            s += "  - {op: conv, out: 8, kernel: 3, padding: 1}\n";
        } else {
            s += "  - {op: relu}\n";
        }
    }
    s
}

fn wide_concat(n: usize) -> String {
    let mut s =
        String::from("format: \"archscope/1\"\nname: concat\ninputs: {x: [8, 16, 16]}\nnodes:\n");
    let mut names = Vec::new();
    for i in 0..n {
        s += &format!("  - {{id: b{i}, op: conv, in: x, out: 1, kernel: 1}}\n");
        names.push(format!("b{i}"));
    }
    s += &format!("  - {{id: cat, op: concat, in: [{}]}}\n", names.join(", "));
    s
}

fn repeated(n: usize) -> String {
    format!(
        "format: \"archscope/1\"\nname: repeated\ninputs: {{x: [8, 16, 16]}}\nblocks:\n  unit:\n    nodes:\n      - {{op: conv, out: 8, kernel: 3, padding: 1, act: relu}}\nnodes:\n  - {{id: body, use: unit, repeat: {}}}\n",
        n / 2
    )
}

fn time(name: &str, layers: usize, text: &str) {
    let mut times = Vec::new();
    let runs = if layers >= 100_000 { 5 } else { 15 };
    for _ in 0..runs {
        let t = Instant::now();
        let net = Network::from_yaml("bench.yaml", text, &BuildOptions::default()).unwrap();
        let a = analyze(&net, Dtype::F32).unwrap();
        assert!(a.layers.len() > layers);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = times[times.len() / 2];
    println!(
        "| {name} | {layers} | {} KiB | {median:.2} ms | {:.2} µs |",
        text.len() / 1024,
        median * 1e3 / layers as f64
    );
}

/// DOT generation alone (`dot::to_dot`: units, edges, labels, graphviz-rust structures and
/// printer) for an already analysed model.
fn time_dot(name: &str, net: &Network, collapse: Collapse) {
    let a = analyze(net, Dtype::F32).unwrap();
    let opts = DotOptions {
        collapse,
        ..DotOptions::default()
    };
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..15 {
        let t = Instant::now();
        let text = dot::to_dot(net, &a, &opts);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        bytes = text.len();
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = times[times.len() / 2];
    let layers = net.nodes.len();
    println!(
        "| DOT of {name} ({} KiB of DOT) | {layers} | | {median:.2} ms | {:.2} µs |",
        bytes / 1024,
        median * 1e3 / layers as f64
    );
}

fn main() {
    println!("| graph | layers | YAML | median time | per layer |");
    println!("|---|---:|---:|---:|---:|");
    for n in [1_000, 10_000, 100_000] {
        time("chain (listed)", n, &chain(n));
    }
    for n in [1_000, 10_000, 100_000] {
        time("chain (`repeat:`)", n, &repeated(n));
    }
    time("1k-input concat", 1_001, &wide_concat(1_000));
    let resnet152 = zoo::build("resnet152", &BuildOptions::default())
        .unwrap()
        .unwrap();
    time_dot("resnet152", &resnet152, Collapse::None);
    time_dot(
        "resnet152, `--collapse repeats`",
        &resnet152,
        Collapse::Repeats,
    );
    let densenet = Network::from_yaml(
        "densenet121.yaml",
        include_str!("densenet121.yaml"),
        &BuildOptions::default(),
    )
    .unwrap();
    time_dot("densenet121", &densenet, Collapse::None);
    let chain10k =
        Network::from_yaml("bench.yaml", &repeated(10_000), &BuildOptions::default()).unwrap();
    time_dot("chain (`repeat:`) 10k", &chain10k, Collapse::None);
}
