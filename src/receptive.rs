//! Receptive fields on any graph, per layer and spatial axis (one, two or three of them: the
//! output's spatial rank): **size** (input pixels one unit
//! sees), **jump** (input pixels between neighbouring units), **start** (centre of unit 0's
//! field, 0-based input coordinates) and the smallest size over all paths. Exact rationals:
//! after a transposed convolution or an upsampling the jump is a fraction, never a rounded
//! float. Merges (add, concat, multiply) follow the Google `receptive_field` library: paths that
//! disagree in jump or centre make the layer "not aligned" (a warning carried in the result);
//! otherwise the size is the largest over paths. Generic: every layer contributes through
//! `Op::geometry`. Only inputs whose values meet count: an input that only lends its size
//! (`Op::reads_values`) is left out. Windowed attention (`Geometry::Partition`: Swin's shifted
//! windows, their mask and padding) has no lattice: in a network that has one, every unit's
//! first and last input index per axis is followed from the input on, and from the partition
//! on the field is window-dependent (`Field::units`; size and smallest size the largest and
//! smallest unit's). Derivations are in docs/RECEPTIVE_FIELD.md.

use num_rational::Ratio;
use num_traits::{CheckedAdd, CheckedDiv, CheckedMul, CheckedSub};

use crate::error::Diagnostic;
use crate::geometry::{axis_name, MAX_SPATIAL};
use crate::graph::{NetNode, Network};
use crate::layers::{Digit, Geometry, Layout, Role};

/// An exact rational number of input pixels.
pub type Q = Ratio<i64>;

/// The field along one spatial axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Axis {
    pub size: Q,
    pub jump: Q,
    pub start: Q,
    /// The smallest size over the paths that reach this layer.
    pub min_size: Q,
}

impl Axis {
    /// The Google library's effective padding: how far unit 0's field reaches before pixel 0,
    /// `(size − 1)/2 − start`.
    pub fn effective_padding(&self) -> Q {
        (self.size - Q::from(1)) / Q::from(2) - self.start
    }
}

/// The receptive field of one layer's output, one [`Axis`] per spatial axis in tensor order
/// (`[length]`, `[height, width]` or `[depth, height, width]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub axes: Vec<Axis>,
    /// False when the paths merged here disagree in jump or centre.
    pub aligned: bool,
    /// What disagrees, when not aligned (e.g. `input 1: jump 2, start 0.5 vs input 0: jump 2, start 0`).
    pub misalignment: Option<String>,
    /// True when a path with a global field (e.g. a squeeze-excitation gate) was merged in:
    /// the unit also depends on the whole input through it.
    pub global_context: bool,
    /// True when a transposed convolution or a resampling with a stride or ratio other than 1
    /// lies on a path: unit centres then follow the `jump`/`start` lattice only on average
    /// (docs/RECEPTIVE_FIELD.md), so one unit's bounds are approximate even where the jump is an
    /// integer.
    pub resampled: bool,
    /// True when a crop (`slice`, `crop`, a spatial `split`) lies on a path: a later layer's
    /// padding then sits inside the input's extent, at the cut, so a unit near it sees less
    /// of the input than its lattice field (which stays the theoretical field) — the lattice
    /// bounds it rather than giving it exactly.
    pub cropped: bool,
    /// True when every unit sees the whole input: a layer mixing a token axis globally
    /// (self-attention: `Geometry::Global` on an output that keeps `Tokens` or `Sequence`
    /// axes) lies on a path. The axes then span the input (size and smallest size the input's
    /// extent, centred on it); the jump stays the token lattice's.
    pub whole: bool,
    /// Per-unit fields, present when a windowed attention ([`Geometry::Partition`]) lies on a
    /// path: the field then depends on where a unit sits in its window (and, after a shift, on
    /// which region of a wrapped window it belongs to), so no lattice describes it. Per
    /// spatial axis of the model input, per unit along the dimension that holds it: the first
    /// and last input index the unit sees (`None`: none). `size` is then the largest of these
    /// extents and `min_size` the smallest; `jump` and `start` still place the units' own
    /// positions (the lattice with the partition taken as pointwise), and `aligned` is true
    /// (the union at a merge is exact per unit). `None` for a lattice field, and after a
    /// windowed field's axes are flattened into tokens (every token keeps its unit's field:
    /// `size` and `min_size` stay exact, the per-unit list is lost).
    pub units: Option<Vec<Vec<Span>>>,
    /// True when a windowed attention lies on a path (see `units`).
    pub windowed: bool,
}

/// The first and last input index one unit sees along one axis, or `None`.
pub type Span = Option<(i64, i64)>;

/// Per spatial axis of the model input, per unit along the dimension that holds it.
type Spans = Vec<Vec<Span>>;

/// The smallest interval holding both.
fn hull(a: Span, b: Span) -> Span {
    match (a, b) {
        (Some((a0, a1)), Some((b0, b1))) => Some((a0.min(b0), a1.max(b1))),
        (x, None) | (None, x) => x,
    }
}

/// The largest and smallest extent (`hi − lo + 1`) over the units of one axis (units that see
/// nothing left out); `None` when no unit sees anything.
fn extents(v: &[Span]) -> Option<(i64, i64)> {
    v.iter()
        .flatten()
        .map(|&(lo, hi)| hi - lo + 1)
        .fold(None, |m, e| match m {
            None => Some((e, e)),
            Some((a, b)) => Some((a.max(e), b.min(e))),
        })
}

fn overflow() -> Diagnostic {
    Diagnostic::new("receptive-field arithmetic overflows 64 bits")
}

fn add(a: Q, b: Q) -> Result<Q, Diagnostic> {
    a.checked_add(&b).ok_or_else(overflow)
}
fn sub(a: Q, b: Q) -> Result<Q, Diagnostic> {
    a.checked_sub(&b).ok_or_else(overflow)
}
fn mul(a: Q, b: Q) -> Result<Q, Diagnostic> {
    a.checked_mul(&b).ok_or_else(overflow)
}
fn div(a: Q, b: Q) -> Result<Q, Diagnostic> {
    a.checked_div(&b).ok_or_else(overflow)
}
fn q(v: u64) -> Result<Q, Diagnostic> {
    i64::try_from(v).map(Q::from).map_err(|_| overflow())
}

/// Formats a rational as `427` or `5/2`.
pub fn fmt_q(v: &Q) -> String {
    if v.is_integer() {
        v.numer().to_string()
    } else {
        format!("{}/{}", v.numer(), v.denom())
    }
}

/// A rational as a float (an exact decimal where one exists).
pub fn q_f64(v: &Q) -> f64 {
    *v.numer() as f64 / *v.denom() as f64
}

/// A rational as a JSON number: an integer when it is one (`427`), else the nearest float
/// (`-3.5`). Every JSON document writes fields this way.
pub fn q_json(v: &Q) -> serde_json::Value {
    if v.is_integer() {
        serde_json::Value::from(*v.numer())
    } else {
        serde_json::Value::from(q_f64(v))
    }
}

fn unit() -> Axis {
    Axis {
        size: Q::from(1),
        jump: Q::from(1),
        start: Q::from(0),
        min_size: Q::from(1),
    }
}

/// Window (convolution, pooling, padding): the classic recurrence.
fn window(a: &Axis, kernel: u64, stride: u64, pad: u64, dilation: u64) -> Result<Axis, Diagnostic> {
    let span = mul(q(kernel)? - Q::from(1), q(dilation)?)?; // effective kernel − 1
    let grow = mul(span, a.jump)?;
    Ok(Axis {
        size: add(a.size, grow)?,
        min_size: add(a.min_size, grow)?,
        start: add(a.start, mul(sub(span / Q::from(2), q(pad)?)?, a.jump)?)?,
        jump: mul(a.jump, q(stride)?)?,
    })
}

/// Transposed convolution: output unit `j` receives input unit `i` when
/// `j + pad − m·dilation = i·stride` for a tap `m` in `0..kernel`. The jump divides by the
/// stride. The size grows by the widest span of contributing inputs over the `stride` phases
/// (exact for the largest field). The centres follow the fractionally-strided lattice
/// `start + (pad − (k'−1)/2)/stride · jump`: units are not evenly spaced after a transposed
/// convolution (unit j's centre oscillates around the lattice by less than half an input jump),
/// and the lattice is what skip connections are aligned against.
fn transposed(
    a: &Axis,
    kernel: u64,
    stride: u64,
    pad: u64,
    dilation: u64,
) -> Result<Axis, Diagnostic> {
    let (k, s, p, d) = (kernel as i64, stride as i64, pad as i64, dilation as i64);
    if k > 1 << 20 || s > 1 << 20 || d > 1 << 20 || p > 1 << 40 {
        return Err(Diagnostic::new(
            "transposed-convolution geometry too large for field analysis",
        ));
    }
    let span = |j: i64| -> Option<i64> {
        let taps: Vec<i64> = (0..k)
            .map(|m| j + p - m * d)
            .filter(|t| t.rem_euclid(s) == 0)
            .map(|t| t.div_euclid(s))
            .collect();
        Some(taps.iter().max()? - taps.iter().min()?)
    };
    let widest = (0..s).filter_map(span).max().unwrap_or(0);
    let grow = mul(Q::from(widest), a.jump)?;
    let offset = div(sub(q(pad)?, Q::new((k - 1) * d, 2))?, q(stride)?)?;
    Ok(Axis {
        size: add(a.size, grow)?,
        min_size: add(a.min_size, grow)?,
        start: add(a.start, mul(offset, a.jump)?)?,
        jump: div(a.jump, q(stride)?)?,
    })
}

/// Resampling: each output unit reads `taps` neighbouring inputs around its sample position,
/// `(j + ½)·in/out − ½` (PyTorch without align_corners; nearest's `⌊j·in/out⌋` follows the same
/// lattice on average) or `j·(in−1)/(out−1)` with align_corners.
fn resize(
    a: &Axis,
    out: u64,
    input: u64,
    taps: u64,
    align_corners: bool,
) -> Result<Axis, Diagnostic> {
    // Input units per output unit.
    let ratio = if align_corners && out > 1 {
        div(q(input)? - Q::from(1), q(out)? - Q::from(1))?
    } else {
        div(q(input)?, q(out)?)?
    };
    let x0 = if align_corners {
        Q::from(0)
    } else {
        (ratio - Q::from(1)) / Q::from(2)
    };
    let grow = mul(q(taps)? - Q::from(1), a.jump)?;
    Ok(Axis {
        size: add(a.size, grow)?,
        min_size: add(a.min_size, grow)?,
        start: add(a.start, mul(x0, a.jump)?)?,
        jump: mul(a.jump, ratio)?,
    })
}

/// Merges the fields of a layer's inputs (`None`: global or non-spatial). `along`: a
/// concatenation along that spatial axis, with each input's offset on it (in output units):
/// there input `i`'s unit `j` is output unit `offset[i] + j`, so its centre must lie at
/// input 0's lattice position `start + (offset[i] − offset[0])·jump` for one lattice to hold.
fn merge(inputs: &[Option<&Field>], along: Option<(usize, &[i64])>) -> Option<Field> {
    let spatial: Vec<(usize, &Field)> = inputs
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.map(|f| (i, f)))
        .collect();
    let (i0, first) = *spatial.first()?;
    let mut out = first.clone();
    out.global_context |=
        spatial.len() < inputs.len() || spatial.iter().any(|(_, f)| f.global_context);
    for (i, f) in &spatial[1..] {
        out.aligned &= f.aligned;
        out.resampled |= f.resampled;
        out.cropped |= f.cropped;
        out.whole |= f.whole;
        out.windowed |= f.windowed;
        if out.misalignment.is_none() {
            out.misalignment.clone_from(&f.misalignment);
        }
        let rank = first.axes.len();
        if f.axes.len() != rank {
            out.aligned = false;
            if out.misalignment.is_none() {
                out.misalignment = Some(format!(
                    "input {i} has {} spatial axes, input {i0} {rank}",
                    f.axes.len()
                ));
            }
            continue;
        }
        for ax in 0..rank {
            let (a, b) = (&first.axes[ax], &f.axes[ax]);
            let side = axis_name(rank, ax);
            // Where input i's unit 0 must be centred to continue input 0's lattice.
            let expected = match along {
                Some((axis, offsets)) if axis == ax => (Q::from(offsets[*i] - offsets[i0]))
                    .checked_mul(&a.jump)
                    .and_then(|d| a.start.checked_add(&d)),
                _ => Some(a.start),
            };
            let agrees = a.jump == b.jump && expected == Some(b.start);
            if !agrees && out.misalignment.is_none() {
                out.misalignment = Some(match along {
                    Some((axis, offsets)) if axis == ax => format!(
                        "concatenated along the {side}: input {i} (jump {}, start {}) does not continue input {i0}'s lattice (jump {}), which puts output unit {} at {}: no single lattice",
                        fmt_q(&b.jump),
                        fmt_q(&b.start),
                        fmt_q(&a.jump),
                        offsets[*i],
                        expected.map_or_else(|| "beyond 64 bits".into(), |e| fmt_q(&e)),
                    ),
                    _ => format!(
                        "input {i}: jump {}, start {} vs input {i0}: jump {}, start {} ({side})",
                        fmt_q(&b.jump),
                        fmt_q(&b.start),
                        fmt_q(&a.jump),
                        fmt_q(&a.start),
                    ),
                });
            }
            if !agrees {
                out.aligned = false;
            }
            let o = &mut out.axes[ax];
            o.size = o.size.max(b.size);
            o.min_size = o.min_size.min(b.min_size);
        }
    }
    Some(out)
}

/// The receptive field of every layer of `net`, in its order, per spatial axis of the model
/// input (one, two or three: a signal's length, an image's height and width, a volume's depth,
/// height and width); `None` where the output has no axis of input positions (linear on
/// features, a flatten of channels with space, global pooling) or depends on no model input
/// (a learned tensor). The output's layout (`NetNode::out_layouts`) says which dimension holds
/// which input axis: a permute, transpose or reshape that only moves, splits or merges
/// spatial axes keeps the field (ViT's `flatten(2)` + `transpose` leaves each of the 196 tokens
/// its 16×16 patch); a layer's geometry applies to the positional dimensions of its input 0,
/// in tensor order, each mapped to the input axis it holds. A layer mixing a token axis
/// globally (`Geometry::Global` on an output that keeps `Tokens` or `Sequence` axes:
/// self-attention) makes the field the whole input ([`Field::whole`]).
pub fn fields(net: &Network) -> Result<Vec<Option<Field>>, Diagnostic> {
    let n = net.nodes.len();
    let mut out: Vec<Option<Field>> = Vec::with_capacity(n);
    // Layers that depend on no model input (learned tensors and what only they feed).
    let mut constant = vec![false; n];
    // The spatial sizes of the first model input with spatial axes: "the whole input".
    let extent: Vec<u64> = net
        .nodes
        .iter()
        .find(|x| x.layer.is_input() && spatial_rank(x) > 0)
        .map(|x| x.out_shapes[0].0[2..].to_vec())
        .unwrap_or_default();
    // Per-unit fields are followed, from the input on, in a network with a windowed attention
    // (exact at every border, so the windows start from exact fields); `spans[k]` is layer k's
    // first output's, `pieces[k]` a spatial split's input (its later outputs are pieces of it).
    let track = net.nodes.iter().any(|x| {
        matches!(
            x.layer.geometry(&x.in_shapes),
            Geometry::Partition { .. } | Geometry::Attend { .. }
        )
    });
    let mut spans: Vec<Option<Spans>> = vec![None; n];
    let mut pieces: Vec<Option<Spans>> = vec![None; n];
    for (k, node) in net.nodes.iter().enumerate() {
        let layout = node.out_layouts.first();
        let field = if node.inputs.is_empty() {
            if !node.layer.is_input() {
                constant[k] = true;
            }
            let rank = spatial_rank(node);
            let f = (node.layer.is_input() && (1..=MAX_SPATIAL).contains(&rank)).then(|| Field {
                axes: vec![unit(); rank],
                aligned: true,
                misalignment: None,
                global_context: false,
                resampled: false,
                cropped: false,
                whole: false,
                units: None,
                windowed: false,
            });
            if track && f.is_some() {
                spans[k] = Some(
                    node.out_shapes[0].0[2..]
                        .iter()
                        .map(|&len| (0..len as i64).map(|i| Some((i, i))).collect())
                        .collect(),
                );
            }
            f
        } else {
            // A later output of a spatial split is a piece further along its axis: its unit 0
            // is the input unit after the pieces before it.
            let mut shifted: Vec<Option<Field>> = vec![None; node.inputs.len()];
            let mut shifted_spans: Vec<Option<Spans>> = vec![None; node.inputs.len()];
            for (i, &(src, slot)) in node.inputs.iter().enumerate() {
                let from = &net.nodes[src];
                let (Some(f), true) = (&out[src], slot > 0) else {
                    continue;
                };
                if let Geometry::Split { axis } = from.layer.geometry(&from.in_shapes) {
                    let Some((dim, Some(fa))) = positional_dims(from).get(axis).copied() else {
                        continue;
                    };
                    let before: u64 = from.out_shapes[..slot]
                        .iter()
                        .map(|s| s.0.get(dim).copied().unwrap_or(0))
                        .sum();
                    let len = from.out_shapes[slot].0.get(dim).copied().unwrap_or(0);
                    shifted_spans[i] = pieces[src].as_ref().and_then(|p| {
                        let mut p = p.clone();
                        let v = p.get_mut(fa)?;
                        *v = v.get(before as usize..(before + len) as usize)?.to_vec();
                        Some(p)
                    });
                    let mut f = f.clone();
                    let Some(a) = f.axes.get_mut(fa) else {
                        continue;
                    };
                    a.start =
                        add(a.start, mul(q(before)?, a.jump)?).map_err(|d| d.layer(&node.name))?;
                    shifted[i] = Some(f);
                }
            }
            // Only inputs whose values meet here: one that lends only its size (the `like` of
            // a crop or upsample) neither widens the field nor judges its alignment; a learned
            // tensor (a class token, a position embedding) depends on no input at all.
            let value: Vec<(usize, usize)> = node
                .value_inputs()
                .filter(|(_, (src, _))| !constant[*src])
                .map(|(i, (src, _))| (i, src))
                .collect();
            if value.is_empty() {
                constant[k] = true;
                out.push(None);
                continue;
            }
            let ins: Vec<Option<&Field>> = value
                .iter()
                .map(|&(i, src)| shifted[i].as_ref().or(out[src].as_ref()))
                .collect();
            let g = node.layer.geometry(&node.in_shapes);
            let dims = positional_dims(node);
            // A concatenation along a spatial axis: each input's offset on it.
            let offsets: Option<(usize, Vec<i64>)> = match g {
                Geometry::Concat { axis } => match dims.get(axis).copied() {
                    Some((dim, Some(fa))) => {
                        let mut at = 0i64;
                        let mut offs = Vec::with_capacity(value.len());
                        for (i, s) in node.in_shapes.iter().enumerate() {
                            if value.iter().any(|&(v, _)| v == i) {
                                offs.push(at);
                            }
                            let len = s.0.get(dim).copied().unwrap_or(0);
                            at = i64::try_from(len)
                                .ok()
                                .and_then(|l| at.checked_add(l))
                                .ok_or_else(|| overflow().layer(&node.name))?;
                        }
                        Some((fa, offs))
                    }
                    _ => None,
                },
                _ => None,
            };
            let along = offsets.as_ref().map(|(a, o)| (*a, o.as_slice()));
            let positional = layout.is_some_and(|l| {
                l.0.iter()
                    .any(|r| r.is_positional() || *r == Role::Sequence)
            });
            // The inputs' per-unit fields, united unit by unit.
            let merged_spans = if track {
                let sp: Vec<Option<&Spans>> = value
                    .iter()
                    .zip(&ins)
                    .map(|(&(i, src), f)| f.and(shifted_spans[i].as_ref().or(spans[src].as_ref())))
                    .collect();
                let with_field = ins.iter().filter(|f| f.is_some()).count();
                let have: Vec<&Spans> = sp.iter().flatten().copied().collect();
                (have.len() == with_field && with_field > 0)
                    .then(|| merge_spans(&have, along.map(|(a, _)| a)))
                    .flatten()
            } else {
                None
            };
            match (merge(&ins, along), positional) {
                (Some(mut f), true) => {
                    if merged_spans.is_some() && f.windowed {
                        // Exact per unit: no lattice needs to agree.
                        f.aligned = true;
                        f.misalignment = None;
                    }
                    let tokens = layout.is_some_and(|l| token_axis(l, &node.out_shapes[0]));
                    let lens = axis_lengths(node, f.axes.len());
                    let next = match (&merged_spans, &lens) {
                        (Some(sp), Some(lens)) if !tokens || !matches!(g, Geometry::Global) => {
                            let roles = node.in_layouts.first().map_or(&[][..], |l| &l.0[..]);
                            apply_spans(sp, &g, &dims, roles, lens)
                                .map_err(|d| d.layer(&node.name))?
                        }
                        _ => None,
                    };
                    if matches!(g, Geometry::Split { .. }) {
                        pieces[k] = merged_spans.clone();
                    }
                    let f = apply(f, &g, &dims, tokens, &extent)
                        .map_err(|d| d.layer(&node.name))?
                        // The output's dimensions must still hold every input axis of the
                        // field (a reshape that drops or mixes one ends it).
                        .filter(|f| layout.is_some_and(|l| holds_axes(l, f.axes.len())));
                    spans[k] = next.clone().filter(|_| f.is_some());
                    f.and_then(|f| windowed(f, next, &g))
                }
                _ => None,
            }
        };
        out.push(field);
    }
    Ok(out)
}

/// A field after a layer, given the per-unit fields of its output (`spans`): windowed from a
/// windowed attention on, its size and smallest size then the units' largest and smallest
/// extent. A windowed field whose per-unit fields are lost (its axes flattened into tokens)
/// keeps its sizes through pointwise layers and ends at any other.
fn windowed(mut f: Field, spans: Option<Spans>, g: &Geometry) -> Option<Field> {
    if f.whole {
        f.units = None;
        return Some(f);
    }
    f.windowed |= matches!(g, Geometry::Partition { .. } | Geometry::Attend { .. });
    if !f.windowed {
        f.units = None;
        return Some(f);
    }
    match spans {
        Some(sp) if sp.len() == f.axes.len() => {
            for (a, v) in f.axes.iter_mut().zip(&sp) {
                let (max, min) = extents(v)?;
                a.size = Q::from(max);
                a.min_size = Q::from(min);
            }
            f.units = Some(sp);
            Some(f)
        }
        // A windowed attention needs every unit's field: without them it has none.
        _ if matches!(g, Geometry::Partition { .. } | Geometry::Attend { .. }) => None,
        _ if f.units.is_some() && !matches!(g, Geometry::Pointwise | Geometry::Concat { .. }) => {
            None
        }
        _ => {
            f.units = None;
            Some(f)
        }
    }
}

/// For every spatial axis of the model input (`rank` of them), the length of the output
/// dimension that holds it alone (`Space(k)`), or of the map whose positions partitioned
/// dimensions hold (`Part`: per-unit fields are then kept per map position); `None` when one
/// is held by tokens or by none.
fn axis_lengths(node: &NetNode, rank: usize) -> Option<Vec<usize>> {
    let (l, s) = (node.out_layouts.first()?, node.out_shapes.first()?);
    (0..rank)
        .map(
            |k| match l.0.iter().position(|r| *r == Role::Space(k as u8)) {
                Some(d) => usize::try_from(*s.0.get(d)?).ok(),
                None => {
                    let digits: Vec<Digit> =
                        l.0.iter()
                            .filter_map(|r| match r {
                                Role::Part(d) => Some(d.iter().filter(|x| x.0 == k as u8)),
                                _ => None,
                            })
                            .flatten()
                            .copied()
                            .collect();
                    let len = complete(&digits)?;
                    usize::try_from(len).ok()
                }
            },
        )
        .collect()
}

/// The length of the axis that `digits` (of one axis) number completely — every coordinate
/// once: sorted by divisor, the first divides by 1 and each divides by the units the ones
/// before count (`⌊y/8⌋ mod 7` and `y mod 8`: 56; digits counting one unit are left out) — or
/// `None` (no digit at all: the axis is not held).
fn complete(digits: &[Digit]) -> Option<u64> {
    // A digit counting one unit (a partition of size 1, a single window) says nothing.
    if digits.is_empty() {
        return None;
    }
    let mut v: Vec<Digit> = digits.iter().filter(|d| d.2 != 1).copied().collect();
    v.sort_by_key(|d| d.1);
    v.iter().try_fold(1u64, |len, &(_, d, n)| {
        (d == len && n > 0).then(|| len.checked_mul(n)).flatten()
    })
}

/// The digits of map axis `k` (of `len` units) that dimension role `r` holds: a spatial axis
/// or a one-axis token dimension all of it, partitioned positions their digits of it, tokens
/// over several axes each whole axis (`lens`).
fn digits_of(r: &Role, k: usize, lens: &[usize]) -> Vec<Digit> {
    let whole = |k: usize| (k as u8, 1, lens.get(k).copied().unwrap_or(0) as u64);
    match r {
        Role::Space(a) if *a as usize == k => vec![whole(k)],
        Role::Tokens(v) if v.contains(&(k as u8)) => vec![whole(k)],
        Role::Part(d) => d.iter().filter(|x| x.0 as usize == k).copied().collect(),
        _ => Vec::new(),
    }
}

/// Per-unit fields after attention along dimension `dim` of a tensor laid out as `roles`
/// (`Geometry::Attend`): per map axis, a unit sees what every unit sees that shares its
/// digits held by the other positional dimensions (block attention: its window, `⌊y/p⌋`;
/// grid attention: its grid, `y mod p`). `None` when `dim` is not positional or the
/// positional dimensions do not number every map position once.
fn attend_spans(sp: &Spans, dim: usize, roles: &[Role], lens: &[usize]) -> Option<Spans> {
    if !roles.get(dim)?.is_positional() {
        return None;
    }
    let mut out = Vec::with_capacity(sp.len());
    for (k, v) in sp.iter().enumerate() {
        let all: Vec<Digit> = roles.iter().flat_map(|r| digits_of(r, k, lens)).collect();
        if complete(&all)? != v.len() as u64 {
            return None;
        }
        let fixed: Vec<Digit> = roles
            .iter()
            .enumerate()
            .filter(|&(d, _)| d != dim)
            .flat_map(|(_, r)| digits_of(r, k, lens))
            .collect();
        let key =
            |c: usize| -> Vec<u64> { fixed.iter().map(|&(_, d, n)| (c as u64 / d) % n).collect() };
        let mut groups: std::collections::HashMap<Vec<u64>, Span> = Default::default();
        for (c, &span) in v.iter().enumerate() {
            let g = groups.entry(key(c)).or_insert(None);
            *g = hull(*g, span);
        }
        out.push((0..v.len()).map(|c| groups[&key(c)]).collect());
    }
    Some(out)
}

/// United per-unit fields of a merge's inputs: unit by unit on every axis (an axis of one unit
/// broadcasts), except `along`, a concatenation's axis, where they are laid end to end.
/// `None` when the inputs' units do not match.
fn merge_spans(ins: &[&Spans], along: Option<usize>) -> Option<Spans> {
    let mut out = ins.first().copied()?.clone();
    for sp in &ins[1..] {
        if sp.len() != out.len() {
            return None;
        }
        for (ax, (o, v)) in out.iter_mut().zip(sp.iter()).enumerate() {
            if Some(ax) == along {
                o.extend_from_slice(v);
            } else if o.len() == v.len() {
                o.iter_mut().zip(v).for_each(|(a, &b)| *a = hull(*a, b));
            } else if v.len() == 1 {
                o.iter_mut().for_each(|a| *a = hull(*a, v[0]));
            } else if o.len() == 1 {
                let first = o[0];
                *o = v.iter().map(|&b| hull(first, b)).collect();
            } else {
                return None;
            }
        }
    }
    Some(out)
}

/// Floor division of `a` by a positive `b`.
fn floor_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b)
}

/// The per-unit fields after a layer of geometry `g` (`dims`: its input 0's positional
/// dimensions with the input axis each holds; `lens`: the output's length along each input
/// axis). Each output unit's span is the hull of the spans of the input units it reads: the
/// taps of a window or transposed window that fall inside the input (padding reads nothing),
/// the units of its window that share its region for a windowed attention, the units a
/// resampling reads. `None` when the geometry has no per-unit form (global mixing) or works on
/// an axis that is not one input axis.
fn apply_spans(
    sp: &Spans,
    g: &Geometry,
    dims: &[(usize, Option<usize>)],
    roles: &[Role],
    lens: &[usize],
) -> Result<Option<Spans>, Diagnostic> {
    if lens.len() != sp.len() {
        return Ok(None);
    }
    if let Geometry::Attend { dim } = g {
        let same = sp.iter().zip(lens).all(|(v, &l)| v.len() == l);
        return Ok(same.then(|| attend_spans(sp, *dim, roles, lens)).flatten());
    }
    let rank = match g {
        Geometry::Window { kernel, .. } | Geometry::Transposed { kernel, .. } => kernel.rank(),
        Geometry::Resize { num, .. } => num.rank(),
        Geometry::Crop { offset, .. } => offset.rank(),
        Geometry::Partition { window, .. } => window.rank(),
        Geometry::Global => return Ok(None),
        _ => 0,
    };
    if rank > dims.len() {
        return Ok(None);
    }
    let mut out = sp.clone();
    // Axes a layer leaves alone keep their units (a split's first piece is its first units).
    for (o, &len) in out.iter_mut().zip(lens) {
        match o.len() {
            l if l == len => {}
            1 => *o = vec![o[0]; len],
            l if l > len => o.truncate(len),
            _ => return Ok(None),
        }
    }
    if rank == 0 {
        return Ok(Some(out));
    }
    let big = |v: u64| i64::try_from(v).map_err(|_| overflow());
    for (gax, &(_, fa)) in dims.iter().enumerate().take(rank) {
        let Some(ax) = fa.filter(|&ax| ax < sp.len()) else {
            return Ok(None);
        };
        let v = &sp[ax];
        let len = v.len() as i64;
        let olen = lens[ax];
        let read = |i: i64| {
            if (0..len).contains(&i) {
                v[i as usize]
            } else {
                None
            }
        };
        out[ax] = match g {
            Geometry::Window {
                kernel,
                stride,
                pad_begin,
                dilation,
            } => {
                let (k, s, p, d) = (
                    big(at(&kernel[..], gax)?)?,
                    big(at(&stride[..], gax)?)?,
                    big(at(&pad_begin[..], gax)?)?,
                    big(at(&dilation[..], gax)?)?,
                );
                (0..olen as i64)
                    .map(|j| (0..k).fold(None, |h, m| hull(h, read(j * s - p + m * d))))
                    .collect()
            }
            Geometry::Transposed {
                kernel,
                stride,
                pad_begin,
                dilation,
            } => {
                let (k, s, p, d) = (
                    big(at(&kernel[..], gax)?)?,
                    big(at(&stride[..], gax)?)?,
                    big(at(&pad_begin[..], gax)?)?,
                    big(at(&dilation[..], gax)?)?,
                );
                (0..olen as i64)
                    .map(|j| {
                        (0..k).fold(None, |h, m| {
                            let t = j + p - m * d;
                            if t.rem_euclid(s) == 0 {
                                hull(h, read(t.div_euclid(s)))
                            } else {
                                h
                            }
                        })
                    })
                    .collect()
            }
            Geometry::Resize {
                num,
                den,
                taps,
                align_corners,
            } => {
                // The input units PyTorch's interpolation reads for output unit j (the
                // field is marked resampled: check does not compare it).
                let (o, i) = (big(at(&num[..], gax)?)?, big(at(&den[..], gax)?)?);
                let t = *taps as i64;
                (0..olen as i64)
                    .map(|j| {
                        let first = match (t, *align_corners) {
                            (1, _) => floor_div(j * i, o),
                            (_, true) if o > 1 => floor_div(j * (i - 1), o - 1),
                            (_, true) => 0,
                            (2, false) => floor_div((2 * j + 1) * i - o, 2 * o).max(0),
                            _ => floor_div((2 * j + 1) * i - o, 2 * o),
                        };
                        let (lo, hi) = if t == 4 {
                            (first - 1, first + 2)
                        } else {
                            (first, first + t - 1)
                        };
                        (lo..=hi).fold(None, |h, x| hull(h, read(x.clamp(0, len - 1))))
                    })
                    .collect()
            }
            Geometry::Crop { offset, step } => {
                let (o, s) = (big(at(&offset[..], gax)?)?, big(at(&step[..], gax)?)?);
                (0..olen as i64).map(|j| read(o + j * s)).collect()
            }
            Geometry::Partition { window, shift } => {
                let (w, s) = (
                    at(&window[..], gax)? as usize,
                    at(&shift[..], gax)? as usize,
                );
                if w == 0 || olen != v.len() {
                    return Ok(None);
                }
                partition_axis(v, w, s)
            }
            _ => continue,
        };
    }
    Ok(Some(out))
}

/// Windowed attention along one axis of `v.len()` units: the axis padded at the end to a
/// multiple `n` of the window `w` (padding carries no input), rolled by −`s`
/// (`torch.roll(x, -s)`: unit `p` moves to `(p − s) mod n`), cut into windows of `w`; a unit
/// attends to the units of its window with its region label (torchvision's mask: the slices
/// `[0, n−w)`, `[n−w, n−s)`, `[n−s, n)` of the rolled axis; one region without a shift), and
/// sees the hull of what they see.
fn partition_axis(v: &[Span], w: usize, s: usize) -> Vec<Span> {
    let l = v.len();
    let n = l.div_ceil(w) * w;
    let s = s % n.max(1);
    let region = |q: usize| {
        if s == 0 || q >= n - s {
            2
        } else if q + w >= n {
            1
        } else {
            0
        }
    };
    (0..l)
        .map(|p| {
            let q = (p + n - s) % n;
            let first = q / w * w;
            (first..first + w)
                .filter(|&q2| region(q2) == region(q))
                .map(|q2| (q2 + s) % n)
                .filter(|&p2| p2 < l)
                .fold(None, |h, p2| hull(h, v[p2]))
        })
        .collect()
}

/// The number of spatial axes of a model input's output (`N×C×…`): its layout's.
fn spatial_rank(node: &NetNode) -> usize {
    node.out_layouts.first().map_or(0, |l| l.spatial_hint())
}

/// The positional dimensions of a layer's input 0 (spatial axes and tokens), in tensor order:
/// (dimension, the model-input axis it holds when it is one spatial axis alone). Geometry
/// figures are given per positional dimension in this order.
fn positional_dims(node: &NetNode) -> Vec<(usize, Option<usize>)> {
    node.in_layouts
        .first()
        .map(|l| {
            l.0.iter()
                .enumerate()
                .filter_map(|(d, r)| match r {
                    Role::Space(k) => Some((d, Some(*k as usize))),
                    Role::Tokens(_) | Role::Part(_) => Some((d, None)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a layout has a token axis (`Tokens` or `Sequence`) of more than one unit.
fn token_axis(l: &Layout, s: &crate::layers::Shape) -> bool {
    l.0.iter()
        .zip(&s.0)
        .any(|(r, &n)| n > 1 && matches!(r, Role::Tokens(_) | Role::Sequence))
}

/// Whether the dimensions of `l` still hold input axes `0..rank` (each of them, through
/// `Space` or `Tokens`), or only a token sequence (a class token joined to the tokens: the
/// patch units keep their field).
fn holds_axes(l: &Layout, rank: usize) -> bool {
    let mut seen: Vec<u8> = l.0.iter().flat_map(|r| r.spatial_axes()).collect();
    seen.sort_unstable();
    seen.dedup();
    if seen.is_empty() {
        return l.0.contains(&Role::Sequence);
    }
    seen.len() == rank && seen.iter().enumerate().all(|(i, &k)| k as usize == i)
}

/// Value `ax` of a geometry's per-axis figure: an error when the layer declares fewer axes
/// than its input has.
fn at(v: &[u64], ax: usize) -> Result<u64, Diagnostic> {
    v.get(ax).copied().ok_or_else(|| {
        Diagnostic::new(format!(
            "the layer's window has {} spatial axes but its input more",
            v.len()
        ))
    })
}

/// The field after a layer of geometry `g` (`dims`: its input 0's positional dimensions, each
/// with the input axis it holds; `tokens`: whether its output keeps a token axis; `extent`:
/// the model input's spatial sizes).
fn apply(
    mut f: Field,
    g: &Geometry,
    dims: &[(usize, Option<usize>)],
    tokens: bool,
    extent: &[u64],
) -> Result<Option<Field>, Diagnostic> {
    match g {
        Geometry::Transposed { stride, .. } if stride.iter().any(|&s| s != 1) => f.resampled = true,
        Geometry::Resize { num, den, .. } if num != den => f.resampled = true,
        Geometry::Crop { .. } | Geometry::Split { .. } => f.cropped = true,
        _ => {}
    }
    match g {
        // The inputs' lattices were matched by `merge`. A split's own field is its first
        // output's (see `fields`).
        Geometry::Pointwise | Geometry::Concat { .. } | Geometry::Split { .. } => {
            return Ok(Some(f))
        }
        // Every unit of a token axis sees every input position: the whole input.
        Geometry::Global if tokens && extent.len() == f.axes.len() => {
            f.whole = true;
            for (a, &n) in f.axes.iter_mut().zip(extent) {
                a.size = q(n)?;
                a.min_size = a.size;
                a.start = (a.size - Q::from(1)) / Q::from(2);
            }
            return Ok(Some(f));
        }
        // Windowed attention keeps the units where they are: their fields are per unit
        // (`Field::units`, from `fields`), the lattice places the units.
        Geometry::Partition { .. } | Geometry::Attend { .. } => return Ok(Some(f)),
        Geometry::Global => return Ok(None),
        _ => {}
    }
    if f.whole {
        // Nothing widens a field that already covers the whole input.
        return Ok(Some(f));
    }
    // A window over a positional dimension that is not one input axis (tokens): no lattice.
    let rank = match g {
        Geometry::Window { kernel, .. } | Geometry::Transposed { kernel, .. } => kernel.rank(),
        Geometry::Resize { num, .. } => num.rank(),
        Geometry::Crop { offset, .. } => offset.rank(),
        _ => 0,
    };
    if rank > dims.len() {
        // More window axes than positional dimensions: the layer works on axes that are not
        // input positions.
        return Ok(None);
    }
    for (gax, &(_, fa)) in dims.iter().enumerate().take(rank.max(dims.len())) {
        let Some(ax) = fa.filter(|&ax| ax < f.axes.len()) else {
            return Ok(None);
        };
        let a = &f.axes[ax];
        f.axes[ax] = match g {
            Geometry::Crop { offset, step } => Axis {
                start: add(a.start, mul(q(at(&offset[..], gax)?)?, a.jump)?)?,
                jump: mul(a.jump, q(at(&step[..], gax)?)?)?,
                ..a.clone()
            },
            Geometry::Window {
                kernel,
                stride,
                pad_begin,
                dilation,
            } => window(
                a,
                at(&kernel[..], gax)?,
                at(&stride[..], gax)?,
                at(&pad_begin[..], gax)?,
                at(&dilation[..], gax)?,
            )?,
            Geometry::Transposed {
                kernel,
                stride,
                pad_begin,
                dilation,
            } => transposed(
                a,
                at(&kernel[..], gax)?,
                at(&stride[..], gax)?,
                at(&pad_begin[..], gax)?,
                at(&dilation[..], gax)?,
            )?,
            Geometry::Resize {
                num,
                den,
                taps,
                align_corners,
            } => resize(
                a,
                at(&num[..], gax)?,
                at(&den[..], gax)?,
                *taps,
                *align_corners,
            )?,
            _ => continue,
        };
    }
    Ok(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn compose(layers: &[(u64, u64, u64, u64)]) -> Axis {
        layers
            .iter()
            .fold(unit(), |a, &(k, s, p, d)| window(&a, k, s, p, d).unwrap())
    }

    #[test]
    fn dilated_3x3_sees_like_a_5x5() {
        let d = compose(&[(3, 1, 2, 2)]);
        let k5 = compose(&[(5, 1, 2, 1)]);
        assert_eq!(d, k5);
        assert_eq!(d.size, Q::from(5));
    }

    #[test]
    fn transposed_after_strided_conv_restores_jump_1() {
        let down = window(&unit(), 2, 2, 0, 1).unwrap();
        assert_eq!(down.jump, Q::from(2));
        let up = transposed(&down, 2, 2, 0, 1).unwrap();
        assert_eq!(up.jump, Q::from(1));
        // k2/s2 does not overlap: each output reads one input, so the size stays 2; the lattice
        // is back on the pixels (start 0).
        assert_eq!(up.size, Q::from(2));
        assert_eq!(up.start, Q::from(0));
        // k4/s2/p1 (the DCGAN/U-Net upsampler): every output reads 2 inputs.
        let up = transposed(&unit(), 4, 2, 1, 1).unwrap();
        assert_eq!((up.size, up.jump), (Q::from(2), Q::new(1, 2)));
        // A transposed conv on the input alone gives a fractional jump.
        assert_eq!(transposed(&unit(), 3, 2, 1, 1).unwrap().jump, Q::new(1, 2));
    }

    #[test]
    fn upsampling() {
        let a = window(&unit(), 2, 2, 0, 1).unwrap(); // size 2, jump 2, start 1/2
        let n = resize(&a, 14, 7, 1, false).unwrap();
        assert_eq!(
            (n.size, n.jump, n.start),
            (Q::from(2), Q::from(1), Q::from(0))
        );
        let b = resize(&unit(), 14, 7, 2, false).unwrap();
        assert_eq!(
            (b.size, b.jump, b.start),
            (Q::from(2), Q::new(1, 2), Q::new(-1, 4))
        );
        let c = resize(&unit(), 13, 7, 2, true).unwrap();
        assert_eq!((c.jump, c.start), (Q::new(1, 2), Q::from(0)));
    }

    proptest! {
        /// Closed form of a chain of windows: size = 1 + Σ (k'ᵢ−1)·Πⱼ<ᵢ sⱼ, jump = Π sᵢ,
        /// start = Σ ((k'ᵢ−1)/2 − pᵢ)·Πⱼ<ᵢ sⱼ.
        #[test]
        fn composition_equals_closed_form(layers in prop::collection::vec((1u64..8, 1u64..4, 0u64..4, 1u64..3), 1..8)) {
            let got = compose(&layers);
            let (mut size, mut jump, mut start) = (Q::from(1), Q::from(1), Q::from(0));
            for &(k, s, p, d) in &layers {
                let span = Q::from(((k - 1) * d) as i64);
                size += span * jump;
                start += (span / Q::from(2) - Q::from(p as i64)) * jump;
                jump *= Q::from(s as i64);
            }
            prop_assert_eq!(got.size, size);
            prop_assert_eq!(got.jump, jump);
            prop_assert_eq!(got.start, start);
            // Effective padding is the accumulated padding in input pixels: Σ pᵢ·Πⱼ<ᵢ sⱼ.
            let mut pad = Q::from(0);
            let mut j = Q::from(1);
            for &(_, s, p, _) in &layers {
                pad += Q::from(p as i64) * j;
                j *= Q::from(s as i64);
            }
            prop_assert_eq!(got.effective_padding(), pad);
        }
    }
}
