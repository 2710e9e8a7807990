//! Sigmoid and SiLU over a slice without a division per element, where the CPU has AVX-512:
//! `σ(v) = 1 / (1 + e^−v)` with the reciprocal from `vrcp14ps` (relative error below 2^−14)
//! refined by one Newton step (`r + r·(1 − d·r)`, error about 2^−28 before rounding, so the
//! result is within an ulp or two of the divided one), and `e^−v` the Cephes polynomial of
//! [`super::exp_f32`] with fused multiply-adds and `vscalefps`, sixteen lanes at a time (the
//! slice's tail through masked loads and stores, so every element takes the same path). The
//! scalar form, vectorised by the compiler, took about 45 instructions per 16 values, half of
//! them the exponential's separate multiplies and adds and its `2^n` built from integer bits.
//! The argument of the exponential is capped at 88 (`e^88` is finite), so that `1 + e^−v`
//! never overflows into an infinity that the Newton step would turn into NaN, and below
//! v = −88 the sigmoid is 0 (the divided form gives a subnormal down to −88.7, then 0; SiLU
//! there is −0 against at most 10^−36). NaN stays NaN; σ(+∞) = 1, σ(−∞) = 0. Elsewhere
//! [`apply`] returns false and the caller divides.

/// `xs[i] = σ(xs[i])`, or `xs[i] · σ(xs[i])` (SiLU) when `times_x`, if the CPU has AVX-512
/// (then true); false (nothing written) otherwise.
#[inline(always)]
pub fn apply(xs: &mut [f32], times_x: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if super::direct::available() {
            // SAFETY: the CPU has AVX-512 (checked).
            unsafe { avx512::apply(xs, times_x) };
            return true;
        }
    }
    let _ = (xs, times_x);
    false
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// See [`super::apply`]; the CPU must have AVX-512.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    pub(super) unsafe fn apply(xs: &mut [f32], times_x: bool) {
        let n = xs.len();
        let p = xs.as_mut_ptr();
        let mut i = 0;
        while i < n {
            let lanes = (n - i).min(16);
            let mask: __mmask16 = if lanes == 16 {
                0xffff
            } else {
                (1u16 << lanes) - 1
            };
            // SAFETY: lanes i..i + lanes of `xs` (the rest masked off).
            unsafe {
                let v = _mm512_maskz_loadu_ps(mask, p.add(i));
                let s = sigmoid(v);
                let y = if times_x { _mm512_mul_ps(v, s) } else { s };
                _mm512_mask_storeu_ps(p.add(i), mask, y);
            }
            i += lanes;
        }
    }

    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    #[inline]
    fn sigmoid(v: __m512) -> __m512 {
        // −v capped at 88; `min(88, x)` returns x when x is NaN (its second operand).
        let neg = _mm512_sub_ps(_mm512_setzero_ps(), v);
        let e = exp(_mm512_min_ps(_mm512_set1_ps(88.0), neg));
        let one = _mm512_set1_ps(1.0);
        let d = _mm512_add_ps(one, e);
        let r = _mm512_rcp14_ps(d);
        // r + r·(1 − d·r)
        let s = _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, one), r);
        // 0 below v = −88 (where the capped e^88 would give 1/e^88 whatever v): kept where
        // v ≥ −88 or NaN.
        _mm512_maskz_mov_ps(
            _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(v, _mm512_set1_ps(-88.0)),
            s,
        )
    }

    /// `e^x` for x ≤ 88 or NaN: [`crate::kernels::exp_f32`]'s reduction and polynomial
    /// (Cephes' `expf`), sixteen lanes, with fused multiply-adds and `vscalefps` for the
    /// `2^n` (which handles the subnormal range itself): about half the instructions of the
    /// scalar form, rounding within an ulp or two of it.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    #[inline]
    fn exp(x: __m512) -> __m512 {
        let c = _mm512_set1_ps;
        // Below −104 the result is 0 (scalef of n = −150 underflows); NaN kept (second
        // operand of max).
        let xc = _mm512_max_ps(c(-104.0), x);
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(xc, c(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, c(0.693_359_4), xc);
        let r = _mm512_fnmadd_ps(n, c(-2.121_944_4e-4), r);
        let mut p = c(1.987_569_2e-4);
        for k in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ] {
            p = _mm512_fmadd_ps(p, r, c(k));
        }
        // p·r² + r + 1
        let y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), c(1.0));
        _mm512_scalef_ps(y, n)
    }
}
