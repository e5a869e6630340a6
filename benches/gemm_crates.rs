//! `cargo bench --bench gemm_crates`: the measurement behind the CPU GEMM's choice. The `gemm`
//! crate (what `cpu::gemm` uses) on all of rayon's threads and on one, against `matrixmultiply`
//! (what it used before) on all cores, at 512³ and at the GEMM shapes of the GAN's
//! training plan (transposed, tall-skinny, k-heavy), each as a fraction of the fp32 FMA peak
//! measured in the same run. Times are the best of several runs: on a shared machine the best
//! is the one least disturbed by other work.

use std::time::Instant;

use gan_gpu::cpu::peak;
use gemm::Parallelism;

/// m, n, k, A transposed, B transposed, where the plan uses it.
const SHAPES: [(usize, usize, usize, bool, bool, &str); 10] = [
    (512, 512, 512, false, false, "square"),
    (100, 6272, 100, false, false, "G dense forward"),
    (100, 6272, 100, true, false, "G dense weight grad"),
    (600, 1600, 128, false, true, "G deconv1 forward, per chunk"),
    (
        600,
        128,
        1600,
        false,
        false,
        "G deconv1 input grad, per chunk",
    ),
    (
        1600,
        128,
        600,
        true,
        false,
        "G deconv1 weight grad, per chunk",
    ),
    (
        4900,
        1600,
        128,
        false,
        true,
        "G deconv1 forward, whole batch",
    ),
    (3600, 64, 288, false, false, "D conv2 forward"),
    (288, 64, 3600, true, false, "D conv2 weight grad"),
    (25, 64, 19600, true, false, "G deconv2 weight grad"),
];

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / 16_777_216.0 - 0.5
        })
        .collect()
}

fn best_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::MAX, f64::min)
}

#[allow(clippy::too_many_arguments)]
fn with_matrixmultiply(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    c: &mut [f32],
) {
    let (rsa, csa) = if ta { (1, m) } else { (k, 1) };
    let (rsb, csb) = if tb { (1, k) } else { (n, 1) };
    // SAFETY: a is m·k, b is k·n and c is m·n floats with these strides.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn with_gemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    c: &mut [f32],
    par: Parallelism,
) {
    let (rsa, csa) = if ta { (1, m) } else { (k, 1) };
    let (rsb, csb) = if tb { (1, k) } else { (n, 1) };
    // SAFETY: as above; read_dst is false, so c is only written.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            csa as isize,
            rsa as isize,
            b.as_ptr(),
            csb as isize,
            rsb as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

fn main() {
    let threads = rayon::current_num_threads();
    let all = peak::measure(20, 1_000_000);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let single = one.install(|| peak::measure(20, 1_000_000));
    println!(
        "fp32 FMA peak: {:.1} GFLOP/s on {threads} threads, {:.1} on 1 ({})",
        all.gflops, single.gflops, all.isa
    );
    println!(
        "{:<34} {:>17} {:>14} {:>14} {:>14}",
        "shape", "", "gemm, all", "matmul, all", "gemm, 1"
    );
    for (m, n, k, ta, tb, what) in SHAPES {
        let (a, b) = (data(m * k, 1), data(k * n, 2));
        let mut c = vec![0.0; m * n];
        let flops = 2.0 * (m * n * k) as f64;
        let reps = (4e9 / flops).clamp(5.0, 100.0) as usize;
        let rate = |ms: f64, peak: f64| {
            let g = flops / ms / 1e6;
            format!("{g:6.1} ({:.2})", g / peak)
        };
        let g_all = best_ms(reps, || {
            with_gemm(m, n, k, &a, ta, &b, tb, &mut c, Parallelism::Rayon(0))
        });
        // matrixmultiply threads itself (MATMUL_NUM_THREADS, default one per core).
        let mm_all = best_ms(reps, || {
            with_matrixmultiply(m, n, k, &a, ta, &b, tb, &mut c)
        });
        let g_one = best_ms(reps, || {
            with_gemm(m, n, k, &a, ta, &b, tb, &mut c, Parallelism::None)
        });
        let t = |x: bool| if x { "T" } else { "N" };
        println!(
            "{:<34} {:>17} {:>14} {:>14} {:>14}",
            what,
            format!("{m}x{n}x{k} {}{}", t(ta), t(tb)),
            rate(g_all, all.gflops),
            rate(mm_all, all.gflops),
            rate(g_one, single.gflops),
        );
    }
}
