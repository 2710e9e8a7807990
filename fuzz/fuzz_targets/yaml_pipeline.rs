//! Fuzz target: any bytes as an architecture file, through everything the static side of
//! archscope does with one — parse, expand and build the graph, analyse it (figures, memory,
//! receptive fields), recount under every profiler convention, render every report format,
//! audit, plan training, and draw DOT diagrams (parsed back with graphviz-rust). Nothing may
//! panic, and every error must carry a location (file:line:column or a layer path). The
//! layer budget is lowered so that one input stays a fraction of a second.

#![no_main]

use archscope::audit::{self, Budgets};
use archscope::compare::{self, Comparison};
use archscope::convention::{recount, Convention};
use archscope::dot::{self, Collapse, DotOptions, RankDir, Show};
use archscope::report::{self, Format};
use archscope::train::{self, Optimizer};
use archscope::{analyze, BuildOptions, Dtype, Error, Network};
use libfuzzer_sys::fuzz_target;

const FILE: &str = "fuzz.yaml";

/// Every error says where: a position inside the text, or a layer path.
fn check_located(e: &Error, text: &str) {
    let d = e.diagnostic();
    assert!(
        d.loc.is_some() || d.layer.is_some(),
        "an error without a location:\n{e}"
    );
    if let Some(loc) = &d.loc {
        assert_eq!(loc.file, FILE);
        let lines = text.lines().count().max(1);
        assert!(
            loc.line >= 1 && loc.line <= lines + 1 && loc.column >= 1,
            "location {loc} outside the {lines}-line text:\n{e}"
        );
    }
    let _ = e.to_string();
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let opts = BuildOptions {
        max_layers: 2_000,
        ..Default::default()
    };
    let net = match Network::from_yaml(FILE, text, &opts) {
        Ok(n) => n,
        Err(e) => return check_located(&e, text),
    };
    let mut a = match analyze(&net, Dtype::F32) {
        Ok(a) => a,
        Err(e) => return check_located(&e, text),
    };
    for f in [Format::Table, Format::Markdown, Format::Csv, Format::Json] {
        let _ = report::summary(&a, f, None);
        let _ = report::summary(&a, f, Some(1));
    }
    let _ = report::rf_report(&a, Format::Table);
    let _ = report::rf_report(&a, Format::Json);
    if let Ok(audit) = audit::audit(&net, &a, &Budgets::default()) {
        let _ = audit::render(&audit, false);
        let _ = audit::render(&audit, true);
    }
    let plan = train::Config {
        dataset_size: 1000,
        batch: 1,
        epochs: 2,
        optimizer: Optimizer::Adam,
        dtype: Dtype::F32,
        throughput_tflops: Some(10.0),
    };
    if let Ok(p) = train::plan(&net, &plan) {
        let _ = train::render(&p, false);
        let _ = train::render(&p, true);
    }
    if let Ok(c) = Comparison::new(std::slice::from_ref(&a), None) {
        let _ = compare::render(&c, Format::Table);
        let _ = compare::chart_svg(&c);
    }
    for (k, collapse) in [Collapse::None, Collapse::Blocks, Collapse::Repeats]
        .into_iter()
        .enumerate()
    {
        let opts = DotOptions {
            collapse,
            rankdir: if k == 1 {
                RankDir::LeftRight
            } else {
                RankDir::TopBottom
            },
            show: if k == 0 {
                Show {
                    shape: true,
                    params: true,
                    macs: true,
                    flops: true,
                    rf: true,
                    memory: true,
                }
            } else {
                Show::default()
            },
            fuse: k != 2,
        };
        let text = dot::to_dot(&net, &a, &opts);
        if net.nodes.len() <= 100 {
            if let Err(e) = graphviz_rust::parse(&text) {
                panic!("the DOT does not parse back: {e}\n{text}");
            }
        }
    }
    for c in [
        Convention::Fvcore,
        Convention::Ptflops,
        Convention::Thop,
        Convention::Torchinfo,
        Convention::Torchvision,
    ] {
        if let Err(e) = recount(&net, &mut a, c) {
            check_located(&e, text);
        }
    }
});
