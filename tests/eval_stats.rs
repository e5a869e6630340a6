//! Quality statistics: Gaussian fitting and the Fréchet distance against closed forms
//! and an independent 2x2 formula; class statistics on hand examples.

use gan_gpu::Error;
use gan_gpu::eval::{ClassStats, Gaussian, class_stats, frechet_distance};
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// `|got - want| <= rel * scale`, with a message naming the case.
fn assert_close(case: &str, got: f64, want: f64, rel: f64, scale: f64) {
    let tol = rel * scale.abs().max(1e-300);
    assert!(
        (got - want).abs() <= tol,
        "{case}: got {got}, want {want}, |diff| {} > tol {tol}",
        (got - want).abs()
    );
}

fn gaussian(mean: Vec<f64>, cov: Vec<f64>) -> Gaussian {
    Gaussian {
        dim: mean.len(),
        mean,
        cov,
        count: 0,
    }
}

fn diag(values: &[f64]) -> Vec<f64> {
    let d = values.len();
    let mut m = vec![0.0; d * d];
    for (i, &v) in values.iter().enumerate() {
        m[i * d + i] = v;
    }
    m
}

/// `[d, d]` row-major product.
fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut c = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            for j in 0..d {
                c[i * d + j] += a[i * d + k] * b[k * d + j];
            }
        }
    }
    c
}

fn transpose(a: &[f64], d: usize) -> Vec<f64> {
    let mut t = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            t[j * d + i] = a[i * d + j];
        }
    }
    t
}

/// An orthogonal `[3, 3]` matrix: a product of three Givens rotations.
fn rotation3() -> Vec<f64> {
    let givens = |p: usize, q: usize, angle: f64| {
        let mut g = diag(&[1.0, 1.0, 1.0]);
        let (s, c) = angle.sin_cos();
        g[p * 3 + p] = c;
        g[q * 3 + q] = c;
        g[p * 3 + q] = -s;
        g[q * 3 + p] = s;
        g
    };
    let r = matmul(&givens(0, 1, 0.7), &givens(1, 2, -1.1), 3);
    matmul(&r, &givens(0, 2, 0.4), 3)
}

/// Standard normal pairs by Box-Muller (rand_distr is not a dependency).
fn normals(rng: &mut StdRng, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // 1 - u lies in (0, 1], so the log is finite.
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        out.push(r * c);
        out.push(r * s);
    }
    out.truncate(n);
    out
}

// ---------------------------------------------------------------- Gaussian::fit

#[test]
fn fit_hand_example_is_exact() {
    // Rows (1,2), (3,6), (5,4): mean (3,4); centred (-2,-2), (0,2), (2,0);
    // cov = [[8, 4], [4, 8]] / (3 - 1).
    let g = Gaussian::fit(&[1.0, 2.0, 3.0, 6.0, 5.0, 4.0], 2).unwrap();
    assert_eq!(g.dim, 2);
    assert_eq!(g.count, 3);
    assert_eq!(g.mean, vec![3.0, 4.0]);
    assert_eq!(g.cov, vec![4.0, 2.0, 2.0, 4.0]);
}

#[test]
fn fit_matches_naive_two_pass_across_block_boundaries() {
    // 1300 rows is not a multiple of the internal block of 512 rows; dim 7 is odd.
    let (n, d) = (1300, 7);
    let mut rng = StdRng::seed_from_u64(11);
    let x: Vec<f32> = (0..n * d)
        .map(|i| rng.random_range(-1.0f32..1.0) + (i % d) as f32 * 10.0)
        .collect();
    let g = Gaussian::fit(&x, d).unwrap();
    let mut mean = vec![0.0f64; d];
    for row in x.chunks(d) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64 / n as f64;
        }
    }
    for (&got, &want) in g.mean.iter().zip(&mean) {
        assert_close("mean", got, want, 1e-12, want.abs() + 1.0);
    }
    for i in 0..d {
        for j in 0..d {
            let naive: f64 = x
                .chunks(d)
                .map(|r| (r[i] as f64 - mean[i]) * (r[j] as f64 - mean[j]))
                .sum::<f64>()
                / (n - 1) as f64;
            assert_close("cov", g.cov[i * d + j], naive, 1e-10, 1.0);
            assert_eq!(g.cov[i * d + j], g.cov[j * d + i], "cov symmetric");
        }
    }
}

#[test]
fn fit_rejects_bad_input() {
    assert!(matches!(
        Gaussian::fit(&[1.0, 2.0], 2),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Gaussian::fit(&[1.0, 2.0, 3.0], 2),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        Gaussian::fit(&[1.0, 2.0], 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Gaussian::fit(&[1.0, f32::NAN, 3.0, 4.0], 2),
        Err(Error::InvalidArgument(_))
    ));
}

// ---------------------------------------------------------------- frechet_distance

#[test]
fn distance_to_itself_is_zero_and_distance_is_symmetric() {
    let (n, d) = (300, 6);
    let mut rng = StdRng::seed_from_u64(3);
    let xa: Vec<f32> = (0..n * d).map(|_| rng.random_range(-2.0f32..2.0)).collect();
    let xb: Vec<f32> = (0..n * d)
        .map(|i| rng.random_range(-1.0f32..3.0) * (1.0 + (i % d) as f32 * 0.3))
        .collect();
    let a = Gaussian::fit(&xa, d).unwrap();
    let b = Gaussian::fit(&xb, d).unwrap();
    let trace = |g: &Gaussian| (0..d).map(|i| g.cov[i * d + i]).sum::<f64>();

    let aa = frechet_distance(&a, &a).unwrap();
    assert_close("d(a, a)", aa, 0.0, 1e-9, trace(&a));
    let bb = frechet_distance(&b, &b).unwrap();
    assert_close("d(b, b)", bb, 0.0, 1e-9, trace(&b));

    let ab = frechet_distance(&a, &b).unwrap();
    let ba = frechet_distance(&b, &a).unwrap();
    eprintln!("d(a,a) {aa:e}, d(b,b) {bb:e}, d(a,b) {ab}, d(b,a) {ba}");
    assert!(ab > 0.1, "distinct sets should be far apart, got {ab}");
    assert_close("d(a, b) vs d(b, a)", ab, ba, 1e-9, ab);
}

#[test]
fn one_dimensional_closed_form() {
    // (m1 - m2)² + (s1 - s2)² with variances s².
    let a = gaussian(vec![1.5], vec![4.0]);
    let b = gaussian(vec![-0.5], vec![0.25]);
    let want = 2.0f64.powi(2) + (2.0f64 - 0.5).powi(2);
    let got = frechet_distance(&a, &b).unwrap();
    assert_close("1-D", got, want, 1e-12, want);
}

#[test]
fn diagonal_closed_form() {
    let m1 = vec![0.0, 1.0, -2.0, 3.0, 0.5];
    let m2 = vec![1.0, 1.0, 0.0, 2.5, -0.5];
    let s1 = [1.0, 2.0, 0.5, 3.0, 0.1]; // standard deviations
    let s2 = [0.5, 2.0, 1.5, 1.0, 0.2];
    let var = |s: &[f64]| s.iter().map(|x| x * x).collect::<Vec<_>>();
    let a = gaussian(m1.clone(), diag(&var(&s1)));
    let b = gaussian(m2.clone(), diag(&var(&s2)));
    let want: f64 = m1
        .iter()
        .zip(&m2)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        + s1.iter()
            .zip(&s2)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>();
    let got = frechet_distance(&a, &b).unwrap();
    assert_close("diagonal", got, want, 1e-12, want);
}

#[test]
fn singular_covariances() {
    // A rank-deficient S1: its zero eigenvalue must not turn into NaN.
    let a = gaussian(vec![0.0, 0.0], diag(&[1.0, 0.0]));
    let b = gaussian(vec![0.0, 0.0], diag(&[4.0, 9.0]));
    let got = frechet_distance(&a, &b).unwrap();
    assert_close("singular S1", got, 10.0, 1e-12, 10.0);
    let got = frechet_distance(&b, &a).unwrap();
    assert_close("singular S2", got, 10.0, 1e-12, 10.0);
    let zero = gaussian(vec![1.0, 1.0], diag(&[0.0, 0.0]));
    let got = frechet_distance(&zero, &zero).unwrap();
    assert_eq!(got, 0.0);
}

#[test]
fn commuting_full_covariances_closed_form() {
    // S = R diag(l) Rᵀ with the same R: |dm|² + Σ (sqrt(l1) - sqrt(l2))².
    let r = rotation3();
    let rt = transpose(&r, 3);
    let l1 = [4.0, 1.0, 0.09];
    let l2 = [1.0, 2.25, 1.0];
    let s1 = matmul(&matmul(&r, &diag(&l1), 3), &rt, 3);
    let s2 = matmul(&matmul(&r, &diag(&l2), 3), &rt, 3);
    assert!(s1[1].abs() > 0.1, "rotation should make S1 non-diagonal");
    let m1 = vec![1.0, 0.0, -1.0];
    let m2 = vec![0.0, 0.5, -1.0];
    let want = 1.0
        + 0.25
        + l1.iter()
            .zip(&l2)
            .map(|(x, y)| (x.sqrt() - y.sqrt()).powi(2))
            .sum::<f64>();
    let got = frechet_distance(&gaussian(m1, s1), &gaussian(m2, s2)).unwrap();
    assert_close("commuting", got, want, 1e-10, want);
}

#[test]
fn non_commuting_2x2_against_explicit_formula() {
    // For a 2x2 M with non-negative eigenvalues, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M))
    // (from (sqrt(a) + sqrt(b))² = a + b + 2 sqrt(ab)). With M = S1 S2:
    // d = |dm|² + tr S1 + tr S2 - 2 sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2)).
    let s1 = [2.0, 0.8, 0.8, 1.0];
    let s2 = [0.5, -0.3, -0.3, 1.5];
    let m = matmul(&s1, &s2, 2);
    let s1s2_commute = matmul(&s2, &s1, 2);
    assert!(
        (m[1] - s1s2_commute[1]).abs() > 0.1,
        "the case should not commute"
    );
    let det = |s: &[f64]| s[0] * s[3] - s[1] * s[2];
    let tr_m = m[0] + m[3];
    let tr_sqrt = (tr_m + 2.0 * (det(&s1) * det(&s2)).sqrt()).sqrt();
    let (m1, m2) = (vec![0.3, -0.2], vec![-0.1, 0.4]);
    let dm2 = 0.4f64.powi(2) + 0.6f64.powi(2);
    let want = dm2 + (s1[0] + s1[3]) + (s2[0] + s2[3]) - 2.0 * tr_sqrt;

    let a = gaussian(m1, s1.to_vec());
    let b = gaussian(m2, s2.to_vec());
    let got = frechet_distance(&a, &b).unwrap();
    assert_close("non-commuting 2x2", got, want, 1e-12, want);
    let got = frechet_distance(&b, &a).unwrap();
    assert_close("non-commuting 2x2, swapped", got, want, 1e-12, want);
}

#[test]
fn fitted_samples_are_close_to_the_true_gaussian() {
    // x = m + L z with z ~ N(0, I): x ~ N(m, L Lᵀ).
    let d = 4;
    let l = [
        1.0, 0.0, 0.0, 0.0, //
        0.5, 0.8, 0.0, 0.0, //
        -0.3, 0.2, 0.6, 0.0, //
        0.1, -0.4, 0.3, 1.2,
    ];
    let mean = vec![1.0, -2.0, 0.5, 3.0];
    let cov = matmul(&l, &transpose(&l, d), d);
    let truth = gaussian(mean.clone(), cov);

    let n = 20_000;
    let mut rng = StdRng::seed_from_u64(2024);
    let z = normals(&mut rng, n * d);
    let mut x = Vec::with_capacity(n * d);
    for zr in z.chunks(d) {
        for i in 0..d {
            let v = mean[i] + (0..d).map(|k| l[i * d + k] * zr[k]).sum::<f64>();
            x.push(v as f32);
        }
    }
    let fitted = Gaussian::fit(&x, d).unwrap();
    assert_eq!(fitted.count, n);
    let fid = frechet_distance(&fitted, &truth).unwrap();
    eprintln!("FID of {n} samples to their source N(m, LLᵀ), dim {d}: {fid:.3e}");
    assert!(fid < 0.05, "FID of 20k samples to their source: {fid}");

    // And clearly larger against a shifted Gaussian.
    let mut shifted = truth.clone();
    shifted.mean[0] += 1.0;
    let far = frechet_distance(&fitted, &shifted).unwrap();
    assert!(far > 0.9, "FID to a mean shifted by 1: {far}");
}

#[test]
fn frechet_rejects_bad_gaussians() {
    let a = gaussian(vec![0.0, 0.0], diag(&[1.0, 1.0]));
    let b = gaussian(vec![0.0], vec![1.0]);
    assert!(matches!(frechet_distance(&a, &b), Err(Error::Shape { .. })));
    let mut bad = a.clone();
    bad.cov.pop();
    assert!(matches!(
        frechet_distance(&a, &bad),
        Err(Error::Shape { .. })
    ));
    let mut nan = a.clone();
    nan.cov[1] = f64::NAN;
    assert!(matches!(
        frechet_distance(&nan, &a),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn gaussian_serializes() {
    let g = Gaussian::fit(&[1.0, 2.0, 3.0, 6.0, 5.0, 4.0], 2).unwrap();
    let v = serde_json::to_value(&g).unwrap();
    assert_eq!(v["dim"], 2);
    assert_eq!(v["count"], 3);
    assert_eq!(v["cov"][1], 2.0);
}

// ---------------------------------------------------------------- class_stats

/// One-hot-ish rows: `p` on the given class, the rest spread evenly.
fn rows(classes: usize, predicted: &[usize], p: f32) -> Vec<f32> {
    let rest = (1.0 - p) / (classes - 1) as f32;
    predicted
        .iter()
        .flat_map(|&c| (0..classes).map(move |j| if j == c { p } else { rest }))
        .collect()
}

#[test]
fn all_one_class_has_zero_entropy() {
    let probs = rows(10, &[3; 7], 0.9);
    let s = class_stats(&probs, 10, 0.5).unwrap();
    let mut want = vec![0; 10];
    want[3] = 7;
    assert_eq!(s.histogram, want);
    assert_eq!(s.count, 7);
    assert_eq!(s.entropy, 0.0);
    assert!(s.entropy.is_sign_positive());
    assert_eq!(s.confident_fraction, 1.0);
    assert_eq!(s.normalized_entropy(), 0.0);
}

#[test]
fn uniform_over_ten_classes_has_entropy_ln_10() {
    let predicted: Vec<usize> = (0..30).map(|i| i % 10).collect();
    let s = class_stats(&rows(10, &predicted, 0.4), 10, 0.5).unwrap();
    assert_eq!(s.histogram, vec![3; 10]);
    assert_close("entropy", s.entropy, 10f64.ln(), 1e-12, 1.0);
    assert_close("normalized", s.normalized_entropy(), 1.0, 1e-12, 1.0);
    assert_eq!(s.confident_fraction, 0.0);
}

#[test]
fn mixed_histogram_entropy_and_confidence() {
    // 3 classes; predictions 0, 0, 1, 2 -> p = (1/2, 1/4, 1/4).
    #[rustfmt::skip]
    let probs = [
        0.7, 0.2, 0.1,   // class 0, confident
        0.5, 0.3, 0.2,   // class 0, exactly at the threshold: not confident
        0.1, 0.8, 0.1,   // class 1, confident
        0.3, 0.3, 0.4,   // class 2
    ];
    let s: ClassStats = class_stats(&probs, 3, 0.5).unwrap();
    assert_eq!(s.histogram, vec![2, 1, 1]);
    let want = 0.5 * 2f64.ln() + 2.0 * 0.25 * 4f64.ln();
    assert_close("entropy", s.entropy, want, 1e-12, 1.0);
    assert_eq!(s.confident_fraction, 0.5);
    assert_eq!(s.count, 4);
}

#[test]
fn ties_go_to_the_lowest_index() {
    #[rustfmt::skip]
    let probs = [
        0.25, 0.25, 0.25, 0.25,
        0.1, 0.45, 0.0, 0.45,
        0.0, 0.0, 0.5, 0.5,
    ];
    let s = class_stats(&probs, 4, 0.3).unwrap();
    assert_eq!(s.histogram, vec![1, 1, 1, 0]);
    assert_close("confident", s.confident_fraction, 2.0 / 3.0, 1e-15, 1.0);
}

#[test]
fn single_class() {
    let s = class_stats(&[1.0, 0.2], 1, 0.5).unwrap();
    assert_eq!(s.histogram, vec![2]);
    assert_eq!(s.entropy, 0.0);
    assert_eq!(s.confident_fraction, 0.5);
    assert_eq!(s.normalized_entropy(), 0.0);
}

#[test]
fn class_stats_rejects_bad_input() {
    assert!(matches!(
        class_stats(&[0.5; 7], 10, 0.5),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        class_stats(&[], 10, 0.5),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        class_stats(&[0.5; 10], 0, 0.5),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        class_stats(&[0.5, f32::NAN], 2, 0.5),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        class_stats(&[0.5, 0.5], 2, f32::NAN),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn class_stats_serializes() {
    let s = class_stats(&rows(10, &[1, 2], 0.9), 10, 0.5).unwrap();
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["histogram"][1], 1);
    assert_eq!(v["count"], 2);
}
