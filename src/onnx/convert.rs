//! `archscope convert model.onnx`: an imported ONNX model ([`super::Import`]) rewritten as
//! readable archscope YAML. The reader writes one flat layer per ONNX node; this pass folds a
//! batch norm that only reads a convolution or linear layer into it (`bn: true`), and an
//! activation that only reads a layer into that layer (`act:`), then recognises runs of
//! sibling modules `P.k`, `P.(k+1)`, … (PyTorch's module paths, from the ONNX node names) that
//! have the same structure as block nodes used with `repeat` (`repeat: {count, from}` for a
//! run that starts after index 0 or shares its parent with other runs, so every layer keeps
//! its PyTorch path; values that differ in the first instance only are given with `first:`,
//! layers only the first instance has, or only the others, are `when:` layers, as the zoo
//! writes a ResNet's downsampling shortcut). A single module the runs left — numbered
//! (`features.17`: `repeat: {count: 1, from: 17}`) or named with a trailing number or letter
//! (`inception3a`, `encoder_layer_0`: a block node without `repeat`, its id the module path) —
//! becomes a block node when it has the structure of a run or of another such module
//! ([`Rewriter::units`]). Runs and modules of one structure share one block definition
//! ([`share`]): the values that differ between them become parameters named after the
//! attribute. Then each block definition is searched the same way for blocks inside it
//! ([`nest`]: RegNetY's squeeze-excitation `se` inside its bottleneck), down to
//! [`MAX_NEST_DEPTH`] levels. Every layer keeps its kind, attributes and wiring, so the YAML
//! reads back to the same figures; the weights are renamed to the layer paths of the new YAML
//! ([`Converted::weights`]). No IO.

use std::collections::{HashMap, HashSet};

use super::reader::Import;
use crate::error::Diagnostic;
use crate::layers::Category;
use crate::yaml::{emit, Document, Emit, YNode, YValue};

/// Most instances a repeated block may have (the format's `repeat` limit).
const MAX_GROUP: usize = crate::graph::MAX_REPEAT as usize;

/// Most rounds of choosing single modules (each drops the modules left without a twin and
/// lets the modules inside them be tried): bounds the work on a model with many nested
/// candidates.
pub const MAX_UNIT_ROUNDS: usize = 16;

/// What `convert` writes.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The archscope YAML text.
    pub text: String,
    /// The imported weights under the converted model's tensor names (its layer paths), sorted
    /// by name; empty for a graph-only file.
    pub weights: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// Batch norms folded into the layer before them (`bn: true`).
    pub folded_bn: usize,
    /// Activations folded into the layer before them (`act:`).
    pub folded_act: usize,
    /// Repeated blocks found at the top level: (group id, instances).
    pub blocks: Vec<(String, usize)>,
    /// The block definitions written, each with the group ids that use it (with the first
    /// index of the group's run: `("features", 4)` for `features.4` …), in file order: the
    /// top level's, then those of blocks inside blocks (their users the block nodes inside
    /// the definitions, `("se", 0)`).
    pub definitions: Vec<(String, Vec<(String, usize)>)>,
}

/// A layer of the imported model, as it is being rewritten.
#[derive(Debug, Clone)]
struct Layer {
    id: String,
    op: String,
    /// Inputs as written (`id` or `id:k`); `list` when the YAML gave a list.
    ins: Vec<String>,
    list: bool,
    /// The other attributes, in file order.
    attrs: Vec<(String, Emit)>,
    bn: bool,
    act: Option<Emit>,
    /// The dotted module path of its ONNX node.
    path: Option<String>,
    /// Imported layer ids now part of this one, with their path below it (`""` the layer
    /// itself, `bn` a folded batch norm).
    olds: Vec<(String, String)>,
    /// From the built import: an activation without weights, one input to one output (it may
    /// become an `act:`).
    pointwise_act: bool,
    /// From the built import: one output computed from inputs (it may take an `act:`).
    takes_act: bool,
    /// From the built import: its two inputs commute (a sum).
    commutes: bool,
    /// What the file's `defaults:` sets for this type (a batch norm's `eps`): such a key is
    /// written where its value differs from that, whatever the type's own default.
    section: Vec<(String, Emit)>,
}

/// The batch norm a layer type fuses with `bn: true` (graph's `fused_bn`).
fn fused_bn(op: &str) -> Option<&'static str> {
    crate::layers::lookup(op).and_then(|t| t.fused_bn)
}

fn to_emit(n: &YNode) -> Emit {
    match &n.value {
        YValue::Null => Emit::Null,
        YValue::Bool(b) => Emit::Bool(*b),
        YValue::Int(i) => Emit::Int(*i),
        YValue::Float(f) => Emit::Float(*f),
        YValue::Str(s) => Emit::Str(s.clone()),
        YValue::Seq(v) => Emit::Seq(v.iter().map(to_emit).collect()).flow(),
        YValue::Map(m) => {
            Emit::Map(m.iter().map(|(k, v)| (k.clone(), to_emit(v))).collect()).flow()
        }
    }
}

/// `id` of a reference `id` or `id:k`.
fn base(r: &str) -> &str {
    r.split_once(':').map_or(r, |(a, _)| a)
}

/// A YAML identifier from a module path (as the reader makes its ids).
fn ident(s: &str) -> String {
    let mut t: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    while t.contains("__") {
        t = t.replace("__", "_");
    }
    let t = t.trim_matches('_').to_string();
    if t.starts_with(|c: char| c.is_ascii_alphabetic()) {
        t
    } else {
        format!("n_{t}")
    }
}

fn bad(file: &str, what: &str) -> Diagnostic {
    Diagnostic::new(format!(
        "{file}: the imported model's YAML is not what convert expects ({what})"
    ))
    .help("report the model: the ONNX reader and convert disagree")
}

/// Converts an imported ONNX model; `file` names it in the header and in messages.
pub fn convert(file: &str, imp: &Import) -> Result<Converted, Diagnostic> {
    let net = super::build_imported(file, imp, &Default::default()).map_err(|e| (*e.0).clone())?;
    let commutes: HashSet<&str> = net
        .nodes
        .iter()
        .filter(|n| n.layer.inputs_commute())
        .map(|n| n.name.as_str())
        .collect();
    let facts: HashMap<&str, (bool, bool)> = net
        .nodes
        .iter()
        .map(|n| {
            let act = n.layer.category() == Category::Activation
                && n.layer.params().total() == 0
                && n.inputs.len() == 1
                && n.out_shapes.len() == 1;
            let takes = !n.inputs.is_empty() && n.out_shapes.len() == 1;
            (n.name.as_str(), (act, takes))
        })
        .collect();
    let doc = Document::parse(file, &imp.yaml)?;
    let root = &doc.root;
    let name = root
        .get("name")
        .and_then(YNode::as_str)
        .unwrap_or("onnx")
        .to_string();
    let Some(YValue::Map(inputs)) = root.get("inputs").map(|n| &n.value) else {
        return Err(bad(file, "no inputs"));
    };
    let Some(YValue::Seq(nodes)) = root.get("nodes").map(|n| &n.value) else {
        return Err(bad(file, "no nodes"));
    };
    let outputs: Vec<String> = match root.get("outputs").map(|n| &n.value) {
        Some(YValue::Seq(v)) => v
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Some(YValue::Str(s)) => vec![s.clone()],
        _ => return Err(bad(file, "no outputs")),
    };
    let first_input = inputs.first().map(|(k, _)| k.clone()).unwrap_or_default();
    let mut layers = Vec::with_capacity(nodes.len());
    for (k, n) in nodes.iter().enumerate() {
        let YValue::Map(m) = &n.value else {
            return Err(bad(file, "a node that is not a mapping"));
        };
        let mut l = Layer {
            id: String::new(),
            op: String::new(),
            ins: Vec::new(),
            list: false,
            attrs: Vec::new(),
            bn: false,
            act: None,
            path: imp.paths.get(k).cloned().flatten(),
            olds: Vec::new(),
            pointwise_act: false,
            takes_act: false,
            commutes: false,
            section: Vec::new(),
        };
        for (key, v) in m {
            match (key.as_str(), &v.value) {
                ("id", YValue::Str(s)) => l.id = s.clone(),
                ("op", YValue::Str(s)) => l.op = s.clone(),
                ("in", YValue::Str(s)) => l.ins = vec![s.clone()],
                ("in", YValue::Seq(v)) => {
                    l.list = true;
                    l.ins = v
                        .iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect();
                }
                _ => l.attrs.push((key.clone(), to_emit(v))),
            }
        }
        if l.id.is_empty() || l.op.is_empty() {
            return Err(bad(file, "a node without id or op"));
        }
        (l.pointwise_act, l.takes_act) = facts.get(l.id.as_str()).copied().unwrap_or_default();
        l.commutes = commutes.contains(l.id.as_str());
        l.olds.push((l.id.clone(), String::new()));
        layers.push(l);
    }
    // The first node's default input is the first model input: make it explicit.
    if let Some(l) = layers.first_mut() {
        if l.ins.is_empty() {
            l.ins.push(first_input.clone());
        }
    }
    let mut out = Rewriter {
        layers,
        rename: HashMap::new(),
        outputs,
        nested: false,
    };
    let (folded_bn, bn_eps) = out.fold_bn();
    if let Some(eps) = bn_eps {
        // The file's `defaults:` gives batch norms that eps (below).
        for l in &mut out.layers {
            if crate::layers::REGISTRY
                .iter()
                .any(|t| t.fused_bn == Some(l.op.as_str()))
            {
                l.section.push(("eps".into(), Emit::Float(eps)));
            }
        }
    }
    let folded_act = out.fold_act();
    out.resolve_all();
    out.name_by_path(&first_input, inputs.iter().map(|(k, _)| k.as_str()));
    let (mut items, blocks) = out.group();
    // One block definition per structure, shared by the groups that have it.
    let mut groups: Vec<Group> = Vec::new();
    let mut slots = Vec::new();
    for (k, it) in items.iter_mut().enumerate() {
        if let Item::Group(g) = it {
            groups.push(std::mem::replace(&mut **g, Group::empty()));
            slots.push(k);
        }
    }
    let mut used: HashSet<String> = HashSet::new();
    let mut top_defs = share(&mut groups, &out.layers, &mut used);
    // Blocks inside the blocks, each definition written once.
    let inner_defs = nest(&mut top_defs, &mut used, 1);
    let definitions: Vec<(String, Vec<(String, usize)>)> = top_defs
        .iter()
        .chain(&inner_defs)
        .map(|d| (d.name.clone(), d.users.clone()))
        .collect();
    let def_rename: HashMap<String, HashMap<String, String>> = top_defs
        .iter()
        .map(|d| (d.name.clone(), d.rename.clone()))
        .collect();
    let block_defs: Vec<(String, Emit)> = top_defs
        .iter()
        .chain(&inner_defs)
        .map(|d| (d.name.clone(), d.emit()))
        .collect();
    for (k, g) in slots.into_iter().zip(groups) {
        items[k] = Item::Group(Box::new(g));
    }

    // The YAML.
    let norms: HashSet<&str> = crate::layers::REGISTRY
        .iter()
        .filter_map(|t| t.fused_bn)
        .collect();
    let any_bn_node = out.layers.iter().any(|l| norms.contains(l.op.as_str())) || folded_bn > 0;
    let any_conv = out.layers.iter().any(|l| fused_bn(&l.op).is_some());
    let mut header = format!(
        "Converted by `archscope convert` from the ONNX file {file}.\nLayer names are the ONNX nodes' (PyTorch's module paths, `.` written `_`; a repeated block's\ninstances are `id.0`, `id.1`, … as in PyTorch)."
    );
    header.push_str(&format!(
        "\nFolded: {folded_bn} batch norms into `bn: true`, {folded_act} activations into `act:`; {} block nodes ({} block definitions).",
        blocks.len(),
        block_defs.len()
    ));
    header.push_str(
        "\nLeft out: attributes equal to their layer type's default (`stride: 1`, `bias: true`,\n`eps: 1e-5`, …); a size the same on every axis is written once (`kernel: 3`).",
    );
    if any_conv && !any_bn_node {
        header.push_str("\nThe file has no BatchNormalization node. If the model has batch norms, torch.onnx.export\nin eval mode folded each into the convolution before it (as that convolution's bias), and\nthe figures here are those of the folded model: export with\ntraining=torch.onnx.TrainingMode.PRESERVE (or do_constant_folding=False) to keep them.");
    }
    let mut top: Vec<(String, Emit)> = vec![
        ("format".into(), Emit::str("archscope/1")),
        ("name".into(), Emit::str(name)),
        (
            "inputs".into(),
            Emit::Map(
                inputs
                    .iter()
                    .map(|(k, v)| (k.clone(), to_emit(v)))
                    .collect(),
            ),
        ),
    ];
    if let Some(eps) = bn_eps {
        let mut d = Vec::new();
        for op in ["batchnorm1d", "batchnorm2d", "batchnorm3d"] {
            d.push((
                op.to_string(),
                Emit::Map(vec![("eps".into(), Emit::Float(eps))]).flow(),
            ));
        }
        top.push(("defaults".into(), Emit::Map(d)));
    }
    let (node_list, gouts, _) = emit_nodes(&out, &items, &first_input);
    if !block_defs.is_empty() {
        top.push(("blocks".into(), Emit::Map(block_defs)));
    }
    top.push(("nodes".into(), Emit::Seq(node_list)));
    let outs: Vec<Emit> = out
        .outputs
        .iter()
        .map(|o| Emit::str(public(&gouts, o)))
        .collect();
    top.push(("outputs".into(), Emit::Seq(outs).flow()));
    let text = emit(&header, &Emit::Map(top));

    // The weights under the new names.
    let mut new_prefix: HashMap<&str, String> = HashMap::new();
    for it in &items {
        match it {
            Item::Layer(k) => {
                let l = &out.layers[*k];
                for (old, sub) in &l.olds {
                    new_prefix.insert(old, join(&l.id, sub));
                }
            }
            Item::Group(g) => {
                let rename = def_rename.get(&g.block);
                for (inst, members) in g.members.iter().enumerate() {
                    for (k, local) in members {
                        let local = rename.and_then(|r| r.get(local)).unwrap_or(local);
                        let at = match g.kind {
                            Kind::Named => format!("{}.{local}", g.id),
                            _ => format!("{}.{}.{local}", g.id, g.from + inst),
                        };
                        for (old, sub) in &out.layers[*k].olds {
                            new_prefix.insert(old, join(&at, sub));
                        }
                    }
                }
            }
        }
    }
    let mut weights = Vec::with_capacity(imp.weights.len());
    for (tname, (shape, data)) in &imp.weights {
        let (layer, w) = match new_prefix.get(tname.as_str()) {
            Some(_) => (tname.as_str(), ""),
            // The longest dotted prefix that names a layer (`attn.out_proj.bias`: `attn`).
            None => {
                let mut cut = tname.len();
                loop {
                    match tname[..cut].rfind('.') {
                        Some(p) if new_prefix.contains_key(&tname[..p]) => {
                            break (&tname[..p], &tname[p + 1..])
                        }
                        Some(p) => cut = p,
                        None => break (tname.as_str(), ""),
                    }
                }
            }
        };
        let Some(p) = new_prefix.get(layer) else {
            return Err(bad(file, &format!("weight `{tname}` of no layer")));
        };
        weights.push((crate::exec::tensor_name(p, w), shape.clone(), data.clone()));
    }
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Converted {
        text,
        weights,
        folded_bn,
        folded_act,
        blocks: blocks.clone(),
        definitions,
    })
}

/// A block definition written by [`share`]: its parameters, node list and output, and what
/// [`nest`] needs to look inside it.
struct Def {
    name: String,
    params: Option<Emit>,
    nodes: Vec<Emit>,
    /// The output, when not the last node.
    output: Option<String>,
    /// Its layers: ids the local ids, paths those below the instance (`se.fc1`), values
    /// bound (`$width`), a switched layer's `when` an attribute.
    layers: Vec<Layer>,
    /// The local id of its output layer.
    out: String,
    /// A local id → its path in the block once blocks inside it are found (`se_fc1` →
    /// `se.fc1`, `units_0_conv` → `units.0.conv`).
    rename: HashMap<String, String>,
    /// The block nodes that use it: (id, first index).
    users: Vec<(String, usize)>,
}

impl Def {
    fn emit(&self) -> Emit {
        let mut def = Vec::new();
        if let Some(p) = &self.params {
            def.push(("params".to_string(), p.clone()));
        }
        def.push(("nodes".into(), Emit::Seq(self.nodes.clone())));
        if let Some(o) = &self.output {
            def.push(("output".into(), Emit::str(o.clone())));
        }
        Emit::Map(def)
    }
}

/// Most levels of blocks inside blocks [`nest`] looks for (a block of blocks of blocks … of
/// this depth below the top level; deeper modules stay layers of the deepest block).
pub const MAX_NEST_DEPTH: usize = 4;

/// Finds blocks inside the block definitions `defs`, as [`Rewriter::group`] finds them at the
/// top level but among a definition's layers and their module paths below the instance: runs
/// (`units.0`, `units.1`, … of a ShuffleNet stage), numbered modules with a twin, and named
/// sub-modules of at least two layers whose own layers are not numbered (RegNetY's `se`,
/// R(2+1)D's `conv1` and `conv2`), each becoming a block node in the definition. The blocks
/// found share definitions across all of `defs` ([`share`]); a value that is a parameter of the
/// enclosing block (`$width`) is passed on as a parameter of the inner one (`with: {width:
/// $width}`). Each definition's `rename` gets its layers' new paths. Recurses into the new
/// definitions down to [`MAX_NEST_DEPTH`]; returns them all (each level's before the next's).
fn nest(defs: &mut [Def], used: &mut HashSet<String>, depth: usize) -> Vec<Def> {
    if depth > MAX_NEST_DEPTH {
        return Vec::new();
    }
    let mut subs: Vec<(Rewriter, Vec<Item>, usize)> = Vec::new();
    let mut all_layers: Vec<Layer> = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut slots: Vec<(usize, usize)> = Vec::new();
    for (di, d) in defs.iter().enumerate() {
        let mut rw = Rewriter {
            layers: d.layers.clone(),
            rename: HashMap::new(),
            outputs: vec![d.out.clone()],
            nested: true,
        };
        let (mut items, _) = rw.group();
        let off = all_layers.len();
        all_layers.extend(rw.layers.iter().cloned());
        for (k, it) in items.iter_mut().enumerate() {
            if let Item::Group(g) = it {
                let mut g = std::mem::replace(&mut **g, Group::empty());
                shift(&mut g, off, true);
                groups.push(g);
                slots.push((di, k));
            }
        }
        subs.push((rw, items, off));
    }
    if groups.is_empty() {
        return Vec::new();
    }
    let mut inner = share(&mut groups, &all_layers, used);
    let deeper = nest(&mut inner, used, depth + 1);
    for ((di, k), mut g) in slots.into_iter().zip(groups) {
        shift(&mut g, subs[di].2, false);
        subs[di].1[k] = Item::Group(Box::new(g));
    }
    let renames: HashMap<&str, &HashMap<String, String>> =
        inner.iter().map(|d| (d.name.as_str(), &d.rename)).collect();
    for (d, (rw, items, _)) in defs.iter_mut().zip(&subs) {
        if !items.iter().any(|it| matches!(it, Item::Group(_))) {
            continue;
        }
        let (nodes, gouts, last) = emit_nodes(rw, items, "$in");
        let out = public(&gouts, &d.out);
        d.nodes = nodes;
        d.output = (last.as_deref() != Some(out.as_str())).then_some(out);
        for it in items {
            let Item::Group(g) = it else { continue };
            let rn = renames.get(g.block.as_str());
            for (inst, members) in g.members.iter().enumerate() {
                for (k, local) in members {
                    let below = rn.and_then(|r| r.get(local)).unwrap_or(local);
                    let at = match g.kind {
                        Kind::Named => format!("{}.{below}", g.id),
                        _ => format!("{}.{}.{below}", g.id, g.from + inst),
                    };
                    d.rename.insert(rw.layers[*k].id.clone(), at);
                }
            }
        }
    }
    let mut all = inner;
    all.extend(deeper);
    all
}

/// Moves a group's layer indices by `off` (up, or back down).
fn shift(g: &mut Group, off: usize, up: bool) {
    let m = |k: &mut usize| {
        if up {
            *k += off
        } else {
            *k -= off
        }
    };
    for inst in g.members.iter_mut() {
        for (k, _) in inst.iter_mut() {
            m(k);
        }
    }
    for t in g.template.iter_mut() {
        m(&mut t.layer);
    }
}

/// The node list of `items` (layers and block nodes) as written: `first` is the first node's
/// default input. Also each group's output layer id → how the list names it, and the name of
/// the last node.
fn emit_nodes(
    rw: &Rewriter,
    items: &[Item],
    first_input: &str,
) -> (Vec<Emit>, HashMap<String, String>, Option<String>) {
    // Ids that several groups fill, or whose run starts after index 0, take the index range.
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for it in items {
        if let Item::Group(g) = it {
            *per_id.entry(g.id.as_str()).or_default() += 1;
        }
    }
    let ranged: HashSet<&str> = items
        .iter()
        .filter_map(|it| match it {
            Item::Group(g)
                if g.kind != Kind::Named
                    && (g.from != 0 || per_id[g.id.as_str()] > 1 || g.kind == Kind::Indexed) =>
            {
                Some(g.id.as_str())
            }
            _ => None,
        })
        .collect();
    let gouts = rw.group_outputs(items);
    let mut node_list = Vec::new();
    let mut prev: Option<String> = None;
    for it in items {
        match it {
            Item::Layer(k) => {
                let mut l = rw.layers[*k].clone();
                // A block's switched layer (inside [`nest`]): its `when`.
                let when = l.attrs.iter().position(|(k, _)| k == "when").and_then(|p| {
                    match l.attrs.remove(p).1 {
                        Emit::Str(w) => Some(w),
                        _ => None,
                    }
                });
                node_list.push(layer_emit(
                    &l,
                    &l.id,
                    |r| r.to_string(),
                    prev.as_deref(),
                    first_input,
                    when.as_deref(),
                ));
                prev = Some(l.id.clone());
            }
            Item::Group(g) => {
                let mut m = vec![("id".to_string(), Emit::str(g.id.clone()))];
                let gin = public(&gouts, &g.input);
                if prev.as_deref() != Some(gin.as_str()) && !(prev.is_none() && gin == first_input)
                {
                    m.push(("in".into(), Emit::str(gin)));
                }
                m.push(("use".into(), Emit::str(g.block.clone())));
                if g.kind == Kind::Named {
                    // One module, its id its path: no `repeat`.
                } else if ranged.contains(g.id.as_str()) {
                    m.push((
                        "repeat".into(),
                        Emit::Map(vec![
                            ("count".into(), Emit::Int(g.n as i64)),
                            ("from".into(), Emit::Int(g.from as i64)),
                        ])
                        .flow(),
                    ));
                } else {
                    m.push(("repeat".into(), Emit::Int(g.n as i64)));
                }
                if !g.with.is_empty() {
                    m.push(("with".into(), Emit::Map(g.with.clone()).flow()));
                }
                if !g.first.is_empty() {
                    m.push(("first".into(), Emit::Map(g.first.clone()).flow()));
                }
                node_list.push(Emit::Map(m).flow());
                prev = Some(g.public(ranged.contains(g.id.as_str())));
            }
        }
    }
    (node_list, gouts, prev)
}

/// How a reference is written at the top level once groups exist: a group's output layer is
/// reached through the group (only it is read from outside).
fn public(group_outputs: &HashMap<String, String>, r: &str) -> String {
    group_outputs
        .get(base(r))
        .cloned()
        .unwrap_or_else(|| r.to_string())
}

fn join(a: &str, b: &str) -> String {
    if b.is_empty() {
        a.to_string()
    } else {
        format!("{a}.{b}")
    }
}

/// One layer as a flow mapping. `name` maps a reference to how it is written here; `prev` is
/// the node before (its output is the default input), `first` the default of the first node.
fn layer_emit(
    l: &Layer,
    id: &str,
    name: impl Fn(&str) -> String,
    prev: Option<&str>,
    first: &str,
    when: Option<&str>,
) -> Emit {
    let mut m = vec![("id".to_string(), Emit::str(id))];
    m.push(("op".into(), Emit::str(l.op.clone())));
    let ins: Vec<String> = l.ins.iter().map(|r| name(r)).collect();
    let default = match prev {
        Some(p) => p.to_string(),
        None => first.to_string(),
    };
    if !(ins.len() == 1 && !l.list && ins[0] == default) {
        if l.list {
            m.push((
                "in".into(),
                Emit::Seq(ins.into_iter().map(Emit::Str).collect()).flow(),
            ));
        } else if let Some(x) = ins.into_iter().next() {
            m.push(("in".into(), Emit::Str(x)));
        }
    }
    if let Some(w) = when {
        m.push(("when".into(), Emit::str(w)));
    }
    for (k, v) in &l.attrs {
        if let Some((_, d)) = l.section.iter().find(|(x, _)| x == k) {
            if to_value(d) != to_value(v) {
                m.push((k.clone(), compact_attr(&l.op, k, v)));
            }
        } else if let Some(v) = tidy_attr(&l.op, k, v, &l.attrs) {
            m.push((k.clone(), v));
        }
    }
    if l.bn {
        m.push(("bn".into(), Emit::Bool(true)));
    }
    if let Some(a) = &l.act {
        m.push(("act".into(), tidy_act(a)));
    }
    Emit::Map(m).flow()
}

/// An attribute as the converted file writes it, by the layer type's declared defaults
/// ([`crate::layers::OpType::defaults`]): None where the value is what the layer builds with
/// when the key is left out (`stride: 1`, `padding: [0, 0]`, `eps: 1e-5`, `bias: true`, a
/// pooling's `stride` equal to its `kernel`); a per-axis value the same on every axis written
/// once (`kernel: [3, 3]` → `kernel: 3`). `attrs` are the layer's attributes (a default may be
/// another key's value).
fn tidy_attr(op: &str, key: &str, v: &Emit, attrs: &[(String, Emit)]) -> Option<Emit> {
    let Some(d) = crate::layers::lookup(op).and_then(|t| t.default_of(key)) else {
        return Some(v.clone());
    };
    let sibling = |k: &str| attrs.iter().find(|(x, _)| x == k).map(|(_, e)| to_value(e));
    if d.is_default(&to_value(v), sibling) {
        return None;
    }
    Some(compact_attr(op, key, v))
}

/// A folded activation as written: `act: gelu` when its attributes are all defaults
/// (`{op: gelu, approximate: none}`), else the mapping without those.
fn tidy_act(a: &Emit) -> Emit {
    let Emit::Flow(inner) = a else {
        return a.clone();
    };
    let Emit::Map(m) = &**inner else {
        return a.clone();
    };
    let Some(Emit::Str(op)) = m.iter().find(|(k, _)| k == "op").map(|(_, v)| v) else {
        return a.clone();
    };
    let kept: Vec<(String, Emit)> = m
        .iter()
        .filter_map(|(k, v)| match k.as_str() {
            "op" => Some((k.clone(), v.clone())),
            _ => tidy_attr(op, k, v, m).map(|v| (k.clone(), v)),
        })
        .collect();
    if kept.len() == 1 {
        Emit::str(op.clone())
    } else {
        Emit::Map(kept).flow()
    }
}

/// An emitted value as the parser would read it (for comparing it with a default).
fn to_value(e: &Emit) -> YValue {
    let node = |e: &Emit| YNode::synthetic(to_value(e), Default::default());
    match e {
        Emit::Null => YValue::Null,
        Emit::Bool(b) => YValue::Bool(*b),
        Emit::Int(i) => YValue::Int(*i),
        Emit::Float(f) => YValue::Float(*f),
        Emit::Str(s) => YValue::Str(s.clone()),
        Emit::Seq(v) => YValue::Seq(v.iter().map(node).collect()),
        Emit::Map(m) => YValue::Map(m.iter().map(|(k, v)| (k.clone(), node(v))).collect()),
        Emit::Flow(x) | Emit::Commented(_, x) => to_value(x),
    }
}

/// A per-axis attribute of the layer type ([`crate::layers::AttrDefault::per_axis`]: `kernel`,
/// `stride`, `padding`, `dilation`, a window's `shift`, …) of one repeated value as that value;
/// any other attribute as it is (a `split`'s `sizes: [32, 32, 32]` stays a list).
fn compact_attr(op: &str, key: &str, v: &Emit) -> Emit {
    match crate::layers::lookup(op).and_then(|t| t.default_of(key)) {
        Some(d) if d.per_axis() => compact(v),
        _ => v.clone(),
    }
}

/// A list of one repeated value as that value (`[2, 2]` → `2`: a window size per axis).
fn compact(v: &Emit) -> Emit {
    match v {
        Emit::Flow(x) => match &**x {
            Emit::Seq(s)
                if !s.is_empty() && s.iter().all(|e| e == &s[0] && matches!(e, Emit::Int(_))) =>
            {
                s[0].clone()
            }
            _ => v.clone(),
        },
        _ => v.clone(),
    }
}

/// A run of repeated block instances.
#[derive(Debug, Clone)]
struct Group {
    id: String,
    block: String,
    n: usize,
    /// The reference the first instance reads (a public name).
    input: String,
    with: Vec<(String, Emit)>,
    first: Vec<(String, Emit)>,
    /// Per instance: (layer index, local id).
    members: Vec<Vec<(usize, String)>>,
    /// Local id of each instance's output.
    out_local: String,
    /// The index of its first instance (`P.from`, …).
    from: usize,
    /// Its block's layers, before the values are bound.
    template: Vec<TL>,
    kind: Kind,
    /// What its block is named after when runs share it (`layer` for `layer1` … `layer4`,
    /// `inception` for `inception3a` …).
    stem: String,
}

/// What a group stands for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// A run of instances `P.k` … (`repeat`).
    Run,
    /// One named module (`inception3a`): a block node without `repeat`, its id the module's
    /// path.
    Named,
    /// One numbered module `P.k` alone (MobileNetV2's `features.17`): `repeat: {count: 1,
    /// from: k}`.
    Indexed,
}

impl Group {
    /// A group standing in for nothing (while its slot is being filled).
    fn empty() -> Group {
        Group {
            id: String::new(),
            block: String::new(),
            n: 0,
            input: String::new(),
            with: Vec::new(),
            first: Vec::new(),
            members: Vec::new(),
            out_local: String::new(),
            from: 0,
            template: Vec::new(),
            kind: Kind::Run,
            stem: String::new(),
        }
    }

    /// How the top level names the group's output: `id`, or its last instance `id.K` when
    /// the id is filled by index ranges (another group's `id` may be later).
    fn public(&self, shared: bool) -> String {
        if self.kind == Kind::Named {
            self.id.clone()
        } else if shared || self.from != 0 || self.kind == Kind::Indexed {
            format!("{}.{}", self.id, self.from + self.n - 1)
        } else {
            self.id.clone()
        }
    }
}

enum Item {
    Layer(usize),
    Group(Box<Group>),
}

struct Rewriter {
    layers: Vec<Layer>,
    /// Folded layer id → the layer it is now part of.
    rename: HashMap<String, String>,
    outputs: Vec<String>,
    /// Whether the layers are a block definition's ([`nest`]): there a named sub-module is a
    /// block node of its own even without a twin or a number (`se`, `conv1`), unless its own
    /// layers are numbered (a Sequential's `0`, `1`: their ids would start with a digit).
    nested: bool,
}

/// A reference inside one instance: the block's input or one of its layers (local id, slot).
#[derive(Debug, Clone, PartialEq)]
enum LRef {
    In,
    Local(String, Option<String>),
}

/// What one instance's layer is, for comparing instances.
#[derive(Debug, Clone, PartialEq)]
struct Sig {
    local: String,
    op: String,
    ins: Vec<LRef>,
    list: bool,
    attrs: Vec<(String, Emit)>,
    bn: bool,
    act: Option<Emit>,
}

impl Rewriter {
    fn resolve(&self, r: &str) -> String {
        let (b, slot) = match r.split_once(':') {
            Some((a, s)) => (a, Some(s)),
            None => (r, None),
        };
        let mut b = b.to_string();
        let mut guard = 0;
        while let Some(n) = self.rename.get(&b) {
            b = n.clone();
            guard += 1;
            if guard > self.layers.len() + 1 {
                break;
            }
        }
        match slot {
            Some(s) => format!("{b}:{s}"),
            None => b,
        }
    }

    /// How many times each layer id is read (by layers and as a model output), after renames.
    fn readers(&self) -> HashMap<String, usize> {
        let mut c: HashMap<String, usize> = HashMap::new();
        for l in &self.layers {
            for r in &l.ins {
                *c.entry(base(&self.resolve(r)).to_string()).or_default() += 1;
            }
        }
        for o in &self.outputs {
            // An output counts twice: never folded away.
            *c.entry(base(&self.resolve(o)).to_string()).or_default() += 2;
        }
        c
    }

    /// Removes the layers at the indices in `drop` (folded into others); returns how many.
    fn drop_layers(&mut self, drop: &HashSet<usize>) -> usize {
        let mut k = 0;
        self.layers.retain(|_| {
            k += 1;
            !drop.contains(&(k - 1))
        });
        drop.len()
    }

    /// Folds batch norms into the convolution or linear layer they read; returns how many and
    /// the eps the folded ones share when it is not PyTorch's default (written as `defaults:`).
    fn fold_bn(&mut self) -> (usize, Option<f64>) {
        let eps_of = |l: &Layer| {
            l.attrs
                .iter()
                .find(|(k, _)| k == "eps")
                .and_then(|(_, v)| match v {
                    Emit::Float(f) => Some(*f),
                    _ => None,
                })
        };
        // The most common eps among foldable batch norms.
        let idx: HashMap<String, usize> = self
            .layers
            .iter()
            .enumerate()
            .map(|(k, l)| (l.id.clone(), k))
            .collect();
        let readers = self.readers();
        let foldable = |rw: &Self, k: usize| -> Option<usize> {
            let l = &rw.layers[k];
            if l.ins.len() != 1 || l.list {
                return None;
            }
            let x = &l.ins[0];
            if x.contains(':') {
                return None;
            }
            let &j = idx.get(x)?;
            let c = &rw.layers[j];
            let only = l.attrs.iter().all(|(k, _)| k == "eps");
            (fused_bn(&c.op) == Some(l.op.as_str())
                && !c.bn
                && c.act.is_none()
                && readers.get(x) == Some(&1)
                && only)
                .then_some(j)
        };
        let mut counts: Vec<(u64, usize)> = Vec::new();
        for k in 0..self.layers.len() {
            if foldable(self, k).is_some() {
                if let Some(e) = eps_of(&self.layers[k]) {
                    match counts.iter_mut().find(|(b, _)| *b == e.to_bits()) {
                        Some(c) => c.1 += 1,
                        None => counts.push((e.to_bits(), 1)),
                    }
                }
            }
        }
        let Some(&(eps_bits, _)) = counts.iter().max_by_key(|(_, c)| *c) else {
            return (0, None);
        };
        let eps = f64::from_bits(eps_bits);
        let mut drop = HashSet::new();
        for k in 0..self.layers.len() {
            let Some(j) = foldable(self, k) else { continue };
            if eps_of(&self.layers[k]).map(f64::to_bits) != Some(eps_bits) {
                continue;
            }
            let bn = self.layers[k].clone();
            let c = &mut self.layers[j];
            c.bn = true;
            for (old, sub) in bn.olds {
                let s = if sub.is_empty() {
                    "bn".to_string()
                } else {
                    format!("bn.{sub}")
                };
                c.olds.push((old, s));
            }
            self.rename.insert(bn.id.clone(), c.id.clone());
            drop.insert(k);
        }
        let n = self.drop_layers(&drop);
        // PyTorch's default (1e-5, read back as an f32).
        let default = f64::from(1e-5f32);
        (
            n,
            ((eps - default).abs() > 1e-12 && (eps - 1e-5).abs() > 1e-12).then_some(eps),
        )
    }

    /// Folds activations into the layer they read.
    fn fold_act(&mut self) -> usize {
        let readers = self.readers();
        let idx: HashMap<String, usize> = self
            .layers
            .iter()
            .enumerate()
            .map(|(k, l)| (l.id.clone(), k))
            .collect();
        let mut drop = HashSet::new();
        for k in 0..self.layers.len() {
            let a = &self.layers[k];
            if !a.pointwise_act || a.ins.len() != 1 || a.list {
                continue;
            }
            let x = self.resolve(&a.ins[0]);
            if x.contains(':') {
                continue;
            }
            let Some(&j) = idx.get(&x) else { continue };
            let c = &self.layers[j];
            if c.act.is_some() || drop.contains(&j) || readers.get(&x) != Some(&1) || !c.takes_act {
                continue;
            }
            let act = if a.attrs.is_empty() {
                Emit::str(a.op.clone())
            } else {
                let mut m = vec![("op".to_string(), Emit::str(a.op.clone()))];
                m.extend(a.attrs.iter().cloned());
                Emit::Map(m).flow()
            };
            let a = a.clone();
            self.layers[j].act = Some(act);
            for (old, _) in a.olds {
                self.layers[j].olds.push((old, a.op.clone()));
            }
            self.rename.insert(a.id.clone(), x);
            drop.insert(k);
        }
        self.drop_layers(&drop)
    }

    fn resolve_all(&mut self) {
        let ins: Vec<Vec<String>> = self
            .layers
            .iter()
            .map(|l| l.ins.iter().map(|r| self.resolve(r)).collect())
            .collect();
        for (l, i) in self.layers.iter_mut().zip(ins) {
            l.ins = i;
        }
        self.outputs = self.outputs.iter().map(|o| self.resolve(o)).collect();
        self.rename.clear();
    }

    /// Renames each layer after its whole module path (`features_2_0_block_2_avgpool`) where
    /// that name is free, so top-level names say where a layer sits in the PyTorch model.
    fn name_by_path<'b>(&mut self, first: &str, inputs: impl Iterator<Item = &'b str>) {
        let mut taken: HashSet<String> = inputs.map(str::to_string).collect();
        taken.insert(first.to_string());
        let mut wanted: Vec<Option<String>> = Vec::with_capacity(self.layers.len());
        let mut count: HashMap<String, usize> = HashMap::new();
        for l in &self.layers {
            let w = l.path.as_deref().map(ident);
            if let Some(w) = &w {
                *count.entry(w.clone()).or_default() += 1;
            }
            wanted.push(w);
        }
        let mut map: HashMap<String, String> = HashMap::new();
        let mut next: Vec<String> = Vec::with_capacity(self.layers.len());
        for (l, w) in self.layers.iter().zip(&wanted) {
            let id = match w {
                Some(w) if count[w] == 1 && !taken.contains(w) => w.clone(),
                _ => l.id.clone(),
            };
            next.push(id);
        }
        // A kept id must not clash with a new one.
        let new_set: HashSet<&String> = next
            .iter()
            .zip(&self.layers)
            .filter(|(n, l)| **n != l.id)
            .map(|(n, _)| n)
            .collect();
        for (k, l) in self.layers.iter().enumerate() {
            if next[k] == l.id && new_set.contains(&l.id) {
                return;
            }
        }
        taken.extend(next.iter().cloned());
        for (l, n) in self.layers.iter().zip(&next) {
            map.insert(l.id.clone(), n.clone());
        }
        let rn = |r: &str| -> String {
            match r.split_once(':') {
                Some((a, s)) => format!("{}:{s}", map.get(a).map_or(a, String::as_str)),
                None => map.get(r).cloned().unwrap_or_else(|| r.to_string()),
            }
        };
        for l in self.layers.iter_mut() {
            l.ins = l.ins.iter().map(|r| rn(r)).collect();
        }
        self.outputs = self.outputs.iter().map(|r| rn(r)).collect();
        for (l, n) in self.layers.iter_mut().zip(next) {
            l.id = n;
        }
    }

    /// Each group's output layer id → the group's id.
    fn group_outputs(&self, items: &[Item]) -> HashMap<String, String> {
        let mut per_id: HashMap<&str, usize> = HashMap::new();
        for it in items {
            if let Item::Group(g) = it {
                *per_id.entry(g.id.as_str()).or_default() += 1;
            }
        }
        let mut m = HashMap::new();
        for it in items {
            if let Item::Group(g) = it {
                let last = g.members.last().expect("instances");
                if let Some((k, _)) = last.iter().find(|(_, loc)| *loc == g.out_local) {
                    m.insert(
                        self.layers[*k].id.clone(),
                        g.public(per_id[g.id.as_str()] > 1),
                    );
                }
            }
        }
        m
    }

    /// Recognises repeated blocks.
    fn group(&mut self) -> (Vec<Item>, Vec<(String, usize)>) {
        let n = self.layers.len();
        let idx: HashMap<String, usize> = self
            .layers
            .iter()
            .enumerate()
            .map(|(k, l)| (l.id.clone(), k))
            .collect();
        // Readers of each layer: layer indices, or usize::MAX for a model output.
        let mut readers: HashMap<usize, Vec<usize>> = HashMap::new();
        for (k, l) in self.layers.iter().enumerate() {
            for r in &l.ins {
                if let Some(&j) = idx.get(base(r)) {
                    readers.entry(j).or_default().push(k);
                }
            }
        }
        for o in &self.outputs {
            if let Some(&j) = idx.get(base(o)) {
                readers.entry(j).or_default().push(usize::MAX);
            }
        }
        let used_ids: HashSet<String> = self.layers.iter().map(|l| l.id.clone()).collect();
        // Per group id: the end of the index range its groups fill so far (several groups
        // may fill later ranges of one id, `repeat: {count, from}`).
        let mut group_end: HashMap<String, usize> = HashMap::new();
        let mut items = Vec::new();
        let mut i = 0;
        while i < n {
            let mut done = false;
            if let Some(p) = self.layers[i].path.clone() {
                let comps: Vec<&str> = p.split('.').collect();
                // The deepest parent first: the smallest repeated unit (EfficientNet's
                // MBConvs within a stage, not the stages within `features`).
                for c in (1..comps.len()).rev() {
                    let Some(k0) = comps[c]
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                        .then(|| comps[c].parse::<usize>().ok())
                        .flatten()
                        .filter(|&k| k < MAX_GROUP)
                    else {
                        continue;
                    };
                    let parent = comps[..c].join(".");
                    // Tried once per run: where instance k0 starts (bounds the work to
                    // layers × path depth, times the few run lengths tried).
                    let pre = format!("{parent}.{k0}");
                    if i > 0 && under(&self.layers[i - 1].path, &pre) {
                        continue;
                    }
                    if group_end.get(&ident(&parent)).is_some_and(|&e| k0 < e) {
                        continue;
                    }
                    let insts = self.instances(i, &parent, k0);
                    let most = self.alike_prefix(&parent, k0, &insts);
                    let g = (2..=most).rev().take(3).find_map(|m| {
                        self.try_group(&parent, k0, &insts[..m], &idx, &readers, &used_ids)
                    });
                    if let Some(g) = g {
                        group_end.insert(g.id.clone(), k0 + g.n);
                        let end = g
                            .members
                            .last()
                            .and_then(|m| m.iter().map(|(k, _)| *k).max())
                            .unwrap_or(i);
                        items.push(Item::Group(Box::new(g)));
                        i = end + 1;
                        done = true;
                        break;
                    }
                }
            }
            if !done {
                items.push(Item::Layer(i));
                i += 1;
            }
        }
        self.units(&mut items, &idx, &readers);
        let found: Vec<(String, usize)> = items
            .iter()
            .filter_map(|it| match it {
                Item::Group(g) => Some((g.id.clone(), g.n)),
                Item::Layer(_) => None,
            })
            .collect();
        // Top-level references to grouped layers go through the group.
        let outs = self.group_outputs(&items);
        let publics: Vec<Vec<String>> = items
            .iter()
            .map(|it| match it {
                Item::Layer(k) => self.layers[*k]
                    .ins
                    .iter()
                    .map(|r| outs.get(base(r)).cloned().unwrap_or_else(|| r.to_string()))
                    .collect(),
                Item::Group(_) => Vec::new(),
            })
            .collect();
        for (it, p) in items.iter().zip(publics) {
            if let Item::Layer(k) = it {
                self.layers[*k].ins = p;
            }
        }
        (items, found)
    }

    /// The layer ranges of the consecutive instances `parent.k0`, `parent.{k0+1}`, … from
    /// layer `start` (at most [`MAX_GROUP`]).
    fn instances(&self, start: usize, parent: &str, k0: usize) -> Vec<(usize, usize)> {
        let mut insts: Vec<(usize, usize)> = Vec::new();
        let mut j = start;
        while insts.len() < MAX_GROUP {
            let pre = format!("{parent}.{}", k0 + insts.len());
            let s = j;
            while j < self.layers.len() && under(&self.layers[j].path, &pre) {
                j += 1;
            }
            if j == s {
                break;
            }
            insts.push((s, j));
        }
        insts
    }

    /// How many of the instances could form one run: the first, then those the same as the
    /// second in layers and values (wiring aside; [`Rewriter::try_group`] checks the rest).
    fn alike_prefix(&self, parent: &str, k0: usize, insts: &[(usize, usize)]) -> usize {
        type Key<'k> = Vec<(
            &'k str,
            &'k str,
            &'k Vec<(String, Emit)>,
            bool,
            &'k Option<Emit>,
        )>;
        let key = |inst: usize| -> Key<'_> {
            let (s, e) = insts[inst];
            let pre = format!("{parent}.{}", k0 + inst);
            self.layers[s..e]
                .iter()
                .map(|l| {
                    let p = l.path.as_deref().unwrap_or("");
                    let rest = p.strip_prefix(pre.as_str()).unwrap_or("");
                    (rest, l.op.as_str(), &l.attrs, l.bn, &l.act)
                })
                .collect()
        };
        if insts.len() < 2 {
            return insts.len();
        }
        let k1 = key(1);
        1 + (1..insts.len())
            .take_while(|&i| i == 1 || key(i) == k1)
            .count()
    }

    #[allow(clippy::too_many_arguments)]
    fn try_group(
        &self,
        parent: &str,
        k0: usize,
        insts: &[(usize, usize)],
        idx: &HashMap<String, usize>,
        readers: &HashMap<usize, Vec<usize>>,
        used_ids: &HashSet<String>,
    ) -> Option<Group> {
        // A block is at least two layers (one convolution per "instance" is a coincidence of
        // Sequential indices, not a repeated sub-graph).
        if insts.len() < 2 || insts.iter().any(|(s, e)| e - s < 2) {
            return None;
        }
        let start = insts[0].0;
        let end = insts[insts.len() - 1].1;
        // Local ids per instance.
        let mut members: Vec<Vec<(usize, String)>> = Vec::new();
        let mut local_of: HashMap<usize, (usize, String)> = HashMap::new();
        let mut rels: HashMap<usize, String> = HashMap::new();
        for (inst, &(s, e)) in insts.iter().enumerate() {
            let pre = format!("{parent}.{}", k0 + inst);
            let mut seen = HashSet::new();
            let mut m = Vec::new();
            for k in s..e {
                let l = &self.layers[k];
                let p = l.path.as_deref().unwrap_or("");
                let rest = p.strip_prefix(&pre).unwrap_or("").trim_start_matches('.');
                let b = if rest.is_empty() {
                    l.op.clone()
                } else {
                    ident(rest)
                };
                let mut loc = b.clone();
                let mut q = 1;
                while !seen.insert(loc.clone()) {
                    q += 1;
                    loc = format!("{b}_{q}");
                }
                if !rest.is_empty() && loc == b {
                    rels.insert(k, rest.to_string());
                }
                local_of.insert(k, (inst, loc.clone()));
                m.push((k, loc));
            }
            members.push(m);
        }
        // References, per instance, as LRef; the external one of each instance.
        let mut sigs: Vec<Vec<Sig>> = Vec::new();
        let mut externals: Vec<Option<String>> = Vec::new();
        for (inst, m) in members.iter().enumerate() {
            let mut ext: Option<String> = None;
            let mut v = Vec::new();
            for (k, loc) in m {
                let l = &self.layers[*k];
                let mut ins = Vec::new();
                for r in &l.ins {
                    let b = base(r);
                    let slot = r.split_once(':').map(|(_, s)| s.to_string());
                    match idx.get(b).and_then(|j| local_of.get(j)) {
                        Some((i2, loc2)) if *i2 == inst => {
                            ins.push(LRef::Local(loc2.clone(), slot))
                        }
                        _ => {
                            match &ext {
                                Some(e) if e != r => return None,
                                _ => ext = Some(r.clone()),
                            }
                            ins.push(LRef::In);
                        }
                    }
                }
                v.push(Sig {
                    local: loc.clone(),
                    op: l.op.clone(),
                    ins,
                    list: l.list,
                    attrs: l.attrs.clone(),
                    bn: l.bn,
                    act: l.act.clone(),
                });
            }
            // A sum reads its inputs in either order: the block's input last, so that a
            // sum switched off by `when` passes the block's own output on (MobileNetV2's
            // `x + conv(x)`).
            for (sig, (k, _)) in v.iter_mut().zip(m) {
                if self.layers[*k].commutes
                    && sig.list
                    && sig.ins.len() == 2
                    && sig.ins[0] == LRef::In
                {
                    sig.ins.swap(0, 1);
                }
            }
            externals.push(ext);
            sigs.push(v);
        }
        // Each instance after the first reads one layer of the one before: its output (the
        // first instance's may differ from the others').
        let mut outs: Vec<String> = Vec::new();
        for (inst, e) in externals.iter().enumerate().skip(1) {
            let e = e.as_ref()?;
            if e.contains(':') {
                return None;
            }
            let &k = idx.get(e.as_str())?;
            let (i2, loc) = local_of.get(&k)?;
            if *i2 != inst - 1 {
                return None;
            }
            outs.push(loc.clone());
        }
        // The last instance's output: what is read after the run (as the others').
        let last = members.len() - 1;
        let mut after: Option<String> = None;
        for (k, (inst, loc)) in &local_of {
            for &r in readers.get(k).map(Vec::as_slice).unwrap_or(&[]) {
                if !(r >= start && r < end) && *inst == last {
                    match &after {
                        Some(a) if a != loc => return None,
                        _ => after = Some(loc.clone()),
                    }
                }
            }
        }
        outs.push(match after {
            Some(a) => a,
            None => outs.last()?.clone(),
        });
        let out0 = outs[0].clone();
        let out1 = outs[1].clone();
        if outs[1..].iter().any(|o| *o != out1) {
            return None;
        }
        let input = externals[0].clone()?;
        // Readers outside the run reach the last instance's output only; inside, a layer is
        // read by its own instance or (the output) by the next one.
        for (k, (inst, loc)) in &local_of {
            for &r in readers.get(k).map(Vec::as_slice).unwrap_or(&[]) {
                let inside = r >= start && r < end;
                if inside {
                    let (ri, _) = &local_of[&r];
                    if ri != inst && !(*ri == inst + 1 && *loc == outs[*inst]) {
                        return None;
                    }
                } else if !(*inst == last && *loc == out1) {
                    return None;
                }
            }
        }
        // Instances 1.. identical; the first may differ in values, have layers of its own
        // (`when: $first_only`) and lack layers the others have (`when: $rest_only`).
        for s in &sigs[2..] {
            if *s != sigs[1] {
                return None;
            }
        }
        let s0 = &sigs[0];
        let s1 = &sigs[1];
        let l0: HashSet<&str> = s0.iter().map(|s| s.local.as_str()).collect();
        let l1: HashSet<&str> = s1.iter().map(|s| s.local.as_str()).collect();
        let extras0: HashSet<String> = s0
            .iter()
            .filter(|s| !l1.contains(s.local.as_str()))
            .map(|s| s.local.clone())
            .collect();
        let extras1: HashSet<String> = s1
            .iter()
            .filter(|s| !l0.contains(s.local.as_str()))
            .map(|s| s.local.clone())
            .collect();
        // A switched-off layer passes its first input through.
        let through = |sig: &[Sig], extras: &HashSet<String>, r: &LRef| -> Option<LRef> {
            let mut r = r.clone();
            for _ in 0..=sig.len() {
                match &r {
                    LRef::Local(x, None) if extras.contains(x) => {
                        r = sig.iter().find(|s| s.local == *x)?.ins.first()?.clone();
                    }
                    LRef::Local(x, Some(_)) if extras.contains(x) => return None,
                    _ => return Some(r),
                }
            }
            None
        };
        // The block's output, switched through each instance's own layers, is its output.
        let out_local = out1.clone();
        let lr = |x: &str| LRef::Local(x.to_string(), None);
        let all0: HashSet<String> = extras1.iter().cloned().collect();
        if through(s1, &all0, &lr(&out_local)) != Some(lr(&out0))
            && !(extras1.is_empty() && out0 == out1)
        {
            return None;
        }
        if extras0.contains(&out_local) {
            return None;
        }
        // The merged list: both orders kept, the shared layers in the same order.
        let mut merged: Vec<(usize, &Sig, Vec<LRef>)> = Vec::new();
        let (mut i0, mut i1) = (0, 0);
        let is_extra = |extras: &HashSet<String>, r: &LRef| matches!(r, LRef::Local(x, _) if extras.contains(x));
        while i0 < s0.len() || i1 < s1.len() {
            if i0 < s0.len() && extras0.contains(&s0[i0].local) {
                merged.push((0, &s0[i0], s0[i0].ins.clone()));
                i0 += 1;
            } else if i1 < s1.len() && extras1.contains(&s1[i1].local) {
                merged.push((1, &s1[i1], s1[i1].ins.clone()));
                i1 += 1;
            } else if i0 < s0.len() && i1 < s1.len() && s0[i0].local == s1[i1].local {
                let (a, b) = (&s0[i0], &s1[i1]);
                if a.op != b.op
                    || a.list != b.list
                    || a.bn != b.bn
                    || a.act != b.act
                    || a.ins.len() != b.ins.len()
                    || a.attrs.len() != b.attrs.len()
                {
                    return None;
                }
                // One wiring for both: an input only the first instance has is read where
                // the first reads it (the others pass through it), and the other way round.
                let mut ins = Vec::new();
                for (ra, rb) in a.ins.iter().zip(&b.ins) {
                    if through(s0, &extras0, ra)? != through(s1, &extras1, rb)? {
                        return None;
                    }
                    let (ea, eb) = (is_extra(&extras0, ra), is_extra(&extras1, rb));
                    match (ea, eb) {
                        (true, true) => return None,
                        (true, false) => ins.push(ra.clone()),
                        (false, true) => ins.push(rb.clone()),
                        (false, false) if ra == rb => ins.push(ra.clone()),
                        _ => return None,
                    }
                }
                merged.push((2, a, ins));
                i0 += 1;
                i1 += 1;
            } else {
                return None;
            }
        }
        // A switched layer of a block inside a block ([`nest`]) cannot be switched again.
        if merged
            .iter()
            .any(|(f, sig, _)| *f != 2 && sig.attrs.iter().any(|(k, _)| k == "when"))
        {
            return None;
        }
        // Instances that differ in more values than they have layers are different blocks.
        let mut differing = 0;
        let mut template = Vec::with_capacity(merged.len());
        for (from, sig, ins) in &merged {
            let keys: Vec<String> = sig.attrs.iter().map(|(k, _)| k.clone()).collect();
            let vals = |s: &[Sig]| -> Option<Vec<Option<Emit>>> {
                let t = s.iter().find(|x| x.local == sig.local)?;
                if t.attrs.len() != keys.len()
                    || t.attrs.iter().zip(&keys).any(|((k, _), q)| k != q)
                {
                    return None;
                }
                Some(
                    t.attrs
                        .iter()
                        .map(|(k, v)| Some(compact_attr(&sig.op, k, v)))
                        .collect(),
                )
            };
            let none = vec![None; keys.len()];
            let (first, rest) = match from {
                0 => (vals(s0)?, none),
                1 => (none, vals(s1)?),
                _ => (vals(s0)?, vals(s1)?),
            };
            differing += first
                .iter()
                .zip(&rest)
                .filter(|(a, b)| a.is_some() && b.is_some() && a != b)
                .count();
            let inst = if *from == 0 { 0 } else { 1 };
            let layer = members[inst]
                .iter()
                .find(|(_, l)| *l == sig.local)
                .map(|(k, _)| *k)?;
            template.push(TL {
                local: sig.local.clone(),
                op: sig.op.clone(),
                ins: ins.clone(),
                list: sig.list,
                bn: sig.bn,
                act: sig.act.clone(),
                keys,
                when: *from as u8,
                first,
                rest,
                layer,
                rel: rels.get(&layer).cloned(),
            });
        }
        if differing > s1.len() {
            return None;
        }
        let id = ident(parent);
        if used_ids.contains(&id) {
            return None;
        }
        Some(Group {
            id,
            block: String::new(),
            n: members.len(),
            from: k0,
            input,
            with: Vec::new(),
            first: Vec::new(),
            members,
            out_local,
            template,
            kind: Kind::Run,
            stem: ident(parent),
        })
    }

    /// One module's layers `s..e` (all of them, consecutive) as a block used once: the
    /// module reads one tensor from outside and only one of its layers (its output, slot 0)
    /// is read from outside. Its local ids are its layers' paths below `pre`, as a run's.
    #[allow(clippy::too_many_arguments)]
    fn try_unit(
        &self,
        (s, e): (usize, usize),
        pre: &str,
        id: String,
        from: usize,
        kind: Kind,
        stem: String,
        (idx, readers): (&HashMap<String, usize>, &HashMap<usize, Vec<usize>>),
    ) -> Option<Group> {
        if e - s < 2 {
            return None;
        }
        let mut seen = HashSet::new();
        let mut members = Vec::new();
        let mut local_of: HashMap<usize, String> = HashMap::new();
        let mut rels: HashMap<usize, String> = HashMap::new();
        for k in s..e {
            let l = &self.layers[k];
            let p = l.path.as_deref().unwrap_or("");
            let rest = p.strip_prefix(pre).unwrap_or("").trim_start_matches('.');
            let b = if rest.is_empty() {
                l.op.clone()
            } else {
                ident(rest)
            };
            let mut loc = b.clone();
            let mut q = 1;
            while !seen.insert(loc.clone()) {
                q += 1;
                loc = format!("{b}_{q}");
            }
            if !rest.is_empty() && loc == b {
                rels.insert(k, rest.to_string());
            }
            local_of.insert(k, loc.clone());
            members.push((k, loc));
        }
        let mut ext: Option<String> = None;
        let mut template = Vec::with_capacity(members.len());
        for (k, loc) in &members {
            let l = &self.layers[*k];
            let mut ins = Vec::new();
            for r in &l.ins {
                let slot = r.split_once(':').map(|(_, s)| s.to_string());
                match idx.get(base(r)).and_then(|j| local_of.get(j)) {
                    Some(loc2) => ins.push(LRef::Local(loc2.clone(), slot)),
                    None => {
                        match &ext {
                            Some(x) if x != r => return None,
                            _ => ext = Some(r.clone()),
                        }
                        ins.push(LRef::In);
                    }
                }
            }
            // A sum reads the block's input last (as in a run's block).
            if l.commutes && l.list && ins.len() == 2 && ins[0] == LRef::In {
                ins.swap(0, 1);
            }
            let vals: Vec<Option<Emit>> = l
                .attrs
                .iter()
                .map(|(k, v)| Some(compact_attr(&l.op, k, v)))
                .collect();
            template.push(TL {
                local: loc.clone(),
                op: l.op.clone(),
                ins,
                list: l.list,
                bn: l.bn,
                act: l.act.clone(),
                keys: l.attrs.iter().map(|(k, _)| k.clone()).collect(),
                when: 2,
                first: vals.clone(),
                rest: vals,
                layer: *k,
                rel: rels.get(k).cloned(),
            });
        }
        let input = ext?;
        // Read from outside: one layer, slot 0 only; no layer outside takes the group's id.
        let mut out: Option<&str> = None;
        let mut outside = |r: &str| -> bool {
            let Some(loc) = idx.get(base(r)).and_then(|j| local_of.get(j)) else {
                return true;
            };
            if r.contains(':') {
                return false;
            }
            match out {
                Some(o) if o != loc => false,
                _ => {
                    out = Some(loc);
                    true
                }
            }
        };
        if idx.get(id.as_str()).is_some_and(|j| !(s..e).contains(j)) {
            return None;
        }
        for k in s..e {
            for &r in readers.get(&k).map(Vec::as_slice).unwrap_or(&[]) {
                if (s..e).contains(&r) {
                    continue;
                }
                let refs = if r == usize::MAX {
                    &self.outputs
                } else {
                    &self.layers[r].ins
                };
                for x in refs {
                    if idx.get(base(x)) == Some(&k) && !outside(x) {
                        return None;
                    }
                }
            }
        }
        let out_local = match out {
            Some(o) => o.to_string(),
            None => members.last()?.1.clone(),
        };
        Some(Group {
            id,
            block: String::new(),
            n: 1,
            input,
            with: Vec::new(),
            first: Vec::new(),
            members: vec![members],
            out_local,
            from,
            template,
            kind,
            stem,
        })
    }

    /// Single modules as block nodes: among the stretches of layers no run took, each module
    /// (a path prefix whose layers are all there, consecutive, at least two) that is either
    /// numbered (`features.17`) or named with a trailing number, or a letter after a digit
    /// (`inception3a`, `encoder_layer_0`), and that has the structure of a run or of another
    /// such module (so shares a block definition with it, [`classify`]). The outermost module
    /// wins (`inception3a`, not its `branch2`).
    fn units(
        &self,
        items: &mut Vec<Item>,
        idx: &HashMap<String, usize>,
        readers: &HashMap<usize, Vec<usize>>,
    ) {
        let run_ids: HashSet<String> = items
            .iter()
            .filter_map(|it| match it {
                Item::Group(g) => Some(g.id.clone()),
                Item::Layer(_) => None,
            })
            .collect();
        // Layers per module path prefix.
        let prefixes = |p: &str| -> Vec<String> {
            let comps: Vec<&str> = p.split('.').collect();
            (1..=comps.len()).map(|d| comps[..d].join(".")).collect()
        };
        let mut count: HashMap<String, usize> = HashMap::new();
        for l in &self.layers {
            if let Some(p) = &l.path {
                for pre in prefixes(p) {
                    *count.entry(pre).or_default() += 1;
                }
            }
        }
        // Candidates: (unit, range, prefix depth), in item order.
        let mut cands: Vec<(Group, (usize, usize), usize)> = Vec::new();
        let mut k = 0;
        while k < items.len() {
            let Item::Layer(s0) = items[k] else {
                k += 1;
                continue;
            };
            // The stretch of layers s0..e0 (item indices k..).
            let mut e0 = s0;
            while k + (e0 - s0) < items.len()
                && matches!(items[k + (e0 - s0)], Item::Layer(j) if j == e0)
            {
                e0 += 1;
            }
            for i in s0..e0 {
                let Some(p) = &self.layers[i].path else {
                    continue;
                };
                for (d, pre) in prefixes(p).into_iter().enumerate() {
                    if i > s0 && under(&self.layers[i - 1].path, &pre) {
                        continue;
                    }
                    let mut e = i;
                    while e < e0 && under(&self.layers[e].path, &pre) {
                        e += 1;
                    }
                    if e - i < 2 || count.get(&pre) != Some(&(e - i)) {
                        continue;
                    }
                    let (parent, last) = match pre.rsplit_once('.') {
                        Some((a, b)) => (a.to_string(), b),
                        None => (String::new(), pre.as_str()),
                    };
                    let unit = if let Ok(from) = last.parse::<usize>() {
                        if parent.is_empty() || from >= MAX_GROUP {
                            continue;
                        }
                        let id = ident(&parent);
                        self.try_unit(
                            (i, e),
                            &pre,
                            id.clone(),
                            from,
                            Kind::Indexed,
                            id,
                            (idx, readers),
                        )
                    } else {
                        if self.nested {
                            // Not a Sequential: no layer's path continues with a number.
                            let numbered = self.layers[i..e].iter().any(|l| {
                                l.path
                                    .as_deref()
                                    .and_then(|p| p.strip_prefix(pre.as_str()))
                                    .and_then(|r| r.strip_prefix('.'))
                                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                            });
                            if numbered || e - i == self.layers.len() {
                                continue;
                            }
                        } else if name_stem(last).is_none() {
                            continue;
                        }
                        let id = ident(&pre);
                        if run_ids.contains(&id) {
                            continue;
                        }
                        self.try_unit(
                            (i, e),
                            &pre,
                            id,
                            0,
                            Kind::Named,
                            block_stem(&ident(last)),
                            (idx, readers),
                        )
                    };
                    if let Some(u) = unit {
                        cands.push((u, (i, e), d));
                    }
                }
            }
            k += e0 - s0;
        }
        let runs: Vec<(usize, Group)> = items
            .iter()
            .filter_map(|it| match it {
                Item::Group(g) => {
                    let s = g.members.first()?.iter().map(|(k, _)| *k).min()?;
                    Some((s, (**g).clone()))
                }
                Item::Layer(_) => None,
            })
            .collect();
        // Cheap pruning: a module must have the structure of another candidate or fit a run.
        let key = |g: &Group| {
            let t: Vec<_> = g
                .template
                .iter()
                .map(|l| (&l.local, &l.op, &l.ins, l.list, l.bn, &l.act, &l.keys))
                .collect();
            format!("{t:?}")
        };
        let keys: Vec<String> = cands.iter().map(|c| key(&c.0)).collect();
        let mut alive: Vec<bool> = (0..cands.len())
            .map(|a| {
                (self.nested && cands[a].0.kind == Kind::Named)
                    || keys
                        .iter()
                        .enumerate()
                        .any(|(b, kb)| a != b && *kb == keys[a])
                    || runs
                        .iter()
                        .any(|(_, r)| fits(r, &cands[a].0) || fits(&cands[a].0, r))
            })
            .collect();
        // Sorted by start, then the widest range, then the outer path first: the module ranges
        // nest (they are a tree's), so a sweep finds the outermost alive ones.
        let mut order: Vec<usize> = (0..cands.len()).collect();
        order.sort_by_key(|&a| (cands[a].1 .0, std::cmp::Reverse(cands[a].1 .1), cands[a].2));
        let mut rounds = 0;
        let chosen = loop {
            rounds += 1;
            let mut chosen: Vec<usize> = Vec::new();
            let mut end = 0;
            for &a in &order {
                if alive[a] && cands[a].1 .0 >= end {
                    chosen.push(a);
                    end = cands[a].1 .1;
                }
            }
            let mut all: Vec<(usize, Option<usize>, &Group)> =
                runs.iter().map(|(s, g)| (*s, None, g)).collect();
            all.extend(
                chosen
                    .iter()
                    .map(|&a| (cands[a].1 .0, Some(a), &cands[a].0)),
            );
            all.sort_by_key(|x| x.0);
            let gs: Vec<&Group> = all.iter().map(|x| x.2).collect();
            let classes = classify(&gs);
            let mut bad = Vec::new();
            for (_, members) in &classes {
                if members.len() == 1 {
                    if let Some(a) = all[members[0]].1 {
                        if !(self.nested && cands[a].0.kind == Kind::Named) {
                            bad.push(a);
                        }
                    }
                }
            }
            // Index ranges of one id must follow each other in file order; a named module's
            // id is its own.
            let mut end: HashMap<&str, usize> = HashMap::new();
            let mut kinds: HashMap<&str, usize> = HashMap::new();
            for (_, _, g) in &all {
                *kinds.entry(g.id.as_str()).or_default() += 1;
            }
            for (_, a, g) in &all {
                let e = end.entry(g.id.as_str()).or_insert(0);
                if (g.from < *e && g.kind != Kind::Named)
                    || (g.kind == Kind::Named && kinds[g.id.as_str()] > 1)
                {
                    if let Some(a) = a {
                        bad.push(*a);
                    }
                }
                *e = (*e).max(g.from + g.n);
            }
            // Each round drops at least one module; past MAX_UNIT_ROUNDS the ones left stay,
            // each then shares its definition with whatever the final classes give it.
            if bad.is_empty() || rounds >= MAX_UNIT_ROUNDS {
                break chosen
                    .into_iter()
                    .filter(|a| !bad.contains(a))
                    .collect::<Vec<_>>();
            }
            for a in bad {
                alive[a] = false;
            }
        };
        if chosen.is_empty() {
            return;
        }
        let mut at: HashMap<usize, usize> = HashMap::new();
        for &a in &chosen {
            at.insert(cands[a].1 .0, a);
        }
        let mut taken: Vec<Option<Group>> = cands.into_iter().map(|c| Some(c.0)).collect();
        let old = std::mem::take(items);
        let mut skip_to = 0;
        for it in old {
            match it {
                Item::Layer(j) if j < skip_to => {}
                Item::Layer(j) => match at.get(&j) {
                    Some(&a) => {
                        let g = taken[a].take().expect("chosen once");
                        skip_to = g.members[0].iter().map(|(k, _)| *k).max().unwrap_or(j) + 1;
                        items.push(Item::Group(Box::new(g)));
                    }
                    None => items.push(Item::Layer(j)),
                },
                g => items.push(g),
            }
        }
    }
}

/// The stem a named module shares with its siblings: the name without its trailing number
/// (`encoder_layer_0` → `encoder_layer_`), or without a trailing letter after a digit
/// (`inception3a` → `inception3`, `Mixed_5b` → `Mixed_5`); None for other names.
fn name_stem(name: &str) -> Option<String> {
    let t = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if t.len() < name.len() {
        return (!t.is_empty()).then(|| t.to_string());
    }
    let mut cs = name.chars().rev();
    match (cs.next(), cs.next()) {
        (Some(a), Some(b)) if a.is_ascii_alphabetic() && b.is_ascii_digit() => {
            Some(name[..name.len() - 1].to_string())
        }
        _ => None,
    }
}

/// A block's name stem from a group's: without a trailing letter after a digit, then without
/// trailing digits and `_` (`layer1` → `layer`, `inception3a` → `inception`).
fn block_stem(s: &str) -> String {
    let b = s.as_bytes();
    let t = if b.len() >= 2
        && b[b.len() - 1].is_ascii_alphabetic()
        && b[b.len() - 2].is_ascii_digit()
    {
        &s[..s.len() - 1]
    } else {
        s
    };
    t.trim_end_matches(|c: char| c.is_ascii_digit() || c == '_')
        .to_string()
}

/// One layer of a group's block, before the values are bound: its wiring, the attribute keys,
/// whether only the first instance (`when` 0), only the others (1) or all (2) have it, and the
/// values of its attributes in the first instance and in the others (None where it has none).
#[derive(Debug, Clone)]
struct TL {
    local: String,
    op: String,
    ins: Vec<LRef>,
    list: bool,
    bn: bool,
    act: Option<Emit>,
    keys: Vec<String>,
    when: u8,
    first: Vec<Option<Emit>>,
    rest: Vec<Option<Emit>>,
    /// A layer of the model this one is (for the emitted layer's other fields).
    layer: usize,
    /// Its module path below the instance (`se.fc1`), when it has one: the modules inside a
    /// block ([`nest`]).
    rel: Option<String>,
}

/// Whether a module path is `pre` or below it.
fn under(p: &Option<String>, pre: &str) -> bool {
    p.as_deref()
        .is_some_and(|p| p == pre || p.strip_prefix(pre).is_some_and(|r| r.starts_with('.')))
}

/// A template with its layers switched on by `when` (0: first only, 1: rest only) in `drop`
/// removed, each reference to one of them followed to the first input it passes on.
fn strip(t: &[TL], drop: &[u8]) -> Option<Vec<TL>> {
    let gone: HashMap<&str, &TL> = t
        .iter()
        .filter(|l| drop.contains(&l.when))
        .map(|l| (l.local.as_str(), l))
        .collect();
    let follow = |r: &LRef| -> Option<LRef> {
        let mut r = r.clone();
        for _ in 0..=t.len() {
            match &r {
                LRef::Local(x, None) if gone.contains_key(x.as_str()) => {
                    r = gone[x.as_str()].ins.first()?.clone();
                }
                LRef::Local(x, Some(_)) if gone.contains_key(x.as_str()) => return None,
                _ => return Some(r),
            }
        }
        None
    };
    t.iter()
        .filter(|l| !drop.contains(&l.when))
        .map(|l| {
            let mut l = l.clone();
            l.ins = l.ins.iter().map(follow).collect::<Option<Vec<_>>>()?;
            Some(l)
        })
        .collect()
}

/// Same layers, wiring and keys (values aside).
fn same_structure(a: &[TL], b: &[TL]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.local == y.local
                && x.op == y.op
                && x.ins == y.ins
                && x.list == y.list
                && x.bn == y.bn
                && x.act == y.act
                && x.keys == y.keys
                && x.when == y.when
        })
}

/// Whether a group's template is the representative's with some of its switched layers
/// removed (or the same): then it uses the representative's block, those switched off.
fn fits(rep: &Group, g: &Group) -> bool {
    [&[][..], &[0], &[1], &[0, 1]].iter().any(|d| {
        out_through(&rep.template, d, &rep.out_local).as_deref() == Some(g.out_local.as_str())
            && strip(&rep.template, d).is_some_and(|s| same_structure(&s, &g.template))
    })
}

/// The layer a block's output `out` comes from once its layers switched on by `when` in `drop`
/// are off (each passes its first input on): MobileNetV2's `add`, off, gives `conv_2`.
fn out_through(t: &[TL], drop: &[u8], out: &str) -> Option<String> {
    let mut o = out.to_string();
    for _ in 0..=t.len() {
        let l = t.iter().find(|l| l.local == o)?;
        if !drop.contains(&l.when) {
            return Some(o);
        }
        match l.ins.first()? {
            LRef::Local(x, None) => o = x.clone(),
            _ => return None,
        }
    }
    None
}

/// A parameter of a shared block: the (layer, key) slots it fills and its value per group,
/// in the first instance and in the others.
struct Param {
    name: String,
    /// A value naming a parameter of the enclosing block (`$width`, [`nest`]): passed on
    /// with `with:` as a parameter of its own, which does not count as a difference.
    forced: bool,
    slots: Vec<(usize, usize)>,
    first: Vec<Option<Emit>>,
    rest: Vec<Option<Emit>>,
}

/// Readable parameter names by attribute (`out` is the block's width).
fn param_base(key: &str) -> String {
    match key {
        "out" => "width".to_string(),
        k => ident(k),
    }
}

/// The parameters of a block shared by `groups` (representative `rep`), or None when they
/// differ in more values than the block has layers (different blocks, by the same rule as
/// within one run).
fn plan(rep: &Group, groups: &[&Group]) -> Option<Vec<Param>> {
    let mut params: Vec<Param> = Vec::new();
    for (li, tl) in rep.template.iter().enumerate() {
        for (ki, key) in tl.keys.iter().enumerate() {
            let value = |g: &Group, first: bool| -> Option<Emit> {
                let l = g.template.iter().find(|l| l.local == tl.local)?;
                let k = l.keys.iter().position(|k| k == key)?;
                if first {
                    l.first[k].clone()
                } else {
                    l.rest[k].clone()
                }
            };
            let first: Vec<Option<Emit>> = groups.iter().map(|g| value(g, true)).collect();
            let rest: Vec<Option<Emit>> = groups.iter().map(|g| value(g, false)).collect();
            let mut all = first.iter().chain(&rest).flatten();
            let v0 = all.next();
            let forced = first.iter().chain(&rest).flatten().any(is_ref);
            if all.all(|v| Some(v) == v0) && !forced {
                continue;
            }
            // One parameter for slots that agree wherever both are set (and share some).
            let agree = |a: &[Option<Emit>], b: &[Option<Emit>]| -> Option<bool> {
                let mut shared = false;
                for (x, y) in a.iter().zip(b) {
                    if let (Some(x), Some(y)) = (x, y) {
                        if x != y {
                            return None;
                        }
                        shared = true;
                    }
                }
                Some(shared)
            };
            match params.iter_mut().find(|p| {
                p.forced == forced
                    && match (agree(&p.first, &first), agree(&p.rest, &rest)) {
                        (Some(a), Some(b)) => a || b,
                        _ => false,
                    }
            }) {
                Some(p) => {
                    p.slots.push((li, ki));
                    for (x, y) in p.first.iter_mut().zip(first) {
                        if x.is_none() {
                            *x = y;
                        }
                    }
                    for (x, y) in p.rest.iter_mut().zip(rest) {
                        if x.is_none() {
                            *x = y;
                        }
                    }
                }
                None => {
                    let base = param_base(key);
                    let mut name = base.clone();
                    if params.iter().any(|p| p.name == name) {
                        name = ident(&format!("{}_{base}", tl.local));
                    }
                    let mut q = 1;
                    let stem = name.clone();
                    while params.iter().any(|p| p.name == name)
                        || ["first_only", "rest_only"].contains(&name.as_str())
                        || crate::expr::BUILTIN_NAMES.iter().any(|(b, _)| *b == name)
                    {
                        q += 1;
                        name = format!("{stem}_{q}");
                    }
                    params.push(Param {
                        name,
                        forced,
                        slots: vec![(li, ki)],
                        first,
                        rest,
                    });
                }
            }
        }
    }
    (params.iter().filter(|p| !p.forced).count() <= rep.template.len()).then_some(params)
}

/// Whether a value names a parameter (`$width`): a block definition's, inside [`nest`].
fn is_ref(v: &Emit) -> bool {
    matches!(v, Emit::Str(s) if s.starts_with('$'))
}

/// Groups of one structure (values aside): a representative (the group with the most switched
/// layers) and the members (indices into `groups`), each class with its parameters planned.
fn classify(groups: &[&Group]) -> Vec<(usize, Vec<usize>)> {
    // Classes: a representative (the group with the most switched layers) and members.
    let mut classes: Vec<(usize, Vec<usize>)> = Vec::new();
    for gi in 0..groups.len() {
        let mut placed = false;
        for (rep, members) in classes.iter_mut() {
            let g = &groups[gi];
            // The class's groups with the new one.
            let all: Vec<&Group> = members.iter().chain([&gi]).map(|&m| groups[m]).collect();
            if fits(groups[*rep], g) && plan(groups[*rep], &all).is_some() {
                members.push(gi);
                placed = true;
                break;
            }
            // The new group is richer: it becomes the representative if all fit it.
            if fits(g, groups[*rep])
                && members.iter().all(|&m| fits(g, groups[m]))
                && plan(g, &all).is_some()
            {
                *rep = gi;
                members.push(gi);
                placed = true;
                break;
            }
        }
        if !placed {
            classes.push((gi, vec![gi]));
        }
    }
    classes
}

/// Gives groups of the same structure one block definition: values that differ between them
/// (or between a group's first instance and the others) become the block's parameters, named
/// after the attribute (`width` for `out`, `stride`, `kernel`, …); a value the same in every
/// group's other instances is the parameter's default. Each group gets its block name,
/// `with:` and `first:`; the definitions are returned in order.
fn share(groups: &mut [Group], layers: &[Layer], used: &mut HashSet<String>) -> Vec<Def> {
    let classes = classify(&groups.iter().collect::<Vec<_>>());
    let mut defs = Vec::new();
    for (rep, members) in &classes {
        let gs: Vec<&Group> = members.iter().map(|&m| &groups[m]).collect();
        let params = plan(&groups[*rep], &gs).expect("planned when the class was made");
        let r = &groups[*rep];
        // The block's name: the run's id without its stage number (`layer1` … `layer4`:
        // `layer_block`), a named module's name without its number or letter (`inception3a`:
        // `inception_block`), or the id when it is alone.
        let stem = if members.len() > 1 {
            block_stem(&r.stem)
        } else {
            r.stem.clone()
        };
        let stem = if stem.is_empty() { "stage" } else { &stem };
        let mut block = format!("{stem}_block");
        let mut q = 1;
        while used.contains(&block) {
            q += 1;
            block = format!("{stem}_block_{q}");
        }
        used.insert(block.clone());
        let has0 = r.template.iter().any(|l| l.when == 0);
        let has1 = r.template.iter().any(|l| l.when == 1);
        // Defaults: a value every group's other instances share; else that of the first
        // group that has one, when some group sets it nowhere (its layers are off there).
        let mut bparams: Vec<(String, Emit)> = Vec::new();
        let mut defaults: Vec<Option<Emit>> = Vec::new();
        for p in &params {
            let rests: Vec<&Emit> = p.rest.iter().flatten().collect();
            let common = (!rests.is_empty() && rests.iter().all(|v| *v == rests[0]))
                .then(|| rests[0].clone());
            let unset = p
                .rest
                .iter()
                .zip(&p.first)
                .any(|(r, f)| r.is_none() && f.is_none());
            let d = common
                .or_else(|| {
                    unset
                        .then(|| p.rest.iter().chain(&p.first).flatten().next().cloned())
                        .flatten()
                })
                // An enclosing block's parameter is passed on, never a default.
                .filter(|v| !is_ref(v));
            bparams.push((
                p.name.clone(),
                d.clone().unwrap_or_else(|| Emit::str("required")),
            ));
            defaults.push(d);
        }
        if has0 {
            bparams.push(("first_only".into(), Emit::Bool(false)));
        }
        if has1 {
            bparams.push(("rest_only".into(), Emit::Bool(false)));
        }
        // The definition, from the representative's template.
        let slot_param: HashMap<(usize, usize), &str> = params
            .iter()
            .flat_map(|p| p.slots.iter().map(move |s| (*s, p.name.as_str())))
            .collect();
        let mut bnodes = Vec::new();
        let mut sub = Vec::new();
        let mut prev: Option<String> = None;
        for (li, tl) in r.template.iter().enumerate() {
            let mut l = layers[tl.layer].clone();
            l.attrs = tl
                .keys
                .iter()
                .enumerate()
                .map(|(ki, k)| {
                    let v = match slot_param.get(&(li, ki)) {
                        Some(p) => Emit::Str(format!("${p}")),
                        None => {
                            let mut vs = gs.iter().filter_map(|g| {
                                let l2 = g.template.iter().find(|x| x.local == tl.local)?;
                                let k2 = l2.keys.iter().position(|x| x == k)?;
                                l2.first[k2].clone().or_else(|| l2.rest[k2].clone())
                            });
                            vs.next().unwrap_or(Emit::Null)
                        }
                    };
                    (k.clone(), v)
                })
                .collect();
            l.ins = tl
                .ins
                .iter()
                .map(|r| match r {
                    LRef::In => "$in".to_string(),
                    LRef::Local(x, None) => x.clone(),
                    LRef::Local(x, Some(s)) => format!("{x}:{s}"),
                })
                .collect();
            let when = match tl.when {
                0 => Some("$first_only"),
                1 => Some("$rest_only"),
                _ => None,
            };
            let mut sl = l.clone();
            sl.id = tl.local.clone();
            sl.path = tl.rel.clone();
            sl.olds = vec![(tl.local.clone(), String::new())];
            if let Some(w) = when {
                sl.attrs.insert(0, ("when".into(), Emit::str(w)));
            }
            sub.push(sl);
            bnodes.push(layer_emit(
                &l,
                &tl.local,
                |r| r.to_string(),
                prev.as_deref(),
                "$in",
                when,
            ));
            prev = Some(tl.local.clone());
        }
        let mut def = Def {
            name: block.clone(),
            params: (!bparams.is_empty()).then(|| Emit::Map(bparams).flow()),
            nodes: bnodes,
            output: None,
            layers: sub,
            out: r.out_local.clone(),
            rename: HashMap::new(),
            users: members
                .iter()
                .map(|&m| (groups[m].id.clone(), groups[m].from))
                .collect(),
        };
        if r.template.last().map(|l| &l.local) != Some(&r.out_local) {
            def.output = Some(r.out_local.clone());
        }
        defs.push(def);
        // Per group: `with:` (the other instances' values, where not the default) and
        // `first:` (the first instance's, where not what `with:` gives it).
        for (gk, &m) in members.iter().enumerate() {
            let mut with = Vec::new();
            let mut first = Vec::new();
            for (p, d) in params.iter().zip(&defaults) {
                let rest = p.rest[gk].clone().or_else(|| d.clone());
                if let Some(v) = &p.rest[gk] {
                    if Some(v) != d.as_ref() {
                        with.push((p.name.clone(), v.clone()));
                    }
                } else if d.is_none() {
                    // Set nowhere in the others, and no default: the first's value.
                    if let Some(f) = &p.first[gk] {
                        with.push((p.name.clone(), f.clone()));
                    }
                }
                let given = rest.or_else(|| p.first[gk].clone());
                if let Some(f) = &p.first[gk] {
                    if Some(f) != given.as_ref() {
                        first.push((p.name.clone(), f.clone()));
                    }
                }
            }
            let g = &groups[m];
            let own0 = g.template.iter().any(|l| l.when == 0);
            let own1 = g.template.iter().any(|l| l.when == 1);
            if own0 {
                first.push(("first_only".into(), Emit::Bool(true)));
            }
            if own1 {
                with.push(("rest_only".into(), Emit::Bool(true)));
                first.push(("rest_only".into(), Emit::Bool(false)));
            }
            let g = &mut groups[m];
            g.block = block.clone();
            g.with = with;
            g.first = first;
        }
    }
    defs
}

/// The weights as a .safetensors file (F32 tensors, names sorted).
pub fn safetensors_bytes(
    weights: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<Vec<u8>, Diagnostic> {
    let bytes: Vec<Vec<u8>> = weights
        .iter()
        .map(|(_, _, d)| d.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(weights.len());
    for ((name, shape, _), b) in weights.iter().zip(&bytes) {
        let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
            .map_err(|e| Diagnostic::new(format!("tensor `{name}`: {e}")))?;
        views.push((name.clone(), v));
    }
    safetensors::tensor::serialize(views, &None)
        .map_err(|e| Diagnostic::new(format!("cannot write the weights: {e}")))
}
