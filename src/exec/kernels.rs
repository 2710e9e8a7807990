//! Shared kernel building blocks: GEMM (the `gemm` crate, AVX-512 where the CPU has it, rayon
//! threads for large products), im2col / col2im, the input positions a sliding window reads,
//! and NumPy broadcasting. Layers compose these in their `forward`.

use rayon::prelude::*;

use super::Tensor;

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

/// im2col of one image `x` (C×H×W): rows (c, ky, kx), columns (oy, ox); padding reads 0.
pub fn im2col(x: &[f32], channels: usize, w: &Window2d, cols: &mut [f32]) {
    let [kh, kw] = w.kernel;
    let [oh, ow] = w.output;
    let [ih, iw] = w.input;
    let plane = oh * ow;
    cols[..channels * kh * kw * plane]
        .par_chunks_mut(kh * kw * plane)
        .enumerate()
        .for_each(|(c, rows)| {
            let src = &x[c * ih * iw..(c + 1) * ih * iw];
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = &mut rows[(ky * kw + kx) * plane..(ky * kw + kx + 1) * plane];
                    for oy in 0..oh {
                        let dst = &mut row[oy * ow..(oy + 1) * ow];
                        match w.tap(0, oy, ky) {
                            None => dst.fill(0.0),
                            Some(iy) => {
                                let line = &src[iy * iw..(iy + 1) * iw];
                                for (ox, d) in dst.iter_mut().enumerate() {
                                    *d = w.tap(1, ox, kx).map_or(0.0, |ix| line[ix]);
                                }
                            }
                        }
                    }
                }
            }
        });
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

/// Applies `f` to every element, in parallel for large tensors.
pub fn map(x: &Tensor, f: impl Fn(f32) -> f32 + Sync + Send) -> Tensor {
    let data = if x.data.len() >= 1 << 15 {
        x.data.par_iter().map(|&v| f(v)).collect()
    } else {
        x.data.iter().map(|&v| f(v)).collect()
    };
    Tensor::new(x.shape.clone(), data)
}

/// Elementwise `f` over inputs broadcast to `out_shape` (NumPy rules).
pub fn broadcast(
    inputs: &[&Tensor],
    out_shape: &[usize],
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) -> Tensor {
    let n: usize = out_shape.iter().product();
    if inputs.iter().all(|t| t.shape == out_shape) {
        let mut data = inputs[0].data.clone();
        for t in &inputs[1..] {
            data.par_iter_mut()
                .zip(&t.data)
                .for_each(|(a, &b)| *a = f(*a, b));
        }
        return Tensor::new(out_shape.to_vec(), data);
    }
    let rank = out_shape.len();
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
    let mut data = vec![0.0; n];
    data.par_chunks_mut(out_shape[rank - 1].max(1))
        .enumerate()
        .for_each(|(row, chunk)| {
            // Decompose the row index into coordinates of all axes but the last.
            let mut coord = vec![0; rank];
            let mut r = row;
            for a in (0..rank - 1).rev() {
                coord[a] = r % out_shape[a];
                r /= out_shape[a];
            }
            for (j, out) in chunk.iter_mut().enumerate() {
                coord[rank - 1] = j;
                let mut acc: Option<f32> = None;
                for (t, s) in inputs.iter().zip(&strides) {
                    let idx: usize = coord.iter().zip(s).map(|(c, st)| c * st).sum();
                    let v = t.data[idx];
                    acc = Some(match acc {
                        None => v,
                        Some(a) => f(a, v),
                    });
                }
                *out = acc.unwrap_or(0.0);
            }
        });
    Tensor::new(out_shape.to_vec(), data)
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn broadcasting() {
        let a = Tensor::new(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]);
        let b = Tensor::new(vec![2, 1], vec![10., 20.]);
        let c = broadcast(&[&a, &b], &[2, 3], |x, y| x * y);
        assert_eq!(c.data, vec![10., 20., 30., 80., 100., 120.]);
    }
}
