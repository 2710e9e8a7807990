//! Receptive fields on any graph, per layer and spatial axis (one, two or three of them: the
//! output's spatial rank): **size** (input pixels one unit
//! sees), **jump** (input pixels between neighbouring units), **start** (centre of unit 0's
//! field, 0-based input coordinates) and the smallest size over all paths. Exact rationals:
//! after a transposed convolution or an upsampling the jump is a fraction, never a rounded
//! float. Merges (add, concat, multiply) follow the Google `receptive_field` library: paths that
//! disagree in jump or centre make the layer "not aligned" (a warning carried in the result);
//! otherwise the size is the largest over paths. Generic: every layer contributes through
//! `Op::geometry`. Only inputs whose values meet count: an input that only lends its size
//! (`Op::reads_values`) is left out. Derivations are in docs/RECEPTIVE_FIELD.md.

use num_rational::Ratio;
use num_traits::{CheckedAdd, CheckedDiv, CheckedMul, CheckedSub};

use crate::error::Diagnostic;
use crate::geometry::{axis_name, MAX_SPATIAL};
use crate::graph::Network;
use crate::layers::Geometry;

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

/// The receptive field of every layer of `net`, in its order; `None` where the field is global
/// (linear, flatten, global pooling) or the tensor has no spatial axis (`N×C×…` with one to
/// three after the channels). A model input `N×C×L` has one axis, `N×C×H×W` two,
/// `N×C×D×H×W` three; a layer's field has as many axes as its output.
pub fn fields(net: &Network) -> Result<Vec<Option<Field>>, Diagnostic> {
    let mut out: Vec<Option<Field>> = Vec::with_capacity(net.nodes.len());
    // Layers whose value depends on no model input: a learned tensor (`parameter`) and what is
    // computed from learned tensors alone (its `expand`). They see no pixel, so a merge with
    // one (a layer scale, a position embedding) keeps the other input's field as it is.
    let mut constant: Vec<bool> = Vec::with_capacity(net.nodes.len());
    for node in &net.nodes {
        constant.push(if node.inputs.is_empty() {
            !node.layer.is_input()
        } else {
            node.value_inputs().all(|(_, (src, _))| constant[src])
        });
        let rank = node
            .out_shapes
            .first()
            .map_or(0, |s| s.rank().saturating_sub(2));
        let spatial_out = (1..=MAX_SPATIAL).contains(&rank);
        let field = if node.inputs.is_empty() {
            // A model input is the unit field; a learned tensor (`parameter`) sees no input.
            (spatial_out && node.layer.is_input()).then(|| Field {
                axes: vec![unit(); rank],
                aligned: true,
                misalignment: None,
                global_context: false,
                resampled: false,
                cropped: false,
            })
        } else {
            // A later output of a spatial split is a piece further along its axis: its unit 0
            // is the input unit after the pieces before it.
            let mut shifted: Vec<Option<Field>> = vec![None; node.inputs.len()];
            for (k, &(src, slot)) in node.inputs.iter().enumerate() {
                let from = &net.nodes[src];
                let (Some(f), true) = (&out[src], slot > 0) else {
                    continue;
                };
                if let Geometry::Split { axis } = from.layer.geometry(&from.in_shapes) {
                    let before: u64 = from.out_shapes[..slot]
                        .iter()
                        .map(|s| s.0.get(2 + axis).copied().unwrap_or(0))
                        .sum();
                    let mut f = f.clone();
                    let Some(a) = f.axes.get_mut(axis) else {
                        continue;
                    };
                    a.start =
                        add(a.start, mul(q(before)?, a.jump)?).map_err(|d| d.layer(&node.name))?;
                    shifted[k] = Some(f);
                }
            }
            // Only inputs whose values meet here: one that lends only its size (the `like` of
            // a crop or upsample) neither widens the field nor judges its alignment.
            let ins: Vec<Option<&Field>> = node
                .value_inputs()
                .filter(|(_, (src, _))| !constant[*src])
                .map(|(i, (src, _))| shifted[i].as_ref().or(out[src].as_ref()))
                .collect();
            let g = node.layer.geometry(&node.in_shapes);
            // A concatenation along a spatial axis: each input's offset on it.
            let offsets: Option<(usize, Vec<i64>)> = match g {
                Geometry::Concat { axis } => {
                    let mut at = 0i64;
                    let mut offs = Vec::with_capacity(node.in_shapes.len());
                    for s in &node.in_shapes {
                        offs.push(at);
                        let len = s.0.get(2 + axis).copied().unwrap_or(0);
                        at = i64::try_from(len)
                            .ok()
                            .and_then(|l| at.checked_add(l))
                            .ok_or_else(|| overflow().layer(&node.name))?;
                    }
                    Some((axis, offs))
                }
                _ => None,
            };
            let along = offsets.as_ref().map(|(a, o)| (*a, o.as_slice()));
            match (merge(&ins, along), spatial_out) {
                (Some(f), true) => apply(f, &g)
                    .map_err(|d| d.layer(&node.name))?
                    // A layer that changes the number of spatial axes (a reshape) has no
                    // field on the new ones.
                    .filter(|f| f.axes.len() == rank),
                _ => None,
            }
        };
        out.push(field);
    }
    Ok(out)
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

fn apply(mut f: Field, g: &Geometry) -> Result<Option<Field>, Diagnostic> {
    match g {
        Geometry::Transposed { stride, .. } if stride.iter().any(|&s| s != 1) => f.resampled = true,
        Geometry::Resize { num, den, .. } if num != den => f.resampled = true,
        Geometry::Crop { .. } | Geometry::Split { .. } => f.cropped = true,
        _ => {}
    }
    for ax in 0..f.axes.len() {
        let a = &f.axes[ax];
        f.axes[ax] = match g {
            // The inputs' lattices were matched by `merge`.
            // A split's own field is its first output's (see `fields`).
            Geometry::Pointwise | Geometry::Concat { .. } | Geometry::Split { .. } => continue,
            Geometry::Crop { offset } => Axis {
                start: add(a.start, mul(q(at(&offset[..], ax)?)?, a.jump)?)?,
                ..a.clone()
            },
            // Windowed attention: composed exactly in a later step; until then no field.
            Geometry::Global | Geometry::Partition { .. } => return Ok(None),
            Geometry::Window {
                kernel,
                stride,
                pad_begin,
                dilation,
            } => window(
                a,
                at(&kernel[..], ax)?,
                at(&stride[..], ax)?,
                at(&pad_begin[..], ax)?,
                at(&dilation[..], ax)?,
            )?,
            Geometry::Transposed {
                kernel,
                stride,
                pad_begin,
                dilation,
            } => transposed(
                a,
                at(&kernel[..], ax)?,
                at(&stride[..], ax)?,
                at(&pad_begin[..], ax)?,
                at(&dilation[..], ax)?,
            )?,
            Geometry::Resize {
                num,
                den,
                taps,
                align_corners,
            } => resize(
                a,
                at(&num[..], ax)?,
                at(&den[..], ax)?,
                *taps,
                *align_corners,
            )?,
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
