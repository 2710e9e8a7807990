//! The attention kernel: `softmax(scale · Q·Kᵀ + mask) · V` for a batch of (sample, head)
//! pairs, the core of `multi_head_attention` and `scaled_dot_product_attention`. Each pair's
//! two products run on the `gemm` crate through [`crate::kernels::gemm_into`] (one thread per
//! pair; pairs shared out over rayon's threads, each with one scratch buffer for its scores),
//! and the softmax is done in place, row by row, over the scores (no allocation per element,
//! compiled for the widest vector unit through [`crate::kernels::vectorised`]).
//!
//! Operands are read where they lie: a matrix of pair `b` starts at
//! `(b / heads)·outer + (b % heads)·head` and its rows are `row` elements apart, columns
//! contiguous — a head's slice of an `N×L×E` projection (`outer = L·E`, `head = d`,
//! `row = E`) or a contiguous `…×L×d` tensor (`heads = 1`, `outer = L·d`, `row = d`).

use rayon::prelude::*;

use crate::kernels::{gemm_into, matmul, vectorised};

/// Where the matrices of each (sample, head) pair lie in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strided {
    /// Heads per sample: pair `b` is head `b % heads` of sample `b / heads`.
    pub heads: usize,
    /// Elements between samples.
    pub outer: usize,
    /// Elements between heads of one sample.
    pub head: usize,
    /// Elements between rows.
    pub row: usize,
}

impl Strided {
    fn base(&self, b: usize) -> usize {
        (b / self.heads) * self.outer + (b % self.heads) * self.head
    }
}

/// An additive mask broadcast over the pairs: pair `b` reads `data[offset(b) + i·row + j·col]`
/// for score `(i, j)` (`row`, `col` 0 along a broadcast axis).
pub struct Mask<'a> {
    pub data: &'a [f32],
    /// The offset of each pair's mask (its broadcast leading index).
    pub offsets: Vec<usize>,
    pub row: usize,
    pub col: usize,
}

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// (sample, head) pairs of the queries.
    pub pairs: usize,
    /// Query positions.
    pub l: usize,
    /// Key/value positions.
    pub s: usize,
    /// Features of a query and a key.
    pub e: usize,
    /// Features of a value.
    pub ev: usize,
    /// Query heads per key/value head (grouped-query attention; 1 otherwise): query pair `b`
    /// reads key/value pair `b / group` within its sample.
    pub group: usize,
}

/// Elements of scratch one pair uses (its scores, its query and its transposed keys).
pub fn scratch_per_pair(d: &Dims) -> usize {
    d.l * d.s + d.l * d.e + d.e * d.s
}

/// Elements of gemm's packing buffers one pair's products allocate at most, one product at a
/// time: Q·Kᵀ (L×E · E×S) or attention·V (L×S · S×Ev) ([`crate::kernels::gemm_packing`]).
pub fn packing_per_pair(d: &Dims) -> u64 {
    crate::kernels::gemm_packing(d.l, d.s, d.e).max(crate::kernels::gemm_packing(d.l, d.ev, d.s))
}

/// Elements of scratch [`attention`] allocates at most: per rayon thread (at most one per
/// pair), one pair's scratch and the packing buffers of its current product.
pub fn workspace(d: &Dims) -> u64 {
    let tasks = d.pairs.min(rayon::current_num_threads().max(1));
    (tasks as u64).saturating_mul((scratch_per_pair(d) as u64).saturating_add(packing_per_pair(d)))
}

/// The additive mask of a mask of the keys `keep` (N×S: key `j` of sample `n` is attended where
/// `keep[n·S + j]` is not 0, transformers' `attention_mask`), with PyTorch's causal rule when
/// `causal` (query `i` sees keys `0..=i`): 0 where a pair is attended, the lowest f32 elsewhere.
/// That is transformers' own mask (`torch.finfo(float32).min` where its boolean mask is false,
/// added once), so a query that sees no key at all averages every key, as transformers' model
/// does. N×L×S when `causal`, else N×S (one row for every query).
pub fn key_mask(keep: &[f32], n: usize, l: usize, s: usize, causal: bool) -> Vec<f32> {
    let rows = if causal { l } else { 1 };
    let mut out = vec![0f32; n * rows * s];
    for (b, plane) in out.chunks_exact_mut((rows * s).max(1)).enumerate() {
        let k = &keep[b * s..(b + 1) * s];
        for (i, row) in plane.chunks_exact_mut(s.max(1)).enumerate() {
            for (j, x) in row.iter_mut().enumerate() {
                if k[j] == 0.0 || (causal && j > i) {
                    *x = f32::MIN;
                }
            }
        }
    }
    out
}

/// `out = softmax(scale · Q·Kᵀ + mask, over keys) · V` for every pair, with keys after the
/// query's own position left out when `causal` (PyTorch's top-left aligned `is_causal`: query
/// `i` sees keys `0..=i`). `out` is written where [`Strided`] `o` says. Returns the
/// multiply-accumulates of the two products: `pairs · L · S · (E + Ev)`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    d: &Dims,
    q: (&[f32], Strided),
    k: (&[f32], Strided),
    v: (&[f32], Strided),
    mask: Option<&Mask>,
    causal: bool,
    scale: f32,
    out: (&mut [f32], Strided),
) -> u64 {
    let Dims {
        pairs,
        l,
        s,
        e,
        ev,
        group,
    } = *d;
    if pairs == 0 || l == 0 || ev == 0 {
        return 0;
    }
    let (odata, o) = out;
    // Bounds of every write (the last element of the last pair), checked once.
    let last = o.base(pairs - 1) + (l - 1) * o.row + ev;
    assert!(last <= odata.len(), "attention output out of bounds");
    let kv_pair = |b: usize| {
        // Within a sample, query head h reads key/value head h / group.
        let (n, h) = (b / q.1.heads, b % q.1.heads);
        n * k.1.heads + h / group
    };
    let out_addr = odata.as_mut_ptr() as usize;
    let tasks = pairs.min(rayon::current_num_threads().max(1));
    let per = pairs.div_ceil(tasks);
    (0..tasks).into_par_iter().for_each(|t| {
        let mut scratch = vec![0f32; scratch_per_pair(d)];
        for b in t * per..((t + 1) * per).min(pairs) {
            let (scores, rest) = scratch.split_at_mut(l * s);
            let (qb, kt) = rest.split_at_mut(l * e);
            // The query, scaled, as a contiguous L×E block; the keys transposed to E×S.
            let qbase = q.1.base(b);
            for i in 0..l {
                let src = &q.0[qbase + i * q.1.row..][..e];
                for (dst, x) in qb[i * e..(i + 1) * e].iter_mut().zip(src) {
                    *dst = x * scale;
                }
            }
            let kb = kv_pair(b);
            let kbase = k.1.base(kb);
            for j in 0..s {
                let src = &k.0[kbase + j * k.1.row..][..e];
                for (c, x) in src.iter().enumerate() {
                    kt[c * s + j] = *x;
                }
            }
            if e == 0 {
                scores.fill(0.0);
            } else {
                // SAFETY: `scores` is this task's own L×S buffer.
                unsafe { gemm_into(l, s, e, qb, kt, s, scores.as_mut_ptr(), s) };
            }
            let moff = mask.map(|m| m.offsets[b]);
            vectorised(
                #[inline(always)]
                || {
                    for (i, row) in scores.chunks_exact_mut(s).enumerate() {
                        if let (Some(m), Some(off)) = (mask, moff) {
                            let base = off + i * m.row;
                            if m.col == 0 {
                                let add = m.data[base];
                                row.iter_mut().for_each(|x| *x += add);
                            } else {
                                row.iter_mut()
                                    .zip(&m.data[base..base + s])
                                    .for_each(|(x, a)| *x += a);
                            }
                        }
                        let seen = if causal { (i + 1).min(s) } else { s };
                        softmax_row(&mut row[..seen]);
                        row[seen..].fill(0.0);
                    }
                },
            );
            let vbase = v.1.base(kb);
            let obase = o.base(b);
            if s == 0 {
                for i in 0..l {
                    // SAFETY: row i of pair b's output block, written by this task alone.
                    unsafe {
                        std::slice::from_raw_parts_mut(
                            (out_addr as *mut f32).add(obase + i * o.row),
                            ev,
                        )
                    }
                    .fill(0.0);
                }
                continue;
            }
            assert!(
                vbase + (s - 1) * v.1.row + ev <= v.0.len(),
                "attention values out of bounds"
            );
            // SAFETY: pair b's output block (L rows of Ev at `obase`, `o.row` apart) is inside
            // `odata` (checked above for the last pair; bases grow with b) and no other pair
            // writes it: distinct pairs are distinct (sample, head) blocks.
            unsafe {
                gemm_into(
                    l,
                    ev,
                    s,
                    scores,
                    &v.0[vbase..],
                    v.1.row,
                    (out_addr as *mut f32).add(obase),
                    o.row,
                )
            };
        }
    });
    (pairs as u64) * (l as u64) * (s as u64) * ((e + ev) as u64)
}

/// The tail the two windowed attentions share (Swin's `shifted_window_attention`, MaxViT's
/// `relative_position_attention`): for head `h` of a window of `l` tokens,
/// `out[:, h·d…]` (rows at stride `c`) = `probs` (l×l, rows already softmaxed) · V, V the rows
/// of `qkv` (stride 3C, at column 2C + h·d); `o` is an l×d scratch. Returns the MACs.
pub fn probs_times_values(
    probs: &[f32],
    qkv: &[f32],
    out: &mut [f32],
    o: &mut [f32],
    (l, d, c, h): (usize, usize, usize, usize),
) -> u64 {
    let macs = matmul(
        l,
        d,
        l,
        probs,
        l,
        1,
        &qkv[2 * c + h * d..],
        3 * c,
        1,
        o,
        false,
    );
    for i in 0..l {
        out[i * c + h * d..i * c + h * d + d].copy_from_slice(&o[i * d..(i + 1) * d]);
    }
    macs
}

/// In-place softmax of one row: `exp(x − max) / Σ`. An empty row stays empty; a row of
/// `−∞` only gives NaN, as PyTorch's.
#[inline(always)]
pub fn softmax_row(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|x| *x *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one score at a time.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        d: &Dims,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: Option<&[f32]>,
        causal: bool,
        scale: f32,
    ) -> Vec<f32> {
        let mut out = vec![0f32; d.pairs * d.l * d.ev];
        for b in 0..d.pairs {
            let kb = b / d.group;
            for i in 0..d.l {
                let mut w: Vec<f64> = (0..d.s)
                    .map(|j| {
                        if causal && j > i {
                            return f64::NEG_INFINITY;
                        }
                        let dot: f64 = (0..d.e)
                            .map(|c| {
                                f64::from(q[(b * d.l + i) * d.e + c])
                                    * f64::from(k[(kb * d.s + j) * d.e + c])
                            })
                            .sum();
                        dot * f64::from(scale) + mask.map_or(0.0, |m| f64::from(m[i * d.s + j]))
                    })
                    .collect();
                let max = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = w.iter().map(|x| (x - max).exp()).sum();
                w.iter_mut().for_each(|x| *x = (*x - max).exp() / sum);
                for c in 0..d.ev {
                    out[(b * d.l + i) * d.ev + c] = (0..d.s)
                        .map(|j| w[j] * f64::from(v[(kb * d.s + j) * d.ev + c]))
                        .sum::<f64>() as f32;
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / 4.3e9 - 0.5)
            .collect()
    }

    fn contiguous(heads: usize, rows: usize, cols: usize) -> Strided {
        Strided {
            heads,
            outer: heads * rows * cols,
            head: rows * cols,
            row: cols,
        }
    }

    #[test]
    fn agrees_with_the_definition() {
        for (d, masked, causal) in [
            (
                Dims {
                    pairs: 3,
                    l: 5,
                    s: 7,
                    e: 4,
                    ev: 6,
                    group: 1,
                },
                false,
                false,
            ),
            (
                Dims {
                    pairs: 2,
                    l: 6,
                    s: 6,
                    e: 8,
                    ev: 8,
                    group: 1,
                },
                false,
                true,
            ),
            (
                Dims {
                    pairs: 4,
                    l: 4,
                    s: 9,
                    e: 3,
                    ev: 2,
                    group: 2,
                },
                true,
                true,
            ),
            (
                Dims {
                    pairs: 1,
                    l: 70,
                    s: 33,
                    e: 16,
                    ev: 5,
                    group: 1,
                },
                true,
                false,
            ),
        ] {
            let kv = d.pairs / d.group;
            let (q, k, v) = (
                values(d.pairs * d.l * d.e, 1),
                values(kv * d.s * d.e, 2),
                values(kv * d.s * d.ev, 3),
            );
            let m = values(d.l * d.s, 4);
            let mask = Mask {
                data: &m,
                offsets: vec![0; d.pairs],
                row: d.s,
                col: 1,
            };
            let mut out = vec![f32::NAN; d.pairs * d.l * d.ev];
            let macs = attention(
                &d,
                (&q, contiguous(d.pairs, d.l, d.e)),
                (&k, contiguous(kv, d.s, d.e)),
                (&v, contiguous(kv, d.s, d.ev)),
                masked.then_some(&mask),
                causal,
                0.37,
                (&mut out, contiguous(d.pairs, d.l, d.ev)),
            );
            assert_eq!(macs, (d.pairs * d.l * d.s * (d.e + d.ev)) as u64);
            let want = naive(&d, &q, &k, &v, masked.then_some(&m[..]), causal, 0.37);
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "{d:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn heads_interleaved_in_rows() {
        // Two heads of d = 3 inside rows of E = 6 (an N×L×E projection): the same as each head
        // taken out contiguously.
        let (l, e, h) = (4, 6, 2);
        let x = values(l * e, 9);
        let mut out = vec![0f32; l * e];
        let inter = Strided {
            heads: h,
            outer: l * e,
            head: e / h,
            row: e,
        };
        let d = Dims {
            pairs: h,
            l,
            s: l,
            e: e / h,
            ev: e / h,
            group: 1,
        };
        attention(
            &d,
            (&x, inter),
            (&x, inter),
            (&x, inter),
            None,
            false,
            0.5,
            (&mut out, inter),
        );
        for head in 0..h {
            let part: Vec<f32> = (0..l)
                .flat_map(|i| x[i * e + head * 3..i * e + head * 3 + 3].to_vec())
                .collect();
            let one = Dims { pairs: 1, ..d };
            let want = naive(&one, &part, &part, &part, None, false, 0.5);
            for i in 0..l {
                for c in 0..3 {
                    assert!((out[i * e + head * 3 + c] - want[i * 3 + c]).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn softmax_of_a_row() {
        let mut r = [1.0f32, 2.0, 3.0];
        softmax_row(&mut r);
        // e^-2, e^-1, 1 over their sum 1.503214724.
        let want = [0.090_030_57, 0.244_728_48, 0.665_240_94];
        for (a, b) in r.iter().zip(want) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
