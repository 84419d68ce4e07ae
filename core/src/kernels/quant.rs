//! Int8 quantization arithmetic, following the TFLite Micro conventions.
//!
//! - Real value of an int8 activation `q`: `scale · (q − zero_point)`, one scale and zero point
//!   per tensor ([`ActQuant`]).
//! - Weights: int8 per output channel, symmetric (zero point 0), range [−127, 127].
//! - Bias: int32 with scale `input_scale · weight_scale[o]`.
//! - Requantization of an int32 accumulator to the output scale multiplies by
//!   `M = input_scale · weight_scale[o] / output_scale`, represented as a Q31 multiplier and a
//!   power-of-two shift ([`QuantizedMultiplier`]), with the rounding of [`RoundingPolicy`].

/// How requantization rounds. One policy exists, named so that it is never implied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundingPolicy {
    /// TFLite/gemmlowp: `SaturatingRoundingDoublingHighMul` (the Q31 product rounded to nearest
    /// with ties toward +∞: a nudge of 2³⁰ for non-negative products and 1 − 2³⁰ for negative
    /// ones before the division by 2³¹ that truncates toward zero), then `RoundingDivideByPOT`
    /// (arithmetic right shift rounded to nearest, ties away from zero).
    TfliteDoubleRounding,
}

/// The rounding every requantization in this crate uses.
pub const ROUNDING: RoundingPolicy = RoundingPolicy::TfliteDoubleRounding;

/// A real multiplier `M ≈ multiplier · 2^(shift − 31)` with `multiplier` in [2³⁰, 2³¹).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantizedMultiplier {
    /// Q31 mantissa.
    pub multiplier: i32,
    /// Power-of-two exponent (positive: left shift).
    pub shift: i32,
}

impl QuantizedMultiplier {
    /// Encodes a real multiplier (TFLite's `QuantizeMultiplier`). Zero and non-finite or
    /// negative inputs give the zero multiplier.
    pub fn from_real(real: f64) -> Self {
        if !(real > 0.0 && real.is_finite()) {
            return Self {
                multiplier: 0,
                shift: 0,
            };
        }
        let (mut mantissa, mut shift) = frexp(real);
        // mantissa in [0.5, 1): scale to Q31 and round.
        let mut q = libm::round(mantissa * (1u64 << 31) as f64) as i64;
        if q == 1i64 << 31 {
            q /= 2;
            shift += 1;
        }
        mantissa = q as f64;
        // Multipliers too small to represent become zero; too large saturate the shift.
        if shift < -31 {
            return Self {
                multiplier: 0,
                shift: 0,
            };
        }
        if shift > 30 {
            shift = 30;
            mantissa = i32::MAX as f64;
        }
        Self {
            multiplier: mantissa as i32,
            shift,
        }
    }

    /// The real value this multiplier represents.
    pub fn to_real(self) -> f64 {
        self.multiplier as f64 * libm::pow(2.0, (self.shift - 31) as f64)
    }

    /// `round(x · M)` with the rounding of [`ROUNDING`] (TFLite's
    /// `MultiplyByQuantizedMultiplier`).
    pub fn apply(self, x: i32) -> i32 {
        let left = self.shift.max(0);
        let right = (-self.shift).max(0);
        let shifted = x.saturating_mul(1i32.checked_shl(left as u32).unwrap_or(i32::MAX));
        rounding_divide_by_pot(
            saturating_rounding_doubling_high_mul(shifted, self.multiplier),
            right,
        )
    }
}

/// `frexp`: `v = m · 2^e` with `m` in [0.5, 1), for finite positive `v`.
fn frexp(v: f64) -> (f64, i32) {
    let (m, e) = libm::frexp(v);
    (m, e)
}

/// `(a · b · 2) / 2³²` rounded to nearest with ties toward +∞, saturating the single overflow
/// case `i32::MIN · i32::MIN`.
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// `x / 2^exponent` rounded to nearest, ties away from zero (`exponent` in 0..=31).
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let e = exponent.clamp(0, 31);
    let mask: i32 = ((1i64 << e) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> e) + i32::from(remainder > threshold)
}

/// Per-tensor affine quantization of activations: `real = scale · (q − zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActQuant {
    /// Step between adjacent int8 values.
    pub scale: f32,
    /// The int8 value that represents 0.0.
    pub zero_point: i32,
}

impl ActQuant {
    /// The quantization covering `[min, max]` (widened to include 0, as TFLite requires, so that
    /// zero padding is exact) with 256 levels.
    pub fn from_range(min: f32, max: f32) -> Self {
        let lo = min.min(0.0);
        let hi = max.max(0.0);
        let span = hi - lo;
        if !(span > 0.0 && span.is_finite()) {
            return Self {
                scale: 1.0,
                zero_point: 0,
            };
        }
        let scale = span / 255.0;
        let zp = libm::roundf(-128.0 - lo / scale) as i32;
        Self {
            scale,
            zero_point: zp.clamp(-128, 127),
        }
    }

    /// Quantizes one value (round to nearest, ties away from zero, then saturate).
    pub fn quantize(&self, v: f32) -> i8 {
        let q = libm::roundf(v / self.scale) as i32 + self.zero_point;
        q.clamp(-128, 127) as i8
    }

    /// The real value of `q`.
    pub fn dequantize(&self, q: i8) -> f32 {
        self.scale * (q as i32 - self.zero_point) as f32
    }
}

/// Largest magnitude of an int16 input value (symmetric range [−32767, 32767]).
pub const INPUT16_MAX: i32 = 32767;

/// Quantization of the network input: [`ActQuant`] on an 8-bit grid (the default of old
/// files) or, with `bits == 16`, symmetric int16 (zero point 0, range [−32767, 32767]; the
/// activation side of TFLite's 16x8 scheme, applied to the input tensor only). Either way the
/// quantized value is held as an `i16`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputQuant {
    /// Scale and zero point (zero point 0 for 16 bits).
    pub q: ActQuant,
    /// 8 or 16.
    pub bits: u32,
}

impl InputQuant {
    /// Symmetric int16 quantization covering `[min, max]` (scale max(|min|, |max|) / 32767).
    pub fn symmetric16(min: f32, max: f32) -> Self {
        let m = min.abs().max(max.abs());
        let scale = if m > 0.0 && m.is_finite() {
            m / INPUT16_MAX as f32
        } else {
            1.0
        };
        Self {
            q: ActQuant {
                scale,
                zero_point: 0,
            },
            bits: 16,
        }
    }

    /// The input quantization of `bits` (8: [`ActQuant::from_range`]; 16:
    /// [`InputQuant::symmetric16`]) covering `[min, max]`.
    pub fn from_range(bits: u32, min: f32, max: f32) -> Self {
        if bits == 16 {
            Self::symmetric16(min, max)
        } else {
            Self {
                q: ActQuant::from_range(min, max),
                bits: 8,
            }
        }
    }

    /// Quantizes one value (round to nearest, ties away from zero, then saturate to the grid).
    pub fn quantize(&self, v: f32) -> i16 {
        if self.bits == 16 {
            let q = libm::roundf(v / self.q.scale) as i32 + self.q.zero_point;
            q.clamp(-INPUT16_MAX, INPUT16_MAX) as i16
        } else {
            self.q.quantize(v) as i16
        }
    }

    /// The real value of `q`.
    pub fn dequantize(&self, q: i16) -> f32 {
        self.q.scale * (q as i32 - self.q.zero_point) as f32
    }
}

/// Symmetric per-channel weight scale: `max |w| / 127` (1.0 for an all-zero channel).
pub fn weight_scale(channel: &[f32]) -> f32 {
    let m = channel.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if m > 0.0 {
        m / 127.0
    } else {
        1.0
    }
}

/// Quantizes one weight to [−127, 127].
pub fn quantize_weight(w: f32, scale: f32) -> i8 {
    (libm::roundf(w / scale) as i32).clamp(-127, 127) as i8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplier_round_trip() {
        for real in [1e-6, 0.0003, 0.25, 0.5, 0.7, 0.999_999_9, 1.0, 3.5, 1234.5] {
            let q = QuantizedMultiplier::from_real(real);
            assert!((q.multiplier as i64) >= 1 << 30, "{real}: {q:?}");
            let back = q.to_real();
            assert!(
                (back - real).abs() <= real * 2f64.powi(-30),
                "{real}: {back}"
            );
        }
        assert_eq!(QuantizedMultiplier::from_real(0.0).multiplier, 0);
        assert_eq!(QuantizedMultiplier::from_real(f64::NAN).multiplier, 0);
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        // x / 4 at exact ties.
        assert_eq!(rounding_divide_by_pot(6, 2), 2); // 1.5 → 2
        assert_eq!(rounding_divide_by_pot(-6, 2), -2); // −1.5 → −2
        assert_eq!(rounding_divide_by_pot(5, 2), 1); // 1.25 → 1
        assert_eq!(rounding_divide_by_pot(-5, 2), -1);
        assert_eq!(rounding_divide_by_pot(7, 2), 2); // 1.75 → 2
        assert_eq!(rounding_divide_by_pot(-7, 2), -2);
        assert_eq!(rounding_divide_by_pot(10, 0), 10);
        // M = 0.5 with shift 0: the tie is rounded by the high multiply, toward +∞.
        let half = QuantizedMultiplier::from_real(0.5);
        assert_eq!(
            half,
            QuantizedMultiplier {
                multiplier: 1 << 30,
                shift: 0
            }
        );
        assert_eq!(half.apply(3), 2); // 1.5 → 2
        assert_eq!(half.apply(-3), -1); // −1.5 → −1
        assert_eq!(half.apply(4), 2);
        // M = 0.25 = 0.5 · 2⁻¹: the high multiply is exact (x/2 for even x) and the shift rounds
        // the tie away from zero.
        let quarter = QuantizedMultiplier::from_real(0.25);
        assert_eq!(quarter.shift, -1);
        assert_eq!(quarter.apply(6), 2); // 1.5 → 2
        assert_eq!(quarter.apply(-6), -2); // −1.5 → −2
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
    }

    #[test]
    fn apply_matches_real_arithmetic() {
        // Off exact ties the result is round(x · M) of the *encoded* M, within one unit of
        // the f64 product (the two roundings can each move half a unit).
        let mut state = 12345u64;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let x = (state >> 40) as i32 - (1 << 23);
            let real = libm::pow(10.0, ((state >> 8) % 1000) as f64 / 250.0 - 4.0);
            let q = QuantizedMultiplier::from_real(real);
            let exact = x as f64 * q.to_real();
            let got = q.apply(x);
            if exact.abs() < (i32::MAX / 2) as f64 {
                assert!(
                    (got as f64 - exact).abs() <= 1.0,
                    "x={x} M={real}: {got} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn activation_quantization() {
        let q = ActQuant::from_range(0.0, 6.0);
        assert_eq!(q.zero_point, -128);
        assert_eq!(q.quantize(0.0), -128);
        assert_eq!(q.quantize(6.0), 127);
        assert_eq!(q.quantize(100.0), 127);
        let q = ActQuant::from_range(-1.0, 1.0);
        assert_eq!(q.dequantize(q.quantize(0.0)), 0.0);
        assert!((q.dequantize(q.quantize(0.5)) - 0.5).abs() <= q.scale / 2.0);
        // A range not containing zero is widened to include it.
        let q = ActQuant::from_range(2.0, 3.0);
        assert_eq!(q.dequantize(q.quantize(0.0)), 0.0);
        assert_eq!(weight_scale(&[0.5, -1.27]), 0.01);
        assert_eq!(quantize_weight(-1.27, 0.01), -127);
        assert_eq!(quantize_weight(5.0, 0.01), 127);
    }
}
