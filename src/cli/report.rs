//! `archscope report`: one self-contained HTML page of a model, or of a comparison of several,
//! written to a file.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};

use super::common::{analysis, depth, parse_depth, Setting, SettingArgs};
use super::dot::{graphviz, DotFormat};
use crate::audit::{self, Budgets};
use crate::compare::Comparison;
use crate::dot::{self, DotOptions};
use crate::html::{self, Diagram, ModelPage};
use crate::layers::Convention;
use crate::train::{self, Optimizer};
use crate::{Analysis, Dtype, Network};

// The flags of `report`.
#[derive(clap::Args)]
pub struct Args {
    /// Models: YAML files or zoo names.
    #[arg(required = true)]
    models: Vec<String>,
    /// The HTML file to write.
    #[arg(short, long, value_name = "FILE.html")]
    output: PathBuf,
    #[command(flatten)]
    setting: SettingArgs,
    /// Depth the layer table opens folded at (1: top level) [default: every layer].
    #[arg(long, value_parser = parse_depth)]
    depth: Option<u64>,
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Dtype,
    #[arg(long, value_enum, default_value = "torchvision")]
    convention: Convention,
    /// Also show the memory of a training step with this optimizer (at --batch, --dtype).
    #[arg(long, value_enum)]
    optimizer: Option<Optimizer>,
    /// For several models: the model the others are expressed as ratios of.
    #[arg(long)]
    baseline: Option<String>,
}

pub fn run(args: Args) -> Result<i32> {
    let setting = args.setting.single("report")?;
    if args.optimizer.is_some() && args.dtype == Dtype::Int8 {
        bail!("--optimizer: training memory is planned for f32, f16 or bf16, not int8\n   help: drop --dtype int8, or --optimizer");
    }
    let mut built = Vec::new();
    for m in &args.models {
        built.push(model(m, &setting, &args)?);
    }
    let pages: Vec<ModelPage> = built
        .iter()
        .map(|(net, a, audit, training, diagram)| ModelPage {
            net,
            analysis: a,
            audit,
            training: training.as_ref(),
            diagram,
            depth: depth(args.depth),
        })
        .collect();
    let page = if pages.len() == 1 {
        html::model_report(&pages[0])?
    } else {
        let analyses: Vec<Analysis> = built.iter().map(|b| b.1.clone()).collect();
        let base = baseline(args.baseline.as_deref(), &args.models, &analyses)?;
        let c = Comparison::new(&analyses, base.as_deref())?;
        html::comparison_report(&c, &pages)?
    };
    std::fs::write(&args.output, page)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!("report written to {}", args.output.display());
    Ok(0)
}

/// What one model's part of the page shows.
type Built = (
    Network,
    Analysis,
    audit::Audit,
    Option<train::Plan>,
    Diagram,
);

/// One model built, analysed, audited, planned for training (with `--optimizer`) and drawn.
fn model(m: &str, setting: &Setting, args: &Args) -> Result<Built> {
    let (net, a) = analysis(m, setting, args.dtype, args.convention)?;
    let audit = audit::audit(&net, &a, &Budgets::default())?;
    let training = args
        .optimizer
        .map(|o| {
            train::plan(
                &net,
                &train::Config {
                    dataset_size: setting.batch,
                    batch: setting.batch,
                    epochs: 1,
                    optimizer: o,
                    dtype: args.dtype,
                    throughput_tflops: None,
                },
            )
        })
        .transpose()?;
    let diagram = diagram(&net, &a)?;
    Ok((net, a, audit, training, diagram))
}

/// The model's diagram as SVG, or why there is none (too many layers, no Graphviz).
fn diagram(net: &Network, a: &Analysis) -> Result<Diagram> {
    if a.layers.len() > html::MAX_DIAGRAM_LAYERS {
        return Ok(Diagram::Missing(format!(
            "the model has {} layers, and the report draws diagrams of at most {} (`archscope dot --collapse repeats` draws a folded one)",
            a.layers.len(),
            html::MAX_DIAGRAM_LAYERS
        )));
    }
    match graphviz(dot::graph(net, a, &DotOptions::default()), DotFormat::Svg, net.nodes.len()) {
        Ok(svg) => Ok(Diagram::Svg(String::from_utf8_lossy(&svg).into_owned())),
        Err(e) if e.to_string().contains("not installed") => Ok(Diagram::Missing(
            "Graphviz's `dot` program is not installed (apt-get install graphviz, brew install graphviz)".into(),
        )),
        Err(e) => Err(e),
    }
}

/// The model name of `--baseline`, given as on the command line or by model name.
fn baseline(
    given: Option<&str>,
    models: &[String],
    analyses: &[Analysis],
) -> Result<Option<String>> {
    given
        .map(|b| {
            models
                .iter()
                .zip(analyses)
                .find(|(arg, a)| arg.as_str() == b || a.model == b)
                .map(|(_, a)| a.model.clone())
                .ok_or_else(|| anyhow!("--baseline {b} is not one of the reported models"))
        })
        .transpose()
}
