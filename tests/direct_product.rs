//! The direct short-reduction product (`kernels::direct`, issue #19) against naive
//! references in f64: the kernel itself on random `m × k × n` shapes (row blocks of 1 to 6,
//! column tails of 1 to 63, strided rows of `X`, every fused epilogue the plan has), and
//! against the `gemm` path it replaces; then convolutions through the YAML front end that run
//! it — 1×1 (read in place) and small-kernel ones over im2col columns, grouped or not, with
//! a bias or a batch norm folded by the plan and a fused activation, at sizes where the tiles
//! run on several threads — and every such model as written and planned, which must agree bit
//! for bit. Last, sigmoid and SiLU over slices (`kernels::sigmoid`), which the SiLU epilogues
//! run through, against f64.

use archscope::exec::Tensor;
use archscope::kernels::{direct, product_direct, product_gemm, Pointwise};
use proptest::prelude::*;

/// The activations the plan fuses into a convolution, by index, with their f64 definitions.
pub(crate) const EPILOGUES: [(&str, Option<Pointwise>); 7] = [
    ("identity", None),
    ("relu", Some(Pointwise::Relu)),
    ("relu6", Some(Pointwise::Relu6)),
    ("silu", Some(Pointwise::Silu)),
    ("hardswish", Some(Pointwise::Hardswish)),
    ("sigmoid", Some(Pointwise::Sigmoid)),
    ("hardsigmoid", Some(Pointwise::Hardsigmoid)),
];

pub(crate) fn act(i: usize, v: f64) -> f64 {
    match i {
        0 => v,
        1 => v.max(0.0),
        2 => v.clamp(0.0, 6.0),
        3 => v / (1.0 + (-v).exp()),
        4 => v * (v + 3.0).clamp(0.0, 6.0) / 6.0,
        5 => 1.0 / (1.0 + (-v).exp()),
        _ => (v + 3.0).clamp(0.0, 6.0) / 6.0,
    }
}

/// A reproducible value in [−1, 1) from an index and a seed.
pub(crate) fn val(i: usize, seed: u64) -> f32 {
    let mut z = (i as u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_add(0x632b_e59b);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// `got` within f32 rounding of the f64 reference: the terms' magnitudes bound the error.
fn close(got: &[f32], want: &[f64], mag: &[f64]) -> Result<(), TestCaseError> {
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
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The kernel on its own: `out = epi(W·X + bias)` against f64, and against the `gemm`
    /// path within rounding. Rows of `X` are `n + pad` apart (im2col tiles and input planes
    /// are read in place).
    #[test]
    fn product_matches_f64_and_gemm(m in 1usize..40, k in 0usize..140, n in 1usize..200,
                                    pad in 0usize..20, bias in any::<bool>(), e in 0usize..7,
                                    seed in 0u64..1000) {
        let x_rs = n + pad;
        let w: Vec<f32> = (0..m * k).map(|i| val(i, seed)).collect();
        let x: Vec<f32> = (0..k * x_rs).map(|i| 2.0 * val(i, seed + 1)).collect();
        let b: Vec<f32> = (0..m).map(|i| val(i, seed + 2)).collect();
        let bias = bias.then_some(&b[..]);
        let epi = EPILOGUES[e].1;
        let mut direct = vec![f32::NAN; m * n];
        let ran = product_direct((m, n, k), &w, &x, x_rs, &mut direct, bias, epi);
        // It runs exactly where the CPU has AVX-512; elsewhere convolutions use `gemm`.
        prop_assert_eq!(ran, direct::available());
        let mut gemm = vec![f32::NAN; m * n];
        product_gemm((m, n, k), &w, &x, x_rs, &mut gemm, bias, epi);
        let (mut want, mut mag) = (Vec::new(), Vec::new());
        for r in 0..m {
            for j in 0..n {
                let mut s = bias.map_or(0.0, |b| f64::from(b[r]));
                let mut a = s.abs();
                for c in 0..k {
                    let t = f64::from(w[r * k + c]) * f64::from(x[c * x_rs + j]);
                    s += t;
                    a += t.abs();
                }
                want.push(act(e, s));
                mag.push(a);
            }
        }
        close(&gemm, &want, &mag)?;
        if ran {
            close(&direct, &want, &mag)?;
        }
    }
}

/// Builds `x: [c, h, w]` → `nodes` (YAML flow mappings), runs it as written and planned with
/// seeded weights and input (the two must agree bit for bit unless the plan folds a batch
/// norm), and returns (input, the first layer's weight and bias (empty when none), output as
/// written, output planned).
fn run_model(
    batch: usize,
    chw: [usize; 3],
    nodes: &[String],
    bitwise: bool,
) -> (Tensor, Vec<f32>, Vec<f32>, Tensor, Tensor) {
    let (x, w, out, planned) = crate::common::run_as_written_and_planned(
        batch,
        &[("x", chw.to_vec())],
        nodes,
        bitwise,
        (13, 17),
    );
    let layer = &w[1];
    let bias = layer.get(1).map_or(Vec::new(), |t| t.data.clone());
    (x[0].clone(), layer[0].data.clone(), bias, out, planned)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Convolutions whose reduction (input channels per group × taps) is short enough for the
    /// direct kernel, and some past it (`gemm`): 1×1 ones read in place, larger kernels, strides
    /// and paddings over im2col columns; groups; a bias or a batch norm; a fused activation.
    /// Up to 64×64 maps and 48 channels, so that many products are split over threads.
    #[test]
    fn convolutions_through_the_plan(n in 1usize..3, cg in 1usize..48, og in 1usize..48,
                                     g in 1usize..4, h in 1usize..64, w in 1usize..64,
                                     k in prop::sample::select(vec![1usize, 1, 1, 2, 3]),
                                     s in 1usize..3, p in 0usize..2, bn in any::<bool>(),
                                     e in 0usize..7) {
        prop_assume!(h + 2 * p >= k && w + 2 * p >= k);
        let (cin, cout) = (cg * g, og * g);
        let mut nodes = vec![format!(
            "{{id: conv, op: conv, out: {cout}, kernel: {k}, stride: {s}, padding: {p}, groups: {g}, bias: {}}}",
            !bn
        )];
        if bn {
            nodes.push("{id: bn, op: batchnorm}".to_string());
        }
        if e > 0 {
            nodes.push(format!("{{id: act, op: {}}}", EPILOGUES[e].0));
        }
        let (x, f, bias, y, planned) = run_model(n, [cin, h, w], &nodes, !bn);
        let (oh, ow) = (y.shape[2], y.shape[3]);
        let (mut want, mut mag) = (Vec::new(), Vec::new());
        for b in 0..n {
            for o in 0..cout {
                let gi = o / og;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = bias.get(o).map_or(0.0, |&v| f64::from(v));
                        let mut a = acc.abs();
                        for ci in 0..cg {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (oy * s + ky) as isize - p as isize;
                                    let ix = (ox * s + kx) as isize - p as isize;
                                    if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                        continue;
                                    }
                                    let c = gi * cg + ci;
                                    let v = x.data[((b * cin + c) * h + iy as usize) * w + ix as usize];
                                    let t = f64::from(f[((o * cg + ci) * k + ky) * k + kx]) * f64::from(v);
                                    acc += t;
                                    a += t.abs();
                                }
                            }
                        }
                        // The seeded batch norm is the identity (γ 1, β 0, mean 0, var 1) up
                        // to its ε: x / √(1 + 1e-5).
                        if bn {
                            acc /= (1.0f64 + 1e-5).sqrt();
                        }
                        want.push(act(e, acc));
                        mag.push(a);
                    }
                }
            }
        }
        close(&y.data, &want, &mag)?;
        close(&planned.data, &want, &mag)?;
    }
}

/// Sigmoid and SiLU (`kernels::sigmoid` on AVX-512: a refined reciprocal estimate and a fused
/// exponential; the divided scalar form elsewhere) against f64 on slices of every length from
/// 0 to 70 (the masked tail), values across the whole range (±100, ±10^30, ±∞): within
/// 4·2^−24 relative of the exact value, or 2^−126 absolute (the subnormal sigmoid below −87,
/// 0 below −88; times |x| for SiLU); NaN kept, σ(±∞) = 1, 0.
#[test]
fn sigmoid_and_silu_against_f64() {
    let mut values: Vec<f32> = (0..20_000)
        .map(|i| -100.0 + 200.0 * i as f32 / 20_000.0)
        .collect();
    values.extend([
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        1e30,
        -1e30,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ]);
    values.extend((0..2000).map(|i| val(i, 9) * 8.0));
    for (f, silu) in [(Pointwise::Sigmoid, false), (Pointwise::Silu, true)] {
        for len in 0..=70 {
            for chunk in values
                .chunks(len.max(1))
                .take(if len == 0 { 1 } else { usize::MAX })
            {
                let chunk = &chunk[..len.min(chunk.len())];
                let mut got = chunk.to_vec();
                f.apply(&mut got);
                for (&x, &g) in chunk.iter().zip(&got) {
                    let xd = f64::from(x);
                    let s = 1.0 / (1.0 + (-xd).exp());
                    let want = if silu { xd * s } else { s };
                    let g = f64::from(g);
                    if x == f32::NEG_INFINITY && silu {
                        // −∞ · 0: NaN, as in PyTorch's x / (1 + e^−x).
                        assert!(g.is_nan(), "silu(−∞) = {g}");
                        continue;
                    }
                    assert!(
                        (g - want).abs()
                            <= 4.0 * f64::from(f32::EPSILON) / 2.0 * want.abs()
                                + f64::from(f32::MIN_POSITIVE) * (1.0 + xd.abs().min(1e3))
                            || (silu && x.is_infinite() && g == want),
                        "{f:?}({x}) = {g}, want {want}"
                    );
                }
            }
        }
        let mut nan = [f32::NAN; 3];
        f.apply(&mut nan);
        assert!(nan.iter().all(|v| v.is_nan()), "{f:?}(NaN) = {nan:?}");
    }
}
