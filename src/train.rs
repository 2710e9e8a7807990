//! Training cost and memory of a network: iterations per epoch (with and without
//! `drop_last`), training FLOPs (forward + backward, per op through
//! [`Layer::training`](crate::layers::Layer::training)), wall time at a sustained throughput,
//! and the memory of a training step: weights, gradients, optimiser state, the activations
//! autograd saves for backward (each storage counted once, as PyTorch holds it once) and a
//! workspace for the gradients in flight. The model, its derivation and its known error are in
//! docs/TRAINING.md.

use serde_json::{json, Value};

use crate::analysis::Dtype;
use crate::error::{Diagnostic, Error};
use crate::graph::Network;

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

/// Bytes of a training step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Parameters and buffers.
    pub weights: u64,
    pub gradients: u64,
    pub optimizer_state: u64,
    /// Tensors saved for backward (each storage once), their extra tensors (indices, masks,
    /// statistics) and the loss's saved log-probabilities.
    pub activations: u64,
    /// The largest set of gradient tensors in flight during one layer's backward.
    pub workspace: u64,
    pub total: u64,
}

/// The training plan of a model.
#[derive(Debug, Clone)]
pub struct Plan {
    pub model: String,
    pub config: Config,
    pub iterations_per_epoch: u64,
    pub iterations_per_epoch_drop_last: u64,
    pub total_iterations: u64,
    pub total_iterations_drop_last: u64,
    /// FLOPs of one full-batch iteration.
    pub forward_flops: u64,
    pub backward_flops: u64,
    /// Forward + backward over every sample of every epoch (the last partial batch included).
    pub training_flops: u64,
    pub training_flops_drop_last: u64,
    /// Seconds at the given throughput.
    pub wall_time_s: Option<f64>,
    pub memory: Memory,
}

fn overflow() -> Error {
    Error::from(
        Diagnostic::new("a training figure overflows 64 bits")
            .help("check --dataset-size, --epochs and --batch: their product is far too large"),
    )
}

fn cadd(a: u64, b: u64) -> Result<u64, Error> {
    a.checked_add(b).ok_or_else(overflow)
}

fn cmul(a: u64, b: u64) -> Result<u64, Error> {
    a.checked_mul(b).ok_or_else(overflow)
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
    let (mut forward, mut backward, mut extra, mut workspace) = (0u64, 0u64, 0u64, 0u64);
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
        forward = cadd(forward, t.forward_flops)?;
        if t.view {
            if let Some(&(s, _)) = node.inputs.first() {
                storage[k] = storage[s];
            }
        }
        requires_grad[k] = input_grad || p.trainable > 0;
        if !requires_grad[k] {
            continue; // autograd records nothing for it
        }
        backward = cadd(backward, t.backward_flops)?;
        extra = cadd(extra, t.saved.extra_bytes)?;
        for &i in &t.saved.inputs {
            if let Some(&(s, _)) = node.inputs.get(i) {
                saved_storage[storage[s]] = true;
            }
        }
        if t.saved.output {
            saved_storage[storage[k]] = true;
        }
        // Gradients in flight while this layer's backward runs: its output gradients and its
        // input gradients.
        let mut elems = 0u64;
        for s in node.out_shapes.iter().chain(if input_grad {
            node.in_shapes.iter()
        } else {
            [].iter()
        }) {
            elems = cadd(elems, s.numel().map_err(Error::from)?)?;
        }
        workspace = workspace.max(cmul(elems, size)?);
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
    let total = [gradients, optimizer_state, activations, workspace]
        .into_iter()
        .try_fold(weights, cadd)?;

    let (d, b, e) = (cfg.dataset_size, cfg.batch, cfg.epochs);
    let per_epoch = d.div_ceil(b);
    let per_epoch_drop = d / b;
    let per_iter = cadd(forward, backward)?;
    // Costs are linear in the batch: an epoch costs per-iteration FLOPs × samples / batch.
    let samples = e as u128 * d as u128;
    let flops = per_iter as u128 * samples / b as u128;
    let flops_drop = per_iter as u128 * (e as u128 * per_epoch_drop as u128);
    let to64 = |v: u128| u64::try_from(v).map_err(|_| overflow());
    let training_flops = to64(flops)?;
    Ok(Plan {
        model: net.name.clone(),
        config: *cfg,
        iterations_per_epoch: per_epoch,
        iterations_per_epoch_drop_last: per_epoch_drop,
        total_iterations: cmul(per_epoch, e)?,
        total_iterations_drop_last: cmul(per_epoch_drop, e)?,
        forward_flops: forward,
        backward_flops: backward,
        training_flops,
        training_flops_drop_last: to64(flops_drop)?,
        wall_time_s: cfg
            .throughput_tflops
            .map(|t| training_flops as f64 / (t * 1e12)),
        memory: Memory {
            weights,
            gradients,
            optimizer_state,
            activations,
            workspace,
            total,
        },
    })
}

/// The JSON document of a plan (stable keys; memory in bytes).
pub fn json_value(p: &Plan) -> Value {
    let m = &p.memory;
    json!({
        "model": p.model,
        "dataset_size": p.config.dataset_size,
        "batch": p.config.batch,
        "epochs": p.config.epochs,
        "optimizer": p.config.optimizer.name(),
        "dtype": p.config.dtype,
        "iterations_per_epoch": p.iterations_per_epoch,
        "iterations_per_epoch_drop_last": p.iterations_per_epoch_drop_last,
        "total_iterations": p.total_iterations,
        "total_iterations_drop_last": p.total_iterations_drop_last,
        "flops_per_iteration": {"forward": p.forward_flops, "backward": p.backward_flops},
        "training_flops": p.training_flops,
        "training_flops_drop_last": p.training_flops_drop_last,
        "throughput_tflops": p.config.throughput_tflops,
        "wall_time_s": p.wall_time_s,
        "memory": {
            "weights": m.weights,
            "gradients": m.gradients,
            "optimizer_state": m.optimizer_state,
            "activations": m.activations,
            "workspace": m.workspace,
            "total": m.total,
        },
    })
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
        return serde_json::to_string_pretty(&json_value(p)).expect("serialisable") + "\n";
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
        human_count(p.training_flops),
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
        "Workspace (gradients in flight)",
        human_bytes(m.workspace),
        m.workspace.to_string(),
    );
    row(
        "Total training memory",
        human_bytes(m.total),
        m.total.to_string(),
    );
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
}
