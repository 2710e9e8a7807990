//! MaxViT's receptive fields through its partitions (`window_partition`, the grid's swap,
//! `relative_position_attention`, `window_departition`), derived by hand for maxvit_t at 224²
//! and measured by `check`; and, on small random block/grid models, the analysis against a
//! brute-force computation of every map position's full support (sets of input pixels,
//! composed in two dimensions, with no layouts and no per-axis assumption) — every figure is
//! derived beside its assertion.

use crate::common::{
    analysis, checked, field_of, json, json_layer, net, ok_text, zoo_analysis, zoo_net,
};
use crate::common::{rf_sizes as sizes, rf_units as units};
use archscope::check;
use archscope::receptive::Q;
use proptest::prelude::*;

/// `[lo, hi]` clipped to the 224 pixels of the input.
fn clip(lo: i64, hi: i64) -> (i64, i64) {
    (lo.max(0), hi.min(223))
}

#[test]
fn maxvit_t_per_stage_by_hand() {
    // maxvit_t at 224² (both axes alike). Stem: 3×3/2 p1 (size 3, jump 2), 3×3 p1 (size 7):
    // unit j of the 112 sees pixels 2j − 3 … 2j + 3. Stage 1's first MBConv: 3×3/2 p1
    // depthwise (size 7 + 2·2 = 11, jump 4): unit u of the 56 reads stem units 2u − 1 … 2u + 1,
    // pixels 4u − 5 … 4u + 5; its shortcut (3×3/2 p1 average pool) the same. A lattice so far.
    let a = zoo_analysis("maxvit_t");
    let f = field_of(&a, "stem2");
    assert_eq!(sizes(f), vec![(Q::from(7), Q::from(7)); 2]);
    let f = field_of(&a, "stage1.0.mbconv.sum");
    assert!(!f.windowed);
    assert_eq!(sizes(f), vec![(Q::from(11), Q::from(11)); 2]);
    assert_eq!(f.axes[0].jump, Q::from(4));
    // The partition only permutes positions: still the lattice's 11, listed per map unit.
    let mb: Vec<(i64, i64)> = (0..56).map(|u| clip(4 * u - 5, 4 * u + 5)).collect();
    let f = field_of(&a, "stage1.0.window.partition_op");
    assert_eq!(sizes(f), vec![(Q::from(11), Q::from(11)); 2]);
    // Block attention, windows of 7 (8 per axis): unit u of window w = ⌊u/7⌋ sees units
    // 7w … 7w + 6, pixels 28w − 5 … 28w + 29: 35, clipped to 30 (0 … 29) in window 0 and to
    // 33 (191 … 223) in window 7 — "30 to 35".
    let block: Vec<(i64, i64)> = (0..56)
        .map(|u| {
            let w = u / 7;
            clip(28 * w - 5, 28 * w + 29)
        })
        .collect();
    // The same as the hull of the MBConv units' fields over each window.
    for (u, &b) in block.iter().enumerate() {
        let w = u / 7 * 7;
        assert_eq!(b, (mb[w].0, mb[w + 6].1));
    }
    assert_eq!(
        block.iter().map(|&(lo, hi)| (lo..=hi).count()).min(),
        Some(30)
    );
    for name in [
        "stage1.0.window.attn",
        "stage1.0.window.fc2",
        "stage1.0.window.sum2",
        "stage1.0.window.departition_op",
        "stage1.0.grid.partition_swap",
        "stage1.0.grid.norm1",
    ] {
        let f = field_of(&a, name);
        assert!(f.windowed && f.aligned, "{name}");
        assert_eq!(units(f, 0), block, "{name}");
        assert_eq!(units(f, 1), block, "{name}");
        assert_eq!(sizes(f), vec![(Q::from(35), Q::from(30)); 2], "{name}");
    }
    assert_eq!(block[0], (0, 29));
    assert_eq!(block[55], (191, 223));
    // Grid attention, p = 56/7 = 8 (7 windows of 8 per axis, swapped): unit u attends to the
    // units r + 8k (r = u mod 8, k = 0 … 6), which lie in block windows ⌊(r + 8k)/7⌋ from
    // ⌊r/7⌋ to ⌊(r + 48)/7⌋: unit r = 0 spans windows 0 … 6 (0 … 197, 198 pixels), r = 1 … 6
    // windows 0 … 7 (0 … 223: the whole axis), r = 7 windows 1 … 7 (23 … 223, 201).
    let grid: Vec<(i64, i64)> = (0..56)
        .map(|u| {
            let r = u % 8;
            let (lo, hi) = (block[r as usize].0, block[(r + 48) as usize].1);
            (lo, hi)
        })
        .collect();
    assert_eq!(grid[0], (0, 197));
    assert_eq!(grid[3], (0, 223));
    assert_eq!(grid[7], (23, 223));
    assert_eq!(grid[15], (23, 223));
    for name in [
        "stage1.0.grid.attn",
        "stage1.0.grid.sum2",
        "stage1.0.grid.departition_swap",
        "stage1.0.grid.departition_op",
        "stage1.1.mbconv.conv_a_act",
    ] {
        let f = field_of(&a, name);
        assert_eq!(units(f, 0), grid, "{name}");
        assert_eq!(units(f, 1), grid, "{name}");
        assert_eq!(sizes(f), vec![(Q::from(224), Q::from(198)); 2], "{name}");
    }
    // The next 3×3 depthwise convolution joins unit u with u ± 1: every unit then has a
    // neighbour (or is one) with r in 1 … 6 — units ≡ 0 and ≡ 7 (mod 8) are never both
    // neighbours of one another's only neighbours — so every unit sees the whole input.
    let f = field_of(&a, "stage1.1.mbconv.conv_b");
    assert!(units(f, 0).iter().all(|&s| s == (0, 223)));
    assert_eq!(sizes(f), vec![(Q::from(224), Q::from(224)); 2]);
    // Nothing narrows it again (every window keeps at least one tap in the map): a stage-2
    // layer (jump 8 after the stride-2 MBConv), its grid attention, stage 4.
    for name in [
        "stage2.0.mbconv.conv_b",
        "stage2.0.window.attn",
        "stage2.1.grid.attn",
        "stage3.4.grid.departition_op",
        "stage4.1.grid.departition_op",
    ] {
        let f = field_of(&a, name);
        assert!(
            units(f, 0)
                .iter()
                .chain(&units(f, 1))
                .all(|&s| s == (0, 223)),
            "{name}"
        );
        assert_eq!(sizes(f), vec![(Q::from(224), Q::from(224)); 2], "{name}");
    }
    assert_eq!(
        field_of(&a, "stage2.0.window.attn").axes[0].jump,
        Q::from(8)
    );
    assert_eq!(field_of(&a, "stage4.1.grid.attn").axes[0].jump, Q::from(32));
}

#[test]
fn every_maxvit_t_layer_after_the_stem_has_a_field() {
    // Every layer has a field except the squeeze-and-excitation branch (global pooling: no
    // spatial axis) and the head from its global pool on; from the first attention on it is
    // window-dependent, with one span per map unit (56, 28, 14, 7 per stage).
    let a = zoo_analysis("maxvit_t");
    let first = a
        .layers
        .iter()
        .position(|l| l.name == "stage1.0.window.attn")
        .unwrap();
    let pool = a.layers.iter().position(|l| l.name == "pool").unwrap();
    for (i, l) in a.layers.iter().enumerate() {
        let se = l.name.contains(".se_") && !l.name.ends_with("se_scale");
        match (&l.rf, se || i >= pool) {
            (None, true) => {}
            (Some(f), false) => {
                assert_eq!(f.windowed, i >= first, "{}", l.name);
                if i >= first {
                    let map = match &l.name[..6] {
                        "stage1" => 56,
                        "stage2" => 28,
                        "stage3" => 14,
                        _ => 7,
                    };
                    // A stage's first MBConv starts on the previous stage's map.
                    let u = units(f, 0).len();
                    assert!(u == map || u == 2 * map, "{} {u}", l.name);
                }
            }
            (f, _) => panic!("{}: {f:?}", l.name),
        }
    }
}

#[test]
fn maxvit_t_rf_text_and_json() {
    // `rf` says where the field covers the input (the depthwise convolution derived above),
    // per unit in JSON, and the window-dependent range in the notes.
    let v = json(&["rf", "maxvit_t", "--format", "json"]);
    assert_eq!(v["covers_input_from"], "stage1.1.mbconv.conv_b");
    let l = json_layer(&v, "stage1.0.grid.attn");
    assert_eq!(l["rf"]["window_dependent"], true);
    assert_eq!(l["rf"]["size"], serde_json::json!([224, 224]));
    assert_eq!(l["rf"]["min_size"], serde_json::json!([198, 198]));
    assert_eq!(l["rf"]["units"][0][0], serde_json::json!([0, 197]));
    assert_eq!(l["rf"]["units"][1][7], serde_json::json!([23, 223]));
    let l = json_layer(&v, "stage1.0.window.fc1");
    assert_eq!(l["rf"]["units"][0][55], serde_json::json!([191, 223]));
    let text = ok_text(&["rf", "maxvit_t"]);
    for want in [
        "window-dependent: units see 30 to 35",
        "window-dependent: units see 198 to 224",
        // From stage 2 on (derived above) every unit sees the whole 224² input: one figure.
        "window-dependent: every unit sees 224",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
    assert!(!text.contains("units see 224 to 224"), "{text}");
}

#[test]
fn maxvit_t_is_measured_past_its_partitions() {
    // maxvit_t runs only at 224² (its maps are written for it: 56, 28, 14, 7). Not compared:
    // the 5 layers of each of the 11 MBConvs' squeeze-and-excitation branches (global pool,
    // two 1×1 convolutions, SiLU, sigmoid: no spatial field); the 7 layers from the first
    // SE product to the first attention, whose lattice field carries the gate's global
    // context (check compares a lattice only without it; from the attention on, fields are
    // compared per unit, and neither side counts the gate's path); the head's 6 (pool,
    // flatten, norm, linear, tanh, linear). 554 − 55 − 7 − 6 = 486 of 554, all agreeing unit
    // by unit (`checked` fails otherwise).
    let report = checked(&zoo_net("maxvit_t"));
    assert_eq!(report.rows.len(), 554);
    let not: Vec<&str> = report
        .rows
        .iter()
        .filter(|r| r.rf.measured == check::NOT_COMPARED)
        .map(|r| r.name.as_str())
        .filter(|n| !n.contains(".se_") || n.ends_with("se_scale"))
        .collect();
    assert_eq!(
        not,
        [
            "stage1.0.mbconv.se_scale",
            "stage1.0.mbconv.conv_c",
            "stage1.0.mbconv.drop_identity",
            "stage1.0.mbconv.sum",
            "stage1.0.window.partition_op",
            "stage1.0.window.partition_identity",
            "stage1.0.window.norm1",
            "pool",
            "flatten",
            "head_norm",
            "head_fc",
            "head_act",
            "head"
        ]
    );
    let se = report
        .rows
        .iter()
        .filter(|r| r.name.contains(".se_") && !r.name.ends_with("se_scale"))
        .inspect(|r| assert_eq!(r.rf.measured, check::NOT_COMPARED, "{}", r.name))
        .count();
    assert_eq!(se, 55);
    assert_eq!(report.rf_compared(), 486);
    let row = |name: &str| report.rows.iter().find(|r| r.name == name).unwrap();
    // Grid attention's unit at the middle of the other axis: unit 28 (r = 4) sees the whole
    // axis; the measured bounds of unit 0 are checked unit by unit (agreement).
    assert_eq!(
        row("stage1.0.grid.attn").rf.measured,
        "rows 0–223, cols 0–223"
    );
    assert!(row("stage1.0.grid.attn").rf.agree);
    assert_eq!(
        row("stage1.0.window.attn").rf.measured,
        "rows 107–141, cols 107–141"
    );
}

// ---------------------------------------------------------------------------------------
// Random block/grid models against a brute force.

/// One partition attention: windows of `p` (block) or a grid of `p`-strided units (grid).
#[derive(Debug, Clone, Copy)]
struct Stage {
    p: usize,
    grid: bool,
}

/// A model on an `l`×`l` map: a `k`×`k` convolution (padding k/2), the stages (each
/// partition → [swap] → norm → attention → residual sum → [swap] → departition), then a 3×3
/// convolution with stride 2 and padding 1.
fn yaml(l: usize, k: usize, stages: &[Stage]) -> String {
    let mut s = format!(
        "inputs: {{x: [2, {l}, {l}]}}\nnodes:\n  - {{id: c0, op: conv, out: 4, kernel: {k}, padding: {}}}\n",
        k / 2
    );
    for (i, st) in stages.iter().enumerate() {
        let (p, g) = (st.p, l / st.p);
        // Tokens per group: p² (block), g² (grid, after the swap).
        let size = if st.grid { g } else { p };
        s += &format!("  - {{id: part{i}, op: window_partition, size: {p}}}\n");
        let mut last = format!("part{i}");
        if st.grid {
            s +=
                &format!("  - {{id: swap{i}, op: transpose, dims: [-2, -3], functional: false}}\n");
            last = format!("swap{i}");
        }
        s += &format!(
            "  - {{id: norm{i}, op: layernorm}}\n  - {{id: attn{i}, op: relative_position_attention, head_dim: 2, size: {size}}}\n  - {{id: sum{i}, op: add, in: [{last}, attn{i}]}}\n"
        );
        if st.grid {
            s +=
                &format!("  - {{id: back{i}, op: transpose, dims: [-2, -3], functional: false}}\n");
        }
        s += &format!("  - {{id: dep{i}, op: window_departition, size: {p}, grid: [{g}, {g}]}}\n");
    }
    s += "  - {id: out, op: conv, out: 4, kernel: 3, stride: 2, padding: 1}\n";
    s
}

/// The support of every map position: for each of the map's `l·l` positions, the set of
/// input pixels (`l·l` bits) that reach it.
type Support = Vec<Vec<bool>>;

/// A `k`×`k` convolution, stride `s`, padding `pad` on an `l`×`l` map: output (y, x) joins
/// the supports of the taps inside the map.
fn conv(sup: &Support, l: usize, k: usize, s: usize, pad: usize) -> (Support, usize) {
    let o = (l + 2 * pad - k) / s + 1;
    let bits = sup[0].len();
    let mut out = vec![vec![false; bits]; o * o];
    for y in 0..o {
        for x in 0..o {
            for dy in 0..k {
                for dx in 0..k {
                    let (iy, ix) = (
                        (y * s + dy) as i64 - pad as i64,
                        (x * s + dx) as i64 - pad as i64,
                    );
                    if (0..l as i64).contains(&iy) && (0..l as i64).contains(&ix) {
                        let src = &sup[iy as usize * l + ix as usize];
                        for (b, &v) in out[y * o + x].iter_mut().zip(src) {
                            *b |= v;
                        }
                    }
                }
            }
        }
    }
    (out, o)
}

/// Attention within groups of map positions: block (same ⌊y/p⌋, ⌊x/p⌋) or grid (same
/// y mod p, x mod p); the residual sum adds nothing a group member does not already hold.
fn attend(sup: &Support, l: usize, st: Stage) -> Support {
    let key = |y: usize, x: usize| {
        if st.grid {
            (y % st.p, x % st.p)
        } else {
            (y / st.p, x / st.p)
        }
    };
    let mut out = sup.clone();
    for y in 0..l {
        for x in 0..l {
            for y2 in 0..l {
                for x2 in 0..l {
                    if key(y, x) == key(y2, x2) {
                        let src = sup[y2 * l + x2].clone();
                        for (b, v) in out[y * l + x].iter_mut().zip(src) {
                            *b |= v;
                        }
                    }
                }
            }
        }
    }
    out
}

/// Row span and column span of one support over an `l0`×`l0` input.
fn spans(bits: &[bool], l0: usize) -> ((usize, usize), (usize, usize)) {
    let on: Vec<(usize, usize)> = (0..bits.len())
        .filter(|&i| bits[i])
        .map(|i| (i / l0, i % l0))
        .collect();
    let rows = (
        on.iter().map(|p| p.0).min().unwrap(),
        on.iter().map(|p| p.0).max().unwrap(),
    );
    let cols = (
        on.iter().map(|p| p.1).min().unwrap(),
        on.iter().map(|p| p.1).max().unwrap(),
    );
    (rows, cols)
}

/// A partition of an `l`-unit map: any divisor of `l` (`l` itself: one window), block or grid.
fn stage(l: usize) -> impl Strategy<Value = Stage> {
    let divisors: Vec<usize> = (1..=l).filter(|d| l.is_multiple_of(*d)).collect();
    (prop::sample::select(divisors), any::<bool>()).prop_map(|(p, grid)| Stage { p, grid })
}

fn model() -> impl Strategy<Value = (usize, usize, Vec<Stage>)> {
    (
        prop::sample::select(vec![4usize, 6, 8, 9, 12]),
        prop::sample::select(vec![1usize, 3, 5]),
    )
        .prop_flat_map(|(l, k)| (Just(l), Just(k), prop::collection::vec(stage(l), 1..4)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    /// Every unit's analysed rows and columns equal the brute force's, at every position of
    /// the other axis (so the per-axis spans are exact, not only at one row), after every
    /// stage and the final convolution; and `check` measures and agrees on every layer.
    #[test]
    fn random_partitions_equal_the_brute_force((l, k, stages) in model()) {
        let n = net(&yaml(l, k, &stages));
        let a = analysis(&n);
        let input: Support = (0..l * l)
            .map(|i| (0..l * l).map(|b| b == i).collect())
            .collect();
        let (mut sup, _) = conv(&input, l, k, 1, k / 2);
        let check_layer = |name: &str, sup: &Support, m: usize| -> Result<(), TestCaseError> {
            let f = field_of(&a, name);
            let (r, c) = (units(f, 0), units(f, 1));
            prop_assert_eq!(r.len(), m);
            for y in 0..m {
                for x in 0..m {
                    let (rows, cols) = spans(&sup[y * m + x], l);
                    prop_assert_eq!((r[y].0 as usize, r[y].1 as usize), rows, "{} unit ({}, {})", name, y, x);
                    prop_assert_eq!((c[x].0 as usize, c[x].1 as usize), cols, "{} unit ({}, {})", name, y, x);
                }
            }
            Ok(())
        };
        for (i, st) in stages.iter().enumerate() {
            sup = attend(&sup, l, *st);
            check_layer(&format!("dep{i}"), &sup, l)?;
        }
        let (out, o) = conv(&sup, l, 3, 2, 1);
        check_layer("out", &out, o)?;
        // check: every layer compared (the input row aside, all have a field), all agree.
        let report = checked(&n);
        prop_assert_eq!(report.rf_compared(), report.rows.len());
    }
}

#[test]
fn a_departition_of_swapped_windows_is_not_the_map() {
    // Grid attention that forgets to swap back: the departition then lays window positions
    // where windows belong — a scrambled map whose axes are not the input's, so its field
    // ends (no field is guessed), and so does the convolution after it; swapped back, the
    // map and its field are whole again.
    let model = |back: &str| {
        format!(
            "inputs: {{x: [2, 4, 4]}}\nnodes:\n  - {{id: c0, op: conv, out: 4, kernel: 1}}\n  - {{id: part, op: window_partition, size: 2}}\n  - {{id: swap, op: transpose, dims: [-2, -3], functional: false}}\n  - {{id: attn, op: relative_position_attention, head_dim: 2, size: 2}}\n{back}  - {{id: dep, op: window_departition, size: 2, grid: [2, 2]}}\n  - {{id: out, op: conv, out: 4, kernel: 3, padding: 1}}\n"
        )
    };
    let a = analysis(&net(&model("")));
    assert!(a
        .layers
        .iter()
        .find(|l| l.name == "attn")
        .unwrap()
        .rf
        .is_some());
    for name in ["dep", "out"] {
        assert!(
            a.layers
                .iter()
                .find(|l| l.name == name)
                .unwrap()
                .rf
                .is_none(),
            "{name}"
        );
    }
    let a = analysis(&net(&model(
        "  - {id: back, op: transpose, dims: [-2, -3], functional: false}\n",
    )));
    // Grid of p = 2 on 4 units (4 windows of 2×2 — as many as positions, so the shapes
    // allow forgetting the swap): unit u sees units u mod 2 and u mod 2 + 2 — 0 … 2 or
    // 1 … 3 — then the 3×3 convolution joins neighbours: 0 … 3.
    let f = field_of(&a, "dep");
    assert_eq!(units(f, 0), [(0, 2), (1, 3), (0, 2), (1, 3)]);
    assert!(units(field_of(&a, "out"), 1).iter().all(|&s| s == (0, 3)));
}

#[test]
fn a_partition_after_an_unswapped_departition_says_to_swap_back() {
    // The departition of windows left swapped gives an N×C×·×· map (its axes are not the
    // image's, see above); partitioning it again is refused, and the help names the missing
    // swap-back rather than a permute. A permuted map (N×H×W×C) keeps the general help.
    let head = "inputs: {x: [2, 4, 4]}\nnodes:\n  - {id: c0, op: conv, out: 4, kernel: 1}\n  - {id: part, op: window_partition, size: 2}\n  - {id: swap, op: transpose, dims: [-2, -3], functional: false}\n  - {id: attn, op: relative_position_attention, head_dim: 2, size: 2}\n  - {id: dep, op: window_departition, size: 2, grid: [2, 2]}\n";
    let e = crate::common::build_error(
        "unswapped.yaml",
        &format!("{head}  - {{id: part2, op: window_partition, size: 2}}\n"),
    )
    .to_string();
    assert!(e.contains("in layer `part2`"), "{e}");
    assert!(e.contains("got 1×4×4×4 laid out N×C×·×·"), "{e}");
    assert!(
        e.contains("if it comes from a window_departition, swap the windows back before it"),
        "{e}"
    );
    let e = crate::common::build_error(
        "permuted.yaml",
        "inputs: {x: [2, 4, 4]}\nnodes:\n  - {id: c0, op: conv, out: 4, kernel: 1}\n  - {id: p, op: permute, dims: [0, 2, 3, 1]}\n  - {id: part, op: window_partition, size: 2}\n",
    )
    .to_string();
    assert!(e.contains("before any permute"), "{e}");
    assert!(!e.contains("swap the windows back"), "{e}");
}
