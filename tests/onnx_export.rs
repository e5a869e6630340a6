//! `gan-gpu export-onnx` end to end, checked by independent runtimes: the exported model
//! of a freshly trained checkpoint (and of the bundled demo generator) runs in onnxruntime
//! on fixed noise and matches the CPU executor at atol 1e-5 + rtol 1e-4, and
//! `onnx.checker.check_model` accepts it; a generator of awkward geometries (every
//! transposed-convolution padding case, 'same' convolutions with odd padding, every
//! activation) matches too; `scripts/load_in_pytorch.py` rebuilds the generator in PyTorch
//! from the checkpoint and matches the CPU executor. Bad input gets clear errors.
//!
//! The Python side runs in the virtual environment `.ci/run` makes (`.venv`, from
//! `scripts/requirements-onnx.txt` and `scripts/requirements-pytorch.txt`), or the Python
//! named by `GAN_GPU_PYTHON`. Without onnxruntime (or torch) those tests print SKIP,
//! unless `GAN_GPU_REQUIRE_ONNX=1` (or `GAN_GPU_REQUIRE_TORCH=1`) makes that a failure.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{assert_close, run_cli};
use gan_gpu::Error;
use gan_gpu::cpu::{Activation, normal_noise};
use gan_gpu::graph::runtime::Runtime;
use gan_gpu::graph::{Buf, Graph, InputSource, Padding, RandomStreams, lower};
use gan_gpu::io::checkpoint::load_checkpoint;
use gan_gpu::io::checkpoint::{Checkpoint, FORMAT, FORMAT_KEY, NamedTensor, save_checkpoint};
use gan_gpu::model::load::{StoredGenerator, Weights, WeightsUsed, generator_from_checkpoint};

const RAW: WeightsUsed = WeightsUsed {
    wanted: Weights::Raw,
    used: Weights::Raw,
};
use gan_gpu::model::sample::generate_stored;
use gan_gpu::model::{GeneratorNodes, Model, ModelConfig, ModelKind};
use gan_gpu::onnx::proto::ModelProto;
use gan_gpu::onnx::{BatchSize, generator_model, save_model};
use prost::Message;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde_json::Value;

const REQUIRE_ONNX_ENV: &str = "GAN_GPU_REQUIRE_ONNX";
const REQUIRE_TORCH_ENV: &str = "GAN_GPU_REQUIRE_TORCH";
const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

const DEMO_GENERATOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/docs/demo-generator.safetensors"
);

/// The Python that has `modules`, or why there is none.
fn python_with(modules: &str) -> Result<PathBuf, String> {
    let python = std::env::var_os("GAN_GPU_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
        PathBuf::from,
    );
    if !python.exists() {
        return Err(format!(
            "no Python at {} (bash .ci/run makes .venv; or set GAN_GPU_PYTHON)",
            python.display()
        ));
    }
    let probe = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !probe.status.success() {
        return Err(format!(
            "{} cannot import {modules}: {}",
            python.display(),
            String::from_utf8_lossy(&probe.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        ));
    }
    Ok(python)
}

/// The Python for a test, or `None` after printing SKIP (a failure when `require_env`=1).
fn python_or_skip(test: &str, modules: &str, require_env: &str) -> Option<PathBuf> {
    match python_with(modules) {
        Ok(python) => Some(python),
        Err(reason) => {
            let required = std::env::var(require_env).is_ok_and(|v| v == "1");
            assert!(!required, "{require_env}=1 but {reason}");
            eprintln!("SKIP: {test}: {reason}");
            None
        }
    }
}

fn write_f32(path: &Path, values: &[f32]) {
    std::fs::write(path, bytemuck::cast_slice::<f32, u8>(values)).unwrap();
}

/// Class labels as the ONNX model's `label` input takes them: little-endian int64.
fn write_i64(path: &Path, labels: &[u32]) {
    let bytes: Vec<u8> = labels
        .iter()
        .flat_map(|&l| i64::from(l).to_le_bytes())
        .collect();
    std::fs::write(path, bytes).unwrap();
}

/// `count` labels covering every class of `stored`'s model, or `None` if it has none.
fn labels_for(stored: &StoredGenerator, count: usize) -> Option<Vec<u32>> {
    let classes = stored.kind.classes? as u32;
    Some((0..count as u32).map(|b| (b * 7) % classes).collect())
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Runs `model` in onnxruntime on `noise` (`count` rows) and, for a class-conditional
/// generator, `labels`; returns the images and the script's description of the model.
fn run_in_onnxruntime(
    python: &Path,
    model: &Path,
    noise: &[f32],
    count: usize,
    labels: Option<&[u32]>,
) -> (Vec<f32>, Value) {
    let dir = model.parent().unwrap();
    let (z, out) = (dir.join("z.f32"), dir.join("image.f32"));
    write_f32(&z, noise);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx/run_onnx.py");
    let mut command = Command::new(python);
    command
        .arg(script)
        .arg(model)
        .arg(&z)
        .arg(count.to_string())
        .arg(&out);
    if let Some(labels) = labels {
        let path = dir.join("label.i64");
        write_i64(&path, labels);
        command.arg(path);
    }
    let ran = command.output().unwrap();
    assert!(
        ran.status.success(),
        "run_onnx.py on {} failed:\n{}",
        model.display(),
        String::from_utf8_lossy(&ran.stderr)
    );
    let report = serde_json::from_slice(&ran.stdout).unwrap_or_else(|e| {
        panic!(
            "run_onnx.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&ran.stdout)
        )
    });
    (read_f32(&out), report)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A checkpoint of `model` after 3 training iterations on the CPU.
fn train_checkpoint(dir: &Path, model: &str) -> PathBuf {
    train_checkpoint_for(dir, model, 3, 16)
}

/// A checkpoint of `model` after `iterations` at `batch` on the CPU.
fn train_checkpoint_for(dir: &Path, model: &str, iterations: u32, batch: u32) -> PathBuf {
    let run = dir.join(format!("run-{model}"));
    let trained = run_cli(&[
        "train",
        "--model",
        model,
        "--device",
        "cpu",
        "--iterations",
        &iterations.to_string(),
        "--batch-size",
        &batch.to_string(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(trained.status.success(), "{trained:?}");
    run.join("checkpoint.safetensors")
}

fn export_cli(checkpoint: &Path, out: &Path, batch: &str) -> std::process::Output {
    run_cli(&[
        "export-onnx",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--batch",
        batch,
    ])
}

fn stored(checkpoint: &Path) -> StoredGenerator {
    generator_from_checkpoint(checkpoint, &load_checkpoint(checkpoint).unwrap()).unwrap()
}

/// What onnxruntime reports about an exported generator, checked against the checkpoint
/// it came from.
fn check_report(report: &Value, stored: &StoredGenerator, batch: &str) {
    assert_eq!(report["ir_version"], 8, "{report:#}");
    assert_eq!(report["opsets"]["ai.onnx"], 17, "{report:#}");
    assert_eq!(report["producer"][0], "gan-gpu");
    let meta = &report["metadata"];
    assert_eq!(meta["gan_gpu_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(meta["model"], stored.kind.name);
    assert_eq!(meta["noise_dim"], stored.noise_dim.to_string());
    match stored.iteration {
        Some(i) => assert_eq!(meta["iteration"], i.to_string()),
        None => assert!(meta.get("iteration").is_none()),
    }
    let dim = stored.noise_dim.to_string();
    let mut inputs = serde_json::json!({ "z": ["tensor(float)", [batch, dim]] });
    if let Some(classes) = stored.kind.classes {
        inputs["label"] = serde_json::json!(["tensor(int64)", [batch]]);
        assert_eq!(meta["classes"], classes.to_string());
    }
    assert_eq!(report["inputs"], inputs);
    assert_eq!(
        report["outputs"],
        serde_json::json!({ "image": ["tensor(float)", [batch, "28", "28", "1"]] })
    );
    // Every weight and state (BatchNorm's running statistics), in any order.
    let mut names: Vec<&str> = stored.tensors.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    let mut initializers: Vec<&str> = report["initializers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    initializers.sort_unstable();
    assert_eq!(initializers, names);
}

#[test]
fn exported_generator_matches_the_cpu_executor_in_onnxruntime() {
    let test = "exported_generator_matches_the_cpu_executor_in_onnxruntime";
    let Some(python) = python_or_skip(test, "onnx, onnxruntime", REQUIRE_ONNX_ENV) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let seed = train_checkpoint(dir.path(), "seed");
    let cgan = train_checkpoint(dir.path(), "cgan");
    // dcgan's output leaves tanh's flat middle only after some steps.
    let dcgan = train_checkpoint_for(dir.path(), "dcgan", 25, 8);
    // Fresh checkpoints of every model at a dynamic batch (a prime count) and at a fixed
    // one (dcgan's BatchNorm in inference mode: its running statistics, which differ from
    // any batch's own, so a translation that normalised by the batch would not match),
    // and the demo generator (cgan, 50,000 iterations), whose weights are far from
    // their initial values.
    let cases = [
        (seed.clone(), "dynamic", 37),
        (seed, "5", 5),
        (cgan.clone(), "dynamic", 23),
        (cgan, "10", 10),
        (dcgan.clone(), "dynamic", 7),
        (dcgan, "3", 3),
        (PathBuf::from(DEMO_GENERATOR), "dynamic", 64),
    ];
    for (i, (checkpoint, batch, count)) in cases.into_iter().enumerate() {
        let case_dir = dir.path().join(format!("case{i}"));
        std::fs::create_dir_all(&case_dir).unwrap();
        let model = case_dir.join("generator.onnx");
        let start = Instant::now();
        let exported = export_cli(&checkpoint, &model, batch);
        let seconds = start.elapsed().as_secs_f64();
        assert!(exported.status.success(), "{exported:?}");
        let stored = stored(&checkpoint);
        let noise = normal_noise(100 + i as u64, 0, count * stored.noise_dim);
        let labels = stored.kind.classes.map(|c| {
            (0..count as u32)
                .map(|b| (b * 7) % c as u32)
                .collect::<Vec<_>>()
        });
        let (onnx, report) = run_in_onnxruntime(&python, &model, &noise, count, labels.as_deref());
        check_report(
            &report,
            &stored,
            if batch == "dynamic" { "batch" } else { batch },
        );
        let cpu = generate_stored(&Runtime::cpu(), &stored, &noise, labels.as_deref()).unwrap();
        let spread = cpu.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            spread > 0.1,
            "flat CPU digits ({spread}): a useless comparison"
        );
        let what = format!("{} batch {batch}", checkpoint.display());
        assert_close(
            "onnxruntime vs CPU executor",
            &what,
            &onnx,
            &cpu,
            ATOL,
            RTOL,
        );
        eprintln!(
            "{what}: max |onnx - cpu| = {:.2e} over {} values (onnxruntime {}); export {seconds:.2} s \
             (CLI process), {} bytes",
            max_abs_diff(&onnx, &cpu),
            cpu.len(),
            report["onnxruntime"],
            std::fs::metadata(&model).unwrap().len()
        );
    }
}

/// A class-conditional generator with every transposed-convolution padding case ('same'
/// with k - s odd and even, unequal kernels and strides, 'valid' with k < s, which Keras
/// fills with bias-only rows), 'same' convolutions with odd total padding, every
/// activation, reshapes, and every conditioning op: an embedding, a row dot product, and
/// additions in the graph layout, channels-first, and of one of each. Odd sizes
/// everywhere; not an image generator, an exporter check.
fn awkward_generator(
    g: &mut Graph,
    nodes: &str,
    batch: usize,
    noise_dim: usize,
) -> gan_gpu::Result<GeneratorNodes> {
    let z = g.input(
        &format!("{nodes}.z"),
        InputSource::External,
        vec![batch, noise_dim],
    );
    let labels = g.input(
        &format!("{nodes}.labels"),
        InputSource::External,
        vec![batch],
    );
    let image = g.scoped("generator", nodes, |g| {
        let h = g.dense("dense", z, 5 * 3 * 6)?;
        let class = g.embedding("class_embedding", labels, AWKWARD_CLASSES, 5 * 3 * 6)?;
        let h = g.add("conditioned", h, class)?;
        let dot = g.row_dot("dot", h, class)?;
        let from_dot = g.dense("from_dot", dot, 5 * 3 * 6)?;
        let h = g.add("plus_dot", h, from_dot)?;
        let h = g.unflatten("reshape", h, (5, 3, 6))?;
        let h = g.conv_transpose2d("same_k3s2", h, 4, (3, 3), (2, 2), Padding::Same)?;
        let leaky = g.activation("leaky", h, Activation::LeakyRelu(0.2));
        let squashed = g.activation("squashed", h, Activation::Sigmoid);
        let h = g.add("branches", leaky, squashed)?;
        let h = g.conv_transpose2d("same_k4s2", h, 3, (4, 4), (2, 2), Padding::Same)?;
        let h = g.conv_transpose2d("same_k5x4_s2x3", h, 3, (5, 4), (2, 3), Padding::Same)?;
        let h = g.activation("tanh", h, Activation::Tanh);
        let h = g.conv_transpose2d("valid_k2s3", h, 2, (2, 2), (3, 3), Padding::Valid)?;
        // 120x108: even sizes, so the total padding is odd (1 before, 2 after).
        let h = g.conv2d("conv_same_k5s2", h, 3, (5, 5), (2, 2), Padding::Same)?;
        let h = g.activation("relu", h, Activation::Relu);
        let h = g.conv_transpose2d("valid_k3s2", h, 2, (3, 3), (2, 2), Padding::Valid)?;
        let h = g.conv2d("conv_valid_k3_s2x1", h, 2, (3, 3), (2, 1), Padding::Valid)?;
        let h = g.flatten("flatten", h)?;
        let h = g.dense("dense2", h, 7 * 5 * 2)?;
        let h = g.unflatten("reshape2", h, (7, 5, 2))?;
        let h = g.conv_transpose2d("same_k5s2", h, 1, (5, 5), (2, 2), Padding::Same)?;
        let h = g.activation("sigmoid", h, Activation::Sigmoid);
        let offset = g.dense("offset", z, 14 * 10)?;
        let offset = g.unflatten("offset_image", offset, (14, 10, 1))?;
        g.add("mixed_layouts", h, offset)
    })?;
    Ok(GeneratorNodes {
        z,
        labels: Some(labels),
        image,
        params: g.params(),
        states: g.states(),
        batch,
        noise_dim,
    })
}

const AWKWARD_CLASSES: usize = 4;

fn not_trainable(_: &'static ModelKind, _: &ModelConfig) -> gan_gpu::Result<Model> {
    Err(Error::InvalidArgument("a test generator only".into()))
}

static AWKWARD: ModelKind = ModelKind {
    name: "awkward",
    about: "every padding case of the exporter",
    classes: Some(AWKWARD_CLASSES),
    training: not_trainable,
    generator: awkward_generator,
    default_iterations: 0,
};

/// Glorot-uniform kernels (the graph's own initialiser), biases uniform in ±0.5 so that a
/// bias added in the wrong place shows, and embedding tables in ±1.
fn random_weights(graph: &Graph, seed: u64) -> Vec<NamedTensor> {
    let mut rng = StdRng::seed_from_u64(seed);
    graph
        .init_params(&mut rng)
        .into_iter()
        .map(|(id, mut data)| {
            let node = &graph.nodes[id];
            // Keras's ±0.05 tables would make a wrong row a small error; ±1 makes it plain.
            let limit = match node.name.rsplit('.').next() {
                Some("bias") => Some(0.5),
                Some("embeddings") => Some(1.0),
                _ => None,
            };
            if let Some(limit) = limit {
                data.iter_mut()
                    .for_each(|v| *v = rng.random_range(-limit..limit));
            }
            NamedTensor {
                name: node.name.clone(),
                shape: node.shape.clone(),
                data,
            }
        })
        .collect()
}

/// The CPU executor's forward pass of a class-conditional generator graph of any output
/// shape.
fn cpu_forward(stored: &StoredGenerator, noise: &[f32], labels: &[u32]) -> Vec<f32> {
    let count = labels.len();
    let (graph, nodes) = stored.graph(count).unwrap();
    let mut exec = Runtime::cpu()
        .executor(&graph, vec![], RandomStreams { seed: 0 }, None)
        .unwrap();
    stored.write_into(exec.as_mut()).unwrap();
    let plan = exec
        .compile(&lower::forward(&graph, &[nodes.image], &HashSet::new()))
        .unwrap();
    exec.write(Buf::Value(graph.storage(nodes.z)), noise)
        .unwrap();
    let label_bits: Vec<f32> = labels.iter().map(|&l| f32::from_bits(l)).collect();
    let label_node = graph.storage(nodes.labels.unwrap());
    exec.write(Buf::Value(label_node), &label_bits).unwrap();
    exec.run(plan, 0).unwrap();
    exec.read(Buf::Value(graph.storage(nodes.image))).unwrap()
}

#[test]
fn every_padding_case_matches_the_cpu_executor_in_onnxruntime() {
    let test = "every_padding_case_matches_the_cpu_executor_in_onnxruntime";
    let Some(python) = python_or_skip(test, "onnx, onnxruntime", REQUIRE_ONNX_ENV) else {
        return;
    };
    let noise_dim = 11;
    let (graph, _) = AWKWARD.generator_graph(1, noise_dim).unwrap();
    let stored = StoredGenerator {
        kind: &AWKWARD,
        noise_dim,
        tensors: random_weights(&graph, 5),
        weights: RAW,
        iteration: None,
    };
    let dir = tempfile::tempdir().unwrap();
    for (batch, count) in [(BatchSize::Dynamic, 3), (BatchSize::Fixed(2), 2)] {
        let model = dir.path().join(format!("awkward-{batch}.onnx"));
        save_model(&model, &generator_model(&stored, batch).unwrap()).unwrap();
        let noise = normal_noise(9, 0, count * noise_dim);
        let labels: Vec<u32> = (0..count as u32).map(|b| (b * 3 + 1) % 4).collect();
        let (onnx, report) = run_in_onnxruntime(&python, &model, &noise, count, Some(&labels));
        let cpu = cpu_forward(&stored, &noise, &labels);
        assert_eq!(report["image_shape"], serde_json::json!([count, 14, 10, 1]));
        let what = format!("awkward generator, batch {batch}");
        assert_close(
            "onnxruntime vs CPU executor",
            &what,
            &onnx,
            &cpu,
            ATOL,
            RTOL,
        );
        eprintln!(
            "{what}: max |onnx - cpu| = {:.2e}",
            max_abs_diff(&onnx, &cpu)
        );
    }
}

#[test]
fn pytorch_script_rebuilds_the_generator_from_the_checkpoint() {
    let test = "pytorch_script_rebuilds_the_generator_from_the_checkpoint";
    let Some(python) = python_or_skip(test, "torch, safetensors, numpy", REQUIRE_TORCH_ENV) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/load_in_pytorch.py");
    for checkpoint in [
        train_checkpoint(dir.path(), "seed"),
        train_checkpoint(dir.path(), "cgan"),
        // As above: some steps, so that tanh and the running statistics matter.
        train_checkpoint_for(dir.path(), "dcgan", 25, 8),
        PathBuf::from(DEMO_GENERATOR),
    ] {
        let stored = stored(&checkpoint);
        let count = 19;
        let noise = normal_noise(3, 0, count * stored.noise_dim);
        let labels = labels_for(&stored, count);
        let cpu = generate_stored(&Runtime::cpu(), &stored, &noise, labels.as_deref()).unwrap();
        let (z, expected) = (dir.path().join("z.f32"), dir.path().join("expected.f32"));
        write_f32(&z, &noise);
        write_f32(&expected, &cpu);
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .arg(&checkpoint)
            .arg("--noise")
            .arg(&z)
            .arg("--expected")
            .arg(&expected);
        if let Some(labels) = &labels {
            let path = dir.path().join("labels.i64");
            write_i64(&path, labels);
            command.arg("--labels").arg(path);
        }
        let ran = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&ran.stdout);
        assert!(
            ran.status.success(),
            "load_in_pytorch.py on {} failed:\n{stdout}\n{}",
            checkpoint.display(),
            String::from_utf8_lossy(&ran.stderr)
        );
        assert!(stdout.contains("matches"), "{stdout}");
        eprintln!("{}: {}", checkpoint.display(), stdout.trim());
    }
    // An export holds only the moving average: the script says so for --raw, as gan-gpu
    // does, rather than drawing the average under the raw weights' name.
    let refused = Command::new(&python)
        .arg(&script)
        .arg(DEMO_GENERATOR)
        .args(["--raw", "--count", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains("--raw: this file holds only the moving average"),
        "{stderr}"
    );
}

/// The file the CLI writes is the model, decodable, with the checkpoint's weights as
/// initializers byte for byte (no Python needed).
#[test]
fn the_onnx_file_holds_the_checkpoint_weights_under_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = PathBuf::from(DEMO_GENERATOR);
    let out = dir.path().join("g.onnx");
    let exported = export_cli(&checkpoint, &out, "dynamic");
    assert!(exported.status.success(), "{exported:?}");
    let stdout = String::from_utf8_lossy(&exported.stdout);
    // The demo is the default model's full run, exported with its moving average.
    assert!(
        stdout.contains(
            "the cgan generator after 50000 iterations, the moving average of the weights"
        ) && stdout.contains("batch dynamic"),
        "{stdout}"
    );
    let model = ModelProto::decode(std::fs::read(&out).unwrap().as_slice()).unwrap();
    let graph = model.graph.unwrap();
    let stored = stored(&checkpoint);
    assert_eq!(graph.initializer.len(), stored.tensors.len());
    for (init, tensor) in graph.initializer.iter().zip(&stored.tensors) {
        assert_eq!(init.name, tensor.name);
        let dims: Vec<i64> = tensor.shape.iter().map(|&d| d as i64).collect();
        assert_eq!(init.dims, dims, "{}", init.name);
        assert_eq!(
            init.raw_data,
            bytemuck::cast_slice::<f32, u8>(&tensor.data),
            "{}",
            init.name
        );
    }
    let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    let activation_transposes = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Transpose" && !n.input[0].ends_with(".kernel"))
        .count();
    assert_eq!(activation_transposes, 2, "{ops:?}");
    let deconvs: Vec<_> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "ConvTranspose")
        .collect();
    assert_eq!(deconvs.len(), 2, "{ops:?}");
    for deconv in deconvs {
        // Keras 'same' k5 s2: the full result cropped 1 before and 2 after, never
        // PyTorch's symmetric padding=2 with output_padding=1.
        let pads = deconv.attribute.iter().find(|a| a.name == "pads").unwrap();
        assert_eq!(pads.ints, [1, 1, 2, 2], "{}", deconv.name);
    }
}

fn assert_fails(output: &std::process::Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    }
}

#[test]
fn bad_input_gets_clear_errors_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g.onnx");
    let demo = Path::new(DEMO_GENERATOR);

    let missing = dir.path().join("nowhere.safetensors");
    assert_fails(
        &export_cli(&missing, &out, "dynamic"),
        &["nowhere.safetensors"],
    );

    let not_safetensors = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    assert_fails(
        &export_cli(&not_safetensors, &out, "dynamic"),
        &["README.md"],
    );

    // Ours, but not a generator: a discriminator's weights only.
    let mut ckpt = Checkpoint::default();
    ckpt.metadata.insert(FORMAT_KEY.into(), FORMAT.into());
    ckpt.metadata.insert("noise_dim".into(), "100".into());
    ckpt.tensors.push(NamedTensor {
        name: "discriminator.dense.bias".into(),
        shape: vec![1],
        data: vec![0.0],
    });
    let foreign = dir.path().join("foreign.safetensors");
    save_checkpoint(&foreign, &ckpt).unwrap();
    assert_fails(
        &export_cli(&foreign, &out, "dynamic"),
        &[
            "foreign.safetensors",
            "missing tensor generator.dense.kernel",
        ],
    );

    // A model this build does not know.
    let mut unknown = load_checkpoint(demo).unwrap();
    unknown.metadata.insert("model".into(), "stylegan9".into());
    let unknown_path = dir.path().join("unknown.safetensors");
    save_checkpoint(&unknown_path, &unknown).unwrap();
    assert_fails(
        &export_cli(&unknown_path, &out, "dynamic"),
        &["unknown model \"stylegan9\"", "seed"],
    );

    let folder = dir.path().join("a-folder");
    std::fs::create_dir(&folder).unwrap();
    assert_fails(
        &export_cli(demo, &folder, "dynamic"),
        &["is a folder", "generator.onnx"],
    );

    for batch in ["0", "2.5", "many"] {
        let output = export_cli(demo, &out, batch);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "clap's usage error: {output:?}"
        );
        assert!(stderr.contains("dynamic"), "{stderr}");
    }
    assert!(!out.exists(), "a failed export left {}", out.display());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn loss_generator(
    g: &mut Graph,
    nodes: &str,
    batch: usize,
    noise_dim: usize,
) -> gan_gpu::Result<GeneratorNodes> {
    let z = g.input(
        &format!("{nodes}.z"),
        InputSource::External,
        vec![batch, noise_dim],
    );
    let logits = g.scoped("generator", nodes, |g| g.dense("dense", z, 1))?;
    let image = g.bce_with_logits("loss", logits, 1.0)?;
    Ok(GeneratorNodes {
        z,
        labels: None,
        image,
        params: g.params(),
        states: g.states(),
        batch,
        noise_dim,
    })
}

static LOSSY: ModelKind = ModelKind {
    name: "lossy",
    about: "a generator whose output is a loss",
    classes: None,
    training: not_trainable,
    generator: loss_generator,
    default_iterations: 0,
};

#[test]
fn an_op_without_an_onnx_translation_is_an_error_naming_it() {
    let (graph, _) = LOSSY.generator_graph(1, 4).unwrap();
    let stored = StoredGenerator {
        kind: &LOSSY,
        noise_dim: 4,
        tensors: random_weights(&graph, 1),
        weights: RAW,
        iteration: None,
    };
    let err = generator_model(&stored, BatchSize::Dynamic)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("BceWithLogits") && err.contains("loss"),
        "{err}"
    );
}
