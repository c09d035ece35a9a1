//! A small seedable generator (SplitMix64) whose whole state is one `u64`, so checkpoints can
//! store it and a resumed run draws the same crops and λ as an uninterrupted one.

#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct Rng {
    pub state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`); the modulo bias is irrelevant at these sizes.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// An index of `weights` drawn in proportion to its entry (not all zero). Unit weights
    /// draw exactly what `below(weights.len())` does, so a run that states uniform weights
    /// repeats one that predates them.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut r = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if r < u64::from(w) {
                return i;
            }
            r -= u64::from(w);
        }
        unreachable!("r < total")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_weights_draw_as_the_uniform_draw_does() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            assert_eq!(a.weighted(&[1; 8]), b.below(8) as usize);
        }
    }

    #[test]
    fn weighted_draws_follow_the_weights() {
        let mut rng = Rng::new(3);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[rng.weighted(&[0, 1, 3, 0])] += 1;
        }
        assert_eq!((counts[0], counts[3]), (0, 0), "{counts:?}");
        let share = f64::from(counts[2]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.01, "{counts:?}");
    }
}
