//! Pure sliding-window arithmetic shared by convolution, pooling, padding and (later) the
//! receptive-field algebra: output lengths exactly as PyTorch computes them, all checked, no
//! panics, no dependencies.

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
