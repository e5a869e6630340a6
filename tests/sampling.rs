//! Sampling a chunk at a time draws exactly what drawing everything at once draws: the
//! noise stream from an offset, and the digits of a streamed `sample`.

use std::path::Path;

use gan_gpu::cpu::{normal_noise, normal_noise_at};
use gan_gpu::graph::runtime::Runtime;
use gan_gpu::io::checkpoint::{Checkpoint, FORMAT, NamedTensor};
use gan_gpu::io::images::to_u8_pixels;
use gan_gpu::model::load::{StoredGenerator, generator_from_checkpoint};
use gan_gpu::model::sample::{generate_stored, sample_chunks, sample_stored, write_samples};
use proptest::prelude::*;

proptest! {
    /// Any split of a stream into pieces, at any offset (not only whole Philox blocks of
    /// 4), gives the stream's own values bit for bit.
    #[test]
    fn noise_drawn_in_pieces_is_the_whole_stream(
        seed in any::<u64>(),
        stream in any::<u64>(),
        cuts in proptest::collection::vec(0usize..40, 0..6),
    ) {
        let total: usize = cuts.iter().sum::<usize>() + 3;
        let whole = normal_noise(seed, stream, total);
        let mut pieces = Vec::new();
        let mut start = 0;
        for n in cuts.iter().copied().chain([3]) {
            pieces.extend(normal_noise_at(seed, stream, start as u64, n));
            start += n;
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&pieces), bits(&whole));
    }
}

#[test]
fn noise_far_into_a_stream_matches_its_block() {
    // Element 4b + k of a stream is element k of block b: check one far block against a
    // draw that starts at its beginning.
    let start = 4 * 123_456_789_u64;
    let far = normal_noise_at(7, 3, start + 2, 5);
    let from_block = normal_noise_at(7, 3, start, 7);
    assert_eq!(far, from_block[2..]);
}

fn random_generator(noise_dim: usize) -> StoredGenerator {
    use rand::SeedableRng;
    let kind = &gan_gpu::model::seed::SEED;
    let (graph, _) = kind.generator_graph(1, noise_dim).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let tensors = graph
        .init_params(&mut rng)
        .into_iter()
        .map(|(id, data)| NamedTensor {
            name: graph.nodes[id].name.clone(),
            shape: graph.nodes[id].shape.clone(),
            data,
        })
        .collect();
    let dim = noise_dim.to_string();
    let metadata = [
        ("format", FORMAT),
        ("model", kind.name),
        ("noise_dim", &dim),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    generator_from_checkpoint(Path::new("random"), &Checkpoint { tensors, metadata }).unwrap()
}

#[test]
fn streamed_digits_are_the_digits_drawn_all_at_once() {
    // 2,500 digits: two full chunks of 1,000 and a short one; an odd noise dimension so
    // chunks start inside a Philox block.
    let stored = random_generator(7);
    let runtime = Runtime::cpu();
    let count = 2_500;
    let whole = generate_stored(&runtime, &stored, &normal_noise(11, 0, count * 7), None).unwrap();

    let mut chunks = Vec::new();
    let mut sizes = Vec::new();
    sample_chunks(&runtime, &stored, count as u64, 11, None, &mut |images| {
        sizes.push(images.len() / 784);
        chunks.extend_from_slice(images);
        Ok(())
    })
    .unwrap();
    assert_eq!(sizes, [1000, 1000, 500]);
    assert_eq!(chunks, whole);
    assert_eq!(
        sample_stored(&runtime, &stored, count, 11, None).unwrap(),
        whole
    );

    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("digits.idx3-ubyte");
    write_samples(&runtime, &stored, count as u64, 11, None, 16, &idx).unwrap();
    let (pixels, n, rows, cols) = gan_gpu::data::read_idx_images(&idx).unwrap();
    assert_eq!((n, rows, cols), (count, 28, 28));
    assert_eq!(pixels, to_u8_pixels(&whole));
}
