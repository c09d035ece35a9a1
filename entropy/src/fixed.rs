//! Fixed-point evaluation of the standard normal CDF.
//!
//! The Gaussian conditional's tables must come out bit-identical on every machine, or an
//! encoder and a decoder built on different platforms disagree on a probability and the
//! stream derails. `libm`'s `erf`/`exp` differ across platforms in the last ulp, which is
//! enough to move a quantized frequency by one. So the CDF is evaluated here with integers
//! only: the Maclaurin series of Φ, summed in Q80 fixed point with exact 128-bit arithmetic.
//!
//! Accuracy is far beyond what the 16-bit tables need (absolute error below 1e-13 for
//! x < 7); what matters is that the integer result is a pure function of the inputs.

/// Fractional bits of the Q80 values this module returns.
pub const FRAC_BITS: u32 = 80;
/// 1.0 in Q80.
pub const ONE: u128 = 1 << FRAC_BITS;

/// 1/√(2π) in Q80, rounded to nearest (from a 60-digit decimal evaluation).
const INV_SQRT_2PI_Q80: u128 = 482_291_623_313_231_213_510_445;

/// Beyond this many standard deviations Φ(x) is taken as exactly 1: 1 − Φ(7) ≈ 1.3e-12, far
/// below one step of a 16-bit table, and the series' intermediates would outgrow 128 bits.
const CLAMP_SIGMAS: u64 = 7;

/// `floor(a * b / d)` without overflow, for `a·b/d < 2^127`, `b < 2^57` and `d < 2^64`.
///
/// Dividing first and carrying the remainder keeps every intermediate below 2^121.
fn mul_div(a: u128, b: u128, d: u128) -> u128 {
    let (q, r) = (a / d, a % d);
    q * b + r * b / d
}

/// `floor(a * b / 2^80)` for `a < 2^82`, `b < 2^80`: the product of two Q80 numbers.
fn mul_q80(a: u128, b: u128) -> u128 {
    let (b_hi, b_lo) = (b >> 40, b & ((1 << 40) - 1));
    (a * b_hi + ((a * b_lo) >> 40)) >> 40
}

/// Φ(x) − ½ in Q80 for `x = num / den ≥ 0`.
///
/// Requires `num < 2^28` and `0 < den < 2^24`, which covers every table in this crate
/// (numerators are `(2k+1)·2^15` for `k` below 4096, denominators are Q16 scales ≤ 256).
pub fn half_phi_q80(num: u64, den: u64) -> u128 {
    assert!(
        den > 0 && den < 1 << 24 && num < 1 << 28,
        "half_phi_q80 argument out of range"
    );
    if num >= CLAMP_SIGMAS * den {
        return ONE / 2;
    }
    // Φ(x) − ½ = (1/√(2π)) · Σₙ (−1)ⁿ uₙ / (2n+1),  u₀ = x,  uₙ = uₙ₋₁ · x² / (2n).
    let a = u128::from(num) * u128::from(num); // x² = a / b
    let b = u128::from(den) * u128::from(den);
    let mut u = (u128::from(num) << FRAC_BITS) / u128::from(den);
    let (mut pos, mut neg) = (u, 0u128);
    let mut n: u128 = 1;
    while u > 0 {
        u = mul_div(u, a, b * 2 * n);
        let term = u / (2 * n + 1);
        if n % 2 == 1 {
            neg += term;
        } else {
            pos += term;
        }
        n += 1;
    }
    mul_q80(pos - neg, INV_SQRT_2PI_Q80).min(ONE / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_f64(q: u128) -> f64 {
        q as f64 / ONE as f64
    }

    /// Reference values of Φ(x) − ½ (from a 50-digit evaluation of erf).
    #[test]
    fn matches_reference_values() {
        let cases: [(u64, u64, f64); 6] = [
            (0, 1, 0.0),
            (1, 2, 0.191_462_461_274_013_1),
            (1, 1, 0.341_344_746_068_542_9),
            (2, 1, 0.477_249_868_051_820_8),
            (3, 1, 0.498_650_101_968_369_9),
            (6, 1, 0.499_999_999_013_412_4),
        ];
        for (num, den, want) in cases {
            let got = to_f64(half_phi_q80(num << 10, den << 10));
            assert!(
                (got - want).abs() < 1e-15,
                "Φ({num}/{den}) − ½: got {got}, want {want}"
            );
        }
    }

    #[test]
    fn monotone_and_clamped() {
        let mut last = 0;
        for k in 0..2000u64 {
            let v = half_phi_q80(k * 37, 9_000);
            assert!(v >= last, "Φ not monotone at {k}");
            last = v;
        }
        assert_eq!(half_phi_q80(7 << 20, 1 << 20), ONE / 2);
    }
}
