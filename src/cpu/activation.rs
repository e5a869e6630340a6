//! Elementwise activations with TensorFlow's conventions at the kinks and tails.

use super::check_len;
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
    /// y = f(x)
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu(alpha) => {
                if x >= 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
            Activation::Tanh => x.clamp(-TANH_CLAMP, TANH_CLAMP).tanh(),
            Activation::Sigmoid => sigmoid(x),
        }
    }

    /// dx = f'(x)·dy, with TF's choices: relu'(0) = 0 and leaky'(0) = alpha (x > 0 ? 1 : alpha);
    /// tanh' = 1 - y² and sigmoid' = y(1 - y) from the f32 forward output y.
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
                if x > 0.0 {
                    dy
                } else {
                    alpha * dy
                }
            }
            Activation::Tanh => dy * (1.0 - y * y),
            Activation::Sigmoid => dy * y * (1.0 - y),
        }
    }
}

/// 1/(1 + e^-x) without overflow for any x: e^-|x| is at most 1.
pub fn sigmoid(x: f32) -> f32 {
    let e = (-x.abs()).exp();
    if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

/// x (n) -> y (n) = f(x)
pub fn activation_forward(act: Activation, x: &[f32]) -> Vec<f32> {
    x.iter().map(|&x| act.apply(x)).collect()
}

/// x (n) input, y (n) forward output, dy (n) -> dx (n) = f'(x)·dy
pub fn activation_backward(act: Activation, x: &[f32], y: &[f32], dy: &[f32]) -> Result<Vec<f32>> {
    check_len("activation_backward", "y", y.len(), x.len())?;
    check_len("activation_backward", "dy", dy.len(), x.len())?;
    Ok(x.iter()
        .zip(y)
        .zip(dy)
        .map(|((&x, &y), &dy)| act.grad(x, y, dy))
        .collect())
}
