//! Depthwise convolutions sixteen channels at a time, channel-interleaved (AVX-512).
//!
//! The plane-at-a-time kernel of `layers::conv` vectorises along a plane's rows: on the mobile
//! models' small maps (7×7 to 28×28) a row is under one or two vectors, and every plane pays
//! its padded copy, its accumulator and its tail loop. Here a group of up to [`LANES`]
//! channels of one image is turned into a zero-padded band of rows in which position `(y, x)`
//! holds the group's sixteen channels side by side (one AVX-512 register), 16×16 transposes
//! going in and coming out. Every tap is then one fused multiply-add of a sixteen-channel
//! weight vector with one contiguous load, for blocks of up to eight output positions carried
//! in registers through all the taps; any stride, dilation and padding read the band at
//! `(oy·sy + ky·dy, ox·sx + kx·dx)`, with no phase planes. The output is computed by bands of
//! rows small enough to stay in L1/L2 (about [`BAND_FLOATS`] floats of input and output),
//! finished by the fused activation row by row while they are in L1 (whole vectors of
//! sixteen channels, not planes' tails), then written back to the planes.
//!
//! Each output is `Σ_taps w·x` in the taps' row-major order, one fused multiply-add per tap
//! from zero (padded taps add `w·0`), then the bias: the plane kernel's order, with each
//! product rounded together with its sum. [`available`] says whether the CPU runs it;
//! callers keep the plane kernel otherwise.
//!
//! On request the kernel also sums each channel's finished outputs while the rows are in L1
//! (the global average pool of a squeeze-and-excitation gate that reads them: the inference
//! plan's `Plan::means`): each output row's sixteen channels summed over its positions in
//! order, then the rows' sums added in row order.

use super::{Pointwise, Window2d};

/// Channels per group: one AVX-512 register of f32.
pub const LANES: usize = 16;

/// Floats of the input band and the output band together, per group and band of rows (128 KiB:
/// L2-resident, the weights and a few rows in L1).
pub const BAND_FLOATS: usize = 32 << 10;

/// Whether this CPU runs [`group`] (AVX-512, as `kernels::direct`).
#[inline]
pub fn available() -> bool {
    super::direct::available()
}

/// Width of the zero-padded band: the columns the outputs' taps read.
fn band_width(win: &Window2d) -> usize {
    (win.output[1] - 1)
        .saturating_mul(win.stride[1])
        .saturating_add((win.kernel[1] - 1).saturating_mul(win.dilation[1]))
        .saturating_add(1)
}

/// Rows of the input band for `rows` output rows.
fn band_rows(win: &Window2d, rows: usize) -> usize {
    (rows - 1)
        .saturating_mul(win.stride[0])
        .saturating_add((win.kernel[0] - 1).saturating_mul(win.dilation[0]))
        .saturating_add(1)
}

/// Output rows per band, and the floats of the working buffer (weights, bias, input band,
/// output band) for it; `None` when even one output row's band would exceed `limit` floats
/// (absurd padding or dilation: the caller's plane kernel runs).
pub fn plan(win: &Window2d, limit: usize) -> Option<(usize, usize)> {
    let [oh, ow] = win.output;
    if oh == 0 || ow == 0 || win.kernel.contains(&0) || win.stride.contains(&0) {
        return None;
    }
    let wp = band_width(win);
    let need = |r: usize| {
        band_rows(win, r)
            .checked_mul(wp)?
            .checked_add(r.checked_mul(ow)?)?
            .checked_mul(LANES)
    };
    let one = need(1)?;
    if one > limit {
        return None;
    }
    let mut rows = 1;
    while rows < oh && need(rows + 1).is_some_and(|n| n <= BAND_FLOATS.max(one)) {
        rows += 1;
    }
    let taps = win.kernel[0] * win.kernel[1];
    Some((rows, (taps + 1) * LANES + need(rows)?))
}

/// One group of `nc ≤ LANES` channels of one image: `src` holds their `nc` input planes (`H ×
/// W` each, contiguous), `f` their filters (`kh·kw` each), `bias` their biases; `dst` receives
/// the `nc` output planes (`H_out × W_out` each), finished by `epi`. `scratch` is the working
/// buffer (resized as [`plan`] says; its contents stale and overwritten). With `sums`, its
/// first `nc` elements receive each channel's sum of its finished output plane (after the
/// bias and `epi`): per output row the positions in order, then the rows in order. Returns
/// false (and writes nothing) without AVX-512 or when [`plan`] refuses the window within
/// `limit` floats.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn group(
    src: &[f32],
    nc: usize,
    f: &[f32],
    bias: Option<&[f32]>,
    win: &Window2d,
    epi: Option<Pointwise>,
    scratch: &mut Vec<f32>,
    dst: &mut [f32],
    limit: usize,
    sums: Option<&mut [f32]>,
) -> bool {
    if !available() || nc == 0 || nc > LANES {
        return false;
    }
    let Some((rows, floats)) = plan(win, limit) else {
        return false;
    };
    let ([kh, kw], [h, w], [oh, ow]) = (win.kernel, win.input, win.output);
    assert!(src.len() >= nc * h * w, "input planes out of bounds");
    assert!(f.len() >= nc * kh * kw, "filters out of bounds");
    assert!(bias.is_none_or(|b| b.len() >= nc), "bias out of bounds");
    assert!(dst.len() >= nc * oh * ow, "output planes out of bounds");
    assert!(
        sums.as_ref().is_none_or(|s| s.len() >= nc),
        "sums out of bounds"
    );
    scratch.resize(floats, 0.0);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512 (checked); the asserts and `plan`'s sizes keep every read
    // and write inside `src`, `f`, `bias`, `dst` and `scratch`.
    unsafe {
        avx512::group(src, nc, f, bias, win, epi, rows, scratch, dst, sums);
    }
    true
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::{band_rows, band_width, Pointwise, Window2d, LANES};
    use std::arch::x86_64::*;

    /// `v[i][j] ← v[j][i]` for a 16×16 block held in registers: pairs interleaved, then
    /// 4×4 blocks within 128-bit lanes, then the lanes across registers.
    #[inline(always)]
    pub(in crate::kernels) unsafe fn transpose(v: &mut [__m512; 16]) {
        let mut t = [_mm512_setzero_ps(); 16];
        for k in 0..8 {
            t[2 * k] = _mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]);
            t[2 * k + 1] = _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]);
        }
        // u[4q + c]: lane L holds column 4L + c of rows 4q..4q+3.
        let mut u = [_mm512_setzero_ps(); 16];
        for q in 0..4 {
            let b = 4 * q;
            u[b] = _mm512_shuffle_ps::<0x44>(t[b], t[b + 2]);
            u[b + 1] = _mm512_shuffle_ps::<0xEE>(t[b], t[b + 2]);
            u[b + 2] = _mm512_shuffle_ps::<0x44>(t[b + 1], t[b + 3]);
            u[b + 3] = _mm512_shuffle_ps::<0xEE>(t[b + 1], t[b + 3]);
        }
        for c in 0..4 {
            let (a, b, cc, d) = (u[c], u[4 + c], u[8 + c], u[12 + c]);
            let x = _mm512_shuffle_f32x4::<0x88>(a, b);
            let y = _mm512_shuffle_f32x4::<0xDD>(a, b);
            let z = _mm512_shuffle_f32x4::<0x88>(cc, d);
            let w = _mm512_shuffle_f32x4::<0xDD>(cc, d);
            v[c] = _mm512_shuffle_f32x4::<0x88>(x, z);
            v[8 + c] = _mm512_shuffle_f32x4::<0xDD>(x, z);
            v[4 + c] = _mm512_shuffle_f32x4::<0x88>(y, w);
            v[12 + c] = _mm512_shuffle_f32x4::<0xDD>(y, w);
        }
    }

    #[inline(always)]
    fn mask(len: usize) -> __mmask16 {
        if len >= 16 {
            0xFFFF
        } else {
            ((1u32 << len) - 1) as __mmask16
        }
    }

    /// `dst[j·16 + l] = src[l·plane + j]` for `j < len ≤ 16`, `l < nc` (0 for `l ≥ nc`).
    /// Loops of sixteen with the bounds as conditions, so that they unroll and the block stays
    /// in registers (a loop to `nc` indexed the array in memory).
    #[inline(always)]
    unsafe fn interleave(src: *const f32, plane: usize, nc: usize, len: usize, dst: *mut f32) {
        let m = mask(len);
        let mut v = [_mm512_setzero_ps(); 16];
        for (l, r) in v.iter_mut().enumerate() {
            if l < nc {
                *r = _mm512_maskz_loadu_ps(m, src.add(l * plane));
            }
        }
        transpose(&mut v);
        for (j, r) in v.iter().enumerate() {
            if j < len {
                _mm512_storeu_ps(dst.add(j * LANES), *r);
            }
        }
    }

    /// `dst[l·plane + j] = src[j·16 + l]` for `j < len ≤ 16`, `l < nc`.
    #[inline(always)]
    unsafe fn deinterleave(src: *const f32, len: usize, nc: usize, dst: *mut f32, plane: usize) {
        let mut v = [_mm512_setzero_ps(); 16];
        for (j, r) in v.iter_mut().enumerate() {
            if j < len {
                *r = _mm512_loadu_ps(src.add(j * LANES));
            }
        }
        transpose(&mut v);
        let m = mask(len);
        for (l, r) in v.iter().enumerate() {
            if l < nc {
                _mm512_mask_storeu_ps(dst.add(l * plane), m, *r);
            }
        }
    }

    /// `P` consecutive outputs of one row: every tap's weight vector times the band at the
    /// taps' positions, accumulated in registers, plus the bias, stored interleaved at `out`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block<const P: usize>(
        band: *const f32,
        wl: *const f32,
        bias: __m512,
        out: *mut f32,
        [kh, kw]: [usize; 2],
        [dy, dx]: [usize; 2],
        sx: usize,
        wp: usize,
    ) {
        let mut acc = [_mm512_setzero_ps(); P];
        let step = sx * LANES;
        for ky in 0..kh {
            let row = band.add(ky * dy * wp * LANES);
            for kx in 0..kw {
                let wv = _mm512_loadu_ps(wl.add((ky * kw + kx) * LANES));
                let at = row.add(kx * dx * LANES);
                for (p, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(wv, _mm512_loadu_ps(at.add(p * step)), *a);
                }
            }
        }
        for (p, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(p * LANES), _mm512_add_ps(*a, bias));
        }
    }

    /// See [`super::group`]: the sizes were checked, `scratch` holds [`super::plan`]'s floats
    /// for bands of `rows` output rows, and the CPU has AVX-512.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn group(
        src: &[f32],
        nc: usize,
        f: &[f32],
        bias: Option<&[f32]>,
        win: &Window2d,
        epi: Option<Pointwise>,
        rows: usize,
        scratch: &mut [f32],
        dst: &mut [f32],
        sums: Option<&mut [f32]>,
    ) {
        let ([kh, kw], [h, w], [oh, ow]) = (win.kernel, win.input, win.output);
        let ([sy, sx], [pt, pl], dil) = (win.stride, win.pad, win.dilation);
        let taps = kh * kw;
        let wp = band_width(win);
        let (wl, rest) = scratch.split_at_mut(taps * LANES);
        let (bl, rest) = rest.split_at_mut(LANES);
        let (inb, outb) = rest.split_at_mut(band_rows(win, rows) * wp * LANES);
        // The weights interleaved: tap t's sixteen channels side by side (0 past `nc`).
        for t in 0..taps {
            for l in 0..LANES {
                wl[t * LANES + l] = if l < nc { f[l * taps + t] } else { 0.0 };
            }
        }
        for (l, b) in bl.iter_mut().enumerate() {
            *b = match bias {
                Some(b) if l < nc => b[l],
                _ => 0.0,
            };
        }
        let bv = _mm512_loadu_ps(bl.as_ptr());
        let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
        let (lo, hi) = (pl.min(wp), (pl + w).min(wp));
        // The channels' sums of the finished outputs (`sums`): the rows' sums, in row order.
        let want_sums = sums.is_some();
        let mut total = _mm512_setzero_ps();
        let mut oy0 = 0;
        while oy0 < oh {
            let nr = rows.min(oh - oy0);
            // The input band: padded rows oy0·sy.., each wp positions of sixteen channels.
            for (i, line) in inb[..band_rows(win, nr) * wp * LANES]
                .chunks_exact_mut(wp * LANES)
                .enumerate()
            {
                let iy = (oy0 * sy + i) as isize - pt as isize;
                if iy < 0 || iy >= h as isize {
                    line.fill(0.0);
                    continue;
                }
                line[..lo * LANES].fill(0.0);
                line[hi * LANES..].fill(0.0);
                let row = sp.add(iy as usize * w);
                let lp = line.as_mut_ptr().add(lo * LANES);
                let mut x0 = 0;
                while x0 < hi.saturating_sub(lo) {
                    let len = 16.min(hi - lo - x0);
                    interleave(row.add(x0), h * w, nc, len, lp.add(x0 * LANES));
                    x0 += 16;
                }
            }
            // The outputs, interleaved, by blocks of 8 positions, then one of the rest.
            let op = outb.as_mut_ptr();
            for ry in 0..nr {
                let band = inb.as_ptr().add(ry * sy * wp * LANES);
                let out = op.add(ry * ow * LANES);
                let mut ox = 0;
                while ox + 8 <= ow {
                    let b = band.add(ox * sx * LANES);
                    block::<8>(
                        b,
                        wl.as_ptr(),
                        bv,
                        out.add(ox * LANES),
                        [kh, kw],
                        dil,
                        sx,
                        wp,
                    );
                    ox += 8;
                }
                // The rest of the row as one block, so that short rows (7 and 14 outputs)
                // keep several independent accumulators.
                let b = band.add(ox * sx * LANES);
                let o = out.add(ox * LANES);
                let wp_ = wl.as_ptr();
                match ow - ox {
                    0 => {}
                    1 => block::<1>(b, wp_, bv, o, [kh, kw], dil, sx, wp),
                    2 => block::<2>(b, wp_, bv, o, [kh, kw], dil, sx, wp),
                    3 => block::<3>(b, wp_, bv, o, [kh, kw], dil, sx, wp),
                    4 => block::<4>(b, wp_, bv, o, [kh, kw], dil, sx, wp),
                    5 => block::<5>(b, wp_, bv, o, [kh, kw], dil, sx, wp),
                    6 => block::<6>(b, wp_, bv, o, [kh, kw], dil, sx, wp),
                    _ => block::<7>(b, wp_, bv, o, [kh, kw], dil, sx, wp),
                }
                // The fused activation on the row while it is in L1, as whole vectors (the
                // lanes past `nc` hold zeros: no weights, no bias).
                if let Some(e) = epi {
                    e.apply_here(std::slice::from_raw_parts_mut(out, ow * LANES));
                }
                if want_sums {
                    let mut row = _mm512_setzero_ps();
                    for p in 0..ow {
                        row = _mm512_add_ps(row, _mm512_loadu_ps(out.add(p * LANES)));
                    }
                    total = _mm512_add_ps(total, row);
                }
                // Back to the planes: row oy0 + ry of each channel.
                let mut x0 = 0;
                while x0 < ow {
                    let len = 16.min(ow - x0);
                    deinterleave(
                        out.add(x0 * LANES),
                        len,
                        nc,
                        dp.add((oy0 + ry) * ow + x0),
                        oh * ow,
                    );
                    x0 += 16;
                }
            }
            oy0 += nr;
        }
        if let Some(s) = sums {
            let mut t = [0.0f32; LANES];
            _mm512_storeu_ps(t.as_mut_ptr(), total);
            s[..nc].copy_from_slice(&t[..nc]);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn transpose_is_a_transpose() {
            if !super::super::available() {
                return;
            }
            let m: Vec<f32> = (0..256).map(|i| i as f32).collect();
            let mut got = [0.0f32; 256];
            // SAFETY: the CPU has AVX-512 (checked); loads and stores inside the arrays.
            unsafe {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
                unsafe fn run(m: &[f32], got: &mut [f32; 256]) {
                    let mut v = [_mm512_setzero_ps(); 16];
                    for (i, r) in v.iter_mut().enumerate() {
                        *r = _mm512_loadu_ps(m.as_ptr().add(16 * i));
                    }
                    transpose(&mut v);
                    for (i, r) in v.iter().enumerate() {
                        _mm512_storeu_ps(got.as_mut_ptr().add(16 * i), *r);
                    }
                }
                run(&m, &mut got);
            }
            for i in 0..16 {
                for j in 0..16 {
                    assert_eq!(got[i * 16 + j], (j * 16 + i) as f32, "({i}, {j})");
                }
            }
        }
    }
}
