//! The Armv7E-M DSP instructions the int8 row kernels use, on two halfwords packed in a word
//! (low half first): with feature `arm-dsp` on an Arm target (Cortex-M4/M7) each is the one
//! instruction of its name, elsewhere a portable function with the same result, so the
//! kernels written with them run, and are tested, on the host too.
//!
//! All of them wrap on overflow as the instructions do (SMLAD and `SMLA<x><y>` set the Q flag
//! instead of saturating); the kernels' values never come near it.

#[cfg(all(feature = "arm-dsp", target_arch = "arm"))]
use core::arch::asm;

/// The low halfword as a signed value.
#[cfg_attr(all(feature = "arm-dsp", target_arch = "arm"), allow(dead_code))]
#[inline(always)]
pub(crate) fn lo(v: u32) -> i32 {
    v as u16 as i16 as i32
}

/// The high halfword as a signed value.
#[cfg_attr(all(feature = "arm-dsp", target_arch = "arm"), allow(dead_code))]
#[inline(always)]
pub(crate) fn hi(v: u32) -> i32 {
    (v >> 16) as u16 as i16 as i32
}

/// `lo` and `hi` (each must fit an i16) packed into a word.
#[inline(always)]
pub(crate) const fn pack(lo: i32, hi: i32) -> u32 {
    (lo as u16 as u32) | ((hi as u16 as u32) << 16)
}

macro_rules! dsp_op {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident),*) = $asm:literal, $portable:expr) => {
        $(#[$doc])*
        #[inline(always)]
        pub(crate) fn $name($($arg: u32),*) -> u32 {
            #[cfg(all(feature = "arm-dsp", target_arch = "arm"))]
            {
                let r: u32;
                // SAFETY: a register-only DSP instruction: no memory, no stack, no control
                // flow (it may set the Q flag, which nothing here reads).
                unsafe {
                    asm!($asm, r = lateout(reg) r, $($arg = in(reg) $arg),*,
                         options(pure, nomem, nostack));
                }
                r
            }
            #[cfg(not(all(feature = "arm-dsp", target_arch = "arm")))]
            {
                let f: fn($($arg: u32),*) -> u32 = $portable;
                f($($arg),*)
            }
        }
    };
}

dsp_op!(
    /// SXTB16: bytes 0 and 2 of `v`, sign-extended into the two halfwords.
    fn sxtb16(v) = "sxtb16 {r}, {v}",
    |v| pack(v as u8 as i8 as i32, (v >> 16) as u8 as i8 as i32)
);
dsp_op!(
    /// SXTB16 with ROR #8: bytes 1 and 3 of `v`, sign-extended into the two halfwords.
    fn sxtb16_ror8(v) = "sxtb16 {r}, {v}, ror #8",
    |v| pack((v >> 8) as u8 as i8 as i32, (v >> 24) as u8 as i8 as i32)
);
dsp_op!(
    /// SMLAD: `acc + lo(a)·lo(b) + hi(a)·hi(b)`.
    fn smlad(a, b, acc) = "smlad {r}, {a}, {b}, {acc}",
    |a, b, acc| {
        (acc as i32)
            .wrapping_add(lo(a) * lo(b))
            .wrapping_add(hi(a) * hi(b)) as u32
    }
);
dsp_op!(
    /// SMLABB: `acc + lo(a)·lo(b)`.
    fn smlabb(a, b, acc) = "smlabb {r}, {a}, {b}, {acc}",
    |a, b, acc| (acc as i32).wrapping_add(lo(a) * lo(b)) as u32
);
dsp_op!(
    /// SMLATB: `acc + hi(a)·lo(b)`.
    fn smlatb(a, b, acc) = "smlatb {r}, {a}, {b}, {acc}",
    |a, b, acc| (acc as i32).wrapping_add(hi(a) * lo(b)) as u32
);
dsp_op!(
    /// SMLABT: `acc + lo(a)·hi(b)`.
    fn smlabt(a, b, acc) = "smlabt {r}, {a}, {b}, {acc}",
    |a, b, acc| (acc as i32).wrapping_add(lo(a) * hi(b)) as u32
);
dsp_op!(
    /// SMLATT: `acc + hi(a)·hi(b)`.
    fn smlatt(a, b, acc) = "smlatt {r}, {a}, {b}, {acc}",
    |a, b, acc| (acc as i32).wrapping_add(hi(a) * hi(b)) as u32
);
dsp_op!(
    /// SADD16: the halfwords of `a` plus those of `b` (each wrapping within its halfword).
    fn sadd16(a, b) = "sadd16 {r}, {a}, {b}",
    |a, b| pack(lo(a) + lo(b), hi(a) + hi(b))
);
dsp_op!(
    /// PKHBT with LSL #16: the low halfwords of `a` (low) and `b` (high).
    fn pkhbt_lsl16(a, b) = "pkhbt {r}, {a}, {b}, lsl #16",
    |a, b| (a & 0xffff) | (b << 16)
);
dsp_op!(
    /// PKHBT: the low halfword of `a` and the high halfword of `b`.
    fn pkhbt(a, b) = "pkhbt {r}, {a}, {b}",
    |a, b| (a & 0xffff) | (b & 0xffff_0000)
);
dsp_op!(
    /// PKHTB with ASR #16: the high halfword of `b` (low) and of `a` (high).
    fn pkhtb_asr16(a, b) = "pkhtb {r}, {a}, {b}, asr #16",
    |a, b| (a & 0xffff_0000) | (b >> 16)
);

/// Little-endian words of 4 bytes of an int8 row at any byte offset, read with one unaligned
/// load each (Armv7-M allows them), bounds checked once for the whole run.
pub(crate) struct Words<'r> {
    row: &'r [i8],
}

impl<'r> Words<'r> {
    /// Words at offsets `0, step, …, step·(count − 1)` of `row` will be read: panics unless
    /// they all lie inside it.
    #[inline(always)]
    pub(crate) fn new(row: &'r [i8], step: usize, count: usize) -> Self {
        assert!(count == 0 || step * (count - 1) + 4 <= row.len());
        Self {
            row: &row[..if count == 0 {
                0
            } else {
                step * (count - 1) + 4
            }],
        }
    }

    /// The word at byte `i`, which must be one of the offsets [`Words::new`] checked (the
    /// debug build checks it again).
    #[inline(always)]
    pub(crate) fn at(&self, i: usize) -> u32 {
        debug_assert!(i + 4 <= self.row.len());
        // SAFETY: `new` checked that every offset the kernels pass (i + 4 ≤ len) lies inside
        // the row; `read_unaligned` has no alignment requirement.
        let v = unsafe { self.row.as_ptr().add(i).cast::<u32>().read_unaligned() };
        u32::from_le(v)
    }
}

/// Bytes `i..i + 4` of `r` as a little-endian word.
#[cfg(test)]
fn word(r: &[i8], i: usize) -> u32 {
    Words::new(&r[i..], 1, 1).at(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halfword_ops_follow_their_definitions() {
        // Bytes 0x80 (−128), 0x7f (127), 0xff (−1), 0x01 (1), low byte first.
        let v = u32::from_le_bytes([0x80, 0x7f, 0xff, 0x01]);
        assert_eq!((lo(sxtb16(v)), hi(sxtb16(v))), (-128, -1));
        assert_eq!((lo(sxtb16_ror8(v)), hi(sxtb16_ror8(v))), (127, 1));
        let (a, b) = (pack(-128, 127), pack(-127, -3));
        assert_eq!(smlad(a, b, 7) as i32, 7 + 128 * 127 - 381);
        assert_eq!(smlabb(a, b, 7) as i32, 7 + 128 * 127);
        assert_eq!(smlatb(a, b, (-7i32) as u32) as i32, -7 - 127 * 127);
        assert_eq!(smlabt(a, b, 7) as i32, 7 + 128 * 3);
        assert_eq!(smlatt(a, b, 7) as i32, 7 - 127 * 3);
        assert_eq!(sadd16(a, pack(-100, 100)), pack(-228, 227));
        assert_eq!(pkhbt_lsl16(a, b), pack(-128, -127));
        assert_eq!(pkhbt(a, b), pack(-128, -3));
        assert_eq!(pkhtb_asr16(a, b), pack(-3, 127));
        assert_eq!(
            word(&[1, -1, 2, -2, 3], 1),
            u32::from_le_bytes([0xff, 2, 0xfe, 3])
        );
    }
}
