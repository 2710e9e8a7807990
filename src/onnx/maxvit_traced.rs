//! MaxViT's relative-position attention as `torch.onnx.export` (the TorchScript exporter)
//! writes it (a child module of `swin.rs`, beside `swin_traced.rs`, whose checks it calls):
//! torchvision's `RelativePositionalMultiHeadAttention` traced into some forty nodes under the
//! module's scope (`/blocks.0/layers.0/layers/window_attention/attn_layer/attn_layer.1/…`):
//! `to_qkv` (`MatMul` by a D×3D constant, `Add` of its bias), q, k and v cut apart (`Slice`s
//! whose ends come from shape arithmetic), the heads split (`Reshape`, `Transpose`), k scaled,
//! Q·Kᵀ as an `Einsum`, the relative-position bias folded into one 1×heads×P×P constant (the
//! bias table and its index are gone from the file), `Softmax`, ·V as an `Einsum`, the heads
//! merged, `merge` (`MatMul` by D×D, `Add`).
//!
//! A region is the nodes under the scope of a `Softmax` that also holds an `Einsum` and a
//! `MatMul` and no `Pad` (Swin's has one). It is read as one `relative_position_attention`:
//! 1. every node is computed (`fold.rs`) on a seeded probe input of the region's N×G×P×D
//!    input, as `swin_traced.rs` computes Swin's;
//! 2. the weights are found by their place in the data flow: `to_qkv` (the `MatMul` by a D×3D
//!    constant, transposed back to PyTorch's 3D×D; its bias by name or as the 3D constant
//!    added), `merge` (D×D and D), and the bias (the one constant of trailing P×P dims added
//!    to the logits: heads × P × P);
//! 3. the layer of `size` √P and `head_dim` D / heads is built and checked by
//!    `swin_traced.rs`'s own check: the bias table recovered from the folded constant through
//!    the layer's `relative_position_index` (all positions sharing a row must agree), and the
//!    layer run on the probe with the file's weights equal to the region's output within
//!    `PROBE_TOLERANCE`. Otherwise a located error names the node (the bias's `Add`, the
//!    region's last node) and why.

use std::collections::{HashMap, HashSet};

use super::super::fold::T;
use super::traced::{as_is, named_weight, scope, transposed, vec_of, Found, Probed, Products};
use super::{isqrt, list, Reader};
use crate::error::excerpt;
use crate::error::Diagnostic;
use crate::onnx::proto::GraphProto;

/// MaxViT attention regions of a TorchScript export: per region, its scope and node indices.
pub(super) fn find(g: &GraphProto) -> Vec<(String, Vec<usize>)> {
    let op = |i: usize| g.node[i].op_type.as_deref().unwrap_or("");
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, n) in g.node.iter().enumerate() {
        if op(i) != "Softmax" {
            continue;
        }
        let Some(s) = scope(n) else { continue };
        if !seen.insert(s.to_string()) {
            continue;
        }
        let prefix = format!("{s}/");
        let nodes: Vec<usize> = (0..g.node.len())
            .filter(|&j| {
                g.node[j]
                    .name
                    .as_deref()
                    .is_some_and(|m| m.starts_with(&prefix))
            })
            .collect();
        let has = |o: &str| nodes.iter().any(|&j| op(j) == o);
        if has("Einsum") && has("MatMul") && !has("Pad") {
            out.push((s.to_string(), nodes));
        }
    }
    out
}

impl<'a> Reader<'a> {
    /// Reads traced MaxViT region `nodes` (scope `path`) as one `relative_position_attention`.
    pub(super) fn maxvit_region(&mut self, path: &str, nodes: &[usize]) -> Result<(), Diagnostic> {
        let Probed {
            env,
            konst,
            xname,
            xref,
            xshape,
            yname,
            last,
        } = self.traced_probe(path, nodes, "N×G×P×D (groups of P tokens)", |r, j, x, path, _, _| {
            r.traced_err(
                j,
                path,
                format!("weight `{}` has no values: archscope recovers the bias table from the values torch.onnx.export folded into the file", excerpt(x)),
            )
            .help("export with the weights (export_params=True, the default)")
        })?;
        let xdims: Vec<usize> = xshape.iter().map(|&d| d as usize).collect();
        let found = self.maxvit_weights(path, nodes, &env, &konst, xdims[3], last)?;
        let target = env.get(&yname).expect("computed above").clone();
        let bd = &found.bias.1.dims;
        let (heads, l) = (bd[bd.len() - 3] as u64, bd[bd.len() - 1] as u64);
        let d = xshape[3];
        let Some(size) = isqrt(l) else {
            return Err(self.traced_err(found.bias.0, path, format!("the bias added here is over {l} tokens, which is no square partition (MaxViT's P = size²)")));
        };
        if l != xshape[2] || heads == 0 || !d.is_multiple_of(heads) {
            return Err(self.traced_err(found.bias.0, path, format!("the bias added here has shape {bd:?}: for the input {} the layer needs 1 × heads × {} × {} with heads dividing {d}", list(&xshape), xshape[2], xshape[2])));
        }
        let body = format!(
            "op: relative_position_attention, head_dim: {}, size: {size}",
            d / heads
        );
        let cand = self.build_candidate(&body, &xshape, true)?;
        match self.traced_try(
            &cand,
            &found,
            &target,
            &xdims,
            &env[&xname],
            last,
            ([size, size], [0, 0]),
        ) {
            Ok(table) => self.traced_emit(path, nodes, &cand, &xref, &yname, &found, table),
            Err(m) => Err(self.traced_err(m.node, path, m.why)),
        }
    }

    /// Finds to_qkv, merge and the bias by their place in the data flow.
    fn maxvit_weights(
        &self,
        path: &str,
        nodes: &[usize],
        env: &HashMap<String, T>,
        konst: &HashSet<String>,
        c: usize,
        last: usize,
    ) -> Result<Found, Diagnostic> {
        let g = self.graph;
        let named = |suffix: &str| named_weight(g, nodes, env, suffix);
        let Products {
            qkv,
            proj: merge,
            adds,
            tails,
        } = self.traced_products(path, nodes, env, konst, c, last, ["to_qkv", "merge"], "P")?;
        let vec_of = |len: usize| vec_of(&adds, len);
        let bias = tails[0].clone();
        if let Some((j, _)) = tails.get(1) {
            return Err(self.traced_err(*j, path, "a second constant added to the logits (the layer adds the relative-position bias only)"));
        }
        let mut weights = HashMap::new();
        weights.insert("to_qkv.weight", transposed(&qkv));
        weights.insert("merge.weight", transposed(&merge));
        let qb = named("to_qkv.bias")
            .or_else(|| vec_of(3 * c))
            .ok_or_else(|| {
                self.traced_err(
                    last,
                    path,
                    format!("no bias of {} added to to_qkv's product", 3 * c),
                )
            })?;
        let mb = named("merge.bias").or_else(|| vec_of(c)).ok_or_else(|| {
            self.traced_err(
                last,
                path,
                format!("no bias of {c} added to merge's product"),
            )
        })?;
        weights.insert("to_qkv.bias", as_is(&qb));
        weights.insert("merge.bias", as_is(&mb));
        Ok(Found {
            weights,
            bias,
            mask: None,
            v2: false,
            cpb_folded: None,
        })
    }
}
