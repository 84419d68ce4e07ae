//! Tiles of the int8 3×3 padding-1 convolution for the Cortex-M4's DSP instructions: two
//! output channels × two output columns summed in four registers over every input channel and
//! kernel row, so that an accumulator is written once per tile instead of once per input row
//! (the row kernels of `kernels::int8_rows` keep a row of accumulators in memory and the
//! weights in registers; on the TinyUNet's 7- to 28-wide rows the loads and stores of the
//! accumulators and the per-call set-up cost more than the multiply-adds).
//!
//! Before the tiles run, the weights of the two output channels are laid out once per output
//! row as halfword pairs in a table on the stack ([`Table`]), so the inner loop loads them
//! ready for the multiply instructions. Per input channel and kernel row one word of the input
//! row, `r[a .. a + 4]`, is split by SXTB16 into `e = (r[a], r[a + 2])` and
//! `o = (r[a + 1], r[a + 3])`; SMLAD and the `SMLA<x><y>` halfword multiply-adds then do the
//! 12 multiply-adds of the tile in 8 instructions. The tiles add `Σ w·q` of the raw int8
//! values (the padding reads nothing), and `zp · Σ w` over the taps that read the map is taken
//! off each column at the end: in wrapping int32 arithmetic that is the same number as
//! `Σ w·(q − zp)`, so a tile gives exactly the per-pixel loop's accumulator.
//!
//! Nearest ×2 up-sampled inputs ([`conv_up_row2`]) are read at half resolution with their
//! weights summed per phase, as the row kernels do: two multiply-adds per output column, half
//! row and channel (one SMLAD) instead of three per kernel row.

use core::mem::MaybeUninit;

use crate::kernels::dsp::{
    hi, lo, pkhbt, pkhbt_lsl16, pkhtb_asr16, sadd16, smlabb, smlabt, smlad, smlatb, smlatt, sxtb16,
    sxtb16_ror8,
};

/// Most input channels whose weights are tabled at once: a [`Table`] of three kernel rows ×
/// `CHUNK` channels × four words takes 1.5 KiB of stack.
const CHUNK: usize = 32;

/// The two output channels' weights as halfword pairs, `[ch0 a, ch0 b, ch1 a, ch1 b]` per
/// input channel, for each kernel row (or half row) `j` at `j · CHUNK ..`. Left uninitialized
/// (zeroing 1.5 KiB per output row and channel pair cost more than a percent of a pass): each
/// chunk writes the entries its tiles then read.
struct Table([MaybeUninit<[u32; 4]>; 3 * CHUNK]);

impl Table {
    #[inline(always)]
    fn new() -> Self {
        Self([MaybeUninit::uninit(); 3 * CHUNK])
    }

    /// Writes entry `c` of row `j`.
    #[inline(always)]
    fn set(&mut self, j: usize, c: usize, entry: [u32; 4]) {
        self.0[j * CHUNK + c] = MaybeUninit::new(entry);
    }

    /// Entries `0 .. n` of row `j`.
    ///
    /// # Safety
    /// Each of them must have been written ([`Table::set`]).
    #[inline(always)]
    unsafe fn row(&self, j: usize, n: usize) -> &[[u32; 4]] {
        let entries = &self.0[j * CHUNK..j * CHUNK + n];
        // SAFETY: the entries are initialized (the caller's contract), and `MaybeUninit<T>`
        // has the layout of `T`.
        unsafe { core::slice::from_raw_parts(entries.as_ptr().cast::<[u32; 4]>(), n) }
    }
}

/// One kernel row's input over a run of channels: row `iy` of channel `c` is
/// `data[c · stride ..][..width]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Planes<'a> {
    pub(crate) data: &'a [i8],
    pub(crate) stride: usize,
}

impl<'a> Planes<'a> {
    /// No rows: the filler of the fixed arrays that hold a tile's rows.
    pub(crate) const EMPTY: Planes<'static> = Planes {
        data: &[],
        stride: 0,
    };

    /// Checks once that `channels` rows of `width` bytes lie inside `data`, so the tiles read
    /// them without further checks.
    #[inline(always)]
    fn checked(self, channels: usize, width: usize) -> Self {
        assert!(channels == 0 || (channels - 1) * self.stride + width <= self.data.len());
        self
    }

    /// The channels' rows from channel `c` on, read at byte `a` (see [`Walk`]).
    #[inline(always)]
    fn walk(&self, c: usize, a: usize) -> Walk<'a> {
        debug_assert!(c * self.stride + a <= self.data.len());
        Walk {
            // `wrapping_add` keeps a walk that is never read (no channel left) well defined.
            at: self.data.as_ptr().wrapping_add(c * self.stride + a),
            stride: self.stride,
            _rows: core::marker::PhantomData,
        }
    }
}

/// A pointer stepping from one channel's row to the next at a fixed byte of the row: the tiles'
/// inner loops read through it without recomputing `c · stride + a` per channel.
struct Walk<'a> {
    at: *const i8,
    stride: usize,
    _rows: core::marker::PhantomData<&'a [i8]>,
}

impl Walk<'_> {
    /// The four bytes at the current channel's byte `a` as a little-endian word (unaligned),
    /// and byte `a + extra` of the same row (0 for `None`); then steps to the next channel.
    ///
    /// # Safety
    /// The bytes read must lie in the rows [`Planes::checked`] bounded: at most as many calls
    /// as the channels checked, with `a + 4 ≤ width` (and `a + extra < width`).
    #[inline(always)]
    unsafe fn next(&mut self, extra: Option<usize>) -> (u32, i32) {
        // SAFETY: by the caller's contract the reads lie inside the checked rows;
        // `read_unaligned` has no alignment requirement.
        let (v, b) = unsafe {
            let v = self.at.cast::<u32>().read_unaligned();
            let b = extra.map_or(0, |e| *self.at.add(e) as i32);
            (v, b)
        };
        self.at = self.at.wrapping_add(self.stride);
        (u32::from_le(v), b)
    }
}

/// Kernel row `ky` of input channel `c` of one output channel's weights `[channels, 3, 3]`
/// (int8 bytes as stored) as halfword pairs `((w0, w2), (w1, ·))`, the high half of the second
/// not used, from one word: bytes `(w0, w1, w2, next)` for rows 0 and 1, and for row 2 the word
/// one byte early, `(w[5], w0, w1, w2)`, so that no read passes the channel's last tap.
///
/// # Safety
/// `w` must hold at least `9 · (c + 1)` bytes.
#[inline(always)]
unsafe fn row_pairs(w: &[u8], c: usize, ky: usize) -> (u32, u32) {
    let at = 9 * c + if ky == 2 { 5 } else { 3 * ky };
    debug_assert!(at + 4 <= w.len());
    // SAFETY: `at + 4 ≤ 9c + 9 ≤ len` by the caller's contract; no alignment needed.
    let v = u32::from_le(unsafe { w.as_ptr().add(at).cast::<u32>().read_unaligned() });
    if ky == 2 {
        (sxtb16_ror8(v), sxtb16(v) >> 16)
    } else {
        (sxtb16(v), sxtb16_ror8(v))
    }
}

/// Adds the halfword sums of one chunk, `Σ (w0, w2)` and `Σ (w1, ·)` (each fits an i16 over
/// [`CHUNK`] channels and three kernel rows), to the int32 totals `[Σ w0, Σ w1, Σ w2]`.
#[inline(always)]
fn add_sums(totals: &mut [i32; 3], w02: u32, w1: u32) {
    totals[0] += lo(w02);
    totals[1] += lo(w1);
    totals[2] += hi(w02);
}

/// `acc[x] -= zp · Σ w` over the taps that read the map at output column `x`: `w1` always,
/// `w0` unless `x = 0`, `w2` unless the column's right neighbour (`stride · x + 1`) is past
/// the input row of `in_w` columns.
#[inline(always)]
fn take_zero_point(acc: &mut [i32], [w0, w1, w2]: [i32; 3], zp: i32, stride: usize, in_w: usize) {
    for (x, v) in acc.iter_mut().enumerate() {
        let left = if x > 0 { w0 } else { 0 };
        let right = if stride * x + 1 < in_w { w2 } else { 0 };
        *v = v.wrapping_sub(zp.wrapping_mul(w1 + left + right));
    }
}

/// Adds a tile's sums `[o0 at x, o0 at x + 1, o1 at x, o1 at x + 1]` to the two output rows
/// (column `x` only when `first`).
#[inline(always)]
fn add_tile(acc: &mut [&mut [i32]; 2], x: usize, t: [u32; 4], first: bool) {
    if first {
        acc[0][x] = acc[0][x].wrapping_add(t[0] as i32);
        acc[1][x] = acc[1][x].wrapping_add(t[2] as i32);
    }
    acc[0][x + 1] = acc[0][x + 1].wrapping_add(t[1] as i32);
    acc[1][x + 1] = acc[1][x + 1].wrapping_add(t[3] as i32);
}

/// Where a tile sits in the row and at which stride (see [`tile`]).
const S1_LEFT: u8 = 0;
const S1_MID: u8 = 1;
const S1_RIGHT: u8 = 2;
const S2_LEFT: u8 = 3;
const S2_MID: u8 = 4;

/// The sums of one tile over channels `c0 .. c0 + n` and the kernel rows: `[o0 at x,
/// o0 at x + 1, o1 at x, o1 at x + 1]`, the input word read at byte `a` of each row and the
/// weights `(w0, w2)`, `(w1, 0)` from the table:
///
/// - `S1_LEFT` (stride 1, `x = 0`, `a = 0`): column 0's left tap is padding.
/// - `S1_MID` (stride 1, `a = x − 1`): all taps inside the row.
/// - `S1_RIGHT` (stride 1, `x = width − 2`, `a = width − 4`): the last column's right tap is
///   padding.
/// - `S2_LEFT` (stride 2, `x = 0`, `a = 0`): column 0 reads `r[−1]` (padding), `r[0]`, `r[1]`.
/// - `S2_MID` (stride 2, `a = 2x − 1`): column `x + 1` also reads byte `a + 4`.
#[inline(always)]
fn tile<const MODE: u8>(
    rows: &[(Planes, usize)],
    table: &Table,
    c0: usize,
    n: usize,
    a: usize,
) -> [u32; 4] {
    let [mut s0, mut s1, mut s2, mut s3] = [0u32; 4];
    for (j, &(p, _)) in rows.iter().enumerate() {
        let mut walk = p.walk(c0, a);
        // SAFETY: `conv_row2` wrote entries `0 .. n` of every row's slot for this chunk.
        for &[w02, w1, v02, v1] in unsafe { table.row(j, n) } {
            // SAFETY: `conv_row2` checked the rows of `c0 + n` channels of `in_w` bytes;
            // every mode reads inside them (`a + 4 ≤ in_w`, and `a + 4 < in_w` for the byte
            // of `S2_MID`).
            let (v, b) = unsafe { walk.next((MODE == S2_MID).then_some(4)) };
            let (e, o, b) = (sxtb16(v), sxtb16_ror8(v), b as u32);
            let step = |w02: u32, w1: u32, l: u32, r: u32| match MODE {
                S1_LEFT => (
                    smlabt(o, w02, smlabb(e, w1, l)),
                    smlabb(o, w1, smlad(e, w02, r)),
                ),
                S1_MID => (
                    smlabb(o, w1, smlad(e, w02, l)),
                    smlatb(e, w1, smlad(o, w02, r)),
                ),
                S1_RIGHT => (
                    smlatb(e, w1, smlad(o, w02, l)),
                    smlatb(o, w1, smlatb(e, w02, r)),
                ),
                S2_LEFT => (
                    smlabt(o, w02, smlabb(e, w1, l)),
                    smlatt(o, w02, smlatb(e, w1, smlabb(o, w02, r))),
                ),
                _ => (
                    smlabb(o, w1, smlad(e, w02, l)),
                    smlabt(b, w02, smlatb(o, w1, smlatb(e, w02, r))),
                ),
            };
            (s0, s1) = step(w02, w1, s0, s1);
            (s2, s3) = step(v02, v1, s2, s3);
        }
    }
    [s0, s1, s2, s3]
}

/// Adds to the whole output rows `acc` of two output channels (`acc[k]` with weights `w[k]`,
/// `[channels, 3, 3]` int8 as stored) the sums `Σ w·(q − zp)` over `channels` input channels
/// and the kernel rows in `rows` (`(input rows, ky)`; a kernel row that reads padding is left
/// out). `in_w` is the input width, `stride` 1 (output width `in_w`) or 2 (`in_w / 2`, `in_w`
/// even). Needs `in_w ≥ 4`; returns false without touching `acc` where it does not apply.
#[inline(never)]
pub(crate) fn conv_row2(
    acc: [&mut [i32]; 2],
    rows: &[(Planes, usize)],
    w: [&[u8]; 2],
    channels: usize,
    in_w: usize,
    stride: usize,
    zp: i32,
) -> bool {
    let out_w = acc[0].len();
    let fits = in_w >= 4 && acc[1].len() == out_w && out_w * stride == in_w;
    if !fits || !(stride == 1 || stride == 2) {
        return false;
    }
    assert!(w.iter().all(|w| w.len() >= 9 * channels) && rows.len() <= 3);
    let mut checked = [(Planes::EMPTY, 0usize); 3];
    for (c, &(p, ky)) in checked.iter_mut().zip(rows) {
        assert!(ky < 3);
        *c = (p.checked(channels, in_w), ky);
    }
    let rows = &checked[..rows.len()];
    let mut acc = acc;
    let mut table = Table::new();
    // Σ w0, Σ w1, Σ w2 over the channels and kernel rows, per output channel.
    let mut totals = [[0i32; 3]; 2];
    for c0 in (0..channels).step_by(CHUNK) {
        let n = CHUNK.min(channels - c0);
        let mut sums = [[0u32; 2]; 2];
        for (j, &(_, ky)) in rows.iter().enumerate() {
            for c in 0..n {
                let mut t = [0; 4];
                for (k, sum) in sums.iter_mut().enumerate() {
                    // SAFETY: `w[k]` holds `9 · channels` bytes (asserted above).
                    let (w02, w1) = unsafe { row_pairs(w[k], c0 + c, ky) };
                    (t[2 * k], t[2 * k + 1]) = (w02, w1);
                    *sum = [sadd16(sum[0], w02), sadd16(sum[1], w1)];
                }
                table.set(j, c, t);
            }
        }
        for (total, [w02, w1]) in totals.iter_mut().zip(sums) {
            add_sums(total, w02, w1);
        }
        if stride == 1 {
            add_tile(&mut acc, 0, tile::<S1_LEFT>(rows, &table, c0, n, 0), true);
            let mut x = 2;
            while x + 2 < out_w {
                add_tile(
                    &mut acc,
                    x,
                    tile::<S1_MID>(rows, &table, c0, n, x - 1),
                    true,
                );
                x += 2;
            }
            if x < out_w {
                // The last pair; on an odd width its first column is already done.
                let t = tile::<S1_RIGHT>(rows, &table, c0, n, out_w - 4);
                add_tile(&mut acc, out_w - 2, t, x == out_w - 2);
            }
        } else {
            add_tile(&mut acc, 0, tile::<S2_LEFT>(rows, &table, c0, n, 0), true);
            let mut x = 2;
            while x + 1 < out_w {
                add_tile(
                    &mut acc,
                    x,
                    tile::<S2_MID>(rows, &table, c0, n, 2 * x - 1),
                    true,
                );
                x += 2;
            }
            if x < out_w {
                // An odd width's last column: the pair before it, its first column done.
                let t = tile::<S2_MID>(rows, &table, c0, n, 2 * out_w - 5);
                add_tile(&mut acc, out_w - 2, t, false);
            }
        }
    }
    for (acc, sums) in acc.into_iter().zip(totals) {
        take_zero_point(acc, sums, zp, stride, in_w);
    }
    true
}

/// Where a tile of [`conv_up_row2`] sits: the output columns `(2m, 2m + 1)` and the byte `a` of
/// the half row its word is read at.
const UP_LEFT: u8 = 0;
const UP_MID: u8 = 1;
const UP_NEXT_LAST: u8 = 2;
const UP_LAST: u8 = 3;

/// The sums of one tile of [`conv_up_row2`] over channels `c0 .. c0 + n` and the half rows:
/// `[o0 at 2m, o0 at 2m + 1, o1 at 2m, o1 at 2m + 1]`. Output `2m` reads `u[m − 1], u[m]`
/// (weights `(w0, w1 + w2)`), output `2m + 1` reads `u[m], u[m + 1]` (`(w0 + w1, w2)`); the
/// word of four bytes read at `a` is split by SXTB16 into `e` and `o`, and PKHBT/PKHTB make the
/// two pairs:
///
/// - `UP_LEFT` (`m = 0`, `a = 0`): `u[−1]` is padding.
/// - `UP_MID` (`1 ≤ m ≤ half − 3`, `a = m − 1`).
/// - `UP_NEXT_LAST` (`m = half − 2`, `a = half − 4`).
/// - `UP_LAST` (`m = half − 1`, `a = half − 4`): `u[half]` is padding.
#[inline(always)]
fn up_tile<const MODE: u8>(
    rows: &[(Planes, usize)],
    table: &Table,
    c0: usize,
    n: usize,
    a: usize,
) -> [u32; 4] {
    let [mut s0, mut s1, mut s2, mut s3] = [0u32; 4];
    for &(p, j) in rows {
        let mut walk = p.walk(c0, a);
        // SAFETY: `conv_up_row2` wrote entries `0 .. n` of both slots for this chunk.
        for &[e0, o0, e1, o1] in unsafe { table.row(j, n) } {
            // SAFETY: `conv_up_row2` checked the rows of `c0 + n` channels of `half_w` bytes,
            // and `a + 4 ≤ half_w` in every mode.
            let (v, _) = unsafe { walk.next(None) };
            let (e, o) = (sxtb16(v), sxtb16_ror8(v));
            let (l, r) = match MODE {
                UP_LEFT => (e << 16, pkhbt_lsl16(e, o)),
                UP_MID => (pkhbt_lsl16(e, o), pkhbt(o, e)),
                UP_NEXT_LAST => (pkhbt(o, e), pkhtb_asr16(o, e)),
                _ => (pkhtb_asr16(o, e), o >> 16),
            };
            s0 = smlad(l, e0, s0);
            s1 = smlad(r, o0, s1);
            s2 = smlad(l, e1, s2);
            s3 = smlad(r, o1, s3);
        }
    }
    [s0, s1, s2, s3]
}

/// Adds to the whole output rows `acc` (`2 · half_w` wide) of two output channels (`acc[k]`
/// with weights `w[k]`, `[channels, 3, 3]` int8 as stored) the sums `Σ w·(q − zp)` over
/// `channels` nearest ×2 up-sampled input channels, read at half resolution. Output row `2r`
/// reads half row `r − 1` with kernel row 0 (`upper`) and half row `r` with kernel rows 1
/// and 2 (`lower`); output row `2r + 1` (`odd`) reads half row `r` with kernel rows 0 and 1
/// (`upper`) and half row `r + 1` with kernel row 2 (`lower`); a half row outside the map is
/// `None`. The weights are summed per half row and per horizontal phase, so each output
/// column takes two multiply-adds per half row and channel instead of three per kernel row.
/// The stride is 1. Needs `half_w ≥ 4`; returns false without touching `acc` where it does
/// not apply.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(crate) fn conv_up_row2(
    acc: [&mut [i32]; 2],
    upper: Option<Planes>,
    lower: Option<Planes>,
    odd: bool,
    w: [&[u8]; 2],
    channels: usize,
    half_w: usize,
    zp: i32,
) -> bool {
    if half_w < 4 || acc.iter().any(|a| a.len() != 2 * half_w) {
        return false;
    }
    assert!(w.iter().all(|w| w.len() >= 9 * channels));
    // (half row, its slot in the table): upper in slot 0, lower in slot 1.
    let mut rows = [(Planes::EMPTY, 0usize); 2];
    let mut count = 0;
    for (j, p) in [upper, lower].into_iter().enumerate() {
        if let Some(p) = p {
            rows[count] = (p.checked(channels, half_w), j);
            count += 1;
        }
    }
    let rows = &rows[..count];
    let mut acc = acc;
    let mut table = Table::new();
    let mut totals = [[0i32; 3]; 2];
    for c0 in (0..channels).step_by(CHUNK) {
        let n = CHUNK.min(channels - c0);
        let mut sums = [[0u32; 2]; 2];
        for c in 0..n {
            let mut entries = [[0; 4]; 2];
            for (k, sum) in sums.iter_mut().enumerate() {
                // SAFETY: `w[k]` holds `9 · channels` bytes (asserted above).
                let row = |ky| unsafe { row_pairs(w[k], c0 + c, ky) };
                let (r0, r1, r2) = (row(0), row(1), row(2));
                // The summed taps of the upper and lower half rows, `((s0, s2), (s1, ·))`.
                let add = |a: (u32, u32), b: (u32, u32)| (sadd16(a.0, b.0), sadd16(a.1, b.1));
                let halves = if odd {
                    [add(r0, r1), r2]
                } else {
                    [r0, add(r1, r2)]
                };
                for (t, (s02, s1)) in entries.iter_mut().zip(halves) {
                    // (s0, s1 + s2) and (s0 + s1, s2).
                    t[2 * k] = sadd16(s02, s1 << 16);
                    t[2 * k + 1] = sadd16(s02, s1 & 0xffff);
                }
                for &(_, j) in rows {
                    let (s02, s1) = halves[j];
                    *sum = [sadd16(sum[0], s02), sadd16(sum[1], s1)];
                }
            }
            for (j, t) in entries.into_iter().enumerate() {
                table.set(j, c, t);
            }
        }
        for (total, [w02, w1]) in totals.iter_mut().zip(sums) {
            add_sums(total, w02, w1);
        }
        add_tile(
            &mut acc,
            0,
            up_tile::<UP_LEFT>(rows, &table, c0, n, 0),
            true,
        );
        for m in 1..half_w - 2 {
            let t = up_tile::<UP_MID>(rows, &table, c0, n, m - 1);
            add_tile(&mut acc, 2 * m, t, true);
        }
        let a = half_w - 4;
        let t = up_tile::<UP_NEXT_LAST>(rows, &table, c0, n, a);
        add_tile(&mut acc, 2 * half_w - 4, t, true);
        let t = up_tile::<UP_LAST>(rows, &table, c0, n, a);
        add_tile(&mut acc, 2 * half_w - 2, t, true);
    }
    for (acc, sums) in acc.into_iter().zip(totals) {
        take_zero_point(acc, sums, zp, 1, 2 * half_w);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic bytes covering the whole int8 range.
    fn bytes(n: usize, seed: u32) -> alloc::vec::Vec<i8> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 24) as u8 as i8
            })
            .collect()
    }

    /// The definition: `Σ_c Σ_(ky in rows) Σ_kx w·(r[stride·x + kx − 1] − zp)` over the
    /// columns inside the row.
    #[allow(clippy::too_many_arguments)]
    fn expected(
        input: &[i8],
        stride_c: usize,
        row_of: &[(usize, usize)],
        w: &[i8],
        n: usize,
        in_w: usize,
        stride: usize,
        x: usize,
        zp: i32,
    ) -> i32 {
        let mut acc = 0i32;
        for c in 0..n {
            for &(start, ky) in row_of {
                for kx in 0..3 {
                    let col = (stride * x + kx) as isize - 1;
                    if col < 0 || col as usize >= in_w {
                        continue;
                    }
                    let q = input[start + c * stride_c + col as usize] as i32;
                    let wt = w[c * 9 + 3 * ky + kx] as i32;
                    acc = acc.wrapping_add(wt * (q - zp));
                }
            }
        }
        acc
    }

    /// Every width from 4 to 30 at stride 1 and every even one at stride 2, one to three
    /// channels, each set of kernel rows, extreme zero points: the tiles equal the definition
    /// (the rows padded between channels, so a read past a row would change the sum).
    #[test]
    fn tiles_equal_the_definition() {
        let n_max = 3;
        for stride in [1usize, 2] {
            for in_w in 4..=30 {
                if stride == 2 && in_w % 2 == 1 {
                    continue;
                }
                let out_w = in_w / stride;
                let stride_c = 3 * in_w + 5;
                let input = bytes(
                    n_max * stride_c + 3 * in_w,
                    in_w as u32 + 17 * stride as u32,
                );
                for n in 1..=n_max {
                    for (zp, set) in [
                        (-128, 0b111),
                        (127, 0b011),
                        (0, 0b110),
                        (-5, 0b101),
                        (9, 0b010),
                    ] {
                        let ws = [
                            bytes(9 * n, 7 * n as u32 + 1),
                            bytes(9 * n, 11 * n as u32 + 3),
                        ];
                        let row_of: alloc::vec::Vec<(usize, usize)> = (0..3)
                            .filter(|ky| set & (1 << ky) != 0)
                            .map(|ky| (ky * in_w, ky))
                            .collect();
                        let rows: alloc::vec::Vec<(Planes, usize)> = row_of
                            .iter()
                            .map(|&(start, ky)| {
                                (
                                    Planes {
                                        data: &input[start..],
                                        stride: stride_c,
                                    },
                                    ky,
                                )
                            })
                            .collect();
                        let (mut a0, mut a1) =
                            (alloc::vec![3i32; out_w], alloc::vec![-4i32; out_w]);
                        let w8 = [ws[0].as_slice(), ws[1].as_slice()].map(|w| {
                            // SAFETY-free reinterpretation: i8 → u8 byte for byte.
                            w.iter().map(|&b| b as u8).collect::<alloc::vec::Vec<u8>>()
                        });
                        let done = conv_row2(
                            [&mut a0, &mut a1],
                            &rows,
                            [&w8[0], &w8[1]],
                            n,
                            in_w,
                            stride,
                            zp,
                        );
                        assert!(done, "in_w {in_w} stride {stride}");
                        for x in 0..out_w {
                            for (k, (acc, start)) in [(&a0, 3), (&a1, -4)].into_iter().enumerate() {
                                let e = expected(
                                    &input, stride_c, &row_of, &ws[k], n, in_w, stride, x, zp,
                                );
                                assert_eq!(
                                    acc[x],
                                    start + e,
                                    "in_w {in_w} stride {stride} n {n} zp {zp} rows {set:03b} x {x} channel {k}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Every half width from 4 to 16, channel counts on both sides of a table chunk, even and
    /// odd output rows with both half rows or only one (the map's top and bottom), extreme
    /// zero points: the up-sampled tiles equal the 3×3 convolution of the up-sampled rows
    /// (padded between channels, so a read past a row would change the sum).
    #[test]
    fn up_tiles_equal_the_convolution_of_the_up_sampled_rows() {
        for half_w in 4..=16 {
            let stride_c = 2 * half_w + 3;
            for n in [1usize, 3, CHUNK, CHUNK + 2] {
                let input = bytes(n * stride_c + 2 * half_w, 5 * half_w as u32 + n as u32);
                let ws = [
                    bytes(9 * n, 3 * n as u32 + 1),
                    bytes(9 * n, 13 * n as u32 + 5),
                ];
                let w8 = ws
                    .clone()
                    .map(|w| w.iter().map(|&b| b as u8).collect::<alloc::vec::Vec<u8>>());
                for (zp, odd, present) in [
                    (-128, false, [false, true]),
                    (127, false, [true, true]),
                    (0, true, [true, true]),
                    (-7, true, [true, false]),
                    (11, false, [true, false]),
                    (3, true, [false, true]),
                ] {
                    // Upper half row at byte 0 of each channel, lower at byte half_w, and the
                    // kernel rows that read each.
                    let masks: [u8; 2] = if odd { [0b011, 0b100] } else { [0b001, 0b110] };
                    let plane = |j: usize| {
                        present[j].then(|| Planes {
                            data: &input[j * half_w..],
                            stride: stride_c,
                        })
                    };
                    let (mut a0, mut a1) = (
                        alloc::vec![7i32; 2 * half_w],
                        alloc::vec![-1i32; 2 * half_w],
                    );
                    let done = conv_up_row2(
                        [&mut a0, &mut a1],
                        plane(0),
                        plane(1),
                        odd,
                        [&w8[0], &w8[1]],
                        n,
                        half_w,
                        zp,
                    );
                    assert!(done, "half_w {half_w}");
                    for x in 0..2 * half_w {
                        for (k, (acc, start)) in [(&a0, 7), (&a1, -1)].into_iter().enumerate() {
                            let mut e = 0i32;
                            for c in 0..n {
                                for j in (0..2).filter(|&j| present[j]) {
                                    for ky in (0..3).filter(|ky| masks[j] & (1 << ky) != 0) {
                                        for kx in 0..3 {
                                            let col = (x + kx) as isize - 1;
                                            if col < 0 || col as usize >= 2 * half_w {
                                                continue;
                                            }
                                            let at = j * half_w + c * stride_c + col as usize / 2;
                                            let wt = ws[k][9 * c + 3 * ky + kx] as i32;
                                            e = e.wrapping_add(wt * (input[at] as i32 - zp));
                                        }
                                    }
                                }
                            }
                            assert_eq!(
                                acc[x],
                                start + e,
                                "half_w {half_w} n {n} zp {zp} odd {odd} rows {present:?} x {x} channel {k}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rows_the_tiles_cannot_take_are_left_alone() {
        let input = [1i8; 64];
        let w = [2u8; 9];
        let rows = [(
            Planes {
                data: &input,
                stride: 3,
            },
            1,
        )];
        let (mut a, mut b) = ([5i32; 3], [5i32; 3]);
        assert!(!conv_row2([&mut a, &mut b], &rows, [&w, &w], 1, 3, 1, 0));
        assert_eq!((a, b), ([5; 3], [5; 3]));
        let (mut a, mut b) = ([5i32; 2], [5i32; 2]);
        assert!(!conv_row2([&mut a, &mut b], &rows, [&w, &w], 1, 5, 2, 0));
        assert_eq!((a, b), ([5; 2], [5; 2]));
        let (mut a, mut b) = ([5i32; 6], [5i32; 6]);
        let up = Some(rows[0].0);
        assert!(!conv_up_row2(
            [&mut a, &mut b],
            up,
            up,
            false,
            [&w, &w],
            1,
            3,
            0
        ));
        assert_eq!((a, b), ([5; 6], [5; 6]));
    }
}
