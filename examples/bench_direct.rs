//! Per-shape timing of a convolution tile's product, `out[m×n] = W[m×k]·X[k×n]` + bias +
//! activation, by the `gemm` crate (then the bias/activation pass) and by the direct kernel
//! (`kernels::direct`), on one thread: the measurement behind the choice between them
//! (docs/PERFORMANCE.md, issue #19). Best of many trials, so that a loaded machine's slow
//! stretches drop out; indicative only. `cargo run --release --example bench_direct [m k n ...]`.

use archscope::kernels::{product_direct, product_gemm, Pointwise};
#[path = "shared/timing.rs"]
mod timing;

fn main() {
    let args = timing::numbers("m k n ...");
    // (m, k, n): 1×1 convolutions of efficientnet_b0, mobilenet_v3_small, shufflenet_v2,
    // squeezenet1_1, googlenet, and a few im2col tiles of 3×3 ones.
    let shapes: Vec<(usize, usize, usize)> = if args.is_empty() {
        vec![
            (96, 16, 12544),
            (16, 32, 12544),
            (144, 24, 3136),
            (24, 144, 3136),
            (240, 40, 784),
            (40, 240, 784),
            (480, 80, 196),
            (80, 480, 196),
            (672, 112, 196),
            (1152, 192, 49),
            (192, 1152, 49),
            (58, 24, 3136),
            (58, 58, 784),
            (116, 116, 196),
            (16, 64, 3136),
            (64, 16, 3136),
            (64, 144, 3136),
            (128, 288, 784),
            (64, 192, 784),
            (96, 192, 784),
            (16, 192, 784),
            (128, 864, 784),
            (32, 144, 784),
            (32, 27, 12544),
            (16, 27, 12544),
            (24, 108, 3136),
        ]
    } else {
        args.chunks(3).map(|c| (c[0], c[1], c[2])).collect()
    };
    if args.is_empty() {
        // The epilogues alone, on 16k values in [−10, 10) (L1/L2-resident), each pass on a
        // fresh copy: ns per element, the copy's included ("copy" alone).
        let src: Vec<f32> = (0..1 << 14)
            .map(|i| ((i * 7919) % 2000) as f32 / 100.0 - 10.0)
            .collect();
        let mut v = src.clone();
        let copy = timing::best(15, 200, || v.copy_from_slice(&src));
        println!("copy: {:.3} ns per element", copy * 1e9 / v.len() as f64);
        for (name, f) in [
            ("relu", Pointwise::Relu),
            ("silu", Pointwise::Silu),
            ("sigmoid", Pointwise::Sigmoid),
            ("hardswish", Pointwise::Hardswish),
            ("hardsigmoid", Pointwise::Hardsigmoid),
        ] {
            let t = timing::best(15, 200, || {
                v.copy_from_slice(&src);
                f.apply(&mut v);
            });
            println!("{name}: {:.3} ns per element", t * 1e9 / v.len() as f64);
        }
    }
    println!("    m     k      n | gemm GMAC/s | direct GMAC/s | direct/gemm time");
    for (m, k, n) in shapes {
        let w: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 1e3 - 0.5)
            .collect();
        let x: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 1000) as f32 / 1e3 - 0.5)
            .collect();
        let b: Vec<f32> = (0..m).map(|i| i as f32 / m as f32).collect();
        let mut out = vec![0.0f32; m * n];
        let macs = (m * n * k) as f64;
        let reps = (2e7 / macs).ceil() as usize;
        let epi = Some(Pointwise::Relu);
        let g = timing::best(15, reps, || {
            product_gemm((m, n, k), &w, &x, n, &mut out, Some(&b), epi)
        });
        let d = timing::best(15, reps, || {
            assert!(product_direct(
                (m, n, k),
                &w,
                &x,
                n,
                &mut out,
                Some(&b),
                epi
            ));
        });
        println!(
            "{m:5} {k:5} {n:6} | {:11.1} | {:13.1} | {:.2}",
            macs / g / 1e9,
            macs / d / 1e9,
            d / g
        );
    }
}
