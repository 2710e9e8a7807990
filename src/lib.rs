//! archscope: inspect neural-network architectures. A YAML description
//! ([`spec`]) is expanded into a layer graph ([`graph`]) whose layers ([`layers`]) know their
//! shape rules and costs; [`analysis`] computes per-layer and total parameters, MACs, FLOPs and
//! memory; [`report`] renders tables and JSON; [`dot`] draws the graph as Graphviz DOT; [`html`]
//! renders the self-contained HTML report page; [`render`] the text of the other commands.
//! [`cli`] is the command line (one module per command), the only module that touches clap,
//! files, standard streams and exit codes: the rest of the library does no IO and never panics
//! on user input: every problem is a located [`Error`].

// A `Diagnostic` carries its location, layer, instance, notes and help: large, but only on the
// cold error path, where boxing every `Result` would buy nothing measurable.
#![allow(clippy::result_large_err)]

pub mod analysis;
pub mod audit;
pub mod check;
pub mod cli;
pub mod compare;
pub mod convention;
pub mod detect;
pub mod dot;
pub mod error;
pub mod exec;
pub mod expr;
pub mod geometry;
pub mod graph;
pub mod html;
pub mod kernels;
pub mod kernels_attn;
pub mod kernels_nd;
pub mod layers;
pub mod onnx;
pub mod receptive;
pub mod render;
pub mod report;
pub mod spec;
pub mod tensor;
pub mod train;
pub mod ultralytics;
pub mod yaml;
pub mod zoo;

pub use analysis::{analyze, Analysis, Dtype, LayerStats, Totals};
pub use convention::Convention;
pub use error::{Diagnostic, Error, Result};
pub use graph::{build_network, BuildOptions, Network};
pub use layers::{Counting, Kernel, Layer, Op, Shape};
