//! Elementwise activations with TensorFlow's conventions at the kinks and tails.

use super::{check_len, par};
use crate::error::Result;

/// |x| beyond which tanh is ±1 in f32 anyway. Clamping first keeps a browser backend (which
/// returns NaN for |x| > 88) finite, and the GPU kernel clamps the same way.
const TANH_CLAMP: f32 = 15.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Relu,
    /// x >= 0 ? x : alpha·x
    LeakyRelu(f32),
    Tanh,
    Sigmoid,
}

impl Activation {
    /// y = f(x). Always inlined: the loops below call it with a constant `self`, and only
    /// inlined does the `match` fold away and the loop vectorise.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Relu => x.max(0.0),
            // x >= 0 ? x : alpha·x, as a max (min for alpha > 1), which vectorises; as a
            // branch, random signs mispredicted and it ran 10x slower.
            Activation::LeakyRelu(alpha) if alpha <= 1.0 => x.max(alpha * x),
            Activation::LeakyRelu(alpha) => x.min(alpha * x),
            Activation::Tanh => tanh(x),
            Activation::Sigmoid => sigmoid(x),
        }
    }

    /// dx = f'(x)·dy, with TF's choices: relu'(0) = 0 and leaky'(0) = alpha (x > 0 ? 1 : alpha);
    /// tanh' = 1 - y² and sigmoid' = y(1 - y) from the f32 forward output y. Always inlined,
    /// as `apply`.
    #[inline(always)]
    pub fn grad(self, x: f32, y: f32, dy: f32) -> f32 {
        match self {
            Activation::Relu => {
                if x > 0.0 {
                    dy
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu(alpha) => {
                let scaled = alpha * dy;
                if x > 0.0 { dy } else { scaled }
            }
            Activation::Tanh => dy * (1.0 - y * y),
            Activation::Sigmoid => dy * y * (1.0 - y),
        }
    }
}

/// 1/(1 + e^-x) without overflow for any x: e^-|x| is at most 1.
pub fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs());
    let r = 1.0 / (1.0 + e);
    if x >= 0.0 { r } else { e * r }
}

/// tanh(x) for |x| <= `TANH_CLAMP` (±1 beyond), within 2 ulp (pinned against f64 by
/// `tests/cpu_fast_paths.rs`). Cephes' tanhf: an odd polynomial below 0.625, else
/// 1 - 2/(e^2|x| + 1). Branch-free and without libm calls, so a loop of it vectorises; libm's
/// tanhf was 20 ns an element.
pub fn tanh(x: f32) -> f32 {
    let x = x.clamp(-TANH_CLAMP, TANH_CLAMP);
    let a = x.abs();
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_908_8e-2) * z - 5.373_971_5e-2) * z + 1.333_144_2e-1) * z
            - 3.333_328e-1)
            * z
            * x
            + x;
    let large = (1.0 - 2.0 / (exp(2.0 * a) + 1.0)).copysign(x);
    if a < 0.625 { small } else { large }
}

/// e^x for x in [-87.3, 88.4] (clamped there: e^-87.3 ≈ 1.2e-38 stands in for anything
/// smaller), within 1 ulp: Cephes' expf. x = n·ln2 + r with |r| <= ln2/2, a degree-7 polynomial
/// for e^r, and 2^n built from its exponent bits. Branch-free, so loops of it vectorise.
pub fn exp(x: f32) -> f32 {
    // 1.5·2^23: adding it rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.336_54, 88.376_26);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    // ln 2 in two parts, so n·LN2_HI is exact.
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_6e-1)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    // n is in [-126, 127]: 2^n is a normal float.
    let n = t.to_bits() as i32 - ROUND.to_bits() as i32;
    f32::from_bits(((n + 127) as u32) << 23) * e
}

/// x (n) -> y (n) = f(x)
pub fn activation_forward(act: Activation, x: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    forward_loop(act, x, &mut y);
    y
}

/// [`activation_forward`] into `y` (n).
pub fn activation_forward_into(act: Activation, x: &[f32], y: &mut [f32]) -> Result<()> {
    check_len("activation_forward", "y", y.len(), x.len())?;
    forward_loop(act, x, y);
    Ok(())
}

/// One loop per activation (not a `match` per element), so each vectorises; threaded.
fn forward_loop(act: Activation, x: &[f32], y: &mut [f32]) {
    match act {
        Activation::Relu => par::map(x, y, |x| Activation::Relu.apply(x)),
        // `apply`'s two cases of alpha, chosen here once rather than per element.
        Activation::LeakyRelu(alpha) if alpha <= 1.0 => par::map(x, y, move |x| x.max(alpha * x)),
        Activation::LeakyRelu(alpha) => par::map(x, y, move |x| x.min(alpha * x)),
        Activation::Tanh => par::map(x, y, tanh),
        Activation::Sigmoid => par::map(x, y, sigmoid),
    }
}

/// x (n) input, y (n) forward output, dy (n) -> dx (n) = f'(x)·dy
pub fn activation_backward(act: Activation, x: &[f32], y: &[f32], dy: &[f32]) -> Result<Vec<f32>> {
    let mut dx = vec![0.0; x.len()];
    activation_backward_into(act, x, y, dy, &mut dx, false)?;
    Ok(dx)
}

/// [`activation_backward`] into `dx` (n), or added to it when `accumulate`.
pub fn activation_backward_into(
    act: Activation,
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    accumulate: bool,
) -> Result<()> {
    check_len("activation_backward", "y", y.len(), x.len())?;
    check_len("activation_backward", "dy", dy.len(), x.len())?;
    check_len("activation_backward", "dx", dx.len(), x.len())?;
    match act {
        Activation::Relu => par::map3(x, y, dy, dx, accumulate, |x, y, dy| {
            Activation::Relu.grad(x, y, dy)
        }),
        Activation::LeakyRelu(alpha) => par::map3(x, y, dy, dx, accumulate, |x, y, dy| {
            Activation::LeakyRelu(alpha).grad(x, y, dy)
        }),
        Activation::Tanh => par::map3(x, y, dy, dx, accumulate, |x, y, dy| {
            Activation::Tanh.grad(x, y, dy)
        }),
        Activation::Sigmoid => par::map3(x, y, dy, dx, accumulate, |x, y, dy| {
            Activation::Sigmoid.grad(x, y, dy)
        }),
    }
    Ok(())
}
