//! A register-blocked direct convolution with output channels along the vector (issue #19's
//! sixth pass), after onnxruntime's MLAS NCHWc kernels on AVX-512: a register block holds `V`
//! vectors of 16 output channels × `P` output pixels of one output row (`V·P` ≤ 24
//! accumulators); each reduction step (input channel, tap row, tap column) loads the `V`
//! filter vectors from a panel packed once by [`pack`] (`[⌈m/16⌉][c][kh][kw][16]`, zeros past
//! `m`), broadcasts the `P` input values the tap reads (NCHW, from a zero-padded copy of the
//! planes, so that every tap is in bounds and horizontal strides of 1 and 2 are constant
//! offsets) and does `V·P` fused multiply-adds — no row-offset table and no per-row weight
//! broadcasts, which is where the implicit im2col product (`kernels::implicit`) spent its
//! integer work. The reduction runs in chunks of input channels whose filters stay in L1; the
//! partial sums of an output row wait in a small channel-interleaved buffer (`[OW][16·V]`),
//! which also receives the bias (in registers, with the last chunk) and the fused activation,
//! and is then written to the output planes (NCHW) by 16×16 transposes
//! (`kernels::depthwise`'s). Each output is the sum over its terms in the order channel, tap
//! row, tap column, one fused multiply-add each from zero, then the bias: the im2col product's
//! order, so results agree with it to rounding (the same bits where `gemm` does not split the
//! reduction). AVX-512 only ([`available`]); callers use the other kernels otherwise.

use super::{implicit, with_scratch, Pointwise, Window2d, KEPT_SCRATCH, PARALLEL_MACS};
use rayon::prelude::*;

/// Output channels per vector (one AVX-512 register of f32).
pub const LANES: usize = 16;
/// Most vectors of output channels per register block.
const V_MAX: usize = 4;
/// Bytes of filters a reduction chunk keeps in L1 while it sweeps an output row, when the
/// whole panel of a block does not fit in [`L1_WHOLE`].
const L1_FILTERS: usize = 16 << 10;
/// A block's whole panel up to this size is one chunk (the stems' 3 × 7 × 7 × 64: 37 KiB).
const L1_WHOLE: usize = 40 << 10;
/// Bytes of a row's partial sums (the row buffer) a segment of the row keeps in L1 between
/// the reduction chunks.
const SEGMENT_BYTES: usize = 16 << 10;
/// Multiply-adds a task has at least, when threads share the rows of a block of channels.
const MIN_TASK_MACS: usize = 1 << 17;

/// Output rows per band on one thread when there are several blocks of output channels.
const BAND_ROWS: usize = 8;

/// Whether this CPU runs [`conv`] (AVX-512, as the direct kernel's).
pub fn available() -> bool {
    super::direct::available()
}

/// Whether [`conv`] takes this window: horizontal stride 1 or 2 (any vertical stride,
/// padding and dilation) on a CPU with AVX-512.
pub fn applies(win: &Window2d) -> bool {
    matches!(win.stride[1], 1 | 2) && win.stride[0] >= 1 && available()
}

/// The packed length of `m` filters of `k` (`c·kh·kw`) terms: [`pack`]'s output.
pub fn packed_len(m: usize, k: usize) -> usize {
    m.div_ceil(LANES) * LANES * k
}

/// The filters `w` (`m × c × kh × kw`, PyTorch's layout; `k` = `c·kh·kw` terms each) as panels
/// of 16 output channels, `[⌈m/16⌉][k][16]`: term `t` of filter `o` at
/// `(o / 16)·16k + 16t + o % 16`, zeros for the channels past `m`.
pub fn pack(w: &[f32], m: usize, k: usize) -> Vec<f32> {
    assert!(w.len() >= m * k, "filters out of bounds");
    let mut p = vec![0.0f32; packed_len(m, k)];
    for o in 0..m {
        let base = (o / LANES) * LANES * k + o % LANES;
        for t in 0..k {
            p[base + LANES * t] = w[o * k + t];
        }
    }
    p
}

/// `out` (`m` planes `OH × OW`) = `epi(W ∗ x + bias)` for one image: `x` holds `channels`
/// planes of `win.input`, `panels` the filters packed by [`pack`] (`k` = `channels·kh·kw`),
/// `bias` at least `m` values; on up to `threads` threads (blocks of output channels × bands
/// of output rows). None (nothing written) where [`applies`] is false or the zero-padded
/// copy of the input and the per-task row buffers would outgrow the im2col buffer this
/// replaces (the layer's declared workspace). Returns the multiply-accumulates counted as the
/// im2col product's (`m · OH·OW · k`).
#[allow(clippy::too_many_arguments)]
pub fn conv(
    x: &[f32],
    channels: usize,
    win: &Window2d,
    panels: &[f32],
    m: usize,
    bias: Option<&[f32]>,
    epi: Option<Pointwise>,
    out: &mut [f32],
    threads: usize,
) -> Option<u64> {
    if !applies(win) {
        return None;
    }
    let [kh, kw] = win.kernel;
    let [sh, sw] = win.stride;
    let [dh, dw] = win.dilation;
    let [ih, iw] = win.input;
    let [oh, ow] = win.output;
    let [pt, pl] = win.pad;
    let k = channels * kh * kw;
    let n = oh * ow;
    if m == 0 || n == 0 || k == 0 {
        return None;
    }
    assert!(panels.len() >= packed_len(m, k), "panels out of bounds");
    assert!(bias.is_none_or(|b| b.len() >= m), "bias out of bounds");
    assert!(x.len() >= channels * ih * iw, "input out of bounds");
    // The padded plane spans every position a tap reads.
    let hp = (oh - 1) * sh + (kh - 1) * dh + 1;
    let wp = (ow - 1) * sw + (kw - 1) * dw + 1;
    let plane = hp * wp;
    let len = channels * plane;
    let blocks = m.div_ceil(LANES * V_MAX);
    let threads = if m * n * k < PARALLEL_MACS {
        1
    } else {
        threads.max(1)
    };
    // Bands of output rows: one per block on one thread; else enough tasks for every thread
    // twice over, none under `MIN_TASK_MACS`.
    let row_macs = (LANES * V_MAX).min(m) * ow * k;
    let bands = if threads == 1 {
        // Bands of `BAND_ROWS` output rows when there are several blocks of channels, every
        // block of a band in turn: the band's input rows are read from L2 by each block.
        if blocks > 1 {
            oh.div_ceil(BAND_ROWS)
        } else {
            1
        }
    } else {
        (2 * threads)
            .div_ceil(blocks)
            .min(oh)
            .min((oh * row_macs / MIN_TASK_MACS).max(1))
    };
    let band = oh.div_ceil(bands);
    let bands = oh.div_ceil(band);
    let row_buf = ow * LANES * V_MAX;
    if len.saturating_add(threads.min(blocks * bands).saturating_mul(row_buf)) > k.saturating_mul(n)
    {
        return None;
    }
    let mut padded = with_scratch(std::mem::take);
    padded.clear();
    padded.resize(len, 0.0);
    implicit::pad_planes(x, channels, [ih, iw], [pt, pl], [hp, wp], &mut padded);
    let out = &mut out[..m * n];
    let out_addr = out.as_mut_ptr() as usize;
    let geo = Geometry {
        channels,
        plane,
        wp,
        kernel: [kh, kw],
        dilation: [dh, dw],
        sh,
        sw,
        ow,
        n,
        m,
    };
    let padded_ref = &padded[..];
    let task = |t: usize| {
        let (r, b) = (t / blocks, t % blocks);
        let (y0, y1) = (r * band, ((r + 1) * band).min(oh));
        let oc0 = b * LANES * V_MAX;
        let mut buf = vec![0.0f32; row_buf];
        // SAFETY: the task's channels oc0.. × rows y0..y1 of `out` (inside it: `m · n`
        // elements) are its own (tasks are disjoint); the panels, bias and padded planes are
        // in bounds (asserted above and by the geometry).
        unsafe {
            geo.rows(
                padded_ref,
                panels,
                bias,
                epi,
                oc0,
                (y0, y1),
                &mut buf,
                out_addr as *mut f32,
            )
        };
    };
    let tasks = blocks * bands;
    if threads > 1 && tasks > 1 {
        (0..tasks).into_par_iter().for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
    if padded.capacity() <= KEPT_SCRATCH {
        with_scratch(|s| *s = padded);
    }
    Some((m * n * k) as u64)
}

/// The shape facts a task reads.
struct Geometry {
    channels: usize,
    /// Floats per padded plane, and per padded row.
    plane: usize,
    wp: usize,
    kernel: [usize; 2],
    dilation: [usize; 2],
    sh: usize,
    sw: usize,
    ow: usize,
    /// Output positions per plane, and output channels.
    n: usize,
    m: usize,
}

impl Geometry {
    /// Output channels `oc0 .. oc0 + 64` (those below `m`) × output rows `y0..y1`.
    ///
    /// # Safety
    /// `out` holds `m` planes of `n` elements, of which these channels × rows are the
    /// caller's alone; `padded` holds the padded planes; `buf` at least `ow · 64` floats.
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows(
        &self,
        padded: &[f32],
        panels: &[f32],
        bias: Option<&[f32]>,
        epi: Option<Pointwise>,
        oc0: usize,
        (y0, y1): (usize, usize),
        buf: &mut [f32],
        out: *mut f32,
    ) {
        let vectors = (self.m - oc0).div_ceil(LANES).min(V_MAX);
        // The bias of the block's channels, zeros past `m`.
        let mut bv = [0.0f32; LANES * V_MAX];
        if let Some(b) = bias {
            let top = (oc0 + LANES * V_MAX).min(self.m);
            bv[..top - oc0].copy_from_slice(&b[oc0..top]);
        }
        let bias = bias.map(|_| &bv[..]);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: per the caller's contract; the CPU has AVX-512 (`applies`).
        unsafe {
            avx512::rows(
                self,
                padded,
                panels,
                bias,
                epi,
                oc0,
                vectors,
                (y0, y1),
                buf,
                out,
            )
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (padded, panels, bias, epi, y0, y1, buf, out, vectors);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Geometry, Pointwise, L1_FILTERS, L1_WHOLE, LANES, SEGMENT_BYTES};
    use crate::kernels::depthwise::avx512::transpose;
    use std::arch::x86_64::*;

    /// See [`Geometry::rows`]; `vectors` (1–4) vectors of output channels from `oc0`.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn rows(
        g: &Geometry,
        padded: &[f32],
        panels: &[f32],
        bias: Option<&[f32]>,
        epi: Option<Pointwise>,
        oc0: usize,
        vectors: usize,
        (y0, y1): (usize, usize),
        buf: &mut [f32],
        out: *mut f32,
    ) {
        let [kh, kw] = g.kernel;
        let taps = kh * kw;
        let k = g.channels * taps;
        // Input channels per reduction chunk: all of them when the block's panel fits in
        // `L1_WHOLE`, else as many as `L1_FILTERS` of filters hold.
        let per_channel = 4 * LANES * vectors * taps;
        let cc = if per_channel * g.channels <= L1_WHOLE {
            g.channels
        } else {
            (L1_FILTERS / per_channel).clamp(1, g.channels)
        };
        let bs = LANES * vectors;
        // With more than one chunk, the row's partial sums are stored and reloaded once per
        // chunk: the row goes in segments whose part of the row buffer stays in L1 (a whole
        // row of 224 pixels × 64 channels is 56 KiB), each segment through every chunk.
        let p = match vectors {
            4 => 6,
            3 => 8,
            _ => 12,
        };
        let segments = if cc < g.channels {
            g.ow.div_ceil((SEGMENT_BYTES / (4 * bs) / p).max(1) * p)
        } else {
            1
        };
        let seg = g.ow.div_ceil(segments).div_ceil(p) * p;
        let (xp, fp, bp) = (padded.as_ptr(), panels.as_ptr(), buf.as_mut_ptr());
        // The panel of the block's first vector, and the floats between consecutive ones.
        let f0 = unsafe { fp.add(oc0 * k) };
        let fs = LANES * k;
        for oy in y0..y1 {
            for xs in (0..g.ow).step_by(seg) {
                let xe = (xs + seg).min(g.ow);
                let mut c0 = 0;
                while c0 < g.channels {
                    let c1 = (c0 + cc).min(g.channels);
                    let job = Job {
                        x: unsafe { xp.add(c0 * g.plane + oy * g.sh * g.wp) },
                        plane: g.plane,
                        wp: g.wp,
                        cc: c1 - c0,
                        taps: [kh, kw, g.dilation[0], g.dilation[1]],
                        f: unsafe { f0.add(c0 * taps * LANES) },
                        fs,
                        bs,
                        first: c0 == 0,
                        bias: bias.filter(|_| c1 == g.channels).map(|b| b.as_ptr()),
                    };
                    // SAFETY: every pixel block reads its taps inside the padded planes (their
                    // extent covers the last output column's taps) and writes `buf`'s pixels.
                    unsafe {
                        match (vectors, g.sw) {
                            (4, 1) => sweep::<4, 6, 1>(&job, xs, xe, bp),
                            (3, 1) => sweep::<3, 8, 1>(&job, xs, xe, bp),
                            (2, 1) => sweep::<2, 12, 1>(&job, xs, xe, bp),
                            (1, 1) => sweep::<1, 12, 1>(&job, xs, xe, bp),
                            (4, _) => sweep::<4, 6, 2>(&job, xs, xe, bp),
                            (3, _) => sweep::<3, 8, 2>(&job, xs, xe, bp),
                            (2, _) => sweep::<2, 12, 2>(&job, xs, xe, bp),
                            _ => sweep::<1, 12, 2>(&job, xs, xe, bp),
                        }
                    }
                    c0 = c1;
                }
            }
            if let Some(f) = epi {
                f.apply_here(&mut buf[..g.ow * bs]);
            }
            // The row's channels, 16 pixels × 16 channels at a time, into their planes.
            let mut x0 = 0;
            while x0 < g.ow {
                let px = (g.ow - x0).min(16);
                let mask: __mmask16 = if px == 16 {
                    0xffff
                } else {
                    ((1u32 << px) - 1) as __mmask16
                };
                for v in 0..vectors {
                    let mut t = [_mm512_setzero_ps(); 16];
                    for (r, t) in t.iter_mut().enumerate().take(px) {
                        // SAFETY: pixel x0 + r < ow of the row buffer, vector v.
                        *t = unsafe { _mm512_loadu_ps(bp.add((x0 + r) * bs + LANES * v)) };
                    }
                    unsafe { transpose(&mut t) };
                    for (l, t) in t.iter().enumerate() {
                        let oc = oc0 + LANES * v + l;
                        if oc >= g.m {
                            break;
                        }
                        // SAFETY: channel oc < m, row oy, pixels x0..x0 + px: this task's.
                        unsafe {
                            _mm512_mask_storeu_ps(out.add(oc * g.n + oy * g.ow + x0), mask, *t)
                        };
                    }
                }
                x0 += px;
            }
        }
    }

    /// One reduction chunk over one output row.
    struct Job {
        /// The chunk's first padded plane at the output row's first tap row.
        x: *const f32,
        plane: usize,
        wp: usize,
        /// Input channels in the chunk.
        cc: usize,
        /// kh, kw, dh, dw.
        taps: [usize; 4],
        /// The first vector's panel at the chunk's first channel; `fs` floats to the next.
        f: *const f32,
        fs: usize,
        /// Floats per pixel in the row buffer (16 per vector).
        bs: usize,
        /// Whether the chunk is the first (accumulators from zero, else from the buffer).
        first: bool,
        /// The block's bias when the chunk is the last.
        bias: Option<*const f32>,
    }

    /// Output columns `xs..xe` of the row in blocks of `P` pixels, then the remainder.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    #[inline]
    unsafe fn sweep<const V: usize, const P: usize, const S: usize>(
        j: &Job,
        xs: usize,
        xe: usize,
        buf: *mut f32,
    ) {
        let mut x0 = xs;
        while x0 + P <= xe {
            unsafe { tile::<V, P, S>(j, x0, buf) };
            x0 += P;
        }
        let rest = xe - x0;
        macro_rules! tail {
            ($($p:literal)*) => {
                match rest {
                    0 => {}
                    $($p => unsafe { tile::<V, $p, S>(j, x0, buf) },)*
                    _ => unreachable!("a remainder below P"),
                }
            };
        }
        match P {
            6 => tail!(1 2 3 4 5),
            8 => tail!(1 2 3 4 5 6 7),
            _ => tail!(1 2 3 4 5 6 7 8 9 10 11),
        }
    }

    /// `P` pixels from output column `x0`, `V` vectors of channels: the chunk's terms added
    /// to the accumulators (from zero or the buffer), stored to the buffer (with the bias).
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    #[inline]
    unsafe fn tile<const V: usize, const P: usize, const S: usize>(
        j: &Job,
        x0: usize,
        buf: *mut f32,
    ) {
        let [kh, kw, dh, dw] = j.taps;
        let buf = unsafe { buf.add(x0 * j.bs) };
        let mut acc = [[_mm512_setzero_ps(); P]; V];
        if !j.first {
            for (v, acc) in acc.iter_mut().enumerate() {
                for (p, a) in acc.iter_mut().enumerate() {
                    *a = unsafe { _mm512_loadu_ps(buf.add(p * j.bs + LANES * v)) };
                }
            }
        }
        let x = unsafe { j.x.add(x0 * S) };
        for c in 0..j.cc {
            for ky in 0..kh {
                // SAFETY: channel c's tap row ky, inside the padded planes.
                let (xr, fr) = unsafe {
                    (
                        x.add(c * j.plane + ky * dh * j.wp),
                        j.f.add((c * kh + ky) * kw * LANES),
                    )
                };
                for kx in 0..kw {
                    unsafe {
                        let (xt, ft) = (xr.add(kx * dw), fr.add(kx * LANES));
                        let mut wv = [_mm512_setzero_ps(); V];
                        for (v, wv) in wv.iter_mut().enumerate() {
                            *wv = _mm512_loadu_ps(ft.add(v * j.fs));
                        }
                        // Indexed: `acc[v][p]` stays in registers as the loops unroll.
                        #[allow(clippy::needless_range_loop)]
                        for p in 0..P {
                            let b = _mm512_set1_ps(*xt.add(p * S));
                            for v in 0..V {
                                acc[v][p] = _mm512_fmadd_ps(wv[v], b, acc[v][p]);
                            }
                        }
                    }
                }
            }
        }
        for (v, acc) in acc.iter().enumerate() {
            let b = j.bias.map(|b| unsafe { _mm512_loadu_ps(b.add(LANES * v)) });
            for (p, &a) in acc.iter().enumerate() {
                let y = match b {
                    Some(b) => _mm512_add_ps(a, b),
                    None => a,
                };
                unsafe { _mm512_storeu_ps(buf.add(p * j.bs + LANES * v), y) };
            }
        }
    }
}
