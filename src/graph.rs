//! From a parsed [`ModelSpec`] to a [`Network`]: blocks expanded (parameters bound, `repeat`
//! chained, `first:` overrides, `when:` switches), fused `bn`/`act` turned into real layers,
//! names resolved (`$in`, `name:k` slots, dotted paths), cycles rejected, layers ordered
//! topologically (ties broken by file order), each layer built from its attributes and input
//! shapes. Every error is located: file:line:column, the layer path and its block instance.
//! The built network carries its layer graph (petgraph's) and the [`Topology`] read off it
//! once — consumers, last readers, storage and liveness — which every later pass reads.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::rc::Rc;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::error::{did_you_mean, Diagnostic, Error};
use crate::expr::{substitute, Env};
use crate::layers::{self, Arity, Attrs, Layer, Layout, OpType, Shape};
use crate::spec::{BlockSpec, Defaults, ModelSpec, NodeKind, NodeSpec};
use crate::yaml::{Document, YNode, YValue, YamlPath};

mod topology;

pub use topology::{Liveness, Read, Storage, Topology};

/// Most layers a model may expand to, counting block instances and nodes switched off by
/// `when:` (each costs about as much to expand as a layer; 100k layers build and analyse in
/// about 0.3 s; the largest zoo model has about 1,000).
pub const MAX_LAYERS: usize = 200_000;
/// Most connections the expanded model may have: the inputs of every layer, and the
/// parameters and inputs bound to every block instance. It bounds the work of a model with
/// few layers but very many inputs or block parameters, repeated.
pub const MAX_LINKS: usize = 1_000_000;
/// Largest `repeat:`.
pub const MAX_REPEAT: i64 = 100_000;
/// Most nodes switched off by `when:` that one reference may pass through.
pub const MAX_WHEN_CHAIN: usize = 64;
/// Deepest nesting of blocks inside blocks.
pub const MAX_BLOCK_DEPTH: usize = 32;
/// Largest tensor, in elements, a model may declare or produce (2^40).
pub const MAX_ELEMENTS: u64 = 1 << 40;

/// What the command line adds to a model.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Batch size prepended to every input.
    pub batch: u64,
    /// Replaces the (single) input's per-sample shape, e.g. `[3, 320, 320]`.
    pub input: Option<Vec<u64>>,
    /// Most layers the model may expand to ([`MAX_LAYERS`] by default; lower it to bound
    /// the work done on untrusted input, as the fuzz targets do).
    pub max_layers: usize,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            batch: 1,
            input: None,
            max_layers: MAX_LAYERS,
        }
    }
}

/// A block instance: `conv4.17 = bottleneck(mid: 256)`.
#[derive(Debug, Clone)]
pub struct Instance {
    pub path: String,
    pub block: String,
    pub args: Vec<(String, String)>,
    pub parent: Option<usize>,
    /// Where the `use:` node is written.
    pub at: YamlPath,
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let args: Vec<String> = self.args.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        write!(f, "`{}` = {}({})", self.path, self.block, args.join(", "))
    }
}

/// One layer of the built network.
#[derive(Debug)]
pub struct NetNode {
    /// The layer path, e.g. `conv4.17.c2`, `conv4.17.c2.bn`.
    pub name: String,
    pub layer: Box<dyn Layer>,
    /// (producer node index in [`Network::nodes`], output slot).
    pub inputs: Vec<(usize, usize)>,
    pub in_shapes: Vec<Shape>,
    pub out_shapes: Vec<Shape>,
    /// What each dimension of each input means (its producer's output layout), in input order.
    pub in_layouts: Vec<Layout>,
    /// What each dimension of each output means (`Op::layouts`), one per output.
    pub out_layouts: Vec<Layout>,
    /// The innermost block instance it belongs to (index into [`Network::instances`]).
    pub instance: Option<usize>,
}

impl NetNode {
    /// The inputs whose values meet here, as (input position, (producer, slot)): all but those
    /// the layer takes only the size of (`Layer::reads_values`, e.g. a crop's `like`).
    /// Receptive fields widen and are aligned over these paths only.
    pub fn value_inputs(&self) -> impl Iterator<Item = (usize, (usize, usize))> + '_ {
        self.inputs
            .iter()
            .copied()
            .enumerate()
            .filter(|&(i, _)| self.layer.reads_values(i))
    }
}

/// A model output.
#[derive(Debug, Clone)]
pub struct Output {
    pub name: String,
    pub node: usize,
    pub slot: usize,
}

/// A built network: layers in topological order (ties in file order), with shapes.
#[derive(Debug)]
pub struct Network {
    pub name: String,
    pub nodes: Vec<NetNode>,
    pub outputs: Vec<Output>,
    pub instances: Vec<Instance>,
    /// Per node, the prefix of its tensors' names in a weights file (`prefix.weight`, …): its
    /// path, or what the model's `weights_names:` maps the path to (torchvision's state-dict
    /// names for the zoo's torchvision models).
    pub tensor_prefix: Vec<String>,
    /// The layer graph: node `k` (weight `k`) is `nodes[k]`, an edge from a producer to each
    /// layer reading it, weighted `(output slot, input position)`; `nodes[k].inputs` lists
    /// node `k`'s incoming edges by position.
    pub graph: DiGraph<usize, (usize, usize)>,
    /// The structure facts every pass reads, computed once from `graph` (consumers, last
    /// readers, sources, outputs, liveness).
    pub topology: Topology,
}

impl Network {
    /// Parses, expands and builds a model from YAML text (`file` names it in messages).
    pub fn from_yaml(file: &str, text: &str, opts: &BuildOptions) -> Result<Network, Error> {
        let doc = Document::parse(file, text)?;
        build_network(&doc, opts)
    }
}

/// The per-sample shapes of the model's inputs as the file declares them, without building
/// the model (the CLI uses it to complete `--input HxW` with the declared channels).
pub fn declared_inputs(doc: &Document) -> Result<Vec<(String, Vec<u64>)>, Error> {
    let spec = ModelSpec::from_document(doc).map_err(|d| Error::from(doc.locate_diagnostic(d)))?;
    let mut out = Vec::new();
    for (name, shape) in &spec.inputs {
        let dims = match &shape.value {
            YValue::Seq(items) => items
                .iter()
                .map(|d| crate::layers::attrs_int(d, name).map(|v| v.max(0) as u64))
                .collect::<Result<Vec<u64>, _>>()
                .map_err(|d| Error::from(doc.locate_diagnostic(d)))?,
            // A token-id input `{tokens: L, vocab: V}`: one size, its length.
            YValue::Map(_) => match shape.get("tokens") {
                Some(t) => vec![crate::layers::attrs_int(t, "tokens")
                    .map_err(|d| Error::from(doc.locate_diagnostic(d)))?
                    .max(0) as u64],
                None => Vec::new(),
            },
            _ => Vec::new(),
        };
        out.push((name.clone(), dims));
    }
    Ok(out)
}

/// The per-sample input shape an `--input` of `dims` asks of the model in `doc`, for a
/// declared input of channels and 0 to 3 spatial axes: the whole shape as declared (C×L,
/// C×H×W, C×D×H×W, or F for a flat input), the spatial sizes alone with the channels the file
/// declares (L, H×W, D×H×W), or one size S for a square H×W image. Any 3 sizes on a model with
/// a flat input are taken as C×H×W. Read without building (a model may be valid only at the
/// new size); the caller builds from the same `doc`.
pub fn complete_input(doc: &Document, dims: &[u64]) -> Result<Vec<u64>, Error> {
    let declared = declared_inputs(doc)?;
    let first = declared.first().map(|(_, d)| d.clone()).unwrap_or_default();
    let spatial = first.len().saturating_sub(1);
    let n = dims.len();
    if n == first.len() || (n == 3 && first.len() <= 1) {
        return Ok(dims.to_vec());
    }
    if spatial >= 1 && n == spatial {
        return Ok(std::iter::once(first[0])
            .chain(dims.iter().copied())
            .collect());
    }
    if spatial == 2 && n == 1 {
        return Ok(vec![first[0], dims[0], dims[0]]);
    }
    let x = |d: &[u64]| {
        d.iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("x")
    };
    let forms = match spatial {
        0 => format!("{} (the input is flat)", x(&first)),
        1 => format!("C×L ({}) or L ({})", x(&first), x(&first[1..])),
        2 => format!(
            "C×H×W ({}), H×W ({}) or one size for a square ({})",
            x(&first),
            x(&first[1..]),
            first[2]
        ),
        _ => format!("C×D×H×W ({}) or D×H×W ({})", x(&first), x(&first[1..])),
    };
    Err(Diagnostic::new(format!(
        "--input {} does not fit the model's input {}",
        x(dims),
        x(&first)
    ))
    .help(format!("give {forms}"))
    .into())
}

/// Expands and builds the network described by `doc`.
pub fn build_network(doc: &Document, opts: &BuildOptions) -> Result<Network, Error> {
    let spec = ModelSpec::from_document(doc).map_err(|d| Error::from(doc.locate_diagnostic(d)))?;
    let mut ex = Expander::new(&spec, doc, opts.max_layers);
    let result = ex.run(opts).and_then(|outs| ex.finish(outs));
    result.map_err(|d| Error::from(ex.decorate(d)))
}

/// What a name resolves to: (raw node, its slot, the output slot named last on the way).
type Resolved = (usize, usize, Option<usize>);

#[derive(Debug, Clone)]
enum Ref {
    /// A name as written, resolved in `scope`.
    Name {
        scope: String,
        text: String,
        at: YamlPath,
    },
    /// A raw node and output slot.
    Direct(usize, usize),
}

#[derive(Debug)]
struct Raw {
    path: String,
    op: &'static OpType,
    attrs: Vec<(String, YNode)>,
    env: Rc<Env>,
    inputs: Vec<Ref>,
    node_path: YamlPath,
    instance: Option<usize>,
}

struct Expander<'a> {
    spec: &'a ModelSpec,
    doc: &'a Document,
    raws: Vec<Raw>,
    table: HashMap<String, (Ref, YamlPath)>,
    instances: Vec<Instance>,
    stack: Vec<String>,
    /// Layer being built when an error arises (for decoration).
    current: Option<(String, Option<usize>)>,
    /// The model's `params:`, the outermost scope of every expression.
    model_env: Rc<Env>,
    /// [`BuildOptions::max_layers`].
    max_layers: usize,
    /// Layers, block instances and switched-off nodes expanded so far.
    expanded: usize,
    /// Connections made so far (see [`MAX_LINKS`]).
    links: usize,
    /// Blocks by name.
    block_index: HashMap<&'a str, &'a BlockSpec>,
    /// What each table key resolves to, once known (see [`Expander::follow`]).
    resolved: RefCell<HashMap<String, Resolved>>,
    /// Per node id given `repeat: {count, from}`: the end of the index range filled so far and
    /// the node that filled it.
    ranges: HashMap<String, (usize, YamlPath)>,
}

/// `own` attributes completed by the defaults for `op` (innermost defaults first), without the
/// fused-layer keys `bn` and `act`.
fn default_attrs(
    defaults: &[&Defaults],
    op: &str,
    own: &[(String, YNode)],
) -> Vec<(String, YNode)> {
    let mut attrs = own.to_vec();
    for d in defaults.iter().rev() {
        if let Some((_, kv)) = d.iter().find(|(name, _)| *name == op) {
            for (k, v) in kv {
                if k != "bn" && k != "act" && !attrs.iter().any(|(a, _)| a == k) {
                    attrs.push((k.clone(), v.clone()));
                }
            }
        }
    }
    attrs
}

/// Layer names in a list: the `id`, or for an unnamed node its op (or block) name, suffixed
/// with its position when that name is taken or repeated (`flatten`, `relu_3`, `relu_5`).
/// An automatic name never takes a name another node has: when `relu_3` is an explicit `id`
/// too, the unnamed node becomes the first free of `relu_3_1`, `relu_3_2`, …
/// A node's `repeat:`: how many copies, and the first index with where it is written when
/// given as a mapping (`repeat: {count: 3, from: 4}`: instances `id.4`, `id.5`, `id.6`).
fn parse_repeat(r: &YNode, env: &Env) -> Result<(usize, Option<(usize, YamlPath)>), Diagnostic> {
    let v = substitute(r, env, &[])?;
    let count_of = |c: &YNode| -> Result<usize, Diagnostic> {
        let k = crate::layers::attrs_int(c, "repeat")?;
        if !(1..=MAX_REPEAT).contains(&k) {
            return Err(Diagnostic::new(format!(
                "`repeat: {k}` must be between 1 and {MAX_REPEAT}"
            ))
            .at(&c.path)
            .help(if k < 1 {
                "to leave the node out, write `when: false`; `repeat: 1` is one copy".to_string()
            } else {
                format!("a model expands to at most {MAX_LAYERS} layers in all; repeat a block of layers for depth")
            }));
        }
        Ok(k as usize)
    };
    let YValue::Map(m) = &v.value else {
        return Ok((count_of(&v)?, None));
    };
    for (k, x) in m {
        if k != "count" && k != "from" {
            let mut d = Diagnostic::new(format!("`repeat` has no key `{k}`")).at(&x.path);
            d = match did_you_mean(k, ["count", "from"]) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help("write `repeat: N`, or `repeat: {count: N, from: K}` for instances `id.K` … `id.(K+N-1)`"),
            };
            return Err(d);
        }
    }
    let Some(c) = v.get("count") else {
        return Err(Diagnostic::new("`repeat` as a mapping needs `count`")
            .at(&v.path)
            .help("write `repeat: {count: N, from: K}` for instances `id.K` … `id.(K+N-1)`"));
    };
    let count = count_of(c)?;
    let (from, at) = match v.get("from") {
        None => (0, v.path.clone()),
        Some(f) => {
            let k = crate::layers::attrs_int(f, "from")?;
            if !(0..=MAX_REPEAT).contains(&k) {
                return Err(Diagnostic::new(format!(
                    "`repeat: {{from: {k}}}` must be between 0 and {MAX_REPEAT}"
                ))
                .at(&f.path)
                .help("`from` is the index of the first instance (`from: 4`: `id.4`, `id.5`, …)"));
            }
            (k as usize, f.path.clone())
        }
    };
    Ok((count, Some((from, at))))
}

fn default_names(nodes: &[NodeSpec]) -> Vec<String> {
    let base = |n: &NodeSpec| match &n.kind {
        NodeKind::Op(t) => t.name.to_string(),
        NodeKind::Use(b) => b.clone(),
    };
    // How often each name is taken by an `id` or claimed by an unnamed node: one pass, so a
    // list of many unnamed nodes stays linear.
    let mut ids: HashSet<&str> = HashSet::new();
    let mut unnamed: HashMap<String, usize> = HashMap::new();
    for n in nodes {
        match &n.id {
            Some(id) => {
                ids.insert(id.as_str());
            }
            None => *unnamed.entry(base(n)).or_default() += 1,
        }
    }
    let keeps_base = |b: &str| !ids.contains(b) && unnamed.get(b).copied() == Some(1);
    // Every name given so far or certain to be given: explicit ids and the bases unnamed nodes
    // keep.
    let mut taken: HashSet<String> = ids.iter().map(|s| s.to_string()).collect();
    taken.extend(unnamed.keys().filter(|b| keeps_base(b)).cloned());
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| match &n.id {
            Some(id) => id.clone(),
            None => {
                let b = base(n);
                if keeps_base(&b) {
                    return b;
                }
                let mut name = format!("{b}_{i}");
                let mut k = 1usize;
                while taken.contains(&name) {
                    name = format!("{b}_{i}_{k}");
                    k += 1;
                }
                taken.insert(name.clone());
                name
            }
        })
        .collect()
}

/// What to write when a layer gets the wrong number of inputs.
fn arity_help(arity: Arity) -> String {
    let list = |k: usize| {
        let names: Vec<String> = (0..k.min(4))
            .map(|i| ((b'a' + i as u8) as char).to_string())
            .collect();
        format!("[{}{}]", names.join(", "), if k > 4 { ", …" } else { "" })
    };
    match arity {
        Arity::Exactly(0) => "it takes no input: leave `in` out".to_string(),
        Arity::Exactly(1) => {
            "give one input: `in: name` (or leave `in` out, to take the previous layer)".to_string()
        }
        Arity::Exactly(k) => format!("list exactly {k} inputs: `in: {}`", list(k)),
        Arity::AtLeast(k) => format!("list {k} or more inputs: `in: {}`", list(k.max(2))),
    }
}

fn join(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{scope}.{name}")
    }
}

/// The raw layers as a petgraph graph, an edge from each producer to each layer reading it
/// (node `i` is raw layer `i`): what [`Expander::order`] orders and cycles are found in.
fn raw_graph(edges: &[Vec<(usize, usize)>]) -> DiGraph<usize, ()> {
    let mut g: DiGraph<usize, ()> = DiGraph::with_capacity(edges.len(), edges.len());
    for i in 0..edges.len() {
        g.add_node(i);
    }
    for (i, ins) in edges.iter().enumerate() {
        for &(src, _) in ins {
            g.add_edge(NodeIndex::new(src), NodeIndex::new(i), ());
        }
    }
    g
}

/// The built layers as [`Network::graph`]: node `k` is `nodes[k]`, an edge per input, weighted
/// (output slot, input position).
fn layer_graph(nodes: &[NetNode]) -> DiGraph<usize, (usize, usize)> {
    let n = nodes.len();
    let mut g: DiGraph<usize, (usize, usize)> = DiGraph::with_capacity(n, n);
    for k in 0..n {
        g.add_node(k);
    }
    for (k, node) in nodes.iter().enumerate() {
        for (p, &(src, slot)) in node.inputs.iter().enumerate() {
            g.add_edge(NodeIndex::new(src), NodeIndex::new(k), (slot, p));
        }
    }
    g
}

/// `raw` takes `got` inputs: an error unless its op's arity allows that many.
fn check_arity(raw: &Raw, got: usize) -> Result<(), Diagnostic> {
    let ok = match raw.op.arity {
        Arity::Exactly(k) => got == k,
        Arity::AtLeast(k) => got >= k,
    };
    if ok {
        return Ok(());
    }
    let want = match raw.op.arity {
        Arity::Exactly(k) => format!("exactly {k}"),
        Arity::AtLeast(k) => format!("at least {k}"),
    };
    Err(
        Diagnostic::new(format!("{} takes {want} input(s), got {got}", raw.op.name))
            .at(&raw.node_path)
            .note(format!("{}: {}", raw.op.name, raw.op.summary))
            .help(arity_help(raw.op.arity)),
    )
}

/// The scope of `raw`'s expressions: its own, with the first input's sizes bound: `in_ch`, and
/// per spatial axis `in_l` (N×C×L), `in_h`, `in_w` (N×C×H×W), `in_d`, `in_h`, `in_w`
/// (N×C×D×H×W).
fn layer_env(raw: &Raw, in_shapes: &[Shape]) -> Env {
    let mut env = Env::new(Some(raw.env.clone()));
    if let Some(x) = in_shapes.first() {
        let at = raw.node_path.clone();
        let int = |v: u64| YNode::synthetic(YValue::Int(v as i64), at.clone());
        if let Some(c) = x.channels() {
            env.set("in_ch", int(c));
        }
        let names: &[&str] = match x.rank() {
            3 => &["in_l"],
            4 => &["in_h", "in_w"],
            5 => &["in_d", "in_h", "in_w"],
            _ => &[],
        };
        for (name, &v) in names.iter().zip(&x.0[2..]) {
            env.set(name, int(v));
        }
    }
    env
}

/// A layer's tied weight ([`crate::layers::Kernel::tied`]): owned by a layer built before it,
/// with the shape it needs.
fn check_tied(raw: &Raw, t: &crate::layers::Tied, nodes: &[NetNode]) -> Result<(), Diagnostic> {
    let at = raw
        .attrs
        .iter()
        .find(|(k, _)| k == "tied")
        .map_or(raw.node_path.clone(), |(_, v)| v.path.clone());
    let Some(owner) = nodes.iter().find(|n| n.name == t.layer) else {
        let names = nodes.iter().map(|n| n.name.as_str());
        let mut d = Diagnostic::new(format!(
            "`tied: {}` names no layer computed before this one",
            t.layer
        ))
        .at(&at);
        d = d.help(match crate::error::did_you_mean(&t.layer, names) {
            Some(m) => format!("did you mean `{m}`? (a full layer path, as `summary` lists it)"),
            None => "name the embedding or linear layer whose weight this one shares, by its full path (as `summary` lists it)".to_string(),
        });
        return Err(d);
    };
    let Some(spec) = owner
        .layer
        .weights()
        .into_iter()
        .find(|w| w.name == t.weight)
    else {
        return Err(Diagnostic::new(format!(
            "`tied: {}`: that layer ({}) has no `{}` to share",
            t.layer,
            owner.layer.op(),
            t.weight
        ))
        .at(&at)
        .help("tie to an embedding or an untied linear layer"));
    };
    let dims = |v: &[usize]| {
        v.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("×")
    };
    if spec.shape != t.shape {
        return Err(Diagnostic::new(format!(
            "tied weight of a different shape: `{}.{}` is {}, but this layer needs {}",
            t.layer,
            t.weight,
            dims(&spec.shape),
            dims(&t.shape)
        ))
        .at(&at)
        .help("a linear tied to an embedding of `num` ids and `dim` features maps `dim` features to `out: num`"));
    }
    Ok(())
}

/// `raw`'s output shapes: none empty, none over [`MAX_ELEMENTS`].
fn check_outputs(raw: &Raw, out_shapes: &[Shape]) -> Result<(), Diagnostic> {
    for s in out_shapes {
        if s.0.contains(&0) {
            return Err(
                Diagnostic::new(format!("{} produces an empty tensor {s}", raw.op.name))
                    .at(&raw.node_path),
            );
        }
        if s.numel()? > MAX_ELEMENTS {
            return Err(Diagnostic::new(format!(
                "{} produces {s}, more than 2^40 elements",
                raw.op.name
            ))
            .at(&raw.node_path)
            .help("check the input size and the batch"));
        }
    }
    Ok(())
}

/// An op's layouts must describe each of its outputs, dimension for dimension (a rule that
/// does not is a bug in the op, reported rather than carried on).
fn check_layouts(raw: &Raw, out_shapes: &[Shape], layouts: &[Layout]) -> Result<(), Diagnostic> {
    let fits = layouts.len() == out_shapes.len()
        && layouts
            .iter()
            .zip(out_shapes)
            .all(|(l, s)| l.rank() == s.rank());
    if fits {
        return Ok(());
    }
    Err(Diagnostic::new(format!(
        "internal error: {}'s layout rule gives {} layout(s) of ranks {:?} for outputs {}",
        raw.op.name,
        layouts.len(),
        layouts.iter().map(|l| l.rank()).collect::<Vec<_>>(),
        out_shapes
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .at(&raw.node_path)
    .help("please report this model: the op's `layouts` must match its `output_shapes`"))
}

impl<'a> Expander<'a> {
    fn new(spec: &'a ModelSpec, doc: &'a Document, max_layers: usize) -> Self {
        let mut env = Env::new(None);
        for (k, v) in &spec.params {
            env.set(k, v.clone());
        }
        Expander {
            spec,
            doc,
            raws: Vec::new(),
            table: HashMap::new(),
            instances: Vec::new(),
            stack: Vec::new(),
            current: None,
            model_env: Rc::new(env),
            max_layers,
            expanded: 0,
            links: 0,
            block_index: spec.blocks.iter().map(|b| (b.name.as_str(), b)).collect(),
            resolved: RefCell::new(HashMap::new()),
            ranges: HashMap::new(),
        }
    }

    fn decorate(&self, mut d: Diagnostic) -> Diagnostic {
        if let Some((layer, inst)) = &self.current {
            d = d.layer(layer);
            if d.instance.is_none() {
                d.instance = inst.map(|i| {
                    let ins = &self.instances[i];
                    match self.doc.locate(&ins.at) {
                        Some(l) => format!("{ins}, used at {l}"),
                        None => ins.to_string(),
                    }
                });
            }
        }
        self.doc.locate_diagnostic(d)
    }

    fn define(&mut self, key: String, target: Ref, at: &YamlPath) -> Result<(), Diagnostic> {
        if let Some((_, first)) = self.table.get(&key) {
            let first_loc = self
                .doc
                .locate(first)
                .map(|l| l.to_string())
                .unwrap_or_else(|| first.to_string());
            return Err(
                Diagnostic::new(format!("the name `{key}` is defined twice"))
                    .at(at)
                    .note(format!("first defined at {first_loc}"))
                    .help(if self.ranges.contains_key(&key) {
                        "give each layer a unique `id` (only nodes that all give `repeat: {count, from}` may share one)"
                    } else {
                        "give each layer a unique `id`"
                    }),
            );
        }
        self.table.insert(key, (target, at.clone()));
        Ok(())
    }

    /// Defines `id` as the last instance of a node; a node with a first index
    /// (`repeat: {count, from}`) takes the id over from an earlier node of the same id (whose
    /// range [`Expander::claim_range`] checked), so `id` refers to the last instance of the last
    /// such node.
    fn define_last(
        &mut self,
        full: &str,
        from: Option<usize>,
        target: Ref,
        at: &YamlPath,
    ) -> Result<(), Diagnostic> {
        if from.is_some() && self.table.contains_key(full) {
            self.table.insert(full.to_string(), (target, at.clone()));
            return Ok(());
        }
        self.define(full.to_string(), target, at)
    }

    /// Records that the node at `node` fills the instances `full.from` … `full.{from+count-1}`:
    /// they must come after every range an earlier node of that id filled, and the id must not
    /// be a node without a first index.
    fn claim_range(
        &mut self,
        full: &str,
        from: usize,
        count: usize,
        from_at: &YamlPath,
        node: &YamlPath,
    ) -> Result<(), Diagnostic> {
        let loc = |p: &YamlPath| {
            self.doc
                .locate(p)
                .map(|l| l.to_string())
                .unwrap_or_else(|| p.to_string())
        };
        match self.ranges.get(full) {
            Some((end, earlier)) if from < *end => {
                return Err(Diagnostic::new(format!(
                    "`{full}` repeats from {from}, but the node at {} already fills `{full}` up to `{full}.{}`: the ranges overlap",
                    loc(earlier),
                    end - 1
                ))
                .at(from_at)
                .help(format!(
                    "the nodes sharing an id fill index ranges in file order, each after the one before: write `from: {end}` or more, or give this node another `id`"
                )));
            }
            None if self.table.contains_key(full) => {
                let first = &self.table[full].1;
                return Err(Diagnostic::new(format!(
                    "the name `{full}` is defined twice"
                ))
                .at(node)
                .note(format!("first defined at {} (without `repeat: {{count, from}}`)", loc(first)))
                .help("only nodes that all give `repeat: {count, from}` may share an id; give this node another `id`"));
            }
            _ => {}
        }
        self.ranges
            .insert(full.to_string(), (from + count, node.clone()));
        Ok(())
    }

    fn run(&mut self, opts: &BuildOptions) -> Result<Vec<Ref>, Diagnostic> {
        let spec = self.spec;
        // Model inputs.
        if opts.input.is_some() && spec.inputs.len() != 1 {
            return Err(Diagnostic::new(format!(
                "--input replaces the model's one input, but it has {}",
                spec.inputs.len()
            )));
        }
        // A batch or an --input size beyond the element limit can never build: said here,
        // with the value as given (never echoed saturated to i64).
        let sizes = std::iter::once(("the batch", opts.batch))
            .chain(opts.input.iter().flatten().map(|&d| ("an --input size", d)));
        for (what, d) in sizes {
            if d > MAX_ELEMENTS {
                return Err(Diagnostic::new(format!(
                    "{what} is {d}, more than a tensor may hold (2^40 = {MAX_ELEMENTS} elements)"
                ))
                .help("give a smaller --batch or --input"));
            }
        }
        for (name, shape) in &spec.inputs {
            // ≤ 2^40 (checked above): fits in i64.
            let mut dims = vec![YNode::synthetic(
                YValue::Int(opts.batch as i64),
                shape.path.clone(),
            )];
            let mut attrs = Vec::new();
            if let YValue::Map(_) = &shape.value {
                // A token-id input: `{tokens: L, vocab: V}` (checked by spec).
                let get = |k: &str| shape.get(k).cloned().expect("checked by spec");
                attrs.push(("vocab".to_string(), get("vocab")));
                if opts.input.is_none() {
                    dims.push(get("tokens"));
                }
            }
            match &opts.input {
                Some(o) => dims.extend(
                    o.iter()
                        .map(|&d| YNode::synthetic(YValue::Int(d as i64), shape.path.clone())),
                ),
                None => match &shape.value {
                    YValue::Seq(items) => dims.extend(items.iter().cloned()),
                    YValue::Map(_) => {}
                    _ => unreachable!("checked by spec"),
                },
            }
            attrs.push((
                "shape".to_string(),
                YNode::synthetic(YValue::Seq(dims), shape.path.clone()),
            ));
            let idx = self.push_raw(
                name.clone(),
                layers::input_type(),
                attrs,
                Rc::new(Env::new(None)),
                vec![],
                shape.path.clone(),
                None,
            )?;
            self.define(name.clone(), Ref::Direct(idx, 0), &shape.path)?;
        }
        let env = self.model_env.clone();
        let first = Ref::Direct(0, 0);
        let defaults = vec![&spec.defaults];
        let last = self.expand_list(&spec.nodes, "", &env, &defaults, first, None)?;
        Ok(match &spec.outputs {
            None => vec![last],
            Some(outs) => outs
                .iter()
                .map(|o| match o.as_str() {
                    Some(s) => Ok(Ref::Name {
                        scope: String::new(),
                        text: s.to_string(),
                        at: o.path.clone(),
                    }),
                    None => Err(Diagnostic::new(format!(
                        "an output must be a layer name, found {o}"
                    ))
                    .at(&o.path)),
                })
                .collect::<Result<_, _>>()?,
        })
    }

    /// Counts one more expanded node (a layer, a block instance, or a node switched off by
    /// `when:`).
    fn count_node(&mut self, at: &YamlPath) -> Result<(), Diagnostic> {
        self.expanded += 1;
        if self.expanded > self.max_layers {
            return Err(Diagnostic::new(format!(
                "the model expands to more than {} layers (counting block instances and layers switched off by `when:`)",
                self.max_layers
            ))
            .at(at)
            .help("check the `repeat:` counts (and the blocks they repeat)"));
        }
        Ok(())
    }

    /// Counts `n` more connections (see [`MAX_LINKS`]).
    fn count_links(&mut self, n: usize, at: &YamlPath) -> Result<(), Diagnostic> {
        self.links = self.links.saturating_add(n);
        if self.links > MAX_LINKS {
            return Err(Diagnostic::new(format!(
                "the model expands to more than {MAX_LINKS} connections (layer inputs, and block parameters and inputs per instance)"
            ))
            .at(at)
            .help("check the `repeat:` counts, and layers or blocks with very many inputs or parameters"));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn push_raw(
        &mut self,
        path: String,
        op: &'static OpType,
        attrs: Vec<(String, YNode)>,
        env: Rc<Env>,
        inputs: Vec<Ref>,
        node_path: YamlPath,
        instance: Option<usize>,
    ) -> Result<usize, Diagnostic> {
        self.count_node(&node_path)?;
        self.count_links(inputs.len(), &node_path)?;
        self.raws.push(Raw {
            path,
            op,
            attrs,
            env,
            inputs,
            node_path,
            instance,
        });
        Ok(self.raws.len() - 1)
    }

    fn parse_inputs(
        &self,
        n: &NodeSpec,
        scope: &str,
        env: &Env,
    ) -> Result<Option<Vec<Ref>>, Diagnostic> {
        let Some(node) = &n.input else {
            return Ok(None);
        };
        let node = substitute(
            node,
            env,
            &["in", "in0", "in1", "in2", "in3", "in4", "in5", "in6", "in7"],
        )?;
        let one = |x: &YNode| -> Result<Ref, Diagnostic> {
            match x.as_str() {
                Some(s) if !s.is_empty() => Ok(Ref::Name {
                    scope: scope.to_string(),
                    text: s.to_string(),
                    at: x.path.clone(),
                }),
                _ => Err(Diagnostic::new(format!("`in` must name layers, found {x}"))
                    .at(&x.path)
                    .help("write `in: name` or `in: [a, b]`")),
            }
        };
        let refs = match &node.value {
            YValue::Seq(items) => items.iter().map(one).collect::<Result<Vec<_>, _>>()?,
            _ => vec![one(&node)?],
        };
        if refs.is_empty() {
            return Err(Diagnostic::new("`in` is an empty list")
                .at(&node.path)
                .help(
                    "name the input(s), `in: [a, b]`, or leave `in` out to take the previous layer",
                ));
        }
        Ok(Some(refs))
    }

    fn eval_bool(node: &YNode, env: &Env, key: &str) -> Result<bool, Diagnostic> {
        let v = substitute(node, env, &[])?;
        crate::layers::attrs_bool(&v, key)
    }

    fn expand_list(
        &mut self,
        nodes: &[NodeSpec],
        scope: &str,
        env: &Rc<Env>,
        defaults: &[&Defaults],
        first_input: Ref,
        instance: Option<usize>,
    ) -> Result<Ref, Diagnostic> {
        let mut prev = first_input;
        let names = default_names(nodes);
        for (n, name) in nodes.iter().zip(names) {
            let full = join(scope, &name);
            // A layer that takes no inputs (`parameter`) does not take the previous one.
            let sourceless = matches!(&n.kind, NodeKind::Op(t) if t.arity == Arity::Exactly(0));
            let inputs = self.parse_inputs(n, scope, env)?.unwrap_or_else(|| {
                if sourceless {
                    vec![]
                } else {
                    vec![prev.clone()]
                }
            });
            if let Some(w) = &n.when {
                if !Self::eval_bool(w, env, "when")? {
                    if inputs.is_empty() {
                        return Err(Diagnostic::new(
                            "a layer without inputs cannot be switched off: nothing would stand for its name",
                        )
                        .at(&w.path)
                        .help("switch off the layers that read it instead"));
                    }
                    self.count_node(&n.path)?;
                    // A plain `repeat:` of a switched-off node is not evaluated (it may be 0
                    // there); a range (`repeat: {count, from}`) is still claimed.
                    let (repeat, from) = match &n.repeat {
                        Some(r) if matches!(substitute(r, env, &[])?.value, YValue::Map(_)) => {
                            match parse_repeat(r, env)? {
                                (c, Some((f, at))) => {
                                    self.claim_range(&full, f, c, &at, &n.path)?;
                                    (c, Some(f))
                                }
                                (c, None) => (c, None),
                            }
                        }
                        _ => (1, None),
                    };
                    // Switched off: the name (and each instance's) stands for the node's
                    // (first) input.
                    if let Some(f) = from {
                        for r in 0..repeat {
                            let path = join(&full, &(f + r).to_string());
                            self.define(path, inputs[0].clone(), &n.path)?;
                        }
                    }
                    self.define_last(&full, from, inputs[0].clone(), &n.path)?;
                    prev = Ref::Name {
                        scope: scope.to_string(),
                        text: match from {
                            Some(f) => format!("{name}.{}", f + repeat - 1),
                            None => name,
                        },
                        at: n.path.clone(),
                    };
                    continue;
                }
            }
            let (repeat, from) = match &n.repeat {
                None => (1, None),
                Some(r) => parse_repeat(r, env)?,
            };
            // With a first index (`repeat: {count, from}`), several nodes of one list may
            // share the id, filling later index ranges of it.
            let from = match from {
                Some((f, at)) => {
                    self.claim_range(&full, f, repeat, &at, &n.path)?;
                    Some(f)
                }
                None => None,
            };
            let indexed = repeat > 1 || from.is_some();
            let first_index = from.unwrap_or(0);
            match &n.kind {
                NodeKind::Op(t) => {
                    if repeat > 1 && !matches!(t.arity, Arity::Exactly(1)) {
                        return Err(Diagnostic::new(format!(
                            "`repeat` chains a one-input layer; {} takes several",
                            t.name
                        ))
                        .at(&n.path));
                    }
                    let mut input = inputs;
                    let mut out = None;
                    for r in 0..repeat {
                        let path = if indexed {
                            join(&full, &(first_index + r).to_string())
                        } else {
                            full.clone()
                        };
                        let o = self.emit_op(n, t, &path, env, defaults, input, instance)?;
                        if indexed {
                            self.define(path.clone(), o.clone(), &n.path)?;
                        }
                        input = vec![o.clone()];
                        out = Some(o);
                    }
                    self.define_last(&full, from, out.expect("repeat ≥ 1"), &n.path)?;
                }
                NodeKind::Use(bname) => {
                    let block = self
                        .block_index
                        .get(bname.as_str())
                        .copied()
                        .ok_or_else(|| {
                            let mut d =
                                Diagnostic::new(format!("unknown block `{bname}`")).at(&n.path);
                            d = match did_you_mean(
                                bname,
                                self.spec.blocks.iter().map(|b| b.name.as_str()),
                            ) {
                                Some(s) => d.help(format!("did you mean `{s}`?")),
                                None => d.help("define it under `blocks:`"),
                            };
                            d
                        })?;
                    if self.stack.contains(bname) {
                        return Err(Diagnostic::new(format!(
                            "block `{bname}` uses itself ({} → {bname})",
                            self.stack.join(" → ")
                        ))
                        .at(&n.path)
                        .help("blocks cannot be recursive; use `repeat:` for depth"));
                    }
                    if self.stack.len() >= MAX_BLOCK_DEPTH {
                        return Err(Diagnostic::new(format!(
                            "blocks nested deeper than {MAX_BLOCK_DEPTH} levels ({} → …)",
                            self.stack[..3].join(" → ")
                        ))
                        .at(&n.path)
                        .help(
                            "use blocks inside blocks a few levels deep, and `repeat:` for depth",
                        ));
                    }
                    let mut input = inputs;
                    let mut out = None;
                    for r in 0..repeat {
                        let path = if indexed {
                            join(&full, &(first_index + r).to_string())
                        } else {
                            full.clone()
                        };
                        let o = self.instantiate(
                            n,
                            block,
                            &path,
                            (r, first_index + r),
                            env,
                            defaults,
                            input,
                            instance,
                        )?;
                        if indexed {
                            self.define(path.clone(), o.clone(), &n.path)?;
                        }
                        input = vec![o.clone()];
                        out = Some(o);
                    }
                    self.define_last(&full, from, out.expect("repeat ≥ 1"), &n.path)?;
                }
            }
            // The next node reads this node's own last instance (a later node sharing the id
            // takes the id over).
            prev = Ref::Name {
                scope: scope.to_string(),
                text: match from {
                    Some(f) => format!("{name}.{}", f + repeat - 1),
                    None => name,
                },
                at: n.path.clone(),
            };
        }
        Ok(prev)
    }

    #[allow(clippy::too_many_arguments)]
    fn instantiate(
        &mut self,
        n: &NodeSpec,
        block: &BlockSpec,
        path: &str,
        (nth, index): (usize, usize),
        env: &Rc<Env>,
        defaults: &[&Defaults],
        inputs: Vec<Ref>,
        parent: Option<usize>,
    ) -> Result<Ref, Diagnostic> {
        self.count_node(&n.path)?;
        self.count_links(block.params.len() + inputs.len(), &n.path)?;
        // Bind parameters: `first:` (instance 0) over `with:` over the block's defaults.
        let mut benv = Env::new(Some(self.model_env.clone()));
        let mut args = Vec::new();
        let given: Vec<&(String, YNode)> = n
            .with
            .iter()
            .chain(if nth == 0 { n.first.iter() } else { [].iter() })
            .collect();
        // The last given value wins (`first:` after `with:`). Indexed: a block may declare
        // many parameters, and this runs once per instance.
        let chosen: HashMap<&str, &YNode> = given.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let declared: HashMap<&str, ()> = if given.is_empty() {
            HashMap::new()
        } else {
            block.params.iter().map(|(p, _)| (p.as_str(), ())).collect()
        };
        for (k, v) in &given {
            if !declared.contains_key(k.as_str()) {
                let mut d =
                    Diagnostic::new(format!("block `{}` has no parameter `{k}`", block.name))
                        .at(&v.path);
                d = match did_you_mean(k, block.params.iter().map(|(p, _)| p.as_str())) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(format!(
                        "its parameters: {}",
                        block
                            .params
                            .iter()
                            .map(|(p, _)| p.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                };
                return Err(d);
            }
        }
        for (p, default) in &block.params {
            let v = match chosen.get(p.as_str()) {
                Some(v) => substitute(v, env, &[])?,
                None => match default {
                    Some(d) => d.clone(),
                    None => {
                        return Err(Diagnostic::new(format!(
                            "block `{}` needs parameter `{p}`",
                            block.name
                        ))
                        .at(&n.path)
                        .help(format!("add it: `with: {{{p}: …}}`")))
                    }
                },
            };
            args.push((p.clone(), v.to_string()));
            benv.set(p, v);
        }
        benv.set(
            "index",
            YNode::synthetic(YValue::Int(index as i64), n.path.clone()),
        );
        let inst = self.instances.len();
        self.instances.push(Instance {
            path: path.to_string(),
            block: block.name.clone(),
            args,
            parent,
            at: n.path.clone(),
        });
        // `$in0` is looked up as `$in` (see `key_of`): one entry per instance, not two.
        for (k, r) in inputs.iter().enumerate() {
            let key = if k == 0 {
                join(path, "$in")
            } else {
                join(path, &format!("$in{k}"))
            };
            self.define(key, r.clone(), &n.path)?;
        }
        self.stack.push(block.name.clone());
        let mut layered: Vec<&Defaults> = defaults.to_vec();
        layered.push(&block.defaults);
        let benv = Rc::new(benv);
        let last = self.expand_list(
            &block.nodes,
            path,
            &benv,
            &layered,
            inputs[0].clone(),
            Some(inst),
        )?;
        self.stack.pop();
        Ok(match &block.output {
            None => last,
            Some(o) => match o.as_str() {
                Some(s) => Ref::Name {
                    scope: path.to_string(),
                    text: s.to_string(),
                    at: o.path.clone(),
                },
                None => {
                    return Err(
                        Diagnostic::new("a block's `output` must name one of its layers")
                            .at(&o.path),
                    )
                }
            },
        })
    }

    /// Emits one op node and its fused `bn` / `act` layers; returns the last one.
    #[allow(clippy::too_many_arguments)]
    fn emit_op(
        &mut self,
        n: &NodeSpec,
        t: &'static OpType,
        path: &str,
        env: &Rc<Env>,
        defaults: &[&Defaults],
        inputs: Vec<Ref>,
        instance: Option<usize>,
    ) -> Result<Ref, Diagnostic> {
        // Attributes: the node's own, then defaults (innermost first) for keys it does not set.
        let attrs = default_attrs(defaults, t.name, &n.attrs);
        let mut bn = n.bn.clone();
        let mut act = n.act.clone();
        for d in defaults.iter().rev() {
            if let Some((_, kv)) = d.iter().find(|(op, _)| *op == t.name) {
                for (k, v) in kv {
                    if k == "bn" && bn.is_none() {
                        bn = Some(v.clone());
                    }
                    if k == "act" && act.is_none() {
                        act = Some(v.clone());
                    }
                }
            }
        }
        let idx = self.push_raw(
            path.to_string(),
            t,
            attrs,
            env.clone(),
            inputs,
            n.path.clone(),
            instance,
        )?;
        let mut last = Ref::Direct(idx, 0);
        if let Some(b) = bn {
            let Some(norm) = t.fused_bn else {
                return Err(
                    Diagnostic::new(format!("`bn:` cannot be fused after {}", t.name)).at(&b.path),
                );
            };
            if Self::eval_bool(&b, env, "bn")? {
                let bt = layers::lookup(norm).expect("registered");
                let p = join(path, "bn");
                let battrs = default_attrs(defaults, bt.name, &[]);
                let i = self.push_raw(
                    p.clone(),
                    bt,
                    battrs,
                    env.clone(),
                    vec![last],
                    b.path.clone(),
                    instance,
                )?;
                last = Ref::Direct(i, 0);
                self.define(p, last.clone(), &b.path)?;
            }
        }
        if let Some(a) = act {
            let a = substitute(&a, env, &[])?;
            let (name_node, params): (YNode, Vec<(String, YNode)>) = match &a.value {
                YValue::Null | YValue::Bool(false) => return Ok(last),
                YValue::Str(s) if s == "none" => return Ok(last),
                YValue::Str(_) => (a.clone(), vec![]),
                YValue::Map(m) => {
                    let op = a.get("op").cloned().ok_or_else(|| {
                        Diagnostic::new("an `act:` mapping needs `op:`")
                            .at(&a.path)
                            .help("e.g. `act: {op: leaky_relu, slope: 0.1}`")
                    })?;
                    (op, m.iter().filter(|(k, _)| k != "op").cloned().collect())
                }
                _ => {
                    return Err(Diagnostic::new(format!(
                        "`act` must name an activation, found {a}"
                    ))
                    .at(&a.path)
                    .help("e.g. `act: relu`, `act: {op: leaky_relu, slope: 0.1}` or `act: none`"))
                }
            };
            let at = crate::spec::op_type(&name_node)?;
            if !matches!(at.arity, Arity::Exactly(1)) || at.is_input() {
                return Err(Diagnostic::new(format!(
                    "`act: {}` is not a one-input layer",
                    at.name
                ))
                .at(&name_node.path));
            }
            for (k, v) in &params {
                if !at.keys.contains(&k.as_str()) {
                    return Err(
                        Diagnostic::new(format!("unknown key `{k}` for {}", at.name))
                            .at(&v.path)
                            .help(format!("{} takes: {}", at.name, at.keys.join(", "))),
                    );
                }
            }
            let p = join(path, at.name);
            let params = default_attrs(defaults, at.name, &params);
            let i = self.push_raw(
                p.clone(),
                at,
                params,
                env.clone(),
                vec![last],
                a.path.clone(),
                instance,
            )?;
            last = Ref::Direct(i, 0);
            self.define(p, last.clone(), &a.path)?;
        }
        Ok(last)
    }

    /// The table key a written name refers to, and the output slot it names (`split:1`).
    /// `$in0` is the same entry as `$in`.
    fn key_of(
        &self,
        scope: &str,
        text: &str,
        at: &YamlPath,
    ) -> Result<(String, Option<usize>), Diagnostic> {
        let (base, slot) = match text.rsplit_once(':') {
            Some((b, k)) => {
                let k: usize = k.parse().map_err(|_| {
                    Diagnostic::new(format!(
                        "`{text}`: the part after `:` must be an output number"
                    ))
                    .at(at)
                    .help("e.g. `split:1` for the second piece of a split")
                })?;
                (b.trim_start_matches('$'), Some(k))
            }
            None => (text.trim_start_matches('$'), None),
        };
        let is_param_ref = text.starts_with('$');
        let key = if is_param_ref {
            join(
                scope,
                &format!("${}", if base == "in0" { "in" } else { base }),
            )
        } else {
            join(scope, base)
        };
        if self.table.contains_key(&key) {
            return Ok((key, slot));
        }
        if !is_param_ref && self.table.contains_key(base) {
            return Ok((base.to_string(), slot));
        }
        Err(self.unknown_ref(scope, text, base, at, is_param_ref))
    }

    /// Resolves a reference to (raw node, slot). A name may stand for another name (a node
    /// switched off by `when:`, a block instance's output, `$in`), so resolution follows a
    /// chain; every key's answer is remembered, so each chain is walked once however many
    /// references share it.
    fn resolve(&self, r: &Ref) -> Result<(usize, usize), Diagnostic> {
        let (scope, text, at) = match r {
            Ref::Direct(i, s) => return Ok((*i, *s)),
            Ref::Name { scope, text, at } => (scope, text, at),
        };
        let (key, slot) = self.key_of(scope, text, at)?;
        let (i, s, last) = self.follow(key, at)?;
        // The slot named last along the chain (nearest the layer) wins.
        Ok(match last.or(slot) {
            Some(k) if s == 0 => (i, k),
            _ => (i, s),
        })
    }

    /// Follows table entries from `key` to a layer: (raw node, its slot, the slot named last
    /// along the way).
    fn follow(&self, key: String, at: &YamlPath) -> Result<Resolved, Diagnostic> {
        let mut trail: Vec<(String, Option<usize>)> = Vec::new();
        let mut cur = key;
        let mut found = loop {
            if let Some(&done) = self.resolved.borrow().get(&cur) {
                break done;
            }
            if trail.len() > self.table.len() {
                return Err(Diagnostic::new(
                    "a reference loops through layers switched off by `when`",
                )
                .at(at)
                .help("a switched-off layer stands for its input: check that the chain of `in:` references ends at a layer"));
            }
            match &self.table[&cur].0 {
                Ref::Direct(i, s) => break (*i, *s, None),
                Ref::Name { scope, text, at } => {
                    let (next, slot) = self.key_of(scope, text, at)?;
                    trail.push((std::mem::replace(&mut cur, next), slot));
                }
            }
        };
        self.resolved.borrow_mut().insert(cur, found);
        for (k, slot) in trail.into_iter().rev() {
            found.2 = found.2.or(slot);
            self.resolved.borrow_mut().insert(k, found);
        }
        Ok(found)
    }

    fn unknown_ref(
        &self,
        scope: &str,
        text: &str,
        base: &str,
        at: &YamlPath,
        param: bool,
    ) -> Diagnostic {
        if param {
            let mut d = Diagnostic::new(format!("`{text}` is not defined here")).at(at);
            d = if scope.is_empty() {
                d.help("`$in` refers to a block's input; at the top level, name the layer or the model input")
            } else {
                d.help("`$in` (or `$in0`, `$in1`, …) is the block's input")
            };
            return d;
        }
        let prefix = if scope.is_empty() {
            String::new()
        } else {
            format!("{scope}.")
        };
        let local: Vec<&str> = self
            .table
            .keys()
            .filter_map(|k| k.strip_prefix(prefix.as_str()))
            .filter(|k| !k.contains('.') && !k.starts_with('$'))
            .collect();
        // Sorted: the table is a hash map, and the suggestion must not depend on its order.
        let mut local = local;
        local.sort_unstable();
        let mut d = Diagnostic::new(format!("unknown layer `{base}`")).at(at);
        d = match did_you_mean(base, local.iter().copied()) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.help("refer to a layer by its `id` (or `$in` for a block's input)"),
        };
        d
    }

    /// The last step of the build, in named steps: input references resolved, the raw layer
    /// graph ordered, every layer built in that order, the model outputs resolved, the layer
    /// graph and its [`Topology`], and each layer's tensor-name prefix.
    fn finish(&mut self, outs: Vec<Ref>) -> Result<Network, Diagnostic> {
        let edges = self.resolve_inputs()?;
        let raw_graph = raw_graph(&edges);
        let order = self.order(&raw_graph)?;
        let mut pos = vec![0usize; order.len()];
        for (k, &i) in order.iter().enumerate() {
            pos[i] = k;
        }
        let mut nodes: Vec<NetNode> = Vec::with_capacity(order.len());
        for &i in &order {
            let inputs = edges[i]
                .iter()
                .map(|&(src, slot)| (pos[src], slot))
                .collect();
            let node = self.build_layer(i, inputs, &nodes)?;
            nodes.push(node);
        }
        self.current = None;
        let outputs = self.resolve_outputs(&outs, &pos, &nodes)?;
        let graph = layer_graph(&nodes);
        let topology = Topology::new(&graph, &nodes, &outputs);
        let instances = std::mem::take(&mut self.instances);
        let tensor_prefix = self.tensor_prefixes(&nodes)?;
        Ok(Network {
            name: self.spec.name.clone(),
            nodes,
            outputs,
            instances,
            tensor_prefix,
            graph,
            topology,
        })
    }

    /// Every raw layer's inputs, resolved to (raw layer, output slot).
    fn resolve_inputs(&mut self) -> Result<Vec<Vec<(usize, usize)>>, Diagnostic> {
        let n = self.raws.len();
        let mut edges: Vec<Vec<(usize, usize)>> = Vec::with_capacity(n);
        for i in 0..n {
            let refs = self.raws[i].inputs.clone();
            let mut ins = Vec::with_capacity(refs.len());
            for r in &refs {
                self.current = Some((self.raws[i].path.clone(), self.raws[i].instance));
                ins.push(self.resolve(r)?);
            }
            edges.push(ins);
        }
        self.current = None;
        Ok(edges)
    }

    /// The raw layers in topological order, ties broken by creation (= file) order (petgraph's
    /// `toposort` has no tie rule: Kahn's algorithm with the ready layers in a min-heap); a
    /// cycle is an error naming its layers.
    fn order(&self, g: &DiGraph<usize, ()>) -> Result<Vec<usize>, Diagnostic> {
        let n = g.node_count();
        let mut indeg: Vec<usize> = g
            .node_indices()
            .map(|i| g.edges_directed(i, Direction::Incoming).count())
            .collect();
        let mut heap: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|&i| indeg[i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(i)) = heap.pop() {
            order.push(i);
            for s in g.neighbors_directed(NodeIndex::new(i), Direction::Outgoing) {
                let s = s.index();
                indeg[s] -= 1;
                if indeg[s] == 0 {
                    heap.push(Reverse(s));
                }
            }
        }
        if order.len() < n {
            return Err(self.cycle_error(g));
        }
        Ok(order)
    }

    /// Builds raw layer `i` from its attributes and the shapes of `inputs` (already built, in
    /// `nodes`): its input count checked, its expressions' environment, the layer, its unused
    /// keys refused, its output shapes checked.
    fn build_layer(
        &mut self,
        i: usize,
        inputs: Vec<(usize, usize)>,
        nodes: &[NetNode],
    ) -> Result<NetNode, Diagnostic> {
        let raw = &self.raws[i];
        self.current = Some((raw.path.clone(), raw.instance));
        let mut in_shapes = Vec::with_capacity(inputs.len());
        let mut in_ops = Vec::with_capacity(inputs.len());
        let mut in_layouts: Vec<Layout> = Vec::with_capacity(inputs.len());
        for (k, &(src, slot)) in inputs.iter().enumerate() {
            let p: &NetNode = &nodes[src];
            let s = p.out_shapes.get(slot).ok_or_else(|| {
                let at = match &raw.inputs[k] {
                    Ref::Name { at, .. } => at.clone(),
                    Ref::Direct(..) => raw.node_path.clone(),
                };
                Diagnostic::new(format!(
                    "`{}` has {} output(s); output {slot} does not exist",
                    p.name,
                    p.out_shapes.len()
                ))
                .at(&at)
                .help(format!(
                    "outputs are numbered from 0: `{0}:0` to `{0}:{1}`",
                    p.name,
                    p.out_shapes.len().saturating_sub(1)
                ))
            })?;
            in_shapes.push(s.clone());
            in_ops.push(p.layer.op());
            in_layouts.push(
                p.out_layouts
                    .get(slot)
                    .cloned()
                    .unwrap_or_else(|| Layout::input(s.rank())),
            );
        }
        check_arity(raw, in_shapes.len())?;
        let env = layer_env(raw, &in_shapes);
        let mut attrs = Attrs::new(
            raw.op.name,
            raw.node_path.clone(),
            raw.attrs.clone(),
            Rc::new(env),
            &in_shapes,
            &in_ops,
        )
        .with_layouts(&in_layouts);
        let layer = (raw.op.build)(&mut attrs).map_err(|d| d.at(&raw.node_path))?;
        if let Some((k, v)) = attrs.unused().first() {
            return Err(
                Diagnostic::new(format!("`{k}` has no effect on {}", raw.op.name)).at(&v.path),
            );
        }
        let out_shapes = layer.output_shapes(&in_shapes).map_err(|d| {
            let mut d = d.at(&raw.node_path);
            for (k, s) in in_shapes.iter().enumerate() {
                if in_shapes.len() > 1 {
                    d = d.note(format!(
                        "input {k} comes from `{}`",
                        nodes[inputs[k].0].name
                    ));
                } else {
                    d = d.note(format!(
                        "its input is {s}, from `{}`",
                        nodes[inputs[k].0].name
                    ));
                }
            }
            d
        })?;
        check_outputs(raw, &out_shapes)?;
        let out_layouts = layer
            .layouts(&in_layouts, &in_shapes, &out_shapes)
            .map_err(|d| d.at(&raw.node_path))?;
        check_layouts(raw, &out_shapes, &out_layouts)?;
        if let Some(t) = layer.tied() {
            check_tied(raw, &t, nodes)?;
        }
        Ok(NetNode {
            name: raw.path.clone(),
            layer,
            inputs,
            in_shapes,
            out_shapes,
            in_layouts,
            out_layouts,
            instance: raw.instance,
        })
    }

    /// The model outputs, resolved to built layers (`pos`: each raw layer's place in `nodes`).
    fn resolve_outputs(
        &self,
        outs: &[Ref],
        pos: &[usize],
        nodes: &[NetNode],
    ) -> Result<Vec<Output>, Diagnostic> {
        let mut outputs = Vec::new();
        for r in outs {
            let (i, slot) = self.resolve(r)?;
            let name = match r {
                Ref::Name { text, .. } => text.clone(),
                Ref::Direct(..) => nodes[pos[i]].name.clone(),
            };
            if slot >= nodes[pos[i]].out_shapes.len() {
                let mut d = Diagnostic::new(format!(
                    "output `{name}` does not exist: `{}` has {} output(s)",
                    nodes[pos[i]].name,
                    nodes[pos[i]].out_shapes.len()
                ))
                .help("outputs are numbered from 0");
                if let Ref::Name { at, .. } = r {
                    d = d.at(at);
                }
                return Err(d);
            }
            outputs.push(Output {
                name,
                node: pos[i],
                slot,
            });
        }
        Ok(outputs)
    }

    /// Each node's tensor-name prefix under the model's `weights_names:` rules. A rule that
    /// names no layer with weights, and two layers whose tensors would share a name, are errors.
    fn tensor_prefixes(&self, nodes: &[NetNode]) -> Result<Vec<String>, Diagnostic> {
        let rules = &self.spec.weights_names;
        let mut used = vec![false; rules.rules.len()];
        let mut owner: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(nodes.len());
        for (k, node) in nodes.iter().enumerate() {
            if rules.rules.is_empty() {
                out.push(node.name.clone());
                continue;
            }
            let (prefix, rule) = rules.resolve(&node.name);
            if !node.layer.weights().is_empty() {
                if let Some(r) = rule {
                    used[r] = true;
                }
                if let Some(&other) = owner.get(&prefix) {
                    let mut d = Diagnostic::new(format!(
                        "layers `{}` and `{}` would both read their tensors as `{prefix}.…`",
                        nodes[other].name, node.name
                    ))
                    .layer(&node.name)
                    .help(
                        "give each layer with weights its own tensor name under `weights_names:`",
                    );
                    if let Some(r) = rule {
                        d = d.at(&rules.rules[r].path);
                    }
                    return Err(d);
                }
                owner.insert(prefix.clone(), k);
            }
            out.push(prefix);
        }
        if let Some(r) = used.iter().position(|u| !u) {
            return Err(Diagnostic::new(format!(
                "the `weights_names:` rule for `{}` matches no layer that has weights",
                rules.rules[r].pattern.join(".")
            ))
            .at(&rules.rules[r].path)
            .help("a pattern matches a whole layer path (`*` is one component): check it against `archscope summary --depth 99`, or remove the rule"));
        }
        Ok(out)
    }

    /// The cycle that keeps `g` (the raw layer graph) from being ordered: the strongly
    /// connected component (petgraph's Tarjan) holding the earliest layer, named in file order.
    fn cycle_error(&self, graph: &DiGraph<usize, ()>) -> Diagnostic {
        let sccs = petgraph::algo::tarjan_scc(graph);
        let cyc = sccs
            .into_iter()
            .filter(|c| c.len() > 1 || graph.contains_edge(c[0], c[0]))
            .min_by_key(|c| c.iter().map(|i| i.index()).min())
            .unwrap_or_default();
        let mut members: Vec<usize> = cyc.iter().map(|i| i.index()).collect();
        members.sort();
        let names: Vec<&str> = members
            .iter()
            .map(|&i| self.raws[i].path.as_str())
            .collect();
        let first = members.first().copied().unwrap_or(0);
        let msg = if names.len() == 1 {
            format!("layer `{}` takes its own output as input", names[0])
        } else {
            format!("the layers {} form a cycle", names.join(" → "))
        };
        Diagnostic::new(msg)
            .at(&self.raws[first].node_path)
            .layer(&self.raws[first].path)
            .help("a network is a directed acyclic graph: check the `in:` references")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Network {
        Network::from_yaml("m.yaml", text, &BuildOptions::default()).unwrap()
    }

    fn input_of<'n>(n: &'n Network, layer: &str) -> (&'n str, usize) {
        let node = n.nodes.iter().find(|x| x.name == layer).unwrap();
        let (src, slot) = node.inputs[0];
        (n.nodes[src].name.as_str(), slot)
    }

    /// References through switched-off layers keep the output slot named along the way, and
    /// every reference sharing a chain gets the same answer (it is resolved once).
    #[test]
    fn references_through_switched_off_layers() {
        let n = net("inputs: {x: [4, 8, 8]}\nnodes:\n  - {id: s, op: split, parts: 2}\n  - {id: a, op: relu, in: \"s:1\", when: false}\n  - {id: b, op: relu, in: a, when: false}\n  - {id: c, op: relu, in: b}\n  - {id: d, op: relu, in: a}\n  - {id: e, op: relu, in: \"s:0\"}\n  - {id: f, op: concat, in: [c, d, e]}\n");
        assert_eq!(input_of(&n, "c"), ("s", 1));
        assert_eq!(input_of(&n, "d"), ("s", 1));
        assert_eq!(input_of(&n, "e"), ("s", 0));
        // A long chain is walked once: 20,000 switched-off layers, each referred to.
        let k = 20_000;
        let mut text = String::from("inputs: {x: [4]}\nnodes:\n  - {id: r, op: relu}\n");
        for i in 0..k {
            let prev = if i == 0 {
                "r".to_string()
            } else {
                format!("w{}", i - 1)
            };
            text.push_str(&format!(
                "  - {{id: w{i}, op: relu, when: false, in: {prev}}}\n"
            ));
        }
        for i in 0..k {
            text.push_str(&format!("  - {{op: relu, in: w{i}}}\n"));
        }
        let n = net(&text);
        assert_eq!(n.nodes.len(), 2 + k);
        assert!(n.nodes[2..].iter().all(|x| x.inputs == vec![(1, 0)]));
    }

    /// `$in0` is `$in`.
    #[test]
    fn in0_is_in() {
        let n = net("inputs: {x: [4]}\nblocks:\n  b:\n    nodes:\n      - {id: p, op: relu, in: $in0}\n      - {id: q, op: add, in: [$in, p]}\nnodes:\n  - {id: u, use: b}\n");
        assert_eq!(input_of(&n, "u.p"), ("x", 0));
        assert_eq!(input_of(&n, "u.q"), ("x", 0));
    }
}
