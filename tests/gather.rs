//! The batch gather kernel against its CPU twin: upload, dispatch, readback, compare.

mod common;

use gan_gpu::cpu;
use gan_gpu::gpu::testing::test_context;
use gan_gpu::kernels::gather::gather_rows;
use rand::{RngExt, SeedableRng, rngs::StdRng};

fn check(rows: usize, row_len: usize, batch: usize, seed: u64) {
    let Some(ctx) = test_context("gather parity") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let dataset: Vec<u8> = (0..rows * row_len).map(|_| rng.random()).collect();
    let indices: Vec<u32> = (0..batch)
        .map(|_| rng.random_range(0..rows as u32))
        .collect();
    let expected = cpu::gather::gather_rows(&dataset, row_len, &indices);

    let dataset_buf = ctx.upload("test dataset", &dataset);
    let index_buf = ctx.upload("test indices", &indices);
    let out = ctx.nan_filled("test gather out", batch * row_len);
    let dispatch = gather_rows(&ctx, &dataset_buf, rows, row_len, &index_buf, batch, &out).unwrap();
    ctx.run(&[&dispatch], "gather test").unwrap();
    let got: Vec<f32> = ctx.read(&out, batch * row_len).unwrap();

    common::assert_close(
        "gather_rows",
        &format!("rows={rows} row_len={row_len} batch={batch}"),
        &got,
        &expected,
        1e-6,
        0.0,
    );
}

#[test]
fn gather_matches_cpu_on_mnist_rows() {
    check(1000, 784, 100, 1);
}

#[test]
fn gather_matches_cpu_on_awkward_shapes() {
    // Row lengths not a multiple of 4 put rows across u32 word boundaries.
    for (rows, row_len, batch) in [(1, 1, 1), (7, 3, 5), (17, 31, 17), (5, 7, 0), (3, 1027, 2)] {
        check(rows, row_len, batch, rows as u64 * 31 + row_len as u64);
    }
}

#[test]
fn gather_extremes_map_to_minus_one_and_one() {
    let Some(ctx) = test_context("gather extremes") else {
        return;
    };
    let dataset = [0u8, 255, 128, 0];
    let dataset_buf = ctx.upload("extremes", &dataset);
    let index_buf = ctx.upload("extremes idx", &[1u32, 0]);
    let out = ctx.nan_filled("extremes out", 4);
    let d = gather_rows(&ctx, &dataset_buf, 2, 2, &index_buf, 2, &out).unwrap();
    ctx.run(&[&d], "gather extremes").unwrap();
    let got: Vec<f32> = ctx.read(&out, 4).unwrap();
    assert!((got[0] - (128.0 / 127.5 - 1.0)).abs() < 1e-6, "{}", got[0]);
    assert_eq!(got[1], -1.0);
    assert_eq!(got[2], -1.0);
    assert_eq!(got[3], 1.0);
}
