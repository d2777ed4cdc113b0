//! Element-wise comparison of two tensors under a tolerance.

use crate::analysis::decode::decode_into;
use crate::analysis::stats::chunk_bytes;
use crate::format::Dtype;

/// When two values count as equal, with numpy's `allclose` semantics:
/// `|a - b| <= atol + rtol * |b|`. Equal infinities are equal; NaN equals
/// NaN only when `equal_nan` is set. The default (all zero) is exact
/// equality of values, under which `0.0 == -0.0`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tolerance {
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance, relative to the second operand.
    pub rtol: f64,
    /// Whether NaN compares equal to NaN.
    pub equal_nan: bool,
}

impl Tolerance {
    /// True when `a` and `b` are equal under this tolerance.
    pub fn equal(&self, a: f64, b: f64) -> bool {
        if a == b {
            return true;
        }
        if a.is_nan() || b.is_nan() {
            return self.equal_nan && a.is_nan() && b.is_nan();
        }
        if a.is_infinite() || b.is_infinite() {
            return false;
        }
        (a - b).abs() <= self.atol + self.rtol * b.abs()
    }
}

/// The result of comparing two equally shaped sequences of values.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Comparison {
    /// Number of value pairs compared.
    pub values: u64,
    /// Pairs that are not equal under the tolerance.
    pub differing: u64,
    /// Largest `|a - b|` over pairs where both values are finite.
    pub max_abs_diff: f64,
    sum_abs_diff: f64,
    finite_pairs: u64,
}

impl Comparison {
    /// The comparison of `values` pairs that are all equal (zero difference).
    pub fn identical(values: u64) -> Comparison {
        Comparison {
            values,
            ..Comparison::default()
        }
    }

    /// Compares two slices of values of the same length.
    pub fn of(a: &[f64], b: &[f64], tolerance: &Tolerance) -> Comparison {
        let mut out = Comparison {
            values: a.len().min(b.len()) as u64,
            ..Comparison::default()
        };
        for (&x, &y) in a.iter().zip(b) {
            out.differing += u64::from(!tolerance.equal(x, y));
            if x.is_finite() && y.is_finite() {
                let diff = (x - y).abs();
                out.max_abs_diff = out.max_abs_diff.max(diff);
                out.sum_abs_diff += diff;
                out.finite_pairs += 1;
            }
        }
        out
    }

    /// Compares two tensors' raw bytes of the same dtype and length, in
    /// bounded memory; `scratch` buffers are reused across calls.
    pub fn of_bytes(
        dtype: Dtype,
        a: &[u8],
        b: &[u8],
        tolerance: &Tolerance,
        scratch: &mut (Vec<f64>, Vec<f64>),
    ) -> Comparison {
        let mut total = Comparison::default();
        let step = chunk_bytes(dtype);
        for (x, y) in a.chunks(step).zip(b.chunks(step)) {
            decode_into(dtype, x, &mut scratch.0);
            decode_into(dtype, y, &mut scratch.1);
            total.merge(&Comparison::of(&scratch.0, &scratch.1, tolerance));
        }
        total
    }

    /// Compares two tensors of the same shape stored in different dtypes
    /// (a bf16 copy against its f32 source, say) value by value: the
    /// differences are the cast's error. Both dtypes must have whole-byte
    /// elements and `a` and `b` the same number of elements; any extra
    /// elements of the longer one are ignored.
    pub fn of_bytes_across(
        (dtype_a, a): (Dtype, &[u8]),
        (dtype_b, b): (Dtype, &[u8]),
        tolerance: &Tolerance,
        scratch: &mut (Vec<f64>, Vec<f64>),
    ) -> Comparison {
        let (size_a, size_b) = (dtype_a.bits() / 8, dtype_b.bits() / 8);
        if size_a == 0 || size_b == 0 {
            return Comparison::default();
        }
        let elements = (chunk_bytes(dtype_a) / size_a).max(1);
        let mut total = Comparison::default();
        for (x, y) in a.chunks(elements * size_a).zip(b.chunks(elements * size_b)) {
            decode_into(dtype_a, x, &mut scratch.0);
            decode_into(dtype_b, y, &mut scratch.1);
            total.merge(&Comparison::of(&scratch.0, &scratch.1, tolerance));
        }
        total
    }

    /// Adds the pairs counted in `other`.
    pub fn merge(&mut self, other: &Comparison) {
        self.values += other.values;
        self.differing += other.differing;
        self.max_abs_diff = self.max_abs_diff.max(other.max_abs_diff);
        self.sum_abs_diff += other.sum_abs_diff;
        self.finite_pairs += other.finite_pairs;
    }

    /// Mean `|a - b|` over pairs where both values are finite (0 if none).
    pub fn mean_abs_diff(&self) -> f64 {
        if self.finite_pairs == 0 {
            0.0
        } else {
            self.sum_abs_diff / self.finite_pairs as f64
        }
    }

    /// True when every pair is equal under the tolerance.
    pub fn is_equal(&self) -> bool {
        self.differing == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allclose_semantics() {
        let exact = Tolerance::default();
        assert!(exact.equal(0.0, -0.0));
        assert!(exact.equal(f64::INFINITY, f64::INFINITY));
        assert!(!exact.equal(f64::NAN, f64::NAN));
        assert!(Tolerance {
            equal_nan: true,
            ..exact
        }
        .equal(f64::NAN, f64::NAN));
        let loose = Tolerance {
            atol: 0.1,
            rtol: 0.1,
            equal_nan: false,
        };
        assert!(loose.equal(1.15, 1.0)); // 0.15 <= 0.1 + 0.1
        assert!(!loose.equal(1.0, 1.25));
        assert!(!loose.equal(f64::INFINITY, 1e300));
    }

    #[test]
    fn across_dtypes_the_difference_is_the_casts_error() {
        let source: Vec<f32> = vec![1.0, 1.001, -2.71, 1e-3];
        let f32_bytes: Vec<u8> = source.iter().flat_map(|v| v.to_le_bytes()).collect();
        // bf16 keeps the top 16 bits of an f32 (truncation, for the test).
        let bf16_bytes: Vec<u8> = source
            .iter()
            .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
            .collect();
        let mut scratch = Default::default();
        let c = Comparison::of_bytes_across(
            (Dtype::BF16, &bf16_bytes),
            (Dtype::F32, &f32_bytes),
            &Tolerance::default(),
            &mut scratch,
        );
        assert_eq!(c.values, 4);
        assert_eq!(c.differing, 3, "1.0 survives the cast exactly");
        let worst = source
            .iter()
            .map(|v| (f32::from_bits(v.to_bits() & 0xffff_0000) - v).abs() as f64)
            .fold(0.0, f64::max);
        assert_eq!(c.max_abs_diff, worst);
        let loose = Tolerance {
            rtol: 1e-2,
            ..Tolerance::default()
        };
        let c = Comparison::of_bytes_across(
            (Dtype::BF16, &bf16_bytes),
            (Dtype::F32, &f32_bytes),
            &loose,
            &mut scratch,
        );
        assert!(c.is_equal());
    }

    #[test]
    fn comparison_counts_and_means() {
        let c = Comparison::of(
            &[1.0, 2.0, f64::NAN, 4.0],
            &[1.0, 2.5, f64::NAN, 3.0],
            &Tolerance::default(),
        );
        assert_eq!((c.values, c.differing), (4, 3));
        assert_eq!(c.max_abs_diff, 1.0);
        assert_eq!(c.mean_abs_diff(), 0.5);
    }
}
