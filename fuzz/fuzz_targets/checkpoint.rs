//! Everything that reads a checkpoint: the safetensors parser, the generator loader behind
//! `sample`, `eval` and the exports, the tensor checks, and what `train --resume` reads.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use gan_gpu::io::checkpoint::{check_tensors, checkpoint_from_bytes};
use gan_gpu::model::Model;
use gan_gpu::model::load::generator_from_checkpoint;
use gan_gpu::train::{TrainConfig, state};
use libfuzzer_sys::fuzz_target;

/// The default model, whose training checkpoints `--resume` reads.
fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let config = TrainConfig::default();
        config
            .model_kind()
            .unwrap()
            .build(&config.model_config())
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    let Ok(ckpt) = checkpoint_from_bytes(path, data) else {
        return;
    };
    for t in &ckpt.tensors {
        let elements = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        assert_eq!(elements, Some(t.data.len()), "{}", t.name);
    }
    if let Ok(stored) = generator_from_checkpoint(path, &ckpt) {
        let (graph, nodes) = stored.graph(1).expect("a loaded generator builds");
        assert_eq!(nodes.params.len(), stored.tensors.len());
        drop(graph);
    }
    let _ = check_tensors(path, &ckpt, &state::expected_tensors(model()));
    let _ = state::check_resumable(model(), path, &ckpt);
    let _ = state::checkpoint_iteration(path, &ckpt);
    if let Ok(config) = state::saved_config(path, &ckpt)
        && config.validate().is_ok()
    {
        let _ = config.check_memory();
    }
});
