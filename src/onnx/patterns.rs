//! Multi-node patterns of the ONNX reader that map onto one archscope layer (or a short run of
//! them), kept apart from the per-operator mapping in `reader.rs`: each is a method of the
//! reader that looks ahead from one node, checks the whole chain (sole readers, constant values,
//! axes), and either emits the layers and marks the chain's nodes done or returns `None` so that
//! the node is read on its own. Here: Ultralytics' C2PSA attention as traced
//! (`Mul(q, scale) → Transpose → MatMul(·, k) → Softmax → Transpose → MatMul(v, ·)`).

use super::*;

impl<'a> Reader<'a> {
    /// Ultralytics' `Attention` (C2PSA, PSA) as its exporter traces
    /// `(q.transpose(-2, -1) @ k) * scale`, `softmax(-1)`, `v @ attn.transpose(-2, -1)` on
    /// q, k (N×heads×key_dim×tokens) and v (N×heads×head_dim×tokens): the scale is applied to q
    /// first (node `n`, a Mul by a scalar constant), then
    /// `Transpose(swap the last two) → MatMul(·, k) → Softmax(last axis) → Transpose(swap) →
    /// MatMul(v, ·)`, each node the sole reader of the one before. Read as archscope's
    /// `scaled_dot_product_attention` on the transposed q, k and v (tokens×dim, as Ultralytics'
    /// YAML translation writes it), with the file's scale, and the result transposed back.
    /// `None`: not this pattern (the caller reads the Mul on its own).
    pub(super) fn scaled_attention(
        &mut self,
        i: usize,
        n: &NodeProto,
    ) -> Option<Result<(), Diagnostic>> {
        let op_is = |m: &NodeProto, o: &str| m.op_type.as_deref() == Some(o);
        if !op_is(n, "Mul") || n.input.len() != 2 {
            return None;
        }
        // q and the scalar scale, in either order.
        let (qk, scale) = (0..2).find_map(|k| {
            let Some(Val::Const { data, .. }) = self.vals.get(&n.input[1 - k]) else {
                return None;
            };
            (data.len() == 1 && data[0] > 0.0 && data[0].is_finite()).then(|| (k, data[0]))
        })?;
        let Some(Val::Act {
            r: q,
            shape: q_shape,
        }) = self.vals.get(&n.input[qk]).cloned()
        else {
            return None;
        };
        let rank = q_shape.len();
        if rank < 3 {
            return None;
        }
        let swap: Vec<i64> = (0..rank as i64 - 2)
            .chain([rank as i64 - 1, rank as i64 - 2])
            .collect();
        let is_swap =
            |m: &NodeProto| op_is(m, "Transpose") && attr_ints(m, "perm") == Some(swap.clone());
        let (j1, t1) = self.sole_reader(i + 1, &n.output[0])?;
        if !is_swap(t1) {
            return None;
        }
        let (j2, m1) = self.sole_reader(j1 + 1, &t1.output[0])?;
        if !op_is(m1, "MatMul") || m1.input.len() != 2 || m1.input[0] != t1.output[0] {
            return None;
        }
        let Some(Val::Act {
            r: k,
            shape: k_shape,
        }) = self.vals.get(&m1.input[1]).cloned()
        else {
            return None;
        };
        let (j3, sm) = self.sole_reader(j2 + 1, &m1.output[0])?;
        let axis = attr_i(sm, "axis", -1);
        if !op_is(sm, "Softmax") || axis_at(axis, rank as i64) != rank as i64 - 1 {
            return None;
        }
        let (j4, t2) = self.sole_reader(j3 + 1, &sm.output[0])?;
        if !is_swap(t2) {
            return None;
        }
        let (j5, m2) = self.sole_reader(j4 + 1, &t2.output[0])?;
        if !op_is(m2, "MatMul") || m2.input.len() != 2 || m2.input[1] != t2.output[0] {
            return None;
        }
        let Some(Val::Act {
            r: v,
            shape: v_shape,
        }) = self.vals.get(&m2.input[0]).cloned()
        else {
            return None;
        };
        // q, k: …×E×L; v: …×Ev×L, the same leading sizes and tokens.
        let lead = &q_shape[..rank - 2];
        if k_shape.len() != rank
            || v_shape.len() != rank
            || &k_shape[..rank - 2] != lead
            || &v_shape[..rank - 2] != lead
            || k_shape[rank - 2] != q_shape[rank - 2]
            || k_shape[rank - 1] != q_shape[rank - 1]
            || v_shape[rank - 1] != q_shape[rank - 1]
        {
            return None;
        }
        let base = self.base(n, None, "attn");
        let dims = format!("[{}, {}]", rank - 2, rank - 1);
        let mut t = Vec::new();
        for (x, what) in [(&q, "q"), (&k, "k"), (&v, "v")] {
            let id = self.emit(
                i,
                n,
                &format!("{base}_{what}"),
                format!("op: transpose, in: {x}, dims: {dims}"),
            );
            t.push(id);
        }
        // The scale as the file holds it (an f32), unless it is the default 1/√E exactly.
        let e = q_shape[rank - 2];
        let default = (1.0 / (e as f64).sqrt()) as f32;
        let extra = if scale as f32 == default {
            String::new()
        } else {
            format!(", scale: {}", yf(scale))
        };
        let attn = self.emit(
            i,
            n,
            &base,
            format!(
                "op: scaled_dot_product_attention, in: [{}]{extra}",
                t.join(", ")
            ),
        );
        let id = self.emit(
            j5,
            m2,
            &format!("{base}_out"),
            format!("op: transpose, in: {attn}, dims: {dims}"),
        );
        let mut out = v_shape.clone();
        out[rank - 1] = q_shape[rank - 1];
        self.set_out(m2, 0, id, out);
        self.done.extend([j1, j2, j3, j4, j5]);
        Some(Ok(()))
    }
}

impl<'a> Reader<'a> {
    /// Every node from index `from` on that reads tensor `t`.
    fn readers_of(&self, from: usize, t: &str) -> Vec<(usize, &'a NodeProto)> {
        self.graph
            .node
            .iter()
            .enumerate()
            .skip(from)
            .filter(|(_, m)| m.input.iter().any(|v| v == t))
            .collect()
    }

    /// The axes of a Reduce* node: its `axes` attribute (opset < 18) or its constant second
    /// input (opset 18 on); `None` when neither is given.
    fn reduce_axes(&self, i: usize, n: &NodeProto) -> Option<Vec<i64>> {
        match attr_ints(n, "axes") {
            Some(a) => Some(a),
            None => self.ints(i, n, 1).ok().flatten(),
        }
    }

    /// A scalar constant's value.
    fn scalar(&self, t: &str) -> Option<f64> {
        match self.vals.get(t) {
            Some(Val::Const { data, dims, .. }) if data.len() == 1 && numel(dims) == 1 => {
                Some(data[0])
            }
            _ => None,
        }
    }

    /// `ReduceSumSquare(x, axes [1], keepdims 1) → Sqrt`: the Euclidean norm over the channels,
    /// archscope's `magnitude` (which `archscope export` writes so). `None`: not this pattern.
    pub(super) fn magnitude(&mut self, i: usize, n: &NodeProto) -> Option<Result<(), Diagnostic>> {
        let Some(Val::Act { r: x, shape }) = self.vals.get(n.input.first()?).cloned() else {
            return None;
        };
        let rank = shape.len() as i64;
        let axes = axes_at(&self.reduce_axes(i, n)?, rank);
        if axes != [1] || attr_i(n, "keepdims", 1) != 1 || rank < 3 {
            return None;
        }
        let (j, sq) = self.sole_reader(i + 1, &n.output[0])?;
        if sq.op_type.as_deref() != Some("Sqrt") {
            return None;
        }
        let base = self.base(sq, None, "magnitude");
        let id = self.emit(i, n, &base, format!("op: magnitude, in: {x}"));
        let mut out = shape;
        out[1] = 1;
        self.set_out(sq, 0, id, out);
        self.done.insert(j);
        Some(Ok(()))
    }

    /// A layer norm over the channels of N×C×H×W (torchvision's LayerNorm2d, archscope's
    /// `layernorm2d`) written out as `archscope export` writes it: `mean = ReduceMean(x, [1])`,
    /// `d = x − mean`, `var = ReduceMean(d·d, [1])`, `y = d / Sqrt(var + eps)`, then
    /// `y · Reshape(weight, [-1, 1, 1]) + Reshape(bias, [-1, 1, 1])` (either optional), node
    /// `n` the first ReduceMean. `None`: not this pattern (the ReduceMean is read on its own).
    pub(super) fn layernorm2d(
        &mut self,
        i: usize,
        n: &NodeProto,
    ) -> Option<Result<(), Diagnostic>> {
        let op_is = |m: &NodeProto, o: &str| m.op_type.as_deref() == Some(o);
        let x_name = n.input.first()?.clone();
        let Some(Val::Act { r: x, shape }) = self.vals.get(&x_name).cloned() else {
            return None;
        };
        let rank = shape.len() as i64;
        let is_c = |s: &Self, k: usize, m: &NodeProto| {
            s.reduce_axes(k, m).map(|a| axes_at(&a, rank)) == Some(vec![1])
                && attr_i(m, "keepdims", 1) == 1
        };
        if rank != 4 || !is_c(self, i, n) {
            return None;
        }
        let (j_sub, sub) = self.sole_reader(i + 1, &n.output[0])?;
        if !op_is(sub, "Sub") || sub.input != [x_name.clone(), n.output[0].clone()] {
            return None;
        }
        let d = sub.output[0].clone();
        let rd = self.readers_of(j_sub + 1, &d);
        let [(j_sq, sq), (j_div, div)] = rd[..] else {
            return None;
        };
        if !op_is(sq, "Mul") || sq.input != [d.clone(), d.clone()] || !op_is(div, "Div") {
            return None;
        }
        let (j_var, var) = self.sole_reader(j_sq + 1, &sq.output[0])?;
        if !op_is(var, "ReduceMean") || !is_c(self, j_var, var) {
            return None;
        }
        let (j_add, add) = self.sole_reader(j_var + 1, &var.output[0])?;
        if !op_is(add, "Add") || add.input.len() != 2 || add.input[0] != var.output[0] {
            return None;
        }
        let eps = self.scalar(&add.input[1])?;
        let (j_sqrt, sqrt) = self.sole_reader(j_add + 1, &add.output[0])?;
        if !op_is(sqrt, "Sqrt") || div.input != [d.clone(), sqrt.output[0].clone()] {
            return None;
        }
        // The affine steps: Mul by the reshaped weight, then Add of the reshaped bias.
        let c = shape[1];
        let mut last = div;
        let mut done = vec![j_sub, j_sq, j_var, j_add, j_sqrt, j_div];
        let mut affine: Vec<(&'static str, usize, &'a NodeProto)> = Vec::new();
        for (op, w) in [("Mul", "weight"), ("Add", "bias")] {
            let Some((j, m)) = self.sole_reader(0, &last.output[0]) else {
                break;
            };
            if !op_is(m, op) || m.input.len() != 2 || m.input[0] != last.output[0] {
                break;
            }
            let Some((jr, rs)) = self
                .producer
                .get(m.input[1].as_str())
                .map(|&p| (p, &self.graph.node[p]))
            else {
                break;
            };
            let target = self.ints(jr, rs, 1).ok().flatten();
            let held = match self.vals.get(rs.input.first().map_or("", String::as_str)) {
                Some(Val::Const { dims, .. } | Val::Shaped { dims }) => numel(dims) == c,
                _ => false,
            };
            if !op_is(rs, "Reshape") || target != Some(vec![-1, 1, 1]) || !held {
                break;
            }
            affine.push((w, jr, rs));
            done.extend([j, jr]);
            last = m;
        }
        let has = |w: &str| affine.iter().any(|(n, ..)| *n == w);
        let (weight, bias) = (has("weight"), has("bias"));
        if bias && !weight {
            // PyTorch's LayerNorm2d has both or neither; a bias alone is no archscope form.
            return None;
        }
        // The weight and bias (held or known by shape), read before anything is emitted.
        let mut tensors = Vec::new();
        for (w, jr, rs) in &affine {
            match self.weight(*jr, rs, 0) {
                Ok(Some((_, data))) => tensors.push((*w, data)),
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
        let base = self.base(
            last,
            affine
                .first()
                .and_then(|(_, _, rs)| rs.input.first())
                .map(String::as_str),
            "ln",
        );
        let id = self.emit(
            i,
            n,
            &base,
            format!(
                "op: layernorm2d, in: {x}, eps: {}, affine: {weight}, bias: {bias}",
                yf(eps)
            ),
        );
        for (w, data) in tensors {
            self.put_weight(&id, w, &[c], data);
        }
        self.set_out(last, 0, id, shape);
        self.done.extend(done);
        Some(Ok(()))
    }
}
