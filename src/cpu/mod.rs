//! CPU reference twins of every kernel: the oracle the WGSL kernels are tested against, and a
//! usable (GEMM-based, multi-threaded) CPU training backend.
//!
//! Threads: everything runs on rayon's global pool (`RAYON_NUM_THREADS`, default one per
//! core), the GEMM included, and work is split in fixed pieces, so results depend on neither
//! the thread count nor scheduling. [`peak`] measures the fp32 limit of those threads.
//!
//! Conventions, shared with the GPU kernels:
//! - Activations are NHWC (batch, height, width, channels), channels fastest. That is Keras
//!   `channels_last`, so the TF-Keras golden vectors and weights load without transposes. It
//!   also suits implicit GEMM / im2col: the reduction index (kh, kw, cin) is contiguous in cin,
//!   so a patch row is k_h runs of k_w·cin consecutive floats (plain copies on the CPU, coalesced
//!   loads on the GPU), and a conv output (batch·h·w, channels) is directly the GEMM result.
//! - Weights use the Keras layouts: Dense (in, out) with y = x·W + b; Conv2D HWIO
//!   (kh, kw, cin, cout); Conv2DTranspose HWOI (kh, kw, cout, cin), out before in.
//! - Gradients are vector-Jacobian products: given dy they are the gradients of
//!   L = Σ y·dy, summed over the batch (no 1/N).
//! - Every op checks its slice lengths with [`check_len`] and returns [`Error::Shape`] on a
//!   mismatch instead of panicking.

pub mod activation;
pub mod adam;
pub mod batchnorm;
pub mod bce;
pub mod combine;
pub mod conv;
pub mod conv_transpose;
pub mod dropout;
pub mod ema;
pub mod embedding;
pub mod gather;
pub mod gemm;
pub mod noise;
mod par;
pub mod peak;
pub mod softmax_ce;
mod subpixel;
pub mod workspace;

pub use activation::{
    Activation, activation_backward, activation_backward_into, activation_forward,
    activation_forward_into,
};
pub use adam::{AdamConfig, EmaOf, adam_ema_step, adam_step};
pub use batchnorm::{batch_moments, batch_norm_backward_into, batch_norm_forward_into};
pub use bce::{
    BceOutput, bce_constant_label, bce_constant_label_rows, bce_elementwise, bce_with_logits,
};
pub use combine::{
    accumulate_into, accumulate_rows_into, add, add_into, concat_into, row_dot, row_dot_backward,
    row_dot_backward_into, row_dot_into,
};
pub use conv::{
    conv2d_backward_input, conv2d_backward_input_into, conv2d_backward_weight,
    conv2d_backward_weight_into, conv2d_forward, conv2d_forward_into,
};
pub use conv_transpose::{
    conv_transpose2d_backward_input, conv_transpose2d_backward_input_into,
    conv_transpose2d_backward_into, conv_transpose2d_backward_weight,
    conv_transpose2d_backward_weight_into, conv_transpose2d_forward, conv_transpose2d_forward_into,
};
pub use dropout::{DropoutMask, dropout_backward_into, dropout_into};
pub use ema::{ema_step, ema_weights};
pub use embedding::{
    embedding_backward, embedding_backward_into, embedding_forward, embedding_forward_into,
};
pub use gemm::{bias_grad, bias_grad_into, dense_backward, dense_forward, fill_rows, gemm};
pub use noise::{
    normal_noise, normal_noise_at, normal_noise_into, philox4x32_10, uniform_index, uniform_u32,
};
pub use softmax_ce::{SoftmaxCeOutput, softmax_cross_entropy, softmax_rows};
pub use workspace::{FusedActivation, FusedActivationGrad, Workspace};

use crate::error::{Error, Result};

/// `Ok` when `len == expected`, else `Error::Shape` naming the op and the buffer. The one
/// length check behind every op here.
pub fn check_len(op: &'static str, what: &str, len: usize, expected: usize) -> Result<()> {
    if len == expected {
        Ok(())
    } else {
        Err(Error::Shape {
            op,
            message: format!("{what} has {len} elements, expected {expected}"),
        })
    }
}
