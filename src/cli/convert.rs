//! `archscope convert`: writes a model read from another format in archscope's own YAML
//! format — today an Ultralytics model file (docs/ULTRALYTICS.md), translated by
//! [`crate::ultralytics`] with its blocks and repeats, so it can be read, edited and audited
//! like a zoo model and reads back to the same figures.

use anyhow::{bail, Context, Result};

use super::common::{load_doc, ModelArgs};

// The flags of `convert` (its help is the `Command::Convert` doc comment).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Where to write the archscope YAML (`-` for stdout).
    #[arg(short, long)]
    output: String,
}

pub fn run(args: Args) -> Result<i32> {
    let setting = args.model.setting.single("convert")?;
    if setting.batch != 1 {
        bail!("convert writes the architecture, not a batch: leave --batch out");
    }
    let (_, model) = load_doc(&args.model.model, &setting)?;
    let Some(model) = model else {
        bail!(
            "{} is already in archscope's format (convert reads Ultralytics model files: a mapping with `backbone` and `head` lists)",
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
