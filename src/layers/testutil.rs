//! Helpers for unit tests: build one layer from a YAML flow mapping and input shapes.

use std::rc::Rc;

use crate::error::Diagnostic;
use crate::expr::Env;
use crate::layers::{lookup, Attrs, Layer, Layout, Shape};
use crate::yaml::{Document, YValue};

/// Builds layer `op` with attributes `attrs` (a YAML mapping) on inputs of the given shapes,
/// rejecting unused keys as the graph builder does, and returns it with its output shapes.
pub fn build(
    op: &str,
    attrs: &str,
    inputs: &[&[u64]],
) -> Result<(Box<dyn Layer>, Vec<Shape>), Diagnostic> {
    build_laid(op, attrs, inputs, &[])
}

/// [`build`] with the inputs' layouts (`[]`: each input a model input of its rank).
pub fn build_laid(
    op: &str,
    attrs: &str,
    inputs: &[&[u64]],
    layouts: &[Layout],
) -> Result<(Box<dyn Layer>, Vec<Shape>), Diagnostic> {
    let t = lookup(op).expect("known op");
    let doc = Document::parse("test.yaml", attrs)?;
    let values = match doc.root.value {
        YValue::Map(m) => m,
        _ => panic!("attrs must be a mapping"),
    };
    let shapes: Vec<Shape> = inputs.iter().map(|s| Shape(s.to_vec())).collect();
    let ops: Vec<&'static str> = vec!["input"; shapes.len()];
    let mut a = Attrs::new(
        t.name,
        doc.root.path.clone(),
        values,
        Rc::new(Env::new(None)),
        &shapes,
        &ops,
    )
    .with_layouts(layouts);
    let layer = (t.build)(&mut a)?;
    if let Some((k, _)) = a.unused().first() {
        return Err(Diagnostic::new(format!("unused key {k}")));
    }
    let out = layer.output_shapes(&shapes)?;
    Ok((layer, out))
}
