//! Receptive fields measured by the executor (`exec::reach`: the linearised one-channel copy of
//! the graph run on indicator images) and compared by `check`: hand-derived fields of small
//! networks, one per kind of collapsed layer that matters (dilated, strided, asymmetrically
//! padded convolutions, a 1×1 stride-2 convolution, a ceil-mode pool, a transposed convolution,
//! windows wholly in padding, a residual add, a gated product); a broken analysed field is
//! caught, naming the layer and the figure; the zoo's fields are compared where they can be.

use crate::common::{analysis, checked, field_of, layer_index, net, zoo_net};
use archscope::check::{self, NOT_COMPARED};
use archscope::exec::reach::{self, Reach};
use archscope::{exec, Network};

/// The measured field of layer `name`.
fn reach_of(n: &Network, name: &str) -> Option<Reach> {
    let m = reach::measure(n).unwrap();
    assert_eq!(m.skipped, None);
    let k = n.nodes.iter().position(|x| x.name == name).unwrap();
    m.layers[k].clone()
}

fn spans(v: &[(u32, u32)]) -> Vec<Option<(u32, u32)>> {
    v.iter().map(|&s| Some(s)).collect()
}

/// Runs `check` and returns the receptive-field figure of every layer, asserting that every
/// figure of every layer agrees.
fn rf_figures(n: &Network) -> Vec<(String, check::Figure)> {
    checked(n)
        .rows
        .into_iter()
        .map(|row| (row.name, row.rf))
        .collect()
}

#[test]
fn two_convolutions_and_a_pool_by_hand() {
    // Unpadded: conv1 16 → 14 rows, unit u reads rows u..u+2; conv2 14 → 12, unit v reads conv1
    // v..v+2, so rows v..v+4; the 2×2/2 pool 12 → 6, unit i reads conv2 2i and 2i+1, so rows
    // 2i..2i+5. Unit (0, 0): rows 0–5.
    let n = net("inputs: {x: [1, 16, 16]}\nnodes:\n  - {id: c1, op: conv, out: 4, kernel: 3}\n  - {id: c2, op: conv, out: 4, kernel: 3}\n  - {id: p, op: maxpool, kernel: 2}\n");
    let r = reach_of(&n, "p").unwrap();
    let want: Vec<(u32, u32)> = (0..6).map(|i| (2 * i, 2 * i + 5)).collect();
    assert_eq!(r.axes[0], spans(&want));
    assert_eq!(r.axes[1], spans(&want));
    // Padded by 1: conv1 unit u reads rows u−1..u+1, conv2 unit v rows v−2..v+2, pool unit i
    // rows 2i−2..2i+3, clipped to 0..15: unit 0 rows 0–3, unit 7 rows 12–15.
    let n = net("inputs: {x: [1, 16, 16]}\nnodes:\n  - {id: c1, op: conv, out: 4, kernel: 3, padding: 1}\n  - {id: c2, op: conv, out: 4, kernel: 3, padding: 1}\n  - {id: p, op: maxpool, kernel: 2}\n");
    let r = reach_of(&n, "p").unwrap();
    let want: Vec<(u32, u32)> = (0..8i64)
        .map(|i| ((2 * i - 2).max(0) as u32, (2 * i + 3).min(15) as u32))
        .collect();
    assert_eq!(want[0], (0, 3));
    assert_eq!(want[7], (12, 15));
    assert_eq!(r.axes[0], spans(&want));
    assert_eq!(r.axes[1], spans(&want));
    // `check` agrees, and shows the central unit (4, 4): rows 6–11, cols 6–11.
    let figs = rf_figures(&n);
    assert_eq!(figs[3].0, "p");
    assert_eq!(figs[3].1.measured, "rows 6–11, cols 6–11");
    assert_eq!(figs[3].1.analysed, "rows 6–11, cols 6–11");
}

#[test]
fn dilated_strided_asymmetric_convolution() {
    // 3×3, dilation 2 (taps 0, 2, 4), stride 2 on 9×9, padding top 0, left 1, bottom 2, right 0.
    // Rows: ⌊(9 + 0 + 2 − 5)/2⌋ + 1 = 4 units, unit i taps rows 2i, 2i+2, 2i+4 (row 10 is
    // padding): 0–4, 2–6, 4–8, 6–8. Columns: ⌊(9 + 1 + 0 − 5)/2⌋ + 1 = 3 units, unit j taps
    // 2j−1, 2j+1, 2j+3 (column −1 is padding): 1–3, 1–5, 3–7 — only odd columns are ever read,
    // so column 0 is outside every field although the analysed lattice of unit 0 (−1..3)
    // reaches it.
    let n = net("inputs: {x: [2, 9, 9]}\nnodes:\n  - {id: c, op: conv, out: 3, kernel: 3, dilation: 2, stride: 2, padding: [0, 1, 2, 0]}\n");
    let r = reach_of(&n, "c").unwrap();
    assert_eq!(r.axes[0], spans(&[(0, 4), (2, 6), (4, 8), (6, 8)]));
    assert_eq!(r.axes[1], spans(&[(1, 3), (1, 5), (3, 7)]));
    let figs = rf_figures(&n);
    assert_eq!(figs[1].1.measured, "rows 4–8, cols 1–5");
}

#[test]
fn one_by_one_stride_two_and_a_ceil_mode_pool() {
    // A 1×1 stride-2 convolution (stride > kernel) on 7 rows: 4 units, unit i reads row 2i only.
    let n = net(
        "inputs: {x: [3, 7, 7]}\nnodes:\n  - {id: c, op: conv, out: 8, kernel: 1, stride: 2}\n",
    );
    let r = reach_of(&n, "c").unwrap();
    assert_eq!(r.axes[0], spans(&[(0, 0), (2, 2), (4, 4), (6, 6)]));
    rf_figures(&n);
    // 3×3/2 max pool with ceil on 8: ⌈(8 − 3)/2⌉ + 1 = 4 units; the last window starts at row 6
    // and holds rows 6–7 only (its third row is past the input): 0–2, 2–4, 4–6, 6–7.
    let n = net("inputs: {x: [1, 8, 8]}\nnodes:\n  - {id: p, op: maxpool, kernel: 3, stride: 2, ceil: true}\n");
    let r = reach_of(&n, "p").unwrap();
    assert_eq!(r.axes[0], spans(&[(0, 2), (2, 4), (4, 6), (6, 7)]));
    assert_eq!(r.axes[1], r.axes[0]);
    rf_figures(&n);
    // The same windows averaged measure the same support.
    let n = net("inputs: {x: [1, 8, 8]}\nnodes:\n  - {id: p, op: avgpool, kernel: 3, stride: 2, ceil: true}\n");
    assert_eq!(reach_of(&n, "p").unwrap().axes[0], r.axes[0]);
}

#[test]
fn transposed_convolution() {
    // 3×3, stride 2, padding 1 on 4 rows: (4 − 1)·2 − 2 + 3 = 7 rows; output j receives input i
    // when j + 1 − m = 2i for a tap m in 0..3: j = 0 ← {0}, 1 ← {0, 1}, 2 ← {1}, 3 ← {1, 2},
    // 4 ← {2}, 5 ← {2, 3}, 6 ← {3}.
    let n = net("inputs: {x: [2, 4, 4]}\nnodes:\n  - {id: t, op: deconv, out: 3, kernel: 3, stride: 2, padding: 1}\n");
    let r = reach_of(&n, "t").unwrap();
    let want = spans(&[(0, 0), (0, 1), (1, 1), (1, 2), (2, 2), (2, 3), (3, 3)]);
    assert_eq!(r.axes[0], want);
    assert_eq!(r.axes[1], want);
    // Its analysed jump is 1/2: not compared.
    let figs = rf_figures(&n);
    assert_eq!(figs[1].1.analysed, NOT_COMPARED);
    assert_eq!(figs[1].1.measured, NOT_COMPARED);
}

#[test]
fn windows_wholly_in_padding() {
    // A 3×3 convolution (6 → 4 rows, unit u reads rows u..u+2), zero padding of 2 rows on top
    // and bottom (8 rows: 0, 1, 6, 7 are padding and read nothing), a 3×3 convolution (6 rows:
    // unit 0 reads padded rows 0–2, i.e. only the first convolution's unit 0: rows 0–2).
    let n = net("inputs: {x: [1, 6, 6]}\nnodes:\n  - {id: c1, op: conv, out: 2, kernel: 3}\n  - {id: pad, op: zero_pad2d, padding: [2, 0, 2, 0]}\n  - {id: c2, op: conv, out: 2, kernel: 3}\n");
    let r = reach_of(&n, "pad").unwrap();
    let f = |u: u32| Some((u, u + 2));
    assert_eq!(
        r.axes[0],
        vec![None, None, f(0), f(1), f(2), f(3), None, None]
    );
    let r = reach_of(&n, "c2").unwrap();
    // Unit v reads padded rows v..v+2, of which rows 2..5 hold the first convolution's units
    // 0..3.
    assert_eq!(
        r.axes[0],
        vec![
            Some((0, 2)),
            Some((0, 3)),
            Some((0, 4)),
            Some((1, 5)),
            Some((2, 5)),
            Some((3, 5))
        ]
    );
    // The analysed lattice of a padding unit crosses the input's edge (unit 0: rows −2..0), so
    // an empty field there agrees.
    rf_figures(&n);
}

#[test]
fn residual_add_and_gated_product() {
    // Two 3×3 convolutions (padding 1) added to their input: the field is the larger path's,
    // rows i−2..i+2 clipped to 0..9.
    let n = net("inputs: {x: [4, 10, 10]}\nnodes:\n  - {id: a, op: conv, out: 4, kernel: 3, padding: 1}\n  - {id: b, op: conv, out: 4, kernel: 3, padding: 1}\n  - {id: sum, op: add, in: [x, b]}\n  - {id: gap, op: global_avgpool, in: sum}\n  - {id: gate, op: conv, out: 4, kernel: 1}\n  - {id: prod, op: multiply, in: [sum, gate]}\n  - {id: flat, op: flatten, in: gap}\n");
    let r = reach_of(&n, "sum").unwrap();
    let want: Vec<(u32, u32)> = (0..10i64)
        .map(|i| ((i - 2).max(0) as u32, (i + 2).min(9) as u32))
        .collect();
    assert_eq!(r.axes[0], spans(&want));
    // The gate sees the whole input (global pooling: not measured); the product's measured
    // field is its spatial input's. The analysis marks it global context: not compared.
    assert_eq!(reach_of(&n, "gap"), None);
    assert_eq!(reach_of(&n, "flat"), None);
    assert_eq!(reach_of(&n, "prod").unwrap(), r);
    let figs = rf_figures(&n);
    let fig = |name: &str| figs.iter().find(|f| f.0 == name).unwrap().1.clone();
    assert_eq!(fig("sum").measured, "rows 3–7, cols 3–7");
    assert_eq!(fig("prod").analysed, NOT_COMPARED);
}

#[test]
fn inputs_without_spatial_axes_are_not_measured() {
    let n = net("inputs: {x: [16]}\nnodes:\n  - {id: fc, op: linear, out: 4}\n");
    let m = reach::measure(&n).unwrap();
    assert!(m
        .skipped
        .unwrap()
        .contains("is not N×C×L, N×C×H×W or N×C×D×H×W"));
    assert!(m.layers.iter().all(|l| l.is_none()));
}

#[test]
fn a_broken_field_is_caught() {
    let n = zoo_net("resnet18");
    let mut a = analysis(&n);
    let w = exec::init_weights(&n, 0).unwrap();
    // Two more rows of field on layer2.0.conv1 and a start shifted by one column on
    // layer1.1.conv2.
    let i = layer_index(&a, "layer2.0.conv1");
    let f = a.layers[i].rf.as_mut().unwrap();
    f.axes[0].size += archscope::receptive::Q::from(2);
    let j = layer_index(&a, "layer1.1.conv2");
    let f = a.layers[j].rf.as_mut().unwrap();
    f.axes[1].start += archscope::receptive::Q::from(1);
    let r = check::check(&n, &a, &w, 0).unwrap();
    assert_eq!(
        r.disagreements(),
        vec![
            ("layer1.1.conv2", vec!["receptive field"]),
            ("layer2.0.conv1", vec!["receptive field"])
        ]
    );
    // The figure names the first unit that disagrees. layer2.0.conv1 (3×3/2 at 28×28): size
    // 51, jump 8, start 0, so unit i reads rows 8i−25..8i+25; unit 0's last row, 25, lies
    // inside the input and must be met exactly — a size of 53 claims row 26.
    assert_eq!(r.rows[i].rf.analysed, "unit (0, 14): rows 0–26");
    assert_eq!(r.rows[i].rf.measured, "unit (0, 14): rows 0–25");
    // layer1.1.conv2 (56×56): size 43, jump 4, start 0, so unit j reads columns 4j−21..4j+21;
    // shifted by one, unit 0 would reach column 22.
    assert_eq!(r.rows[j].rf.analysed, "unit (28, 0): cols 0–22");
    assert_eq!(r.rows[j].rf.measured, "unit (28, 0): cols 0–21");
}

#[test]
fn the_zoo_is_compared_where_it_can_be() {
    // resnet50: every layer with a spatial output is compared (all but avgpool, flatten, fc),
    // its last convolution included, whose central unit sees the whole 224×224 input.
    let n = zoo_net("resnet50");
    let figs = rf_figures(&n);
    let skipped: Vec<&str> = figs
        .iter()
        .filter(|f| f.1.analysed == NOT_COMPARED)
        .map(|f| f.0.as_str())
        .collect();
    assert_eq!(skipped, vec!["avgpool", "flatten", "fc"]);
    let last = figs.iter().find(|f| f.0 == "layer4.2.conv3").unwrap();
    assert_eq!(last.1.measured, "rows 0–223, cols 0–223");
    // squeezenet1_1's unpadded 3×3/2 stem (224 → 111 rows, unit u reads rows 2u..2u+2, the
    // last 220–222) never reads row 223. pool1 (3×3/2, ceil: 55 units) unit p reads rows
    // 4p..4p+6; fire2.expand3x3 (3×3, padding 1) unit 54 reads pool units 53, 54 and a padded
    // 55: rows 212–222, while its lattice, 4·54 + 3 ± 7, runs to 226. Past the input's edge the
    // clipped lattice (212–223) is only an upper bound, and the check agrees.
    let n = zoo_net("squeezenet1_1");
    let a = analysis(&n);
    let k = n
        .nodes
        .iter()
        .position(|x| x.name == "fire2.expand3x3")
        .unwrap();
    let lattice = check::lattice_bounds(&a.layers[k].rf.as_ref().unwrap().axes[0], 55).unwrap();
    assert_eq!(lattice[54], (212, 226));
    assert_eq!(
        reach_of(&n, "fire2.expand3x3").unwrap().axes[0][54],
        Some((212, 222))
    );
    assert!(check::unit_agrees(lattice[54], Some((212, 222)), 224));
    assert!(!check::unit_agrees(lattice[54], Some((213, 222)), 224));
    rf_figures(&n);
}

#[test]
fn a_spatial_slice_is_a_crop() {
    // conv 3×3 p1 on 16×16: unit u reads rows u−1..u+1. Rows 4..12 sliced: slice unit i is conv
    // unit i + 4, rows i+3..i+5; then columns 2..10: column j reads j+1..j+3. Analysed (a crop
    // with offset 4, 2) and measured agree on every unit.
    let n = net("inputs: {x: [1, 16, 16]}\nnodes:\n  - {id: c, op: conv, out: 2, kernel: 3, padding: 1}\n  - {id: s, op: slice, dim: 2, start: 4, end: 12}\n  - {id: t, op: slice, dim: 3, start: 2, end: 10}\n");
    let r = reach_of(&n, "t").unwrap();
    let rows: Vec<(u32, u32)> = (0..8).map(|i| (i + 3, i + 5)).collect();
    let cols: Vec<(u32, u32)> = (0..8).map(|j| (j + 1, j + 3)).collect();
    assert_eq!(r.axes[0], spans(&rows));
    assert_eq!(r.axes[1], spans(&cols));
    let figures = rf_figures(&n);
    let (_, t) = figures.iter().find(|(name, _)| name == "t").unwrap();
    assert!(t.ok() && t.analysed != NOT_COMPARED, "{t:?}");
}

#[test]
fn a_sample_of_rows_and_columns_is_compared_at_the_lit_ones() {
    // `--rf-sample N` lights N rows (and N columns) spread evenly, first and last included:
    // round(i·(len − 1)/(N − 1)); 224 rows, 4 of them: 0, 74.3 → 74, 148.7 → 149, 223.
    assert_eq!(reach::spread(224, 4), vec![0, 74, 149, 223]);
    assert_eq!(reach::spread(5, 9), vec![0, 1, 2, 3, 4]);
    // A unit whose lattice is rows 10–20, with rows 0, 8, 16, 24 lit: the first and last lit
    // row inside is 16, and row 8 (outside) must not reach it.
    let lit: &[u32] = &[0, 8, 16, 24];
    assert!(check::unit_agrees_lit(
        (10, 20),
        Some((16, 16)),
        100,
        Some(lit)
    ));
    assert!(!check::unit_agrees_lit(
        (10, 20),
        Some((8, 16)),
        100,
        Some(lit)
    ));
    assert!(!check::unit_agrees_lit((10, 20), None, 100, Some(lit)));
    // Rows 10–14 hold no lit row: the unit is reached by none.
    assert!(check::unit_agrees_lit((10, 14), None, 100, Some(lit)));
    assert!(!check::unit_agrees_lit(
        (10, 14),
        Some((16, 16)),
        100,
        Some(lit)
    ));
    // A 3×3 convolution (padding 1) on 16×16, rows 0, 5, 10, 15 lit: unit u reads u−1..u+1,
    // so unit 5 is reached by row 5 alone and units 2 and 3 by none. An analysis that claimed
    // a 5×5 field (u−2..u+2) expects row 0 to reach unit 2 (rows 0–4, inside the input):
    // caught, at unit 2.
    let n = net(
        "inputs: {x: [1, 16, 16]}\nnodes:\n  - {id: c, op: conv, out: 2, kernel: 3, padding: 1}\n",
    );
    let m = reach::measure_sampled(&n, Some(4)).unwrap();
    assert_eq!(m.lit, [vec![0, 5, 10, 15], vec![0, 5, 10, 15]]);
    let r = m.layers[1].as_ref().unwrap();
    assert_eq!(r.axes[0][5], Some((5, 5)));
    assert_eq!(r.axes[0][3], None);
    assert_eq!(r.axes[0][4], Some((5, 5)));
    assert_eq!(r.axes[0][0], Some((0, 0)));
    let mut a = analysis(&n);
    let w = exec::init_weights(&n, 0).unwrap();
    let good = check::check_sampled(&n, &a, &w, 0, Some(4)).unwrap();
    assert_eq!(good.failures(), 0);
    assert_eq!(good.rf_compared(), 2); // the input `x` and `c`
    a.layers[1].rf.as_mut().unwrap().axes[0].size += archscope::receptive::Q::from(2);
    let bad = check::check_sampled(&n, &a, &w, 0, Some(4)).unwrap();
    assert_eq!(bad.disagreements(), vec![("c", vec!["receptive field"])]);
    assert_eq!(bad.rows[1].rf.measured, "unit (2, 8): rows none");
    assert_eq!(bad.rows[1].rf.analysed, "unit (2, 8): rows 0–4");
}

#[test]
fn a_sample_agrees_on_the_dilated_and_large_zoo_models() {
    // The sampled comparison on the zoo's dilated backbones (a lit row inside a dilated
    // field's lattice could in principle fall between its taps) and its largest inputs.
    // Only the fields: `check_sampled` compares them the same way (`rf_figure_lit`).
    for (name, sample) in [("deeplabv3_resnet50", 29), ("unet", 16), ("yolov1", 16)] {
        let n = zoo_net(name);
        let a = analysis(&n);
        let m = reach::measure_sampled(&n, Some(sample)).unwrap();
        assert!(
            m.lit[0].len() == sample && m.lit[1].len() == sample,
            "{name}"
        );
        let mut compared = 0;
        for (k, layer) in a.layers.iter().enumerate() {
            let f = check::rf_figure_lit(layer.rf.as_ref(), m.layers[k].as_ref(), &m.input, &m.lit);
            assert!(f.ok(), "{name}: {}: {f:?}", layer.name);
            compared += usize::from(f.analysed != NOT_COMPARED);
        }
        assert!(compared > 0, "{name}");
    }
}

/// A concatenation along the width (issue 14: once analysed as if along channels, so `check`
/// failed a valid model). Hand derivation, 8×8 input, `a` a 3×3 convolution padded by 1 (unit
/// u reads columns u−1..u+1: size 3, jump 1, start 0):
/// - `cat = concat [a, a]` along the width, 16 columns: column j < 8 is a's unit j (centre j),
///   column j ≥ 8 is a's unit j − 8 (centre j − 8). Input 0's lattice would put column 8 at
///   centre 8, not 0: no single lattice, so the field is "not aligned" (size 3, the largest)
///   and `check` compares nothing there instead of failing. The measured reach shows why:
///   column 8 reads columns 0–1, as column 0 does.
/// - `left = a[..., 0:4]`, `right = a[..., 4:8]` (slices: right's unit 0 is a's unit 4, start
///   4) and `whole = concat [left, right]`: right continues left's lattice (4 = 0 + 4·1), so
///   `whole` is a's field again (size 3, jump 1, start 0, aligned) and `check` compares it on
///   every column; `c2`, a 3×3 convolution after it, has size 5 and reads columns j−2..j+2.
/// - `swapped = concat [right, left]`: left's unit 0 (centre 0) sits at output column 4,
///   where right's lattice puts centre 4 + 4 = 8: not aligned.
#[test]
fn concatenation_along_the_width() {
    let n = net("inputs: {x: [1, 8, 8]}\nnodes:\n  - {id: a, op: conv, out: 1, kernel: 3, padding: 1}\n  - {id: cat, op: concat, in: [a, a], dim: 3}\n  - {id: left, op: slice, in: a, dim: 3, start: 0, end: 4}\n  - {id: right, op: slice, in: a, dim: 3, start: 4, end: 8}\n  - {id: whole, op: concat, in: [left, right], dim: 3}\n  - {id: swapped, op: concat, in: [right, left], dim: 3}\n  - {id: c2, op: conv, in: whole, out: 1, kernel: 3, padding: 1}\n");
    let a = analysis(&n);
    let field = |name: &str| field_of(&a, name).clone();
    let cat = field("cat");
    assert!(!cat.aligned);
    let why = cat.misalignment.unwrap();
    assert!(
        why.contains("concatenated along the width") && why.contains("puts output unit 8 at 8"),
        "{why}"
    );
    assert_eq!(*cat.axes[1].size.numer(), 3);
    // Height is untouched: both parts have a's rows.
    assert_eq!(cat.axes[0], field("a").axes[0]);
    let whole = field("whole");
    assert!(whole.aligned, "{:?}", whole.misalignment);
    assert_eq!(whole.axes, field("a").axes);
    assert!(!field("swapped").aligned);
    let c2 = field("c2");
    assert_eq!(
        (
            *c2.axes[1].size.numer(),
            *c2.axes[1].jump.numer(),
            *c2.axes[1].start.numer()
        ),
        (5, 1, 0)
    );
    // Measured: cat's column 8 reads what column 0 reads.
    let r = reach_of(&n, "cat").unwrap();
    assert_eq!(r.axes[1][0], Some((0, 1)));
    assert_eq!(r.axes[1][8], Some((0, 1)));
    assert_eq!(r.axes[1][15], Some((6, 7)));
    // `check` agrees everywhere: compared on `whole` and `c2`, not on the concatenations
    // without a lattice.
    let figs = rf_figures(&n);
    let fig = |name: &str| figs.iter().find(|(l, _)| l == name).unwrap().1.clone();
    assert_eq!(fig("cat").analysed, NOT_COMPARED);
    assert_eq!(fig("swapped").analysed, NOT_COMPARED);
    assert_eq!(fig("whole").analysed, "rows 3–5, cols 3–5");
    assert_eq!(fig("c2").analysed, "rows 2–6, cols 2–6");
}

/// A later piece of a spatial split, and padding at a cut (neighbours of the concatenation
/// case: once analysed as the first piece, and compared as if the cut were the input's edge).
/// Hand derivation, 8×8 input, `a` a 3×3 convolution padded by 1 (size 3, start 0):
/// - `s = split a into 2 along the width`: `s:1`'s unit 0 is a's unit 4 (start 4).
/// - `c = conv 3×3 padded by 1 on s:1`: lattice size 5, jump 1, start 4 (unit j reads input
///   columns j+2..j+6). Its unit 0's left tap is padding at the cut, so it really reads a's
///   units 4–5, input columns 3–6: within the lattice's 2–6, as `check` now requires after a
///   crop (before, it analysed start 0 and failed the valid model).
#[test]
fn split_pieces_and_padding_at_a_cut() {
    let n = net("inputs: {x: [1, 8, 8]}\nnodes:\n  - {id: a, op: conv, out: 1, kernel: 3, padding: 1}\n  - {id: s, op: split, parts: 2, dim: 3}\n  - {id: c, op: conv, in: \"s:1\", out: 1, kernel: 3, padding: 1}\n");
    let a = analysis(&n);
    let c = field_of(&a, "c").clone();
    assert_eq!(
        (
            *c.axes[1].size.numer(),
            *c.axes[1].jump.numer(),
            *c.axes[1].start.numer()
        ),
        (5, 1, 4)
    );
    assert!(c.cropped && c.aligned);
    let r = reach_of(&n, "c").unwrap();
    assert_eq!(r.axes[1][0], Some((3, 6)));
    assert_eq!(r.axes[1][3], Some((5, 7)));
    let figs = rf_figures(&n);
    let fig = figs.iter().find(|(l, _)| l == "c").unwrap().1.clone();
    assert!(fig.agree, "{fig:?}");
    // A measured reach beyond the lattice is still caught after a crop.
    assert!(!check::unit_within((2, 6), Some((1, 6)), 8));
    assert!(check::unit_within((2, 6), Some((3, 6)), 8));
}
