//! `archscope zoo`: the embedded models, each built at its own input and analysed.

use anyhow::Result;

use super::out;
use crate::report::Format;
use crate::{analyze, render, zoo, BuildOptions, Dtype};

// The flags of `zoo`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub fn run(args: Args) -> Result<i32> {
    let mut rows = Vec::new();
    for (name, _) in zoo::MODELS {
        let net = zoo::build(name, &BuildOptions::default()).expect("listed")?;
        rows.push((*name, analyze(&net, Dtype::F32)?));
    }
    out(render::zoo_listing(&rows, args.format))?;
    Ok(0)
}
