//! Windowed attention in ONNX files, read back into archscope layers (a child module of the
//! reader, `impl Reader` blocks): Swin's `shifted_window_attention` (V1 and V2), MaxViT's
//! `relative_position_attention` and its `window_partition` / `window_departition` (a
//! `Reshape`, a six-axis `Transpose`, a `Reshape`), as `archscope export` writes them. Each such layer is some
//! twenty to sixty nodes (the roll, the windows, `qkv`, the heads, Q·Kᵀ, the relative-position
//! bias — an integer `relative_position_index` buffer cast and gathering rows of the bias table
//! or of V2's `cpb_mlp` output —, the shifted windows' mask, `Softmax`, ·V, `proj`, the windows
//! merged). In a file `archscope export` wrote (`producer_name` "archscope"), a region is the
//! set of nodes named after one layer path `S` (`S` or `S/Op_k`, the exporter's names) of
//! which one reads a tensor named `….relative_position_index`, or that have a partition's
//! three-node form (one that matches no partition is given back to the node-by-node reading).
//! Bounded: [`MAX_WINDOW_TOKENS`] per window, [`MAX_CANDIDATES`] candidates per region.
//!
//! The region is read by exact comparison with the layer's own ONNX form: the candidate layers
//! its weights' shapes allow (heads from the bias table or the `cpb_mlp` output, the window
//! from the index's size, the shifts from the roll's `Slice` starts, biases from the weights
//! present) are each built on the region's input shape and written by the layer's own
//! `Kernel::onnx` (per-op facts stay with the op, `src/layers/`); the file's nodes must be the
//! same operators in the same order, with the same attributes, the same constants, the same
//! data flow (each input the same earlier output, weight or the one computed input), and one
//! output read outside, the layer's. The first candidate that matches is the layer; when none
//! does, the error names the first file node where the closest candidate differs and what it
//! expected there. Weights go to the layer by the position they take in its form, so `run`
//! computes what the file computes.

use std::collections::{HashMap, HashSet};

use super::{list, sanitize, Reader, Val};

// Swin's attention as torch.onnx.export writes it.
#[path = "swin_traced.rs"]
mod traced;
// MaxViT's attention as torch.onnx.export writes it (calls `traced`'s checks).
#[path = "maxvit_traced.rs"]
mod maxvit_traced;
use crate::error::{excerpt, Diagnostic};
use crate::onnx::proto::{self, AttributeProto, GraphProto, ModelProto, NodeProto};

/// The weight whose reading marks a region (the layers' own name for their index buffer).
const ANCHOR: &str = "relative_position_index";

/// Most tokens in one window (or MaxViT partition) a region may have: each candidate layer
/// holds its L×L index (1024: 4 MiB), and real windows are far smaller (Swin's 7×7 and 8×8 to
/// V2's 24×24, MaxViT's 7×7).
pub const MAX_WINDOW_TOKENS: u64 = 1024;
/// Most candidate layers tried for one region (window shapes × shifts, partition sizes).
pub const MAX_CANDIDATES: usize = 256;

const HELP: &str = "archscope reads Swin's shifted-window attention and MaxViT's relative-position attention as `archscope export` writes them (docs/ONNX.md \"Windowed attention\"); describe a changed attention in archscope YAML (docs/FORMAT.md) and export it from there";

/// The windowed-attention layers of a graph, found before its nodes are read.
#[derive(Debug, Default)]
pub(super) struct Windows {
    /// Per region (in order of first node): its layer path and node indices.
    list: Vec<(String, Vec<usize>)>,
    /// Node index → its region.
    of: HashMap<usize, usize>,
    /// Per region: the node at which it is read (the first of its nodes after every node
    /// outside it that produces one of its inputs).
    trigger: Vec<usize>,
    /// Graph inputs read by a region's nodes (weights of a graph-only export).
    pub(super) inputs: HashSet<String>,
    /// Per region: whether it has the index buffer (else a partition's form only, which
    /// other layers may share: one that matches no partition is read node by node).
    anchored: Vec<bool>,
    /// Regions given back to the node-by-node reading.
    released: HashSet<usize>,
    /// Per region: whether it is torch.onnx.export's form (`swin_traced.rs`).
    traced: Vec<bool>,
    /// The traced regions that are MaxViT's attention (`maxvit_traced.rs`).
    maxvit: HashSet<usize>,
}

/// The layer path of a node named by `archscope export` (`S` or `S/Op_k`); `None` for other
/// exporters' names (TorchScript's `/a/b/Op`, dynamo's metadata).
pub(super) fn layer_path(n: &NodeProto) -> Option<&str> {
    if n.metadata_props
        .iter()
        .any(|p| p.key.as_deref() == Some("namespace"))
    {
        return None;
    }
    let name = n.name.as_deref()?;
    if name.starts_with('/') {
        return None;
    }
    let head = name.split('/').next().unwrap_or("");
    (!head.is_empty()).then_some(head)
}

fn is_anchor(t: &str) -> bool {
    t == ANCHOR || t.ends_with(&format!(".{ANCHOR}"))
}

/// Finds the windowed-attention regions of `g`; only in a file `archscope export` wrote
/// (`producer_name` "archscope"), whose node names are layer paths: another exporter's names
/// (`Identity_624`) say nothing of the layer.
pub(super) fn find(g: &GraphProto, archscope: bool) -> Windows {
    let mut w = Windows::default();
    if !archscope {
        for (p, nodes) in traced::find(g) {
            for &i in &nodes {
                w.of.insert(i, w.list.len());
            }
            w.list.push((p, nodes));
            w.anchored.push(true);
            w.traced.push(true);
        }
        for (p, nodes) in maxvit_traced::find(g) {
            if nodes.iter().any(|i| w.of.contains_key(i)) {
                continue;
            }
            for &i in &nodes {
                w.of.insert(i, w.list.len());
            }
            w.maxvit.insert(w.list.len());
            w.list.push((p, nodes));
            w.anchored.push(true);
            w.traced.push(true);
        }
        return triggers(g, w);
    }
    // Every layer path's nodes, in order; the regions are those that read the index buffer or
    // have a window partition's form (`Reshape`, a 6-axis `Transpose`, `Reshape`).
    let mut scopes: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        let Some(p) = layer_path(n) else { continue };
        let k = *at.entry(p).or_insert_with(|| {
            scopes.push((p, Vec::new()));
            scopes.len() - 1
        });
        scopes[k].1.push(i);
    }
    let op = |i: usize| g.node[i].op_type.as_deref().unwrap_or("");
    for (p, nodes) in scopes {
        let anchored = nodes
            .iter()
            .any(|&i| g.node[i].input.iter().any(|x| is_anchor(x)));
        let partition = matches!(nodes.as_slice(), [a, b, c]
            if op(*a) == "Reshape" && op(*b) == "Transpose" && op(*c) == "Reshape"
                && super::attr_ints(&g.node[*b], "perm").is_some_and(|v| v.len() == 6));
        if !anchored && !partition {
            continue;
        }
        for &i in &nodes {
            w.of.insert(i, w.list.len());
        }
        w.list.push((p.to_string(), nodes));
        w.anchored.push(anchored);
        w.traced.push(false);
    }
    triggers(g, w)
}

/// Each region's trigger node, and the graph inputs its nodes read.
fn triggers(g: &GraphProto, mut w: Windows) -> Windows {
    if w.list.is_empty() {
        return w;
    }
    let producer = super::attention::producers(g);
    let graph_inputs: HashSet<&str> = g.input.iter().filter_map(|v| v.name.as_deref()).collect();
    for (k, (_, nodes)) in w.list.iter().enumerate() {
        let t = super::attention::trigger(g, &producer, nodes, |p| w.of.get(&p) == Some(&k));
        w.trigger.push(t);
        for &i in nodes {
            for x in &g.node[i].input {
                if graph_inputs.contains(x.as_str()) {
                    w.inputs.insert(x.clone());
                }
            }
        }
    }
    // The first graph input is the data, never a weight.
    if let Some(first) = g.input.first().and_then(|v| v.name.as_deref()) {
        w.inputs.remove(first);
    }
    w
}

/// One attribute as comparable text (name, type and value).
fn attr_key(a: &AttributeProto) -> String {
    format!(
        "{}:{:?}:{:?}:{:?}:{:?}:{:?}:{:?}",
        a.name.as_deref().unwrap_or(""),
        a.r#type,
        a.i,
        a.f.map(f32::to_bits),
        a.s,
        a.ints,
        a.floats.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
    )
}

fn attrs_text(n: &NodeProto) -> String {
    let v: Vec<String> = n
        .attribute
        .iter()
        .map(|a| {
            let name = a.name.as_deref().unwrap_or("");
            if !a.ints.is_empty() {
                format!("{name} {:?}", a.ints)
            } else if let Some(i) = a.i {
                format!("{name} {i}")
            } else if let Some(f) = a.f {
                format!("{name} {f}")
            } else if let Some(s) = &a.s {
                format!("{name} {}", String::from_utf8_lossy(s))
            } else {
                name.to_string()
            }
        })
        .collect();
    if v.is_empty() {
        String::new()
    } else {
        format!(" ({})", v.join(", "))
    }
}

/// A candidate layer, written as archscope exports it.
struct Candidate {
    /// The one-layer network (`attn`, after a permute when it reads channels last).
    net: crate::graph::Network,
    /// The YAML body (`op: …, …`, without `in:`).
    body: String,
    /// Its exported one-layer model.
    model: ModelProto,
    /// Its output's shape (batch included).
    out: Vec<u64>,
}

/// How far a candidate's form matched: the region position where it stopped and why.
struct Miss {
    at: usize,
    why: String,
}

/// A candidate's nodes matched: per weight slot (its name in the layer), the file tensor.
type Matched = Vec<(String, String)>;

/// Divisor pairs (a, b) with a·b = l, by ascending a (at most 2·√l steps: l ≤ 2^40).
fn pairs(l: u64) -> Vec<[u64; 2]> {
    let mut low = Vec::new();
    let mut a = 1u64;
    while a.saturating_mul(a) <= l {
        if l.is_multiple_of(a) {
            low.push(a);
        }
        a += 1;
    }
    let mut out: Vec<[u64; 2]> = low.iter().map(|&a| [a, l / a]).collect();
    out.extend(
        low.iter()
            .rev()
            .filter(|&&a| a * a != l)
            .map(|&a| [l / a, a]),
    );
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The integer square root of `v`, when `v` is a square.
fn isqrt(v: u64) -> Option<u64> {
    let r = (v as f64).sqrt().round() as u64;
    (r.checked_mul(r) == Some(v)).then_some(r)
}

/// Notes the computed input `x` (reference `r`, shape `shape`) of a windowed region, which
/// reads one tensor: a second one is the error's message. Shared with `swin_traced.rs`.
fn one_data_input(
    data: &mut Option<(String, String, Vec<u64>)>,
    x: &str,
    r: &str,
    shape: &[u64],
) -> Result<(), String> {
    match data {
        Some((name, _, _)) if name != x => Err(format!(
            "a second computed input `{}` (besides `{}`): the layer reads one tensor",
            excerpt(x),
            excerpt(name)
        )),
        Some(_) => Ok(()),
        None => {
            *data = Some((x.to_string(), r.to_string(), shape.to_vec()));
            Ok(())
        }
    }
}

/// The one tensor of `outs` (from `read_outside`) a windowed region gives, with the node that
/// computes it; otherwise the node to point at and the error's message. Shared with
/// `swin_traced.rs`.
fn one_output(
    nodes: &[usize],
    outs: &[(usize, &str)],
    what: &str,
) -> Result<(String, usize), (usize, String)> {
    match outs {
        [(j, y)] => Ok((y.to_string(), *j)),
        [] => Err((
            *nodes.last().expect("a region has nodes"),
            format!("no {what}output is read outside the layer"),
        )),
        [_, (j, y), ..] => Err((
            *j,
            format!(
                "a second tensor `{}` is read outside the layer: it has one output",
                excerpt(y)
            ),
        )),
    }
}

impl<'a> Reader<'a> {
    /// Reads windowed-attention region `k` if node `i` is its trigger: `Ok(true)` when `i`
    /// belongs to a region, `Ok(false)` for any other node.
    pub(super) fn window_node(&mut self, i: usize) -> Result<bool, Diagnostic> {
        let Some(&k) = self.windows.of.get(&i) else {
            return Ok(false);
        };
        if self.windows.released.contains(&k) {
            return Ok(false);
        }
        if self.windows.traced[k] && i < self.windows.trigger[k] {
            // torch.onnx.export's region: what depends only on constants and shapes folds
            // as it comes (nodes outside the scope may read it before the region is read).
            let n = &self.graph.node[i];
            if n.input
                .iter()
                .all(|x| x.is_empty() || self.vals.contains_key(x))
            {
                self.fold(i, n)?;
            }
            return Ok(true);
        }
        if self.windows.trigger[k] == i {
            let (path, nodes) = self.windows.list[k].clone();
            if self.windows.maxvit.contains(&k) {
                self.maxvit_region(&path, &nodes)?;
                return Ok(true);
            }
            if self.windows.traced[k] {
                self.traced_region(&path, &nodes)?;
                return Ok(true);
            }
            match self.window_region(&path, &nodes) {
                Ok(()) => {}
                // A partition's form that is no partition (another layer written the same
                // way): its nodes are read one by one, as in any file.
                Err(_) if !self.windows.anchored[k] && nodes[0] == i => {
                    self.windows.released.insert(k);
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn win_err(&self, j: usize, path: &str, msg: impl Into<String>) -> Diagnostic {
        let n = &self.graph.node[j];
        self.err(
            j,
            n,
            format!(
                "in the windowed attention `{}` (read as one layer): {}",
                excerpt(path),
                msg.into()
            ),
        )
        .help(HELP)
    }

    /// Dims of a weight or constant tensor (`None`: computed, or unknown).
    fn held_dims(&self, t: &str) -> Option<Vec<u64>> {
        match self.vals.get(t)? {
            Val::Const { dims, .. } | Val::Shaped { dims } => Some(dims.clone()),
            Val::Act { .. } => None,
        }
    }

    /// The tensors the region's nodes compute that a node outside the region reads (or the
    /// graph outputs), with the node computing each, in node order: shared by archscope's own
    /// exports and the traced Swin regions (`swin_traced.rs`).
    fn read_outside(&self, nodes: &[usize]) -> Vec<(usize, &'a str)> {
        let g = self.graph;
        let mut inner: HashMap<&str, usize> = HashMap::new();
        for &j in nodes {
            for x in &g.node[j].input {
                *inner.entry(x.as_str()).or_default() += 1;
            }
        }
        let mut outs = Vec::new();
        for &j in nodes {
            for y in &g.node[j].output {
                let all = self.uses.get(y.as_str()).copied().unwrap_or(0);
                if all > inner.get(y.as_str()).copied().unwrap_or(0) {
                    outs.push((j, y.as_str()));
                }
            }
        }
        outs
    }

    fn window_region(&mut self, path: &str, nodes: &[usize]) -> Result<(), Diagnostic> {
        let g = self.graph;
        let made: HashSet<&str> = nodes
            .iter()
            .flat_map(|&j| g.node[j].output.iter().map(String::as_str))
            .collect();
        // The one computed input from outside.
        let mut data: Option<(String, String, Vec<u64>)> = None;
        for &j in nodes {
            for x in &g.node[j].input {
                if x.is_empty() || made.contains(x.as_str()) {
                    continue;
                }
                match self.vals.get(x) {
                    Some(Val::Act { r, shape }) => {
                        one_data_input(&mut data, x, r, shape).map_err(|m| self.win_err(j, path, m))?
                    }
                    Some(_) => {}
                    None => {
                        return Err(self.win_err(
                            j,
                            path,
                            format!("input `{}` is neither an initializer, a graph input nor an earlier node's output", excerpt(x)),
                        ))
                    }
                }
            }
        }
        let Some((xname, xref, xshape)) = data else {
            return Err(self.win_err(
                nodes[0],
                path,
                "no computed input: the layer reads one tensor",
            ));
        };
        // The one output read outside.
        let outs = self.read_outside(nodes);
        let (yname, last) =
            one_output(nodes, &outs, "").map_err(|(j, m)| self.win_err(j, path, m))?;
        let cands = self.window_candidates(path, nodes, &xshape)?;
        if cands.len() > MAX_CANDIDATES {
            return Err(self.win_err(
                nodes[0],
                path,
                format!(
                    "more layers fit its weights and input {} than the {MAX_CANDIDATES} archscope compares (window shapes × shifts)",
                    list(&xshape)
                ),
            ));
        }
        let mut best: Option<Miss> = None;
        for (body, last) in &cands {
            let cand = match self.build_candidate(body, &xshape, *last) {
                Ok(c) => c,
                Err(_) => continue,
            };
            match self.match_candidate(&cand, nodes, &xname, &yname) {
                Ok(weights) => return self.emit_window(path, nodes, &cand, &xref, &yname, weights),
                Err(m) => {
                    if best.as_ref().is_none_or(|b| m.at > b.at) {
                        best = Some(m);
                    }
                }
            }
        }
        match best {
            Some(m) => {
                let j = nodes[m.at.min(nodes.len() - 1)];
                Err(self.win_err(j, path, m.why))
            }
            None => Err(self.win_err(
                last,
                path,
                format!(
                    "no shifted_window_attention, relative_position_attention, window_partition or window_departition fits its weights and its input {}",
                    list(&xshape)
                ),
            )),
        }
    }

    /// The candidate layers the region's weights and input allow: YAML bodies, and whether
    /// the layer reads its input channels last (built after a permute).
    fn window_candidates(
        &mut self,
        path: &str,
        nodes: &[usize],
        xshape: &[u64],
    ) -> Result<Vec<(String, bool)>, Diagnostic> {
        let g = self.graph;
        // Weights read (by their name's last part) and the Slice starts (the roll's shifts).
        let mut held: HashMap<String, Vec<u64>> = HashMap::new();
        let mut shifts: Vec<u64> = vec![0];
        for &j in nodes {
            let n = &g.node[j];
            for x in &n.input {
                if let Some(d) = self.held_dims(x) {
                    for suffix in [
                        ANCHOR,
                        "relative_position_bias_table",
                        "cpb_mlp.2.weight",
                        "logit_scale",
                        "to_qkv.weight",
                        "qkv.bias",
                        "proj.bias",
                    ] {
                        if x == suffix || x.ends_with(&format!(".{suffix}")) {
                            // `to_qkv.weight` also ends in `qkv.weight`: the longest name wins.
                            held.entry(suffix.to_string()).or_insert(d.clone());
                        }
                    }
                }
            }
            if n.op_type.as_deref() == Some("Slice") {
                if let Some(Val::Const { data, .. }) = n.input.get(1).and_then(|s| self.vals.get(s))
                {
                    for &v in data {
                        if v > 0.0 && v.fract() == 0.0 && v < 1e9 && !shifts.contains(&(v as u64)) {
                            shifts.push(v as u64);
                        }
                    }
                }
            }
        }
        let mut out = Vec::new();
        if xshape.len() != 4 {
            return Ok(out);
        }
        let Some(index) = held.get(ANCHOR) else {
            // A window partition (N×C×H×W → N×G×P²×C) or departition (back), of any size
            // that divides the map or the groups.
            for [p, _] in pairs(gcd(xshape[2], xshape[3])) {
                out.push((format!("op: window_partition, size: {p}"), false));
            }
            if let Some(p) = isqrt(xshape[2]) {
                for [gh, gw] in pairs(xshape[1]) {
                    out.push((
                        format!("op: window_departition, size: {p}, grid: [{gh}, {gw}]"),
                        true,
                    ));
                }
            }
            return Ok(out);
        };
        let idx: u64 = index
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .unwrap_or(u64::MAX);
        let Some(l) = isqrt(idx) else { return Ok(out) };
        if l > MAX_WINDOW_TOKENS {
            let j = nodes
                .iter()
                .copied()
                .find(|&j| g.node[j].input.iter().any(|x| is_anchor(x)))
                .unwrap_or(nodes[0]);
            return Err(self.win_err(
                j,
                path,
                format!(
                    "its relative_position_index has {idx} entries: windows of {l} tokens, more than the {MAX_WINDOW_TOKENS} archscope reads"
                ),
            ));
        }
        let c = xshape[3];
        if held.contains_key("to_qkv.weight") {
            // MaxViT: heads from the table, a square partition.
            if let (Some(t), Some(s)) = (held.get("relative_position_bias_table"), isqrt(l)) {
                if let Some(&h) = t.get(1) {
                    if h > 0 && c.is_multiple_of(h) {
                        out.push((
                            format!(
                                "op: relative_position_attention, head_dim: {}, size: {s}",
                                c / h
                            ),
                            true,
                        ));
                    }
                }
            }
            return Ok(out);
        }
        let v2 = held.contains_key("logit_scale");
        let heads = if v2 {
            held.get("cpb_mlp.2.weight")
                .and_then(|d| d.first().copied())
        } else {
            held.get("relative_position_bias_table")
                .and_then(|d| d.get(1).copied())
        };
        let Some(heads) = heads.filter(|&h| h > 0) else {
            return Ok(out);
        };
        let (qb, pb) = (
            held.contains_key("qkv.bias"),
            held.contains_key("proj.bias"),
        );
        for [wh, ww] in pairs(l) {
            if !v2 {
                let rows = held
                    .get("relative_position_bias_table")
                    .and_then(|d| d.first().copied());
                if rows != Some((2 * wh - 1) * (2 * ww - 1)) {
                    continue;
                }
            }
            for &s0 in shifts.iter().filter(|&&s| s < wh) {
                for &s1 in shifts.iter().filter(|&&s| s < ww) {
                    out.push((format!(
                        "op: shifted_window_attention, heads: {heads}, window: [{wh}, {ww}], shift: [{s0}, {s1}], v2: {v2}, pad: true, qkv_bias: {qb}, proj_bias: {pb}"
                    ), true));
                    if out.len() > MAX_CANDIDATES {
                        // The caller refuses the region: no need to list the rest.
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Builds `body` as the one layer `attn` of a model on the input's shape and exports it.
    /// `last`: an N×A×B×C input, written C×A×B and permuted channels last (the layout the
    /// attention layers and the departition need); else the N×C×H×W map itself.
    fn build_candidate(
        &self,
        body: &str,
        xshape: &[u64],
        last: bool,
    ) -> Result<Candidate, Diagnostic> {
        let [n, a, b, c] = [xshape[0], xshape[1], xshape[2], xshape[3]];
        let yaml = if last {
            format!(
                "format: \"archscope/1\"\nname: probe\ninputs:\n  x: [{c}, {a}, {b}]\nnodes:\n  - {{id: last, op: permute, dims: [0, 2, 3, 1]}}\n  - {{id: attn, {body}}}\n"
            )
        } else {
            format!(
                "format: \"archscope/1\"\nname: probe\ninputs:\n  x: [{a}, {b}, {c}]\nnodes:\n  - {{id: attn, {body}}}\n"
            )
        };
        let doc = crate::yaml::Document::parse("probe", &yaml)?;
        let opts = crate::graph::BuildOptions {
            batch: n,
            ..Default::default()
        };
        let net = crate::graph::build_network(&doc, &opts).map_err(|e| (*e.0).clone())?;
        // The candidate's ONNX form is compared with archscope's own exports, written at an
        // opset archscope exports; a file of any other opset reads on (no match is a miss).
        let opset = u32::try_from(self.opset).unwrap_or(0).clamp(
            crate::layers::onnx::MIN_OPSET,
            crate::layers::onnx::MAX_OPSET,
        );
        let model = super::super::export::export(
            &net,
            None,
            super::super::export::ExportOptions { opset },
        )?;
        let o = &net.outputs[0];
        let out = net.nodes[o.node].out_shapes[o.slot].0.clone();
        let net = net;
        Ok(Candidate {
            net,
            body: body.to_string(),
            model,
            out,
        })
    }

    /// Compares the region's nodes with a candidate's (the nodes of its layer `attn`).
    fn match_candidate(
        &mut self,
        cand: &Candidate,
        nodes: &[usize],
        xname: &str,
        yname: &str,
    ) -> Result<Matched, Miss> {
        let g = self.graph;
        let cg = cand
            .model
            .graph
            .as_ref()
            .expect("an exported model has a graph");
        let mine = |n: &NodeProto| {
            let name = n.name.as_deref().unwrap_or("");
            name == "attn" || name.starts_with("attn/")
        };
        let cnodes: Vec<&NodeProto> = cg.node.iter().filter(|n| mine(n)).collect();
        let mut map: HashMap<String, String> = HashMap::new();
        if let Some(first) = cg.input.first().and_then(|v| v.name.clone()) {
            map.insert(first, xname.to_string());
        }
        for n in cg.node.iter().filter(|n| !mine(n)) {
            for y in &n.output {
                map.insert(y.clone(), xname.to_string());
            }
        }
        let weights: HashSet<&str> = cg
            .input
            .iter()
            .skip(1)
            .filter_map(|v| v.name.as_deref())
            .collect();
        let consts: HashMap<&str, &proto::TensorProto> = cg
            .initializer
            .iter()
            .map(|t| (t.name.as_deref().unwrap_or(""), t))
            .collect();
        let cdims = |name: &str| -> Option<Vec<u64>> {
            cg.input
                .iter()
                .find(|v| v.name.as_deref() == Some(name))
                .and_then(|v| {
                    super::value_dims(v).map(|d| d.iter().map(|x| x.unwrap_or(0)).collect())
                })
        };
        let mut matched: Matched = Vec::new();
        let mut taken: HashSet<String> = HashSet::new();
        let show =
            |n: &NodeProto| format!("`{}`{}", n.op_type.as_deref().unwrap_or(""), attrs_text(n));
        for k in 0..cnodes.len().max(nodes.len()) {
            let (Some(cn), Some(&j)) = (cnodes.get(k), nodes.get(k)) else {
                let why = if k < cnodes.len() {
                    format!(
                        "the layer's form continues with {} where the file's nodes of this layer end",
                        show(cnodes[k])
                    )
                } else {
                    format!(
                        "an extra node {} after the layer's form ended",
                        show(&g.node[nodes[k]])
                    )
                };
                return Err(Miss {
                    at: k.min(nodes.len().saturating_sub(1)),
                    why,
                });
            };
            let fnode = &g.node[j];
            if cn.op_type != fnode.op_type {
                return Err(Miss {
                    at: k,
                    why: format!(
                        "the layer's form has {} here, the file {}",
                        show(cn),
                        show(fnode)
                    ),
                });
            }
            let mut ca: Vec<String> = cn.attribute.iter().map(attr_key).collect();
            let mut fa: Vec<String> = fnode.attribute.iter().map(attr_key).collect();
            ca.sort();
            fa.sort();
            if ca != fa {
                return Err(Miss {
                    at: k,
                    why: format!(
                        "the layer's form has {} here, the file {}",
                        show(cn),
                        show(fnode)
                    ),
                });
            }
            if cn.input.len() != fnode.input.len() {
                return Err(Miss {
                    at: k,
                    why: format!(
                        "{} reads {} inputs here in the layer's form, {} in the file",
                        show(cn),
                        cn.input.len(),
                        fnode.input.len()
                    ),
                });
            }
            for (p, (c, f)) in cn.input.iter().zip(&fnode.input).enumerate() {
                let bad = |why: String| Miss {
                    at: k,
                    why: format!("input {p} (`{}`) of {}: {why}", excerpt(f), show(fnode)),
                };
                if c.is_empty() || f.is_empty() {
                    if c.is_empty() != f.is_empty() {
                        return Err(bad("present in one form and absent in the other".into()));
                    }
                    continue;
                }
                if let Some(m) = map.get(c) {
                    if m != f {
                        return Err(bad(format!("the layer's form reads `{}` here", excerpt(m))));
                    }
                    continue;
                }
                if weights.contains(c.as_str()) {
                    let want = cdims(c).unwrap_or_default();
                    let slot = c.strip_prefix("attn.").unwrap_or(c).to_string();
                    match self.held_dims(f) {
                        Some(d) if d == want && !taken.contains(f) => {}
                        Some(d) if d != want => {
                            return Err(bad(format!(
                                "the layer's weight `{slot}` has shape {} and this tensor {}",
                                list(&want),
                                list(&d)
                            )))
                        }
                        Some(_) => {
                            return Err(bad(format!(
                                "the tensor is already the layer's weight elsewhere, and `{slot}` is another"
                            )))
                        }
                        None => {
                            return Err(bad(format!(
                                "the layer's weight `{slot}` is read here, and this tensor is computed"
                            )))
                        }
                    }
                    taken.insert(f.clone());
                    map.insert(c.clone(), f.clone());
                    matched.push((slot, f.clone()));
                    continue;
                }
                if let Some(t) = consts.get(c.as_str()) {
                    let want = proto::tensor_to_f64(t).unwrap_or_default();
                    let wdims: Vec<u64> = t.dims.iter().map(|&d| d.max(0) as u64).collect();
                    let got = match self.vals.get(f) {
                        Some(Val::Const {
                            dims, data, init, ..
                        }) => {
                            let data = match init.as_deref().and_then(|nm| self.inits.get(nm)) {
                                Some(t) if data.is_empty() => {
                                    proto::tensor_to_f64(t).unwrap_or_default()
                                }
                                _ => data.clone(),
                            };
                            Some((dims.clone(), data))
                        }
                        _ => None,
                    };
                    let same = got.as_ref().is_some_and(|(d, v)| {
                        *d == wdims
                            && v.len() == want.len()
                            && v.iter().zip(&want).all(|(a, b)| (*a as f32) == (*b as f32))
                    });
                    if !same {
                        let shown: Vec<String> =
                            want.iter().take(8).map(|v| v.to_string()).collect();
                        return Err(bad(format!(
                            "the layer's form reads the constant {} of shape {} here",
                            if want.len() > 8 {
                                format!("[{}, …]", shown.join(", "))
                            } else {
                                format!("[{}]", shown.join(", "))
                            },
                            list(&wdims)
                        )));
                    }
                    map.insert(c.clone(), f.clone());
                    continue;
                }
                return Err(bad(format!("the layer's form reads `{}` here", excerpt(c))));
            }
            if cn.output.len() != fnode.output.len() {
                return Err(Miss {
                    at: k,
                    why: format!(
                        "{} has {} outputs in the layer's form, {} in the file",
                        show(cn),
                        cn.output.len(),
                        fnode.output.len()
                    ),
                });
            }
            for (c, f) in cn.output.iter().zip(&fnode.output) {
                map.insert(c.clone(), f.clone());
            }
        }
        let out = cg
            .output
            .first()
            .and_then(|v| v.name.as_deref())
            .unwrap_or("");
        if map.get(out).map(String::as_str) != Some(yname) {
            return Err(Miss {
                at: nodes.len() - 1,
                why: format!(
                    "the tensor read outside, `{}`, is not the layer's output",
                    excerpt(yname)
                ),
            });
        }
        Ok(matched)
    }

    /// Emits the matched layer and hands it its weights.
    fn emit_window(
        &mut self,
        path: &str,
        nodes: &[usize],
        cand: &Candidate,
        xref: &str,
        yname: &str,
        weights: Matched,
    ) -> Result<(), Diagnostic> {
        let g = self.graph;
        let id = self.fresh_id(&sanitize(path), "attention");
        self.yaml_nodes
            .push(format!("{{id: {id}, {}, in: {xref}}}", cand.body));
        self.origins.push(self.where_(nodes[0], &g.node[nodes[0]]));
        self.paths.push(Some(path.to_string()));
        for (slot, f) in weights {
            let Some(&j) = nodes.iter().find(|&&j| g.node[j].input.contains(&f)) else {
                continue;
            };
            let k = g.node[j]
                .input
                .iter()
                .position(|x| *x == f)
                .expect("found above");
            let (dims, data) = self
                .weight(j, &g.node[j], k)?
                .expect("a matched weight is present");
            self.put_weight(&id, &slot, &dims, data);
        }
        for &j in nodes {
            self.done.insert(j);
        }
        self.vals.insert(
            yname.to_string(),
            Val::Act {
                r: id,
                shape: cand.out.clone(),
            },
        );
        Ok(())
    }
}
