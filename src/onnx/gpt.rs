//! GPT-2-style decoders in ONNX files, read back into archscope layers (a child module of the
//! reader, `impl Reader` blocks, like `patterns.rs`): the token ids (a Cast to an integer type or
//! an integer graph input, and reshapes that keep their shape), a `Gather` of a table by them
//! (`embedding`) or by the constant positions 0…L−1 (`embedding` with `positions: true`), the
//! tied language-model head (a `MatMul` by the transpose of an embedding's table, or by a
//! folded copy of it with the same values: `linear` with `tied:`, the table counted once), a
//! Conv1D traced as `Reshape → Gemm → Reshape` (one `linear` on the N×L×D input), the causal
//! scaled-dot-product attention as PyTorch's exporters and `archscope export` trace it
//! (`MatMul(q, kᵀ)`, scalar scales on either side, an `Add` of a constant mask, `Softmax` over
//! the keys, the exporters' `Where(IsNaN(p), 0, p)`, `MatMul(·, v)`: one
//! `scaled_dot_product_attention`, `causal: true` when the mask is −∞ exactly above the
//! diagonal and 0 elsewhere, a located error for any other mask), and the tanh-form GELU
//! (`0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, x³ as `Pow(x, 3)` or `x·x·x`). The two
//! multi-node patterns are found before the nodes are read (`prescan`): their inner nodes are
//! marked done and the last node emits the layer. Also the constant folding these graphs need
//! (broadcasting comparisons and logic of the mask, `Expand`, `Flatten` at any axis, `Gather`
//! of a row table).

use super::*;

/// The multi-node patterns of a graph, found before its nodes are read.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// End node (the product with V) → the attention it closes.
    sdpa: HashMap<usize, Sdpa>,
    /// End node (the last Mul) → the tensor x of a tanh GELU.
    gelu: HashMap<usize, String>,
    /// Tensors that are the token ids: name → the graph input's YAML id.
    ids: HashMap<String, String>,
    /// Embedding tables read: tensor name → (layer id, dims).
    tables: Vec<(String, String, Vec<u64>)>,
    /// Token inputs: YAML id → the smallest table that reads them (the vocabulary).
    pub(super) vocab: Vec<(String, u64)>,
    /// Attention-mask inputs: graph input name → the nodes that compute the masks from it
    /// (in graph order; read by evaluating them, `computed_mask`).
    chains: HashMap<String, Vec<usize>>,
    /// Whether a mask's computation is being evaluated (`computed_mask`): its initializers
    /// are decoded whatever their size.
    pub(super) evaluating: bool,
}

/// How K reaches the score product.
#[derive(Debug, Clone)]
enum KForm {
    /// `Transpose` swapping the last two axes of N×H×S×d.
    Swap,
    /// `Transpose` [0, 2, 3, 1] of N×S×H×d (the heads not yet moved).
    HeadsLast,
    /// `Reshape` to (N·H)×S×d, `Transpose` [0, 2, 1], `Reshape` back (the dynamo exporter):
    /// the node index of the last Reshape.
    Flat(usize),
}

/// A causal (or unmasked) attention: its tensors by name.
#[derive(Debug, Clone)]
struct Sdpa {
    q: String,
    k: String,
    k_form: KForm,
    v: String,
    /// Scalar factors (tensor name, whether it divides).
    scales: Vec<(String, bool)>,
    /// The mask added to the scores: tensor and node index.
    mask: Option<(String, usize)>,
    /// The graph input the mask is computed from (an attention-mask input), when it is not a
    /// constant.
    mask_input: Option<String>,
    /// The `Where(IsNaN(p), zero, p)` zero's tensor name.
    nan_zero: Option<String>,
}

/// ONNX's integer element types (INT8 … UINT64).
fn is_int_type(t: i64) -> bool {
    matches!(t, 2..=7 | 12 | 13)
}

/// A graph input's element type.
fn elem_type(v: &proto::ValueInfoProto) -> Option<i64> {
    let t = v.r#type.as_ref()?;
    let proto::type_proto::Value::TensorType(tt) = t.value.as_ref()? else {
        return None;
    };
    tt.elem_type.map(i64::from)
}

/// The comparisons and logic that fold with initializers the reader leaves undecoded (over 64
/// elements): those of an exported causal mask, never a layer's weights.
pub(super) fn folds_logic(op: &str) -> bool {
    matches!(
        op,
        "Equal"
            | "GatherND"
            | "Less"
            | "LessOrEqual"
            | "Greater"
            | "GreaterOrEqual"
            | "And"
            | "Or"
            | "Xor"
            | "Not"
    )
}

/// √(2/π) and 0.044715, the tanh GELU's constants, as an f32 file holds them.
/// Most producers deep a reshape target is folded ahead of its turn (`fold_chain`: the shape
/// arithmetic the exporters write after a Conv1D's `Gemm` with symbolic sizes, a few nodes
/// deep); deeper, the target is left to its own turn, where the Conv1D's flattening reshape
/// is refused (tests/limits.rs).
pub const MAX_FOLD_CHAIN: usize = 32;

const GELU_K: f64 = 0.797_884_560_802_865_4;
const GELU_C: f64 = 0.044_715;

const MASK_HELP: &str = "archscope reads an attention-mask input as transformers computes it (a key kept where the mask is not 0, with or without the causal rule, −∞ or the lowest f32 elsewhere); export with the mask inside the model, or describe the model in YAML (`mask: keys`, docs/FORMAT.md)";

const SDPA_HELP: &str = "archscope reads scaled-dot-product attention with a causal mask (−∞ above the diagonal, 0 elsewhere) or none; describe other masks in archscope YAML (docs/FORMAT.md)";

impl<'a> Reader<'a> {
    fn op_of(&self, j: usize) -> &'a str {
        self.graph.node[j].op_type.as_deref().unwrap_or("")
    }

    /// The producer of tensor `t` when `t` has exactly one reader.
    fn single_producer(&self, t: &str) -> Option<(usize, &'a NodeProto)> {
        if self.uses.get(t) != Some(&1) {
            return None;
        }
        let &p = self.producer.get(t)?;
        Some((p, &self.graph.node[p]))
    }

    /// The error for input `name` of node `n` that nothing declares, in a file without any
    /// initializer or weight input: the dynamo exporter's graph-only export
    /// (`export_params=False`) names its weights and shape constants without declaring them, so
    /// neither their shapes nor their values are in the file. `None`: another file.
    pub(super) fn undeclared(&self, i: usize, n: &NodeProto, name: &str) -> Option<Diagnostic> {
        let g = self.graph;
        let produced = self.producer.contains_key(name);
        let inputs = g
            .input
            .iter()
            .filter(|v| !self.inits.contains_key(v.name.as_deref().unwrap_or("")))
            .count();
        if produced || !g.initializer.is_empty() || inputs > 1 {
            return None;
        }
        Some(
            self.err(
                i,
                n,
                format!(
                    "input `{}` is declared nowhere: the file has no initializer and no weight input, so the shapes and values of its weights and shape constants are unknown (the dynamo exporter's graph-only file, torch.onnx.export(..., dynamo=True, export_params=False), names them without declaring them; its value_info gives the shapes of computed tensors only, and its graph_signature metadata names the parameters without shapes)",
                    excerpt(name)
                ),
            )
            .help("export with the weights (export_params=True, the default), or graph-only with the TorchScript exporter (torch.onnx.export(..., dynamo=False, export_params=False)), which declares each weight as a graph input of known shape"),
        )
    }

    /// A layer name for a pattern ending at node `n`: its module path (`/a/b/Op` or a weight),
    /// or the scope of `archscope export`'s `path/Op_k` names, else `default`.
    fn pattern_base(&self, n: &NodeProto, default: &str) -> String {
        if let Some(p) = module_path(n, None) {
            return sanitize(&p);
        }
        match n.name.as_deref().and_then(|s| s.split_once('/')) {
            Some((head, _)) if !head.is_empty() => sanitize(head),
            _ => default.to_string(),
        }
    }

    /// A scalar constant's value.
    fn scalar_of(&self, t: &str) -> Option<f64> {
        match self.vals.get(t) {
            Some(Val::Const { data, dims, .. }) if data.len() == 1 && numel(dims) == 1 => {
                Some(data[0])
            }
            _ => None,
        }
    }

    /// A constant's dims and values, decoding an initializer the reader left undecoded (those
    /// over 64 elements); `None` for a computed tensor or one over the folding limit.
    pub(super) fn const_values(&self, t: &str) -> Option<(Vec<u64>, Vec<f64>)> {
        let Some(Val::Const {
            dims, data, init, ..
        }) = self.vals.get(t)
        else {
            return None;
        };
        if data.len() as u64 == numel(dims) {
            return Some((dims.clone(), data.clone()));
        }
        if numel(dims) > MAX_FOLDED_ELEMENTS as u64 {
            return None;
        }
        let tp = self.inits.get(init.as_deref()?)?;
        let v = proto::tensor_to_f64(tp).ok()?;
        (v.len() as u64 == numel(dims)).then(|| (dims.clone(), v))
    }

    /// Whether tensor `t` is a known scalar constant close to `v` (1e-6 relative).
    fn scalar_near(&self, t: &str, v: f64) -> bool {
        self.scalar_of(t)
            .is_some_and(|x| (x - v).abs() <= 1e-6 * v.abs().max(1.0))
    }

    /// Finds the attention and tanh-GELU patterns and the integer token inputs; called once
    /// the graph inputs and `Constant` nodes are read.
    pub(super) fn prescan(&mut self) {
        let g = self.graph;
        for inp in &g.input {
            let name = inp.name.as_deref().unwrap_or("");
            if let Some(Val::Act { r, .. }) = self.vals.get(name) {
                if elem_type(inp).is_some_and(is_int_type) {
                    self.gpt.ids.insert(name.to_string(), r.clone());
                }
            }
        }
        // Tensors computed from the data inputs.
        let mut dynamic: HashSet<&str> = self
            .vals
            .iter()
            .filter(|(_, v)| matches!(v, Val::Act { .. }))
            .map(|(k, _)| k.as_str())
            .collect();
        for n in &g.node {
            if n.input.iter().any(|x| dynamic.contains(x.as_str())) {
                dynamic.extend(n.output.iter().map(String::as_str));
            }
        }
        // Which data inputs each tensor is computed from (one bit per input, the 64th for all
        // later ones), not through `Shape`/`Size` (whose values are fixed here).
        let data: Vec<&str> = g
            .input
            .iter()
            .filter_map(|v| v.name.as_deref())
            .filter(|x| matches!(self.vals.get(*x), Some(Val::Act { .. })))
            .collect();
        let mut deps: HashMap<&str, u64> = data
            .iter()
            .enumerate()
            .map(|(k, x)| (*x, 1u64 << k.min(63)))
            .collect();
        for n in &g.node {
            if matches!(n.op_type.as_deref(), Some("Shape" | "Size")) {
                continue;
            }
            let d = n
                .input
                .iter()
                .fold(0, |a, x| a | deps.get(x.as_str()).copied().unwrap_or(0));
            if d != 0 {
                for o in &n.output {
                    deps.insert(o.as_str(), d);
                }
            }
        }
        let mut found = Vec::new();
        for (i, n) in g.node.iter().enumerate() {
            match n.op_type.as_deref() {
                Some("Softmax") if !self.regions.contains(i) => {
                    if let Some((end, mut s, inner)) = self.find_sdpa(i, n, &dynamic, &deps) {
                        if inner
                            .iter()
                            .chain([&end])
                            .any(|&j| self.regions.contains(j))
                        {
                            continue;
                        }
                        if let Some((t, _)) = &s.mask {
                            let d = deps.get(t.as_str()).copied().unwrap_or(0);
                            if d != 0 {
                                // One attention-mask input (the 64th bit stands for several).
                                let k = d.trailing_zeros() as usize;
                                if d.count_ones() != 1 || k >= 63 {
                                    continue;
                                }
                                s.mask_input = Some(data[k].to_string());
                            }
                        }
                        found.push((end, s, inner));
                    }
                }
                Some("Tanh") if !self.regions.contains(i) => {
                    if let Some((end, x, inner)) = self.find_gelu_tanh(i, n) {
                        self.done.extend(inner);
                        self.gpt.gelu.insert(end, x);
                    }
                }
                _ => {}
            }
        }
        // Each attention-mask input: the nodes computing the masks from it must read nothing
        // else computed from the data and be read by nothing else than the attention's Add;
        // then they are the attention's (evaluated there), else its attentions are left to
        // the node-by-node reading, which refuses them at the first node it cannot map.
        let mut inputs: Vec<String> = found
            .iter()
            .filter_map(|(_, s, _)| s.mask_input.clone())
            .collect();
        inputs.sort();
        inputs.dedup();
        for x in inputs {
            let adds: HashSet<usize> = found
                .iter()
                .filter(|(_, s, _)| s.mask_input.as_ref() == Some(&x))
                .filter_map(|(_, s, _)| s.mask.as_ref().map(|m| m.1))
                .collect();
            let mut reach: HashSet<&str> = HashSet::from([x.as_str()]);
            let mut chain = Vec::new();
            let mut clean = true;
            for (i, n) in g.node.iter().enumerate() {
                if adds.contains(&i) || !n.input.iter().any(|t| reach.contains(t.as_str())) {
                    continue;
                }
                clean &= n.input.iter().all(|t| {
                    reach.contains(t.as_str()) || deps.get(t.as_str()).copied().unwrap_or(0) == 0
                });
                clean &= !g.output.iter().any(|o| {
                    n.output
                        .iter()
                        .any(|y| o.name.as_deref() == Some(y.as_str()))
                });
                chain.push(i);
                reach.extend(n.output.iter().map(String::as_str));
            }
            if clean {
                self.done.extend(chain.iter().copied());
                self.gpt.chains.insert(x, chain);
            } else {
                found.retain(|(_, s, _)| s.mask_input.as_ref() != Some(&x));
            }
        }
        for (end, s, inner) in found {
            self.done.extend(inner);
            self.gpt.sdpa.insert(end, s);
        }
    }

    /// Walks back from tensor `t` through Mul/Div by scalar constants (each the only reader of
    /// what it reads), collecting them; returns the tensor reached.
    fn strip_scales(
        &self,
        mut t: String,
        scales: &mut Vec<(String, bool)>,
        inner: &mut Vec<usize>,
    ) -> String {
        while let Some((p, m)) = self.single_producer(&t) {
            let op = m.op_type.as_deref().unwrap_or("");
            if (op != "Mul" && op != "Div") || m.input.len() != 2 {
                break;
            }
            let k = if op == "Div" {
                if self.scalar_of(&m.input[1]).is_none() {
                    break;
                }
                1
            } else if let Some(k) = (0..2).find(|&k| self.scalar_of(&m.input[k]).is_some()) {
                k
            } else {
                break;
            };
            scales.push((m.input[k].clone(), op == "Div"));
            inner.push(p);
            t = m.input[1 - k].clone();
        }
        t
    }

    /// The attention pattern ending after Softmax node `i`: (end node, pattern, inner nodes).
    fn find_sdpa(
        &self,
        i: usize,
        sm: &NodeProto,
        dynamic: &HashSet<&str>,
        deps: &HashMap<&str, u64>,
    ) -> Option<(usize, Sdpa, Vec<usize>)> {
        let mut inner = vec![i];
        let mut scales = Vec::new();
        let mut mask = None;
        // Back from the softmax: scalar scales and at most one Add of a constant, to the
        // product of two computed tensors.
        let mut t = sm.input.first()?.clone();
        let (qq, kk) = loop {
            let (p, m) = self.single_producer(&t)?;
            match m.op_type.as_deref().unwrap_or("") {
                "Add" if mask.is_none() && m.input.len() == 2 => {
                    let d = |k: usize| deps.get(m.input[k].as_str()).copied().unwrap_or(0);
                    let k =
                        match (0..2).find(|&k| !dynamic.contains(m.input[k].as_str())) {
                            Some(k) => k,
                            // Both computed: the mask is the side computed without the data
                            // inputs the scores come from (from an attention-mask input; the
                            // scores of a later layer depend on it too), the scores a product or
                            // its scale.
                            None => (0..2).rev().find(|&k| {
                                d(k) != 0
                                    && d(1 - k) & !d(k) != 0
                                    && self.producer.get(m.input[1 - k].as_str()).is_some_and(
                                        |&p| matches!(self.op_of(p), "MatMul" | "Mul" | "Div"),
                                    )
                            })?,
                        };
                    if !dynamic.contains(m.input[1 - k].as_str()) {
                        return None;
                    }
                    mask = Some((m.input[k].clone(), p));
                    inner.push(p);
                    t = m.input[1 - k].clone();
                }
                "Mul" | "Div" => {
                    let before = scales.len();
                    let next = self.strip_scales(t.clone(), &mut scales, &mut inner);
                    if scales.len() == before {
                        return None;
                    }
                    t = next;
                }
                "MatMul"
                    if m.input.len() == 2
                        && m.input.iter().all(|x| dynamic.contains(x.as_str())) =>
                {
                    inner.push(p);
                    break (m.input[0].clone(), m.input[1].clone());
                }
                _ => return None,
            }
        };
        let q = self.strip_scales(qq, &mut scales, &mut inner);
        let kt = self.strip_scales(kk, &mut scales, &mut inner);
        let (pt, tn) = self.single_producer(&kt)?;
        let perm = attr_ints(tn, "perm");
        let (k0, k_form) = match (tn.op_type.as_deref(), perm.as_deref()) {
            (Some("Transpose"), Some([0, 1, 3, 2])) => (tn.input.first()?.clone(), KForm::Swap),
            (Some("Transpose"), Some([0, 2, 3, 1])) => {
                (tn.input.first()?.clone(), KForm::HeadsLast)
            }
            (Some("Reshape"), _) => {
                let (pm, mid) = self.single_producer(tn.input.first()?)?;
                let (pf, first) = self.single_producer(mid.input.first()?)?;
                if mid.op_type.as_deref() != Some("Transpose")
                    || attr_ints(mid, "perm").as_deref() != Some(&[0, 2, 1])
                    || first.op_type.as_deref() != Some("Reshape")
                {
                    return None;
                }
                inner.extend([pm, pf]);
                (first.input.first()?.clone(), KForm::Flat(pt))
            }
            _ => return None,
        };
        inner.push(pt);
        let k = self.strip_scales(k0, &mut scales, &mut inner);
        // Forward: the product with V, after the exporters' NaN guard or directly.
        let p = sm.output.first()?;
        let readers: Vec<(usize, &NodeProto)> = self
            .graph
            .node
            .iter()
            .enumerate()
            .skip(i + 1)
            .filter(|(_, m)| m.input.iter().any(|x| x == p))
            .collect();
        let (probs, nan_zero) = match readers[..] {
            [(_, mm)] if mm.op_type.as_deref() == Some("MatMul") => (p.clone(), None),
            [(j1, a), (j2, b)] => {
                let (isnan, wh, ji, jw) = if a.op_type.as_deref() == Some("IsNaN") {
                    (a, b, j1, j2)
                } else {
                    (b, a, j2, j1)
                };
                if isnan.op_type.as_deref() != Some("IsNaN")
                    || wh.op_type.as_deref() != Some("Where")
                    || wh.input.len() != 3
                    || wh.input[0] != isnan.output[0]
                    || wh.input[2] != *p
                    || self.uses.get(isnan.output[0].as_str()) != Some(&1)
                {
                    return None;
                }
                inner.extend([ji, jw]);
                (wh.output[0].clone(), Some(wh.input[1].clone()))
            }
            _ => return None,
        };
        let (end, mm) = self.sole_reader(i + 1, &probs)?;
        if mm.op_type.as_deref() != Some("MatMul")
            || mm.input.len() != 2
            || mm.input[0] != probs
            || !dynamic.contains(mm.input[1].as_str())
        {
            return None;
        }
        let s = Sdpa {
            q,
            k,
            k_form,
            v: mm.input[1].clone(),
            scales,
            mask,
            mask_input: None,
            nan_zero,
        };
        Some((end, s, inner))
    }

    /// The tanh GELU around Tanh node `i`: (end node, x, inner nodes).
    fn find_gelu_tanh(&self, i: usize, t: &NodeProto) -> Option<(usize, String, Vec<usize>)> {
        let op_is = |m: &NodeProto, o: &str| m.op_type.as_deref() == Some(o) && m.input.len() == 2;
        let mut inner = vec![i];
        // tanh(k · (x + c · x³))
        let (pu, u) = self.single_producer(t.input.first()?)?;
        if !op_is(u, "Mul") {
            return None;
        }
        let ku = (0..2).find(|&k| self.scalar_near(&u.input[k], GELU_K))?;
        let (pw, w) = self.single_producer(&u.input[1 - ku])?;
        if !op_is(w, "Add") {
            return None;
        }
        inner.extend([pu, pw]);
        // One side of the Add is x, the other c·x³.
        let (x, pc, c, kc) = (0..2).find_map(|k| {
            let (pc, c) = self.single_producer(&w.input[1 - k])?;
            if !op_is(c, "Mul") {
                return None;
            }
            let kc = (0..2).find(|&j| self.scalar_near(&c.input[j], GELU_C))?;
            Some((w.input[k].clone(), pc, c, kc))
        })?;
        inner.push(pc);
        let (pcube, cube) = self.single_producer(&c.input[1 - kc])?;
        inner.push(pcube);
        if op_is(cube, "Pow") {
            if cube.input[0] != x || !self.scalar_near(&cube.input[1], 3.0) {
                return None;
            }
        } else if op_is(cube, "Mul") {
            // x·x·x in any grouping: (x·x)·x.
            let (ks, sq) = (0..2).find_map(|k| {
                (cube.input[1 - k] == x)
                    .then(|| self.single_producer(&cube.input[k]))
                    .flatten()
                    .map(|s| (k, s))
            })?;
            let _ = ks;
            let (psq, sqn) = sq;
            if !op_is(sqn, "Mul") || sqn.input[0] != x || sqn.input[1] != x {
                return None;
            }
            inner.push(psq);
        } else {
            return None;
        }
        // 1 + tanh(…), then x · 0.5 · (1 + tanh(…)) in one of three groupings.
        let (ja, add) = self.sole_reader(i + 1, &t.output[0])?;
        if !op_is(add, "Add") || !add.input.iter().any(|s| self.scalar_near(s, 1.0)) {
            return None;
        }
        inner.push(ja);
        let (jm, m) = self.sole_reader(ja + 1, &add.output[0])?;
        if !op_is(m, "Mul") {
            return None;
        }
        let other = m.input.iter().find(|s| **s != add.output[0])?.clone();
        if self.scalar_near(&other, 0.5) {
            // (1 + tanh) · 0.5, then · x.
            let (je, e) = self.sole_reader(jm + 1, &m.output[0])?;
            if !op_is(e, "Mul") || !e.input.contains(&x) {
                return None;
            }
            inner.push(jm);
            return Some((je, x, inner));
        }
        if other == x {
            let (je, e) = self.sole_reader(jm + 1, &m.output[0])?;
            if !op_is(e, "Mul") || !e.input.iter().any(|s| self.scalar_near(s, 0.5)) {
                return None;
            }
            inner.push(jm);
            return Some((je, x, inner));
        }
        // (x · 0.5) · (1 + tanh)
        let (ph, h) = self.single_producer(&other)?;
        if !op_is(h, "Mul")
            || !h.input.contains(&x)
            || !h.input.iter().any(|s| self.scalar_near(s, 0.5))
        {
            return None;
        }
        inner.push(ph);
        Some((jm, x, inner))
    }

    /// Node `i` when it ends a pattern found by [`Reader::prescan`]: emits its layers.
    pub(super) fn gpt_end(&mut self, i: usize, n: &NodeProto) -> Option<Result<(), Diagnostic>> {
        if let Some(x) = self.gpt.gelu.get(&i).cloned() {
            let Some(Val::Act { r, shape }) = self.vals.get(&x).cloned() else {
                return Some(Err(self
                    .err(i, n, "the tanh GELU's input is not a computed tensor")
                    .help(AGAIN)));
            };
            let base = self.pattern_base(n, "gelu");
            let id = self.emit(i, n, &base, format!("op: gelu, in: {r}, approximate: tanh"));
            self.set_out(n, 0, id, shape);
            return Some(Ok(()));
        }
        let s = self.gpt.sdpa.get(&i).cloned()?;
        Some(self.emit_sdpa(i, n, s))
    }

    fn emit_sdpa(&mut self, i: usize, n: &NodeProto, s: Sdpa) -> Result<(), Diagnostic> {
        let act = |me: &Self, t: &str, what: &str| match me.vals.get(t) {
            Some(Val::Act { r, shape }) => Ok((r.clone(), shape.clone())),
            _ => Err(me
                .err(
                    i,
                    n,
                    format!(
                        "the attention's {what} (`{}`) is not a computed tensor",
                        excerpt(t)
                    ),
                )
                .help(SDPA_HELP)),
        };
        let (q, qs) = act(self, &s.q, "query")?;
        let (mut k, ks) = act(self, &s.k, "key")?;
        let (v, vs) = act(self, &s.v, "value")?;
        let rank = qs.len();
        let bad = |me: &Self| {
            me.err(
                i,
                n,
                format!("attention on query {qs:?}, key {ks:?} and value {vs:?}: archscope reads N×heads×L×d"),
            )
            .help(SDPA_HELP)
        };
        if rank != 4 || ks.len() != 4 || vs.len() != 4 {
            return Err(bad(self));
        }
        // K as N×H×S×d.
        let k_heads = match s.k_form {
            KForm::Swap => ks.clone(),
            KForm::HeadsLast => vec![ks[0], ks[2], ks[1], ks[3]],
            KForm::Flat(j) => {
                let m = &self.graph.node[j];
                let target = self.ints(j, m, 1)?.unwrap_or_default();
                let want = [ks[0], ks[1], ks[3], ks[2]];
                if target.len() != 4
                    || target
                        .iter()
                        .zip(&want)
                        .any(|(&t, &w)| t != w as i64 && t != -1 && t != 0)
                {
                    return Err(bad(self));
                }
                ks.clone()
            }
        };
        if k_heads[..2] != qs[..2]
            || vs[..2] != qs[..2]
            || k_heads[3] != qs[3]
            || vs[2] != k_heads[2]
        {
            return Err(bad(self));
        }
        let (l, sk, d) = (qs[2], k_heads[2], qs[3]);
        // The scale: the product of the scalar factors.
        let mut scale = 1.0f64;
        for (t, div) in &s.scales {
            let x = self.scalar_of(t).unwrap_or(f64::NAN);
            scale *= if *div { 1.0 / x } else { x };
        }
        if !(scale.is_finite() && scale > 0.0) {
            return Err(self
                .err(
                    i,
                    n,
                    format!("the attention's scores are scaled by {scale}"),
                )
                .help(SDPA_HELP));
        }
        if let Some(z) = &s.nan_zero {
            if self.scalar_of(z) != Some(0.0) {
                return Err(self
                    .err(
                        i,
                        n,
                        "the NaN guard after the softmax puts another value than 0",
                    )
                    .help(SDPA_HELP));
            }
        }
        let mut keys = None;
        let causal = match (&s.mask, &s.mask_input) {
            (None, _) => false,
            (Some((t, j)), None) => self.causal_mask(*j, t, l, sk)?,
            (Some((t, j)), Some(x)) => {
                let (causal, r) = self.computed_mask(*j, t, x, l, sk)?;
                keys = Some(r);
                causal
            }
        };
        let base = self.pattern_base(n, "attention");
        if matches!(s.k_form, KForm::HeadsLast) {
            k = self.emit(
                i,
                n,
                &format!("{base}_k"),
                format!("op: transpose, in: {k}, dims: [1, 2]"),
            );
        }
        let default = (1.0 / (d as f64).sqrt()) as f32;
        let mut extra = String::new();
        if causal {
            extra.push_str(", causal: true");
        }
        if (scale as f32 - default).abs() > f32::EPSILON * default {
            let _ = write!(extra, ", scale: {}", yf(scale));
        }
        let ins = match &keys {
            Some(m) => {
                extra.push_str(", mask: keys");
                format!("[{q}, {k}, {v}, {m}]")
            }
            None => format!("[{q}, {k}, {v}]"),
        };
        let id = self.emit(
            i,
            n,
            &base,
            format!("op: scaled_dot_product_attention, in: {ins}{extra}"),
        );
        let mut out = qs.clone();
        out[3] = vs[3];
        self.set_out(n, 0, id, out);
        Ok(())
    }

    /// Whether the constant `t` added to the L×S scores (node `j`) is the causal mask (−∞ above
    /// the diagonal, 0 elsewhere: `Ok(true)`) or all zeros (`Ok(false)`); any other mask is an
    /// error naming the node.
    fn causal_mask(&self, j: usize, t: &str, l: u64, s: u64) -> Result<bool, Diagnostic> {
        let m = &self.graph.node[j];
        let Some((dims, data)) = self.const_values(t) else {
            return Err(self
                .err(j, m, "the mask added to the attention scores is not a constant (or is over 2^20 elements)")
                .help(SDPA_HELP));
        };
        let nd = dims.len();
        let fits =
            nd >= 2 && dims[nd - 2] == l && dims[nd - 1] == s && data.len() as u64 == numel(&dims);
        let fail = |what: &str| {
            self.err(
                j,
                m,
                format!("the mask added to the attention scores ({dims:?}) {what}"),
            )
            .help(SDPA_HELP)
        };
        if !fits {
            return Err(fail(&format!(
                "is not one L×S matrix ({l}×{s}) broadcast over the heads"
            )));
        }
        let plane = (l * s) as usize;
        if plane == 0 {
            return Err(fail("is empty"));
        }
        let mut causal = true;
        let mut zero = true;
        for (k, &x) in data.iter().enumerate() {
            let (r, c) = ((k % plane) as u64 / s, (k % plane) as u64 % s);
            // −∞, or the lowest f32 (torch.finfo(float32).min, the dynamo exporter's).
            let masked = x == f64::NEG_INFINITY || x == f64::from(f32::MIN);
            if !(x == 0.0 || masked) {
                return Err(fail(&format!(
                    "holds {x}: archscope reads masks of 0 and −∞ (or the lowest f32)"
                )));
            }
            causal &= masked == (c > r);
            zero &= !masked;
        }
        match (causal, zero) {
            (true, _) => Ok(true),
            (_, true) => Ok(false),
            _ => Err(fail("is not causal (−∞ exactly above the diagonal)")),
        }
    }

    /// The mask `t` added to the L×S scores (node `j`) computed from the attention-mask graph
    /// input `x` (transformers' `attention_mask`, N×S: 1 for a token, 0 for padding):
    /// `(causal, x's YAML id)` when, for each of four masks put in `x` (all ones; the first
    /// half kept; every other key, shifted by one per sample; all zeros), the nodes between
    /// `x` and `t` evaluate to 0 for each pair whose key the mask keeps (and, when causal, that
    /// does not come after the query) and to −∞ or the lowest f32 for every other pair, as
    /// transformers computes it. Anything else is an error naming node `j` or the node that
    /// does not evaluate.
    fn computed_mask(
        &mut self,
        j: usize,
        t: &str,
        x: &str,
        l: u64,
        s: u64,
    ) -> Result<(bool, String), Diagnostic> {
        let g = self.graph;
        let m = &g.node[j];
        let fail = |me: &Self, what: String| {
            me.err(
                j,
                m,
                format!(
                    "the mask added to the attention scores, computed from input `{}`, {what}",
                    excerpt(x)
                ),
            )
            .help(MASK_HELP)
        };
        let Some(Val::Act { r, shape }) = self.vals.get(x).cloned() else {
            return Err(fail(self, "is not computed from a data input".into()));
        };
        if shape.len() != 2 || shape[1] != s {
            return Err(fail(
                self,
                format!("comes from a {shape:?} tensor: archscope reads an N×S mask of the keys (N×{s})"),
            ));
        }
        let n = shape[0] as usize;
        let su = s as usize;
        // The nodes of the chain that `t` is computed from, in graph order.
        let chain = self.gpt.chains.get(x).cloned().unwrap_or_default();
        let mut need: HashSet<&str> = HashSet::from([t]);
        let mut nodes = Vec::new();
        for &c in chain.iter().rev() {
            let nd = &g.node[c];
            if c < j && nd.output.iter().any(|o| need.contains(o.as_str())) {
                nodes.push(c);
                need.extend(nd.input.iter().map(String::as_str));
            }
        }
        nodes.reverse();
        let probes: [Box<dyn Fn(usize, usize) -> bool>; 4] = [
            Box::new(|_, _| true),
            Box::new(move |_, k| k < (su / 2).max(1)),
            Box::new(|b, k| (k + b) % 2 == 0),
            Box::new(|_, _| false),
        ];
        let mut causal = false;
        for (pi, keep) in probes.iter().enumerate() {
            let probe: Vec<f64> = (0..n * su)
                .map(|e| f64::from(u8::from(keep(e / su.max(1), e % su.max(1)))))
                .collect();
            let saved = self
                .vals
                .insert(x.to_string(), Val::folded(vec![n as u64, s], probe));
            let mut result = Ok(());
            self.gpt.evaluating = true;
            for &c in &nodes {
                let nd = &g.node[c];
                match self.fold(c, nd) {
                    Ok(Some(())) => {}
                    Ok(None) => {
                        result = Err(self
                            .err(c, nd, format!("the attention mask's computation from input `{}` does not evaluate here (with the mask's values known)", excerpt(x)))
                            .help(MASK_HELP));
                        break;
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            self.gpt.evaluating = false;
            let got = self.const_values(t);
            for &c in &nodes {
                for o in &g.node[c].output {
                    self.vals.remove(o);
                }
            }
            if let Some(v) = saved {
                self.vals.insert(x.to_string(), v);
            }
            result?;
            let Some((dims, data)) = got else {
                return Err(fail(self, "is not evaluated".into()));
            };
            let nd = dims.len();
            let lead_ok = match nd {
                2 => true,
                3 => true,
                4 => dims[0] == 1 || dims[0] == n as u64,
                _ => false,
            };
            if !(lead_ok && dims[nd - 2] == l && dims[nd - 1] == s) {
                return Err(fail(
                    self,
                    format!("is {dims:?}: archscope reads a mask of N×1×L×S ({n}×1×{l}×{s}) broadcast over the heads"),
                ));
            }
            let plane = (l * s) as usize;
            let per_sample = (numel(&dims[..nd.saturating_sub(2)]) as usize).max(1);
            let samples = if nd == 4 { dims[0] as usize } else { 1 };
            let heads = per_sample / samples.max(1);
            let mut above = true;
            let mut none = true;
            for (e, &v) in data.iter().enumerate() {
                let masked = v == f64::NEG_INFINITY || v == f64::from(f32::MIN);
                if !(v == 0.0 || masked) {
                    return Err(fail(
                        self,
                        format!("holds {v}: archscope reads masks of 0 and −∞ (or the lowest f32)"),
                    ));
                }
                let b = e / plane / heads.max(1);
                let (row, col) = ((e % plane) / su, (e % plane) % su);
                // Samples a broadcast mask stands for.
                let range = if samples == n { b..b + 1 } else { 0..n };
                for bb in range {
                    let kept = keep(bb, col);
                    if pi == 0 {
                        above &= masked == (col > row);
                        none &= !masked;
                    } else if masked != (!kept || (causal && col > row)) {
                        return Err(fail(
                            self,
                            format!(
                                "is not transformers' mask of the keys{}: with key {col} of sample {bb} {}, the pair of query {row} is {}",
                                if causal { " and the causal rule" } else { "" },
                                if kept { "kept" } else { "left out" },
                                if masked { "masked" } else { "not masked" }
                            ),
                        ));
                    }
                }
            }
            if pi == 0 {
                causal = match (above, none) {
                    (true, _) => l > 1 || s > 1,
                    (_, true) => false,
                    _ => return Err(fail(self, "with every key kept is neither causal (−∞ exactly above the diagonal) nor zero".into())),
                };
                if none {
                    causal = false;
                }
            }
        }
        Ok((causal, r))
    }

    /// A Cast of a computed tensor: to a float type, the tensor itself; to an integer type,
    /// only of the token ids (a data input), which stay token ids.
    pub(super) fn cast_act(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        let v = self.need(i, n, 0)?.clone();
        let to = attr_i(n, "to", 0);
        let x = &n.input[0];
        let is_input = self
            .graph
            .input
            .iter()
            .any(|g| g.name.as_deref() == Some(x.as_str()));
        match &v {
            Val::Act { r, .. } if is_int_type(to) => {
                let src = match self.gpt.ids.get(x) {
                    Some(s) => s.clone(),
                    None if is_input => r.clone(),
                    None => {
                        return Err(self
                            .err(i, n, "a Cast of a computed tensor to an integer type")
                            .help("archscope reads integer casts of the token ids only (an input read by an embedding's Gather); describe the model in YAML"))
                    }
                };
                self.gpt.ids.insert(n.output[0].clone(), src);
            }
            Val::Act { .. } if matches!(to, 1 | 10 | 11 | 16) => {}
            _ => {
                return Err(self
                    .err(i, n, format!("a Cast to ONNX type {to}"))
                    .help("archscope reads casts of computed tensors to float types and of the token ids to integers"))
            }
        }
        self.vals.insert(n.output[0].clone(), v);
        Ok(())
    }

    /// `CastLike` of a computed tensor: a float-like second input leaves it as it is (what
    /// archscope computes is f32 throughout); the integer casts are [`Self::cast_act`]'s.
    pub(super) fn cast_like(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        let int = n.input.get(1).is_some_and(|x| self.ints.contains(x));
        if int {
            return Err(self
                .err(i, n, "a CastLike of a computed tensor to an integer type")
                .help("archscope reads casts of computed tensors to float types; describe the model in YAML"));
        }
        let v = self.need(i, n, 0)?.clone();
        self.vals.insert(n.output[0].clone(), v);
        Ok(())
    }

    /// A reshape of the token ids to their own shape: the ids themselves.
    pub(super) fn same_ids(&mut self, n: &NodeProto, shape: &[u64], out: &[u64]) -> bool {
        let x = &n.input[0];
        let Some(src) = self.gpt.ids.get(x).cloned() else {
            return false;
        };
        if shape != out {
            return false;
        }
        if let Some(v) = self.vals.get(x).cloned() {
            self.vals.insert(n.output[0].clone(), v);
            self.gpt.ids.insert(n.output[0].clone(), src);
        }
        true
    }

    /// `Expand` of a computed tensor to its own shape: the tensor.
    pub(super) fn expand_same(
        &mut self,
        i: usize,
        n: &NodeProto,
    ) -> Option<Result<(), Diagnostic>> {
        let Some(Val::Act { shape, .. }) = self.vals.get(n.input.first()?).cloned() else {
            return None;
        };
        let target = match self.ints(i, n, 1) {
            Ok(t) => t?,
            Err(e) => return Some(Err(e)),
        };
        let t: Vec<u64> = target.iter().map(|&x| x.max(1) as u64).collect();
        if broadcast(&shape, &t) != shape {
            return Some(Err(self
                .err(
                    i,
                    n,
                    format!("Expand of a computed {shape:?} tensor to {target:?}"),
                )
                .help("write broadcasts in archscope YAML with `op: expand`")));
        }
        let v = self.vals.get(&n.input[0]).cloned()?;
        self.vals.insert(n.output[0].clone(), v);
        Some(Ok(()))
    }

    /// `Gather(table, ids)` (an `embedding`) or `Gather(table, 0…L−1)` (a position
    /// embedding) on axis 0 of a learned N×D table. `None`: input 0 is not a learned table.
    pub(super) fn embedding(&mut self, i: usize, n: &NodeProto) -> Option<Result<(), Diagnostic>> {
        let table = n.input.first()?.clone();
        let dims = match self.vals.get(&table)? {
            Val::Const {
                dims,
                init: Some(_),
                ..
            }
            | Val::Shaped { dims } => dims.clone(),
            _ => return None,
        };
        Some(self.embedding_layer(i, n, &table, dims))
    }

    fn embedding_layer(
        &mut self,
        i: usize,
        n: &NodeProto,
        table: &str,
        dims: Vec<u64>,
    ) -> Result<(), Diagnostic> {
        if dims.len() != 2 || attr_i(n, "axis", 0) != 0 {
            return Err(self
                .err(i, n, format!("Gather from a learned {dims:?} tensor along axis {}", attr_i(n, "axis", 0)))
                .help("archscope reads Gather of rows of a 2-D table (torch.nn.Embedding); describe other indexing in YAML"));
        }
        let (num, dim) = (dims[0], dims[1]);
        let idx = n.input.get(1).cloned().unwrap_or_default();
        let (ids_ref, ids_shape, positions) = match self.need(i, n, 1)?.clone() {
            Val::Act { r, shape } => {
                let Some(src) = self.gpt.ids.get(&idx).cloned() else {
                    return Err(self
                        .err(i, n, "Gather of a table by computed indices that are not the model's token ids")
                        .help("archscope reads an embedding of the token-id input (an integer input, or one Cast to integers); describe other indexing in YAML"));
                };
                if shape.len() != 2 {
                    return Err(self
                        .err(i, n, format!("an embedding of ids of shape {shape:?}: archscope reads N×L token ids"))
                        .help("export with input ids of shape N×L"));
                }
                let _ = r;
                (src, shape, false)
            }
            Val::Const { .. } => {
                // The positions 0…L−1 of the token input.
                let (idims, data) = self.const_values(&idx).unwrap_or_default();
                let Some((src, shape)) = self.token_input() else {
                    return Err(self.err(i, n, "Gather of a table by constant indices in a model without a token input").help("describe the model in YAML"));
                };
                let len = shape.last().copied().unwrap_or(0);
                let arange = data.len() as u64 == len
                    && data.iter().enumerate().all(|(k, &x)| x == k as f64)
                    && idims.iter().rev().skip(1).all(|&d| d == 1);
                if !arange {
                    return Err(self
                        .err(i, n, format!("Gather of a table by constant indices {idims:?} that are not the positions 0…{} of the {len} tokens", len.saturating_sub(1)))
                        .help("archscope reads a position embedding wpe(arange(L)); describe other indexing in YAML"));
                }
                if len > num {
                    return Err(self.longer_than_table(i, n, &src, len, table, num));
                }
                (src, shape, true)
            }
            Val::Shaped { .. } => {
                return Err(self.err(i, n, "Gather of a table by a weight").help(AGAIN));
            }
        };
        let wdata = self.weight(i, n, 0)?.and_then(|(_, d)| d);
        let base = self.base(n, Some(table), "embedding");
        let pos = if positions { ", positions: true" } else { "" };
        let id = self.emit(
            i,
            n,
            &base,
            format!("op: embedding, in: {ids_ref}, num: {num}, dim: {dim}{pos}"),
        );
        self.put_weight(&id, "weight", &dims, wdata);
        if !positions {
            match self.gpt.vocab.iter_mut().find(|(r, _)| *r == ids_ref) {
                Some((_, v)) => *v = (*v).min(num),
                None => self.gpt.vocab.push((ids_ref.clone(), num)),
            }
            self.gpt
                .tables
                .push((table.to_string(), id.clone(), dims.clone()));
        }
        let out = vec![ids_shape[0], ids_shape[1], dim];
        self.set_out(n, 0, id, out);
        Ok(())
    }

    /// A sequence of `len` tokens (input `src`, a YAML id) longer than the `num` positions of
    /// table `table`: the error names the graph input, its length axis and that axis's symbol.
    fn longer_than_table(
        &self,
        i: usize,
        n: &NodeProto,
        src: &str,
        len: u64,
        table: &str,
        num: u64,
    ) -> Diagnostic {
        let input = self.graph.input.iter().find(|g| {
            matches!(self.vals.get(g.name.as_deref().unwrap_or("")), Some(Val::Act { r, .. }) if r == src)
        });
        let name = input.and_then(|g| g.name.as_deref()).unwrap_or(src);
        let symbol = input
            .and_then(|g| dim_symbols(g).get(1).cloned().flatten())
            .map_or(String::new(), |s| format!(" (`{}`)", excerpt(&s)));
        self.err(
            i,
            n,
            format!(
                "input `{}`: dimension 1{symbol} of {len} tokens is longer than the {num} positions of table `{}`",
                excerpt(name),
                excerpt(table)
            ),
        )
        .help(format!("give at most {num} tokens (--input {num})"))
    }

    /// The token input: the first data input read as ids, else the first data input.
    fn token_input(&self) -> Option<(String, Vec<u64>)> {
        let mut first = None;
        for g in &self.graph.input {
            let name = g.name.as_deref().unwrap_or("");
            if let Some(Val::Act { r, shape }) = self.vals.get(name) {
                if self.gpt.vocab.iter().any(|(v, _)| v == r) {
                    return Some((r.clone(), shape.clone()));
                }
                first.get_or_insert((r.clone(), shape.clone()));
            }
        }
        first
    }

    /// The embedding whose table weight input `k` of MatMul `n` is (its transpose, or a
    /// folded copy of the transpose with the same values `w`, in PyTorch's out×in layout).
    pub(super) fn tied_table(&self, n: &NodeProto, k: usize, w: Option<&[f32]>) -> Option<String> {
        let name = n.input.get(k)?;
        // Through a Transpose of the table itself.
        if let Some(&p) = self.producer.get(name.as_str()) {
            let t = &self.graph.node[p];
            if self.op_of(p) == "Transpose" {
                let src = t.input.first()?;
                return self
                    .gpt
                    .tables
                    .iter()
                    .find(|(tn, ..)| tn == src)
                    .map(|(_, id, _)| id.clone());
            }
        }
        // A folded copy (an exporter's constant folding of wte.weight.T).
        let w = w?;
        for (tn, id, dims) in &self.gpt.tables {
            let Some(t) = self.inits.get(tn.as_str()) else {
                continue;
            };
            if numel(dims) as usize != w.len() {
                continue;
            }
            if proto::tensor_to_f32(t).ok().as_deref() == Some(w) {
                return Some(id.clone());
            }
        }
        None
    }

    /// `Reshape(x, [−1, D]) → Gemm → Reshape(·, [N, L, out])` (transformers' Conv1D traced):
    /// one `linear` on the N×…×D input. `None`: not this pattern.
    pub(super) fn flat_linear(
        &mut self,
        i: usize,
        n: &NodeProto,
    ) -> Option<Result<(), Diagnostic>> {
        let Some(Val::Act { r: x, shape }) = self.vals.get(n.input.first()?).cloned() else {
            return None;
        };
        if shape.len() < 3 {
            return None;
        }
        let target = self.ints(i, n, 1).ok()??;
        let flat = self.reshape_dims(i, n, &shape, &target).ok()?;
        // The leading axes (batch first) whose product is the flat rows; the rest, K.
        let [rows, k_in] = flat[..] else {
            return None;
        };
        let lead = (2..shape.len()).find(|&c| numel(&shape[..c]) == rows)?;
        if numel(&shape[lead..]) != k_in {
            return None;
        }
        let (jg, gm) = self.sole_reader(i + 1, &n.output[0])?;
        if gm.op_type.as_deref() != Some("Gemm") || gm.input.first() != n.output.first() {
            return None;
        }
        let (jr, r2) = self.sole_reader(jg + 1, &gm.output[0])?;
        if r2.op_type.as_deref() != Some("Reshape") {
            return None;
        }
        let out_f = match self.vals.get(gm.input.get(1)?)? {
            Val::Const { dims, .. } | Val::Shaped { dims } if dims.len() == 2 => {
                if attr_i(gm, "transB", 0) == 1 {
                    dims[0]
                } else {
                    dims[1]
                }
            }
            _ => return None,
        };
        // With symbolic sizes the target is shape arithmetic the exporter may write after
        // the Gemm (`x.size()[:-1] + (nf,)` of the input): folded here, before its turn.
        self.fold_chain(r2.input.get(1)?, jr, 0);
        let t2 = self.ints(jr, r2, 1).ok()??;
        let back = self.reshape_dims(jr, r2, &[rows, out_f], &t2).ok()?;
        let mut want = shape[..lead].to_vec();
        want.push(out_f);
        if back != want {
            return None;
        }
        // The heads merged first (N×L×H×d → N×L×H·d), as the YAML writes it.
        let x = if lead + 1 == shape.len() {
            x
        } else {
            let mut merged = shape[..lead].to_vec();
            merged.push(k_in);
            let base = self.base(n, None, "reshape");
            self.emit(
                i,
                n,
                &base,
                format!("op: reshape, in: {x}, shape: {}", list(&merged[1..])),
            )
        };
        self.vals.insert(
            n.output[0].clone(),
            Val::Act {
                r: x,
                shape: flat.clone(),
            },
        );
        if let Err(e) = self.gemm(jg, gm) {
            return Some(Err(e));
        }
        let Some(Val::Act { r, .. }) = self.vals.get(&gm.output[0]).cloned() else {
            return None;
        };
        self.vals
            .insert(r2.output[0].clone(), Val::Act { r, shape: want });
        // The flat tensors are the layer's input and output under other shapes: not checked
        // against the file's value_info.
        self.vals.remove(&n.output[0]);
        self.vals.remove(&gm.output[0]);
        self.done.extend([jg, jr]);
        Some(Ok(()))
    }

    /// Folds tensor `t` ahead of its turn when it is shape arithmetic on what is known: its
    /// producer (before node `before`, not yet read) and, first, their producers, at most
    /// [`MAX_FOLD_CHAIN`] deep. Whatever does not fold is left to the node's own turn (and its
    /// error).
    fn fold_chain(&mut self, t: &str, before: usize, depth: usize) {
        if depth > MAX_FOLD_CHAIN || self.vals.contains_key(t) {
            return;
        }
        let Some(&j) = self.producer.get(t) else {
            return;
        };
        if j >= before || self.done.contains(&j) {
            return;
        }
        let m = &self.graph.node[j];
        for x in &m.input {
            if !x.is_empty() {
                self.fold_chain(x, j, depth + 1);
            }
        }
        if let Ok(Some(())) = self.fold(j, m) {
            self.done.insert(j);
        }
    }

    /// Folds what the masks of transformers' exports need and the general folding does not:
    /// broadcasting arithmetic, comparisons and logic, `Not`, `Expand`, `Flatten` at any axis,
    /// `Gather` of rows. `None`: not one of these (the general folding goes on).
    pub(super) fn fold_more(
        &self,
        op: &str,
        n: &NodeProto,
        consts: &[Option<(Vec<u64>, Vec<f64>)>],
    ) -> Option<(Vec<u64>, Vec<f64>)> {
        let c = |k: usize| consts.get(k).cloned().flatten();
        match op {
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Equal" | "And" | "Or"
            | "Xor" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" => {
                let (da, va) = c(0)?;
                let (db, vb) = c(1)?;
                // The plain cases stay with the general folding.
                let simple = matches!(
                    op,
                    "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Equal"
                ) && (va.len() == vb.len() || va.len() == 1 || vb.len() == 1);
                if simple {
                    return None;
                }
                let f = |x: f64, y: f64| -> f64 {
                    let b = |v: bool| f64::from(u8::from(v));
                    match op {
                        "Add" => x + y,
                        "Sub" => x - y,
                        "Mul" => x * y,
                        "Div" => x / y,
                        "Pow" => x.powf(y),
                        "Max" => x.max(y),
                        "Min" => x.min(y),
                        "Equal" => b(x == y),
                        "And" => b(x != 0.0 && y != 0.0),
                        "Or" => b(x != 0.0 || y != 0.0),
                        "Xor" => b((x != 0.0) != (y != 0.0)),
                        "Less" => b(x < y),
                        "LessOrEqual" => b(x <= y),
                        "Greater" => b(x > y),
                        _ => b(x >= y),
                    }
                };
                bcast2(&da, &va, &db, &vb, f)
            }
            "Not" => {
                let (d, v) = c(0)?;
                Some((
                    d,
                    v.iter().map(|&x| f64::from(u8::from(x == 0.0))).collect(),
                ))
            }
            "Expand" => {
                let (d, v) = c(0)?;
                let (_, t) = c(1)?;
                let t: Vec<u64> = t.iter().map(|&x| x.max(1.0) as u64).collect();
                bcast2(&d, &v, &t, &[0.0], |x, _| x)
            }
            "Flatten" => {
                let (d, v) = c(0)?;
                let ax = axis_at(attr_i(n, "axis", 1), d.len() as i64) as usize;
                let a: u64 = d[..ax.min(d.len())].iter().product();
                Some((vec![a, numel(&d) / a.max(1)], v))
            }
            "GatherND" => {
                // batch_dims 0: each index tuple (the indices' last axis) picks a slice.
                let (d, v) = c(0)?;
                let (id, iv) = c(1)?;
                let m = *id.last()? as usize;
                if attr_i(n, "batch_dims", 0) != 0 || m == 0 || m > d.len() {
                    return None;
                }
                let slice = numel(&d[m..]) as usize;
                let tuples = iv.len() / m;
                if tuples.saturating_mul(slice) > MAX_FOLDED_ELEMENTS {
                    return None;
                }
                let mut out = Vec::with_capacity(tuples * slice);
                for t in iv.chunks_exact(m) {
                    let mut off = 0usize;
                    for (k, &x) in t.iter().enumerate() {
                        let size = d[k] as i64;
                        let x = x as i64;
                        let x = if x < 0 { x + size } else { x };
                        let x = usize::try_from(x).ok().filter(|&x| (x as i64) < size)?;
                        off = off * d[k] as usize + x;
                    }
                    out.extend_from_slice(v.get(off * slice..(off + 1) * slice)?);
                }
                let dims = id[..id.len() - 1].iter().chain(&d[m..]).copied().collect();
                Some((dims, out))
            }
            "Gather" => {
                let (d, v) = c(0)?;
                let (id, iv) = c(1)?;
                if d.len() < 2 || attr_i(n, "axis", 0) != 0 {
                    return None;
                }
                let row = numel(&d[1..]) as usize;
                let rows = d[0] as i64;
                if iv.len().saturating_mul(row) > MAX_FOLDED_ELEMENTS {
                    return None;
                }
                let mut out = Vec::with_capacity(iv.len() * row);
                for &x in &iv {
                    let k = x as i64;
                    let k = if k < 0 { k + rows } else { k };
                    let k = usize::try_from(k).ok().filter(|&k| (k as i64) < rows)?;
                    out.extend_from_slice(v.get(k * row..(k + 1) * row)?);
                }
                let dims = id.iter().chain(&d[1..]).copied().collect();
                Some((dims, out))
            }
            _ => None,
        }
    }
}

/// Numpy broadcasting of two constants under `f`; `None` when the shapes do not broadcast or
/// the result exceeds the folding limit.
fn bcast2(
    da: &[u64],
    va: &[f64],
    db: &[u64],
    vb: &[f64],
    f: impl Fn(f64, f64) -> f64,
) -> Option<(Vec<u64>, Vec<f64>)> {
    let rank = da.len().max(db.len());
    let pad = |d: &[u64]| -> Vec<u64> {
        std::iter::repeat_n(1, rank - d.len())
            .chain(d.iter().copied())
            .collect()
    };
    let (pa, pb) = (pad(da), pad(db));
    let mut out = Vec::with_capacity(rank);
    for (&x, &y) in pa.iter().zip(&pb) {
        out.push(match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        });
    }
    let total = numel(&out) as usize;
    if total > MAX_FOLDED_ELEMENTS
        || (va.len() != 1 && va.len() as u64 != numel(da).max(1))
        || (vb.len() != 1 && vb.len() as u64 != numel(db).max(1))
    {
        return None;
    }
    let strides = |p: &[u64]| -> Vec<usize> {
        let mut s = vec![0usize; rank];
        let mut acc = 1usize;
        for k in (0..rank).rev() {
            s[k] = if p[k] == 1 { 0 } else { acc };
            acc *= p[k] as usize;
        }
        s
    };
    let (sa, sb) = (strides(&pa), strides(&pb));
    let mut data = Vec::with_capacity(total);
    let mut idx = vec![0usize; rank];
    for _ in 0..total {
        let (mut ia, mut ib) = (0, 0);
        for k in 0..rank {
            ia += idx[k] * sa[k];
            ib += idx[k] * sb[k];
        }
        data.push(f(
            va[if va.len() == 1 { 0 } else { ia }],
            vb[if vb.len() == 1 { 0 } else { ib }],
        ));
        for k in (0..rank).rev() {
            idx[k] += 1;
            if (idx[k] as u64) < out[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Some((out, data))
}
