//! Stride-1 pools whose windows all lie in the padded input (GoogLeNet's and Inception's
//! branch pools), which the executor computes several small planes at a time over one
//! flattened buffer of padded planes (`layers::pool`'s `flat_planes`, issue #19's fifth pass),
//! against a plain loop over each output's window: max (padding never chosen) and average
//! (padding counted, PyTorch's default), many channels over small maps so that a task holds
//! tens of planes and its last group is partial, a batch of two, and both pools written into
//! the two halves of a concatenation by the plan (`Ctx::into`) and as written.

use proptest::prelude::*;

/// The pool of `x` (`n × c × h × w`) by definition: taps in (ky, kx) order; max keeps the
/// first greatest, average sums the taps inside the input and divides by `k²`.
fn reference(x: &[f32], [n, c, h, w]: [usize; 4], k: usize, p: usize, max: bool) -> Vec<f32> {
    let (oh, ow) = (h + 2 * p + 1 - k, w + 2 * p + 1 - k);
    let mut out = Vec::with_capacity(n * c * oh * ow);
    for plane in x.chunks(h * w).take(n * c) {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = f32::NEG_INFINITY;
                let mut sum = 0.0f32;
                for ky in 0..k {
                    for kx in 0..k {
                        let (iy, ix) = (
                            (oy + ky) as isize - p as isize,
                            (ox + kx) as isize - p as isize,
                        );
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let v = plane[iy as usize * w + ix as usize];
                        if v > best {
                            best = v;
                        }
                        sum += v;
                    }
                }
                out.push(if max { best } else { sum / (k * k) as f32 });
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn flat_pools_match_the_definition(c in 1usize..140, h in 1usize..20, w in 1usize..20,
                                       k in 1usize..5, p in 0usize..3, batch in 1usize..3) {
        prop_assume!(2 * p <= k && h + 2 * p >= k && w + 2 * p >= k);
        let nodes = [
            format!("{{id: a, op: maxpool2d, in: x, kernel: {k}, stride: 1, padding: {p}}}"),
            format!("{{id: b, op: avgpool2d, in: x, kernel: {k}, stride: 1, padding: {p}}}"),
            "{id: cat, op: concat, in: [a, b]}".to_string(),
        ];
        let (x, _, written, planned) =
            crate::common::run_as_written_and_planned(batch, &[("x", vec![c, h, w])], &nodes, true, (1, 2));
        let (oh, ow) = (h + 2 * p + 1 - k, w + 2 * p + 1 - k);
        let plane = oh * ow;
        for (which, out) in [("as written", &written), ("planned", &planned)] {
            prop_assert_eq!(&out.shape, &vec![batch, 2 * c, oh, ow]);
            for b in 0..batch {
                let xb = &x[0].data[b * c * h * w..(b + 1) * c * h * w];
                for (half, max) in [(0, true), (1, false)] {
                    let want = reference(xb, [1, c, h, w], k, p, max);
                    let got = &out.data[(b * 2 + half) * c * plane..(b * 2 + half + 1) * c * plane];
                    for (i, (&g, &v)) in got.iter().zip(&want).enumerate() {
                        // Max: the same element. Average: the same taps added in the same
                        // order from 0 (padding adds 0), divided by the same count.
                        prop_assert!(g.to_bits() == v.to_bits() || (g == 0.0 && v == 0.0),
                            "{} {} sample {} element {}: {} vs {}", which,
                            if max { "max" } else { "avg" }, b, i, g, v);
                    }
                }
            }
        }
    }
}
