//! The machine's fp32 limit: an FMA-bound loop on every thread of rayon's pool, the threads the
//! CPU executor computes on, so a bench row divided by it is a fraction of what these cores can
//! do at all.
//!
//! Each thread runs independent chains of vector FMAs (`acc = acc·a + b`): 12 chains, more than
//! FMA latency × FMA ports (4 × 2 on current x86 cores), so the FMA units, not a dependency,
//! set the pace; no memory is touched. The widest FMA the CPU has is picked at run time
//! (AVX-512, else AVX2+FMA; NEON on aarch64), else a portable loop that counts separate
//! multiplies and adds. This is measurement code, not the product's arithmetic, so it is the one
//! place that uses `std::arch` directly.

use std::time::Instant;

/// Independent accumulator chains per thread.
const CHAINS: usize = 12;

/// A measured fp32 peak.
#[derive(Debug, Clone, PartialEq)]
pub struct Peak {
    /// The best rate of the trials, all threads together: the limit, so the best is taken.
    pub gflops: f64,
    /// That trial's wall time and the floating-point operations it did.
    pub trial_ms: f64,
    pub trial_flops: f64,
    /// Threads that ran the loop (rayon's pool size).
    pub threads: usize,
    /// The instructions used, e.g. "AVX2 FMA, 8 f32 lanes".
    pub isa: &'static str,
    /// fp32 lanes per FMA instruction.
    pub lanes: usize,
}

impl Peak {
    /// The clock the measured rate implies, in GHz, if each core retires two FMAs per cycle
    /// (true of the x86 cores this runs on since Haswell and Zen 2).
    pub fn implied_ghz_at_two_fma_per_cycle(&self) -> f64 {
        self.gflops / (self.threads * 2 * self.lanes * 2) as f64
    }
}

type Kernel = fn(usize) -> f32;

/// Measures the peak: `trials` runs of `iterations` FMA rounds per thread, all threads at once.
/// 20 trials of 1M rounds take ~0.1 s on two cores.
pub fn measure(trials: usize, iterations: usize) -> Peak {
    let (isa, lanes, kernel) = select();
    let threads = rayon::current_num_threads();
    // Warm-up: wakes the pool and lets the clock settle.
    run(kernel, iterations);
    let best = (0..trials.max(1))
        .map(|_| run(kernel, iterations))
        .fold(f64::MIN, f64::max);
    let trial_flops = (iterations * CHAINS * lanes * 2 * threads) as f64;
    Peak {
        gflops: trial_flops * best / 1e9,
        trial_ms: 1e3 / best,
        trial_flops,
        threads,
        isa,
        lanes,
    }
}

/// One trial: the reciprocal of the wall time for every thread of the pool (each exactly once)
/// to finish `iterations` rounds.
fn run(kernel: Kernel, iterations: usize) -> f64 {
    let start = Instant::now();
    std::hint::black_box(rayon::broadcast(|_| kernel(iterations)));
    1.0 / start.elapsed().as_secs_f64()
}

#[cfg(target_arch = "x86_64")]
fn select() -> (&'static str, usize, Kernel) {
    if std::arch::is_x86_feature_detected!("avx512f") {
        ("AVX-512 FMA, 16 f32 lanes", 16, x86::avx512)
    } else if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        ("AVX2 FMA, 8 f32 lanes", 8, x86::avx2)
    } else {
        PORTABLE
    }
}

#[cfg(target_arch = "aarch64")]
fn select() -> (&'static str, usize, Kernel) {
    ("NEON FMA, 4 f32 lanes", 4, neon::fma)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn select() -> (&'static str, usize, Kernel) {
    PORTABLE
}

#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
const PORTABLE: (&str, usize, Kernel) = ("portable multiply + add, 8 f32 lanes", 8, portable);

/// Starting values the compiler cannot see, so it cannot fold the loop away.
fn seeds() -> (f32, f32, f32) {
    std::hint::black_box((1.0, 0.999_999, 1e-6))
}

fn portable(iterations: usize) -> f32 {
    let (start, a, b) = seeds();
    let mut acc = [[start; 8]; CHAINS];
    for _ in 0..iterations {
        for chain in &mut acc {
            for x in chain.iter_mut() {
                *x = *x * a + b;
            }
        }
    }
    acc.iter().flatten().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{CHAINS, seeds};

    pub fn avx2(iterations: usize) -> f32 {
        // SAFETY: selected only after `is_x86_feature_detected!("avx2")` and `("fma")`.
        unsafe { avx2_loop(iterations) }
    }

    #[target_feature(enable = "avx2,fma")]
    fn avx2_loop(iterations: usize) -> f32 {
        let (start, a, b) = seeds();
        let (a, b) = (_mm256_set1_ps(a), _mm256_set1_ps(b));
        let mut acc = [_mm256_set1_ps(start); CHAINS];
        for _ in 0..iterations {
            for x in &mut acc {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let mut sum = [0.0f32; 8];
        let total = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x));
        // SAFETY: `sum` holds 8 f32, the width of the store.
        unsafe { _mm256_storeu_ps(sum.as_mut_ptr(), total) };
        sum.iter().sum()
    }

    pub fn avx512(iterations: usize) -> f32 {
        // SAFETY: selected only after `is_x86_feature_detected!("avx512f")`.
        unsafe { avx512_loop(iterations) }
    }

    #[target_feature(enable = "avx512f")]
    fn avx512_loop(iterations: usize) -> f32 {
        let (start, a, b) = seeds();
        let (a, b) = (_mm512_set1_ps(a), _mm512_set1_ps(b));
        let mut acc = [_mm512_set1_ps(start); CHAINS];
        for _ in 0..iterations {
            for x in &mut acc {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        let mut sum = [0.0f32; 16];
        let total = acc
            .iter()
            .fold(_mm512_setzero_ps(), |s, &x| _mm512_add_ps(s, x));
        // SAFETY: `sum` holds 16 f32, the width of the store.
        unsafe { _mm512_storeu_ps(sum.as_mut_ptr(), total) };
        sum.iter().sum()
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use super::{CHAINS, seeds};

    pub fn fma(iterations: usize) -> f32 {
        let (start, a, b) = seeds();
        // SAFETY: NEON is part of the aarch64 baseline.
        unsafe {
            let (a, b) = (vdupq_n_f32(a), vdupq_n_f32(b));
            let mut acc = [vdupq_n_f32(start); CHAINS];
            for _ in 0..iterations {
                for x in &mut acc {
                    *x = vfmaq_f32(b, *x, a);
                }
            }
            let total = acc.iter().fold(vdupq_n_f32(0.0), |s, &x| vaddq_f32(s, x));
            vaddvq_f32(total)
        }
    }
}
