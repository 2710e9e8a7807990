//! The ONNX reader: a `ModelProto`'s bytes → the archscope YAML text of the same network (one
//! top-level node per mapped ONNX node, named after its module path or weight), the weights its
//! initializers carry under the layer paths that YAML gives them, and the value_info shapes to
//! cross-check the built network against. Constant sub-graphs (Shape→Gather→Concat chains that
//! PyTorch emits, `Constant` nodes, casts) are folded to values first; each remaining node is
//! mapped onto an archscope layer type or is a located error naming the node, its op type and
//! inputs, and what to do. No IO.

// Constants travel as (dims, values) pairs; naming the tuple would not make them clearer.
#![allow(clippy::type_complexity)]

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use super::proto::{self, DataError, GraphProto, ModelProto, NodeProto, TensorProto};
use crate::error::{excerpt, Diagnostic};

#[path = "attention.rs"]
mod attention;
// Multi-node patterns (attention and the like): a child module, so that it reads the reader's
// private state.
#[path = "patterns.rs"]
mod patterns;
// Swin's and MaxViT's windowed attention as `archscope export` writes it.
#[path = "swin.rs"]
mod swin;
// A small evaluator of ONNX nodes: constant folding and windowed-attention probes.
#[path = "fold.rs"]
mod fold;
// Einsum: equations read as permutes, reshapes and a matmul or linear layer; computed for folding.
#[path = "einsum.rs"]
mod einsum;
// Exp of a learned tensor (a log-scale): read with the arithmetic that uses it.
#[path = "learned_exp.rs"]
mod learned_exp;
// GPT-2-style decoders: embeddings, causal attention, tanh GELU, the tied head.
#[path = "gpt.rs"]
mod gpt;
// Arithmetic with a constant, buffer or learned tensor (`scalar`), and the rule that tells them
// apart.
#[path = "arith.rs"]
mod arith;
pub(crate) use arith::KIND_KEY;

/// Most nodes an ONNX graph may hold (the YAML side's layer limit, `graph::MAX_LAYERS`).
pub const MAX_NODES: usize = crate::graph::MAX_LAYERS;
/// Largest ONNX file read, in bytes (2 GiB: protobuf's own limit for one message).
pub const MAX_ONNX_BYTES: u64 = 2 << 30;
/// Largest constant folded (shape arithmetic), in elements.
pub const MAX_FOLDED_ELEMENTS: usize = 1 << 20;
/// Most elements folded over the whole file (512 MiB of the f64 values kept): without it, a
/// small file of many nodes each folding 2^20 elements kept gigabytes.
pub const MAX_FOLDED_TOTAL: u64 = 1 << 26;
/// Most multiply-adds of the `MatMul`s folded over the whole file (each is bounded by
/// `fold.rs` too): a few seconds.
pub const MAX_FOLD_WORK: u64 = 1 << 32;

/// What the reader produces.
#[derive(Debug, Clone)]
pub struct Import {
    /// The model as archscope YAML text.
    pub yaml: String,
    /// Weights by tensor name (`layer.weight`, …): shape and values. Empty for a graph-only
    /// file (weights as graph inputs, or no initializer data).
    pub weights: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// Whether every weight came with data (`run` then uses them).
    pub has_weights: bool,
    /// Per YAML node (in `nodes:` order), the ONNX node it came from, as messages name it.
    pub origins: Vec<String>,
    /// (layer id, ONNX tensor name, per-sample shape) from the file's value_info / outputs.
    pub declared: Vec<(String, String, Vec<u64>)>,
    /// Per YAML node (in `nodes:` order), the dotted PyTorch module path its ONNX node names
    /// (`layer1.0.conv1`), when it names one: `convert` groups repeated blocks by it.
    pub paths: Vec<Option<String>>,
    /// Whether the `input` of [`import_sized`] sized a symbolic first input (else it was not
    /// used: the file fixes its sizes, or none was given).
    pub input_sized: bool,
}

/// A value in the graph being read.
#[derive(Debug, Clone)]
enum Val {
    /// A layer output: its YAML reference and its shape (batch included).
    Act { r: String, shape: Vec<u64> },
    /// A constant with known values (initializer, `Constant`, folded).
    Const {
        dims: Vec<u64>,
        data: Vec<f64>,
        init: Option<String>,
        /// The 2-D transpose of initializer `init` (an exporter's Transpose of a linear weight).
        trans: bool,
    },
    /// A weight known by shape only (a graph-only export's weight inputs).
    Shaped { dims: Vec<u64> },
}

/// A convolution's or pool's strides, dilations, pads (begins, then ends) and auto_pad.
struct Window {
    s: Vec<u64>,
    d: Vec<u64>,
    pads: Vec<u64>,
    auto: String,
}

/// A linear layer being emitted: its input (reference and shape), sizes, weight and bias
/// (`Some(None)`: a bias without data).
struct Linear {
    x: String,
    shape: Vec<u64>,
    out_f: u64,
    in_f: u64,
    w: Option<Vec<f32>>,
    bias: Option<Option<Vec<f32>>>,
    /// The embedding whose table it uses (`tied:`; its weight is not its own).
    tied: Option<String>,
}

impl Val {
    /// A constant computed here (folded), not an initializer.
    fn folded(dims: Vec<u64>, data: Vec<f64>) -> Val {
        Val::Const {
            dims,
            data,
            init: None,
            trans: false,
        }
    }
}

struct Reader<'a> {
    file: &'a str,
    graph: &'a GraphProto,
    vals: HashMap<String, Val>,
    /// Initializer tensors by name (data decoded on use).
    inits: HashMap<&'a str, &'a TensorProto>,
    yaml_nodes: Vec<String>,
    origins: Vec<String>,
    paths: Vec<Option<String>>,
    ids: HashSet<String>,
    weights: HashMap<String, (Vec<usize>, Vec<f32>)>,
    missing_data: bool,
    batch: u64,
    /// Per tensor name, how many nodes read it.
    uses: HashMap<&'a str, usize>,
    /// Producer node index of each tensor.
    producer: HashMap<&'a str, usize>,
    /// Nodes already consumed by a pattern (GELU, SiLU, MatMul+Add).
    done: HashSet<usize>,
    opset: i64,
    /// The attention modules, each read as one layer (`attention.rs`).
    regions: attention::Regions,
    /// The windowed attention layers, each read as one layer (`swin.rs`).
    windows: swin::Windows,
    /// GPT-style patterns and token ids (`gpt.rs`).
    gpt: gpt::Found,
    /// The learned tensors arithmetic has read, each counted once (`arith.rs`).
    learned: arith::Learned,
    /// The tensors of integer (or bool) element type (`fold::int_tensors`).
    ints: HashSet<String>,
    /// Written by `archscope export`: node names are layer paths (`S`, `S/Op_k`).
    archscope: bool,
    /// Elements folded so far and folded `MatMul`s' multiply-adds ([`MAX_FOLDED_TOTAL`],
    /// [`MAX_FOLD_WORK`]).
    folded: (u64, u64),
}

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a proto::AttributeProto> {
    n.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}
fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).and_then(|a| a.i).unwrap_or(default)
}
fn attr_f(n: &NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).and_then(|a| a.f).unwrap_or(default)
}
fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}
fn attr_s(n: &NodeProto, name: &str) -> Option<String> {
    attr(n, name)
        .and_then(|a| a.s.as_ref())
        .map(|s| String::from_utf8_lossy(s).into_owned())
}
/// An `ints` attribute as sizes (a negative entry reads as 0), or `default` when absent.
fn attr_sizes(n: &NodeProto, name: &str, default: Vec<u64>) -> Vec<u64> {
    attr_ints(n, name)
        .map(|v| v.iter().map(|&x| x.max(0) as u64).collect())
        .unwrap_or(default)
}

/// Elements of a shape, saturating at `u64::MAX` (never an overflow).
fn numel(d: &[u64]) -> u64 {
    d.iter()
        .try_fold(1u64, |a, &x| a.checked_mul(x))
        .unwrap_or(u64::MAX)
}

/// The largest size, pad or stride the reader takes (the element limit: larger is never a
/// real model, and smaller keeps its shape arithmetic far from overflow).
const MAX_SIZE: u64 = crate::graph::MAX_ELEMENTS;

/// An axis as an index from the front (ONNX counts a negative axis from the end).
fn axis_at(a: i64, rank: i64) -> i64 {
    if a < 0 {
        a + rank
    } else {
        a
    }
}
fn axes_at(axes: &[i64], rank: i64) -> Vec<i64> {
    axes.iter().map(|&a| axis_at(a, rank)).collect()
}

/// NumPy broadcasting of two shapes, aligned at the end: each dimension the larger of the two
/// (a missing one counts as 1).
fn broadcast(a: &[u64], b: &[u64]) -> Vec<u64> {
    let rank = a.len().max(b.len());
    let at = |s: &[u64], k: usize| {
        if k + s.len() >= rank {
            s[k + s.len() - rank]
        } else {
            1
        }
    };
    (0..rank).map(|k| at(a, k).max(at(b, k))).collect()
}

/// Squeeze: `dims` without the listed axes or, when none are listed, without every size-1
/// dimension (the batch kept when `keep_batch`).
fn squeezed(dims: &[u64], axes: &[i64], keep_batch: bool) -> Vec<u64> {
    let axes = axes_at(axes, dims.len() as i64);
    dims.iter()
        .enumerate()
        .filter(|(k, &d)| {
            !(if axes.is_empty() {
                d == 1 && (*k > 0 || !keep_batch)
            } else {
                axes.contains(&(*k as i64))
            })
        })
        .map(|(_, &d)| d)
        .collect()
}

/// Unsqueeze: `dims` with a 1 inserted at each listed axis (axes of the result).
fn unsqueezed(dims: &[u64], axes: &[i64]) -> Vec<u64> {
    let mut axes = axes_at(axes, (dims.len() + axes.len()) as i64);
    axes.sort_unstable();
    let mut d = dims.to_vec();
    for a in axes {
        d.insert((a.max(0) as usize).min(d.len()), 1);
    }
    d
}

/// A float as YAML writes it (shortest round trip of the f32, always with a `.` or exponent
/// mantissa that YAML reads as a float).
fn yf(v: f64) -> String {
    // YAML's spellings of the non-finite values (`-inf` would read as a string).
    if v.is_nan() {
        return ".nan".into();
    } else if v.is_infinite() {
        return if v > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    let s = format!("{:?}", v as f32);
    if s.contains('e') && !s.contains('.') {
        s.replacen('e', ".0e", 1)
    } else {
        s
    }
}

fn list(v: &[u64]) -> String {
    let parts: Vec<String> = v.iter().map(u64::to_string).collect();
    format!("[{}]", parts.join(", "))
}
fn ilist(v: &[i64]) -> String {
    let parts: Vec<String> = v.iter().map(i64::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// Reads an ONNX model. `file` names it in messages; `batch` is the batch size a symbolic
/// batch dimension takes (`--batch`).
pub fn import(file: &str, bytes: &[u8], batch: u64) -> Result<Import, Diagnostic> {
    import_sized(file, bytes, batch, None)
}

/// [`import`], with the per-sample size `input` (`--input`: C×H×W, H×W or S for images; the
/// whole shape or the sizes after the channels otherwise) for a first graph input whose sizes
/// after the batch are symbolic (an export with `dynamic_axes` on them). A file whose input
/// sizes are all fixed ignores it here (the built model takes it as a YAML model does).
pub fn import_sized(
    file: &str,
    bytes: &[u8],
    batch: u64,
    input: Option<&[u64]>,
) -> Result<Import, Diagnostic> {
    if bytes.len() as u64 > MAX_ONNX_BYTES {
        return Err(Diagnostic::new(format!(
            "{file} is {} bytes; archscope reads ONNX files of at most {MAX_ONNX_BYTES} bytes (2 GiB)",
            bytes.len()
        ))
        .help("save the weights as external data beside it (onnx.save(model, path, save_as_external_data=True)), which archscope reads, or export the graph only (export_params=False)"));
    }
    let model: ModelProto = proto::decode_model(file, bytes)?;
    import_model_sized(file, &model, batch, input)
}

/// [`import_sized`] for a model whose tensors may keep their data in files beside it (ONNX
/// external data): `read` returns the bytes of each reference, checked first by
/// [`super::external::resolve`] (the CLI opens the files relative to the model's folder).
pub fn import_external(
    file: &str,
    bytes: &[u8],
    batch: u64,
    input: Option<&[u64]>,
    read: &mut super::external::ExternalReader<'_>,
) -> Result<Import, Diagnostic> {
    if bytes.len() as u64 > MAX_ONNX_BYTES {
        return import_sized(file, bytes, batch, input);
    }
    let mut model: ModelProto = proto::decode_model(file, bytes)?;
    super::external::resolve(file, &mut model, read)?;
    import_model_sized(file, &model, batch, input)
}

/// Reads a decoded model (see [`import`]).
pub fn import_model(file: &str, model: &ModelProto, batch: u64) -> Result<Import, Diagnostic> {
    import_model_sized(file, model, batch, None)
}

/// Reads a decoded model (see [`import_sized`]).
pub fn import_model_sized(
    file: &str,
    model: &ModelProto,
    batch: u64,
    input: Option<&[u64]>,
) -> Result<Import, Diagnostic> {
    let Some(graph) = &model.graph else {
        return Err(
            Diagnostic::new(format!("{file}: the ONNX model has no graph"))
                .help("export the model again; a ModelProto needs its `graph`"),
        );
    };
    let opset = model
        .opset_import
        .iter()
        .find(|o| {
            o.domain.as_deref().unwrap_or("").is_empty() || o.domain.as_deref() == Some("ai.onnx")
        })
        .and_then(|o| o.version)
        .unwrap_or(0);
    if !(11..=MAX_OPSET).contains(&opset) {
        return Err(Diagnostic::new(format!(
            "{file}: the model uses ONNX opset {opset}; archscope reads opsets 11 to {MAX_OPSET}"
        ))
        .help("export again with opset_version between 11 and 23 (torch.onnx.export(..., opset_version=17))"));
    }
    if graph.node.len() > MAX_NODES {
        return Err(Diagnostic::new(format!(
            "{file}: the graph has {} nodes; archscope reads at most {MAX_NODES}",
            graph.node.len()
        ))
        .help("export a smaller model, or describe it in YAML with blocks and `repeat`"));
    }
    let mut r = Reader {
        file,
        graph,
        vals: HashMap::new(),
        inits: HashMap::new(),
        yaml_nodes: Vec::new(),
        origins: Vec::new(),
        paths: Vec::new(),
        ids: HashSet::new(),
        weights: HashMap::new(),
        missing_data: false,
        batch,
        uses: HashMap::new(),
        producer: HashMap::new(),
        done: HashSet::new(),
        opset,
        regions: attention::find_regions(graph),
        windows: swin::find(graph, model.producer_name.as_deref() == Some("archscope")),
        gpt: gpt::Found::default(),
        learned: arith::Learned::default(),
        ints: fold::int_tensors(graph),
        archscope: model.producer_name.as_deref() == Some("archscope"),
        folded: (0, 0),
    };
    for t in &graph.initializer {
        r.inits.insert(t.name.as_deref().unwrap_or(""), t);
    }
    for (name, (dims, data)) in init_vals(file, graph)? {
        r.vals.insert(
            name.clone(),
            Val::Const {
                dims,
                data,
                init: Some(name),
                trans: false,
            },
        );
    }
    for (i, n) in graph.node.iter().enumerate() {
        if n.output.first().is_none_or(String::is_empty) {
            return Err(r.err(i, n, "the node has no output").help(AGAIN));
        }
        for x in &n.input {
            *r.uses.entry(x.as_str()).or_default() += 1;
        }
        for y in &n.output {
            r.producer.insert(y.as_str(), i);
        }
    }
    if graph.output.is_empty() {
        return Err(
            Diagnostic::new(format!("{file}: the graph has no output")).help(
                "a model needs at least one graph output (the logits, the map): export the model again",
            ),
        );
    }
    for o in &graph.output {
        *r.uses.entry(o.name.as_deref().unwrap_or("")).or_default() += 1;
    }
    let mut inputs_yaml = String::new();
    let mut n_inputs = 0;
    let mut input_sized = false;
    // The first data input's symbolic dims (dim_param) and the sizes --batch and --input
    // gave them, for the later inputs.
    let mut symbols: Vec<(String, u64)> = Vec::new();
    let weight_inputs = weight_inputs(graph, &r.inits, &r.windows.inputs);
    for inp in &graph.input {
        let name = inp.name.as_deref().unwrap_or("");
        if let Some(t) = r.inits.get(name) {
            // Older exporters list initializers among the inputs: the two shapes must agree.
            let declared = value_dims(inp);
            let held: Vec<Option<u64>> = t.dims.iter().map(|&d| u64::try_from(d).ok()).collect();
            if declared.as_ref().is_some_and(|d| *d != held) {
                let show = |v: &[Option<u64>]| {
                    let p: Vec<String> = v
                        .iter()
                        .map(|d| d.map_or("?".into(), |x| x.to_string()))
                        .collect();
                    format!("[{}]", p.join(", "))
                };
                return Err(Diagnostic::new(format!(
                    "{file}: graph input `{}` is declared {} but its initializer has dims {}",
                    excerpt(name),
                    show(&declared.unwrap_or_default()),
                    show(&held)
                ))
                .help(AGAIN));
            }
            continue;
        }
        let dims = value_dims(inp).ok_or_else(|| {
            Diagnostic::new(format!(
                "{file}: graph input `{}` has no tensor shape",
                excerpt(name)
            ))
            .help("export with a fixed input shape (a dummy input of the real size)")
        })?;
        // A graph input read only as a weight (a graph-only export), or declared a parameter
        // or buffer (arith.rs), is a shaped weight.
        if weight_inputs.contains(name) || arith::declared_weight(inp) {
            let d = dims
                .iter()
                .map(|d| d.ok_or_else(|| dyn_dim(file, inp, &dims, 0, false, &[])))
                .collect::<Result<Vec<u64>, _>>()?;
            r.vals.insert(name.to_string(), Val::Shaped { dims: d });
            r.missing_data = true;
            continue;
        }
        let raw = dims.clone();
        let dims = match input {
            Some(given) if n_inputs == 0 && dims.iter().skip(1).any(Option::is_none) => {
                input_sized = true;
                sized_input(file, inp, &dims, given)?
            }
            // A later input's symbolic sizes take those of the same symbol (dim_param) in
            // the first input: `sequence` of attention_mask is input_ids' `sequence`.
            _ if n_inputs > 0 => bind_symbols(inp, &dims, &symbols),
            _ => dims,
        };
        let mut shape = Vec::new();
        for (k, d) in dims.iter().enumerate() {
            match (k, d) {
                (0, None) => shape.push(batch),
                (_, Some(v)) => shape.push(*v),
                _ => return Err(dyn_dim(file, inp, &dims, 1, n_inputs == 0, &symbols)),
            }
        }
        if n_inputs == 0 {
            symbols = first_symbols(inp, &raw, &shape);
        }
        if numel(&shape) > MAX_SIZE {
            return Err(Diagnostic::new(format!(
                "{file}: graph input `{}` has shape {shape:?}: more than 2^40 elements",
                excerpt(name)
            ))
            .help(
                "archscope's tensors hold at most 2^40 elements: check the input size and --batch",
            ));
        }
        if shape.len() < 2 {
            return Err(Diagnostic::new(format!(
                "{file}: graph input `{}` has shape {:?}; archscope needs a batch dimension and at least one more",
                excerpt(name),
                shape
            ))
            .help("export with an input of shape N×C×H×W (images), N×L or N×C×L"));
        }
        let id = r.fresh_id(&sanitize(name), "input");
        let _ = writeln!(inputs_yaml, "  {id}: {}", list(&shape[1..]));
        // A static batch other than the requested one: the file's shape constants carry it.
        if let Some(Some(b)) = dims.first() {
            r.batch = *b;
        }
        shape[0] = r.batch;
        r.vals.insert(name.to_string(), Val::Act { r: id, shape });
        n_inputs += 1;
    }
    if n_inputs == 0 {
        return Err(
            Diagnostic::new(format!("{file}: the graph has no data input")).help(
                "a model needs a graph input that is not an initializer (the image or tokens)",
            ),
        );
    }
    // Constants first: the patterns (GELU's 1 and 0.5) look ahead at them.
    for (i, n) in graph.node.iter().enumerate() {
        if n.op_type.as_deref() == Some("Constant") {
            r.fold(i, n)?;
            r.done.insert(i);
        }
    }
    r.prescan();
    for (i, n) in graph.node.iter().enumerate() {
        if r.attention_node(i)? || r.window_node(i)? || r.done.contains(&i) {
            continue;
        }
        r.node(i, n)?;
    }
    let mut outputs = Vec::new();
    for o in &graph.output {
        let name = o.name.as_deref().unwrap_or("");
        match r.vals.get(name) {
            Some(Val::Act { r: rr, .. }) => outputs.push(rr.clone()),
            _ => {
                return Err(Diagnostic::new(format!(
                    "{file}: graph output `{}` is a constant, not computed from the input",
                    excerpt(name)
                ))
                .help("archscope reads models whose outputs depend on their inputs"))
            }
        }
    }
    // value_info and outputs: the shapes the file declares, to check the built network against.
    let mut declared = Vec::new();
    for vi in graph.value_info.iter().chain(&graph.output) {
        let name = vi.name.as_deref().unwrap_or("");
        if let (Some(Val::Act { r: rr, .. }), Some(dims)) = (r.vals.get(name), value_dims(vi)) {
            if dims.len() >= 2 && dims[1..].iter().all(Option::is_some) {
                let per: Vec<u64> = dims[1..].iter().map(|d| d.unwrap_or(0)).collect();
                declared.push((rr.clone(), name.to_string(), per));
            }
        }
    }
    // The graph's name is the model's name: text the YAML reader takes (no control
    // characters, at most `spec::MAX_MODEL_NAME_LEN` characters), whatever the file holds.
    let model_name = printable(
        graph.name.as_deref().unwrap_or(""),
        crate::spec::MAX_MODEL_NAME_LEN,
    );
    let mut yaml = String::new();
    let _ = writeln!(
        yaml,
        "# Read from the ONNX file {} by archscope.",
        printable(file, 1_000)
    );
    let _ = writeln!(yaml, "format: archscope/1");
    let _ = writeln!(
        yaml,
        "name: {}",
        yaml_str(if model_name.is_empty() {
            "onnx"
        } else {
            &model_name
        })
    );
    let _ = writeln!(yaml, "inputs:");
    // Token ids read by an embedding: a token input of its vocabulary.
    for (id, vocab) in &r.gpt.vocab {
        if let Some(Val::Act { shape, .. }) = r
            .vals
            .values()
            .find(|v| matches!(v, Val::Act { r: x, .. } if x == id))
        {
            if shape.len() == 2 {
                inputs_yaml = inputs_yaml.replace(
                    &format!("  {id}: {}\n", list(&shape[1..])),
                    &format!("  {id}: {{tokens: {}, vocab: {vocab}}}\n", shape[1]),
                );
            }
        }
    }
    yaml.push_str(&inputs_yaml);
    let _ = writeln!(yaml, "nodes:");
    for line in &r.yaml_nodes {
        let _ = writeln!(yaml, "  - {line}");
    }
    let outs: Vec<String> = outputs.iter().map(|o| yaml_str(o)).collect();
    let _ = writeln!(yaml, "outputs: [{}]", outs.join(", "));
    let has_weights = !r.missing_data;
    Ok(Import {
        yaml,
        weights: if has_weights {
            r.weights
        } else {
            HashMap::new()
        },
        has_weights,
        origins: r.origins,
        declared,
        paths: r.paths,
        input_sized,
    })
}

/// The help of an error in a file no exporter writes (a damaged or hand-edited file).
const AGAIN: &str = "export the model again";

/// What to do about a tensor whose data cannot be read.
fn data_help(e: &DataError) -> &'static str {
    match e {
        DataError::External => "read the model through the archscope command, which reads external data from the file beside the model, or save it with its weights inside (onnx.save(model, path, save_as_external_data=False))",
        DataError::Type(_) => "archscope reads float, float16, bfloat16, double and integer tensors",
        _ => "the file is damaged: export it again",
    }
}

/// The newest ONNX opset archscope reads.
pub const MAX_OPSET: i64 = 23;

/// `s` with each control character replaced by U+FFFD and cut to `max` characters (the last
/// one then `…`): a name the YAML side reads as written, shown as near to the file's as it can.
fn printable(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_control() || ('\u{fffe}'..='\u{ffff}').contains(&c) {
                '\u{fffd}'
            } else {
                c
            }
        })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.pop();
        out.push('…');
    }
    out
}

fn yaml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The first graph input's dims (`dims`, symbolic sizes `None`) with the per-sample sizes
/// `given` (`--input`) put in: the whole per-sample shape, the sizes after the channels, or
/// one size for every spatial axis of an image (N×C×H×W). A size the file fixes must be the
/// one given.
fn sized_input(
    file: &str,
    v: &proto::ValueInfoProto,
    dims: &[Option<u64>],
    given: &[u64],
) -> Result<Vec<Option<u64>>, Diagnostic> {
    let per = &dims[1..];
    let full: Option<Vec<u64>> = if given.len() == per.len() {
        Some(given.to_vec())
    } else if per.len() >= 2 && given.len() == per.len() - 1 {
        per[0].map(|c| std::iter::once(c).chain(given.iter().copied()).collect())
    } else if per.len() == 3 && given.len() == 1 {
        per[0].map(|c| vec![c, given[0], given[0]])
    } else {
        None
    };
    let show = |d: &[Option<u64>]| {
        let p: Vec<String> = d
            .iter()
            .map(|x| x.map_or("?".into(), |v| v.to_string()))
            .collect();
        p.join("×")
    };
    let given_s: Vec<String> = given.iter().map(u64::to_string).collect();
    let name = excerpt(v.name.as_deref().unwrap_or(""));
    let Some(full) = full else {
        return Err(Diagnostic::new(format!(
            "{file}: --input {} does not fit graph input `{name}` of per-sample shape {}",
            given_s.join("x"),
            show(per)
        ))
        .help(format!(
            "give all {} sizes after the batch{}",
            per.len(),
            if per.first().is_some_and(Option::is_some) {
                " (or those after the channels)"
            } else {
                ""
            }
        )));
    };
    if let Some(k) = (0..per.len()).find(|&k| per[k].is_some_and(|d| d != full[k])) {
        return Err(Diagnostic::new(format!(
            "{file}: --input {} gives dimension {} of graph input `{name}` the size {}, but the file fixes it at {}",
            given_s.join("x"),
            k + 1,
            full[k],
            per[k].unwrap_or(0)
        ))
        .help(format!("keep the file's fixed sizes: its input is {} per sample", show(per))));
    }
    Ok(std::iter::once(dims[0])
        .chain(full.into_iter().map(Some))
        .collect())
}

/// The symbol (dim_param) of each axis of a value's tensor type, where it has one.
fn dim_symbols(v: &proto::ValueInfoProto) -> Vec<Option<String>> {
    dim_values(v)
        .unwrap_or_default()
        .into_iter()
        .map(|d| match d {
            Some(proto::tensor_shape_proto::dimension::Value::DimParam(p)) if !p.is_empty() => {
                Some(p)
            }
            _ => None,
        })
        .collect()
}

/// The first data input's symbolic axes (`raw`: its dims as the file declares them) with the
/// sizes they took (`shape`: from --batch and --input).
fn first_symbols(
    v: &proto::ValueInfoProto,
    raw: &[Option<u64>],
    shape: &[u64],
) -> Vec<(String, u64)> {
    dim_symbols(v)
        .into_iter()
        .zip(raw.iter().zip(shape))
        .filter_map(|(sym, (d, &size))| Some((sym?, size)).filter(|_| d.is_none()))
        .collect()
}

/// A later data input's dims with each symbolic axis after the batch that shares its symbol
/// with the first input's given that input's size.
fn bind_symbols(
    v: &proto::ValueInfoProto,
    dims: &[Option<u64>],
    symbols: &[(String, u64)],
) -> Vec<Option<u64>> {
    let syms = dim_symbols(v);
    dims.iter()
        .enumerate()
        .map(|(k, d)| match (k, d, syms.get(k).cloned().flatten()) {
            (1.., None, Some(sym)) => symbols.iter().find(|(s, _)| *s == sym).map(|p| p.1),
            _ => *d,
        })
        .collect()
}

/// A graph input `v` (shape `dims`) with a symbolic size at or after axis `from`: the message
/// names the first such axis and its symbol; `sizable`: the first data input, which `--input`
/// sizes; `symbols`: the first input's symbols, which a later input's axes may share.
fn dyn_dim(
    file: &str,
    v: &proto::ValueInfoProto,
    dims: &[Option<u64>],
    from: usize,
    sizable: bool,
    symbols: &[(String, u64)],
) -> Diagnostic {
    let shown: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
        .collect();
    let axis = (from..dims.len())
        .find(|&k| dims[k].is_none())
        .unwrap_or(from);
    let symbol = match dim_symbols(v).get(axis).cloned().flatten() {
        Some(p) => format!(", `{}`", excerpt(&p)),
        None => ", unnamed".to_string(),
    };
    let d = Diagnostic::new(format!(
        "{file}: tensor `{}` has shape [{}]: a dynamic dimension other than the batch (dimension {axis}{symbol})",
        excerpt(v.name.as_deref().unwrap_or("")),
        shown.join(", ")
    ));
    if sizable && dims.len() == 2 {
        return d.help("give the sequence length with --input (e.g. --input 128 for 128 tokens: the other inputs' axes of the same symbol take it too), or export with a fixed length (torch.onnx.export without dynamic_axes on that dimension); a symbolic batch takes --batch");
    }
    if sizable {
        return d.help("give the input's size with --input (the sizes after the batch, e.g. --input 3x224x224, or 224x224 for the spatial sizes alone), or export with a fixed input size (torch.onnx.export without dynamic_axes on that dimension); a symbolic batch takes --batch");
    }
    if !symbols.is_empty() {
        let named: Vec<String> = symbols
            .iter()
            .map(|(s, _)| format!("`{}`", excerpt(s)))
            .collect();
        return d.help(format!(
            "archscope sizes a later input's dynamic dimension by its symbol: export it with one of the first input's, {} (--batch and --input size them), e.g. dynamic_axes={{\"{}\": {{1: \"{}\"}}}}, or with a fixed size",
            named.join(", "),
            excerpt(v.name.as_deref().unwrap_or("")),
            excerpt(&symbols[symbols.len() - 1].0),
        ));
    }
    d.help("export with a fixed size (torch.onnx.export without dynamic_axes on that dimension): --input sizes the first input only, and only the first (batch) dimension of an input may be symbolic")
}

/// The raw dims of a value's tensor type.
fn dim_values(
    v: &proto::ValueInfoProto,
) -> Option<Vec<Option<proto::tensor_shape_proto::dimension::Value>>> {
    let t = v.r#type.as_ref()?;
    let proto::type_proto::Value::TensorType(tt) = t.value.as_ref()? else {
        return None;
    };
    Some(
        tt.shape
            .as_ref()?
            .dim
            .iter()
            .map(|d| d.value.clone())
            .collect(),
    )
}

/// The dims of a value's tensor type: `Some(v)` a fixed size, `None` symbolic or unknown.
fn value_dims(v: &proto::ValueInfoProto) -> Option<Vec<Option<u64>>> {
    Some(
        dim_values(v)?
            .iter()
            .map(|d| match d {
                Some(proto::tensor_shape_proto::dimension::Value::DimValue(v)) if *v > 0 => {
                    Some(*v as u64)
                }
                _ => None,
            })
            .collect(),
    )
}

/// The graph inputs (not initializers) that are a graph-only export's weights: those read only
/// in weight positions ([`is_weight_only`]) or by a windowed attention's weights (`windows`),
/// in a file that carries no weight of its own (no float initializer in a weight position of a
/// Conv, Gemm, MatMul, normalisation or embedding): a file with its weights has no weight
/// inputs, so each of its inputs is data, whatever reads it (a second image read only by an
/// `Add`). When every input would be a weight, the first is data (a model that only adds a
/// learned tensor to its input).
fn weight_inputs(
    g: &GraphProto,
    inits: &HashMap<&str, &TensorProto>,
    windows: &HashSet<String>,
) -> HashSet<String> {
    let float = |t: &TensorProto| matches!(t.data_type, Some(1 | 10 | 11 | 16));
    let carries = g.node.iter().any(|n| {
        n.input.iter().enumerate().any(|(k, x)| {
            let weight = match n.op_type.as_deref().unwrap_or("") {
                "Conv" | "ConvTranspose" | "Gemm" | "LayerNormalization" | "BatchNormalization" => {
                    k >= 1
                }
                "MatMul" => true,
                "Gather" => k == 0,
                _ => false,
            };
            weight && inits.get(x.as_str()).is_some_and(|t| float(t))
        })
    });
    let free: Vec<&str> = g
        .input
        .iter()
        .map(|v| v.name.as_deref().unwrap_or(""))
        .filter(|n| !inits.contains_key(n))
        .collect();
    if carries {
        return HashSet::new();
    }
    let weights: HashSet<String> = free
        .iter()
        .filter(|n| is_weight_only(g, n) || windows.contains(**n))
        .map(|n| n.to_string())
        .collect();
    if weights.len() == free.len() {
        return free.iter().skip(1).map(|n| n.to_string()).collect();
    }
    weights
}

/// Whether a graph input is read only in weight positions (Conv's W and B, Gemm's B and C,
/// BatchNormalization's statistics, LayerNormalization's scale and bias, MatMul/Add/Mul's
/// constant side) — the weights of a graph-only export.
fn is_weight_only(g: &GraphProto, name: &str) -> bool {
    weight_only_at(g, name, 0)
}

/// [`is_weight_only`], following Identity and Transpose nodes (an exporter's copies of a
/// weight) and Reshapes of it at most 8 deep.
fn weight_only_at(g: &GraphProto, name: &str, depth: usize) -> bool {
    if depth > 8 {
        return false;
    }
    let mut any = false;
    for n in &g.node {
        for (k, x) in n.input.iter().enumerate() {
            if x != name {
                continue;
            }
            any = true;
            let weight = match n.op_type.as_deref().unwrap_or("") {
                "Conv" | "ConvTranspose" | "Gemm" | "MatMul" | "LayerNormalization" | "PRelu" => {
                    k >= 1
                }
                "BatchNormalization" => k >= 1,
                // A class token expanded to the batch.
                "Expand" => k == 0,
                // An embedding's table.
                "Gather" => k == 0,
                // A learned tensor added or multiplied (a bias after MatMul, a layer scale).
                "Add" | "Mul" => true,
                // A learned log-scale's exponential (learned_exp.rs).
                "Identity" | "Transpose" | "Exp" => {
                    n.output.iter().all(|o| weight_only_at(g, o, depth + 1))
                }
                // A weight reshaped to broadcast (a per-channel affine: [-1, 1, 1]).
                "Reshape" if k == 0 => n.output.iter().all(|o| weight_only_at(g, o, depth + 1)),
                _ => false,
            };
            if !weight {
                return false;
            }
        }
    }
    any
}

/// A YAML identifier from an ONNX name: letters, digits and `_`, starting with a letter.
fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    while s.contains("__") {
        s = s.replace("__", "_");
    }
    let s = s.trim_matches('_').to_string();
    let s = if s.starts_with(|c: char| c.is_ascii_alphabetic()) {
        s
    } else {
        format!("n_{s}")
    };
    s.chars().take(100).collect()
}

/// The module path of a PyTorch-exported node name (`/layer1/layer1.0/conv1/Conv` →
/// `layer1.0.conv1`), or its weight's (`layer1.0.conv1.weight` → `layer1.0.conv1`).
fn module_path(n: &NodeProto, weight: Option<&str>) -> Option<String> {
    if let Some(w) = weight {
        if let Some(p) = w.strip_suffix(".weight") {
            return Some(p.to_string());
        }
    }
    let name = n.name.as_deref()?;
    if name.starts_with('/') {
        let parts: Vec<&str> = name.trim_start_matches('/').split('/').collect();
        if parts.len() >= 2 {
            return Some(parts[parts.len() - 2].to_string());
        }
    }
    None
}

/// The whole dotted module path of a PyTorch-exported node: its weight's
/// (`layer1.0.conv1.weight` → `layer1.0.conv1`), else its name's scopes joined, each scope
/// being either a path that continues the one before (`features.2.0` after `features.2`,
/// `block.2` after `….block`) or a child's own name (`avgpool`):
/// `/features/features.2/features.2.0/block/block.2/avgpool/GlobalAveragePool` →
/// `features.2.0.block.2.avgpool`.
fn full_module_path(n: &NodeProto, weight: Option<&str>) -> Option<String> {
    if let Some(p) = weight.and_then(|w| w.strip_suffix(".weight")) {
        return Some(p.to_string());
    }
    let name = n.name.as_deref()?.strip_prefix('/')?;
    let scopes: Vec<&str> = name.split('/').collect();
    let mut path: Vec<String> = Vec::new();
    for s in &scopes[..scopes.len().saturating_sub(1)] {
        let parts: Vec<&str> = s.split('.').collect();
        // The longest tail of the path that the scope starts with.
        let keep = (1..=path.len().min(parts.len().saturating_sub(1)))
            .rev()
            .find(|&k| {
                path[path.len() - k..]
                    .iter()
                    .zip(&parts)
                    .all(|(a, b)| a == b)
            })
            .map_or(path.len(), |k| path.len() - k);
        path.truncate(keep);
        path.extend(parts.iter().map(|p| p.to_string()));
    }
    (!path.is_empty()).then(|| path.join("."))
}

impl<'a> Reader<'a> {
    fn fresh_id(&mut self, base: &str, fallback: &str) -> String {
        let base = if base.is_empty() {
            fallback.to_string()
        } else {
            base.to_string()
        };
        let mut id = base.clone();
        let mut k = 1;
        while self.ids.contains(&id) {
            k += 1;
            id = format!("{base}_{k}");
        }
        self.ids.insert(id.clone());
        id
    }

    /// The one node (from index `from` on) that reads tensor `t`, when exactly one reads it
    /// (and it is no graph output).
    fn sole_reader(&self, from: usize, t: &str) -> Option<(usize, &'a NodeProto)> {
        if self.uses.get(t) != Some(&1) {
            return None;
        }
        self.graph
            .node
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, m)| m.input.iter().any(|v| v == t))
    }

    fn where_(&self, i: usize, n: &NodeProto) -> String {
        format!(
            "ONNX node #{i} `{}` ({})",
            excerpt(n.name.as_deref().unwrap_or("")),
            n.op_type.as_deref().unwrap_or("")
        )
    }

    fn err(&self, i: usize, n: &NodeProto, msg: impl Into<String>) -> Diagnostic {
        let inputs: Vec<String> = n
            .input
            .iter()
            .map(|x| format!("`{}`", excerpt(x)))
            .collect();
        let mut d = Diagnostic::new(format!("{}: {}", self.file, msg.into()));
        d.layer = Some(self.where_(i, n));
        d.note(format!("its inputs: {}", inputs.join(", ")))
    }

    /// The value of input `k` (empty name: absent).
    fn input(&self, i: usize, n: &NodeProto, k: usize) -> Result<Option<&Val>, Diagnostic> {
        let Some(name) = n.input.get(k).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        if let Some(v) = self.vals.get(name) {
            return Ok(Some(v));
        }
        if let Some(d) = self.undeclared(i, n, name) {
            return Err(d);
        }
        Err(self
            .err(i, n, format!("input `{}` is neither a graph input, an initializer nor an earlier node's output", excerpt(name)))
            .help("the file is incomplete (a missing initializer?) or its nodes are not in topological order: export it again or sort it with onnx's tools"))
    }

    fn need(&self, i: usize, n: &NodeProto, k: usize) -> Result<&Val, Diagnostic> {
        self.input(i, n, k)?.ok_or_else(|| {
            self.err(i, n, format!("input {k} is missing"))
                .help("see the operator's definition in ONNX's Operators.md")
        })
    }

    fn act(&self, i: usize, n: &NodeProto, k: usize) -> Result<(String, Vec<u64>), Diagnostic> {
        match self.need(i, n, k)? {
            Val::Act { r, .. } if r.starts_with('@') => Err(self
                .err(i, n, format!("input {k} is x/√2, the first step of PyTorch's GELU, but no Erf reads it"))
                .help("archscope reads division by a constant only inside GELU's pattern; describe the layer in YAML")),
            Val::Act { r, shape } => Ok((r.clone(), shape.clone())),
            _ => Err(self
                .err(i, n, format!("input {k} is a constant where archscope needs a computed tensor"))
                .help("fold constant sub-graphs before reading (onnxsim), or export with do_constant_folding=True")),
        }
    }

    /// Input `k` as constant values (folded, initializer or `Constant`).
    fn constant(
        &self,
        i: usize,
        n: &NodeProto,
        k: usize,
    ) -> Result<Option<(Vec<u64>, Vec<f64>)>, Diagnostic> {
        match self.input(i, n, k)? {
            None => Ok(None),
            Some(Val::Const { dims, data, .. }) => Ok(Some((dims.clone(), data.clone()))),
            Some(_) => Err(self
                .err(i, n, format!("input {k} (`{}`) must be a constant: it is computed at run time", excerpt(&n.input[k])))
                .help("export with static shapes (no dynamic_axes but the batch) so that shape arithmetic folds to constants")),
        }
    }

    fn ints(&self, i: usize, n: &NodeProto, k: usize) -> Result<Option<Vec<i64>>, Diagnostic> {
        Ok(self
            .constant(i, n, k)?
            .map(|(_, d)| d.iter().map(|&v| v as i64).collect()))
    }

    /// A weight input: its dims and its data when the file holds it.
    fn weight(
        &mut self,
        i: usize,
        n: &NodeProto,
        k: usize,
    ) -> Result<Option<(Vec<u64>, Option<Vec<f32>>)>, Diagnostic> {
        let Some(name) = n.input.get(k).filter(|s| !s.is_empty()).cloned() else {
            return Ok(None);
        };
        match self.need(i, n, k)?.clone() {
            Val::Shaped { dims, .. } => Ok(Some((dims, None))),
            Val::Const { dims, data, init, trans } => {
                // Initializers are decoded as f32 straight from the tensor (exact); folded
                // constants come from f64.
                let v = match init.as_deref().and_then(|nm| self.inits.get(nm).copied()) {
                    Some(t) => proto::tensor_to_f32(t).map_err(|e| self.data_err(i, n, &name, e))?,
                    None => data.iter().map(|&x| x as f32).collect(),
                };
                let v = if trans && dims.len() == 2 {
                    transpose2(&v, dims[1] as usize, dims[0] as usize)
                } else {
                    v
                };
                Ok(Some((dims, Some(v))))
            }
            Val::Act { .. } => Err(self
                .err(i, n, format!("weight input `{}` is computed at run time", excerpt(&name)))
                .help("archscope reads weights stored as initializers (or graph inputs of a graph-only export)")),
        }
    }

    /// A bias input ([`Self::weight`]), except that a bias of zeros computed from constants
    /// — not an initializer — is no bias: the dynamo exporter's unoptimised graph gives a
    /// bias-free convolution `Expand(CastLike(0, x), Shape(w)[0])`, which PyTorch's module
    /// does not have, so it counts no parameters (and adding zero changes no output).
    fn bias(
        &mut self,
        i: usize,
        n: &NodeProto,
        k: usize,
    ) -> Result<Option<(Vec<u64>, Option<Vec<f32>>)>, Diagnostic> {
        if let Some(Some(Val::Const {
            data, init: None, ..
        })) = n
            .input
            .get(k)
            .filter(|s| !s.is_empty())
            .map(|x| self.vals.get(x))
        {
            if data.iter().all(|&v| v == 0.0) {
                return Ok(None);
            }
        }
        self.weight(i, n, k)
    }

    /// Input `k`'s dims (`None`: absent, nothing to check) against what the layer needs; a
    /// weight may drop or add leading 1s.
    fn shape_check(
        &self,
        i: usize,
        n: &NodeProto,
        k: usize,
        got: Option<&[u64]>,
        want: &[u64],
    ) -> Result<(), Diagnostic> {
        let Some(got) = got else {
            return Ok(());
        };
        let trim = |v: &[u64]| -> Vec<u64> { v.iter().copied().skip_while(|&d| d == 1).collect() };
        if trim(got) == trim(want) && numel(got) == numel(want) {
            return Ok(());
        }
        Err(self
            .err(
                i,
                n,
                format!(
                    "input {k} (`{}`) has shape {got:?} where the layer needs {want:?}",
                    excerpt(n.input.get(k).map_or("", String::as_str))
                ),
            )
            .help(AGAIN))
    }

    fn data_err(&self, i: usize, n: &NodeProto, name: &str, e: DataError) -> Diagnostic {
        self.err(i, n, e.describe(name)).help(data_help(&e))
    }

    fn put_weight(&mut self, layer: &str, w: &str, dims: &[u64], data: Option<Vec<f32>>) {
        match data {
            Some(d) => {
                let shape = dims.iter().map(|&v| v as usize).collect();
                // A `parameter`'s one tensor is named after the layer itself (exec::tensor_name).
                self.weights
                    .insert(crate::exec::tensor_name(layer, w), (shape, d));
            }
            None => self.missing_data = true,
        }
    }

    /// Emits one YAML node; returns its id.
    fn emit(&mut self, i: usize, n: &NodeProto, base: &str, body: String) -> String {
        let id = self.fresh_id(base, "layer");
        self.yaml_nodes.push(format!("{{id: {id}, {body}}}"));
        self.origins.push(self.where_(i, n));
        // `archscope export` names each node after its layer path (the weights may carry
        // other names: `weights_names:`).
        let path = match self.archscope {
            true => swin::layer_path(n).map(str::to_string),
            false => full_module_path(n, n.input.get(1).map(String::as_str)),
        };
        self.paths.push(path);
        id
    }

    /// Emits one YAML node named after `n` (else `default`) with output `out`.
    fn layer(
        &mut self,
        i: usize,
        n: &NodeProto,
        default: &str,
        body: String,
        out: Vec<u64>,
    ) -> Result<(), Diagnostic> {
        let base = self.base(n, None, default);
        let id = self.emit(i, n, &base, body);
        self.set_out(n, 0, id, out);
        Ok(())
    }

    fn set_out(&mut self, n: &NodeProto, k: usize, r: String, shape: Vec<u64>) {
        if let Some(name) = n.output.get(k) {
            self.vals.insert(name.clone(), Val::Act { r, shape });
        }
    }

    fn base(&self, n: &NodeProto, weight: Option<&str>, op: &str) -> String {
        module_path(n, weight)
            .map(|p| sanitize(&p))
            .unwrap_or_else(|| op.to_lowercase())
    }

    fn node(&mut self, i: usize, n: &'a NodeProto) -> Result<(), Diagnostic> {
        let op = n.op_type.as_deref().unwrap_or("");
        if !n.domain.as_deref().unwrap_or("").is_empty() && n.domain.as_deref() != Some("ai.onnx") {
            return Err(self
                .err(
                    i,
                    n,
                    format!(
                        "operator `{op}` of domain `{}` is not a standard ONNX operator",
                        excerpt(n.domain.as_deref().unwrap_or(""))
                    ),
                )
                .help("export with standard operators only (no custom or contrib ops)"));
        }
        if let Some(r) = self.gpt_end(i, n) {
            return r;
        }
        if op == "Exp" {
            if let Some(r) = self.exp_learned(n) {
                return r;
            }
        }
        // Constant folding: every input a constant (or a shape of a known tensor).
        if let Some(()) = self.fold(i, n)? {
            return Ok(());
        }
        match op {
            "Identity" | "Dropout" => {
                let v = self.need(i, n, 0)?.clone();
                self.vals.insert(n.output[0].clone(), v);
                Ok(())
            }
            "Conv" | "ConvTranspose" => self.conv(i, n, op == "ConvTranspose"),
            "Gemm" => self.gemm(i, n),
            "MatMul" => self.matmul(i, n),
            "BatchNormalization" => self.batchnorm(i, n),
            "LayerNormalization" => self.layernorm(i, n),
            "Relu" | "Sigmoid" | "Tanh" | "HardSwish" | "Softsign" | "Selu" | "Mish" => {
                if op == "Sigmoid" {
                    if let Some(()) = self.silu(i, n)? {
                        return Ok(());
                    }
                }
                let name = match op {
                    "HardSwish" => "hardswish".to_string(),
                    other => other.to_lowercase(),
                };
                self.unary(i, n, &name, String::new())
            }
            "LeakyRelu" => {
                let a = attr_f(n, "alpha", 0.01);
                self.unary(i, n, "leaky_relu", format!(", slope: {}", yf(f64::from(a))))
            }
            "Elu" => {
                let a = attr_f(n, "alpha", 1.0);
                self.unary(i, n, "elu", format!(", alpha: {}", yf(f64::from(a))))
            }
            "HardSigmoid" => {
                let (a, b) = (attr_f(n, "alpha", 0.2), attr_f(n, "beta", 0.5));
                if (a - 1.0 / 6.0).abs() > 1e-6 || (b - 0.5).abs() > 1e-6 {
                    return Err(self
                        .err(i, n, format!("HardSigmoid with alpha {a}, beta {b}: archscope's hardsigmoid is PyTorch's (alpha 1/6, beta 0.5)"))
                        .help("export PyTorch's nn.Hardsigmoid, or describe the layer in YAML"));
                }
                self.unary(i, n, "hardsigmoid", String::new())
            }
            "Clip" => self.clip(i, n),
            "Softmax" | "LogSoftmax" => {
                let (_, shape) = self.act(i, n, 0)?;
                let axis = attr_i(n, "axis", if self.opset >= 13 { -1 } else { 1 });
                let rank = shape.len() as i64;
                let ax = axis_at(axis, rank);
                if self.opset < 13 && ax != rank - 1 {
                    return Err(self
                        .err(i, n, format!("{op} of opset {} over axis {axis} flattens the trailing dims, which archscope's softmax does not", self.opset))
                        .help("export with opset 13 or later"));
                }
                let name = if op == "Softmax" { "softmax" } else { "log_softmax" };
                self.unary(i, n, name, format!(", dim: {ax}"))
            }
            "Gelu" => {
                let approx = attr_s(n, "approximate").unwrap_or_else(|| "none".into());
                // Written into the YAML as a plain word: the gelu layer checks its value.
                if approx.is_empty() || !approx.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(self
                        .err(i, n, format!("Gelu with approximate `{}`", excerpt(&approx)))
                        .help("ONNX's Gelu approximates as `none` or `tanh`: export the model again"));
                }
                self.unary(i, n, "gelu", format!(", approximate: {approx}"))
            }
            "Erf" => self.gelu_erf(i, n),
            "MaxPool" | "AveragePool" => self.pool(i, n, op == "MaxPool"),
            "GlobalAveragePool" | "GlobalMaxPool" => {
                let (x, shape) = self.act(i, n, 0)?;
                let avg = op == "GlobalAveragePool";
                let body = match shape.len() {
                    4 => format!("op: {}, in: {x}", if avg { "global_avgpool" } else { "global_maxpool" }),
                    3 | 5 => format!(
                        "op: adaptive_{}pool{}d, in: {x}, size: 1",
                        if avg { "avg" } else { "max" },
                        shape.len() - 2
                    ),
                    _ => return Err(self.err(i, n, format!("{op} on a rank-{} tensor", shape.len())).help("archscope pools N×C×L, N×C×H×W and N×C×D×H×W")),
                };
                let mut out = shape.clone();
                for d in out.iter_mut().skip(2) {
                    *d = 1;
                }
                self.layer(i, n, if avg { "gap" } else { "gmp" }, body, out)
            }
            "Flatten" => {
                let (x, shape) = self.act(i, n, 0)?;
                let axis = attr_i(n, "axis", 1);
                let ax = axis_at(axis, shape.len() as i64);
                if ax != 1 {
                    return Err(self.err(i, n, format!("Flatten at axis {axis}: archscope keeps the batch dimension and flattens from axis 1")).help("export x.flatten(1) (axis 1)"));
                }
                let out = vec![shape[0], numel(&shape[1..])];
                self.layer(i, n, "flatten", format!("op: flatten, in: {x}"), out)
            }
            "Reshape" => {
                if let Some(r) = self.flat_linear(i, n) {
                    return r;
                }
                let (x, shape) = self.act(i, n, 0)?;
                let target = self.ints(i, n, 1)?.unwrap_or_default();
                let out = self.reshape_dims(i, n, &shape, &target)?;
                if self.same_ids(n, &shape, &out) {
                    return Ok(());
                }
                self.reshape_to(i, n, &x, &shape, out)
            }
            "Squeeze" | "Unsqueeze" => {
                let (x, shape) = self.act(i, n, 0)?;
                let axes = match attr_ints(n, "axes") {
                    Some(a) => a,
                    None => self.ints(i, n, 1)?.unwrap_or_default(),
                };
                let out = if op == "Squeeze" {
                    squeezed(&shape, &axes, true)
                } else {
                    unsqueezed(&shape, &axes)
                };
                self.reshape_to(i, n, &x, &shape, out)
            }
            "Transpose" => {
                let (x, shape) = self.act(i, n, 0)?;
                let perm = attr_ints(n, "perm").unwrap_or_else(|| (0..shape.len() as i64).rev().collect());
                if perm.first() != Some(&0) {
                    return Err(self.err(i, n, format!("Transpose with perm {perm:?} moves the batch dimension")).help("archscope keeps the batch first: permute the other axes only"));
                }
                let out: Vec<u64> = perm.iter().map(|&p| shape.get(p as usize).copied().unwrap_or(0)).collect();
                self.layer(i, n, "permute", format!("op: permute, in: {x}, dims: {}", ilist(&perm)), out)
            }
            "Concat" => self.concat(i, n),
            "Split" => self.split(i, n),
            "Slice" => self.slice(i, n),
            "Pad" => self.pad(i, n),
            "ReduceMean" => match self.layernorm2d(i, n) {
                Some(r) => r,
                None => self.reduce_mean(i, n),
            },
            "ReduceSumSquare" => self.magnitude(i, n).unwrap_or_else(|| Err(self
                .err(i, n, "a ReduceSumSquare that is not the norm over the channels (axes [1], keepdims 1, then Sqrt)")
                .help("archscope reads sqrt(Σ_c x²) over dimension 1 (its `magnitude`); describe other reductions in YAML"))),
            "Add" | "Mul" | "Sub" | "Div" | "Pow" => self.binary(i, n, op),
            "Reciprocal" => self.reciprocal(i, n),
            "Resize" | "Upsample" => self.resize(i, n),
            "Gather" => self.gather(i, n),
            "Expand" => self.expand_same(i, n).unwrap_or_else(|| self.expand(i, n)),
            "Cast" => self.cast_act(i, n),
            "CastLike" => self.cast_like(i, n),
            "Einsum" => self.einsum(i, n),
            _ => Err(self
                .err(i, n, format!("archscope cannot map the ONNX operator `{op}`"))
                .help("describe this part of the model in archscope YAML (docs/FORMAT.md), or export without it; docs/ONNX.md lists the operators archscope reads")),
        }
    }

    fn unary(
        &mut self,
        i: usize,
        n: &NodeProto,
        op: &str,
        extra: String,
    ) -> Result<(), Diagnostic> {
        let (x, shape) = self.act(i, n, 0)?;
        self.layer(i, n, op, format!("op: {op}, in: {x}{extra}"), shape)
    }

    fn clip(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        let (lo, hi) = if self.opset >= 11 {
            let lo = self
                .constant(i, n, 1)?
                .map(|(_, d)| d.first().copied().unwrap_or(f64::NEG_INFINITY));
            let hi = self
                .constant(i, n, 2)?
                .map(|(_, d)| d.first().copied().unwrap_or(f64::INFINITY));
            (lo, hi)
        } else {
            (
                Some(f64::from(attr_f(n, "min", f32::MIN))),
                Some(f64::from(attr_f(n, "max", f32::MAX))),
            )
        };
        match (lo, hi) {
            (Some(l), Some(h)) if l == 0.0 && h == 6.0 => self.unary(i, n, "relu6", String::new()),
            (Some(0.0), None) => self.unary(i, n, "relu", String::new()),
            (Some(0.0), Some(h)) if h == f64::INFINITY => self.unary(i, n, "relu", String::new()),
            (Some(l), Some(h)) if l.is_infinite() || h.is_infinite() => Err(self
                .err(i, n, format!("Clip with min {l} and max {h}"))
                .help("archscope's clamp (hardtanh) takes finite bounds: export clamp(min=…, max=…) with numbers")),
            (Some(l), Some(h)) if l.partial_cmp(&h) != Some(std::cmp::Ordering::Less) => Err(self
                .err(i, n, format!("Clip with min {l} and max {h}"))
                .help("archscope's clamp (hardtanh) needs min < max: export the model again")),
            (Some(l), Some(h)) => self.unary(
                i,
                n,
                "hardtanh",
                format!(", min: {}, max: {}", yf(l), yf(h)),
            ),
            _ => Err(self
                .err(i, n, "Clip without a lower bound")
                .help("export clamp(min=…, max=…)")),
        }
    }

    /// Sigmoid(x) read by exactly one Mul(x, ·): SiLU.
    fn silu(&mut self, i: usize, n: &NodeProto) -> Result<Option<()>, Diagnostic> {
        let (Some(x), Some(y)) = (n.input.first(), n.output.first()) else {
            return Ok(None);
        };
        let Some((j, m)) = self.sole_reader(i + 1, y) else {
            return Ok(None);
        };
        if m.op_type.as_deref() != Some("Mul")
            || m.input.len() != 2
            || !m.input.iter().any(|s| s == x)
        {
            return Ok(None);
        }
        let (xr, shape) = self.act(i, n, 0)?;
        let base = self.base(m, None, "silu");
        let id = self.emit(i, n, &base, format!("op: silu, in: {xr}"));
        self.set_out(m, 0, id, shape);
        self.done.insert(j);
        Ok(Some(()))
    }

    /// PyTorch's exact GELU: Div(x, √2) → Erf → Add(·, 1) → Mul(x, ·) → Mul(·, 0.5) (the Div
    /// already consumed as a constant-free op is re-read here; the order of the two Muls may
    /// differ).
    fn gelu_erf(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        let fail = |s: &Self| {
            s.err(
                i,
                n,
                "an Erf that is not part of PyTorch's GELU pattern x·0.5·(1 + erf(x/√2))",
            )
            .help("export nn.GELU (opset 20 writes a Gelu node), or describe the layer in YAML")
        };
        // The Div(x, √2) before it was deferred: see `binary`.
        let Some(Val::Act { r: div_r, .. }) =
            n.input.first().and_then(|x| self.vals.get(x)).cloned()
        else {
            return Err(fail(self));
        };
        let Some(x_name) = div_r.strip_prefix("@gelu_div:").map(str::to_string) else {
            return Err(fail(self));
        };
        let next = |s: &Self, t: &str| s.sole_reader(0, t);
        let is_const = |s: &Self, t: &str, v: f64| matches!(s.vals.get(t), Some(Val::Const { data, .. }) if data.len() == 1 && (data[0] - v).abs() < 1e-6);
        let Some((ja, add)) = next(self, &n.output[0]) else {
            return Err(fail(self));
        };
        if add.op_type.as_deref() != Some("Add")
            || !add.input.iter().any(|t| is_const(self, t, 1.0))
        {
            return Err(fail(self));
        }
        let Some((jm1, m1)) = next(self, &add.output[0]) else {
            return Err(fail(self));
        };
        if m1.op_type.as_deref() != Some("Mul") {
            return Err(fail(self));
        }
        // Either Mul(x, add) then Mul(·, 0.5), or Mul(x·0.5, add).
        let other = m1
            .input
            .iter()
            .find(|t| **t != add.output[0])
            .cloned()
            .unwrap_or_default();
        let (last, extra): (&NodeProto, Vec<usize>) = if other == x_name {
            let Some((jm2, m2)) = next(self, &m1.output[0]) else {
                return Err(fail(self));
            };
            if m2.op_type.as_deref() != Some("Mul")
                || !m2.input.iter().any(|t| is_const(self, t, 0.5))
            {
                return Err(fail(self));
            }
            (m2, vec![jm2])
        } else {
            match self
                .producer
                .get(other.as_str())
                .map(|&p| (p, &self.graph.node[p]))
            {
                Some((_, h))
                    if h.op_type.as_deref() == Some("Mul")
                        && h.input.contains(&x_name)
                        && h.input.iter().any(|t| is_const(self, t, 0.5)) =>
                {
                    (m1, vec![])
                }
                _ => return Err(fail(self)),
            }
        };
        let Some(Val::Act { r: xr, shape }) = self.vals.get(&x_name).cloned() else {
            return Err(fail(self));
        };
        let base = self.base(last, None, "gelu");
        let id = self.emit(i, n, &base, format!("op: gelu, in: {xr}"));
        self.set_out(last, 0, id, shape);
        self.done.insert(ja);
        self.done.insert(jm1);
        self.done.extend(extra);
        Ok(())
    }

    fn conv(&mut self, i: usize, n: &NodeProto, transposed: bool) -> Result<(), Diagnostic> {
        let (x, shape) = self.act(i, n, 0)?;
        let Some((wd, wdata)) = self.weight(i, n, 1)? else {
            return Err(self
                .err(i, n, "the convolution has no weight input")
                .help(AGAIN));
        };
        let bias = self.bias(i, n, 2)?;
        let sp = wd.len().saturating_sub(2);
        if !(1..=3).contains(&sp) || shape.len() != sp + 2 {
            return Err(self
                .err(
                    i,
                    n,
                    format!("a {}-D convolution on a rank-{} input", sp, shape.len()),
                )
                .help(
                    "archscope reads 1-D, 2-D and 3-D convolutions (N×C×L, N×C×H×W, N×C×D×H×W)",
                ));
        }
        let k: Vec<u64> = wd[2..].to_vec();
        let Window {
            s,
            d,
            mut pads,
            auto,
        } = self.window(i, n, &k)?;
        let g = attr_i(n, "group", 1).max(1) as u64;
        // The weight against the input's channels: O×(C/g)×k… (ConvTranspose: C×(O/g)×k…).
        let c = shape[1];
        let (per_group, outs) = if transposed {
            (wd[0] == c, wd[1] * g)
        } else {
            (wd[1] * g == c && wd[0] % g == 0, wd[0])
        };
        if !per_group || c % g != 0 {
            return Err(self
                .err(
                    i,
                    n,
                    format!(
                        "weight `{}` has shape {wd:?}, which does not fit an input of {c} channels in {g} group(s)",
                        excerpt(&n.input[1])
                    ),
                )
                .help(AGAIN));
        }
        self.shape_check(i, n, 2, bias.as_ref().map(|b| &b.0[..]), &[outs])?;
        if auto == "SAME_UPPER" || auto == "SAME_LOWER" {
            if transposed {
                return Err(self
                    .err(i, n, "ConvTranspose with auto_pad SAME")
                    .help("export with explicit pads"));
            }
            for a in 0..sp {
                let inp = shape[2 + a];
                let out = inp.div_ceil(s[a]);
                let total = ((out - 1) * s[a] + d[a] * (k[a] - 1) + 1).saturating_sub(inp);
                let (lo, hi) = if auto == "SAME_UPPER" {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                };
                pads[a] = lo;
                pads[sp + a] = hi;
            }
        } else if auto == "VALID" {
            pads = vec![0; 2 * sp];
        }
        let mut x = x;
        let mut shape = shape;
        let sym: Vec<u64> = (0..sp).map(|a| pads[a].min(pads[sp + a])).collect();
        if (0..sp).any(|a| pads[a] != pads[sp + a]) {
            if transposed {
                return Err(self
                    .err(i, n, format!("ConvTranspose with asymmetric pads {pads:?}"))
                    .help("export with symmetric padding"));
            }
            // The excess on one side becomes an explicit zero pad before the convolution.
            let mut fpad = Vec::new();
            for a in (0..sp).rev() {
                fpad.push(pads[a] - sym[a]);
                fpad.push(pads[sp + a] - sym[a]);
            }
            let base = format!(
                "{}_pad",
                self.base(n, n.input.get(1).map(String::as_str), "conv")
            );
            let id = self.emit(
                i,
                n,
                &base,
                format!("op: pad, in: {x}, pad: {}", list(&fpad)),
            );
            for a in 0..sp {
                shape[2 + a] += pads[a] + pads[sp + a] - 2 * sym[a];
            }
            x = id;
        }
        let has_bias = bias.is_some();
        let base = self.base(
            n,
            n.input.get(1).map(String::as_str),
            if transposed { "deconv" } else { "conv" },
        );
        let mut out = vec![shape[0]];
        let (opname, outc) = if transposed {
            let op_pad: Vec<u64> = attr_ints(n, "output_padding")
                .map(|v| v.iter().map(|&x| x as u64).collect())
                .unwrap_or(vec![0; sp]);
            let outc = wd[1] * g;
            out.push(outc);
            for a in 0..sp {
                let o = ((shape[2 + a] - 1) * s[a] + d[a] * (k[a] - 1) + op_pad[a] + 1)
                    .checked_sub(2 * sym[a]);
                out.push(o.unwrap_or(0));
            }
            let extra = if op_pad.iter().any(|&p| p > 0) {
                format!(", output_padding: {}", list(&op_pad))
            } else {
                String::new()
            };
            (
                format!("conv_transpose{sp}d, in: {x}, out: {outc}{extra}"),
                outc,
            )
        } else {
            out.push(wd[0]);
            for a in 0..sp {
                let span = d[a] * (k[a] - 1) + 1;
                let o = (shape[2 + a] + 2 * sym[a])
                    .checked_sub(span)
                    .map(|v| v / s[a] + 1);
                out.push(o.unwrap_or(0));
            }
            (format!("conv{sp}d, in: {x}, out: {}", wd[0]), wd[0])
        };
        let _ = outc;
        let body = format!(
            "op: {opname}, kernel: {}, stride: {}, padding: {}, dilation: {}, groups: {g}, bias: {has_bias}",
            list(&k),
            list(&s),
            list(&sym),
            list(&d)
        );
        let id = self.emit(i, n, &base, body);
        self.put_weight(&id, "weight", &wd, wdata);
        if let Some((bd, bdata)) = bias {
            self.put_weight(&id, "bias", &bd, bdata);
        }
        self.set_out(n, 0, id, out);
        Ok(())
    }

    fn gemm(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        let (x, shape) = self.act(i, n, 0)?;
        let (alpha, beta) = (attr_f(n, "alpha", 1.0), attr_f(n, "beta", 1.0));
        let (ta, tb) = (attr_i(n, "transA", 0), attr_i(n, "transB", 0));
        if alpha != 1.0 || beta != 1.0 || ta != 0 {
            return Err(self.err(i, n, format!("Gemm with alpha {alpha}, beta {beta}, transA {ta}: archscope's linear is y = x·Wᵀ + b")).help("export nn.Linear (alpha = beta = 1, transA = 0)"));
        }
        let Some((wd, wdata)) = self.weight(i, n, 1)? else {
            return Err(self.err(i, n, "Gemm has no B input").help(AGAIN));
        };
        if wd.len() != 2 || shape.len() != 2 {
            return Err(self
                .err(i, n, "Gemm on tensors that are not matrices")
                .help(AGAIN));
        }
        let (out_f, in_f) = if tb == 1 {
            (wd[0], wd[1])
        } else {
            (wd[1], wd[0])
        };
        let wdata = wdata.map(|w| {
            if tb == 1 {
                w
            } else {
                transpose2(&w, wd[0] as usize, wd[1] as usize)
            }
        });
        self.shape_check(i, n, 0, Some(&shape[1..]), &[in_f])?;
        let bias = self.bias(i, n, 2)?;
        if let Some((bd, _)) = &bias {
            if numel(bd) != out_f {
                return Err(self.err(i, n, format!("Gemm's C has shape {bd:?}; archscope's linear adds one bias per output ({out_f})")).help("export nn.Linear"));
            }
        }
        let base = self.base(n, n.input.get(1).map(String::as_str), "linear");
        let lin = Linear {
            x,
            shape,
            out_f,
            in_f,
            w: wdata,
            bias: bias.map(|(_, d)| d),
            tied: None,
        };
        self.linear_node(i, n, n, &base, lin)
    }

    /// Emits a linear layer for node `n` (#`i`) whose result is `out_node`'s output (the Add
    /// of a MatMul's bias, or `n` itself).
    fn linear_node(
        &mut self,
        i: usize,
        n: &NodeProto,
        out_node: &NodeProto,
        base: &str,
        lin: Linear,
    ) -> Result<(), Diagnostic> {
        let Linear {
            x,
            shape,
            out_f,
            in_f,
            w,
            bias,
            tied,
        } = lin;
        let has_bias = bias.is_some();
        let tie = tied
            .as_deref()
            .map_or(String::new(), |t| format!(", tied: {t}"));
        let id = self.emit(
            i,
            n,
            base,
            format!("op: linear, in: {x}, out: {out_f}, bias: {has_bias}{tie}"),
        );
        if tied.is_none() {
            self.put_weight(&id, "weight", &[out_f, in_f], w);
        }
        if let Some(b) = bias {
            self.put_weight(&id, "bias", &[out_f], b);
        }
        let mut out = shape;
        if let Some(l) = out.last_mut() {
            *l = out_f;
        }
        self.set_out(out_node, 0, id, out);
        Ok(())
    }

    fn matmul(&mut self, i: usize, n: &'a NodeProto) -> Result<(), Diagnostic> {
        let (a, ashape) = self.act(i, n, 0)?;
        match self.need(i, n, 1)?.clone() {
            Val::Act {
                r: b,
                shape: bshape,
            } => {
                if ashape.len() < 2 || bshape.len() < 2 {
                    return Err(self
                        .err(i, n, format!("MatMul of shapes {ashape:?} and {bshape:?}: archscope multiplies tensors of rank 2 or more"))
                        .help("describe the layer in YAML"));
                }
                let (ab, bb) = (&ashape[..ashape.len() - 2], &bshape[..bshape.len() - 2]);
                let mut out = broadcast(ab, bb);
                out.push(ashape[ashape.len() - 2]);
                out.push(bshape[bshape.len() - 1]);
                self.layer(i, n, "matmul", format!("op: matmul, in: [{a}, {b}]"), out)
            }
            _ => {
                // x · W (W constant K×N): a linear layer (weight N×K), with the bias of a
                // following Add of a constant vector of N.
                let Some((wd, wdata)) = self.weight(i, n, 1)? else {
                    return Err(self.err(i, n, "MatMul has no second input").help(AGAIN));
                };
                if wd.len() != 2 {
                    return Err(self.err(i, n, format!("MatMul by a constant of shape {wd:?}: archscope reads x·W with W a matrix (a linear layer)")).help("describe the layer in YAML"));
                }
                let (k, nn) = (wd[0], wd[1]);
                self.shape_check(i, n, 0, ashape.last().map(std::slice::from_ref), &[k])?;
                let w = wdata.map(|w| transpose2(&w, k as usize, nn as usize));
                // The Add of a bias right after it.
                let y = n.output[0].clone();
                let mut bias = None;
                let mut out_node = n;
                if let Some((j, m)) = self.sole_reader(i + 1, &y) {
                    if m.op_type.as_deref() == Some("Add") && m.input.len() == 2 {
                        let other = if m.input[0] == y { 1 } else { 0 };
                        let shaped = match self.vals.get(&m.input[other]) {
                            Some(Val::Const { dims, .. }) | Some(Val::Shaped { dims, .. }) => {
                                numel(dims) == nn && dims.len() == 1
                            }
                            _ => false,
                        };
                        if shaped {
                            bias = Some(self.weight(j, m, other)?.map(|(_, d)| d).unwrap_or(None));
                            self.done.insert(j);
                            out_node = m;
                        }
                    }
                }
                let wname = n.input.get(1).cloned();
                let base_node = if wname.as_deref().is_some_and(|w| w.ends_with(".weight")) {
                    n
                } else {
                    out_node
                };
                let base = self.base(base_node, wname.as_deref(), "linear");
                let tied = self.tied_table(n, 1, w.as_deref());
                let lin = Linear {
                    x: a,
                    shape: ashape,
                    out_f: nn,
                    in_f: k,
                    w,
                    bias,
                    tied,
                };
                self.linear_node(i, n, out_node, &base, lin)
            }
        }
    }

    fn batchnorm(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        let (x, shape) = self.act(i, n, 0)?;
        if attr_i(n, "training_mode", 0) != 0
            || n.output.len() > 1 && n.output[1..].iter().any(|o| !o.is_empty())
        {
            return Err(self
                .err(i, n, "BatchNormalization in training mode")
                .help("export the model in eval mode (model.eval())"));
        }
        let eps = attr_f(n, "epsilon", 1e-5);
        let op = match shape.len() {
            2 | 3 => "batchnorm1d",
            4 => "batchnorm2d",
            5 => "batchnorm3d",
            r => {
                return Err(self
                    .err(i, n, format!("BatchNormalization on a rank-{r} tensor"))
                    .help("archscope's batch norms take N×C, N×C×L, N×C×H×W or N×C×D×H×W"))
            }
        };
        let wname = n.input.get(1).cloned();
        let base = self.base(n, wname.as_deref(), "bn");
        let id = self.emit(
            i,
            n,
            &base,
            format!("op: {op}, in: {x}, eps: {}", yf(f64::from(eps))),
        );
        for (k, w) in [
            (1, "weight"),
            (2, "bias"),
            (3, "running_mean"),
            (4, "running_var"),
        ] {
            let Some((dims, data)) = self.weight(i, n, k)? else {
                return Err(self
                    .err(i, n, format!("input {k} ({w}) is missing"))
                    .help(AGAIN));
            };
            self.shape_check(i, n, k, Some(&dims), &shape[1..2])?;
            self.put_weight(&id, w, &dims, data);
        }
        self.set_out(n, 0, id, shape);
        Ok(())
    }

    fn layernorm(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        let (x, shape) = self.act(i, n, 0)?;
        let axis = attr_i(n, "axis", -1);
        let rank = shape.len() as i64;
        let ax = axis_at(axis, rank);
        if ax < 1 || ax >= rank {
            return Err(self
                .err(i, n, format!("LayerNormalization over axis {axis}"))
                .help("archscope normalises trailing dimensions, never the batch"));
        }
        let eps = attr_f(n, "epsilon", 1e-5);
        let scale = self.weight(i, n, 1)?;
        let bias = self.bias(i, n, 2)?;
        let dims = rank - ax;
        let normed = &shape[ax as usize..];
        self.shape_check(i, n, 1, scale.as_ref().map(|w| &w.0[..]), normed)?;
        self.shape_check(i, n, 2, bias.as_ref().map(|w| &w.0[..]), normed)?;
        let wname = n.input.get(1).cloned();
        let base = self.base(n, wname.as_deref(), "ln");
        let id = self.emit(
            i,
            n,
            &base,
            format!(
                "op: layernorm, in: {x}, dims: {dims}, eps: {}, bias: {}",
                yf(f64::from(eps)),
                bias.is_some()
            ),
        );
        if let Some((d, w)) = scale {
            self.put_weight(&id, "weight", &d, w);
        }
        if let Some((d, b)) = bias {
            self.put_weight(&id, "bias", &d, b);
        }
        self.set_out(n, 0, id, shape);
        Ok(())
    }

    /// The sliding-window attributes Conv, ConvTranspose and the pools share, for kernel `k`
    /// (one entry per spatial axis): each size at least 1, one stride and dilation per axis, a
    /// begin and an end pad per axis.
    fn window(&self, i: usize, n: &NodeProto, k: &[u64]) -> Result<Window, Diagnostic> {
        let sp = k.len();
        let s = attr_sizes(n, "strides", vec![1; sp]);
        let d = attr_sizes(n, "dilations", vec![1; sp]);
        let pads = attr_sizes(n, "pads", vec![0; 2 * sp]);
        let auto = attr_s(n, "auto_pad").unwrap_or_else(|| "NOTSET".into());
        if !["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"].contains(&auto.as_str()) {
            return Err(self
                .err(i, n, format!("auto_pad `{}`", excerpt(&auto)))
                .help(
                    "auto_pad is NOTSET, SAME_UPPER, SAME_LOWER or VALID: export the model again",
                ));
        }
        if pads.len() != 2 * sp || s.len() != sp || d.len() != sp {
            return Err(self
                .err(
                    i,
                    n,
                    "pads, strides or dilations do not have one entry per spatial axis",
                )
                .help(AGAIN));
        }
        if let Some(v) = k
            .iter()
            .chain(&s)
            .chain(&d)
            .chain(&pads)
            .find(|&&v| v > MAX_SIZE)
        {
            return Err(self
                .err(i, n, format!("a kernel size, stride, dilation or pad of {v}; archscope takes at most 2^40"))
                .help(AGAIN));
        }
        if k.iter().chain(&s).chain(&d).any(|&v| v == 0) {
            return Err(self
                .err(
                    i,
                    n,
                    format!(
                        "kernel {k:?}, strides {s:?}, dilations {d:?}: each must be at least 1"
                    ),
                )
                .help(AGAIN));
        }
        Ok(Window { s, d, pads, auto })
    }

    fn pool(&mut self, i: usize, n: &NodeProto, max: bool) -> Result<(), Diagnostic> {
        let (x, shape) = self.act(i, n, 0)?;
        let sp = shape.len().saturating_sub(2);
        let k: Vec<u64> = attr_ints(n, "kernel_shape")
            .unwrap_or_default()
            .iter()
            .map(|&v| v as u64)
            .collect();
        if !(1..=3).contains(&sp) || k.len() != sp {
            return Err(self
                .err(i, n, "a pool whose kernel_shape does not match its input")
                .help(AGAIN));
        }
        let Window { s, d, pads, auto } = self.window(i, n, &k)?;
        if auto != "NOTSET" && auto != "VALID" {
            return Err(self
                .err(i, n, format!("a pool with auto_pad {auto}"))
                .help("export with explicit pads"));
        }
        if pads.len() != 2 * sp || (0..sp).any(|a| pads[a] != pads[sp + a]) {
            return Err(self
                .err(i, n, format!("a pool with asymmetric pads {pads:?}"))
                .help("archscope's pools pad both sides alike, as PyTorch's"));
        }
        let ceil = attr_i(n, "ceil_mode", 0) == 1;
        let mut out = vec![shape[0], shape[1]];
        for a in 0..sp {
            let span = d[a] * (k[a] - 1) + 1;
            let num = (shape[2 + a] + 2 * pads[a]).saturating_sub(span);
            let mut o = if ceil { num.div_ceil(s[a]) } else { num / s[a] } + 1;
            if ceil && (o - 1) * s[a] >= shape[2 + a] + pads[a] {
                o -= 1;
            }
            out.push(o);
        }
        let p = list(&pads[..sp]);
        let mut body = format!(
            "op: {}pool{sp}d, in: {x}, kernel: {}, stride: {}, padding: {p}, ceil: {ceil}",
            if max { "max" } else { "avg" },
            list(&k),
            list(&s)
        );
        if max {
            if d.iter().any(|&v| v != 1) {
                let _ = write!(body, ", dilation: {}", list(&d));
            }
        } else {
            let cip = attr_i(n, "count_include_pad", 0) == 1;
            let _ = write!(body, ", count_include_pad: {cip}");
        }
        self.layer(i, n, if max { "maxpool" } else { "avgpool" }, body, out)
    }

    /// The output shape of a Reshape: 0 copies the input's size (unless allowzero), -1 takes
    /// what is left.
    fn reshape_dims(
        &self,
        i: usize,
        n: &NodeProto,
        shape: &[u64],
        target: &[i64],
    ) -> Result<Vec<u64>, Diagnostic> {
        let total: u64 = numel(shape);
        let mut out = Vec::new();
        let mut infer = None;
        for (k, &t) in target.iter().enumerate() {
            match t {
                0 if attr_i(n, "allowzero", 0) == 0 => out.push(shape.get(k).copied().unwrap_or(0)),
                -1 if infer.is_none() => {
                    infer = Some(k);
                    out.push(1);
                }
                t if t > 0 && t as u64 <= MAX_SIZE => out.push(t as u64),
                _ => {
                    return Err(self
                        .err(i, n, format!("Reshape to {target:?}"))
                        .help("a shape holds positive sizes, 0 (copy) and one -1"))
                }
            }
        }
        let known: u64 = numel(&out);
        if let Some(k) = infer {
            if known == 0 || !total.is_multiple_of(known) {
                return Err(self
                    .err(
                        i,
                        n,
                        format!("Reshape of {shape:?} to {target:?}: the sizes do not divide"),
                    )
                    .help(AGAIN));
            }
            out[k] = total / known;
        }
        if numel(&out) != total {
            return Err(self
                .err(
                    i,
                    n,
                    format!("Reshape of {shape:?} ({total} elements) to {target:?}"),
                )
                .help("export the model again with static shapes"));
        }
        Ok(out)
    }

    fn reshape_to(
        &mut self,
        i: usize,
        n: &NodeProto,
        x: &str,
        shape: &[u64],
        out: Vec<u64>,
    ) -> Result<(), Diagnostic> {
        if out.first() != shape.first() {
            if let Some(j) = self.strided_identity(n, shape, &out) {
                // The dynamo exporter's `as_strided` after a pooled map (torchvision Swin's
                // avgpool at batch 1): all of it flattened, then every element gathered back
                // in order to the same shape: the identity.
                let y = self.graph.node[j].output[0].clone();
                let v = Val::Act {
                    r: x.to_string(),
                    shape: shape.to_vec(),
                };
                self.vals.insert(y, v);
                self.done.insert(j);
                return Ok(());
            }
            return Err(self
                .err(
                    i,
                    n,
                    format!("a reshape of {shape:?} to {out:?} changes the batch dimension"),
                )
                .help("archscope keeps the batch first and whole: reshape the other axes only"));
        }
        self.layer(
            i,
            n,
            "reshape",
            format!("op: reshape, in: {x}, shape: {}", list(&out[1..])),
            out,
        )
    }

    /// The node of a `Gather` (axis 0) that reads Reshape `n` of `shape` to one axis (`out`)
    /// and nothing else does, by a constant index of `shape`'s dims holding 0, 1, …: the pair
    /// is the identity.
    fn strided_identity(&self, n: &NodeProto, shape: &[u64], out: &[u64]) -> Option<usize> {
        let total: u64 = shape.iter().product();
        if out != [total] || total > MAX_FOLDED_ELEMENTS as u64 {
            return None;
        }
        let y = n.output.first()?;
        if self.uses.get(y.as_str()).copied() != Some(1) {
            return None;
        }
        let j = self
            .graph
            .node
            .iter()
            .position(|m| m.input.first() == Some(y))?;
        let g = &self.graph.node[j];
        if g.op_type.as_deref() != Some("Gather") || attr_i(g, "axis", 0) != 0 {
            return None;
        }
        let Some(Val::Const {
            dims, data, init, ..
        }) = self.vals.get(g.input.get(1)?)
        else {
            return None;
        };
        let data = match init.as_deref().and_then(|t| self.inits.get(t)) {
            Some(t) if data.is_empty() => proto::tensor_to_f64(t).ok()?,
            _ => data.clone(),
        };
        let in_order = data.iter().enumerate().all(|(k, &v)| v == k as f64);
        (dims.as_slice() == shape && data.len() as u64 == total && in_order).then_some(j)
    }

    fn concat(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        if let Some(r) = self.concat_learned(i, n) {
            return r;
        }
        let mut refs = Vec::new();
        let mut shapes = Vec::new();
        for k in 0..n.input.len() {
            let (r, s) = self.act(i, n, k)?;
            refs.push(r);
            shapes.push(s);
        }
        if shapes.is_empty() {
            return Err(self.err(i, n, "Concat of no inputs").help(AGAIN));
        }
        self.concat_layer(i, n, &shapes, &refs)
    }

    /// The `concat` layer of a Concat node whose inputs are the activations `refs` of sizes
    /// `shapes` (not empty), along the node's axis, which must not be the batch.
    fn concat_layer(
        &mut self,
        i: usize,
        n: &NodeProto,
        shapes: &[Vec<u64>],
        refs: &[String],
    ) -> Result<(), Diagnostic> {
        let rank = shapes[0].len() as i64;
        let axis = attr_i(n, "axis", 1);
        let ax = axis_at(axis, rank);
        if ax <= 0 || ax >= rank {
            return Err(self
                .err(i, n, format!("Concat over axis {axis}"))
                .help("archscope concatenates along a dimension other than the batch"));
        }
        let mut out = shapes[0].clone();
        out[ax as usize] = shapes
            .iter()
            .map(|s| s.get(ax as usize).copied().unwrap_or(0))
            .sum();
        self.layer(
            i,
            n,
            "concat",
            format!("op: concat, in: [{}], dim: {ax}", refs.join(", ")),
            out,
        )
    }

    fn split(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        let (x, shape) = self.act(i, n, 0)?;
        let rank = shape.len() as i64;
        let axis = attr_i(n, "axis", 0);
        let ax = axis_at(axis, rank);
        if ax <= 0 || ax >= rank {
            return Err(self
                .err(i, n, format!("Split over axis {axis}"))
                .help("archscope splits along a dimension other than the batch"));
        }
        let size = shape[ax as usize];
        let given = match attr_ints(n, "split") {
            Some(s) => Some(s),
            None => self.ints(i, n, 1)?,
        };
        if given
            .as_ref()
            .is_some_and(|g| g.iter().any(|&v| v < 0 || v as u64 > size))
            || attr_i(n, "num_outputs", n.output.len() as i64) != n.output.len() as i64
        {
            return Err(self
                .err(
                    i,
                    n,
                    format!(
                        "Split of {size} into {given:?} for {} outputs",
                        n.output.len()
                    ),
                )
                .help(AGAIN));
        }
        let sizes: Vec<u64> = match given {
            Some(s) => s.iter().map(|&v| v as u64).collect(),
            None => {
                // Equal parts, the last one smaller (ONNX's and torch.chunk's rule).
                let parts = n.output.len().max(1) as u64;
                let chunk = size.div_ceil(parts);
                (0..parts)
                    .map(|p| chunk.min(size.saturating_sub(p * chunk)))
                    .collect()
            }
        };
        // Each size is at most `size` (checked above): the sum cannot overflow.
        if sizes.iter().sum::<u64>() != size || sizes.len() != n.output.len() {
            return Err(self
                .err(
                    i,
                    n,
                    format!(
                        "Split of {size} into {sizes:?} for {} outputs",
                        n.output.len()
                    ),
                )
                .help(AGAIN));
        }
        let base = self.base(n, None, "split");
        let id = self.emit(
            i,
            n,
            &base,
            format!("op: split, in: {x}, sizes: {}, dim: {ax}", list(&sizes)),
        );
        for (k, &s) in sizes.iter().enumerate() {
            let mut out = shape.clone();
            out[ax as usize] = s;
            self.set_out(n, k, format!("\"{id}:{k}\""), out);
        }
        Ok(())
    }

    fn slice(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        let (mut x, mut shape) = self.act(i, n, 0)?;
        let starts = self.ints(i, n, 1)?.unwrap_or_default();
        let ends = self.ints(i, n, 2)?.unwrap_or_default();
        let rank = shape.len() as i64;
        let axes = self
            .ints(i, n, 3)?
            .unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = self.ints(i, n, 4)?.unwrap_or_else(|| vec![1; starts.len()]);
        if starts.len() != ends.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(self
                .err(
                    i,
                    n,
                    "Slice's starts, ends, axes and steps differ in length",
                )
                .help(AGAIN));
        }
        let base = self.base(n, None, "slice");
        for k in 0..starts.len() {
            let ax = if axes[k] < 0 { axes[k] + rank } else { axes[k] };
            let step = steps[k];
            if ax <= 0 || ax >= rank || step <= 0 {
                return Err(self
                    .err(
                        i,
                        n,
                        format!("Slice over axis {} with step {step}", axes[k]),
                    )
                    .help(
                        "archscope slices a dimension other than the batch, with a positive step",
                    ));
            }
            let size = shape[ax as usize] as i64;
            // ONNX's own rule: negative bounds count from the end, then clamp to [0, size].
            let fix = |v: i64| (if v < 0 { v + size } else { v }).clamp(0, size);
            let (s, e) = (fix(starts[k]), fix(ends[k]));
            if s == 0 && e == size && step == 1 {
                continue;
            }
            let len = if e > s { (e - s + step - 1) / step } else { 0 };
            if len == 0 {
                return Err(self
                    .err(
                        i,
                        n,
                        format!(
                            "Slice of axis {ax} from {} to {} is empty",
                            starts[k], ends[k]
                        ),
                    )
                    .help("archscope's tensors are never empty"));
            }
            let id = self.emit(
                i,
                n,
                &base,
                format!("op: slice, in: {x}, dim: {ax}, start: {s}, end: {e}, step: {step}"),
            );
            shape[ax as usize] = len as u64;
            x = id;
        }
        if x == self.act(i, n, 0)?.0 {
            let id = self.emit(i, n, &base, format!("op: identity, in: {x}"));
            x = id;
        }
        self.set_out(n, 0, x, shape);
        Ok(())
    }

    fn pad(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        let (x, shape) = self.act(i, n, 0)?;
        let pads = match attr_ints(n, "pads") {
            Some(p) => p,
            None => self.ints(i, n, 1)?.unwrap_or_default(),
        };
        let value = match self.constant(i, n, 2)? {
            Some((_, d)) => d.first().copied().unwrap_or(0.0),
            None => f64::from(attr_f(n, "value", 0.0)),
        };
        if self.input(i, n, 3)?.is_some() {
            return Err(self
                .err(i, n, "Pad with axes")
                .help("export the model again with opset ≤ 17 padding"));
        }
        let rank = shape.len();
        if pads.len() != 2 * rank
            || pads.iter().any(|&p| p < 0 || p as u64 > MAX_SIZE)
            || pads[0] != 0
            || pads[rank] != 0
        {
            return Err(self
                .err(i, n, format!("Pad with pads {pads:?}"))
                .help("archscope pads by 0 or more, never the batch dimension"));
        }
        let mode = match attr_s(n, "mode").as_deref().unwrap_or("constant") {
            "constant" => "constant",
            "reflect" => "reflect",
            "edge" => "replicate",
            "wrap" => "circular",
            m => {
                return Err(self
                    .err(i, n, format!("Pad mode {m}"))
                    .help("modes: constant, reflect, edge, wrap"))
            }
        };
        // F.pad order: the last dim first, [before, after].
        let mut fp = Vec::new();
        let mut last = 1;
        for a in 1..rank {
            if pads[a] != 0 || pads[rank + a] != 0 {
                last = a;
            }
        }
        for a in (last.min(rank - 1)..rank).rev() {
            fp.push(pads[a] as u64);
            fp.push(pads[rank + a] as u64);
        }
        let mut out = shape.clone();
        for a in 0..rank {
            out[a] += (pads[a] + pads[rank + a]) as u64;
        }
        let extra = if mode == "constant" && value != 0.0 {
            format!(", value: {}", yf(value))
        } else {
            String::new()
        };
        self.layer(
            i,
            n,
            "pad",
            format!("op: pad, in: {x}, pad: {}, mode: {mode}{extra}", list(&fp)),
            out,
        )
    }

    fn reduce_mean(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        let (x, shape) = self.act(i, n, 0)?;
        let rank = shape.len() as i64;
        let axes = match attr_ints(n, "axes") {
            Some(a) => a,
            None => self.ints(i, n, 1)?.unwrap_or_else(|| (1..rank).collect()),
        };
        let axes = axes_at(&axes, rank);
        if axes.iter().any(|&a| a <= 0 || a >= rank) {
            return Err(self
                .err(i, n, format!("ReduceMean over axes {axes:?}"))
                .help("archscope averages over dimensions other than the batch"));
        }
        let keep = attr_i(n, "keepdims", 1) == 1;
        let out: Vec<u64> = shape
            .iter()
            .enumerate()
            .filter_map(|(k, &d)| {
                if axes.contains(&(k as i64)) {
                    keep.then_some(1)
                } else {
                    Some(d)
                }
            })
            .collect();
        self.layer(
            i,
            n,
            "mean",
            format!("op: mean, in: {x}, dims: {}, keepdim: {keep}", ilist(&axes)),
            out,
        )
    }

    /// `1 / x` (PyTorch's exporter writes `c / x` as `Reciprocal`, then `Mul` by c): a
    /// `scalar` layer, `rdiv` by 1.
    fn reciprocal(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        let Val::Act { r, shape } = self.need(i, n, 0)?.clone() else {
            return Err(self
                .err(i, n, "a `Reciprocal` of a constant")
                .help("archscope reads the reciprocal of a computed tensor; fold constants before exporting"));
        };
        self.layer(
            i,
            n,
            "scalar",
            format!("op: scalar, in: {r}, operator: rdiv, value: 1.0"),
            shape,
        )
    }

    fn binary(&mut self, i: usize, n: &NodeProto, op: &str) -> Result<(), Diagnostic> {
        let a = self.need(i, n, 0)?.clone();
        let b = self.need(i, n, 1)?.clone();
        if op == "Sub" && matches!(a, Val::Const { init: None, .. }) && matches!(b, Val::Act { .. })
        {
            if let Some(r) = self.yolo_decode(i, n) {
                return r;
            }
        }
        if let Some(r) = self.scaled_attention(i, n) {
            return r;
        }
        match (&a, &b) {
            (Val::Act { r: ra, shape: sa }, Val::Act { r: rb, shape: sb })
                if op == "Add" || op == "Mul" =>
            {
                let out = broadcast(sa, sb);
                let name = if op == "Add" { "add" } else { "multiply" };
                self.layer(i, n, name, format!("op: {name}, in: [{ra}, {rb}]"), out)
            }
            (Val::Act { shape, .. }, Val::Const { data, .. })
                if op == "Div"
                    && data.len() == 1
                    && (data[0] - std::f64::consts::SQRT_2).abs() < 1e-4 =>
            {
                // The first step of PyTorch's GELU: the Erf that reads it emits the layer.
                self.vals.insert(
                    n.output[0].clone(),
                    Val::Act {
                        r: format!("@gelu_div:{}", n.input[0]),
                        shape: shape.clone(),
                    },
                );
                Ok(())
            }
            _ => self.arith(i, n, op, &a, &b),
        }
    }

    /// Ultralytics' box decoding as its exporter traces `dist2bbox(dfl(boxes), anchors) ×
    /// strides` (Detect._inference): from the DFL distances D (N×4×A), `lt = D[:, :2]`,
    /// `rb = D[:, 2:]`, `x1y1 = anchors − lt` (this `Sub`), `x2y2 = anchors + rb`,
    /// `cat((x1y1 + x2y2) / 2, x2y2 − x1y1) × strides`, the anchors and strides constants of
    /// `make_anchors(feats, stride, 0.5)`. Read as one `dist2bbox` layer, its levels (cells and
    /// stride) recovered from the two constants, which must be exactly make_anchors' (cell
    /// centres row by row, one stride per level). `None`: not this pattern (the caller reports
    /// the `Sub`); `Some(Err)`: the pattern with constants that are not make_anchors'.
    fn yolo_decode(&mut self, i: usize, n: &NodeProto) -> Option<Result<(), Diagnostic>> {
        let g = self.graph;
        let op_is = |m: &NodeProto, o: &str| m.op_type.as_deref() == Some(o);
        let prod = |t: &str| self.producer.get(t).map(|&p| (p, &g.node[p]));
        let readers = |t: &str| -> Vec<(usize, &'a NodeProto)> {
            g.node
                .iter()
                .enumerate()
                .skip(i + 1)
                .filter(|(_, m)| m.input.iter().any(|v| v == t))
                .collect()
        };
        let consts = |t: &str| match self.vals.get(t) {
            Some(Val::Const { dims, data, .. }) => Some((dims.clone(), data.clone())),
            _ => None,
        };
        // lt: a Slice of D over channels 0..2; D the DFL distances N×4×A.
        let (_, sl) = prod(&n.input[1])?;
        if !op_is(sl, "Slice") {
            return None;
        }
        let d_name = sl.input.first()?.clone();
        let Some(Val::Act {
            r: d_ref,
            shape: d_shape,
        }) = self.vals.get(&d_name).cloned()
        else {
            return None;
        };
        if d_shape.len() != 3 || d_shape[1] != 4 {
            return None;
        }
        let a = d_shape[2] as usize;
        let x1y1 = &n.output[0];
        let (anchors_dims, anchors) = consts(&n.input[0])?;
        if anchors_dims.iter().product::<u64>() as usize != 2 * a {
            return None;
        }
        let rd = readers(x1y1);
        let (ja, add) = *rd.iter().find(|(_, m)| op_is(m, "Add"))?;
        let (js, sub2) = *rd.iter().find(|(_, m)| op_is(m, "Sub"))?;
        if rd.len() != 2 {
            return None;
        }
        let x2y2 = add.input.iter().find(|t| *t != x1y1)?.clone();
        let (jx, add2) = prod(&x2y2)?;
        if !op_is(add2, "Add") || sub2.input.first() != Some(&x2y2) {
            return None;
        }
        let (_, rb_slice) = add2
            .input
            .iter()
            .find_map(|t| prod(t).filter(|(_, m)| op_is(m, "Slice")))?;
        let anchors2 = add2.input.iter().find_map(|t| consts(t))?;
        if rb_slice.input.first() != Some(&d_name) || anchors2.1 != anchors {
            return None;
        }
        let rdiv = readers(&add.output[0]);
        let [(jd, div)] = rdiv[..] else { return None };
        let two = div.input.get(1).and_then(|t| consts(t));
        if !op_is(div, "Div") || two.map(|c| c.1) != Some(vec![2.0]) {
            return None;
        }
        let rc = readers(&div.output[0]);
        let [(jc, cat)] = rc[..] else { return None };
        if !op_is(cat, "Concat")
            || cat.input.len() != 2
            || cat.input[1] != sub2.output[0]
            || attr_i(cat, "axis", 0) != 1
        {
            return None;
        }
        let rm = readers(&cat.output[0]);
        let [(jm, mul)] = rm[..] else { return None };
        if !op_is(mul, "Mul") {
            return None;
        }
        let (_, strides) = mul.input.iter().find_map(|t| consts(t))?;
        if strides.len() != a {
            return None;
        }
        // The levels: runs of equal stride; each a grid of cell centres (x + 0.5, y + 0.5) row
        // by row, as make_anchors lays them out.
        let bad = |s: &Self, why: String| {
            Some(Err(s
                .err(i, n, format!("Ultralytics' box decoding, but {why}"))
                .help("export the model with Ultralytics' exporter as it is, or describe the head in YAML")))
        };
        let (mut heights, mut widths, mut level_strides) = (vec![], vec![], vec![]);
        let mut k = 0;
        while k < a {
            let st = strides[k];
            let len = strides[k..].iter().take_while(|&&v| v == st).count();
            let w = (0..len)
                .take_while(|&q| anchors[a + k + q] == anchors[a + k])
                .count();
            if st < 1.0 || st.fract() != 0.0 || w == 0 || len % w != 0 {
                return bad(
                    self,
                    format!(
                        "its strides from anchor {k} are not one whole stride over a grid of cells"
                    ),
                );
            }
            let h = len / w;
            for y in 0..h {
                for x in 0..w {
                    let q = k + y * w + x;
                    if anchors[q] != x as f64 + 0.5 || anchors[a + q] != y as f64 + 0.5 {
                        return bad(
                            self,
                            format!(
                                "anchor {q} is ({}, {}), not the cell centre ({}.5, {}.5)",
                                anchors[q],
                                anchors[a + q],
                                x,
                                y
                            ),
                        );
                    }
                }
            }
            heights.push(h as u64);
            widths.push(w as u64);
            level_strides.push(st as u64);
            k += len;
        }
        // The two Slice layers already written read D for the pattern alone: removed.
        for t in [&n.input[1], &rb_slice.output[0]] {
            if self.uses.get(t.as_str()) == Some(&1) {
                if let Some(Val::Act { r, .. }) = self.vals.get(t.as_str()) {
                    let head = format!("{{id: {r}, ");
                    if let Some(q) = self.yaml_nodes.iter().position(|y| y.starts_with(&head)) {
                        self.yaml_nodes.remove(q);
                        self.origins.remove(q);
                    }
                }
            }
        }
        let base = self.base(mul, None, "dist2bbox");
        let id = self.emit(
            i,
            n,
            &base,
            format!(
                "op: dist2bbox, in: {d_ref}, heights: {}, widths: {}, strides: {}",
                list(&heights),
                list(&widths),
                list(&level_strides)
            ),
        );
        self.set_out(mul, 0, id, d_shape);
        self.done.extend([ja, js, jx, jd, jc, jm]);
        Some(Ok(()))
    }

    fn resize(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        let (x, shape) = self.act(i, n, 0)?;
        let sp = shape.len().saturating_sub(2);
        let op = n.op_type.as_deref().unwrap_or("");
        // Resize: X, roi, scales, sizes; Upsample: X, scales.
        let (scales, sizes) = if op == "Upsample" {
            (self.constant(i, n, 1)?.map(|c| c.1), None)
        } else {
            (
                self.constant(i, n, 2)?
                    .map(|c| c.1)
                    .filter(|v| !v.is_empty()),
                self.ints(i, n, 3)?.filter(|v| !v.is_empty()),
            )
        };
        let bad_size = sizes
            .as_ref()
            .is_some_and(|v| v.iter().any(|&x| x <= 0 || x as u64 > MAX_SIZE));
        let bad_scale = scales
            .as_ref()
            .is_some_and(|v| v.iter().any(|&f| !(f > 0.0 && f <= MAX_SIZE as f64)));
        if bad_size || bad_scale {
            return Err(self
                .err(
                    i,
                    n,
                    format!("Resize to sizes {sizes:?}, scales {scales:?}"),
                )
                .help("sizes and scales are positive (and at most 2^40): export the model again"));
        }
        let out: Vec<u64> = match (&scales, &sizes) {
            (_, Some(s)) if s.len() == shape.len() => s.iter().map(|&v| v as u64).collect(),
            (Some(sc), _) if sc.len() == shape.len() => shape
                .iter()
                .zip(sc)
                .map(|(&d, &f)| (d as f64 * f).floor() as u64)
                .collect(),
            _ => {
                return Err(self
                    .err(
                        i,
                        n,
                        "Resize without constant scales or sizes for every axis",
                    )
                    .help("export with a fixed scale_factor or size"))
            }
        };
        if out[0] != shape[0] || out[1] != shape[1] || !(1..=3).contains(&sp) {
            return Err(self
                .err(i, n, "Resize of the batch or channel dimension")
                .help("archscope resizes spatial axes only"));
        }
        let mode = attr_s(n, "mode").unwrap_or_else(|| "nearest".into());
        let ct = attr_s(n, "coordinate_transformation_mode").unwrap_or_else(|| {
            if op == "Upsample" {
                "asymmetric".into()
            } else {
                "half_pixel".into()
            }
        });
        let nearest_mode = attr_s(n, "nearest_mode").unwrap_or_else(|| "round_prefer_floor".into());
        let (m, align) = match (mode.as_str(), ct.as_str()) {
            ("nearest", "asymmetric") if nearest_mode == "floor" || op == "Upsample" => ("nearest", None),
            ("nearest", "half_pixel" | "tf_half_pixel_for_nn") if nearest_mode != "floor" => ("nearest_exact", None),
            ("linear", "half_pixel" | "pytorch_half_pixel") => (["linear", "bilinear", "trilinear"][sp - 1], Some(false)),
            ("linear", "align_corners") => (["linear", "bilinear", "trilinear"][sp - 1], Some(true)),
            ("cubic", "half_pixel" | "pytorch_half_pixel") if sp == 2 => ("bicubic", Some(false)),
            ("cubic", "align_corners") if sp == 2 => ("bicubic", Some(true)),
            _ => return Err(self.err(i, n, format!("Resize with mode {mode}, coordinate_transformation_mode {ct}, nearest_mode {nearest_mode}")).help("archscope reads PyTorch's interpolate modes: nearest, nearest-exact, (bi/tri)linear and bicubic")),
        };
        // Integer scales as scale (PyTorch's scale_factor), else the size.
        let by_scale = scales.as_ref().is_some_and(|sc| {
            sc.len() == shape.len() && sc[2..].iter().all(|f| f.fract() == 0.0 && *f >= 1.0)
        });
        let what = if by_scale {
            let sc: Vec<u64> = scales.unwrap_or_default()[2..]
                .iter()
                .map(|&f| f as u64)
                .collect();
            format!("scale: {}", list(&sc))
        } else {
            format!("size: {}", list(&out[2..]))
        };
        let extra = align
            .map(|a| format!(", align_corners: {a}"))
            .unwrap_or_default();
        self.layer(
            i,
            n,
            "upsample",
            format!("op: upsample, in: {x}, {what}, mode: {m}{extra}"),
            out,
        )
    }

    fn gather(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        if let Some(r) = self.embedding(i, n) {
            return r;
        }
        let (x, shape) = self.act(i, n, 0)?;
        let idx = self.constant(i, n, 1)?;
        let rank = shape.len() as i64;
        let axis = attr_i(n, "axis", 0);
        let ax = axis_at(axis, rank);
        match idx {
            Some((dims, d)) if dims.is_empty() && d.len() == 1 && ax > 0 && ax < rank => {
                let index = d[0] as i64;
                let mut out = shape.clone();
                out.remove(ax as usize);
                self.layer(i, n, "select", format!("op: select, in: {x}, dim: {ax}, index: {index}"), out)
            }
            _ => Err(self.err(i, n, "Gather of a computed tensor by anything but one constant index along a non-batch axis").help("archscope reads x[:, k] (a select); describe other indexing in YAML")),
        }
    }

    /// Folds a node whose inputs are all constants (or the shape of a computed tensor).
    fn fold(&mut self, i: usize, n: &NodeProto) -> Result<Option<()>, Diagnostic> {
        let op = n.op_type.as_deref().unwrap_or("");
        if op == "Constant" {
            let t = n
                .attribute
                .first()
                .ok_or_else(|| self.err(i, n, "Constant without a value").help(AGAIN))?;
            let (dims, data) = match t.name.as_deref() {
                Some("value") => {
                    let tp = t
                        .t
                        .as_ref()
                        .ok_or_else(|| self.err(i, n, "Constant without a tensor").help(AGAIN))?;
                    // Bounded before decoding (a negative dimension is the decoder's error).
                    if let Some(count) = proto::element_count(tp) {
                        self.check_fold_size(i, n, usize::try_from(count).unwrap_or(usize::MAX))?;
                    }
                    // Integer constants are read exactly.
                    let data = proto::tensor_to_f64(tp)
                        .map_err(|e| self.data_err(i, n, &n.output[0], e))?;
                    let dims: Vec<u64> = tp.dims.iter().map(|&d| d as u64).collect();
                    (dims, data)
                }
                Some("value_float") => (vec![], vec![f64::from(t.f.unwrap_or(0.0))]),
                Some("value_floats") => (
                    vec![t.floats.len() as u64],
                    t.floats.iter().map(|&v| f64::from(v)).collect(),
                ),
                Some("value_int") => (vec![], vec![t.i.unwrap_or(0) as f64]),
                Some("value_ints") => (
                    vec![t.ints.len() as u64],
                    t.ints.iter().map(|&v| v as f64).collect(),
                ),
                other => {
                    return Err(self
                        .err(i, n, format!("Constant with `{}`", other.unwrap_or("")))
                        .help("archscope reads numeric Constant values"))
                }
            };
            self.check_fold_size(i, n, data.len())?;
            self.spend_fold(i, n, data.len(), 0)?;
            self.vals
                .insert(n.output[0].clone(), Val::folded(dims, data));
            return Ok(Some(()));
        }
        if op == "Transpose" {
            match self.input(i, n, 0)?.cloned() {
                Some(Val::Const {
                    dims,
                    init: Some(init),
                    trans,
                    ..
                }) if dims.len() == 2 && attr_ints(n, "perm").is_none_or(|p| p == [1, 0]) => {
                    let dims = vec![dims[1], dims[0]];
                    let v = Val::Const {
                        dims,
                        data: Vec::new(),
                        init: Some(init),
                        trans: !trans,
                    };
                    self.vals.insert(n.output[0].clone(), v);
                    return Ok(Some(()));
                }
                Some(Val::Shaped { dims }) if dims.len() == 2 => {
                    let v = Val::Shaped {
                        dims: vec![dims[1], dims[0]],
                    };
                    self.vals.insert(n.output[0].clone(), v);
                    return Ok(Some(()));
                }
                _ => {}
            }
        }
        if op == "Identity" {
            if let Some(v @ (Val::Const { .. } | Val::Shaped { .. })) =
                self.input(i, n, 0)?.cloned()
            {
                self.vals.insert(n.output[0].clone(), v);
                return Ok(Some(()));
            }
        }
        // CastLike (the dynamo exporter's unoptimised graphs: a constant cast like the input)
        // of a value archscope knows: the value in the second input's type (integer or float).
        if op == "CastLike" {
            if let Some(v) = self.input(i, n, 0)?.cloned() {
                let int = n.input.get(1).is_some_and(|x| self.ints.contains(x));
                let v = match v {
                    Val::Const { dims, data, .. } => {
                        let data = data
                            .iter()
                            .map(|&x| if int { x.trunc() } else { f64::from(x as f32) })
                            .collect();
                        Val::folded(dims, data)
                    }
                    Val::Shaped { .. } if !int => v,
                    _ => return Ok(None),
                };
                self.vals.insert(n.output[0].clone(), v);
                return Ok(Some(()));
            }
        }
        if op == "Shape" {
            if let Some(
                Val::Act { shape, .. }
                | Val::Shaped { dims: shape, .. }
                | Val::Const { dims: shape, .. },
            ) = self.input(i, n, 0)?.cloned()
            {
                let rank = shape.len() as i64;
                let fix = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
                let s = fix(attr_i(n, "start", 0));
                let e = fix(attr_i(n, "end", rank));
                let data: Vec<f64> = shape[s..e.max(s)].iter().map(|&d| d as f64).collect();
                self.vals.insert(
                    n.output[0].clone(),
                    Val::folded(vec![data.len() as u64], data),
                );
                return Ok(Some(()));
            }
        }
        let mut consts = Vec::new();
        for (k, x) in n.input.iter().enumerate() {
            if x.is_empty() {
                consts.push(None);
                continue;
            }
            match self.input(i, n, k)? {
                Some(Val::Const { dims, data, .. }) if data.len() as u64 == numel(dims) => {
                    consts.push(Some((dims.clone(), data.clone())))
                }
                // A mask's comparisons and logic read initializers left undecoded (gpt.rs).
                Some(Val::Const { .. }) if gpt::folds_logic(op) || self.gpt.evaluating => {
                    match self.const_values(x) {
                        Some(c) => consts.push(Some(c)),
                        None => return Ok(None),
                    }
                }
                _ => return Ok(None),
            }
        }
        if consts.is_empty() {
            return Ok(None);
        }
        if let Some((dims, data)) = self.fold_more(op, n, &consts) {
            self.check_fold_size(i, n, data.len())?;
            self.spend_fold(i, n, data.len(), 0)?;
            self.vals
                .insert(n.output[0].clone(), Val::folded(dims, data));
            return Ok(Some(()));
        }
        let c = |k: usize| consts.get(k).cloned().flatten();
        let first = c(0).unwrap_or_default();
        let result: Option<(Vec<u64>, Vec<f64>)> = match op {
            "Identity" | "Cast" | "Dropout" => Some(first),
            "Unsqueeze" | "Squeeze" | "Reshape" | "Flatten" => {
                let (dims, data) = first;
                let total = data.len() as u64;
                let new_dims = match op {
                    "Flatten" => vec![
                        dims.first().copied().unwrap_or(1),
                        total / dims.first().copied().unwrap_or(1).max(1),
                    ],
                    "Reshape" => {
                        let t: Vec<i64> = c(1)
                            .unwrap_or_default()
                            .1
                            .iter()
                            .map(|&v| v as i64)
                            .collect();
                        let known: u64 = t
                            .iter()
                            .enumerate()
                            .map(|(k, &v)| {
                                if v == 0 {
                                    dims.get(k).copied().unwrap_or(1)
                                } else if v < 0 {
                                    1
                                } else {
                                    v as u64
                                }
                            })
                            .product();
                        t.iter()
                            .enumerate()
                            .map(|(k, &v)| {
                                if v == 0 {
                                    dims.get(k).copied().unwrap_or(1)
                                } else if v < 0 {
                                    total / known.max(1)
                                } else {
                                    v as u64
                                }
                            })
                            .collect()
                    }
                    _ => {
                        let axes: Vec<i64> = attr_ints(n, "axes").unwrap_or_else(|| {
                            c(1).map(|v| v.1.iter().map(|&x| x as i64).collect())
                                .unwrap_or_default()
                        });
                        if op == "Squeeze" {
                            squeezed(&dims, &axes, false)
                        } else {
                            unsqueezed(&dims, &axes)
                        }
                    }
                };
                Some((new_dims, data))
            }
            "Concat" => {
                let mut data = Vec::new();
                let mut all_1d = true;
                for k in 0..consts.len() {
                    let (d, v) = c(k).unwrap_or_default();
                    all_1d &= d.len() <= 1;
                    data.extend(v);
                }
                all_1d.then(|| (vec![data.len() as u64], data))
            }
            "Gather" => {
                let (d, v) = first;
                let (id, iv) = c(1).unwrap_or_default();
                if d.len() == 1 && attr_i(n, "axis", 0) == 0 {
                    let len = v.len() as i64;
                    let got: Option<Vec<f64>> = iv
                        .iter()
                        .map(|&x| {
                            let k = x as i64;
                            let k = if k < 0 { k + len } else { k };
                            v.get(usize::try_from(k).ok()?).copied()
                        })
                        .collect();
                    got.map(|g| (id, g))
                } else {
                    None
                }
            }
            "Slice" => {
                let (d, v) = first;
                // Steps other than 1 are `fold::eval`'s.
                let unit = c(4).is_none_or(|(_, s)| s.iter().all(|&x| x == 1.0));
                if d.len() == 1 && unit {
                    let len = v.len() as i64;
                    let s = c(1).and_then(|x| x.1.first().copied()).unwrap_or(0.0) as i64;
                    let e = c(2)
                        .and_then(|x| x.1.first().copied())
                        .unwrap_or(len as f64)
                        .min(len as f64 * 2.0 + 1.0) as i64;
                    let fix = |x: i64| (if x < 0 { x + len } else { x }).clamp(0, len) as usize;
                    let out: Vec<f64> = v[fix(s)..fix(e).max(fix(s))].to_vec();
                    Some((vec![out.len() as u64], out))
                } else {
                    None
                }
            }
            "Add" | "Sub" | "Mul" | "Div" | "Mod" | "Equal" | "Pow" | "Max" | "Min"
                if consts.len() == 2 =>
            {
                let (da, va) = first;
                let (db, vb) = c(1).unwrap_or_default();
                // Only where no broadcasting changes the shape: equal shapes, or one side a
                // single element of no higher rank. Any other pair is `fold::eval`'s (a
                // column minus a row of equal lengths is a square, not their difference).
                if !(da == db
                    || (vb.len() == 1 && db.len() <= da.len())
                    || (va.len() == 1 && da.len() <= db.len()))
                {
                    return self.fold_any(i, n, &consts);
                }
                // Integer division truncates, as ONNX's Div of integers does (torch.chunk's
                // traced `(size + chunks − 1) / chunks`).
                let int_out = n.output.first().is_some_and(|y| self.ints.contains(y));
                let f = |x: f64, y: f64| match op {
                    "Add" => x + y,
                    "Sub" => x - y,
                    "Mul" => x * y,
                    "Div" => {
                        if y == 0.0 {
                            f64::NAN
                        } else if int_out {
                            (x / y).trunc()
                        } else {
                            x / y
                        }
                    }
                    "Mod" => {
                        if y != 0.0 {
                            x.rem_euclid(y)
                        } else {
                            f64::NAN
                        }
                    }
                    "Pow" => x.powf(y),
                    "Max" => x.max(y),
                    "Min" => x.min(y),
                    _ => f64::from(u8::from(x == y)),
                };
                if va.len() == vb.len() {
                    Some((da, va.iter().zip(&vb).map(|(&x, &y)| f(x, y)).collect()))
                } else if vb.len() == 1 {
                    Some((da, va.iter().map(|&x| f(x, vb[0])).collect()))
                } else if va.len() == 1 {
                    Some((db, vb.iter().map(|&y| f(va[0], y)).collect()))
                } else {
                    None
                }
            }
            "Sqrt" | "Neg" | "Floor" | "Ceil" | "Abs" | "Reciprocal" => {
                let (d, v) = first;
                let f = |x: f64| match op {
                    "Sqrt" => x.sqrt(),
                    "Neg" => -x,
                    "Floor" => x.floor(),
                    "Ceil" => x.ceil(),
                    "Abs" => x.abs(),
                    _ => 1.0 / x,
                };
                Some((d, v.iter().map(|&x| f(x)).collect()))
            }
            "ConstantOfShape" => {
                let (_, v) = first;
                let value = attr(n, "value")
                    .and_then(|a| a.t.as_ref())
                    .and_then(|t| proto::tensor_to_f32(t).ok())
                    .and_then(|v| v.first().copied())
                    .unwrap_or(0.0);
                let sizes: Vec<u64> = v.iter().map(|&x| x.max(0.0) as u64).collect();
                let count = numel(&sizes);
                self.check_fold_size(i, n, count as usize)?;
                Some((
                    v.iter().map(|&x| x as u64).collect(),
                    vec![f64::from(value); count as usize],
                ))
            }
            "Where" if consts.len() == 3 => {
                let (dc, vc) = first;
                let (da, va) = c(1).unwrap_or_default();
                let (db, vb) = c(2).unwrap_or_default();
                // Shaped by the condition alone only when neither branch broadcasts it.
                let fits =
                    |d: &Vec<u64>, v: &Vec<f64>| *d == dc || (v.len() == 1 && d.len() <= dc.len());
                if !(fits(&da, &va) && fits(&db, &vb)) {
                    return self.fold_any(i, n, &consts);
                }
                let pick = |v: &Vec<f64>, k: usize| {
                    if v.len() == 1 {
                        v[0]
                    } else {
                        v.get(k).copied().unwrap_or(f64::NAN)
                    }
                };
                Some((
                    dc,
                    vc.iter()
                        .enumerate()
                        .map(|(k, &cnd)| {
                            if cnd != 0.0 {
                                pick(&va, k)
                            } else {
                                pick(&vb, k)
                            }
                        })
                        .collect(),
                ))
            }
            _ => None,
        };
        match result {
            Some((dims, data)) => {
                self.check_fold_size(i, n, data.len())?;
                self.spend_fold(i, n, data.len(), 0)?;
                self.vals
                    .insert(n.output[0].clone(), Val::folded(dims, data));
                Ok(Some(()))
            }
            None => self.fold_any(i, n, &consts),
        }
    }

    /// Folds a node of constant inputs the rules above do not cover (multi-dimensional
    /// `Slice`, `Gather`, `Concat`, `Transpose`, `Expand`, `Where`, `ScatterND`, `Range`, …)
    /// with `fold::eval`, in the element types `self.ints` gives; every value made holds at
    /// most [`MAX_FOLDED_ELEMENTS`]. `Ok(None)`: an operator it does not compute.
    fn fold_any(
        &mut self,
        i: usize,
        n: &NodeProto,
        consts: &[Option<(Vec<u64>, Vec<f64>)>],
    ) -> Result<Option<()>, Diagnostic> {
        let ts: Vec<Option<fold::T>> = consts
            .iter()
            .zip(&n.input)
            .map(|(c, x)| {
                c.as_ref().map(|(d, v)| {
                    fold::T::new(
                        d.iter().map(|&x| x as usize).collect(),
                        v.clone(),
                        self.ints.contains(x),
                    )
                })
            })
            .collect();
        let ins: Vec<Option<&fold::T>> = ts.iter().map(Option::as_ref).collect();
        match fold::eval(n, &ins, self.opset, MAX_FOLDED_ELEMENTS) {
            Ok(outs) => {
                let made: usize = outs.iter().map(|t| t.data.len()).sum();
                // A MatMul's multiply-adds: its output's elements times the inner size.
                let work = match (n.op_type.as_deref(), ts.first()) {
                    (Some("MatMul"), Some(Some(a))) => {
                        made as u64 * a.dims.last().copied().unwrap_or(0) as u64
                    }
                    _ => 0,
                };
                self.spend_fold(i, n, made, work)?;
                for (y, t) in n.output.iter().zip(outs) {
                    let dims = t.dims.iter().map(|&d| d as u64).collect();
                    self.vals.insert(y.clone(), Val::folded(dims, t.data));
                }
                Ok(Some(()))
            }
            Err(e) if e.contains("more than the") => Err(self
                .err(
                    i,
                    n,
                    format!("folding this node of constant inputs makes {e}"),
                )
                .help("store large tensors as initializers")),
            Err(_) => Ok(None),
        }
    }

    /// Counts a folded value of `elements` (and a MatMul's `work`) against the whole file's
    /// budget; the attention-mask evaluations of `gpt.rs` too (each probe's values are dropped
    /// once checked, but computing them is work all the same).
    fn spend_fold(
        &mut self,
        i: usize,
        n: &NodeProto,
        elements: usize,
        work: u64,
    ) -> Result<(), Diagnostic> {
        self.folded.0 = self.folded.0.saturating_add(elements as u64);
        self.folded.1 = self.folded.1.saturating_add(work);
        if self.folded.0 > MAX_FOLDED_TOTAL {
            return Err(self
                .err(
                    i,
                    n,
                    format!(
                        "folding this node brings the constants folded in this file to {} elements; archscope folds at most {MAX_FOLDED_TOTAL} in all",
                        self.folded.0
                    ),
                )
                .help("store large constant tensors as initializers, or fold the model before reading (onnxsim)"));
        }
        if self.folded.1 > MAX_FOLD_WORK {
            return Err(self
                .err(
                    i,
                    n,
                    format!(
                        "folding this MatMul brings the multiply-adds of the MatMuls folded in this file to {}; archscope folds at most {MAX_FOLD_WORK} in all",
                        self.folded.1
                    ),
                )
                .help("store the products as initializers, or fold the model before reading (onnxsim)"));
        }
        Ok(())
    }

    fn check_fold_size(&self, i: usize, n: &NodeProto, len: usize) -> Result<(), Diagnostic> {
        if len > MAX_FOLDED_ELEMENTS {
            return Err(self.err(i, n, format!("a constant of {len} elements; archscope folds constants of at most {MAX_FOLDED_ELEMENTS}")).help("store large tensors as initializers"));
        }
        Ok(())
    }
}

fn transpose2(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            if let (Some(o), Some(v)) = (out.get_mut(c * rows + r), w.get(r * cols + c)) {
                *o = *v;
            }
        }
    }
    out
}

/// Registers initializers as constants (their data decoded lazily as f32 for weights; small
/// integer ones eagerly, for shape arithmetic).
fn init_vals(
    file: &str,
    g: &GraphProto,
) -> Result<HashMap<String, (Vec<u64>, Vec<f64>)>, Diagnostic> {
    let mut out = HashMap::new();
    for t in &g.initializer {
        let name = t.name.clone().unwrap_or_default();
        let dims: Vec<u64> = t.dims.iter().map(|&d| d.max(0) as u64).collect();
        let n = proto::element_count(t).ok_or_else(|| {
            Diagnostic::new(format!(
                "{file}: initializer `{}` has a negative or overflowing dimension",
                excerpt(&name)
            ))
            .help(AGAIN)
        })?;
        if n > crate::graph::MAX_ELEMENTS {
            return Err(Diagnostic::new(format!(
                "{file}: initializer `{}` has {n} elements; at most {}",
                excerpt(&name),
                crate::graph::MAX_ELEMENTS
            ))
            .help("archscope's tensors hold at most 2^40 elements"));
        }
        let small = n as usize <= 64 && t.data_type == Some(proto::dtype::INT64) || n <= 1;
        let data = if small {
            proto::tensor_to_f64(t).map_err(|e| {
                Diagnostic::new(format!("{file}: {}", e.describe(&name))).help(data_help(&e))
            })?
        } else {
            Vec::new()
        };
        out.insert(name, (dims, data));
    }
    Ok(out)
}
