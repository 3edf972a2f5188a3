//! Random streams: one ChaCha8 stream per entity, derived from (master seed, entity name).
//!
//! All streams share a key made from the master seed and differ by ChaCha's 64-bit
//! stream id, which is a stable hash of the entity's name. Adding an entity therefore
//! never shifts the numbers any other entity draws: two designs that share a workload
//! see the same traffic (common random numbers).

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

/// The generator every entity uses. Named, never `StdRng`, whose algorithm may change.
pub type Stream = ChaCha8Rng;

/// FNV-1a, 64 bit: stable across Rust versions and platforms, unlike `DefaultHasher`.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The stream of the entity called `name` under master seed `seed`.
pub fn stream(seed: u64, name: &str) -> Stream {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stable_hash(name.as_bytes()));
    rng
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_are_independent_of_each_other_and_reproducible() {
        let a1: Vec<u64> = (0..4).map(|_| stream(7, "link/a->b").next_u64()).collect();
        assert!(
            a1.windows(2).all(|w| w[0] == w[1]),
            "same name, same numbers"
        );
        let mut a = stream(7, "link/a->b");
        let mut b = stream(7, "link/b->a");
        assert_ne!(a.next_u64(), b.next_u64());
        assert_ne!(stream(8, "x").next_u64(), stream(7, "x").next_u64());
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(stable_hash(b""), 0xcbf29ce484222325);
        assert_eq!(stable_hash(b"a"), 0xaf63dc4c8601ec8c);
    }
}
