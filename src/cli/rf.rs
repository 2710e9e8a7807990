//! `archscope rf`: the receptive field of every layer.

use anyhow::Result;

use super::common::{load_one, ModelArgs};
use super::out;
use crate::report::{self, Format};
use crate::{analyze, Dtype};

// The flags of `rf`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub fn run(args: Args) -> Result<i32> {
    let net = load_one(&args.model, "rf")?;
    let a = analyze(&net, Dtype::F32)?;
    out(report::rf_report(&a, args.format))?;
    Ok(0)
}
