//! `archscope summary`: per-layer figures with totals, or one row of totals per setting of a
//! sweep.

use anyhow::Result;

use super::common::{analysis, depth, load_doc, parse_depth, ModelArgs};
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
    /// For an Ultralytics model file: also print Ultralytics' per-module table (from, n,
    /// params, module, arguments) and `model.info()`'s line (layers, parameters, gradients,
    /// GFLOPs as thop counts them at the input), before archscope's own summary.
    #[arg(long)]
    ultralytics: bool,
}

pub fn run(args: Args) -> Result<i32> {
    let mut ultra_json = None;
    if args.ultralytics {
        let setting = args.model.setting.single("summary --ultralytics")?;
        let (_, model) = load_doc(&args.model.model, &setting)?;
        let Some(model) = model else {
            anyhow::bail!(
                "--ultralytics: {} is not an Ultralytics model file (a mapping with `backbone` and `head` lists)",
                args.model.model
            );
        };
        if matches!(args.format, Format::Csv) {
            anyhow::bail!(
                "--ultralytics prints Ultralytics' table as text, which would break the CSV\n   help: use --format json (the figures go under `ultralytics`) or --format table"
            );
        }
        let (_, a) = analysis(&args.model.model, &setting, args.dtype, Convention::Thop)?;
        let info = crate::ultralytics::info(&model, &a);
        if matches!(args.format, Format::Json) {
            ultra_json = Some(crate::ultralytics::info_json(&model, &info));
        } else {
            out(crate::ultralytics::render_info(&model, &info))?;
        }
    }
    let mut all = Vec::new();
    for s in &args.model.setting.settings()? {
        all.push(analysis(&args.model.model, s, args.dtype, args.convention)?.1);
    }
    if let Some(u) = ultra_json {
        // One JSON document: the summary's, with Ultralytics' figures under `ultralytics`.
        let text = report::summary(&all[0], args.format, depth(args.depth));
        let mut v: serde_json::Value = serde_json::from_str(&text)?;
        v["ultralytics"] = u;
        out(serde_json::to_string_pretty(&v)? + "\n")?;
    } else if all.len() == 1 {
        out(report::summary(&all[0], args.format, depth(args.depth)))?;
    } else {
        out(report::sweep(&all, args.format))?;
    }
    Ok(0)
}
