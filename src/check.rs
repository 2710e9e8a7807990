//! `archscope check`: runs the executor and compares, layer by layer, what the tensors and
//! kernels show with what the static analysis says — output shapes (from the tensors
//! produced), parameters and buffers (from the tensors allocated), MACs (tallied by the kernels
//! as they run, not by the analyser's formulas), and receptive fields (measured by running the
//! linearised one-channel copy of the graph on indicator images, [`exec::reach`], against the
//! analysed `size`, `jump` and `start`). Any disagreement names the layer and figure.
//!
//! Receptive fields are compared for every output row (at the middle column) and every output
//! column (at the middle row) of a layer whose analysed field is aligned, has no global
//! context, has no transposed convolution or resampling on its way (their unit centres follow
//! the lattice only on average), has integer bounds (integer `jump` and `size`, and
//! `start − (size − 1)/2` an integer) and was measured (the model's first input is `N×C×H×W`
//! and no global or data-dependent layer lies on the way); other layers show "—" on both
//! sides. Unit `i`'s analysed bounds are the lattice's `start + i·jump ± (size − 1)/2`. Where
//! they lie inside the input they must be met exactly; a bound beyond the input's edge is
//! clipped to it and is then only an upper bound, because a border unit may read less than its
//! lattice field — padding, or input rows that no layer reads (squeezenet1_1's 3×3/2 stem
//! without padding never reads row 223 of 224), or a window lying wholly in padding (an empty
//! field). The figure shows the central unit's field, clipped, or the first unit that
//! disagrees.

use crate::analysis::Analysis;
use crate::error::Diagnostic;
use crate::exec::reach::{self, Reach};
use crate::exec::{self, Weights};
use crate::graph::Network;
use crate::receptive::{Axis, Field, Q};
use num_traits::{CheckedDiv, CheckedSub};
use serde_json::{json, Value};

/// One figure of one layer: what the analysis says, what the run measured, and whether they
/// agree (equal, except for a receptive field clipped at the input's edge: see the module
/// documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    pub analysed: String,
    pub measured: String,
    pub agree: bool,
    /// Both sides as JSON values (numbers for counts, arrays for shapes), where they are not
    /// text.
    pub values: Option<(Value, Value)>,
}

impl Figure {
    /// A figure that agrees when both sides are equal.
    pub fn exact(analysed: String, measured: String) -> Figure {
        let agree = analysed == measured;
        Figure {
            analysed,
            measured,
            agree,
            values: None,
        }
    }
    /// A count (parameters, buffers, MACs).
    pub fn count(analysed: u64, measured: u64) -> Figure {
        Figure {
            values: Some((analysed.into(), measured.into())),
            ..Figure::exact(analysed.to_string(), measured.to_string())
        }
    }
    /// The JSON form of one side: its value, or its text.
    fn json(&self, measured: bool) -> Value {
        match (&self.values, measured) {
            (Some((a, _)), false) => a.clone(),
            (Some((_, m)), true) => m.clone(),
            (None, false) => Value::from(self.analysed.as_str()),
            (None, true) => Value::from(self.measured.as_str()),
        }
    }
    pub fn ok(&self) -> bool {
        self.agree
    }
}

/// The comparison for one layer.
#[derive(Debug, Clone)]
pub struct CheckRow {
    pub name: String,
    pub shape: Figure,
    pub params: Figure,
    pub buffers: Figure,
    pub macs: Figure,
    /// The receptive field (input rows and columns of one unit), "—" where not compared.
    pub rf: Figure,
}

impl CheckRow {
    pub fn ok(&self) -> bool {
        self.shape.ok() && self.params.ok() && self.buffers.ok() && self.macs.ok() && self.rf.ok()
    }
    /// The figures that disagree, by name.
    pub fn mismatches(&self) -> Vec<(&'static str, &Figure)> {
        [
            ("shape", &self.shape),
            ("params", &self.params),
            ("buffers", &self.buffers),
            ("MACs", &self.macs),
            ("receptive field", &self.rf),
        ]
        .into_iter()
        .filter(|(_, f)| !f.ok())
        .collect()
    }
}

/// The whole comparison.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub rows: Vec<CheckRow>,
    /// Seconds the forward pass took.
    pub seconds: f64,
    /// Seconds the receptive-field runs took.
    pub rf_seconds: f64,
    /// Why no receptive field was measured, if none was.
    pub rf_skipped: Option<String>,
}

impl CheckReport {
    pub fn failures(&self) -> usize {
        self.rows.iter().filter(|r| !r.ok()).count()
    }
    /// The layers that disagree, each with the names of the figures that do.
    pub fn disagreements(&self) -> Vec<(&str, Vec<&'static str>)> {
        self.rows
            .iter()
            .filter(|r| !r.ok())
            .map(|r| {
                let what = r.mismatches().into_iter().map(|(w, _)| w).collect();
                (r.name.as_str(), what)
            })
            .collect()
    }
    /// Layers whose receptive field was compared (not "—").
    pub fn rf_compared(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.rf.analysed != NOT_COMPARED && r.rf.measured != NOT_COMPARED)
            .count()
    }
}

/// The JSON document of a check of `model`: per layer, each figure's analysed and measured
/// values (numbers for counts, arrays of dimensions for shapes — one array per output — and
/// text for the receptive field) and whether they agree.
pub fn json_value(report: &CheckReport, model: &str) -> Value {
    let fig =
        |f: &Figure| json!({"analysed": f.json(false), "measured": f.json(true), "ok": f.ok()});
    let rows: Vec<Value> = report
        .rows
        .iter()
        .map(|r| {
            json!({"name": r.name, "ok": r.ok(), "shape": fig(&r.shape), "params": fig(&r.params),
                "buffers": fig(&r.buffers), "macs": fig(&r.macs), "rf": fig(&r.rf)})
        })
        .collect();
    json!({"model": model, "layers": rows, "failures": report.failures()})
}

/// The figure of a layer whose analysed field is the whole input (global attention): "whole
/// input" on both sides when every measured unit is reached by the first and the last lit
/// index of every axis; when nothing was measured (the layer's copy does not run), "whole
/// input" against "—", which is not a disagreement.
fn whole_figure(f: &Field, reach: Option<&Reach>, input: &[usize], lit: &[Vec<u32>]) -> Figure {
    const WHOLE: &str = "whole input";
    let Some(r) = reach else {
        return Figure {
            analysed: WHOLE.into(),
            measured: NOT_COMPARED.into(),
            agree: true,
            values: None,
        };
    };
    let span = |a: usize| Some((*lit[a].first()?, *lit[a].last()?));
    let miss =
        (r.axes.len() != input.len() || f.axes.len() != input.len() || lit.len() != input.len())
            .then(|| "other axes".to_string())
            .or_else(|| {
                r.axes.iter().enumerate().find_map(|(a, units)| {
                    let want = span(a);
                    units.iter().position(|b| *b != want).map(|i| {
                        format!(
                            "{} unit {i}: {}",
                            crate::geometry::axis_name(input.len(), a),
                            units[i].map_or("nothing".into(), |(lo, hi)| format!("{lo}..={hi}"))
                        )
                    })
                })
            });
    Figure::exact(WHOLE.into(), miss.unwrap_or_else(|| WHOLE.into()))
}

/// The figure of a layer whose field is per unit (after a windowed attention: `Field::units`):
/// every unit's analysed first and last input index, narrowed to the lit indices inside them,
/// must equal the measured ones exactly (`None` when the axes or unit counts differ).
fn units_figure(
    units: &[Vec<crate::receptive::Span>],
    r: &Reach,
    input: &[usize],
    lit: &[Vec<u32>],
) -> Option<Figure> {
    let rank = input.len();
    if units.len() != rank || r.axes.len() != rank || lit.len() != rank {
        return None;
    }
    let expect = |axis: usize, s: crate::receptive::Span| -> Bounds {
        let (lo, hi) = s?;
        let l = &lit[axis];
        let i = l.partition_point(|&x| i64::from(x) < lo);
        let j = l.partition_point(|&x| i64::from(x) <= hi);
        (i < j).then(|| (l[i], l[j - 1]))
    };
    for (axis, (mine, measured)) in units.iter().zip(&r.axes).enumerate() {
        if mine.len() != measured.len() {
            return None;
        }
        if let Some(i) = (0..mine.len()).find(|&i| expect(axis, mine[i]) != measured[i]) {
            let word = axis_word(rank, axis);
            return Some(Figure {
                analysed: format!("unit {i}: {word} {}", span(&expect(axis, mine[i]))),
                measured: format!("unit {i}: {word} {}", span(&measured[i])),
                agree: false,
                values: None,
            });
        }
    }
    let middle = |m: &dyn Fn(usize) -> String| {
        (0..rank)
            .map(|a| format!("{} {}", axis_word(rank, a), m(a)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mid = |a: usize| units[a].len() / 2;
    Some(Figure {
        analysed: middle(&|a| span(&expect(a, units[a][mid(a)]))),
        measured: middle(&|a| span(&r.axes[a][mid(a)])),
        agree: true,
        values: None,
    })
}

/// The figure of a layer whose receptive field is not compared.
pub const NOT_COMPARED: &str = "—";

fn shapes(s: &[Vec<u64>]) -> String {
    s.iter()
        .map(|d| {
            d.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("×")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `net` with `weights` on a seeded random input and compares every layer with `a`,
/// receptive fields measured on every input row and column.
pub fn check(
    net: &Network,
    a: &Analysis,
    weights: &Weights,
    seed: u64,
) -> Result<CheckReport, Diagnostic> {
    check_sampled(net, a, weights, seed, None)
}

/// [`check`], with receptive fields measured on `rf_sample` input rows and as many columns,
/// evenly spread ([`reach::spread`]; `None`: all; `Some(0)`: none). A unit's bounds are then
/// the first and last *lit* row (column) inside its analysed field.
pub fn check_sampled(
    net: &Network,
    a: &Analysis,
    weights: &Weights,
    seed: u64,
    rf_sample: Option<usize>,
) -> Result<CheckReport, Diagnostic> {
    // The input's size is checked first, then the measurement's work bound, before the
    // forward pass runs.
    let input = exec::random_input(net, seed)?;
    let start = std::time::Instant::now();
    let measured = reach::measure_sampled(net, rf_sample)?;
    let rf_seconds = start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    let run = exec::run(net, weights, &input, None)?;
    let seconds = start.elapsed().as_secs_f64();
    let mut rows = Vec::with_capacity(net.nodes.len());
    for (k, (node, stats)) in net.nodes.iter().zip(&a.layers).enumerate() {
        let measured_shapes: Vec<Vec<u64>> = run.layers[k]
            .shapes
            .iter()
            .map(|s| s.iter().map(|&d| d as u64).collect())
            .collect();
        let analysed_shapes: Vec<Vec<u64>> = stats.outputs.iter().map(|s| s.0.clone()).collect();
        let (p, _, b) = weights.count(net, k);
        rows.push(CheckRow {
            name: node.name.clone(),
            shape: Figure {
                values: Some((json!(analysed_shapes), json!(measured_shapes))),
                ..Figure::exact(shapes(&analysed_shapes), shapes(&measured_shapes))
            },
            params: Figure::count(stats.params.total(), p),
            buffers: Figure::count(stats.params.buffers, b),
            macs: Figure::count(stats.macs, run.layers[k].macs),
            rf: rf_figure_lit(
                stats.rf.as_ref(),
                measured.layers[k].as_ref(),
                &measured.input,
                &measured.lit,
            ),
        });
    }
    Ok(CheckReport {
        rows,
        seconds,
        rf_seconds,
        rf_skipped: measured.skipped,
    })
}

/// A unit's first and last input pixel along one axis (`None`: no pixel).
type Bounds = Option<(u32, u32)>;

/// The analysed lattice bounds of each of `units` units along one axis,
/// `start + i·jump ± (size − 1)/2`, unclipped; `None` when they are not integers.
pub fn lattice_bounds(a: &Axis, units: usize) -> Option<Vec<(i128, i128)>> {
    let half = a.size.checked_sub(&Q::from(1))?.checked_div(&Q::from(2))?;
    let lo0 = a.start.checked_sub(&half)?;
    if !a.jump.is_integer() || !a.size.is_integer() || !lo0.is_integer() || a.size < Q::from(1) {
        return None;
    }
    let (lo0, jump, size) = (
        i128::from(*lo0.numer()),
        i128::from(*a.jump.numer()),
        i128::from(*a.size.numer()),
    );
    Some(
        (0..units as i128)
            .map(|i| (lo0 + i * jump, lo0 + i * jump + size - 1))
            .collect(),
    )
}

/// Lattice bounds clipped to an axis of `len` pixels (`None` when wholly outside).
fn clip((lo, hi): (i128, i128), len: usize) -> Bounds {
    let last = len as i128 - 1;
    (hi >= 0 && lo <= last).then(|| (lo.max(0) as u32, hi.min(last) as u32))
}

/// Whether a unit's measured bounds agree with its lattice bounds on an axis of `len` pixels:
/// a lattice bound inside the input is met exactly; one beyond the edge only bounds (the
/// measurement lies in the input anyway); a unit may be empty only if its lattice crosses an
/// edge (its window may lie wholly in padding).
pub fn unit_agrees(lattice: (i128, i128), measured: Bounds, len: usize) -> bool {
    unit_agrees_lit(lattice, measured, len, None)
}

/// [`unit_agrees`] when only the input indices `lit` (increasing) were lit (`None`: all): the
/// bounds to meet are the first and last lit index inside the clipped lattice, and a unit may
/// also be empty when no lit index lies inside it.
pub fn unit_agrees_lit(
    lattice: (i128, i128),
    measured: Bounds,
    len: usize,
    lit: Option<&[u32]>,
) -> bool {
    let (lo, hi) = lattice;
    let last = len as i128 - 1;
    let interior = lo >= 0 && hi <= last;
    // The first and last lit index inside the clipped lattice.
    let expect = clip(lattice, len).and_then(|(a, b)| match lit {
        None => Some((a, b)),
        Some(l) => {
            let i = l.partition_point(|&x| x < a);
            let j = l.partition_point(|&x| x <= b);
            (i < j).then(|| (l[i], l[j - 1]))
        }
    });
    match (measured, expect) {
        (None, e) => !interior || e.is_none(),
        (Some(_), None) => false,
        (Some((m0, m1)), Some((e0, e1))) => (lo < 0 || m0 == e0) && (hi > last || m1 == e1),
    }
}

/// Whether a unit's measured bounds lie within its lattice bounds (clipped to the input): what
/// holds after a crop, where padding at the cut hides part of the lattice field.
pub fn unit_within(lattice: (i128, i128), measured: Bounds, len: usize) -> bool {
    match (measured, clip(lattice, len)) {
        (None, _) => true,
        (Some((m0, m1)), Some((lo, hi))) => lo <= m0 && m1 <= hi,
        (Some(_), None) => false,
    }
}

fn span(b: &Bounds) -> String {
    match b {
        Some((lo, hi)) => format!("{lo}–{hi}"),
        None => "none".into(),
    }
}

/// What the units along spatial axis `axis` of `rank` are called in a figure: `rows` and
/// `cols` of an image, `frames`, `rows`, `cols` of a volume, `samples` of a signal.
fn axis_word(rank: usize, axis: usize) -> &'static str {
    match (rank, axis) {
        (1, _) => "samples",
        (3, 0) => "frames",
        (3, 1) | (2, 0) => "rows",
        _ => "cols",
    }
}

/// The receptive-field figure of one layer: its analysed field against its measured reach
/// (`input`: the indicated input's spatial sizes, height and width of an image), every index
/// of every axis lit.
pub fn rf_figure(field: Option<&Field>, reach: Option<&Reach>, input: &[usize]) -> Figure {
    let all: Vec<Vec<u32>> = input.iter().map(|&n| (0..n as u32).collect()).collect();
    rf_figure_lit(field, reach, input, &all)
}

/// [`rf_figure`] when only the indices `lit[a]` of each axis `a` were lit (the rows `lit[0]`
/// and the columns `lit[1]` of an image).
pub fn rf_figure_lit(
    field: Option<&Field>,
    reach: Option<&Reach>,
    input: &[usize],
    lit: &[Vec<u32>],
) -> Figure {
    let dash = || Figure::exact(NOT_COMPARED.into(), NOT_COMPARED.into());
    if let Some(f) = field.filter(|f| f.whole) {
        return whole_figure(f, reach, input, lit);
    }
    let (Some(f), Some(r)) = (field, reach) else {
        return dash();
    };
    if r.flat {
        // Positions that are not one dimension per input axis: only a whole field compares.
        return dash();
    }
    let rank = input.len();
    if let (Some(units), false) = (&f.units, f.resampled) {
        return units_figure(units, r, input, lit).unwrap_or_else(dash);
    }
    if !f.aligned
        || f.global_context
        || f.resampled
        || f.axes.len() != rank
        || r.axes.len() != rank
        || lit.len() != rank
    {
        return dash();
    }
    let units: Vec<usize> = r.axes.iter().map(|v| v.len()).collect();
    let Some(lattice) = f
        .axes
        .iter()
        .zip(&units)
        .map(|(a, &n)| lattice_bounds(a, n))
        .collect::<Option<Vec<_>>>()
    else {
        return dash();
    };
    let sampled = |axis: usize| (lit[axis].len() < input[axis]).then_some(&lit[axis][..]);
    // After a crop, padding can sit at the cut, inside the input: the lattice only bounds
    // (which a sample's bounds meet too).
    let agrees = |l, m, len, axis| {
        if f.cropped {
            unit_within(l, m, len)
        } else {
            unit_agrees_lit(l, m, len, sampled(axis))
        }
    };
    // Unit `i` along `axis`, at the middle of the other axes, as `(i, j)`.
    let unit = |axis: usize, i: usize| {
        let c: Vec<String> = units
            .iter()
            .enumerate()
            .map(|(a, &n)| if a == axis { i } else { n / 2 }.to_string())
            .collect();
        if c.len() == 1 {
            c[0].clone()
        } else {
            format!("({})", c.join(", "))
        }
    };
    for axis in 0..rank {
        let Some(i) = (0..units[axis])
            .find(|&i| !agrees(lattice[axis][i], r.axes[axis][i], input[axis], axis))
        else {
            continue;
        };
        let word = axis_word(rank, axis);
        return Figure {
            analysed: format!(
                "unit {}: {word} {}",
                unit(axis, i),
                span(&clip(lattice[axis][i], input[axis]))
            ),
            measured: format!("unit {}: {word} {}", unit(axis, i), span(&r.axes[axis][i])),
            agree: false,
            values: None,
        };
    }
    let middle = |m: &dyn Fn(usize) -> String| {
        (0..rank)
            .map(|a| format!("{} {}", axis_word(rank, a), m(a)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Figure {
        analysed: middle(&|a| span(&clip(lattice[a][units[a] / 2], input[a]))),
        measured: middle(&|a| span(&r.axes[a][units[a] / 2])),
        agree: true,
        values: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A field that covers the whole 4×3 input (as after self-attention).
    fn whole() -> Field {
        let ax = |n: i64| Axis {
            size: Q::from(n),
            jump: Q::from(1),
            start: Q::new(n - 1, 2),
            min_size: Q::from(n),
        };
        Field {
            axes: vec![ax(4), ax(3)],
            aligned: true,
            misalignment: None,
            global_context: false,
            resampled: false,
            cropped: false,
            whole: true,
            units: None,
            windowed: false,
        }
    }

    #[test]
    fn whole_input_against_the_measured_reach() {
        let input = [4usize, 3];
        let all: Vec<Vec<u32>> = vec![(0..4).collect(), (0..3).collect()];
        // Not measured (the layer's copy is `Stop`): shown, not a disagreement, not counted.
        let f = rf_figure(Some(&whole()), None, &input);
        assert_eq!(
            (f.analysed.as_str(), f.measured.as_str()),
            ("whole input", "—")
        );
        assert!(f.ok());
        // Every unit reached by rows 0..=3 and columns 0..=2: agrees.
        let full = Reach {
            flat: false,
            axes: vec![vec![Some((0, 3)); 2], vec![Some((0, 2)); 2]],
        };
        let f = rf_figure_lit(Some(&whole()), Some(&full), &input, &all);
        assert_eq!((f.measured.as_str(), f.ok()), ("whole input", true));
        // Column unit 1 reached only by columns 0..=1: a disagreement naming it.
        let short = Reach {
            flat: false,
            axes: vec![vec![Some((0, 3)); 2], vec![Some((0, 2)), Some((0, 1))]],
        };
        let f = rf_figure_lit(Some(&whole()), Some(&short), &input, &all);
        assert_eq!(f.measured, "width unit 1: 0..=1");
        assert!(!f.ok());
    }
}
