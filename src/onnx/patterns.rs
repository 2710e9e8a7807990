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
            (data.len() == 1 && data[0] > 0.0 && data[0].is_finite()).then_some((k, data[0]))
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
        let is_swap = |m: &NodeProto| op_is(m, "Transpose") && attr_ints(m, "perm") == Some(swap.clone());
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
