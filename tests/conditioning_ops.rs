//! The ops a class-conditional GAN adds (embedding lookup and its table gradient,
//! element-wise add and its copy-or-add gradient, row-wise dot product and its
//! gradient, the batch concatenation of the discriminator's [real; fake] and its
//! offset copy-or-add gradient): each CPU twin against plain f64 loops and central finite differences, and
//! each WGSL kernel against its CPU twin on awkward shapes (0, 1, primes, non-multiples
//! of the workgroup, the cgan's own layers), with NaN-prefilled outputs; the fused
//! embedding kernels against the separate ones, bit for bit.

mod common;

use common::assert_close;
use gan_gpu::cpu::{
    accumulate_rows_into, add, concat_into, embedding_backward, embedding_forward, row_dot,
    row_dot_backward,
};
use gan_gpu::gpu::testing::test_context;
use gan_gpu::gpu::{Dispatch, GpuBuffer, GpuContext};
use gan_gpu::kernels::{combine, embedding};
use rand::{RngExt, SeedableRng, rngs::StdRng};

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}

fn labels(n: usize, classes: usize, seed: u64) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| rng.random_range(0..classes.max(1) as u32))
        .collect()
}

/// (batch, classes, dim): empty, single, primes, more classes than rows, and the cgan's
/// generator (100 x 10 x 6272) and discriminator (100 x 10 x 2304) embeddings.
const EMBEDDINGS: [(usize, usize, usize); 7] = [
    (0, 3, 5),
    (1, 1, 1),
    (7, 3, 13),
    (5, 17, 3),
    (31, 10, 257),
    (100, 10, 6272),
    (100, 10, 2304),
];

/// (rows, cols) for the row dot product: the discriminator's projection is 100 x 2304.
const ROWS: [(usize, usize); 7] = [
    (0, 4),
    (1, 1),
    (3, 7),
    (13, 63),
    (5, 65),
    (17, 1000),
    (100, 2304),
];

#[test]
fn cpu_embedding_matches_plain_loops() {
    let (batch, classes, dim) = (9, 4, 6);
    let table = data(classes * dim, 1);
    let ids = labels(batch, classes, 2);
    let dy = data(batch * dim, 3);
    let out = embedding_forward(&table, &ids, classes, dim).unwrap();
    let dtable = embedding_backward(&dy, &ids, classes, dim).unwrap();
    for b in 0..batch {
        for j in 0..dim {
            assert_eq!(out[b * dim + j], table[ids[b] as usize * dim + j]);
        }
    }
    for c in 0..classes {
        for j in 0..dim {
            let expected: f64 = (0..batch)
                .filter(|&b| ids[b] as usize == c)
                .map(|b| f64::from(dy[b * dim + j]))
                .sum();
            assert!((f64::from(dtable[c * dim + j]) - expected).abs() < 1e-5);
        }
    }
    let err = embedding_forward(&table, &[0, 4], classes, dim).unwrap_err();
    assert!(err.to_string().contains("label 4"), "{err}");
}

/// L = Σ out·w for a fixed w, so dL/dtable is embedding_backward(w): checked by central
/// differences in f64 (the op is linear, so they are exact up to rounding).
#[test]
fn cpu_embedding_gradient_matches_finite_differences() {
    let (batch, classes, dim) = (6, 3, 4);
    let table = data(classes * dim, 4);
    let ids = labels(batch, classes, 5);
    let w = data(batch * dim, 6);
    let loss = |t: &[f32]| -> f64 {
        let out = embedding_forward(t, &ids, classes, dim).unwrap();
        out.iter()
            .zip(&w)
            .map(|(&o, &v)| f64::from(o) * f64::from(v))
            .sum()
    };
    let grad = embedding_backward(&w, &ids, classes, dim).unwrap();
    for i in 0..table.len() {
        let (mut up, mut down) = (table.clone(), table.clone());
        up[i] += 1e-2;
        down[i] -= 1e-2;
        let fd = (loss(&up) - loss(&down)) / 2e-2;
        assert!(
            (fd - f64::from(grad[i])).abs() < 1e-4,
            "table[{i}]: {fd} vs {}",
            grad[i]
        );
    }
}

/// L = Σ_r w_r·rowdot(a, b)_r: dL/da = row_dot_backward(w, b), dL/db = (w, a), and the
/// sum's gradient is the upstream gradient itself.
#[test]
fn cpu_row_dot_and_add_gradients_match_finite_differences() {
    let (rows, cols) = (4, 5);
    let (a, b, w) = (data(rows * cols, 7), data(rows * cols, 8), data(rows, 9));
    let loss = |a: &[f32], b: &[f32]| -> f64 {
        let dots = row_dot(a, b, cols).unwrap();
        dots.iter()
            .zip(&w)
            .map(|(&d, &v)| f64::from(d) * f64::from(v))
            .sum()
    };
    let (da, db) = (
        row_dot_backward(&w, &b, cols).unwrap(),
        row_dot_backward(&w, &a, cols).unwrap(),
    );
    for i in 0..a.len() {
        for (which, grad) in [(0, &da), (1, &db)] {
            let (mut up, mut down) = ((a.clone(), b.clone()), (a.clone(), b.clone()));
            if which == 0 {
                up.0[i] += 1e-2;
                down.0[i] -= 1e-2;
            } else {
                up.1[i] += 1e-2;
                down.1[i] -= 1e-2;
            }
            let fd = (loss(&up.0, &up.1) - loss(&down.0, &down.1)) / 2e-2;
            assert!(
                (fd - f64::from(grad[i])).abs() < 1e-4,
                "{which}[{i}]: {fd} vs {}",
                grad[i]
            );
        }
    }
    let plain: Vec<f64> = (0..rows)
        .map(|r| {
            (0..cols)
                .map(|c| f64::from(a[r * cols + c]) * f64::from(b[r * cols + c]))
                .sum()
        })
        .collect();
    for (got, want) in row_dot(&a, &b, cols).unwrap().iter().zip(plain) {
        assert!((f64::from(*got) - want).abs() < 1e-5);
    }
    assert_eq!(add(&a, &b).unwrap()[3], a[3] + b[3]);
    assert!(add(&a, &b[1..]).is_err());
}

fn nan_buffer(ctx: &GpuContext, what: &str, n: usize) -> GpuBuffer {
    ctx.upload(what, &vec![f32::NAN; n.max(1)])
}

fn run(ctx: &GpuContext, d: Dispatch, what: &str) {
    ctx.run(&[&d], what).unwrap();
}

fn label_buffer(ctx: &GpuContext, ids: &[u32]) -> GpuBuffer {
    let bits: Vec<f32> = ids.iter().map(|&l| f32::from_bits(l)).collect();
    ctx.upload("labels", if bits.is_empty() { &[0.0] } else { &bits })
}

#[test]
fn gpu_embedding_matches_the_cpu_twin() {
    let Some(ctx) = test_context("embedding parity") else {
        return;
    };
    for (i, &(batch, classes, dim)) in EMBEDDINGS.iter().enumerate() {
        let shape = format!("batch {batch}, {classes} classes x {dim}");
        let seed = 10 * i as u64;
        let table = data(classes * dim, seed);
        let ids = labels(batch, classes, seed + 1);
        let dy = data(batch * dim, seed + 2);
        let prior = data(classes * dim, seed + 3);
        let (tb, lb, dyb) = (
            ctx.upload("table", &table),
            label_buffer(&ctx, &ids),
            ctx.upload("dy", &dy),
        );
        let out = nan_buffer(&ctx, "out", batch * dim);
        run(
            &ctx,
            embedding::embedding_forward(&ctx, &tb, &lb, &out, (batch, classes, dim), false)
                .unwrap(),
            "embedding forward",
        );
        let cpu = embedding_forward(&table, &ids, classes, dim).unwrap();
        let gpu = ctx.read::<f32>(&out, batch * dim).unwrap();
        assert_eq!(gpu, cpu, "embedding forward {shape}");

        // Backward, overwriting a NaN buffer and then adding into a prior value.
        let dtable = nan_buffer(&ctx, "dtable", classes * dim);
        run(
            &ctx,
            embedding::embedding_backward(&ctx, &dyb, &lb, &dtable, (batch, classes, dim), false)
                .unwrap(),
            "embedding backward",
        );
        let cpu = embedding_backward(&dy, &ids, classes, dim).unwrap();
        let gpu = ctx.read::<f32>(&dtable, classes * dim).unwrap();
        assert_eq!(
            gpu, cpu,
            "embedding backward {shape} (same summation order)"
        );
        let acc = ctx.upload("dtable prior", &prior);
        run(
            &ctx,
            embedding::embedding_backward(&ctx, &dyb, &lb, &acc, (batch, classes, dim), true)
                .unwrap(),
            "embedding backward +=",
        );
        let want: Vec<f32> = prior.iter().zip(&cpu).map(|(p, g)| p + g).collect();
        let gpu = ctx.read::<f32>(&acc, classes * dim).unwrap();
        assert_close("embedding backward +=", &shape, &gpu, &want, 1e-6, 1e-6);
    }
}

#[test]
fn gpu_add_and_accumulate_match_the_cpu_twin() {
    let Some(ctx) = test_context("add parity") else {
        return;
    };
    for len in [0, 1, 3, 63, 64, 65, 1001, 100 * 6272] {
        let (a, b, prior) = (data(len, 1), data(len, 2), data(len, 3));
        let (ab, bb) = (ctx.upload("a", &a), ctx.upload("b", &b));
        let y = nan_buffer(&ctx, "y", len);
        if len > 0 {
            run(&ctx, combine::add(&ctx, &ab, &bb, &y, len).unwrap(), "add");
            assert_eq!(
                ctx.read::<f32>(&y, len).unwrap(),
                add(&a, &b).unwrap(),
                "add {len}"
            );
        }
        let dst = nan_buffer(&ctx, "dst", len);
        run(
            &ctx,
            combine::accumulate(&ctx, &ab, 0, &dst, len, false).unwrap(),
            "copy",
        );
        assert_eq!(ctx.read::<f32>(&dst, len).unwrap(), a, "copy {len}");
        let acc = ctx.upload("prior", &prior);
        run(
            &ctx,
            combine::accumulate(&ctx, &ab, 0, &acc, len, true).unwrap(),
            "accumulate",
        );
        let want: Vec<f32> = prior.iter().zip(&a).map(|(p, x)| p + x).collect();
        assert_eq!(
            ctx.read::<f32>(&acc, len).unwrap(),
            want,
            "accumulate {len}"
        );
    }
    let x = ctx.upload("x", &[1.0; 8]);
    let Err(err) = combine::add(&ctx, &x, &x, &x, 8) else {
        panic!("one buffer as input and output was accepted");
    };
    let err = err.to_string();
    assert!(err.contains("same buffer"), "{err}");
}

/// Concatenation copies bits (labels are u32 bits in f32 buffers, so a value like
/// f32::from_bits(7), a denormal, must come through unchanged), and the gradient it passes
/// back reads its input's rows from an offset.
#[test]
fn gpu_concat_and_offset_accumulate_match_the_cpu_twin() {
    let Some(ctx) = test_context("concat parity") else {
        return;
    };
    for (len_a, len_b) in [
        (0, 5),
        (5, 0),
        (1, 1),
        (3, 61),
        (64, 65),
        (1001, 7),
        (78400, 78400),
    ] {
        let mut a = data(len_a, 4);
        if let Some(first) = a.first_mut() {
            *first = f32::from_bits(7);
        }
        let b: Vec<f32> = (0..len_b as u32).map(|i| f32::from_bits(i % 10)).collect();
        let (ab, bb) = (ctx.upload("a", &a), ctx.upload("b", &b));
        let len = len_a + len_b;
        let y = nan_buffer(&ctx, "y", len);
        run(
            &ctx,
            combine::concat(&ctx, &ab, len_a, &bb, len_b, &y).unwrap(),
            "concat",
        );
        let mut want = vec![0.0; len];
        concat_into(&a, &b, &mut want).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let got = ctx.read::<f32>(&y, len).unwrap();
        assert_eq!(bits(&got), bits(&want), "concat {len_a} + {len_b}");

        // The gradient of the second input: rows from offset len_a.
        let src = data(len, 5);
        let sb = ctx.upload("src", &src);
        let prior = data(len_b, 6);
        for accumulate in [false, true] {
            let dst = match accumulate {
                true => ctx.upload("prior", &prior),
                false => nan_buffer(&ctx, "dst", len_b),
            };
            let d = combine::accumulate(&ctx, &sb, len_a, &dst, len_b, accumulate).unwrap();
            run(&ctx, d, "offset accumulate");
            let mut want = prior.clone();
            accumulate_rows_into(&src, len_a, &mut want, accumulate).unwrap();
            assert_eq!(
                ctx.read::<f32>(&dst, len_b).unwrap(),
                want,
                "accumulate {len_b} from {len_a} ({accumulate})"
            );
        }
    }
    let x = ctx.upload("x", &[1.0f32; 8]);
    let Err(err) = combine::accumulate(&ctx, &x, 5, &ctx.nan_filled("d", 4), 4, false) else {
        panic!("a source of 8 read at 5..9 was accepted");
    };
    assert!(err.to_string().contains("src"), "{err}");
    let mut short = [0.0; 4];
    let err = accumulate_rows_into(&[1.0; 8], 5, &mut short, false).unwrap_err();
    assert!(err.to_string().contains("5..9"), "{err}");
}

/// `concat_pair` writes what two `concat`s write (the CPU twin's bits), for pairs of
/// unequal lengths on either side of each other, empty sides, and the cgan's [real; fake]
/// rows beside their labels; it refuses concats that overlap.
#[test]
fn two_concats_in_one_dispatch_match_the_cpu_twin() {
    let Some(ctx) = test_context("concat pair parity") else {
        return;
    };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let shapes = [
        ((0, 0), (1, 2)),
        ((5, 7), (300, 1)),
        ((78400, 78400), (100, 100)),
        ((3, 0), (0, 4)),
    ];
    for (k, &((len_a, len_b), (len_c, len_d))) in shapes.iter().enumerate() {
        let seed = 900 + 10 * k as u64;
        let mut values = [len_a, len_b, len_c, len_d].map(|n| data(n, seed + n as u64));
        // Label bits (denormals as f32) must travel unchanged.
        for v in &mut values[2..] {
            for (i, x) in v.iter_mut().enumerate() {
                *x = f32::from_bits(i as u32 % 10);
            }
        }
        let [a, b, c, d] = values
            .each_ref()
            .map(|v| ctx.upload("input", if v.is_empty() { &[0.0] } else { v }));
        let (y, y2) = (
            nan_buffer(&ctx, "y", len_a + len_b),
            nan_buffer(&ctx, "y2", len_c + len_d),
        );
        let first = combine::Concat {
            a: &a,
            len_a,
            b: &b,
            len_b,
            y: &y,
        };
        let second = combine::Concat {
            a: &c,
            len_a: len_c,
            b: &d,
            len_b: len_d,
            y: &y2,
        };
        run(
            &ctx,
            combine::concat_pair(&ctx, first, second).unwrap(),
            "concat pair",
        );
        for (out, (x, z)) in [
            (&y, (&values[0], &values[1])),
            (&y2, (&values[2], &values[3])),
        ] {
            let mut want = vec![0.0; x.len() + z.len()];
            concat_into(x, z, &mut want).unwrap();
            let got = ctx.read::<f32>(out, want.len()).unwrap();
            assert_eq!(bits(&got), bits(&want), "concat pair {:?}", shapes[k]);
        }
    }
    let (a, y) = (ctx.upload("a", &[1.0f32; 4]), nan_buffer(&ctx, "y", 8));
    let first = combine::Concat {
        a: &a,
        len_a: 4,
        b: &a,
        len_b: 4,
        y: &y,
    };
    let second = combine::Concat {
        a: &y,
        len_a: 4,
        b: &a,
        len_b: 4,
        y: &nan_buffer(&ctx, "y2", 8),
    };
    let Err(err) = combine::concat_pair(&ctx, first, second) else {
        panic!("a concat reading the other's output was accepted");
    };
    assert!(err.to_string().contains("must not overlap"), "{err}");
}

/// `embedding_backward_row_dot` writes the bits that `row_dot_grad` then
/// `embedding_backward` write, for every embedding shape (out-of-range labels included),
/// each accumulate flag of either output.
#[test]
fn the_projection_gradient_into_the_embedding_matches_the_two_passes() {
    let Some(ctx) = test_context("embedding backward + row dot grad") else {
        return;
    };
    let bits = |b: &GpuBuffer, len: usize| -> Vec<u32> {
        let v: Vec<f32> = ctx.read(b, len).unwrap();
        v.iter().map(|f| f.to_bits()).collect()
    };
    for (i, &(batch, classes, dim)) in EMBEDDINGS.iter().enumerate() {
        let seed = 1300 + 10 * i as u64;
        let mut ids = labels(batch, classes, seed);
        if let Some(first) = ids.first_mut() {
            *first = classes as u32 + 2;
        }
        let lb = label_buffer(&ctx, &ids);
        let n = batch * dim;
        let upload = |len: usize, seed: u64| ctx.upload("input", &data(len.max(1), seed));
        let (dy, features) = (upload(batch, seed + 1), upload(n, seed + 2));
        let (row_prior, table_prior) = (
            data(n.max(1), seed + 3),
            data((classes * dim).max(1), seed + 4),
        );
        for (row_accumulate, accumulate) in [(false, false), (true, true), (false, true)] {
            let [row1, row2] = [(); 2].map(|_| ctx.upload("row grad", &row_prior));
            let [t1, t2] = [(); 2].map(|_| ctx.upload("table grad", &table_prior));
            let dims = (batch, classes, dim);
            let separate = [
                combine::row_dot_grad(&ctx, &dy, &features, &row1, batch, dim, row_accumulate)
                    .unwrap(),
                embedding::embedding_backward(&ctx, &row1, &lb, &t1, dims, accumulate).unwrap(),
            ];
            let fused = embedding::embedding_backward_row_dot(
                &ctx,
                (&dy, &features),
                (&row2, row_accumulate),
                &lb,
                &t2,
                dims,
                accumulate,
            )
            .unwrap();
            ctx.run(
                &separate.iter().collect::<Vec<_>>(),
                "row dot grad, embedding grad",
            )
            .unwrap();
            run(&ctx, fused, "fused embedding grad");
            let what =
                format!("batch {batch}, {classes}x{dim}, accumulate {row_accumulate}/{accumulate}");
            // Rows whose label is out of range still get their gradient (clamped class).
            assert_eq!(bits(&row2, n), bits(&row1, n), "row grad, {what}");
            assert_eq!(
                bits(&t2, classes * dim),
                bits(&t1, classes * dim),
                "table grad, {what}"
            );
        }
    }
    let x = ctx.upload("x", &[1.0f32; 8]);
    let Err(err) = embedding::embedding_backward_row_dot(
        &ctx,
        (&x, &x),
        (&x, false),
        &x,
        &x,
        (2, 2, 2),
        false,
    ) else {
        panic!("aliased outputs were accepted");
    };
    assert!(err.to_string().contains("must differ"), "{err}");
}

#[test]
fn gpu_row_dot_matches_the_cpu_twin() {
    let Some(ctx) = test_context("row dot parity") else {
        return;
    };
    for (i, &(rows, cols)) in ROWS.iter().enumerate() {
        let shape = format!("{rows}x{cols}");
        let seed = 100 + 10 * i as u64;
        let (a, b, dy, prior) = (
            data(rows * cols, seed),
            data(rows * cols, seed + 1),
            data(rows, seed + 2),
            data(rows * cols, seed + 3),
        );
        let (ab, bb, dyb) = (
            ctx.upload("a", &a),
            ctx.upload("b", &b),
            ctx.upload("dy", &dy),
        );
        let y = nan_buffer(&ctx, "y", rows);
        run(
            &ctx,
            combine::row_dot(&ctx, &ab, &bb, &y, rows, cols).unwrap(),
            "row dot",
        );
        let cpu = row_dot(&a, &b, cols).unwrap();
        // Tree order against column order: rounding of a sum of `cols` products.
        let gpu = ctx.read::<f32>(&y, rows).unwrap();
        assert_close("row dot", &shape, &gpu, &cpu, 1e-5 * cols as f32, 1e-4);

        let dx = nan_buffer(&ctx, "dx", rows * cols);
        run(
            &ctx,
            combine::row_dot_grad(&ctx, &dyb, &bb, &dx, rows, cols, false).unwrap(),
            "row dot grad",
        );
        let cpu = row_dot_backward(&dy, &b, cols).unwrap();
        assert_eq!(
            ctx.read::<f32>(&dx, rows * cols).unwrap(),
            cpu,
            "row dot grad {shape}"
        );
        let acc = ctx.upload("prior", &prior);
        run(
            &ctx,
            combine::row_dot_grad(&ctx, &dyb, &bb, &acc, rows, cols, true).unwrap(),
            "row dot grad +=",
        );
        let want: Vec<f32> = prior.iter().zip(&cpu).map(|(p, g)| p + g).collect();
        assert_eq!(
            ctx.read::<f32>(&acc, rows * cols).unwrap(),
            want,
            "row dot grad += {shape}"
        );
    }
}

/// `embedding_add` and `embedding_row_dot` write the bits the separate lookup, add, row
/// dot and add write (out-of-range labels included: both clamp), on every embedding shape.
#[test]
fn fused_embedding_kernels_match_the_separate_ones() {
    let Some(ctx) = test_context("fused embedding parity") else {
        return;
    };
    for (i, &(batch, classes, dim)) in EMBEDDINGS.iter().enumerate() {
        let shape = format!("batch {batch}, {classes} classes x {dim}");
        let seed = 700 + 10 * i as u64;
        let mut ids = labels(batch, classes, seed);
        if let Some(first) = ids.first_mut() {
            *first = classes as u32 + 5;
        }
        let n = batch * dim;
        let [table, x, addend, row_addend] = [classes * dim, n, n, batch]
            .iter()
            .enumerate()
            .map(|(k, &len)| ctx.upload("input", &data(len.max(1), seed + 1 + k as u64)))
            .collect::<Vec<_>>()
            .try_into()
            .unwrap();
        let lb = label_buffer(&ctx, &ids);
        let dims = (batch, classes, dim);
        let [out, sum, fused_out, fused_sum] = [(); 4].map(|_| nan_buffer(&ctx, "rows", n));
        let [dot, logit, fused_dot, fused_logit] = [(); 4].map(|_| nan_buffer(&ctx, "row", batch));
        let [out2, fused_out2] = [(); 2].map(|_| nan_buffer(&ctx, "rows", n));
        let dispatches = [
            embedding::embedding_forward(&ctx, &table, &lb, &out, dims, false).unwrap(),
            combine::add(&ctx, &addend, &out, &sum, n).unwrap(),
            embedding::embedding_add(&ctx, &table, &lb, &fused_out, &addend, &fused_sum, dims)
                .unwrap(),
            embedding::embedding_forward(&ctx, &table, &lb, &out2, dims, false).unwrap(),
            combine::row_dot(&ctx, &x, &out2, &dot, batch, dim).unwrap(),
            combine::add(&ctx, &row_addend, &dot, &logit, batch).unwrap(),
            embedding::embedding_row_dot(
                &ctx,
                &table,
                &lb,
                &fused_out2,
                &x,
                &fused_dot,
                &row_addend,
                &fused_logit,
                dims,
            )
            .unwrap(),
        ];
        ctx.run(&dispatches.iter().collect::<Vec<_>>(), "fused embeddings")
            .unwrap();
        let bits = |b: &GpuBuffer, len: usize| -> Vec<u32> {
            let v: Vec<f32> = ctx.read(b, len).unwrap();
            v.iter().map(|f| f.to_bits()).collect()
        };
        for (what, separate, fused, len) in [
            ("embedding + add: rows", &out, &fused_out, n),
            ("embedding + add: sum", &sum, &fused_sum, n),
            ("embedding + row dot: rows", &out2, &fused_out2, n),
            ("embedding + row dot: dot", &dot, &fused_dot, batch),
            ("embedding + row dot: logit", &logit, &fused_logit, batch),
        ] {
            assert_eq!(bits(fused, len), bits(separate, len), "{what}, {shape}");
        }
    }
}
