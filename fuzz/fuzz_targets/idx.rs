//! The IDX readers (`dataset`, `train`, `eval --samples`) on arbitrary bytes, plain or gzip.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let origin = Path::new("fuzz.idx3-ubyte");
    if let Ok((pixels, count, rows, cols)) = gan_gpu::data::parse_idx_images(origin, data) {
        assert_eq!(pixels.len(), count * rows * cols);
        assert!(count > 0 && rows > 0 && cols > 0);
    }
    if let Ok(labels) = gan_gpu::data::parse_idx_labels(origin, data) {
        assert!(labels.iter().all(|&l| l <= 9));
    }
});
