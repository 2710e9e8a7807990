//! `archscope convert`: writes a model read from another format in archscope's own YAML
//! format — an Ultralytics model file (docs/ULTRALYTICS.md), translated by
//! [`crate::ultralytics`] with its blocks and repeats, or an ONNX file (docs/ONNX.md), read by
//! [`crate::onnx`] and rewritten by [`crate::onnx::convert`] (batch norms and activations
//! folded, block nodes found; `--weights-out` writes its initializers under the new
//! names) — so it can be read, edited and audited like a zoo model and reads back to the same
//! figures.

use anyhow::{bail, Context, Result};

use super::common::{is_onnx_file, load_doc, ModelArgs};

// The flags of `convert` (its help is the `Command::Convert` doc comment).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Where to write the archscope YAML (`-` for stdout).
    #[arg(short, long)]
    output: String,
    /// ONNX only: write the file's weights (initializers) to this .safetensors file under the
    /// converted model's layer paths, so that `run model.yaml --weights FILE` runs as the
    /// ONNX file does.
    #[arg(long)]
    weights_out: Option<String>,
}

/// `convert model.onnx`.
fn run_onnx(args: &Args) -> Result<i32> {
    let model = &args.model.model;
    let input = args.model.setting.single("convert")?.input;
    let imp = super::common::import_onnx(model, 1, input.as_deref())?;
    if input.is_some() && !imp.input_sized {
        bail!(
            "{model}: --input sizes an ONNX file whose input sizes are symbolic, and this file fixes them
   help: export the model again at the size you want, or convert it and edit the YAML's `inputs:`"
        );
    }
    let conv = crate::onnx::convert::convert(model, &imp).map_err(crate::Error::from)?;
    if let Some(w) = &args.weights_out {
        if !imp.has_weights {
            bail!(
                "{model} holds no weights (a graph-only export: its weights are graph inputs)\n   help: export with export_params=True, or leave --weights-out out"
            );
        }
        let st =
            crate::onnx::convert::safetensors_bytes(&conv.weights).map_err(crate::Error::from)?;
        std::fs::write(w, st).with_context(|| format!("cannot write {w}"))?;
        eprintln!("wrote {w} ({} tensors)", conv.weights.len());
    }
    if args.output == "-" {
        super::out(conv.text)?;
    } else {
        std::fs::write(&args.output, conv.text)
            .with_context(|| format!("cannot write {}", args.output))?;
        eprintln!(
            "wrote {} ({} batch norms and {} activations folded, {} block nodes)",
            args.output,
            conv.folded_bn,
            conv.folded_act,
            conv.blocks.len()
        );
    }
    Ok(0)
}

pub fn run(args: Args) -> Result<i32> {
    let setting = args.model.setting.single("convert")?;
    if setting.batch != 1 {
        bail!("convert writes the architecture, not a batch: leave --batch out");
    }
    if is_onnx_file(&args.model.model) {
        return run_onnx(&args);
    }
    if args.weights_out.is_some() {
        bail!(
            "--weights-out writes an ONNX file's weights; {} is not an ONNX file",
            args.model.model
        );
    }
    let (_, model) = load_doc(&args.model.model, &setting)?;
    let Some(model) = model else {
        bail!(
            "{} is already in archscope's format (convert reads Ultralytics model files, a mapping with `backbone` and `head` lists, and ONNX files)",
            args.model.model
        );
    };
    let mut header = format!(
        "Translated by `archscope convert` from the Ultralytics model file {}",
        args.model.model
    );
    if let Some(s) = &model.scale {
        header.push_str(&format!(" at scale {s}"));
    }
    header.push_str(".\nLayer mK is Ultralytics' model.K; C2PSA's attention is written for the input size converted at.\n");
    let text = format!(
        "{}{}",
        header
            .lines()
            .map(|l| if l.is_empty() {
                "#\n".to_string()
            } else {
                format!("# {l}\n")
            })
            .collect::<String>(),
        model.text
    );
    if args.output == "-" {
        super::out(text)?;
    } else {
        std::fs::write(&args.output, text)
            .with_context(|| format!("cannot write {}", args.output))?;
        eprintln!("wrote {}", args.output);
    }
    Ok(0)
}
