//! The command line: the only module that touches clap, files, stdout/stderr and exit codes.
//! Exit codes: 0 success, 1 a check or budget failed, 2 bad input or usage.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use archscope::error::did_you_mean;
use archscope::report::{self, Format};
use archscope::{analyze, zoo, BuildOptions, Dtype, Network};

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

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutFormat {
    Table,
    Markdown,
    Csv,
    Json,
}

impl From<OutFormat> for Format {
    fn from(f: OutFormat) -> Format {
        match f {
            OutFormat::Table => Format::Table,
            OutFormat::Markdown => Format::Markdown,
            OutFormat::Csv => Format::Csv,
            OutFormat::Json => Format::Json,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum DtypeArg {
    F32,
    F16,
    Bf16,
    Int8,
}

impl From<DtypeArg> for Dtype {
    fn from(d: DtypeArg) -> Dtype {
        match d {
            DtypeArg::F32 => Dtype::F32,
            DtypeArg::F16 => Dtype::F16,
            DtypeArg::Bf16 => Dtype::Bf16,
            DtypeArg::Int8 => Dtype::Int8,
        }
    }
}

#[derive(clap::Args)]
struct ModelArgs {
    /// A YAML architecture file, or the name of an embedded zoo model (see `archscope zoo`).
    model: String,
    /// Input size per sample: CxHxW, HxW (keeps the model's channels) or S (square).
    #[arg(long)]
    input: Option<String>,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    batch: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Per-layer output shapes, parameters, MACs, FLOPs and memory, with totals.
    Summary {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, value_enum, default_value = "table")]
        format: OutFormat,
        /// Fold layers into one row per path prefix of this many components (1: top level).
        #[arg(long)]
        depth: Option<usize>,
        /// Element type for memory figures.
        #[arg(long, value_enum, default_value = "f32")]
        dtype: DtypeArg,
    },
    /// Receptive field of every layer (size, jump, start, effective padding), and what the input
    /// size means for it.
    Rf {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, value_enum, default_value = "table")]
        format: OutFormat,
    },
    /// List the embedded model zoo with parameters and MACs.
    Zoo {
        #[arg(long, value_enum, default_value = "table")]
        format: OutFormat,
    },
    /// List the layer types the format knows, with their keys.
    Ops,
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Summary {
            model,
            format,
            depth,
            dtype,
        } => {
            let net = load(&model)?;
            let a = analyze(&net, dtype.into())?;
            print!("{}", report::summary(&a, format.into(), depth));
        }
        Command::Rf { model, format } => {
            let net = load(&model)?;
            let a = analyze(&net, Dtype::F32)?;
            if format == OutFormat::Csv {
                bail!("rf has no CSV form; use --format table, markdown or json");
            }
            print!("{}", report::rf_report(&a, format.into()));
        }
        Command::Zoo { format } => print!("{}", zoo_listing(format)?),
        Command::Ops => print!("{}", ops_listing()),
    }
    Ok(0)
}

/// Parses `CxHxW`, `HxW` or `S`.
fn parse_input(s: &str) -> Result<Vec<u64>> {
    let parts: Vec<&str> = s.split(['x', 'X', '×', ',']).map(str::trim).collect();
    let dims = parts
        .iter()
        .map(|p| p.parse::<u64>().ok().filter(|&d| d > 0))
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(|| {
            anyhow!("--input {s}: expected positive integers like 3x224x224, 224x224 or 224")
        })?;
    match dims.len() {
        1..=3 => Ok(dims),
        _ => bail!("--input {s}: give CxHxW, HxW or a single size"),
    }
}

/// Loads a model from a file or the zoo, applying --input and --batch.
fn load(args: &ModelArgs) -> Result<Network> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let (file, text) = read_model(&args.model)?;
    let mut opts = BuildOptions {
        batch: args.batch,
        input: None,
    };
    if let Some(s) = &args.input {
        let dims = parse_input(s)?;
        let doc = archscope::yaml::Document::parse(&file, &text).map_err(archscope::Error::from)?;
        let declared = archscope::graph::declared_inputs(&doc)?;
        let first = declared.first().map(|(_, d)| d.clone()).unwrap_or_default();
        opts.input = Some(match dims.len() {
            3 => dims,
            // HxW or S: keep the declared channels.
            2 if first.len() == 3 => vec![first[0], dims[0], dims[1]],
            1 if first.len() == 3 => vec![first[0], dims[0], dims[0]],
            1 if first.len() == 1 => dims,
            _ => bail!("--input {s} does not fit the model's input {:?}", first),
        });
    }
    Ok(Network::from_yaml(&file, &text, &opts)?)
}

fn read_model(model: &str) -> Result<(String, String)> {
    let path = Path::new(model);
    if path.exists() {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {model}"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow!("{model} is not UTF-8 text (is it a YAML file?)"))?;
        return Ok((model.to_string(), text));
    }
    if let Some(text) = zoo::source(model) {
        return Ok((format!("models/{model}.yaml"), text.to_string()));
    }
    let names: Vec<&str> = zoo::MODELS.iter().map(|(n, _)| *n).collect();
    let hint = match did_you_mean(model, names.iter().copied()) {
        Some(s) => format!("did you mean the zoo model `{s}`?"),
        None => "`archscope zoo` lists the embedded models".to_string(),
    };
    bail!("no file or zoo model named `{model}`\n   help: {hint}")
}

fn zoo_listing(format: OutFormat) -> Result<String> {
    let mut rows = Vec::new();
    for (name, _) in zoo::MODELS {
        let net = zoo::build(name, &BuildOptions::default()).expect("listed")?;
        let a = analyze(&net, Dtype::F32)?;
        rows.push((name.to_string(), a));
    }
    Ok(match format {
        OutFormat::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|(n, a)| {
                    serde_json::json!({"name": n, "input": a.inputs[0].0, "params": a.totals.params,
                        "macs": a.totals.macs, "flops": a.totals.flops, "layers": a.layers.len()})
                })
                .collect();
            serde_json::to_string_pretty(&v)? + "\n"
        }
        _ => {
            let mut t = comfy_table::Table::new();
            t.load_preset(if matches!(format, OutFormat::Markdown) {
                comfy_table::presets::ASCII_MARKDOWN
            } else {
                comfy_table::presets::UTF8_FULL_CONDENSED
            });
            t.set_header(vec!["Model", "Input", "Params", "MACs", "Layers"]);
            for (n, a) in &rows {
                t.add_row(vec![
                    n.clone(),
                    a.inputs[0].per_sample(),
                    report::human_count(a.totals.params),
                    report::human_count(a.totals.macs),
                    a.layers.len().to_string(),
                ]);
            }
            format!("{t}\n")
        }
    })
}

fn ops_listing() -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(vec!["Op", "Aliases", "Keys", "What"]);
    for op in archscope::layers::REGISTRY
        .iter()
        .filter(|o| o.name != "input")
    {
        t.add_row(vec![
            op.name,
            &op.aliases.join(", "),
            &op.keys.join(", "),
            op.summary,
        ]);
    }
    format!("{t}\nEvery op also takes: id, in, when, repeat, act (and bn on conv, deconv and linear).\n")
}
