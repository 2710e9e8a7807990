//! `archscope check`: run every layer as written and compare what it measures with the
//! analysis; exit 1 on any disagreement.

use anyhow::Result;

use super::common::{load_one, ModelArgs};
use super::out;
use super::values::{some_of, VIEW_FORMATS};
use crate::report::Format;
use crate::{analyze, check, exec, render, Dtype};

// The flags of `check`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Seed of the random weights and input.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Measure receptive fields on N input rows and N columns, evenly spaced (first and
    /// last included), instead of all; 0 skips the measurement.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    rf_sample: Option<u32>,
    #[arg(long, value_parser = some_of(VIEW_FORMATS), default_value = "table")]
    format: Format,
}

pub fn run(args: Args) -> Result<i32> {
    let net = load_one(&args.model, "check")?;
    let a = analyze(&net, Dtype::F32)?;
    // `check` runs every layer as written (no reuse of buffers): the need, before allocating.
    exec::check_memory(&net, exec::MEMORY_BUDGET, 0)?;
    let sample = args.rf_sample.map(|n| n as usize);
    let weights = exec::init_weights(&net, args.seed)?;
    let report = check::check_sampled(&net, &a, &weights, args.seed, sample)?;
    out(render::check_report(&report, &a.model, args.format))?;
    // The figures that change from run to run: on stderr, so stdout is reproducible.
    eprint!("{}", render::check_log(&report));
    Ok(if report.failures() == 0 { 0 } else { 1 })
}
