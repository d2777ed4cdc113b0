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
