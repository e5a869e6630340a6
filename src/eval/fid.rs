//! Fréchet distance between Gaussians fitted to feature vectors (the "FID" of the
//! usual GAN literature, with whatever feature extractor the caller brings).
//!
//! Everything is f64: features arrive as f32, but the covariance of thousands of
//! samples and the trace of a matrix square root lose digits fast in f32.

use nalgebra::{DMatrix, SymmetricEigen};
use serde::Serialize;

use crate::error::{Error, Result};

/// Rows centred and multiplied per block in [`Gaussian::fit`]: bounds the f64 copy
/// of the features to `FIT_BLOCK_ROWS * dim` values whatever the sample count.
const FIT_BLOCK_ROWS: usize = 512;

/// A Gaussian summary of `count` feature vectors of length `dim`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gaussian {
    pub dim: usize,
    /// `[dim]`
    pub mean: Vec<f64>,
    /// `[dim, dim]`, row-major, symmetric.
    pub cov: Vec<f64>,
    /// How many samples the moments came from (0 for a Gaussian built by hand).
    pub count: usize,
}

impl Gaussian {
    /// Mean and covariance of `features`: `[n, dim]` row-major. The covariance uses the
    /// unbiased `1/(n-1)` normalisation, as `numpy.cov` and the reference FID code do.
    ///
    /// Two passes (mean, then centred cross products) rather than one pass of raw
    /// moments, which cancels catastrophically when the mean is large against the spread.
    pub fn fit(features: &[f32], dim: usize) -> Result<Self> {
        const OP: &str = "Gaussian::fit";
        if dim == 0 {
            return Err(Error::InvalidArgument(format!(
                "{OP}: feature dimension must be at least 1"
            )));
        }
        if !features.len().is_multiple_of(dim) {
            return Err(Error::Shape {
                op: OP,
                message: format!(
                    "{} values is not a whole number of rows of {dim} features",
                    features.len()
                ),
            });
        }
        let n = features.len() / dim;
        if n < 2 {
            return Err(Error::InvalidArgument(format!(
                "{OP}: a covariance needs at least 2 samples, got {n}"
            )));
        }
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "{OP}: feature {} of sample {} is {}",
                i % dim,
                i / dim,
                features[i]
            )));
        }

        let mut mean = vec![0.0f64; dim];
        for row in features.chunks_exact(dim) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += f64::from(x);
            }
        }
        for m in &mut mean {
            *m /= n as f64;
        }

        // cov += Xcᵀ Xc, one block of centred rows at a time. The same row-major buffer
        // read column-major is Xcᵀ, so both operands come from one centring pass.
        let mut scatter = DMatrix::<f64>::zeros(dim, dim);
        let mut centred = Vec::with_capacity(FIT_BLOCK_ROWS.min(n) * dim);
        for block in features.chunks(FIT_BLOCK_ROWS * dim) {
            let rows = block.len() / dim;
            centred.clear();
            for row in block.chunks_exact(dim) {
                centred.extend(row.iter().zip(&mean).map(|(&x, &m)| f64::from(x) - m));
            }
            let xc = DMatrix::from_row_slice(rows, dim, &centred); // [rows, dim]
            let xct = DMatrix::from_column_slice(dim, rows, &centred); // [dim, rows]
            scatter.gemm(1.0, &xct, &xc, 1.0);
        }

        // The blocked GEMM may sum (i, j) and (j, i) in different orders; average the
        // two so the result is exactly symmetric.
        let scale = 1.0 / (n - 1) as f64;
        let mut cov = vec![0.0f64; dim * dim];
        for i in 0..dim {
            for j in 0..dim {
                cov[i * dim + j] = 0.5 * (scatter[(i, j)] + scatter[(j, i)]) * scale;
            }
        }
        Ok(Gaussian {
            dim,
            mean,
            cov,
            count: n,
        })
    }

    /// Checks that the fields agree with `dim` and are finite.
    fn validate(&self, op: &'static str, which: &str) -> Result<()> {
        if self.mean.len() != self.dim || self.cov.len() != self.dim * self.dim {
            return Err(Error::Shape {
                op,
                message: format!(
                    "{which}: dim {} but mean has {} values and cov {} (expected {} and {})",
                    self.dim,
                    self.mean.len(),
                    self.cov.len(),
                    self.dim,
                    self.dim * self.dim
                ),
            });
        }
        if self.mean.iter().chain(&self.cov).any(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "{op}: {which} has a non-finite mean or covariance entry"
            )));
        }
        Ok(())
    }

    /// The covariance as a symmetric nalgebra matrix (averaging the two triangles, so a
    /// hand-built, slightly asymmetric `cov` is read as its symmetric part).
    fn cov_matrix(&self) -> DMatrix<f64> {
        let d = self.dim;
        DMatrix::from_fn(d, d, |i, j| {
            0.5 * (self.cov[i * d + j] + self.cov[j * d + i])
        })
    }
}

/// Fréchet distance between two Gaussians:
/// `|mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})`.
///
/// `tr((S1 S2)^{1/2})` is computed as `Σ sqrt(λ_i(A))` for the symmetric PSD matrix
/// `A = S1^{1/2} S2 S1^{1/2}`, which is similar to `S1 S2` (`S1 S2 = S1^{1/2} A S1^{-1/2}`
/// when S1 is invertible, and by continuity otherwise), so the eigenvalues and hence the
/// trace of the principal square root agree. `S1^{1/2}` comes from a symmetric
/// eigendecomposition (`nalgebra::SymmetricEigen`). Negative eigenvalues of S1 or A,
/// which are rounding on a PSD matrix, are clamped to 0.
///
/// This differs on purpose from the reference FID code, which takes
/// `scipy.linalg.sqrtm(S1 @ S2)` of the non-symmetric product, gets complex results from
/// rounding and discards the imaginary part: staying symmetric keeps every step real and
/// well conditioned. Both agree up to rounding on PSD inputs.
///
/// The result is clamped at 0: it is non-negative in exact arithmetic, and a value like
/// `-1e-13` for two identical Gaussians is only rounding.
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> Result<f64> {
    const OP: &str = "frechet_distance";
    a.validate(OP, "first Gaussian")?;
    b.validate(OP, "second Gaussian")?;
    if a.dim != b.dim {
        return Err(Error::Shape {
            op: OP,
            message: format!("Gaussians of dimension {} and {}", a.dim, b.dim),
        });
    }
    let d = a.dim;
    if d == 0 {
        return Ok(0.0);
    }

    let mean_term: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y) * (x - y))
        .sum();

    let s1 = a.cov_matrix();
    let s2 = b.cov_matrix();
    let trace_term = s1.trace() + s2.trace();

    let e1 = symmetric_eigen(s1, "first covariance")?;
    let sqrt_l1 = e1.eigenvalues.map(|l| l.max(0.0).sqrt());
    let v = &e1.eigenvectors;
    let sqrt_s1 = v * DMatrix::from_diagonal(&sqrt_l1) * v.transpose();

    let m = &sqrt_s1 * s2 * &sqrt_s1;
    let m = 0.5 * (&m + m.transpose()); // exactly symmetric again after rounding
    let tr_sqrt: f64 = symmetric_eigen(m, "S1^1/2 S2 S1^1/2")?
        .eigenvalues
        .iter()
        .map(|l| l.max(0.0).sqrt())
        .sum();

    Ok((mean_term + trace_term - 2.0 * tr_sqrt).max(0.0))
}

/// `SymmetricEigen` with a bounded iteration count: nalgebra's `new` loops until
/// convergence, which a pathological matrix may never reach.
fn symmetric_eigen(m: DMatrix<f64>, what: &str) -> Result<SymmetricEigen<f64, nalgebra::Dyn>> {
    let max_iter = 1000usize.max(100 * m.nrows());
    SymmetricEigen::try_new(m, f64::EPSILON, max_iter).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "frechet_distance: the eigendecomposition of the {what} did not converge in \
             {max_iter} iterations"
        ))
    })
}
