//! The architecture format's top level, read from a [`Document`]: name, inputs, model
//! parameters, per-op defaults, blocks and nodes. Checks what can be checked without expanding
//! anything (known keys with did-you-mean, known ops, identifiers and their lengths, block
//! parameters declared and used); no semantics beyond that. See docs/FORMAT.md.

use std::collections::HashMap;

use crate::error::{did_you_mean, excerpt, Diagnostic};
use crate::expr::{builtin, is_ident};
use crate::layers::{self, OpType};
use crate::yaml::{Document, YNode, YValue, YamlPath};

/// Keys every op node may carry.
pub const GENERIC_OP_KEYS: &[&str] = &["id", "op", "in", "when", "repeat", "bn", "act"];
/// Keys a block-use node may carry.
pub const USE_KEYS: &[&str] = &["id", "use", "in", "when", "repeat", "with", "first"];
const TOP_KEYS: &[&str] = &[
    "format",
    "name",
    "description",
    "source",
    "inputs",
    "params",
    "defaults",
    "blocks",
    "nodes",
    "outputs",
    "weights_names",
];
const BLOCK_KEYS: &[&str] = &["params", "defaults", "nodes", "output", "description"];
/// The format version this build reads.
pub const FORMAT: &str = "archscope/1";

/// `defaults:` — per canonical op name, attributes applied unless the node sets them.
pub type Defaults = Vec<(&'static str, Vec<(String, YNode)>)>;

#[derive(Debug)]
pub struct ModelSpec {
    pub name: String,
    pub inputs: Vec<(String, YNode)>,
    pub params: Vec<(String, YNode)>,
    pub defaults: Defaults,
    pub blocks: Vec<BlockSpec>,
    pub nodes: Vec<NodeSpec>,
    pub outputs: Option<Vec<YNode>>,
    /// `weights_names:` — how layer paths map to the tensor names of a `.safetensors` file.
    pub weights_names: WeightsNames,
}

/// Most rules under `weights_names:` (each layer with weights is matched against every rule).
pub const MAX_WEIGHTS_NAMES: usize = 1024;

/// One `weights_names:` rule: a layer-path pattern and the tensor-name prefix it stands for,
/// as dotted components; `*` matches any one component of a layer path, and the `*`s of the
/// target receive the matched components in order.
#[derive(Debug, Clone)]
pub struct NameRule {
    pub pattern: Vec<String>,
    pub target: Vec<String>,
    pub path: YamlPath,
}

/// The `weights_names:` rules in file order (the first whose pattern matches a layer's whole
/// path applies; a layer no rule matches keeps its path).
#[derive(Debug, Clone, Default)]
pub struct WeightsNames {
    pub rules: Vec<NameRule>,
}

impl WeightsNames {
    /// The tensor-name prefix of the layer at `path`, and the index of the rule that gave it
    /// (`None`: no rule matches, the prefix is the path).
    pub fn resolve(&self, path: &str) -> (String, Option<usize>) {
        let parts: Vec<&str> = path.split('.').collect();
        for (i, r) in self.rules.iter().enumerate() {
            if r.pattern.len() != parts.len() {
                continue;
            }
            let mut caught = Vec::new();
            let hit = r.pattern.iter().zip(&parts).all(|(p, x)| {
                if p == "*" {
                    caught.push(*x);
                    true
                } else {
                    p == x
                }
            });
            if hit {
                let mut caught = caught.into_iter();
                let out: Vec<&str> = r
                    .target
                    .iter()
                    .map(|t| {
                        if t == "*" {
                            caught.next().unwrap_or("*")
                        } else {
                            t.as_str()
                        }
                    })
                    .collect();
                return (out.join("."), Some(i));
            }
        }
        (path.to_string(), None)
    }
}

/// The dotted components of a `weights_names:` pattern or target: names of ASCII letters,
/// digits and `_`, or `*`.
fn name_pattern(node: &YNode, text: &str, what: &str) -> Result<Vec<String>, Diagnostic> {
    let ok = |c: &str| {
        c == "*" || (!c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'))
    };
    if text.len() > 4 * MAX_NAME_LEN {
        return Err(err(
            node,
            format!(
                "the {what} `{}` is {} characters long; at most {}",
                excerpt(text),
                text.chars().count(),
                4 * MAX_NAME_LEN
            ),
        )
        .help("shorten it"));
    }
    let parts: Vec<String> = text.split('.').map(str::to_string).collect();
    if let Some(bad) = parts.iter().find(|c| !ok(c)) {
        return Err(err(
            node,
            format!("`{}` is not a valid {what}: component `{}`", excerpt(text), excerpt(bad)),
        )
        .help("write dotted names such as `layer1.*.conv1.bn` (a component is letters, digits and _, or `*` for any one component; quote a name holding `*`)"));
    }
    Ok(parts)
}

fn weights_names(node: Option<&YNode>) -> Result<WeightsNames, Diagnostic> {
    let Some(node) = node else {
        return Ok(WeightsNames::default());
    };
    let m = map(node, "`weights_names`")?;
    if m.len() > MAX_WEIGHTS_NAMES {
        return Err(err(
            node,
            format!(
                "`weights_names` has {} rules; at most {MAX_WEIGHTS_NAMES}",
                m.len()
            ),
        )
        .help("use `*` for a component that varies (`\"layer1.*.conv1.bn\": \"layer1.*.bn1\"`)"));
    }
    let mut rules = Vec::new();
    for (k, v) in m {
        let key_node = YNode::synthetic(YValue::Str(k.clone()), v.path.clone());
        let pattern = name_pattern(&key_node, k, "layer-path pattern")?;
        let text = v.as_str().ok_or_else(|| {
            err(
                v,
                format!(
                    "the tensor name for `{}` must be a string, found {} ({v})",
                    excerpt(k),
                    v.kind()
                ),
            )
            .help("e.g. `conv1.bn: bn1`")
        })?;
        let target = name_pattern(v, text, "tensor-name prefix")?;
        let stars = |p: &[String]| p.iter().filter(|c| *c == "*").count();
        if stars(&pattern) != stars(&target) {
            return Err(err(
                v,
                format!(
                    "`{}` has {} `*` but its tensor name `{}` has {}",
                    excerpt(k),
                    stars(&pattern),
                    excerpt(text),
                    stars(&target)
                ),
            )
            .help("each `*` of the pattern is written, in order, where the tensor name has a `*`: give both sides as many"));
        }
        rules.push(NameRule {
            pattern,
            target,
            path: v.path.clone(),
        });
    }
    Ok(WeightsNames { rules })
}

#[derive(Debug)]
pub struct BlockSpec {
    pub name: String,
    /// Parameter name and default (`None`: required).
    pub params: Vec<(String, Option<YNode>)>,
    pub defaults: Defaults,
    pub nodes: Vec<NodeSpec>,
    pub output: Option<YNode>,
    pub path: YamlPath,
}

#[derive(Debug)]
pub enum NodeKind {
    Op(&'static OpType),
    Use(String),
}

#[derive(Debug)]
pub struct NodeSpec {
    pub id: Option<String>,
    pub kind: NodeKind,
    pub input: Option<YNode>,
    pub when: Option<YNode>,
    pub repeat: Option<YNode>,
    pub with: Vec<(String, YNode)>,
    pub first: Vec<(String, YNode)>,
    pub bn: Option<YNode>,
    pub act: Option<YNode>,
    /// Op-specific attributes, unevaluated.
    pub attrs: Vec<(String, YNode)>,
    pub path: YamlPath,
}

fn err(node: &YNode, msg: impl Into<String>) -> Diagnostic {
    Diagnostic::new(msg).at(&node.path)
}

fn map<'a>(node: &'a YNode, what: &str) -> Result<&'a [(String, YNode)], Diagnostic> {
    match &node.value {
        YValue::Map(m) => Ok(m),
        _ => Err(err(
            node,
            format!("{what} must be a mapping, found {} ({node})", node.kind()),
        )
        .help("write `key: value` pairs, one per line or as `{key: value, …}`")),
    }
}

fn seq<'a>(node: &'a YNode, what: &str) -> Result<&'a [YNode], Diagnostic> {
    match &node.value {
        YValue::Seq(s) => Ok(s),
        _ => Err(err(
            node,
            format!("{what} must be a list, found {} ({node})", node.kind()),
        )
        .help("write a list: `[a, b]`, or one `- item` per line")),
    }
}

fn check_keys(m: &[(String, YNode)], allowed: &[&str], what: &str) -> Result<(), Diagnostic> {
    for (k, v) in m {
        if !allowed.contains(&k.as_str()) {
            let mut d =
                Diagnostic::new(format!("unknown key `{}` in {what}", excerpt(k))).at(&v.path);
            d = match did_you_mean(k, allowed.iter().copied()) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!("allowed keys: {}", allowed.join(", "))),
            };
            return Err(d);
        }
    }
    Ok(())
}

/// Longest layer id, block name or input name (a layer path joins a few of them; reports put
/// them in table cells).
pub const MAX_NAME_LEN: usize = 128;
/// Longest model `name`.
pub const MAX_MODEL_NAME_LEN: usize = 256;

fn ident(node: &YNode, what: &str) -> Result<String, Diagnostic> {
    match node.as_str() {
        Some(s) if s.len() > MAX_NAME_LEN => Err(err(
            node,
            format!(
                "the {what} `{}` is {} characters long; names are at most {MAX_NAME_LEN}",
                excerpt(s),
                s.chars().count()
            ),
        )
        .help("shorten it")),
        Some(s) if is_ident(s) => Ok(s.to_string()),
        Some(s) => Err(err(node, format!("`{}` is not a valid {what}", excerpt(s)))
            .help("names start with an ASCII letter or _ and go on with ASCII letters, digits and _ (no dots: dots separate block levels)")),
        None => Err(err(node, format!("{what} must be a name, found {} ({node})", node.kind()))),
    }
}

/// Checks a model or block parameter's name: an identifier (else `$name` could never refer to
/// it) and none of the names archscope binds itself (`in_ch`, `index`, `in`, …), which would
/// silently win over it or lose to it.
fn param_name(name: &str, value: &YNode, whose: &str) -> Result<(), Diagnostic> {
    let key_node = YNode::synthetic(YValue::Str(name.to_string()), value.path.clone());
    ident(&key_node, &format!("{whose} parameter name"))?;
    if let Some(what) = builtin(name) {
        return Err(err(
            value,
            format!("{whose} parameter `{name}` has the name of a builtin: `{name}` is {what}"),
        )
        .help(format!(
            "rename the parameter (e.g. `{name}_` or a more telling name) and its uses; `${name}` always means the builtin"
        )));
    }
    Ok(())
}

/// Finds an op by name, with a did-you-mean.
pub fn op_type(node: &YNode) -> Result<&'static OpType, Diagnostic> {
    let name = node
        .as_str()
        .ok_or_else(|| err(node, format!("`op` must be a name, found {node}")))?;
    layers::lookup(name).ok_or_else(|| {
        let mut d = err(node, format!("unknown op `{}`", excerpt(name)));
        d = match did_you_mean(name, layers::all_names()) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.help("`archscope ops` lists every op; docs/FORMAT.md describes them"),
        };
        d
    })
}

fn defaults(node: Option<&YNode>) -> Result<Defaults, Diagnostic> {
    let mut out: Defaults = Vec::new();
    let Some(node) = node else { return Ok(out) };
    for (k, v) in map(node, "`defaults`")? {
        let key_node = YNode::synthetic(YValue::Str(k.clone()), v.path.clone());
        let t = op_type(&key_node)?;
        let attrs = map(v, &format!("`defaults.{k}`"))?;
        let allowed: Vec<&str> = t.keys.iter().copied().chain(["act", "bn"]).collect();
        check_keys(attrs, &allowed, &format!("defaults for {}", t.name))?;
        if out.iter().any(|(n, _)| *n == t.name) {
            return Err(err(v, format!("defaults for `{}` are given twice", t.name)));
        }
        out.push((t.name, attrs.to_vec()));
    }
    Ok(out)
}

fn nodes(node: &YNode) -> Result<Vec<NodeSpec>, Diagnostic> {
    let items = seq(node, "`nodes`")?;
    if items.is_empty() {
        return Err(err(node, "`nodes` is empty").help("list at least one layer"));
    }
    items.iter().map(node_spec).collect()
}

fn node_spec(n: &YNode) -> Result<NodeSpec, Diagnostic> {
    let m = map(n, "a node")?;
    let get = |k: &str| m.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
    let id = get("id").map(|v| ident(&v, "layer id")).transpose()?;
    let kind = match (get("op"), get("use")) {
        (Some(op), None) => {
            let t = op_type(&op)?;
            if t.is_input() {
                return Err(err(
                    &op,
                    "inputs are declared under `inputs:`, not as nodes",
                ));
            }
            let allowed: Vec<&str> = GENERIC_OP_KEYS
                .iter()
                .chain(t.keys.iter())
                .copied()
                .collect();
            check_keys(m, &allowed, &format!("a `{}` node", t.name))?;
            if let (Some(bn), None) = (get("bn"), t.fused_bn) {
                return Err(err(&bn, format!("`bn:` cannot be fused after {}", t.name))
                    .help("add a separate `{op: batchnorm2d}` node, or fuse it on the conv/linear before"));
            }
            NodeKind::Op(t)
        }
        (None, Some(u)) => {
            check_keys(m, USE_KEYS, "a block-use node")?;
            NodeKind::Use(ident(&u, "block name")?)
        }
        (Some(op), Some(_)) => {
            return Err(err(
                &op,
                "a node has either `op:` (a layer) or `use:` (a block), not both",
            ))
        }
        (None, None) => {
            return Err(
                err(n, "a node needs `op:` (a layer type) or `use:` (a block)")
                    .help("e.g. `{id: conv1, op: conv, out: 64, kernel: 3}`"),
            )
        }
    };
    let pairs = |k: &str| -> Result<Vec<(String, YNode)>, Diagnostic> {
        match get(k) {
            None => Ok(Vec::new()),
            Some(v) => Ok(map(&v, &format!("`{k}`"))?.to_vec()),
        }
    };
    let generic = [
        "id", "op", "use", "in", "when", "repeat", "with", "first", "bn", "act",
    ];
    Ok(NodeSpec {
        id,
        kind,
        input: get("in"),
        when: get("when"),
        repeat: get("repeat"),
        with: pairs("with")?,
        first: pairs("first")?,
        bn: get("bn"),
        act: get("act"),
        attrs: m
            .iter()
            .filter(|(k, _)| !generic.contains(&k.as_str()))
            .cloned()
            .collect(),
        path: n.path.clone(),
    })
}

/// Names referred to by expressions (`$name`, identifiers inside `$(…)`) anywhere in `node`,
/// each with where it first appears.
fn referenced_names(node: &YNode, out: &mut HashMap<String, YamlPath>) {
    match &node.value {
        YValue::Str(s) if s.starts_with('$') => {
            let mut cur = String::new();
            for c in s[1..].chars().chain([' ']) {
                if c.is_ascii_alphanumeric() || c == '_' {
                    cur.push(c);
                } else if !cur.is_empty() {
                    if is_ident(&cur) && !out.contains_key(&cur) {
                        out.insert(cur.clone(), node.path.clone());
                    }
                    cur.clear();
                }
            }
        }
        YValue::Seq(items) => items.iter().for_each(|x| referenced_names(x, out)),
        YValue::Map(m) => m.iter().for_each(|(_, x)| referenced_names(x, out)),
        _ => {}
    }
}

impl ModelSpec {
    /// Reads the top level of a parsed document.
    pub fn from_document(doc: &Document) -> Result<ModelSpec, Diagnostic> {
        let root = &doc.root;
        let m = map(root, "the file")?;
        check_keys(m, TOP_KEYS, "the model")?;
        let get = |k: &str| root.get(k);
        if let Some(f) = get("format") {
            match f.as_str() {
                Some(FORMAT) => {}
                _ => {
                    return Err(err(f, format!("unsupported format `{f}`")).help(format!(
                        "this archscope reads `format: \"{FORMAT}\"` (quoted)"
                    )))
                }
            }
        }
        let name = match get("name") {
            Some(n) => {
                let s = n.as_str().ok_or_else(|| {
                    err(n, "`name` must be a string").help("e.g. `name: resnet50`")
                })?;
                if let Some(c) = s.chars().find(|c| c.is_control()) {
                    return Err(err(
                        n,
                        format!(
                            "the model name holds a line break or tab (U+{:04X})",
                            u32::from(c)
                        ),
                    )
                    .help("the name is one line in every report; put longer text under `description:`"));
                }
                if s.chars().count() > MAX_MODEL_NAME_LEN {
                    return Err(err(
                        n,
                        format!(
                            "the model name is {} characters long; it is at most {MAX_MODEL_NAME_LEN}",
                            s.chars().count()
                        ),
                    )
                    .help("put longer text under `description:`"));
                }
                s.to_string()
            }
            None => String::from("model"),
        };
        let inputs_node = get("inputs").ok_or_else(|| {
            Diagnostic::new("the model declares no `inputs:`")
                .at(&root.path)
                .help("add e.g. `inputs: {image: [3, 224, 224]}` (channels, height, width; the batch comes from --batch)")
        })?;
        let mut inputs = Vec::new();
        for (k, v) in map(inputs_node, "`inputs`")? {
            let key_node = YNode::synthetic(YValue::Str(k.clone()), v.path.clone());
            ident(&key_node, "input name")?;
            if let YValue::Map(m) = &v.value {
                // A token-id input: `{tokens: L, vocab: V}`.
                check_keys(m, &["tokens", "vocab"], &format!("token input `{k}`"))?;
                for key in ["tokens", "vocab"] {
                    if v.get(key).is_none() {
                        return Err(err(v, format!("token input `{k}` needs `{key}`"))
                            .help("write e.g. `ids: {tokens: 1024, vocab: 50257}` (sequence length and vocabulary size)"));
                    }
                }
            } else {
                seq(v, &format!("input `{k}`"))?;
            }
            inputs.push((k.clone(), v.clone()));
        }
        if inputs.is_empty() {
            return Err(
                err(inputs_node, "`inputs` is empty").help("add e.g. `image: [3, 224, 224]`")
            );
        }
        let params = match get("params") {
            Some(p) => map(p, "`params`")?.to_vec(),
            None => Vec::new(),
        };
        for (k, v) in &params {
            param_name(k, v, "model")?;
        }
        let mut blocks = Vec::new();
        if let Some(b) = get("blocks") {
            for (bname, bnode) in map(b, "`blocks`")? {
                let key_node = YNode::synthetic(YValue::Str(bname.clone()), bnode.path.clone());
                ident(&key_node, "block name")?;
                let bm = map(bnode, &format!("block `{bname}`"))?;
                check_keys(bm, BLOCK_KEYS, &format!("block `{bname}`"))?;
                let mut params = Vec::new();
                if let Some(p) = bnode.get("params") {
                    for (pk, pv) in map(p, "`params`")? {
                        param_name(pk, pv, &format!("block `{bname}`"))?;
                        let required = pv.as_str() == Some("required");
                        params.push((pk.clone(), if required { None } else { Some(pv.clone()) }));
                    }
                }
                let body = bnode
                    .get("nodes")
                    .ok_or_else(|| err(bnode, format!("block `{bname}` has no `nodes:`")))?;
                // A declared parameter nothing refers to is a mistake (`first: {stride: 2}`
                // that changes nothing, or a typo on one side).
                let mut used = HashMap::new();
                referenced_names(bnode, &mut used);
                if let Some(p) = bnode.get("params") {
                    let declared = map(p, "`params`")?;
                    for (pk, pv) in declared {
                        if !used.contains_key(pk.as_str()) {
                            // Most often a typo on the using side: say that, where it is.
                            let undeclared = used
                                .keys()
                                .filter(|u| !declared.iter().any(|(d, _)| d == *u))
                                .map(String::as_str);
                            let mut near: Vec<&str> = undeclared.collect();
                            near.sort_unstable();
                            if let Some(u) = near
                                .into_iter()
                                .find(|u| did_you_mean(u, [pk.as_str()]).is_some())
                            {
                                return Err(Diagnostic::new(format!(
                                    "block `{bname}` uses `{u}`, which is not one of its parameters"
                                ))
                                .at(&used[u])
                                .help(format!("did you mean `{pk}`?")));
                            }
                            return Err(err(
                                pv,
                                format!("block `{bname}` declares parameter `{pk}` but never uses it"),
                            )
                            .help(format!(
                                "refer to it in the block (`${pk}`, or `$({pk} * 2)` in an expression), or remove it"
                            )));
                        }
                    }
                }
                blocks.push(BlockSpec {
                    name: bname.clone(),
                    params,
                    defaults: defaults(bnode.get("defaults"))?,
                    nodes: nodes(body)?,
                    output: bnode.get("output").cloned(),
                    path: bnode.path.clone(),
                });
            }
        }
        let body = get("nodes").ok_or_else(|| {
            Diagnostic::new("the model has no `nodes:`")
                .at(&root.path)
                .help("list its layers under `nodes:`")
        })?;
        let outputs = match get("outputs") {
            None => None,
            Some(o) => match &o.value {
                YValue::Str(_) => Some(vec![o.clone()]),
                _ => {
                    let list = seq(o, "`outputs`")?;
                    if list.is_empty() {
                        return Err(Diagnostic::new("`outputs` is an empty list: a model needs at least one output")
                            .at(&o.path)
                            .help("name the layers whose results the model returns, e.g. `outputs: [fc]`, or drop `outputs:` to return the last layer"));
                    }
                    Some(list.to_vec())
                }
            },
        };
        Ok(ModelSpec {
            name,
            inputs,
            params,
            defaults: defaults(get("defaults"))?,
            blocks,
            nodes: nodes(body)?,
            outputs,
            weights_names: weights_names(get("weights_names"))?,
        })
    }
}
