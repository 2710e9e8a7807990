//! The audit's window and kernel rules (large-kernel, bottleneck, skipped-pixels, border-drop,
//! ceil-mode) and the fc-heavy pooling suggestion on 1-D and 3-D networks: hand-written models
//! where each rule fires (the expected figures derived by hand beside each assertion) and a
//! twin where none of them does; and the findings on the zoo's r3d_18 and wav2letter.

use crate::common::*;
use archscope::audit::{audit, Audit, Budgets, Finding};

fn audited(yaml: &str) -> Audit {
    let n = net(yaml);
    let a = analysis(&n);
    audit(&n, &a, &Budgets::default()).unwrap()
}

fn get<'a>(r: &'a Audit, kind: &str, layer: &str) -> &'a Finding {
    r.findings
        .iter()
        .find(|f| f.kind == kind && f.layer == layer)
        .unwrap_or_else(|| panic!("no {kind} at {layer}: {:#?}", r.findings))
}

/// The rules this file covers.
const RULES: [&str; 6] = [
    "large-kernel",
    "bottleneck",
    "skipped-pixels",
    "border-drop",
    "ceil-mode",
    "fc-heavy",
];

const PLANTED_1D: &str = r#"
format: "archscope/1"
name: planted1d
inputs:
  x: [8, 100]
nodes:
  - {id: big, op: conv1d, out: 256, kernel: 9, padding: 4}
  - {id: bneck, op: conv1d, out: 256, kernel: 3, padding: 1}
  - {id: skip, op: conv1d, out: 256, kernel: 1, stride: 2}
  - {id: pool, op: maxpool1d, kernel: 3, stride: 2}
  - {id: cpool, op: maxpool1d, kernel: 3, stride: 2, ceil: true}
  - {op: flatten}
  - {id: fc, op: linear, out: 1000}
"#;

#[test]
fn every_rule_fires_on_a_1d_network() {
    let r = audited(PLANTED_1D);
    // big: 9-wide 8→256, stride 1, padding 4 = (9−1)/2: four 3-wide convolutions
    // 8→8→8→8→256 see the same 9 samples: 3·(8·8·3 + 8·256) = 6720 weights instead of
    // 9·8·256 = 18432 (−11712); at length 100 (each keeps it): MACs 100·6720 = 672000
    // instead of 100·18432 = 1843200, −1171200.
    let f = get(&r, "large-kernel", "big");
    assert_eq!(
        f.message,
        "`big` is a 9-wide convolution 8→256 (18432 weights)"
    );
    assert!(
        f.fix
            .starts_with("4 stacked 3-wide convolutions 8→8→8→8→256"),
        "{}",
        f.fix
    );
    assert_eq!(
        (f.saving_params, f.saving_macs),
        (Some(11712), Some(1_171_200))
    );
    // bneck: 3-wide 256→256: r = 64; 256·64 + 3·64² + 64·256 = 45056 weights instead of
    // 3·256² = 196608 (−151552); MACs at length 100: 100·45056 = 4505600 instead of
    // 19660800, −15155200.
    let f = get(&r, "bottleneck", "bneck");
    assert!(
        f.fix.starts_with(
            "1-wide 256→64, 3-wide 64→64, 1-wide 64→256: 45056 weights instead of 196608"
        ),
        "{}",
        f.fix
    );
    assert_eq!(
        (f.saving_params, f.saving_macs),
        (Some(151_552), Some(15_155_200))
    );
    // skip: window 1, stride 2: reads 1 of every 2 samples.
    let f = get(&r, "skipped-pixels", "skip");
    assert!(
        f.message
            .ends_with("has a 1-sample window and stride 2: it reads 1 of every 2 input samples"),
        "{}",
        f.message
    );
    assert!(f.fix.starts_with("average-pool 2/2 first"), "{}", f.fix);
    // pool: window 3, stride 2 on length (100−1)/2+1 = 50: ⌊47/2⌋+1 = 24 windows cover
    // samples 0..48, sample 49 is never read: 1 of 50 = 2.0%; 49 or 51 fit, or 1 more
    // padding.
    let f = get(&r, "border-drop", "pool");
    assert!(
        f.message
            .contains("on a 50 input never reads its last 1 samples (2.0% of its input samples)"),
        "{}",
        f.message
    );
    assert!(
        f.fix.starts_with("feed this layer 49 or 51 (length) — "),
        "{}",
        f.fix
    );
    assert!(f.fix.contains("end padding of 1 samples so"), "{}", f.fix);
    // cpool: window 3, stride 2, ceil on 24: floor ⌊21/2⌋+1 = 11, ceil ⌈21/2⌉+1 = 12 (the
    // 12th window starts at 22 < 24, inside the input); it ends at 22+3 = 25, one past 24.
    let f = get(&r, "ceil-mode", "cpool");
    assert!(
        f.message
            .ends_with("uses ceil mode: 24 → 12, where floor mode gives 11"),
        "{}",
        f.message
    );
    assert!(
        f.fix
            .starts_with("for TensorFlow/Keras, pad the end by 1 (with"),
        "{}",
        f.fix
    );
    // fc: flatten 256×12 = 3072 → 1000: 3073000 parameters of 3073000 + 18688 + 196864 +
    // 65792 = 3354344. Pooling the 256×12 map first: 256·1000 + 1000 = 257000 (−2816000);
    // MACs (3072 − 256)·1000 = 2816000 fewer.
    let f = get(&r, "fc-heavy", "fc");
    assert!(f.fix.starts_with("global average pooling of the 256×12 map before `fc` makes its input 256 features instead of 3072: 257000 parameters instead of 3073000"), "{}", f.fix);
    assert_eq!(
        (f.saving_params, f.saving_macs),
        (Some(2_816_000), Some(2_816_000))
    );
}

const PLANTED_3D: &str = r#"
format: "archscope/1"
name: planted3d
inputs:
  x: [8, 8, 16, 16]
nodes:
  - {id: big, op: conv3d, out: 256, kernel: 5, padding: 2}
  - {id: bneck, op: conv3d, out: 256, kernel: 3, padding: 1}
  - {id: skip, op: conv3d, out: 256, kernel: 1, stride: [1, 2, 2]}
  - {id: pool, op: maxpool3d, kernel: 3, stride: 2}
  - {id: cpool, op: maxpool3d, kernel: [1, 2, 2], stride: [1, 2, 2], ceil: true}
  - {op: flatten}
  - {id: fc, op: linear, out: 1000}
"#;

#[test]
fn every_rule_fires_on_a_3d_network() {
    let r = audited(PLANTED_3D);
    // big: 5×5×5 8→256, padding 2: two 3×3×3 convolutions 8→8→256: 27·(8·8 + 8·256) = 57024
    // weights instead of 125·8·256 = 256000 (−198976); at 8×16×16 = 2048 positions (kept):
    // MACs 2048·57024 = 116785152 instead of 2048·256000 = 524288000, −407502848.
    let f = get(&r, "large-kernel", "big");
    assert_eq!(
        f.message,
        "`big` is a 5×5×5 convolution 8→256 (256000 weights)"
    );
    assert!(
        f.fix.starts_with("2 stacked 3×3×3 convolutions 8→8→256"),
        "{}",
        f.fix
    );
    assert_eq!(
        (f.saving_params, f.saving_macs),
        (Some(198_976), Some(407_502_848))
    );
    // bneck: 3×3×3 256→256, r = 64: 256·64 + 27·64² + 64·256 = 143360 instead of 27·256² =
    // 1769472 (−1626112); MACs 2048·(1769472 − 143360) = 3330277376 fewer.
    let f = get(&r, "bottleneck", "bneck");
    assert!(
        f.fix.starts_with(
            "1×1×1 256→64, 3×3×3 64→64, 1×1×1 64→256: 143360 weights instead of 1769472"
        ),
        "{}",
        f.fix
    );
    assert_eq!(
        (f.saving_params, f.saving_macs),
        (Some(1_626_112), Some(3_330_277_376))
    );
    // skip: 1×1×1, stride 1×2×2: reads 1·1·1 of every 1·2·2 = 4 voxels.
    let f = get(&r, "skipped-pixels", "skip");
    assert!(
        f.message
            .ends_with("has a 1×1×1 window and stride 1×2×2: it reads 1 of every 4 input voxels"),
        "{}",
        f.message
    );
    assert!(
        f.fix.starts_with("average-pool 1×2×2/1×2×2 first"),
        "{}",
        f.fix
    );
    // pool: 3×3×3/2 on 8×8×8: ⌊5/2⌋+1 = 3 windows cover 0..6 on each axis, the last frame,
    // row and column are never read: 8³ − 7³ = 169 of 512 voxels = 33.0%.
    let f = get(&r, "border-drop", "pool");
    assert!(f.message.contains("on a 8×8×8 input never reads its last 1 frames, 1 rows and 1 columns (33.0% of its input voxels)"), "{}", f.message);
    assert!(
        f.fix
            .starts_with("feed this layer 7 or 9 (depth) × 7 or 9 (height) × 7 or 9 (width) — "),
        "{}",
        f.fix
    );
    assert!(
        f.fix
            .contains("end padding of 1 frames, 1 rows and 1 columns so"),
        "{}",
        f.fix
    );
    // cpool: 1×2×2/1×2×2, ceil, on 3×3×3: depth 3 either way; height, width: floor
    // ⌊1/2⌋+1 = 1, ceil ⌈1/2⌉+1 = 2 (the 2nd window starts at 2 < 3), ending at 4: one past.
    let f = get(&r, "ceil-mode", "cpool");
    assert!(
        f.message
            .ends_with("uses ceil mode: 3×3×3 → 3×2×2, where floor mode gives 3×1×1"),
        "{}",
        f.message
    );
    assert!(f.fix.starts_with("for TensorFlow/Keras, pad the last frames by 0, the bottom by 1 and the right by 1 (with"), "{}", f.fix);
    // fc: flatten 256×3×2×2 = 3072 → 1000; pooling first: 257000 parameters instead of
    // 3073000 (−2816000), (3072 − 256)·1000 = 2816000 fewer MACs.
    let f = get(&r, "fc-heavy", "fc");
    assert!(f.fix.starts_with("global average pooling of the 256×3×2×2 map before `fc` makes its input 256 features instead of 3072: 257000 parameters instead of 3073000"), "{}", f.fix);
    assert_eq!(
        (f.saving_params, f.saving_macs),
        (Some(2_816_000), Some(2_816_000))
    );
}

#[test]
fn no_rule_fires_on_clean_1d_and_3d_networks() {
    // 1-D: a 7-wide 64→64 convolution: three 3-wide ones hold 9·64² > 7·64² weights (in one
    // axis a stack never saves); a 3-wide 128→128 is below the bottleneck's 256 channels; a
    // 3-wide stride-2 window leaves no gap; ⌊(50+2−3)/2⌋+1 = 25 windows of a padded 3/2 pool
    // end exactly at 51 = 50 + 1 padding; 2/2 ceil on 25... is 26 → 13 in ceil and floor;
    // a global pool before the classifier.
    let one = r#"
format: "archscope/1"
name: clean1d
inputs:
  x: [64, 100]
nodes:
  - {id: a, op: conv1d, out: 64, kernel: 7, padding: 3}
  - {id: b, op: conv1d, out: 128, kernel: 3, stride: 2, padding: 1}
  - {id: c, op: conv1d, out: 128, kernel: 3, padding: 1}
  - {id: pool, op: maxpool1d, kernel: 2, stride: 2}
  - {id: cpool, op: maxpool1d, kernel: 5, stride: 5, ceil: true}
  - {id: gap, op: adaptive_avgpool1d, size: 1}
  - {op: flatten}
  - {id: fc, op: linear, out: 10}
"#;
    // 3-D: a 3×7×7 stem (not a cube) with stride 1×2×2, 3×3×3 convolutions of 64 channels,
    // a 1×3×3/1×2×2 pool with padding 0×1×1 that reads everything, a ceil-mode pool on an
    // exact fit, a global pool before a small classifier.
    let three = r#"
format: "archscope/1"
name: clean3d
inputs:
  x: [3, 8, 32, 32]
nodes:
  - {id: stem, op: conv3d, out: 64, kernel: [3, 7, 7], stride: [1, 2, 2], padding: [1, 3, 3]}
  - {id: c, op: conv3d, out: 64, kernel: 3, padding: 1}
  - {id: pool, op: maxpool3d, kernel: [1, 3, 3], stride: [1, 2, 2], padding: [0, 1, 1]}
  - {id: cpool, op: maxpool3d, kernel: 2, stride: 2, ceil: true}
  - {id: gap, op: adaptive_avgpool3d, size: 1}
  - {op: flatten}
  - {id: fc, op: linear, out: 10}
"#;
    for yaml in [one, three] {
        let r = audited(yaml);
        let hits: Vec<&Finding> = r
            .findings
            .iter()
            .filter(|f| RULES.contains(&f.kind))
            .collect();
        assert!(hits.is_empty(), "{hits:#?}");
    }
}

#[test]
fn zoo_video_and_audio_findings() {
    // r3d_18's strided 1×1×1 projections (stride 2 on each axis) read 1 voxel of 8.
    let a = zoo_analysis("r3d_18");
    let r = audit(&zoo_net("r3d_18"), &a, &Budgets::default()).unwrap();
    for layer in [
        "layer2.0.downsample",
        "layer3.0.downsample",
        "layer4.0.downsample",
    ] {
        let f = get(&r, "skipped-pixels", layer);
        assert!(
            f.message.ends_with(
                "has a 1×1×1 window and stride 2×2×2: it reads 1 of every 8 input voxels"
            ),
            "{}",
            f.message
        );
    }
    // Its 3×3×3 convolutions of 256 and 512 channels that are not the first of a stage's
    // first block (whose input has fewer channels) get the bottleneck suggestion: 512→512:
    // r = 128, 512·128 + 27·128² + 128·512 = 573440 weights instead of 27·512² = 7077888.
    let f = get(&r, "bottleneck", "layer4.1.conv1");
    assert_eq!(f.saving_params, Some(7_077_888 - 573_440));
    // Its field covers the clip from layer4 on; the fix names the whole final field, every
    // axis: 109×219×219 after layer4 (PyTorch's measurement in
    // tests/data/video_audio_reference.json), widened by the global pool over layer4's 2×7×7
    // map with jumps 8×16×16: 109 + (2 − 1)·8 = 117, 219 + (7 − 1)·16 = 315.
    let f = get(&r, "unproductive-layers", "layer4.0.conv1");
    assert!(
        f.fix
            .starts_with("run at a larger input (the final field is 117×315×315 voxels)"),
        "{}",
        f.fix
    );
    // wav2letter's 7-wide convolutions are no large-kernel finding (three 3-wide ones hold
    // more weights), and its 1-wide convolutions have stride 1: none of the window rules.
    let a = zoo_analysis("wav2letter");
    let r = audit(&zoo_net("wav2letter"), &a, &Budgets::default()).unwrap();
    assert!(
        !r.findings.iter().any(|f| RULES.contains(&f.kind)),
        "{:#?}",
        r.findings
    );
}

#[test]
fn a_small_field_is_measured_on_the_axis_it_covers_least() {
    // Two 3×3×3 convolutions on a 4-frame 64×64 clip, then a classifier (no global pool, whose
    // field would cover the clip): the field is 5×5×5, more than the 4 frames but 5 of 64 rows and columns. The share is the height's: 5/64 = 7.8%, and the
    // fix names the height's 64 voxels (before, the depth's 125% was shown).
    let r = audited(
        r#"
format: "archscope/1"
name: shallow3d
inputs:
  x: [3, 4, 64, 64]
nodes:
  - {id: a, op: conv3d, out: 8, kernel: 3, padding: 1}
  - {id: b, op: conv3d, out: 8, kernel: 3, padding: 1}
  - {op: flatten}
  - {id: fc, op: linear, out: 10}
"#,
    );
    let f = get(&r, "small-receptive-field", "b");
    assert_eq!(
        f.message,
        "the trunk's last spatial layer `b` sees 5×5×5 voxels of the 4×64×64 input (7.8% of its height)"
    );
    assert_eq!(
        f.fix,
        "add downsampling or dilated/larger kernels until the field reaches about 64 voxels, or feed smaller inputs"
    );
}
