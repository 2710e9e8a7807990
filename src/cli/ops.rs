//! `archscope ops`: the layer types the format knows, from the registry.

use anyhow::Result;

use super::out;

pub fn run() -> Result<i32> {
    out(crate::render::ops_listing())?;
    Ok(0)
}
