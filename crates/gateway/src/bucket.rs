//! Sticky bucketing: a stable key (customer id, visitor cookie, a webhook's order) hashed
//! with MurmurHash3 (x86, 32-bit) into 10,000 buckets. A key is on the new side iff its
//! bucket is below `rollout_percent * 100`, so the same key always lands on the same side for
//! a given rollout, and raising the rollout only ever moves keys from legacy to new.

/// Number of buckets keys are spread over (0.01 % resolution).
pub const BUCKETS: u32 = 10_000;

/// MurmurHash3 x86 32-bit of `data` with `seed`.
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix = |k: u32| k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);

    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        h ^= mix(k);
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let k = tail
            .iter()
            .enumerate()
            .fold(0u32, |k, (i, &b)| k | (u32::from(b) << (8 * i)));
        h ^= mix(k);
    }
    // The length is mixed in modulo 2^32, as the reference implementation does.
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The bucket (0..10,000) of a key.
pub fn bucket(key: &str) -> u32 {
    murmur3_32(key.as_bytes(), 0) % BUCKETS
}

/// Whether `key` is on the new side at `rollout_percent` (values above 100 count as 100).
pub fn is_new_side(key: &str, rollout_percent: u8) -> bool {
    bucket(key) < u32::from(rollout_percent.min(100)) * (BUCKETS / 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        let cases: &[(&[u8], u32, u32)] = &[
            (b"", 0, 0),
            (b"", 1, 0x514e_28b7),
            (b"", 0xffff_ffff, 0x81f1_6f39),
            (b"\0\0\0\0", 0, 0x2362_f9de),
            (b"\xff\xff\xff\xff", 0, 0x7629_3b50),
            (b"!Ce\x87", 0, 0xf55b_516b),
            (b"!Ce\x87", 0x5082_edee, 0x2362_f9de),
            (b"!Ce", 0, 0x7e4a_8634),
            (b"!C", 0, 0xa0f7_b07a),
            (b"!", 0, 0x7266_1cf4),
            (b"a", 0x9747_b28c, 0x7fa0_9ea6),
            (b"aa", 0x9747_b28c, 0x5d21_1726),
            (b"aaa", 0x9747_b28c, 0x283e_0130),
            (b"aaaa", 0x9747_b28c, 0x5a97_808a),
            (b"abcd", 0x9747_b28c, 0xf047_8627),
            (b"Hello, world!", 0x9747_b28c, 0x2488_4cba),
            (
                b"The quick brown fox jumps over the lazy dog",
                0x9747_b28c,
                0x2fa8_26cd,
            ),
        ];
        for &(data, seed, expected) in cases {
            assert_eq!(
                murmur3_32(data, seed),
                expected,
                "murmur3({data:?}, {seed:#x})"
            );
        }
    }

    fn keys() -> impl Iterator<Item = String> {
        (0..10_000).map(|i| format!("customer-{i}"))
    }

    fn share_on_new_side(rollout: u8) -> f64 {
        keys().filter(|k| is_new_side(k, rollout)).count() as f64 / 10_000.0
    }

    #[test]
    fn rollouts_land_within_two_points_of_their_target() {
        for rollout in [0u8, 1, 10, 25, 50, 75, 99, 100] {
            let share = share_on_new_side(rollout);
            let target = f64::from(rollout) / 100.0;
            assert!(
                (share - target).abs() <= 0.02,
                "rollout {rollout}%: {:.2}% of keys on the new side",
                share * 100.0
            );
        }
        assert_eq!(share_on_new_side(0), 0.0);
        assert_eq!(share_on_new_side(100), 1.0);
    }

    #[test]
    fn a_key_always_lands_on_the_same_side() {
        for key in keys().take(1_000) {
            let first = is_new_side(&key, 25);
            assert!((0..10).all(|_| is_new_side(&key, 25) == first));
        }
    }

    #[test]
    fn raising_the_rollout_never_moves_a_key_back_to_legacy() {
        for (from, to) in [(25u8, 50u8), (0, 1), (1, 25), (50, 100), (99, 100)] {
            let moved_back = keys()
                .filter(|k| is_new_side(k, from) && !is_new_side(k, to))
                .count();
            assert_eq!(moved_back, 0, "{from}% → {to}%");
        }
    }

    #[test]
    fn raising_the_rollout_moves_about_the_difference() {
        let moved = keys()
            .filter(|k| !is_new_side(k, 25) && is_new_side(k, 50))
            .count() as f64
            / 10_000.0;
        assert!((moved - 0.25).abs() <= 0.02, "{moved}");
    }
}
