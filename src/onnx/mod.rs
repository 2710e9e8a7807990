//! ONNX as a frontend: [`proto`] holds the protobuf types and their byte-level helpers (shared
//! with the writer); [`reader`] turns a `ModelProto`'s bytes into the archscope YAML the rest of
//! the pipeline reads, plus the weights its initializers carry; [`export`] writes a built
//! network as a `ModelProto` (`archscope export`). This module builds the network from that
//! YAML (errors pointed back at the ONNX node they came from), checks the built shapes against
//! the file's value_info, and hands the weights to the executor. No IO: the CLI reads and
//! writes the files.

pub mod convert;
pub mod export;
pub mod external;
pub mod proto;
pub mod reader;

use crate::error::{Diagnostic, Error, Step};
use crate::exec::{tensor_name, Weights};
use crate::graph::{build_network, BuildOptions, Network};
use crate::tensor::{Init, Tensor, WeightKind};
use crate::yaml::Document;

pub use reader::{
    import, import_external, import_sized, Import, MAX_NODES, MAX_ONNX_BYTES, MAX_OPSET,
};

/// Whether `bytes` look like an ONNX model (a protobuf whose first field is `ir_version`, tag
/// 0x08) rather than text.
pub fn looks_like_onnx(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x08) && std::str::from_utf8(&bytes[..bytes.len().min(64)]).is_err()
}

/// Reads an ONNX model and builds it (`file` names it in messages); returns the network and
/// what was imported (its YAML and weights).
pub fn build(file: &str, bytes: &[u8], opts: &BuildOptions) -> Result<(Network, Import), Error> {
    let imp = import(file, bytes, opts.batch)?;
    let net = build_imported(file, &imp, opts)?;
    Ok((net, imp))
}

/// Builds the network of an import; a failure names the ONNX node the layer came from.
pub fn build_imported(file: &str, imp: &Import, opts: &BuildOptions) -> Result<Network, Error> {
    let doc = Document::parse(file, &imp.yaml).map_err(|d| Error::from(relocate(d, imp)))?;
    let net = build_network(&doc, opts).map_err(|e| Error::from(relocate((*e.0).clone(), imp)))?;
    check_declared(&net, imp)?;
    Ok(net)
}

/// A diagnostic about the generated YAML, pointed at the ONNX node instead.
fn relocate(mut d: Diagnostic, imp: &Import) -> Diagnostic {
    let origin = d.at.as_ref().and_then(|at| match at.steps().as_slice() {
        [Step::Key(k), Step::Index(i), ..] if k == "nodes" => imp.origins.get(*i).cloned(),
        [Step::Key(k), Step::Key(name), ..] if k == "inputs" => Some(format!(
            "ONNX graph input `{}`",
            crate::error::excerpt(name)
        )),
        _ => None,
    });
    // A parse error has a line of the generated text instead: the YAML node on that line.
    let origin = origin.or_else(|| {
        let line = d.loc.as_ref()?.line;
        let lines: Vec<&str> = imp.yaml.lines().collect();
        if !lines.get(line.checked_sub(1)?)?.starts_with("  - ") {
            return None;
        }
        let k = lines[..line - 1]
            .iter()
            .filter(|l| l.starts_with("  - "))
            .count();
        imp.origins.get(k).cloned()
    });
    if let Some(o) = origin {
        d.notes.insert(0, format!("from {o}"));
    }
    // The generated text's line:column means nothing to the user.
    d.loc = None;
    d.at = None;
    d
}

/// The built shapes against the shapes the file declares (value_info, graph outputs).
fn check_declared(net: &Network, imp: &Import) -> Result<(), Diagnostic> {
    for (id, tensor, dims) in &imp.declared {
        let (name, slot) = match id.trim_matches('"').split_once(':') {
            Some((n, k)) => (n.to_string(), k.parse::<usize>().unwrap_or(0)),
            None => (id.clone(), 0),
        };
        let Some(node) = net.nodes.iter().find(|n| n.name == name) else {
            continue;
        };
        let Some(shape) = node.out_shapes.get(slot) else {
            continue;
        };
        let per: Vec<u64> = shape.0.iter().skip(1).copied().collect();
        if &per != dims {
            return Err(Diagnostic::new(format!(
                "tensor `{}`: the file declares a per-sample shape {dims:?}, archscope computes {per:?} (layer `{name}`)",
                crate::error::excerpt(tensor)
            ))
            .help("the file's value_info disagrees with its operators: run onnx.shape_inference.infer_shapes on it, or report the model if it is right"));
        }
    }
    Ok(())
}

/// The weights the file's initializers give the built network (`None`: a graph-only file).
/// A layer weight the file does not hold is an error naming the tensor.
pub fn weights(net: &Network, imp: &Import) -> Result<Option<Weights>, Diagnostic> {
    if !imp.has_weights {
        return Ok(None);
    }
    let mut per_node = Vec::with_capacity(net.nodes.len());
    for (k, node) in net.nodes.iter().enumerate() {
        let mut tensors = Vec::new();
        for spec in node.layer.weights() {
            let name = tensor_name(&net.tensor_prefix[k], spec.name);
            match imp.weights.get(&name) {
                Some((shape, data)) => {
                    if shape.iter().product::<usize>() != spec.shape.iter().product::<usize>() {
                        return Err(Diagnostic::new(format!(
                            "the ONNX initializer for `{name}` has shape {shape:?}; the layer needs {:?}",
                            spec.shape
                        ))
                        .layer(&node.name)
                        .help("export the model again"));
                    }
                    tensors.push(Tensor::new(spec.shape.clone(), data.clone()));
                }
                None => match &spec.init {
                    Init::Fixed(v) if spec.kind == WeightKind::Frozen => {
                        tensors.push(Tensor::new(spec.shape.clone(), v.clone()))
                    }
                    _ => {
                        return Err(Diagnostic::new(format!(
                            "the ONNX file holds no initializer for `{name}`"
                        ))
                        .layer(&node.name)
                        .help("export with export_params=True, or run without the file's weights"))
                    }
                },
            }
        }
        per_node.push(tensors);
    }
    let mut w = Weights { per_node };
    // A tied layer (GPT-2's head) runs on its owner's tensor.
    crate::exec::share_tied(net, &mut w);
    Ok(Some(w))
}
