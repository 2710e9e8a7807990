//! Max and average pooling of one output row, 16 output columns per AVX-512 vector (issue
//! #19's seventh pass). `layers::pool`'s window kernel carried blocks of 16 outputs through
//! the taps in plain Rust, and LLVM compiled them to scalar selects (`perf annotate`, third
//! pass): GoogLeNet's ceil-mode 3×3/2 pools and ResNet's stem pool ran at 3–12× onnxruntime's
//! time. Here every tap of a block is one (masked) load — for a horizontal stride of 2, two
//! loads and a `vpermt2ps` that keeps the even elements — and one vector operation: for a max,
//! the select "a larger value or a NaN replaces the best" (two compares and a blend, so ties
//! of ±0 and NaN payloads come out as PyTorch's scalar rule picks them, bit for bit); for an
//! average, an addition in the same (row, tap) order as the scalar sum. The last block of a
//! row is masked, so no load reads past the row. AVX-512 only ([`available`]); strides other
//! than 1 and 2 are left to the caller.

/// Output columns per vector.
pub const LANES: usize = 16;

/// Whether this CPU runs [`window_row`] (AVX-512, as the direct kernel's).
pub fn available() -> bool {
    super::direct::available()
}

/// `row[j] = op over the lines (in order) and kx in 0..kw of line[start + j·s + kx·dx]`, for
/// every `j` of `row`: the best by PyTorch's max rule from −∞ (`MAX`), else the sum from 0.
/// Every line must hold `start + (row.len() − 1)·s + (kw − 1)·dx + 1` values (every tap inside
/// it). Returns false (nothing written) where [`available`] is false or `s` is neither 1 nor
/// 2; the caller then runs its scalar loop.
pub fn window_row<const MAX: bool>(
    lines: &[&[f32]],
    start: usize,
    kw: usize,
    dx: usize,
    s: usize,
    row: &mut [f32],
) -> bool {
    if !matches!(s, 1 | 2) || !available() {
        return false;
    }
    if row.is_empty() {
        return true;
    }
    let span = start + (row.len() - 1) * s + (kw.max(1) - 1) * dx + 1;
    assert!(
        lines.iter().all(|l| l.len() >= span),
        "a pooling tap outside its row"
    );
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the CPU has AVX-512 (`available`); every tap is inside its line (asserted).
        unsafe {
            if s == 1 {
                avx512::window_row::<MAX, 1>(lines, start, kw, dx, row)
            } else {
                avx512::window_row::<MAX, 2>(lines, start, kw, dx, row)
            }
        };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (start, dx);
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::LANES;
    use std::arch::x86_64::*;

    /// See [`super::window_row`], for a horizontal stride `S` of 1 or 2.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    pub(super) unsafe fn window_row<const MAX: bool, const S: usize>(
        lines: &[&[f32]],
        start: usize,
        kw: usize,
        dx: usize,
        row: &mut [f32],
    ) {
        // The even elements of two vectors (stride 2).
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let init = _mm512_set1_ps(if MAX { f32::NEG_INFINITY } else { 0.0 });
        let len = row.len();
        let mut j0 = 0;
        while j0 < len {
            let nj = (len - j0).min(LANES);
            let mask = (((1u32 << nj) - 1) & 0xffff) as __mmask16;
            // Stride 2: the block's taps span 2·nj − 1 values, in two vectors.
            let count = 2 * nj - 1;
            let lo = (((1u32 << count.min(LANES)) - 1) & 0xffff) as __mmask16;
            let hi = (((1u32 << count.saturating_sub(LANES)) - 1) & 0xffff) as __mmask16;
            let mut acc = init;
            for line in lines {
                for kx in 0..kw {
                    let at = start + j0 * S + kx * dx;
                    // SAFETY: the taps of the block's nj columns are at..at + (nj − 1)·S + 1,
                    // inside the line (the caller's contract); masked lanes are not read.
                    let v = unsafe {
                        let p = line.as_ptr().add(at);
                        if S == 1 {
                            _mm512_maskz_loadu_ps(mask, p)
                        } else {
                            let a = _mm512_maskz_loadu_ps(lo, p);
                            let b = if hi == 0 {
                                _mm512_setzero_ps()
                            } else {
                                _mm512_maskz_loadu_ps(hi, p.wrapping_add(LANES))
                            };
                            _mm512_permutex2var_ps(a, even, b)
                        }
                    };
                    acc = if MAX {
                        // A larger value or a NaN replaces the best.
                        let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, acc)
                            | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                        _mm512_mask_mov_ps(acc, take, v)
                    } else {
                        _mm512_add_ps(acc, v)
                    };
                }
            }
            // SAFETY: columns j0..j0 + nj of the row.
            unsafe { _mm512_mask_storeu_ps(row.as_mut_ptr().add(j0), mask, acc) };
            j0 += nj;
        }
    }
}
