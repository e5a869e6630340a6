//! The IDX/MNIST loader: the bundled dataset, the writer, and one test per way a file can be
//! bad, each asserting the exact `IdxProblem` and that the message names the file.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use gan_gpu::data::{
    MnistSet, Split, default_data_dir, load_mnist, read_idx_images, read_idx_labels,
    write_idx_images,
};
use gan_gpu::error::{Error, IdxProblem};
use proptest::prelude::*;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

// ---- allocation tracking, to prove absurd headers are refused without allocating ----

/// Records the largest single allocation made on each thread, so a test can measure its own
/// allocations while other tests run in parallel.
struct TrackLargest;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with`: the allocator can run while thread-locals are being torn down.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

unsafe impl GlobalAlloc for TrackLargest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: TrackLargest = TrackLargest;

fn largest_allocation_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

// ---- helpers ----

fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The file contents as stored: plain, or gzip-compressed.
fn encode(bytes: &[u8], gz: bool) -> Vec<u8> {
    if gz { gzip(bytes) } else { bytes.to_vec() }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

/// Asserts `err` is `Error::Idx` about `path`, with `path` in its message, and returns the
/// problem.
fn idx_problem(err: Error, path: &Path) -> IdxProblem {
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "message {message:?} does not name {}",
        path.display()
    );
    match err {
        Error::Idx { path: p, problem } => {
            assert_eq!(p, path);
            problem
        }
        other => panic!("expected Error::Idx, got {other:?}"),
    }
}

/// The problem `read_idx_images` reports for a file holding `bytes`.
fn images_problem(bytes: &[u8]) -> IdxProblem {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "images", bytes);
    idx_problem(read_idx_images(&path).unwrap_err(), &path)
}

/// The problem `read_idx_labels` reports for a file holding `bytes`.
fn labels_problem(bytes: &[u8]) -> IdxProblem {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "labels", bytes);
    idx_problem(read_idx_labels(&path).unwrap_err(), &path)
}

/// Writes a small MNIST-shaped train split (28x28 images) into `dir`.
fn write_train_split(dir: &Path, image_count: u32, labels: &[u8], gz: bool) -> (PathBuf, PathBuf) {
    let pixels: Vec<u8> = (0..image_count as usize * 784).map(|i| i as u8).collect();
    let images = idx_bytes(IMAGES_MAGIC, &[image_count, 28, 28], &pixels);
    let labels = idx_bytes(LABELS_MAGIC, &[labels.len() as u32], labels);
    let suffix = if gz { ".gz" } else { "" };
    (
        write_file(
            dir,
            &format!("train-images-idx3-ubyte{suffix}"),
            &encode(&images, gz),
        ),
        write_file(
            dir,
            &format!("train-labels-idx1-ubyte{suffix}"),
            &encode(&labels, gz),
        ),
    )
}

fn label_counts(set: &MnistSet) -> [usize; 10] {
    let mut counts = [0; 10];
    for &l in &set.labels {
        counts[l as usize] += 1;
    }
    counts
}

// ---- the bundled dataset ----

#[test]
fn bundled_train_split_has_60000_images_and_the_known_label_counts() {
    let set = load_mnist(&default_data_dir(), Split::Train).unwrap();
    assert_eq!((set.count, set.rows, set.cols), (60_000, 28, 28));
    assert_eq!(set.images.len(), 60_000 * 784);
    assert_eq!(set.labels.len(), 60_000);
    assert_eq!(
        label_counts(&set),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(set.images.iter().min(), Some(&0));
    assert_eq!(set.images.iter().max(), Some(&255));
    assert_eq!(set.pixels_per_image(), 784);
    assert_eq!(set.image(59_999), &set.images[59_999 * 784..]);
}

#[test]
fn bundled_test_split_has_10000_images() {
    let set = load_mnist(&default_data_dir(), Split::Test).unwrap();
    assert_eq!((set.count, set.rows, set.cols), (10_000, 28, 28));
    assert_eq!(set.images.len(), 10_000 * 784);
    assert_eq!(
        label_counts(&set),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    assert_eq!(set.images.iter().min(), Some(&0));
    assert_eq!(set.images.iter().max(), Some(&255));
}

#[test]
fn split_names_match_the_file_names() {
    assert_eq!(Split::Train.to_string(), "train");
    assert_eq!(Split::Test.to_string(), "t10k");
    assert_eq!(Split::Test.file_stem(), "t10k");
}

// ---- writing, and reading what was written ----

#[test]
fn write_idx_images_round_trips_any_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out-idx3-ubyte");
    let pixels: Vec<u8> = (0..3 * 5 * 7).map(|i| (i * 7) as u8).collect();
    write_idx_images(&path, &pixels, 3, 5, 7).unwrap();
    assert_eq!(read_idx_images(&path).unwrap(), (pixels, 3, 5, 7));
    // Overwriting replaces the file and leaves no temporary files behind.
    write_idx_images(&path, &[9; 4], 1, 2, 2).unwrap();
    assert_eq!(read_idx_images(&path).unwrap(), (vec![9; 4], 1, 2, 2));
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["out-idx3-ubyte"]);
}

#[test]
fn write_idx_images_refuses_inconsistent_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    for (len, count, rows, cols) in [(5, 1, 2, 2), (0, 0, 2, 2), (4, 1, 4, 1 << 40)] {
        let err = write_idx_images(&path, &vec![0; len], count, rows, cols).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err:?}");
    }
    assert!(!path.exists());
}

#[test]
fn load_mnist_reads_plain_files_when_no_gzip_is_present() {
    let dir = tempfile::tempdir().unwrap();
    let (images, _) = write_train_split(dir.path(), 3, &[0, 9, 4], false);
    let set = load_mnist(dir.path(), Split::Train).unwrap();
    assert_eq!(set.labels, [0, 9, 4]);
    assert_eq!(
        set.image(2),
        &read_idx_images(&images).unwrap().0[2 * 784..]
    );
}

#[test]
fn gzip_is_detected_by_content_not_by_name() {
    let bytes = idx_bytes(LABELS_MAGIC, &[2], &[3, 7]);
    let dir = tempfile::tempdir().unwrap();
    let gz_without_suffix = write_file(dir.path(), "labels", &gzip(&bytes));
    let plain_with_suffix = write_file(dir.path(), "labels.gz", &bytes);
    assert_eq!(read_idx_labels(&gz_without_suffix).unwrap(), [3, 7]);
    assert_eq!(read_idx_labels(&plain_with_suffix).unwrap(), [3, 7]);
}

// ---- bad files ----

#[test]
fn missing_files_list_both_places_looked() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_mnist(dir.path(), Split::Test).unwrap_err();
    let plain = dir.path().join("t10k-images-idx3-ubyte");
    let gz = dir.path().join("t10k-images-idx3-ubyte.gz");
    let message = err.to_string();
    let IdxProblem::Missing { tried } = idx_problem(err, &plain) else {
        panic!("expected Missing: {message}");
    };
    for path in [&plain, &gz] {
        assert!(tried.contains(&path.display().to_string()), "{tried}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }

    // Images present, labels missing.
    write_file(dir.path(), "t10k-images-idx3-ubyte.gz", b"unread");
    let err = load_mnist(dir.path(), Split::Test).unwrap_err();
    let labels = dir.path().join("t10k-labels-idx1-ubyte");
    assert!(matches!(
        idx_problem(err, &labels),
        IdxProblem::Missing { .. }
    ));
}

#[test]
fn missing_file_passed_directly_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope");
    let problem = idx_problem(read_idx_labels(&path).unwrap_err(), &path);
    assert_eq!(
        problem,
        IdxProblem::Missing {
            tried: path.display().to_string()
        }
    );
}

#[test]
fn corrupt_gzip_body_is_reported() {
    // A valid gzip member header (deflate, no flags), then bytes that are not deflate data.
    let mut bytes = vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];
    bytes.extend_from_slice(&[0xff; 64]);
    assert!(matches!(images_problem(&bytes), IdxProblem::CorruptGzip(_)));
    assert!(matches!(labels_problem(&bytes), IdxProblem::CorruptGzip(_)));
}

#[test]
fn gzip_cut_off_in_the_middle_is_reported() {
    let pixels: Vec<u8> = (0..4000u32).map(|i| (i * 31 % 251) as u8).collect();
    let gz = gzip(&idx_bytes(IMAGES_MAGIC, &[10, 20, 20], &pixels));
    let problem = images_problem(&gz[..gz.len() / 2]);
    assert!(matches!(problem, IdxProblem::CorruptGzip(_)), "{problem:?}");
}

#[test]
fn gzip_checksum_mismatch_is_reported() {
    let mut gz = gzip(&idx_bytes(LABELS_MAGIC, &[3], &[1, 2, 3]));
    let crc_at = gz.len() - 8; // the trailer is CRC32 then the uncompressed length
    gz[crc_at] ^= 0xff;
    let problem = labels_problem(&gz);
    assert!(matches!(problem, IdxProblem::CorruptGzip(_)), "{problem:?}");
}

#[test]
fn short_header_is_reported() {
    for gz in [false, true] {
        assert_eq!(
            images_problem(&encode(&[], gz)),
            IdxProblem::ShortHeader {
                expected: 16,
                found: 0
            }
        );
        assert_eq!(
            labels_problem(&encode(&[0, 0, 8], gz)),
            IdxProblem::ShortHeader {
                expected: 8,
                found: 3
            }
        );
        // Magic and two of the three dimensions.
        let cut = &idx_bytes(IMAGES_MAGIC, &[1, 28], &[])[..];
        assert_eq!(
            images_problem(&encode(cut, gz)),
            IdxProblem::ShortHeader {
                expected: 16,
                found: 12
            }
        );
    }
}

#[test]
fn wrong_magic_is_reported() {
    for gz in [false, true] {
        for found in [0x1234_5678, 0x0000_0903, 0x0000_0d03] {
            let bytes = encode(&idx_bytes(found, &[1, 1, 1], &[0]), gz);
            let expected = IMAGES_MAGIC;
            assert_eq!(
                images_problem(&bytes),
                IdxProblem::WrongMagic { expected, found }
            );
        }
    }
}

#[test]
fn wrong_rank_is_reported() {
    for gz in [false, true] {
        let labels_file = encode(&idx_bytes(LABELS_MAGIC, &[2], &[1, 2]), gz);
        let IdxProblem::WrongDims { found, .. } = images_problem(&labels_file) else {
            panic!("expected WrongDims");
        };
        assert_eq!(found, [2]);

        let images_file = encode(&idx_bytes(IMAGES_MAGIC, &[1, 1, 2], &[1, 2]), gz);
        let IdxProblem::WrongDims { found, .. } = labels_problem(&images_file) else {
            panic!("expected WrongDims");
        };
        assert_eq!(found, [1, 1, 2]);
    }
}

#[test]
fn zero_dimension_is_reported() {
    for gz in [false, true] {
        for dims in [[0, 28, 28], [1, 0, 28], [1, 28, 0]] {
            let problem = images_problem(&encode(&idx_bytes(IMAGES_MAGIC, &dims, &[]), gz));
            assert!(
                matches!(&problem, IdxProblem::WrongDims { found, .. } if found == &dims),
                "{problem:?}"
            );
        }
        let problem = labels_problem(&encode(&idx_bytes(LABELS_MAGIC, &[0], &[]), gz));
        assert!(
            matches!(problem, IdxProblem::WrongDims { .. }),
            "{problem:?}"
        );
    }
}

#[test]
fn images_other_than_28x28_are_refused_as_mnist_only() {
    let dir = tempfile::tempdir().unwrap();
    let images = write_file(
        dir.path(),
        "train-images-idx3-ubyte",
        &idx_bytes(IMAGES_MAGIC, &[1, 2, 3], &[0; 6]),
    );
    write_file(
        dir.path(),
        "train-labels-idx1-ubyte",
        &idx_bytes(LABELS_MAGIC, &[1], &[5]),
    );
    assert!(read_idx_images(&images).is_ok());
    let problem = idx_problem(load_mnist(dir.path(), Split::Train).unwrap_err(), &images);
    assert!(
        matches!(&problem, IdxProblem::WrongDims { found, .. } if found == &[1, 2, 3]),
        "{problem:?}"
    );
}

#[test]
fn truncated_data_is_reported() {
    for gz in [false, true] {
        let bytes = encode(&idx_bytes(IMAGES_MAGIC, &[2, 2, 3], &[7; 11]), gz);
        assert_eq!(
            images_problem(&bytes),
            IdxProblem::Truncated {
                expected: 12,
                found: 11
            }
        );
        let bytes = encode(&idx_bytes(LABELS_MAGIC, &[5], &[]), gz);
        assert_eq!(
            labels_problem(&bytes),
            IdxProblem::Truncated {
                expected: 5,
                found: 0
            }
        );
    }
}

#[test]
fn trailing_bytes_are_reported() {
    for gz in [false, true] {
        let bytes = encode(&idx_bytes(IMAGES_MAGIC, &[1, 2, 2], &[7; 7]), gz);
        assert_eq!(
            images_problem(&bytes),
            IdxProblem::TrailingBytes {
                expected: 4,
                extra: 3
            }
        );
        let bytes = encode(&idx_bytes(LABELS_MAGIC, &[1], &[1, 2]), gz);
        assert_eq!(
            labels_problem(&bytes),
            IdxProblem::TrailingBytes {
                expected: 1,
                extra: 1
            }
        );
    }
}

#[test]
fn image_and_label_count_mismatch_is_reported() {
    for gz in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = write_train_split(dir.path(), 3, &[1, 2], gz);
        let err = load_mnist(dir.path(), Split::Train).unwrap_err();
        assert_eq!(
            idx_problem(err, &images),
            IdxProblem::CountMismatch {
                images: 3,
                labels: 2,
                labels_file: labels.display().to_string(),
            }
        );
    }
}

#[test]
fn label_above_9_is_reported_with_the_first_index() {
    for gz in [false, true] {
        let bytes = encode(&idx_bytes(LABELS_MAGIC, &[5], &[0, 9, 10, 3, 200]), gz);
        assert_eq!(
            labels_problem(&bytes),
            IdxProblem::LabelOutOfRange {
                index: 2,
                value: 10
            }
        );

        let dir = tempfile::tempdir().unwrap();
        let (_, labels) = write_train_split(dir.path(), 2, &[4, 10], gz);
        let err = load_mnist(dir.path(), Split::Train).unwrap_err();
        assert_eq!(
            idx_problem(err, &labels),
            IdxProblem::LabelOutOfRange {
                index: 1,
                value: 10
            }
        );
    }
}

#[test]
fn huge_header_counts_are_refused_without_allocating_them() {
    const MIB: usize = 1 << 20;
    for gz in [false, true] {
        // Beyond the 1 GiB cap, and overflowing even u64: refused from the header alone.
        for dims in [[u32::MAX, 28, 28], [u32::MAX; 3]] {
            let bytes = encode(&idx_bytes(IMAGES_MAGIC, &dims, &[1, 2, 3]), gz);
            let (problem, largest) = largest_allocation_during(|| images_problem(&bytes));
            assert!(
                matches!(problem, IdxProblem::WrongDims { .. }),
                "{problem:?}"
            );
            assert!(largest < MIB, "allocated {largest} bytes at once");
        }
        // Under the cap (784 MB promised) but the file is tiny: the buffer follows the
        // bytes actually present.
        let bytes = encode(
            &idx_bytes(IMAGES_MAGIC, &[1_000_000, 28, 28], &[1, 2, 3]),
            gz,
        );
        let (problem, largest) = largest_allocation_during(|| images_problem(&bytes));
        let expected = 1_000_000 * 784;
        assert_eq!(problem, IdxProblem::Truncated { expected, found: 3 });
        assert!(largest < MIB, "allocated {largest} bytes at once");

        let bytes = encode(&idx_bytes(LABELS_MAGIC, &[100_000_000], &[1]), gz);
        let (problem, largest) = largest_allocation_during(|| labels_problem(&bytes));
        assert_eq!(
            problem,
            IdxProblem::Truncated {
                expected: 100_000_000,
                found: 1
            }
        );
        assert!(largest < MIB, "allocated {largest} bytes at once");
    }
}

proptest! {
    /// Whatever follows the magic, reading returns (an `Error::Idx` when it fails) and
    /// never panics.
    #[test]
    fn arbitrary_files_never_panic(
        magic in prop_oneof![Just(IMAGES_MAGIC), Just(LABELS_MAGIC), any::<u32>()],
        tail in proptest::collection::vec(any::<u8>(), 0..48),
        gz in any::<bool>(),
    ) {
        let mut bytes = magic.to_be_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "f", &encode(&bytes, gz));
        for err in [read_idx_images(&path).err(), read_idx_labels(&path).err()].into_iter().flatten() {
            prop_assert!(matches!(err, Error::Idx { .. }), "{err:?}");
        }
    }
}

#[test]
fn special_files_are_refused_before_reading() {
    for path in [Path::new("/dev/zero"), Path::new("/dev/null")] {
        for err in [
            read_idx_images(path).map(|_| ()).unwrap_err(),
            read_idx_labels(path).map(|_| ()).unwrap_err(),
        ] {
            assert!(
                matches!(err, Error::NotARegularFile { .. }),
                "{path:?}: {err:?}"
            );
        }
    }
}

#[test]
fn a_plain_file_longer_than_its_header_is_refused_before_its_data_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "padded-idx3-ubyte",
        &idx_bytes(IMAGES_MAGIC, &[1, 28, 28], &[7; 784]),
    );
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(16 + 784 + (1 << 30)).unwrap();
    let (err, largest) = largest_allocation_during(|| read_idx_images(&path).unwrap_err());
    assert_eq!(
        idx_problem(err, &path),
        IdxProblem::TrailingBytes {
            expected: 784,
            extra: 1 << 30
        }
    );
    assert!(largest < 1 << 20, "allocated {largest} bytes at once");
}

#[test]
fn bytes_parse_like_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = idx_bytes(
        IMAGES_MAGIC,
        &[2, 2, 3],
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
    );
    for gz in [false, true] {
        let encoded = encode(&bytes, gz);
        let path = write_file(dir.path(), "f", &encoded);
        assert_eq!(
            gan_gpu::data::parse_idx_images(&path, &encoded).unwrap(),
            read_idx_images(&path).unwrap()
        );
        let labels = encode(&idx_bytes(LABELS_MAGIC, &[3], &[4, 0, 9]), gz);
        assert_eq!(
            gan_gpu::data::parse_idx_labels(&path, &labels).unwrap(),
            [4, 0, 9]
        );
    }
}
