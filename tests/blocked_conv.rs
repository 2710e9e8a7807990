//! The blocked direct convolution (`kernels::blocked`, issue #19's sixth pass) against a naive
//! f64 convolution: channel counts that are not multiples of 16 (so the last vector of output
//! channels is partly padding, and blocks of 1–4 vectors occur), kernels from 1×2 to 7×7
//! (1×7 and 7×1 among them), vertical strides 1–3 and horizontal 1–2, every padding of 0–3 on
//! each side, dilations 1–2, one to three threads, a bias or none and every fused epilogue;
//! [`blocked::pack`]'s layout by hand; and through the inference plan (which packs the panels
//! in `Kernel::prepare` for the shapes `Conv2d` sends there) against the layer as written, on
//! a 7×7/2 stem with a folded batch norm and a ReLU, a strided 3×3 and a 3×3 with 40 output
//! channels; and rows of 58–170 input columns through several reduction chunks, which the
//! kernel computes in segments of the row (seventh pass).

use crate::common::run_as_written_and_planned;
use crate::implicit_conv::{close, reference, val, EPILOGUES};
use archscope::kernels::{blocked, Window2d};
use proptest::prelude::*;

/// Kernel shapes: the stems' 7×7, 5×5, inception_v3's 1×7 and 7×1, 3×3, and small odd ones.
const KERNELS: [[usize; 2]; 8] = [
    [3, 3],
    [7, 7],
    [5, 5],
    [1, 7],
    [7, 1],
    [2, 3],
    [1, 2],
    [3, 1],
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn blocked_matches_f64(c in 1usize..24, m in 1usize..80, h in 1usize..24, w in 1usize..40,
                           ki in 0usize..8, sh in 1usize..4, sw in 1usize..3,
                           pt in 0usize..4, pl in 0usize..4, pb in 0usize..4, pr in 0usize..4,
                           dh in 1usize..3, dw in 1usize..3, threads in 1usize..4,
                           bias in any::<bool>(), e in 0usize..5, seed in 0u64..1000) {
        let [kh, kw] = KERNELS[ki];
        let (hh, ww) = (h + pt + pb, w + pl + pr);
        prop_assume!(hh > (kh - 1) * dh && ww > (kw - 1) * dw);
        let (oh, ow) = ((hh - (kh - 1) * dh - 1) / sh + 1, (ww - (kw - 1) * dw - 1) / sw + 1);
        let win = Window2d { kernel: [kh, kw], stride: [sh, sw], pad: [pt, pl],
                             dilation: [dh, dw], input: [h, w], output: [oh, ow] };
        let k = c * kh * kw;
        let x: Vec<f32> = (0..c * h * w).map(|i| 2.0 * val(i, seed)).collect();
        let wt: Vec<f32> = (0..m * k).map(|i| val(i, seed + 1)).collect();
        let b: Vec<f32> = (0..m).map(|i| val(i, seed + 2)).collect();
        let bias = bias.then_some(&b[..]);
        let (want, mag) = reference(&x, c, &win, &wt, m, bias, e);
        let panels = blocked::pack(&wt, m, k);
        let mut got = vec![f32::NAN; m * oh * ow];
        let ran = blocked::conv(&x, c, &win, &panels, m, bias, EPILOGUES[e], &mut got, threads);
        if !blocked::available() {
            prop_assert!(ran.is_none());
        }
        if let Some(counted) = ran {
            prop_assert_eq!(counted, (m * oh * ow * k) as u64);
            close(&got, &want, &mag)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Rows wide enough to go in segments (seventh pass: with more than one reduction chunk,
    /// rows of more than 60 pixels at 4 vectors of channels, 80 at 3), through several chunks
    /// (18 or more input channels of a 3×3, 4 or more of a 7×7): every segment's pixels and
    /// the partial last segment against f64.
    #[test]
    fn blocked_wide_rows_in_segments(c in 4usize..40, m in 33usize..80, h in 1usize..5,
                                     w in 58usize..170, seven in any::<bool>(), sw in 1usize..3,
                                     pl in 0usize..3, pr in 0usize..3, threads in 1usize..3,
                                     e in 0usize..5, seed in 0u64..1000) {
        let k1 = if seven { 7 } else { 3 };
        prop_assume!(seven || c >= 18);
        let (oh, ww) = (h, w + pl + pr);
        let ow = (ww - k1) / sw + 1;
        let win = Window2d { kernel: [k1, k1], stride: [1, sw], pad: [k1 / 2, pl],
                             dilation: [1, 1], input: [h, w], output: [oh, ow] };
        let k = c * k1 * k1;
        let x: Vec<f32> = (0..c * h * w).map(|i| 2.0 * val(i, seed)).collect();
        let wt: Vec<f32> = (0..m * k).map(|i| val(i, seed + 1)).collect();
        let b: Vec<f32> = (0..m).map(|i| val(i, seed + 2)).collect();
        let (want, mag) = reference(&x, c, &win, &wt, m, Some(&b), e);
        let panels = blocked::pack(&wt, m, k);
        let mut got = vec![f32::NAN; m * oh * ow];
        let ran = blocked::conv(&x, c, &win, &panels, m, Some(&b), EPILOGUES[e], &mut got, threads);
        if !blocked::available() {
            prop_assert!(ran.is_none());
        }
        if ran.is_some() {
            close(&got, &want, &mag)?;
        }
    }
}

/// The panels' layout, by hand: 20 filters of 3 terms make two panels of 16 channels × 3
/// terms; term `t` of filter `o` is at `(o / 16)·48 + 16t + o % 16`, channels 20–31 zero.
#[test]
fn panels_layout() {
    let (m, k) = (20, 3);
    let w: Vec<f32> = (0..m * k).map(|i| i as f32 + 1.0).collect();
    let p = blocked::pack(&w, m, k);
    assert_eq!(p.len(), 2 * 16 * 3);
    // Filter 0, term 2 (value 3), at 16·2.
    assert_eq!(p[32], 3.0);
    // Filter 17 (second panel, lane 1), term 1: value 17·3 + 2 = 53, at 48 + 16 + 1.
    assert_eq!(p[65], 53.0);
    // Filter 19, term 0: 58 at 48 + 3.
    assert_eq!(p[51], 58.0);
    // Lanes 4–15 of the second panel hold no filter.
    for t in 0..3 {
        assert!(p[48 + 16 * t + 4..48 + 16 * (t + 1)]
            .iter()
            .all(|&v| v == 0.0));
    }
}

/// Through the inference plan: the layer as written (im2col or the implicit product) against
/// the plan (which prepares the blocked kernel's panels for these shapes where the CPU has
/// AVX-512), both within rounding of each other, on one image and two: a 7×7/2 stem with a
/// batch norm folded and a fused ReLU; a strided 3×3 over 20 channels to 24; a padded 3×3
/// with 40 output channels (two vectors and a half) and a fused SiLU on a 20×20 map.
#[test]
fn planned_matches_as_written() {
    let cases: [(&str, Vec<usize>, Vec<String>); 3] = [
        (
            "stem",
            vec![3, 40, 36],
            vec![
                "{id: conv, op: conv, out: 64, kernel: 7, stride: 2, padding: 3}".into(),
                "{id: bn, op: batchnorm}".into(),
                "{id: act, op: relu}".into(),
            ],
        ),
        (
            "strided",
            vec![20, 30, 30],
            vec![
                "{id: conv, op: conv, out: 24, kernel: 3, stride: 2, padding: 1, bias: true}"
                    .into(),
            ],
        ),
        (
            "forty",
            vec![12, 20, 20],
            vec![
                "{id: conv, op: conv, out: 40, kernel: 3, padding: 1, bias: true}".into(),
                "{id: act, op: silu}".into(),
            ],
        ),
    ];
    for (name, dims, nodes) in cases {
        for batch in [1, 2] {
            let (_, _, written, planned) =
                run_as_written_and_planned(batch, &[("x", dims.clone())], &nodes, false, (5, 6));
            let scale = written.data.iter().fold(0f32, |a, v| a.max(v.abs()));
            let worst = written
                .data
                .iter()
                .zip(&planned.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 1e-5 * scale.max(1.0),
                "{name}, batch {batch}: max |Δ| {worst} of {scale}"
            );
        }
    }
}
