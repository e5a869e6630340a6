//! Reverse-mode autodiff of every model's whole GAN graph against central finite
//! differences, on the CPU executor: the discriminator's gradient of d_loss_real +
//! d_loss_fake and the generator's gradient of g_loss through the discriminator.

use std::collections::HashSet;
use std::sync::Arc;

use gan_gpu::cpu::Activation;
use gan_gpu::graph::cpu_exec::CpuExecutor;
use gan_gpu::graph::{
    Buf, Dataset, Executor, Graph, InputSource, Instr, NodeId, RandomStreams, lower,
};
use gan_gpu::model::seed::SEED;
use gan_gpu::model::{MODELS, Model, ModelConfig, ModelKind};
use rand::{RngExt, SeedableRng, rngs::StdRng};

const BATCH: usize = 3;

fn setup(kind: &'static ModelKind) -> (Model, CpuExecutor) {
    let gan = kind.build(&ModelConfig::new(BATCH, 100)).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let dataset = Dataset {
        bytes: (0..20 * 784).map(|_| rng.random()).collect(),
        rows: 20,
        row_len: 784,
        labels: Some((0..20).map(|i| (i % 10) as u8).collect()),
    };
    let mut exec = CpuExecutor::new(
        &gan.graph,
        gan.optimizers(),
        Some(Arc::new(dataset)),
        RandomStreams { seed: 11 },
    );
    for (id, values) in gan.graph.init_params(&mut rng) {
        // At Keras's init G(z) is nearly constant, so every pixel of a D feature map
        // sits at the same point of a ReLU and a perturbation crosses the kink everywhere
        // at once, which finite differences cannot see past. Larger weights and non-zero
        // biases give varied activations, where the loss is smooth at the step size.
        let values: Vec<f32> = if values.iter().all(|&v| v == 0.0) {
            (0..values.len())
                .map(|_| rng.random_range(-0.3..0.3))
                .collect()
        } else {
            values
        };
        exec.write(Buf::Value(id), &values).unwrap();
    }
    (gan, exec)
}

/// Checks d(sum of losses)/d(param) element by element on a sample of each parameter
/// tensor. ReLU kinks make the loss non-smooth at some points; there a central
/// difference does not converge, so an element counts only where the differences at h
/// and h/2 agree (the loss is smooth there), and most sampled elements must be smooth.
fn check(gan: &Model, exec: &mut CpuExecutor, losses: &[NodeId], params: &[NodeId]) {
    let forward = lower::forward(&gan.graph, losses, &HashSet::new());
    let mut grad_plan = forward.clone();
    grad_plan.extend(lower::backward(&gan.graph, losses, params).unwrap());
    let forward = exec.compile(&forward).unwrap();
    let grad_plan = exec.compile(&grad_plan).unwrap();
    exec.run(grad_plan, 0).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let mut failures = Vec::new();
    for &p in params {
        let name = format!("{}: {}", gan.kind.name, gan.graph.nodes[p].name);
        let grad = exec.read(Buf::Grad(p)).unwrap();
        let value = exec.read(Buf::Value(p)).unwrap();
        let mut central = |i: usize, h: f32| -> f64 {
            let mut loss_at = |delta: f32| -> f64 {
                let mut shifted = value.clone();
                shifted[i] += delta;
                exec.write(Buf::Value(p), &shifted).unwrap();
                exec.run(forward, 0).unwrap();
                losses
                    .iter()
                    .map(|&l| f64::from(exec.read(Buf::Value(l)).unwrap()[0]))
                    .sum()
            };
            let d = (loss_at(h) - loss_at(-h)) / (2.0 * f64::from(h));
            exec.write(Buf::Value(p), &value).unwrap();
            d
        };
        let samples = 8.min(value.len());
        let mut smooth = 0;
        for _ in 0..samples {
            let i = rng.random_range(0..value.len());
            // Three step sizes: a ReLU kink a little closer than the coarse two can bend
            // both alike (seen in the cgan); all three agree only where the loss is smooth.
            let (coarse, fine, finest) = (central(i, 2e-3), central(i, 1e-3), central(i, 5e-4));
            // f32 rounding of the loss (~1e-7) over a 5e-4 step is ~2e-4.
            let agree = |a: f64, b: f64| (a - b).abs() <= 5e-4 + 0.02 * b.abs();
            if !(agree(coarse, fine) && agree(fine, finest)) {
                continue;
            }
            smooth += 1;
            let analytic = f64::from(grad[i]);
            // 10%: a kink closer than h to the point shifts both differences alike; wiring
            // mistakes (a missing branch, a wrong transpose) are O(1).
            if (fine - analytic).abs() > 3e-4 + 0.1 * analytic.abs() {
                failures.push(format!(
                    "{name}[{i}]: analytic {analytic:.6e}, finite difference {fine:.6e}"
                ));
            }
        }
        if smooth * 2 < samples {
            failures.push(format!(
                "{name}: only {smooth} of {samples} sampled elements are smooth"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn discriminator_gradients_match_finite_differences() {
    for &kind in MODELS {
        let (gan, mut exec) = setup(kind);
        let d = gan.phases[0].clone();
        check(&gan, &mut exec, &d.losses, &d.params);
    }
}

#[test]
fn generator_gradients_through_the_discriminator_match_finite_differences() {
    for &kind in MODELS {
        let (gan, mut exec) = setup(kind);
        let g = gan.phases[1].clone();
        check(&gan, &mut exec, &g.losses, &g.params);
    }
}

#[test]
fn the_discriminator_step_does_not_touch_the_generator() {
    let gan = SEED.build(&ModelConfig::new(BATCH, 100)).unwrap();
    let plan = gan.train_step().unwrap();
    let d_step_end = plan
        .iter()
        .rposition(|i| matches!(i, gan_gpu::graph::Instr::Adam { group: 0, .. }))
        .unwrap();
    for instr in &plan[..d_step_end] {
        if let gan_gpu::graph::Instr::Adam { param, .. } = instr {
            assert!(gan.phases[0].params.contains(param));
        }
    }
    // The generator step reuses G(z): no noise is drawn twice.
    let noise_draws = plan
        .iter()
        .filter(|i| matches!(i, gan_gpu::graph::Instr::Noise { .. }))
        .count();
    assert_eq!(noise_draws, 1);
}

/// A sum's input borrows the sum's gradient buffer only where the sum is its only use:
/// here `h` feeds two sums and `e` one. The backward pass copies into `h`'s gradient (it
/// gets two contributions), lends `e` and `s` the sums' buffers, and every parameter's
/// gradient still matches central differences.
#[test]
fn sums_lend_their_gradient_only_to_single_use_inputs() {
    let mut g = Graph::default();
    let x = g.input("x", InputSource::External, vec![4, 3]);
    let h = g.dense("h", x, 5).unwrap();
    let e = g.dense("e", x, 5).unwrap();
    let s = g.add("s", h, e).unwrap();
    let t = g.add("t", s, h).unwrap();
    let h2 = g.activation("tanh", t, Activation::Tanh);
    let logit = g.dense("out", h2, 1).unwrap();
    let loss = g.bce_with_logits("loss", logit, 1.0).unwrap();
    let params = g.params();
    let backward = lower::backward(&g, &[loss], &params).unwrap();
    let copies: Vec<Buf> = backward
        .iter()
        .filter_map(|i| match i {
            Instr::Accumulate { dst, .. } => Some(*dst),
            _ => None,
        })
        .collect();
    assert_eq!(
        copies,
        vec![Buf::Grad(h); 2],
        "only h, used twice, gets copies (one from each sum)"
    );

    let mut exec = CpuExecutor::new(&g, Vec::new(), None, RandomStreams { seed: 1 });
    let mut rng = StdRng::seed_from_u64(5);
    for (id, values) in g.init_params(&mut rng) {
        exec.write(Buf::Value(id), &values).unwrap();
    }
    let inputs: Vec<f32> = (0..12).map(|_| rng.random_range(-1.0..1.0)).collect();
    exec.write(Buf::Value(x), &inputs).unwrap();
    let forward = lower::forward(&g, &[loss], &HashSet::new());
    let mut grad_plan = forward.clone();
    grad_plan.extend(backward);
    let (forward, grad_plan) = (
        exec.compile(&forward).unwrap(),
        exec.compile(&grad_plan).unwrap(),
    );
    exec.run(grad_plan, 0).unwrap();
    for p in params {
        let grad = exec.read(Buf::Grad(p)).unwrap();
        let value = exec.read(Buf::Value(p)).unwrap();
        for i in 0..value.len() {
            let mut loss_at = |delta: f32| {
                let mut shifted = value.clone();
                shifted[i] += delta;
                exec.write(Buf::Value(p), &shifted).unwrap();
                exec.run(forward, 0).unwrap();
                f64::from(exec.read(Buf::Value(loss)).unwrap()[0])
            };
            let numeric = (loss_at(1e-3) - loss_at(-1e-3)) / 2e-3;
            exec.write(Buf::Value(p), &value).unwrap();
            let analytic = f64::from(grad[i]);
            assert!(
                (numeric - analytic).abs() <= 5e-4 + 0.02 * analytic.abs(),
                "{}[{i}]: analytic {analytic:.6e}, finite difference {numeric:.6e}",
                g.nodes[p].name
            );
        }
    }
}

/// A concatenation hands each input its own rows of the gradient (an `Accumulate` from an
/// offset), and a loss over some rows of a batch sends nothing to the others: two dense
/// branches stacked into one batch, a loss on each half and one over all of it; every
/// parameter's gradient matches central differences.
#[test]
fn concat_and_row_losses_match_finite_differences() {
    let mut g = Graph::default();
    let x = g.input("x", InputSource::External, vec![3, 4]);
    let y = g.input("y", InputSource::External, vec![2, 4]);
    let a = g.dense("a", x, 5).unwrap();
    let b = g.dense("b", y, 5).unwrap();
    let both = g.concat("both", a, b).unwrap();
    assert_eq!(g.shape(both), [5, 5]);
    let h = g.activation("tanh", both, Activation::Tanh);
    let logit = g.dense("out", h, 1).unwrap();
    let first = g.bce_with_logits_rows("first", logit, 1.0, 0..3).unwrap();
    let second = g.bce_with_logits_rows("second", logit, 0.0, 3..5).unwrap();
    let all = g.bce_with_logits("all", logit, 0.5).unwrap();
    let losses = [first, second, all];
    let params = g.params();
    let backward = lower::backward(&g, &losses, &params).unwrap();
    let offsets: Vec<usize> = backward
        .iter()
        .filter_map(|i| match i {
            Instr::Accumulate { offset, .. } => Some(*offset),
            _ => None,
        })
        .collect();
    assert_eq!(offsets, [0, 15], "each branch reads its own rows");

    let mut exec = CpuExecutor::new(&g, Vec::new(), None, RandomStreams { seed: 1 });
    let mut rng = StdRng::seed_from_u64(6);
    for (id, values) in g.init_params(&mut rng) {
        exec.write(Buf::Value(id), &values).unwrap();
    }
    for (input, len) in [(x, 12), (y, 8)] {
        let values: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0..1.0)).collect();
        exec.write(Buf::Value(input), &values).unwrap();
    }
    let forward = lower::forward(&g, &losses, &HashSet::new());
    let mut grad_plan = forward.clone();
    grad_plan.extend(backward);
    let (forward, grad_plan) = (
        exec.compile(&forward).unwrap(),
        exec.compile(&grad_plan).unwrap(),
    );
    exec.run(grad_plan, 0).unwrap();
    let total_loss = |exec: &mut CpuExecutor| {
        exec.run(forward, 0).unwrap();
        losses
            .iter()
            .map(|&l| f64::from(exec.read(Buf::Value(l)).unwrap()[0]))
            .sum::<f64>()
    };
    for p in params {
        let grad = exec.read(Buf::Grad(p)).unwrap();
        let value = exec.read(Buf::Value(p)).unwrap();
        for i in 0..value.len() {
            let mut loss_at = |delta: f32| {
                let mut shifted = value.clone();
                shifted[i] += delta;
                exec.write(Buf::Value(p), &shifted).unwrap();
                total_loss(&mut exec)
            };
            let numeric = (loss_at(1e-3) - loss_at(-1e-3)) / 2e-3;
            exec.write(Buf::Value(p), &value).unwrap();
            let analytic = f64::from(grad[i]);
            assert!(
                (numeric - analytic).abs() <= 5e-4 + 0.02 * analytic.abs(),
                "{}[{i}]: analytic {analytic:.6e}, finite difference {numeric:.6e}",
                g.nodes[p].name
            );
        }
    }
}

/// Shapes that cannot be stacked, and row ranges outside the batch, are refused by name.
#[test]
fn concat_and_row_losses_refuse_bad_shapes() {
    let mut g = Graph::default();
    let x = g.input("x", InputSource::External, vec![3, 4]);
    let y = g.input("y", InputSource::External, vec![2, 5]);
    let err = g.concat("both", x, y).unwrap_err().to_string();
    assert!(
        err.contains("both") && err.contains("[3, 4]") && err.contains("[2, 5]"),
        "{err}"
    );
    let logit = g.dense("out", x, 1).unwrap();
    for rows in [2..4, 1..1] {
        let err = g
            .bce_with_logits_rows("loss", logit, 1.0, rows.clone())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("loss") && err.contains(&format!("{rows:?}")),
            "{err}"
        );
    }
}
