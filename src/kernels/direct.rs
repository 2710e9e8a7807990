//! A direct matrix product for convolutions whose reduction is short: `out[m×n] = W[m×k] ·
//! X[k×n]`, then the bias and the fused activation, with `W` the filters as stored (row-major)
//! and `X` the input planes (1×1 convolutions) or a tile's im2col columns, read in place. The
//! `gemm` crate packs both operands into its own layout and writes its result before the bias
//! and activation pass over it; when `k` is 16 to a few hundred and the output is a large map,
//! packing and the second pass cost as much as the product. Here the output is computed in
//! register blocks of [`MR`] rows × up to 64 columns (24 AVX-512 accumulators), `k` steps of
//! one broadcast weight per row and one contiguous load of `X` per 16 columns each, and the
//! block is finished (bias added in registers, activation on the just-stored block while it is
//! in L1) before the next one. Each output is the sum over `k` in order, one fused multiply-add
//! per term from zero, then the bias added: the same operations as the `gemm` crate's path
//! when its reduction is not split (`k` ≤ its depth block), so results agree with it to
//! rounding. [`product_rows`] is the same kernel with each row of `X` at an offset from a
//! table instead of a fixed stride apart: `kernels::implicit` reads stride-1 convolutions'
//! im2col rows in place that way, with reductions of any length. AVX-512 only: [`available`]
//! says whether the CPU has it; callers use `gemm` otherwise.

use super::Epilogue;

/// Output rows (output channels) per register block.
pub const MR: usize = 6;
/// Most 16-column vectors per register block (64 columns).
const NV: usize = 4;
/// Columns per full register block.
pub const NB: usize = 16 * NV;
/// The longest reduction for which convolutions use [`product`] instead of `gemm`: past it
/// the 64 columns of `X` a register block reads no longer stay in L1 (48 KiB here), and `gemm`,
/// which blocks the reduction, is as fast or faster (`examples/bench_direct.rs`,
/// docs/PERFORMANCE.md).
pub const K_MAX: usize = 128;
/// Bytes of filters a chunk of rows keeps in L1 while it sweeps the columns.
const L1_FILTERS: usize = 16 << 10;
/// Terms of a reduction longer than [`K_MAX`] per pass over the output: a register block's
/// 64 columns of `X` for one chunk are 16 KiB, read from L1 by every row group of the chunk.
pub const KC: usize = 64;

/// Whether this CPU runs [`product`] (AVX-512 F/VL/BW/DQ and FMA, as `kernels::vectorised`'s
/// widest level).
#[inline]
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out[r·out_rs + j] = act(Σ_c w[r·k + c] · x[c·x_rs + j] + bias[r] + add[r·out_rs + j])`
/// for `r < m`, `j < n`, on the calling thread (`act` and `add` the epilogue's: the residual
/// laid out as `out`, added in registers as each block is stored): `w` is `m × k` row-major,
/// `x` holds `k` rows of at least `n` elements `x_rs` apart. Returns false (and writes nothing) when the CPU lacks AVX-512
/// ([`available`]).
///
/// # Safety
/// `out` must point to `m` rows of `n` writable elements, `out_rs` apart, that no other thread
/// accesses during the call and that do not overlap `w`, `x` or `bias`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn product<'e>(
    (m, n, k): (usize, usize, usize),
    w: &[f32],
    x: &[f32],
    x_rs: usize,
    out: *mut f32,
    out_rs: usize,
    bias: Option<&[f32]>,
    epi: impl Into<Epilogue<'e>>,
) -> bool {
    let epi = epi.into();
    if !available() {
        return false;
    }
    if m == 0 || n == 0 {
        return true;
    }
    assert!(w.len() >= m * k, "W out of bounds");
    assert!(k == 0 || x.len() >= (k - 1) * x_rs + n, "X out of bounds");
    assert!(bias.is_none_or(|b| b.len() >= m), "bias out of bounds");
    assert!(
        epi.add.is_none_or(|a| a.len() >= (m - 1) * out_rs + n),
        "residual out of bounds"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512 (checked above); the asserts keep the reads inside `w`, `x`
    // and `bias`; the writes are `out`'s block, per the contract.
    unsafe {
        avx512::product(
            (m, n, k),
            w,
            x,
            avx512::Strided(x_rs),
            out,
            out_rs,
            bias,
            epi,
        );
    }
    true
}

/// [`product`] with row `c` of `X` at `x[offs[c]..]` instead of `c · x_rs` (`offs.len() ≥ k`):
/// an implicit im2col, the rows being shifted views of (padded) input planes
/// (`kernels::implicit`). Returns false (and writes nothing) without AVX-512.
///
/// # Safety
/// As [`product`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn product_rows<'e>(
    (m, n, k): (usize, usize, usize),
    w: &[f32],
    x: &[f32],
    offs: &[usize],
    out: *mut f32,
    out_rs: usize,
    bias: Option<&[f32]>,
    epi: impl Into<Epilogue<'e>>,
) -> bool {
    let epi = epi.into();
    if !available() {
        return false;
    }
    if m == 0 || n == 0 {
        return true;
    }
    assert!(w.len() >= m * k, "W out of bounds");
    assert!(offs.len() >= k, "row offsets missing");
    assert!(
        offs[..k].iter().all(|&o| o + n <= x.len()),
        "X out of bounds"
    );
    assert!(bias.is_none_or(|b| b.len() >= m), "bias out of bounds");
    assert!(
        epi.add.is_none_or(|a| a.len() >= (m - 1) * out_rs + n),
        "residual out of bounds"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512 (checked above); the asserts keep the reads inside `w`, `x`
    // and `bias`; the writes are `out`'s block, per the contract.
    unsafe {
        avx512::product(
            (m, n, k),
            w,
            x,
            avx512::Table(offs.as_ptr()),
            out,
            out_rs,
            bias,
            epi,
        );
    }
    true
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Epilogue, KC, K_MAX, L1_FILTERS, MR, NB, NV};
    use std::arch::x86_64::*;

    /// Where row `c` of `X` starts.
    pub(super) trait Rows: Copy {
        /// The offset of row `c`.
        ///
        /// # Safety
        /// `c` below the product's `k`.
        unsafe fn at(self, c: usize) -> usize;
    }
    /// Rows a fixed stride apart.
    #[derive(Clone, Copy)]
    pub(super) struct Strided(pub usize);
    /// Rows at the offsets of a table of `k` entries.
    #[derive(Clone, Copy)]
    pub(super) struct Table(pub *const usize);
    impl Rows for Strided {
        #[inline(always)]
        unsafe fn at(self, c: usize) -> usize {
            c * self.0
        }
    }
    impl Rows for Table {
        #[inline(always)]
        unsafe fn at(self, c: usize) -> usize {
            // SAFETY: the table has `k` entries, per the contract.
            unsafe { *self.0.add(c) }
        }
    }

    /// See [`super::product`]; the CPU must have AVX-512 and the reads must be in bounds.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn product<X: Rows>(
        (m, n, k): (usize, usize, usize),
        w: &[f32],
        x: &[f32],
        x_rs: X,
        out: *mut f32,
        out_rs: usize,
        bias: Option<&[f32]>,
        epi: Epilogue,
    ) {
        let (w, x) = (w.as_ptr(), x.as_ptr());
        let res = epi.add.map(<[f32]>::as_ptr);
        // The reduction in chunks of `kc` (all of it up to `K_MAX`): a chunk's rows of a
        // column block of `X` (`kc` × 64 values) stay in L1 while every row group of the
        // filters' chunk reads them, instead of coming from L2 once per group of `MR` rows.
        // Between chunks the partial sums wait in `out` (stored and reloaded exactly: the
        // same additions in the same order as one pass over `k`).
        // Only where there are several column blocks: on one (a small map's tile), the
        // reloads cost more than the L2 reads they save (7×7 maps, 512 → 512: 66 against 53–57
        // GMAC/s, one thread, `examples/bench_conv.rs`).
        let kc = if k <= K_MAX || n <= NB { k.max(1) } else { KC };
        // Rows in chunks whose filters (of one reduction chunk) fit in a quarter of L1, kept
        // there while the chunk sweeps the columns.
        let chunk = (L1_FILTERS / (4 * kc)).max(1).div_ceil(MR) * MR;
        let mut m0 = 0;
        while m0 < m {
            let m1 = (m0 + chunk).min(m);
            let mut c0 = 0;
            loop {
                let c1 = (c0 + kc).min(k);
                let (first, last) = (c0 == 0, c1 == k);
                let mut j0 = 0;
                while j0 < n {
                    let cols = NB.min(n - j0);
                    let vectors = cols.div_ceil(16);
                    // The last vector's lanes that are columns (all of them but in the last block).
                    let tail = cols - 16 * (vectors - 1);
                    let mask: __mmask16 = if tail == 16 {
                        0xffff
                    } else {
                        (1u16 << tail) - 1
                    };
                    let mut r0 = m0;
                    while r0 < m1 {
                        let rows = MR.min(m1 - r0);
                        // SAFETY (every call): rows r0..r0+rows of W, columns j0..j0+cols of X
                        // and of `out` — inside the operands per the caller's contract.
                        unsafe {
                            let (wp, xp) = (w.add(r0 * k), x.add(j0));
                            let op = out.add(r0 * out_rs + j0);
                            let bp = bias.filter(|_| last).map(|b| b.as_ptr().add(r0));
                            let rp = res.filter(|_| last).map(|a| a.add(r0 * out_rs + j0));
                            let ks = (k, c0, c1, first);
                            macro_rules! go {
                                ($r:literal) => {
                                    match vectors {
                                        1 => block::<X, $r, 1>(
                                            ks,
                                            wp,
                                            xp,
                                            x_rs,
                                            op,
                                            out_rs,
                                            (bp, rp),
                                            mask,
                                        ),
                                        2 => block::<X, $r, 2>(
                                            ks,
                                            wp,
                                            xp,
                                            x_rs,
                                            op,
                                            out_rs,
                                            (bp, rp),
                                            mask,
                                        ),
                                        3 => block::<X, $r, 3>(
                                            ks,
                                            wp,
                                            xp,
                                            x_rs,
                                            op,
                                            out_rs,
                                            (bp, rp),
                                            mask,
                                        ),
                                        _ => block::<X, $r, NV>(
                                            ks,
                                            wp,
                                            xp,
                                            x_rs,
                                            op,
                                            out_rs,
                                            (bp, rp),
                                            mask,
                                        ),
                                    }
                                };
                            }
                            match rows {
                                1 => go!(1),
                                2 => go!(2),
                                3 => go!(3),
                                4 => go!(4),
                                5 => go!(5),
                                _ => go!(6),
                            }
                        }
                        r0 += rows;
                    }
                    if let (Some(f), true) = (epi.act, last) {
                        for r in m0..m1 {
                            // SAFETY: row r's columns j0..j0+cols of `out`, just written.
                            let seg = unsafe {
                                std::slice::from_raw_parts_mut(out.add(r * out_rs + j0), cols)
                            };
                            f.apply_here(seg);
                        }
                    }
                    j0 += cols;
                }
                if last {
                    break;
                }
                c0 = c1;
            }
            m0 = m1;
        }
    }

    /// One register block: `R` rows × `V` vectors of 16 columns, the last vector's lanes
    /// limited to `mask`, over the reduction's terms `c0..c1` of `k` (`w`'s row stride): from
    /// zero when `first`, else from the partial sums the previous chunk left in `out`; stored
    /// with the bias added, then the residual (laid out as `out`), when they are given.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block<X: Rows, const R: usize, const V: usize>(
        (k, c0, c1, first): (usize, usize, usize, bool),
        w: *const f32,
        x: *const f32,
        x_rs: X,
        out: *mut f32,
        out_rs: usize,
        (bias, res): (Option<*const f32>, Option<*const f32>),
        mask: __mmask16,
    ) {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        if !first {
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: row r of the block, its columns (the last vector masked), written
                // by the previous chunk.
                unsafe {
                    let o = out.add(r * out_rs);
                    for (v, a) in acc.iter_mut().enumerate() {
                        *a = if v + 1 == V {
                            _mm512_maskz_loadu_ps(mask, o.add(16 * v))
                        } else {
                            _mm512_loadu_ps(o.add(16 * v))
                        };
                    }
                }
            }
        }
        for c in c0..c1 {
            // SAFETY: row c of X, columns of this block (the last vector masked); one weight
            // per row of W.
            unsafe {
                let xr = x.add(x_rs.at(c));
                let mut xv = [_mm512_setzero_ps(); V];
                for (v, xv) in xv.iter_mut().enumerate() {
                    *xv = if v + 1 == V {
                        _mm512_maskz_loadu_ps(mask, xr.add(16 * v))
                    } else {
                        _mm512_loadu_ps(xr.add(16 * v))
                    };
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let wv = _mm512_set1_ps(*w.add(r * k + c));
                    for v in 0..V {
                        acc[v] = _mm512_fmadd_ps(wv, xv[v], acc[v]);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: row r of the block, its columns (the last vector masked).
            unsafe {
                let b = _mm512_set1_ps(bias.map_or(0.0, |b| *b.add(r)));
                let o = out.add(r * out_rs);
                for (v, &a) in acc.iter().enumerate() {
                    let mut y = if bias.is_some() {
                        _mm512_add_ps(a, b)
                    } else {
                        a
                    };
                    if let Some(rp) = res {
                        // The residual, as the add layer sums it: (product + bias) + r.
                        let rp = rp.add(r * out_rs + 16 * v);
                        let rv = if v + 1 == V {
                            _mm512_maskz_loadu_ps(mask, rp)
                        } else {
                            _mm512_loadu_ps(rp)
                        };
                        y = _mm512_add_ps(y, rv);
                    }
                    if v + 1 == V {
                        _mm512_mask_storeu_ps(o.add(16 * v), mask, y);
                    } else {
                        _mm512_storeu_ps(o.add(16 * v), y);
                    }
                }
            }
        }
    }
}
