//! The batch gather kernels (rows and labels) against their CPU twins: upload, dispatch,
//! readback, compare.

mod common;

use gan_gpu::cpu;
use gan_gpu::gpu::testing::test_context;
use gan_gpu::kernels::gather::{gather_labels, gather_rows};
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

/// Gathers `indices` from u8 `labels` on the GPU (NaN-prefilled output) and compares
/// with the CPU twin exactly.
fn check_labels(labels: &[u8], indices: &[u32]) {
    let Some(ctx) = test_context("gather_labels parity") else {
        return;
    };
    let (rows, batch) = (labels.len(), indices.len());
    let expected = cpu::gather::gather_labels(labels, indices);
    let label_buf = ctx.upload("test labels", labels);
    let index_buf = ctx.upload("test indices", indices);
    let out = ctx.nan_filled("test label out", batch);
    let d = gather_labels(&ctx, &label_buf, rows, &index_buf, batch, &out).unwrap();
    ctx.run(&[&d], "gather_labels test").unwrap();
    let got: Vec<u32> = ctx.read(&out, batch).unwrap();
    assert_eq!(got, expected, "gather_labels rows={rows} batch={batch}");
}

#[test]
fn gather_labels_matches_cpu_on_awkward_lengths() {
    // Row counts not a multiple of 4 leave a partial last word; batch 0 records nothing.
    for (rows, batch) in [(1, 1), (5, 0), (5, 5), (7, 100), (13, 1), (1001, 100)] {
        let mut rng = StdRng::seed_from_u64(rows as u64 * 7 + batch as u64);
        let labels: Vec<u8> = (0..rows).map(|_| rng.random()).collect();
        let indices: Vec<u32> = (0..batch)
            .map(|_| rng.random_range(0..rows as u32))
            .collect();
        check_labels(&labels, &indices);
    }
}

#[test]
fn gather_labels_reads_every_byte_lane() {
    // Every row once, backwards: each of the four bytes of every word, the last partial
    // word included, with values up to 255 (no sign extension).
    let labels: Vec<u8> = (0..11).map(|i| 255 - i * 9).collect();
    let indices: Vec<u32> = (0..11).rev().collect();
    check_labels(&labels, &indices);
}

#[test]
fn gather_labels_rejects_bad_shapes() {
    let Some(ctx) = test_context("gather_labels errors") else {
        return;
    };
    let (labels, indices, out) = (
        ctx.upload("l", &[1u8; 8]),
        ctx.storage("i", 16),
        ctx.storage("o", 16),
    );
    let run = |rows, batch| {
        gather_labels(&ctx, &labels, rows, &indices, batch, &out)
            .err()
            .map(|e| e.to_string())
    };
    assert!(run(0, 1).unwrap().contains("empty"));
    assert!(run(9, 4).unwrap().contains("9 u8 labels"));
    assert!(run(8, 5).unwrap().contains("batch 5"));
    assert!(run(8, 4).is_none());
    assert!(run(0, 0).is_none());
}
