//! Sliding-window kernels over one, two or three spatial axes (PyTorch semantics), for the
//! 1-D and 3-D layer types: convolution (im2col per output tile + GEMM), transposed
//! convolution (GEMM + col2im), explicit reflect/replicate/circular padding, max pooling (with
//! PyTorch's argmax indices and NaN propagation), average pooling (its divisor rules),
//! adaptive pooling and separable interpolation (linear, bilinear, trilinear). A window of
//! rank r < 3 is a rank-3 one whose leading axes have size 1, kernel 1, stride 1 and no
//! padding, so one code path serves every rank. Each kernel is checked against a naive
//! reference in the tests at the bottom.

use rayon::prelude::*;

use crate::kernels::{matmul, valid_range, vectorised, Pointwise};

/// A sliding window over three spatial axes `[depth, height, width]`; lower ranks have
/// leading axes of size 1 (see [`WindowNd::new`]). `input`/`output` are the lengths the
/// window reads from and writes to (for a transposed convolution, as in
/// [`crate::kernels::col2im`], `input` is the larger, scattered-into side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowNd {
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    /// Padding before each axis.
    pub pad: [usize; 3],
    pub dilation: [usize; 3],
    pub input: [usize; 3],
    pub output: [usize; 3],
}

/// `v` (one value per spatial axis, at most 3) right-aligned in three axes, `fill` before.
pub fn lift(v: &[usize], fill: usize) -> [usize; 3] {
    let mut out = [fill; 3];
    let r = v.len().min(3);
    out[3 - r..].copy_from_slice(&v[v.len() - r..]);
    out
}

impl WindowNd {
    /// A window of rank `kernel.len()` (1, 2 or 3), lifted to three axes.
    pub fn new(
        kernel: &[usize],
        stride: &[usize],
        pad: &[usize],
        dilation: &[usize],
        input: &[usize],
        output: &[usize],
    ) -> WindowNd {
        WindowNd {
            kernel: lift(kernel, 1),
            stride: lift(stride, 1),
            pad: lift(pad, 0),
            dilation: lift(dilation, 1),
            input: lift(input, 1),
            output: lift(output, 1),
        }
    }
    /// Taps of the kernel.
    pub fn taps(&self) -> usize {
        self.kernel.iter().product()
    }
    /// Input positions.
    pub fn input_len(&self) -> usize {
        self.input.iter().product()
    }
    /// Output positions.
    pub fn output_len(&self) -> usize {
        self.output.iter().product()
    }
    /// Input coordinate read by output position `o`, tap `t` along `axis`, or None in padding.
    #[inline]
    pub fn tap(&self, axis: usize, o: usize, t: usize) -> Option<usize> {
        let pos =
            (o * self.stride[axis] + t * self.dilation[axis]) as isize - self.pad[axis] as isize;
        (pos >= 0 && (pos as usize) < self.input[axis]).then_some(pos as usize)
    }
}

/// im2col of `channels` planes of `x` (each `w.input` long) for output positions `n0..n1`
/// (flat over `w.output`): rows (c, kd, kh, kw), `n1 − n0` columns; padding reads 0.
pub fn im2col_nd(x: &[f32], channels: usize, w: &WindowNd, n0: usize, n1: usize, cols: &mut [f32]) {
    vectorised(
        #[inline(always)]
        || im2col_nd_here(x, channels, w, n0, n1, cols),
    )
}

#[inline(always)]
fn im2col_nd_here(
    x: &[f32],
    channels: usize,
    w: &WindowNd,
    n0: usize,
    n1: usize,
    cols: &mut [f32],
) {
    let [kd, kh, kw] = w.kernel;
    let [_, oh, ow] = w.output;
    let [_, ih, iw] = w.input;
    let ivol = w.input_len();
    let (sx, dx, px) = (w.stride[2], w.dilation[2], w.pad[2] as isize);
    let nb = n1 - n0;
    let mut r = 0;
    for c in 0..channels {
        let src = &x[c * ivol..(c + 1) * ivol];
        for a in 0..kd {
            for b in 0..kh {
                for e in 0..kw {
                    let row = &mut cols[r * nb..(r + 1) * nb];
                    r += 1;
                    let off = (e * dx) as isize - px;
                    let (lo, hi) = valid_range(off, sx, iw, ow);
                    let mut p = n0;
                    while p < n1 {
                        let (line, ox0) = (p / ow, p % ow);
                        let ox1 = ow.min(ox0 + (n1 - p));
                        let (oz, oy) = (line / oh, line % oh);
                        let seg = &mut row[p - n0..p - n0 + (ox1 - ox0)];
                        match (w.tap(0, oz, a), w.tap(1, oy, b)) {
                            (Some(iz), Some(iy)) => {
                                let l = &src[(iz * ih + iy) * iw..(iz * ih + iy + 1) * iw];
                                let (lo, hi) = (lo.clamp(ox0, ox1), hi.clamp(ox0, ox1));
                                seg[..lo - ox0].fill(0.0);
                                seg[hi - ox0..].fill(0.0);
                                if lo < hi {
                                    let dst = &mut seg[lo - ox0..hi - ox0];
                                    let s = (lo as isize * sx as isize + off) as usize;
                                    if sx == 1 {
                                        dst.copy_from_slice(&l[s..s + (hi - lo)]);
                                    } else {
                                        dst.iter_mut()
                                            .zip(l[s..].iter().step_by(sx))
                                            .for_each(|(d, &v)| *d = v);
                                    }
                                }
                            }
                            _ => seg.fill(0.0),
                        }
                        p += ox1 - ox0;
                    }
                }
            }
        }
    }
}

/// Bytes of im2col columns one tile aims for.
const TILE_BYTES: usize = 512 << 10;

/// Output positions per thread from which [`conv_nd`] cuts the output into column tiles;
/// below, one im2col of the whole image feeds one multi-threaded GEMM.
const COL_TILE_MIN: usize = 256;

/// How [`conv_nd`] computes a convolution of `channels` input planes through `win` into `m`
/// output planes on `threads` threads, and the working buffer it allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvPlan {
    /// A 1×…×1, stride-1, unpadded window: the GEMM reads the input directly; no buffer.
    Direct,
    /// Column tiles of `cols` output positions, `tiles` of them, handed out to `groups`
    /// threads (1: the calling thread alone) as they come free; each thread im2col's its
    /// current tile into one `k × cols` buffer, and holds one at a time.
    Tiled {
        cols: usize,
        tiles: usize,
        groups: usize,
    },
    /// One im2col of every output position (`k × n`), one GEMM threaded by the `gemm` crate.
    Whole,
}

impl ConvPlan {
    /// The plan of a convolution; `k = channels · taps` and `n = output positions`.
    pub fn new(channels: usize, win: &WindowNd, m: usize, threads: usize) -> ConvPlan {
        let (k, n) = (channels * win.taps(), win.output_len());
        let threads = threads.max(1);
        if win.taps() == 1
            && win.stride == [1, 1, 1]
            && win.pad == [0, 0, 0]
            && win.input == win.output
        {
            return ConvPlan::Direct;
        }
        if threads == 1 || n >= COL_TILE_MIN * threads || m * n * k < PARALLEL_MACS {
            let cols = ((TILE_BYTES / (4 * k.max(1))).max(64))
                .div_ceil(16)
                .saturating_mul(16)
                .min(n.max(1));
            let tiles = n.div_ceil(cols);
            let groups = if m * n * k < PARALLEL_MACS {
                1
            } else {
                tiles.min(threads)
            };
            ConvPlan::Tiled {
                cols,
                tiles,
                groups,
            }
        } else {
            ConvPlan::Whole
        }
    }

    /// Elements of the working buffers the convolution allocates at once: `groups` tile
    /// buffers of `k × cols`, or one `k × n` im2col.
    pub fn workspace(&self, channels: usize, win: &WindowNd) -> usize {
        let k = channels * win.taps();
        match *self {
            ConvPlan::Direct => 0,
            ConvPlan::Tiled { cols, groups, .. } => groups.saturating_mul(k).saturating_mul(cols),
            ConvPlan::Whole => k.saturating_mul(win.output_len()),
        }
    }
}

/// Products from which a GEMM is worth threading (as [`crate::kernels::matmul`]).
const PARALLEL_MACS: usize = 1 << 18;

/// A convolution of one image and group: `x` holds `channels` input planes (`win.input`
/// long), `w` the `m × k` filters (k = channels·taps, PyTorch layout), `out` the `m` output
/// planes (`win.output` long). Computed as [`ConvPlan::new`] says, on rayon's threads: by
/// column tiles (each im2col'd into its run's buffer, multiplied by one single-threaded GEMM
/// straight into `out`, then finished — bias, then `epi` — while in cache), or for small
/// images one im2col and one threaded GEMM. Returns the multiply-accumulates performed (every
/// output accumulates k products, padding included, as counted).
#[allow(clippy::too_many_arguments)]
pub fn conv_nd(
    x: &[f32],
    channels: usize,
    win: &WindowNd,
    w: &[f32],
    m: usize,
    bias: Option<&[f32]>,
    epi: Option<Pointwise>,
    out: &mut [f32],
) -> u64 {
    let k = channels * win.taps();
    let n = win.output_len();
    if m == 0 || n == 0 {
        return 0;
    }
    let out = &mut out[..m * n];
    let finish = std::convert::identity(
        #[inline(always)]
        |seg: &mut [f32], row: usize| {
            if let Some(b) = bias {
                let v = b[row];
                seg.iter_mut().for_each(|x| *x += v);
            }
            if let Some(e) = epi {
                e.apply(seg);
            }
        },
    );
    if k == 0 {
        out.fill(0.0);
        for (r, seg) in out.chunks_mut(n).enumerate() {
            finish(seg, r);
        }
        return 0;
    }
    let macs = (m * n * k) as u64;
    let plan = ConvPlan::new(channels, win, m, rayon::current_num_threads());
    let finish_all = |out: &mut [f32]| {
        if bias.is_some() || epi.is_some() {
            out.par_chunks_mut(n).enumerate().for_each(|(r, seg)| {
                vectorised(
                    #[inline(always)]
                    || finish(seg, r),
                )
            });
        }
    };
    match plan {
        ConvPlan::Direct => {
            matmul(m, n, k, w, k, 1, x, n, 1, out, false);
            finish_all(out);
        }
        ConvPlan::Whole => {
            let mut cols = vec![0.0f32; k * n];
            im2col_nd(x, channels, win, 0, n, &mut cols);
            matmul(m, n, k, w, k, 1, &cols, n, 1, out, false);
            finish_all(out);
        }
        ConvPlan::Tiled {
            cols: nb,
            tiles,
            groups,
        } => {
            let addr = out.as_mut_ptr() as usize;
            let tile = |cols: &mut Vec<f32>, t: usize| {
                let (n0, n1) = (t * nb, ((t + 1) * nb).min(n));
                let cn = n1 - n0;
                cols.resize(k * nb, 0.0);
                im2col_nd(x, channels, win, n0, n1, &mut cols[..k * cn]);
                // SAFETY: tile t alone writes columns n0..n1 of the m rows of `out` (m × n,
                // row-major, borrowed mutably for this whole match arm).
                unsafe {
                    let base = (addr as *mut f32).add(n0);
                    crate::kernels::gemm_into(m, cn, k, w, cols, cn, base, n);
                    vectorised(
                        #[inline(always)]
                        || {
                            for r in 0..m {
                                let seg = std::slice::from_raw_parts_mut(base.add(r * n), cn);
                                finish(seg, r);
                            }
                        },
                    );
                }
            };
            if groups > 1 {
                // Tiles handed out by rayon as threads come free; nothing inside a tile runs
                // in parallel, so a thread holds one buffer at a time.
                (0..tiles)
                    .into_par_iter()
                    .for_each_init(Vec::new, |cols, t| tile(cols, t));
            } else {
                let mut cols = Vec::new();
                (0..tiles).for_each(|t| tile(&mut cols, t));
            }
        }
    }
    macs
}

/// The inverse scatter of [`im2col_nd`]: adds every column entry (rows (c, kd, kh, kw),
/// columns over `w.output`) into the plane it came from. `out` holds `channels` planes of
/// `w.input`.
pub fn col2im_nd(cols: &[f32], channels: usize, w: &WindowNd, out: &mut [f32]) {
    let [kd, kh, kw] = w.kernel;
    let [od, oh, ow] = w.output;
    let [_, ih, iw] = w.input;
    let (plane, ivol) = (w.output_len(), w.input_len());
    out[..channels * ivol]
        .par_chunks_mut(ivol)
        .enumerate()
        .for_each(|(c, img)| {
            let rows = &cols[c * kd * kh * kw * plane..(c + 1) * kd * kh * kw * plane];
            for a in 0..kd {
                for b in 0..kh {
                    for e in 0..kw {
                        let t = (a * kh + b) * kw + e;
                        let row = &rows[t * plane..(t + 1) * plane];
                        for oz in 0..od {
                            let Some(iz) = w.tap(0, oz, a) else { continue };
                            for oy in 0..oh {
                                let Some(iy) = w.tap(1, oy, b) else { continue };
                                let src = &row[(oz * oh + oy) * ow..(oz * oh + oy + 1) * ow];
                                let dst = &mut img[(iz * ih + iy) * iw..(iz * ih + iy + 1) * iw];
                                for (ox, &v) in src.iter().enumerate() {
                                    if let Some(ix) = w.tap(2, ox, e) {
                                        dst[ix] += v;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        });
}

/// A transposed convolution of one image and group: `x` holds `channels` planes of
/// `win.output` (the small side), `w` the `channels × (m·taps)` filters (PyTorch layout
/// `[C_in, C_out/g, k…]`), `out` (zeroed by the caller, or holding what to add to) the `m`
/// planes of `win.input`. `cols` is scratch. Returns the multiply-accumulates performed.
pub fn conv_transpose_nd(
    x: &[f32],
    channels: usize,
    win: &WindowNd,
    w: &[f32],
    m: usize,
    cols: &mut Vec<f32>,
    out: &mut [f32],
) -> u64 {
    let rows = m * win.taps();
    let n = win.output_len();
    cols.clear();
    cols.resize(rows * n, 0.0);
    let macs = matmul(rows, n, channels, w, 1, rows, x, n, 1, cols, false);
    col2im_nd(cols, m, win, out);
    macs
}

/// How the border of a padded tensor is filled (PyTorch's `padding_mode` other than zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadMode {
    Zeros,
    Reflect,
    Replicate,
    Circular,
}

/// The input index that padded position `i` (of `−before .. n + after`) reads, or None for a
/// zero.
fn pad_source(i: isize, n: usize, mode: PadMode) -> Option<usize> {
    let n = n as isize;
    let j = match mode {
        PadMode::Zeros => {
            if i < 0 || i >= n {
                return None;
            }
            i
        }
        PadMode::Reflect => {
            if i < 0 {
                -i
            } else if i >= n {
                2 * (n - 1) - i
            } else {
                i
            }
        }
        PadMode::Replicate => i.clamp(0, n - 1),
        PadMode::Circular => i.rem_euclid(n),
    };
    (0..n).contains(&j).then_some(j as usize)
}

/// `planes` planes of `vol` (three axes), padded by `before`/`after` per axis with `mode`
/// (PyTorch's `F.pad`: reflect requires padding < size, circular ≤ size; the caller checks).
pub fn pad_nd(
    x: &[f32],
    planes: usize,
    vol: [usize; 3],
    before: [usize; 3],
    after: [usize; 3],
    mode: PadMode,
) -> Vec<f32> {
    let pv: [usize; 3] = std::array::from_fn(|a| vol[a] + before[a] + after[a]);
    let maps: Vec<Vec<Option<usize>>> = (0..3)
        .map(|a| {
            (0..pv[a])
                .map(|i| pad_source(i as isize - before[a] as isize, vol[a], mode))
                .collect()
        })
        .collect();
    let (ivol, ovol) = (vol.iter().product::<usize>(), pv.iter().product::<usize>());
    let mut out = vec![0.0f32; planes * ovol];
    out.par_chunks_mut(ovol.max(1))
        .enumerate()
        .for_each(|(p, dst)| {
            let src = &x[p * ivol..(p + 1) * ivol];
            for (z, mz) in maps[0].iter().enumerate() {
                for (y, my) in maps[1].iter().enumerate() {
                    let row = &mut dst[(z * pv[1] + y) * pv[2]..(z * pv[1] + y + 1) * pv[2]];
                    let (Some(iz), Some(iy)) = (mz, my) else {
                        continue;
                    };
                    let line = &src[(iz * vol[1] + iy) * vol[2]..(iz * vol[1] + iy + 1) * vol[2]];
                    for (d, mx) in row.iter_mut().zip(&maps[2]) {
                        if let Some(ix) = mx {
                            *d = line[*ix];
                        }
                    }
                }
            }
        });
    out
}

/// Output position `o`'s taps along one axis that fall inside the input: first index and
/// count, for a window at `o·stride − pad` stepping by `dilation`.
#[inline]
fn axis_taps(w: &WindowNd, axis: usize, o: usize) -> (usize, usize) {
    let (s, d, p, k, n) = (
        w.stride[axis] as isize,
        w.dilation[axis] as isize,
        w.pad[axis] as isize,
        w.kernel[axis] as isize,
        w.input[axis] as isize,
    );
    let mut start = o as isize * s - p;
    let end = (start + (k - 1) * d + 1).min(n);
    while start < 0 {
        start += d;
    }
    if start >= end {
        return (0, 0);
    }
    (start as usize, ((end - start + d - 1) / d) as usize)
}

/// Max pooling of one plane, PyTorch's rules: taps in (kd, kh, kw) order, a larger value or a
/// NaN replaces the best, and the index (flat within the plane) starts at the first tap inside
/// the input. `ids` is written when given.
pub fn max_pool_nd(src: &[f32], dst: &mut [f32], mut ids: Option<&mut [u32]>, w: &WindowNd) {
    let [od, oh, ow] = w.output;
    let [_, ih, iw] = w.input;
    let dil = w.dilation;
    for oz in 0..od {
        let (z0, nz) = axis_taps(w, 0, oz);
        for oy in 0..oh {
            let (y0, ny) = axis_taps(w, 1, oy);
            for ox in 0..ow {
                let (x0, nx) = axis_taps(w, 2, ox);
                let mut best = f32::NEG_INFINITY;
                let mut at = (z0 * ih + y0) * iw + x0;
                for a in 0..nz {
                    let iz = z0 + a * dil[0];
                    for b in 0..ny {
                        let iy = y0 + b * dil[1];
                        let base = (iz * ih + iy) * iw;
                        for e in 0..nx {
                            let i = base + x0 + e * dil[2];
                            let v = src[i];
                            if v > best || v.is_nan() {
                                best = v;
                                at = i;
                            }
                        }
                    }
                }
                let o = (oz * oh + oy) * ow + ox;
                dst[o] = best;
                if let Some(ids) = ids.as_deref_mut() {
                    ids[o] = at as u32;
                }
            }
        }
    }
}

/// Average pooling of one plane, PyTorch's `avg_pool{1,2,3}d`: the window is cut at the
/// padded border (`input + pad`), its size there is the divisor with `count_include_pad`, the
/// size of its part inside the input without; `divisor` overrides both.
pub fn avg_pool_nd(
    src: &[f32],
    dst: &mut [f32],
    w: &WindowNd,
    count_include_pad: bool,
    divisor: Option<u64>,
) {
    let [_, oh, ow] = w.output;
    let [_, ih, iw] = w.input;
    // Per axis and output position: (start, end) clipped to the input, and the length of the
    // window clipped only to the padded input.
    let ranges: Vec<Vec<(usize, usize, usize)>> = (0..3)
        .map(|a| {
            let (s, p, k, n) = (
                w.stride[a] as isize,
                w.pad[a] as isize,
                w.kernel[a] as isize,
                w.input[a] as isize,
            );
            (0..w.output[a])
                .map(|o| {
                    let start = o as isize * s - p;
                    let end = (start + k).min(n + p);
                    let pool = (end - start) as usize;
                    let (cs, ce) = (start.max(0), end.min(n));
                    if cs >= ce {
                        (0, 0, pool)
                    } else {
                        (cs as usize, ce as usize, pool)
                    }
                })
                .collect()
        })
        .collect();
    for (oz, &(zs, ze, zp)) in ranges[0].iter().enumerate() {
        for (oy, &(ys, ye, yp)) in ranges[1].iter().enumerate() {
            for (ox, &(xs, xe, xp)) in ranges[2].iter().enumerate() {
                let o = (oz * oh + oy) * ow + ox;
                if zs >= ze || ys >= ye || xs >= xe {
                    dst[o] = 0.0;
                    continue;
                }
                let mut sum = 0.0f32;
                for iz in zs..ze {
                    for iy in ys..ye {
                        let line = &src[(iz * ih + iy) * iw..(iz * ih + iy) * iw + iw];
                        for &v in &line[xs..xe] {
                            sum += v;
                        }
                    }
                }
                let d = match divisor {
                    Some(d) => d as f32,
                    None if count_include_pad => (zp * yp * xp) as f32,
                    None => ((ze - zs) * (ye - ys) * (xe - xs)) as f32,
                };
                dst[o] = sum / d;
            }
        }
    }
}

/// Start and end (exclusive) of adaptive window `i` of `out` over `input`.
fn adaptive(i: usize, out: usize, input: usize) -> (usize, usize) {
    ((i * input) / out, ((i + 1) * input).div_ceil(out))
}

/// Adaptive max (NaN-propagating) or average pooling of one plane of `input` to `output`
/// (three axes each).
pub fn adaptive_pool_nd(
    src: &[f32],
    dst: &mut [f32],
    input: [usize; 3],
    output: [usize; 3],
    max: bool,
) {
    let [_, ih, iw] = input;
    let [od, oh, ow] = output;
    for oz in 0..od {
        let (zs, ze) = adaptive(oz, od, input[0]);
        for oy in 0..oh {
            let (ys, ye) = adaptive(oy, oh, ih);
            for ox in 0..ow {
                let (xs, xe) = adaptive(ox, ow, iw);
                let mut acc = if max { f32::NEG_INFINITY } else { 0.0 };
                for iz in zs..ze {
                    for iy in ys..ye {
                        for &v in &src[(iz * ih + iy) * iw + xs..(iz * ih + iy) * iw + xe] {
                            acc = if max {
                                if v > acc || v.is_nan() {
                                    v
                                } else {
                                    acc
                                }
                            } else {
                                acc + v
                            };
                        }
                    }
                }
                dst[(oz * oh + oy) * ow + ox] = if max {
                    acc
                } else {
                    acc / ((ze - zs) * (ye - ys) * (xe - xs)) as f32
                };
            }
        }
    }
}

/// The two input taps and weights of linear interpolation along one axis, PyTorch's
/// `upsample_linear1d`/`bilinear2d`/`trilinear3d`: the source coordinate is
/// `j·(in−1)/(out−1)` with `align_corners` (0 for one output), else
/// `max((j + ½)·scale − ½, 0)` with `scale = 1/scale_factor` when a factor was given
/// (PyTorch's default `recompute_scale_factor`), `in/out` otherwise.
pub fn linear_taps(
    input: usize,
    output: usize,
    align_corners: bool,
    scale_factor: Option<f64>,
) -> Vec<[(usize, f32); 2]> {
    let scale = if align_corners {
        if output > 1 {
            (input as f64 - 1.0) / (output as f64 - 1.0)
        } else {
            0.0
        }
    } else {
        match scale_factor {
            Some(f) if f > 0.0 => 1.0 / f,
            _ => input as f64 / output as f64,
        }
    };
    (0..output)
        .map(|j| {
            // PyTorch computes the coordinate in float (the op-math type of f32 input).
            let (scale, j) = (scale as f32, j as f32);
            let src = if align_corners {
                scale * j
            } else {
                (scale * (j + 0.5) - 0.5).max(0.0)
            };
            let i0 = (src as usize).min(input - 1);
            let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
            let l1 = (src - i0 as f32).min(1.0);
            [(i0, 1.0 - l1), (i1, l1)]
        })
        .collect()
}

/// Separable interpolation of one plane of `input` to `output` (three axes each): output
/// `(z, y, x)` is `Σ wz·wy·wx · src[iz, iy, ix]` over the taps of each axis.
pub fn interpolate_nd(
    src: &[f32],
    dst: &mut [f32],
    input: [usize; 3],
    output: [usize; 3],
    taps: &[Vec<Vec<(usize, f32)>>; 3],
) {
    let [_, ih, iw] = input;
    let [_, oh, ow] = output;
    for (oz, tz) in taps[0].iter().enumerate() {
        for (oy, ty) in taps[1].iter().enumerate() {
            for (ox, tx) in taps[2].iter().enumerate() {
                let mut acc = 0.0f32;
                for &(iz, wz) in tz {
                    for &(iy, wy) in ty {
                        let line = &src[(iz * ih + iy) * iw..(iz * ih + iy + 1) * iw];
                        for &(ix, wx) in tx {
                            acc += wz * wy * wx * line[ix];
                        }
                    }
                }
                dst[(oz * oh + oy) * ow + ox] = acc;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64 values in [−1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn out_len(i: usize, k: usize, s: usize, p: usize, d: usize) -> usize {
        (i + 2 * p - d * (k - 1) - 1) / s + 1
    }

    /// Direct definition: out[o][z][y][x] = Σ_c,a,b,e w[o][c][a][b][e] · x[c][z·s−p+a·d]…
    fn naive_conv(x: &[f32], c: usize, win: &WindowNd, w: &[f32], m: usize) -> Vec<f32> {
        let [kd, kh, kw] = win.kernel;
        let ivol = win.input_len();
        let mut out = vec![0.0f32; m * win.output_len()];
        for o in 0..m {
            for z in 0..win.output[0] {
                for y in 0..win.output[1] {
                    for xx in 0..win.output[2] {
                        let mut acc = 0.0f64;
                        for ci in 0..c {
                            for a in 0..kd {
                                for b in 0..kh {
                                    for e in 0..kw {
                                        let pos = [
                                            (z * win.stride[0] + a * win.dilation[0]) as isize
                                                - win.pad[0] as isize,
                                            (y * win.stride[1] + b * win.dilation[1]) as isize
                                                - win.pad[1] as isize,
                                            (xx * win.stride[2] + e * win.dilation[2]) as isize
                                                - win.pad[2] as isize,
                                        ];
                                        if (0..3)
                                            .any(|q| pos[q] < 0 || pos[q] as usize >= win.input[q])
                                        {
                                            continue;
                                        }
                                        let i = (pos[0] as usize * win.input[1] + pos[1] as usize)
                                            * win.input[2]
                                            + pos[2] as usize;
                                        acc += (w[(((o * c + ci) * kd + a) * kh + b) * kw + e]
                                            * x[ci * ivol + i])
                                            as f64;
                                    }
                                }
                            }
                        }
                        out[((o * win.output[0] + z) * win.output[1] + y) * win.output[2] + xx] =
                            acc as f32;
                    }
                }
            }
        }
        out
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "element {i}: {x} vs {y}"
            );
        }
    }

    /// Cases over ranks 1–3: input, kernel, stride, padding, dilation, channels in/out.
    type Case = (
        Vec<usize>,
        Vec<usize>,
        Vec<usize>,
        Vec<usize>,
        Vec<usize>,
        usize,
        usize,
    );

    fn cases() -> Vec<Case> {
        vec![
            (vec![37], vec![5], vec![2], vec![2], vec![1], 3, 4),
            (vec![50], vec![3], vec![1], vec![0], vec![3], 2, 5),
            (
                vec![9, 11],
                vec![3, 2],
                vec![2, 1],
                vec![1, 0],
                vec![1, 2],
                2,
                3,
            ),
            (
                vec![6, 9, 8],
                vec![3, 3, 3],
                vec![1, 2, 2],
                vec![1, 1, 1],
                vec![1, 1, 1],
                3,
                4,
            ),
            (
                vec![5, 7, 7],
                vec![3, 1, 1],
                vec![2, 1, 1],
                vec![1, 0, 0],
                vec![1, 1, 1],
                4,
                2,
            ),
            (
                vec![4, 10, 6],
                vec![1, 3, 3],
                vec![1, 1, 2],
                vec![0, 2, 1],
                vec![1, 2, 1],
                2,
                3,
            ),
            (
                vec![3, 4, 5],
                vec![2, 2, 2],
                vec![1, 1, 1],
                vec![0, 0, 0],
                vec![2, 1, 3],
                1,
                1,
            ),
        ]
    }

    fn window_of(case: &Case) -> WindowNd {
        let (i, k, s, p, d, _, _) = case;
        let o: Vec<usize> = (0..i.len())
            .map(|a| out_len(i[a], k[a], s[a], p[a], d[a]))
            .collect();
        WindowNd::new(k, s, p, d, i, &o)
    }

    #[test]
    fn conv_nd_matches_the_definition() {
        for (n, case) in cases().iter().enumerate() {
            let win = window_of(case);
            let (c, m) = (case.5, case.6);
            let x = values(c * win.input_len(), n as u64);
            let w = values(m * c * win.taps(), 100 + n as u64);
            let mut out = vec![f32::NAN; m * win.output_len()];
            let macs = conv_nd(&x, c, &win, &w, m, None, None, &mut out);
            assert_eq!(macs as usize, m * win.output_len() * c * win.taps());
            close(&out, &naive_conv(&x, c, &win, &w, m), 1e-5);
            // Bias and a fused ReLU.
            let b = values(m, 7);
            conv_nd(
                &x,
                c,
                &win,
                &w,
                m,
                Some(&b),
                Some(Pointwise::Relu),
                &mut out,
            );
            let want: Vec<f32> = naive_conv(&x, c, &win, &w, m)
                .chunks(win.output_len())
                .enumerate()
                .flat_map(|(o, r)| {
                    let bo = b[o];
                    r.iter().map(move |v| (v + bo).max(0.0)).collect::<Vec<_>>()
                })
                .collect();
            close(&out, &want, 1e-5);
        }
    }

    #[test]
    fn every_plan_agrees() {
        // (input, kernel, padding, c, m, threads, plan), plans derived by hand from
        // ConvPlan::new: k = c·taps, n = output positions, columns per tile
        // ⌈max(2^19 / 4k, 64) / 16⌉·16.
        type PlanCase = (&'static [usize], &'static [usize], &'static [usize]);
        let cases: [(PlanCase, usize, usize, usize, ConvPlan); 4] = [
            // 1×1×1, stride 1, unpadded: the GEMM reads the input.
            (
                (&[3, 10, 10], &[1, 1, 1], &[0, 0, 0]),
                8,
                16,
                2,
                ConvPlan::Direct,
            ),
            // k = 32·27 = 864, n = 4·8·8 = 256 < 256·4, 16·256·864 ≥ 2^18: one im2col.
            (
                (&[4, 8, 8], &[3, 3, 3], &[1, 1, 1]),
                32,
                16,
                4,
                ConvPlan::Whole,
            ),
            // k = 8·27 = 216, n = 2048 ≥ 256·2: 2^19/864 = 606 → 608 columns, 4 tiles on 2 threads.
            (
                (&[8, 16, 16], &[3, 3, 3], &[1, 1, 1]),
                8,
                8,
                2,
                ConvPlan::Tiled {
                    cols: 608,
                    tiles: 4,
                    groups: 2,
                },
            ),
            // 2·9·100 < 2^18 MACs: on the calling thread alone, whatever the threads.
            (
                (&[100], &[9], &[4]),
                2,
                9,
                4,
                ConvPlan::Tiled {
                    cols: 100,
                    tiles: 1,
                    groups: 1,
                },
            ),
        ];
        for (n, ((i, k, p), c, m, threads, plan)) in cases.into_iter().enumerate() {
            let r = i.len();
            let o: Vec<usize> = (0..r).map(|a| out_len(i[a], k[a], 1, p[a], 1)).collect();
            let win = WindowNd::new(k, &vec![1; r], p, &vec![1; r], i, &o);
            assert_eq!(ConvPlan::new(c, &win, m, threads), plan, "case {n}");
            let x = values(c * win.input_len(), 20 + n as u64);
            let w = values(m * c * win.taps(), 30 + n as u64);
            let b = values(m, 40 + n as u64);
            let mut out = vec![f32::NAN; m * win.output_len()];
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| conv_nd(&x, c, &win, &w, m, Some(&b), None, &mut out));
            let want: Vec<f32> = naive_conv(&x, c, &win, &w, m)
                .chunks(win.output_len())
                .zip(&b)
                .flat_map(|(row, &bo)| row.iter().map(move |v| v + bo))
                .collect();
            close(&out, &want, 1e-4);
        }
    }

    #[test]
    fn small_tiles_agree() {
        // A long 1-D signal: many tiles (TILE_BYTES / (4·(k + m)) columns each).
        let win = WindowNd::new(&[9], &[1], &[4], &[1], &[20_000], &[20_000]);
        let (c, m) = (16, 8);
        let x = values(c * 20_000, 3);
        let w = values(m * c * 9, 4);
        let mut out = vec![0.0; m * 20_000];
        conv_nd(&x, c, &win, &w, m, None, None, &mut out);
        close(&out, &naive_conv(&x, c, &win, &w, m), 1e-4);
    }

    #[test]
    fn transposed_is_the_adjoint_scatter() {
        // y = convᵀ(x): for every x position and tap, y[pos·s − p + t·d] += w · x — the
        // definition of PyTorch's ConvTranspose.
        for (n, case) in cases().iter().enumerate() {
            let (i, k, s, p, d, c, m) = case.clone();
            // Output of the transposed conv: (i−1)·s − 2p + d(k−1) + 1.
            let big: Vec<usize> = (0..i.len())
                .map(|a| {
                    (i[a] - 1) * s[a] + d[a] * (k[a] - 1) + 1
                        - 2 * p[a].min((d[a] * (k[a] - 1)) / 2)
                })
                .collect();
            let pads: Vec<usize> = (0..i.len())
                .map(|a| p[a].min((d[a] * (k[a] - 1)) / 2))
                .collect();
            let win = WindowNd::new(&k, &s, &pads, &d, &big, &i);
            let x = values(c * win.output_len(), n as u64);
            let w = values(c * m * win.taps(), 50 + n as u64);
            let mut out = vec![0.0; m * win.input_len()];
            let mut cols = Vec::new();
            conv_transpose_nd(&x, c, &win, &w, m, &mut cols, &mut out);
            let mut want = vec![0.0f32; m * win.input_len()];
            let [kd, kh, kw] = win.kernel;
            for ci in 0..c {
                for z in 0..win.output[0] {
                    for y in 0..win.output[1] {
                        for xx in 0..win.output[2] {
                            let v = x[ci * win.output_len()
                                + (z * win.output[1] + y) * win.output[2]
                                + xx];
                            for o in 0..m {
                                for a in 0..kd {
                                    for b in 0..kh {
                                        for e in 0..kw {
                                            let (Some(iz), Some(iy), Some(ix)) = (
                                                win.tap(0, z, a),
                                                win.tap(1, y, b),
                                                win.tap(2, xx, e),
                                            ) else {
                                                continue;
                                            };
                                            let wt = w[(((ci * m + o) * kd + a) * kh + b) * kw + e];
                                            want[o * win.input_len()
                                                + (iz * win.input[1] + iy) * win.input[2]
                                                + ix] += wt * v;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            close(&out, &want, 1e-5);
        }
    }

    #[test]
    fn padding_modes_follow_torch() {
        // F.pad([0, 1, 2, 3], (2, 2), mode) on a 1-D signal:
        // reflect [2, 1, 0, 1, 2, 3, 2, 1], replicate [0, 0, 0, 1, 2, 3, 3, 3],
        // circular [2, 3, 0, 1, 2, 3, 0, 1].
        let x = [0.0, 1.0, 2.0, 3.0];
        let p = |m| pad_nd(&x, 1, [1, 1, 4], [0, 0, 2], [0, 0, 2], m);
        assert_eq!(p(PadMode::Reflect), [2., 1., 0., 1., 2., 3., 2., 1.]);
        assert_eq!(p(PadMode::Replicate), [0., 0., 0., 1., 2., 3., 3., 3.]);
        assert_eq!(p(PadMode::Circular), [2., 3., 0., 1., 2., 3., 0., 1.]);
        assert_eq!(p(PadMode::Zeros), [0., 0., 0., 1., 2., 3., 0., 0.]);
        // 3-D: a 2×2×2 cube replicate-padded by 1 everywhere: corners copy the nearest corner.
        let c: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let y = pad_nd(&c, 1, [2, 2, 2], [1, 1, 1], [1, 1, 1], PadMode::Replicate);
        assert_eq!(y.len(), 64);
        assert_eq!((y[0], y[63]), (0.0, 7.0));
        // Position (1, 1, 1) of the padded cube is input (0, 0, 0).
        assert_eq!(y[16 + 4 + 1], 0.0);
    }

    #[test]
    fn max_pool_values_indices_and_nan() {
        // 1-D: [1, 5, 2, NaN, 3, 0, 4], k3 s2 p1 → windows [pad,1,5] [5,2,NaN] [NaN,3,0] [0,4,pad].
        let x = [1.0, 5.0, 2.0, f32::NAN, 3.0, 0.0, 4.0];
        let win = WindowNd::new(&[3], &[2], &[1], &[1], &[7], &[4]);
        let mut y = [0.0; 4];
        let mut ids = [0u32; 4];
        max_pool_nd(&x, &mut y, Some(&mut ids), &win);
        assert_eq!(y[0], 5.0);
        assert!(y[1].is_nan() && y[2].is_nan());
        assert_eq!(y[3], 4.0);
        assert_eq!(ids, [1, 3, 3, 6]);
        // 3-D against the definition on random data, with dilation.
        let (i, k, s, p, d) = ([5, 9, 8], [3, 2, 3], [2, 1, 2], [1, 1, 1], [1, 2, 1]);
        let o: Vec<usize> = (0..3)
            .map(|a| out_len(i[a], k[a], s[a], p[a], d[a]))
            .collect();
        let win = WindowNd::new(&k, &s, &p, &d, &i, &o);
        let x = values(win.input_len(), 9);
        let mut y = vec![0.0; win.output_len()];
        let mut ids = vec![0u32; win.output_len()];
        max_pool_nd(&x, &mut y, Some(&mut ids), &win);
        for (n, (v, at)) in y.iter().zip(&ids).enumerate() {
            let (z, r) = (n / (o[1] * o[2]), n % (o[1] * o[2]));
            let (yy, xx) = (r / o[2], r % o[2]);
            let mut best = f32::NEG_INFINITY;
            for a in 0..k[0] {
                for b in 0..k[1] {
                    for e in 0..k[2] {
                        if let (Some(iz), Some(iy), Some(ix)) =
                            (win.tap(0, z, a), win.tap(1, yy, b), win.tap(2, xx, e))
                        {
                            best = best.max(x[(iz * i[1] + iy) * i[2] + ix]);
                        }
                    }
                }
            }
            assert_eq!(*v, best);
            assert_eq!(x[*at as usize], best);
        }
    }

    #[test]
    fn avg_pool_divisors() {
        // 1-D [1, 2, 3, 4, 5], k3 s2 p1: windows [pad,1,2] [2,3,4] [4,5,pad].
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let win = WindowNd::new(&[3], &[2], &[1], &[1], &[5], &[3]);
        let mut y = [0.0; 3];
        avg_pool_nd(&x, &mut y, &win, true, None);
        assert_eq!(y, [1.0, 3.0, 3.0]);
        avg_pool_nd(&x, &mut y, &win, false, None);
        assert_eq!(y, [1.5, 3.0, 4.5]);
        avg_pool_nd(&x, &mut y, &win, true, Some(2));
        assert_eq!(y, [1.5, 4.5, 4.5]);
        // ceil_mode: 5 with k2 s2 → 3 outputs; the last window [4, 5) is cut at the input
        // (input + pad = 5), so its divisor is 1.
        let win = WindowNd::new(&[2], &[2], &[0], &[1], &[5], &[3]);
        avg_pool_nd(&x, &mut y, &win, true, None);
        assert_eq!(y, [1.5, 3.5, 5.0]);
        // 3-D 2×2×2 cube of 0..8, k2: the mean 3.5.
        let c: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let win = WindowNd::new(
            &[2, 2, 2],
            &[2, 2, 2],
            &[0, 0, 0],
            &[1, 1, 1],
            &[2, 2, 2],
            &[1, 1, 1],
        );
        let mut y = [0.0];
        avg_pool_nd(&c, &mut y, &win, true, None);
        assert_eq!(y, [3.5]);
    }

    #[test]
    fn adaptive_windows() {
        // 7 → 3 along one axis: windows [0,3) [2,5) [4,7).
        let x: Vec<f32> = (0..7).map(|v| v as f32).collect();
        let mut y = [0.0; 3];
        adaptive_pool_nd(&x, &mut y, [1, 1, 7], [1, 1, 3], false);
        assert_eq!(y, [1.0, 3.0, 5.0]);
        adaptive_pool_nd(&x, &mut y, [1, 1, 7], [1, 1, 3], true);
        assert_eq!(y, [2.0, 4.0, 6.0]);
        // 3-D to 1×1×1 is the mean of the volume.
        let c: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let mut y = [0.0];
        adaptive_pool_nd(&c, &mut y, [2, 3, 4], [1, 1, 1], false);
        assert_eq!(y, [11.5]);
    }

    #[test]
    fn linear_interpolation() {
        // [0, 1, 2, 3] ×2 without align_corners (PyTorch): src = (j + ½)/2 − ½, clamped at 0:
        // [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3].
        let x = [0.0, 1.0, 2.0, 3.0];
        let t: Vec<Vec<(usize, f32)>> = linear_taps(4, 8, false, Some(2.0))
            .into_iter()
            .map(|p| p.to_vec())
            .collect();
        let one = vec![vec![(0usize, 1.0f32)]];
        let taps = [one.clone(), one, t];
        let mut y = [0.0; 8];
        interpolate_nd(&x, &mut y, [1, 1, 4], [1, 1, 8], &taps);
        assert_eq!(y, [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]);
        // align_corners: 4 → 7 samples 0, 0.5, …, 3 exactly.
        let t = linear_taps(4, 7, true, None);
        let got: Vec<f32> = t
            .iter()
            .map(|p| p[0].1 * x[p[0].0] + p[1].1 * x[p[1].0])
            .collect();
        assert_eq!(got, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
        // Trilinear on a 2×2×2 cube of 0..8 to 3×3×3 with align_corners: the centre is the
        // mean 3.5, and the value is linear in each coordinate (z·4 + y·2 + x).
        let c: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let ax = || -> Vec<Vec<(usize, f32)>> {
            linear_taps(2, 3, true, None)
                .into_iter()
                .map(|p| p.to_vec())
                .collect()
        };
        let mut y = [0.0; 27];
        interpolate_nd(&c, &mut y, [2, 2, 2], [3, 3, 3], &[ax(), ax(), ax()]);
        assert_eq!(y[13], 3.5);
        for (n, v) in y.iter().enumerate() {
            let (z, yy, xx) = (n / 9, (n / 3) % 3, n % 3);
            let want = (z as f32 * 4.0 + yy as f32 * 2.0 + xx as f32) / 2.0;
            assert_eq!(*v, want, "{n}");
        }
    }
}
