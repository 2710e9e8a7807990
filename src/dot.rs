//! Diagrams: a built [`Network`] and its [`Analysis`] as a Graphviz graph, built with
//! graphviz-rust's `dot_structures` and printed with its printer. One node per layer (a fused
//! `bn`/`act` drawn inside its layer's node), a header colour per [`Category`] with a legend,
//! edges labelled with the tensor shape without batch, shortcut edges dashed, and one cluster per
//! block instance — or, collapsed, one node per top-level block instance or per run of repeated
//! instances, with summed figures. Everything layer-specific comes through the `Layer` trait
//! (`category()`, `label()`); nothing here matches on a layer type. No IO: the caller prints the
//! text or hands the graph to Graphviz. Output order follows the layer order, so the same model
//! gives byte-identical DOT.

use std::collections::{HashMap, HashSet};

use graphviz_rust::dot_structures::{
    Attribute, Edge, EdgeTy, Graph, GraphAttributes, Id, Node, NodeId, Stmt, Subgraph, Vertex,
};
use graphviz_rust::printer::{DotPrinter, PrinterContext};

use crate::analysis::{Analysis, LayerStats};
use crate::graph::Network;
use crate::layers::Category;
use crate::report::{human_bytes, human_count, rf_size};

/// How much of the block structure is folded into single nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Collapse {
    /// Every layer is a node; block instances are clusters.
    #[default]
    None,
    /// One node per top-level block instance.
    Blocks,
    /// One node per run of repeated instances (`layer3.0` … `layer3.5` → `layer3`).
    Repeats,
}

/// Direction of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RankDir {
    /// Top to bottom.
    #[default]
    TopBottom,
    /// Left to right.
    LeftRight,
}

/// Which figures a node shows under its op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Show {
    /// The (last) output shape, without batch.
    pub shape: bool,
    pub params: bool,
    pub macs: bool,
    pub flops: bool,
    /// Receptive-field size.
    pub rf: bool,
    /// Bytes of the node's outputs.
    pub memory: bool,
}

impl Default for Show {
    /// Parameters and MACs.
    fn default() -> Self {
        Show {
            shape: false,
            params: true,
            macs: true,
            flops: false,
            rf: false,
            memory: false,
        }
    }
}

impl Show {
    /// No figure rows.
    pub fn none() -> Show {
        Show {
            shape: false,
            params: false,
            macs: false,
            flops: false,
            rf: false,
            memory: false,
        }
    }
}

/// Options of a diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DotOptions {
    pub collapse: Collapse,
    pub rankdir: RankDir,
    pub show: Show,
    /// Draw a layer's fused children (`conv1.bn`, `conv1.relu`: named after it, fed only by the
    /// layer before, and read by nothing else) inside its node.
    pub fuse: bool,
}

impl Default for DotOptions {
    fn default() -> Self {
        DotOptions {
            collapse: Collapse::None,
            rankdir: RankDir::TopBottom,
            show: Show::default(),
            fuse: true,
        }
    }
}

/// Header colour and legend name of a category (the palette lives on [`Category`], shared
/// with the HTML report).
fn style(c: Category) -> (&'static str, &'static str) {
    (c.colour(), c.legend())
}

/// Legend order.
const CATEGORIES: [Category; 10] = Category::ALL;

/// Header colour of a folded block or run of repeats.
const BLOCK_COLOUR: &str = "#e4e4e4";
const BORDER: &str = "#6b6b6b";
const DIM: &str = "#555555";
const FONT: &str = "Helvetica";

/// What a node of the drawing stands for.
enum Kind {
    /// A layer, with its fused children (after `members[0]`).
    Layer,
    /// A top-level block instance folded into one node.
    Block { instance: usize },
    /// A run of repeated instances `path.0` … `path.{count-1}`: per block, in order, its name
    /// and instance count (one block, or several filling index ranges of one id with
    /// `repeat: {count, from}`).
    Repeats { runs: Vec<(String, usize)> },
}

/// One node of the drawing.
struct Unit {
    /// The node's DOT id and full name: a layer path, an instance path or a repeat group path.
    id: String,
    kind: Kind,
    /// Layer indices, in order.
    members: Vec<usize>,
    /// The block instance whose cluster holds the node.
    container: Option<usize>,
}

/// The graph of a network, ready to print ([`print`]) or to hand to graphviz-rust's `exec`.
pub fn graph(net: &Network, a: &Analysis, opts: &DotOptions) -> Graph {
    let units = units(net, opts);
    let mut unit_of = vec![0usize; net.nodes.len()];
    for (u, unit) in units.iter().enumerate() {
        for &k in &unit.members {
            unit_of[k] = u;
        }
    }
    let edges = edges(net, &units, &unit_of);

    let mut stmts = vec![
        Stmt::GAttribute(GraphAttributes::Graph(vec![
            attr("rankdir", plain(rankdir(opts.rankdir))),
            attr("fontname", quoted(FONT)),
            attr("fontsize", plain("12")),
            attr("label", quoted(&title(a))),
            attr("labelloc", plain("t")),
            attr("nodesep", plain("0.25")),
            attr("ranksep", plain("0.3")),
            attr("newrank", plain("true")),
        ])),
        Stmt::GAttribute(GraphAttributes::Node(vec![
            attr("shape", plain("plain")),
            attr("fontname", quoted(FONT)),
            attr("fontsize", plain("11")),
        ])),
        Stmt::GAttribute(GraphAttributes::Edge(vec![
            attr("fontname", quoted(FONT)),
            attr("fontsize", plain("9")),
            attr("color", quoted(DIM)),
            attr("fontcolor", quoted("#333333")),
            attr("arrowsize", plain("0.6")),
        ])),
        legend(net, &units, edges.iter().any(|e| e.dashed), opts.rankdir),
    ];

    // Nodes, nested in their clusters (opened at their first node, so in layer order).
    let mut items: Vec<Vec<Item>> = vec![Vec::new(); net.instances.len()];
    let mut top: Vec<Item> = Vec::new();
    let mut opened = vec![false; net.instances.len()];
    for (u, unit) in units.iter().enumerate() {
        let mut child = Item::Unit(u);
        let mut at = unit.container;
        while let Some(i) = at {
            items[i].push(child);
            if opened[i] {
                break;
            }
            opened[i] = true;
            child = Item::Cluster(i);
            at = net.instances[i].parent;
        }
        if at.is_none() {
            top.push(child);
        }
    }
    for item in &top {
        stmts.push(item_stmt(item, net, a, &units, &items, opts));
    }
    for e in &edges {
        edges_push(
            &mut stmts,
            &units[e.from].id,
            &units[e.to].id,
            &e.label,
            e.dashed,
        );
    }
    for o in &net.outputs {
        let id = format!("output:{}", o.name);
        let (colour, _) = style(Category::Input);
        let label = format!(
            "<table border=\"1\" cellborder=\"0\" cellspacing=\"0\" cellpadding=\"3\" color=\"{BORDER}\"><tr><td bgcolor=\"{colour}\"><b>{}</b></td></tr><tr><td>output</td></tr></table>",
            esc(&o.name)
        );
        stmts.push(Stmt::Node(Node::new(
            node_id(&id),
            vec![attr("label", html(&label))],
        )));
        edges_push(
            &mut stmts,
            &units[unit_of[o.node]].id,
            &id,
            &net.nodes[o.node].out_shapes[o.slot].shown(&net.nodes[o.node].out_layouts[o.slot]),
            false,
        );
    }
    Graph::DiGraph {
        id: quoted(&net.name),
        strict: false,
        stmts,
    }
}

/// The DOT text of a graph, as graphviz-rust prints it.
pub fn print(g: &Graph) -> String {
    g.print(&mut printer())
}

/// The printer settings used for [`print`] (pass the same to graphviz-rust's `exec`).
pub fn printer() -> PrinterContext {
    PrinterContext::default()
}

/// The DOT text of a network's diagram.
pub fn to_dot(net: &Network, a: &Analysis, opts: &DotOptions) -> String {
    print(&graph(net, a, opts))
}

#[derive(Clone, Copy)]
enum Item {
    Unit(usize),
    Cluster(usize),
}

fn item_stmt(
    item: &Item,
    net: &Network,
    a: &Analysis,
    units: &[Unit],
    items: &[Vec<Item>],
    opts: &DotOptions,
) -> Stmt {
    match *item {
        Item::Unit(u) => {
            let unit = &units[u];
            Stmt::Node(Node::new(
                node_id(&unit.id),
                vec![attr("label", html(&node_label(net, a, unit, opts)))],
            ))
        }
        Item::Cluster(i) => {
            let ins = &net.instances[i];
            let args: Vec<String> = ins.args.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let mut stmts = vec![
                Stmt::Attribute(attr(
                    "label",
                    quoted(&format!(
                        "{} = {}({})",
                        ins.path,
                        ins.block,
                        args.join(", ")
                    )),
                )),
                Stmt::Attribute(attr("style", quoted("rounded,dashed"))),
                Stmt::Attribute(attr("color", quoted("#8c8c8c"))),
                Stmt::Attribute(attr("fontcolor", quoted(DIM))),
                Stmt::Attribute(attr("fontsize", plain("10"))),
                Stmt::Attribute(attr("labeljust", plain("l"))),
                // At the bottom: edges fan into a block from above, and usually leave it from
                // one merge.
                Stmt::Attribute(attr("labelloc", plain("b"))),
            ];
            for child in &items[i] {
                stmts.push(item_stmt(child, net, a, units, items, opts));
            }
            Stmt::Subgraph(Subgraph {
                id: quoted(&format!("cluster_{}", ins.path)),
                stmts,
            })
        }
    }
}

/// Groups layers into the nodes of the drawing, in layer order.
fn units(net: &Network, opts: &DotOptions) -> Vec<Unit> {
    let topo = &net.topology;
    let mut units: Vec<Unit> = Vec::new();
    // Folded groups by id (lookups only; the order comes from `units`).
    let mut groups: HashMap<String, usize> = HashMap::new();
    for (k, node) in net.nodes.iter().enumerate() {
        let fold = match opts.collapse {
            Collapse::None => None,
            Collapse::Blocks => outermost(net, node.instance).map(|i| {
                (
                    net.instances[i].path.clone(),
                    Kind::Block { instance: i },
                    None,
                )
            }),
            Collapse::Repeats => repeat_group(net, node.instance).map(|(i, path)| {
                (
                    path,
                    Kind::Repeats { runs: Vec::new() },
                    net.instances[i].parent,
                )
            }),
        };
        if let Some((id, kind, container)) = fold {
            // Several nodes may fill index ranges of one id (`repeat: {count, from}`): one
            // drawing node while they follow each other, a new one (named after its first
            // instance) when another node comes between.
            let at = |u: usize| {
                repeat_group(net, net.nodes[units[u].members[0]].instance)
                    .map(|(i, _)| net.instances[i].at.clone())
            };
            let mine = repeat_group(net, node.instance).map(|(i, _)| i);
            match groups.get(&id) {
                Some(&u)
                    if u + 1 == units.len()
                        || mine.map(|i| net.instances[i].at.clone()) == at(u) =>
                {
                    units[u].members.push(k)
                }
                found => {
                    let name = match (found, mine) {
                        (Some(_), Some(i)) => net.instances[i].path.clone(),
                        _ => id.clone(),
                    };
                    groups.insert(id, units.len());
                    units.push(Unit {
                        id: name,
                        kind,
                        members: vec![k],
                        container,
                    });
                }
            }
            continue;
        }
        // Fused into the layer before when it is that layer's only reader (and the tensor is
        // not a model output).
        if opts.fuse
            && k > 0
            && node.inputs == [(k - 1, 0)]
            && topo.reads(k - 1).len() == 1
            && !topo.is_output(k - 1)
        {
            if let Some(last) = units.last_mut() {
                let head = &net.nodes[last.members[0]].name;
                let fused = matches!(last.kind, Kind::Layer)
                    && last.members.last() == Some(&(k - 1))
                    && node
                        .name
                        .strip_prefix(head.as_str())
                        .and_then(|s| s.strip_prefix('.'))
                        .is_some_and(|s| !s.is_empty() && !s.contains('.'));
                if fused {
                    last.members.push(k);
                    continue;
                }
            }
        }
        units.push(Unit {
            id: node.name.clone(),
            kind: Kind::Layer,
            members: vec![k],
            container: node.instance,
        });
    }
    // Count the instances of each run of repeats.
    for unit in &mut units {
        if let Kind::Repeats { runs } = &mut unit.kind {
            let mut seen: Vec<usize> = unit
                .members
                .iter()
                .filter_map(|&k| repeat_group(net, net.nodes[k].instance).map(|(i, _)| i))
                .collect();
            seen.sort_unstable();
            seen.dedup();
            for i in seen {
                let b = &net.instances[i].block;
                match runs.last_mut() {
                    Some((r, n)) if r == b => *n += 1,
                    _ => runs.push((b.clone(), 1)),
                }
            }
        }
    }
    units
}

/// The outermost block instance of a chain.
fn outermost(net: &Network, mut inst: Option<usize>) -> Option<usize> {
    let mut out = None;
    while let Some(i) = inst {
        out = Some(i);
        inst = net.instances[i].parent;
    }
    out
}

/// The outermost instance of a chain that is one of a run of repeats (`path.K`, K a number: the
/// only paths whose last component is not a name), with the run's path.
fn repeat_group(net: &Network, mut inst: Option<usize>) -> Option<(usize, String)> {
    let mut out = None;
    while let Some(i) = inst {
        let path = &net.instances[i].path;
        if let Some((run, k)) = path.rsplit_once('.') {
            if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) {
                out = Some((i, run.to_string()));
            }
        }
        inst = net.instances[i].parent;
    }
    out
}

struct DrawnEdge {
    from: usize,
    to: usize,
    label: String,
    dashed: bool,
}

/// Edges between units, in the order of their consumers, each labelled with the shape of the
/// tensor it carries. Inside a folded group edges vanish; several reads of one tensor by one
/// group are one edge.
fn edges(net: &Network, units: &[Unit], unit_of: &[usize]) -> Vec<DrawnEdge> {
    let mut out = Vec::new();
    let mut seen: HashSet<(usize, usize, usize, usize)> = HashSet::new();
    let mut stamp = vec![usize::MAX; net.nodes.len()];
    let mut stack = Vec::new();
    for (k, node) in net.nodes.iter().enumerate() {
        let to = unit_of[k];
        let short = if node.layer.category() == Category::Merge {
            shortcuts(net, k, &mut stamp, &mut stack)
        } else {
            Vec::new()
        };
        for (pos, &(src, slot)) in node.inputs.iter().enumerate() {
            let from = unit_of[src];
            if from == to {
                continue;
            }
            if !matches!(units[to].kind, Kind::Layer) && !seen.insert((from, to, src, slot)) {
                continue;
            }
            out.push(DrawnEdge {
                from,
                to,
                label: net.nodes[src].out_shapes[slot].shown(&net.nodes[src].out_layouts[slot]),
                dashed: short.get(pos).copied().unwrap_or(false),
            });
        }
    }
    out
}

/// Which inputs of merge layer `k` are shortcuts: those whose producer also reaches the merge
/// through another of its inputs (the identity of a residual add, the `$in` of a DenseNet
/// concat, a U-Net skip). Parallel branches (inception, a projected shortcut) are not.
/// A backward search from the producers' own inputs, pruned below the earliest producer (the
/// order is topological, so nothing earlier can descend from one).
fn shortcuts(net: &Network, k: usize, stamp: &mut [usize], stack: &mut Vec<usize>) -> Vec<bool> {
    let inputs = &net.nodes[k].inputs;
    let Some(lo) = inputs.iter().map(|&(s, _)| s).min() else {
        return Vec::new();
    };
    stack.clear();
    // Producers are expanded but not marked: a mark means "reached from another producer".
    stack.extend(inputs.iter().map(|&(p, _)| p));
    while let Some(v) = stack.pop() {
        for &(q, _) in &net.nodes[v].inputs {
            if q >= lo && stamp[q] != k {
                stamp[q] = k;
                stack.push(q);
            }
        }
    }
    inputs.iter().map(|&(p, _)| stamp[p] == k).collect()
}

fn edges_push(stmts: &mut Vec<Stmt>, from: &str, to: &str, label: &str, dashed: bool) {
    let mut attributes = vec![attr("label", quoted(&format!(" {label} ")))];
    if dashed {
        attributes.push(attr("style", plain("dashed")));
    }
    stmts.push(Stmt::Edge(Edge {
        ty: EdgeTy::Pair(Vertex::N(node_id(from)), Vertex::N(node_id(to))),
        attributes,
    }));
}

/// Summed figures of a unit.
struct Figures {
    params: u64,
    macs: u64,
    flops: u64,
    bytes: u64,
}

fn figures(layers: &[LayerStats], members: &[usize]) -> Figures {
    let mut f = Figures {
        params: 0,
        macs: 0,
        flops: 0,
        bytes: 0,
    };
    for &k in members {
        let l = &layers[k];
        f.params = f.params.saturating_add(l.params.total());
        f.macs = f.macs.saturating_add(l.macs);
        f.flops = f.flops.saturating_add(l.flops);
        f.bytes = f.bytes.saturating_add(l.activation_bytes);
    }
    f
}

fn node_label(net: &Network, a: &Analysis, unit: &Unit, opts: &DotOptions) -> String {
    let first = unit.members[0];
    let last = *unit.members.last().expect("a unit has a layer");
    // Names inside a cluster are shown relative to it (the cluster label carries the path).
    let name = match unit.container {
        Some(i) => {
            let p = &net.instances[i].path;
            unit.id
                .strip_prefix(p.as_str())
                .and_then(|s| s.strip_prefix('.'))
                .unwrap_or(&unit.id)
        }
        None => &unit.id,
    };
    let (colour, op, extra) = match &unit.kind {
        Kind::Layer => {
            let node = &net.nodes[first];
            let fused: Vec<&str> = unit.members[1..]
                .iter()
                .map(|&k| {
                    let n = &net.nodes[k].name;
                    n.rsplit_once('.').map_or(n.as_str(), |(_, s)| s)
                })
                .collect();
            (
                style(node.layer.category()).0,
                node.layer.label(),
                if fused.is_empty() {
                    None
                } else {
                    Some(format!("+ {}", fused.join(" + ")))
                },
            )
        }
        Kind::Block { instance } => {
            let ins = &net.instances[*instance];
            let args: Vec<String> = ins.args.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            (
                BLOCK_COLOUR,
                format!("{} ({} layers)", ins.block, unit.members.len()),
                Some(args.join(", ")),
            )
        }
        Kind::Repeats { runs } => (
            BLOCK_COLOUR,
            format!(
                "{} ({} layers)",
                runs.iter()
                    .map(|(b, n)| format!("{b} ×{n}"))
                    .collect::<Vec<_>>()
                    .join(" + "),
                unit.members.len()
            ),
            None,
        ),
    };
    let mut rows = format!(
        "<tr><td bgcolor=\"{colour}\"><b>{}</b></td></tr><tr><td>{}</td></tr>",
        esc(name),
        esc(&op)
    );
    if let Some(x) = extra {
        rows += &format!(
            "<tr><td><font point-size=\"9\" color=\"{DIM}\">{}</font></td></tr>",
            esc(&x)
        );
    }
    let s = &opts.show;
    let f = figures(&a.layers, &unit.members);
    let mut lines: Vec<String> = Vec::new();
    if s.shape {
        let l = &a.layers[last];
        let outs: Vec<String> = l
            .outputs
            .iter()
            .zip(&l.out_layouts)
            .map(|(x, lay)| x.shown(lay))
            .collect();
        lines.push(format!("out {}", outs.join(", ")));
    }
    if s.params && f.params > 0 {
        lines.push(format!("{} params", human_count(f.params)));
    }
    if s.macs && f.macs > 0 {
        lines.push(format!("{} MACs", human_count(f.macs)));
        // One attention layer: heads, tokens and its MACs by product (torchvision convention).
        if let (Kind::Layer, Some(&one)) = (&unit.kind, unit.members.first()) {
            if let Some(at) = &a.layers[one].attention {
                lines.push(format!(
                    "{} heads × {}, {}{}×{} tokens",
                    at.heads,
                    at.head_dim,
                    if at.windows > 1 {
                        format!("{} windows of ", at.windows)
                    } else {
                        String::new()
                    },
                    at.queries,
                    at.keys
                ));
                lines.push(format!(
                    "proj {} · Q·Kᵀ {} · A·V {}",
                    human_count(at.projections),
                    human_count(at.scores),
                    human_count(at.values)
                ));
            }
        }
    }
    if s.flops && f.flops > 0 {
        lines.push(format!("{} FLOPs", human_count(f.flops)));
    }
    if s.rf {
        lines.push(format!("RF {}", rf_size(&a.layers[last].rf)));
    }
    if s.memory && f.bytes > 0 {
        lines.push(format!("mem {}", human_bytes(f.bytes)));
    }
    if !lines.is_empty() {
        let body: Vec<String> = lines.iter().map(|l| esc(l)).collect();
        rows += &format!(
            "<tr><td><font point-size=\"9\" color=\"{DIM}\">{}</font></td></tr>",
            body.join("<br/>")
        );
    }
    format!(
        "<table border=\"1\" cellborder=\"0\" cellspacing=\"0\" cellpadding=\"3\" color=\"{BORDER}\">{rows}</table>"
    )
}

/// The legend: one colour per category drawn, folded blocks, dashed shortcuts.
fn legend(net: &Network, units: &[Unit], dashed: bool, rankdir: RankDir) -> Stmt {
    let mut used = [false; CATEGORIES.len()];
    let mut blocks = false;
    for unit in units {
        match unit.kind {
            Kind::Layer => {
                let c = net.nodes[unit.members[0]].layer.category();
                if let Some(i) = CATEGORIES.iter().position(|&x| x == c) {
                    used[i] = true;
                }
            }
            _ => blocks = true,
        }
    }
    used[0] = true; // the model outputs
    let mut entries: Vec<(&str, &str)> = CATEGORIES
        .iter()
        .zip(used)
        .filter(|(_, u)| *u)
        .map(|(c, _)| style(*c))
        .collect();
    if blocks {
        entries.push((BLOCK_COLOUR, "block (folded)"));
    }
    let mut cells: Vec<String> = entries
        .iter()
        .map(|(colour, name)| {
            format!("<td bgcolor=\"{colour}\" width=\"14\"></td><td align=\"left\">{name}</td>")
        })
        .collect();
    if dashed {
        cells.push("<td>- -</td><td align=\"left\">shortcut</td>".to_string());
    }
    // Top to bottom: a short grid of three entries a row, so that the rank it shares with the
    // inputs stays low; left to right: one column.
    let per_row = match rankdir {
        RankDir::TopBottom => 3,
        RankDir::LeftRight => 1,
    };
    let mut rows = format!(
        "<tr><td colspan=\"{}\" align=\"left\"><b>legend</b></td></tr>",
        2 * per_row
    );
    for chunk in cells.chunks(per_row) {
        rows += &format!("<tr>{}</tr>", chunk.concat());
    }
    let label = format!(
        "<font point-size=\"9\"><table border=\"1\" cellborder=\"0\" cellspacing=\"2\" cellpadding=\"2\" color=\"{BORDER}\">{rows}</table></font>"
    );
    Stmt::Subgraph(Subgraph {
        id: plain("legend"),
        stmts: vec![
            Stmt::Attribute(attr("rank", plain("min"))),
            Stmt::Node(Node::new(
                node_id("legend:"),
                vec![attr("label", html(&label))],
            )),
        ],
    })
}

fn title(a: &Analysis) -> String {
    let inputs: Vec<String> = a.inputs.iter().map(|s| s.per_sample()).collect();
    format!(
        "{} · input {} · {} params · {} MACs",
        a.model,
        inputs.join(", "),
        human_count(a.totals.params),
        human_count(a.totals.macs)
    )
}

fn rankdir(r: RankDir) -> &'static str {
    match r {
        RankDir::TopBottom => "TB",
        RankDir::LeftRight => "LR",
    }
}

fn attr(k: &str, v: Id) -> Attribute {
    Attribute(plain(k), v)
}

/// An identifier or number that DOT takes unquoted.
fn plain(s: &str) -> Id {
    Id::Plain(s.to_string())
}

/// A quoted DOT string.
fn quoted(s: &str) -> Id {
    Id::Escaped(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// An HTML-like label (`<…>`). graphviz-rust's parser ends such a label at the first `>>`, so
/// every label here is one whole element (a table, or a font around one), with text escaped.
fn html(s: &str) -> Id {
    Id::Html(format!("<{s}>"))
}

fn node_id(s: &str) -> NodeId {
    NodeId(quoted(s), None)
}

/// Escapes text for an HTML-like label (the one HTML escaper, [`report::html_text`]).
fn esc(s: &str) -> String {
    crate::report::html_text(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_dot_and_html() {
        // A model named `a "b" \c` stays one quoted DOT string that parses back.
        let id = quoted(r#"a "b" \c"#);
        assert_eq!(id, Id::Escaped(r#""a \"b\" \\c""#.to_string()));
        let g = Graph::DiGraph {
            id,
            strict: false,
            stmts: vec![Stmt::Node(Node::new(
                node_id("x"),
                vec![attr("label", html(&format!("<b>{}</b>", esc("<1 & 2>"))))],
            ))],
        };
        let text = print(&g);
        assert!(text.contains("label=<<b>&lt;1 &amp; 2&gt;</b>>"), "{text}");
        assert!(graphviz_rust::parse(&text).is_ok(), "{text}");
    }
}
