//! `sample --count N --out FILE.idx3-ubyte` streams: the memory it holds does not grow with
//! N. Measured by counting live heap bytes (deterministic, unlike the resident size, which
//! the allocator's caches move by tens of megabytes from run to run). One test in its own
//! binary, so no other test's allocations are counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use gan_gpu::graph::runtime::Runtime;
use gan_gpu::io::checkpoint::{Checkpoint, FORMAT, NamedTensor};
use gan_gpu::model::load::{StoredGenerator, generator_from_checkpoint};
use gan_gpu::model::sample::{sample_stored, write_samples};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(live, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let grow = new_size - layout.size();
            let live = LIVE.fetch_add(grow, Ordering::SeqCst) + grow;
            PEAK.fetch_max(live, Ordering::SeqCst);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::SeqCst);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The most heap bytes live at once while `f` runs, beyond those live before it.
fn peak_during(f: impl FnOnce()) -> usize {
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    f();
    PEAK.load(Ordering::SeqCst) - before
}

/// The seed model's generator (no classes to choose) with freshly initialised weights.
fn random_generator() -> StoredGenerator {
    use rand::SeedableRng;
    let kind = &gan_gpu::model::seed::SEED;
    let (graph, _) = kind.generator_graph(1, 100).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let tensors = graph
        .init_params(&mut rng)
        .into_iter()
        .map(|(id, data)| NamedTensor {
            name: graph.nodes[id].name.clone(),
            shape: graph.nodes[id].shape.clone(),
            data,
        })
        .collect();
    let metadata = [
        ("format", FORMAT),
        ("model", kind.name),
        ("noise_dim", "100"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    generator_from_checkpoint(Path::new("random"), &Checkpoint { tensors, metadata }).unwrap()
}

#[test]
fn sampling_to_idx_holds_the_same_memory_for_any_count() {
    let dir = tempfile::tempdir().unwrap();
    let stored = random_generator();
    let runtime = Runtime::cpu();
    let stream = |count: u64| {
        let out = dir.path().join(format!("{count}.idx3-ubyte"));
        let peak = peak_during(|| {
            write_samples(&runtime, &stored, count, 0, None, 16, &out).unwrap();
        });
        let (_, n, rows, cols) = gan_gpu::data::read_idx_images(&out).unwrap();
        assert_eq!((n as u64, rows, cols), (count, 28, 28));
        peak
    };
    let small = stream(2_000);
    let large = stream(6_000);
    // The chunks are the same whatever the count; only scheduling noise may differ.
    assert!(
        large <= small + (1 << 20),
        "streaming 6,000 digits held {large} bytes at once, 2,000 held {small}"
    );

    // What holding them all takes, for contrast: 4,000 more digits are 12.5 MB of f32.
    let held =
        |count: usize| peak_during(|| drop(sample_stored(&runtime, &stored, count, 0, None)));
    let growth = held(6_000).saturating_sub(held(2_000));
    eprintln!(
        "peak heap beyond the start: streamed 2,000 digits {small} bytes, 6,000 {large}; \
         held in memory, 6,000 take {growth} bytes more than 2,000"
    );
    assert!(
        growth >= 4_000 * 784 * 4,
        "holding them grew by {growth} bytes"
    );
}
