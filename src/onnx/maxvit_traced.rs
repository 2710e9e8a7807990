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
use super::traced::{as_is, named_weight, transposed, vec_of, Found, Probed, Products};
use super::{isqrt, list, Reader, Val};
use crate::error::excerpt;
use crate::error::Diagnostic;
use crate::onnx::proto::GraphProto;

/// MaxViT attention regions of a TorchScript or dynamo export: per region, its path and node
/// indices (`swin_traced.rs`'s regions: the scope from the node name or the `namespace`
/// metadata).
pub(super) fn find(g: &GraphProto) -> Vec<(String, Vec<usize>)> {
    super::traced::regions(g, |has| has("Einsum") && has("MatMul") && !has("Pad"))
}

/// The help of a MaxViT region's errors (the checks shared with Swin give Swin's: replaced).
const HELP: &str = "archscope reads torchvision's MaxViT attention (`RelativePositionalMultiHeadAttention`) as torch.onnx.export writes it, by the TorchScript exporter or the dynamo exporter with optimize=False (docs/ONNX.md \"MaxViT\"); describe a changed attention in archscope YAML (`op: relative_position_attention`, docs/FORMAT.md)";

impl<'a> Reader<'a> {
    /// Reads traced MaxViT region `nodes` (scope `path`) as one `relative_position_attention`;
    /// its errors carry MaxViT's help.
    pub(super) fn maxvit_region(&mut self, path: &str, nodes: &[usize]) -> Result<(), Diagnostic> {
        self.maxvit_read(path, nodes).map_err(|e| {
            if e.help.as_deref() == Some(super::traced::HELP) {
                e.help(HELP)
            } else {
                e
            }
        })
    }

    /// The error for a graph-only export (a weight without values at node `j`, input `x`):
    /// what the file shows of the layer and what it cannot show.
    fn maxvit_graph_only(
        &self,
        j: usize,
        x: &str,
        path: &str,
        nodes: &[usize],
        made: &HashSet<&str>,
    ) -> Diagnostic {
        let g = self.graph;
        let help = "export with the weights (export_params=True, the default): archscope then recovers the bias table from the folded values and checks the layer on a probe input";
        // The exporter folds the table gathered by the index into one 1×heads×P×P tensor,
        // which a graph-only file declares as a graph input with no values.
        let bias = nodes.iter().find_map(|&k| {
            g.node[k].input.iter().find_map(|y| {
                if made.contains(y.as_str()) {
                    return None;
                }
                match self.vals.get(y) {
                    Some(Val::Shaped { dims })
                        if dims.len() >= 3
                            && dims[dims.len() - 1] == dims[dims.len() - 2]
                            && dims[..dims.len() - 3].iter().all(|&v| v == 1) =>
                    {
                        Some((k, y.as_str(), dims.clone()))
                    }
                    _ => None,
                }
            })
        });
        let Some((k, y, d)) = bias else {
            return self
                .traced_err(j, path, format!("weight `{}` has no values: archscope recovers the bias table from the values torch.onnx.export folded into the file", excerpt(x)))
                .help(help);
        };
        let (h, p) = (d[d.len() - 3], d[d.len() - 1]);
        let shows = match isqrt(p) {
            Some(s) => format!(
                "{h} heads and partitions of {p} tokens ({s}×{s}); it cannot show whether those {} values are a table of (2·{s} − 1)²·{h} = {} parameters gathered by a {}-entry relative_position_index buffer (PyTorch's count) or free values",
                h * p * p,
                (2 * s - 1) * (2 * s - 1) * h,
                p * p
            ),
            None => format!("{h} heads and {p} tokens per group, which is no square partition (MaxViT's P = size²)"),
        };
        self.traced_err(
            k,
            path,
            format!(
                "its relative-position bias is graph input `{}` of shape {} with no values: torch.onnx.export folded torchvision's bias table, gathered by its relative_position_index, into that one tensor, and a graph-only file keeps neither the table nor the index. The file shows {shows}, so the layer's parameters and buffers are not known",
                excerpt(y),
                list(&d)
            ),
        )
        .help(help)
    }

    fn maxvit_read(&mut self, path: &str, nodes: &[usize]) -> Result<(), Diagnostic> {
        let Probed {
            env,
            konst,
            xname,
            xref,
            xshape,
            yname,
            last,
        } = self.traced_probe(
            path,
            nodes,
            "N×G×P×D (groups of P tokens)",
            |r, j, x, path, nodes, made| r.maxvit_graph_only(j, x, path, nodes, made),
        )?;
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
