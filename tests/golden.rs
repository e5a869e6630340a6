//! The CPU reference against the TF-Keras golden vectors in tests/golden/ (a copy of the
//! project's shared/golden; its README.md documents every case, layout and tolerance). Every
//! case and every stored tensor is checked.

#[path = "common/golden.rs"]
mod golden;

use gan_gpu::cpu::{
    Activation, AdamConfig, activation_backward, activation_forward, adam_step, bce_elementwise,
    bce_with_logits, bias_grad, conv_transpose2d_backward_input, conv_transpose2d_backward_weight,
    conv_transpose2d_forward, conv2d_backward_input, conv2d_backward_weight, conv2d_forward,
    dense_backward, dense_forward,
};
use gan_gpu::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};
use golden::Case;

/// README tolerances: layers (sums of many products) abs 1e-4 + rel 1e-4; elementwise ops, the
/// loss and Adam abs 1e-6. A one-pixel padding shift or a misplaced epsilon is far above these.
const LAYER: (f32, f32) = (1e-4, 1e-4);
const ELEMENTWISE: (f32, f32) = (1e-6, 0.0);

/// Fails unless |got - want| <= abs + rel·|want| everywhere (NaN fails), naming the case, the
/// tensor, how many elements fail, and the worst one with both values.
fn assert_close(case: &Case, tensor: &str, got: &[f32], want: &[f32], (abs, rel): (f32, f32)) {
    assert_eq!(got.len(), want.len(), "{} {tensor}: length", case.name);
    let excess = |i: usize| (got[i] - want[i]).abs() - (abs + rel * want[i].abs());
    let failing: Vec<usize> = (0..got.len())
        .filter(|&i| excess(i) > 0.0 || excess(i).is_nan())
        .collect();
    let worst = failing
        .iter()
        .copied()
        .max_by(|&a, &b| excess(a).total_cmp(&excess(b)).then(b.cmp(&a)));
    if let Some(i) = worst {
        panic!(
            "{} {tensor}: {} of {} elements outside abs {abs:e} + rel {rel:e}; worst at {i}: \
             got {} want {} (diff {:e})",
            case.name,
            failing.len(),
            got.len(),
            got[i],
            want[i],
            (got[i] - want[i]).abs()
        );
    }
}

fn dims<const N: usize>(case: &Case, tensor: &str, layout: &str) -> ([usize; N], Vec<f32>) {
    let t = case.tensor(tensor);
    assert_eq!(t.layout, layout, "{} {tensor}: layout", case.name);
    let dims = t.dims.as_slice().try_into().unwrap_or_else(|_| {
        panic!(
            "{} {tensor}: expected {N} dims, got {:?}",
            case.name, t.dims
        )
    });
    (dims, t.data)
}

fn check_dense(name: &str) {
    let case = Case::load(name);
    assert_eq!(case.op, "Dense");
    let ([batch, in_f], x) = dims(&case, "x", "NC");
    let ([_, out_f], w) = dims(&case, "w", "dense_w");
    let b = case.tensor("b").data;
    let dy = case.tensor("dy").data;

    let y = dense_forward(&x, &w, &b, batch, in_f, out_f).unwrap();
    assert_close(&case, "y", &y, &case.tensor("y").data, LAYER);
    let (dx, dw, db) = dense_backward(&x, &w, &dy, batch, in_f, out_f).unwrap();
    assert_close(&case, "dx", &dx, &case.tensor("dx").data, LAYER);
    assert_close(&case, "dw", &dw, &case.tensor("dw").data, LAYER);
    assert_close(&case, "db", &db, &case.tensor("db").data, LAYER);
}

fn check_conv(name: &str) {
    let case = Case::load(name);
    assert_eq!(case.op, "Conv2D");
    let ([batch, in_h, in_w, in_c], x) = dims(&case, "x", "NHWC");
    let ([k_h, k_w, _, out_c], w) = dims(&case, "w", "conv_w");
    let ([_, out_h, out_w, _], dy) = dims(&case, "dy", "NHWC");
    let b = case.tensor("b").data;
    let [s_h, s_w] = case.param_usizes("strides")[..] else {
        panic!("strides")
    };
    let geometry = match case.param("padding")[0].as_str() {
        "valid" => Conv2dGeometry::valid,
        "same" => Conv2dGeometry::same,
        other => panic!("padding {other}"),
    };
    let g = geometry(batch, in_h, in_w, in_c, out_c, k_h, k_w, s_h, s_w);
    assert_eq!(
        (g.out_h(), g.out_w()),
        (out_h, out_w),
        "{name}: output size"
    );

    let y = conv2d_forward(&g, &x, &w, &b).unwrap();
    assert_close(&case, "y", &y, &case.tensor("y").data, LAYER);
    let dx = conv2d_backward_input(&g, &dy, &w).unwrap();
    assert_close(&case, "dx", &dx, &case.tensor("dx").data, LAYER);
    let dw = conv2d_backward_weight(&g, &x, &dy).unwrap();
    assert_close(&case, "dw", &dw, &case.tensor("dw").data, LAYER);
    let db = bias_grad(&dy, batch * out_h * out_w, out_c).unwrap();
    assert_close(&case, "db", &db, &case.tensor("db").data, LAYER);
}

fn check_conv_transpose(name: &str) {
    let case = Case::load(name);
    assert_eq!(case.op, "Conv2DTranspose");
    let ([batch, in_h, in_w, in_c], x) = dims(&case, "x", "NHWC");
    let ([k_h, k_w, out_c, _], w) = dims(&case, "w", "convT_w");
    let ([_, out_h, out_w, _], dy) = dims(&case, "dy", "NHWC");
    let b = case.tensor("b").data;
    let [s_h, s_w] = case.param_usizes("strides")[..] else {
        panic!("strides")
    };
    let geometry = match case.param("padding")[0].as_str() {
        "valid" => ConvTranspose2dGeometry::keras_valid,
        "same" => ConvTranspose2dGeometry::keras_same,
        other => panic!("padding {other}"),
    };
    let g = geometry(batch, in_h, in_w, in_c, out_c, k_h, k_w, s_h, s_w, None);
    assert_eq!((g.out_h, g.out_w), (out_h, out_w), "{name}: output size");

    let y = conv_transpose2d_forward(&g, &x, &w, &b).unwrap();
    assert_close(&case, "y", &y, &case.tensor("y").data, LAYER);
    let dx = conv_transpose2d_backward_input(&g, &dy, &w).unwrap();
    assert_close(&case, "dx", &dx, &case.tensor("dx").data, LAYER);
    let dw = conv_transpose2d_backward_weight(&g, &x, &dy).unwrap();
    assert_close(&case, "dw", &dw, &case.tensor("dw").data, LAYER);
    let db = bias_grad(&dy, batch * out_h * out_w, out_c).unwrap();
    assert_close(&case, "db", &db, &case.tensor("db").data, LAYER);
}

#[test]
fn dense_100_6272() {
    check_dense("dense_100_6272");
}

#[test]
fn dense_2304_1() {
    check_dense("dense_2304_1");
}

#[test]
fn conv_28to13_k3s2_valid_1to32() {
    check_conv("conv_28to13_k3s2_valid_1to32");
}

#[test]
fn conv_13to6_k3s2_valid_32to64() {
    check_conv("conv_13to6_k3s2_valid_32to64");
}

#[test]
fn conv_transpose_7to14_k5s2_same_128to64() {
    check_conv_transpose("convT_7to14_k5s2_same_128to64");
}

#[test]
fn conv_transpose_14to28_k5s2_same_64to1() {
    check_conv_transpose("convT_14to28_k5s2_same_64to1");
}

#[test]
fn bce_logits() {
    let case = Case::load("bce_logits");
    let x = case.tensor("x").data;
    let labels = case.tensor("labels").data;
    let out = bce_with_logits(&x, &labels).unwrap();
    assert_close(
        &case,
        "loss",
        &[out.loss],
        &case.tensor("loss").data,
        ELEMENTWISE,
    );
    assert_close(
        &case,
        "dx",
        &out.dlogits,
        &case.tensor("dx").data,
        ELEMENTWISE,
    );
    let elem = bce_elementwise(&x, &labels).unwrap();
    assert_close(
        &case,
        "elem_loss",
        &elem,
        &case.tensor("elem_loss").data,
        ELEMENTWISE,
    );
}

#[test]
fn activations() {
    let case = Case::load("activations");
    let x = case.tensor("x").data;
    let dy = case.tensor("dy").data;
    for (name, act) in [
        ("relu", Activation::Relu),
        ("tanh", Activation::Tanh),
        ("sigmoid", Activation::Sigmoid),
        ("leaky_relu", Activation::LeakyRelu(0.2)),
    ] {
        let y = activation_forward(act, &x);
        assert_close(
            &case,
            &format!("y_{name}"),
            &y,
            &case.tensor(&format!("y_{name}")).data,
            ELEMENTWISE,
        );
        let dx = activation_backward(act, &x, &y, &dy).unwrap();
        assert_close(
            &case,
            &format!("dx_{name}"),
            &dx,
            &case.tensor(&format!("dx_{name}")).data,
            ELEMENTWISE,
        );
    }
}

#[test]
fn adam_steps() {
    let case = Case::load("adam_steps");
    let param = |name: &str| case.param(name)[0].parse::<f32>().unwrap();
    let cfg = AdamConfig {
        lr: param("learning_rate"),
        beta1: param("beta_1"),
        beta2: param("beta_2"),
        epsilon: param("epsilon"),
    };
    assert_eq!(
        cfg,
        AdamConfig::default(),
        "the default is the Keras/DCGAN setting"
    );
    let mut p = case.tensor("p0").data;
    let mut m = vec![0.0; p.len()];
    let mut v = vec![0.0; p.len()];
    for t in 1..=case.param_usizes("steps")[0] as u32 {
        let g = case.tensor(&format!("g{t}")).data;
        adam_step(&cfg, t, &mut p, &g, &mut m, &mut v).unwrap();
        assert_close(
            &case,
            &format!("p{t}"),
            &p,
            &case.tensor(&format!("p{t}")).data,
            ELEMENTWISE,
        );
        assert_close(
            &case,
            &format!("m{t}"),
            &m,
            &case.tensor(&format!("m{t}")).data,
            ELEMENTWISE,
        );
        assert_close(
            &case,
            &format!("v{t}"),
            &v,
            &case.tensor(&format!("v{t}")).data,
            ELEMENTWISE,
        );
    }
}
