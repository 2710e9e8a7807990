//! Max pools with strides, padding, dilation and ceil mode — ResNet's and DenseNet's padded
//! 3×3/2 stem pool, GoogLeNet's ceil-mode pools, SqueezeNet's unpadded ones (`layers::pool`:
//! the separable kernel for windows inside the input, the register-block window kernel for the
//! others, and, as written, the kernel that computes indices) — against a plain loop over each
//! output's window in PyTorch's (ky, kx) order (a larger value or a NaN replaces the best,
//! starting from −∞), bit for bit, on values drawn from ±0, ±1, −∞ and NaNs of three payloads
//! so that ties and NaNs are frequent; kernels 1–4 per axis, strides 1–3, padding up to half
//! the kernel, dilation 1–2, ceil mode or not, batches of one and two; the plan's path (no
//! indices) and the layer as written. (Written for the sixth pass's separable kernel for
//! padded windows, which was measured no faster and dropped: docs/PERFORMANCE.md.)

use archscope::exec::{self, Tensor};
use archscope::graph::Network;
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

/// PyTorch's output size of one axis: `(n + 2p − d(k − 1) − 1)/s + 1`, rounded up in ceil
/// mode, where the last window must then start inside the input or its left padding.
fn out_size(n: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> Option<usize> {
    let span = d * (k - 1) + 1;
    let len = (n + 2 * p).checked_sub(span)?;
    let mut o = if ceil { len.div_ceil(s) } else { len / s } + 1;
    if ceil && (o - 1) * s >= n + p {
        o -= 1;
    }
    Some(o)
}

#[allow(clippy::too_many_arguments)]
fn reference(
    plane: &[f32],
    [h, w]: [usize; 2],
    [oh, ow]: [usize; 2],
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
    d: [usize; 2],
) -> Vec<f32> {
    let mut out = Vec::with_capacity(oh * ow);
    for oy in 0..oh {
        for ox in 0..ow {
            let mut best = f32::NEG_INFINITY;
            for ky in 0..k[0] {
                for kx in 0..k[1] {
                    let iy = (oy * s[0] + ky * d[0]) as isize - p[0] as isize;
                    let ix = (ox * s[1] + kx * d[1]) as isize - p[1] as isize;
                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                        continue;
                    }
                    let v = plane[iy as usize * w + ix as usize];
                    if v > best || v.is_nan() {
                        best = v;
                    }
                }
            }
            out.push(best);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn separable_max_pools_keep_pytorchs_choice(
        n in 1usize..3, c in 1usize..4, h in 1usize..20, w in 1usize..20,
        k in (1usize..5, 1usize..5), s in (1usize..4, 1usize..4), p in (0usize..3, 0usize..3),
        d in (1usize..3, 1usize..3), ceil in any::<bool>(),
        picks in proptest::collection::vec(0usize..64, 1..800),
    ) {
        let (k, s, p, d) = ([k.0, k.1], [s.0, s.1], [p.0, p.1], [d.0, d.1]);
        prop_assume!(2 * p[0] <= k[0] && 2 * p[1] <= k[1]);
        let (Some(oh), Some(ow)) = (
            out_size(h, k[0], s[0], p[0], d[0], ceil),
            out_size(w, k[1], s[1], p[1], d[1], ceil),
        ) else {
            return Ok(());
        };
        let yaml = format!(
            "inputs: {{x: [{c}, {h}, {w}]}}\nnodes:\n  - {{id: pool, op: maxpool, in: x, kernel: [{}, {}], stride: [{}, {}], padding: [{}, {}], dilation: [{}, {}], ceil: {ceil}}}\n",
            k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1]
        );
        let net = Network::from_yaml(
            "pool.yaml",
            &yaml,
            &archscope::graph::BuildOptions { batch: n as u64, ..Default::default() },
        )
        .unwrap();
        prop_assert_eq!(
            net.nodes[1].out_shapes[0].0.clone(),
            vec![n as u64, c as u64, oh as u64, ow as u64]
        );
        // Mostly ±0 and ±1; −∞ or a NaN one time in eight.
        let len = n * c * h * w;
        let data: Vec<f32> = (0..len)
            .map(|i| {
                let r = picks[i % picks.len()] ^ (i * 7 % 64);
                if r % 8 == 0 { VALUES[4 + r / 8 % 4] } else { VALUES[r % 4] }
            })
            .collect();
        let x = vec![Tensor::new(vec![n, c, h, w], data.clone())];
        let wts = exec::init_weights(&net, 1).unwrap();
        let plan = exec::plan(&net, &wts);
        let want: Vec<u32> = data
            .chunks(h * w)
            .flat_map(|pl| reference(pl, [h, w], [oh, ow], k, s, p, d))
            .map(f32::to_bits)
            .collect();
        for (what, r) in [
            ("as written", exec::run(&net, &wts, &x, None).unwrap()),
            ("planned", exec::run_planned(&net, &wts, &plan, &x, None).unwrap()),
        ] {
            let got: Vec<u32> = r.outputs[0].data.iter().map(|v| v.to_bits()).collect();
            prop_assert_eq!(&got, &want, "{}", what);
        }
    }
}
