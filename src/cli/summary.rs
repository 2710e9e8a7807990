//! `archscope summary`: per-layer figures with totals, or one row of totals per setting of a
//! sweep.

use anyhow::Result;

use super::common::{analysis, depth, parse_depth, ModelArgs};
use super::out;
use crate::layers::Convention;
use crate::report::{self, Format};
use crate::Dtype;

// The flags of `summary` (its help is the `Command::Summary` doc comment).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Fold layers into one row per path prefix of this many components (1: top level;
    /// at least 1). Table, Markdown and CSV show the folded rows; JSON keeps every layer
    /// under `layers` and adds the folded ones under `rows`.
    #[arg(long, value_parser = parse_depth)]
    depth: Option<u64>,
    /// Element type for memory figures.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Dtype,
    /// Count MACs as this tool does (torchvision: conv/linear MACs, the default).
    #[arg(long, value_enum, default_value = "torchvision")]
    convention: Convention,
}

pub fn run(args: Args) -> Result<i32> {
    let mut all = Vec::new();
    for s in &args.model.setting.settings()? {
        all.push(analysis(&args.model.model, s, args.dtype, args.convention)?.1);
    }
    if all.len() == 1 {
        out(report::summary(&all[0], args.format, depth(args.depth)))?;
    } else {
        out(report::sweep(&all, args.format))?;
    }
    Ok(0)
}
