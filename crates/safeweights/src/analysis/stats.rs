//! Streaming summary statistics with numerically stable merges.
//!
//! Each chunk of values is summarised with a two-pass mean and sum of
//! squared deviations, and chunks are combined with Chan et al.'s parallel
//! update, so a tensor of any size is summarised in constant memory, and
//! chunks summarised on different threads merge to the same result as one
//! sequential pass (up to rounding).

use crate::analysis::decode::{decode_into, granule_bytes};
use crate::format::Dtype;

/// Statistics of a set of values. `min`, `max`, `mean` and `std` are over
/// the finite values only; NaN and infinities are counted separately.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of values, finite or not.
    pub count: u64,
    /// Number of NaN values.
    pub nan: u64,
    /// Number of `+inf` values.
    pub pos_inf: u64,
    /// Number of `-inf` values.
    pub neg_inf: u64,
    /// Number of values equal to zero (either sign).
    pub zeros: u64,
    finite: u64,
    min: f64,
    max: f64,
    mean: f64,
    m2: f64,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            count: 0,
            nan: 0,
            pos_inf: 0,
            neg_inf: 0,
            zeros: 0,
            finite: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            mean: 0.0,
            m2: 0.0,
        }
    }
}

impl Summary {
    /// Summarises a slice of values.
    pub fn of(values: &[f64]) -> Summary {
        Self::of_all_finite(values).unwrap_or_else(|| Self::of_any(values))
    }

    /// [`Summary::of`] of values that are all finite (nearly every chunk
    /// of a real tensor), or `None` when one is not. Branch-free over
    /// [`LANES`] independent accumulators, so the compiler vectorises both
    /// passes; a scalar loop is one dependent addition per value, and
    /// `stats` of a cold file ran slower than the disk reads it.
    fn of_all_finite(values: &[f64]) -> Option<Summary> {
        let mut sum = [0.0f64; LANES];
        let mut min = [f64::INFINITY; LANES];
        let mut max = [f64::NEG_INFINITY; LANES];
        let mut zeros = [0u64; LANES];
        // `v * 0.0` is 0 for a finite value and NaN for NaN or infinity.
        let mut poison = [0.0f64; LANES];
        let lanes = values.chunks_exact(LANES);
        let rest = lanes.remainder();
        let mut add = |l: usize, v: f64| {
            sum[l] += v;
            min[l] = min[l].min(v);
            max[l] = max[l].max(v);
            zeros[l] += u64::from(v == 0.0);
            poison[l] += v * 0.0;
        };
        for chunk in lanes {
            for (l, &v) in chunk.iter().enumerate() {
                add(l, v);
            }
        }
        for (l, &v) in rest.iter().enumerate() {
            add(l, v);
        }
        if poison.iter().any(|p| p.is_nan()) {
            return None;
        }
        let count = values.len() as u64;
        let mut chunk = Summary {
            count,
            finite: count,
            zeros: zeros.iter().sum(),
            min: min.iter().copied().fold(f64::INFINITY, f64::min),
            max: max.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ..Summary::default()
        };
        if count > 0 {
            chunk.mean = sum.iter().sum::<f64>() / count as f64;
            let mut m2 = [0.0f64; LANES];
            let lanes = values.chunks_exact(LANES);
            for (l, &v) in lanes.remainder().iter().enumerate() {
                m2[l] += (v - chunk.mean) * (v - chunk.mean);
            }
            for chunk_values in lanes {
                for (l, &v) in chunk_values.iter().enumerate() {
                    m2[l] += (v - chunk.mean) * (v - chunk.mean);
                }
            }
            chunk.m2 = m2.iter().sum();
        }
        Some(chunk)
    }

    /// [`Summary::of`] of values that may be NaN or infinite.
    fn of_any(values: &[f64]) -> Summary {
        let mut chunk = Summary {
            count: values.len() as u64,
            ..Summary::default()
        };
        let mut sum = 0.0;
        for &v in values {
            if v.is_finite() {
                chunk.finite += 1;
                sum += v;
                chunk.min = chunk.min.min(v);
                chunk.max = chunk.max.max(v);
                chunk.zeros += u64::from(v == 0.0);
            } else if v.is_nan() {
                chunk.nan += 1;
            } else if v > 0.0 {
                chunk.pos_inf += 1;
            } else {
                chunk.neg_inf += 1;
            }
        }
        if chunk.finite > 0 {
            chunk.mean = sum / chunk.finite as f64;
            chunk.m2 = values
                .iter()
                .filter(|v| v.is_finite())
                .map(|&v| (v - chunk.mean) * (v - chunk.mean))
                .sum();
        }
        chunk
    }

    /// Summarises raw tensor bytes of `dtype`, decoding `chunk_values`
    /// values at a time into `scratch` (reused to avoid allocations).
    pub fn of_bytes(dtype: Dtype, bytes: &[u8], scratch: &mut Vec<f64>) -> Summary {
        let mut total = Summary::default();
        let step = chunk_bytes(dtype);
        for piece in bytes.chunks(step) {
            decode_into(dtype, piece, scratch);
            total.merge(&Summary::of(scratch));
        }
        total
    }

    /// Adds the values summarised by `other` (Chan et al.'s merge).
    pub fn merge(&mut self, other: &Summary) {
        if other.finite > 0 {
            if self.finite == 0 {
                self.mean = other.mean;
                self.m2 = other.m2;
            } else {
                let (n_a, n_b) = (self.finite as f64, other.finite as f64);
                let n = n_a + n_b;
                let delta = other.mean - self.mean;
                self.mean += delta * n_b / n;
                self.m2 += other.m2 + delta * delta * n_a * n_b / n;
            }
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.finite += other.finite;
        self.count += other.count;
        self.nan += other.nan;
        self.pos_inf += other.pos_inf;
        self.neg_inf += other.neg_inf;
        self.zeros += other.zeros;
    }

    /// Number of finite values.
    pub fn finite(&self) -> u64 {
        self.finite
    }

    /// Smallest finite value, if any.
    pub fn min(&self) -> Option<f64> {
        (self.finite > 0).then_some(self.min)
    }

    /// Largest finite value, if any.
    pub fn max(&self) -> Option<f64> {
        (self.finite > 0).then_some(self.max)
    }

    /// Mean of the finite values, if any.
    pub fn mean(&self) -> Option<f64> {
        (self.finite > 0).then_some(self.mean)
    }

    /// Population standard deviation (divisor `n`, numpy's default and
    /// `torch.std(correction=0)`) of the finite values, if any.
    pub fn std(&self) -> Option<f64> {
        (self.finite > 0).then(|| (self.m2 / self.finite as f64).sqrt())
    }

    /// True when every value is finite.
    pub fn all_finite(&self) -> bool {
        self.nan == 0 && self.pos_inf == 0 && self.neg_inf == 0
    }
}

/// Independent accumulators of the all-finite pass: four AVX2 vectors
/// of `f64`.
const LANES: usize = 16;

/// Bytes decoded per step: 32 Ki whole elements (64 Ki or more values for
/// the packed sub-byte dtypes), small enough to stay in cache.
pub fn chunk_bytes(dtype: Dtype) -> usize {
    32 * 1024 * granule_bytes(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_chunks_match_one_pass() {
        let values: Vec<f64> = (0..1000)
            .map(|i| (i as f64 * 0.37).sin() * 1e6 + 1e9)
            .collect();
        let whole = Summary::of(&values);
        let mut merged = Summary::default();
        for chunk in values.chunks(77) {
            merged.merge(&Summary::of(chunk));
        }
        let mean = values.iter().sum::<f64>() / 1000.0;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 1000.0;
        assert!((merged.mean().unwrap() - mean).abs() / mean < 1e-12);
        assert!((merged.std().unwrap() - var.sqrt()).abs() / var.sqrt() < 1e-9);
        assert!((whole.std().unwrap() - var.sqrt()).abs() / var.sqrt() < 1e-9);
        assert_eq!(merged.min(), whole.min());
        assert_eq!(merged.count, 1000);
    }

    #[test]
    fn the_all_finite_pass_agrees_with_the_scalar_pass() {
        for len in [0, 1, 15, 16, 17, 1000, 32 * 1024 + 3] {
            let values: Vec<f64> = (0..len)
                .map(|i| {
                    if i % 7 == 0 {
                        0.0
                    } else {
                        (i as f64 * 0.61).cos() * 3e4 - 7.0
                    }
                })
                .collect();
            let fast = Summary::of_all_finite(&values).unwrap();
            let slow = Summary::of_any(&values);
            assert_eq!(
                (fast.count, fast.finite, fast.zeros, fast.min(), fast.max()),
                (slow.count, slow.finite, slow.zeros, slow.min(), slow.max()),
                "{len}"
            );
            if len > 0 {
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
                assert!(close(fast.mean, slow.mean), "{len}");
                assert!(close(fast.m2, slow.m2), "{len}");
            }
        }
        // One value that is not finite, anywhere, sends the chunk to the
        // scalar pass, which counts it.
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            for at in [0, 5, 16, 99] {
                let mut values = vec![1.5; 100];
                values[at] = bad;
                assert_eq!(Summary::of_all_finite(&values), None);
                let s = Summary::of(&values);
                assert_eq!((s.count, s.finite(), s.mean()), (100, 99, Some(1.5)));
            }
        }
    }

    #[test]
    fn non_finite_values_are_counted_apart() {
        let s = Summary::of(&[
            1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            3.0,
        ]);
        assert_eq!(
            (s.nan, s.pos_inf, s.neg_inf, s.zeros, s.count),
            (1, 1, 1, 2, 7)
        );
        assert_eq!(s.mean(), Some(1.0));
        assert_eq!(s.max(), Some(3.0));
        assert!(!s.all_finite());
        assert_eq!(Summary::of(&[f64::NAN]).mean(), None);
    }
}
