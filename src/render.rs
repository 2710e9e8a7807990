//! Text of the commands whose output is not one of `report`'s tables of an analysis: the `zoo`
//! and `ops` listings, `check`'s comparison and its log, `run`'s profile of a forward pass.
//! Strings only, in the formats `report::Format` names; the command line prints them.

use crate::analysis::Analysis;
use crate::check::{self, CheckReport, Figure};
use crate::exec::{self, Plan, RunResult, Stats};
use crate::graph::Network;
use crate::layers::REGISTRY;
use crate::report::{human_count, new_table, Format, TextTable};
use crate::tensor::Tensor;

/// The embedded models (`archscope zoo`): name, input, parameters, MACs (FLOPs in CSV and
/// JSON) and layer count of each analysed model, in the order given.
pub fn zoo_listing(rows: &[(&str, Analysis)], format: Format) -> String {
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|(n, a)| {
                    serde_json::json!({"name": n, "input": a.inputs[0].0, "params": a.totals.params,
                        "macs": a.totals.macs, "flops": a.totals.flops, "layers": a.layers.len()})
                })
                .collect();
            serde_json::to_string_pretty(&v).expect("serialisable") + "\n"
        }
        Format::Csv => {
            let mut text = String::from("name,input,params,macs,flops,layers\n");
            for (n, a) in rows {
                text += &format!(
                    "{n},{},{},{},{},{}\n",
                    a.inputs[0].per_sample().replace('×', "x"),
                    a.totals.params,
                    a.totals.macs,
                    a.totals.flops,
                    a.layers.len()
                );
            }
            text
        }
        Format::Table | Format::Markdown => {
            let mut t = new_table(format == Format::Markdown);
            t.set_header(vec!["Model", "Input", "Params", "MACs", "Layers"]);
            for (n, a) in rows {
                t.add_row(vec![
                    n.to_string(),
                    a.inputs[0].per_sample(),
                    human_count(a.totals.params),
                    human_count(a.totals.macs),
                    a.layers.len().to_string(),
                ]);
            }
            format!("{t}\n")
        }
    }
}

/// The layer types the format knows (`archscope ops`), from the registry: every type but the
/// model input (it takes no input; a file declares it under `inputs:`), and which types take
/// `bn` (their `OpType` says so).
pub fn ops_listing() -> String {
    let written = || REGISTRY.iter().filter(|o| !o.is_input());
    let mut t = new_table(false);
    t.set_header(vec!["Op", "Aliases", "Keys", "What"]);
    for op in written() {
        t.add_row(vec![
            op.name,
            &op.aliases.join(", "),
            &op.keys.join(", "),
            op.summary,
        ]);
    }
    let bn: Vec<&str> = written()
        .filter(|o| o.fused_bn.is_some())
        .map(|o| o.name)
        .collect();
    format!(
        "{t}\nEvery op also takes: id, in, when, repeat, act (and bn on {}).\n",
        words(&bn)
    )
}

/// `a`, `a and b`, `a, b and c`.
fn words(items: &[&str]) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// `check`'s comparison of `model`, per layer (JSON, or a table — Markdown or boxed — with
/// the count of disagreeing layers under it). Reproducible: no timing in it.
pub fn check_report(report: &CheckReport, model: &str, format: Format) -> String {
    if format == Format::Json {
        let v = check::json_value(report, model);
        return serde_json::to_string_pretty(&v).expect("serialisable") + "\n";
    }
    let markdown = format == Format::Markdown;
    let mut t = new_table(markdown);
    t.set_header(vec![
        "Layer",
        "Output (tensor)",
        "Params (allocated)",
        "Buffers",
        "MACs (counted)",
        "Receptive field (measured)",
        "",
    ]);
    let cell = |f: &Figure| {
        if f.ok() {
            f.measured.clone()
        } else {
            format!("{} ≠ {} analysed", f.measured, f.analysed)
        }
    };
    for r in &report.rows {
        t.add_row(vec![
            r.name.clone(),
            cell(&r.shape),
            cell(&r.params),
            cell(&r.buffers),
            cell(&r.macs),
            cell(&r.rf),
            if r.ok() { "✓".into() } else { "✗".into() },
        ]);
    }
    format!(
        "{t}\n{}{model}: {} layers, {} disagree\n",
        if markdown { "\n" } else { "" },
        report.rows.len(),
        report.failures()
    )
}

/// What `check` says besides its report (the CLI writes it to stderr): the times, which
/// change from run to run, how many layers had their receptive field measured, and every
/// mismatch in words.
pub fn check_log(report: &CheckReport) -> String {
    let mut text = format!("forward pass: {:.2} s\n", report.seconds);
    match &report.rf_skipped {
        Some(why) => text += &format!("receptive fields not measured: {why}\n"),
        None => {
            text += &format!(
                "receptive fields: {:.2} s, compared on {} of {} layers\n",
                report.rf_seconds,
                report.rf_compared(),
                report.rows.len()
            )
        }
    }
    for r in report.rows.iter().filter(|r| !r.ok()) {
        for (what, f) in r.mismatches() {
            text += &format!(
                "mismatch: layer `{}`: {what} analysed {} but measured {}\n",
                r.name, f.analysed, f.measured
            );
        }
    }
    text
}

/// What `run` measured: the last of its forward passes, the fastest time of each layer over
/// all of them and the wall time of each pass.
pub struct RunProfile<'a> {
    pub net: &'a Network,
    pub analysis: &'a Analysis,
    /// The inference plan the passes ran (which layers it folded or fused into others).
    pub plan: &'a Plan,
    /// The last pass.
    pub result: &'a RunResult,
    /// The shape of the (first) input fed.
    pub input: &'a [usize],
    /// Per layer, its fastest time in seconds.
    pub layer_secs: &'a [f64],
    /// Per pass, its wall time in milliseconds (at least one).
    pub times_ms: &'a [f64],
    /// The file the first output was written to.
    pub saved: Option<&'a str>,
}

/// `run`'s report: per-layer times (JSON, or a table — Markdown or boxed — followed by the
/// outputs' statistics, top-5 classes and the latency).
pub fn run_report(p: &RunProfile, format: Format) -> String {
    let mut sorted = p.times_ms.to_vec();
    sorted.sort_by(|x, y| x.total_cmp(y));
    let latency = Latency {
        median: sorted[sorted.len() / 2],
        min: sorted[0],
        runs: sorted.len(),
    };
    // Every output is described; the first is the one shown in detail (top-5) and saved.
    let stats: Vec<Stats> = p
        .result
        .outputs
        .iter()
        .map(|t| Stats::of(&t.data))
        .collect();
    let top5 = top5(&p.result.outputs[0]);
    let merged = merged_into(p.net, p.plan);
    if format == Format::Json {
        run_json(p, &latency, &stats, &top5, &merged)
    } else {
        run_text(
            p,
            &latency,
            &stats,
            &top5,
            &merged,
            format == Format::Markdown,
        )
    }
}

/// The median and the least wall time of a run's passes, in milliseconds.
struct Latency {
    median: f64,
    min: f64,
    runs: usize,
}

/// The five highest scores of each sample of an N×classes output (none for another shape),
/// ties to the lower class.
fn top5(output: &Tensor) -> Vec<Vec<(usize, f32)>> {
    if output.shape.len() != 2 || output.shape[1] == 0 {
        return Vec::new();
    }
    output
        .data
        .chunks(output.shape[1])
        .map(|row| {
            let mut idx: Vec<usize> = (0..row.len()).collect();
            idx.sort_by(|&x, &y| row[y].total_cmp(&row[x]).then(x.cmp(&y)));
            idx.into_iter().take(5).map(|i| (i, row[i])).collect()
        })
        .collect()
}

/// For each layer the plan folded or fused into the kernel of an earlier one, that layer's
/// name (whose time includes theirs).
fn merged_into<'n>(net: &'n Network, plan: &Plan) -> Vec<Option<&'n str>> {
    (0..net.nodes.len())
        .map(|k| plan.passthrough[k].then(|| net.nodes[plan.root(net, k)].name.as_str()))
        .collect()
}

fn scores(t: &[(usize, f32)]) -> Vec<serde_json::Value> {
    t.iter()
        .map(|(i, v)| serde_json::json!({"class": i, "score": v}))
        .collect()
}

fn run_json(
    p: &RunProfile,
    latency: &Latency,
    stats: &[Stats],
    top5: &[Vec<(usize, f32)>],
    merged: &[Option<&str>],
) -> String {
    let (net, r) = (p.net, p.result);
    let layers: Vec<serde_json::Value> = p
        .analysis
        .layers
        .iter()
        .zip(p.layer_secs)
        .zip(merged)
        .map(|((l, &s), into)| {
            serde_json::json!({"name": l.name, "op": l.op, "ms": s * 1e3,
            "gflops": if s > 0.0 && into.is_none() { l.flops as f64 / s / 1e9 } else { 0.0 },
            "computed_in": into})
        })
        .collect();
    let describe = |t: &Tensor, s: &Stats, name: &str| {
        serde_json::json!({"name": name, "shape": t.shape, "min": s.min, "max": s.max, "mean": s.mean,
            "finite": s.finite, "nan": s.nan, "pos_inf": s.pos_inf, "neg_inf": s.neg_inf})
    };
    let mut first = describe(&r.outputs[0], &stats[0], &net.outputs[0].name);
    first["top5"] = serde_json::json!(top5.first().map(|t| scores(t)).unwrap_or_default());
    first["top5_per_sample"] =
        serde_json::json!(top5.iter().map(|t| scores(t)).collect::<Vec<_>>());
    let others: Vec<serde_json::Value> = r.outputs[1..]
        .iter()
        .zip(&stats[1..])
        .zip(&net.outputs[1..])
        .map(|((t, s), o)| describe(t, s, &o.name))
        .collect();
    let mut v = serde_json::json!({
        "model": p.analysis.model,
        "input": p.input,
        "latency_ms": {"median": latency.median, "min": latency.min, "runs": latency.runs},
        "output": first,
        "layers": layers,
    });
    if net.outputs.len() > 1 {
        v["other_outputs"] = serde_json::json!(others);
    }
    if let Some(file) = p.saved {
        v["saved"] = serde_json::json!({"file": file, "output": net.outputs[0].name});
    }
    serde_json::to_string_pretty(&v).expect("serialisable") + "\n"
}

fn run_text(
    p: &RunProfile,
    latency: &Latency,
    stats: &[Stats],
    top5: &[Vec<(usize, f32)>],
    merged: &[Option<&str>],
    markdown: bool,
) -> String {
    let net = p.net;
    // Markdown: a blank line ends the table.
    let gap = if markdown { "\n" } else { "" };
    let mut text = format!("{}\n{gap}", time_table(p, merged, markdown));
    let several = net.outputs.len() > 1;
    for (k, (o, s)) in net.outputs.iter().zip(stats).enumerate() {
        let label = if several {
            format!("output {} of {} `{}`", k + 1, net.outputs.len(), o.name)
        } else {
            "output".to_string()
        };
        text += &format!(
            "{label} {}: {}\n",
            exec::io::dims_text(&p.result.outputs[k].shape),
            stats_text(s)
        );
    }
    let of = if several {
        format!(" of `{}`", net.outputs[0].name)
    } else {
        String::new()
    };
    for (n, t) in top5.iter().enumerate() {
        let s: Vec<String> = t.iter().map(|(i, v)| format!("{i} ({v:.4})")).collect();
        if top5.len() == 1 {
            text += &format!("top-5 classes{of}: {}\n", s.join(", "));
        } else {
            text += &format!("top-5 classes{of} of sample {n}: {}\n", s.join(", "));
        }
    }
    let (median, min, runs) = (latency.median, latency.min, latency.runs);
    text += &format!(
        "latency: median {median:.2} ms, min {min:.2} ms over {runs} run(s); {:.1} GFLOP/s\n",
        p.analysis.totals.flops as f64 / (median / 1e3) / 1e9
    );
    if let Some(file) = p.saved {
        text += &saved_text(file, net, &p.result.outputs[0]);
    }
    text
}

/// Each layer's time, GFLOP/s and share of the total (the model inputs left out; a layer the
/// plan computed inside another's kernel says which).
fn time_table(p: &RunProfile, merged: &[Option<&str>], markdown: bool) -> TextTable {
    let total: f64 = p.layer_secs.iter().sum();
    let mut t = new_table(markdown);
    t.set_header(vec!["Layer", "Op", "Time", "GFLOP/s", "Share"]);
    let rows = p.net.nodes.iter().zip(&p.analysis.layers);
    for ((node, l), (&s, into)) in rows.zip(p.layer_secs.iter().zip(merged)) {
        if node.layer.is_input() {
            continue;
        }
        if let Some(root) = into {
            t.add_row(vec![
                l.name.clone(),
                l.label.clone(),
                format!("in {root}"),
                "-".into(),
                "-".into(),
            ]);
            continue;
        }
        t.add_row(vec![
            l.name.clone(),
            l.label.clone(),
            format!("{:.3} ms", s * 1e3),
            if l.flops > 0 && s > 0.0 {
                format!("{:.1}", l.flops as f64 / s / 1e9)
            } else {
                "-".into()
            },
            format!("{:.1}%", 100.0 * s / total.max(f64::MIN_POSITIVE)),
        ]);
    }
    t
}

/// What was written, when it is not all there is: the first of several outputs, the first
/// sample of a batch drawn as a picture.
fn saved_text(file: &str, net: &Network, output: &Tensor) -> String {
    let mut what = Vec::new();
    if net.outputs.len() > 1 {
        what.push(format!("output 1 `{}`", net.outputs[0].name));
    }
    if !file.ends_with(".npy") && output.shape[0] > 1 {
        what.push(format!("sample 1 of {}", output.shape[0]));
    }
    if what.is_empty() {
        format!("wrote {file}\n")
    } else {
        format!("wrote {file} ({})\n", what.join(", "))
    }
}

/// `min …, max …, mean …`, with NaN and infinities counted apart (the figures are over the
/// finite values).
pub fn stats_text(s: &Stats) -> String {
    let mut text = match (s.min, s.max, s.mean) {
        (Some(lo), Some(hi), Some(mean)) => format!("min {lo:.4}, max {hi:.4}, mean {mean:.4}"),
        _ => "no finite values".to_string(),
    };
    let odd: Vec<String> = [(s.nan, "NaN"), (s.pos_inf, "+inf"), (s.neg_inf, "-inf")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if !odd.is_empty() {
        if s.finite > 0 {
            text = format!("{text} (over the {} finite values)", s.finite);
        }
        text += &format!("; {}", odd.join(", "));
    }
    text
}
