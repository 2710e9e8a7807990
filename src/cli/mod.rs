//! The command line: with `src/main.rs`, the only code that touches clap, files,
//! stdin/stdout/stderr and exit codes. One module per command, each its arguments (a
//! `clap::Args` struct) and a `run` that calls the library and prints what its renderers
//! return; `common` holds what several share (the model and its `--input`/`--batch` setting,
//! reading files under caps), `values` the library's enums as clap values.
//! Exit codes: 0 success, 1 a check or budget failed, 2 bad input or usage. What goes to
//! stdout depends only on the input and the flags (byte for byte, whatever the thread count);
//! timings and progress go to stderr.

use std::io::{IsTerminal, Write};

use anyhow::{anyhow, Result};
use clap::{Parser, Subcommand};

mod audit;
mod check;
mod common;
mod compare;
mod convert;
mod detect;
mod dot;
mod export;
mod ops;
mod report;
mod rf;
mod run;
mod summary;
mod train;
mod values;
mod zoo;

#[derive(Parser)]
#[command(
    name = "archscope",
    version,
    about = "Inspect neural-network architectures: shapes, parameters, MACs/FLOPs and memory, exactly as PyTorch counts them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Per-layer output shapes, parameters, MACs, FLOPs and memory, with totals; with several
    /// --input or --batch values, one row of totals per setting.
    Summary(summary::Args),
    /// Compare models side by side: parameters, MACs, FLOPs, memory, depth, receptive field,
    /// ratios to a baseline; optionally an SVG chart.
    Compare(compare::Args),
    /// Check budgets (exit 1 when one is exceeded) and report design findings.
    Audit(audit::Args),
    /// Training cost and memory: iterations, training FLOPs, wall time, weights, gradients,
    /// optimizer state, saved activations, and the peak memory of a step (when it happens).
    Train(train::Args),
    /// Receptive field of every layer (size, jump, start, effective padding), and what the input
    /// size means for it.
    Rf(rf::Args),
    /// Run the graph in the embedded executor and compare every layer's shapes, parameters,
    /// buffers, MACs and receptive field with the static analysis. Exit 1 on any disagreement.
    Check(check::Args),
    /// Run the model: output statistics, top-5 classes, a per-layer profile and latency.
    Run(run::Args),
    /// Write the model as an ONNX file (seeded or loaded weights, or the graph only) that
    /// onnxruntime runs and Netron opens.
    Export(export::Args),
    /// Draw the layer graph as Graphviz DOT, or render it (SVG, PNG, PDF, JPEG, …) with
    /// Graphviz's `dot`.
    Dot(dot::Args),
    /// Write one self-contained HTML page (no network needed to view it): totals, the layer
    /// table (sortable, foldable, searchable), the diagram (when Graphviz's `dot` is
    /// installed), charts, the memory timeline and the audit; for several models, the
    /// comparison first.
    Report(report::Args),
    /// List the embedded model zoo with parameters and MACs.
    Zoo(zoo::Args),
    /// List the layer types the format knows, with their keys.
    Ops,
    /// Write a model from another format (an Ultralytics model YAML file, an ONNX file) in
    /// archscope's own YAML format: blocks and repeats kept or found, batch norms and
    /// activations folded, readable back to the same figures.
    Convert(convert::Args),
}

/// Runs the CLI on the process's arguments and returns its exit code.
pub fn main() -> i32 {
    main_from(std::env::args_os())
}

/// Runs the CLI on `args` (the program name first) and returns the exit code; the fuzz
/// target over command lines calls it (docs/FUZZING.md).
pub fn main_from<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    crate::report::set_table_width(table_width());
    match dispatch(cli.command) {
        Ok(code) => code,
        // The reader went away (`archscope summary x | head`): nothing left to say.
        Err(e) if e.downcast_ref::<ClosedStdout>().is_some() => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

/// Runs one command; its exit code (0, or 1 for a failed check or budget).
fn dispatch(command: Command) -> Result<i32> {
    match command {
        Command::Summary(a) => summary::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Audit(a) => audit::run(a),
        Command::Train(a) => train::run(a),
        Command::Rf(a) => rf::run(a),
        Command::Check(a) => check::run(a),
        Command::Run(a) => run::run(a),
        Command::Export(a) => export::run(a),
        Command::Dot(a) => dot::run(a),
        Command::Report(a) => report::run(a),
        Command::Zoo(a) => zoo::run(a),
        Command::Ops => ops::run(),
        Command::Convert(a) => convert::run(a),
    }
}

/// Stdout was closed by its reader.
#[derive(Debug)]
struct ClosedStdout;

impl std::fmt::Display for ClosedStdout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for ClosedStdout {}

/// Writes to stdout; a closed pipe ends the program quietly instead of panicking as
/// `print!` would.
fn out(bytes: impl AsRef<[u8]>) -> Result<()> {
    let mut o = std::io::stdout().lock();
    match o.write_all(bytes.as_ref()).and_then(|_| o.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ClosedStdout.into()),
        Err(e) => Err(anyhow!("cannot write to stdout: {e}")),
    }
}

/// The width boxed tables fit in: `COLUMNS` when it holds a positive number, else the
/// terminal's width when stdout is one, else none (full width, as when piped to a file).
fn table_width() -> Option<u16> {
    if let Some(w) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|&w| w > 0)
    {
        return Some(w);
    }
    if std::io::stdout().is_terminal() {
        comfy_table::Table::new().width()
    } else {
        None
    }
}
