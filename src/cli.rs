//! The command line: the only module that touches clap, files, stdout/stderr and exit codes.
//! Exit codes: 0 success, 1 a check or budget failed, 2 bad input or usage. What goes to
//! stdout depends only on the input and the flags (byte for byte, whatever the thread count);
//! timings and progress go to stderr.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use archscope::audit::{self, parse_quantity, Budgets, Quantity};
use archscope::compare::{self, Comparison, SortKey};
use archscope::convention::{recount, Convention};
use archscope::dot::{self, Collapse, DotOptions, RankDir, Show};
use archscope::error::did_you_mean;
use archscope::report::{self, Format};
use archscope::train::{self, Optimizer};
use archscope::{analyze, zoo, Analysis, BuildOptions, Dtype, Network};

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

/// What `dot` writes: DOT text, or a format Graphviz's `dot` program renders.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum DotFormat {
    /// Graphviz DOT text (.dot, .gv).
    #[value(alias = "gv")]
    Dot,
    /// SVG (.svg).
    Svg,
    /// Gzipped SVG (.svgz).
    Svgz,
    /// PNG (.png).
    Png,
    /// PDF (.pdf).
    Pdf,
    /// JPEG (.jpg, .jpeg, .jpe).
    #[value(alias = "jpeg")]
    Jpg,
    /// GIF (.gif).
    Gif,
    /// WebP (.webp), where Graphviz was built with it.
    Webp,
    /// PostScript (.ps).
    Ps,
    /// Encapsulated PostScript (.eps).
    Eps,
    /// Graphviz's JSON with layout (.json).
    Json,
    /// Graphviz's DOT with layout attributes (.xdot).
    Xdot,
    /// Graphviz's plain-text layout (.plain).
    Plain,
}

impl DotFormat {
    /// The format a file name's extension asks for; `None` for one Graphviz does not write.
    fn from_extension(ext: &str) -> Option<DotFormat> {
        Some(match ext.to_ascii_lowercase().as_str() {
            "dot" | "gv" => DotFormat::Dot,
            "svg" => DotFormat::Svg,
            "svgz" => DotFormat::Svgz,
            "png" => DotFormat::Png,
            "pdf" => DotFormat::Pdf,
            "jpg" | "jpeg" | "jpe" => DotFormat::Jpg,
            "gif" => DotFormat::Gif,
            "webp" => DotFormat::Webp,
            "ps" => DotFormat::Ps,
            "eps" => DotFormat::Eps,
            "json" => DotFormat::Json,
            "xdot" => DotFormat::Xdot,
            "plain" => DotFormat::Plain,
            _ => return None,
        })
    }
    /// Graphviz's name for it (`-T…`).
    fn name(self) -> &'static str {
        match self {
            DotFormat::Dot => "dot",
            DotFormat::Svg => "svg",
            DotFormat::Svgz => "svgz",
            DotFormat::Png => "png",
            DotFormat::Pdf => "pdf",
            DotFormat::Jpg => "jpg",
            DotFormat::Gif => "gif",
            DotFormat::Webp => "webp",
            DotFormat::Ps => "ps",
            DotFormat::Eps => "eps",
            DotFormat::Json => "json",
            DotFormat::Xdot => "xdot",
            DotFormat::Plain => "plain",
        }
    }
    /// Whether it is binary (not for a terminal).
    fn binary(self) -> bool {
        matches!(
            self,
            DotFormat::Svgz
                | DotFormat::Png
                | DotFormat::Pdf
                | DotFormat::Jpg
                | DotFormat::Gif
                | DotFormat::Webp
        )
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum CollapseArg {
    /// Every layer a node, block instances as clusters.
    None,
    /// One node per top-level block instance.
    Blocks,
    /// One node per run of repeated block instances (`layer3` for `layer3.0` … `layer3.5`).
    Repeats,
}

#[derive(Clone, Copy, ValueEnum)]
enum RankDirArg {
    /// Top to bottom.
    #[value(name = "TB", alias = "tb")]
    Tb,
    /// Left to right.
    #[value(name = "LR", alias = "lr")]
    Lr,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ShowArg {
    Shape,
    Params,
    Macs,
    Flops,
    Rf,
    Memory,
    /// No figures.
    None,
}

#[derive(Clone, Copy, ValueEnum)]
enum ConventionArg {
    Torchvision,
    Fvcore,
    Ptflops,
    Thop,
    Torchinfo,
}

impl From<ConventionArg> for Convention {
    fn from(c: ConventionArg) -> Convention {
        match c {
            ConventionArg::Torchvision => Convention::Torchvision,
            ConventionArg::Fvcore => Convention::Fvcore,
            ConventionArg::Ptflops => Convention::Ptflops,
            ConventionArg::Thop => Convention::Thop,
            ConventionArg::Torchinfo => Convention::Torchinfo,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum SortArg {
    Macs,
    Params,
    Flops,
    Memory,
    Depth,
    Rf,
    Name,
}

impl From<SortArg> for SortKey {
    fn from(s: SortArg) -> SortKey {
        match s {
            SortArg::Macs => SortKey::Macs,
            SortArg::Params => SortKey::Params,
            SortArg::Flops => SortKey::Flops,
            SortArg::Memory => SortKey::Memory,
            SortArg::Depth => SortKey::Depth,
            SortArg::Rf => SortKey::Rf,
            SortArg::Name => SortKey::Name,
        }
    }
}

/// The formats of a report that is a table with lines of text around it (`check`, `run`).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ViewFormat {
    Table,
    Markdown,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TextFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TrainFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum OptimizerArg {
    Sgd,
    Momentum,
    Nesterov,
    Adagrad,
    Rmsprop,
    Adam,
    Adamw,
}

impl From<OptimizerArg> for Optimizer {
    fn from(o: OptimizerArg) -> Optimizer {
        match o {
            OptimizerArg::Sgd => Optimizer::Sgd,
            OptimizerArg::Momentum => Optimizer::Momentum,
            OptimizerArg::Nesterov => Optimizer::Nesterov,
            OptimizerArg::Adagrad => Optimizer::Adagrad,
            OptimizerArg::Rmsprop => Optimizer::Rmsprop,
            OptimizerArg::Adam => Optimizer::Adam,
            OptimizerArg::Adamw => Optimizer::Adamw,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum TrainDtype {
    F32,
    F16,
    Bf16,
}

#[derive(clap::Args)]
struct ModelArgs {
    /// A YAML architecture file, or the name of an embedded zoo model (see `archscope zoo`).
    model: String,
    #[command(flatten)]
    setting: SettingArgs,
}

#[derive(clap::Args)]
struct SettingArgs {
    /// Input size per sample: CxHxW, HxW (keeps the model's channels) or S (square). A
    /// comma-separated list (224,320,448) sweeps several sizes where the command allows it.
    #[arg(long)]
    input: Option<String>,
    /// Batch size; a comma-separated list (1,8,32) sweeps several where the command allows it.
    #[arg(long, default_value = "1")]
    batch: String,
}

/// Most settings (input sizes × batches) one sweep may list; each builds the model anew.
const MAX_SETTINGS: usize = 64;

/// Most forward passes `run --repeat` makes.
const MAX_REPEAT_RUNS: u64 = 1000;

/// One input size (None: the model's own) and batch.
#[derive(Clone)]
struct Setting {
    input: Option<Vec<u64>>,
    batch: u64,
}

impl SettingArgs {
    /// Every combination of the listed input sizes and batches, sizes outermost.
    fn settings(&self) -> Result<Vec<Setting>> {
        // Counted before anything is parsed or built: 20,000 values cost no memory.
        let sizes = self.input.as_deref().map_or(1, |s| s.split(',').count());
        let batches = self.batch.split(',').count();
        if sizes.saturating_mul(batches) > MAX_SETTINGS {
            bail!(
                "--input and --batch give {sizes} × {batches} = {} settings; a sweep has at most {MAX_SETTINGS}\n   \
                 help: sweep fewer sizes or batches at once (several commands can cover more)",
                sizes.saturating_mul(batches)
            );
        }
        let inputs: Vec<Option<Vec<u64>>> = match &self.input {
            None => vec![None],
            Some(s) => s
                .split(',')
                .map(|p| parse_input(p.trim()).map(Some))
                .collect::<Result<_>>()?,
        };
        let batches = self
            .batch
            .split(',')
            .map(|b| {
                b.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|&b| b > 0)
                    .ok_or_else(|| {
                        anyhow!(
                            "--batch {}: expected positive integers like 32 or 1,8,32",
                            self.batch
                        )
                    })
            })
            .collect::<Result<Vec<u64>>>()?;
        Ok(inputs
            .iter()
            .flat_map(|i| {
                batches.iter().map(move |&batch| Setting {
                    input: i.clone(),
                    batch,
                })
            })
            .collect())
    }

    /// The single setting of a command that does not sweep.
    fn single(&self, command: &str) -> Result<Setting> {
        let mut s = self.settings()?;
        if s.len() != 1 {
            bail!("`{command}` takes one --input and one --batch (sweeps work with summary and compare)");
        }
        Ok(s.remove(0))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Per-layer output shapes, parameters, MACs, FLOPs and memory, with totals; with several
    /// --input or --batch values, one row of totals per setting.
    Summary {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, value_enum, default_value = "table")]
        format: OutFormat,
        /// Fold layers into one row per path prefix of this many components (1: top level;
        /// at least 1). Table, Markdown and CSV show the folded rows; JSON keeps every layer
        /// under `layers` and adds the folded ones under `rows`.
        #[arg(long, value_parser = parse_depth)]
        depth: Option<u64>,
        /// Element type for memory figures.
        #[arg(long, value_enum, default_value = "f32")]
        dtype: DtypeArg,
        /// Count MACs as this tool does (torchvision: conv/linear MACs, the default).
        #[arg(long, value_enum, default_value = "torchvision")]
        convention: ConventionArg,
    },
    /// Compare models side by side: parameters, MACs, FLOPs, memory, depth, receptive field,
    /// ratios to a baseline; optionally an SVG chart.
    Compare {
        /// Models: YAML files or zoo names.
        #[arg(required = true)]
        models: Vec<String>,
        #[command(flatten)]
        setting: SettingArgs,
        /// Order of the rows (ascending; names alphabetically).
        #[arg(long, value_enum)]
        sort: Option<SortArg>,
        /// A model (as given, or by its name) to express the others as ratios of.
        #[arg(long)]
        baseline: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutFormat,
        /// Also draw MACs against parameters (bubble area = peak activation memory) into
        /// this SVG file.
        #[arg(long, value_name = "FILE.svg")]
        chart: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "f32")]
        dtype: DtypeArg,
        #[arg(long, value_enum, default_value = "torchvision")]
        convention: ConventionArg,
    },
    /// Check budgets (exit 1 when one is exceeded) and report design findings.
    Audit {
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
        format: TextFormat,
        #[arg(long, value_enum, default_value = "f32")]
        dtype: DtypeArg,
        #[arg(long, value_enum, default_value = "torchvision")]
        convention: ConventionArg,
    },
    /// Training cost and memory: iterations, training FLOPs, wall time, weights, gradients,
    /// optimizer state, saved activations, and the peak memory of a step (when it happens).
    Train {
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
        #[arg(long, value_enum, default_value = "sgd")]
        optimizer: OptimizerArg,
        #[arg(long, value_enum, default_value = "f32")]
        dtype: TrainDtype,
        /// Sustained throughput in TFLOP/s, for the wall time.
        #[arg(long, value_name = "TFLOPS")]
        throughput: Option<f64>,
        #[arg(long, value_enum, default_value = "table")]
        format: TrainFormat,
    },
    /// Receptive field of every layer (size, jump, start, effective padding), and what the input
    /// size means for it.
    Rf {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, value_enum, default_value = "table")]
        format: OutFormat,
    },
    /// Run the graph in the embedded executor and compare every layer's shapes, parameters,
    /// buffers, MACs and receptive field with the static analysis. Exit 1 on any disagreement.
    Check {
        #[command(flatten)]
        model: ModelArgs,
        /// Seed of the random weights and input.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Measure receptive fields on N input rows and N columns, evenly spaced (first and
        /// last included), instead of all; 0 skips the measurement.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
        rf_sample: Option<u32>,
        #[arg(long, value_enum, default_value = "table")]
        format: ViewFormat,
    },
    /// Run the model: output statistics, top-5 classes, a per-layer profile and latency.
    Run {
        #[command(flatten)]
        model: ModelArgs,
        /// Weights from a .safetensors file (tensor names: layer path + .weight, .bias, …).
        #[arg(long)]
        weights: Option<String>,
        /// Input image (PNG/JPEG), resized and normalised to the model's input.
        #[arg(long, conflicts_with = "npy")]
        image: Option<String>,
        /// Input tensor from a .npy file (float32/float64, C order): the model's input shape
        /// with or without its batch dimension (then copied to every sample).
        #[arg(long)]
        npy: Option<String>,
        /// Forward passes to time, 1 to 1000 (the latency is their median).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=MAX_REPEAT_RUNS))]
        repeat: u64,
        /// Most memory the executor may hold at once (weights, activations, scratch), e.g.
        /// 8GiB; at most 1TiB.
        #[arg(long, default_value = "3GiB")]
        memory_budget: String,
        /// Seed of the random weights and input.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write an image-shaped output (N×1×H×W or N×3×H×W) as a PNG, or any output as a
        /// .npy array when the file name ends in .npy.
        #[arg(long)]
        save_output: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: ViewFormat,
    },
    /// Draw the layer graph as Graphviz DOT, or render it (SVG, PNG, PDF, JPEG, …) with
    /// Graphviz's `dot`.
    Dot {
        #[command(flatten)]
        model: ModelArgs,
        /// Write to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Output format [default: from the extension of -o (.svg, .png, .pdf, .jpg, …; an
        /// unknown extension is an error), else dot].
        #[arg(long, value_enum)]
        format: Option<DotFormat>,
        /// Fold block instances into single nodes.
        #[arg(long, value_enum, default_value = "none")]
        collapse: CollapseArg,
        /// Layout direction.
        #[arg(long, value_enum, default_value = "TB")]
        rankdir: RankDirArg,
        /// Figures shown in each node, comma-separated.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "params,macs")]
        show: Vec<ShowArg>,
        /// Draw fused batch norms and activations (`conv1.bn`, `conv1.relu`) as nodes of their
        /// own instead of inside their layer's node.
        #[arg(long)]
        no_fuse: bool,
    },
    /// Write one self-contained HTML page (no network needed to view it): totals, the layer
    /// table (sortable, foldable, searchable), the diagram (when Graphviz's `dot` is
    /// installed), charts, the memory timeline and the audit; for several models, the
    /// comparison first.
    Report {
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
        dtype: DtypeArg,
        #[arg(long, value_enum, default_value = "torchvision")]
        convention: ConventionArg,
        /// Also show the memory of a training step with this optimizer (at --batch, --dtype).
        #[arg(long, value_enum)]
        optimizer: Option<OptimizerArg>,
        /// For several models: the model the others are expressed as ratios of.
        #[arg(long)]
        baseline: Option<String>,
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
    match run(cli) {
        Ok(code) => code,
        // The reader went away (`archscope summary x | head`): nothing left to say.
        Err(e) if e.downcast_ref::<ClosedStdout>().is_some() => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
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

/// Builds and analyses `model` at `setting`, with MACs under `convention`.
fn analysis(
    model: &str,
    setting: &Setting,
    dtype: Dtype,
    convention: Convention,
) -> Result<(Network, Analysis)> {
    let net = load(model, setting)?;
    let mut a = analyze(&net, dtype)?;
    recount(&net, &mut a, convention)?;
    Ok((net, a))
}

fn count(flag: &str, v: &Option<String>, kind: Quantity) -> Result<Option<u64>> {
    v.as_ref()
        .map(|s| parse_quantity(s, kind).map_err(|e| anyhow!("{flag} {e}")))
        .transpose()
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

fn run(cli: Cli) -> Result<i32> {
    report::set_table_width(table_width());
    match cli.command {
        Command::Summary {
            model,
            format,
            depth,
            dtype,
            convention,
        } => {
            let settings = model.setting.settings()?;
            let mut all = Vec::new();
            for s in &settings {
                all.push(analysis(&model.model, s, dtype.into(), convention.into())?.1);
            }
            if all.len() == 1 {
                let depth = depth.map(|d| usize::try_from(d).unwrap_or(usize::MAX));
                out(report::summary(&all[0], format.into(), depth))?;
            } else {
                out(report::sweep(&all, format.into()))?;
            }
        }
        Command::Compare {
            models,
            setting,
            sort,
            baseline,
            format,
            chart,
            dtype,
            convention,
        } => {
            let settings = setting.settings()?;
            let mut all = Vec::new();
            let mut names = Vec::new();
            for m in &models {
                for s in &settings {
                    let (_, a) = analysis(m, s, dtype.into(), convention.into())?;
                    names.push((m.clone(), a.model.clone()));
                    all.push(a);
                }
            }
            // The baseline may be given as written on the command line or by model name.
            let base = baseline
                .as_ref()
                .map(|b| {
                    names
                        .iter()
                        .find(|(arg, name)| arg == b || name == b)
                        .map(|(_, name)| name.clone())
                        .ok_or_else(|| anyhow!("--baseline {b} is not one of the compared models"))
                })
                .transpose()?;
            let mut c = Comparison::new(&all, base.as_deref())?;
            if let Some(k) = sort {
                c.sort(k.into());
            }
            out(compare::render(&c, format.into()))?;
            if let Some(path) = chart {
                let svg = compare::chart_svg(&c)?;
                std::fs::write(&path, svg)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("chart written to {}", path.display());
            }
        }
        Command::Audit {
            model,
            max_params,
            max_macs,
            max_flops,
            max_peak_memory,
            min_rf,
            format,
            dtype,
            convention,
        } => {
            let budgets = Budgets {
                max_params: count("--max-params", &max_params, Quantity::Count)?,
                max_macs: count("--max-macs", &max_macs, Quantity::Count)?,
                max_flops: count("--max-flops", &max_flops, Quantity::Count)?,
                max_peak_memory: count("--max-peak-memory", &max_peak_memory, Quantity::Bytes)?,
                min_rf: count("--min-rf", &min_rf, Quantity::Count)?,
            };
            let setting = model.setting.single("audit")?;
            let (net, a) = analysis(&model.model, &setting, dtype.into(), convention.into())?;
            let result = audit::audit(&net, &a, &budgets)?;
            out(audit::render(&result, format == TextFormat::Json))?;
            return Ok(if result.passed() { 0 } else { 1 });
        }
        Command::Train {
            model,
            dataset_size,
            batch,
            epochs,
            input,
            optimizer,
            dtype,
            throughput,
            format,
        } => {
            if batch == 0 || dataset_size == 0 || epochs == 0 {
                bail!("--dataset-size, --batch and --epochs must be at least 1");
            }
            if throughput.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
                bail!("--throughput must be a positive number of TFLOP/s");
            }
            let setting = Setting {
                input: input.as_deref().map(parse_input).transpose()?,
                batch,
            };
            let net = load(&model, &setting)?;
            let cfg = train::Config {
                dataset_size,
                batch,
                epochs,
                optimizer: optimizer.into(),
                dtype: match dtype {
                    TrainDtype::F32 => Dtype::F32,
                    TrainDtype::F16 => Dtype::F16,
                    TrainDtype::Bf16 => Dtype::Bf16,
                },
                throughput_tflops: throughput,
            };
            let p = train::plan(&net, &cfg)?;
            out(train::render(&p, format == TrainFormat::Json))?;
        }
        Command::Rf { model, format } => {
            let setting = model.setting.single("rf")?;
            let net = load(&model.model, &setting)?;
            let a = analyze(&net, Dtype::F32)?;
            out(report::rf_report(&a, format.into()))?;
        }
        Command::Check {
            model,
            seed,
            rf_sample,
            format,
        } => return check(&model, seed, rf_sample, format),
        Command::Run {
            model,
            weights,
            image,
            npy,
            repeat,
            memory_budget,
            seed,
            save_output,
            format,
        } => {
            let budget = memory_budget_arg(&memory_budget)?;
            return run_model(
                &model,
                weights,
                image,
                npy,
                repeat,
                budget,
                seed,
                save_output,
                format,
            );
        }
        Command::Dot {
            model,
            output,
            format,
            collapse,
            rankdir,
            show,
            no_fuse,
        } => {
            let net = load_one(&model, "dot")?;
            let a = analyze(&net, Dtype::F32)?;
            let opts = DotOptions {
                collapse: match collapse {
                    CollapseArg::None => Collapse::None,
                    CollapseArg::Blocks => Collapse::Blocks,
                    CollapseArg::Repeats => Collapse::Repeats,
                },
                rankdir: match rankdir {
                    RankDirArg::Tb => RankDir::TopBottom,
                    RankDirArg::Lr => RankDir::LeftRight,
                },
                show: show_figures(&show),
                fuse: !no_fuse,
            };
            let format = match format {
                Some(f) => f,
                None => format_from_extension(output.as_deref())?,
            };
            let graph = dot::graph(&net, &a, &opts);
            let bytes = match format {
                DotFormat::Dot => (dot::print(&graph) + "\n").into_bytes(),
                _ => {
                    if format.binary() && output.is_none() && std::io::stdout().is_terminal() {
                        bail!(
                            "a {} would go to the terminal\n   help: write it to a file with -o FILE.{}, or pipe it",
                            format.name().to_uppercase(),
                            format.name()
                        );
                    }
                    render(graph, format, net.nodes.len())?
                }
            };
            match &output {
                Some(path) => std::fs::write(path, &bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => out(&bytes)?,
            }
        }
        Command::Report {
            models,
            output,
            setting,
            depth,
            dtype,
            convention,
            optimizer,
            baseline,
        } => {
            let html = report_page(
                &models,
                &setting.single("report")?,
                depth.map(|d| usize::try_from(d).unwrap_or(usize::MAX)),
                dtype.into(),
                convention.into(),
                optimizer.map(Into::into),
                baseline.as_deref(),
            )?;
            std::fs::write(&output, html)
                .with_context(|| format!("cannot write {}", output.display()))?;
            eprintln!("report written to {}", output.display());
        }
        Command::Zoo { format } => out(zoo_listing(format)?)?,
        Command::Ops => out(ops_listing())?,
    }
    Ok(0)
}

fn show_figures(show: &[ShowArg]) -> Show {
    let mut s = Show::none();
    for f in show {
        match f {
            ShowArg::Shape => s.shape = true,
            ShowArg::Params => s.params = true,
            ShowArg::Macs => s.macs = true,
            ShowArg::Flops => s.flops = true,
            ShowArg::Rf => s.rf = true,
            ShowArg::Memory => s.memory = true,
            ShowArg::None => {}
        }
    }
    s
}

/// The format `-o FILE` asks for by its extension: DOT without one (or without -o); an
/// extension Graphviz does not write is an error, not DOT text in a file named `.pdf`.
fn format_from_extension(output: Option<&Path>) -> Result<DotFormat> {
    let Some(path) = output else {
        return Ok(DotFormat::Dot);
    };
    let Some(ext) = path.extension() else {
        return Ok(DotFormat::Dot);
    };
    let ext = ext.to_string_lossy();
    DotFormat::from_extension(&ext).ok_or_else(|| {
        anyhow!(
            "cannot tell what to write to {} from its extension `.{ext}`\n   help: use .dot or .gv (DOT text), .svg, .svgz, .png, .pdf, .jpg, .gif, .webp, .ps, .eps, .json, .xdot or .plain (rendered by Graphviz), or name the format with --format",
            path.display()
        )
    })
}

/// Renders a graph with Graphviz's `dot` program (the DOT text printed by graphviz-rust, fed
/// on stdin). A failure says how `dot` ended (its exit status or signal) and what it wrote on
/// stderr; with nothing there, what usually causes that (a graph too large to lay out).
fn render(
    graph: graphviz_rust::dot_structures::Graph,
    format: DotFormat,
    layers: usize,
) -> Result<Vec<u8>> {
    use std::process::{Command, Stdio};
    let name = format.name();
    if let Err(e) = Command::new("dot").arg("-V").output() {
        if e.kind() == std::io::ErrorKind::NotFound {
            bail!(
                "--format {name} needs Graphviz's `dot` program, which is not installed (not found on PATH)\n   \
                 help: install Graphviz — Debian/Ubuntu: `apt-get install graphviz` (package `graphviz`); \
                 macOS: `brew install graphviz` (Homebrew formula `graphviz`) — or write DOT with \
                 --format dot and render it elsewhere"
            );
        }
        bail!("cannot run Graphviz's `dot`: {e}");
    }
    let text = dot::print(&graph);
    let mut child = Command::new("dot")
        .arg(format!("-T{name}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow!("cannot run Graphviz's `dot`: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    // Written from another thread: `dot` may fill its stdout before reading all its input.
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(|e| anyhow!("cannot run Graphviz's `dot`: {e}"))?;
    // A `dot` that died early closes its stdin: its status says why, not the broken pipe.
    let _ = writer.join();
    if output.status.success() {
        return Ok(output.stdout);
    }
    let how = match output.status.code() {
        Some(c) => format!("exited with status {c}"),
        None => {
            use std::os::unix::process::ExitStatusExt;
            match output.status.signal() {
                Some(9) => "was killed (signal 9, SIGKILL: often the system running out of memory)"
                    .to_string(),
                Some(sig) => format!("was killed by signal {sig}"),
                None => "ended abnormally".to_string(),
            }
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr = stderr.trim();
    if stderr.is_empty() {
        bail!(
            "Graphviz's `dot` {how} while rendering the {name}, with no message on stderr\n   \
             = the graph has {layers} layers\n   \
             help: large graphs can exhaust Graphviz's time or memory: draw fewer nodes with \
             --collapse blocks or --collapse repeats, or write DOT with --format dot"
        );
    }
    bail!(
        "Graphviz's `dot` {how} while rendering the {name}: {}",
        archscope::error::excerpt_lines(stderr)
    )
}

/// Parses `CxHxW`, `HxW` or `S`.
fn parse_input(s: &str) -> Result<Vec<u64>> {
    let parts: Vec<&str> = s.split(['x', 'X', '×']).map(str::trim).collect();
    let dims = parts
        .iter()
        .map(|p| p.parse::<u64>().ok().filter(|&d| d > 0))
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(|| {
            anyhow!("--input {s}: expected positive integers like 3x224x224, 224x224 or 224 (a comma separates sweep values)")
        })?;
    match dims.len() {
        1..=3 => Ok(dims),
        _ => bail!("--input {s}: give CxHxW, HxW or a single size"),
    }
}

/// Loads a model for a command that takes one --input and one --batch.
fn load_one(model: &ModelArgs, command: &str) -> Result<Network> {
    let setting = model.setting.single(command)?;
    load(&model.model, &setting)
}

/// Loads a model from a file or the zoo at a setting.
fn load(model: &str, setting: &Setting) -> Result<Network> {
    if setting.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let (file, text) = read_model(model)?;
    let mut opts = BuildOptions {
        batch: setting.batch,
        ..Default::default()
    };
    if let Some(dims) = &setting.input {
        // The declared shape, read without building (a model may be valid only at --input).
        let doc = archscope::yaml::Document::parse(&file, &text).map_err(archscope::Error::from)?;
        let declared = archscope::graph::declared_inputs(&doc)?;
        let first = declared.first().map(|(_, d)| d.clone()).unwrap_or_default();
        let shown = dims
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x");
        opts.input = Some(match dims.len() {
            3 => dims.clone(),
            // HxW or S: keep the declared channels.
            2 if first.len() == 3 => vec![first[0], dims[0], dims[1]],
            1 if first.len() == 3 => vec![first[0], dims[0], dims[0]],
            1 if first.len() == 1 => dims.clone(),
            _ => bail!("--input {shown} does not fit the model's input {:?}", first),
        });
    }
    Ok(Network::from_yaml(&file, &text, &opts)?)
}

fn read_model(model: &str) -> Result<(String, String)> {
    let path = Path::new(model);
    if path.exists() {
        // Read at most one byte more than the parser accepts: a huge (or endless) file costs
        // no more memory than the limit, and the parser reports its size with a location.
        let limit = archscope::yaml::MAX_SOURCE_BYTES as u64;
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| {
                std::io::Read::read_to_end(&mut std::io::Read::take(f, limit + 1), &mut bytes)
            })
            .with_context(|| format!("cannot read {model}"))?;
        if bytes.len() as u64 > limit {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            bail!(
                "the file is {} bytes; archscope reads architecture files of at most {limit} bytes ({} MiB)\n  --> {model}:1:1\n   \
                 help: describe repeated structure with a block and `repeat: N` instead of writing it out",
                if size > limit { size.to_string() } else { format!("more than {limit}") },
                limit >> 20
            );
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let before = std::str::from_utf8(valid).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            anyhow!(
                "the file is not UTF-8 text: is it a binary file?\n  --> {model}:{line}:{column}\n   \
                 help: an architecture is a YAML text file, in UTF-8"
            )
        })?;
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
    bail!(
        "no file or zoo model named `{}`\n   help: {hint}",
        archscope::error::excerpt(model)
    )
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
        OutFormat::Csv => {
            let mut text = String::from("name,input,params,macs,flops,layers\n");
            for (n, a) in &rows {
                text += &format!(
                    "{n},{},{},{},{},{}\n",
                    a.inputs[0].per_sample().replace('×', "x"),
                    a.totals.params,
                    a.totals.macs,
                    a.totals.flops,
                    a.layers.len()
                );
            }
            text
        }
        OutFormat::Table | OutFormat::Markdown => {
            let mut t = archscope::report::new_table(matches!(format, OutFormat::Markdown));
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
    let mut t = archscope::report::new_table(false);
    t.set_header(vec!["Op", "Aliases", "Keys", "What"]);
    for op in archscope::layers::REGISTRY.iter().filter(|o| !o.is_input()) {
        t.add_row(vec![
            op.name,
            &op.aliases.join(", "),
            &op.keys.join(", "),
            op.summary,
        ]);
    }
    let bn: Vec<&str> = archscope::layers::REGISTRY
        .iter()
        .filter(|o| o.fused_bn.is_some())
        .map(|o| o.name)
        .collect();
    format!(
        "{t}\nEvery op also takes: id, in, when, repeat, act (and bn on {}).\n",
        bn.join(", ")
    )
}

fn check(model: &ModelArgs, seed: u64, rf_sample: Option<u32>, format: ViewFormat) -> Result<i32> {
    let net = load_one(model, "check")?;
    let a = analyze(&net, Dtype::F32)?;
    // `check` runs every layer as written (no reuse of buffers): the need, before allocating.
    archscope::exec::check_memory(&net, archscope::exec::MEMORY_BUDGET, 0)?;
    let sample = rf_sample.map(|n| n as usize);
    let weights = archscope::exec::init_weights(&net, seed)?;
    let report = archscope::check::check_sampled(&net, &a, &weights, seed, sample)?;
    let failures = report.failures();
    if format == ViewFormat::Json {
        let v = archscope::check::json_value(&report, &a.model);
        out(serde_json::to_string_pretty(&v)? + "\n")?;
    } else {
        let mut t = archscope::report::new_table(format == ViewFormat::Markdown);
        t.set_header(vec![
            "Layer",
            "Output (tensor)",
            "Params (allocated)",
            "Buffers",
            "MACs (counted)",
            "Receptive field (measured)",
            "",
        ]);
        for r in &report.rows {
            let cell = |f: &archscope::check::Figure| {
                if f.ok() {
                    f.measured.clone()
                } else {
                    format!("{} ≠ {} analysed", f.measured, f.analysed)
                }
            };
            t.add_row(vec![
                r.name.clone(),
                cell(&r.shape),
                cell(&r.params),
                cell(&r.buffers),
                cell(&r.macs),
                cell(&r.rf),
                if r.ok() { "✓".into() } else { "✗".into() },
            ]);
        }
        out(format!(
            "{t}\n{}{}: {} layers, {} disagree\n",
            if format == ViewFormat::Markdown {
                "\n"
            } else {
                ""
            },
            a.model,
            report.rows.len(),
            failures
        ))?;
    }
    // The one figure that changes from run to run: on stderr, so stdout is reproducible.
    eprintln!("forward pass: {:.2} s", report.seconds);
    match &report.rf_skipped {
        Some(why) => eprintln!("receptive fields not measured: {why}"),
        None => eprintln!(
            "receptive fields: {:.2} s, compared on {} of {} layers",
            report.rf_seconds,
            report.rf_compared(),
            report.rows.len()
        ),
    }
    for r in report.rows.iter().filter(|r| !r.ok()) {
        for (what, f) in r.mismatches() {
            eprintln!(
                "mismatch: layer `{}`: {what} analysed {} but measured {}",
                r.name, f.analysed, f.measured
            );
        }
    }
    Ok(if failures == 0 { 0 } else { 1 })
}

/// Parses `--memory-budget`: bytes, at least 1 MiB, at most `exec::MAX_MEMORY_BUDGET`.
fn memory_budget_arg(text: &str) -> Result<u64> {
    use archscope::exec::MAX_MEMORY_BUDGET;
    let b = parse_quantity(text, Quantity::Bytes).map_err(|e| anyhow!("--memory-budget {e}"))?;
    if !(1 << 20..=MAX_MEMORY_BUDGET).contains(&b) {
        bail!("--memory-budget {text} is {b} bytes; give 1MiB to 1TiB ({MAX_MEMORY_BUDGET} bytes)");
    }
    Ok(b)
}

/// Reads at most `limit` bytes of `file` (one more to tell that it is larger), so that a huge
/// file, a device such as /dev/zero or an endless pipe costs no more than the limit.
fn read_capped(file: &str, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| {
            std::io::Read::read_to_end(&mut std::io::Read::take(f, limit + 1), &mut bytes)
        })
        .with_context(|| format!("cannot read {file}"))?;
    if bytes.len() as u64 > limit {
        bail!(
            "{file} is larger than {limit} bytes, the most {what}\n   help: check the file name (is it the file you meant?)"
        );
    }
    Ok(bytes)
}

#[allow(clippy::too_many_arguments)]
fn run_model(
    model: &ModelArgs,
    weights: Option<String>,
    image: Option<String>,
    npy: Option<String>,
    repeat: u64,
    budget: u64,
    seed: u64,
    save_output: Option<String>,
    format: ViewFormat,
) -> Result<i32> {
    use archscope::exec;
    let net = load_one(model, "run")?;
    let a = analyze(&net, Dtype::F32)?;
    // What the pass needs, from the network alone, before anything is allocated.
    exec::check_memory(&net, budget, 0)?;
    let w = match &weights {
        Some(file) => {
            let limit = exec::safetensors_byte_limit(&net);
            let bytes = read_capped(
                file,
                limit,
                "a .safetensors file of this model's weights can hold (every tensor in f64, and its header)",
            )?;
            exec::load_safetensors(&net, &bytes, file)?
        }
        None => exec::init_weights(&net, seed)?,
    };
    let mut inputs = exec::random_input(&net, seed)?;
    if inputs.len() != 1 && (image.is_some() || npy.is_some()) {
        bail!(
            "--image and --npy feed a model with one input; this one has {}",
            inputs.len()
        );
    }
    let input_name = net
        .nodes
        .iter()
        .find(|n| n.inputs.is_empty())
        .map_or("", |n| n.name.as_str())
        .to_string();
    if let Some(file) = &image {
        let bytes = read_capped(
            file,
            exec::io::MAX_IMAGE_BYTES,
            "an image file may have (64 MiB)",
        )?;
        inputs[0] = exec::io::read_image(&bytes, file, &inputs[0].shape)?;
    }
    if let Some(file) = &npy {
        let want = inputs[0].shape.clone();
        let bytes = read_capped(
            file,
            exec::io::npy_byte_limit(&want),
            "a .npy array for this model's input can hold (its header, and every element in float64)",
        )?;
        let t = exec::io::read_npy(&bytes, file)?;
        inputs[0] = exec::io::fit_input(t, &want, file, &input_name)?;
    }
    let mut plan = exec::plan(&net, &w);
    // The plan's copies of the weights counted too; dead buffers are kept for reuse only
    // within what the budget leaves.
    let need = exec::check_memory(&net, budget, plan.weight_bytes())?;
    plan.recycle_bytes = budget - need.total();
    let bar = (repeat > 1 && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .then(|| indicatif::ProgressBar::new(repeat));
    let mut times = Vec::with_capacity(repeat as usize);
    let mut layer_secs = vec![f64::INFINITY; net.nodes.len()];
    let mut result = None;
    for _ in 0..repeat {
        let start = std::time::Instant::now();
        let r = exec::run_planned(&net, &w, &plan, &inputs, None)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        for (k, l) in r.layers.iter().enumerate() {
            layer_secs[k] = layer_secs[k].min(l.seconds);
        }
        result = Some(r);
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let r = result.expect("repeat ≥ 1");
    let mut sorted = times.clone();
    sorted.sort_by(|x, y| x.total_cmp(y));
    let median = sorted[sorted.len() / 2];
    let min = sorted[0];
    // Every output is described; the first is the one shown in detail (top-5) and saved.
    let output = &r.outputs[0];
    let stats: Vec<exec::Stats> = r.outputs.iter().map(|t| exec::Stats::of(&t.data)).collect();
    // The five highest scores of each sample of an N×classes output.
    let top5: Vec<Vec<(usize, f32)>> = if output.shape.len() == 2 && output.shape[1] > 0 {
        output
            .data
            .chunks(output.shape[1])
            .map(|row| {
                let mut idx: Vec<usize> = (0..row.len()).collect();
                idx.sort_by(|&x, &y| row[y].total_cmp(&row[x]).then(x.cmp(&y)));
                idx.into_iter().take(5).map(|i| (i, row[i])).collect()
            })
            .collect()
    } else {
        Vec::new()
    };
    let scores = |t: &[(usize, f32)]| -> Vec<serde_json::Value> {
        t.iter()
            .map(|(i, v)| serde_json::json!({"class": i, "score": v}))
            .collect()
    };
    let several = net.outputs.len() > 1;
    if let Some(file) = &save_output {
        let bytes = if file.ends_with(".npy") {
            exec::io::write_npy(output)
        } else {
            exec::io::write_png(output)?
        };
        std::fs::write(file, bytes).with_context(|| format!("cannot write {file}"))?;
    }
    let total: f64 = layer_secs.iter().sum();
    // Layers the plan folded or fused into the kernel of an earlier one: that layer's time
    // includes theirs.
    let merged_into: Vec<Option<&str>> = (0..net.nodes.len())
        .map(|k| {
            plan.passthrough[k].then(|| {
                let mut root = k;
                while plan.passthrough[root] {
                    root = net.nodes[root].inputs[0].0;
                }
                net.nodes[root].name.as_str()
            })
        })
        .collect();
    if format == ViewFormat::Json {
        let layers: Vec<serde_json::Value> = a
            .layers
            .iter()
            .zip(&layer_secs)
            .zip(&merged_into)
            .map(|((l, &s), into)| {
                serde_json::json!({"name": l.name, "op": l.op, "ms": s * 1e3,
                "gflops": if s > 0.0 && into.is_none() { l.flops as f64 / s / 1e9 } else { 0.0 },
                "computed_in": into})
            })
            .collect();
        let describe = |t: &exec::Tensor, s: &exec::Stats, name: &str| {
            serde_json::json!({"name": name, "shape": t.shape, "min": s.min, "max": s.max, "mean": s.mean,
                "finite": s.finite, "nan": s.nan, "pos_inf": s.pos_inf, "neg_inf": s.neg_inf})
        };
        let mut first = describe(output, &stats[0], &net.outputs[0].name);
        first["top5"] = serde_json::json!(top5.first().map(|t| scores(t)).unwrap_or_default());
        first["top5_per_sample"] =
            serde_json::json!(top5.iter().map(|t| scores(t)).collect::<Vec<_>>());
        let others: Vec<serde_json::Value> = r.outputs[1..]
            .iter()
            .zip(&stats[1..])
            .zip(&net.outputs[1..])
            .map(|((t, s), o)| describe(t, s, &o.name))
            .collect();
        let mut v = serde_json::json!({
            "model": a.model,
            "input": inputs[0].shape,
            "latency_ms": {"median": median, "min": min, "runs": repeat},
            "output": first,
            "layers": layers,
        });
        if several {
            v["other_outputs"] = serde_json::json!(others);
        }
        if let Some(file) = &save_output {
            v["saved"] = serde_json::json!({"file": file, "output": net.outputs[0].name});
        }
        out(serde_json::to_string_pretty(&v)? + "\n")?;
        return Ok(0);
    }
    let mut t = archscope::report::new_table(format == ViewFormat::Markdown);
    t.set_header(vec!["Layer", "Op", "Time", "GFLOP/s", "Share"]);
    for (((l, &s), into), node) in a
        .layers
        .iter()
        .zip(&layer_secs)
        .zip(&merged_into)
        .zip(&net.nodes)
    {
        if node.layer.is_input() {
            continue;
        }
        if let Some(root) = into {
            t.add_row(vec![
                l.name.clone(),
                l.label.clone(),
                format!("in {root}"),
                "-".into(),
                "-".into(),
            ]);
            continue;
        }
        t.add_row(vec![
            l.name.clone(),
            l.label.clone(),
            format!("{:.3} ms", s * 1e3),
            if l.flops > 0 && s > 0.0 {
                format!("{:.1}", l.flops as f64 / s / 1e9)
            } else {
                "-".into()
            },
            format!("{:.1}%", 100.0 * s / total.max(f64::MIN_POSITIVE)),
        ]);
    }
    // Markdown: a blank line ends the table.
    let gap = if format == ViewFormat::Markdown {
        "\n"
    } else {
        ""
    };
    let mut text = format!("{t}\n{gap}");
    for (k, (o, s)) in net.outputs.iter().zip(&stats).enumerate() {
        let label = if several {
            format!("output {} of {} `{}`", k + 1, net.outputs.len(), o.name)
        } else {
            "output".to_string()
        };
        text += &format!(
            "{label} {}: {}\n",
            exec::io::dims_text(&r.outputs[k].shape),
            stats_text(s)
        );
    }
    let of = if several {
        format!(" of `{}`", net.outputs[0].name)
    } else {
        String::new()
    };
    for (n, t) in top5.iter().enumerate() {
        let s: Vec<String> = t.iter().map(|(i, v)| format!("{i} ({v:.4})")).collect();
        if top5.len() == 1 {
            text += &format!("top-5 classes{of}: {}\n", s.join(", "));
        } else {
            text += &format!("top-5 classes{of} of sample {n}: {}\n", s.join(", "));
        }
    }
    text += &format!(
        "latency: median {median:.2} ms, min {min:.2} ms over {repeat} run(s); {:.1} GFLOP/s\n",
        a.totals.flops as f64 / (median / 1e3) / 1e9
    );
    if let Some(file) = &save_output {
        // What was written, when it is not all there is: the first of several outputs, the
        // first sample of a batch drawn as a picture.
        let mut what = Vec::new();
        if several {
            what.push(format!("output 1 `{}`", net.outputs[0].name));
        }
        if !file.ends_with(".npy") && output.shape[0] > 1 {
            what.push(format!("sample 1 of {}", output.shape[0]));
        }
        if what.is_empty() {
            text += &format!("wrote {file}\n");
        } else {
            text += &format!("wrote {file} ({})\n", what.join(", "));
        }
    }
    out(text)?;
    Ok(0)
}

/// `--depth N`: a whole number, at least 1 (one rule for `summary` and `report`).
fn parse_depth(s: &str) -> std::result::Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("the depth is at least 1 (1 folds the layers into the top-level blocks; leave --depth out for every layer)".into()),
        Ok(d) => Ok(d),
        Err(_) => Err(format!("`{s}` is not a depth: write a whole number, 1 or more")),
    }
}

/// The HTML report of one model, or of a comparison of several.
fn report_page(
    models: &[String],
    setting: &Setting,
    depth: Option<usize>,
    dtype: Dtype,
    convention: Convention,
    optimizer: Option<Optimizer>,
    baseline: Option<&str>,
) -> Result<String> {
    use archscope::html::{self, Diagram, ModelPage};
    if optimizer.is_some() && dtype == Dtype::Int8 {
        bail!("--optimizer: training memory is planned for f32, f16 or bf16, not int8\n   help: drop --dtype int8, or --optimizer");
    }
    let mut built = Vec::new();
    for m in models {
        let (net, a) = analysis(m, setting, dtype, convention)?;
        let audit = audit::audit(&net, &a, &Budgets::default())?;
        let training = optimizer
            .map(|o| {
                train::plan(
                    &net,
                    &train::Config {
                        dataset_size: setting.batch,
                        batch: setting.batch,
                        epochs: 1,
                        optimizer: o,
                        dtype,
                        throughput_tflops: None,
                    },
                )
            })
            .transpose()?;
        let diagram = if a.layers.len() > html::MAX_DIAGRAM_LAYERS {
            Diagram::Missing(format!(
                "the model has {} layers, and the report draws diagrams of at most {} (`archscope dot --collapse repeats` draws a folded one)",
                a.layers.len(),
                html::MAX_DIAGRAM_LAYERS
            ))
        } else {
            match render(dot::graph(&net, &a, &DotOptions::default()), DotFormat::Svg, net.nodes.len()) {
                Ok(svg) => Diagram::Svg(String::from_utf8_lossy(&svg).into_owned()),
                Err(e) if e.to_string().contains("not installed") => Diagram::Missing(
                    "Graphviz's `dot` program is not installed (apt-get install graphviz, brew install graphviz)".into(),
                ),
                Err(e) => return Err(e),
            }
        };
        built.push((net, a, audit, training, diagram));
    }
    let pages: Vec<ModelPage> = built
        .iter()
        .map(|(net, a, audit, training, diagram)| ModelPage {
            net,
            analysis: a,
            audit,
            training: training.as_ref(),
            diagram,
            depth,
        })
        .collect();
    if pages.len() == 1 {
        return Ok(html::model_report(&pages[0])?);
    }
    let analyses: Vec<Analysis> = built.iter().map(|b| b.1.clone()).collect();
    let base = baseline
        .map(|b| {
            models
                .iter()
                .zip(&analyses)
                .find(|(arg, a)| arg.as_str() == b || a.model == b)
                .map(|(_, a)| a.model.clone())
                .ok_or_else(|| anyhow!("--baseline {b} is not one of the reported models"))
        })
        .transpose()?;
    let c = Comparison::new(&analyses, base.as_deref())?;
    Ok(html::comparison_report(&c, &pages)?)
}

/// `min …, max …, mean …`, with NaN and infinities counted apart (the figures are over the
/// finite values).
fn stats_text(s: &archscope::exec::Stats) -> String {
    let mut text = match (s.min, s.max, s.mean) {
        (Some(lo), Some(hi), Some(mean)) => format!("min {lo:.4}, max {hi:.4}, mean {mean:.4}"),
        _ => "no finite values".to_string(),
    };
    let odd: Vec<String> = [(s.nan, "NaN"), (s.pos_inf, "+inf"), (s.neg_inf, "-inf")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if !odd.is_empty() {
        if s.finite > 0 {
            text = format!("{text} (over the {} finite values)", s.finite);
        }
        text += &format!("; {}", odd.join(", "));
    }
    text
}
