//! Training cost and memory of a network: iterations per epoch (with and without
//! `drop_last`), training FLOPs (forward + backward, per op through
//! [`Counting::training`](crate::layers::Counting::training); totals in 128 bits, exact for any real
//! recipe), wall time at a sustained throughput, and the memory of a training step: weights,
//! gradients, optimiser state, the activations autograd saves for backward (each storage
//! counted once, as PyTorch holds it once), and the peak — a simulation of what is alive at
//! each moment of forward, backward (layer by layer) and the optimiser step, with the CUDA
//! caching allocator's 512-byte rounding. The model, its derivation and its measured error are
//! in docs/TRAINING.md.

use crate::analysis::Dtype;
use crate::error::{Diagnostic, Error};
use crate::graph::Network;
use crate::layers::Training;

/// An optimiser, for the size of its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimizer {
    /// Plain SGD: no state.
    Sgd,
    /// SGD with momentum: a momentum buffer.
    Momentum,
    /// Nesterov momentum: a momentum buffer.
    Nesterov,
    /// A running sum of squared gradients.
    Adagrad,
    /// A running average of squared gradients (+1 buffer with momentum, +1 when centered; not
    /// modelled: plain RMSprop).
    Rmsprop,
    /// First and second moments (+1 with amsgrad, not modelled).
    Adam,
    /// As Adam.
    Adamw,
}

impl Optimizer {
    pub const ALL: [Optimizer; 7] = [
        Optimizer::Sgd,
        Optimizer::Momentum,
        Optimizer::Nesterov,
        Optimizer::Adagrad,
        Optimizer::Rmsprop,
        Optimizer::Adam,
        Optimizer::Adamw,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Optimizer::Sgd => "sgd",
            Optimizer::Momentum => "momentum",
            Optimizer::Nesterov => "nesterov",
            Optimizer::Adagrad => "adagrad",
            Optimizer::Rmsprop => "rmsprop",
            Optimizer::Adam => "adam",
            Optimizer::Adamw => "adamw",
        }
    }

    pub fn parse(s: &str) -> Option<Optimizer> {
        Optimizer::ALL.into_iter().find(|o| o.name() == s)
    }

    /// Temporaries the optimiser's step allocates, in copies of every trainable tensor, for
    /// PyTorch's default (foreach) implementation on CUDA with default arguments
    /// (`torch/optim/*.py`, `_multi_tensor_*`): Adam and AdamW `_foreach_sqrt` of the second
    /// moments; RMSprop `_foreach_sqrt` of the square average; Adagrad `_foreach_sqrt` of the
    /// sums and `_foreach_mul` of the gradients by the learning rate; SGD (with or without
    /// momentum) updates in place.
    pub fn step_temporaries(self) -> u64 {
        match self {
            Optimizer::Sgd | Optimizer::Momentum | Optimizer::Nesterov => 0,
            Optimizer::Rmsprop | Optimizer::Adam | Optimizer::Adamw => 1,
            Optimizer::Adagrad => 2,
        }
    }

    /// Tensors of state per trainable parameter tensor, each the parameter's size.
    pub fn state_copies(self) -> u64 {
        match self {
            Optimizer::Sgd => 0,
            Optimizer::Momentum | Optimizer::Nesterov | Optimizer::Adagrad | Optimizer::Rmsprop => {
                1
            }
            Optimizer::Adam | Optimizer::Adamw => 2,
        }
    }
}

/// A training run.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub dataset_size: u64,
    /// Samples per iteration; the network must be built at this batch.
    pub batch: u64,
    pub epochs: u64,
    pub optimizer: Optimizer,
    pub dtype: Dtype,
    /// Sustained throughput in TFLOP/s, for the wall time.
    pub throughput_tflops: Option<f64>,
}

/// What is alive at one moment of a training step, in bytes as PyTorch's CUDA caching
/// allocator counts them (every tensor rounded up to 512 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Live {
    /// Parameters and buffers.
    pub weights: u64,
    pub optimizer_state: u64,
    /// The input batch and its int64 labels.
    pub input: u64,
    /// Forward tensors: those saved for backward (and their extra tensors: indices, masks,
    /// statistics), the model's outputs, and, during forward, the tensors still to be read.
    pub activations: u64,
    /// Parameter gradients produced so far.
    pub gradients: u64,
    /// Gradients of activations in flight during backward.
    pub activation_gradients: u64,
    /// The optimiser's temporaries during its step.
    pub temporaries: u64,
    /// cuBLAS workspaces ([`CUBLAS_WORKSPACE`] for each thread that runs a matrix product).
    pub cublas_workspaces: u64,
}

impl Live {
    fn total(&self) -> Result<u64, Error> {
        [
            self.optimizer_state,
            self.input,
            self.activations,
            self.gradients,
            self.activation_gradients,
            self.temporaries,
            self.cublas_workspaces,
        ]
        .into_iter()
        .try_fold(self.weights, |a, b| {
            a.checked_add(b).ok_or_else(memory_overflow)
        })
    }
}

/// The part of a training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Forward,
    Backward,
    OptimizerStep,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Forward => "forward",
            Phase::Backward => "backward",
            Phase::OptimizerStep => "optimizer step",
        }
    }
}

/// The moment of a training step when the most memory is allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peak {
    /// `torch.cuda.max_memory_allocated()`'s estimate: everything alive then.
    pub bytes: u64,
    pub phase: Phase,
    /// The layer running then (its forward or backward); `loss` for the loss; none during the
    /// optimiser step.
    pub layer: Option<String>,
    pub live: Live,
}

/// Bytes of a training step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    /// Parameters and buffers.
    pub weights: u64,
    pub gradients: u64,
    pub optimizer_state: u64,
    /// Tensors saved for backward (each storage once), their extra tensors (indices, masks,
    /// statistics) and the loss's saved log-probabilities: what is kept from the end of
    /// forward into backward.
    pub activations: u64,
    /// The optimiser's temporaries during its step (PyTorch's foreach implementations).
    pub optimizer_temporaries: u64,
    /// The input batch and its labels.
    pub input: u64,
    /// The largest total alive at one moment of a steady-state step.
    pub peak: Peak,
}

/// The training plan of a model.
#[derive(Debug, Clone)]
pub struct Plan {
    pub model: String,
    pub config: Config,
    pub iterations_per_epoch: u64,
    pub iterations_per_epoch_drop_last: u64,
    /// Iterations over all epochs (⌈N/B⌉·E ≤ N·E: it fits 128 bits whatever the flags).
    pub total_iterations: u128,
    pub total_iterations_drop_last: u128,
    /// FLOPs of one full-batch iteration.
    pub forward_flops: u64,
    pub backward_flops: u64,
    /// Forward + backward over every sample of every epoch (the last partial batch included),
    /// exact: real recipes exceed 2^64 (ResNet-50, 600 epochs of ImageNet: 1.9·10^19).
    pub training_flops: u128,
    pub training_flops_drop_last: u128,
    /// Seconds at the given throughput.
    pub wall_time_s: Option<f64>,
    pub memory: Memory,
}

fn iteration_overflow(net: &Network, batch: u64) -> Error {
    Error::from(
        Diagnostic::new(format!(
            "the FLOPs of one training iteration of `{}` at batch {batch} exceed 2^64",
            net.name
        ))
        .help("the model itself is too large at this batch: lower --batch or --input"),
    )
}

fn memory_overflow() -> Error {
    Error::from(
        Diagnostic::new("the training memory exceeds 2^64 bytes")
            .help("the model itself is too large at this batch: lower --batch or --input"),
    )
}

fn cadd(a: u64, b: u64) -> Result<u64, Error> {
    a.checked_add(b).ok_or_else(memory_overflow)
}

fn cmul(a: u64, b: u64) -> Result<u64, Error> {
    a.checked_mul(b).ok_or_else(memory_overflow)
}

/// The cuBLAS workspace PyTorch allocates through its caching allocator for each (thread,
/// stream) that runs a matrix product, and keeps: 32 MiB on Hopper and Blackwell GPUs (compute
/// capability 9.x, 10.x, 12.x; `parseChosenWorkspaceSize` in ATen's `CublasHandlePool.cpp`,
/// cuBLASLt sharing it by default). Forward runs on the Python thread and backward on the
/// autograd engine's device thread: two workspaces once a model with a linear layer has
/// trained one step. Earlier GPUs get 4096 KiB × 2 + 16 KiB × 8 = 8.125 MiB each.
pub const CUBLAS_WORKSPACE: u64 = 32 << 20;

/// The CUDA caching allocator's block: every allocation is rounded up to a multiple of 512
/// bytes (and a zero-byte tensor takes none).
pub const BLOCK: u64 = 512;

fn block(bytes: u64) -> Result<u64, Error> {
    cmul(bytes.div_ceil(BLOCK), BLOCK)
}

/// Plans training of `net` (built at batch `cfg.batch`).
pub fn plan(net: &Network, cfg: &Config) -> Result<Plan, Error> {
    if cfg.batch == 0 || cfg.dataset_size == 0 || cfg.epochs == 0 {
        return Err(Diagnostic::new("dataset size, batch and epochs must be at least 1").into());
    }
    let size = cfg.dtype.bytes();
    let n = net.nodes.len();
    // Which tensors depend on a trainable parameter (and so need gradients).
    let mut requires_grad = vec![false; n];
    let mut storage: Vec<usize> = (0..n).collect();
    let mut saved_storage = vec![false; n];
    let mut rules: Vec<Option<Training>> = Vec::with_capacity(n);
    let (mut forward, mut backward, mut extra) = (0u64, 0u64, 0u64);
    let (mut params, mut trainable, mut buffers) = (0u64, 0u64, 0u64);
    for (k, node) in net.nodes.iter().enumerate() {
        let p = node.layer.params();
        params = cadd(params, p.total())?;
        trainable = cadd(trainable, p.trainable)?;
        buffers = cadd(buffers, p.buffers)?;
        let input_grad = node.inputs.iter().any(|&(s, _)| requires_grad[s]);
        let t = node
            .layer
            .training(&node.in_shapes, &node.out_shapes, input_grad, size)
            .map_err(|d| Error::from(d.layer(&node.name)))?;
        forward = forward
            .checked_add(t.forward_flops)
            .ok_or_else(|| iteration_overflow(net, cfg.batch))?;
        if t.view {
            if let Some(&(s, _)) = node.inputs.first() {
                storage[k] = storage[s];
            }
        }
        requires_grad[k] = input_grad || p.trainable > 0;
        if !requires_grad[k] {
            rules.push(None);
            continue; // autograd records nothing for it
        }
        backward = backward
            .checked_add(t.backward_flops)
            .ok_or_else(|| iteration_overflow(net, cfg.batch))?;
        extra = cadd(extra, t.saved.extra_bytes)?;
        for &i in &t.saved.inputs {
            if let Some(&(s, _)) = node.inputs.get(i) {
                saved_storage[storage[s]] = true;
            }
        }
        if t.saved.output {
            saved_storage[storage[k]] = true;
        }
        rules.push(Some(t));
    }
    let mut activations = extra;
    for (k, node) in net.nodes.iter().enumerate() {
        if saved_storage[k] {
            for s in &node.out_shapes {
                activations = cadd(activations, cmul(s.numel().map_err(Error::from)?, size)?)?;
            }
        }
    }
    // Cross-entropy on each N×K output keeps its log-probabilities.
    for o in &net.outputs {
        let s = &net.nodes[o.node].out_shapes[o.slot];
        if s.rank() == 2 {
            activations = cadd(activations, cmul(s.numel().map_err(Error::from)?, size)?)?;
        }
    }
    let weights = cmul(cadd(params, buffers)?, size)?;
    let gradients = cmul(trainable, size)?;
    let optimizer_state = cmul(cmul(trainable, cfg.optimizer.state_copies())?, size)?;
    let step = simulate(net, &rules, &requires_grad, size, cfg.optimizer)?;

    let (d, b, e) = (cfg.dataset_size, cfg.batch, cfg.epochs);
    let per_epoch = d.div_ceil(b);
    let per_epoch_drop = d / b;
    let per_iter = forward
        .checked_add(backward)
        .ok_or_else(|| iteration_overflow(net, b))?;
    // Costs are linear in the batch: an epoch costs per-iteration FLOPs × samples / batch.
    // per_iter < 2^64 and samples = N·E < 2^128: the product can only exceed 2^128 for flags no
    // recipe uses (N·E beyond 10^19).
    let samples = e as u128 * d as u128;
    let too_many = || {
        Error::from(
            Diagnostic::new(format!(
                "{e} epochs of {d} samples make {samples} samples: their training FLOPs exceed \
                 2^128"
            ))
            .help("check --epochs and --dataset-size"),
        )
    };
    let flops = (per_iter as u128)
        .checked_mul(samples)
        .ok_or_else(too_many)?
        / b as u128;
    let flops_drop = (per_iter as u128)
        .checked_mul(e as u128 * per_epoch_drop as u128)
        .ok_or_else(too_many)?;
    Ok(Plan {
        model: net.name.clone(),
        config: *cfg,
        iterations_per_epoch: per_epoch,
        iterations_per_epoch_drop_last: per_epoch_drop,
        total_iterations: per_epoch as u128 * e as u128,
        total_iterations_drop_last: per_epoch_drop as u128 * e as u128,
        forward_flops: forward,
        backward_flops: backward,
        training_flops: flops,
        training_flops_drop_last: flops_drop,
        wall_time_s: cfg.throughput_tflops.map(|t| flops as f64 / (t * 1e12)),
        memory: Memory {
            weights,
            gradients,
            optimizer_state,
            activations,
            optimizer_temporaries: step.temporaries,
            input: step.input,
            peak: step.peak,
        },
    })
}

/// The result of [`simulate`].
struct Step {
    peak: Peak,
    temporaries: u64,
    input: u64,
}

/// Follows what is alive through one steady-state training step (the optimiser state already
/// exists; gradients were set to `None` by `zero_grad`), tensor by tensor, and returns the
/// moment with the most bytes allocated. See docs/TRAINING.md, "Peak memory".
fn simulate(
    net: &Network,
    rules: &[Option<Training>],
    requires_grad: &[bool],
    size: u64,
    optimizer: Optimizer,
) -> Result<Step, Error> {
    use crate::exec::WeightKind;
    let n = net.nodes.len();
    let numel = |s: &crate::layers::Shape| s.numel().map_err(Error::from);
    let mut live = Live::default();
    // Parameters (each its own block), their gradients and the optimiser's copies.
    let mut param_blocks = Vec::with_capacity(n);
    let mut trainable_blocks = 0u64;
    for node in &net.nodes {
        let mut mine = 0u64;
        for w in node.layer.weights() {
            let elems = w.shape.iter().try_fold(1u64, |a, &d| cmul(a, d as u64))?;
            let bytes = block(cmul(elems, size)?)?;
            live.weights = cadd(live.weights, bytes)?;
            if w.kind == WeightKind::Trainable {
                mine = cadd(mine, bytes)?;
            }
        }
        trainable_blocks = cadd(trainable_blocks, mine)?;
        param_blocks.push(mine);
    }
    live.optimizer_state = cmul(trainable_blocks, optimizer.state_copies())?;
    // cuBLAS workspaces, kept from the first step on: the forward thread's if a layer runs a
    // matrix product, the backward thread's if autograd records one.
    let forward_blas = net.nodes.iter().enumerate().any(|(k, node)| {
        rules[k].as_ref().is_some_and(|t| t.cublas) || node.layer.forward_cublas()
    });
    let backward_blas = rules.iter().flatten().any(|t| t.cublas);
    live.cublas_workspaces =
        CUBLAS_WORKSPACE * (u64::from(forward_blas) + u64::from(backward_blas));
    // Storages: one per output slot; a view shares its input's.
    let mut slot_storage: Vec<Vec<usize>> = Vec::with_capacity(n);
    let mut bytes_of: Vec<u64> = Vec::new();
    let mut producer: Vec<usize> = Vec::new();
    for (k, node) in net.nodes.iter().enumerate() {
        let view = rules[k].as_ref().is_some_and(|t| t.view)
            || (rules[k].is_none() && node.layer.is_view());
        let mut ids = Vec::with_capacity(node.out_shapes.len());
        for s in &node.out_shapes {
            match node.inputs.first() {
                Some(&(p, slot)) if view => ids.push(slot_storage[p][slot]),
                _ => {
                    ids.push(bytes_of.len());
                    bytes_of.push(block(cmul(numel(s)?, size)?)?);
                    producer.push(k);
                }
            }
        }
        slot_storage.push(ids);
    }
    let m = bytes_of.len();
    let is_input = |k: usize| net.nodes[k].layer.is_input();
    // How long each storage lives in forward, and until which backward it is kept.
    let mut last_use: Vec<Option<usize>> = vec![None; m];
    let mut kept_until: Vec<Option<usize>> = vec![None; m];
    let mut pinned = vec![false; m]; // the model's inputs and outputs: alive all step long
    for (k, node) in net.nodes.iter().enumerate() {
        for &(p, slot) in &node.inputs {
            let st = slot_storage[p][slot];
            last_use[st] = Some(k);
        }
        if is_input(k) {
            for &st in &slot_storage[k] {
                pinned[st] = true;
            }
        }
        if let Some(t) = &rules[k] {
            let mut keep = |st: usize| {
                kept_until[st] = Some(kept_until[st].map_or(k, |j: usize| j.min(k)));
            };
            for &i in &t.saved.inputs {
                if let Some(&(p, slot)) = node.inputs.get(i) {
                    keep(slot_storage[p][slot]);
                }
            }
            if t.saved.output {
                keep(slot_storage[k][0]);
            }
        }
    }
    for o in &net.outputs {
        pinned[slot_storage[o.node][o.slot]] = true;
    }
    let mut free_at: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (st, kept) in kept_until.iter().enumerate() {
        if let Some(k) = *kept {
            free_at[k].push(st);
        }
    }
    let mut alive = vec![false; m];
    for st in 0..m {
        if pinned[st] && is_input(producer[st]) {
            alive[st] = true;
            live.input = cadd(live.input, bytes_of[st])?;
        }
    }
    // Labels: int64, one per sample, for each classification output.
    let class_outputs: Vec<&crate::layers::Shape> = net
        .outputs
        .iter()
        .map(|o| &net.nodes[o.node].out_shapes[o.slot])
        .filter(|s| s.rank() == 2)
        .collect();
    for s in &class_outputs {
        live.input = cadd(live.input, block(cmul(s.0[0], 8)?)?)?;
    }
    let input = live.input;

    let mut peak = Peak {
        bytes: live.total()?,
        phase: Phase::Forward,
        layer: None,
        live,
    };
    let mut mark = |live: &Live, phase: Phase, layer: Option<&str>| -> Result<(), Error> {
        let bytes = live.total()?;
        if bytes > peak.bytes {
            peak = Peak {
                bytes,
                phase,
                layer: layer.map(str::to_string),
                live: *live,
            };
        }
        Ok(())
    };

    // Forward: each layer allocates its outputs (and the extra tensors it keeps for backward)
    // while its inputs are alive; a tensor is freed after its last reader unless backward
    // keeps it.
    let mut extra_blocks = vec![0u64; n];
    for (k, node) in net.nodes.iter().enumerate() {
        if is_input(k) {
            continue;
        }
        for &st in &slot_storage[k] {
            if producer[st] == k && !alive[st] {
                alive[st] = true;
                live.activations = cadd(live.activations, bytes_of[st])?;
            }
        }
        if let Some(t) = &rules[k] {
            extra_blocks[k] = block(t.saved.extra_bytes)?;
            live.activations = cadd(live.activations, extra_blocks[k])?;
        }
        mark(&live, Phase::Forward, Some(&node.name))?;
        let readers = node.inputs.iter().map(|&(p, s)| slot_storage[p][s]);
        for st in readers.chain(slot_storage[k].iter().copied()) {
            let done = last_use[st].is_none_or(|j| j <= k);
            if alive[st] && done && !pinned[st] && kept_until[st].is_none() {
                alive[st] = false;
                live.activations -= bytes_of[st];
            }
        }
    }
    // The loss: cross-entropy keeps each N×K output's log-probabilities, and returns a scalar.
    let mut loss_blocks = Vec::new();
    for s in &class_outputs {
        let b = block(cmul(numel(s)?, size)?)?;
        loss_blocks.push(b);
        live.activations = cadd(live.activations, cadd(b, block(size)?)?)?;
    }
    mark(&live, Phase::Forward, Some("loss"))?;

    // Backward. Gradients are reference-counted tensors: an add hands its output gradient to
    // its inputs as it is, a concat hands out slices of it; a tensor read by several layers
    // sums their contributions in place when it holds the only reference to one of them.
    let mut grads: Vec<(u64, u64)> = Vec::new(); // (bytes, references)
    let mut grad_of: Vec<Option<usize>> = vec![None; m];
    let new_grad = |grads: &mut Vec<(u64, u64)>, live: &mut Live, bytes: u64| {
        grads.push((bytes, 1));
        live.activation_gradients = cadd(live.activation_gradients, bytes)?;
        Ok::<usize, Error>(grads.len() - 1)
    };
    let release = |grads: &mut Vec<(u64, u64)>, live: &mut Live, g: usize| {
        grads[g].1 -= 1;
        if grads[g].1 == 0 {
            live.activation_gradients -= grads[g].0;
        }
    };
    for (o, s) in net
        .outputs
        .iter()
        .map(|o| (o, &net.nodes[o.node].out_shapes[o.slot]))
    {
        let st = slot_storage[o.node][o.slot];
        if !requires_grad[o.node] {
            continue;
        }
        let bytes = block(cmul(numel(s)?, size)?)?;
        if s.rank() == 2 {
            // The gradient of the log-probabilities, then of the logits; then the
            // log-probabilities and the first are freed.
            let g1 = new_grad(&mut grads, &mut live, bytes)?;
            let g2 = new_grad(&mut grads, &mut live, bytes)?;
            mark(&live, Phase::Backward, Some("loss"))?;
            release(&mut grads, &mut live, g1);
            live.activations -= bytes;
            grad_of[st] = Some(g2);
        } else {
            grad_of[st] = Some(new_grad(&mut grads, &mut live, bytes)?);
        }
    }
    // The loss scalars are freed with their graph.
    for _ in &loss_blocks {
        live.activations -= block(size)?;
    }
    for (k, node) in net.nodes.iter().enumerate().rev() {
        let Some(t) = &rules[k] else { continue };
        if t.view || is_input(k) {
            continue; // its gradient is its input's
        }
        let outs: Vec<usize> = slot_storage[k]
            .iter()
            .filter_map(|&st| grad_of[st].take())
            .collect();
        // Input gradients, then parameter gradients.
        let mut contributions = Vec::new();
        if !outs.is_empty() {
            for (i, &(p, slot)) in node.inputs.iter().enumerate() {
                if !requires_grad[p] {
                    continue;
                }
                let g = if t.grad_views.contains(&i) {
                    grads[outs[0]].1 += 1;
                    outs[0]
                } else {
                    new_grad(
                        &mut grads,
                        &mut live,
                        block(cmul(numel(&node.in_shapes[i])?, size)?)?,
                    )?
                };
                contributions.push((slot_storage[p][slot], g));
            }
            live.gradients = cadd(live.gradients, param_blocks[k])?;
        }
        mark(&live, Phase::Backward, Some(&node.name))?;
        for (st, g) in contributions {
            match grad_of[st] {
                None => grad_of[st] = Some(g),
                Some(old) if grads[old].1 == 1 || grads[g].1 == 1 => {
                    // Summed in place into whichever is not shared.
                    let (keep, drop) = if grads[old].1 == 1 {
                        (old, g)
                    } else {
                        (g, old)
                    };
                    grad_of[st] = Some(keep);
                    release(&mut grads, &mut live, drop);
                }
                Some(old) => {
                    let bytes = grads[old].0;
                    let sum = new_grad(&mut grads, &mut live, bytes)?;
                    mark(&live, Phase::Backward, Some(&node.name))?;
                    release(&mut grads, &mut live, old);
                    release(&mut grads, &mut live, g);
                    grad_of[st] = Some(sum);
                }
            }
        }
        for g in outs {
            release(&mut grads, &mut live, g);
        }
        // What this layer kept for backward goes, unless an earlier layer keeps it too.
        live.activations -= extra_blocks[k];
        for &st in &free_at[k] {
            if alive[st] && !pinned[st] {
                alive[st] = false;
                live.activations -= bytes_of[st];
            }
        }
    }
    // The optimiser step: its foreach temporaries, each a copy of every trainable tensor.
    let temporaries = cmul(trainable_blocks, optimizer.step_temporaries())?;
    live.temporaries = temporaries;
    mark(&live, Phase::OptimizerStep, None)?;
    Ok(Step {
        peak,
        temporaries,
        input,
    })
}

/// The JSON document of a plan (stable keys; memory in bytes). The training FLOPs are written
/// as exact integers even beyond 2^64 (where `serde_json::Value` cannot hold them).
pub fn json_text(p: &Plan) -> String {
    use serde::Serialize;
    #[derive(Serialize)]
    struct PerIteration {
        forward: u64,
        backward: u64,
    }
    #[derive(Serialize)]
    struct LiveJson {
        weights: u64,
        optimizer_state: u64,
        input: u64,
        activations: u64,
        gradients: u64,
        activation_gradients: u64,
        optimizer_temporaries: u64,
        cublas_workspaces: u64,
    }
    #[derive(Serialize)]
    struct PeakJson<'a> {
        bytes: u64,
        phase: &'static str,
        layer: Option<&'a str>,
        live: LiveJson,
    }
    #[derive(Serialize)]
    struct MemoryJson<'a> {
        weights: u64,
        gradients: u64,
        optimizer_state: u64,
        activations: u64,
        optimizer_temporaries: u64,
        input: u64,
        peak: PeakJson<'a>,
        total: u64,
    }
    #[derive(Serialize)]
    struct PlanJson<'a> {
        model: &'a str,
        dataset_size: u64,
        batch: u64,
        epochs: u64,
        optimizer: &'static str,
        dtype: Dtype,
        iterations_per_epoch: u64,
        iterations_per_epoch_drop_last: u64,
        total_iterations: u128,
        total_iterations_drop_last: u128,
        flops_per_iteration: PerIteration,
        training_flops: u128,
        training_flops_drop_last: u128,
        throughput_tflops: Option<f64>,
        wall_time_s: Option<f64>,
        memory: MemoryJson<'a>,
    }
    let m = &p.memory;
    let l = &m.peak.live;
    let doc = PlanJson {
        model: &p.model,
        dataset_size: p.config.dataset_size,
        batch: p.config.batch,
        epochs: p.config.epochs,
        optimizer: p.config.optimizer.name(),
        dtype: p.config.dtype,
        iterations_per_epoch: p.iterations_per_epoch,
        iterations_per_epoch_drop_last: p.iterations_per_epoch_drop_last,
        total_iterations: p.total_iterations,
        total_iterations_drop_last: p.total_iterations_drop_last,
        flops_per_iteration: PerIteration {
            forward: p.forward_flops,
            backward: p.backward_flops,
        },
        training_flops: p.training_flops,
        training_flops_drop_last: p.training_flops_drop_last,
        throughput_tflops: p.config.throughput_tflops,
        wall_time_s: p.wall_time_s,
        memory: MemoryJson {
            weights: m.weights,
            gradients: m.gradients,
            optimizer_state: m.optimizer_state,
            activations: m.activations,
            optimizer_temporaries: m.optimizer_temporaries,
            input: m.input,
            peak: PeakJson {
                bytes: m.peak.bytes,
                phase: m.peak.phase.name(),
                layer: m.peak.layer.as_deref(),
                live: LiveJson {
                    weights: l.weights,
                    optimizer_state: l.optimizer_state,
                    input: l.input,
                    activations: l.activations,
                    gradients: l.gradients,
                    activation_gradients: l.activation_gradients,
                    optimizer_temporaries: l.temporaries,
                    cublas_workspaces: l.cublas_workspaces,
                },
            },
            total: m.peak.bytes,
        },
    };
    serde_json::to_string_pretty(&doc).expect("serialisable") + "\n"
}

/// `18904264425873804800` → `18.90 E` (a count beyond 2^64).
fn human_wide(n: u128) -> String {
    match u64::try_from(n) {
        Ok(v) => crate::report::human_count(v),
        Err(_) if n < 10u128.pow(21) => format!("{:.2} E", n as f64 / 1e18),
        Err(_) => format!("{:.2} Z", n as f64 / 1e21),
    }
}

fn duration(s: f64) -> String {
    if s >= 86400.0 {
        format!("{:.1} days", s / 86400.0)
    } else if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}

/// Renders a plan as a table (`json: false`) or JSON.
pub fn render(p: &Plan, json: bool) -> String {
    use crate::report::{human_bytes, human_count};
    use comfy_table::{Cell, CellAlignment};
    if json {
        return json_text(p);
    }
    let c = &p.config;
    let m = &p.memory;
    let dt = format!("{:?}", c.dtype).to_lowercase();
    let mut t = crate::report::new_table(false);
    t.set_header(vec!["Training", "", "exact"]);
    let mut row = |k: &str, h: String, e: String| {
        t.add_row(vec![
            Cell::new(k),
            Cell::new(h).set_alignment(CellAlignment::Right),
            Cell::new(e).set_alignment(CellAlignment::Right),
        ]);
    };
    row(
        "Iterations per epoch",
        format!(
            "{} (drop_last: {})",
            p.iterations_per_epoch, p.iterations_per_epoch_drop_last
        ),
        p.iterations_per_epoch.to_string(),
    );
    row(
        "Total iterations",
        format!(
            "{} (drop_last: {})",
            p.total_iterations, p.total_iterations_drop_last
        ),
        p.total_iterations.to_string(),
    );
    row(
        "FLOPs per iteration: forward",
        human_count(p.forward_flops),
        p.forward_flops.to_string(),
    );
    row(
        "FLOPs per iteration: backward",
        human_count(p.backward_flops),
        p.backward_flops.to_string(),
    );
    row(
        "Training FLOPs",
        human_wide(p.training_flops),
        p.training_flops.to_string(),
    );
    if let (Some(s), Some(tf)) = (p.wall_time_s, c.throughput_tflops) {
        row(
            &format!("Wall time at {tf} TFLOP/s"),
            duration(s),
            format!("{s:.0} s"),
        );
    }
    row(
        &format!("Weights + buffers ({dt})"),
        human_bytes(m.weights),
        m.weights.to_string(),
    );
    row(
        "Gradients",
        human_bytes(m.gradients),
        m.gradients.to_string(),
    );
    row(
        &format!("Optimizer state ({})", c.optimizer.name()),
        human_bytes(m.optimizer_state),
        m.optimizer_state.to_string(),
    );
    row(
        &format!("Activations saved for backward (batch {})", c.batch),
        human_bytes(m.activations),
        m.activations.to_string(),
    );
    row(
        "Optimizer step temporaries",
        human_bytes(m.optimizer_temporaries),
        m.optimizer_temporaries.to_string(),
    );
    let at = match &m.peak.layer {
        Some(l) => format!("{}, `{l}`", m.peak.phase.name()),
        None => m.peak.phase.name().to_string(),
    };
    row(
        &format!("Peak training memory ({at})"),
        human_bytes(m.peak.bytes),
        m.peak.bytes.to_string(),
    );
    let l = &m.peak.live;
    for (k, v) in [
        ("weights + buffers", l.weights),
        ("optimizer state", l.optimizer_state),
        ("input + labels", l.input),
        ("activations alive", l.activations),
        ("parameter gradients so far", l.gradients),
        ("activation gradients in flight", l.activation_gradients),
        ("optimizer temporaries", l.temporaries),
        ("cuBLAS workspaces", l.cublas_workspaces),
    ] {
        if v > 0 {
            row(&format!("  of which {k}"), human_bytes(v), v.to_string());
        }
    }
    format!(
        "{}: {} samples, batch {}, {} epochs, {}\n{t}\n",
        p.model,
        c.dataset_size,
        c.batch,
        c.epochs,
        c.optimizer.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{zoo, BuildOptions};

    fn resnet50(batch: u64) -> Network {
        zoo::build(
            "resnet50",
            &BuildOptions {
                batch,
                ..Default::default()
            },
        )
        .unwrap()
        .unwrap()
    }

    fn cfg(batch: u64, optimizer: Optimizer) -> Config {
        Config {
            dataset_size: 1_281_167,
            batch,
            epochs: 90,
            optimizer,
            dtype: Dtype::F32,
            throughput_tflops: None,
        }
    }

    #[test]
    fn imagenet_iterations() {
        // ImageNet-1k train: 1,281,167 images; 1,281,167 / 256 = 5004.56: 5005 iterations per
        // epoch, 5004 with drop_last; × 90 epochs.
        let p = plan(&resnet50(1), &cfg(256, Optimizer::Sgd)).unwrap();
        assert_eq!(p.iterations_per_epoch, 5005);
        assert_eq!(p.iterations_per_epoch_drop_last, 5004);
        assert_eq!(p.total_iterations, 5005 * 90);
        assert_eq!(p.total_iterations_drop_last, 5004 * 90);
    }

    #[test]
    fn optimizer_state_and_gradients() {
        // ResNet-50 has 25,557,032 trainable parameters: Adam keeps two f32 moments.
        let p = plan(&resnet50(1), &cfg(1, Optimizer::Adam)).unwrap();
        assert_eq!(p.memory.optimizer_state, 2 * 25_557_032 * 4);
        assert_eq!(p.memory.gradients, 25_557_032 * 4);
        // Weights include the 53,120 batch-norm buffers.
        assert_eq!(p.memory.weights, (25_557_032 + 53_120) * 4);
        let s = plan(&resnet50(1), &cfg(1, Optimizer::Sgd)).unwrap();
        assert_eq!(s.memory.optimizer_state, 0);
        let m = plan(&resnet50(1), &cfg(1, Optimizer::Momentum)).unwrap();
        assert_eq!(m.memory.optimizer_state, 25_557_032 * 4);
    }

    #[test]
    fn costs_scale_with_the_batch() {
        let one = plan(&resnet50(1), &cfg(1, Optimizer::Sgd)).unwrap();
        let eight = plan(&resnet50(8), &cfg(8, Optimizer::Sgd)).unwrap();
        assert_eq!(eight.forward_flops, 8 * one.forward_flops);
        assert_eq!(eight.backward_flops, 8 * one.backward_flops);
        // Same samples, same FLOPs, whatever the batch.
        assert_eq!(eight.training_flops, one.training_flops);
        // Backward ≈ 2× forward: conv/linear backward is twice their forward MACs, and they
        // dominate (the stem conv skips its input gradient).
        let r = one.backward_flops as f64 / one.forward_flops as f64;
        assert!((1.8..2.1).contains(&r), "{r}");
    }

    #[test]
    fn peak_of_a_tiny_mlp_by_hand() {
        // x: 2×8 → fc1 (4, bias) → relu → fc2 (2, bias), batch 2, f32, SGD. Every tensor is
        // below 512 bytes, so each takes one 512-byte block.
        let yaml = "format: \"archscope/1\"\nname: tiny\ninputs:\n  x: [8]\nnodes:\n  \
                    - {id: fc1, op: linear, out: 4}\n  - {id: act, op: relu}\n  \
                    - {id: fc2, op: linear, out: 2}\n";
        let net = Network::from_yaml(
            "tiny.yaml",
            yaml,
            &BuildOptions {
                batch: 2,
                ..Default::default()
            },
        )
        .unwrap();
        let p = plan(&net, &cfg(2, Optimizer::Sgd)).unwrap();
        let peak = &p.memory.peak;
        // Weights: 4 tensors (fc1 weight, bias; fc2 weight, bias) = 2048; input x and labels
        // 1024; two cuBLAS workspaces (forward and backward threads).
        // End of forward: fc2's output (the logits, kept) + relu's output (saved) + the loss's
        // log-probabilities and scalar = 2048 (fc1's output went after the relu read it).
        // Backward starts with the gradients of the log-probabilities and of the logits: +1024
        // = 6144 + workspaces. Each later moment is at most as high: fc2's backward frees the
        // log-probabilities and the first gradient before adding a relu-output gradient and
        // two parameter gradients (6144 again, not more).
        assert_eq!(peak.bytes, 6144 + 2 * CUBLAS_WORKSPACE);
        assert_eq!(peak.phase, Phase::Backward);
        assert_eq!(peak.layer.as_deref(), Some("loss"));
        assert_eq!(peak.live.weights, 2048);
        assert_eq!(peak.live.input, 1024);
        assert_eq!(peak.live.activations, 2048);
        assert_eq!(peak.live.activation_gradients, 1024);
        assert_eq!(peak.live.gradients, 0);
        // With Adam: + two moments of each of the four tensors (4096) all step long; the step
        // adds the four gradients (2048) and a square-root temporary of each (2048) to
        // weights, state, input and the logits:
        // 2048 + 4096 + 1024 + 512 + 2048 + 2048 = 11776 > 6144 + 4096.
        let p = plan(&net, &cfg(2, Optimizer::Adam)).unwrap();
        assert_eq!(p.memory.peak.bytes, 11776 + 2 * CUBLAS_WORKSPACE);
        assert_eq!(p.memory.peak.phase, Phase::OptimizerStep);
        assert_eq!(p.memory.optimizer_temporaries, 2048);
    }

    #[test]
    fn training_flops_beyond_64_bits_are_exact() {
        // 600 epochs of ImageNet at batch 256: 18,904,305,064,859,011,200 FLOPs (> 2^64),
        // = 24,592,559,056 per image (the 90-epoch figures of docs/TRAINING.md / 256) × 1,281,167
        // × 600.
        let mut c = cfg(256, Optimizer::Sgd);
        c.epochs = 600;
        let p = plan(&resnet50(256), &c).unwrap();
        assert_eq!(p.training_flops, 18_904_305_064_859_011_200);
        assert_eq!(p.total_iterations, 5005 * 600);
        let text = render(&p, true);
        assert!(
            text.contains("\"training_flops\": 18904305064859011200,"),
            "{text}"
        );
    }
}
