//! The structure facts every pass reads, computed once from [`Network::graph`] (petgraph's)
//! when the network is built: who reads each layer's outputs and in what order
//! ([`Topology::reads`], [`Topology::consumers`]), the last reader, the model's sources and
//! outputs, which layers follow a layer on some path ([`Topology::followed_by`]), and liveness:
//! which storage each output lives in when views share their input's ([`Storage`]), and when
//! each storage dies in a pass run in topological order ([`Liveness`]). The executor, the
//! analysis (peak memory and its timeline), the audit, the training plan and the diagrams read
//! these instead of re-deriving them from the layers' inputs.
//!
//! Layer indices are positions in [`Network::nodes`], a topological order: every reader of a
//! layer comes after it. The facts rely on it (a last reader is the largest index).
//!
//! [`Network::graph`]: super::Network::graph
//! [`Network::nodes`]: super::Network::nodes

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use super::{NetNode, Output};

/// Per-layer lists, packed: the items of layer `k` are `items[start[k]..start[k + 1]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Lists<T> {
    start: Vec<usize>,
    items: Vec<T>,
}

impl<T> Lists<T> {
    fn build(lists: impl IntoIterator<Item = impl IntoIterator<Item = T>>) -> Lists<T> {
        let mut out = Lists {
            start: vec![0],
            items: Vec::new(),
        };
        for list in lists {
            out.items.extend(list);
            out.start.push(out.items.len());
        }
        out
    }

    fn get(&self, k: usize) -> &[T] {
        &self.items[self.start[k]..self.start[k + 1]]
    }
}

/// One read of a layer's output: an input edge of the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// The layer that reads it.
    pub by: usize,
    /// The position of the input in that layer's `inputs`.
    pub position: usize,
    /// Which output of the producer it reads.
    pub slot: usize,
}

/// Which storage each layer output lives in when some layers are views (their outputs share
/// the storage of their first input), and who reads each storage. Storages are numbered in the
/// order they are allocated: by layer, then output slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// Per layer and output slot: its storage.
    of: Lists<usize>,
    /// Per layer: the layer that allocates the storage its outputs live in (itself, or for a
    /// view, the owner of its first input's).
    pub owner: Vec<usize>,
    /// Per storage: the layer output (layer, slot) that allocates it.
    pub producer: Vec<(usize, usize)>,
    /// Per storage: the last layer that reads it, directly or through a view (None when no
    /// layer does).
    pub last_read: Vec<Option<usize>>,
    /// Per storage: whether it holds a model output.
    pub output: Vec<bool>,
}

impl Storage {
    /// The storages of layer `k`'s outputs, by slot.
    pub fn slots(&self, k: usize) -> &[usize] {
        self.of.get(k)
    }

    /// The storage of output `slot` of layer `k`.
    pub fn of(&self, k: usize, slot: usize) -> usize {
        self.of.get(k)[slot]
    }

    /// How many storages there are.
    pub fn len(&self) -> usize {
        self.producer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producer.is_empty()
    }
}

/// When each layer's outputs die in a pass that runs the layers in order and frees a tensor
/// after its last reader, a tensor and every view of it counted as one: what the analysis's
/// peak memory and the executor's buffers follow. Model outputs live to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    /// Per layer: the layer owning the storage its outputs live in (itself unless a view).
    pub owner: Vec<usize>,
    /// Per layer: the last layer during which its storage is alive (its last reader, direct or
    /// through views; itself when nothing reads it). `None` for a storage that holds a model
    /// output (alive to the end) and for a view (it owns no storage).
    pub freed_after: Vec<Option<usize>>,
    /// Per layer: the storages freed once it has run, in the order it reads them (by input
    /// position), then its own.
    frees: Lists<usize>,
}

impl Liveness {
    /// The owners of the storages freed once layer `k` has run: those it reads last (in input
    /// order), then its own when nothing reads it.
    pub fn frees(&self, k: usize) -> &[usize] {
        self.frees.get(k)
    }
}

/// The structure of a built network (see the module documentation).
#[derive(Debug, Clone)]
pub struct Topology {
    /// Per layer: every read of its outputs, by reader, then input position.
    reads: Lists<Read>,
    /// Per layer: the distinct layers that read it, ascending.
    consumers: Lists<usize>,
    /// Per layer: whether a model output is one of its outputs.
    output: Vec<bool>,
    /// Layers without inputs (the model inputs), in order.
    sources: Vec<usize>,
    /// The model outputs: (layer, output slot), in the model's order.
    outputs: Vec<(usize, usize)>,
    /// Liveness when every layer writes a tensor of its own (the executor's).
    executed: Liveness,
    /// Liveness when views share their input's storage (the analysis's memory figures).
    analysed: Liveness,
}

impl Topology {
    /// Reads the facts off `graph` (node weights: layer indices; edge weights: (output slot,
    /// input position)), whose layers are `nodes` in topological order.
    pub(crate) fn new(
        graph: &DiGraph<usize, (usize, usize)>,
        nodes: &[NetNode],
        outputs: &[Output],
    ) -> Topology {
        let n = nodes.len();
        let reads = Lists::build((0..n).map(|k| {
            let mut reads: Vec<Read> = graph
                .edges_directed(NodeIndex::new(k), Direction::Outgoing)
                .map(|e| {
                    let &(slot, position) = e.weight();
                    Read {
                        by: graph[e.target()],
                        position,
                        slot,
                    }
                })
                .collect();
            reads.sort_unstable_by_key(|r| (r.by, r.position));
            reads
        }));
        let consumers = Lists::build((0..n).map(|k| {
            let mut c: Vec<usize> = reads.get(k).iter().map(|r| r.by).collect();
            c.dedup();
            c
        }));
        let mut output = vec![false; n];
        for o in outputs {
            output[o.node] = true;
        }
        // The model inputs: layers without inputs, less those that compute their value from
        // nothing (a `parameter`).
        let sources = graph
            .externals(Direction::Incoming)
            .map(|i| graph[i])
            .filter(|&k| nodes[k].layer.is_input())
            .collect();
        let mut t = Topology {
            reads,
            consumers,
            output,
            sources,
            outputs: outputs.iter().map(|o| (o.node, o.slot)).collect(),
            executed: Liveness {
                owner: Vec::new(),
                freed_after: Vec::new(),
                frees: Lists::default(),
            },
            analysed: Liveness {
                owner: Vec::new(),
                freed_after: Vec::new(),
                frees: Lists::default(),
            },
        };
        t.executed = t.liveness(nodes, |_| false);
        t.analysed = t.liveness(nodes, |k| nodes[k].layer.is_view());
        t
    }

    /// Every read of layer `k`'s outputs (an input edge from it), by reader, then input
    /// position; a layer that takes the same tensor twice reads it twice.
    pub fn reads(&self, k: usize) -> &[Read] {
        self.reads.get(k)
    }

    /// The distinct layers that read layer `k`'s outputs, ascending.
    pub fn consumers(&self, k: usize) -> &[usize] {
        self.consumers.get(k)
    }

    /// The last layer that reads layer `k`'s outputs (None when none does).
    pub fn last_reader(&self, k: usize) -> Option<usize> {
        self.consumers.get(k).last().copied()
    }

    /// The last layer that needs layer `k`'s outputs in a pass that keeps nothing: its last
    /// reader, or `k` itself when none reads it.
    pub fn last_use(&self, k: usize) -> usize {
        self.last_reader(k).unwrap_or(k)
    }

    /// Whether one of layer `k`'s outputs is a model output.
    pub fn is_output(&self, k: usize) -> bool {
        self.output[k]
    }

    /// The layers without inputs (the model's inputs), in order.
    pub fn sources(&self) -> &[usize] {
        &self.sources
    }

    /// Liveness when every layer writes a tensor of its own: the executor's.
    pub fn executed(&self) -> &Liveness {
        &self.executed
    }

    /// Liveness when views (`Layer::is_view`) share their input's storage: the analysis's.
    pub fn analysed(&self) -> &Liveness {
        &self.analysed
    }

    /// For every layer, whether a layer for which `pred` holds lies after it on some path
    /// (the layer itself not counted). One sweep against the order.
    pub fn followed_by(&self, pred: impl Fn(usize) -> bool) -> Vec<bool> {
        let n = self.output.len();
        let mut after = vec![false; n];
        for k in (0..n).rev() {
            after[k] = self.consumers(k).iter().any(|&c| after[c] || pred(c));
        }
        after
    }

    /// The storage of every layer output when the layers for which `view` holds are views
    /// (each of their outputs lives in the storage of their first input; a view without inputs
    /// allocates its own), with the last reader of each storage.
    pub fn storage(&self, nodes: &[NetNode], view: impl Fn(usize) -> bool) -> Storage {
        let mut producer = Vec::new();
        let mut of: Vec<usize> = Vec::new();
        let mut start = vec![0];
        let mut owner = Vec::with_capacity(nodes.len());
        for (k, node) in nodes.iter().enumerate() {
            let first = node.inputs.first().filter(|_| view(k));
            owner.push(first.map_or(k, |&(p, _)| owner[p]));
            let shared = first.map(|&(p, slot)| of[start[p] + slot]);
            for slot in 0..node.out_shapes.len() {
                match shared {
                    Some(st) => of.push(st),
                    None => {
                        of.push(producer.len());
                        producer.push((k, slot));
                    }
                }
            }
            start.push(of.len());
        }
        let of = Lists { start, items: of };
        let mut last_read = vec![None; producer.len()];
        for (k, node) in nodes.iter().enumerate() {
            for &(p, slot) in &node.inputs {
                last_read[of.get(p)[slot]] = Some(k);
            }
        }
        let mut output = vec![false; producer.len()];
        for &(k, slot) in &self.outputs {
            output[of.get(k)[slot]] = true;
        }
        Storage {
            of,
            owner,
            producer,
            last_read,
            output,
        }
    }

    /// Liveness of a pass in which the layers for which `view` holds share their input's
    /// storage (see [`Liveness`] and [`Topology::storage`]).
    pub fn liveness(&self, nodes: &[NetNode], view: impl Fn(usize) -> bool) -> Liveness {
        let n = nodes.len();
        let storage = self.storage(nodes, view);
        let owner = storage.owner;
        // Per owner: the last layer reading any of its storages (itself at least), and whether
        // one of them is a model output.
        let mut last: Vec<usize> = (0..n).collect();
        let mut pinned = vec![false; n];
        for (st, &(k, _)) in storage.producer.iter().enumerate() {
            if let Some(r) = storage.last_read[st] {
                last[k] = last[k].max(r);
            }
            pinned[k] |= storage.output[st];
        }
        let freed_after: Vec<Option<usize>> = (0..n)
            .map(|k| (owner[k] == k && !pinned[k]).then_some(last[k]))
            .collect();
        let frees = Lists::build(nodes.iter().enumerate().map(|(k, node)| {
            let mut here: Vec<usize> = Vec::new();
            let read = node.inputs.iter().map(|&(src, _)| owner[src]);
            for s in read.chain(std::iter::once(k)) {
                if freed_after[s] == Some(k) && !here.contains(&s) {
                    here.push(s);
                }
            }
            here
        }));
        Liveness {
            owner,
            freed_after,
            frees,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{BuildOptions, Network};

    fn net(nodes: &str, input: &str) -> Network {
        let text = format!("inputs: {{x: {input}}}\nnodes:\n{nodes}");
        Network::from_yaml("m.yaml", &text, &BuildOptions::default()).unwrap()
    }

    fn read(by: usize, position: usize, slot: usize) -> Read {
        Read { by, position, slot }
    }

    /// x → a; a feeds b and c; d = b + c. Indices: x 0, a 1, b 2, c 3, d 4.
    #[test]
    fn diamond() {
        let n = net(
            "  - {id: a, op: relu}\n  - {id: b, op: relu, in: a}\n  - {id: c, op: relu, in: a}\n  - {id: d, op: add, in: [b, c]}\n",
            "[4]",
        );
        let t = &n.topology;
        assert_eq!(t.reads(0), [read(1, 0, 0)]);
        assert_eq!(t.reads(1), [read(2, 0, 0), read(3, 0, 0)]);
        assert_eq!(t.reads(2), [read(4, 0, 0)]);
        assert_eq!(t.reads(3), [read(4, 1, 0)]);
        assert!(t.reads(4).is_empty());
        assert_eq!(t.consumers(1), [2, 3]);
        let last: Vec<Option<usize>> = (0..5).map(|k| t.last_reader(k)).collect();
        assert_eq!(last, [Some(1), Some(3), Some(4), Some(4), None]);
        assert_eq!(t.last_use(4), 4);
        assert_eq!(t.sources(), [0]);
        assert!(t.is_output(4) && !(0..4).any(|k| t.is_output(k)));
        // No views: a is freed once c (its last reader) has run, b and c once d has, in d's
        // input order; d is the output.
        let live = t.executed();
        assert_eq!(live.freed_after, [Some(1), Some(3), Some(4), Some(4), None]);
        let frees: Vec<&[usize]> = (0..5).map(|k| live.frees(k)).collect();
        assert_eq!(frees, [&[][..], &[0], &[], &[1], &[2, 3]]);
        assert_eq!(t.analysed(), live);
        // Every layer but d has d after it; only x and a have b after them.
        assert_eq!(t.followed_by(|c| c == 4), [true, true, true, true, false]);
        assert_eq!(t.followed_by(|c| c == 2), [true, true, false, false, false]);
    }

    /// A residual: a feeds b and the add after it; a tensor read twice by one layer; a view
    /// (flatten) sharing its input's storage. Indices: x 0, a 1, b 2, s 3, t 4, f 5, g 6.
    #[test]
    fn skip_connection_and_view() {
        let n = net(
            "  - {id: a, op: relu}\n  - {id: b, op: relu}\n  - {id: s, op: add, in: [a, b]}\n  - {id: t, op: add, in: [s, s]}\n  - {id: f, op: flatten}\n  - {id: g, op: relu}\n",
            "[2, 3, 3]",
        );
        let t = &n.topology;
        assert_eq!(t.reads(1), [read(2, 0, 0), read(3, 0, 0)]);
        assert_eq!(t.consumers(1), [2, 3]);
        // t reads s twice: two reads, one consumer.
        assert_eq!(t.reads(3), [read(4, 0, 0), read(4, 1, 0)]);
        assert_eq!(t.consumers(3), [4]);
        // The executor: every layer its own tensor; s is freed once after t.
        let live = t.executed();
        assert_eq!(
            live.freed_after,
            [Some(1), Some(3), Some(3), Some(4), Some(5), Some(6), None]
        );
        assert_eq!(live.frees(3), [1, 2]);
        assert_eq!(live.frees(4), [3]);
        assert_eq!(live.owner, [0, 1, 2, 3, 4, 5, 6]);
        // The analysis: f is a view of t, so t's storage lives until g reads f.
        let live = t.analysed();
        assert_eq!(live.owner, [0, 1, 2, 3, 4, 4, 6]);
        assert_eq!(
            live.freed_after,
            [Some(1), Some(3), Some(3), Some(4), Some(6), None, None]
        );
        assert!(live.frees(5).is_empty());
        assert_eq!(live.frees(6), [4]);
        // A view as the model output pins its owner to the end.
        let n = net(
            "  - {id: a, op: relu}\n  - {id: f, op: flatten}\n",
            "[2, 3, 3]",
        );
        assert_eq!(n.topology.analysed().freed_after, [Some(1), None, None]);
        assert_eq!(n.topology.executed().freed_after, [Some(1), Some(2), None]);
    }

    /// A split (a view with two outputs) read crosswise. Indices: x 0, r 1, s 2, a 3, b 4, c 5.
    #[test]
    fn multi_output_split() {
        let n = net(
            "  - {id: r, op: relu}\n  - {id: s, op: split, parts: 2}\n  - {id: a, op: relu, in: \"s:1\"}\n  - {id: b, op: relu, in: \"s:0\"}\n  - {id: c, op: concat, in: [a, b]}\n",
            "[4, 8, 8]",
        );
        let t = &n.topology;
        assert_eq!(t.reads(2), [read(3, 0, 1), read(4, 0, 0)]);
        assert_eq!(t.last_reader(2), Some(4));
        // Without views: one storage per output slot, numbered by layer then slot.
        let st = t.storage(&n.nodes, |_| false);
        assert_eq!(st.len(), 7);
        assert_eq!(st.slots(2), [2, 3]);
        assert_eq!(
            st.producer,
            [(0, 0), (1, 0), (2, 0), (2, 1), (3, 0), (4, 0), (5, 0)]
        );
        assert_eq!(
            st.last_read,
            [Some(1), Some(2), Some(4), Some(3), Some(5), Some(5), None]
        );
        assert_eq!(st.output, [false, false, false, false, false, false, true]);
        // The split as a view: both its outputs live in r's storage, read last by b.
        let st = t.storage(&n.nodes, |k| n.nodes[k].layer.is_view());
        assert_eq!(st.len(), 5);
        assert_eq!(st.slots(2), [1, 1]);
        assert_eq!(st.owner, [0, 1, 1, 3, 4, 5]);
        assert_eq!(st.last_read, [Some(1), Some(4), Some(5), Some(5), None]);
        let live = t.analysed();
        assert_eq!(
            live.freed_after,
            [Some(1), Some(4), None, Some(5), Some(5), None]
        );
        assert_eq!(live.frees(4), [1]);
        assert_eq!(live.frees(5), [3, 4]);
        assert_eq!(
            t.executed().freed_after,
            [Some(1), Some(2), Some(4), Some(5), Some(5), None]
        );
    }

    /// The order is topological with ties in file order: b reads c, written after it, so c
    /// comes first; the graph's edges are the layers' inputs.
    #[test]
    fn order_and_graph() {
        let n = net(
            "  - {id: a, op: relu}\n  - {id: b, op: add, in: [a, c]}\n  - {id: c, op: relu, in: a}\n  - {id: d, op: relu, in: a}\n",
            "[4]",
        );
        let names: Vec<&str> = n.nodes.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["x", "a", "c", "b", "d"]);
        assert_eq!(n.nodes[3].inputs, [(1, 0), (2, 0)]);
        assert_eq!(n.graph.edge_count(), 5);
        assert_eq!(n.topology.consumers(1), [2, 3, 4]);
        assert_eq!(n.topology.reads(2), [read(3, 1, 0)]);
        // The last layer is the output; b is read by nothing and dies where it is made, with c,
        // which only b reads.
        assert_eq!(n.topology.executed().frees(3), [2, 3]);
        assert_eq!(n.topology.executed().frees(4), [1]);
    }
}
