//! What the kernel-timing examples (`bench_conv`, `bench_direct`) share: the best time of many
//! trials, so that a loaded machine's slow stretches drop out, and their shape arguments.

use std::time::Instant;

/// Seconds per call of `f`: the best, over `trials` trials, of the mean of `reps` calls.
pub fn best(trials: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..trials {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

/// The command line's arguments as numbers; `usage` names them (`m k n ...`) when one is not.
pub fn numbers(usage: &str) -> Vec<usize> {
    std::env::args()
        .skip(1)
        .map(|a| {
            a.parse()
                .unwrap_or_else(|_| panic!("`{a}` is not a number: give {usage}"))
        })
        .collect()
}
