//! Counting conventions of the profilers people compare against. Each tool charges a different
//! subset of ops with its own per-op rule, so "the MACs of ResNet-50" is 4.09 G for torchvision,
//! 4.11 G for fvcore, 4.12 G for ptflops… A [`Convention`] names a tool; [`recount`] replaces
//! every layer's MACs (and the total) by what that tool charges, through
//! [`Layer::convention_cost`](crate::layers::Layer::convention_cost) — each op states its own
//! rule, this module has no per-op knowledge. The rules, read from each tool's source, are in
//! docs/COUNTING.md; `tests/conventions.rs` checks them against the tools' own figures
//! (`tests/data/conventions.json`, written by `scripts/convention_reference.py`).

use serde::Serialize;

use crate::analysis::Analysis;
use crate::error::{Diagnostic, Error};
use crate::graph::Network;

/// A profiler whose headline figure `totals.macs` reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Convention {
    /// torchvision's published "GFLOPS" (= PyTorch `FlopCounterMode` / 2): conv, transposed
    /// conv and linear MACs, bias excluded. archscope's default.
    #[default]
    Torchvision,
    /// fvcore `FlopCountAnalysis(model, x).total()`.
    Fvcore,
    /// ptflops `get_model_complexity_info(model, res)` MACs (pytorch backend, defaults).
    Ptflops,
    /// thop `profile(model, inputs)` MACs.
    Thop,
    /// torchinfo `summary(model, input_size)` "Total mult-adds".
    Torchinfo,
}

impl Convention {
    pub const ALL: [Convention; 5] = [
        Convention::Torchvision,
        Convention::Fvcore,
        Convention::Ptflops,
        Convention::Thop,
        Convention::Torchinfo,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Convention::Torchvision => "torchvision",
            Convention::Fvcore => "fvcore",
            Convention::Ptflops => "ptflops",
            Convention::Thop => "thop",
            Convention::Torchinfo => "torchinfo",
        }
    }

    pub fn parse(s: &str) -> Option<Convention> {
        Convention::ALL.into_iter().find(|c| c.name() == s)
    }
}

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

/// thop's adaptive average pooling rule, in its own float64 arithmetic:
/// `int((prod(in_hw / out_hw) + 1) · numel(output))`, the window area taken as the (possibly
/// fractional) ratio of sizes.
pub fn thop_adaptive_avg(in_hw: [u64; 2], out_hw: [u64; 2], out_numel: u64) -> u64 {
    let k = (in_hw[0] as f64 / out_hw[0] as f64) * (in_hw[1] as f64 / out_hw[1] as f64);
    ((k + 1.0) * out_numel as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Convention::ALL {
            assert_eq!(Convention::parse(c.name()), Some(c));
        }
        assert_eq!(Convention::parse("flops"), None);
    }

    #[test]
    fn thop_adaptive_rule() {
        // AdaptiveAvgPool2d(3) on 2×8×10×10 (measured with thop 0.1.1: 1744):
        // (10/3)² + 1 = 12.11…, × 144 outputs = 1744.0.
        assert_eq!(thop_adaptive_avg([10, 10], [3, 3], 2 * 8 * 9), 1744);
        // Global pooling of 2048×7×7: (49 + 1)·2048.
        assert_eq!(thop_adaptive_avg([7, 7], [1, 1], 2048), 50 * 2048);
    }
}
