//! `Exp` of a learned tensor (a child module of the reader): a learned log-scale such as CLIP's
//! `logit_scale.exp()`, which the TorchScript exporter writes as `Exp(logit_scale)` read by the
//! arithmetic that uses it. Folding it (as any node of constant inputs) would leave a constant
//! and lose the parameter; instead its output stands for the learned tensor itself, and the
//! arithmetic that reads it (`arith.rs`) writes a `scalar` with `exp: true` (the weight is the
//! stored log, counted as the parameter or buffer it is; the layer applies its exponential).
//! Read so only when every reader of the `Exp` is an `Add`, `Sub`, `Mul`, `Div` or `Pow` and
//! the tensor is an initializer or a graph-only weight; otherwise the node folds as before.

use super::{Diagnostic, NodeProto, Reader, Val};

impl<'a> Reader<'a> {
    /// Reads `Exp` node `n` of a learned tensor (see the module's documentation): `None` when
    /// it is not one (the caller folds it).
    pub(super) fn exp_learned(&mut self, n: &NodeProto) -> Option<Result<(), Diagnostic>> {
        let x = n.input.first()?;
        let v = self.vals.get(x)?.clone();
        if !matches!(v, Val::Const { init: Some(_), .. } | Val::Shaped { .. }) {
            return None;
        }
        let y = n.output.first()?;
        let g = self.graph;
        if g.output
            .iter()
            .any(|o| o.name.as_deref() == Some(y.as_str()))
        {
            return None;
        }
        let readers: Vec<&NodeProto> = g
            .node
            .iter()
            .filter(|m| m.input.iter().any(|s| s == y))
            .collect();
        let arith = |m: &&NodeProto| {
            matches!(
                m.op_type.as_deref(),
                Some("Add" | "Sub" | "Mul" | "Div" | "Pow")
            )
        };
        if readers.is_empty() || !readers.iter().all(arith) {
            return None;
        }
        self.vals.insert(y.clone(), v);
        Some(Ok(()))
    }

    /// Whether input `k` of `n` is the output of an `Exp` read as its learned tensor.
    pub(super) fn exp_of_learned(&self, n: &NodeProto, k: usize) -> bool {
        let Some(x) = n.input.get(k) else {
            return false;
        };
        self.producer
            .get(x.as_str())
            .is_some_and(|&p| self.graph.node[p].op_type.as_deref() == Some("Exp"))
            && matches!(
                self.vals.get(x),
                Some(Val::Const { init: Some(_), .. } | Val::Shaped { .. })
            )
    }
}
