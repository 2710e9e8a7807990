//! `archscope compare`: models side by side, over every setting of a sweep, with ratios to a
//! baseline, and optionally the SVG chart.

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};

use super::common::{analysis, SettingArgs};
use super::out;
use crate::compare::{self, Comparison, SortKey};
use crate::layers::Convention;
use crate::report::Format;
use crate::Dtype;

// The flags of `compare`.
#[derive(clap::Args)]
pub struct Args {
    /// Models: YAML files or zoo names.
    #[arg(required = true)]
    models: Vec<String>,
    #[command(flatten)]
    setting: SettingArgs,
    /// Order of the rows (ascending; names alphabetically).
    #[arg(long, value_enum)]
    sort: Option<SortKey>,
    /// A model (as given, or by its name) to express the others as ratios of.
    #[arg(long)]
    baseline: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Also draw MACs against parameters (bubble area = peak activation memory) into
    /// this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Dtype,
    #[arg(long, value_enum, default_value = "torchvision")]
    convention: Convention,
}

pub fn run(args: Args) -> Result<i32> {
    let settings = args.setting.settings()?;
    let mut all = Vec::new();
    let mut names = Vec::new();
    for m in &args.models {
        for s in &settings {
            let (_, a) = analysis(m, s, args.dtype, args.convention)?;
            names.push((m.clone(), a.model.clone()));
            all.push(a);
        }
    }
    let base = baseline(args.baseline.as_deref(), &names)?;
    let mut c = Comparison::new(&all, base.as_deref())?;
    if let Some(k) = args.sort {
        c.sort(k);
    }
    out(compare::render(&c, args.format))?;
    if let Some(path) = args.chart {
        let svg = compare::chart_svg(&c)?;
        std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("chart written to {}", path.display());
    }
    Ok(0)
}

/// The model name of `--baseline`, given as written on the command line or by model name,
/// among (argument, model name) pairs.
pub fn baseline(given: Option<&str>, names: &[(String, String)]) -> Result<Option<String>> {
    given
        .map(|b| {
            names
                .iter()
                .find(|(arg, name)| arg == b || name == b)
                .map(|(_, name)| name.clone())
                .ok_or_else(|| anyhow!("--baseline {b} is not one of the compared models"))
        })
        .transpose()
}
