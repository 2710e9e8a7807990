//! The direct product with its reduction split into chunks (`kernels::direct::KC` terms per
//! pass over the output once `k` is past `direct::K_MAX`, issue #19's fifth pass): between
//! chunks the partial sums wait in the output and are reloaded, so every output must still be
//! the one sequence of fused multiply-adds over `k` in order from zero, then the bias — the
//! same bits as a scalar `f32::mul_add` loop — and, with every fused epilogue, within f32
//! rounding of the f64 definition. Shapes straddle the chunk boundaries (`k` from `K_MAX` to
//! several chunks, partial last chunks, row groups of 1 to 6, column tails), for rows of `X`
//! a fixed stride apart (`product_direct`) and at offsets from a table (`direct::product_rows`,
//! the implicit im2col's form).

use crate::direct_product::{act, val, EPILOGUES};
use archscope::kernels::{direct, product_direct};
use proptest::prelude::*;

/// The kernel's arithmetic in scalar form: `Σ_c w·x` by `mul_add` in order from 0, then the
/// bias added (when there is one).
fn sequential(w: &[f32], x: impl Fn(usize) -> f32, k: usize, bias: Option<f32>) -> f32 {
    let s = (0..k).fold(0.0f32, |s, c| w[c].mul_add(x(c), s));
    bias.map_or(s, |b| s + b)
}

/// `got` within the f32 bound of a `k`-term sum (γ_k times the terms' magnitudes) of the f64
/// reference, after the epilogue `e`.
fn check(
    got: f32,
    terms: impl Iterator<Item = f64>,
    bias: Option<f32>,
    k: usize,
    e: usize,
) -> Result<(), TestCaseError> {
    let (mut s, mut a) = (
        bias.map_or(0.0, f64::from),
        bias.map_or(0.0, |b| f64::from(b).abs()),
    );
    for t in terms {
        s += t;
        a += t.abs();
    }
    let want = act(e, s);
    let tol = (k as f64 + 4.0) * f64::from(f32::EPSILON) * (1.0 + a);
    prop_assert!(
        (f64::from(got) - want).abs() <= tol,
        "{} vs {} (tolerance {})",
        got,
        want,
        tol
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Rows of `X` a fixed stride apart: identity and ReLU give the scalar loop's bits, every
    /// epilogue is within rounding of f64.
    #[test]
    fn chunked_reduction_strided(m in 1usize..20, k in direct::K_MAX - 2..direct::K_MAX + 5 * direct::KC,
                                 n in 1usize..140, pad in 0usize..9, bias in any::<bool>(),
                                 e in 0usize..7, seed in 0u64..1000) {
        let x_rs = n + pad;
        let w: Vec<f32> = (0..m * k).map(|i| val(i, seed)).collect();
        let x: Vec<f32> = (0..k * x_rs).map(|i| 2.0 * val(i, seed + 1)).collect();
        let b: Vec<f32> = (0..m).map(|i| val(i, seed + 2)).collect();
        let bias = bias.then_some(&b[..]);
        let mut out = vec![f32::NAN; m * n];
        if !product_direct((m, n, k), &w, &x, x_rs, &mut out, bias, EPILOGUES[e].1) {
            return Ok(()); // no AVX-512: convolutions take `gemm`, tested elsewhere
        }
        for r in 0..m {
            let wr = &w[r * k..(r + 1) * k];
            let br = bias.map(|b| b[r]);
            for j in 0..n {
                let got = out[r * n + j];
                if e <= 1 {
                    let s = sequential(wr, |c| x[c * x_rs + j], k, br);
                    let want = if e == 1 { s.max(0.0) } else { s };
                    prop_assert_eq!(got.to_bits(), want.to_bits(), "row {} column {}", r, j);
                }
                let terms = (0..k).map(|c| f64::from(wr[c]) * f64::from(x[c * x_rs + j]));
                check(got, terms, br, k, e)?;
            }
        }
    }

    /// Rows of `X` at offsets from a table (shifted, overlapping views of one buffer, as the
    /// implicit im2col reads padded planes), into an output whose rows are wider than `n`.
    #[test]
    fn chunked_reduction_table(m in 1usize..14, k in direct::K_MAX - 2..direct::K_MAX + 4 * direct::KC,
                               n in 1usize..100, wide in 0usize..5, bias in any::<bool>(),
                               e in 0usize..7, seed in 0u64..1000) {
        let len = 3 * k + n + 7;
        let x: Vec<f32> = (0..len).map(|i| 2.0 * val(i, seed + 1)).collect();
        let offs: Vec<usize> = (0..k).map(|c| (c * 3 + (seed as usize + c * c) % 7) % (len - n + 1)).collect();
        let w: Vec<f32> = (0..m * k).map(|i| val(i, seed)).collect();
        let b: Vec<f32> = (0..m).map(|i| val(i, seed + 2)).collect();
        let bias = bias.then_some(&b[..]);
        let out_rs = n + wide;
        let mut out = vec![f32::NAN; m * out_rs];
        // SAFETY: `out` holds m rows of n elements out_rs apart, owned here.
        let ran = unsafe {
            direct::product_rows((m, n, k), &w, &x, &offs, out.as_mut_ptr(), out_rs, bias,
                                 EPILOGUES[e].1)
        };
        if !ran {
            return Ok(());
        }
        for r in 0..m {
            let wr = &w[r * k..(r + 1) * k];
            let br = bias.map(|b| b[r]);
            for j in 0..n {
                let got = out[r * out_rs + j];
                if e <= 1 {
                    let s = sequential(wr, |c| x[offs[c] + j], k, br);
                    let want = if e == 1 { s.max(0.0) } else { s };
                    prop_assert_eq!(got.to_bits(), want.to_bits(), "row {} column {}", r, j);
                }
                let terms = (0..k).map(|c| f64::from(wr[c]) * f64::from(x[offs[c] + j]));
                check(got, terms, br, k, e)?;
            }
            // Past each row's n columns: untouched.
            for j in n..out_rs {
                prop_assert!(out[r * out_rs + j].is_nan(), "row {} column {} written", r, j);
            }
        }
    }
}
