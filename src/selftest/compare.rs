//! How a GPU result is held against the CPU reference: element-wise within
//! `atol + rtol·|cpu|` (NaN fails), bit for bit for integers, or by relative L2 norm for
//! whole training steps.

/// `|gpu - cpu| <= atol + rtol·|cpu|` per element; both zero means bit-equal.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub atol: f64,
    pub rtol: f64,
}

impl Tolerance {
    pub const EXACT: Tolerance = Tolerance {
        atol: 0.0,
        rtol: 0.0,
    };

    /// For a sum of `terms` products of numbers in [-1, 1] added in another order than
    /// the CPU's: the absolute error grows like sqrt(terms), so atol starts at 1e-5 and
    /// scales with it (the parity tests' rule).
    pub fn reduction(terms: usize) -> Tolerance {
        Tolerance {
            atol: 1e-5 * (terms.max(1) as f64).sqrt(),
            rtol: 1e-4,
        }
    }

    pub fn new(atol: f64, rtol: f64) -> Tolerance {
        Tolerance { atol, rtol }
    }

    /// This tolerance with atol grown like sqrt(terms): for an element-wise result that
    /// goes through a statistic summed over `terms` values (BatchNorm's mean and variance).
    pub fn widened(self, terms: usize) -> Tolerance {
        Tolerance {
            atol: self.atol * (terms.max(1) as f64).sqrt(),
            ..self
        }
    }

    pub fn describe(&self) -> String {
        let (a, r) = (self.atol, self.rtol);
        if a == 0.0 && r == 0.0 {
            "bit-exact".into()
        } else if r == 0.0 {
            format!("{a:.1e}")
        } else {
            format!("{a:.1e} + {r:.0e}·|ref|")
        }
    }
}

/// The outcome of comparing one output.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub max_error: f64,
    /// The worst element's error divided by its allowance (infinite for a NaN, or for any
    /// difference under a bit-exact tolerance).
    pub ratio: f64,
    pub failing: usize,
    pub len: usize,
    /// Index, GPU value, CPU value of the worst element.
    pub worst: Option<(usize, f32, f32)>,
}

impl Comparison {
    pub fn passed(&self) -> bool {
        self.failing == 0
    }

    /// "3 of 1000 elements outside; worst at 17: gpu 0.5 cpu 0.25".
    pub fn failure(&self) -> Option<String> {
        let (i, g, c) = self.worst?;
        (!self.passed()).then(|| {
            format!(
                "{} of {} elements outside the tolerance; worst at {i}: gpu {g} cpu {c}",
                self.failing, self.len
            )
        })
    }
}

pub fn compare(gpu: &[f32], cpu: &[f32], tol: Tolerance) -> Comparison {
    let exact = tol.atol == 0.0 && tol.rtol == 0.0;
    let mut out = Comparison {
        max_error: 0.0,
        ratio: 0.0,
        failing: gpu.len().abs_diff(cpu.len()),
        len: cpu.len(),
        worst: None,
    };
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        let error = (f64::from(g) - f64::from(c)).abs();
        let ratio = if exact {
            if g.to_bits() == c.to_bits() {
                0.0
            } else {
                f64::INFINITY
            }
        } else if error.is_nan() {
            f64::INFINITY
        } else {
            error / (tol.atol + tol.rtol * f64::from(c).abs())
        };
        if ratio > 1.0 {
            out.failing += 1;
        }
        if out.worst.is_none() || ratio > out.ratio {
            out.ratio = ratio;
            out.worst = Some((i, g, c));
        }
        if error > out.max_error || error.is_nan() {
            out.max_error = if error.is_nan() { f64::NAN } else { error };
        }
    }
    out
}

/// ‖gpu - cpu‖ / ‖cpu‖ (NaN when either holds a NaN).
pub fn relative_l2(gpu: &[f32], cpu: &[f32]) -> f64 {
    let diff: f64 = gpu
        .iter()
        .zip(cpu)
        .map(|(g, c)| (f64::from(*g) - f64::from(*c)).powi(2))
        .sum();
    let norm: f64 = cpu.iter().map(|c| f64::from(*c).powi(2)).sum();
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}
