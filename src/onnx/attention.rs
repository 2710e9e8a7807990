//! Attention and class tokens in ONNX files, read back into archscope layers (a child module of
//! the reader, `impl Reader` blocks). An `nn.MultiheadAttention` that torch.onnx.export (the
//! dynamo exporter or the TorchScript one) or `archscope export` traced into MatMul, Softmax,
//! Reshape and Transpose chains is recognised by its module scope — the scope `S` such that a
//! weight named `S.out_proj.weight` exists, the nodes under it named `/…/S/…` (TorchScript),
//! `S/…` (archscope) or carrying `namespace` metadata ending in `S: …` (dynamo) — and is read as
//! ONE `multi_head_attention` layer with its weights in PyTorch's layout (`in_proj_weight`
//! 3E×E, `in_proj_bias`, `out_proj.weight`, `out_proj.bias`). The scope's nodes are walked with
//! shapes and data flow only (which projection, head split, score, softmax, product each
//! tensor comes from), and the pattern must be exactly self-attention without mask: one input
//! N×L×E, input projections (packed 3E, or three of E), Q·Kᵀ scaled by 1/√d, one softmax over
//! the keys, its product with V, the output projection, one output of the input's shape.
//! Anything else under such a scope (a mask, a second input, another scale, an op outside the
//! pattern) is a located error naming the node, never a layer with other figures.
//!
//! Also here: a learned tensor concatenated to the tokens (ViT's class token: an `Expand` of
//! `class_token` to the batch, or the dynamo exporter's folded copy) becomes a `parameter`
//! layer expanded to the batch, as the zoo's YAML writes it.

use std::collections::{HashMap, HashSet};

use super::{attr_i, attr_ints, axis_at, list, numel, sanitize, squeezed, unsqueezed};
use super::{Reader, Val};
use crate::error::{excerpt, Diagnostic};
use crate::onnx::proto::{GraphProto, NodeProto};

/// The attention modules of a graph, found before its nodes are read.
#[derive(Debug, Default)]
pub(super) struct Regions {
    /// Per attention scope (in order of first node): its module path and node indices.
    list: Vec<(String, Vec<usize>)>,
    /// Node index → its region.
    of: HashMap<usize, usize>,
    /// Per region: the node at which it is read (the first of its nodes after every node
    /// outside it that produces one of its inputs).
    trigger: Vec<usize>,
}

/// The module scope a node's name or metadata names: dynamo's `namespace` metadata (the
/// innermost module's path), TorchScript's `/a/a.0/b/Op` name (`a.0.b`), archscope's `path/Op_k`
/// or `path` name.
fn scope_of(n: &NodeProto) -> Option<String> {
    if let Some(ns) = n
        .metadata_props
        .iter()
        .find(|p| p.key.as_deref() == Some("namespace"))
        .and_then(|p| p.value.as_deref())
    {
        let parts: Vec<&str> = ns.split('/').collect();
        if parts.len() >= 2 {
            let m = parts[parts.len() - 2];
            let path = m.split(": ").next().unwrap_or("").trim();
            return (!path.is_empty()).then(|| path.to_string());
        }
        return None;
    }
    let name = n.name.as_deref()?;
    if name.starts_with('/') {
        return super::full_module_path(n, None);
    }
    let head = name.split('/').next().unwrap_or("");
    (!head.is_empty()).then(|| head.to_string())
}

/// Finds the attention scopes of `g`: module paths `S` with a weight `S.out_proj.weight`
/// (initializer or graph input) and at least one node under `S`.
pub(super) fn find_regions(g: &GraphProto) -> Regions {
    let mut scopes: HashSet<String> = HashSet::new();
    let names = g
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .chain(g.input.iter().filter_map(|v| v.name.as_deref()));
    for w in names {
        if let Some(s) = w.strip_suffix(".out_proj.weight") {
            scopes.insert(s.to_string());
        }
    }
    let mut r = Regions::default();
    if scopes.is_empty() {
        return r;
    }
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        let Some(sc) = scope_of(n) else { continue };
        // The scope itself or its nearest enclosing attention scope.
        let mut cut = sc.as_str();
        let found = loop {
            if scopes.contains(cut) {
                break Some(cut.to_string());
            }
            match cut.rfind('.') {
                Some(p) => cut = &cut[..p],
                None => break None,
            }
        };
        let Some(s) = found else { continue };
        let k = *index.entry(s.clone()).or_insert_with(|| {
            r.list.push((s, Vec::new()));
            r.list.len() - 1
        });
        r.list[k].1.push(i);
        r.of.insert(i, k);
    }
    let producer = producers(g);
    for (k, (_, nodes)) in r.list.iter().enumerate() {
        let t = trigger(g, &producer, nodes, |p| r.of.get(&p) == Some(&k));
        r.trigger.push(t);
    }
    r
}

/// Which node writes each tensor (its index in the graph).
pub(super) fn producers(g: &GraphProto) -> HashMap<&str, usize> {
    let mut producer = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for y in &n.output {
            producer.insert(y.as_str(), i);
        }
    }
    producer
}

/// The node at which a region of `nodes` (graph order) is read as one layer: its first node
/// after the last node outside it (`inside` false) that it reads. Constant nodes are folded
/// before any other node is read: they never delay a region.
pub(super) fn trigger(
    g: &GraphProto,
    producer: &HashMap<&str, usize>,
    nodes: &[usize],
    inside: impl Fn(usize) -> bool,
) -> usize {
    let constant = |i: usize| g.node[i].op_type.as_deref() == Some("Constant");
    let last_outside = nodes
        .iter()
        .flat_map(|&i| g.node[i].input.iter())
        .filter_map(|x| producer.get(x.as_str()).copied())
        .filter(|&p| !inside(p) && !constant(p))
        .max();
    nodes
        .iter()
        .copied()
        .find(|&i| last_outside.is_none_or(|p| i > p))
        .unwrap_or(nodes[0])
}

/// Where a tensor inside an attention module comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Src {
    /// The module's input.
    Input,
    /// Input projection `p`; `part`: which third of a packed projection (0 q, 1 k, 2 v).
    Proj { p: usize, part: Option<usize> },
    /// Q·Kᵀ.
    Scores,
    /// softmax(scores).
    Probs,
    /// probs·V.
    Context,
    /// The output projection.
    Out,
}

/// A computed tensor inside the module.
#[derive(Debug, Clone)]
struct T {
    shape: Vec<u64>,
    src: Src,
    /// Product of the scalar factors applied since its projection or softmax.
    scale: f64,
    /// The projection whose raw output it is (a bias may be added here).
    raw: Option<usize>,
}

/// A projection: the matrix M (K×M) of y = x·M, its data when the file holds it, its bias.
struct Proj {
    m: Vec<u64>,
    data: Option<Vec<f32>>,
    bias: Option<(u64, Option<Vec<f32>>)>,
}

const HELP: &str = "archscope reads torch.nn.MultiheadAttention as PyTorch's exporters and `archscope export` trace it: self-attention (query = key = value) without mask and with need_weights=False; describe other attention in archscope YAML (docs/FORMAT.md) or export the module without the difference";

/// The transpose of a rows×cols matrix; `None` when the data is not that size.
fn t2(m: &[f32], rows: usize, cols: usize) -> Option<Vec<f32>> {
    (rows.checked_mul(cols) == Some(m.len())).then(|| super::transpose2(m, rows, cols))
}

impl Regions {
    /// Whether node `i` belongs to an attention module (read here, not by other patterns).
    pub(super) fn contains(&self, i: usize) -> bool {
        self.of.contains_key(&i)
    }
}

impl<'a> Reader<'a> {
    /// Reads attention region `k` if node `i` is its trigger: `Ok(true)` when `i` belongs to a
    /// region (read now or earlier / later), `Ok(false)` for any other node.
    pub(super) fn attention_node(&mut self, i: usize) -> Result<bool, Diagnostic> {
        let Some(&k) = self.regions.of.get(&i) else {
            return Ok(false);
        };
        if self.regions.trigger[k] == i {
            let (scope, nodes) = self.regions.list[k].clone();
            self.attention_region(&scope, &nodes)?;
        }
        Ok(true)
    }

    fn attn_err(&self, j: usize, scope: &str, msg: impl Into<String>) -> Diagnostic {
        let n = &self.graph.node[j];
        self.err(
            j,
            n,
            format!(
                "in the attention module `{}` (read as one multi_head_attention): {}",
                excerpt(scope),
                msg.into()
            ),
        )
        .help(HELP)
    }

    fn attention_region(&mut self, scope: &str, nodes: &[usize]) -> Result<(), Diagnostic> {
        let g = self.graph;
        let inside: HashSet<usize> = nodes.iter().copied().collect();
        let mut t: HashMap<String, T> = HashMap::new();
        let mut input: Option<(String, Vec<u64>, String)> = None;
        let mut projs: Vec<Proj> = Vec::new();
        let mut softmaxes = 0usize;
        let mut score: Option<(usize, Vec<u64>, f64)> = None;
        let mut qkv: Option<(Src, Src, Src)> = None;
        let mut out_proj: Option<usize> = None;
        for &j in nodes {
            if self.done.contains(&j) {
                continue;
            }
            let n = &g.node[j];
            let op = n.op_type.as_deref().unwrap_or("");
            // Each input: a tensor of the module, the module's input, or a constant.
            let mut data: Vec<Option<T>> = Vec::new();
            for x in &n.input {
                if x.is_empty() {
                    data.push(None);
                    continue;
                }
                if let Some(v) = t.get(x) {
                    data.push(Some(v.clone()));
                    continue;
                }
                match self.vals.get(x) {
                    Some(Val::Act { r, shape }) => {
                        match &input {
                            Some((name, _, _)) if name != x => {
                                return Err(self.attn_err(j, scope, format!("a second computed input `{}` (the module reads `{}` already): a key, value or mask from elsewhere", excerpt(x), excerpt(name))));
                            }
                            _ => input = Some((x.clone(), shape.clone(), r.clone())),
                        }
                        let v = T {
                            shape: shape.clone(),
                            src: Src::Input,
                            scale: 1.0,
                            raw: None,
                        };
                        data.push(Some(v));
                    }
                    Some(_) => data.push(None),
                    None => {
                        return Err(self
                            .err(j, n, format!("input `{}` is neither a graph input, an initializer nor an earlier node's output", excerpt(x)))
                            .help("the file is incomplete or its nodes are not in topological order: export it again"));
                    }
                }
            }
            let comp: Vec<(usize, T)> = data
                .iter()
                .enumerate()
                .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
                .collect();
            let computed: Vec<usize> = comp.iter().map(|c| c.0).collect();
            // A constant cast like a computed tensor (dynamo's unoptimised graphs) is a constant.
            if computed.is_empty() || (op == "CastLike" && computed == [1]) {
                // Shape arithmetic and weight copies: folded as anywhere else.
                if self.fold(j, n)?.is_none() {
                    return Err(self.attn_err(
                        j,
                        scope,
                        format!("`{op}` of constants that archscope does not fold"),
                    ));
                }
                continue;
            }
            let a = comp[0].1.clone();
            let out = |t: &mut HashMap<String, T>, k: usize, v: T| {
                if let Some(name) = n.output.get(k) {
                    t.insert(name.clone(), v);
                }
            };
            let same = |shape: Vec<u64>| T {
                shape,
                src: a.src,
                scale: a.scale,
                raw: None,
            };
            match op {
                "Shape" => {
                    let rank = a.shape.len() as i64;
                    let fix = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
                    let s = fix(attr_i(n, "start", 0));
                    let e = fix(attr_i(n, "end", rank));
                    let d: Vec<f64> = a.shape[s..e.max(s)].iter().map(|&x| x as f64).collect();
                    self.vals
                        .insert(n.output[0].clone(), Val::folded(vec![d.len() as u64], d));
                }
                "Identity" | "Dropout" | "Cast" | "CastLike" if computed == [0] => {
                    let mut v = a.clone();
                    v.raw = a.raw;
                    out(&mut t, 0, v);
                }
                "Transpose" if computed == [0] => {
                    let perm = attr_ints(n, "perm")
                        .unwrap_or_else(|| (0..a.shape.len() as i64).rev().collect());
                    let mut s = Vec::new();
                    for &p in &perm {
                        let Some(&d) = usize::try_from(p).ok().and_then(|p| a.shape.get(p)) else {
                            return Err(self.attn_err(
                                j,
                                scope,
                                format!(
                                    "Transpose perm {perm:?} of a rank-{} tensor",
                                    a.shape.len()
                                ),
                            ));
                        };
                        s.push(d);
                    }
                    out(&mut t, 0, same(s));
                }
                "Reshape" if computed == [0] => {
                    let target = self.ints(j, n, 1)?.unwrap_or_default();
                    let zero_is_zero = attr_i(n, "allowzero", 0) == 1;
                    let mut s: Vec<u64> = Vec::new();
                    let mut infer = None;
                    for (k, &v) in target.iter().enumerate() {
                        match v {
                            0 if !zero_is_zero => s.push(a.shape.get(k).copied().unwrap_or(0)),
                            -1 if infer.is_none() => {
                                infer = Some(k);
                                s.push(1);
                            }
                            v if v > 0 => s.push(v as u64),
                            _ => {
                                return Err(self.attn_err(
                                    j,
                                    scope,
                                    format!("Reshape to {target:?}"),
                                ))
                            }
                        }
                    }
                    let total = numel(&a.shape);
                    if let Some(k) = infer {
                        let rest = numel(&s).max(1);
                        s[k] = total / rest;
                    }
                    if numel(&s) != total {
                        return Err(self.attn_err(
                            j,
                            scope,
                            format!("Reshape of {:?} to {target:?}", a.shape),
                        ));
                    }
                    out(&mut t, 0, same(s));
                }
                "Unsqueeze" | "Squeeze" if computed == [0] => {
                    let axes = match attr_ints(n, "axes") {
                        Some(x) => x,
                        None => self.ints(j, n, 1)?.unwrap_or_default(),
                    };
                    let s = if op == "Squeeze" {
                        squeezed(&a.shape, &axes, false)
                    } else {
                        unsqueezed(&a.shape, &axes)
                    };
                    out(&mut t, 0, same(s));
                }
                "Gather" if computed == [0] => {
                    let Some((idims, idx)) = self.constant(j, n, 1)? else {
                        return Err(self.attn_err(j, scope, "Gather without indices"));
                    };
                    let rank = a.shape.len() as i64;
                    let ax = axis_at(attr_i(n, "axis", 0), rank) as usize;
                    if !idims.is_empty() || idx.len() != 1 || ax >= a.shape.len() {
                        return Err(self.attn_err(j, scope, "Gather of anything but one index"));
                    }
                    let size = a.shape[ax];
                    let at = idx[0] as i64;
                    let size_i = i64::try_from(size).unwrap_or(i64::MAX);
                    if at < -size_i || at >= size_i {
                        return Err(self.attn_err(
                            j,
                            scope,
                            format!("Gather of index {at} along an axis of {size}"),
                        ));
                    }
                    let part = at.rem_euclid(size_i.max(1)) as usize;
                    let mut s = a.shape.clone();
                    s.remove(ax);
                    let src = match a.src {
                        Src::Proj { p, part: None } if size == 3 => Src::Proj {
                            p,
                            part: Some(part),
                        },
                        _ => {
                            return Err(self.attn_err(j, scope, format!("Gather of index {part} along an axis of {size}: archscope reads the selection of q, k and v from a packed projection only")));
                        }
                    };
                    out(
                        &mut t,
                        0,
                        T {
                            shape: s,
                            src,
                            scale: a.scale,
                            raw: None,
                        },
                    );
                }
                "Split" if computed == [0] => {
                    let rank = a.shape.len() as i64;
                    let ax = axis_at(attr_i(n, "axis", 0), rank) as usize;
                    let parts = n.output.len();
                    let sizes = match attr_ints(n, "split") {
                        Some(s) => s,
                        None => match self.ints(j, n, 1)? {
                            Some(s) => s,
                            None => vec![
                                (a.shape.get(ax).copied().unwrap_or(0) / parts.max(1) as u64)
                                    as i64;
                                parts
                            ],
                        },
                    };
                    let Src::Proj { p, part: None } = a.src else {
                        return Err(self.attn_err(
                            j,
                            scope,
                            "Split of anything but a packed input projection",
                        ));
                    };
                    if parts != 3
                        || sizes.len() != 3
                        || ax >= a.shape.len()
                        || sizes.iter().map(|&x| x as u64).sum::<u64>() != a.shape[ax]
                        || sizes.iter().any(|&x| x != sizes[0])
                    {
                        return Err(self.attn_err(j, scope, format!("Split into {sizes:?}: archscope reads a packed projection split into three equal parts (q, k, v)")));
                    }
                    for (k, &sz) in sizes.iter().enumerate() {
                        let mut s = a.shape.clone();
                        s[ax] = sz as u64;
                        out(
                            &mut t,
                            k,
                            T {
                                shape: s,
                                src: Src::Proj { p, part: Some(k) },
                                scale: a.scale,
                                raw: None,
                            },
                        );
                    }
                }
                "MatMul" | "Gemm" if computed == [0] && data.len() >= 2 => {
                    // A projection: computed × weight.
                    let trans_b = op == "Gemm" && attr_i(n, "transB", 0) == 1;
                    if op == "Gemm"
                        && (attr_i(n, "transA", 0) != 0
                            || (super::attr_f(n, "alpha", 1.0) - 1.0).abs() > 0.0
                            || (super::attr_f(n, "beta", 1.0) - 1.0).abs() > 0.0)
                    {
                        return Err(self.attn_err(
                            j,
                            scope,
                            "Gemm with transA, alpha or beta other than PyTorch's linear",
                        ));
                    }
                    let Some((wd, wdata)) = self.weight(j, n, 1)? else {
                        return Err(self.attn_err(j, scope, "a projection without its weight"));
                    };
                    if wd.len() != 2 {
                        return Err(self.attn_err(
                            j,
                            scope,
                            format!("a projection weight of shape {wd:?}"),
                        ));
                    }
                    // M (K×M) with y = x·M, K the features read.
                    let (m, mdata) = if trans_b {
                        let d = wdata.and_then(|w| t2(&w, wd[0] as usize, wd[1] as usize));
                        (vec![wd[1], wd[0]], d)
                    } else {
                        (wd.clone(), wdata)
                    };
                    if a.shape.last() != Some(&m[0]) {
                        return Err(self.attn_err(
                            j,
                            scope,
                            format!(
                                "a projection of {:?} by a {}×{} matrix",
                                a.shape, m[0], m[1]
                            ),
                        ));
                    }
                    if (a.scale - 1.0).abs() > 0.0 {
                        return Err(self.attn_err(j, scope, "a scale applied before a projection"));
                    }
                    let p = projs.len();
                    let src = match a.src {
                        Src::Input => Src::Proj { p, part: None },
                        Src::Context if out_proj.is_none() => {
                            out_proj = Some(p);
                            Src::Out
                        }
                        other => {
                            return Err(self.attn_err(j, scope, format!("a projection of {other:?}: archscope reads input projections of the module's input and one output projection of the attention's result")));
                        }
                    };
                    let mut s = a.shape.clone();
                    *s.last_mut().unwrap_or(&mut 0) = m[1];
                    projs.push(Proj {
                        m,
                        data: mdata,
                        bias: None,
                    });
                    if op == "Gemm"
                        && data.len() >= 3
                        && n.input.get(2).is_some_and(|x| !x.is_empty())
                    {
                        let Some((bd, bdata)) = self.weight(j, n, 2)? else {
                            return Err(self.attn_err(j, scope, "Gemm without its bias"));
                        };
                        if numel(&bd) != projs[p].m[1] {
                            return Err(self.attn_err(
                                j,
                                scope,
                                format!("a bias of shape {bd:?} for {} outputs", projs[p].m[1]),
                            ));
                        }
                        projs[p].bias = Some((numel(&bd), bdata));
                    }
                    out(
                        &mut t,
                        0,
                        T {
                            shape: s,
                            src,
                            scale: 1.0,
                            raw: Some(p),
                        },
                    );
                }
                "MatMul" if computed == [0, 1] => {
                    let b = comp[1].1.clone();
                    let (ra, rb) = (a.shape.len(), b.shape.len());
                    if ra < 2 || rb < 2 || a.shape[ra - 1] != b.shape[rb - 2] {
                        return Err(self.attn_err(
                            j,
                            scope,
                            format!("MatMul of {:?} by {:?}", a.shape, b.shape),
                        ));
                    }
                    let mut s = super::broadcast(&a.shape[..ra - 2], &b.shape[..rb - 2]);
                    s.push(a.shape[ra - 2]);
                    s.push(b.shape[rb - 1]);
                    match (a.src, b.src) {
                        (qa @ Src::Proj { .. }, kb @ Src::Proj { .. }) if score.is_none() => {
                            score = Some((j, s.clone(), a.scale * b.scale));
                            qkv = Some((qa, kb, kb));
                            out(
                                &mut t,
                                0,
                                T {
                                    shape: s,
                                    src: Src::Scores,
                                    scale: a.scale * b.scale,
                                    raw: None,
                                },
                            );
                        }
                        (Src::Probs, vb @ Src::Proj { .. })
                            if (b.scale - 1.0).abs() == 0.0 && (a.scale - 1.0).abs() == 0.0 =>
                        {
                            if let Some((q, k, _)) = qkv {
                                qkv = Some((q, k, vb));
                            }
                            out(
                                &mut t,
                                0,
                                T {
                                    shape: s,
                                    src: Src::Context,
                                    scale: 1.0,
                                    raw: None,
                                },
                            );
                        }
                        (x, y) => {
                            return Err(self.attn_err(j, scope, format!("a product of {x:?} and {y:?}: archscope reads Q·Kᵀ and softmax·V")));
                        }
                    }
                }
                "Mul" | "Div" if computed.len() == 1 => {
                    let c = self.constant(j, n, 1 - computed[0])?.unwrap_or_default();
                    if c.1.len() != 1 || (op == "Div" && computed[0] != 0) || c.1[0] == 0.0 {
                        return Err(self.attn_err(j, scope, format!("{op} by a constant of shape {:?}: archscope reads scalar scales only", c.0)));
                    }
                    let f = if op == "Mul" { c.1[0] } else { 1.0 / c.1[0] };
                    let s = broadcast_scalar(&a.shape, &c.0);
                    out(
                        &mut t,
                        0,
                        T {
                            shape: s,
                            src: a.src,
                            scale: a.scale * f,
                            raw: None,
                        },
                    );
                }
                "Add" if computed.len() == 1 => {
                    let kc = 1 - computed[0];
                    let Some(p) = a.raw else {
                        return Err(self.attn_err(j, scope, format!("an Add of a constant to {:?} (a mask or bias archscope's multi_head_attention does not have)", a.src)));
                    };
                    let Some((bd, bdata)) = self.weight(j, n, kc)? else {
                        return Err(self.attn_err(j, scope, "Add without its bias"));
                    };
                    if numel(&bd) != projs[p].m[1] || projs[p].bias.is_some() {
                        return Err(self.attn_err(
                            j,
                            scope,
                            format!("a bias of shape {bd:?} for {} outputs", projs[p].m[1]),
                        ));
                    }
                    projs[p].bias = Some((numel(&bd), bdata));
                    out(
                        &mut t,
                        0,
                        T {
                            shape: a.shape.clone(),
                            src: a.src,
                            scale: a.scale,
                            raw: None,
                        },
                    );
                }
                "Softmax" if computed == [0] && a.src == Src::Scores => {
                    let rank = a.shape.len() as i64;
                    let ax = axis_at(attr_i(n, "axis", -1), rank);
                    if ax != rank - 1 {
                        return Err(self.attn_err(j, scope, format!("Softmax over axis {ax} of {:?}: attention normalises over the keys (the last axis)", a.shape)));
                    }
                    softmaxes += 1;
                    out(
                        &mut t,
                        0,
                        T {
                            shape: a.shape.clone(),
                            src: Src::Probs,
                            scale: 1.0,
                            raw: None,
                        },
                    );
                    if let Some(sc) = score.as_mut() {
                        sc.2 = a.scale;
                    }
                }
                _ => {
                    return Err(self.attn_err(j, scope, format!("`{op}` of {} computed input(s): not part of the attention pattern archscope reads", computed.len())));
                }
            }
        }
        // The module's output: the one tensor read outside it.
        let mut outs: Vec<(String, usize)> = Vec::new();
        let graph_outs: HashSet<&str> = g.output.iter().filter_map(|o| o.name.as_deref()).collect();
        for &j in nodes {
            for y in &g.node[j].output {
                if !t.contains_key(y) {
                    continue;
                }
                let outside = graph_outs.contains(y.as_str())
                    || g.node
                        .iter()
                        .enumerate()
                        .any(|(m, node)| !inside.contains(&m) && node.input.iter().any(|x| x == y));
                if outside {
                    outs.push((y.clone(), j));
                }
            }
        }
        let last = *nodes.last().unwrap_or(&0);
        let Some((xname, xshape, xref)) = input else {
            return Err(self.attn_err(nodes[0], scope, "no computed input"));
        };
        if outs.len() != 1 {
            let names: Vec<String> = outs
                .iter()
                .map(|(y, _)| format!("`{}`", excerpt(y)))
                .collect();
            return Err(self.attn_err(last, scope, format!("{} tensors are read outside the module ({}): archscope reads one output, the attention's", outs.len(), names.join(", "))));
        }
        let (yname, yj) = outs[0].clone();
        let y = &t[&yname];
        if y.src != Src::Out || y.shape != xshape || (y.scale - 1.0).abs() > 0.0 {
            return Err(self.attn_err(yj, scope, format!("its output `{}` ({:?}, {:?}) is not the output projection of the input's shape {:?}", excerpt(&yname), y.src, y.shape, xshape)));
        }
        if xshape.len() != 3 || xshape[0] != self.batch {
            return Err(self.attn_err(nodes[0], scope, format!("its input `{}` is {:?}; archscope's multi_head_attention reads N×L×E, batch first", excerpt(&xname), xshape)));
        }
        let e = xshape[2];
        let (Some((sj, sshape, scale)), Some((q, k, v)), Some(po)) = (score, qkv, out_proj) else {
            return Err(self.attn_err(
                last,
                scope,
                "no Q·Kᵀ, softmax·V and output projection found",
            ));
        };
        if softmaxes != 1 {
            return Err(self.attn_err(last, scope, format!("{softmaxes} softmaxes")));
        }
        // Heads from the scores' leading dims: N·heads score matrices of L×L.
        let lead = numel(&sshape[..sshape.len() - 2]);
        let l = xshape[1];
        if sshape[sshape.len() - 2..] != [l, l]
            || lead == 0
            || lead.checked_rem(self.batch) != Some(0)
        {
            return Err(self.attn_err(
                sj,
                scope,
                format!(
                    "scores of shape {sshape:?} for {} samples of {l} tokens",
                    self.batch
                ),
            ));
        }
        let heads = lead / self.batch;
        if heads == 0 || e % heads != 0 {
            return Err(self.attn_err(sj, scope, format!("{heads} heads for an embedding of {e}")));
        }
        let d = e / heads;
        if ((scale * (d as f64).sqrt()) - 1.0).abs() > 1e-5 {
            return Err(self.attn_err(sj, scope, format!("the scores are scaled by {scale}, not 1/√{d} = {}: multi_head_attention scales by 1/√(head dim)", 1.0 / (d as f64).sqrt())));
        }
        // The input projections: packed (one 3E projection, parts 0, 1, 2) or three of E.
        let ins: Vec<usize> = (0..projs.len()).filter(|&p| p != po).collect();
        let order: Vec<usize> = match (q, k, v) {
            (
                Src::Proj {
                    p: pq,
                    part: Some(0),
                },
                Src::Proj {
                    p: pk,
                    part: Some(1),
                },
                Src::Proj {
                    p: pv,
                    part: Some(2),
                },
            ) if pq == pk && pk == pv && ins == [pq] && projs[pq].m == [e, 3 * e] => vec![pq],
            (
                Src::Proj { p: pq, part: None },
                Src::Proj { p: pk, part: None },
                Src::Proj { p: pv, part: None },
            ) if ins.len() == 3
                && [pq, pk, pv].iter().all(|p| projs[*p].m == [e, e])
                && pq != pk
                && pk != pv
                && pq != pv =>
            {
                vec![pq, pk, pv]
            }
            _ => {
                return Err(self.attn_err(sj, scope, format!("queries from {q:?}, keys from {k:?}, values from {v:?}: archscope reads q, k and v as PyTorch's packed in-projection (3E×E, in that order) or three E×E projections")));
            }
        };
        if projs[po].m != [e, e] {
            return Err(self.attn_err(
                last,
                scope,
                format!("an output projection of {:?}", projs[po].m),
            ));
        }
        let with_bias = order
            .iter()
            .chain([&po])
            .map(|&p| projs[p].bias.is_some())
            .collect::<Vec<_>>();
        let bias = with_bias[0];
        if with_bias.iter().any(|&b| b != bias) {
            return Err(self.attn_err(last, scope, "some projections have a bias and some not; PyTorch's MultiheadAttention has all four or none (an exporter drops a bias that is all zeros: export with the trained weights, or graph-only)"));
        }
        // The layer, named after the module.
        let base = sanitize(scope);
        let id = self.fresh_id(&base, "attention");
        self.yaml_nodes.push(format!(
            "{{id: {id}, op: multi_head_attention, in: {xref}, heads: {heads}, bias: {bias}, need_weights: false}}"
        ));
        self.origins.push(self.where_(nodes[0], &g.node[nodes[0]]));
        self.paths.push(Some(scope.to_string()));
        // Weights in PyTorch's layout: W (out×in) = Mᵀ.
        let eu = e as usize;
        // Allocated only as the file's data comes (a graph-only file has none).
        let mut w_in: Option<Vec<f32>> = Some(Vec::new());
        for &p in &order {
            let cols = projs[p].m[1] as usize;
            match (
                projs[p].data.as_deref().and_then(|m| t2(m, eu, cols)),
                w_in.as_mut(),
            ) {
                (Some(m), Some(w)) => w.extend(m),
                _ => w_in = None,
            }
        }
        self.put_weight(&id, "in_proj_weight", &[3 * e, e], w_in);
        if bias {
            let mut b_in: Option<Vec<f32>> = Some(Vec::new());
            for &p in &order {
                match (
                    projs[p].bias.as_ref().and_then(|b| b.1.clone()),
                    b_in.as_mut(),
                ) {
                    (Some(b), Some(acc)) => acc.extend(b),
                    _ => b_in = None,
                }
            }
            self.put_weight(&id, "in_proj_bias", &[3 * e], b_in);
        }
        let w_out = projs[po].data.as_deref().and_then(|m| t2(m, eu, eu));
        self.put_weight(&id, "out_proj.weight", &[e, e], w_out);
        if bias {
            let b = projs[po].bias.as_ref().and_then(|b| b.1.clone());
            self.put_weight(&id, "out_proj.bias", &[e], b);
        }
        for &j in nodes {
            self.done.insert(j);
        }
        self.vals.insert(
            yname,
            Val::Act {
                r: id,
                shape: xshape,
            },
        );
        Ok(())
    }

    /// `Expand` of a learned tensor to the batch (ViT's `class_token.expand(n, -1, -1)`): the
    /// tensor itself, expanded where it is concatenated ([`Reader::concat_learned`]). Any other
    /// Expand is an error.
    pub(super) fn expand(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        let v = self.need(i, n, 0)?.clone();
        let target = self.ints(i, n, 1)?.unwrap_or_default();
        let dims = match &v {
            Val::Const { dims, init: Some(_), .. } | Val::Shaped { dims } => dims.clone(),
            _ => {
                return Err(self
                    .err(i, n, "Expand of anything but a learned tensor (an initializer)")
                    .help("archscope reads Expand of a class token to the batch; write other broadcasts in YAML with `op: expand`"))
            }
        };
        let out = super::broadcast(
            &dims,
            &target.iter().map(|&x| x.max(1) as u64).collect::<Vec<_>>(),
        );
        let mut want = dims.clone();
        if let Some(b) = want.first_mut() {
            *b = self.batch;
        }
        if dims.first() != Some(&1) || out != want {
            return Err(self
                .err(i, n, format!("Expand of {} to {target:?}: archscope reads the expansion of a learned 1×… tensor to the batch only", list(&dims)))
                .help("write other broadcasts in archscope YAML with `op: expand`"));
        }
        self.vals.insert(n.output[0].clone(), v);
        Ok(())
    }

    /// A Concat with learned tensors among its inputs (a class token): each becomes a
    /// `parameter` layer and an `expand` to the batch of the first computed input, then the
    /// concat. `None`: no learned input (the ordinary Concat).
    pub(super) fn concat_learned(
        &mut self,
        i: usize,
        n: &NodeProto,
    ) -> Option<Result<(), Diagnostic>> {
        let learned = |v: Option<&Val>| {
            matches!(
                v,
                Some(Val::Const { init: Some(_), .. } | Val::Shaped { .. })
            )
        };
        if !n.input.iter().any(|x| learned(self.vals.get(x))) {
            return None;
        }
        Some(self.concat_learned_inner(i, n))
    }

    fn concat_learned_inner(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        let batch_of = n
            .input
            .iter()
            .find_map(|x| match self.vals.get(x) {
                Some(Val::Act { r, shape }) => Some((r.clone(), shape.clone())),
                _ => None,
            })
            .ok_or_else(|| {
                self.err(i, n, "Concat of learned tensors only")
                    .help("archscope concatenates computed tensors")
            })?;
        let mut refs = Vec::new();
        let mut shapes = Vec::new();
        for k in 0..n.input.len() {
            match self.need(i, n, k)?.clone() {
                Val::Act { r, shape } => {
                    refs.push(r);
                    shapes.push(shape);
                }
                Val::Const { dims, init: Some(_), .. } | Val::Shaped { dims }
                    if dims.len() == batch_of.1.len() && dims.first() == Some(&1) =>
                {
                    let wname = n.input[k].clone();
                    let Some((wd, wdata)) = self.weight(i, n, k)? else {
                        return Err(self.err(i, n, format!("Concat has no input {k}")).help(super::AGAIN));
                    };
                    let pid = self.emit(i, n, &sanitize(&wname), format!("op: parameter, shape: {}", list(&wd)));
                    self.put_weight(&pid, "", &wd, wdata);
                    let keep = vec!["-1"; wd.len() - 1].join(", ");
                    let eid = self.emit(
                        i,
                        n,
                        &format!("{}_expanded", sanitize(&wname)),
                        format!("op: expand, in: [{pid}, {}], shape: [{keep}]", batch_of.0),
                    );
                    let mut s = wd.clone();
                    s[0] = batch_of.1[0];
                    refs.push(eid);
                    shapes.push(s);
                }
                _ => {
                    return Err(self
                        .err(i, n, format!("Concat input {k} is a constant that is not a learned 1×… tensor"))
                        .help("archscope concatenates computed tensors and learned tokens (a class token)"))
                }
            }
        }
        self.concat_layer(i, n, &shapes, &refs)
    }
}

/// The shape of `a` times a scalar constant of dims `c` (a rank-0 or all-1 tensor).
fn broadcast_scalar(a: &[u64], c: &[u64]) -> Vec<u64> {
    super::broadcast(a, c)
}
