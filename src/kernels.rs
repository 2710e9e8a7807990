//! Shared kernel building blocks: GEMM (the `gemm` crate, AVX-512 where the CPU has it, rayon
//! threads for large products), the tiled convolution (im2col per output tile, GEMM, bias and
//! fused activation while the tile is in cache), im2col / col2im, the input positions a sliding
//! window reads, the element-wise functions (`Pointwise`: the activation formulas) and NumPy
//! broadcasting. Layers compose these in their `forward`, which reads and reports through [`Ctx`]
//! (MACs tallied, auxiliary outputs, the fused epilogue, and output buffers recycled from dead
//! tensors by the executor's [`Recycler`]).

use rayon::prelude::*;

use crate::tensor::Tensor;

pub mod blocked;
pub mod depthwise;
pub mod direct;
pub mod implicit;
pub mod pooling;
pub mod sigmoid;

/// Products smaller than this many multiply-accumulates run on one thread.
const PARALLEL_MACS: usize = 1 << 18;

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]`, with explicit row/column strides (in elements) for the
/// operands; `dst` is row-major and contiguous. Returns the MACs performed.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    lhs: &[f32],
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    rhs_cs: usize,
    dst: &mut [f32],
    accumulate: bool,
) -> u64 {
    if m == 0 || n == 0 {
        return 0;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return 0;
    }
    // Bounds: the last element each operand's strides reach.
    assert!(
        (m - 1) * lhs_rs + (k - 1) * lhs_cs < lhs.len(),
        "lhs out of bounds"
    );
    assert!(
        (k - 1) * rhs_rs + (n - 1) * rhs_cs < rhs.len(),
        "rhs out of bounds"
    );
    assert!(m * n <= dst.len(), "dst out of bounds");
    let par = if m * n * k >= PARALLEL_MACS {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every access inside the three slices; `dst` does not alias
    // the operands (it is a distinct `&mut`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
    (m * n * k) as u64
}

/// Runs `f` compiled for AVX-512 (x86-64-v4) when the CPU has it. The binary targets baseline
/// x86-64 (SSE2), so loops the compiler vectorises would otherwise use 128-bit registers;
/// called through this, `f` is inlined into a function compiled with the wider instruction set
/// (the `gemm` crate dispatches its own kernels the same way, at run time). The closure must
/// be marked `#[inline(always)]` (`vectorised(#[inline(always)] || …)`), and so must the
/// functions and closures it calls: LLVM does not inline a large closure by itself, and a
/// closure left out of line is compiled for the baseline (a profile showed every such loop in
/// 128-bit SSE until the closures were marked).
#[inline(always)]
pub fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("fma")
        {
            #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
            unsafe fn v4<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: the CPU has every feature `v4` is compiled for (checked above).
            return unsafe { v4(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn v3<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: as above, for AVX2 and FMA.
            return unsafe { v3(f) };
        }
    }
    f()
}

/// `y = W · x` for a row-major `W` (`y.len()` rows of `x.len()`), rows shared out over rayon's
/// threads in blocks; each dot product keeps 16 partial sums (vectorised). Returns the
/// multiply-accumulates performed.
pub fn matvec(w: &[f32], x: &[f32], y: &mut [f32]) -> u64 {
    let k = x.len();
    assert!(w.len() >= y.len() * k, "W out of bounds");
    let dot = std::convert::identity(
        #[inline(always)]
        |row: &[f32]| -> f32 {
            let mut acc = [0.0f32; 16];
            let (body, tail) = (row.chunks_exact(16), row.len() / 16 * 16);
            for (r, v) in body.zip(x.chunks_exact(16)) {
                let (r, v): (&[f32; 16], &[f32; 16]) = (
                    r.try_into().expect("chunks of 16"),
                    v.try_into().expect("chunks of 16"),
                );
                for l in 0..16 {
                    acc[l] += r[l] * v[l];
                }
            }
            let mut s: f32 = acc.iter().sum();
            for (r, v) in row[tail..].iter().zip(&x[tail..]) {
                s += r * v;
            }
            s
        },
    );
    if y.len() * k >= PARALLEL_MACS {
        y.par_chunks_mut(16).enumerate().for_each(|(b, ys)| {
            vectorised(
                #[inline(always)]
                || {
                    for (j, v) in ys.iter_mut().enumerate() {
                        let r = b * 16 + j;
                        *v = dot(&w[r * k..(r + 1) * k]);
                    }
                },
            )
        });
    } else {
        vectorised(
            #[inline(always)]
            || {
                for (r, v) in y.iter_mut().enumerate() {
                    *v = dot(&w[r * k..(r + 1) * k]);
                }
            },
        )
    }
    (y.len() * k) as u64
}

/// `Σ xs` with 16 running sums (vectorised: a sum in element order would be one long chain
/// of dependent additions), added pairwise at the end. Rounds differently from the
/// sequential sum, as PyTorch's own vectorised reductions do; NaN and infinities propagate.
#[inline(always)]
pub fn sum_f32(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let body = xs.len() / 16 * 16;
    for c in xs[..body].chunks_exact(16) {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    for (a, &v) in acc.iter_mut().zip(&xs[body..]) {
        *a += v;
    }
    let mut w = 8;
    while w > 0 {
        let (lo, hi) = acc.split_at_mut(w);
        for (a, &b) in lo.iter_mut().zip(&hi[..w]) {
            *a += b;
        }
        w /= 2;
    }
    acc[0]
}

/// Geometry of a 2-D sliding window.
#[derive(Debug, Clone, Copy)]
pub struct Window2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Padding before (top, left).
    pub pad: [usize; 2],
    pub dilation: [usize; 2],
    pub input: [usize; 2],
    pub output: [usize; 2],
}

impl Window2d {
    /// Input coordinate read by output position `o`, tap `t` along `axis`, or None in padding.
    #[inline]
    pub fn tap(&self, axis: usize, o: usize, t: usize) -> Option<usize> {
        let pos =
            (o * self.stride[axis] + t * self.dilation[axis]) as isize - self.pad[axis] as isize;
        (pos >= 0 && (pos as usize) < self.input[axis]).then_some(pos as usize)
    }
}

/// The output columns `[lo, hi)` of one kernel tap along an axis whose input position is inside
/// the image, for `o·stride + off` with `off = tap·dilation − pad`.
#[inline]
pub(crate) fn valid_range(
    off: isize,
    stride: usize,
    input: usize,
    output: usize,
) -> (usize, usize) {
    let lo = if off >= 0 {
        0
    } else {
        ((-off) as usize).div_ceil(stride)
    };
    let hi = if input as isize - off <= 0 {
        0
    } else {
        ((input as isize - off) as usize)
            .div_ceil(stride)
            .min(output)
    };
    (lo.min(output), hi.max(lo).min(output))
}

/// im2col of channels `c0..c1` of one image `x` (C×H×W) for output positions `n0..n1` (flat
/// `oy·W_out + ox`): rows (c, ky, kx), `n1 − n0` columns, into `cols`; padding reads 0. Whole
/// output rows are copied as slices when the stride is 1.
#[allow(clippy::too_many_arguments)]
pub fn im2col_block(
    x: &[f32],
    c0: usize,
    c1: usize,
    w: &Window2d,
    n0: usize,
    n1: usize,
    cols: &mut [f32],
) {
    vectorised(
        #[inline(always)]
        || im2col_block_here(x, c0, c1, w, n0, n1, cols),
    )
}

#[inline(always)]
fn im2col_block_here(
    x: &[f32],
    c0: usize,
    c1: usize,
    w: &Window2d,
    n0: usize,
    n1: usize,
    cols: &mut [f32],
) {
    let [kh, kw] = w.kernel;
    let [_, ow] = w.output;
    let [ih, iw] = w.input;
    let (sx, dx, px) = (w.stride[1], w.dilation[1], w.pad[1] as isize);
    let nb = n1 - n0;
    let mut row_index = 0;
    for c in c0..c1 {
        let src = &x[c * ih * iw..(c + 1) * ih * iw];
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &mut cols[row_index * nb..(row_index + 1) * nb];
                row_index += 1;
                let off = (kx * dx) as isize - px;
                let (lo, hi) = valid_range(off, sx, iw, ow);
                let mut p = n0;
                while p < n1 {
                    let (oy, ox0) = (p / ow, p % ow);
                    let ox1 = ow.min(ox0 + (n1 - p));
                    let seg = &mut row[p - n0..p - n0 + (ox1 - ox0)];
                    match w.tap(0, oy, ky) {
                        None => seg.fill(0.0),
                        Some(iy) => {
                            let line = &src[iy * iw..(iy + 1) * iw];
                            let (a, b) = (lo.clamp(ox0, ox1), hi.clamp(ox0, ox1));
                            seg[..a - ox0].fill(0.0);
                            seg[b - ox0..].fill(0.0);
                            if a < b {
                                let dst = &mut seg[a - ox0..b - ox0];
                                let s = (a as isize * sx as isize + off) as usize;
                                match sx {
                                    1 => dst.copy_from_slice(&line[s..s + (b - a)]),
                                    2 => gather::<2>(dst, &line[s..]),
                                    _ => dst
                                        .iter_mut()
                                        .zip(line[s..].iter().step_by(sx))
                                        .for_each(|(d, &v)| *d = v),
                                }
                            }
                        }
                    }
                    p += ox1 - ox0;
                }
            }
        }
    }
}

/// `dst[j] = src[j·S]`, written so that the compiler vectorises the interleaved loads.
#[inline(always)]
fn gather<const S: usize>(dst: &mut [f32], src: &[f32]) {
    let Some((last, body)) = dst.split_last_mut() else {
        return;
    };
    for (d, group) in body.iter_mut().zip(src.chunks_exact(S)) {
        *d = group[0];
    }
    *last = src[body.len() * S];
}

/// im2col of one image `x` (C×H×W): rows (c, ky, kx), columns (oy, ox); padding reads 0.
pub fn im2col(x: &[f32], channels: usize, w: &Window2d, cols: &mut [f32]) {
    let taps = w.kernel[0] * w.kernel[1];
    let plane = w.output[0] * w.output[1];
    cols[..channels * taps * plane]
        .par_chunks_mut(taps * plane)
        .enumerate()
        .for_each(|(c, rows)| im2col_block(x, c, c + 1, w, 0, plane, rows));
}

/// Adds `bias[row]` to, then applies `epi` to (its residual laid out as the matrix), rows
/// `m0..m1`, columns `n0..n1` of the row-major `m × n` matrix at `out`.
///
/// # Safety
/// `out` must point to `m1 · n` writable elements, and no other thread may access that tile.
unsafe fn finish_tile(
    out: *mut f32,
    n: usize,
    (m0, m1, n0, n1): (usize, usize, usize, usize),
    bias: Option<&[f32]>,
    epi: Epilogue,
) {
    if bias.is_none() && epi.is_none() {
        return;
    }
    vectorised(
        #[inline(always)]
        || {
            for r in m0..m1 {
                // SAFETY: inside the tile, per the contract.
                let seg = unsafe { std::slice::from_raw_parts_mut(out.add(r * n + n0), n1 - n0) };
                if let Some(b) = bias {
                    let v = b[r];
                    seg.iter_mut().for_each(|x| *x += v);
                }
                epi.at(r * n + n0).apply_here(seg);
            }
        },
    )
}

/// Bytes of im2col columns one tile aims for (about half a core's L2), so that a tile's
/// columns are still in cache when the GEMM packs them.
const TILE_BYTES: usize = 256 << 10;

/// Output positions per thread from which a convolution is tiled by columns (see
/// [`conv_gemm_tiled`]).
const COL_TILE_MIN: usize = 256;

/// A non-transposed convolution of one image and group, computed by output tiles: for each tile
/// of output positions, im2col of just those positions, one single-threaded GEMM (the `gemm`
/// crate) into the output, then the bias and the fused epilogue `epi` while the tile is in
/// cache. Tiles run on rayon's threads when `parallel` and the product is large. `x` holds the
/// group's `channels` input planes, `w` its `m × k` filters (k = channels·kh·kw), `out` its
/// `m` output planes. A 1×1, stride-1, unpadded window reads `x` directly (no im2col); other
/// stride-1 windows go through [`implicit::conv`] where it runs. Returns the
/// multiply-accumulates performed.
#[allow(clippy::too_many_arguments)]
pub fn conv_gemm<'e>(
    x: &[f32],
    channels: usize,
    win: &Window2d,
    w: &[f32],
    m: usize,
    bias: Option<&[f32]>,
    epi: impl Into<Epilogue<'e>>,
    out: &mut [f32],
    parallel: bool,
) -> u64 {
    let epi: Epilogue = epi.into();
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    // Stride 1 (not the in-place 1×1): the implicit im2col where the CPU has the direct
    // kernel (faster on every stride-1 shape measured, docs/PERFORMANCE.md "fourth pass").
    if let Some(macs) = implicit::conv(x, channels, win, w, m, bias, epi, out, threads) {
        return macs;
    }
    conv_gemm_tiled(x, channels, win, w, m, bias, epi, out, threads, TILE_BYTES)
}

/// [`conv_gemm`] with the thread count and tile budget explicit (tests force small tiles).
#[allow(clippy::too_many_arguments)]
pub fn conv_gemm_tiled<'e>(
    x: &[f32],
    channels: usize,
    win: &Window2d,
    w: &[f32],
    m: usize,
    bias: Option<&[f32]>,
    epi: impl Into<Epilogue<'e>>,
    out: &mut [f32],
    threads: usize,
    tile_bytes: usize,
) -> u64 {
    let epi: Epilogue = epi.into();
    let k = channels * win.kernel[0] * win.kernel[1];
    let n = win.output[0] * win.output[1];
    if m == 0 || n == 0 {
        return 0;
    }
    let out = &mut out[..m * n];
    if k == 0 {
        out.fill(0.0);
        // SAFETY: the whole of `out`, on this thread.
        unsafe { finish_tile(out.as_mut_ptr(), n, (0, m, 0, n), bias, epi) };
        return 0;
    }
    let direct = win.kernel == [1, 1]
        && win.stride == [1, 1]
        && win.pad == [0, 0]
        && win.input == win.output;
    let macs = (m * n * k) as u64;
    // A short reduction: the direct kernel, where the CPU has it (else `gemm`).
    let short = k <= direct::K_MAX;
    let threads = if m * n * k < PARALLEL_MACS {
        1
    } else {
        threads.max(1)
    };
    // Large images: column tiles of about `tile_bytes` of im2col columns (or of output) each,
    // a multiple of the thread count of them, each im2col'd on its own. Small images (the
    // deep layers): one im2col, and row (output channel) tiles, one per thread — column tiles
    // there would be narrower than the GEMM's micro-kernel is wide.
    let col_mode = threads == 1 || n >= COL_TILE_MIN * threads;
    let (mut nb, mut col_tiles) = (n, 1);
    if col_mode {
        let per_col = 4 * k.max(m);
        col_tiles = n.div_ceil((tile_bytes / per_col).max(64));
        col_tiles = col_tiles.div_ceil(threads) * threads;
        nb = n.div_ceil(col_tiles).div_ceil(16) * 16;
        col_tiles = n.div_ceil(nb);
    }
    let out_addr = out.as_mut_ptr() as usize;
    // Every tile writes only its own rows m0..m1 × columns n0..n1 of `out` (m × n, row-major):
    // tiles are disjoint, and `out` outlives the parallel loops below.
    let write_tile =
        |(m0, m1, n0, n1): (usize, usize, usize, usize), rhs: &[f32], rhs_rs: usize| {
            let base = out_addr as *mut f32;
            assert!(m1 <= m && n1 <= n, "tile out of bounds");
            // SAFETY: the tile lies inside `out` (asserted) and belongs to this call alone.
            if short
                && unsafe {
                    direct::product(
                        (m1 - m0, n1 - n0, k),
                        &w[m0 * k..m1 * k],
                        rhs,
                        rhs_rs,
                        base.add(m0 * n + n0),
                        n,
                        bias.map(|b| &b[m0..m1]),
                        epi.at(m0 * n + n0),
                    )
                }
            {
                return;
            }
            // SAFETY: as above.
            unsafe {
                gemm_into(
                    m1 - m0,
                    n1 - n0,
                    k,
                    &w[m0 * k..m1 * k],
                    rhs,
                    rhs_rs,
                    base.add(m0 * n + n0),
                    n,
                );
                finish_tile(base, n, (m0, m1, n0, n1), bias, epi);
            }
        };
    if col_mode {
        let tile = |t: usize, scratch: &mut Vec<f32>| {
            let (n0, n1) = (t * nb, ((t + 1) * nb).min(n));
            if direct {
                write_tile((0, m, n0, n1), &x[n0..], n);
            } else {
                scratch.resize(k * (n1 - n0), 0.0);
                im2col_block(x, 0, channels, win, n0, n1, scratch);
                write_tile((0, m, n0, n1), scratch, n1 - n0);
            }
        };
        if threads > 1 && col_tiles > 1 {
            (0..col_tiles)
                .into_par_iter()
                .for_each(|t| with_scratch(|s| tile(t, s)));
        } else {
            with_scratch(|s| (0..col_tiles).for_each(|t| tile(t, s)));
        }
    } else {
        let mb = m.div_ceil(threads);
        let run = |rhs: &[f32]| {
            (0..m.div_ceil(mb)).into_par_iter().for_each(|t| {
                write_tile((t * mb, ((t + 1) * mb).min(m), 0, n), rhs, n);
            })
        };
        if direct {
            run(x);
        } else {
            // Taken out of this thread's scratch so that the tiles' threads can read it.
            let mut cols = with_scratch(std::mem::take);
            cols.resize(k * n, 0.0);
            im2col(x, channels, win, &mut cols);
            run(&cols);
            if cols.capacity() <= KEPT_SCRATCH {
                with_scratch(|s| *s = cols);
            }
        }
    }
    macs
}

/// The largest im2col buffer (elements) a thread keeps for the next call.
const KEPT_SCRATCH: usize = 16 << 20;

thread_local! {
    /// Each thread's im2col buffer, kept between calls (a fresh one per tile would be
    /// allocated, page-faulted and freed a few hundred times per forward pass).
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer, its contents stale (whatever the last user
/// left): the buffer is kept for the next call unless it grew past [`KEPT_SCRATCH`] elements.
/// For kernels that run per plane on rayon's threads (the depthwise convolution), so that a
/// buffer is not allocated and page-faulted per task.
pub fn with_thread_scratch<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    with_scratch(|s| {
        let r = f(s);
        if s.capacity() > KEPT_SCRATCH {
            *s = Vec::new();
        }
        r
    })
}

/// Runs `f` with this thread's scratch buffer.
fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

/// Winograd F(2×2, 3×3) filter transform: `U[ξ][o][c] = (G·g·Gᵀ)[ξ / 4][ξ % 4]` for every 3×3
/// filter `g` of the `m × c` filters `w` (PyTorch layout), G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]].
pub fn winograd_filters(w: &[f32], m: usize, c: usize) -> Vec<f32> {
    let mut u = vec![0.0f32; 16 * m * c];
    for oc in 0..m * c {
        let g = &w[oc * 9..oc * 9 + 9];
        // t = G·g (4×3), then t·Gᵀ (4×4).
        let mut t = [[0.0f32; 3]; 4];
        for j in 0..3 {
            let (a, b, d) = (g[j], g[3 + j], g[6 + j]);
            t[0][j] = a;
            t[1][j] = 0.5 * (a + b + d);
            t[2][j] = 0.5 * (a - b + d);
            t[3][j] = d;
        }
        for (i, row) in t.iter().enumerate() {
            let (a, b, d) = (row[0], row[1], row[2]);
            let v = [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d];
            for (j, x) in v.into_iter().enumerate() {
                u[(i * 4 + j) * m * c + oc] = x;
            }
        }
    }
    u
}

/// Bytes of transformed inputs and products one Winograd block aims for.
const WINOGRAD_BYTES: usize = 4 << 20;

/// A 3×3, stride-1, undilated, ungrouped convolution of one image by Winograd F(2×2, 3×3):
/// 2×2 output tiles, each from a 4×4 input patch; 16 GEMMs `M_ξ = U_ξ · V_ξ` replace the
/// direct product, 2.25× fewer multiplications. Blocks of whole tile rows keep their
/// transformed inputs and products in cache; the transforms work on a whole tile row at once
/// (vectorised across tiles). Blocks run on rayon's threads (or, when there are fewer blocks
/// than threads, the phases of each block do). `x`: `c` planes `h × w`; `u`:
/// [`winograd_filters`]; `out`: `m` planes `oh × ow`; `pad`: top and left padding (zeros;
/// bottom and right follow from the output size). Bias and `epi` finish the output. Returns
/// the multiplications done by the GEMMs.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)] // index-form transforms
pub fn conv_winograd<'e>(
    x: &[f32],
    c: usize,
    [h, w]: [usize; 2],
    [pt, pl]: [usize; 2],
    u: &[f32],
    m: usize,
    [oh, ow]: [usize; 2],
    bias: Option<&[f32]>,
    epi: impl Into<Epilogue<'e>>,
    out: &mut [f32],
) -> u64 {
    let epi: Epilogue = epi.into();
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    let tiles = th * tw;
    if tiles == 0 || m == 0 {
        return 0;
    }
    assert!(x.len() >= c * h * w && u.len() >= 16 * m * c && out.len() >= m * oh * ow);
    let threads = rayon::current_num_threads();
    let rows_per_block = (WINOGRAD_BYTES / (64 * (c + m) * tw)).clamp(1, th);
    let blocks = th.div_ceil(rows_per_block);
    let inner = blocks < threads;
    let out_addr = out.as_mut_ptr() as usize;
    // One input row, zero-padded: `2·tw + 2` values from column −pl.
    let lw = 2 * tw + 2;
    let block = |b: usize, scratch: &mut Vec<f32>| {
        let (ty0, ty1) = (b * rows_per_block, ((b + 1) * rows_per_block).min(th));
        let n = (ty1 - ty0) * tw;
        scratch.resize(16 * (c + m) * n, 0.0);
        let (v, mm) = scratch.split_at_mut(16 * c * n);
        // V_ξ[ci][t] = (Bᵀ·d·B)[ξ], Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]], for the
        // 4×4 patch d of tile t in channel ci; `vs[ξ]` is channel ci's row of V_ξ.
        let transform_in = std::convert::identity(
            #[inline(always)]
            |ci: usize, vs: &mut [&mut [f32]]| {
                let plane = &x[ci * h * w..(ci + 1) * h * w];
                let mut lines = vec![0.0f32; 4 * lw];
                for ty in ty0..ty1 {
                    for r in 0..4 {
                        let line = &mut lines[r * lw..(r + 1) * lw];
                        line.fill(0.0);
                        let iy = (2 * ty + r) as isize - pt as isize;
                        if iy >= 0 && (iy as usize) < h {
                            let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                            // line[j] = src[j − pl] where that is inside the row.
                            let lo = pl.min(lw);
                            let hi = (pl + w).min(lw);
                            if hi > lo {
                                line[lo..hi].copy_from_slice(&src[..hi - lo]);
                            }
                        }
                    }
                    let base = (ty - ty0) * tw;
                    let l = |r: usize| &lines[r * lw..(r + 1) * lw];
                    let (l0, l1, l2, l3) = (l(0), l(1), l(2), l(3));
                    for tx in 0..tw {
                        let j = 2 * tx;
                        let d = |row: &[f32], s: usize| row[j + s];
                        // Bᵀ·d, column s at a time.
                        let mut t = [[0.0f32; 4]; 4];
                        for s in 0..4 {
                            let (a0, a1, a2, a3) = (d(l0, s), d(l1, s), d(l2, s), d(l3, s));
                            t[0][s] = a0 - a2;
                            t[1][s] = a1 + a2;
                            t[2][s] = a2 - a1;
                            t[3][s] = a1 - a3;
                        }
                        for (i, r) in t.iter().enumerate() {
                            vs[i * 4][base + tx] = r[0] - r[2];
                            vs[i * 4 + 1][base + tx] = r[1] + r[2];
                            vs[i * 4 + 2][base + tx] = r[2] - r[1];
                            vs[i * 4 + 3][base + tx] = r[1] - r[3];
                        }
                    }
                }
            },
        );
        {
            // v is [ξ][ci][t]: gather each channel's 16 rows.
            let mut per_channel: Vec<Vec<&mut [f32]>> =
                (0..c).map(|_| Vec::with_capacity(16)).collect();
            for (idx, r) in v.chunks_mut(n).enumerate() {
                per_channel[idx % c].push(r);
            }
            if inner {
                per_channel.par_iter_mut().enumerate().for_each(|(ci, vs)| {
                    vectorised(
                        #[inline(always)]
                        || transform_in(ci, vs),
                    )
                });
            } else {
                vectorised(
                    #[inline(always)]
                    || {
                        for (ci, vs) in per_channel.iter_mut().enumerate() {
                            transform_in(ci, vs);
                        }
                    },
                );
            }
        }
        // M_ξ (m × n) = U_ξ (m × c) · V_ξ (c × n).
        let v = &*v;
        let gemm_xi = |xi: usize, dst: &mut [f32]| {
            // SAFETY: `dst` is this ξ's own m × n block.
            unsafe {
                gemm_into(
                    m,
                    n,
                    c,
                    &u[xi * m * c..(xi + 1) * m * c],
                    &v[xi * c * n..],
                    n,
                    dst.as_mut_ptr(),
                    n,
                )
            }
        };
        if inner {
            mm.par_chunks_mut(m * n)
                .enumerate()
                .for_each(|(xi, d)| gemm_xi(xi, d));
        } else {
            mm.chunks_mut(m * n)
                .enumerate()
                .for_each(|(xi, d)| gemm_xi(xi, d));
        }
        // Y = Aᵀ·M·A, Aᵀ = [[1,1,1,0],[0,1,−1,−1]], into the output's 2×2 tiles, a tile row
        // at a time.
        let mm = &*mm;
        let transform_out = std::convert::identity(
            #[inline(always)]
            |o: usize| {
                // SAFETY: output plane `o`, tile rows ty0..ty1: no other task writes them.
                let plane = unsafe {
                    std::slice::from_raw_parts_mut((out_addr as *mut f32).add(o * oh * ow), oh * ow)
                };
                let mut rows = vec![0.0f32; 2 * 2 * tw];
                for ty in ty0..ty1 {
                    let base = (ty - ty0) * tw;
                    let q = |xi: usize| &mm[(xi * m + o) * n + base..(xi * m + o) * n + base + tw];
                    let qs: [&[f32]; 16] = std::array::from_fn(q);
                    let (r0, r1) = rows.split_at_mut(2 * tw);
                    for tx in 0..tw {
                        let e = |xi: usize| qs[xi][tx];
                        let mut a = [[0.0f32; 4]; 2];
                        for j in 0..4 {
                            a[0][j] = e(j) + e(4 + j) + e(8 + j);
                            a[1][j] = e(4 + j) - e(8 + j) - e(12 + j);
                        }
                        r0[2 * tx] = a[0][0] + a[0][1] + a[0][2];
                        r0[2 * tx + 1] = a[0][1] - a[0][2] - a[0][3];
                        r1[2 * tx] = a[1][0] + a[1][1] + a[1][2];
                        r1[2 * tx + 1] = a[1][1] - a[1][2] - a[1][3];
                    }
                    for (i, r) in [&*r0, &*r1].into_iter().enumerate() {
                        let y = 2 * ty + i;
                        if y < oh {
                            plane[y * ow..(y + 1) * ow].copy_from_slice(&r[..ow]);
                        }
                    }
                }
            },
        );
        if inner {
            (0..m).into_par_iter().for_each(|o| {
                vectorised(
                    #[inline(always)]
                    || transform_out(o),
                )
            });
        } else {
            vectorised(
                #[inline(always)]
                || (0..m).for_each(transform_out),
            );
        }
    };
    if inner {
        let mut scratch = with_scratch(std::mem::take);
        (0..blocks).for_each(|b| block(b, &mut scratch));
        if scratch.capacity() <= KEPT_SCRATCH {
            with_scratch(|s| *s = scratch);
        }
    } else {
        (0..blocks)
            .into_par_iter()
            .for_each(|b| with_scratch(|s| block(b, s)));
    }
    if bias.is_some() || !epi.is_none() {
        (0..m).into_par_iter().for_each(|o| {
            // SAFETY: plane `o` alone.
            unsafe {
                finish_tile(
                    out_addr as *mut f32,
                    oh * ow,
                    (o, o + 1, 0, oh * ow),
                    bias,
                    epi,
                )
            }
        });
    }
    (16 * m * c * tiles) as u64
}

/// Upper bounds on the `gemm` crate's (0.19) f32 register blocks on every target it has
/// kernels for: MR rows (at most 4 vectors of 16: AVX-512, AMX) and NR columns (at most 6 on
/// x86-64 and NEON; 16 allowed).
pub const GEMM_MR_MAX: usize = 64;
pub const GEMM_NR_MAX: usize = 16;

/// Elements one `gemm::gemm` call of `m×k · k×n` allocates at most for packing
/// (gemm-common 0.19, `gemm_basic_generic`): the packed right-hand side, kc·nc with kc ≤ k and
/// nc ≤ max(n rounded up to NR, 128·NR) (128·NR when no L3 cache is detected and the call is
/// single-threaded), and the prepacked left-hand side, kc·(m rounded up to MR); each aligned
/// to a 128-byte line (32 elements more at most, both). Freed when the call returns. Not
/// counted: the per-thread L2 slab gemm keeps for a thread's whole life (the size of the L2
/// cache, allocated at the thread's first call), which is no layer's.
pub fn gemm_packing(m: usize, n: usize, k: usize) -> u64 {
    let nc = (n.div_ceil(GEMM_NR_MAX) * GEMM_NR_MAX).max(128 * GEMM_NR_MAX) as u64;
    let mr = (m.div_ceil(GEMM_MR_MAX) * GEMM_MR_MAX) as u64;
    (k as u64)
        .saturating_mul(nc.saturating_add(mr))
        .saturating_add(64)
}

/// `dst (m×n, rows dst_rs apart) = lhs (m×k, row-major) · rhs (k×n, rows rhs_rs apart)` on the
/// calling thread.
///
/// # Safety
/// `dst` must point to an `m × n` block (rows `dst_rs` apart) that no other thread accesses.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_into(
    m: usize,
    n: usize,
    k: usize,
    lhs: &[f32],
    rhs: &[f32],
    rhs_rs: usize,
    dst: *mut f32,
    dst_rs: usize,
) {
    assert!(m * k <= lhs.len(), "lhs out of bounds");
    assert!((k - 1) * rhs_rs + n <= rhs.len(), "rhs out of bounds");
    // SAFETY: the asserts keep the operand reads inside their slices; `dst` per the contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `out[m×n] = epi(W[m×k] · X[k×n] + bias)` on the calling thread by the `gemm` crate then
/// the bias-and-activation pass (a convolution tile's path where [`direct::product`] does
/// not run); `x`'s rows are `x_rs` apart, `out` is contiguous. Public for the benchmark that
/// compares the two (`examples/bench_direct.rs`).
#[allow(clippy::too_many_arguments)]
pub fn product_gemm<'e>(
    (m, n, k): (usize, usize, usize),
    w: &[f32],
    x: &[f32],
    x_rs: usize,
    out: &mut [f32],
    bias: Option<&[f32]>,
    epi: impl Into<Epilogue<'e>>,
) {
    let epi: Epilogue = epi.into();
    assert!(out.len() >= m * n, "out out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out[..m * n].fill(0.0);
    } else {
        // SAFETY: `out` is an exclusive borrow of at least m·n elements.
        unsafe { gemm_into(m, n, k, w, x, x_rs, out.as_mut_ptr(), n) };
    }
    // SAFETY: as above.
    unsafe { finish_tile(out.as_mut_ptr(), n, (0, m, 0, n), bias, epi) };
}

/// [`direct::product`] into a contiguous `out`; false (nothing written) without AVX-512.
#[allow(clippy::too_many_arguments)]
pub fn product_direct<'e>(
    (m, n, k): (usize, usize, usize),
    w: &[f32],
    x: &[f32],
    x_rs: usize,
    out: &mut [f32],
    bias: Option<&[f32]>,
    epi: impl Into<Epilogue<'e>>,
) -> bool {
    assert!(out.len() >= m * n, "out out of bounds");
    // SAFETY: `out` is an exclusive borrow of at least m·n elements, rows n apart.
    unsafe { direct::product((m, n, k), w, x, x_rs, out.as_mut_ptr(), n, bias, epi) }
}

/// The inverse scatter of [`im2col`]: adds each column entry into the image it came from
/// (transposed convolution). `out` is C×H×W with H×W = `w.input`.
pub fn col2im(cols: &[f32], channels: usize, w: &Window2d, out: &mut [f32]) {
    let [kh, kw] = w.kernel;
    let [oh, ow] = w.output;
    let [ih, iw] = w.input;
    let plane = oh * ow;
    out[..channels * ih * iw]
        .par_chunks_mut(ih * iw)
        .enumerate()
        .for_each(|(c, img)| {
            let rows = &cols[c * kh * kw * plane..(c + 1) * kh * kw * plane];
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = &rows[(ky * kw + kx) * plane..(ky * kw + kx + 1) * plane];
                    for oy in 0..oh {
                        let Some(iy) = w.tap(0, oy, ky) else { continue };
                        for ox in 0..ow {
                            if let Some(ix) = w.tap(1, ox, kx) {
                                img[iy * iw + ix] += row[oy * ow + ox];
                            }
                        }
                    }
                }
            }
        });
}

/// An element-wise function with no weights (an activation), as a value a kernel can apply to
/// the tile it has just written (a fused epilogue) or the executor to a whole tensor. The one
/// place the executor's activation formulas live.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pointwise {
    Relu,
    Relu6,
    LeakyRelu(f32),
    Elu(f32),
    Selu,
    Celu(f32),
    /// GELU, tanh approximation.
    GeluTanh,
    /// GELU, exact (erf).
    Gelu,
    Sigmoid,
    Hardsigmoid,
    Tanh,
    Hardtanh(f32, f32),
    Silu,
    Hardswish,
    Mish,
    /// Softplus with beta and threshold.
    Softplus(f32, f32),
    Softsign,
}

/// `x = f(x)` over `xs`. A `for` loop, not `Iterator::for_each`: LLVM left `for_each` (its
/// `fold`) out of line when `f` is large (SiLU and sigmoid through [`exp_f32`]), and out of
/// line it is compiled for the baseline, not for [`vectorised`]'s instruction set (`perf
/// annotate`: the fused SiLU epilogue ran in 128-bit SSE).
#[inline(always)]
fn each(xs: &mut [f32], f: impl Fn(f32) -> f32) {
    for x in xs.iter_mut() {
        *x = f(*x);
    }
}

/// ⅙, rounded: hard-swish and hard-sigmoid multiply by it.
const SIXTH: f32 = 1.0 / 6.0;

#[inline(always)]
fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-v))
}

/// `e^x` in f32 without a call into libm, so that loops over it vectorise (sigmoid and SiLU
/// over whole tensors): Cephes' `expf` — `x = n·ln 2 + r` with `ln 2` in two parts, a degree-6
/// polynomial for `e^r` on |r| ≤ ½ ln 2, and `2^n` built from its exponent bits as two factors
/// (so that results in the subnormal range come out right). Within 2 ulp of the correctly
/// rounded value (tested against f64's `exp` in `exp_f32_within_two_ulp`); `+∞` from
/// 88.73, `0` below −103.98, NaN kept.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2^23: adding and subtracting it rounds to the nearest integer (ties to even).
    const ROUND: f32 = 12_582_912.0;
    // NaN passes through the clamp (every comparison with it is false).
    let xc = x.clamp(-104.0, 89.0);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001201e-1, which is 0.5 in f32
    let y = p * r * r + r + 1.0;
    // n ∈ [−150, 129] is in the low bits of `t` (integer arithmetic on the bits, which
    // vectorises, where a float-to-int cast would not without AVX-512). 2^n as 2^a · 2^b with
    // a, b ∈ [−75, 65], each a normal f32. A NaN's bits give any n: y is NaN anyway.
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let a = ni >> 1;
    let b = ni - a;
    let pow2 = |e: i32| f32::from_bits((e.wrapping_add(127) as u32) << 23);
    y * pow2(a) * pow2(b)
}

#[inline(always)]
fn softplus(v: f32, beta: f32, threshold: f32) -> f32 {
    if v * beta > threshold {
        v
    } else {
        (v * beta).exp().ln_1p() / beta
    }
}

impl Pointwise {
    /// Applies the function to every element of `xs`, on the calling thread.
    pub fn apply(self, xs: &mut [f32]) {
        vectorised(
            #[inline(always)]
            || self.apply_here(xs),
        )
    }

    /// [`Pointwise::apply`] without the dispatch: for a caller already inside
    /// [`vectorised`], so that the loop is compiled with its instruction set.
    #[inline(always)]
    pub fn apply_here(self, xs: &mut [f32]) {
        use Pointwise::*;
        match self {
            // PyTorch's relu: negatives to 0, NaN and -0.0 kept (f32::max would turn NaN
            // into 0). One compare and a select, vectorised.
            Relu => each(xs, |v| if v < 0.0 { 0.0 } else { v }),
            Relu6 => each(xs, |v| v.clamp(0.0, 6.0)),
            LeakyRelu(a) => each(xs, |v| if v > 0.0 { v } else { a * v }),
            Elu(a) => each(xs, |v| if v > 0.0 { v } else { a * v.exp_m1() }),
            Selu => {
                const ALPHA: f32 = 1.673_263_2;
                const SCALE: f32 = 1.050_701;
                each(xs, |v| SCALE * if v > 0.0 { v } else { ALPHA * v.exp_m1() })
            }
            // max(0, x) + min(0, α(exp(x/α) − 1)), NaN kept (f32::max/min would drop it).
            Celu(a) => each(xs, |v| {
                let neg = a * (v / a).exp_m1();
                (if v < 0.0 { 0.0 } else { v }) + if neg > 0.0 { 0.0 } else { neg }
            }),
            GeluTanh => each(xs, |v| {
                let c = (2.0 / std::f32::consts::PI).sqrt();
                0.5 * v * (1.0 + (c * (v + 0.044_715 * v * v * v)).tanh())
            }),
            Gelu => each(xs, |v| {
                0.5 * v * (1.0 + libm::erff(v / std::f32::consts::SQRT_2))
            }),
            // Without a division per element where the CPU has AVX-512 (`kernels::sigmoid`).
            Sigmoid => {
                if !sigmoid::apply(xs, false) {
                    each(xs, sigmoid)
                }
            }
            // ×⅙ rather than ÷6 (a division per element was half the cost of the loop): may
            // differ from PyTorch's `/ 6` in the last bit.
            Hardsigmoid => each(xs, |v| (v + 3.0).clamp(0.0, 6.0) * SIXTH),
            Tanh => each(xs, f32::tanh),
            Hardtanh(lo, hi) => each(xs, |v| v.clamp(lo, hi)),
            Silu => {
                if !sigmoid::apply(xs, true) {
                    each(xs, |v| v * sigmoid(v))
                }
            }
            Hardswish => each(xs, |v| v * (v + 3.0).clamp(0.0, 6.0) * SIXTH),
            Mish => each(xs, |v| v * softplus(v, 1.0, 20.0).tanh()),
            Softplus(beta, threshold) => each(xs, |v| softplus(v, beta, threshold)),
            Softsign => each(xs, |v| v / (1.0 + v.abs())),
        }
    }

    /// Applies the function to a whole tensor's data, in parallel when it is large.
    pub fn apply_all(self, xs: &mut [f32]) {
        if xs.len() >= 1 << 15 {
            xs.par_chunks_mut(1 << 13).for_each(|c| self.apply(c));
        } else {
            self.apply(xs);
        }
    }
}

/// What a kernel applies to its output after the bias, in this order: a tensor of the
/// output's layout added element by element (a residual add the inference plan fused into
/// the layer that computes one of its operands, `Plan::residual`), then an activation. The
/// residual `add` is aligned with the output slice the kernel was given: element `i` of that
/// slice gets `add[i]` ([`Epilogue::at`] moves it along with a tile's offset). A kernel that
/// cannot add it takes the activation only through [`Epilogue::take_act`], which leaves both
/// for the executor to apply after the kernel whenever there is a residual, so that the
/// activation never runs before the add. `From<Option<Pointwise>>` makes an activation alone
/// an epilogue, so callers that have only that pass it as before (`epi.into()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// Added to the output (after the bias), before the activation.
    pub add: Option<&'a [f32]>,
    /// The activation, last.
    pub act: Option<Pointwise>,
}

impl From<Option<Pointwise>> for Epilogue<'_> {
    fn from(act: Option<Pointwise>) -> Self {
        Epilogue { add: None, act }
    }
}

impl From<Pointwise> for Epilogue<'_> {
    fn from(act: Pointwise) -> Self {
        Epilogue {
            add: None,
            act: Some(act),
        }
    }
}

impl<'a> Epilogue<'a> {
    /// Whether there is nothing to apply.
    #[inline]
    pub fn is_none(&self) -> bool {
        self.add.is_none() && self.act.is_none()
    }
    /// Takes the whole epilogue (a kernel that applies both parts), leaving none.
    #[inline]
    pub fn take(&mut self) -> Epilogue<'a> {
        std::mem::take(self)
    }
    /// Takes the activation for a kernel that applies activations but cannot add a residual:
    /// only when there is no residual (else None, and both stay for the executor).
    #[inline]
    pub fn take_act(&mut self) -> Option<Pointwise> {
        if self.add.is_some() {
            None
        } else {
            self.act.take()
        }
    }
    /// The epilogue of the part of the output that starts `offset` elements in: the residual
    /// from `offset` on (an empty slice when past its end: nothing of it is read then).
    #[inline(always)]
    pub fn at(self, offset: usize) -> Epilogue<'a> {
        Epilogue {
            add: self.add.map(|a| a.get(offset..).unwrap_or(&[])),
            act: self.act,
        }
    }
    /// Applies it to `xs` (the output from the epilogue's start) on the calling thread,
    /// without the dispatch: for a caller already inside [`vectorised`]. The sum rounds as the
    /// add layer's does (`x + r`, one rounding), so fused and unfused agree bit for bit.
    #[inline(always)]
    pub fn apply_here(self, xs: &mut [f32]) {
        if let Some(a) = self.add {
            let a = &a[..xs.len()];
            for (x, &r) in xs.iter_mut().zip(a) {
                *x += r;
            }
        }
        if let Some(f) = self.act {
            f.apply_here(xs);
        }
    }
    /// [`Epilogue::apply_here`] compiled for the widest vector unit.
    pub fn apply(self, xs: &mut [f32]) {
        vectorised(
            #[inline(always)]
            || self.apply_here(xs),
        )
    }
    /// Applies it to a whole tensor's data (the residual of the same length), in parallel
    /// when it is large.
    pub fn apply_all(self, xs: &mut [f32]) {
        if self.is_none() {
            return;
        }
        const CHUNK: usize = 1 << 13;
        if xs.len() >= 1 << 15 {
            xs.par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(i, c)| self.at(i * CHUNK).apply(c));
        } else {
            self.apply(xs);
        }
    }
}

/// Elementwise `f` over inputs broadcast to `out_shape` (NumPy rules), folded left to right:
/// `f(f(x0, x1), x2)…`. Row by row along the last axis: each input's offset is computed once
/// per row, and within the row it advances by 1 or (broadcast along it) stays put, so the
/// inner loops vectorise. Rows are grouped into tasks of some 16k elements.
pub fn broadcast(
    inputs: &[&Tensor],
    out_shape: &[usize],
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) -> Tensor {
    let n: usize = out_shape.iter().product();
    const TASK: usize = 1 << 14;
    if inputs.iter().all(|t| t.shape == out_shape) {
        let mut data = inputs[0].data.clone();
        for t in &inputs[1..] {
            data.par_chunks_mut(TASK)
                .zip(t.data.par_chunks(TASK))
                .for_each(|(a, b)| {
                    vectorised(
                        #[inline(always)]
                        || a.iter_mut().zip(b).for_each(|(a, &b)| *a = f(*a, b)),
                    )
                });
        }
        return Tensor::new(out_shape.to_vec(), data);
    }
    // A rank-0 output is one element on a unit axis.
    let shape: Vec<usize> = if out_shape.is_empty() {
        vec![1]
    } else {
        out_shape.to_vec()
    };
    let rank = shape.len();
    // Strides of each input in output coordinates (0 on broadcast axes).
    let strides: Vec<Vec<usize>> = inputs
        .iter()
        .map(|t| {
            let mut s = vec![0; rank];
            let mut acc = 1;
            for i in (0..t.shape.len()).rev() {
                let o = i + rank - t.shape.len();
                s[o] = if t.shape[i] == 1 { 0 } else { acc };
                acc *= t.shape[i];
            }
            s
        })
        .collect();
    let last = shape[rank - 1];
    let mut data = vec![0.0; n];
    if n == 0 || last == 0 {
        return Tensor::new(out_shape.to_vec(), data);
    }
    let rows_per_task = TASK.div_ceil(last);
    data.par_chunks_mut(rows_per_task * last)
        .enumerate()
        .for_each(|(task, chunk)| {
            vectorised(
                #[inline(always)]
                || {
                    for (i, out) in chunk.chunks_mut(last).enumerate() {
                        // The row's coordinates on every axis but the last.
                        let mut r = task * rows_per_task + i;
                        let mut base = vec![0usize; inputs.len()];
                        for a in (0..rank - 1).rev() {
                            let c = r % shape[a];
                            r /= shape[a];
                            for (b, s) in base.iter_mut().zip(&strides) {
                                *b += c * s[a];
                            }
                        }
                        for (j, (t, s)) in inputs.iter().zip(&strides).enumerate() {
                            let step = s[rank - 1];
                            let row = &t.data[base[j]..];
                            match (j, step) {
                                (0, 0) => out.fill(row[0]),
                                (0, _) => out.copy_from_slice(&row[..last]),
                                (_, 0) => {
                                    let v = row[0];
                                    out.iter_mut().for_each(|a| *a = f(*a, v));
                                }
                                _ => out
                                    .iter_mut()
                                    .zip(&row[..last])
                                    .for_each(|(a, &v)| *a = f(*a, v)),
                            }
                        }
                    }
                },
            )
        });
    Tensor::new(out_shape.to_vec(), data)
}

/// What a kernel may read and report besides tensors. `Ctx::default()` is a plain call: no
/// auxiliary inputs, epilogue, kept buffers or target slice.
#[derive(Default)]
pub struct Ctx<'a> {
    /// Multiply-accumulates the kernel performed (tallied as it runs).
    pub macs: u64,
    /// Auxiliary outputs of the producers of each input (max-pool indices for max-unpool).
    pub aux_in: &'a [Option<&'a [u32]>],
    /// The kernel's auxiliary output (a max-pool's argmax indices).
    pub aux_out: Option<Vec<u32>>,
    /// Whether a consumer reads `aux_out` (when false, a max pool may skip its indices).
    pub want_aux: bool,
    /// What to apply to the (single) output after the bias: a residual to add, then an
    /// activation ([`Epilogue`]). A kernel that applies both itself, tile by tile, takes it
    /// (`take()`); one that applies activations only takes `take_act()`, which leaves both
    /// when there is a residual; the executor applies what is left.
    pub epilogue: Epilogue<'a>,
    /// Buffers of tensors that died, for [`Ctx::output`].
    pub recycled: Option<&'a mut Recycler>,
    /// Where the inference plan wants the (single) output written: a slice of a larger
    /// buffer, such as this layer's channels of the concatenation it feeds. A kernel that can
    /// writes there and takes it (`take()`), returning [`OutView::placeholder`]; the executor
    /// copies the output of any other kernel into it.
    pub into: Option<OutView<'a>>,
    /// The per-channel means of the (single) output, `N×C`, asked for by the inference plan
    /// (`Plan::means`: a global average pool reads the output): the executor sets an empty
    /// vector; a kernel that can compute them as it writes its output (the interleaved
    /// depthwise convolution) puts them here, and the pool then does not run. Any other
    /// kernel leaves it as it is.
    pub means: Option<Vec<f32>>,
}

/// A slice of a larger row-major buffer that a kernel writes its output into: for each index
/// of the output's first dimension (the batch) `b`, its `per-sample` elements go to
/// `data[b·stride + offset ..]`. A producer feeding channels `[c0, c0 + c)` of an
/// `N×C×H×W` concatenation writes with `stride = C·H·W` and `offset = c0·H·W`.
#[derive(Debug)]
pub struct OutView<'a> {
    pub data: &'a mut [f32],
    pub stride: usize,
    pub offset: usize,
}

impl<'a> OutView<'a> {
    /// The output's `n = data.len() / stride` samples of `per_sample` elements each, as
    /// mutable slices of the buffer.
    pub fn samples(self, per_sample: usize) -> Vec<&'a mut [f32]> {
        let (stride, offset) = (self.stride, self.offset);
        self.data
            .chunks_mut(stride)
            .map(|s| &mut s[offset..offset + per_sample])
            .collect()
    }
    /// What a kernel that wrote into a view returns: the output's shape, no data.
    pub fn placeholder(dims: &[usize]) -> Tensor {
        Tensor {
            shape: dims.to_vec(),
            data: Vec::new(),
        }
    }
}

impl Ctx<'_> {
    /// A tensor of shape `dims` that the kernel will overwrite completely (the contract of
    /// every caller: it writes each element before reading it): a dead tensor's buffer when
    /// the executor keeps one that fits (its contents are then stale values, not zeros), else
    /// zeros. Saves allocating, zeroing and page-faulting a fresh buffer for most outputs.
    pub fn output(&mut self, dims: &[usize]) -> Tensor {
        let len = dims.iter().product();
        match self.recycled.as_mut().and_then(|r| r.take(len)) {
            Some(data) => Tensor::new(dims.to_vec(), data),
            None => Tensor::zeros(dims),
        }
    }
}

/// The buffers of tensors that died, reused by later outputs. The executor keeps one for a
/// whole `run` (every pass): a pass's tensors are made from the buffers the pass before
/// gave back, so that in the steady state nothing is allocated, zeroed or page-faulted.
/// A request of `len` elements gets the free buffer of the least capacity from `len` to
/// `2·len`; the bytes held — every free buffer's capacity plus the unused capacity of the
/// buffers lent out — never exceed the cap; a buffer that two passes in a row end with
/// unused is let go ([`Recycler::end_pass`]).
#[derive(Debug, Default)]
pub struct Recycler {
    /// Free buffers, each with the number of passes it has ended unused.
    pub(crate) free: Vec<(Vec<f32>, u32)>,
    /// Whether buffers are kept at all.
    pub(crate) on: bool,
    /// Bytes held (free buffers' capacity and lent buffers' unused capacity), and the most
    /// that may be held.
    pub(crate) held: u64,
    pub(crate) cap: u64,
    /// Most buffers kept (the oldest go first); 0 means 16.
    pub(crate) keep: usize,
    /// Buffers lent out by [`Recycler::take`]: (address, unused capacity charged to
    /// `held`).
    lent: Vec<(usize, usize)>,
}

impl Recycler {
    /// A recycler holding at most `cap` bytes in at most `keep` buffers.
    pub fn new(cap: u64, keep: usize) -> Recycler {
        Recycler {
            on: true,
            cap,
            keep,
            ..Default::default()
        }
    }

    /// Bytes held now: the free buffers' capacity and the lent ones' unused capacity.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Free buffers kept now.
    pub fn kept(&self) -> usize {
        self.free.len()
    }

    /// A free buffer of `len` elements, if one of capacity `len` to `2·len` is kept (the
    /// least such; the newest of equals). Its elements are stale values; the caller writes
    /// every one.
    pub fn take(&mut self, len: usize) -> Option<Vec<f32>> {
        self.take_room(len, len)
    }

    /// [`Recycler::take`] with capacity for `room ≥ len` elements (a buffer that will grow).
    pub fn take_room(&mut self, len: usize, room: usize) -> Option<Vec<f32>> {
        let room = room.max(len);
        if len == 0 {
            return None;
        }
        let mut best: Option<(usize, usize)> = None;
        for (i, (b, _)) in self.free.iter().enumerate() {
            let c = b.capacity();
            if c >= room && c / 2 <= room && best.is_none_or(|(_, bc)| c <= bc) {
                best = Some((i, c));
            }
        }
        let (i, cap) = best?;
        let (mut buf, _) = self.free.remove(i);
        self.held -= 4 * cap as u64;
        // Shorter: cut (nothing written); longer: only the elements past its length are
        // zeroed (the buffer's pages are already mapped).
        if buf.len() >= len {
            buf.truncate(len);
        } else {
            buf.resize(len, 0.0);
        }
        let unused = cap - len;
        self.held += 4 * unused as u64;
        self.lent.push((buf.as_ptr() as usize, unused));
        Some(buf)
    }

    /// Keeps `buf` for reuse, within the byte cap (the oldest buffers go first).
    pub fn give(&mut self, buf: Vec<f32>) {
        let addr = buf.as_ptr() as usize;
        if let Some(j) = self.lent.iter().position(|l| l.0 == addr) {
            let (_, unused) = self.lent.swap_remove(j);
            self.held -= 4 * unused as u64;
        }
        let bytes = 4 * buf.capacity() as u64;
        if buf.is_empty() || !self.on || bytes > self.cap {
            return;
        }
        let keep = if self.keep == 0 { 16 } else { self.keep };
        while !self.free.is_empty() && (self.free.len() >= keep || self.held + bytes > self.cap) {
            let (old, _) = self.free.remove(0);
            self.held -= 4 * old.capacity() as u64;
        }
        if self.held + bytes > self.cap {
            return;
        }
        self.held += bytes;
        self.free.push((buf, 0));
    }

    /// Ends a pass: buffers lent and never given back (dropped with their tensors) hold
    /// nothing any more, and a buffer that has ended two passes unused (given back by a
    /// kernel that allocates its own output, and never asked for since) is let go, so that
    /// what is kept settles on what a pass asks for.
    pub fn end_pass(&mut self) {
        for (_, unused) in self.lent.drain(..) {
            self.held -= 4 * unused as u64;
        }
        let mut held = self.held;
        self.free.retain_mut(|(b, idle)| {
            *idle += 1;
            let keep = *idle < 2;
            if !keep {
                held -= 4 * b.capacity() as u64;
            }
            keep
        });
        self.held = held;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_f32_within_two_ulp() {
        // Against f64's exp rounded to f32, at 2^21 points from −104 to 89 and at the ends.
        let ulps =
            |a: f32, b: f32| (i64::from(a.to_bits() as i32) - i64::from(b.to_bits() as i32)).abs();
        let (lo, hi, steps) = (-104.0f64, 89.0f64, 1u32 << 21);
        let mut worst = (0, 0.0f32);
        for i in 0..=steps {
            let x = (lo + (hi - lo) * f64::from(i) / f64::from(steps)) as f32;
            let want = f64::from(x).exp() as f32;
            let d = ulps(exp_f32(x), want);
            if d > worst.0 {
                worst = (d, x);
            }
        }
        assert!(worst.0 <= 2, "exp_f32({}) is {} ulp off", worst.1, worst.0);
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(88.8), f32::INFINITY); // e^88.8 > f32::MAX
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(-1000.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        // The smallest subnormal, e^−103.28 ≈ 1.4e−45.
        assert_eq!(exp_f32(-103.28), f32::from_bits(1));
    }

    use proptest::prelude::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    proptest! {
        #[test]
        fn matmul_matches_naive(m in 1usize..40, n in 1usize..40, k in 1usize..40, seed in 0u64..1000) {
            let gen = |len: usize, s: u64| (0..len).map(|i| (((i as u64 * 2654435761 + s) % 1000) as f32 / 500.0) - 1.0).collect::<Vec<_>>();
            let a = gen(m * k, seed);
            let b = gen(k * n, seed + 7);
            let mut c = vec![0.0; m * n];
            let macs = matmul(m, n, k, &a, k, 1, &b, n, 1, &mut c, false);
            prop_assert_eq!(macs, (m * n * k) as u64);
            for (x, y) in c.iter().zip(naive(m, n, k, &a, &b)) {
                prop_assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

        /// Winograd F(2×2, 3×3) against the direct (im2col) convolution: odd and even sizes,
        /// padding 0–2 (bottom/right implied by the output size), one block or many, bias
        /// and a fused ReLU.
        #[test]
        fn winograd_matches_direct(c in 1usize..40, m in 1usize..40, h in 3usize..30, w in 3usize..30,
                                   pt in 0usize..3, pl in 0usize..3, pb in 0usize..3, pr in 0usize..3, seed in 0u64..1000) {
            let gen = |len: usize, s: u64| (0..len).map(|i| ((((i as u64).wrapping_mul(2654435761) ^ s) % 2001) as f32 / 1000.0) - 1.0).collect::<Vec<_>>();
            let (oh, ow) = (h + pt + pb - 2, w + pl + pr - 2);
            let x = gen(c * h * w, seed);
            let wt = gen(m * c * 9, seed + 1);
            let bias = gen(m, seed + 2);
            let win = Window2d { kernel: [3, 3], stride: [1, 1], pad: [pt, pl], dilation: [1, 1], input: [h, w], output: [oh, ow] };
            let mut direct = vec![0.0; m * oh * ow];
            conv_gemm(&x, c, &win, &wt, m, Some(&bias), Some(Pointwise::Relu), &mut direct, true);
            let u = winograd_filters(&wt, m, c);
            let mut wino = vec![f32::NAN; m * oh * ow];
            conv_winograd(&x, c, [h, w], [pt, pl], &u, m, [oh, ow], Some(&bias), Some(Pointwise::Relu), &mut wino);
            let scale = direct.iter().fold(1f32, |a, v| a.max(v.abs()));
            for (i, (a, b)) in direct.iter().zip(&wino).enumerate() {
                prop_assert!((a - b).abs() <= 1e-5 * scale * (c as f32).sqrt().max(1.0), "element {}: {} vs {}", i, a, b);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

        /// The tiled convolution with odd thread counts and tiny tiles (many column tiles, row
        /// tiles, the direct 1×1 path) against im2col of the whole image and one product.
        #[test]
        fn tiles_match_one_product(c in 1usize..12, m in 1usize..20, h in 1usize..40, w in 1usize..40,
                                   k in 1usize..4, s in 1usize..3, p in 0usize..2, threads in 1usize..5,
                                   tile_bytes in 64usize..8192, seed in 0u64..1000) {
            let gen = |len: usize, sd: u64| (0..len).map(|i| ((((i as u64).wrapping_mul(2654435761) ^ sd) % 2001) as f32 / 1000.0) - 1.0).collect::<Vec<_>>();
            prop_assume!(h + 2 * p >= k && w + 2 * p >= k);
            let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
            let win = Window2d { kernel: [k, k], stride: [s, s], pad: [p, p], dilation: [1, 1], input: [h, w], output: [oh, ow] };
            let x = gen(c * h * w, seed);
            let wt = gen(m * c * k * k, seed + 1);
            let bias = gen(m, seed + 2);
            let mut cols = vec![0.0; c * k * k * oh * ow];
            im2col(&x, c, &win, &mut cols);
            let mut want = vec![0.0; m * oh * ow];
            matmul(m, oh * ow, c * k * k, &wt, c * k * k, 1, &cols, oh * ow, 1, &mut want, false);
            for (i, v) in want.iter_mut().enumerate() {
                *v = (*v + bias[i / (oh * ow)]).max(0.0);
            }
            let mut got = vec![f32::NAN; m * oh * ow];
            let macs = conv_gemm_tiled(&x, c, &win, &wt, m, Some(&bias), Some(Pointwise::Relu), &mut got, threads, tile_bytes);
            prop_assert_eq!(macs, (m * oh * ow * c * k * k) as u64);
            for (a, b) in want.iter().zip(&got) {
                prop_assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{} vs {}", a, b);
            }
        }
    }

    #[test]
    fn broadcasting() {
        let a = Tensor::new(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]);
        let b = Tensor::new(vec![2, 1], vec![10., 20.]);
        let c = broadcast(&[&a, &b], &[2, 3], |x, y| x * y);
        assert_eq!(c.data, vec![10., 20., 30., 80., 100., 120.]);
    }
}
