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

/// Nanoseconds of CPU time this thread has used (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`,
/// Linux on 64-bit targets), or None.
#[allow(dead_code)]
pub fn thread_cpu_ns() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    {
        #[repr(C)]
        struct Timespec {
            sec: i64,
            nsec: i64,
        }
        extern "C" {
            fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
        }
        const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
        let mut t = Timespec { sec: 0, nsec: 0 };
        // SAFETY: `t` is a valid timespec (two 64-bit fields on these targets).
        let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) };
        (rc == 0).then(|| t.sec as u64 * 1_000_000_000 + t.nsec as u64)
    }
    #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
    None
}

/// [`best`] in this thread's CPU time rather than wall time: on a loaded machine a trial of
/// several milliseconds is almost always preempted, and the wall clock counts the other jobs'
/// time slices, while the CPU time does not (cache lines they evicted still cost). For
/// single-threaded runs (`RAYON_NUM_THREADS=1` and a kernel that then stays on the calling
/// thread); falls back to [`best`] where the clock cannot be read.
#[allow(dead_code)]
pub fn best_cpu(trials: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    if thread_cpu_ns().is_none() {
        return best(trials, reps, f);
    }
    let mut best = f64::INFINITY;
    for _ in 0..trials {
        let t = thread_cpu_ns().unwrap_or(0);
        for _ in 0..reps {
            f();
        }
        let spent = thread_cpu_ns().unwrap_or(0).saturating_sub(t);
        best = best.min(spent as f64 * 1e-9 / reps as f64);
    }
    best
}
