//! Per-layer timing of a convolution of one image on one thread by its three paths: im2col
//! tiles and `gemm` or the direct kernel (`kernels::conv_gemm_tiled`), the implicit im2col
//! (`kernels::implicit::conv`) and, for 3×3 stride-1 ones, Winograd F(2×2, 3×3)
//! (`kernels::conv_winograd`): the measurement behind the choice between them
//! (docs/PERFORMANCE.md, issue #19, "fourth pass"). Best of many trials, indicative only.
//! `RAYON_NUM_THREADS=1 cargo run --release --example bench_conv [c m h w k pad ...]`.

use archscope::kernels::{
    conv_gemm_tiled, conv_winograd, implicit, winograd_filters, Pointwise, Window2d,
};
#[path = "shared/timing.rs"]
mod timing;

fn main() {
    let args = timing::numbers("c m h w k pad ...");
    // (c, m, h, w, kernel, pad): stride-1 convolutions of densenet121, resnet50, googlenet.
    let shapes: Vec<[usize; 6]> = if args.is_empty() {
        vec![
            [128, 32, 56, 56, 3, 1],
            [128, 32, 28, 28, 3, 1],
            [128, 32, 14, 14, 3, 1],
            [128, 32, 7, 7, 3, 1],
            [64, 64, 56, 56, 3, 1],
            [128, 128, 28, 28, 3, 1],
            [256, 256, 14, 14, 3, 1],
            [512, 512, 7, 7, 3, 1],
            [64, 192, 56, 56, 3, 1],
            [96, 128, 28, 28, 3, 1],
            [112, 224, 14, 14, 3, 1],
            [160, 320, 7, 7, 3, 1],
            [16, 32, 28, 28, 3, 1],
        ]
    } else {
        args.chunks(6)
            .map(|c| [c[0], c[1], c[2], c[3], c[4], c[5]])
            .collect()
    };
    println!("    c     m   h×w  k | im2col GMAC/s | implicit GMAC/s | winograd GMAC/s (direct-counted) | max |Δ|");
    for [c, m, h, w, kk, p] in shapes {
        let (oh, ow) = (h + 2 * p + 1 - kk, w + 2 * p + 1 - kk);
        let win = Window2d {
            kernel: [kk, kk],
            stride: [1, 1],
            pad: [p, p],
            dilation: [1, 1],
            input: [h, w],
            output: [oh, ow],
        };
        let x: Vec<f32> = (0..c * h * w)
            .map(|i| ((i * 104729) % 1000) as f32 / 1e3 - 0.5)
            .collect();
        let wt: Vec<f32> = (0..m * c * kk * kk)
            .map(|i| ((i * 7919) % 1000) as f32 / 1e3 - 0.5)
            .collect();
        let b: Vec<f32> = (0..m).map(|i| i as f32 / m as f32).collect();
        let epi = Some(Pointwise::Relu);
        let macs = (m * oh * ow * c * kk * kk) as f64;
        let reps = (5e7 / macs).ceil() as usize;
        let mut a = vec![0.0f32; m * oh * ow];
        let mut d = vec![0.0f32; m * oh * ow];
        let g = timing::best(9, reps, || {
            conv_gemm_tiled(&x, c, &win, &wt, m, Some(&b), epi, &mut a, 1, 256 << 10);
        });
        // The implicit column is "declined" where `implicit::conv` does not take the shape
        // (no AVX-512, or its channel limits: `implicit::M_MAX`, `LARGE_MAP`).
        let taken = implicit::conv(&x, c, &win, &wt, m, Some(&b), epi, &mut d, 1).is_some();
        let (implicit_rate, diff) = if taken {
            let i = timing::best(9, reps, || {
                implicit::conv(&x, c, &win, &wt, m, Some(&b), epi, &mut d, 1);
            });
            let diff = a
                .iter()
                .zip(&d)
                .fold(0f32, |acc, (u, v)| acc.max((u - v).abs()));
            (format!("{:.1}", macs / i / 1e9), format!("{diff:.1e}"))
        } else {
            ("declined".into(), "-".into())
        };
        let wino = if kk == 3 {
            let u = winograd_filters(&wt, m, c);
            let t = timing::best(9, reps, || {
                conv_winograd(
                    &x,
                    c,
                    [h, w],
                    [p, p],
                    &u,
                    m,
                    [oh, ow],
                    Some(&b),
                    epi,
                    &mut d,
                );
            });
            format!("{:.1}", macs / t / 1e9)
        } else {
            "-".into()
        };
        println!(
            "{c:5} {m:5} {h:3}×{w:<3} {kk} | {:13.1} | {implicit_rate:>15} | {wino:>32} | {diff}",
            macs / g / 1e9,
        );
    }
}
