//! The HTML report (`archscope report`): one self-contained page — styles, script and every
//! chart inline, nothing fetched — per model or per comparison of models, rendered into a
//! `String`. For one model: the totals and settings, the layer table as a tree of block
//! instances (sortable, foldable as `--depth` folds, searchable by name), the Graphviz diagram
//! when the caller could render one (hover details, click-through between nodes and rows,
//! collapsible blocks), charts drawn with plotters into SVG (per-layer MACs, parameters and
//! activation memory in the category colours of the diagrams, the receptive field's size and
//! jump against depth with the input size marked, the inference memory timeline with its peak,
//! and the training memory of a step when a training setting is given), and the audit's
//! findings linked to their layers. For several models: the comparison table with ratios and
//! the bubble chart of [`crate::compare`], then one such section per model.
//!
//! Every text that comes from a user's file goes through [`escape`], the one escaping helper
//! of the page (plotters escapes the text it draws itself; Graphviz escapes its SVG). The page
//! depends only on its inputs: no time, no random id, no hash-map order, so the same input
//! gives byte-identical HTML. No IO: the caller renders the diagram and writes the file.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::analysis::{timeline, Analysis};
use crate::audit::Audit;
use crate::compare::{self, Comparison};
use crate::convention::Convention;
use crate::error::{Diagnostic, Error};
use crate::geometry::unit_name;
use crate::graph::Network;
use crate::layers::Category;
use crate::receptive::q_f64;
use crate::report::{self, human_bytes, human_count};
use crate::train::Plan;

/// The most layers a report page holds (summed over the models of a comparison): the page
/// grows by about 1.3 KB per layer (13 MB at the limit), and a browser slows down on tables of
/// many thousand rows.
pub const MAX_REPORT_LAYERS: usize = 10_000;

/// The most layers of a model whose diagram a report shows (Graphviz takes seconds beyond a
/// few thousand nodes, and a diagram that large is unreadable); past it the section says so.
pub const MAX_DIAGRAM_LAYERS: usize = 2_000;

/// The diagram of a model section: Graphviz's SVG, or why there is none.
#[derive(Debug, Clone)]
pub enum Diagram {
    /// The SVG text Graphviz's `dot` rendered from [`crate::dot::graph`] (default options).
    Svg(String),
    /// No diagram, and why (shown on the page in its place).
    Missing(String),
}

/// Everything one model's section shows.
#[derive(Debug, Clone, Copy)]
pub struct ModelPage<'a> {
    pub net: &'a Network,
    pub analysis: &'a Analysis,
    /// Its design findings (budgets, if any were checked, are shown too).
    pub audit: &'a Audit,
    /// A training step's memory, when a training setting (optimizer) was given.
    pub training: Option<&'a Plan>,
    pub diagram: &'a Diagram,
    /// The fold depth the table opens at (`None`: every layer).
    pub depth: Option<usize>,
}

/// Escapes text for HTML element content and attribute values (`&`, `<`, `>`, `"`, `'`): the
/// one escaping helper of the page (shared with the diagrams' HTML-like labels:
/// [`report::html_text`]).
pub fn escape(s: &str) -> String {
    report::html_text(s)
}

/// `25557032` → `25,557,032`.
pub fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const CSS: &str = include_str!("assets/report.css");
const JS: &str = include_str!("assets/report.js");
/// Colour of a folded block (a group row), as in the diagrams.
const BLOCK_COLOUR: &str = "#e4e4e4";

fn too_large(layers: usize) -> Error {
    Error::from(
        Diagnostic::new(format!(
            "the report would hold {layers} layers; a report page holds at most {MAX_REPORT_LAYERS}"
        ))
        .help("use `archscope summary --depth 1` (or --format csv/json) for models this large"),
    )
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"archscope {}\">\n<title>{}</title>\n<style>\n{CSS}{}</style>\n</head>\n<body>\n{body}\
         <div id=\"tip\" role=\"tooltip\" hidden></div>\n<pre id=\"selftest\" hidden></pre>\n<script>\n{JS}</script>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        escape(title),
        palette_css()
    )
}

/// The report page of one model.
pub fn model_report(m: &ModelPage) -> Result<String, Error> {
    if m.analysis.layers.len() > MAX_REPORT_LAYERS {
        return Err(too_large(m.analysis.layers.len()));
    }
    let body = format!(
        "<header class=\"top\"><h1>archscope report: {}</h1></header>\n<main>\n{}</main>\n",
        escape(&m.analysis.model),
        model_section(m, "m0", 2, false)?
    );
    Ok(page(
        &format!("{} — archscope report", m.analysis.model),
        &body,
    ))
}

/// The report page of a comparison: the table with ratios and the bubble chart, then one
/// section per model (`models` in the order of the comparison's entries).
pub fn comparison_report(c: &Comparison, models: &[ModelPage]) -> Result<String, Error> {
    let layers: usize = models.iter().map(|m| m.analysis.layers.len()).sum();
    if layers > MAX_REPORT_LAYERS {
        return Err(too_large(layers));
    }
    if models.len() != c.entries.len() {
        return Err(Diagnostic::new("the comparison and the model sections disagree").into());
    }
    let names: Vec<&str> = models.iter().map(|m| m.analysis.model.as_str()).collect();
    let mut body = format!(
        "<header class=\"top\"><h1>archscope report: {}</h1></header>\n<main>\n",
        escape(&names.join(" · "))
    );
    body += "<section class=\"compare\" id=\"compare\">\n<h2>Comparison</h2>\n";
    body += &comparison_table(c);
    body += &format!(
        "<figure class=\"chart bubble\">{}<figcaption>Each model a bubble: MACs against parameters \
         (log axes), bubble area proportional to peak activation memory; the label gives the \
         model and that memory.</figcaption></figure>\n</section>\n",
        compare::chart_svg(c)?
    );
    for (i, m) in models.iter().enumerate() {
        body += &model_section(m, &format!("m{i}"), 2, true)?;
    }
    body += "</main>\n";
    Ok(page(
        &format!("{} — archscope comparison", names.join(", ")),
        &body,
    ))
}

fn ratio_cell(r: Option<f64>) -> String {
    match r {
        Some(v) => format!("<td class=\"num\" data-v=\"{v}\">×{v:.2}</td>"),
        None => "<td class=\"num\" data-v=\"\">–</td>".into(),
    }
}

fn comparison_table(c: &Comparison) -> String {
    let dt = format!("{:?}", c.dtype).to_lowercase();
    let macs = macs_name(c.convention);
    let mut s = format!(
        "<p class=\"settings\">{} convention · memory in {dt}{}</p>\n<div class=\"tablewrap\"><table class=\"cmp\">\n<thead><tr><th>Model</th><th>Input</th>\
         <th class=\"num\">Params</th><th class=\"num\">{macs}</th><th class=\"num\">FLOPs</th><th class=\"num\">Param. memory</th>\
         <th class=\"num\">Peak act. memory</th><th class=\"num\">Depth</th><th class=\"num\">RF</th><th class=\"num\">MACs/param</th>\
         <th class=\"num\">×Params</th><th class=\"num\">×{macs}</th><th class=\"num\">×FLOPs</th><th class=\"num\">×Peak mem.</th><th class=\"num\">×Depth</th></tr></thead>\n<tbody>\n",
        c.convention.name(),
        match &c.baseline {
            Some(b) => format!(" · ratios to <b>{}</b>", escape(b)),
            None => " · ratios to the first model".into(),
        }
    );
    for (i, e) in c.entries.iter().enumerate() {
        let r = c.ratios(i);
        let rf = match &e.rf {
            None => "global".to_string(),
            Some(v) => {
                let t = report::axes_q(v).replace(", ", "×");
                if e.rf_aligned {
                    t
                } else {
                    t + "*"
                }
            }
        };
        let input: Vec<String> = e.input.iter().map(|d| d.to_string()).collect();
        s += &format!(
            "<tr data-model=\"{}\"><td><a href=\"#m{i}\">{}</a></td><td>{}</td>{}{}{}{}{}<td class=\"num\" data-v=\"{}\">{}</td><td class=\"num\">{rf}</td><td class=\"num\">{}</td>{}{}{}{}{}</tr>\n",
            escape(&e.name),
            escape(&e.name),
            input.join("×"),
            count_cell(e.params),
            count_cell(e.macs),
            count_cell(e.flops),
            bytes_cell(e.param_bytes),
            bytes_cell(e.peak_activation_bytes),
            e.depth,
            e.depth,
            e.macs_per_param()
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "–".into()),
            ratio_cell(r.and_then(|r| r.params)),
            ratio_cell(r.and_then(|r| r.macs)),
            ratio_cell(r.and_then(|r| r.flops)),
            ratio_cell(r.and_then(|r| r.peak_activation_bytes)),
            ratio_cell(r.and_then(|r| r.depth)),
        );
    }
    s + "</tbody></table></div>\n"
}

fn count_cell(v: u64) -> String {
    format!(
        "<td class=\"num\" data-v=\"{v}\" title=\"{}\">{}</td>",
        grouped(v),
        human_count(v)
    )
}

fn bytes_cell(v: u64) -> String {
    format!(
        "<td class=\"num\" data-v=\"{v}\" title=\"{} bytes\">{}</td>",
        grouped(v),
        human_bytes(v)
    )
}

fn macs_name(c: Convention) -> String {
    if c == Convention::Torchvision {
        "MACs".into()
    } else {
        format!("MACs ({})", c.name())
    }
}

/// One row of the layer tree: a layer, or a group of consecutive layers that `--depth` folds
/// into one row.
struct TreeRow {
    row: report::Row,
    start: usize,
    end: usize,
    parent: Option<usize>,
    /// Nesting level in the tree (0: top).
    level: usize,
    /// The deepest `--depth` at which this group is one row (`None` for a layer).
    dmax: Option<usize>,
    children: usize,
}

/// The table as a tree: every distinct group of `report::rows(a, Some(d))` for every depth
/// `d`, and every layer, nested by their (laminar) ranges, in network order.
fn tree(a: &Analysis) -> Vec<TreeRow> {
    let deepest = a
        .layers
        .iter()
        .map(|l| l.name.split('.').count())
        .max()
        .unwrap_or(1);
    // (start, end, depth, row) of every group of more than one layer, shallowest first.
    let mut groups: Vec<(usize, usize, usize, report::Row)> = Vec::new();
    // Index of each range in `groups` (lookups only: the order comes from `groups`).
    let mut seen: std::collections::HashMap<(usize, usize), usize> = Default::default();
    for d in 1..deepest {
        let mut start = 0;
        for r in report::rows(a, Some(d)) {
            let end = start + r.layers;
            if r.layers > 1 {
                match seen.get(&(start, end)) {
                    Some(&g) => groups[g].2 = d,
                    None => {
                        seen.insert((start, end), groups.len());
                        groups.push((start, end, d, r));
                    }
                }
            }
            start = end;
        }
    }
    let leaves = report::rows(a, None);
    // Ranges sorted by start, longer first: parents come before their children.
    let mut items: Vec<(usize, usize, Option<usize>, report::Row)> = groups
        .into_iter()
        .map(|(s, e, d, r)| (s, e, Some(d), r))
        .chain(
            leaves
                .into_iter()
                .enumerate()
                .map(|(k, r)| (k, k + 1, None, r)),
        )
        .collect();
    items.sort_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)));
    let mut out: Vec<TreeRow> = Vec::with_capacity(items.len());
    let mut stack: Vec<usize> = Vec::new();
    for (start, end, dmax, row) in items {
        while let Some(&top) = stack.last() {
            if out[top].end >= end && out[top].start <= start {
                break;
            }
            stack.pop();
        }
        let parent = stack.last().copied();
        if let Some(p) = parent {
            out[p].children += 1;
        }
        out.push(TreeRow {
            row,
            start,
            end,
            parent,
            level: stack.len(),
            dmax,
            children: 0,
        });
        if dmax.is_some() {
            stack.push(out.len() - 1);
        }
    }
    out
}

fn model_section(m: &ModelPage, p: &str, h: usize, back: bool) -> Result<String, Error> {
    let a = m.analysis;
    let t = &a.totals;
    let dt = format!("{:?}", a.dtype).to_lowercase();
    let input = a
        .inputs
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let outputs = a
        .outputs
        .iter()
        .map(|(n, s)| format!("{} {s}", escape(n)))
        .collect::<Vec<_>>()
        .join(", ");
    let batch = a
        .inputs
        .first()
        .and_then(|s| s.0.first())
        .copied()
        .unwrap_or(1);
    let cov = report::coverage(a);
    let final_rf = cov
        .last
        .filter(|&i| !a.layers[i].inputs.is_empty())
        .map(|i| report::rf_size(&a.layers[i].rf))
        .unwrap_or_else(|| "global".into());
    let mut s = format!(
        "<section class=\"model\" id=\"{p}\" data-p=\"{p}\" data-model=\"{}\">\n<h{h}>{}{}</h{h}>\n",
        escape(&a.model),
        escape(&a.model),
        if back {
            " <a class=\"back\" href=\"#compare\">↑ comparison</a>"
        } else {
            ""
        }
    );
    s += &format!(
        "<p class=\"settings\">input <b>{input}</b> (batch {batch}) → output {outputs} · {} layers · memory in <b>{dt}</b> · {} convention{}</p>\n",
        a.layers.len(),
        a.convention.name(),
        match m.training {
            Some(tp) => format!(" · training: <b>{}</b>", tp.config.optimizer.name()),
            None => String::new(),
        }
    );
    let card = |key: &str, name: &str, human: String, exact: String, unit: &str| {
        format!(
            "<div class=\"card\" data-total=\"{key}\"><div class=\"k\">{name}</div><div class=\"v\">{human}</div><div class=\"x\"><span class=\"exact\">{exact}</span>{unit}</div></div>\n"
        )
    };
    s += "<div class=\"cards\">\n";
    s += &card(
        "params",
        "Parameters",
        human_count(t.params),
        grouped(t.params),
        "",
    );
    s += &card(
        "macs",
        &macs_name(a.convention),
        human_count(t.macs),
        grouped(t.macs),
        "",
    );
    s += &card("flops", "FLOPs", human_count(t.flops), grouped(t.flops), "");
    s += &card(
        "param_bytes",
        &format!("Parameter memory ({dt})"),
        human_bytes(t.param_bytes),
        grouped(t.param_bytes),
        " B",
    );
    s += &card(
        "peak_activation_bytes",
        &format!("Peak activation memory ({dt})"),
        human_bytes(t.peak_activation_bytes),
        grouped(t.peak_activation_bytes),
        " B",
    );
    s += &card(
        "activation_bytes",
        &format!("Activations, all layers ({dt})"),
        human_bytes(t.activation_bytes),
        grouped(t.activation_bytes),
        " B",
    );
    s += &format!(
        "<div class=\"card\" data-total=\"rf\"><div class=\"k\">Final receptive field</div><div class=\"v\">{}</div><div class=\"x\">{}</div></div>\n",
        escape(&final_rf),
        if final_rf == "global" {
            "every unit sees the whole input".to_string()
        } else if cov.input.len() == 2 {
            format!("pixels, input {}", cov.input[0])
        } else {
            // A signal's length, or a video's depth × height × width.
            format!(
                "{}, input {}",
                unit_name(cov.input.len(), true),
                cov.input.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×")
            )
        }
    );
    s += "</div>\n";
    s += &format!(
        "<nav class=\"toc\"><a href=\"#{p}-charts\">Charts</a> <a href=\"#{p}-memory\">Memory timeline</a> <a href=\"#{p}-layers\">Layers</a> <a href=\"#{p}-diagram\">Diagram</a>{} <a href=\"#{p}-audit\">Audit ({})</a></nav>\n",
        if m.training.is_some() { format!(" <a href=\"#{p}-train\">Training memory</a>") } else { String::new() },
        m.audit.findings.len()
    );

    // The inference memory timeline, shared by the table's Live column and its chart.
    let own: Vec<u64> = a.layers.iter().map(|l| l.activation_bytes).collect();
    let tl = timeline(m.net, &own);
    let rows = tree(a);
    // Charts.
    s += &format!("<h3 id=\"{p}-charts\">Charts</h3>\n<div class=\"charts\">\n");
    let cats: Vec<Category> = m.net.nodes.iter().map(|n| n.layer.category()).collect();
    let macs: Vec<u64> = a.layers.iter().map(|l| l.macs).collect();
    let params: Vec<u64> = a.layers.iter().map(|l| l.params.total()).collect();
    let macs_title = format!("{} per layer", macs_name(a.convention));
    s += &figure(
        &bar_chart(a, &macs_title, "MACs", &macs, &cats, false)?,
        &format!("{macs_title}, in network order; bar colour = layer category (legend below)."),
    );
    s += &figure(
        &bar_chart(
            a,
            "Parameters per layer",
            "parameters",
            &params,
            &cats,
            false,
        )?,
        "Parameters (trainable and frozen) per layer, in network order.",
    );
    s += &figure(
        &bar_chart(
            a,
            &format!("Activation memory per layer ({dt})"),
            "bytes",
            &own,
            &cats,
            true,
        )?,
        "Bytes of each layer's new outputs (views such as flatten take none).",
    );
    s += &figure(
        &rf_chart(a, &cov.input)?,
        "Receptive-field size (solid, circles) and jump (dashed, squares) of each layer with a spatial field, log scale; the dotted line marks the input size.",
    );
    s += "</div>\n";
    s += &legend(&cats);

    // Memory timeline.
    let peak_k = tl
        .live
        .iter()
        .enumerate()
        .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(&x.0)))
        .map(|(k, _)| k)
        .unwrap_or(0);
    s += &format!(
        "<h3 id=\"{p}-memory\">Inference memory timeline</h3>\n<figure class=\"chart wide\">{}<figcaption>Bytes of activations alive while each layer runs (its outputs allocated, its inputs not yet freed; a tensor is freed after its last reader). Peak: <b>{}</b> at <a href=\"#{p}-r{}\" data-goto=\"{}\">{}</a>. Hover the chart for what is alive at a layer.</figcaption></figure>\n",
        timeline_chart(a, &tl.live, peak_k)?,
        human_bytes(tl.live.get(peak_k).copied().unwrap_or(0)),
        row_of_layer(&rows, peak_k),
        escape(&a.layers[peak_k].name),
        escape(&a.layers[peak_k].name),
    );
    s += &format!("<div class=\"alive\" id=\"{p}-alive\" aria-live=\"polite\"></div>\n");

    // Training memory.
    if let Some(tp) = m.training {
        s += &format!("<h3 id=\"{p}-train\">Training memory of one step</h3>\n");
        s += &figure_class(
            "chart narrow",
            &training_chart(tp)?,
            &format!(
                "Memory of one training step at batch {} with {} in {}: weights, gradients, optimizer state, the activations autograd saves for backward, the optimizer's temporaries and the input batch, with the peak of the step, which is less than their sum (docs/TRAINING.md). Forward FLOPs per iteration {}, backward {}.",
                tp.config.batch,
                tp.config.optimizer.name(),
                format!("{:?}", tp.config.dtype).to_lowercase(),
                human_count(tp.forward_flops),
                human_count(tp.backward_flops)
            ),
        );
    }

    s += "<div class=\"pair\">\n<div class=\"half\">\n";
    s += &layer_table(m, p, &rows, &tl.live, &tl.freed_after);

    s += "</div>\n<div class=\"half\">\n";
    // The diagram.
    s += &format!("<h3 id=\"{p}-diagram\">Diagram</h3>\n");
    match m.diagram {
        Diagram::Svg(svg) => {
            s += &format!(
                "<div class=\"controls\"><button type=\"button\" data-act=\"zoom-out\">− zoom</button><button type=\"button\" data-act=\"zoom-fit\">fit width</button><button type=\"button\" data-act=\"zoom-in\">+ zoom</button>\
                 <button type=\"button\" data-act=\"fold-blocks\">collapse all blocks</button><button type=\"button\" data-act=\"unfold-blocks\">expand all blocks</button>\
                 <span class=\"hint\">Hover a node for its figures, click it for its table row; click a block's frame to collapse or expand it.</span></div>\n\
                 <div class=\"diagram\" id=\"{p}-dia\">{}</div>\n",
                diagram_svg(svg)
            );
        }
        Diagram::Missing(why) => {
            s += &format!(
                "<p class=\"note\" id=\"{p}-nodia\">No diagram: {}. The layer table has every layer.</p>\n",
                escape(why)
            );
        }
    }

    s += "</div>\n</div>\n";

    // Audit.
    s += &audit_list(m.audit, p, &rows, a);
    s += "</section>\n";
    Ok(s)
}

/// The CSS class of a category's swatch (`c0` … in [`Category::ALL`] order; [`palette_css`]).
fn swatch_class(c: Category) -> String {
    format!(
        "c{}",
        Category::ALL.iter().position(|&x| x == c).unwrap_or(0)
    )
}

/// The swatch classes: the diagrams' palette, from [`Category::colour`].
fn palette_css() -> String {
    let mut s = String::new();
    for (i, c) in Category::ALL.iter().enumerate() {
        s += &format!(".c{i} {{ background: {}; }}\n", c.colour());
    }
    s + &format!(".cb {{ background: {BLOCK_COLOUR}; }}\n")
}

/// The tree row that shows layer `k` itself.
fn row_of_layer(rows: &[TreeRow], k: usize) -> usize {
    rows.iter()
        .position(|r| r.dmax.is_none() && r.start == k)
        .unwrap_or(0)
}

fn layer_table(
    m: &ModelPage,
    p: &str,
    rows: &[TreeRow],
    live: &[u64],
    freed: &[Option<usize>],
) -> String {
    let a = m.analysis;
    let deepest = rows.iter().filter_map(|r| r.dmax).max().unwrap_or(0);
    let open = m.depth.map(|d| d.max(1)).filter(|&d| d <= deepest);
    let mut options = String::new();
    for d in 1..=deepest {
        options += &format!(
            "<option value=\"{d}\"{}>depth {d}</option>",
            if open == Some(d) { " selected" } else { "" }
        );
    }
    options += &format!(
        "<option value=\"all\"{}>every layer</option>",
        if open.is_none() { " selected" } else { "" }
    );
    let mut s = format!(
        "<h3 id=\"{p}-layers\">Layers</h3>\n<div class=\"controls\"><label>Search <input type=\"search\" data-act=\"search\" placeholder=\"layer name\" aria-label=\"search layer names\"></label>\
         <label>Fold <select data-act=\"fold\" aria-label=\"fold to depth\">{options}</select></label>\
         <button type=\"button\" data-act=\"reset\">network order</button>\
         <span class=\"hint\">Click a column title to sort (again to reverse); ▸ opens a block; click a name to find it in the diagram.</span></div>\n\
         <div class=\"tablewrap\"><table class=\"layers\" data-p=\"{p}\">\n<thead><tr><th data-k=\"name\" aria-sort=\"none\">Layer</th><th>Op</th><th>Output</th>\
         <th data-k=\"params\" aria-sort=\"none\">Params</th><th data-k=\"macs\" aria-sort=\"none\">{}</th><th data-k=\"flops\" aria-sort=\"none\">FLOPs</th>\
         <th data-k=\"mem\" aria-sort=\"none\">Memory</th><th data-k=\"live\" aria-sort=\"none\" title=\"activation bytes alive while the layer runs (the most within a block)\">Live</th><th data-k=\"rf\" aria-sort=\"none\">RF</th></tr></thead>\n<tbody>\n",
        macs_name(a.convention)
    );
    for (i, r) in rows.iter().enumerate() {
        let leaf = r.dmax.is_none();
        let (swatch, cat) = if leaf {
            let c = m.net.nodes[r.start].layer.category();
            (swatch_class(c), c.legend())
        } else {
            ("cb".to_string(), "block")
        };
        let live_v = live[r.start..r.end].iter().copied().max().unwrap_or(0);
        let rf_v = a.layers[r.end - 1]
            .rf
            .as_ref()
            .map(|f| q_f64(&f.axes[0].size))
            .unwrap_or(f64::INFINITY);
        let visible = match open {
            None => leaf,
            Some(d) => {
                let shown_at = |x: &TreeRow| x.dmax.is_none_or(|m| m >= d);
                // Visible when every ancestor is opened (its last depth before d) and it is not.
                let mut anc = r.parent;
                let mut ok = shown_at(r);
                while let Some(q) = anc {
                    ok &= !shown_at(&rows[q]);
                    anc = rows[q].parent;
                }
                ok
            }
        };
        let mut attrs = format!(
            "id=\"{p}-r{i}\" data-l=\"{}\" data-name=\"{}\"",
            r.level,
            escape(&r.row.name)
        );
        if let Some(q) = r.parent {
            attrs += &format!(" data-par=\"{q}\"");
        }
        match r.dmax {
            Some(d) => {
                attrs += &format!(" data-dmax=\"{d}\" class=\"grp\"");
            }
            None => {
                attrs += &format!(
                    " data-k=\"{}\" data-free=\"{}\"",
                    r.start,
                    match freed[r.start] {
                        Some(f) => f.to_string(),
                        None if a.layers[r.start].activation_bytes > 0 => "end".into(),
                        None => "view".into(),
                    }
                );
            }
        }
        if !visible {
            attrs += " hidden";
        }
        let toggle = if leaf {
            "<span class=\"tg0\"></span>".to_string()
        } else {
            let opened = open.is_none_or(|d| r.dmax.is_some_and(|m| m < d));
            format!(
                "<button type=\"button\" class=\"tg\" aria-expanded=\"{opened}\" aria-label=\"open or close\">{}</button>",
                if opened { "▾" } else { "▸" }
            )
        };
        let num = |v: u64, text: String| format!("<td data-v=\"{v}\">{text}</td>");
        let dash = |v: u64, f: &dyn Fn(u64) -> String| if v > 0 { f(v) } else { "-".into() };
        s += &format!(
            "<tr {attrs}><td>{toggle}<i class=\"sw {swatch}\" title=\"{cat}\"></i><span class=\"nm\">{}</span></td><td>{}</td><td>{}</td>{}{}{}{}{}<td data-v=\"{}\">{}</td></tr>\n",
            escape(&r.row.name),
            escape(&r.row.op),
            escape(&r.row.output),
            num(r.row.params, dash(r.row.params, &|v| v.to_string())),
            num(r.row.macs, dash(r.row.macs, &human_count)),
            num(r.row.flops, dash(r.row.flops, &human_count)),
            num(r.row.activation_bytes, dash(r.row.activation_bytes, &human_bytes)),
            num(live_v, human_bytes(live_v)),
            if rf_v.is_finite() { rf_v.to_string() } else { "1e300".into() },
            escape(&r.row.rf),
        );
    }
    s += "</tbody></table></div>\n";
    s
}

/// Graphviz's SVG made fit to sit inline in a page: without its XML prologue and doctype,
/// and with its element ids (`node1`, `edge1`, … — the same in every diagram) moved to
/// `data-id`, so that several diagrams on one page keep ids unique.
fn diagram_svg(svg: &str) -> String {
    let start = svg.find("<svg").unwrap_or(0);
    svg[start..].replace("<g id=\"", "<g data-id=\"")
}

fn figure(svg: &str, caption: &str) -> String {
    figure_class("chart", svg, caption)
}

fn figure_class(class: &str, svg: &str, caption: &str) -> String {
    format!(
        "<figure class=\"{class}\">{svg}<figcaption>{}</figcaption></figure>\n",
        escape(caption)
    )
}

fn legend(cats: &[Category]) -> String {
    let mut s = String::from("<ul class=\"legend\" aria-label=\"layer categories\">");
    for c in Category::ALL {
        if cats.contains(&c) {
            s += &format!(
                "<li><i class=\"sw {}\"></i>{}</li>",
                swatch_class(c),
                c.legend()
            );
        }
    }
    s + "</ul>\n"
}

fn chart_error<E: std::fmt::Display>(e: E) -> Error {
    Error::from(Diagnostic::new(format!("cannot draw a report chart: {e}")))
}

fn rgb(hex: &str) -> RGBColor {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap_or(0);
    RGBColor((v >> 16) as u8, (v >> 8) as u8, v as u8)
}

/// `25000000.0` → `25M`: an axis label.
fn short(v: f64) -> String {
    let (s, u) = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")]
        .into_iter()
        .find(|(s, _)| v.abs() >= *s)
        .unwrap_or((1.0, ""));
    let x = v / s;
    let t = format!("{x:.2}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    format!("{t}{u}")
}

/// `3145728.0` → `3MiB`: an axis label in powers of 1024.
fn short_bytes(v: f64) -> String {
    let (s, u) = [
        (1099511627776.0, "TiB"),
        (1073741824.0, "GiB"),
        (1048576.0, "MiB"),
        (1024.0, "KiB"),
    ]
    .into_iter()
    .find(|(s, _)| v.abs() >= *s)
    .unwrap_or((1.0, "B"));
    let x = v / s;
    let t = format!("{x:.1}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    format!("{t} {u}")
}

const CW: u32 = 640;
const CH: u32 = 300;

/// Transparent hover targets over a chart, one per layer: `data-k` is the layer index, read by
/// the page's script (tooltip, click to the table row). Inserted before the chart's `</svg>`.
fn with_hits(svg: String, hits: &[(usize, i32, i32, i32, i32)]) -> String {
    let mut g = String::from("<g class=\"hits\">");
    for &(k, x0, y0, x1, y1) in hits {
        g += &format!(
            "<rect data-k=\"{k}\" x=\"{x0}\" y=\"{y0}\" width=\"{}\" height=\"{}\"/>",
            (x1 - x0).max(1),
            (y1 - y0).max(1)
        );
    }
    g += "</g>";
    match svg.rfind("</svg>") {
        Some(i) => format!("{}{g}{}", &svg[..i], &svg[i..]),
        None => svg,
    }
}

/// The top-level groups (`--depth 1` rows of several layers) as shaded bands with their names,
/// so that a reader sees which block a bar belongs to.
fn bands<DB: DrawingBackend>(
    a: &Analysis,
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    top: f64,
) -> Result<(), Error>
where
    DB::ErrorType: 'static,
{
    let mut start = 0usize;
    let mut shade = false;
    let n = a.layers.len() as f64;
    for r in report::rows(a, Some(1)) {
        let end = start + r.layers;
        // A block instance or a run of repeated ones (not a layer with its fused norm and
        // activation).
        let block = a.layers[start].blocks.first().is_some_and(|(path, _)| {
            path == &r.name
                || path
                    .strip_prefix(r.name.as_str())
                    .is_some_and(|x| x.starts_with('.'))
        });
        if r.layers > 1 && block {
            shade = !shade;
            if shade {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(start as f64, 0.0), (end as f64, top)],
                        RGBColor(0, 0, 0).mix(0.05).filled(),
                    )))
                    .map_err(chart_error)?;
            }
            if (end - start) as f64 / n > 0.04 {
                chart
                    .draw_series(std::iter::once(Text::new(
                        r.name.clone(),
                        (start as f64 + 0.5, top * 0.985),
                        ("sans-serif", 11).into_font().color(&RGBColor(85, 85, 85)),
                    )))
                    .map_err(chart_error)?;
            }
        }
        start = end;
    }
    Ok(())
}

fn bar_chart(
    a: &Analysis,
    title: &str,
    unit: &str,
    values: &[u64],
    cats: &[Category],
    bytes: bool,
) -> Result<String, Error> {
    let n = values.len().max(1) as f64;
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let top = max * 1.12;
    let mut svg = String::new();
    let mut hits = Vec::with_capacity(values.len());
    {
        let root = SVGBackend::with_string(&mut svg, (CW, CH)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..n, 0f64..top)
            .map_err(chart_error)?;
        let fmt = |v: &f64| if bytes { short_bytes(*v) } else { short(*v) };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("layer, in network order (index)")
            .y_desc(unit)
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&fmt)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(chart_error)?;
        bands(a, &mut chart, top)?;
        chart
            .draw_series(
                values
                    .iter()
                    .enumerate()
                    .filter(|(_, &v)| v > 0)
                    .map(|(k, &v)| {
                        let c = rgb(cats[k].colour());
                        Rectangle::new([(k as f64, 0.0), (k as f64 + 1.0, v as f64)], c.filled())
                    }),
            )
            .map_err(chart_error)?;
        for k in 0..values.len() {
            let (x0, y0) = chart.backend_coord(&(k as f64, top));
            let (x1, y1) = chart.backend_coord(&(k as f64 + 1.0, 0.0));
            hits.push((k, x0, y0, x1, y1));
        }
        root.present().map_err(chart_error)?;
    }
    Ok(with_hits(svg, &hits))
}

/// The receptive field's size and jump on the first spatial axis (the height of an image, the
/// depth of a video, the length of a signal) against depth; `input`: the input's spatial sizes.
fn rf_chart(a: &Analysis, input: &[u64]) -> Result<String, Error> {
    let input = [input.first().copied().unwrap_or(0)];
    let pts: Vec<(usize, f64, f64)> = a
        .layers
        .iter()
        .enumerate()
        .filter_map(|(k, l)| {
            l.rf.as_ref()
                .map(|f| (k, q_f64(&f.axes[0].size), q_f64(&f.axes[0].jump)))
        })
        .collect();
    let n = a.layers.len().max(1) as f64;
    let hi = pts
        .iter()
        .map(|p| p.1.max(p.2))
        .fold(input[0] as f64, f64::max)
        .max(1.0)
        * 2.0;
    let lo = pts
        .iter()
        .map(|p| p.2.min(p.1))
        .fold(1.0, f64::min)
        .max(1e-3)
        / 2.0;
    let differ = a.layers.iter().any(|l| {
        l.rf.as_ref().is_some_and(|f| {
            f.axes
                .iter()
                .any(|x| x.size != f.axes[0].size || x.jump != f.axes[0].jump)
        })
    });
    let caption = format!(
        "Receptive field against depth ({} axis)",
        crate::geometry::axis_name(report::field_rank(a), 0)
    );
    // The unit of the field's axis: px (2-D), samples (1-D), voxels (3-D).
    let px = match report::field_rank(a) {
        2 => "px",
        r => unit_name(r, true),
    };
    let mut svg = String::new();
    let mut hits = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (CW, CH)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                if differ {
                    caption.as_str()
                } else {
                    "Receptive field against depth"
                },
                ("sans-serif", 15),
            )
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..n, (lo..hi).log_scale())
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("layer, in network order (index)")
            .y_desc(format!(
                "input {} (log)",
                unit_name(report::field_rank(a), true)
            ))
            .x_labels(8)
            .y_labels(8)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| short(*v))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(chart_error)?;
        let ink = RGBColor(31, 78, 121);
        let ink2 = RGBColor(178, 84, 0);
        let inp = input[0] as f64;
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, inp), (n, inp)],
                2,
                4,
                RGBColor(90, 90, 90).stroke_width(1),
            ))
            .map_err(chart_error)?
            .label(format!("input size {} {px}", input[0]))
            .legend(|(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (4, 0)], RGBColor(90, 90, 90))
                    + PathElement::new(vec![(7, 0), (11, 0)], RGBColor(90, 90, 90))
                    + PathElement::new(vec![(14, 0), (18, 0)], RGBColor(90, 90, 90))
            });
        chart
            .draw_series(std::iter::once(Text::new(
                format!("input {} {px}", input[0]),
                (n * 0.01, inp * 1.25),
                ("sans-serif", 11).into_font().color(&RGBColor(60, 60, 60)),
            )))
            .map_err(chart_error)?;
        let xs = |p: &(usize, f64, f64)| p.0 as f64 + 0.5;
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (xs(p), p.1)),
                ink.stroke_width(2),
            ))
            .map_err(chart_error)?
            .label(format!("size ({px})"))
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (18, 0)], ink.stroke_width(2))
                    + Circle::new((9, 0), 3, ink.filled())
            });
        let every = (pts.len() / 60).max(1);
        chart
            .draw_series(
                pts.iter()
                    .step_by(every)
                    .map(|p| Circle::new((xs(p), p.1), 3, ink.filled())),
            )
            .map_err(chart_error)?;
        chart
            .draw_series(DashedLineSeries::new(
                pts.iter().map(|p| (xs(p), p.2)),
                6,
                3,
                ink2.stroke_width(2),
            ))
            .map_err(chart_error)?
            .label(format!("jump ({px} per unit)"))
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (6, 0)], ink2.stroke_width(2))
                    + PathElement::new(vec![(10, 0), (16, 0)], ink2.stroke_width(2))
                    + Rectangle::new([(6, -3), (12, 3)], ink2.filled())
            });
        chart
            .draw_series(pts.iter().step_by(every).map(|p| {
                EmptyElement::at((xs(p), p.2)) + Rectangle::new([(-3, -3), (3, 3)], ink2.filled())
            }))
            .map_err(chart_error)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .label_font(("sans-serif", 11))
            .draw()
            .map_err(chart_error)?;
        for &(k, _, _) in &pts {
            let (x0, y0) = chart.backend_coord(&(k as f64, hi));
            let (x1, y1) = chart.backend_coord(&(k as f64 + 1.0, lo));
            hits.push((k, x0, y0, x1, y1));
        }
        root.present().map_err(chart_error)?;
    }
    Ok(with_hits(svg, &hits))
}

fn timeline_chart(a: &Analysis, live: &[u64], peak_k: usize) -> Result<String, Error> {
    let n = live.len().max(1) as f64;
    let peak = live.get(peak_k).copied().unwrap_or(0).max(1) as f64;
    let top = peak * 1.18;
    let mut svg = String::new();
    let mut hits = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (2 * CW, CH)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        draw_timeline(a, &root, live, peak_k, n, top, &mut hits)?;
        root.present().map_err(chart_error)?;
    }
    Ok(with_hits(svg, &hits))
}

fn draw_timeline<DB: DrawingBackend>(
    a: &Analysis,
    root: &DrawingArea<DB, Shift>,
    live: &[u64],
    peak_k: usize,
    n: f64,
    top: f64,
    hits: &mut Vec<(usize, i32, i32, i32, i32)>,
) -> Result<(), Error>
where
    DB::ErrorType: 'static,
{
    let dt = format!("{:?}", a.dtype).to_lowercase();
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("Activations alive during inference ({dt})"),
            ("sans-serif", 15),
        )
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..n, 0f64..top)
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("layer, in network order (index)")
        .y_desc("bytes alive")
        .x_labels(12)
        .y_labels(6)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| short_bytes(*v))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(chart_error)?;
    bands(a, &mut chart, top)?;
    let ink = RGBColor(70, 110, 160);
    // A step line: constant across each layer.
    let mut steps = Vec::with_capacity(2 * live.len());
    for (k, &v) in live.iter().enumerate() {
        steps.push((k as f64, v as f64));
        steps.push((k as f64 + 1.0, v as f64));
    }
    chart
        .draw_series(
            AreaSeries::new(steps.iter().copied(), 0.0, ink.mix(0.25))
                .border_style(ink.stroke_width(2)),
        )
        .map_err(chart_error)?;
    let px = peak_k as f64 + 0.5;
    chart
        .draw_series(DashedLineSeries::new(
            [(px, 0.0), (px, top)],
            4,
            3,
            RGBColor(170, 30, 30).stroke_width(2),
        ))
        .map_err(chart_error)?;
    let label = format!(
        "peak {} at {}",
        human_bytes(live.get(peak_k).copied().unwrap_or(0)),
        a.layers.get(peak_k).map(|l| l.name.as_str()).unwrap_or("")
    );
    // The label on the side of the line with more room.
    let (anchor, dx) = if px < n * 0.6 { (0.0, 6) } else { (1.0, -6) };
    let style = ("sans-serif", 13)
        .into_font()
        .color(&RGBColor(150, 20, 20))
        .pos(plotters::style::text_anchor::Pos::new(
            if anchor == 0.0 {
                plotters::style::text_anchor::HPos::Left
            } else {
                plotters::style::text_anchor::HPos::Right
            },
            plotters::style::text_anchor::VPos::Top,
        ));
    chart
        .draw_series(std::iter::once(
            EmptyElement::at((px, top * 0.93)) + Text::new(label, (dx, 0), style),
        ))
        .map_err(chart_error)?;
    for k in 0..live.len() {
        let (x0, y0) = chart.backend_coord(&(k as f64, top));
        let (x1, y1) = chart.backend_coord(&(k as f64 + 1.0, 0.0));
        hits.push((k, x0, y0, x1, y1));
    }
    Ok(())
}

fn training_chart(tp: &Plan) -> Result<String, Error> {
    let m = &tp.memory;
    let parts: [(&str, u64); 6] = [
        ("weights", m.weights),
        ("gradients", m.gradients),
        ("optimizer state", m.optimizer_state),
        ("saved activations", m.activations),
        ("optimizer temporaries", m.optimizer_temporaries),
        ("input batch", m.input),
    ];
    let at = match &m.peak.layer {
        Some(l) => format!("{} of `{l}`", m.peak.phase.name()),
        None => m.peak.phase.name().to_string(),
    };
    let max = parts.iter().map(|p| p.1).max().unwrap_or(0).max(1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (CW, 260)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Training step memory: peak {} during the {at}",
                    human_bytes(m.peak.bytes)
                ),
                ("sans-serif", 15),
            )
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(120)
            .build_cartesian_2d(0f64..max * 1.45, 0f64..parts.len() as f64)
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("bytes")
            .x_labels(6)
            .y_labels(parts.len() * 2 + 1)
            .x_label_formatter(&|v| short_bytes(*v))
            .y_label_formatter(&|v| {
                let i = (*v - 0.5).round();
                if (v - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < parts.len() {
                    parts[parts.len() - 1 - i as usize].0.to_string()
                } else {
                    String::new()
                }
            })
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(chart_error)?;
        let ink = RGBColor(70, 110, 160);
        for (j, (_, v)) in parts.iter().enumerate() {
            let y = (parts.len() - 1 - j) as f64;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y + 0.2), (*v as f64, y + 0.8)],
                    ink.mix(0.7).filled(),
                )))
                .map_err(chart_error)?;
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((*v as f64, y + 0.5))
                        + Text::new(
                            format!("{} ({})", human_bytes(*v), pct(*v, m.peak.bytes)),
                            (6, -6),
                            ("sans-serif", 12).into_font().color(&BLACK),
                        ),
                ))
                .map_err(chart_error)?;
        }
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0%".into()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}

fn audit_list(audit: &Audit, p: &str, rows: &[TreeRow], a: &Analysis) -> String {
    let mut s = format!("<h3 id=\"{p}-audit\">Audit findings</h3>\n");
    if !audit.checks.is_empty() {
        s += "<ul class=\"checks\">";
        for c in &audit.checks {
            s += &format!(
                "<li class=\"{}\"><b>{}</b> {}: {} (limit {})</li>",
                if c.passed { "ok" } else { "fail" },
                if c.passed { "ok" } else { "FAIL" },
                c.name,
                c.actual
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "global".into()),
                c.limit
            );
        }
        s += "</ul>\n";
    }
    if audit.findings.is_empty() {
        return s + "<p class=\"note\">No design findings.</p>\n";
    }
    s += &format!(
        "<p>{} finding(s): advice, each with why it matters and the fix (docs: <code>archscope audit</code>).</p>\n<ol class=\"findings\">\n",
        audit.findings.len()
    );
    for f in &audit.findings {
        let layer = a.layers.iter().position(|l| l.name == f.layer);
        let link = match layer {
            Some(k) => format!(
                "<a href=\"#{p}-r{}\" data-goto=\"{}\">{}</a>",
                row_of_layer(rows, k),
                escape(&f.layer),
                escape(&f.layer)
            ),
            None => format!("<span>{}</span>", escape(&f.layer)),
        };
        let mut saving = Vec::new();
        if let Some(v) = f.saving_params.filter(|&v| v > 0) {
            saving.push(format!("{} parameters", grouped(v)));
        }
        if let Some(v) = f.saving_macs.filter(|&v| v > 0) {
            saving.push(format!("{} MACs", human_count(v)));
        }
        s += &format!(
            "<li data-kind=\"{}\"><span class=\"kind\">{}</span> {link}<p>{}</p><p class=\"why\"><b>Why:</b> {}</p><p class=\"fix\"><b>Fix:</b> {}</p>{}</li>\n",
            escape(f.kind),
            escape(f.kind),
            escape(&f.message),
            escape(&f.why),
            escape(&f.fix),
            if saving.is_empty() {
                String::new()
            } else {
                format!("<p class=\"save\">Saves {}.</p>", saving.join(", "))
            }
        );
    }
    s + "</ol>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>alert('x & "y"')</script>"#),
            "&lt;script&gt;alert(&#39;x &amp; &quot;y&quot;&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("layer1.0.conv1"), "layer1.0.conv1");
    }

    #[test]
    fn thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(25_557_032), "25,557,032");
    }

    #[test]
    fn axis_labels() {
        assert_eq!(short(25_000_000.0), "25M");
        assert_eq!(short(1_500.0), "1.5K");
        assert_eq!(short_bytes(3.0 * 1048576.0), "3 MiB");
        assert_eq!(short_bytes(512.0), "512 B");
    }
}
