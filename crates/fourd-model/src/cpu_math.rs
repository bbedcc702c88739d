//! Elementwise math for the CPU kernels ([`crate::attention_softmax`], [`crate::swiglu`]):
//! an `exp` the compiler can vectorise.

use candle_core::cpu::kernels::VecOps;
use candle_core::{Layout, Result};

/// A contiguous input's elements; `op` names the kernel in the error.
pub(crate) fn contiguous_slice<'a, T>(data: &'a [T], l: &Layout, op: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

/// `exp` of non-positive arguments (a softmax's `x - max`, a sigmoid's `-|x|`).
pub(crate) trait Exponent: VecOps + num_traits::Float + candle_core::WithDType {
    fn exp_nonpositive(x: Self) -> Self;
}
impl Exponent for f32 {
    fn exp_nonpositive(x: f32) -> f32 {
        exp_f32_nonpositive(x)
    }
}
impl Exponent for f64 {
    /// Float64 runs only in the finite-difference tests: the standard library's.
    fn exp_nonpositive(x: f64) -> f64 {
        x.exp()
    }
}

/// `exp(x)` for `x <= 0` in float32, without branches so that the compiler vectorises the loop
/// that calls it, to within one unit in the last place of the exact value (`tests` below).
///
/// Why not `f32::exp`: glibc's `expf` is one scalar call per score, and the masked scores (about
/// `f32::MIN`) go through its slow underflow path: 13% of a prefill on the CPU. The
/// compiler turns any branch around `exp` into a select and calls it anyway, since it counts
/// `exp` as free of side effects. PyTorch's CPU softmax likewise uses a vectorised `exp`
/// (Sleef's), not libm's.
///
/// Method (Cody and Waite's reduction, as in Cephes' `expf`): `x = n ln2 + r` with `n` the nearest
/// integer to `x / ln2`, so `|r| <= ln2 / 2`; `exp(r)` by a degree-7 polynomial; `2^n` by building
/// the float's exponent bits. Below `ln(f32::MIN_POSITIVE)` the result is 0, where `expf` would
/// return a subnormal (below 1.2e-38, nothing beside a softmax's maximum term, which is 1).
/// NaN stays NaN.
#[inline(always)]
pub(crate) fn exp_f32_nonpositive(x: f32) -> f32 {
    const LN_MIN_POSITIVE: f32 = -87.336_55;
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that `n * LN2_HI` is exact for the |n| <= 126 used here.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to the nearest integer and leaves it in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    // Cephes' minimax coefficients for exp(r) = 1 + r + r^2 P(r) on [-ln2/2, ln2/2].
    const P: [f32; 6] = [
        1.987_569_2e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
    let under = x < LN_MIN_POSITIVE;
    let xc = if under { LN_MIN_POSITIVE } else { x };
    let shifted = xc * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let n_int = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = P.iter().fold(0.0f32, |acc, &c| acc * r + c);
    let exp_r = p * r * r + r + 1.0;
    let two_n = f32::from_bits(((n_int + 127) as u32) << 23);
    if under {
        0.0
    } else {
        exp_r * two_n
    }
}

#[cfg(test)]
mod tests {
    use super::exp_f32_nonpositive;

    /// Within one unit in the last place of the exact value over the whole range where float32's
    /// `exp` is normal, exactly 0 below it and at `f32::MIN` (a masked score), 1 at 0.
    #[test]
    fn exp_is_within_two_ulp_of_the_exact_value() {
        let mut worst = 0f64;
        let mut x = -87.3f32;
        while x <= 0.0 {
            let ours = exp_f32_nonpositive(x) as f64;
            let exact = (x as f64).exp();
            let ulp = (exact as f32).next_up() as f64 - exact as f32 as f64;
            worst = worst.max((ours - exact).abs() / ulp);
            x += 0.000_37;
        }
        assert!(worst <= 1.0, "worst error {worst} ulp");
        assert_eq!(exp_f32_nonpositive(0.0), 1.0);
        assert_eq!(exp_f32_nonpositive(-88.0), 0.0);
        assert_eq!(exp_f32_nonpositive(f32::MIN), 0.0);
        assert_eq!(exp_f32_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32_nonpositive(f32::NAN).is_nan());
    }
}
