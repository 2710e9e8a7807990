//! Receptive fields through windowed attention (`Geometry::Partition`: Swin's shifted windows)
//! derived by hand — per unit, because a unit's field depends on where it sits in its window
//! and, after a shift, on the region of a wrapped window it belongs to — and measured by
//! `check` (`exec::reach` runs torchvision's steps on the one-channel copy: pad, roll, mask
//! labels, windows), which also measures fields past channels-last and token layers now:
//! every figure here is derived beside its assertion.

use crate::common;

use crate::common::{
    analysis, checked, field_of, json, net, options_for, zoo_analysis, zoo_net_with,
};
use crate::common::{rf_sizes as sizes, rf_units as units};
use archscope::check;
use archscope::receptive::Q;
use archscope::BuildOptions;

#[test]
fn swin_t_per_stage_by_hand() {
    // swin_t at 224²: the 4×4/4 stem gives a 56×56 map, unit u seeing pixels 4u..4u+3. Both
    // axes are alike, so every figure holds for rows and columns.
    let a = zoo_analysis("swin_t");
    assert!(!field_of(&a, "stem").windowed);
    // Stage 1, block 0: 7×7 windows, no shift: unit u sees its window's units 7⌊u/7⌋..+6,
    // pixels 28⌊u/7⌋..+27 — 28 for every unit.
    let f = field_of(&a, "stage1.0.sum2");
    assert!(f.windowed && f.aligned);
    let want: Vec<(i64, i64)> = (0..56).map(|u| (28 * (u / 7), 28 * (u / 7) + 27)).collect();
    assert_eq!(units(f, 0), want);
    assert_eq!(sizes(f), vec![(Q::from(28), Q::from(28)); 2]);
    // Block 1, shifted by 3 (map 56, torchvision's regions on the rolled axis q = (u − 3) mod
    // 56: q < 49, 49 ≤ q < 53, q ≥ 53): units 3..51 (region 0, window m = ⌊(u−3)/7⌋) attend to
    // units 7m+3..7m+9, which lie in block-0 windows m and m+1: pixels 28m..28m+55; units
    // 52..55 (region 1) to each other: pixels 196..223; units 0..2 (region 2, wrapped) to
    // each other: pixels 0..27.
    let s1: Vec<(i64, i64)> = (0..56)
        .map(|u| match u {
            0..=2 => (0, 27),
            52..=55 => (196, 223),
            _ => {
                let m = (u - 3) / 7;
                (28 * m, 28 * m + 55)
            }
        })
        .collect();
    let f = field_of(&a, "stage1.1.sum2");
    assert_eq!(units(f, 0), s1);
    assert_eq!(units(f, 1), s1);
    assert_eq!(sizes(f), vec![(Q::from(56), Q::from(28)); 2]);
    // Patch merging: unit v of the 28×28 map joins units 2v and 2v+1 (the four strided
    // slices, concatenated on channels). Pairs that straddle a shifted window (2v+1 = 7m+3,
    // m even: v = 8, 15, 22) see 84 pixels: v = 8 joins 16 (28..83) and 17 (56..111).
    let m1: Vec<(i64, i64)> = (0..28)
        .map(|v| {
            let (a, b) = (s1[2 * v], s1[2 * v + 1]);
            (a.0.min(b.0), a.1.max(b.1))
        })
        .collect();
    let f = field_of(&a, "merge1.reduction");
    assert_eq!(units(f, 0), m1);
    assert_eq!(
        [m1[0], m1[1], m1[8], m1[15], m1[22], m1[27]],
        [
            (0, 27),
            (0, 55),
            (28, 111),
            (84, 167),
            (140, 223),
            (196, 223)
        ]
    );
    assert_eq!(sizes(f), vec![(Q::from(84), Q::from(28)); 2]);
    // Jump 8 after the strided slices (every second unit of a jump-4 map).
    assert_eq!(f.axes[0].jump, Q::from(8));
    // Stage 2, block 0 (windows of 7 on 28): windows 0..3 see 0..83, 28..139, 84..195,
    // 140..223 (hulls of m1 over 7M..7M+6): 84 or 112.
    let w2 = [(0, 83), (28, 139), (84, 195), (140, 223)];
    let f = field_of(&a, "stage2.0.sum2");
    assert_eq!(units(f, 0), (0..28).map(|v| w2[v / 7]).collect::<Vec<_>>());
    assert_eq!(sizes(f), vec![(Q::from(112), Q::from(84)); 2]);
    // Block 1 (shift 3 on 28: regions q < 21, 21 ≤ q < 25, q ≥ 25): units 3..9, 10..16,
    // 17..23 span two windows (0..139, 28..195, 84..223), units 24..27 and 0..2 one
    // (140..223, 0..83): 84 to 168.
    let s2: Vec<(i64, i64)> = (0..28)
        .map(|u| match u {
            0..=2 => (0, 83),
            3..=9 => (0, 139),
            10..=16 => (28, 195),
            17..=23 => (84, 223),
            _ => (140, 223),
        })
        .collect();
    let f = field_of(&a, "stage2.1.sum2");
    assert_eq!(units(f, 1), s2);
    assert_eq!(sizes(f), vec![(Q::from(168), Q::from(84)); 2]);
    // Patch merging to 14: w joins 2w and 2w+1; w = 8 joins 16 (28..195) and 17 (84..223):
    // 196; w = 0 sees 0..83: 84.
    let f = field_of(&a, "merge2.reduction");
    assert_eq!(units(f, 0)[8], (28, 223));
    assert_eq!(units(f, 0)[0], (0, 83));
    assert_eq!(sizes(f), vec![(Q::from(196), Q::from(84)); 2]);
    // Stage 3 (14×14, windows of 7, shift 3 applies: 7 < 14). Block 0: windows 0..6 and
    // 7..13 see 0..195 and 28..223: 196 each.
    let f = field_of(&a, "stage3.0.sum2");
    assert_eq!(sizes(f), vec![(Q::from(196), Q::from(196)); 2]);
    // Block 1 (shift 3 on 14: regions q < 7, 7 ≤ q < 11, q ≥ 11): units 3..9 span both
    // windows (0..223), units 10..13 one (28..223), units 0..2 the other (0..195).
    let f = field_of(&a, "stage3.1.sum2");
    let s3: Vec<(i64, i64)> = (0..14)
        .map(|u| match u {
            0..=2 => (0, 195),
            3..=9 => (0, 223),
            _ => (28, 223),
        })
        .collect();
    assert_eq!(units(f, 0), s3);
    assert_eq!(sizes(f), vec![(Q::from(224), Q::from(196)); 2]);
    // Block 2 (no shift): each window holds a unit of 3..9, so every unit sees 0..223 — the
    // whole input, from stage3.2's attention on; stages 1 and 2 never do.
    for name in ["stage3.2.sum2", "stage4.1.sum2", "to_first"] {
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
    // `rf` says so: the first layer every unit of which covers the input, the final field
    // window-dependent, per unit in JSON.
    let v = json(&["rf", "swin_t", "--format", "json"]);
    assert_eq!(v["covers_input_from"], "stage3.2.attn");
    assert_eq!(v["final"]["name"], "to_first");
    assert_eq!(v["final"]["rf"]["window_dependent"], true);
    let attn = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "stage1.1.attn")
        .unwrap();
    assert_eq!(attn["rf"]["size"], serde_json::json!([56, 56]));
    assert_eq!(attn["rf"]["min_size"], serde_json::json!([28, 28]));
    assert_eq!(attn["rf"]["units"][0][52], serde_json::json!([196, 223]));
    let text = common::ok_text(&["rf", "swin_t"]);
    assert!(
        text.contains("window-dependent: units see 28 to 56"),
        "{text}"
    );
}

/// A 10×10 map under 4×4 windows: padded to 12, shifted by 2, then unshifted.
const PADDED: &str = "inputs: {x: [3, 10, 10]}
nodes:
  - {id: embed, op: conv, out: 8, kernel: 1}
  - {id: last, op: permute, dims: [0, 2, 3, 1]}
  - {id: shifted, op: shifted_window_attention, heads: 2, window: 4, shift: 2, pad: true}
  - {id: plain, op: shifted_window_attention, heads: 2, window: 4, pad: true}
  - {id: first, op: permute, dims: [0, 3, 1, 2]}
  - {id: pool, op: maxpool, kernel: 2}
";

#[test]
fn padded_shifted_windows_by_hand_and_measured() {
    // Shifted: the 10 units padded to n = 12, rolled by −2 (q = (p − 2) mod 12), windows of 4,
    // regions q < 8, 8 ≤ q < 10, q ≥ 10. Units 2..5 (q 0..3) and 6..9 (q 4..7) attend within
    // their windows; units 0, 1 (q 10, 11: region 2) only to each other — the padding (q 8, 9
    // hold units 10, 11, which do not exist) carries nothing.
    let n = net(PADDED);
    let a = analysis(&n);
    let s = [
        (0, 1),
        (0, 1),
        (2, 5),
        (2, 5),
        (2, 5),
        (2, 5),
        (6, 9),
        (6, 9),
        (6, 9),
        (6, 9),
    ];
    assert_eq!(units(field_of(&a, "shifted"), 0), s);
    // Unshifted windows 0..3, 4..7, 8..11 (10, 11 padding): 0..5, 2..9, 6..9.
    let p = [
        (0, 5),
        (0, 5),
        (0, 5),
        (0, 5),
        (2, 9),
        (2, 9),
        (2, 9),
        (2, 9),
        (6, 9),
        (6, 9),
    ];
    assert_eq!(units(field_of(&a, "plain"), 1), p);
    // Back to N×C×H×W, a 2×2/2 max pool: unit i joins 2i, 2i+1: 0..5, 0..5, 2..9, 2..9, 6..9.
    assert_eq!(
        units(field_of(&a, "pool"), 0),
        [(0, 5), (0, 5), (2, 9), (2, 9), (6, 9)]
    );
    // check measures every one of these layers and agrees unit by unit (the central unit of
    // `plain`, (5, 5), sees rows and columns 2–9).
    let report = checked(&n);
    let rf = |name: &str| {
        report
            .rows
            .iter()
            .find(|r| r.name == name)
            .unwrap()
            .rf
            .clone()
    };
    for name in ["embed", "last", "shifted", "plain", "first", "pool"] {
        assert_ne!(rf(name).measured, check::NOT_COMPARED, "{name}");
    }
    assert_eq!(rf("plain").measured, "rows 2–9, cols 2–9");
    assert_eq!(rf("shifted").measured, "rows 2–5, cols 2–5");
}

#[test]
fn a_broken_window_field_is_caught() {
    // The analysed field of `shifted` with unit 0's rows widened by one: check names the unit
    // and both spans.
    let n = net(PADDED);
    let a = analysis(&n);
    let k = a.layers.iter().position(|l| l.name == "shifted").unwrap();
    let m = archscope::exec::reach::measure(&n).unwrap();
    let mut f = a.layers[k].rf.clone().unwrap();
    f.units.as_mut().unwrap()[0][0] = Some((0, 2));
    let fig = check::rf_figure(Some(&f), m.layers[k].as_ref(), &m.input);
    assert!(!fig.agree);
    assert_eq!(fig.analysed, "unit 0: rows 0–2");
    assert_eq!(fig.measured, "unit 0: rows 0–1");
    // Unchanged, it agrees.
    let f = a.layers[k].rf.clone().unwrap();
    assert!(check::rf_figure(Some(&f), m.layers[k].as_ref(), &m.input).agree);
}

/// `check` on a zoo model at `input` (batch first): its number of layers, and the layers
/// whose field was not compared.
fn compared(name: &str, input: &[u64]) -> (usize, Vec<String>) {
    let opts: BuildOptions = options_for(input);
    let n = zoo_net_with(name, &opts);
    let report = checked(&n);
    let not: Vec<String> = report
        .rows
        .iter()
        .filter(|r| r.rf.measured == check::NOT_COMPARED)
        .map(|r| r.name.clone())
        .collect();
    (report.rows.len(), not)
}

#[test]
fn swin_t_is_measured_past_its_windows_with_padding() {
    // At 160²: maps 40, 20, 10, 5 — padded to 42, 21, 14 and 7 (the last window covers the map:
    // no shift). Every layer but the global pool, the flatten and the head is compared.
    let (layers, not) = compared("swin_t", &[1, 3, 160, 160]);
    assert_eq!(layers, 180);
    assert_eq!(not, ["avgpool", "flatten", "head"]);
}

#[test]
fn swin_v2_t_is_measured() {
    // 8×8 windows, shift 4, at 224²: the 7×7 last stage is padded to 8 and unshifted.
    let (layers, not) = compared("swin_v2_t", &[1, 3, 224, 224]);
    assert_eq!(layers, 180);
    assert_eq!(not, ["avgpool", "flatten", "head"]);
}

#[test]
fn convnext_tiny_is_measured_past_its_channels_last_blocks() {
    // Every layer but the 18 layer-scale parameters (no input, no field) and the head (global
    // pool, norm, flatten, linear on features).
    let (layers, not) = compared("convnext_tiny", &[1, 3, 224, 224]);
    assert_eq!(layers, 211);
    assert_eq!(not.len(), 22);
    assert_eq!(
        not.iter().filter(|n| n.ends_with("layer_scale")).count(),
        18
    );
    assert_eq!(&not[18..], ["avgpool", "norm", "flatten", "fc"]);
}

#[test]
fn vit_b_16_whole_input_is_measured() {
    // The patch convolution on the lattice; after the first self-attention every unit of the
    // sequence (class token included) is reached by the first and last row and column: "whole
    // input" on both sides, on every encoder layer and the final norm. Not compared: the token
    // layers before it (positions not one dimension per axis), the class token and position
    // embedding (parameters), the class-token row and the head (no positions).
    let (layers, not) = compared("vit_b_16", &[1, 3, 224, 224]);
    assert_eq!(layers, 145);
    assert_eq!(
        not,
        [
            "flat",
            "tokens",
            "class_token",
            "batch_class_token",
            "sequence",
            "encoder.pos_embedding",
            "encoder.embedded",
            "encoder.dropout",
            "encoder.layers.encoder_layer_0.ln_1",
            "cls",
            "heads.head"
        ]
    );
}
