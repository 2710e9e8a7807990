//! Counting conventions of the profilers people compare against. Each tool charges a different
//! subset of ops with its own per-op rule, so "the MACs of ResNet-50" is 4.09 G for torchvision,
//! 4.11 G for fvcore, 4.12 G for ptflops… A [`Convention`] names a tool; [`recount`] replaces
//! every layer's MACs (and the total) by what that tool charges, through
//! [`Counting::convention_cost`](crate::layers::Counting::convention_cost) — each op states its own
//! rule, this module has no per-op knowledge. The rules, read from each tool's source, are in
//! docs/COUNTING.md; `tests/conventions.rs` checks them against the tools' own figures
//! (`tests/data/conventions.json`, written by `scripts/convention_reference.py`).

use crate::analysis::Analysis;
use crate::error::{Diagnostic, Error};
use crate::graph::Network;

pub use crate::layers::Convention;

/// Replaces the MACs of every layer of `a` (an analysis of `net`) and the total by what
/// convention `c` charges. The torchvision convention leaves the analysis as it is.
pub fn recount(net: &Network, a: &mut Analysis, c: Convention) -> Result<(), Error> {
    let mut total = 0u64;
    for (node, l) in net.nodes.iter().zip(a.layers.iter_mut()) {
        let m = node
            .layer
            .convention_cost(c, &node.in_shapes, &node.out_shapes)
            .map_err(|d| Error::from(d.layer(&node.name)))?;
        l.macs = m;
        total = total.checked_add(m).ok_or_else(|| {
            Error::from(Diagnostic::new("the model's total MACs overflow 64 bits"))
        })?;
    }
    a.totals.macs = total;
    a.convention = c;
    Ok(())
}
