//! Pure sliding-window arithmetic shared by convolution, pooling, padding and the
//! receptive-field algebra: output lengths exactly as PyTorch computes them, all checked, no
//! panics, no dependencies; and [`Axes`], one value per spatial axis (1, 2 or 3 of them), the
//! form every per-axis figure (kernel, stride, padding, dilation, sizes) takes.

use std::fmt;

/// Most spatial axes a tensor may have (`N×C×D×H×W`).
pub const MAX_SPATIAL: usize = 3;

/// One value per spatial axis, in tensor order: `[length]` (1-D), `[height, width]` (2-D),
/// `[depth, height, width]` (3-D). A small copyable array that derefs to a slice.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Axes {
    len: u8,
    v: [u64; MAX_SPATIAL],
}

impl Axes {
    /// The values of `v` (1 to 3 of them), or None for another count.
    pub fn new(v: &[u64]) -> Option<Axes> {
        if v.is_empty() || v.len() > MAX_SPATIAL {
            return None;
        }
        let mut a = [0; MAX_SPATIAL];
        a[..v.len()].copy_from_slice(v);
        Some(Axes {
            len: v.len() as u8,
            v: a,
        })
    }
    /// `x` on each of `rank` axes (`rank` clamped to 1..=3).
    pub fn splat(rank: usize, x: u64) -> Axes {
        Axes {
            len: rank.clamp(1, MAX_SPATIAL) as u8,
            v: [x; MAX_SPATIAL],
        }
    }
    /// Number of spatial axes.
    pub fn rank(&self) -> usize {
        self.len as usize
    }
    /// Whether every axis holds `x`.
    pub fn all(&self, x: u64) -> bool {
        self.iter().all(|&v| v == x)
    }
    /// The product of the values, or None on overflow.
    pub fn product(&self) -> Option<u64> {
        self.iter().try_fold(1u64, |a, &b| a.checked_mul(b))
    }
    /// `f` applied to each axis.
    pub fn map(&self, f: impl Fn(u64) -> u64) -> Axes {
        let mut out = *self;
        out.v.iter_mut().for_each(|x| *x = f(*x));
        out
    }
    /// As `usize`s (for kernels).
    pub fn to_usize(&self) -> Vec<usize> {
        self.iter().map(|&x| x as usize).collect()
    }
    /// `3` when every axis is equal, else `3×7×7`.
    pub fn label(&self) -> String {
        if self.all(self[0]) {
            self[0].to_string()
        } else {
            self.dims()
        }
    }
    /// Every axis: `3×7×7` (or `5` for one axis).
    pub fn dims(&self) -> String {
        self.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("×")
    }
}

impl std::ops::Deref for Axes {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        &self.v[..self.len as usize]
    }
}

impl std::ops::DerefMut for Axes {
    fn deref_mut(&mut self) -> &mut [u64] {
        &mut self.v[..self.len as usize]
    }
}

impl fmt::Debug for Axes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &self[..])
    }
}

impl<const N: usize> From<[u64; N]> for Axes {
    fn from(v: [u64; N]) -> Axes {
        Axes::new(&v).expect("1 to 3 axes")
    }
}

impl<const N: usize> PartialEq<[u64; N]> for Axes {
    fn eq(&self, other: &[u64; N]) -> bool {
        self[..] == other[..]
    }
}

/// The name of spatial axis `axis` of a tensor with `rank` spatial axes: `length` (1-D),
/// `height`/`width` (2-D), `depth`/`height`/`width` (3-D).
pub fn axis_name(rank: usize, axis: usize) -> &'static str {
    match (rank, axis) {
        (1, _) => "length",
        (3, 0) => "depth",
        (3, 1) | (2, 0) => "height",
        _ => "width",
    }
}

/// What one input unit of a field with `rank` spatial axes is called: a sample (1-D), a pixel
/// (2-D), a voxel (3-D); `plural` for the plural.
pub fn unit_name(rank: usize, plural: bool) -> &'static str {
    match (rank, plural) {
        (1, true) => "samples",
        (1, false) => "sample",
        (3, true) => "voxels",
        (3, false) => "voxel",
        (_, true) => "pixels",
        (_, false) => "pixel",
    }
}

/// Output length of a convolution along one axis:
/// `floor((input + pad_begin + pad_end - dilation·(kernel-1) - 1) / stride) + 1`.
pub fn conv_out(
    input: u64,
    kernel: u64,
    stride: u64,
    pad_begin: u64,
    pad_end: u64,
    dilation: u64,
) -> Result<u64, String> {
    let eff = effective_kernel(kernel, dilation)?;
    let padded = input
        .checked_add(pad_begin)
        .and_then(|v| v.checked_add(pad_end))
        .ok_or("padded size overflows")?;
    if stride == 0 {
        return Err("stride must be at least 1".into());
    }
    if padded < eff {
        return Err(format!(
            "the kernel spans {eff} pixels but the padded input is only {padded} ({input} + padding {})",
            pad_begin + pad_end
        ));
    }
    Ok((padded - eff) / stride + 1)
}

/// `dilation·(kernel-1) + 1`: the span of a dilated kernel.
pub fn effective_kernel(kernel: u64, dilation: u64) -> Result<u64, String> {
    if kernel == 0 || dilation == 0 {
        return Err("kernel and dilation must be at least 1".into());
    }
    (kernel - 1)
        .checked_mul(dilation)
        .and_then(|v| v.checked_add(1))
        .ok_or_else(|| "kernel span overflows".into())
}

/// Output length of max/avg pooling along one axis, PyTorch's `pooling_output_shape`: with
/// `ceil_mode` the division rounds up, but the last window must start inside the input or the
/// left padding.
pub fn pool_out(
    input: u64,
    kernel: u64,
    stride: u64,
    pad: u64,
    dilation: u64,
    ceil: bool,
) -> Result<u64, String> {
    let eff = effective_kernel(kernel, dilation)?;
    if stride == 0 {
        return Err("stride must be at least 1".into());
    }
    if pad.checked_mul(2).is_none_or(|p2| p2 > eff) {
        return Err(format!(
            "padding {pad} is more than half the kernel span {eff} (PyTorch requires padding ≤ kernel/2)"
        ));
    }
    let padded = input.checked_add(2 * pad).ok_or("padded size overflows")?;
    if padded < eff {
        return Err(format!(
            "the pooling window spans {eff} pixels but the padded input is only {padded}"
        ));
    }
    let num = padded - eff + if ceil { stride - 1 } else { 0 };
    let mut out = num / stride + 1;
    if ceil && (out - 1) * stride >= input + pad {
        out -= 1;
    }
    Ok(out)
}

/// Output length of a transposed convolution:
/// `(input-1)·stride - pad_begin - pad_end + dilation·(kernel-1) + output_padding + 1`.
pub fn conv_transpose_out(
    input: u64,
    kernel: u64,
    stride: u64,
    pad_total: u64,
    dilation: u64,
    output_padding: u64,
) -> Result<u64, String> {
    let eff = effective_kernel(kernel, dilation)?;
    let grown = (input.checked_sub(1).ok_or("empty input")?)
        .checked_mul(stride)
        .and_then(|v| v.checked_add(eff))
        .and_then(|v| v.checked_add(output_padding))
        .ok_or("output size overflows")?;
    if grown <= pad_total {
        return Err(format!(
            "padding {pad_total} removes the whole output ({grown} before padding)"
        ));
    }
    Ok(grown - pad_total)
}

/// Start and end (exclusive) of adaptive-pooling window `i` of `out` over `input`
/// (PyTorch: `floor(i·in/out)` to `ceil((i+1)·in/out)`).
pub fn adaptive_window(i: u64, out: u64, input: u64) -> (u64, u64) {
    let start = (i * input) / out;
    let end = ((i + 1) * input).div_ceil(out);
    (start, end)
}

/// Sum over output positions of the adaptive window lengths along one axis.
pub fn adaptive_window_sum(out: u64, input: u64) -> u64 {
    (0..out)
        .map(|i| {
            let (s, e) = adaptive_window(i, out, input);
            e - s
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_sizes() {
        // ResNet stem: 224, k7 s2 p3 -> 112; maxpool k3 s2 p1 -> 56.
        assert_eq!(conv_out(224, 7, 2, 3, 3, 1).unwrap(), 112);
        assert_eq!(pool_out(112, 3, 2, 1, 1, false).unwrap(), 56);
        // GoogLeNet ceil_mode pooling: 112 -> 56, 56 -> 28, 28 -> 14, 14 -> 7.
        assert_eq!(pool_out(112, 3, 2, 0, 1, true).unwrap(), 56);
        assert_eq!(pool_out(14, 2, 2, 0, 1, true).unwrap(), 7);
        assert_eq!(pool_out(112, 3, 2, 0, 1, false).unwrap(), 55);
        // AlexNet: 224, k11 s4 p2 -> 55.
        assert_eq!(conv_out(224, 11, 4, 2, 2, 1).unwrap(), 55);
        // Dilation 2 on a 3x3 spans 5.
        assert_eq!(conv_out(10, 3, 1, 0, 0, 2).unwrap(), 6);
        // Transposed: 7 -> 14 with k2 s2; k3 s2 p1 op1 -> 14.
        assert_eq!(conv_transpose_out(7, 2, 2, 0, 1, 0).unwrap(), 14);
        assert_eq!(conv_transpose_out(7, 3, 2, 2, 1, 1).unwrap(), 14);
        assert_eq!(
            conv_out(3, 5, 1, 0, 0, 1),
            Err("the kernel spans 5 pixels but the padded input is only 3 (3 + padding 0)".into())
        );
        assert_eq!(
            pool_out(10, 3, 1, 2, 1, false),
            Err(
                "padding 2 is more than half the kernel span 3 (PyTorch requires padding ≤ kernel/2)"
                    .into()
            )
        );
        // 7 → 3: windows [0,3), [2,5), [4,7).
        assert_eq!(adaptive_window_sum(3, 7), 9);
    }

    #[test]
    fn axes() {
        let k = Axes::from([3, 7, 7]);
        assert_eq!(
            (k.rank(), k.label(), k.product()),
            (3, "3×7×7".into(), Some(147))
        );
        assert_eq!(Axes::splat(1, 5).label(), "5");
        assert_eq!(Axes::from([2, 2]).label(), "2");
        assert!(Axes::new(&[]).is_none() && Axes::new(&[1, 2, 3, 4]).is_none());
        assert_eq!(k.map(|x| x - 1), [2, 6, 6]);
        assert_eq!(
            (0..3).map(|a| axis_name(3, a)).collect::<Vec<_>>(),
            ["depth", "height", "width"]
        );
        assert_eq!(
            (axis_name(2, 0), axis_name(2, 1), axis_name(1, 0)),
            ("height", "width", "length")
        );
    }

    proptest! {
        #[test]
        fn conv_out_never_panics(i in 0u64..u64::MAX, k in 0u64..100, s in 0u64..10, p in 0u64..u64::MAX, d in 0u64..1000) {
            let _ = conv_out(i, k, s, p, p, d);
            let _ = pool_out(i, k, s, p, d, true);
            let _ = conv_transpose_out(i, k, s, p, d, 1);
        }

        /// The output length is the number of window positions that fit: a closed-form count.
        #[test]
        fn conv_out_counts_positions(i in 1u64..300, k in 1u64..12, s in 1u64..5, pb in 0u64..6, pe in 0u64..6, d in 1u64..4) {
            let eff = (k - 1) * d + 1;
            let padded = i + pb + pe;
            let positions = (0..padded).filter(|st| st % s == 0 && st + eff <= padded).count() as u64;
            match conv_out(i, k, s, pb, pe, d) {
                Ok(o) => prop_assert_eq!(o, positions),
                Err(e) => {
                    // The only error in these ranges: no window fits.
                    prop_assert_eq!(positions, 0);
                    prop_assert!(e.starts_with("the kernel spans"), "{}", e);
                }
            }
        }
    }
}
