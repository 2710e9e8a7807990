//! Swin's shifted-window attention as `torch.onnx.export` (the TorchScript exporter) writes
//! it (a child module of `swin.rs`): torchvision's `shifted_window_attention` traced into a
//! few hundred nodes under the module's scope (`/features/features.1/features.1.0/attn/…`),
//! with the relative-position bias folded into one 1×heads×L×L constant (the bias table and
//! its index are gone from the file) and the shifted windows' mask computed at run time from
//! shapes (`ConstantOfShape`, `ScatterND`, `Equal`, `Where`, …).
//!
//! The dynamo exporter (`dynamo=True`) writes the same function with other node names
//! (`node_softmax`) but keeps each node's module path in its `namespace` metadata, which
//! serves as the scope; it also folds two of V2's weights: `exp(clamp(logit_scale))` (one
//! heads×1×1 constant: its logarithm is the layer's `logit_scale`) and the coordinates times
//! `cpb_mlp.0.weight` (recovered per candidate from the layer's own coordinates). A graph-only
//! TorchScript export holds neither the V1 table and index nor V2's buffer values: it is
//! refused with what the file shows and what it cannot.
//!
//! A region is the nodes under the scope of a `Softmax` that also hold a `Pad` and a `MatMul`
//! (torchvision's function always pads). It is read as one `shifted_window_attention` layer:
//! 1. every node is computed (`fold.rs`) on a seeded probe input of the region's input shape:
//!    the nodes that depend only on constants and shapes fold to constants (at most
//!    `MAX_FOLDED_ELEMENTS` each), the others carry the probe (at most [`MAX_PROBE_ELEMENTS`]
//!    per tensor);
//! 2. the weights are found by their place in the data flow: `qkv` (a `MatMul` by a C×3C
//!    constant and an `Add` of 3C), `proj` (C×C and C), the bias (the first constant of
//!    trailing L×L dims added to the logits: heads × L × L) and the mask (the second);
//! 3. each candidate layer (a window of L tokens, a shift among the roll's `Slice` starts) is
//!    built and checked in turn: the bias table is recovered from the folded constant through
//!    the layer's own `relative_position_index` (every table row is some position's; all
//!    positions sharing a row must hold the same value), the folded mask must equal the one the
//!    layer builds, and the layer run on the probe (its own kernel, `exec`) must give the
//!    region's output within [`PROBE_TOLERANCE`]. The first candidate that passes is the layer,
//!    with the file's weights and the recovered table; otherwise the error names the node where
//!    the candidate that got furthest failed (the bias's `Add`, the mask's `Add`, or the
//!    region's last node) and why.
//!
//! The V2 attention (`logit_scale`, the continuous position bias MLP) is read the same way:
//! its MLP stays in the file (computed with the region), its bias checked by the probe.

use std::collections::{HashMap, HashSet};

use super::super::fold::{self, T};
use super::{list, one_data_input, one_output, sanitize, Reader, Val};
use crate::error::{excerpt, Diagnostic};
use crate::onnx::proto::{self, GraphProto, NodeProto};
use crate::tensor::{Init, Tensor};

/// Most elements of one tensor computed on the probe input (swin_t's largest, the first
/// stage's qkv output at batch 1, is 3136 × 288 = 903,168).
pub const MAX_PROBE_ELEMENTS: usize = 1 << 22;
/// Largest difference allowed between the region's output on the probe input and the layer's,
/// relative to the largest magnitude of the region's output (at least 1).
pub const PROBE_TOLERANCE: f64 = 1e-4;

pub(super) const HELP: &str = "archscope reads torchvision's Swin attention as torch.onnx.export writes it (docs/ONNX.md \"Windowed attention\"); describe a changed attention in archscope YAML (docs/FORMAT.md)";

/// The module scope of a node: TorchScript's name (`/a/b/attn` of `/a/b/attn/Softmax`), or the
/// dynamo exporter's `namespace` metadata without its last step (`…/features.1.0.attn:
/// torchvision.models.swin_transformer.ShiftedWindowAttention` of `…/softmax:
/// aten.softmax.int`).
pub(super) fn scope(n: &NodeProto) -> Option<&str> {
    let name = match namespace(n) {
        Some(ns) => ns,
        None => n.name.as_deref().filter(|m| m.starts_with('/'))?,
    };
    name.rsplit_once('/')
        .map(|(s, _)| s)
        .filter(|s| !s.is_empty())
}

/// The dynamo exporter's `namespace` metadata of a node.
fn namespace(n: &NodeProto) -> Option<&str> {
    n.metadata_props
        .iter()
        .find(|p| p.key.as_deref() == Some("namespace"))
        .and_then(|p| p.value.as_deref())
}

/// The text a node's scope is matched against (its namespace, else its TorchScript name).
fn scoped_name(n: &NodeProto) -> Option<&str> {
    namespace(n).or_else(|| n.name.as_deref().filter(|m| m.starts_with('/')))
}

/// The region's path as messages show it: TorchScript's scope as it is
/// (`/features/features.1/features.1.0/attn`), a dynamo namespace's module path
/// (`features.1.0.attn`).
fn shown(scope: &str) -> String {
    if scope.starts_with('/') {
        return scope.to_string();
    }
    let last = scope.rsplit('/').next().unwrap_or(scope);
    last.split(": ").next().unwrap_or(last).trim().to_string()
}

/// Swin's regions of a TorchScript or dynamo export: per region, its path (as [`shown`]) and
/// node indices (graph order).
pub(super) fn find(g: &GraphProto) -> Vec<(String, Vec<usize>)> {
    regions(g, |has| has("Pad") && has("MatMul"))
}

/// The attention regions of a TorchScript or dynamo export: per `Softmax` scope, the nodes
/// under it (and the unscoped ones only they read) when `keep` (asked whether the region
/// holds an operator) accepts them; its path (as [`shown`]) and node indices (graph order).
/// Shared with `maxvit_traced.rs`.
pub(super) fn regions(
    g: &GraphProto,
    keep: impl Fn(&dyn Fn(&str) -> bool) -> bool,
) -> Vec<(String, Vec<usize>)> {
    let op = |i: usize| g.node[i].op_type.as_deref().unwrap_or("");
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    let mut seen = HashSet::new();
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (j, n) in g.node.iter().enumerate() {
        for x in &n.input {
            readers.entry(x.as_str()).or_default().push(j);
        }
    }
    for (i, n) in g.node.iter().enumerate() {
        if op(i) != "Softmax" {
            continue;
        }
        let Some(s) = scope(n) else { continue };
        if !seen.insert(s.to_string()) {
            continue;
        }
        let prefix = format!("{s}/");
        let mut inside: HashSet<usize> = (0..g.node.len())
            .filter(|&j| scoped_name(&g.node[j]).is_some_and(|m| m.starts_with(&prefix)))
            .collect();
        // The TorchScript exporter leaves some of the function's shape arithmetic unscoped
        // (`Shape_965`, `Range_971`): the unscoped nodes reached from the region through
        // unscoped nodes whose outputs are read only by the region or by each other belong to
        // it.
        let unscoped = |j: usize| {
            scoped_name(&g.node[j]).is_none() && g.node[j].op_type.as_deref() != Some("Constant")
        };
        let mut extra: HashSet<usize> = HashSet::new();
        let mut todo: Vec<usize> = inside.iter().copied().collect();
        while let Some(j) = todo.pop() {
            for y in &g.node[j].output {
                for &k in readers.get(y.as_str()).into_iter().flatten() {
                    if !inside.contains(&k) && unscoped(k) && extra.insert(k) {
                        todo.push(k);
                    }
                }
            }
        }
        loop {
            let leaks: Vec<usize> = extra
                .iter()
                .copied()
                .filter(|&j| {
                    g.node[j].output.iter().any(|y| {
                        g.output.iter().any(|o| o.name.as_deref() == Some(y))
                            || readers.get(y.as_str()).is_some_and(|r| {
                                r.iter().any(|k| !inside.contains(k) && !extra.contains(k))
                            })
                    })
                })
                .collect();
            if leaks.is_empty() {
                break;
            }
            for j in leaks {
                extra.remove(&j);
            }
        }
        inside.extend(extra);
        let mut nodes: Vec<usize> = inside.into_iter().collect();
        nodes.sort_unstable();
        let has = |o: &str| nodes.iter().any(|&j| op(j) == o);
        if keep(&has) {
            out.push((shown(s), nodes));
        }
    }
    out
}

/// A seeded value in [−1, 1) (xorshift64*).
pub(super) fn probe_values(n: usize) -> Vec<f64> {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let v = s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
            f64::from(v as u32 as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Where a candidate failed: the node and why; `stage` orders failures (bias, mask, probe),
/// and within a stage the lower `score` (entries that disagree) is the closer candidate.
pub(super) struct Miss {
    pub(super) stage: u8,
    pub(super) score: u64,
    pub(super) node: usize,
    pub(super) why: String,
}

/// (node, constant operand) of each `o` node (MatMul, Add, Mul) of `nodes` that takes a
/// computed tensor and a constant.
pub(super) fn const_operands(
    g: &GraphProto,
    nodes: &[usize],
    env: &HashMap<String, T>,
    konst: &HashSet<String>,
    o: &str,
) -> Vec<(usize, T)> {
    nodes
        .iter()
        .filter(|&&j| g.node[j].op_type.as_deref() == Some(o))
        .filter_map(|&j| {
            let n = &g.node[j];
            let [a, b] = [n.input.first()?, n.input.get(1)?];
            match (konst.contains(a), konst.contains(b)) {
                (true, false) => Some((j, env.get(a)?.clone())),
                (false, true) => Some((j, env.get(b)?.clone())),
                _ => None,
            }
        })
        .collect()
}

/// A weight read from outside region `nodes` under its PyTorch name (`….attn.logit_scale`).
pub(super) fn named_weight(
    g: &GraphProto,
    nodes: &[usize],
    env: &HashMap<String, T>,
    suffix: &str,
) -> Option<T> {
    let made: HashSet<&str> = nodes
        .iter()
        .flat_map(|&j| g.node[j].output.iter().map(String::as_str))
        .collect();
    nodes
        .iter()
        .flat_map(|&j| g.node[j].input.iter())
        .find_map(|x| {
            (!made.contains(x.as_str()) && x.ends_with(&format!(".{suffix}")))
                .then(|| env.get(x).cloned())
                .flatten()
        })
}

/// The constant of `len` elements some `Add` of `adds` adds (a linear layer's bias).
pub(super) fn vec_of(adds: &[(usize, T)], len: usize) -> Option<T> {
    adds.iter()
        .find(|(_, t)| t.dims == [len])
        .map(|(_, t)| t.clone())
}

/// An attention region's constant operands ([`Reader::traced_products`]).
pub(super) struct Products {
    /// The input projection's C×3C and the output projection's C×C matrices.
    pub(super) qkv: T,
    pub(super) proj: T,
    /// Every `Add` of a constant, and those whose constant has trailing square dims (the
    /// relative-position bias first; at least one).
    pub(super) adds: Vec<(usize, T)>,
    pub(super) tails: Vec<(usize, T)>,
}

/// A traced region computed on the probe ([`Reader::traced_probe`]).
pub(super) struct Probed {
    /// Every tensor's value on the probe.
    pub(super) env: HashMap<String, T>,
    /// The tensors that are constants (not computed from the probe).
    pub(super) konst: HashSet<String>,
    /// The computed input: its tensor name, its layer reference and shape.
    pub(super) xname: String,
    pub(super) xref: String,
    pub(super) xshape: Vec<u64>,
    /// The one computed output read outside, and the node that writes it.
    pub(super) yname: String,
    pub(super) last: usize,
}

/// The weights found in a region.
pub(super) struct Found {
    /// Per layer weight (its name in the layer): PyTorch's shape and values (a `MatMul`
    /// constant transposed back to the linear layer's out × in).
    pub(super) weights: HashMap<&'static str, (Vec<usize>, Vec<f32>)>,
    /// The bias `Add` and its constant (…×heads×L×L).
    pub(super) bias: (usize, T),
    /// The mask `Add` and its constant.
    pub(super) mask: Option<(usize, T)>,
    /// Whether the attention is V2's (cosine attention, `logit_scale`, `cpb_mlp`).
    pub(super) v2: bool,
    /// V2 from the dynamo exporter: the `Add` of `cpb_mlp.0.bias` and its other operand, the
    /// coordinates times `cpb_mlp.0.weight` folded into one …×hidden constant (the weight is
    /// recovered per candidate, from the layer's own coordinates).
    pub(super) cpb_folded: Option<(usize, T)>,
}

/// Weights recovered through a candidate layer's own buffers, by their name in the layer.
type Recovered = HashMap<&'static str, Vec<f32>>;

/// V2's `cpb_mlp.0.weight` (hidden×2, PyTorch's layout) from `p`, the layer's coordinates
/// (R×2, `coords`) times its transpose as the dynamo exporter folds it (…×hidden, R rows):
/// least squares on the 2×2 normal equations per hidden unit, then every row must be
/// reproduced within 1e-5 of the constant's largest magnitude (at least 1).
fn cpb_first_layer(coords: &[f32], p: &T) -> Result<Vec<f32>, String> {
    let rows = coords.len() / 2;
    let hidden = *p.dims.last().unwrap_or(&0);
    if hidden == 0 || p.data.len() != rows * hidden {
        return Err(format!(
            "the constant added to cpb_mlp.0's bias has shape {:?}: the layer's coordinates give {rows} rows of {hidden}",
            p.dims
        ));
    }
    let (mut a, mut b, mut c) = (0f64, 0f64, 0f64);
    for r in coords.chunks(2) {
        let (x, y) = (f64::from(r[0]), f64::from(r[1]));
        a += x * x;
        b += x * y;
        c += y * y;
    }
    let det = a * c - b * b;
    if det.abs() < 1e-12 {
        return Err("the layer's coordinates do not determine cpb_mlp.0's weight".into());
    }
    let scale = p.data.iter().fold(1f64, |m, v| m.max(v.abs()));
    let mut w = vec![0f32; hidden * 2];
    for u in 0..hidden {
        let (mut s0, mut s1) = (0f64, 0f64);
        for (k, r) in coords.chunks(2).enumerate() {
            let v = p.data[k * hidden + u];
            s0 += f64::from(r[0]) * v;
            s1 += f64::from(r[1]) * v;
        }
        let (w0, w1) = ((c * s0 - b * s1) / det, (a * s1 - b * s0) / det);
        for (k, r) in coords.chunks(2).enumerate() {
            let fit = f64::from(r[0]) * w0 + f64::from(r[1]) * w1;
            let v = p.data[k * hidden + u];
            if (fit - v).abs() > 1e-5 * scale || fit.is_nan() {
                return Err(format!(
                    "the constant added to cpb_mlp.0's bias is no product of the layer's relative coordinates by a weight: unit {u}, row {k} holds {} where the best fit gives {}",
                    v as f32, fit as f32
                ));
            }
        }
        w[u * 2] = w0 as f32;
        w[u * 2 + 1] = w1 as f32;
    }
    Ok(w)
}

/// A 2-D constant transposed (a `MatMul` weight back to the linear layer's out × in).
pub(super) fn transposed(t: &T) -> (Vec<usize>, Vec<f32>) {
    let (r, c) = (t.dims[0], t.dims[1]);
    let mut o = vec![0f32; r * c];
    for i in 0..r {
        for j in 0..c {
            o[j * r + i] = t.data[i * c + j] as f32;
        }
    }
    (vec![c, r], o)
}

pub(super) fn as_is(t: &T) -> (Vec<usize>, Vec<f32>) {
    (t.dims.clone(), t.data.iter().map(|&v| v as f32).collect())
}

impl<'a> Reader<'a> {
    /// A constant input as a computed value (its element type from the initializer or the
    /// `Constant` node that made it).
    pub(super) fn traced_const(&self, name: &str) -> Option<T> {
        if let Some(&p) = self.producer.get(name) {
            let n = &self.graph.node[p];
            if n.op_type.as_deref() == Some("Constant") {
                return fold::eval(n, &[], self.opset, super::super::MAX_FOLDED_ELEMENTS)
                    .ok()?
                    .into_iter()
                    .next();
            }
        }
        let Some(Val::Const {
            dims, data, init, ..
        }) = self.vals.get(name)
        else {
            return None;
        };
        let dims: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
        if let Some(t) = init.as_deref().and_then(|i| self.inits.get(i)) {
            let v = proto::tensor_to_f64(t).ok()?;
            return Some(T::new(dims, v, fold::is_int_type(t.data_type.unwrap_or(1))));
        }
        Some(T::new(dims, data.clone(), self.ints.contains(name)))
    }

    pub(super) fn traced_err(&self, j: usize, path: &str, msg: impl Into<String>) -> Diagnostic {
        let n = &self.graph.node[j];
        self.err(
            j,
            n,
            format!(
                "in the windowed attention `{}` (torch.onnx.export's form, read as one layer): {}",
                excerpt(path),
                msg.into()
            ),
        )
        .help(HELP)
    }

    /// The error for a region that reads weights without values (a graph-only export): what
    /// the file shows of the layer and what it cannot show.
    fn graph_only(&self, path: &str, nodes: &[usize], made: &HashSet<&str>) -> Diagnostic {
        let g = self.graph;
        // The value-less inputs, with the first node reading each.
        let mut shaped: Vec<(usize, &str, Vec<u64>)> = Vec::new();
        for &j in nodes {
            for x in &g.node[j].input {
                if made.contains(x.as_str()) || shaped.iter().any(|(_, y, _)| y == x) {
                    continue;
                }
                if let Some(Val::Shaped { dims }) = self.vals.get(x) {
                    shaped.push((j, x.as_str(), dims.clone()));
                }
            }
        }
        let named = |leaf: &str| {
            shaped
                .iter()
                .find(|(_, x, _)| x.ends_with(&format!(".{leaf}")))
        };
        let help = "export with the weights (export_params=True, the default): archscope then reads the layer and checks it on a probe input";
        // V1: the exporter folded the table gathered by the index into one 1×heads×L×L
        // tensor, which a graph-only file declares as an input.
        let bias = shaped.iter().find(|(_, _, d)| {
            d.len() >= 3
                && d[d.len() - 1] == d[d.len() - 2]
                && d[..d.len() - 3].iter().all(|&v| v == 1)
        });
        if let (Some((j, x, d)), None) = (bias, named("relative_position_index")) {
            let (h, l) = (d[d.len() - 3], d[d.len() - 1]);
            let windows: Vec<String> = super::pairs(l)
                .iter()
                .map(|[a, b]| format!("{a}×{b}"))
                .collect();
            return self
                .traced_err(
                    *j,
                    path,
                    format!(
                        "its relative-position bias is graph input `{}` of shape {} with no values: torch.onnx.export folded torchvision's bias table, gathered by its relative_position_index, into that one tensor, and a graph-only file keeps neither the table nor the index. The file shows {h} heads and windows of {l} tokens ({}); it cannot show whether those {} values are a table of (2·wh − 1)·(2·ww − 1)·{h} parameters gathered by a {}-entry index buffer (PyTorch's count) or free values, so the layer's parameters and buffers are not known",
                        excerpt(x),
                        list(d),
                        windows.join(", "),
                        h * l * l,
                        l * l
                    ),
                )
                .help(help);
        }
        // V2 (or anything else): the buffers are graph inputs too.
        let (j, x, d) = named("relative_position_index")
            .or_else(|| named("relative_coords_table"))
            .unwrap_or(&shaped[0]);
        let what = if x.ends_with(".relative_position_index")
            || x.ends_with(".relative_coords_table")
        {
            "a buffer the layer computes from its window, which a graph-only export declares as a graph input"
        } else {
            "a weight of the layer"
        };
        let others: Vec<String> = shaped
            .iter()
            .filter(|(_, y, _)| y != x)
            .map(|(_, y, e)| format!("`{}` {}", excerpt(y), list(e)))
            .collect();
        self.traced_err(
            *j,
            path,
            format!(
                "`{}` (shape {}, {what}) has no values, nor {}: archscope computes the region on a probe input with the file's values to check that it is torchvision's layer (the bias read through the index, the mask, the output), and cannot without them. The file shows these tensors' shapes, not the values that make the layer torchvision's",
                excerpt(x),
                list(d),
                if others.is_empty() { "any other input".to_string() } else { others.join(", ") }
            ),
        )
        .help(help)
    }

    /// Computes traced region `nodes` (scope `path`) on the probe: its one computed input (of
    /// rank 4, `layout` in the message) takes seeded values, constants fold, every node is
    /// evaluated; constants read outside stay known. `graph_only`: the error for an input that
    /// is a weight without values (at node `j`, input `x`). Shared by Swin and MaxViT.
    #[allow(clippy::type_complexity)]
    pub(super) fn traced_probe(
        &mut self,
        path: &str,
        nodes: &[usize],
        layout: &str,
        graph_only: fn(&Self, usize, &str, &str, &[usize], &HashSet<&str>) -> Diagnostic,
    ) -> Result<Probed, Diagnostic> {
        let g = self.graph;
        let made: HashSet<&str> = nodes
            .iter()
            .flat_map(|&j| g.node[j].output.iter().map(String::as_str))
            .collect();
        // Values: the one computed input (the probe), constants, and what the nodes compute.
        let mut env: HashMap<String, T> = HashMap::new();
        let mut konst: HashSet<String> = HashSet::new();
        let mut data: Option<(String, String, Vec<u64>)> = None;
        for &j in nodes {
            for x in &g.node[j].input {
                if x.is_empty() || made.contains(x.as_str()) || env.contains_key(x) {
                    continue;
                }
                match self.vals.get(x) {
                    Some(Val::Act { r, shape }) => {
                        one_data_input(&mut data, x, r, shape).map_err(|m| self.traced_err(j, path, m))?
                    }
                    Some(Val::Shaped { .. }) => return Err(graph_only(self, j, x, path, nodes, &made)),
                    Some(Val::Const { .. }) => {
                        let t = self.traced_const(x).ok_or_else(|| {
                            self.traced_err(j, path, format!("constant `{}` cannot be decoded", excerpt(x)))
                        })?;
                        env.insert(x.clone(), t);
                        konst.insert(x.clone());
                    }
                    None => {
                        return Err(self.traced_err(
                            j,
                            path,
                            format!("input `{}` is neither an initializer, a graph input nor an earlier node's output", excerpt(x)),
                        ))
                    }
                }
            }
        }
        let Some((xname, xref, xshape)) = data else {
            return Err(self.traced_err(
                nodes[0],
                path,
                "no computed input: the layer reads one tensor",
            ));
        };
        if xshape.len() != 4 {
            return Err(self.traced_err(
                nodes[0],
                path,
                format!(
                    "its input `{}` has shape {}: the layer reads {layout}",
                    excerpt(&xname),
                    list(&xshape)
                ),
            ));
        }
        let xdims: Vec<usize> = xshape.iter().map(|&d| d as usize).collect();
        let count = xdims.iter().product::<usize>();
        if count > MAX_PROBE_ELEMENTS {
            return Err(self.traced_err(nodes[0], path, format!("its input has {count} elements: archscope computes the region on a probe of at most {MAX_PROBE_ELEMENTS}")).help("export with a smaller input or batch"));
        }
        env.insert(
            xname.clone(),
            T::new(xdims.clone(), probe_values(count), false),
        );
        // 1. Every node computed: constants fold, the rest carries the probe. A sequence (the
        // dynamo exporter's unoptimised `split`: `SplitToSequence`, then `SequenceAt`s) is
        // kept as its parts.
        let mut seqs: HashMap<&str, Vec<T>> = HashMap::new();
        for &j in nodes {
            let n = &g.node[j];
            let op = n.op_type.as_deref().unwrap_or("");
            if matches!(op, "SplitToSequence" | "SequenceAt") {
                let ins: Vec<Option<&T>> = n
                    .input
                    .iter()
                    .map(|x| if x.is_empty() { None } else { env.get(x) })
                    .collect();
                let is_const = n.input.iter().all(|x| x.is_empty() || konst.contains(x));
                let y = n.output.first().map(String::as_str).unwrap_or("");
                let got = if op == "SplitToSequence" {
                    fold::split_to_sequence(n, &ins).map(|parts| {
                        seqs.insert(y, parts);
                    })
                } else {
                    let pos = ins
                        .get(1)
                        .copied()
                        .flatten()
                        .and_then(|t| t.data.first().copied());
                    match (seqs.get(n.input[0].as_str()), pos) {
                        (Some(parts), Some(p)) => {
                            let k = if p < 0.0 { p + parts.len() as f64 } else { p };
                            match parts.get(k as usize).filter(|_| k >= 0.0) {
                                Some(t) => {
                                    env.insert(y.to_string(), t.clone());
                                    Ok(())
                                }
                                None => Err(format!("SequenceAt {p} of a sequence of {}", parts.len())),
                            }
                        }
                        _ => Err("SequenceAt of no sequence the region computes, or at no constant position".into()),
                    }
                };
                got.map_err(|e| {
                    self.traced_err(
                        j,
                        path,
                        format!("{e} (archscope computes the region to compare it with the layer)"),
                    )
                })?;
                if is_const {
                    konst.insert(y.to_string());
                }
                continue;
            }
            if n.op_type.as_deref() == Some("Constant") {
                let t = self.traced_const(&n.output[0]).ok_or_else(|| {
                    self.traced_err(j, path, "a Constant archscope cannot decode")
                })?;
                env.insert(n.output[0].clone(), t);
                konst.insert(n.output[0].clone());
                continue;
            }
            let is_const = n.op_type.as_deref() == Some("Shape")
                || n.input.iter().all(|x| x.is_empty() || konst.contains(x));
            let limit = if is_const {
                super::super::MAX_FOLDED_ELEMENTS
            } else {
                MAX_PROBE_ELEMENTS
            };
            let ins: Vec<Option<&T>> = n
                .input
                .iter()
                .map(|x| if x.is_empty() { None } else { env.get(x) })
                .collect();
            let outs = fold::eval(n, &ins, self.opset, limit).map_err(|e| {
                self.traced_err(
                    j,
                    path,
                    format!("{e} (archscope computes the region to compare it with the layer)"),
                )
            })?;
            for (y, t) in n.output.iter().zip(outs) {
                if is_const {
                    konst.insert(y.clone());
                }
                env.insert(y.clone(), t);
            }
        }
        // The one computed output read outside; constants read outside (another region's shape
        // arithmetic) stay known.
        let (kept, outs): (Vec<_>, Vec<_>) = self
            .read_outside(nodes)
            .into_iter()
            .partition(|(_, y)| konst.contains(*y));
        let (yname, last) =
            one_output(nodes, &outs, "computed ").map_err(|(j, m)| self.traced_err(j, path, m))?;
        for (_, y) in kept {
            if let Some(t) = env.get(y) {
                let dims = t.dims.iter().map(|&d| d as u64).collect();
                self.vals
                    .insert(y.to_string(), Val::folded(dims, t.data.clone()));
            }
        }
        Ok(Probed {
            env,
            konst,
            xname,
            xref,
            xshape,
            yname,
            last,
        })
    }

    /// Reads traced region `nodes` (scope `path`) as one `shifted_window_attention`.
    pub(super) fn traced_region(&mut self, path: &str, nodes: &[usize]) -> Result<(), Diagnostic> {
        let Probed {
            env,
            konst,
            xname,
            xref,
            xshape,
            yname,
            last,
        } = self.traced_probe(path, nodes, "N×H×W×C", |r, _, _, path, nodes, made| {
            r.graph_only(path, nodes, made)
        })?;
        let xdims: Vec<usize> = xshape.iter().map(|&d| d as usize).collect();
        let g = self.graph;
        let found = self.traced_weights(path, nodes, &env, &konst, xshape[3], last)?;
        let target = env.get(&yname).expect("computed above").clone();
        // Shifts: the starts of the Slices on computed tensors (the roll), modulo their axis.
        let mut shifts: Vec<u64> = vec![0];
        for &j in nodes {
            let n = &g.node[j];
            if n.op_type.as_deref() != Some("Slice") || konst.contains(&n.input[0]) {
                continue;
            }
            let (Some(x), Some(st), Some(ax)) = (
                env.get(&n.input[0]),
                n.input.get(1).and_then(|s| env.get(s)),
                n.input.get(3).and_then(|s| env.get(s)),
            ) else {
                continue;
            };
            for (&s, &a) in st.data.iter().zip(&ax.data) {
                let r = x.dims.len() as i64;
                let a = if a < 0.0 { a as i64 + r } else { a as i64 };
                let Some(&len) = usize::try_from(a).ok().and_then(|a| x.dims.get(a)) else {
                    continue;
                };
                let len = len as i64;
                let s = s.clamp(-1e12, 1e12) as i64;
                let s = if s < 0 { s + len } else { s };
                if s > 0 && s < len && !shifts.contains(&(s as u64)) {
                    shifts.push(s as u64);
                }
            }
        }
        let heads = found.bias.1.dims[found.bias.1.dims.len() - 3] as u64;
        let l = found.bias.1.dims[found.bias.1.dims.len() - 1] as u64;
        let (qb, pb) = (
            found.weights.contains_key("qkv.bias"),
            found.weights.contains_key("proj.bias"),
        );
        let v2 = found.v2;
        let mut best: Option<Miss> = None;
        let mut tried = 0usize;
        for [wh, ww] in super::pairs(l) {
            for &s0 in shifts.iter().filter(|&&s| s < wh) {
                for &s1 in shifts.iter().filter(|&&s| s < ww) {
                    tried += 1;
                    if tried > super::MAX_CANDIDATES {
                        return Err(self.traced_err(
                            nodes[0],
                            path,
                            format!(
                                "more than the {} candidate layers archscope compares",
                                super::MAX_CANDIDATES
                            ),
                        ));
                    }
                    let body = format!(
                        "op: shifted_window_attention, heads: {heads}, window: [{wh}, {ww}], shift: [{s0}, {s1}], v2: {v2}, pad: true, qkv_bias: {qb}, proj_bias: {pb}"
                    );
                    let Ok(cand) = self.build_candidate(&body, &xshape, true) else {
                        continue;
                    };
                    match self.traced_try(
                        &cand,
                        &found,
                        &target,
                        &xdims,
                        &env[&xname],
                        last,
                        ([wh, ww], [s0, s1]),
                    ) {
                        Ok(recovered) => {
                            return self
                                .traced_emit(path, nodes, &cand, &xref, &yname, &found, recovered);
                        }
                        Err(m) => {
                            if best.as_ref().is_none_or(|b| {
                                (m.stage, std::cmp::Reverse(m.score))
                                    > (b.stage, std::cmp::Reverse(b.score))
                            }) {
                                best = Some(m);
                            }
                        }
                    }
                }
            }
        }
        match best {
            Some(m) => Err(self.traced_err(m.node, path, m.why)),
            None => Err(self.traced_err(last, path, format!("no shifted_window_attention of {heads} heads and windows of {l} tokens fits its input {}", list(&xshape)))),
        }
    }

    /// Finds a region's two projections (`names`: their PyTorch names, for the messages) and
    /// the constants added to it, by their place in the data flow; `tokens` names the bias's
    /// trailing dims in the message (L, P).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn traced_products(
        &self,
        path: &str,
        nodes: &[usize],
        env: &HashMap<String, T>,
        konst: &HashSet<String>,
        c: usize,
        last: usize,
        names: [&str; 2],
        tokens: &str,
    ) -> Result<Products, Diagnostic> {
        let g = self.graph;
        let mms = const_operands(g, nodes, env, konst, "MatMul");
        let adds = const_operands(g, nodes, env, konst, "Add");
        let find_mm = |dims: [usize; 2], name: &str| {
            mms.iter()
                .find(|(_, t)| t.dims == dims)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| {
                    self.traced_err(
                        last,
                        path,
                        format!("no MatMul by a {}×{} constant ({name})", dims[0], dims[1]),
                    )
                })
        };
        let qkv = find_mm([c, 3 * c], names[0])?;
        let proj = find_mm([c, c], names[1])?;
        let tails: Vec<(usize, T)> = adds
            .iter()
            .filter(|(_, t)| {
                let d = &t.dims;
                d.len() >= 3 && d[d.len() - 1] == d[d.len() - 2]
            })
            .cloned()
            .collect();
        if tails.is_empty() {
            return Err(self.traced_err(
                last,
                path,
                format!("no constant of trailing {tokens}×{tokens} dims added to the logits (the relative-position bias)"),
            ));
        }
        Ok(Products {
            qkv,
            proj,
            adds,
            tails,
        })
    }

    /// Finds qkv, proj (and V2's logit scale and cpb_mlp), the bias and the mask by their
    /// place in the data flow.
    fn traced_weights(
        &self,
        path: &str,
        nodes: &[usize],
        env: &HashMap<String, T>,
        konst: &HashSet<String>,
        c: u64,
        last: usize,
    ) -> Result<Found, Diagnostic> {
        let g = self.graph;
        let c = c as usize;
        let op = |j: usize| g.node[j].op_type.as_deref().unwrap_or("");
        let by_const = |o: &str| const_operands(g, nodes, env, konst, o);
        let named = |suffix: &str| named_weight(g, nodes, env, suffix);
        let v2 = nodes.iter().any(|&j| op(j) == "ReduceL2");
        let Products {
            qkv,
            proj,
            adds,
            tails,
        } = self.traced_products(path, nodes, env, konst, c, last, ["qkv", "proj"], "L")?;
        let vec_of = |len: usize| vec_of(&adds, len);
        let bias = tails[0].clone();
        if tails.len() > 2 {
            return Err(self.traced_err(
                tails[2].0,
                path,
                "a third constant added to the logits (the layer adds the bias and the shift mask)",
            ));
        }
        let heads = bias.1.dims[bias.1.dims.len() - 3];
        let mut weights = HashMap::new();
        weights.insert("qkv.weight", transposed(&qkv));
        weights.insert("proj.weight", transposed(&proj));
        // The biases under their names (V2 adds a copy of qkv.bias with the keys' part zeroed).
        if let Some(b) = named("qkv.bias").or_else(|| vec_of(3 * c)) {
            weights.insert("qkv.bias", as_is(&b));
        }
        if let Some(b) = named("proj.bias").or_else(|| vec_of(c)) {
            weights.insert("proj.bias", as_is(&b));
        }
        if v2 {
            let miss = |what: &str| {
                self.traced_err(
                    last,
                    path,
                    format!("a Swin-V2 attention (it normalises q and k) without {what}"),
                )
            };
            let ls = match named("logit_scale") {
                Some(t) => t,
                // The dynamo exporter folds exp(clamp(logit_scale, max = ln 100)) into one
                // heads×1×1 constant multiplying the cosine logits: its logarithm is a
                // logit_scale of the same function (PyTorch's own when under ln 100).
                None => {
                    let (j, e) = by_const("Mul")
                        .into_iter()
                        .find(|(_, t)| {
                            let d = &t.dims;
                            t.data.len() == heads && d.len() >= 3 && d[d.len() - 1] == 1 && d[d.len() - 2] == 1
                        })
                        .ok_or_else(|| miss(&format!("its `logit_scale` weight (or a {heads}×1×1 constant, its exp, multiplying the logits)")))?;
                    if let Some(v) = e.data.iter().find(|&&v| v.is_nan() || v <= 0.0) {
                        return Err(self.traced_err(j, path, format!("the {heads}×1×1 constant multiplying the cosine logits holds {v}: it is no exp(logit_scale)")));
                    }
                    T::new(
                        vec![heads, 1, 1],
                        e.data.iter().map(|v| v.ln()).collect(),
                        false,
                    )
                }
            };
            weights.insert("logit_scale", as_is(&ls));
            // cpb_mlp: a MatMul of the coordinates by a 2×hidden constant, an Add of hidden,
            // a MatMul by hidden×heads (all on constants).
            let consts: Vec<(usize, T)> = nodes
                .iter()
                .filter(|&&j| op(j) == "MatMul" && konst.contains(&g.node[j].input[0]))
                .filter_map(|&j| Some((j, env.get(g.node[j].input.get(1)?)?.clone())))
                .filter(|(_, t)| t.dims.len() == 2)
                .collect();
            let first = consts.iter().find(|(_, t)| t.dims[0] == 2);
            let producer = |x: &str| {
                nodes
                    .iter()
                    .copied()
                    .find(|&j| g.node[j].output.iter().any(|y| y == x))
            };
            if first.is_none() {
                // The dynamo exporter: Relu(Add(P, cpb_mlp.0.bias)) · W₂ᵀ, where P (…×hidden)
                // is the coordinates times cpb_mlp.0.weight, folded.
                let found = consts.iter().find_map(|(m, t)| {
                    let relu = producer(&g.node[*m].input[0]).filter(|&r| op(r) == "Relu")?;
                    let add = producer(&g.node[relu].input[0]).filter(|&a| op(a) == "Add")?;
                    let ins: Vec<&T> = g.node[add]
                        .input
                        .iter()
                        .filter_map(|x| env.get(x))
                        .collect();
                    let [a, b] = ins.as_slice() else { return None };
                    let hidden = t.dims[0];
                    let (p, bias) = if b.dims == [hidden] { (a, b) } else { (b, a) };
                    (bias.dims == [hidden]
                        && t.dims[1] == heads
                        && p.dims.len() >= 2
                        && p.dims.last() == Some(&hidden))
                    .then(|| (add, (*p).clone(), (*bias).clone(), t.clone()))
                });
                let Some((add, p, b0, w2)) = found else {
                    return Err(miss("the cpb_mlp's first linear layer (a MatMul of the coordinates by a 2×hidden constant, or their product folded and added to its bias)"));
                };
                weights.insert("cpb_mlp.0.bias", as_is(&b0));
                weights.insert("cpb_mlp.2.weight", transposed(&w2));
                return Ok(Found {
                    weights,
                    bias,
                    mask: tails.get(1).cloned(),
                    v2,
                    cpb_folded: Some((add, p)),
                });
            }
            let first = first.expect("checked above");
            let hidden = first.1.dims[1];
            let second = consts
                .iter()
                .find(|(_, t)| t.dims == [hidden, heads])
                .ok_or_else(|| {
                    miss(&format!(
                        "the cpb_mlp's last linear layer (a MatMul by a {hidden}×{heads} constant)"
                    ))
                })?;
            let b0 = named("cpb_mlp.0.bias")
                .ok_or_else(|| miss("the cpb_mlp's first bias (`cpb_mlp.0.bias`)"))?;
            weights.insert("cpb_mlp.0.weight", transposed(&first.1));
            weights.insert("cpb_mlp.0.bias", as_is(&b0));
            weights.insert("cpb_mlp.2.weight", transposed(&second.1));
        }
        Ok(Found {
            weights,
            bias,
            mask: tails.get(1).cloned(),
            v2,
            cpb_folded: None,
        })
    }

    #[allow(clippy::too_many_arguments)]
    /// Checks candidate `cand` against the region: the bias through its index, its mask, and
    /// its output on the probe. Returns the weights recovered through the layer's own buffers
    /// (V1's bias table; V2's `cpb_mlp.0.weight` when the dynamo exporter folded it).
    pub(super) fn traced_try(
        &self,
        cand: &super::Candidate,
        f: &Found,
        target: &T,
        xdims: &[usize],
        probe: &T,
        last: usize,
        (win, shift): ([u64; 2], [u64; 2]),
    ) -> Result<Recovered, Miss> {
        let net = &cand.net;
        let layer = net
            .nodes
            .iter()
            .find(|n| n.name == "attn")
            .expect("the candidate has its layer");
        let specs = layer.layer.weights();
        let fixed = |name: &str| {
            specs
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| match &s.init {
                    Init::Fixed(v) => Some(v.clone()),
                    _ => None,
                })
        };
        let index = fixed("relative_position_index").expect("the layer has its index");
        let (bj, bt) = &f.bias;
        let d = &bt.dims;
        let (h, l) = (d[d.len() - 3], d[d.len() - 1]);
        if index.len() != l * l || bt.data.len() != h * l * l {
            return Err(Miss {
                stage: 0,
                score: 0,
                node: *bj,
                why: format!(
                    "the bias added here has shape {d:?}; the layer's windows give {h} × {l} × {l}"
                ),
            });
        }
        // V1: table[index[p·L + q], head] = bias[head, p, q], the same for every (p, q) of a
        // row. (V2's bias is computed from the weights: the probe checks it.)
        let mut table: Vec<f32> = Vec::new();
        if let Some(rows) = specs
            .iter()
            .find(|s| s.name == "relative_position_bias_table")
            .map(|s| s.shape[0])
        {
            let mut t: Vec<Option<f64>> = vec![None; rows * h];
            let mut first: Option<String> = None;
            let mut bad = 0u64;
            for hh in 0..h {
                for (pq, &r) in index.iter().enumerate() {
                    let v = bt.data[hh * l * l + pq];
                    let slot = &mut t[r as usize * h + hh];
                    match slot {
                        None => *slot = Some(v),
                        Some(w) if (*w as f32) == (v as f32) => {}
                        Some(w) => {
                            bad += 1;
                            first.get_or_insert_with(|| format!(
                                "head {hh}, tokens ({}, {}) hold {} and an earlier pair of the same relative offset (table row {r}, torchvision's relative_position_index) holds {}",
                                pq / l, pq % l, v as f32, *w as f32
                            ));
                        }
                    }
                }
            }
            if let Some(what) = first {
                return Err(Miss {
                    stage: 1,
                    score: bad,
                    node: *bj,
                    why: format!(
                        "the constant added here is no relative-position bias of the layer's {}×{} windows ({bad} entries disagree with the table they give): {what}",
                        win[0], win[1]
                    ),
                });
            }
            let Some(full) = t
                .iter()
                .map(|v| v.map(|x| x as f32))
                .collect::<Option<Vec<f32>>>()
            else {
                return Err(Miss {
                    stage: 1,
                    score: 0,
                    node: *bj,
                    why: "a row of the bias table is no position's".into(),
                });
            };
            table = full;
        }
        let mut recovered = Recovered::new();
        if !table.is_empty() {
            recovered.insert("relative_position_bias_table", table);
        }
        if let Some((aj, p)) = &f.cpb_folded {
            let coords = fixed("relative_coords_table").expect("a V2 layer has its coordinates");
            let w = cpb_first_layer(&coords, p).map_err(|why| Miss {
                stage: 1,
                score: 0,
                node: *aj,
                why: format!("{why} (window {win:?})"),
            })?;
            recovered.insert("cpb_mlp.0.weight", w);
        }
        // The mask: the layer's (its ONNX form's constant) against the file's folded one.
        let theirs = cand
            .model
            .graph
            .as_ref()
            .and_then(|g| {
                g.initializer
                    .iter()
                    .find(|t| t.name.as_deref().is_some_and(|n| n.contains("shift_mask")))
            })
            .and_then(|t| proto::tensor_to_f64(t).ok());
        match (&f.mask, theirs) {
            (None, None) => {}
            (Some((mj, _)), None) => return Err(Miss { stage: 2, score: 0, node: *mj, why: format!("a mask is added here; the layer's {:?} windows with shift {:?} are not shifted on this map", win, shift) }),
            (None, Some(_)) => return Err(Miss { stage: 2, score: 0, node: *bj, why: format!("no shift mask follows the bias; the layer's {:?} windows with shift {:?} need one", win, shift) }),
            (Some((mj, m)), Some(want)) => {
                if m.data.len() != want.len() {
                    return Err(Miss { stage: 2, score: 0, node: *mj, why: format!("the mask added here has shape {:?}, {} values; the layer's has {}", m.dims, m.data.len(), want.len()) });
                }
                let differs = |k: usize| (m.data[k] as f32) != (want[k] as f32);
                if let Some(k) = (0..want.len()).find(|&k| differs(k)) {
                    // Closest: fewest entries masked in one and not the other, then fewest values.
                    let pattern = (0..want.len()).filter(|&k| (m.data[k] != 0.0) != (want[k] != 0.0)).count() as u64;
                    let values = (0..want.len()).filter(|&k| differs(k)).count() as u64;
                    let (w, rest) = (k / (l * l), k % (l * l));
                    return Err(Miss {
                        stage: 3,
                        score: pattern * (want.len() as u64 + 1) + values,
                        node: *mj,
                        why: format!(
                            "the mask added here differs from the one the layer builds for window {win:?} and shift {shift:?} ({values} of {} entries): window {w}, tokens ({}, {}) hold {} where the layer has {}",
                            want.len(), rest / l, rest % l, m.data[k] as f32, want[k] as f32
                        ),
                    });
                }
            }
        }
        // The layer run on the probe with the file's weights.
        let mut per_node = Vec::new();
        for node in &net.nodes {
            let mut ts = Vec::new();
            for s in node.layer.weights() {
                let data = match (recovered.get(s.name), f.weights.get(s.name), &s.init) {
                    (Some(v), _, _) => v.clone(),
                    (_, Some((_, v)), _) => v.clone(),
                    (_, None, Init::Fixed(v)) => v.clone(),
                    _ => {
                        return Err(Miss {
                            stage: 4,
                            score: 0,
                            node: last,
                            why: format!("the layer's weight `{}` is not in the region", s.name),
                        })
                    }
                };
                if data.len() != s.shape.iter().product::<usize>() {
                    return Err(Miss {
                        stage: 4,
                        score: 0,
                        node: last,
                        why: format!(
                            "the layer's weight `{}` has shape {:?}; the file's has {} values",
                            s.name,
                            s.shape,
                            data.len()
                        ),
                    });
                }
                ts.push(Tensor::new(s.shape.clone(), data));
            }
            per_node.push(ts);
        }
        let weights = crate::exec::Weights { per_node };
        // The candidate reads C×H×W (permuted channels last inside).
        let [n, hh, ww, c] = [xdims[0], xdims[1], xdims[2], xdims[3]];
        let mut input = vec![0f32; probe.data.len()];
        for b in 0..n {
            for y in 0..hh {
                for x in 0..ww {
                    for k in 0..c {
                        input[((b * c + k) * hh + y) * ww + x] =
                            probe.data[((b * hh + y) * ww + x) * c + k] as f32;
                    }
                }
            }
        }
        let run = crate::exec::run(
            net,
            &weights,
            &[Tensor::new(vec![n, c, hh, ww], input)],
            None,
        )
        .map_err(|e| Miss {
            stage: 4,
            score: 0,
            node: last,
            why: format!("the layer does not run on the probe: {}", e.message),
        })?;
        let out = &run.outputs[0];
        if out.data.len() != target.data.len() {
            return Err(Miss {
                stage: 4,
                score: 0,
                node: last,
                why: format!(
                    "the region's output has shape {:?}, the layer's {:?}",
                    target.dims, out.shape
                ),
            });
        }
        let scale = target.data.iter().fold(1f64, |a, v| a.max(v.abs()));
        let (k, diff) = out
            .data
            .iter()
            .zip(&target.data)
            .map(|(a, b)| (f64::from(*a) - b).abs())
            .enumerate()
            .fold(
                (0, 0f64),
                |m, (k, d)| if d > m.1 || d.is_nan() { (k, d) } else { m },
            );
        if diff.is_nan() || diff > PROBE_TOLERANCE * scale {
            return Err(Miss {
                stage: 5,
                score: 0,
                node: last,
                why: format!(
                    "on a probe input the region computes another function than the layer (window {:?}, shift {:?}): element {k} differs by {diff:.3e} (tolerance {:.1e})",
                    win, shift, PROBE_TOLERANCE * scale
                ),
            });
        }
        Ok(recovered)
    }

    /// Emits the layer with the file's weights and the recovered table.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn traced_emit(
        &mut self,
        path: &str,
        nodes: &[usize],
        cand: &super::Candidate,
        xref: &str,
        yname: &str,
        f: &Found,
        recovered: Recovered,
    ) -> Result<(), Diagnostic> {
        let g = self.graph;
        // `/features/features.1/features.1.0/attn` (TorchScript) or `features.1.0.attn` (dynamo)
        // → features.1.0.attn (the module path); the id is its last part, as the reader names
        // other layers.
        let short = path.rsplit(['/', '.']).next().unwrap_or(path).to_string();
        let probe = NodeProto {
            name: Some(format!("{path}/Softmax")),
            ..Default::default()
        };
        let module = super::super::full_module_path(&probe, None).unwrap_or_else(|| short.clone());
        let id = self.fresh_id(&sanitize(&short), "attention");
        self.yaml_nodes
            .push(format!("{{id: {id}, {}, in: {xref}}}", cand.body));
        self.origins.push(self.where_(nodes[0], &g.node[nodes[0]]));
        self.paths.push(Some(module));
        let layer = cand
            .net
            .nodes
            .iter()
            .find(|n| n.name == "attn")
            .expect("the candidate has its layer");
        for s in layer.layer.weights() {
            let data = match (recovered.get(s.name), f.weights.get(s.name), &s.init) {
                (Some(v), _, _) => Some(v.clone()),
                (_, Some((_, v)), _) => Some(v.clone()),
                (_, None, Init::Fixed(v)) => Some(v.clone()),
                _ => None,
            };
            let d: Vec<u64> = s.shape.iter().map(|&v| v as u64).collect();
            self.put_weight(&id, s.name, &d, data);
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
