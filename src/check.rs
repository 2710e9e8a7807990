//! `archscope check`: runs the executor and compares, layer by layer, what the tensors and
//! kernels show with what the static analysis says — output shapes (from the tensors
//! produced), parameters and buffers (from the tensors allocated), MACs (tallied by the kernels
//! as they run, not by the analyser's formulas). Any disagreement names the layer and figure.

use crate::analysis::Analysis;
use crate::error::Diagnostic;
use crate::exec::{self, Weights};
use crate::graph::Network;

/// One figure of one layer: what the analysis says and what the run measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    pub analysed: String,
    pub measured: String,
}

impl Figure {
    pub fn ok(&self) -> bool {
        self.analysed == self.measured
    }
}

/// The comparison for one layer.
#[derive(Debug, Clone)]
pub struct CheckRow {
    pub name: String,
    pub shape: Figure,
    pub params: Figure,
    pub buffers: Figure,
    pub macs: Figure,
}

impl CheckRow {
    pub fn ok(&self) -> bool {
        self.shape.ok() && self.params.ok() && self.buffers.ok() && self.macs.ok()
    }
    /// The figures that disagree, by name.
    pub fn mismatches(&self) -> Vec<(&'static str, &Figure)> {
        [
            ("shape", &self.shape),
            ("params", &self.params),
            ("buffers", &self.buffers),
            ("MACs", &self.macs),
        ]
        .into_iter()
        .filter(|(_, f)| !f.ok())
        .collect()
    }
}

/// The whole comparison.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub rows: Vec<CheckRow>,
    /// Seconds the forward pass took.
    pub seconds: f64,
}

impl CheckReport {
    pub fn failures(&self) -> usize {
        self.rows.iter().filter(|r| !r.ok()).count()
    }
}

fn shapes(s: &[Vec<u64>]) -> String {
    s.iter()
        .map(|d| {
            d.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("×")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `net` with `weights` on a seeded random input and compares every layer with `a`.
pub fn check(
    net: &Network,
    a: &Analysis,
    weights: &Weights,
    seed: u64,
) -> Result<CheckReport, Diagnostic> {
    let input = exec::random_input(net, seed)?;
    let start = std::time::Instant::now();
    let run = exec::run(net, weights, &input, None)?;
    let seconds = start.elapsed().as_secs_f64();
    let mut rows = Vec::with_capacity(net.nodes.len());
    for (k, (node, stats)) in net.nodes.iter().zip(&a.layers).enumerate() {
        let measured_shapes: Vec<Vec<u64>> = run.layers[k]
            .shapes
            .iter()
            .map(|s| s.iter().map(|&d| d as u64).collect())
            .collect();
        let analysed_shapes: Vec<Vec<u64>> = stats.outputs.iter().map(|s| s.0.clone()).collect();
        let (p, _, b) = weights.count(net, k);
        rows.push(CheckRow {
            name: node.name.clone(),
            shape: Figure {
                analysed: shapes(&analysed_shapes),
                measured: shapes(&measured_shapes),
            },
            params: Figure {
                analysed: stats.params.total().to_string(),
                measured: p.to_string(),
            },
            buffers: Figure {
                analysed: stats.params.buffers.to_string(),
                measured: b.to_string(),
            },
            macs: Figure {
                analysed: stats.macs.to_string(),
                measured: run.layers[k].macs.to_string(),
            },
        });
    }
    Ok(CheckReport { rows, seconds })
}
