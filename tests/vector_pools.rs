//! Pools 16 output columns per AVX-512 vector (`kernels::pooling`, issue #19's seventh pass):
//! the row kernel on its own and the max and average pools through it (`layers::pool`'s window
//! kernel for padded, ceil-mode and dilated windows, the separable one for windows inside the
//! input), against plain loops: a max bit for bit against PyTorch's rule (taps in (ky, kx)
//! order from −∞, a larger value or a NaN replacing the best) on values drawn from ±0, ±1, −∞
//! and NaNs of three payloads, so that ties and NaNs are frequent; an average within 1e-5 of
//! the f64 sum (and, for the row kernel, bit for bit the f32 sum in tap order). Rows of 1 to
//! 90 columns, so that whole vectors, masked last vectors and rows under one vector all occur;
//! horizontal strides 1–3 (3 is the scalar loop's), padding up to half the window, dilation
//! 1–2, ceil mode or not; the plan's path and the layer as written.

use archscope::exec::{self, Tensor};
use archscope::graph::Network;
use archscope::kernels::pooling;
use proptest::prelude::*;

const VALUES: [f32; 8] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    f32::NEG_INFINITY,
    f32::from_bits(0x7fc0_0001),
    f32::from_bits(0xffc0_0002),
    f32::from_bits(0x7fc0_0003),
];

/// Mostly ±0 and ±1; −∞ or a NaN one time in eight.
fn tie_values(len: usize, picks: &[usize]) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let r = picks[i % picks.len()] ^ (i * 7 % 64);
            if r.is_multiple_of(8) {
                VALUES[4 + r / 8 % 4]
            } else {
                VALUES[r % 4]
            }
        })
        .collect()
}

/// Values in (−1, 1) with many distinct roundings.
fn spread_values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0)
        .collect()
}

/// PyTorch's max rule: a larger value or a NaN replaces the best.
fn take(best: &mut f32, v: f32) {
    if v > *best || v.is_nan() {
        *best = v;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn row_kernel_matches_the_plain_loop(
        rows in 1usize..5, kw in 1usize..5, dx in 1usize..3, s in 1usize..3,
        len in 1usize..70, start in 0usize..4, extra in 0usize..3,
        picks in proptest::collection::vec(0usize..64, 1..400), seed in 0usize..1000,
    ) {
        let width = start + (len - 1) * s + (kw - 1) * dx + 1 + extra;
        for max in [true, false] {
            let data = if max {
                tie_values(rows * width, &picks)
            } else {
                spread_values(rows * width, seed)
            };
            let lines: Vec<&[f32]> = data.chunks(width).collect();
            let mut got = vec![f32::from_bits(0x7fc0_0bad); len];
            let ran = if max {
                pooling::window_row::<true>(&lines, start, kw, dx, s, &mut got)
            } else {
                pooling::window_row::<false>(&lines, start, kw, dx, s, &mut got)
            };
            if !ran {
                // Declined only without AVX-512 (both strides here are the kernel's).
                prop_assert!(!pooling::available());
                return Ok(());
            }
            for (j, &g) in got.iter().enumerate() {
                let taps = lines
                    .iter()
                    .flat_map(|l| (0..kw).map(move |kx| l[start + j * s + kx * dx]));
                if max {
                    let mut best = f32::NEG_INFINITY;
                    taps.for_each(|v| take(&mut best, v));
                    prop_assert_eq!(g.to_bits(), best.to_bits(), "max, column {}", j);
                } else {
                    let (mut sum, mut exact) = (0.0f32, 0.0f64);
                    let mut size = 0.0f64;
                    for v in taps {
                        sum += v;
                        exact += v as f64;
                        size += (v as f64).abs();
                    }
                    prop_assert_eq!(g.to_bits(), sum.to_bits(), "sum in tap order, column {}", j);
                    prop_assert!((g as f64 - exact).abs() <= 1e-5 * size.max(1e-30), "column {j}: {g} against {exact}");
                }
            }
        }
    }

    #[test]
    fn wide_pools_match_the_definition(
        max in any::<bool>(), c in 1usize..3, h in 1usize..10, w in 1usize..90,
        k in (1usize..5, 1usize..5), s in (1usize..4, 1usize..4), p in (0usize..3, 0usize..3),
        d in (1usize..3, 1usize..3), ceil in any::<bool>(), cip in any::<bool>(),
        picks in proptest::collection::vec(0usize..64, 1..400), seed in 0usize..1000,
    ) {
        let (k, s, p) = ([k.0, k.1], [s.0, s.1], [p.0, p.1]);
        let d = if max { [d.0, d.1] } else { [1, 1] };
        let span = [d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1];
        prop_assume!(2 * p[0] <= span[0] && 2 * p[1] <= span[1]);
        prop_assume!(h + 2 * p[0] >= span[0] && w + 2 * p[1] >= span[1]);
        let layer = if max {
            format!(
                "op: maxpool, kernel: [{}, {}], stride: [{}, {}], padding: [{}, {}], dilation: [{}, {}], ceil: {ceil}",
                k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1]
            )
        } else {
            format!(
                "op: avgpool, kernel: [{}, {}], stride: [{}, {}], padding: [{}, {}], ceil: {ceil}, count_include_pad: {cip}",
                k[0], k[1], s[0], s[1], p[0], p[1]
            )
        };
        let yaml = format!("inputs: {{x: [{c}, {h}, {w}]}}\nnodes:\n  - {{id: pool, in: x, {layer}}}\n");
        let net = Network::from_yaml("pool.yaml", &yaml, &Default::default()).unwrap();
        let shape = net.nodes[1].out_shapes[0].0.clone();
        let (oh, ow) = (shape[2] as usize, shape[3] as usize);
        let len = c * h * w;
        let data = if max { tie_values(len, &picks) } else { spread_values(len, seed) };
        let x = vec![Tensor::new(vec![1, c, h, w], data.clone())];
        let wts = exec::init_weights(&net, 1).unwrap();
        let plan = exec::plan(&net, &wts);
        let (mut want, mut want_max) = (Vec::with_capacity(c * oh * ow), Vec::new());
        for plane in data.chunks(h * w) {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut best, mut sum, mut valid, mut padded) = (f32::NEG_INFINITY, 0.0f64, 0, 0);
                    for ky in 0..k[0] {
                        for kx in 0..k[1] {
                            let iy = (oy * s[0] + ky * d[0]) as isize - p[0] as isize;
                            let ix = (ox * s[1] + kx * d[1]) as isize - p[1] as isize;
                            if iy < (h + p[0]) as isize && ix < (w + p[1]) as isize {
                                padded += 1;
                            }
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let v = plane[iy as usize * w + ix as usize];
                            take(&mut best, v);
                            sum += v as f64;
                            valid += 1;
                        }
                    }
                    want_max.push(best);
                    want.push(if valid == 0 {
                        0.0
                    } else {
                        sum / if cip { padded } else { valid } as f64
                    });
                }
            }
        }
        for (what, r) in [
            ("as written", exec::run(&net, &wts, &x, None).unwrap()),
            ("planned", exec::run_planned(&net, &wts, &plan, &x, None).unwrap()),
        ] {
            let got = &r.outputs[0].data;
            prop_assert_eq!(got.len(), want.len());
            for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
                if max {
                    prop_assert_eq!(g.to_bits(), want_max[i].to_bits(), "{} max, output {}", what, i);
                } else {
                    prop_assert!((g as f64 - e).abs() <= 1e-5 * e.abs().max(1.0), "{what} average, output {i}: {g} against {e}");
                }
            }
        }
    }
}
