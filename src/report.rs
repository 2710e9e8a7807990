//! Rendering an [`Analysis`]: tables (comfy-table), Markdown, CSV and JSON, with human units
//! (K/M/G, KiB/MiB) next to exact integers, and `--depth` folding of block instances into one
//! row. Only this module formats for people; it returns strings and never prints.

use std::sync::atomic::{AtomicU16, Ordering};

use comfy_table::{
    presets, Cell, CellAlignment, ColumnConstraint, ContentArrangement, Table, Width,
};
use serde_json::{json, Value};

use crate::analysis::{Analysis, LayerStats};
use crate::convention::Convention;
use crate::layers::{AttentionSplit, Category, Layout, Shape};
use crate::receptive::{fmt_q, q_f64, q_json, Field, Q};

/// The width boxed tables must fit in (0: no limit). Set once by the command line
/// ([`set_table_width`]) from `COLUMNS` or the terminal; a library caller gets full width.
static TABLE_WIDTH: AtomicU16 = AtomicU16::new(0);

/// Makes every boxed table from now on fit in `width` columns (`None`: full width, the
/// default). Markdown tables are never narrowed.
pub fn set_table_width(width: Option<u16>) {
    TABLE_WIDTH.store(width.unwrap_or(0), Ordering::Relaxed);
}

/// A table in the project's style; it prints (`Display`) at full width, or — when a table
/// width is set and it is not Markdown — fitted to that width: figures are never cut, long
/// text is cut to one line ending in `…`, and a table whose figures alone are too wide is
/// shown as several tables of consecutive columns, each led by the first column.
#[derive(Debug, Clone)]
pub struct TextTable {
    table: Table,
    fit: Option<u16>,
}

impl std::ops::Deref for TextTable {
    type Target = Table;
    fn deref(&self) -> &Table {
        &self.table
    }
}

impl std::ops::DerefMut for TextTable {
    fn deref_mut(&mut self) -> &mut Table {
        &mut self.table
    }
}

impl std::fmt::Display for TextTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.fit {
            None => write!(f, "{}", self.table),
            Some(width) => {
                let want = measure(&self.table);
                let parts = groups(&want, width);
                for (i, shown) in parts.iter().enumerate() {
                    let mut t = self.table.clone();
                    fit(&mut t, &want, shown, width);
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{t}")?;
                }
                Ok(())
            }
        }
    }
}

/// Per column of `t`: its full content width, the least width it may have, and whether it
/// holds figures (every cell starts like a number, a shape or a ratio, or is `-`, `global`,
/// `—`): a figure column keeps its widest cell and only its header may wrap, at spaces; a text
/// column (names, labels, notes) may shrink to 8 characters (or its widest cell when shorter).
fn measure(t: &Table) -> Vec<(usize, usize, bool)> {
    let mut t = t.clone();
    let len = |x: &str| x.chars().count();
    (0..t.column_count())
        .map(|c| {
            let head = t
                .header()
                .and_then(|h| h.cell_iter().nth(c))
                .map(|x| x.content())
                .unwrap_or_default();
            let cells: Vec<String> = t
                .column_cells_iter(c)
                .flatten()
                .map(|x| x.content())
                .collect();
            let body = cells.iter().map(|x| len(x)).max().unwrap_or(0);
            let word = head.split_whitespace().map(len).max().unwrap_or(0);
            let figure = cells.iter().all(|x| {
                matches!(x.as_str(), "" | "-" | "—" | "global" | "✓" | "✗")
                    || x.starts_with(|ch: char| ch.is_ascii_digit() || "-+×.*".contains(ch))
            });
            let full = body.max(len(head.as_str()));
            let least = if figure { body.max(word) } else { full.min(8) };
            (full, least, figure)
        })
        .collect()
}

/// Content width left for `k` columns in a table `width` characters wide (each column adds 2
/// of padding and 1 border; the table one more border).
fn room(width: u16, k: usize) -> usize {
    usize::from(width).saturating_sub(3 * k + 1)
}

/// The columns of each table that `t` is shown as to fit in `width`: all of them when their
/// least widths fit; else consecutive groups, each led by the first (name) column.
fn groups(want: &[(usize, usize, bool)], width: u16) -> Vec<Vec<usize>> {
    let n = want.len();
    if n == 0 || want.iter().map(|w| w.1).sum::<usize>() <= room(width, n) {
        return vec![(0..n).collect()];
    }
    let mut out = vec![vec![0]];
    for c in 1..n {
        let g = out.last_mut().expect("not empty");
        let used: usize = g.iter().map(|&i| want[i].1).sum();
        if g.len() > 1 && used + want[c].1 > room(width, g.len() + 1) {
            out.push(vec![0, c]);
        } else {
            g.push(c);
        }
    }
    out
}

/// Column widths that fit the columns `shown` of `t` (the others hidden) in `width`
/// characters: figure columns at their widest cell, text columns sharing what is left (the
/// narrowest first, each at most a fair share, at least its least width) and cut to one line.
/// Columns that fit are left alone.
fn fit(t: &mut Table, want: &[(usize, usize, bool)], shown: &[usize], width: u16) {
    let n = want.len();
    for c in 0..n {
        if !shown.contains(&c) {
            if let Some(col) = t.column_mut(c) {
                col.set_constraint(ColumnConstraint::Hidden);
            }
        }
    }
    let room = room(width, shown.len());
    if shown.iter().map(|&c| want[c].0).sum::<usize>() <= room {
        return;
    }
    let mut widths: Vec<usize> = want.iter().map(|w| w.1).collect();
    let fixed: usize = shown
        .iter()
        .filter(|&&c| want[c].2)
        .map(|&c| want[c].1)
        .sum();
    let mut left = room.saturating_sub(fixed);
    let mut text: Vec<usize> = shown.iter().copied().filter(|&c| !want[c].2).collect();
    text.sort_by_key(|&c| want[c].0);
    let mut k = text.len();
    for c in text {
        let share = left / k.max(1);
        widths[c] = want[c].0.min(share).max(want[c].1);
        left = left.saturating_sub(widths[c]);
        k -= 1;
    }
    for &c in shown {
        if let Some(col) = t.column_mut(c) {
            col.set_constraint(ColumnConstraint::Absolute(Width::Fixed(
                u16::try_from(widths[c] + 2).unwrap_or(u16::MAX),
            )));
        }
    }
    t.set_truncation_indicator("…");
    for r in t.row_iter_mut() {
        r.max_height(1);
    }
}

/// An empty table in the project's style: Markdown (`--format markdown`) or condensed UTF-8
/// boxes; cells are never wrapped at full width (comfy-table's wrapping is quadratic in a
/// cell's width), and cut to one line when fitted to a width ([`set_table_width`]).
pub fn new_table(markdown: bool) -> TextTable {
    let mut t = Table::new();
    t.load_preset(if markdown {
        presets::ASCII_MARKDOWN
    } else {
        presets::UTF8_FULL_CONDENSED
    });
    t.set_content_arrangement(ContentArrangement::Disabled);
    let w = TABLE_WIDTH.load(Ordering::Relaxed);
    TextTable {
        table: t,
        fit: (w > 0 && !markdown).then_some(w),
    }
}

/// Output format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Markdown,
    Csv,
    Json,
}

/// `1234567` → `1.23 M` (powers of 1000; exact below 1000).
pub fn human_count(n: u64) -> String {
    const UNITS: [(&str, f64); 6] = [
        ("E", 1e18),
        ("P", 1e15),
        ("T", 1e12),
        ("G", 1e9),
        ("M", 1e6),
        ("K", 1e3),
    ];
    for (u, s) in UNITS {
        if n as f64 >= s {
            return format!("{:.2} {u}", n as f64 / s);
        }
    }
    n.to_string()
}

/// `3145728` → `3.00 MiB` (powers of 1024).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, f64); 4] = [
        ("TiB", 1099511627776.0),
        ("GiB", 1073741824.0),
        ("MiB", 1048576.0),
        ("KiB", 1024.0),
    ];
    for (u, s) in UNITS {
        if n as f64 >= s {
            return format!("{:.2} {u}", n as f64 / s);
        }
    }
    format!("{n} B")
}

/// A row of the table: one layer, or several folded into one.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub op: String,
    pub output: String,
    pub params: u64,
    pub macs: u64,
    pub flops: u64,
    pub activation_bytes: u64,
    /// Receptive-field size of the row's (last) output.
    pub rf: String,
    /// How many layers it stands for.
    pub layers: usize,
    /// The name of its last layer (whose output and field the row shows).
    pub last: String,
}

fn prefix(name: &str, depth: usize) -> &str {
    let mut end = name.len();
    for (count, (i, _)) in name.match_indices('.').enumerate() {
        if count + 1 == depth {
            end = i;
            break;
        }
    }
    &name[..end]
}

/// The output shapes of a layer, per sample; a layer with very many outputs (a `split` into
/// thousands of parts) shows the first few and the count, so that a table cell stays small.
fn output_text(outputs: &[Shape], layouts: &[Layout]) -> String {
    const SHOWN: usize = 8;
    let mut parts: Vec<String> = outputs
        .iter()
        .zip(layouts.iter().map(Some).chain(std::iter::repeat(None)))
        .take(SHOWN)
        .map(|(s, l)| l.map_or_else(|| s.per_sample(), |l| s.shown(l)))
        .collect();
    if outputs.len() > SHOWN {
        parts.push(format!("… ({} outputs)", outputs.len()));
    }
    parts.join(", ")
}

/// Table rows, with layers whose path shares its first `depth` components folded together
/// (`None`: every layer its own row). A folded block instance is labelled with its block, a run
/// of repeated instances with `block ×N`.
pub fn rows(a: &Analysis, depth: Option<usize>) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    let mut members: Vec<Vec<&LayerStats>> = Vec::new();
    let mut current: Option<String> = None;
    for l in &a.layers {
        let key = depth.map(|d| prefix(&l.name, d.max(1)).to_string());
        if key.is_some() && key == current && !out.is_empty() {
            let r = out.last_mut().expect("not empty");
            r.params += l.params.total();
            r.macs += l.macs;
            r.flops += l.flops;
            r.activation_bytes += l.activation_bytes;
            r.output = output_text(&l.outputs, &l.out_layouts);
            r.rf = rf_size(&l.rf);
            r.layers += 1;
            r.last.clone_from(&l.name);
            members.last_mut().expect("not empty").push(l);
        } else {
            out.push(Row {
                name: key.clone().unwrap_or_else(|| l.name.clone()),
                op: l.label.clone(),
                output: output_text(&l.outputs, &l.out_layouts),
                params: l.params.total(),
                macs: l.macs,
                flops: l.flops,
                activation_bytes: l.activation_bytes,
                rf: rf_size(&l.rf),
                layers: 1,
                last: l.name.clone(),
            });
            members.push(vec![l]);
            current = key;
        }
    }
    for (r, m) in out.iter_mut().zip(&members) {
        if r.layers > 1 {
            r.op = folded_label(&r.name, m);
        }
    }
    out
}

/// Per-axis rationals as text: one value when every axis agrees (`32`), else each joined by
/// `sep` (`32, 16`, `3×7×7`).
fn axes_text(v: &[Q], sep: &str) -> String {
    match v.first() {
        Some(first) if v.iter().all(|x| x == first) => fmt_q(first),
        _ => v.iter().map(fmt_q).collect::<Vec<_>>().join(sep),
    }
}

/// The spatial axes of the first input (`[H, W]` of `N×C×H×W`, `[L]` of `N×C×L`, `[D, H, W]`
/// of `N×C×D×H×W`); empty when it has none.
pub fn input_axes(a: &Analysis) -> Vec<u64> {
    match a.inputs.first() {
        Some(s) if (3..=5).contains(&s.rank()) => s.0[2..].to_vec(),
        _ => Vec::new(),
    }
}

/// The number of spatial axes the model's fields have: the first input's (2 when it has
/// none, the columns of an image model).
pub fn field_rank(a: &Analysis) -> usize {
    match input_axes(a).len() {
        0 => 2,
        r => r,
    }
}

/// `427`, `427×431` when the axes differ (one value per spatial axis), `global` without a
/// field; `*` marks a merge whose paths are not aligned.
pub fn rf_size(f: &Option<Field>) -> String {
    match f {
        None => "global".into(),
        Some(f) if f.whole => "whole input".into(),
        Some(f) => {
            let sizes: Vec<Q> = f.axes.iter().map(|a| a.size).collect();
            let mut s = axes_text(&sizes, "×");
            if !f.aligned {
                s.push('*');
            }
            s
        }
    }
}

/// A per-axis pair of rationals as text: `32` or `32, 16`.
pub fn pair_q(h: &Q, w: &Q) -> String {
    axes_q(&[*h, *w])
}

/// Per-axis rationals as text: `32` when every axis agrees, else `32, 16` (`4, 32, 32`).
pub fn axes_q(v: &[Q]) -> String {
    axes_text(v, ", ")
}

/// One figure of a field on every axis, as text ([`axes_q`]).
fn field_q(f: &Field, g: impl Fn(&crate::receptive::Axis) -> Q) -> String {
    axes_q(&f.axes.iter().map(g).collect::<Vec<_>>())
}

/// The JSON form of a field (integers where integral, decimals for fractions), or null.
pub fn rf_json(f: &Option<Field>) -> Value {
    match f {
        None => Value::Null,
        Some(f) => {
            let pair = |g: &dyn Fn(&crate::receptive::Axis) -> Q| {
                Value::Array(f.axes.iter().map(|a| q_json(&g(a))).collect())
            };
            let mut v = json!({
                "size": pair(&|a| a.size),
                "jump": pair(&|a| a.jump),
                "start": pair(&|a| a.start),
                "min_size": pair(&|a| a.min_size),
                "effective_padding": pair(&|a| a.effective_padding()),
                "aligned": f.aligned,
            });
            if let Some(m) = &f.misalignment {
                v["misalignment"] = json!(m);
            }
            if f.global_context {
                v["global_context"] = json!(true);
            }
            if f.whole {
                v["whole_input"] = json!(true);
            }
            if f.windowed {
                // Per unit (docs/RECEPTIVE_FIELD.md): no lattice start.
                v["window_dependent"] = json!(true);
                v["start"] = Value::Null;
                v["effective_padding"] = Value::Null;
                if let Some(u) = &f.units {
                    v["units"] = json!(u
                        .iter()
                        .map(|axis| axis
                            .iter()
                            .map(|s| s.map(|(lo, hi)| json!([lo, hi])).unwrap_or(Value::Null))
                            .collect::<Vec<_>>())
                        .collect::<Vec<_>>());
                }
            }
            v
        }
    }
}

fn folded_label(group: &str, layers: &[&LayerStats]) -> String {
    // The group is a block instance…
    if let Some((_, block)) = layers[0].blocks.iter().find(|(p, _)| p == group) {
        return format!("{block} ({} layers)", layers.len());
    }
    // …or a run of repeated instances `group.0`, `group.1`, …
    let inner = format!("{group}.");
    let mut instances: Vec<&(String, String)> = layers
        .iter()
        .filter_map(|l| {
            l.blocks
                .iter()
                .find(|(p, _)| p.strip_prefix(&inner).is_some_and(|k| !k.contains('.')))
        })
        .collect();
    instances.dedup();
    if !instances.is_empty() {
        // Runs of one id may use several blocks (`repeat: {count, from}`): each named with
        // its count, in order.
        let mut runs: Vec<(&str, usize)> = Vec::new();
        for (_, block) in &instances {
            match runs.last_mut() {
                Some((b, n)) if *b == block.as_str() => *n += 1,
                _ => runs.push((block.as_str(), 1)),
            }
        }
        let names: Vec<String> = runs.iter().map(|(b, n)| format!("{b} ×{n}")).collect();
        return format!("{} ({} layers)", names.join(" + "), layers.len());
    }
    // A layer with its fused batch norm / activation, or an arbitrary run.
    let rest: Vec<&str> = layers[1..].iter().map(|l| l.op).collect();
    if rest.len() <= 3 {
        format!("{} + {}", layers[0].label, rest.join(" + "))
    } else {
        format!("{} + {} more", layers[0].label, rest.len())
    }
}

fn totals_lines(a: &Analysis) -> Vec<(String, String, String)> {
    let t = &a.totals;
    let dt = format!("{:?}", a.dtype).to_lowercase();
    let mut lines = vec![
        (
            "Parameters".into(),
            human_count(t.params),
            t.params.to_string(),
        ),
        (
            "  trainable".into(),
            human_count(t.trainable),
            t.trainable.to_string(),
        ),
        (
            "  non-trainable".into(),
            human_count(t.params - t.trainable),
            (t.params - t.trainable).to_string(),
        ),
        (
            "Buffers".into(),
            human_count(t.buffers),
            t.buffers.to_string(),
        ),
        (macs_label(a), human_count(t.macs), t.macs.to_string()),
    ];
    // A model with attention layers: their MACs by product (the torchvision convention's
    // count, so only under it: there they are part of the MACs above).
    if let Some(sum) = attention_totals(a).filter(|_| a.convention == Convention::Torchvision) {
        for (what, v) in [
            ("  attention projections", sum.projections),
            ("  attention Q·Kᵀ", sum.scores),
            ("  attention·V", sum.values),
            ("  attention position-bias MLP", sum.other),
        ] {
            if v > 0 || what != "  attention position-bias MLP" {
                lines.push((what.into(), human_count(v), v.to_string()));
            }
        }
    }
    lines.extend([
        ("FLOPs".into(), human_count(t.flops), t.flops.to_string()),
        (
            format!("Parameter memory ({dt})"),
            human_bytes(t.param_bytes),
            t.param_bytes.to_string(),
        ),
        (
            format!("Buffer memory ({dt})"),
            human_bytes(t.buffer_bytes),
            t.buffer_bytes.to_string(),
        ),
        (
            format!("Activations, all layers ({dt})"),
            human_bytes(t.activation_bytes),
            t.activation_bytes.to_string(),
        ),
        (
            format!("Peak activation memory ({dt})"),
            human_bytes(t.peak_activation_bytes),
            t.peak_activation_bytes.to_string(),
        ),
    ]);
    // A language model: its cost per token and the KV cache it keeps per token.
    if let Some(p) = a.per_token() {
        let exact = |v: f64| {
            if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.3}")
            }
        };
        lines.push((
            format!("{} per token ({} tokens)", macs_label(a), p.tokens),
            human_count(p.macs.round() as u64),
            exact(p.macs),
        ));
        lines.push((
            "FLOPs per token".into(),
            human_count(p.flops.round() as u64),
            exact(p.flops),
        ));
        lines.push((
            format!("KV cache per token ({dt})"),
            human_bytes(p.kv_cache_bytes),
            p.kv_cache_bytes.to_string(),
        ));
    }
    lines
}

/// `MACs`, or `MACs (fvcore)` under another tool's convention.
fn macs_label(a: &Analysis) -> String {
    if a.convention == Convention::Torchvision {
        "MACs".into()
    } else {
        format!("MACs ({})", a.convention.name())
    }
}

fn header(a: &Analysis) -> String {
    let inputs: Vec<String> = a.inputs.iter().map(|s| s.to_string()).collect();
    let outputs: Vec<String> = a.outputs.iter().map(|(n, s)| format!("{n} {s}")).collect();
    format!(
        "{}: input {} → output {} ({} layers)",
        a.model,
        inputs.join(", "),
        outputs.join(", "),
        a.layers.len()
    )
}

fn layer_table(a: &Analysis, depth: Option<usize>, markdown: bool) -> TextTable {
    let mut t = new_table(markdown);
    t.set_header(vec![
        "Layer".to_string(),
        "Op".into(),
        "Output".into(),
        "Params".into(),
        macs_label(a),
        "FLOPs".into(),
        "Memory".into(),
        "RF".into(),
    ]);
    for r in rows(a, depth) {
        t.add_row(vec![
            text_cell(&r.name, markdown),
            Cell::new(&r.op),
            Cell::new(&r.output),
            Cell::new(if r.params == 0 {
                "-".into()
            } else {
                r.params.to_string()
            })
            .set_alignment(CellAlignment::Right),
            Cell::new(if r.macs == 0 {
                "-".into()
            } else {
                human_count(r.macs)
            })
            .set_alignment(CellAlignment::Right),
            Cell::new(if r.flops == 0 {
                "-".into()
            } else {
                human_count(r.flops)
            })
            .set_alignment(CellAlignment::Right),
            Cell::new(if r.activation_bytes == 0 {
                "-".into()
            } else {
                human_bytes(r.activation_bytes)
            })
            .set_alignment(CellAlignment::Right),
            Cell::new(&r.rf).set_alignment(CellAlignment::Right),
        ]);
    }
    t
}

/// The attention layers' MACs by product summed over the model (`None`: no attention layer).
pub fn attention_totals(a: &Analysis) -> Option<AttentionSplit> {
    let mut it = a.layers.iter().filter_map(|l| l.attention);
    let first = it.next()?;
    Some(it.fold(first, |s, x| AttentionSplit {
        projections: s.projections.saturating_add(x.projections),
        scores: s.scores.saturating_add(x.scores),
        values: s.values.saturating_add(x.values),
        other: s.other.saturating_add(x.other),
        ..s
    }))
}

/// MACs per layer category (the analysis's convention), in legend order, categories with
/// layers only: `[("convolution / linear", …), ("attention", …)]`.
pub fn macs_by_category(a: &Analysis) -> Vec<(Category, u64)> {
    Category::ALL
        .iter()
        .filter(|&&c| a.layers.iter().any(|l| l.category == c))
        .map(|&c| {
            let sum = a
                .layers
                .iter()
                .filter(|l| l.category == c)
                .fold(0u64, |s, l| s.saturating_add(l.macs));
            (c, sum)
        })
        .collect()
}

/// Heads as `12 × 64` (heads × head size).
fn heads_text(s: &AttentionSplit) -> String {
    format!("{} × {}", s.heads, s.head_dim)
}

/// Queries × keys per head, `197×197`, with the windows per sample of a windowed attention
/// (`64 windows × 49×49`).
fn tokens_text(s: &AttentionSplit) -> String {
    if s.windows > 1 {
        format!("{} windows × {}×{}", s.windows, s.queries, s.keys)
    } else {
        format!("{}×{}", s.queries, s.keys)
    }
}

/// The attention layers, one row each: heads × head size, queries × keys, and the layer's
/// MACs by product (`None`: the model has none).
fn attention_table(a: &Analysis, markdown: bool) -> Option<TextTable> {
    let layers: Vec<(&LayerStats, AttentionSplit)> = a
        .layers
        .iter()
        .filter_map(|l| l.attention.map(|s| (l, s)))
        .collect();
    if layers.is_empty() {
        return None;
    }
    let other = layers.iter().any(|(_, s)| s.other > 0);
    let mut t = new_table(markdown);
    let mut head = vec![
        "Attention".to_string(),
        "Heads × size".into(),
        "Queries × keys".into(),
        "Projections".into(),
        "Q·Kᵀ".into(),
        "Attention·V".into(),
    ];
    if other {
        head.push("Bias MLP".into());
    }
    t.set_header(head);
    let count = |v: u64| {
        Cell::new(if v == 0 { "-".into() } else { human_count(v) })
            .set_alignment(CellAlignment::Right)
    };
    for (l, s) in layers {
        let mut row = vec![
            text_cell(&l.name, markdown),
            Cell::new(heads_text(&s)).set_alignment(CellAlignment::Right),
            Cell::new(tokens_text(&s)).set_alignment(CellAlignment::Right),
            count(s.projections),
            count(s.scores),
            count(s.values),
        ];
        if other {
            row.push(count(s.other));
        }
        t.add_row(row);
    }
    Some(t)
}

fn totals_table(a: &Analysis, markdown: bool) -> TextTable {
    let mut t = new_table(markdown);
    t.set_header(vec!["Total", "", "exact"]);
    for (k, h, e) in totals_lines(a) {
        t.add_row(vec![
            Cell::new(k),
            Cell::new(h).set_alignment(CellAlignment::Right),
            Cell::new(e).set_alignment(CellAlignment::Right),
        ]);
    }
    t
}

/// Renders the summary of one analysis.
pub fn summary(a: &Analysis, format: Format, depth: Option<usize>) -> String {
    match format {
        Format::Table => format!(
            "{}\n{}\n{}{}\n",
            header(a),
            layer_table(a, depth, false),
            attention_table(a, false)
                .map(|t| format!("{t}\n"))
                .unwrap_or_default(),
            totals_table(a, false)
        ),
        Format::Markdown => format!(
            "**{}**\n\n{}\n\n{}{}\n",
            markdown_text(&header(a)),
            layer_table(a, depth, true),
            attention_table(a, true)
                .map(|t| format!("{t}\n\n"))
                .unwrap_or_default(),
            totals_table(a, true)
        ),
        Format::Csv => csv(a, depth),
        Format::Json => {
            let mut v = json(a);
            // `--depth` folds the per-layer listing in every format; JSON keeps every layer
            // under `layers` and adds the folded rows.
            if depth.is_some() {
                v["rows"] = rows(a, depth)
                    .iter()
                    .map(|r| {
                        json!({
                            "name": r.name,
                            "label": r.op,
                            "layers": r.layers,
                            "output": r.output,
                            "params": r.params,
                            "macs": r.macs,
                            "flops": r.flops,
                            "activation_bytes": r.activation_bytes,
                            "rf": rf_json(&a.layers.iter().find(|l| l.name == r.last).and_then(|l| l.rf.clone())),
                        })
                    })
                    .collect();
            }
            serde_json::to_string_pretty(&v).expect("serialisable") + "\n"
        }
    }
}

/// A sweep: one row of totals per analysis (the same model at several input sizes and
/// batches), so that cost and memory can be read against the setting. JSON: an array of
/// `{model, input, dtype, convention, totals}`.
pub fn sweep(analyses: &[Analysis], format: Format) -> String {
    if format == Format::Json {
        let v: Vec<Value> = analyses
            .iter()
            .map(|a| {
                json!({
                    "model": a.model,
                    "input": a.inputs.first().map(|s| s.0.clone()).unwrap_or_default(),
                    "dtype": a.dtype,
                    "convention": a.convention,
                    "totals": a.totals,
                })
            })
            .collect();
        return serde_json::to_string_pretty(&v).expect("serialisable") + "\n";
    }
    let setting = |a: &Analysis| {
        let s = a.inputs.first().cloned().unwrap_or(Shape(vec![]));
        (s.per_sample(), s.0.first().copied().unwrap_or(1))
    };
    if format == Format::Csv {
        let mut out = String::from("model,input,batch,params,macs,flops,param_bytes,activation_bytes,peak_activation_bytes\n");
        for a in analyses {
            let (input, batch) = setting(a);
            let t = &a.totals;
            out += &format!(
                "{},{},{batch},{},{},{},{},{},{}\n",
                csv_field(&a.model),
                input.replace('×', "x"),
                t.params,
                t.macs,
                t.flops,
                t.param_bytes,
                t.activation_bytes,
                t.peak_activation_bytes
            );
        }
        return out;
    }
    let markdown = format == Format::Markdown;
    let mut t = new_table(markdown);
    let Some(first) = analyses.first() else {
        return String::new();
    };
    let dt = format!("{:?}", first.dtype).to_lowercase();
    t.set_header(vec![
        "Input".to_string(),
        "Batch".into(),
        "Params".into(),
        macs_label(first),
        "FLOPs".into(),
        format!("Param mem ({dt})"),
        format!("Activations ({dt})"),
        format!("Peak act. mem ({dt})"),
        "MACs ×".into(),
        "Peak ×".into(),
    ]);
    let base = &first.totals;
    let x = |a: u64, b: u64| {
        if b == 0 {
            "-".to_string()
        } else {
            format!("{:.2}", a as f64 / b as f64)
        }
    };
    for a in analyses {
        let (input, batch) = setting(a);
        let r = &a.totals;
        let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
        t.add_row(vec![
            Cell::new(input),
            right(batch.to_string()),
            right(human_count(r.params)),
            right(human_count(r.macs)),
            right(human_count(r.flops)),
            right(human_bytes(r.param_bytes)),
            right(human_bytes(r.activation_bytes)),
            right(human_bytes(r.peak_activation_bytes)),
            right(x(r.macs, base.macs)),
            right(x(r.peak_activation_bytes, base.peak_activation_bytes)),
        ]);
    }
    let title = format!(
        "{}: {} settings (ratios to the first)",
        first.model,
        analyses.len()
    );
    if markdown {
        format!("**{}**\n\n{t}\n", markdown_text(&title))
    } else {
        format!("{title}\n{t}\n")
    }
}

/// A CSV field (RFC 4180): quoted, with quotes doubled, when it holds a comma, a quote or a
/// line break. Every CSV output writes its text fields through it.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A rational as a CSV number: `427`, or a decimal (`-3.5`) for a fraction.
fn q_csv(v: &Q) -> String {
    if v.is_integer() {
        v.numer().to_string()
    } else {
        q_f64(v).to_string()
    }
}

/// The receptive-field columns of a CSV row, one size per axis then `rf_aligned`
/// (`rf_height,rf_width,rf_aligned` for an image model): numbers and `true`/`false`, all
/// empty for a global field. `columns` axes are written, the sizes right-aligned in them (a
/// 1-D field in two columns fills the last, `rf_width`; the first stays empty).
pub fn rf_csv(size: Option<&[Q]>, aligned: bool, columns: usize) -> String {
    match size {
        None => ",".repeat(columns),
        Some(v) => {
            let mut cells = vec![String::new(); columns.saturating_sub(v.len())];
            cells.extend(v.iter().map(q_csv));
            format!("{},{aligned}", cells.join(","))
        }
    }
}

/// The CSV header names of `rank` per-axis columns: `{prefix}_height,{prefix}_width`,
/// `{prefix}_length`, `{prefix}_depth,{prefix}_height,{prefix}_width`.
pub fn axis_columns(prefix: &str, rank: usize) -> String {
    (0..rank)
        .map(|ax| format!("{prefix}_{}", crate::geometry::axis_name(rank, ax)))
        .collect::<Vec<_>>()
        .join(",")
}

fn field_csv(f: &Option<Field>, rank: usize) -> String {
    match f {
        None => rf_csv(None, true, rank),
        Some(f) => rf_csv(
            Some(&f.axes.iter().map(|a| a.size).collect::<Vec<_>>()),
            f.aligned,
            rank,
        ),
    }
}

/// Text for HTML content, attribute values and Graphviz's HTML-like labels: `&`, `<`, `>`,
/// `"` and `'` as entities. The report page and the diagrams escape through it.
pub fn html_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Text for Markdown output (a table cell or a title): `|` would end the cell and `\` escape
/// what follows, so both are escaped. Every Markdown output writes its text through it.
pub fn markdown_text(s: &str) -> String {
    if s.contains(['|', '\\']) {
        s.replace('\\', "\\\\").replace('|', "\\|")
    } else {
        s.to_string()
    }
}

/// A table cell of text: escaped for Markdown when the table is Markdown.
pub fn text_cell(s: &str, markdown: bool) -> Cell {
    Cell::new(if markdown {
        markdown_text(s)
    } else {
        s.to_string()
    })
}

/// The summary as CSV: one row per layer (or per folded group with `--depth`), then a totals
/// row with an empty `layer`, op `total` and the model's outputs.
fn csv(a: &Analysis, depth: Option<usize>) -> String {
    let rank = field_rank(a);
    let mut out = format!(
        "layer,op,output,params,macs,flops,activation_bytes,{},rf_aligned\n",
        axis_columns("rf", rank)
    );
    let by_name: std::collections::HashMap<&str, &LayerStats> =
        a.layers.iter().map(|l| (l.name.as_str(), l)).collect();
    for r in rows(a, depth) {
        out += &format!(
            "{},{},{},{},{},{},{},{}\n",
            csv_field(&r.name),
            csv_field(&r.op),
            csv_field(&r.output),
            r.params,
            r.macs,
            r.flops,
            r.activation_bytes,
            field_csv(
                &by_name.get(r.last.as_str()).and_then(|l| l.rf.clone()),
                rank
            )
        );
    }
    let t = &a.totals;
    let outputs: Vec<String> = a.outputs.iter().map(|(_, s)| s.per_sample()).collect();
    out += &format!(
        ",total,{},{},{},{},{},{}\n",
        csv_field(&outputs.join(", ")),
        t.params,
        t.macs,
        t.flops,
        t.activation_bytes,
        ",".repeat(rank)
    );
    out
}

/// The JSON document of a summary (stable keys: more may be added, none renamed).
pub fn json(a: &Analysis) -> Value {
    let layers: Vec<Value> = a
        .layers
        .iter()
        .map(|l| {
            let mut v = json!({
                "name": l.name,
                "op": l.op,
                "label": l.label,
                "inputs": l.inputs,
                "output": l.outputs[0].0,
                "params": l.params.total(),
                "trainable": l.params.trainable,
                "buffers": l.params.buffers,
                "macs": l.macs,
                "flops": l.flops,
                "activation_bytes": l.activation_bytes,
                "rf": rf_json(&l.rf),
            });
            if l.outputs.len() > 1 {
                v["outputs"] = json!(l.outputs.iter().map(|s| s.0.clone()).collect::<Vec<_>>());
            }
            if let Some((path, block)) = l.blocks.last() {
                v["block"] = json!({"instance": path, "block": block});
            }
            if let Some(s) = &l.attention {
                v["attention"] = json!(s);
            }
            v
        })
        .collect();
    let mut v = json!({
        "model": a.model,
        "input": a.inputs.first().map(|s| s.0.clone()).unwrap_or_default(),
        "inputs": a.inputs.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
        "dtype": a.dtype,
        "convention": a.convention,
        "layers": layers,
        "outputs": a.outputs.iter().map(|(n, s)| json!({"name": n, "shape": s.0})).collect::<Vec<_>>(),
        "totals": a.totals,
    });
    // Only for a model that reads tokens (see `Analysis::per_token`).
    if let Some(p) = a.per_token() {
        v["per_token"] = json!(p);
    }
    v["macs_by_category"] = macs_by_category(a)
        .into_iter()
        .map(|(c, m)| (c.legend().to_string(), json!(m)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    // Only for a model with attention layers: their MACs by product (torchvision convention).
    if let Some(sum) = attention_totals(a) {
        v["attention_macs"] = json!({
            "projections": sum.projections,
            "scores": sum.scores,
            "values": sum.values,
            "other": sum.other,
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(human_count(999), "999");
        assert_eq!(human_count(25_557_032), "25.56 M");
        assert_eq!(human_count(4_089_184_256), "4.09 G");
        assert_eq!(human_count(2_835_645_759_728_851_680), "2.84 E");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.00 MiB");
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix("layer1.0.conv1.bn", 1), "layer1");
        assert_eq!(prefix("layer1.0.conv1.bn", 2), "layer1.0");
        assert_eq!(prefix("fc", 2), "fc");
    }
}

/// What the input size means for the fields: where they first cover the input, and which
/// layers come after that point (they cannot see more of it).
#[derive(Debug, Clone)]
pub struct Coverage {
    /// The first input's spatial sizes (height and width of an image; empty without).
    pub input: Vec<u64>,
    /// The last layer (not a model input) with a spatial field: the trunk's output; `None`
    /// when the model has no spatial layer (an MLP).
    pub last: Option<usize>,
    /// The first layer whose field covers the whole input on both axes.
    pub covers_from: Option<usize>,
    /// Spatial layers after `covers_from`.
    pub unproductive: Vec<usize>,
}

/// Coverage of the first input by the fields of `a`.
pub fn coverage(a: &Analysis) -> Coverage {
    let input = input_axes(a);
    // Every unit sees the whole input: a windowed field's smallest unit does.
    let covers = |f: &Field| {
        f.axes.len() == input.len()
            && f.axes.iter().zip(&input).all(|(ax, &n)| {
                (if f.windowed { ax.min_size } else { ax.size }) >= Q::from(n as i64)
            })
    };
    // Model inputs are not layers of the trunk: a model whose only spatial tensor is its input
    // (an MLP on an image) has no trunk field.
    let trunk = |l: &LayerStats| !l.inputs.is_empty();
    let last = a.layers.iter().rposition(|l| trunk(l) && l.rf.is_some());
    let covers_from = a
        .layers
        .iter()
        .position(|l| trunk(l) && l.rf.as_ref().is_some_and(covers));
    let unproductive = match covers_from {
        Some(c) => (c + 1..a.layers.len())
            .filter(|&i| a.layers[i].rf.is_some())
            .collect(),
        None => Vec::new(),
    };
    Coverage {
        input,
        last,
        covers_from,
        unproductive,
    }
}

/// The note of `archscope rf` on layer `i`: misalignment, global context, coverage.
/// A windowed field's spread over the units: "units see 30×30 to 35×35", or "every unit sees
/// 224×224" where the windows no longer make a difference.
fn unit_span(f: &Field) -> String {
    let (least, most) = (field_q(f, |a| a.min_size), field_q(f, |a| a.size));
    if least == most {
        format!("every unit sees {most}")
    } else {
        format!("units see {least} to {most}")
    }
}

fn rf_note(l: &LayerStats, i: usize, cov: &Coverage) -> String {
    let mut note = Vec::new();
    if let Some(f) = &l.rf {
        if let Some(m) = &f.misalignment {
            note.push(format!("not aligned: {m}"));
        }
        if f.global_context {
            note.push("+ global context".to_string());
        }
        if f.whole {
            note.push("whole input (global token mixing)".to_string());
        }
        if f.windowed {
            note.push(format!("window-dependent: {}", unit_span(f)));
        }
    }
    if Some(i) == cov.covers_from {
        note.push("covers the input".into());
    } else if cov.unproductive.contains(&i) {
        note.push("sees no more".into());
    }
    note.join("; ")
}

/// `archscope rf --format csv`: one row per layer, each figure per axis in its own column
/// (numbers; empty for a global field).
fn rf_csv_report(a: &Analysis, cov: &Coverage) -> String {
    let rank = field_rank(a);
    let mut out = String::from("layer,op,output,");
    for fig in ["size", "jump", "start", "effective_padding", "min_size"] {
        out += &axis_columns(fig, rank);
        out.push(',');
    }
    out += "aligned,global_context,note\n";
    for (i, l) in a.layers.iter().enumerate() {
        out += &format!(
            "{},{},{},",
            csv_field(&l.name),
            csv_field(&l.label),
            csv_field(&output_text(&l.outputs, &l.out_layouts))
        );
        match &l.rf {
            Some(f) if f.axes.len() == rank => {
                let figs: [fn(&crate::receptive::Axis) -> Q; 5] = [
                    |a| a.size,
                    |a| a.jump,
                    |a| a.start,
                    |a| a.effective_padding(),
                    |a| a.min_size,
                ];
                for g in figs {
                    for ax in &f.axes {
                        out += &format!("{},", q_csv(&g(ax)));
                    }
                }
                out += &format!("{},{},", f.aligned, f.global_context);
            }
            _ => out += &",".repeat(5 * rank + 2),
        }
        out += &csv_field(&rf_note(l, i, cov));
        out.push('\n');
    }
    out
}

/// The `archscope rf` report.
pub fn rf_report(a: &Analysis, format: Format) -> String {
    let cov = coverage(a);
    if format == Format::Json {
        let layers: Vec<Value> = a
            .layers
            .iter()
            .map(|l| json!({"name": l.name, "op": l.op, "output": l.outputs[0].0, "rf": rf_json(&l.rf)}))
            .collect();
        let name = |i: Option<usize>| i.map(|i| json!(a.layers[i].name)).unwrap_or(Value::Null);
        let v = json!({
            "model": a.model,
            "input": a.inputs.first().map(|s| s.0.clone()).unwrap_or_default(),
            "layers": layers,
            "final": cov.last.map(|i| json!({"name": a.layers[i].name, "rf": rf_json(&a.layers[i].rf)})).unwrap_or(Value::Null),
            "covers_input_from": name(cov.covers_from),
            "unproductive": cov.unproductive.iter().map(|&i| a.layers[i].name.clone()).collect::<Vec<_>>(),
        });
        return serde_json::to_string_pretty(&v).expect("serialisable") + "\n";
    }
    if format == Format::Csv {
        return rf_csv_report(a, &cov);
    }
    let markdown = format == Format::Markdown;
    let mut t = new_table(markdown);
    t.set_header(vec![
        "Layer",
        "Op",
        "Output",
        "Size",
        "Jump",
        "Start",
        "Eff. padding",
        "Min size",
        "Note",
    ]);
    for (i, l) in a.layers.iter().enumerate() {
        let mut cells = vec![
            l.name.clone(),
            l.label.clone(),
            output_text(&l.outputs, &l.out_layouts),
        ];
        match &l.rf {
            None => cells.extend(["global".into(), "".into(), "".into(), "".into(), "".into()]),
            Some(f) if f.whole => cells.extend([
                "whole input".into(),
                field_q(f, |a| a.jump),
                "".into(),
                "".into(),
                "".into(),
            ]),
            Some(f) if f.windowed => cells.extend([
                field_q(f, |a| a.size),
                field_q(f, |a| a.jump),
                "per unit".into(),
                "".into(),
                field_q(f, |a| a.min_size),
            ]),
            Some(f) => {
                cells.push(field_q(f, |a| a.size));
                cells.push(field_q(f, |a| a.jump));
                cells.push(field_q(f, |a| a.start));
                cells.push(field_q(f, |a| a.effective_padding()));
                cells.push(field_q(f, |a| a.min_size));
            }
        }
        cells.push(rf_note(l, i, &cov));
        t.add_row(cells);
    }
    let mut out = format!("{}\n{t}\n", header(a));
    let dims = cov
        .input
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×");
    if let (Some(i), Some(&ih)) = (cov.last, cov.input.first()) {
        let l = &a.layers[i];
        let f = l.rf.as_ref().expect("has a field");
        let h = &f.axes[0];
        // The first axis: the height of an image, the depth (frames) of a video, the length
        // of a signal.
        let axis = crate::geometry::axis_name(cov.input.len(), 0);
        let covers = f.axes.len() == cov.input.len()
            && f.axes
                .iter()
                .zip(&cov.input)
                .all(|(ax, &n)| ax.size >= Q::from(n as i64));
        if f.whole {
            out += &format!(
                "Final field (`{}`): the whole {dims} input — a layer before it mixes the tokens globally (self-attention); jump {}.\n",
                l.name,
                field_q(f, |a| a.jump),
            );
        } else if f.windowed {
            out += &format!(
                "Final field (`{}`): window-dependent, {} of the {dims} input (jump {}).\n",
                l.name,
                unit_span(f),
                field_q(f, |a| a.jump),
            );
        } else {
            out += &format!(
                "Final field (`{}`): size {}, jump {}, start {} — {} the {dims} input.\n",
                l.name,
                field_q(f, |a| a.size),
                field_q(f, |a| a.jump),
                field_q(f, |a| a.start),
                if covers {
                    format!("{:.1}× the {axis} of", q_f64(&h.size) / ih as f64)
                } else {
                    format!(
                        "{:.0}% of the {axis} of",
                        100.0 * q_f64(&h.size) / ih as f64
                    )
                }
            );
        }
    }
    match cov.covers_from {
        Some(c) => {
            out += &format!(
                "From `{}` on, every unit sees the whole {dims} input: the {} later spatial layers cannot see more of it at this resolution.\n",
                a.layers[c].name,
                cov.unproductive.len()
            );
        }
        None if !cov.input.is_empty() => {
            out += &format!("No layer's field covers the whole {dims} input.\n")
        }
        None => {}
    }
    out
}
