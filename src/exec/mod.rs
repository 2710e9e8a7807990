//! The embedded executor: runs a built [`Network`] on real f32 tensors with real kernels, to
//! prove the analyser's figures by an independent route (`archscope check`) and to run and
//! profile a design (`archscope run`). Weights come from a seeded initialisation or a
//! `.safetensors` file (PyTorch's names and layouts: `layer.path.weight`, `.bias`,
//! `.running_mean`, `.running_var`). Every tensor is freed after its last use. Kernels live
//! with their layers (`Kernel::forward`); the shared building blocks (GEMM, im2col, windows,
//! broadcasting) are in [`kernels`].

pub mod io;
pub mod reach;

pub use crate::kernels;
pub use crate::kernels::{Ctx, Epilogue, Recycler};
pub use crate::tensor::{Init, Tensor, WeightKind, WeightSpec, MAX_TENSOR_ELEMENTS};

use std::time::Instant;

use crate::error::Diagnostic;
use crate::graph::Network;

/// Most bytes the executor holds at once by default (3 GiB): weights (and the inference plan's
/// copies of them), the activations alive at each layer, a scratch allowance per layer, and
/// the buffers kept for reuse. [`check_memory`] computes the need from the network before
/// anything is allocated; `archscope run --memory-budget` changes it, up to
/// [`MAX_MEMORY_BUDGET`].
pub const MEMORY_BUDGET: u64 = 3 << 30;

/// The largest budget that may be asked for (1 TiB).
pub const MAX_MEMORY_BUDGET: u64 = 1 << 40;

/// `n` bytes in binary units (`1.50 GiB`).
fn bytes_text(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// The bytes of f32 of a shape, saturating (a size over the limits is reported elsewhere).
fn f32_bytes(dims: &[u64]) -> u64 {
    dims.iter()
        .try_fold(4u64, |a, &d| a.checked_mul(d))
        .unwrap_or(u64::MAX)
}

/// What running a network needs at most, in bytes, as computed by [`check_memory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryNeed {
    /// Weights and buffers (plus the extra bytes given, such as a plan's copies).
    pub weights: u64,
    /// The most bytes of activations (with the scratch allowance) alive at one layer.
    pub activations: u64,
    /// The layer where that peak is reached.
    pub peak_layer: usize,
}

impl MemoryNeed {
    pub fn total(&self) -> u64 {
        self.weights.saturating_add(self.activations)
    }
}

/// The memory a pass over `net` needs, computed from the network alone before anything is
/// allocated, against `budget` bytes. Counted: every weight and buffer as f32 (a tied
/// layer's copy of the shared weight too, see `share_tied`; plus
/// `extra_weights`, e.g. the inference plan's folded or Winograd copies); the model's inputs;
/// at each layer in execution order, every tensor still to be read (and every model output)
/// plus the layer's outputs and a scratch allowance: its largest input, or its kernel's
/// working buffers when larger (`Kernel::workspace`: a convolution's padded input and im2col
/// buffer). Every tensor is first checked against [`MAX_TENSOR_ELEMENTS`]. The
/// error names the first layer where the total goes over the budget.
pub fn check_memory(
    net: &Network,
    budget: u64,
    extra_weights: u64,
) -> Result<MemoryNeed, Diagnostic> {
    // Per-tensor limits first, weights (allocated first) then outputs, in layer order: the
    // error names the tensor.
    for node in &net.nodes {
        for spec in node.layer.weights() {
            check_size(
                &spec.shape,
                &format!("the weight `{}.{}`", node.name, spec.name),
                &node.name,
            )?;
        }
    }
    for node in &net.nodes {
        for s in &node.out_shapes {
            // The error's text is made only for a tensor over the limit (this runs per layer
            // and per pass).
            let n = s.0.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
            if n.is_none_or(|n| n > MAX_TENSOR_ELEMENTS as u64) {
                let dims: Vec<usize> = s.0.iter().map(|&d| d as usize).collect();
                check_size(&dims, &format!("the output of `{}`", node.name), &node.name)?;
            }
        }
    }
    let over = |k: usize, weights: u64, live: u64, scratch: u64, what: &str| {
        let node = &net.nodes[k];
        let total = weights.saturating_add(live).saturating_add(scratch);
        Diagnostic::new(format!(
            "running the model needs {} at once at layer `{}` ({what}: weights {}, tensors alive {}, scratch {}), more than the executor's memory budget of {}",
            bytes_text(total),
            node.name,
            bytes_text(weights),
            bytes_text(live),
            bytes_text(scratch),
            bytes_text(budget)
        ))
        .layer(&node.name)
        .help("run with a smaller --input or --batch, or raise the budget with --memory-budget (the static commands, such as summary, need no such memory)")
    };
    let mut weights = extra_weights;
    for (k, node) in net.nodes.iter().enumerate() {
        for spec in node.layer.weights() {
            let dims: Vec<u64> = spec.shape.iter().map(|&d| d as u64).collect();
            weights = weights.saturating_add(f32_bytes(&dims));
        }
        // A tied weight: the executor gives the layer its own copy of the owner's tensor
        // (`share_tied`), allocated beside the owner's.
        if let Some(t) = node.layer.tied() {
            let dims: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
            weights = weights.saturating_add(f32_bytes(&dims));
        }
        if weights > budget {
            return Err(over(k, weights, 0, 0, "weights read so far"));
        }
    }
    let liveness = net.topology.executed();
    let out_bytes: Vec<u64> = net
        .nodes
        .iter()
        .map(|n| {
            n.out_shapes
                .iter()
                .fold(0u64, |a, s| a.saturating_add(f32_bytes(&s.0)))
        })
        .collect();
    // The caller's copies of the model inputs, alive throughout.
    let mut live = net
        .topology
        .sources()
        .iter()
        .fold(0u64, |a, &k| a.saturating_add(out_bytes[k]));
    let mut need = MemoryNeed {
        weights,
        activations: 0,
        peak_layer: 0,
    };
    for (k, node) in net.nodes.iter().enumerate() {
        let largest_input = node
            .in_shapes
            .iter()
            .map(|s| f32_bytes(&s.0))
            .max()
            .unwrap_or(0);
        let workspace = node
            .layer
            .workspace(&node.in_shapes, &node.out_shapes)
            .saturating_mul(4);
        let scratch = largest_input.max(workspace);
        live = live.saturating_add(out_bytes[k]);
        let here = live.saturating_add(scratch);
        if weights.saturating_add(here) > budget {
            return Err(over(
                k,
                weights,
                live,
                scratch,
                "its inputs and outputs, every tensor still to be read, and its kernel's working buffers",
            ));
        }
        if here > need.activations {
            need.activations = here;
            need.peak_layer = k;
        }
        for &s in liveness.frees(k) {
            live -= out_bytes[s];
        }
    }
    Ok(need)
}

/// The weights of every layer of a network, in the order of its nodes.
#[derive(Debug, Clone)]
pub struct Weights {
    pub per_node: Vec<Vec<Tensor>>,
}

impl Weights {
    /// Parameters and buffers as allocated: (trainable + frozen, trainable, buffers).
    pub fn count(&self, net: &Network, node: usize) -> (u64, u64, u64) {
        let specs = net.nodes[node].layer.weights();
        let (mut p, mut t, mut b) = (0, 0, 0);
        for (spec, tensor) in specs.iter().zip(&self.per_node[node]) {
            let n = tensor.numel() as u64;
            match spec.kind {
                WeightKind::Trainable => {
                    p += n;
                    t += n;
                }
                WeightKind::Frozen => p += n,
                WeightKind::Buffer => b += n,
            }
        }
        (p, t, b)
    }
}

/// SplitMix64: a tiny, well-known deterministic generator (seeded per tensor by its name).
/// Its state after `k` steps is `seed + k·γ`, so element `i` of a tensor is computed on its own
/// ([`SplitMix::at`]): tensors are filled in parallel chunks with the same values at any thread
/// count.
struct SplitMix(u64);

impl SplitMix {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
    #[inline(always)]
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(Self::GAMMA);
        Self::mix(self.0)
    }
    /// The `i`-th output (0-based) of the generator seeded with `seed`.
    #[inline(always)]
    fn at(seed: u64, i: u64) -> u64 {
        Self::mix(seed.wrapping_add(Self::GAMMA.wrapping_mul(i.wrapping_add(1))))
    }
    /// Uniform in (0, 1).
    #[inline(always)]
    fn to_unit(x: u64) -> f64 {
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn unit(&mut self) -> f64 {
        Self::to_unit(self.next())
    }
}

fn seed_for(seed: u64, name: &str) -> u64 {
    // FNV-1a of the tensor's name, mixed with the seed: independent of layer order.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The number of elements of a tensor the executor is about to allocate, or the error if it
/// is over [`MAX_TENSOR_ELEMENTS`]. `what` names the tensor, `layer` its layer.
fn check_size(shape: &[usize], what: &str, layer: &str) -> Result<usize, Diagnostic> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match n {
        Some(n) if n <= MAX_TENSOR_ELEMENTS => Ok(n),
        _ => {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            let count = n.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string());
            Err(Diagnostic::new(format!(
                "{what} would be a {} tensor of {count} elements, more than the executor allocates (2^32 = {MAX_TENSOR_ELEMENTS}, 16 GiB of f32)",
                dims.join("×")
            ))
            .layer(layer)
            .help("run with a smaller --input or --batch (the static commands, such as summary, have no such limit)"))
        }
    }
}

/// Deterministic random weights from `seed`: each tensor's values come from its own generator,
/// seeded by its name, so layers are filled in parallel and the result does not depend on
/// order or thread count. The first error in layer order is reported.
pub fn init_weights(net: &Network, seed: u64) -> Result<Weights, Diagnostic> {
    use rayon::prelude::*;
    let per_node: Vec<Result<Vec<Tensor>, Diagnostic>> = net
        .nodes
        .par_iter()
        .map(|node| init_layer(node, seed))
        .collect();
    let mut w = Weights {
        per_node: per_node.into_iter().collect::<Result<_, _>>()?,
    };
    share_tied(net, &mut w);
    Ok(w)
}

/// A seeded tensor's `n` values, computed in parallel chunks by `f(start, chunk)`, which writes
/// values `start, start + 1, …` into `chunk` (the same values at any thread count), straight
/// into fresh memory: nothing is zeroed first. A large tensor (4 MiB
/// and more: VGG's and YOLOv1's fully connected layers hold hundreds of MiB) is, on Linux,
/// advised for transparent huge pages (`madvise(MADV_HUGEPAGE)`, which the kernel honours
/// in its default `madvise` mode) before anything is written, so that writing it faults in
/// 2 MiB pages instead of 4 KiB ones: `check vgg16` spent most of its system time in those
/// faults.
fn filled(n: usize, f: impl Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    let mut data: Vec<f32> = Vec::with_capacity(n);
    #[cfg(target_os = "linux")]
    if n >= 1 << 20 {
        extern "C" {
            fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
        }
        const MADV_HUGEPAGE: i32 = 14;
        const PAGE: usize = 4096;
        let start = (data.as_ptr() as usize).next_multiple_of(PAGE);
        let end = (data.as_ptr() as usize + 4 * n) / PAGE * PAGE;
        if end > start {
            // SAFETY: the range lies inside `data`'s allocation, page-aligned; the advice
            // changes how its pages are backed, never their contents (a failure, such as a
            // kernel without huge pages, leaves the memory as it was and is ignored).
            unsafe { madvise(start as *mut std::ffi::c_void, end - start, MADV_HUGEPAGE) };
        }
    }
    const CHUNK: usize = 1 << 16;
    data.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, part)| f(c * CHUNK, part));
    // SAFETY: the loop above wrote each of the first `n` elements.
    unsafe { data.set_len(n) };
    data
}

/// The seeded weights of one layer.
fn init_layer(node: &crate::graph::NetNode, seed: u64) -> Result<Vec<Tensor>, Diagnostic> {
    let mut tensors = Vec::new();
    for spec in node.layer.weights() {
        let name = tensor_name(&node.name, spec.name);
        let n = check_size(&spec.shape, &format!("the weight `{name}`"), &node.name)?;
        let data = match &spec.init {
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::Constant(c) => vec![*c; n],
            Init::Fixed(v) => v.clone(),
            Init::Normal { std } => {
                // Box–Muller: element i from the generator's outputs 2i and 2i + 1, both
                // uniform in (0, 1), so that its logarithm is finite: z = √(−2 ln u)·cos(2πv).
                let std = f64::from(*std);
                let s = seed_for(seed, &name);
                filled(n, |start, part| {
                    for (j, v) in part.iter_mut().enumerate() {
                        let i = 2 * (start + j) as u64;
                        let u = SplitMix::to_unit(SplitMix::at(s, i));
                        let w = SplitMix::to_unit(SplitMix::at(s, i + 1));
                        let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * w).cos();
                        v.write((z * std) as f32);
                    }
                })
            }
            Init::Kaiming { fan_in } => {
                // Uniform in (−a, a) with a = √(6/fan_in): variance a²/3 = 2/fan_in.
                let a = (6.0 / (*fan_in).max(1) as f64).sqrt();
                let s = seed_for(seed, &name);
                // Compiled for the widest vector unit (`kernels::vectorised`): the
                // generator's 64-bit multiplies and conversions vectorise with AVX-512
                // (`vpmullq`), not with the baseline's SSE2 — the same integer and f64
                // operations in the same order, so the same values. Scalar, this loop
                // was about a fifth of `check resnet152`'s samples at one thread.
                filled(n, |start, part| {
                    kernels::vectorised(
                        #[inline(always)]
                        || {
                            for (j, v) in part.iter_mut().enumerate() {
                                let u = SplitMix::to_unit(SplitMix::at(s, (start + j) as u64));
                                v.write(((2.0 * u - 1.0) * a) as f32);
                            }
                        },
                    )
                })
            }
        };
        tensors.push(Tensor::new(spec.shape.clone(), data));
    }
    Ok(tensors)
}

/// Weights from a `.safetensors` file: every tensor a layer owns must be present under
/// `layer.path.name` with the layer's shape, in f32 (f16/bf16/f64 are converted).
pub fn load_safetensors(net: &Network, bytes: &[u8], file: &str) -> Result<Weights, Diagnostic> {
    // Every fault of the layout is reported in words first; the reader's own error remains
    // only for what that check does not cover, translated too.
    io::check_safetensors(bytes, file)?;
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
        use safetensors::SafeTensorError as E;
        let why = match e {
            E::TensorInvalidInfo | E::InvalidTensorView(..) => {
                "a tensor's dtype and shape do not match its data_offsets".to_string()
            }
            E::InvalidOffset(name) => format!("the data offsets of tensor `{name}` are not contiguous"),
            E::MetadataIncompleteBuffer => {
                "the tensors' data does not end exactly at the end of the file".to_string()
            }
            E::ValidationOverflow => "a tensor's size overflows 64 bits".to_string(),
            E::HeaderTooSmall | E::HeaderTooLarge | E::InvalidHeaderLength => {
                "the 8-byte header length at byte 0 does not fit the file".to_string()
            }
            _ => "its JSON header (from byte 8) is not a safetensors header".to_string(),
        };
        Diagnostic::new(format!("{file} is not a valid safetensors file: {why}"))
            .help("write it with safetensors' save_file (Python: safetensors.torch.save_file(model.state_dict(), path))")
    })?;
    let mut per_node = Vec::with_capacity(net.nodes.len());
    for (k, node) in net.nodes.iter().enumerate() {
        let mut tensors = Vec::new();
        for spec in node.layer.weights() {
            let name = tensor_name(&net.tensor_prefix[k], spec.name);
            if let Init::Fixed(v) = &spec.init {
                if spec.kind == WeightKind::Frozen && st.tensor(&name).is_err() {
                    tensors.push(Tensor::new(spec.shape.clone(), v.clone()));
                    continue;
                }
            }
            let view = st
                .tensor(&name)
                .map_err(|_| missing_tensor(&st, &name, &spec, net, k, file))?;
            if view.shape() != spec.shape.as_slice() {
                return Err(Diagnostic::new(format!(
                    "tensor `{name}` in {file} has shape {:?}, but the layer needs {:?}",
                    view.shape(),
                    spec.shape
                ))
                .layer(&node.name));
            }
            let data = tensor_f32(&view, &name, file, spec.kind)?;
            tensors.push(Tensor::new(spec.shape.clone(), data));
        }
        per_node.push(tensors);
    }
    let mut w = Weights { per_node };
    share_tied(net, &mut w);
    // A tied layer's own name (`lm_head.weight`, which a GPT-2 state dict saved with its tied
    // duplicate holds beside `transformer.wte.weight`) is accepted when the file's tensor equals the shared one,
    // bit for bit after conversion to f32: it is the same tensor saved twice.
    let mut tied_names: Vec<String> = Vec::new();
    for (k, node) in net.nodes.iter().enumerate() {
        let Some(t) = node.layer.tied() else {
            continue;
        };
        let name = tensor_name(&net.tensor_prefix[k], t.weight);
        let Ok(view) = st.tensor(&name) else {
            continue;
        };
        let owner = net.nodes.iter().position(|n| n.name == t.layer);
        let shared = owner.map(|j| tensor_name(&net.tensor_prefix[j], t.weight));
        let same = view.shape() == t.shape.as_slice()
            && w.per_node[k].last().is_some_and(|have| {
                tensor_f32(&view, &name, file, WeightKind::Trainable).is_ok_and(|d| {
                    d.len() == have.data.len()
                        && d.iter()
                            .zip(&have.data)
                            .all(|(a, b)| a.to_bits() == b.to_bits())
                })
            });
        let shared = shared.unwrap_or_else(|| t.layer.clone());
        if !same {
            return Err(Diagnostic::new(format!(
                "tensor `{name}` in {file} differs from `{shared}`, which layer `{}` shares (`tied: {}`): a tied layer has no weight of its own",
                node.name, t.layer
            ))
            .layer(&node.name)
            .help(format!(
                "drop `{name}` from the file (the model uses `{shared}`), or remove `tied:` from `{}` to give it its own weight",
                node.name
            )));
        }
        tied_names.push(name);
    }
    // Every tensor of the file must have been read: a misspelt name is an error, not ignored.
    // PyTorch's `num_batches_tracked` counters are the one kind of tensor with no use here.
    let used: std::collections::HashSet<String> = net
        .nodes
        .iter()
        .zip(&net.tensor_prefix)
        .flat_map(|(n, prefix)| {
            n.layer
                .weights()
                .into_iter()
                .map(move |s| tensor_name(prefix, s.name))
        })
        .collect();
    let mut unused: Vec<&String> = st
        .names()
        .into_iter()
        .filter(|n| {
            !used.contains(*n) && !tied_names.contains(*n) && !n.ends_with(".num_batches_tracked")
        })
        .collect();
    unused.sort();
    if let Some(first) = unused.first() {
        // Every tensor the model reads was found: the rest belong to layers it does not have.
        return Err(Diagnostic::new(format!(
            "{file} has {} tensor(s) that no layer uses, e.g. `{first}`",
            unused.len()
        ))
        .help(format!(
            "this model reads {} tensors, all found; the others belong to layers it does not have (a torchvision checkpoint's auxiliary classifiers: write the file with scripts/torchvision_weights.py export, which drops them)",
            used.len()
        )));
    }
    Ok(w)
}

/// The values of a safetensors tensor as f32 (f16/bf16/f64 converted; i64 for a buffer).
fn tensor_f32(
    view: &safetensors::tensor::TensorView<'_>,
    name: &str,
    file: &str,
    kind: WeightKind,
) -> Result<Vec<f32>, Diagnostic> {
    let raw = view.data();
    use safetensors::Dtype as D;
    Ok(match view.dtype() {
        D::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        D::F64 => raw
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        D::BF16 => raw
            .chunks_exact(2)
            .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
            .collect(),
        D::F16 => raw
            .chunks_exact(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        // Integer buffers (Swin's relative_position_index): exact in f32 below 2^24.
        D::I64 if kind == WeightKind::Buffer => raw
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        other => {
            return Err(Diagnostic::new(format!(
                "tensor `{name}` in {file} is {other:?}; archscope reads f32, f64, f16 and bf16"
            )))
        }
    })
}

/// The name of weight `weight` of the layer whose tensor-name prefix is `prefix`: `prefix.weight`,
/// or the prefix itself for a layer whose one tensor has no name of its own (a `parameter`).
pub fn tensor_name(prefix: &str, weight: &str) -> String {
    if weight.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}.{weight}")
    }
}

/// Appends to each layer with a tied weight ([`crate::layers::Kernel::tied`]) a copy of the
/// owner's tensor (the graph checked that it exists, with this shape, before the layer).
pub(crate) fn share_tied(net: &Network, w: &mut Weights) {
    for (k, node) in net.nodes.iter().enumerate() {
        let Some(t) = node.layer.tied() else {
            continue;
        };
        let owner = net.nodes.iter().position(|n| n.name == t.layer);
        let shared = owner.and_then(|j| {
            let i = net.nodes[j]
                .layer
                .weights()
                .iter()
                .position(|s| s.name == t.weight)?;
            w.per_node[j].get(i).cloned()
        });
        if let Some(tensor) = shared {
            w.per_node[k].push(tensor);
        }
    }
}

/// Most bytes a `.safetensors` file of `net`'s weights can hold: its 8-byte header length, a
/// JSON header of 1 MiB plus 1 KiB per layer and per tensor (never more than
/// [`io::MAX_SAFETENSORS_HEADER`]), every weight and buffer in f64 (the widest dtype read),
/// and 8 bytes per layer for PyTorch's `num_batches_tracked` counters. The CLI reads no more
/// than this plus one byte.
pub fn safetensors_byte_limit(net: &Network) -> u64 {
    let tensors: u64 = net
        .nodes
        .iter()
        .map(|n| 1 + n.layer.weights().len() as u64)
        .sum();
    let header = (1u64 << 20)
        .saturating_add(tensors.saturating_mul(1024))
        .min(io::MAX_SAFETENSORS_HEADER);
    let mut n = 8 + header;
    for node in &net.nodes {
        n = n.saturating_add(8);
        for spec in node.layer.weights() {
            let elems = spec
                .shape
                .iter()
                .try_fold(8u64, |a, &d| a.checked_mul(d as u64))
                .unwrap_or(u64::MAX);
            n = n.saturating_add(elems);
        }
    }
    n
}

/// The error for a tensor `name` that the file lacks, with the file's tensor most like it: of
/// the same kind (last component: `weight`, `bias`, …) and shape, the least edit distance over
/// dotted components (a component replaced costs its own character distance over its length,
/// so `conv1.bn.weight` is nearest `bn1.weight`, not `conv1.weight` of another shape).
fn missing_tensor(
    st: &safetensors::SafeTensors,
    name: &str,
    spec: &WeightSpec,
    net: &Network,
    k: usize,
    file: &str,
) -> Diagnostic {
    let node = &net.nodes[k];
    let mapped = if net.tensor_prefix[k] != node.name {
        " (the model's `weights_names:` maps the layer to it)"
    } else {
        ""
    };
    let d = Diagnostic::new(format!(
        "{file} has no tensor `{name}` (shape {:?}){mapped}",
        spec.shape
    ))
    .layer(&node.name);
    let want: Vec<&str> = name.split('.').collect();
    let mut best: Option<(f64, &str)> = None;
    for (cand, view) in st.iter() {
        if view.shape() != spec.shape.as_slice() || cand.len() > 1024 {
            continue;
        }
        let parts: Vec<&str> = cand.split('.').collect();
        if parts.last() != want.last() {
            continue;
        }
        let dist = component_distance(&want, &parts);
        if best.is_none_or(|(b, c)| dist < b || (dist == b && cand < c)) {
            best = Some((dist, cand));
        }
    }
    match best {
        Some((_, s)) => d.help(format!(
            "the file's nearest tensor of that shape is `{s}`; tensors are read as the layer's name (or its `weights_names:` entry) + `.{}`",
            spec.name
        )),
        None => d.help(format!(
            "the file has no `.{}` tensor of shape {:?}: is it written for another model? (see `archscope summary` for the layers; scripts/torchvision_weights.py writes torchvision's weights)",
            spec.name, spec.shape
        )),
    }
}

/// Edit distance between two dotted names, component by component: inserting or deleting a
/// component costs 1, replacing one costs its character edit distance over the longer length.
fn component_distance(a: &[&str], b: &[&str]) -> f64 {
    let mut prev: Vec<f64> = (0..=b.len()).map(|j| j as f64).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![(i + 1) as f64; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let longer = ca.chars().count().max(cb.chars().count()).max(1);
            let sub = crate::error::edit_distance(ca, cb) as f64 / longer as f64;
            cur[j + 1] = (prev[j] + sub).min(prev[j + 1] + 1.0).min(cur[j] + 1.0);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// Called with each layer's index and outputs as they are produced.
pub type LayerHook<'a> = dyn FnMut(usize, &[Tensor]) + Send + 'a;

/// What one layer did when it ran.
#[derive(Debug, Clone)]
pub struct LayerRun {
    /// Shapes of the tensors it produced.
    pub shapes: Vec<Vec<usize>>,
    /// Multiply-accumulates its kernel performed.
    pub macs: u64,
    /// Wall time of its kernel, in seconds.
    pub seconds: f64,
}

/// The result of a forward pass.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The model outputs, in `Network::outputs` order.
    pub outputs: Vec<Tensor>,
    pub layers: Vec<LayerRun>,
    /// Bytes the concatenations copied (each input copied into its slice of the output; with
    /// the plan's assembly, only the inputs not written there by their producers).
    pub concat_copied: u64,
}

/// How the inference plan assembles a concatenation (along dimension 1) in place: its
/// output buffer is made before its producers run, and they write their channels straight
/// into it (`Ctx::into`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembly {
    /// Per input: whether its producer writes it into the buffer (else it is copied there
    /// when the concatenation runs).
    pub placed: Vec<bool>,
    /// The concatenation whose buffer this one extends (its input 0, at batch 1: DenseNet's
    /// growing concatenation, `cat(cat(x, y1), y2)`, keeps one buffer for the whole block).
    pub grows: Option<usize>,
    /// Elements to reserve when the buffer is first made (the last of the chain of
    /// concatenations that extend it), so that extending it never moves it.
    pub reserve: usize,
    /// The first layer that writes into the buffer (the concatenation itself when none).
    pub first: usize,
}

/// An inference plan: batch norms folded into the convolution before them (when that
/// convolution feeds nothing else), activations fused into the kernel before them (applied tile
/// by tile as it writes its output), merges and element-wise layers computed in place on tensors
/// that die there, and max-pool indices skipped when nothing reads them. `archscope run` uses
/// it; `check` runs every layer as written.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Replacement weights for a layer (a convolution with a batch norm folded in).
    pub weights: Vec<Option<Vec<Tensor>>>,
    /// Layers whose output is their input's, already computed (folded batch norms, fused
    /// activations, residual adds fused into a producer): input [`Plan::through`]'s.
    pub passthrough: Vec<bool>,
    /// For a passthrough layer, which of its inputs it passes on: 0, but for a residual add
    /// fused into the producer of another of its inputs (that one).
    pub through: Vec<usize>,
    /// A residual add fused into the layer that computes one of its operands: the other
    /// operand (its producer and output slot), which this layer adds to its output after the
    /// bias and before its fused activation ([`Epilogue`]). The add passes the result on.
    pub residual: Vec<Option<(usize, usize)>>,
    /// The activation fused into a layer's kernel.
    pub fused: Vec<Option<kernels::Pointwise>>,
    /// Layers whose auxiliary output (max-pool indices) no consumer reads.
    pub aux_unused: Vec<bool>,
    /// Whether element-wise layers and merges may overwrite an input that dies there, and
    /// kernels write their outputs into the buffers of dead tensors.
    pub in_place: bool,
    /// Most bytes of dead tensors' buffers kept for reuse (what the memory budget leaves over
    /// the need [`check_memory`] computed).
    pub recycle_bytes: u64,
    /// Layers that write their output straight into a concatenation's buffer: (the
    /// concatenation, the element offset of their slice in one sample).
    pub into: Vec<Option<(usize, usize)>>,
    /// Concatenations assembled in place.
    pub assembled: Vec<Option<Assembly>>,
    /// Bytes the assembled concatenations hold beyond what [`check_memory`] counts: their
    /// buffers, made before the concatenation runs (the most alive at once), and the room
    /// reserved for growing ones.
    pub assembly_bytes: u64,
    /// Concatenations along channels computed together with the channel shuffle that reads
    /// them alone (ShuffleNet's units), in one copy: the shuffle's groups. The shuffle passes
    /// the result on.
    pub shuffled: Vec<Option<usize>>,
    /// For a layer, the global average pool (`Kernel::is_global_mean`) that reads its output
    /// (past the layers fused into it) and whose means it is asked for (`Ctx::means`): a
    /// squeeze-and-excitation gate's pool over the depthwise convolution before it. A kernel
    /// that computes them as it writes its output hands them over and the pool does not run;
    /// any other leaves the pool to run as written.
    pub means: Vec<Option<usize>>,
    /// Whether the pool's other workers are kept looking for work during a pass instead of
    /// going to sleep between layers (see `Warm`): a small model's layers last a few µs to
    /// tens of µs, as long as waking a sleeping worker takes.
    pub warm: bool,
}

impl Plan {
    /// The layer whose output layer `k`'s is: `k`, or for a passthrough layer the layer that
    /// really computes it (past folded, fused and passed-on layers).
    pub fn root(&self, net: &Network, mut k: usize) -> usize {
        while self.passthrough.get(k) == Some(&true) {
            let i = self.through.get(k).copied().unwrap_or(0);
            k = net.nodes[k].inputs[i].0;
        }
        k
    }
    /// The buffers a run keeps across its passes ([`run_pooled`]): dead tensors' buffers
    /// reused by later outputs, at most [`Plan::recycle_bytes`] held, none when the plan does
    /// not compute in place (`check`'s plain pass).
    pub fn buffers(&self) -> Recycler {
        let mut r = Recycler::new(self.recycle_bytes, 64);
        r.on = self.in_place;
        r
    }
    /// Bytes of the replacement weights the plan holds (folded and Winograd copies).
    pub fn weight_bytes(&self) -> u64 {
        self.weights
            .iter()
            .flatten()
            .flatten()
            .map(|t| 4 * t.numel() as u64)
            .sum()
    }
    /// Bytes the plan holds beyond what [`check_memory`] counts for the network itself: the
    /// replacement weights and the assembled concatenations' early buffers.
    pub fn extra_bytes(&self) -> u64 {
        self.weight_bytes().saturating_add(self.assembly_bytes)
    }
}

/// Plans the global average pools whose means the layer computing their input is asked for
/// (`Plan::means`): a pool of one input, with no residual fused into it (an activation fused
/// into it is applied to the means) and not written into a concatenation, over a tensor that a single-output layer computes (past the layers folded,
/// fused or passed on), one pool per such layer.
fn plan_means(net: &Network, p: &mut Plan) {
    for (k, node) in net.nodes.iter().enumerate() {
        let [(src, 0)] = node.inputs[..] else {
            continue;
        };
        if !node.layer.is_global_mean()
            || p.passthrough[k]
            || p.residual[k].is_some()
            || p.into[k].is_some()
            || node.out_shapes.len() != 1
        {
            continue;
        }
        let r = p.root(net, src);
        let producer = &net.nodes[r];
        if producer.layer.is_input()
            || producer.out_shapes.len() != 1
            || producer.out_shapes[0] != net.nodes[src].out_shapes[0]
            || p.means[r].is_some()
        {
            continue;
        }
        p.means[r] = Some(k);
    }
}

/// Plans the concatenations along channels (dimension 1) to be assembled in place: a
/// producer read by the concatenation alone (past the layers fused into it) writes its
/// channels straight into the concatenation's buffer; at batch 1, a concatenation whose
/// input 0 is another concatenation read last there extends that one's buffer (DenseNet).
fn plan_concats(net: &Network, p: &mut Plan) {
    let n = net.nodes.len();
    let topo = &net.topology;
    let numel = |s: &crate::layers::Shape| s.0.iter().product::<u64>() as usize;
    for (c, node) in net.nodes.iter().enumerate() {
        if node.layer.concat_dim() != Some(1)
            || node.out_shapes.len() != 1
            || p.shuffled[c].is_some()
        {
            continue;
        }
        let out = &node.out_shapes[0].0;
        if out.len() < 2 || node.inputs.is_empty() {
            continue;
        }
        let batch = out[0] as usize;
        let mut placed = vec![false; node.inputs.len()];
        let mut grows = None;
        let mut offset = 0usize;
        let mut roots = Vec::new();
        for (i, &(src, slot)) in node.inputs.iter().enumerate() {
            let src_node = &net.nodes[src];
            let chunk = numel(&src_node.out_shapes[slot]) / batch.max(1);
            let once = node.inputs.iter().filter(|&&(s, _)| s == src).count() == 1;
            let alone = once
                && slot == 0
                && src_node.out_shapes.len() == 1
                && !topo.is_output(src)
                && topo.reads(src).len() == 1;
            // The layer that really computes `src` (past folded or fused layers); not one
            // with a residual added (laid out as its own output, not as a slice).
            let root = p.root(net, src);
            let rooted = !net.nodes[root].layer.is_input()
                && !net.nodes[root].inputs.is_empty()
                && p.into[root].is_none()
                && p.assembled[root].is_none()
                && p.residual[root].is_none();
            if alone && rooted {
                placed[i] = true;
                roots.push((root, offset));
            } else if i == 0
                && batch == 1
                && once
                && slot == 0
                && !topo.is_output(src)
                && p.assembled[src].is_some()
                && topo.last_reader(src) == Some(c)
            {
                grows = Some(src);
            }
            offset += chunk;
        }
        let first = roots.iter().map(|&(r, _)| r).min().unwrap_or(c).min(c);
        // Growing: every other reader of the grown concatenation has run when the buffer is
        // taken over (at `first`), and it has been computed.
        if let Some(g) = grows {
            let early = g >= first || topo.consumers(g).iter().any(|&r| r != c && r >= first);
            if early {
                grows = None;
            }
        }
        if roots.is_empty() && grows.is_none() {
            continue;
        }
        for &(root, off) in &roots {
            p.into[root] = Some((c, off));
        }
        p.assembled[c] = Some(Assembly {
            placed,
            grows,
            reserve: numel(&node.out_shapes[0]),
            first,
        });
    }
    // A chain's first buffer reserves room for its last concatenation.
    for c in (0..n).rev() {
        let Some(a) = p.assembled[c].clone() else {
            continue;
        };
        if let Some(g) = a.grows {
            if let Some(ga) = p.assembled[g].as_mut() {
                ga.reserve = ga.reserve.max(a.reserve);
            }
        }
    }
    // What the buffers add to the need counted per layer: the room reserved past each
    // chain's first buffer, and at each layer every buffer made before its concatenation
    // runs (counted there), the most at once.
    let mut early = vec![0u64; n + 1];
    let mut reserved = 0u64;
    for (c, a) in p.assembled.iter().enumerate() {
        let Some(a) = a else { continue };
        let own = 4 * numel(&net.nodes[c].out_shapes[0]) as u64;
        if a.grows.is_none() {
            reserved += 4 * a.reserve as u64 - own;
        }
        for e in &mut early[a.first..c] {
            *e += own;
        }
    }
    p.assembly_bytes = reserved + early.iter().copied().max().unwrap_or(0);
}

/// Plans the residual adds fused into a producer's kernel: a sum of two tensors of its
/// output's shape, one of which (`x`) is read by the sum alone and computed (past the layers
/// folded or fused into it) by a layer `r` that runs after the other operand (`y`) is ready,
/// does not read `y` itself, and has no activation fused yet. `r` then adds `y` to its output
/// after its bias (`Plan::residual`, the kernel's [`Epilogue`]: in its tiles while they are in
/// cache, where the kernel can; else the executor, right after it), and the activation fused
/// into the sum (ResNet's ReLU after the add) moves to `r`, after the add. The sum passes `x`
/// on. The result is the same bits as the sum as written (`x + y` rounds once either way).
fn plan_residuals(net: &Network, p: &mut Plan) {
    let topo = &net.topology;
    for (k, node) in net.nodes.iter().enumerate() {
        if !node.layer.is_sum() || node.inputs.len() != 2 || node.out_shapes.len() != 1 {
            continue;
        }
        let out = &node.out_shapes[0];
        if node.in_shapes.iter().any(|s| s != out) || node.inputs[0].0 == node.inputs[1].0 {
            continue;
        }
        // Each input in turn as the one computed with the add; the later root first.
        let mut best: Option<(usize, usize)> = None;
        for (i, &(x, slot)) in node.inputs.iter().enumerate() {
            let (y, _) = node.inputs[1 - i];
            let r = p.root(net, x);
            let rnode = &net.nodes[r];
            let fits = slot == 0
                && net.nodes[x].out_shapes.len() == 1
                && topo.reads(x).len() == 1
                && !topo.is_output(x)
                && !rnode.layer.is_input()
                && !rnode.inputs.is_empty()
                && rnode.out_shapes.len() == 1
                && rnode.out_shapes[0] == *out
                && rnode.layer.concat_dim().is_none()
                && p.fused[r].is_none()
                && p.residual[r].is_none()
                && y < r
                && rnode.inputs.iter().all(|&(s, _)| s != y);
            if fits && best.is_none_or(|(_, rb)| r > rb) {
                best = Some((i, r));
            }
        }
        let Some((i, r)) = best else {
            continue;
        };
        p.residual[r] = Some(node.inputs[1 - i]);
        p.fused[r] = p.fused[k].take();
        p.passthrough[k] = true;
        p.through[k] = i;
    }
}

/// Plans inference for `net` with `weights`.
pub fn plan(net: &Network, weights: &Weights) -> Plan {
    let n = net.nodes.len();
    let topo = &net.topology;
    let mut p = Plan {
        weights: vec![None; n],
        passthrough: vec![false; n],
        through: vec![0; n],
        residual: vec![None; n],
        fused: vec![None; n],
        aux_unused: vec![true; n],
        in_place: true,
        recycle_bytes: u64::MAX,
        into: vec![None; n],
        assembled: vec![None; n],
        assembly_bytes: 0,
        shuffled: vec![None; n],
        means: vec![None; n],
        warm: true,
    };
    for (k, node) in net.nodes.iter().enumerate() {
        if node.layer.reads_aux() {
            for &(src, _) in &node.inputs {
                p.aux_unused[src] = false;
            }
        }
        let [(src, 0)] = node.inputs[..] else {
            continue;
        };
        // Only a single-output producer read by this layer alone, and not a model output,
        // may have this layer folded or fused into it.
        if topo.reads(src).len() != 1 || topo.is_output(src) || net.nodes[src].out_shapes.len() != 1
        {
            continue;
        }
        // A channel shuffle of a concatenation along channels that only it reads: computed
        // by the concatenation (`Plan::shuffled`).
        if let Some(g) = node.layer.shuffle_groups() {
            let cat = &net.nodes[src];
            let channels = cat.out_shapes[0].0.get(1).copied().unwrap_or(0) as usize;
            if cat.layer.concat_dim() == Some(1)
                && !p.passthrough[src]
                && p.fused[src].is_none()
                && g > 0
                && channels.is_multiple_of(g)
            {
                p.shuffled[src] = Some(g);
                p.passthrough[k] = true;
            }
            continue;
        }
        // An identity at inference (dropout, stochastic depth) hands its input on.
        if node.layer.is_identity() {
            p.passthrough[k] = true;
            continue;
        }
        // The layer that really computes `src` (past folded or fused layers).
        let root = p.root(net, src);
        if p.fused[root].is_none() && !net.nodes[root].layer.is_input() {
            if let Some(f) = node.layer.pointwise() {
                p.fused[root] = Some(f);
                p.passthrough[k] = true;
                continue;
            }
        }
        if root != src || p.weights[src].is_some() {
            continue;
        }
        let Some((scale, shift)) = node.layer.channel_affine(&weights.per_node[k]) else {
            continue;
        };
        if let Some(w) = net.nodes[src]
            .layer
            .fold_affine(&weights.per_node[src], &scale, &shift)
        {
            p.weights[src] = Some(w);
            p.passthrough[k] = true;
        }
    }
    plan_residuals(net, &mut p);
    plan_concats(net, &mut p);
    plan_means(net, &mut p);
    // Weights prepared for faster kernels (Winograd filters), after folding.
    for (k, node) in net.nodes.iter().enumerate() {
        let w = p.weights[k].as_deref().unwrap_or(&weights.per_node[k]);
        if let Some(prepared) = node.layer.prepare(w, &node.in_shapes, &node.out_shapes) {
            p.weights[k] = Some(prepared);
        }
    }
    p
}

/// Runs the network on `inputs` (one per model input, in declaration order), every layer as
/// written. `keep` is called with every layer's outputs as they are produced; tensors are freed
/// after their last consumer.
pub fn run(
    net: &Network,
    weights: &Weights,
    inputs: &[Tensor],
    keep: Option<&mut LayerHook>,
) -> Result<RunResult, Diagnostic> {
    run_planned(net, weights, &Plan::default(), inputs, keep)
}

/// Runs the network following `plan` (see [`plan`]).
///
/// The pass runs on one of rayon's worker threads, so that the kernels' parallel loops start
/// from a worker of the pool: called from outside it, each loop would block the caller and wake
/// it again when done, some 150 times per ResNet-50 pass.
pub fn run_planned(
    net: &Network,
    weights: &Weights,
    plan: &Plan,
    inputs: &[Tensor],
    keep: Option<&mut LayerHook>,
) -> Result<RunResult, Diagnostic> {
    run_pooled(net, weights, plan, inputs, keep, &mut plan.buffers())
}

/// [`run_planned`] with the buffers kept from earlier passes (`buffers`, made by
/// [`Plan::buffers`] and kept for every pass of a run): the pass takes its outputs from them
/// and gives every buffer back when its tensor dies, and at the end of the pass, so that the
/// next pass allocates nothing (`archscope run --repeat`).
pub fn run_pooled(
    net: &Network,
    weights: &Weights,
    plan: &Plan,
    inputs: &[Tensor],
    keep: Option<&mut LayerHook>,
    buffers: &mut Recycler,
) -> Result<RunResult, Diagnostic> {
    let warm = Warm::new(plan.warm);
    let r = rayon::scope(|s| {
        let r = run_on_worker(net, weights, plan, inputs, keep, buffers, &|| {
            warm.top_up(s)
        });
        warm.stop.store(true, std::sync::atomic::Ordering::Release);
        r
    });
    buffers.end_pass();
    r
}

/// Most time a worker kept warm during a pass ([`Plan::warm`]) waits with nothing to run
/// before it goes back to rayon's own idle loop (which soon puts it to sleep). A pass tops
/// the warm workers up again before each layer, so this only bounds the waiting of a worker
/// that is not needed — or that holds, below its waiting, a job the pass waits for (a
/// worker that took the waiting job while it was itself waiting inside another job): the
/// waiting ends and that job goes on.
const WARM_IDLE: std::time::Duration = std::time::Duration::from_millis(2);

/// The pool's other workers kept looking for work during a pass ([`Plan::warm`]): each
/// runs a job that asks rayon for pending work (`rayon::yield_now`) and runs it at once,
/// yielding the processor to the system between tries, until the pass ends or it has found
/// nothing for [`WARM_IDLE`]. Without it a worker idle for more than some 30 tries goes to
/// sleep, and each of a small model's ~200 parallel layers waits for it to be woken (tens
/// of µs, as long as a whole layer of ShuffleNet's), or runs without it.
struct Warm {
    on: bool,
    /// Set when the pass ends: the warm workers return.
    stop: std::sync::atomic::AtomicBool,
    /// Warm-worker jobs spawned and not returned.
    alive: std::sync::atomic::AtomicUsize,
    /// How many to keep: the pool's threads but the pass's own.
    want: usize,
}

thread_local! {
    /// Whether this thread is inside a warm-worker job (one that another such job ran, from
    /// `yield_now`, returns at once).
    static WARMING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Warm {
    fn new(on: bool) -> Warm {
        Warm {
            on,
            stop: std::sync::atomic::AtomicBool::new(false),
            alive: std::sync::atomic::AtomicUsize::new(0),
            want: rayon::current_num_threads().saturating_sub(1),
        }
    }

    /// Spawns warm-worker jobs until `want` are alive (before each layer of the pass).
    fn top_up<'s>(&'s self, scope: &rayon::Scope<'s>) {
        use std::sync::atomic::Ordering;
        if !self.on {
            return;
        }
        while self.alive.load(Ordering::Acquire) < self.want {
            self.alive.fetch_add(1, Ordering::AcqRel);
            let home = rayon::current_thread_index();
            scope.spawn(move |_| self.work(home));
        }
    }

    /// One warm worker: runs pending jobs as they come, until the pass ends or none has
    /// come for [`WARM_IDLE`]. Run by the pass's own thread (`home`: taken back from its
    /// queue while it waits in a layer), or inside another warm worker, it returns at once.
    fn work(&self, home: Option<usize>) {
        use std::sync::atomic::Ordering;
        if rayon::current_thread_index() != home && !WARMING.get() {
            WARMING.set(true);
            let mut last = Instant::now();
            while !self.stop.load(Ordering::Acquire) {
                match rayon::yield_now() {
                    Some(rayon::Yield::Executed) => last = Instant::now(),
                    Some(rayon::Yield::Idle) if last.elapsed() < WARM_IDLE => {
                        std::thread::yield_now();
                    }
                    _ => break,
                }
            }
            WARMING.set(false);
        }
        self.alive.fetch_sub(1, Ordering::AcqRel);
    }
}

fn run_on_worker(
    net: &Network,
    weights: &Weights,
    plan: &Plan,
    inputs: &[Tensor],
    mut keep: Option<&mut LayerHook>,
    recycled: &mut Recycler,
    top_up: &dyn Fn(),
) -> Result<RunResult, Diagnostic> {
    let n = net.nodes.len();
    let liveness = net.topology.executed();
    // Whether `src` dies at layer `k` (its last reader; not a model output) and `k` reads it
    // through one input only: earlier readers have run, so `k` may take its buffer (a
    // squeeze-excitation gate scales the tensor its pooling read in place).
    let dies_into = |src: usize, k: usize| {
        liveness.freed_after[src] == Some(k)
            && net.nodes[k]
                .inputs
                .iter()
                .filter(|&&(s, _)| s == src)
                .count()
                == 1
    };
    let mut values: Vec<Option<Vec<Tensor>>> = vec![None; n];
    let mut aux: Vec<Option<Vec<u32>>> = vec![None; n];
    let mut layers = Vec::with_capacity(n);
    let mut next_input = 0;
    // The buffers of concatenations being assembled (`Plan::assembled`), made when the first
    // producer writes into one.
    let mut pending: Vec<Option<Tensor>> = vec![None; n];
    // The outputs of global average pools computed by the layer before them (`Plan::means`),
    // kept until the pool's turn.
    let mut means: Vec<Option<Tensor>> = vec![None; n];
    let mut concat_copied = 0u64;
    for (k, node) in net.nodes.iter().enumerate() {
        top_up();
        // This layer's output slice in an assembled concatenation: make its buffer first.
        let into = plan.into.get(k).copied().flatten();
        if let Some((c, _)) = into {
            assembly_buffer(net, plan, c, &mut pending, &mut values, recycled);
        }
        for s in &node.out_shapes {
            // The error's text is made only for a tensor over the limit (this runs per layer
            // and per pass).
            let n = s.0.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
            if n.is_none_or(|n| n > MAX_TENSOR_ELEMENTS as u64) {
                let dims: Vec<usize> = s.0.iter().map(|&d| d as usize).collect();
                check_size(&dims, &format!("the output of `{}`", node.name), &node.name)?;
            }
        }
        let start = Instant::now();
        // A single-output input read only here, dying here: it may be taken and reused.
        let owned_input = match node.inputs[..] {
            [(src, 0)] if plan.in_place && dies_into(src, k) => {
                values[src].as_ref().filter(|v| v.len() == 1).map(|_| src)
            }
            _ => None,
        };
        let node_weights = plan
            .weights
            .get(k)
            .and_then(|w| w.as_deref())
            .unwrap_or(&weights.per_node[k]);
        // A residual fused into this layer: the other operand's tensors, held out of `values`
        // while the layer runs (it does not read them otherwise: the plan checked) and put
        // back after it.
        let held = plan.residual.get(k).copied().flatten().map(|(o, slot)| {
            let v = values[o].take().expect("produced before use");
            (o, slot, v)
        });
        let epilogue = Epilogue {
            add: held.as_ref().map(|(_, slot, v)| &v[*slot].data[..]),
            act: plan.fused.get(k).copied().flatten(),
        };
        let want_aux = plan.aux_unused.get(k) != Some(&true);
        let mut done: Option<(Vec<Tensor>, u64, Option<Vec<u32>>)> = None;
        if let Some(mut t) = means.get_mut(k).and_then(Option::take) {
            // A global average pool whose means the layer before it computed (and the
            // activation fused into the pool).
            epilogue.apply_all(&mut t.data);
            done = Some((vec![t], 0, None));
        } else if let Some(a) = plan.assembled.get(k).and_then(|a| a.as_ref()) {
            // An assembled concatenation: its producers wrote their slices; copy the rest.
            assembly_buffer(net, plan, k, &mut pending, &mut values, recycled);
            let mut buf = pending[k].take().expect("made above");
            let stride = buf.data.len() / buf.shape[0].max(1);
            let mut offset = 0;
            for (i, &(src, slot)) in node.inputs.iter().enumerate() {
                let chunk = net.nodes[src].out_shapes[slot].0.iter().product::<u64>() as usize
                    / buf.shape[0].max(1);
                // Placed by its producer, or the grown buffer itself: already there.
                let there = a.placed[i] || (i == 0 && a.grows.is_some());
                if !there {
                    let t = &values[src].as_ref().expect("produced before use")[slot];
                    copy_into(&t.data, &mut buf.data, stride, offset, chunk);
                    concat_copied += 4 * t.data.len() as u64;
                }
                offset += chunk;
            }
            // An activation fused into the concatenation (its one reader), over the whole.
            epilogue.apply_all(&mut buf.data);
            done = Some((vec![buf], 0, None));
        } else if let Some(g) = plan.shuffled.get(k).copied().flatten() {
            // A concatenation along channels and the channel shuffle that reads it alone, in
            // one copy: input channel `c` of the concatenation, `c = g·(C/G) + i`, goes
            // straight to channel `i·G + g` of the output.
            let dims: Vec<usize> = node.out_shapes[0].0.iter().map(|&d| d as usize).collect();
            let len: usize = dims.iter().product();
            // Every element is written below (the inputs' channels add up to C).
            let mut data = recycled.take(len).unwrap_or_else(|| vec![0.0; len]);
            let (batch, c) = (dims[0], dims[1]);
            let plane: usize = dims[2..].iter().product();
            let per = c / g;
            let mut c0 = 0;
            for &(src, slot) in &node.inputs {
                let t = &values[src].as_ref().expect("produced before use")[slot];
                let ct = net.nodes[src].out_shapes[slot].0[1] as usize;
                for b in 0..batch {
                    for ci in 0..ct {
                        let from = c0 + ci;
                        let to = (from % per) * g + from / per;
                        data[(b * c + to) * plane..][..plane]
                            .copy_from_slice(&t.data[(b * ct + ci) * plane..][..plane]);
                    }
                }
                c0 += ct;
            }
            epilogue.apply_all(&mut data);
            concat_copied += 4 * len as u64;
            done = Some((vec![Tensor::new(dims, data)], 0, None));
        } else if plan.passthrough.get(k) == Some(&true) {
            let src = node.inputs[plan.through[k]].0;
            let v = values[src].take().expect("produced before use");
            done = Some((v, 0, None));
        } else if let Some(src) = owned_input {
            let mut epilogue_done = false;
            let mut v = values[src].take().expect("produced before use");
            if node.layer.forward_inplace(&mut v[0], node_weights) {
                done = Some((v, 0, None));
            } else if let Some((a, b)) = node.layer.channel_affine(node_weights) {
                let t = &mut v[0];
                let (c, plane) = (t.shape[1], t.shape[2..].iter().product::<usize>().max(1));
                use rayon::prelude::*;
                // The affine map and the fused activation in one pass, planes grouped so
                // that each task has some 16k elements (small layers on one thread).
                let min_planes = (1usize << 14).div_ceil(plane);
                t.data
                    .par_chunks_mut(plane)
                    .with_min_len(min_planes)
                    .enumerate()
                    .for_each(|(bc, row)| {
                        let (s, h) = (a[bc % c], b[bc % c]);
                        kernels::vectorised(
                            #[inline(always)]
                            || {
                                row.iter_mut().for_each(|x| *x = *x * s + h);
                                epilogue.at(bc * plane).apply_here(row);
                            },
                        );
                    });
                done = Some((v, 0, None));
                epilogue_done = true;
            } else {
                values[src] = Some(v);
            }
            if let (Some(d), false) = (&mut done, epilogue_done) {
                epilogue.apply_all(&mut d.0[0].data);
            }
        } else if plan.in_place && node.inputs.len() > 1 {
            // A merge may accumulate into an input of the output's shape that dies here.
            let want: Vec<usize> = node.out_shapes[0].0.iter().map(|&d| d as usize).collect();
            let dying = node.inputs.iter().position(|&(src, slot)| {
                slot == 0
                    && dies_into(src, k)
                    && values[src]
                        .as_ref()
                        .is_some_and(|v| v.len() == 1 && v[0].shape == want)
            });
            if let Some(i) = dying {
                let src = node.inputs[i].0;
                let mut v = values[src].take().expect("produced before use");
                let rest: Vec<&Tensor> = node
                    .inputs
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, &(s, slot))| &values[s].as_ref().expect("produced before use")[slot])
                    .collect();
                // The merge applies an activation as it accumulates; with a residual to add
                // first, both are applied after it.
                let (act, after) = match epilogue.add {
                    None => (epilogue.act, Epilogue::default()),
                    Some(_) => (None, epilogue),
                };
                if node.layer.accumulate(&mut v[0], i, &rest, act) {
                    after.apply_all(&mut v[0].data);
                    done = Some((v, 0, None));
                } else {
                    values[src] = Some(v);
                }
            }
        }
        let affine = match (&done, &node.inputs[..]) {
            (None, [(src, slot)]) if plan.in_place && into.is_none() => {
                node.layer.channel_affine(node_weights).map(|ab| {
                    (
                        ab,
                        &values[*src].as_ref().expect("produced before use")[*slot],
                    )
                })
            }
            _ => None,
        };
        let (outs, macs, aux_out) = if let Some(d) = done {
            d
        } else if let Some(((a, b), x)) = affine {
            // A batch norm whose input lives on (DenseNet's norm after each concatenation,
            // which the next concatenation extends): the affine map and the fused
            // activation in one pass from the input into the output.
            let len = x.data.len();
            let mut data = recycled.take(len).unwrap_or_else(|| vec![0.0; len]);
            let (c, plane) = (x.shape[1], x.shape[2..].iter().product::<usize>().max(1));
            use rayon::prelude::*;
            let min_planes = (1usize << 14).div_ceil(plane);
            data.par_chunks_mut(plane)
                .zip(x.data.par_chunks(plane))
                .with_min_len(min_planes)
                .enumerate()
                .for_each(|(bc, (row, from))| {
                    let (s, h) = (a[bc % c], b[bc % c]);
                    kernels::vectorised(
                        #[inline(always)]
                        || {
                            for (y, &v) in row.iter_mut().zip(from) {
                                *y = v * s + h;
                            }
                            epilogue.at(bc * plane).apply_here(row);
                        },
                    );
                });
            (vec![Tensor::new(x.shape.clone(), data)], 0, None)
        } else if node.layer.is_input() {
            let x = inputs.get(next_input).ok_or_else(|| {
                Diagnostic::new(format!(
                    "the model has more inputs than the {} given",
                    inputs.len()
                ))
            })?;
            next_input += 1;
            let want: Vec<usize> = node.out_shapes[0].0.iter().map(|&d| d as usize).collect();
            if x.shape != want {
                return Err(Diagnostic::new(format!(
                    "input `{}` is {:?} but the model was built for {:?}",
                    node.name, x.shape, want
                )));
            }
            // The caller's input is kept as given; the pass works on a copy, made in a kept
            // buffer.
            let copy = match recycled.take(x.data.len()) {
                Some(mut data) => {
                    // By chunks of 32k elements over the threads (a 224×224 image is 150k).
                    use rayon::prelude::*;
                    data.par_chunks_mut(1 << 15)
                        .zip(x.data.par_chunks(1 << 15))
                        .for_each(|(d, s)| d.copy_from_slice(s));
                    Tensor::new(x.shape.clone(), data)
                }
                None => x.clone(),
            };
            (vec![copy], 0, None)
        } else {
            let ins: Vec<&Tensor> = node
                .inputs
                .iter()
                .map(|&(src, slot)| &values[src].as_ref().expect("produced before use")[slot])
                .collect();
            let aux_in: Vec<Option<&[u32]>> = node
                .inputs
                .iter()
                .map(|&(src, _)| aux[src].as_deref())
                .collect();
            let view = match (into, pending.get_mut(into.map_or(0, |(c, _)| c))) {
                (Some((_, offset)), Some(Some(buf))) => {
                    let stride = buf.data.len() / buf.shape[0].max(1);
                    Some(kernels::OutView {
                        data: &mut buf.data,
                        stride,
                        offset,
                    })
                }
                _ => None,
            };
            let given = view.is_some();
            let mut ctx = Ctx {
                macs: 0,
                aux_in: &aux_in,
                aux_out: None,
                want_aux,
                epilogue,
                recycled: plan.in_place.then_some(&mut *recycled),
                into: view,
                means: plan.means.get(k).copied().flatten().map(|_| Vec::new()),
            };
            let mut outs = node
                .layer
                .forward(&ins, node_weights, &mut ctx)
                .map_err(|d| d.layer(&node.name))?;
            if node.layer.concat_dim().is_some() {
                // A concatenation as written copies every input into its output.
                concat_copied += outs.iter().map(|t| 4 * t.data.len() as u64).sum::<u64>();
            }
            if let (Some(p), Some(m)) = (plan.means.get(k).copied().flatten(), ctx.means.take()) {
                let dims: Vec<usize> = net.nodes[p].out_shapes[0]
                    .0
                    .iter()
                    .map(|&d| d as usize)
                    .collect();
                if !m.is_empty() && m.len() == dims.iter().product::<usize>() {
                    means[p] = Some(Tensor::new(dims, m));
                }
            }
            let wrote = given && ctx.into.is_none();
            if wrote {
                // Kernels that write into a view apply the epilogue themselves.
                debug_assert!(ctx.epilogue.is_none());
                outs = Vec::new();
            } else {
                ctx.epilogue.apply_all(&mut outs[0].data);
            }
            (outs, ctx.macs, ctx.aux_out)
        };
        // Written into a concatenation's buffer: by the kernel (nothing returned), or copied
        // there now; what is left is an empty marker, read by no one.
        let outs = match into {
            Some((c, offset)) if !outs.is_empty() => {
                let buf = pending[c].as_mut().expect("made above");
                let stride = buf.data.len() / buf.shape[0].max(1);
                let t = &outs[0];
                let chunk = t.data.len() / buf.shape[0].max(1);
                copy_into(&t.data, &mut buf.data, stride, offset, chunk);
                concat_copied += 4 * t.data.len() as u64;
                for t in outs {
                    recycled.give(t.data);
                }
                Vec::new()
            }
            _ => outs,
        };
        if let Some((o, _, v)) = held {
            values[o] = Some(v);
        }
        let seconds = start.elapsed().as_secs_f64();
        if let Some(f) = keep.as_mut() {
            f(k, &outs);
        }
        // A layer whose output went into a concatenation's buffer has the shape it computed.
        let shapes = if outs.is_empty() {
            node.out_shapes
                .iter()
                .map(|s| s.0.iter().map(|&d| d as usize).collect())
                .collect()
        } else {
            outs.iter().map(|t| t.shape.clone()).collect()
        };
        layers.push(LayerRun {
            shapes,
            macs,
            seconds,
        });
        values[k] = Some(outs);
        aux[k] = aux_out;
        // Tensors dead after this layer: those it read last (in input order), then its own.
        for &s in liveness.frees(k) {
            for t in values[s].take().into_iter().flatten() {
                recycled.give(t.data);
            }
            aux[s] = None;
        }
    }
    let outputs = net
        .outputs
        .iter()
        .map(|o| values[o.node].as_ref().expect("outputs are kept")[o.slot].clone())
        .collect();
    // What is left (the model outputs, copied above) goes back for the next pass.
    for t in values.into_iter().flatten().flatten() {
        recycled.give(t.data);
    }
    Ok(RunResult {
        outputs,
        layers,
        concat_copied,
    })
}

/// Copies `src` (samples of `chunk` elements) into `dst`'s samples of `stride` elements, at
/// `offset` in each.
fn copy_into(src: &[f32], dst: &mut [f32], stride: usize, offset: usize, chunk: usize) {
    if chunk == 0 {
        return;
    }
    for (s, d) in src.chunks(chunk).zip(dst.chunks_mut(stride)) {
        d[offset..offset + chunk].copy_from_slice(s);
    }
}

/// Makes the buffer of assembled concatenation `c` if it is not made yet: the buffer of the
/// concatenation it extends, grown in place (its other readers have run: the plan checked),
/// or a new one with the room its chain will need.
fn assembly_buffer(
    net: &Network,
    plan: &Plan,
    c: usize,
    pending: &mut [Option<Tensor>],
    values: &mut [Option<Vec<Tensor>>],
    recycled: &mut Recycler,
) {
    if pending[c].is_some() {
        return;
    }
    let a = plan.assembled[c]
        .as_ref()
        .expect("an assembled concatenation");
    let dims: Vec<usize> = net.nodes[c].out_shapes[0]
        .0
        .iter()
        .map(|&d| d as usize)
        .collect();
    let len: usize = dims.iter().product();
    let grown = a.grows.and_then(|g| {
        let mut v = values[g].take()?;
        // The grown concatenation's value stays as an empty marker until it dies here.
        values[g] = Some(Vec::new());
        v.pop()
    });
    let data = match grown {
        Some(t) => {
            let mut data = t.data;
            // Within the reserved room: nothing moves; the new channels are written next.
            data.resize(len, 0.0);
            data
        }
        None if a.reserve > len => recycled.take_room(len, a.reserve).unwrap_or_else(|| {
            let mut data = Vec::with_capacity(a.reserve);
            data.resize(len, 0.0);
            data
        }),
        None => recycled.take(len).unwrap_or_else(|| vec![0.0; len]),
    };
    pending[c] = Some(Tensor::new(dims, data));
}

/// Summary statistics of a tensor in PyTorch's terms: NaN and ±infinity counted apart, the
/// minimum, maximum and mean over the finite values (None when there are none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub finite: u64,
    pub nan: u64,
    pub pos_inf: u64,
    pub neg_inf: u64,
    pub min: Option<f32>,
    pub max: Option<f32>,
    /// Summed in f64 in element order (the same at any thread count).
    pub mean: Option<f64>,
}

impl Stats {
    pub fn of(data: &[f32]) -> Stats {
        let mut s = Stats {
            finite: 0,
            nan: 0,
            pos_inf: 0,
            neg_inf: 0,
            min: None,
            max: None,
            mean: None,
        };
        let (mut lo, mut hi, mut sum) = (f32::INFINITY, f32::NEG_INFINITY, 0f64);
        for &v in data {
            if v.is_nan() {
                s.nan += 1;
            } else if v == f32::INFINITY {
                s.pos_inf += 1;
            } else if v == f32::NEG_INFINITY {
                s.neg_inf += 1;
            } else {
                s.finite += 1;
                lo = lo.min(v);
                hi = hi.max(v);
                sum += f64::from(v);
            }
        }
        if s.finite > 0 {
            s.min = Some(lo);
            s.max = Some(hi);
            s.mean = Some(sum / s.finite as f64);
        }
        s
    }
}

/// A deterministic random input of the model's first input shape (values in [-1, 1)).
pub fn random_input(net: &Network, seed: u64) -> Result<Vec<Tensor>, Diagnostic> {
    let mut out = Vec::new();
    for node in net.topology.sources().iter().map(|&k| &net.nodes[k]) {
        let shape: Vec<usize> = node.out_shapes[0].0.iter().map(|&d| d as usize).collect();
        let len = check_size(&shape, &format!("the input `{}`", node.name), &node.name)?;
        let mut rng = SplitMix(seed_for(seed, &node.name));
        let data = match node.layer.input_vocab() {
            // Token ids: whole numbers below the vocabulary size.
            Some(v) => (0..len)
                .map(|_| ((rng.unit() * v as f64) as u64).min(v - 1) as f32)
                .collect(),
            None => (0..len).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect(),
        };
        out.push(Tensor::new(shape, data));
    }
    Ok(out)
}
