//! Per-layer and total figures of a built [`Network`]: parameters (trainable, frozen), buffers,
//! MACs, FLOPs, bytes of parameters and of each layer's output for a dtype, and the peak
//! activation memory of an inference pass in which every tensor is freed after its last use.
//! Generic over layer types: everything layer-specific comes through the `Layer` trait.

use serde::Serialize;

use crate::error::{Diagnostic, Error};
use crate::graph::Network;
use crate::layers::Convention;
use crate::layers::{AttentionSplit, Category, Layout, Params, Shape};
use crate::receptive::{self, Field};

/// Element type for memory figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    #[default]
    F32,
    F16,
    Bf16,
    Int8,
}

impl Dtype {
    pub fn bytes(self) -> u64 {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::Int8 => 1,
        }
    }
}

/// Figures of one layer.
#[derive(Debug, Clone)]
pub struct LayerStats {
    pub name: String,
    pub op: &'static str,
    pub label: String,
    /// Producer names (`name` or `name:slot`).
    pub inputs: Vec<String>,
    pub outputs: Vec<Shape>,
    /// What each dimension of each output means (the graph's layouts): a tensor whose
    /// dimension 0 is no batch (a `parameter`) is shown whole ([`Shape::shown`]).
    pub out_layouts: Vec<Layout>,
    pub params: Params,
    pub macs: u64,
    pub flops: u64,
    /// Whether it is a weighted layer: one with MACs under the torchvision convention
    /// (convolution, transposed convolution, linear). Kept when `macs` is recounted.
    pub weighted: bool,
    /// Bytes of new memory its outputs take (0 for views such as flatten or dropout).
    pub activation_bytes: u64,
    /// The block instances it sits in, outermost first: (instance path, block name), e.g.
    /// `("conv4.17", "bottleneck")`.
    pub blocks: Vec<(String, String)>,
    /// Receptive field of its (first) output; `None` when global or not spatial.
    pub rf: Option<Field>,
    /// Its family (the diagrams' colours, the category totals).
    pub category: Category,
    /// An attention layer's heads and MACs by product (`Op::attention`), under the
    /// torchvision convention whatever the analysis's convention.
    pub attention: Option<AttentionSplit>,
}

/// Sums over the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub params: u64,
    pub trainable: u64,
    pub buffers: u64,
    pub macs: u64,
    pub flops: u64,
    pub param_bytes: u64,
    pub buffer_bytes: u64,
    pub activation_bytes: u64,
    pub peak_activation_bytes: u64,
}

/// Per-token figures of a model that reads token ids (a language model: `inputs: {ids:
/// {tokens: L, vocab: V}}`), from [`Analysis::per_token`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PerToken {
    /// Tokens per sample: the length L of the token-id input.
    pub tokens: u64,
    /// The model's MACs (under the analysis's convention) over the tokens of the batch, N·L.
    pub macs: f64,
    /// The model's FLOPs over the tokens of the batch, N·L.
    pub flops: f64,
    /// Bytes the model's causal attention layers keep per token of a sample for generation
    /// (their keys and values: the KV cache), in the analysis's dtype: each layer declares
    /// its elements per token (`Op::kv_cache_per_token`), summed over the model.
    pub kv_cache_bytes: u64,
}

/// The analysis of one model at one input size and batch.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub model: String,
    pub inputs: Vec<Shape>,
    pub layers: Vec<LayerStats>,
    pub outputs: Vec<(String, Shape)>,
    pub totals: Totals,
    pub dtype: Dtype,
    /// Whose MACs `macs` holds (see [`crate::convention::recount`]); torchvision's by default.
    pub convention: Convention,
    /// (batch, tokens per sample) of the model's token-id input, when it has exactly one.
    pub token_input: Option<(u64, u64)>,
    /// Bytes (in `dtype`) of keys and values its layers keep per token of a sample (the KV
    /// cache): the layers' `Op::kv_cache_per_token` elements, summed.
    pub kv_cache_bytes_per_token: u64,
}

impl Analysis {
    /// Per-token figures, for a model with one token-id input (`None` for any other): the
    /// totals over the batch's tokens, and the KV cache per token.
    pub fn per_token(&self) -> Option<PerToken> {
        let (batch, len) = self.token_input?;
        let tokens = batch as f64 * len as f64;
        Some(PerToken {
            tokens: len,
            macs: self.totals.macs as f64 / tokens,
            flops: self.totals.flops as f64 / tokens,
            kv_cache_bytes: self.kv_cache_bytes_per_token,
        })
    }
}

fn overflow(what: &str, layer: &str) -> Error {
    Error::from(
        Diagnostic::new(format!("the model's total {what} overflows 64 bits"))
            .layer(layer)
            .help("the sizes are far too large: check the input size, the batch and the widths"),
    )
}

/// Analyses a network.
pub fn analyze(net: &Network, dtype: Dtype) -> Result<Analysis, Error> {
    let n = net.nodes.len();
    let size = dtype.bytes();
    let mut layers = Vec::with_capacity(n);
    let mut t = Totals::default();
    let mut own_bytes = vec![0u64; n];
    let mut fields = receptive::fields(net)?.into_iter();
    let mut kv_cache_per_token = 0u64;
    for (k, node) in net.nodes.iter().enumerate() {
        let params = node.layer.params();
        let cost = node
            .layer
            .cost(&node.in_shapes, &node.out_shapes)
            .map_err(|d| Error::from(d.layer(&node.name)))?;
        let mut bytes = 0u64;
        if !node.layer.is_view() {
            for s in &node.out_shapes {
                bytes = s
                    .numel()
                    .ok()
                    .and_then(|e| e.checked_mul(size))
                    .and_then(|b| b.checked_add(bytes))
                    .ok_or_else(|| overflow("activation memory", &node.name))?;
            }
        }
        own_bytes[k] = bytes;
        let add =
            |a: u64, b: u64, what: &str| a.checked_add(b).ok_or_else(|| overflow(what, &node.name));
        t.params = add(t.params, params.total(), "parameters")?;
        t.trainable = add(t.trainable, params.trainable, "parameters")?;
        t.buffers = add(t.buffers, params.buffers, "buffers")?;
        t.macs = add(t.macs, cost.macs, "MACs")?;
        t.flops = add(t.flops, cost.flops, "FLOPs")?;
        t.activation_bytes = add(t.activation_bytes, bytes, "activation memory")?;
        kv_cache_per_token = add(
            kv_cache_per_token,
            node.layer.kv_cache_per_token(&node.in_shapes),
            "KV cache",
        )?;
        layers.push(LayerStats {
            name: node.name.clone(),
            op: node.layer.op(),
            label: node.layer.label(),
            inputs: node
                .inputs
                .iter()
                .map(|&(src, slot)| {
                    let p = &net.nodes[src].name;
                    if slot == 0 {
                        p.clone()
                    } else {
                        format!("{p}:{slot}")
                    }
                })
                .collect(),
            outputs: node.out_shapes.clone(),
            out_layouts: node.out_layouts.clone(),
            params,
            macs: cost.macs,
            flops: cost.flops,
            weighted: cost.macs > 0,
            activation_bytes: bytes,
            blocks: instance_chain(net, node.instance),
            rf: fields.next().flatten(),
            category: node.layer.category(),
            attention: node
                .layer
                .attention(&node.in_shapes)
                .map_err(|d| Error::from(d.layer(&node.name)))?,
        });
    }
    let last = net.nodes.last().map(|n| n.name.as_str()).unwrap_or("");
    t.param_bytes = t
        .params
        .checked_mul(size)
        .ok_or_else(|| overflow("parameter memory", last))?;
    t.buffer_bytes = t
        .buffers
        .checked_mul(size)
        .ok_or_else(|| overflow("buffer memory", last))?;
    let kv_cache_bytes_per_token = kv_cache_per_token
        .checked_mul(size)
        .ok_or_else(|| overflow("KV cache", last))?;
    t.peak_activation_bytes = peak_activation(net, &own_bytes);
    let inputs = net
        .nodes
        .iter()
        .filter(|x| x.layer.is_input())
        .map(|x| x.out_shapes[0].clone())
        .collect();
    let outputs = net
        .outputs
        .iter()
        .map(|o| (o.name.clone(), net.nodes[o.node].out_shapes[o.slot].clone()))
        .collect();
    // The token-id input (`Op::input_vocab`): per-token figures need exactly one.
    let token_inputs: Vec<&Shape> = net
        .nodes
        .iter()
        .filter(|x| x.layer.is_input() && x.layer.input_vocab().is_some())
        .map(|x| &x.out_shapes[0])
        .collect();
    let token_input = match token_inputs[..] {
        [s] if s.rank() == 2 => Some((s.0[0], s.0[1])),
        _ => None,
    };
    Ok(Analysis {
        model: net.name.clone(),
        inputs,
        layers,
        outputs,
        totals: t,
        dtype,
        convention: Convention::Torchvision,
        token_input,
        kv_cache_bytes_per_token,
    })
}

fn instance_chain(net: &Network, mut inst: Option<usize>) -> Vec<(String, String)> {
    let mut chain = Vec::new();
    while let Some(i) = inst {
        let ins = &net.instances[i];
        chain.push((ins.path.clone(), ins.block.clone()));
        inst = ins.parent;
    }
    chain.reverse();
    chain
}

/// Peak bytes of live activations when layers run in order, each output allocated before its
/// inputs are released, and a tensor (with every view of it) freed after its last consumer.
/// Model outputs stay live to the end.
pub fn peak_activation(net: &Network, own_bytes: &[u64]) -> u64 {
    timeline(net, own_bytes).live.into_iter().max().unwrap_or(0)
}

/// The inference memory timeline behind [`peak_activation`]: what is alive while each layer
/// runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// Bytes alive while layer `k` runs: its own outputs just allocated, its inputs not yet
    /// released.
    pub live: Vec<u64>,
    /// For each layer, the last layer during which its output's storage is alive (its last
    /// consumer, or that of a view of it); `None` for a model output (alive to the end) and for
    /// a view (it owns no storage).
    pub freed_after: Vec<Option<usize>>,
}

/// The memory timeline of an inference pass (see [`peak_activation`] for the rules);
/// `own_bytes[k]` is the memory layer `k`'s outputs take (0 for a view).
pub fn timeline(net: &Network, own_bytes: &[u64]) -> Timeline {
    let liveness = net.topology.analysed();
    let mut live = Vec::with_capacity(own_bytes.len());
    let mut now = 0u64;
    for (k, &bytes) in own_bytes.iter().enumerate() {
        now = now.saturating_add(bytes);
        live.push(now);
        for &s in liveness.frees(k) {
            now -= own_bytes[s];
        }
    }
    Timeline {
        live,
        freed_after: liveness.freed_after.clone(),
    }
}
