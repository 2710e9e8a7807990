//! Stride-1 convolutions by the implicit im2col (`kernels::implicit`, issue #19's fourth
//! pass) against a naive f64 convolution: random channels (reductions from 1 to 975, past
//! the direct kernel's old limit of 128), kernels of 1×1 to 5×5 (1×1 only when padded), every
//! padding of 0–2 on each side, dilations 1–3, one to four threads (tiles of output rows, or
//! of output channels on small maps), a bias or none and every fused epilogue; and
//! `kernels::conv_gemm`, which dispatches to it, on the same cases (the `gemm` fallback where
//! it does not run). It runs on DenseNet's, ResNet-50's and GoogLeNet's stride-1 shapes
//! where the CPU has AVX-512. Last, through the plan: 3×3 convolutions with 256 channels on
//! maps just under and at the size from which Winograd runs (`WINOGRAD_MIN_PLANE`, 100
//! positions), so that both paths are checked against f64.

use archscope::exec;
use archscope::kernels::{conv_gemm, direct, implicit, Pointwise, Window2d};
use archscope::{BuildOptions, Network};
use proptest::prelude::*;

/// The activations the plan fuses into a convolution, by index, with their f64 definitions.
pub(crate) const EPILOGUES: [Option<Pointwise>; 5] = [
    None,
    Some(Pointwise::Relu),
    Some(Pointwise::Relu6),
    Some(Pointwise::Silu),
    Some(Pointwise::Hardswish),
];

pub(crate) fn act(i: usize, v: f64) -> f64 {
    match i {
        0 => v,
        1 => v.max(0.0),
        2 => v.clamp(0.0, 6.0),
        3 => v / (1.0 + (-v).exp()),
        _ => v * (v + 3.0).clamp(0.0, 6.0) / 6.0,
    }
}

/// A reproducible value in [−1, 1) from an index and a seed.
pub(crate) fn val(i: usize, seed: u64) -> f32 {
    let mut z = (i as u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_add(0x632b_e59b);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// The convolution in f64 by its definition (any stride): (outputs, sums of the terms'
/// magnitudes), `m` planes of `win.output`. Shared with tests/blocked_conv.rs.
pub(crate) fn reference(
    x: &[f32],
    c: usize,
    win: &Window2d,
    w: &[f32],
    m: usize,
    bias: Option<&[f32]>,
    e: usize,
) -> (Vec<f64>, Vec<f64>) {
    let [kh, kw] = win.kernel;
    let [ih, iw] = win.input;
    let [oh, ow] = win.output;
    let (mut want, mut mag) = (Vec::new(), Vec::new());
    for o in 0..m {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut s = bias.map_or(0.0, |b| f64::from(b[o]));
                let mut a = s.abs();
                for ci in 0..c {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * win.stride[0] + ky * win.dilation[0]) as isize
                                - win.pad[0] as isize;
                            let ix = (ox * win.stride[1] + kx * win.dilation[1]) as isize
                                - win.pad[1] as isize;
                            if iy < 0 || ix < 0 || iy as usize >= ih || ix as usize >= iw {
                                continue;
                            }
                            let v = x[(ci * ih + iy as usize) * iw + ix as usize];
                            let t = f64::from(w[((o * c + ci) * kh + ky) * kw + kx]) * f64::from(v);
                            s += t;
                            a += t.abs();
                        }
                    }
                }
                want.push(act(e, s));
                mag.push(a);
            }
        }
    }
    (want, mag)
}

/// `got` within f32 rounding of the f64 reference: the terms' magnitudes bound the error.
pub(crate) fn close(got: &[f32], want: &[f64], mag: &[f64]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(mag).enumerate() {
        prop_assert!(
            (f64::from(g) - w).abs() <= 1e-5 * (1.0 + s),
            "element {}: {} vs {}",
            i,
            g,
            w
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, ..ProptestConfig::default() })]

    #[test]
    fn implicit_matches_f64(c in 1usize..40, m in 1usize..40, h in 1usize..30, w in 1usize..30,
                            kh in 1usize..6, kw in 1usize..6, pt in 0usize..3, pl in 0usize..3,
                            pb in 0usize..3, pr in 0usize..3, dh in 1usize..4, dw in 1usize..4,
                            threads in 1usize..5, bias in any::<bool>(), e in 0usize..5,
                            seed in 0u64..1000) {
        let (hh, ww) = (h + pt + pb, w + pl + pr);
        prop_assume!(hh > (kh - 1) * dh && ww > (kw - 1) * dw);
        let (oh, ow) = (hh - (kh - 1) * dh, ww - (kw - 1) * dw);
        let win = Window2d { kernel: [kh, kw], stride: [1, 1], pad: [pt, pl],
                             dilation: [dh, dw], input: [h, w], output: [oh, ow] };
        let x: Vec<f32> = (0..c * h * w).map(|i| 2.0 * val(i, seed)).collect();
        let wt: Vec<f32> = (0..m * c * kh * kw).map(|i| val(i, seed + 1)).collect();
        let b: Vec<f32> = (0..m).map(|i| val(i, seed + 2)).collect();
        let bias = bias.then_some(&b[..]);
        let (want, mag) = reference(&x, c, &win, &wt, m, bias, e);
        let macs = (m * oh * ow * c * kh * kw) as u64;
        let mut got = vec![f32::NAN; m * oh * ow];
        let ran = implicit::conv(&x, c, &win, &wt, m, bias, EPILOGUES[e], &mut got, threads);
        // Never without the direct kernel, nor for the 1×1 window `conv_gemm` reads in place.
        if !direct::available() || (kh, kw, pt, pl, pb, pr) == (1, 1, 0, 0, 0, 0) {
            prop_assert!(ran.is_none());
        }
        if let Some(counted) = ran {
            prop_assert_eq!(counted, macs);
            close(&got, &want, &mag)?;
        }
        let mut via = vec![f32::NAN; m * oh * ow];
        let counted = conv_gemm(&x, c, &win, &wt, m, bias, EPILOGUES[e], &mut via, threads > 1);
        prop_assert_eq!(counted, macs);
        close(&via, &want, &mag)?;
    }
}

/// The stride-1 shapes issue #19's fourth pass is for run here (not through im2col) wherever
/// the CPU has AVX-512, on one thread and two: DenseNet's 3×3 → 32 over 128 channels on
/// 14×14 and 7×7 maps (the 56×56 and 28×28 ones differ only in the number of row tiles),
/// ResNet-50's layer4 3×3 (512 channels on 7×7, cut to 96 here to keep the f64 reference
/// short) and a GoogLeNet-like 3×3 on a 28×28 map.
#[test]
fn runs_on_the_slow_shapes() {
    for (c, m, hw) in [(128, 32, 14), (128, 32, 7), (96, 96, 7), (64, 48, 28)] {
        let win = Window2d {
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
            input: [hw, hw],
            output: [hw, hw],
        };
        let x: Vec<f32> = (0..c * hw * hw).map(|i| val(i, 5)).collect();
        let wt: Vec<f32> = (0..m * c * 9).map(|i| val(i, 6)).collect();
        let b: Vec<f32> = (0..m).map(|i| val(i, 7)).collect();
        let (want, mag) = reference(&x, c, &win, &wt, m, Some(&b), 1);
        for threads in [1, 2] {
            let mut got = vec![f32::NAN; m * hw * hw];
            let ran = implicit::conv(
                &x,
                c,
                &win,
                &wt,
                m,
                Some(&b),
                Some(Pointwise::Relu),
                &mut got,
                threads,
            );
            assert_eq!(ran.is_some(), direct::available(), "{c} → {m} on {hw}×{hw}");
            if ran.is_some() {
                close(&got, &want, &mag).unwrap();
            }
        }
    }
}

/// 3×3 convolutions, 256 → 256 channels, as written and through the plan (which prepares them
/// for Winograd), on maps of 81 positions (9×9: the product) and 100 (10×10: Winograd), a
/// bias and a fused ReLU, against f64 within rounding.
#[test]
fn winograd_only_from_the_minimum_plane() {
    for hw in [9usize, 10] {
        let yaml = format!(
            "inputs: {{x: [256, {hw}, {hw}]}}\nnodes:\n  - {{id: conv, op: conv, out: 256, kernel: 3, padding: 1, bias: true}}\n  - {{id: act, op: relu}}\n"
        );
        let net = Network::from_yaml("wino.yaml", &yaml, &BuildOptions::default())
            .unwrap_or_else(|e| panic!("{yaml}\n{e}"));
        let w = exec::init_weights(&net, 3).unwrap();
        let x = exec::random_input(&net, 4).unwrap();
        let r = exec::run(&net, &w, &x, None).unwrap();
        let planned = exec::run_planned(&net, &w, &exec::plan(&net, &w), &x, None).unwrap();
        let win = Window2d {
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
            input: [hw, hw],
            output: [hw, hw],
        };
        let layer = &w.per_node[1];
        let (want, mag) = reference(
            &x[0].data,
            256,
            &win,
            &layer[0].data,
            256,
            Some(&layer[1].data),
            1,
        );
        close(&r.outputs[0].data, &want, &mag).unwrap();
        close(&planned.outputs[0].data, &want, &mag).unwrap();
    }
}
