//! Rust launchers for the WGSL kernels in `shaders/`: each one checks shapes, fills the
//! kernel's typed `Params` uniform and returns a [`crate::gpu::Dispatch`].

pub mod adam;
pub mod batchnorm;
pub mod bce;
pub mod combine;
pub mod conv;
pub mod elementwise;
pub mod ema;
pub mod embedding;
pub mod gather;
pub mod gemm;
pub mod gemm_columns;
pub mod head_grad;
pub mod noise;
pub mod softmax_ce;

use crate::gpu::Shader;

/// (shader, WGSL struct name, size of its Rust twin) for every uniform struct; a test
/// checks each against the size naga computes from the WGSL.
pub type ParamsTwin = (Shader, &'static str, usize);

pub fn params_twins() -> Vec<ParamsTwin> {
    [
        gather::PARAMS_TWINS,
        gemm::PARAMS_TWINS,
        conv::PARAMS_TWINS,
        elementwise::PARAMS_TWINS,
        bce::PARAMS_TWINS,
        adam::PARAMS_TWINS,
        noise::PARAMS_TWINS,
        softmax_ce::PARAMS_TWINS,
        embedding::PARAMS_TWINS,
        combine::PARAMS_TWINS,
        batchnorm::PARAMS_TWINS,
        ema::PARAMS_TWINS,
        head_grad::PARAMS_TWINS,
    ]
    .concat()
}
