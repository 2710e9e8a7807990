//! `archscope dot`: the layer graph as Graphviz DOT, or rendered by Graphviz's `dot` program
//! (which this module runs, for `report`'s diagram too).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::common::{load_one, ModelArgs};
use super::out;
use crate::dot::{self, Collapse, DotOptions, RankDir, Show};
use crate::{analyze, Dtype};

// The flags of `dot`.
#[derive(clap::Args)]
pub struct Args {
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
    collapse: Collapse,
    /// Layout direction.
    #[arg(long, value_enum, default_value = "TB")]
    rankdir: RankDir,
    /// Figures shown in each node, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "params,macs")]
    show: Vec<Figure>,
    /// Draw fused batch norms and activations (`conv1.bn`, `conv1.relu`) as nodes of their
    /// own instead of inside their layer's node.
    #[arg(long)]
    no_fuse: bool,
}

/// What `dot` writes: DOT text, or a format Graphviz's `dot` program renders.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum DotFormat {
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

/// One figure `--show` asks each node to show (the fields of `dot::Show`).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Figure {
    Shape,
    Params,
    Macs,
    Flops,
    Rf,
    Memory,
    /// No figures.
    None,
}

pub fn run(args: Args) -> Result<i32> {
    let net = load_one(&args.model, "dot")?;
    let a = analyze(&net, Dtype::F32)?;
    let opts = DotOptions {
        collapse: args.collapse,
        rankdir: args.rankdir,
        show: show_figures(&args.show),
        fuse: !args.no_fuse,
    };
    let format = match args.format {
        Some(f) => f,
        None => format_from_extension(args.output.as_deref())?,
    };
    let graph = dot::graph(&net, &a, &opts);
    let bytes = match format {
        DotFormat::Dot => (dot::print(&graph) + "\n").into_bytes(),
        _ => {
            if format.binary() && args.output.is_none() && std::io::stdout().is_terminal() {
                bail!(
                    "a {} would go to the terminal\n   help: write it to a file with -o FILE.{}, or pipe it",
                    format.name().to_uppercase(),
                    format.name()
                );
            }
            graphviz(graph, format, net.nodes.len())?
        }
    };
    match &args.output {
        Some(path) => std::fs::write(path, &bytes)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => out(&bytes)?,
    }
    Ok(0)
}

fn show_figures(show: &[Figure]) -> Show {
    let mut s = Show::none();
    for f in show {
        match f {
            Figure::Shape => s.shape = true,
            Figure::Params => s.params = true,
            Figure::Macs => s.macs = true,
            Figure::Flops => s.flops = true,
            Figure::Rf => s.rf = true,
            Figure::Memory => s.memory = true,
            Figure::None => {}
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
pub fn graphviz(
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
        crate::error::excerpt_lines(stderr)
    )
}
