//! `archscope train`: the training plan of a model (iterations, FLOPs, wall time, memory).

use anyhow::{bail, Result};

use super::common::{load, parse_input, Setting};
use super::out;
use super::values::{some_of, TRAIN_DTYPES, TRAIN_FORMATS};
use crate::report::Format;
use crate::train::{self, Optimizer};
use crate::Dtype;

// The flags of `train`.
#[derive(clap::Args)]
pub struct Args {
    /// A YAML architecture file, or a zoo model name.
    model: String,
    /// Samples in the training set.
    #[arg(long)]
    dataset_size: u64,
    /// Samples per iteration.
    #[arg(long)]
    batch: u64,
    #[arg(long)]
    epochs: u64,
    /// Input size per sample (CxHxW, HxW or S).
    #[arg(long)]
    input: Option<String>,
    /// An Ultralytics model file's scale (n, s, m, l, x), instead of the one its name gives.
    #[arg(long)]
    scale: Option<String>,
    /// An Ultralytics model file's number of classes, instead of its `nc`.
    #[arg(long)]
    nc: Option<u64>,
    #[arg(long, value_enum, default_value = "sgd")]
    optimizer: Optimizer,
    #[arg(long, value_parser = some_of(TRAIN_DTYPES), default_value = "f32")]
    dtype: Dtype,
    /// Sustained throughput in TFLOP/s, for the wall time.
    #[arg(long, value_name = "TFLOPS")]
    throughput: Option<f64>,
    #[arg(long, value_parser = some_of(TRAIN_FORMATS), default_value = "table")]
    format: Format,
}

pub fn run(args: Args) -> Result<i32> {
    if args.batch == 0 || args.dataset_size == 0 || args.epochs == 0 {
        bail!("--dataset-size, --batch and --epochs must be at least 1");
    }
    if args.throughput.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
        bail!("--throughput must be a positive number of TFLOP/s");
    }
    let setting = Setting {
        input: args.input.as_deref().map(parse_input).transpose()?,
        batch: args.batch,
        scale: args.scale.clone(),
        nc: args.nc,
    };
    let net = load(&args.model, &setting)?;
    let cfg = train::Config {
        dataset_size: args.dataset_size,
        batch: args.batch,
        epochs: args.epochs,
        optimizer: args.optimizer,
        dtype: args.dtype,
        throughput_tflops: args.throughput,
    };
    let p = train::plan(&net, &cfg)?;
    out(train::render(&p, args.format == Format::Json))?;
    Ok(0)
}
