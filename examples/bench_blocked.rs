//! Per-layer timing of a convolution of one image by the blocked direct kernel
//! (`kernels::blocked`) against the path the layer took before it (`kernels::conv_gemm`: the
//! implicit im2col for stride 1, im2col tiles and `gemm` otherwise): the measurement behind
//! `Conv2d`'s choice (docs/PERFORMANCE.md, issue #19, "sixth pass"). Best of many trials on
//! `RAYON_NUM_THREADS` threads, indicative only.
//! `RAYON_NUM_THREADS=1 cargo run --release --example bench_blocked [c m h w k stride pad ...]`.

use archscope::kernels::{blocked, conv_gemm, Pointwise, Window2d};
#[path = "shared/timing.rs"]
mod timing;

fn main() {
    let args = timing::numbers("c m h w k stride pad ...");
    // (c, m, h, w, kernel, stride, pad): the layers of the fifth pass's largest gaps.
    let shapes: Vec<[usize; 7]> = if args.is_empty() {
        vec![
            [64, 192, 56, 56, 3, 1, 1],
            [64, 64, 56, 56, 3, 1, 1],
            [128, 32, 56, 56, 3, 1, 1],
            [128, 32, 28, 28, 3, 1, 1],
            [128, 32, 14, 14, 3, 1, 1],
            [128, 128, 28, 28, 3, 1, 1],
            [96, 128, 28, 28, 3, 1, 1],
            [128, 192, 28, 28, 3, 1, 1],
            [112, 224, 14, 14, 3, 1, 1],
            [512, 512, 7, 7, 3, 1, 1],
            [16, 64, 55, 55, 3, 1, 1],
            [32, 128, 27, 27, 3, 1, 1],
            [64, 256, 13, 13, 3, 1, 1],
            [128, 128, 56, 56, 3, 2, 1],
            [256, 256, 28, 28, 3, 2, 1],
            [3, 64, 224, 224, 7, 2, 3],
            [64, 64, 224, 224, 3, 1, 1],
        ]
    } else {
        args.chunks(7)
            .map(|c| [c[0], c[1], c[2], c[3], c[4], c[5], c[6]])
            .collect()
    };
    let threads = rayon::current_num_threads();
    println!("threads {threads}");
    println!("    c     m   h×w  k/s | before GMAC/s | blocked GMAC/s | max |Δ|");
    for [c, m, h, w, kk, s, p] in shapes {
        let (oh, ow) = ((h + 2 * p - kk) / s + 1, (w + 2 * p - kk) / s + 1);
        let win = Window2d {
            kernel: [kk, kk],
            stride: [s, s],
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
        // Many short trials: on a loaded machine some run without being preempted.
        let reps = (1e7 / macs).ceil() as usize;
        let mut a = vec![0.0f32; m * oh * ow];
        let mut d = vec![0.0f32; m * oh * ow];
        let panels = blocked::pack(&wt, m, c * kk * kk);
        let par = threads > 1;
        let taken =
            blocked::conv(&x, c, &win, &panels, m, Some(&b), epi, &mut d, threads).is_some();
        // The two paths alternated trial by trial (the same load on both), each its best.
        let (mut g, mut t) = (f64::INFINITY, f64::INFINITY);
        // One thread: CPU time (a trial of milliseconds is preempted on a loaded machine).
        let time = |f: &mut dyn FnMut()| {
            if threads == 1 {
                timing::best_cpu(1, reps, f)
            } else {
                timing::best(1, reps, f)
            }
        };
        for _ in 0..40 {
            g = g.min(time(&mut || {
                conv_gemm(&x, c, &win, &wt, m, Some(&b), epi, &mut a, par);
            }));
            if taken {
                t = t.min(time(&mut || {
                    blocked::conv(&x, c, &win, &panels, m, Some(&b), epi, &mut d, threads);
                }));
            }
        }
        let (rate, diff) = if taken {
            let diff = a
                .iter()
                .zip(&d)
                .fold(0f32, |acc, (u, v)| acc.max((u - v).abs()));
            (format!("{:.1}", macs / t / 1e9), format!("{diff:.1e}"))
        } else {
            ("declined".into(), "-".into())
        };
        println!(
            "{c:5} {m:5} {h:3}×{w:<3} {kk}/{s} | {:13.1} | {rate:>14} | {diff}",
            macs / g / 1e9
        );
    }
}
