//! Receptive fields measured by running the executor's kernels, independently of the analysis
//! (`receptive.rs`, `Op::geometry`): every layer is replaced by its linearised one-channel
//! copy (`Kernel::collapsed`: weights of 1, channels collapsed to one, norms and activations
//! passed through, merges summed), and that copy runs on batches of indicator images — for the
//! height, image `b` is all zeros but row `b` (every column); for the width, column `b`; in
//! general, for spatial axis `a` (one to three of them: a signal's length, an image's height
//! and width, a video's or volume's depth, height and width), image `b` is lit on the slice
//! where coordinate `a` is `b`. After
//! every layer each value is binarised (non-zero → 1), so nothing overflows or vanishes through
//! deep stacks: with non-negative weights only the support matters, and the support of a unit
//! is the set of input pixels that influence it. Output row `i` of a layer is then reached by
//! the input rows `{b : out[b, 0, i, ow/2] ≠ 0}` (at its middle column), output column `j` by
//! the input columns `{b : out[b, 0, oh/2, j] ≠ 0}` (at its middle row) — along each axis, at
//! the middle of the others; the first and last of
//! them are the measured bounds. Only the model's first input is indicated, and only when it is
//! `N×C×L`, `N×C×H×W` or `N×C×D×H×W`; a layer whose copy is [`Collapsed::Stop`] (global, data-dependent), or that
//! depends on one, is not measured. The batch is split into chunks that keep every tensor
//! under 2^20 elements and the tensors alive at once under 2^24 ([`MAX_REACH_LIVE`]), so
//! memory stays bounded whatever the input size and the graph's width, and outputs reuse the
//! buffers of dead tensors. The total work is bounded too ([`MAX_REACH_WORK`]): a measurement
//! that would exceed it is an error that says so, and a sample of rows and columns
//! ([`measure_sampled`], `check --rf-sample N`) lights only those, evenly spaced, first and
//! last included.

use rayon::prelude::*;

use super::{kernels, Ctx, Tensor};
use crate::error::Diagnostic;
use crate::graph::Network;
use crate::layers::{Collapsed, Role};

/// Most work a measurement may take in all: indicator images (lit rows + lit columns) times
/// the work of one ([`image_work`]: the pixels of the input and of every layer's output and
/// the FLOPs of the one-channel copies). A measurement over the bound is an error suggesting
/// a sample (`check --rf-sample N`). Every zoo model is within it with every row and column
/// lit (`tests/exec.rs`).
pub const MAX_REACH_WORK: u64 = 1 << 36;

/// Elements of one chunk's largest tensor (4 MiB of f32).
const CHUNK_ELEMENTS: usize = 1 << 20;

/// Most elements of the one-channel tensors alive at once during a chunk (64 MiB of f32),
/// unless one image's alone are more ([`chunk_images`]): a chunk of many images times many
/// tensors alive together (a thousand branches read by one concatenation) would otherwise
/// hold far more than the forward pass, whose need `check_memory` bounds.
pub const MAX_REACH_LIVE: usize = 1 << 24;

/// The measured field of one layer, per spatial axis (`axes[0]` the rows and `axes[1]` the
/// columns of an image; depth, rows, columns of a volume; the samples of a signal): per
/// output unit along the axis (at the middle of the other axes) the first and last input
/// index that reaches it; `None` where no input pixel reaches the unit (its window lies wholly
/// in padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    pub axes: Vec<Vec<Option<(u32, u32)>>>,
    /// True when the output's positions are not one dimension per input axis (tokens, a
    /// sequence after a class token): `axes[a]` then lists every position of the output, in
    /// row-major order, which only a whole-input field is compared against.
    pub flat: bool,
}

/// The shape of a layer's one-channel copy of its first output, batch `b`: its dimensions
/// of input positions (`Space`, `Tokens`) and token sequences kept, every other one (channels,
/// heads, features) of one unit — from the layer's layout, which only says where the axes
/// are; the values come from the kernels.
fn template(node: &crate::graph::NetNode, b: usize) -> Option<Vec<usize>> {
    template_of(node, 0, b)
}

/// [`template`] of output `slot`.
fn template_of(node: &crate::graph::NetNode, slot: usize, b: usize) -> Option<Vec<usize>> {
    let (l, s) = (node.out_layouts.get(slot)?, node.out_shapes.get(slot)?);
    if l.0.len() != s.0.len() {
        return None;
    }
    Some(
        l.0.iter()
            .zip(&s.0)
            .map(|(r, &d)| match r {
                Role::Batch => b,
                Role::Space(_) | Role::Tokens(_) | Role::Part(_) | Role::Sequence => d as usize,
                _ => 1,
            })
            .collect(),
    )
}

/// The units a layer's output is measured at, per axis of a `rank`-axis input: for every
/// unit `u` along the map's axis `a` (at the middle unit of the other axes), its position in
/// one sample of the one-channel copy ([`template`]), row-major. A dimension holding input
/// axis `a` alone (`Space(a)`) is indexed by `u`; partitioned positions (`Part`: MaxViT's
/// windows and positions in a window) by their digits of the map coordinates, so that a
/// partitioned tensor is measured per map unit. `None` when an axis is held otherwise
/// (tokens, a sequence), not at all, or the digits do not number each map unit once.
fn unit_positions(node: &crate::graph::NetNode, rank: usize) -> Option<Vec<Vec<usize>>> {
    let (l, s) = (node.out_layouts.first()?, node.out_shapes.first()?);
    if l.0.len() != s.0.len() {
        return None;
    }
    // The map's length along each axis.
    let lens: Vec<u64> = (0..rank as u8)
        .map(|a| {
            if let Some(d) = l.0.iter().position(|r| *r == Role::Space(a)) {
                return Some(s.0[d]);
            }
            let mut digits: Vec<(u64, u64)> =
                l.0.iter()
                    .filter_map(|r| match r {
                        Role::Part(d) => Some(d.iter().filter(|x| x.0 == a).map(|x| (x.1, x.2))),
                        _ => None,
                    })
                    .flatten()
                    .collect();
            if digits.is_empty() {
                return None;
            }
            // A digit counting one unit (a partition of size 1) says nothing.
            digits.retain(|&(_, n)| n != 1);
            digits.sort_unstable();
            digits.iter().try_fold(1u64, |len, &(d, n)| {
                (d == len).then(|| len.checked_mul(n)).flatten()
            })
        })
        .collect::<Option<_>>()?;
    if l.0
        .iter()
        .any(|r| matches!(r, Role::Tokens(_) | Role::Sequence))
    {
        return None;
    }
    // The position of map coordinates `c` in one sample (dimensions after the batch).
    let position = |c: &[u64]| -> Option<usize> {
        l.0.iter()
            .zip(&s.0)
            .skip(1)
            .try_fold(0usize, |at, (r, &len)| {
                let i = match r {
                    Role::Space(a) => c[*a as usize],
                    Role::Part(digits) => digits
                        .iter()
                        .fold(0, |i, &(a, d, n)| i * n + c[a as usize] / d % n),
                    _ => return Some(at),
                };
                (i < len).then(|| at * len as usize + i as usize)
            })
    };
    (0..rank)
        .map(|a| {
            (0..lens[a])
                .map(|u| {
                    let c: Vec<u64> = (0..rank)
                        .map(|b| if b == a { u } else { lens[b] / 2 })
                        .collect();
                    position(&c)
                })
                .collect()
        })
        .collect()
}

/// The measurement of a whole network.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Per layer, in the network's order: its field, or `None` where it was not measured.
    pub layers: Vec<Option<Reach>>,
    /// The spatial sizes of the indicated input (height and width of an image).
    pub input: Vec<usize>,
    /// Why nothing was measured (`layers` is then all `None`).
    pub skipped: Option<String>,
    /// Per spatial axis, the input indices that were lit (all of them, or a sample), in
    /// increasing order: a unit's bounds are the first and last of these that reach it.
    pub lit: Vec<Vec<u32>>,
}

/// Whether a model input of shape `s` is measured: `N×C` and one to three spatial axes.
fn spatial(s: &[u64]) -> bool {
    (3..=5).contains(&s.len())
}

/// `n` indices evenly spread over `0..len`, first and last included (all of them when
/// `n ≥ len`).
pub fn spread(len: usize, n: usize) -> Vec<u32> {
    if n >= len || len <= 1 {
        return (0..len as u32).collect();
    }
    let n = n.max(2);
    let mut v: Vec<u32> = (0..n)
        .map(|i| ((i as u128 * (len as u128 - 1) + (n as u128 - 1) / 2) / (n as u128 - 1)) as u32)
        .collect();
    v.dedup();
    v
}

/// Measures the receptive field of every layer of `net`, lighting every input row and column
/// (see the module documentation).
pub fn measure(net: &Network) -> Result<Measured, Diagnostic> {
    measure_sampled(net, None)
}

/// The error when measuring `net`'s receptive fields on `sample` rows and columns (`None`:
/// all) would take more than [`MAX_REACH_WORK`]: indicator images times [`image_work`].
/// Nothing is measured on a model whose first input has no spatial axis (`N×C×L`, `N×C×H×W`
/// and `N×C×D×H×W` have), and `Some(0)` measures nothing: both are within the bound.
pub fn check_work(net: &Network, sample: Option<usize>) -> Result<(), Diagnostic> {
    if sample == Some(1) {
        return Err(Diagnostic::new(
            "`--rf-sample 1`: a sample lights at least 2 rows and 2 columns (the first and the last)",
        )
        .help("give 2 or more, or 0 to skip the receptive-field measurement"));
    }
    let Some(&first) = net.topology.sources().first() else {
        return Ok(());
    };
    let shape = &net.nodes[first].out_shapes[0].0;
    if !spatial(shape) || sample == Some(0) {
        return Ok(());
    }
    let lit = |len: u64| sample.map_or(len, |s| (s as u64).min(len));
    let images = shape[2..]
        .iter()
        .map(|&d| lit(d))
        .fold(0u64, u64::saturating_add);
    let per_image = image_work(net, shape.len());
    let work = images.saturating_mul(per_image);
    if work <= MAX_REACH_WORK {
        return Ok(());
    }
    let fit = MAX_REACH_WORK / per_image.max(1) / (shape.len() as u64 - 2);
    let help = if fit >= 2 {
        format!(
            "measure a sample: `--rf-sample {fit}` lights {fit} {}, evenly spaced, and fits; `--rf-sample 0` skips the measurement",
            match shape.len() {
                3 => "samples".to_string(),
                4 => format!("rows and {fit} columns"),
                _ => format!("frames, {fit} rows and {fit} columns"),
            }
        )
    } else {
        "`--rf-sample 0` skips the measurement (even a sample of 2 rows and 2 columns is over the bound)".to_string()
    };
    Err(Diagnostic::new(format!(
        "measuring the receptive fields would take {work} operations ({images} indicator images × {per_image} each: the pixels of the input and of every layer's output, and the FLOPs of the layers' one-channel copies), over the bound of 2^36 (`exec::reach::MAX_REACH_WORK`)"
    ))
    .help(help))
}

/// The work of one indicator image: the pixels of the input and of every layer's output, and
/// the FLOPs of each layer's one-channel copy ([`Collapsed::Layer`]) on one image (a window's
/// taps included: a 255×255 kernel costs 65,025 per output pixel, not 1). `rank`: the
/// input's rank; tensors of that rank count.
fn image_work(net: &Network, rank: usize) -> u64 {
    // One image, one channel: `N×C×…` of the input's rank; a partitioned tensor (MaxViT's
    // N×G×P×C) keeps its positions and has one channel.
    let one = |s: &crate::layers::Shape, l: Option<&crate::layers::Layout>| {
        let mut d = s.0.clone();
        match l.filter(|l| l.0.len() == d.len() && l.0.iter().any(|r| matches!(r, Role::Part(_)))) {
            Some(l) => d.iter_mut().zip(&l.0).for_each(|(d, r)| {
                if !r.is_positional() {
                    *d = 1;
                }
            }),
            None if d.len() == rank => {
                d[0] = 1;
                d[1] = 1;
            }
            None => {}
        }
        crate::layers::Shape(d)
    };
    net.nodes
        .iter()
        .map(|node| {
            let Some(out) = node.out_shapes.first().filter(|s| s.rank() == rank) else {
                return 0;
            };
            let pixels = out.0[2..].iter().fold(1u64, |a, &d| a.saturating_mul(d));
            let flops = match node.layer.collapsed() {
                Collapsed::Layer(l) => {
                    let ins: Vec<_> = node
                        .in_shapes
                        .iter()
                        .enumerate()
                        .map(|(i, s)| one(s, node.in_layouts.get(i)))
                        .collect();
                    l.output_shapes(&ins)
                        .and_then(|outs| l.cost(&ins, &outs))
                        .map_or(u64::MAX, |c| c.flops)
                }
                _ => 0,
            };
            pixels.saturating_add(flops)
        })
        .fold(0u64, u64::saturating_add)
}

/// The elements of one image's one-channel tensors alive at once, at most, as the
/// measurement runs `net` ([`Graph::run`]: each layer's outputs from when it runs to their
/// last reader; the model's first input too, and constant inputs as zeros, counted as
/// outputs of their own). Each is at most its tensor in the forward pass (one channel of
/// one sample), so this is at most the forward pass's own need.
pub fn live_elements(net: &Network) -> usize {
    let topo = &net.topology;
    let size = |k: usize| -> usize {
        let node = &net.nodes[k];
        (0..node.out_shapes.len().max(1))
            .filter_map(|slot| template_of(node, slot, 1))
            .map(|t| t.iter().fold(1usize, |a, &d| a.saturating_mul(d)))
            .fold(0usize, usize::saturating_add)
    };
    let mut live = 0usize;
    let mut peak = 0usize;
    for (k, node) in net.nodes.iter().enumerate() {
        live = live.saturating_add(size(k));
        peak = peak.max(live);
        for &(src, _) in &node.inputs {
            if topo.last_use(src) == k {
                live = live.saturating_sub(size(src));
            }
        }
        if topo.last_use(k) == k {
            live = live.saturating_sub(size(k));
        }
    }
    peak
}

/// Indicator images per chunk: as many as keep the largest one-channel tensor under
/// [`CHUNK_ELEMENTS`] (`plane`: the elements of the largest one-image tensor) and the tensors
/// alive at once under [`MAX_REACH_LIVE`] ([`live_elements`]); at least one, whose tensors are
/// no larger than the forward pass's.
pub fn chunk_images(net: &Network, plane: usize) -> usize {
    let live = live_elements(net).max(1);
    (CHUNK_ELEMENTS / plane.max(1))
        .min(MAX_REACH_LIVE / live)
        .max(1)
}

/// Measures the receptive field of every layer of `net`, lighting `sample` rows and `sample`
/// columns evenly spread over the input ([`spread`]) or, with `None`, all of them. `Some(0)`
/// measures nothing (the result says why).
pub fn measure_sampled(net: &Network, sample: Option<usize>) -> Result<Measured, Diagnostic> {
    let n = net.nodes.len();
    let skip = |input: Vec<usize>, why: String| Measured {
        layers: vec![None; n],
        lit: vec![Vec::new(); input.len()],
        input,
        skipped: Some(why),
    };
    let Some(&first) = net.topology.sources().first() else {
        return Ok(skip(vec![], "the model has no input".into()));
    };
    let shape = &net.nodes[first].out_shapes[0].0;
    if !spatial(shape) {
        return Ok(skip(
            vec![],
            format!(
                "the first input `{}` is not N×C×L, N×C×H×W or N×C×D×H×W",
                net.nodes[first].name
            ),
        ));
    }
    let input: Vec<usize> = shape[2..].iter().map(|&d| d as usize).collect();
    if sample == Some(0) {
        return Ok(skip(input, "--rf-sample 0".into()));
    }
    let lit: Vec<Vec<u32>> = input
        .iter()
        .map(|&len| spread(len, sample.unwrap_or(len)))
        .collect();
    check_work(net, sample)?;
    let collapsed: Vec<Collapsed> = net
        .nodes
        .iter()
        .map(|node| node.layer.collapsed())
        .collect();
    // Every weight of a collapsed layer is 1.
    let weights: Vec<Vec<Tensor>> = collapsed
        .iter()
        .map(|c| match c {
            Collapsed::Layer(l) => l
                .weights()
                .into_iter()
                .map(|s| {
                    let len = s.shape.iter().product();
                    Tensor::new(s.shape, vec![1.0; len])
                })
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    // Images per chunk: the largest plane of any layer times the chunk stays under the limit,
    // and so do the tensors alive at once ([`chunk_images`]).
    let pixels: usize = input.iter().product();
    let plane = net
        .nodes
        .iter()
        .filter_map(|node| template(node, 1))
        .map(|t| t.iter().fold(1usize, |a, &d| a.saturating_mul(d)))
        .max()
        .unwrap_or(1)
        .max(pixels)
        .max(1);
    let chunk = chunk_images(net, plane);
    // Layers that depend on no model input (learned tensors and what only they feed).
    let mut constant = vec![false; n];
    for (k, node) in net.nodes.iter().enumerate() {
        constant[k] = if node.inputs.is_empty() {
            !node.layer.is_input()
        } else {
            // Only inputs whose values it reads: an `expand` of a class token to the batch
            // takes only the batch size from the tokens.
            node.value_inputs().all(|(_, (src, _))| constant[src])
        };
    }
    let spatial_rank = input.len();
    let where_units: Vec<Option<Vec<Vec<usize>>>> = net
        .nodes
        .iter()
        .map(|node| unit_positions(node, spatial_rank))
        .collect();
    let graph = Graph {
        net,
        collapsed: &collapsed,
        weights: &weights,
        first,
        constant: &constant,
    };
    let mut flat = vec![false; n];
    // Per layer and axis: (first, last) input index reaching each output unit.
    let mut bounds: Vec<Vec<Vec<(u32, u32)>>> = vec![vec![Vec::new(); input.len()]; n];
    let mut reached = vec![false; n];
    // Dead tensors' buffers, reused by later outputs: at most 16 (`Recycler`), 64 MiB.
    let mut recycler = super::Recycler::new(16 * 4 * CHUNK_ELEMENTS as u64, 16);
    for axis in 0..input.len() {
        let len = lit[axis].len();
        // Elements of the input before coordinate `axis` (outer) and after it (inner).
        let inner: usize = input[axis + 1..].iter().product();
        for c0 in (0..len).step_by(chunk) {
            let b = chunk.min(len - c0);
            let batch = &lit[axis][c0..c0 + b];
            let mut dims = vec![b, 1];
            dims.extend(&input);
            let mut x = match recycler.take(dims.iter().product()) {
                Some(mut data) => {
                    data.fill(0.0);
                    Tensor::new(dims, data)
                }
                None => Tensor::zeros(&dims),
            };
            for (img, &lit) in x.data.chunks_mut(pixels).zip(batch) {
                let lit = lit as usize;
                // Every slice where coordinate `axis` is `lit`.
                for slab in img.chunks_mut(input[axis] * inner) {
                    slab[lit * inner..(lit + 1) * inner].fill(1.0);
                }
            }
            graph.run(x, &mut recycler, |k, t| {
                let node = &net.nodes[k];
                let want = template(node, b);
                if want.as_deref() != Some(&t.shape[..]) {
                    return Err(Diagnostic::new(format!(
                        "the one-channel copy of this layer produced a {:?} tensor for a {}-image batch, but the layer produces {} (one channel: {:?})",
                        t.shape, b, node.out_shapes[0], want
                    ))
                    .layer(&node.name));
                }
                // Positions of one sample (the batch is dimension 0).
                let out = &t.shape[1..];
                let p: usize = out.iter().product();
                if p == 0 || !node.out_layouts[0].0.iter().any(|r| r.is_positional() || *r == Role::Sequence) {
                    return Ok(());
                }
                reached[k] = true;
                let acc = &mut bounds[k][axis];
                // Units along the dimension holding the axis, at the middle of the others;
                // or, where no dimension holds it alone, every position.
                let units: Vec<usize> = match &where_units[k] {
                    Some(per_axis) => per_axis[axis].clone(),
                    None => {
                        flat[k] = true;
                        (0..p).collect()
                    }
                };
                if acc.is_empty() {
                    acc.resize(units.len(), (u32::MAX, 0));
                }
                for (slot, &at) in acc.iter_mut().zip(&units) {
                    for (bi, &lit) in batch.iter().enumerate() {
                        if t.data[bi * p + at] != 0.0 {
                            slot.0 = slot.0.min(lit);
                            slot.1 = slot.1.max(lit);
                        }
                    }
                }
                Ok(())
            })?;
        }
    }
    let layers = bounds
        .into_iter()
        .zip(reached)
        .zip(flat)
        .map(|((axes, r), flat)| {
            let span = |v: Vec<(u32, u32)>| {
                v.into_iter()
                    .map(|(lo, hi)| (lo <= hi).then_some((lo, hi)))
                    .collect()
            };
            r.then(|| Reach {
                axes: axes.into_iter().map(span).collect(),
                flat,
            })
        })
        .collect();
    Ok(Measured {
        layers,
        input,
        skipped: None,
        lit,
    })
}

/// The collapsed network, ready to run on a batch of indicator images.
struct Graph<'a> {
    net: &'a Network,
    collapsed: &'a [Collapsed],
    weights: &'a [Vec<Tensor>],
    first: usize,
    /// Layers that depend on no model input: zeros in the copy.
    constant: &'a [bool],
}

impl Graph<'_> {
    /// Runs the collapsed layers on `x` (fed to the first input), calling `seen` with each
    /// reached layer's first output, binarised; tensors are freed after their last use.
    fn run(
        &self,
        x: Tensor,
        recycler: &mut super::Recycler,
        mut seen: impl FnMut(usize, &Tensor) -> Result<(), Diagnostic>,
    ) -> Result<(), Diagnostic> {
        let n = self.net.nodes.len();
        let topo = &self.net.topology;
        let mut values: Vec<Option<Vec<Tensor>>> = vec![None; n];
        let x_batch = x.shape[0];
        let mut x = Some(x);
        for (k, node) in self.net.nodes.iter().enumerate() {
            let outs: Option<Vec<Tensor>> = if node.layer.is_input() {
                if k == self.first {
                    x.take().map(|t| vec![t])
                } else {
                    None
                }
            } else {
                let b = x_batch;
                // An input's value; a constant one (a class token) is zeros of its copy's shape.
                let zeros: Vec<Option<Tensor>> = node
                    .inputs
                    .iter()
                    .map(|&(src, _)| {
                        (self.constant[src] && values[src].is_none())
                            .then(|| template(&self.net.nodes[src], b).map(|d| Tensor::zeros(&d)))
                            .flatten()
                    })
                    .collect();
                let input = |i: usize| -> Option<&Tensor> {
                    let (src, slot) = node.inputs[i];
                    values[src].as_ref().map(|v| &v[slot]).or(zeros[i].as_ref())
                };
                match &self.collapsed[k] {
                    Collapsed::Stop => None,
                    Collapsed::Attend { dim } => match (input(0), template(node, b)) {
                        (Some(x), Some(want)) if x.shape == want => Some(vec![attend(x, *dim)]),
                        _ => None,
                    },
                    Collapsed::Partition { window, shift } => match (input(0), template(node, b)) {
                        (Some(x), Some(want)) => {
                            partition(x, &self.net.nodes[k].in_layouts[0].0, window, shift)
                                .filter(|t| t.shape == want)
                                .map(|t| vec![t])
                        }
                        _ => None,
                    },
                    Collapsed::View => match (input(0), template(node, b)) {
                        (Some(x), Some(want)) if want.iter().product::<usize>() == x.data.len() => {
                            Some(vec![Tensor::new(want, x.data.clone())])
                        }
                        _ => None,
                    },
                    Collapsed::Mix => {
                        let ins: Vec<&Tensor> = node
                            .inputs
                            .iter()
                            .filter(|&&(src, _)| !self.constant[src])
                            .filter_map(|&(src, slot)| values[src].as_ref().map(|v| &v[slot]))
                            .collect();
                        match template(node, b) {
                            Some(want) if !ins.is_empty() => Some(vec![mix(&ins, &want)]),
                            _ => None,
                        }
                    }
                    Collapsed::Identity => {
                        let (src, slot) = node.inputs[0];
                        let take = topo.reads(src).len() == 1
                            && topo.last_use(src) == k
                            && values[src].as_ref().is_some_and(|v| v.len() == 1);
                        let t = if take {
                            values[src].take().and_then(|mut v| v.pop())
                        } else {
                            values[src].as_ref().map(|v| v[slot].clone())
                        };
                        t.map(|t| vec![t; node.out_shapes.len().max(1)])
                    }
                    Collapsed::Sum => {
                        let ins: Vec<&Tensor> = node
                            .inputs
                            .iter()
                            .filter_map(|&(src, slot)| values[src].as_ref().map(|v| &v[slot]))
                            .collect();
                        match (ins.first(), template(node, b)) {
                            (Some(t), Some(dims))
                                if ins.iter().all(|x| x.shape.len() == dims.len())
                                    && t.shape.len() == dims.len() =>
                            {
                                let mut s = kernels::broadcast(&ins, &dims, |a, b| a + b);
                                binarise(&mut s);
                                Some(vec![s])
                            }
                            _ => None,
                        }
                    }
                    Collapsed::Layer(layer) => {
                        let ins: Option<Vec<&Tensor>> = (0..node.inputs.len()).map(input).collect();
                        match ins {
                            Some(ins) => {
                                let aux_in = vec![None; ins.len()];
                                let mut ctx = Ctx {
                                    macs: 0,
                                    aux_in: &aux_in,
                                    aux_out: None,
                                    want_aux: false,
                                    epilogue: Default::default(),
                                    recycled: Some(&mut *recycler),
                                    into: None,
                                    means: None,
                                };
                                let mut outs = layer
                                    .forward(&ins, &self.weights[k], &mut ctx)
                                    .map_err(|d| d.layer(&node.name))?;
                                outs.iter_mut().for_each(binarise);
                                Some(outs)
                            }
                            None => None,
                        }
                    }
                }
            };
            if let Some(t) = outs.as_ref().and_then(|v| v.first()) {
                seen(k, t)?;
            }
            values[k] = outs;
            for &(src, _) in &node.inputs {
                if topo.last_use(src) == k {
                    for t in values[src].take().into_iter().flatten() {
                        recycler.give(t.data);
                    }
                }
            }
            if topo.last_use(k) == k {
                for t in values[k].take().into_iter().flatten() {
                    recycler.give(t.data);
                }
            }
        }
        Ok(())
    }
}

/// Non-zero → 1, zero → 0. With weights of 1 every value is ≥ 0, except after bicubic
/// interpolation (negative taps), so a non-zero finite value marks the support; −∞ is a max
/// pool's window lying wholly in padding, which reaches nothing.
fn binarise(t: &mut Tensor) {
    t.data.par_chunks_mut(1 << 14).for_each(|c| {
        kernels::vectorised(
            #[inline(always)]
            || {
                c.iter_mut().for_each(|v| {
                    *v = if *v != 0.0 && v.is_finite() { 1.0 } else { 0.0 };
                })
            },
        )
    });
}

/// The one-channel copy of every unit attending to every other: per sample, 1 on every
/// position of `want` when any input is non-zero anywhere in the sample.
fn mix(ins: &[&Tensor], want: &[usize]) -> Tensor {
    let mut out = Tensor::zeros(want);
    let b = want[0];
    let p: usize = want[1..].iter().product();
    for i in 0..b {
        let any = ins.iter().any(|t| {
            let q = t.data.len() / t.shape[0].max(1);
            t.shape[0] == b && t.data[i * q..(i + 1) * q].iter().any(|&v| v != 0.0)
        });
        if any {
            out.data[i * p..(i + 1) * p].fill(1.0);
        }
    }
    out
}

/// The one-channel copy of attention along dimension `dim` alone: 1 at every unit whose line
/// along `dim` (the other indices fixed) holds a non-zero unit.
fn attend(x: &Tensor, dim: usize) -> Tensor {
    let mut out = Tensor::zeros(&x.shape);
    let len = x.shape.get(dim).copied().unwrap_or(1);
    let inner: usize = x.shape.get(dim + 1..).map_or(1, |s| s.iter().product());
    for (o, i) in out
        .data
        .chunks_mut(len * inner)
        .zip(x.data.chunks(len * inner))
    {
        for j in 0..inner {
            if (0..len).any(|t| i[t * inner + j] != 0.0) {
                (0..len).for_each(|t| o[t * inner + j] = 1.0);
            }
        }
    }
    out
}

/// Python's `slice(start, stop)` on an axis of `len` (negative bounds count from the end,
/// `None` is the end), as a range.
fn py_slice(start: i64, stop: Option<i64>, len: usize) -> std::ops::Range<usize> {
    let n = len as i64;
    let at = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n) as usize;
    let (a, b) = (at(start), stop.map_or(len, at));
    a..b.max(a)
}

/// The one-channel copy of torchvision's shifted-window attention, step by step as
/// `shifted_window_attention` runs it, on the two positional dimensions of `x` (those
/// `roles` calls `Space`; every other dimension but the batch has one unit): pad the map at
/// the end to a multiple of the window, roll by −shift, label the rolled map with
/// torchvision's mask (`h_slices` × `w_slices`: `(0, −wh), (−wh, −sh), (−sh, None)`, each pair a
/// new count), cut into windows; every position sees every position of its window with its
/// label (the rest is masked); roll back, crop. `None` for another number of axes.
fn partition(
    x: &Tensor,
    roles: &[Role],
    window: &crate::geometry::Axes,
    shift: &crate::geometry::Axes,
) -> Option<Tensor> {
    let dims: Vec<usize> = roles
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_positional())
        .map(|(d, _)| d)
        .collect();
    if dims.len() != 2 || window.rank() != 2 || x.shape.len() != roles.len() {
        return None;
    }
    let (h, w) = (x.shape[dims[0]], x.shape[dims[1]]);
    let b = x.shape[0];
    if h * w * b != x.data.len() {
        return None;
    }
    let (wh, ww) = (window[0] as usize, window[1] as usize);
    let (sh, sw) = (shift[0] as i64, shift[1] as i64);
    let (hp, wp) = (h.div_ceil(wh) * wh, w.div_ceil(ww) * ww);
    // The mask's labels on the rolled, padded map.
    let mut label = vec![0usize; hp * wp];
    let slices = |win: usize, s: i64| {
        [
            (0, Some(-(win as i64))),
            (-(win as i64), Some(-s)),
            (-s, None),
        ]
    };
    let mut count = 0;
    for (h0, h1) in slices(wh, sh) {
        for (w0, w1) in slices(ww, sw) {
            for r in py_slice(h0, h1, hp) {
                for c in py_slice(w0, w1, wp) {
                    label[r * wp + c] = count;
                }
            }
            count += 1;
        }
    }
    let mut out = Tensor::zeros(&x.shape);
    let mut group = vec![false; hp / wh * (wp / ww) * count];
    let key = |r: usize, c: usize| ((r / wh) * (wp / ww) + c / ww) * count + label[r * wp + c];
    for i in 0..b {
        let img = &x.data[i * h * w..(i + 1) * h * w];
        group.fill(false);
        // Rolled position (r, c) holds padded position ((r + sh) mod hp, (c + sw) mod wp).
        let src = |r: usize, c: usize| {
            let (y, z) = ((r + sh as usize) % hp, (c + sw as usize) % wp);
            (y < h && z < w).then(|| img[y * w + z])
        };
        for r in 0..hp {
            for c in 0..wp {
                if src(r, c).is_some_and(|v| v != 0.0) {
                    group[key(r, c)] = true;
                }
            }
        }
        // Roll back: original (y, z) sits at rolled ((y − sh) mod hp, (z − sw) mod wp).
        let o = &mut out.data[i * h * w..(i + 1) * h * w];
        for y in 0..h {
            for z in 0..w {
                let (r, c) = (
                    (y + hp - sh as usize % hp) % hp,
                    (z + wp - sw as usize % wp) % wp,
                );
                if group[key(r, c)] {
                    o[y * w + z] = 1.0;
                }
            }
        }
    }
    Some(out)
}
