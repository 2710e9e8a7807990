//! Stride-1 convolutions as a direct product over an implicit im2col (issue #19). The im2col
//! matrix of a stride-1 convolution is the zero-padded input planes read at `kh·kw` shifts:
//! with the padded planes flattened (`Hp × Wp` each), output position `(oy, ox)` is column
//! `oy·Wp + ox` of a product whose row `(c, ky, kx)` is plane `c` read from offset
//! `ky·dh·Wp + kx·dw`. So one zero-padded copy of the input (its size, not `kh·kw` times it)
//! replaces the im2col copy, and [`super::direct::product_rows`] reads its rows in place; the
//! `Wp − OW` columns past each output row are computed and dropped when the tile is copied
//! out. This is where convolutions with few output channels (DenseNet's 3×3 → 32) spent most
//! of their time: with `m` = 32 each im2col value feeds only 32 multiply-adds, and the copy
//! cost as much as the product. AVX-512 only (the direct kernel's); callers fall back to
//! `conv_gemm` otherwise.

use super::{direct, vectorised, with_scratch, Epilogue, Window2d, KEPT_SCRATCH, PARALLEL_MACS};
use rayon::prelude::*;

/// Padded-plane positions a tile aims for at most (whole output rows, at least one).
const TILE_POSITIONS: usize = 512;
/// Elements a tile's output buffer (`m` × its positions) aims for at most: 128 KiB, so that
/// it and the padded planes the tile reads stay in L2.
const TILE_FLOATS: usize = 32 << 10;

/// The most output channels [`conv`] takes on maps of more than [`SMALL_MAP`] positions. With
/// more (GoogLeNet's 3×3 → 192 on 56×56 and 28×28) the per-layer minima of whole models
/// were some 10% slower than im2col and `gemm`, which blocks the reduction for L1; with up to
/// 128 (ResNet-50's layer1/2, DenseNet's → 32, GoogLeNet's → 128) 15–45% faster
/// (docs/PERFORMANCE.md, "fourth pass").
pub const M_MAX: usize = 128;
/// Maps of at most this many output positions (14×14) run here whatever their channels
/// (ResNet-50's 7×7 layer4, GoogLeNet's 4x/5x branches: faster in every profile).
pub const SMALL_MAP: usize = 196;
/// On maps of more than this many output positions (56×56) only up to 64 output channels run
/// here: VGG-16's 64 → 128 and 128 → 128 on 112×112 ran at 80 and 78 GMAC/s against im2col's
/// 88 and 84 (one thread, `examples/bench_conv.rs`), while 64 → 64 on 224×224 and 56×56 and
/// 128 → 128 on 28×28 ran as fast or faster here (74 / 73, 87 / 74, 89 / 77).
pub const LARGE_MAP: usize = 3136;

/// Whether [`conv`] runs `win` here: stride 1 and a CPU with the direct kernel; not the 1×1
/// unpadded window, which `conv_gemm` already reads in place. ([`conv`] also declines more
/// than [`M_MAX`] output channels on large maps, and shapes whose buffers would outgrow the
/// im2col buffer.)
pub fn applies(win: &Window2d) -> bool {
    win.stride == [1, 1]
        && !(win.kernel == [1, 1] && win.pad == [0, 0] && win.input == win.output)
        && direct::available()
}

/// `out` (`m` planes `OH × OW`) = `epi(W · im2col(x) + bias)` for one image and group by the
/// implicit im2col (a residual in `epi`, laid out as `out`, added with the activation after it
/// as each tile's rows are copied out: the tile is computed over the padded width), `W` being `m × (channels·kh·kw)` row-major; on up to `threads` threads
/// (tiles of output rows, or of output channels when the map is small). None (nothing
/// written) where [`applies`] is false or the shape is one it declines (see [`M_MAX`],
/// [`LARGE_MAP`]).
/// Returns the multiply-accumulates counted as the im2col product's (`m · OH·OW · k`).
#[allow(clippy::too_many_arguments)]
pub fn conv<'e>(
    x: &[f32],
    channels: usize,
    win: &Window2d,
    w: &[f32],
    m: usize,
    bias: Option<&[f32]>,
    epi: impl Into<Epilogue<'e>>,
    out: &mut [f32],
    threads: usize,
) -> Option<u64> {
    let epi: Epilogue = epi.into();
    if !applies(win) {
        return None;
    }
    let [kh, kw] = win.kernel;
    let [dh, dw] = win.dilation;
    let [ih, iw] = win.input;
    let [oh, ow] = win.output;
    let [pt, pl] = win.pad;
    let k = channels * kh * kw;
    let n = oh * ow;
    if m == 0 || n == 0 || k == 0 || (m > M_MAX && n > SMALL_MAP) || (m > 64 && n > LARGE_MAP) {
        return None;
    }
    // The padded plane spans every position a tap reads: OH + (kh−1)·dh rows, OW + (kw−1)·dw
    // columns.
    let (hp, wp) = (oh + (kh - 1) * dh, ow + (kw - 1) * dw);
    let plane = hp * wp;
    // Past the last plane: the dropped columns of the last rows read up to (kw−1)·dw more.
    let len = channels * plane + (kw - 1) * dw;
    let offs: Vec<usize> = (0..channels)
        .flat_map(|c| {
            (0..kh).flat_map(move |ky| (0..kw).map(move |kx| c * plane + ky * dh * wp + kx * dw))
        })
        .collect();
    let threads = if m * n * k < PARALLEL_MACS {
        1
    } else {
        threads.max(1)
    };
    let band = (TILE_POSITIONS / wp).min(TILE_FLOATS / (m * wp)).max(1);
    let bands = oh.div_ceil(band);
    let by_channels = threads > 1 && bands < 2 * threads;
    let mb = m.div_ceil(threads).div_ceil(direct::MR) * direct::MR;
    // The padded planes and every thread's tile buffer stay within the im2col buffer this
    // replaces (the workspace the layer declares); past it (large dilations of tiny maps,
    // many output channels over few input values) `conv_gemm` runs.
    let tile_floats = if by_channels {
        mb.min(m) * oh * wp
    } else {
        m * band.min(oh) * wp
    };
    if len.saturating_add(threads.saturating_mul(tile_floats)) > k.saturating_mul(n) {
        return None;
    }
    // Taken out of this thread's scratch so that the tiles' threads can read it (and so that
    // tiles run on this thread can take the slot for their own buffers).
    let mut padded = with_scratch(std::mem::take);
    padded.clear();
    padded.resize(len, 0.0);
    pad_planes(x, channels, [ih, iw], [pt, pl], [hp, wp], &mut padded);
    let out = &mut out[..m * n];
    let out_addr = out.as_mut_ptr() as usize;
    let padded_ref = &padded[..];
    let offs = &offs[..];
    // The activation in the product's register blocks when there is no residual; with one,
    // both when the rows are copied out (the residual is laid out as `out`, not as the tile).
    let (inner, outer) = match epi.add {
        None => (epi, Epilogue::default()),
        Some(_) => (Epilogue::default(), epi),
    };
    // One tile: output channels m0..m1 × output rows y0..y1, computed over the padded width
    // into `buf`, then its OW valid columns per row copied into `out`.
    let tile = |(m0, m1, y0, y1): (usize, usize, usize, usize), buf: &mut Vec<f32>| {
        let cols = (y1 - y0) * wp;
        buf.resize((m1 - m0) * cols, 0.0);
        let row_offs: Vec<usize> = offs.iter().map(|&o| o + y0 * wp).collect();
        // SAFETY: `buf` holds (m1 − m0) rows of `cols` elements, owned by this tile.
        let ran = unsafe {
            direct::product_rows(
                (m1 - m0, cols, k),
                &w[m0 * k..m1 * k],
                padded_ref,
                &row_offs,
                buf.as_mut_ptr(),
                cols,
                bias.map(|b| &b[m0..m1]),
                inner,
            )
        };
        assert!(ran, "the direct kernel was available a moment ago");
        let base = out_addr as *mut f32;
        for r in 0..m1 - m0 {
            for y in y0..y1 {
                let src = &buf[r * cols + (y - y0) * wp..][..ow];
                let at = (m0 + r) * n + y * ow;
                assert!(at + ow <= m * n, "tile out of bounds");
                // SAFETY: row y of output channel m0 + r: inside `out` (asserted), and this
                // tile's alone (tiles are disjoint in channels × rows).
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), base.add(at), ow) };
            }
        }
        if !outer.is_none() {
            vectorised(
                #[inline(always)]
                || {
                    for r in m0..m1 {
                        let at = r * n + y0 * ow;
                        // SAFETY: output channel r's rows y0..y1, this tile's alone (above).
                        let seg =
                            unsafe { std::slice::from_raw_parts_mut(base.add(at), (y1 - y0) * ow) };
                        outer.at(at).apply_here(seg);
                    }
                },
            )
        }
    };
    if by_channels {
        // A small map: the output channels shared out, every tile over the whole map.
        (0..m.div_ceil(mb)).into_par_iter().for_each(|t| {
            let mut buf = Vec::new();
            tile((t * mb, ((t + 1) * mb).min(m), 0, oh), &mut buf);
        });
    } else if threads > 1 {
        (0..bands).into_par_iter().for_each(|b| {
            let mut buf = with_scratch(std::mem::take);
            tile((0, m, b * band, ((b + 1) * band).min(oh)), &mut buf);
            if buf.capacity() <= KEPT_SCRATCH {
                with_scratch(|s| *s = buf);
            }
        });
    } else {
        let mut buf = Vec::new();
        for b in 0..bands {
            tile((0, m, b * band, ((b + 1) * band).min(oh)), &mut buf);
        }
    }
    if padded.capacity() <= KEPT_SCRATCH {
        with_scratch(|s| *s = padded);
    }
    Some((m * n * k) as u64)
}

/// Writes `channels` zero-padded planes `hp × wp` of `x` (planes `ih × iw`, `pt` rows above
/// and `pl` columns left of the input; the rest of the border is zeros, and input rows or
/// columns past the plane are not read) into `dst`, which is already zero past the planes.
pub(super) fn pad_planes(
    x: &[f32],
    channels: usize,
    [ih, iw]: [usize; 2],
    [pt, pl]: [usize; 2],
    [hp, wp]: [usize; 2],
    dst: &mut [f32],
) {
    let plane = hp * wp;
    dst[..channels * plane]
        .par_chunks_mut(plane)
        .with_min_len((1usize << 14).div_ceil(plane.max(1)))
        .enumerate()
        .for_each(|(c, p)| {
            let src = &x[c * ih * iw..(c + 1) * ih * iw];
            for (y, row) in p.chunks_mut(wp).enumerate() {
                let iy = y as isize - pt as isize;
                if iy < 0 || iy >= ih as isize {
                    row.fill(0.0);
                    continue;
                }
                let line = &src[iy as usize * iw..(iy as usize + 1) * iw];
                // Columns pl..pl + iw hold the input (cut at the plane's width).
                let a = pl.min(wp);
                let b = (pl + iw).min(wp);
                row[..a].fill(0.0);
                row[a..b].copy_from_slice(&line[..b - a]);
                row[b..].fill(0.0);
            }
        });
}
