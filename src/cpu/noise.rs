//! Counter-based random numbers (Philox4x32-10), so CPU and GPU draw the same stream without
//! sharing state: element i depends only on (seed, stream, i).
//!
//! Everything up to the uniforms is integer arithmetic and bit-exact on both sides. The normals
//! go through ln, sqrt, cos and sin, whose last bits depend on the platform's implementation, so
//! CPU and GPU normals agree to a few ulps, not bit for bit.

const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;
/// 2^-24: a 24-bit integer times this is an exact f32 in [0, 1).
const INV_2_24: f32 = 1.0 / 16_777_216.0;

/// (high, low) 32 bits of the 64-bit product a·b, as the WGSL kernels compute it: with
/// 16-bit limbs and u32 arithmetic only, since WGSL has no 64-bit integers. The tests check
/// this algorithm against the u64 product; the CPU's own Philox multiplies in u64
/// (one 64-bit multiply per product), which gives the same words about three times faster.
pub fn mulhilo32(a: u32, b: u32) -> (u32, u32) {
    let (a_lo, a_hi) = (a & 0xffff, a >> 16);
    let (b_lo, b_hi) = (b & 0xffff, b >> 16);
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    // Bits 16..47 of the product, less than 3·2^16 so no overflow.
    let mid = (ll >> 16) + (lh & 0xffff) + (hl & 0xffff);
    let lo = (mid << 16) | (ll & 0xffff);
    let hi = hh + (lh >> 16) + (hl >> 16) + (mid >> 16);
    (hi, lo)
}

/// (high, low) 32 bits of a·b, through one 64-bit multiply.
fn mul_wide(a: u32, b: u32) -> (u32, u32) {
    let product = u64::from(a) * u64::from(b);
    ((product >> 32) as u32, product as u32)
}

/// The Random123 Philox4x32 bijection with 10 rounds.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(PHILOX_W0), k[1].wrapping_add(PHILOX_W1)];
        }
        let (hi0, lo0) = mul_wide(PHILOX_M0, c[0]);
        let (hi1, lo1) = mul_wide(PHILOX_M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// Block `block` of (seed, stream): counter (block lo, block hi, stream lo, stream hi),
/// key (seed lo, seed hi).
pub(crate) fn block(seed: u64, stream: u64, block: u64) -> [u32; 4] {
    philox4x32_10(
        [
            block as u32,
            (block >> 32) as u32,
            stream as u32,
            (stream >> 32) as u32,
        ],
        [seed as u32, (seed >> 32) as u32],
    )
}

/// The first n raw Philox words of (seed, stream): word i is word i % 4 of block i / 4.
pub fn uniform_u32(seed: u64, stream: u64, n: usize) -> Vec<u32> {
    (0..n.div_ceil(4) as u64)
        .flat_map(|b| block(seed, stream, b))
        .take(n)
        .collect()
}

/// n standard normal samples of (seed, stream) by Box-Muller. Block b = i/4 gives elements
/// 4b, 4b+1 from words (r0, r1) and 4b+2, 4b+3 from (r2, r3): with u1 = ((ra >> 8) + 1)·2^-24
/// in (0, 1] (so ln u1 is finite) and u2 = (rb >> 8)·2^-24 in [0, 1), the pair is
/// sqrt(-2 ln u1)·(cos 2πu2, sin 2πu2).
pub fn normal_noise(seed: u64, stream: u64, n: usize) -> Vec<f32> {
    let mut out = vec![0.0; n];
    normal_noise_into(seed, stream, &mut out);
    out
}

/// [`normal_noise`] of n = `out.len()` into `out`, threaded (element i depends only on i).
pub fn normal_noise_into(seed: u64, stream: u64, out: &mut [f32]) {
    // Chunks start at multiples of 4, so each begins on a block.
    const { assert!(super::par::CHUNK.is_multiple_of(4)) };
    super::par::chunks_mut(out, |at, out| {
        for (i, quad) in out.chunks_mut(4).enumerate() {
            let [r0, r1, r2, r3] = block(seed, stream, ((at / 4) + i) as u64);
            let [z0, z1] = box_muller(r0, r1);
            let [z2, z3] = box_muller(r2, r3);
            for (o, z) in quad.iter_mut().zip([z0, z1, z2, z3]) {
                *o = z;
            }
        }
    });
}

/// Elements `start..start + n` of the stream [`normal_noise`] draws, so a long stream can
/// be drawn a chunk at a time with the very values of drawing it whole.
pub fn normal_noise_at(seed: u64, stream: u64, start: u64, n: usize) -> Vec<f32> {
    let first_block = start / 4;
    let skip = (start % 4) as usize;
    let blocks = (skip + n).div_ceil(4) as u64;
    (first_block..first_block + blocks)
        .flat_map(|b| {
            let [r0, r1, r2, r3] = block(seed, stream, b);
            let [z0, z1] = box_muller(r0, r1);
            let [z2, z3] = box_muller(r2, r3);
            [z0, z1, z2, z3]
        })
        .skip(skip)
        .take(n)
        .collect()
}

fn box_muller(ra: u32, rb: u32) -> [f32; 2] {
    let u1 = ((ra >> 8) as f32 + 1.0) * INV_2_24;
    let u2 = (rb >> 8) as f32 * INV_2_24;
    let radius = (-2.0 * u1.ln()).sqrt();
    let theta = std::f32::consts::TAU * u2;
    [radius * theta.cos(), radius * theta.sin()]
}

/// A uniform index in [0, bound) from a random word: floor(word·bound / 2^32) (Lemire's
/// multiply-shift, no division; the GPU takes the high word of `mulhilo32`). Bias is at most
/// bound/2^32, negligible for dataset-sized bounds.
pub fn uniform_index(word: u32, bound: u32) -> u32 {
    ((u64::from(word) * u64::from(bound)) >> 32) as u32
}
