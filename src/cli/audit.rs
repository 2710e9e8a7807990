//! `archscope audit`: budgets (exit 1 when one is exceeded) and design findings.

use anyhow::Result;

use super::common::{analysis, quantity, ModelArgs};
use super::out;
use crate::audit::{self, Budgets, Quantity};
use crate::layers::Convention;
use crate::Dtype;

// The flags of `audit`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Most parameters allowed (K/M/G = ×1000), e.g. 25M.
    #[arg(long, value_name = "N")]
    max_params: Option<String>,
    /// Most MACs allowed, e.g. 4G (under --convention).
    #[arg(long, value_name = "N")]
    max_macs: Option<String>,
    /// Most FLOPs allowed, e.g. 8G.
    #[arg(long, value_name = "N")]
    max_flops: Option<String>,
    /// Most peak activation memory allowed (KiB/MiB/GiB = ×1024), e.g. 2GiB.
    #[arg(long, value_name = "BYTES")]
    max_peak_memory: Option<String>,
    /// Least final receptive field (pixels, both axes).
    #[arg(long, value_name = "N")]
    min_rf: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    format: AuditFormat,
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Dtype,
    #[arg(long, value_enum, default_value = "torchvision")]
    convention: Convention,
}

/// The audit is findings in sentences, or their JSON.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AuditFormat {
    Text,
    Json,
}

pub fn run(args: Args) -> Result<i32> {
    let budgets = Budgets {
        max_params: quantity("--max-params", &args.max_params, Quantity::Count)?,
        max_macs: quantity("--max-macs", &args.max_macs, Quantity::Count)?,
        max_flops: quantity("--max-flops", &args.max_flops, Quantity::Count)?,
        max_peak_memory: quantity("--max-peak-memory", &args.max_peak_memory, Quantity::Bytes)?,
        min_rf: quantity("--min-rf", &args.min_rf, Quantity::Count)?,
    };
    let setting = args.model.setting.single("audit")?;
    let (net, a) = analysis(&args.model.model, &setting, args.dtype, args.convention)?;
    let result = audit::audit(&net, &a, &budgets)?;
    out(audit::render(&result, args.format == AuditFormat::Json))?;
    Ok(if result.passed() { 0 } else { 1 })
}
