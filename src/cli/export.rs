//! `archscope export`: the model as an ONNX file — seeded (`--seed`) or loaded (`--weights`)
//! weights stored as initializers, or with `--no-weights` the graph alone (every weight a graph
//! input with its shape) — at the `--input`/`--batch` it is built with (static shapes).

use anyhow::{bail, Context, Result};

use super::common::{load_one, read_capped, ModelArgs};
use crate::exec;
use crate::layers::onnx::{MAX_OPSET, MIN_OPSET};
use crate::onnx::export::{check_size, export, ExportOptions, DEFAULT_OPSET};
use crate::onnx::proto::encode_model;

// The flags of `export`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The .onnx file to write.
    #[arg(short, long)]
    output: String,
    /// Weights from a .safetensors file (tensor names: layer path + .weight, .bias, …), as
    /// `run --weights` reads them.
    #[arg(long, conflicts_with = "no_weights")]
    weights: Option<String>,
    /// Write the graph only: every weight becomes a graph input with its shape.
    #[arg(long)]
    no_weights: bool,
    /// Seed of the random weights (as `run --seed`).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// ONNX opset to write (17 to 21).
    #[arg(long, default_value_t = DEFAULT_OPSET)]
    opset: u32,
}

pub fn run(args: Args) -> Result<i32> {
    if !(MIN_OPSET..=MAX_OPSET).contains(&args.opset) {
        bail!(
            "--opset {} is outside what archscope exports\n   help: give {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET})",
            args.opset
        );
    }
    let net = load_one(&args.model, "export")?;
    let weights = if args.no_weights {
        None
    } else {
        // Before a weight is allocated: what one ONNX file can hold.
        check_size(&net)?;
        Some(match &args.weights {
            Some(file) => {
                let limit = exec::safetensors_byte_limit(&net);
                let bytes = read_capped(
                    file,
                    limit,
                    "a .safetensors file of this model's weights can hold (every tensor in f64, and its header)",
                )?;
                exec::load_safetensors(&net, &bytes, file)?
            }
            None => exec::init_weights(&net, args.seed)?,
        })
    };
    let model = export(&net, weights.as_ref(), ExportOptions { opset: args.opset })?;
    // The weights are in the model now: freed before it is encoded.
    drop(weights);
    let bytes = encode_model(&model);
    drop(model);
    std::fs::write(&args.output, &bytes)
        .with_context(|| format!("cannot write {}", args.output))?;
    eprintln!(
        "wrote {} ({} bytes, opset {}{})",
        args.output,
        bytes.len(),
        args.opset,
        if args.no_weights {
            ", graph only: weights are graph inputs"
        } else {
            ""
        }
    );
    Ok(0)
}
