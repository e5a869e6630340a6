//! Checkpoint files: bit-exact round trips, atomic replacement, and a clear `Error::Checkpoint`
//! naming the file for every way a file can be missing, damaged or not ours.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use gan_gpu::error::Error;
use gan_gpu::io::checkpoint::{
    Checkpoint, FORMAT, NamedTensor, check_tensors, load_checkpoint, save_checkpoint,
};
use proptest::prelude::*;
use safetensors::tensor::{Dtype, TensorView};

fn tensor(name: &str, shape: &[usize]) -> NamedTensor {
    let n = shape.iter().product::<usize>();
    NamedTensor {
        name: name.into(),
        shape: shape.to_vec(),
        // Distinct, non-round values so a swapped or misplaced element shows.
        data: (0..n).map(|i| i as f32 * 0.37 - 1.5).collect(),
    }
}

fn sample() -> Checkpoint {
    let mut special = tensor("generator.special", &[6]);
    special.data = vec![
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        f32::MIN_POSITIVE / 2.0, // subnormal
        f32::MAX,
    ];
    let metadata = BTreeMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("iteration".to_string(), "2000".to_string()),
        (
            "config".to_string(),
            r#"{"batch":64,"lr":0.0002}"#.to_string(),
        ),
    ]);
    Checkpoint {
        // Deliberately not in name order: loading returns name order.
        tensors: vec![
            tensor("generator.dense.kernel", &[100, 12]),
            tensor("adam_m.generator.dense.kernel", &[100, 12]),
            special,
            tensor("discriminator.bias", &[1]),
            tensor("scalar", &[]),
            tensor("empty", &[0, 3]),
        ],
        metadata,
    }
}

fn sorted(mut ckpt: Checkpoint) -> Checkpoint {
    ckpt.tensors.sort_by(|a, b| a.name.cmp(&b.name));
    ckpt
}

/// Compares tensors bit for bit, so NaN, -0.0 and subnormals count.
fn assert_same(a: &Checkpoint, b: &Checkpoint) {
    assert_eq!(a.metadata, b.metadata);
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (x, y) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!(x.name, y.name);
        assert_eq!(x.shape, y.shape, "shape of {}", x.name);
        let bits = |t: &NamedTensor| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(x), bits(y), "data of {}", x.name);
    }
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Asserts `err` is `Error::Checkpoint` for `path` and its message contains each of `parts`.
fn assert_checkpoint_error(err: Error, path: &Path, parts: &[&str]) {
    let message = err.to_string();
    match &err {
        Error::Checkpoint { path: p, .. } => assert_eq!(p, path, "{message}"),
        other => panic!("expected Error::Checkpoint, got {other:?}"),
    }
    assert!(message.contains(&path.display().to_string()), "{message}");
    for part in parts {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
}

/// Writes a safetensors file directly, bypassing our writer's checks.
fn write_raw(path: &Path, tensors: Vec<(&str, TensorView<'_>)>, metadata: &[(&str, &str)]) {
    let metadata: HashMap<String, String> = metadata
        .iter()
        .map(|&(k, v)| (k.to_string(), v.to_string()))
        .collect();
    fs::write(
        path,
        safetensors::serialize(tensors, Some(metadata)).unwrap(),
    )
    .unwrap();
}

#[test]
fn round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    let ckpt = sample();
    save_checkpoint(&path, &ckpt).unwrap();
    let loaded = load_checkpoint(&path).unwrap();
    assert_same(&loaded, &sorted(ckpt));
    assert_eq!(loaded.metadata_value(&path, "iteration").unwrap(), "2000");
    assert_eq!(loaded.tensor("scalar").unwrap().data.len(), 1);
    assert!(loaded.tensor("nonexistent").is_none());
}

#[test]
fn missing_metadata_key_names_key_and_file() {
    let path = Path::new("runs/a/ckpt.safetensors");
    let err = sample().metadata_value(path, "seed").unwrap_err();
    assert_checkpoint_error(err, path, &["\"seed\""]);
}

#[test]
fn save_creates_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/checkpoints/ckpt.safetensors");
    save_checkpoint(&path, &sample()).unwrap();
    assert_same(&load_checkpoint(&path).unwrap(), &sorted(sample()));
}

#[test]
fn save_replaces_existing_checkpoint_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    save_checkpoint(&path, &sample()).unwrap();
    let mut second = sample();
    second.metadata.insert("iteration".into(), "4000".into());
    second.tensors.truncate(2);
    save_checkpoint(&path, &second).unwrap();
    assert_same(&load_checkpoint(&path).unwrap(), &sorted(second));
    assert_eq!(dir_names(dir.path()), ["ckpt.safetensors"]);
}

#[test]
fn invalid_checkpoint_is_refused_before_touching_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    save_checkpoint(&path, &sample()).unwrap();
    let before = fs::read(&path).unwrap();

    let mut wrong_len = sample();
    wrong_len.tensors[0].data.pop();
    let err = save_checkpoint(&path, &wrong_len).unwrap_err();
    assert_checkpoint_error(
        err,
        &path,
        &["generator.dense.kernel", "[100, 12]", "1199 values"],
    );

    let mut duplicate = sample();
    duplicate.tensors.push(tensor("scalar", &[]));
    let err = save_checkpoint(&path, &duplicate).unwrap_err();
    assert_checkpoint_error(err, &path, &["\"scalar\" appears twice"]);

    let mut reserved = sample();
    reserved.tensors.push(tensor("__metadata__", &[1]));
    let err = save_checkpoint(&path, &reserved).unwrap_err();
    assert_checkpoint_error(err, &path, &["reserved"]);

    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(dir_names(dir.path()), ["ckpt.safetensors"]);
}

#[test]
fn a_directory_at_the_path_is_refused_and_left_intact() {
    // Refused before anything is written: no temporary file, the folder untouched.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("keep"), b"x").unwrap();
    let err = save_checkpoint(&path, &sample()).unwrap_err();
    assert!(matches!(err, Error::NotARegularFile { .. }), "{err:?}");
    assert_eq!(dir_names(dir.path()), ["ckpt.safetensors"]);
    assert_eq!(dir_names(&path), ["keep"]);
}

#[test]
fn parent_that_is_a_file_is_an_error_and_leaves_it_intact() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("runs");
    fs::write(&blocker, b"not a directory").unwrap();
    let err = save_checkpoint(&blocker.join("ckpt.safetensors"), &sample()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert_eq!(fs::read(&blocker).unwrap(), b"not a directory");
    assert_eq!(dir_names(dir.path()), ["runs"]);
}

#[test]
fn missing_file_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.safetensors");
    let err = load_checkpoint(&path).unwrap_err();
    assert_checkpoint_error(err, &path, &["not found", "looked for"]);
}

#[test]
fn truncated_file_is_a_clear_error_at_every_length() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.safetensors");
    save_checkpoint(&good, &sample()).unwrap();
    let bytes = fs::read(&good).unwrap();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;

    let path = dir.path().join("cut.safetensors");
    // Inside the length prefix, inside the header, at its end, inside the data, one short.
    let mut lengths = vec![0, 1, 7, 8, 9, header_end / 2, header_end - 1, header_end];
    lengths.extend([
        header_end + 1,
        header_end + 4,
        (header_end + bytes.len()) / 2,
    ]);
    lengths.push(bytes.len() - 1);
    for len in lengths {
        fs::write(&path, &bytes[..len]).unwrap();
        let err = load_checkpoint(&path).unwrap_err();
        assert_checkpoint_error(err, &path, &["not a valid safetensors file"]);
    }
    // And trailing garbage is refused as well.
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 4]);
    fs::write(&path, &longer).unwrap();
    let err = load_checkpoint(&path).unwrap_err();
    assert_checkpoint_error(err, &path, &["not a valid safetensors file"]);
}

#[test]
fn garbage_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.safetensors");
    // A header of `header` (length prefix and all), then `data_len` zero bytes.
    let framed = |header: &[u8], data_len: usize| {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.resize(bytes.len() + data_len, 0);
        bytes
    };
    let cases = [
        b"PNG\x89 this is not a checkpoint at all".to_vec(),
        // A header length far beyond the file.
        vec![0xff; 64],
        // A plausible length, then bytes that are neither UTF-8 nor JSON.
        framed(&[0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef], 0),
        framed(b"[1, 2, 3]", 0),
        // Valid JSON, but offsets that point past the data.
        framed(
            br#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            8,
        ),
        // Offsets that disagree with the shape.
        framed(
            br#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#,
            16,
        ),
        // An unknown dtype.
        framed(
            br#"{"w":{"dtype":"F99","shape":[4],"data_offsets":[0,16]}}"#,
            16,
        ),
    ];
    for bytes in cases {
        fs::write(&path, &bytes).unwrap();
        let err = load_checkpoint(&path).unwrap_err();
        assert_checkpoint_error(err, &path, &["not a valid safetensors file"]);
    }
}

#[test]
fn wrong_or_missing_format_is_not_a_gan_gpu_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.safetensors");
    let data = [0u8; 8];
    let view = || TensorView::new(Dtype::F32, vec![2], &data).unwrap();

    write_raw(&path, vec![("w", view())], &[("format", "pt")]);
    let err = load_checkpoint(&path).unwrap_err();
    assert_checkpoint_error(err, &path, &["not a gan-gpu checkpoint", "\"pt\"", FORMAT]);

    write_raw(&path, vec![("w", view())], &[("iteration", "5")]);
    let err = load_checkpoint(&path).unwrap_err();
    assert_checkpoint_error(err, &path, &["not a gan-gpu checkpoint", "\"format\""]);

    // No metadata section at all.
    fs::write(
        &path,
        safetensors::serialize(vec![("w", view())], None).unwrap(),
    )
    .unwrap();
    let err = load_checkpoint(&path).unwrap_err();
    assert_checkpoint_error(err, &path, &["not a gan-gpu checkpoint"]);
}

#[test]
fn non_f32_tensor_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.safetensors");
    let floats = [0u8; 16];
    let halves = [0u8; 6];
    let ints = [0u8; 8];
    let f32_view = TensorView::new(Dtype::F32, vec![4], &floats).unwrap();

    let f16_view = TensorView::new(Dtype::F16, vec![3], &halves).unwrap();
    write_raw(
        &path,
        vec![("ok", f32_view.clone()), ("half", f16_view)],
        &[("format", FORMAT)],
    );
    let err = load_checkpoint(&path).unwrap_err();
    assert_checkpoint_error(err, &path, &["\"half\"", "F16", "only F32"]);

    let i32_view = TensorView::new(Dtype::I32, vec![2], &ints).unwrap();
    write_raw(
        &path,
        vec![("ok", f32_view), ("step", i32_view)],
        &[("format", FORMAT)],
    );
    let err = load_checkpoint(&path).unwrap_err();
    assert_checkpoint_error(err, &path, &["\"step\"", "I32", "only F32"]);
}

#[test]
fn file_written_by_safetensors_directly_loads() {
    // What a PyTorch user's `save_file(..., metadata={"format": ...})` produces.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torch.safetensors");
    let values = [1.5f32, -2.25, 3.0];
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, vec![3, 1], &bytes).unwrap();
    write_raw(&path, vec![("w", view)], &[("format", FORMAT)]);
    let loaded = load_checkpoint(&path).unwrap();
    assert_eq!(
        loaded.tensors,
        [NamedTensor {
            name: "w".into(),
            shape: vec![3, 1],
            data: values.to_vec()
        }]
    );
}

fn expected(entries: &[(&str, &[usize])]) -> Vec<(String, Vec<usize>)> {
    entries
        .iter()
        .map(|&(n, s)| (n.to_string(), s.to_vec()))
        .collect()
}

#[test]
fn check_tensors_accepts_exact_match_in_any_order() {
    let path = Path::new("ckpt.safetensors");
    let ckpt = Checkpoint {
        tensors: vec![tensor("b", &[2, 3]), tensor("a", &[4])],
        metadata: BTreeMap::new(),
    };
    check_tensors(path, &ckpt, &expected(&[("a", &[4]), ("b", &[2, 3])])).unwrap();
}

#[test]
fn check_tensors_names_missing_extra_and_mismatched_tensors() {
    let path = Path::new("runs/x/ckpt.safetensors");
    let ckpt = Checkpoint {
        tensors: vec![tensor("g.kernel", &[100, 128]), tensor("g.bias", &[128])],
        metadata: BTreeMap::new(),
    };

    let missing = expected(&[
        ("g.kernel", &[100, 128]),
        ("g.bias", &[128]),
        ("d.bias", &[1]),
    ]);
    let err = check_tensors(path, &ckpt, &missing).unwrap_err();
    assert_checkpoint_error(err, path, &["missing tensor \"d.bias\"", "[1]"]);

    let extra = expected(&[("g.kernel", &[100, 128])]);
    let err = check_tensors(path, &ckpt, &extra).unwrap_err();
    assert_checkpoint_error(err, path, &["unexpected tensor \"g.bias\"", "[128]"]);

    let wrong = expected(&[("g.kernel", &[64, 128]), ("g.bias", &[128])]);
    let err = check_tensors(path, &ckpt, &wrong).unwrap_err();
    assert_checkpoint_error(
        err,
        path,
        &["\"g.kernel\" has shape [100, 128], expected [64, 128]"],
    );
}

fn arb_checkpoint() -> impl Strategy<Value = Checkpoint> {
    let shape = prop::collection::vec(0usize..5, 0..4);
    let tensor = shape.prop_flat_map(|shape| {
        let n = shape.iter().product::<usize>();
        // Any bit pattern: NaN payloads and subnormals must survive too.
        (
            Just(shape),
            prop::collection::vec(any::<u32>().prop_map(f32::from_bits), n),
        )
    });
    let tensors = prop::collection::btree_map("[a-z][a-z_.]{0,11}", tensor, 0..6);
    let metadata = prop::collection::btree_map("[a-z]{1,8}", ".{0,20}", 0..4);
    (tensors, metadata).prop_map(|(tensors, mut metadata)| {
        metadata.insert("format".into(), FORMAT.into());
        Checkpoint {
            tensors: tensors
                .into_iter()
                .map(|(name, (shape, data))| NamedTensor { name, shape, data })
                .collect(),
            metadata,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_checkpoints_round_trip(ckpt in arb_checkpoint()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ckpt.safetensors");
        save_checkpoint(&path, &ckpt).unwrap();
        // The generated map is already in name order, which is what load returns.
        assert_same(&load_checkpoint(&path).unwrap(), &ckpt);
    }
}

#[test]
fn special_files_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.safetensors");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // Neither blocks (a FIFO without a writer) nor reads forever (/dev/zero).
    for path in [fifo.as_path(), Path::new("/dev/zero"), dir.path()] {
        let err = load_checkpoint(path).unwrap_err();
        assert!(
            matches!(err, Error::NotARegularFile { .. }),
            "{path:?}: {err:?}"
        );
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}

#[test]
fn a_file_longer_than_its_header_is_refused_from_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("padded.safetensors");
    save_checkpoint(&path, &sample()).unwrap();
    let len = fs::metadata(&path).unwrap().len();
    // A sparse terabyte: reading it would take hours, checking its length takes nothing.
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len + (1 << 40))
        .unwrap();
    let err = load_checkpoint(&path).unwrap_err();
    assert_checkpoint_error(
        err,
        &path,
        &[
            "header accounts for",
            &format!("{} bytes long", len + (1 << 40)),
        ],
    );
}

#[test]
fn bytes_parse_like_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    save_checkpoint(&path, &sample()).unwrap();
    let bytes = fs::read(&path).unwrap();
    let from_bytes = gan_gpu::io::checkpoint::checkpoint_from_bytes(&path, &bytes).unwrap();
    assert_same(&from_bytes, &load_checkpoint(&path).unwrap());
    let err = gan_gpu::io::checkpoint::checkpoint_from_bytes(&path, &bytes[..100]).unwrap_err();
    assert_checkpoint_error(err, &path, &["not a valid safetensors file"]);
}
