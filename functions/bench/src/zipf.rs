//! Zipf(s) over ranks `0..n`: rank `k` (0-based) is drawn with probability proportional to
//! `1 / (k + 1)^s`. Sampling inverts the cumulative table with a binary search, so it is
//! exact for any `s` and costs `O(log n)`.

/// A Zipf sampler.
#[derive(Clone, Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
    s: f64,
}

impl Zipf {
    /// A sampler over `n` ranks (at least 1) with exponent `s`.
    pub fn new(n: usize, s: f64) -> Self {
        let n = n.max(1);
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for k in 1..=n {
            total += (k as f64).powf(-s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Self { cdf, s }
    }

    /// Number of ranks.
    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    /// Always false: a sampler has at least one rank.
    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }

    /// The probability of rank `k`.
    pub fn p(&self, k: usize) -> f64 {
        let below = if k == 0 { 0.0 } else { self.cdf[k - 1] };
        self.cdf[k] - below
    }

    /// One rank.
    pub fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let u = rng.f64();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }

    /// The expected number of distinct ranks among `draws` samples: a lower bound on the
    /// store reads of a cache that starts empty, since each key's first resolve must read
    /// the store.
    pub fn expected_distinct(&self, draws: u64) -> f64 {
        (0..self.cdf.len())
            .map(|k| 1.0 - (1.0 - self.p(k)).powf(draws as f64))
            .sum()
    }

    /// The exponent.
    pub fn exponent(&self) -> f64 {
        self.s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_frequencies_follow_the_power_law() {
        let z = Zipf::new(1000, 1.1);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = vec![0u32; 1000];
        let draws = 200_000;
        for _ in 0..draws {
            counts[z.sample(&mut rng)] += 1;
        }
        for k in [0usize, 1, 9] {
            let seen = f64::from(counts[k]) / f64::from(draws);
            assert!(
                (seen - z.p(k)).abs() < 0.01,
                "rank {k}: {seen} vs {}",
                z.p(k)
            );
        }
        // p(1)/p(2) = 2^1.1
        assert!((z.p(0) / z.p(1) - 2f64.powf(1.1)).abs() < 1e-9);
    }

    #[test]
    fn expected_distinct_is_bounded_by_draws_and_ranks() {
        let z = Zipf::new(100, 1.1);
        assert!((z.expected_distinct(1) - 1.0).abs() < 1e-9);
        let d = z.expected_distinct(1_000_000);
        assert!(d > 99.9 && d <= 100.0);
    }
}
