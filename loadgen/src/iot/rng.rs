//! A small deterministic random number generator (SplitMix64): the same seed gives the same
//! sequence on every platform, with integer arithmetic only, so generated payloads are
//! byte-for-byte reproducible.

/// SplitMix64's output function: a bijective mix of 64 bits.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One independent stream of random numbers.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// The stream `stream` of item `index` under `seed` (streams never share state).
    pub(crate) fn new(seed: u64, index: u64, stream: u64) -> Rng {
        Rng(mix(
            mix(seed ^ mix(index.wrapping_add(1))) ^ stream.wrapping_mul(0x9E37_79B9)
        ))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n` > 0; multiply-high, bias below 2^-32 for our small `n`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = hi.abs_diff(lo) + 1;
        lo.wrapping_add(self.below(span) as i64)
    }

    /// True with probability `p` (a [`Chance`]).
    /// Always takes one draw, so a stream stays aligned whatever `p` is.
    pub(crate) fn chance(&mut self, p: Chance) -> bool {
        let x = self.next_u64();
        match p.0 {
            0 => false,
            u64::MAX => true,
            t => x < t,
        }
    }

    /// One element of `items` (not empty).
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A probability as a threshold on a 64-bit draw, converted from `f64` once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chance(u64);

impl Chance {
    /// `p` clamped to 0..=1 (NaN counts as 0).
    pub(crate) fn new(p: f64) -> Chance {
        if p.is_nan() || p <= 0.0 {
            Chance(0)
        } else if p >= 1.0 {
            Chance(u64::MAX)
        } else {
            Chance((p * 18_446_744_073_709_551_616.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_streams_differ() {
        let a: Vec<u64> = (0..8)
            .scan(Rng::new(7, 0, 0), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..8)
            .scan(Rng::new(7, 0, 0), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..8)
            .scan(Rng::new(7, 0, 1), |r, _| Some(r.next_u64()))
            .collect();
        let d: Vec<u64> = (0..8)
            .scan(Rng::new(7, 1, 0), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn ranges_stay_inside_and_reach_both_ends() {
        let mut r = Rng::new(1, 2, 3);
        let mut seen = [false; 21];
        for _ in 0..10_000 {
            let v = r.range(-10, 10);
            assert!((-10..=10).contains(&v));
            seen[(v + 10) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn chance_extremes() {
        let mut r = Rng::new(1, 0, 0);
        assert!((0..1000).all(|_| !r.chance(Chance::new(0.0))));
        assert!((0..1000).all(|_| r.chance(Chance::new(1.0))));
        let hits = (0..100_000).filter(|_| r.chance(Chance::new(0.25))).count();
        assert!((23_000..27_000).contains(&hits), "{hits}");
    }
}
