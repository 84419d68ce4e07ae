//! Row kernels of the int8 3×3 padding-1 convolution: one output row of one output channel
//! accumulated into a run of int32 values, one input row (and one kernel row of three taps) at
//! a time, so the three weights and a sliding window of the input stay in registers.
//!
//! The input's zero point is not subtracted per multiply-add: the kernels add `w·q` of the raw
//! int8 values (zero outside the map), and the caller subtracts `zp · Σ w` over the taps that
//! read the map ([`TapSums`]). In int32 arithmetic that wraps, `Σ w·(q − zp)` and
//! `Σ w·q − zp·Σ w` are the same number, so the result equals the per-pixel loop bit for bit.
//!
//! Nearest ×2 up-sampled inputs are read at half resolution with the weights summed per
//! phase: output column `2m` reads columns `2m − 1, 2m, 2m + 1` of the up-sampled row, which
//! are `u[m − 1], u[m], u[m]`, so two multiply-adds do the work of three (and rows likewise,
//! see the caller): 4 of every 9 multiply-adds of an up-sampled input.

use crate::kernels::dsp::{
    pack, pkhbt, pkhbt_lsl16, pkhtb_asr16, smlabb, smlad, smlatb, sxtb16, sxtb16_ror8, Words,
};

/// Most output columns accumulated at once (the caller's int32 run on the stack).
pub(crate) const ROW_CHUNK: usize = 32;

/// Whether whole rows go through the DSP-instruction kernels ([`taps_s1_dsp`],
/// [`taps_up_dsp`]): on Arm with feature `arm-dsp`. Elsewhere the portable loops run, and the
/// DSP kernels (over portable stand-ins of the instructions) are tested against them.
const USE_DSP: bool = cfg!(all(feature = "arm-dsp", target_arch = "arm"));

/// Shortest row the DSP kernels take: on shorter rows the call costs more than the
/// instructions save, and the inlined portable loop runs (measured by the firmware's layer
/// profile: docs/firmware.md).
const DSP_MIN_ROW: usize = 16;

/// Sums of the weights of the kernel rows that read the input for one output row: all taps,
/// the left taps (`kx = 0`) and the right taps (`kx = 2`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TapSums {
    all: i32,
    left: i32,
    right: i32,
}

impl TapSums {
    /// Adds one kernel row's taps.
    #[inline(always)]
    pub(crate) fn add(&mut self, [w0, w1, w2]: [i32; 3]) {
        self.all += w0 + w1 + w2;
        self.left += w0;
        self.right += w2;
    }

    /// `Σ w` over the taps that read the input at an output column whose left tap reads the
    /// map when `left` and whose right tap does when `right`.
    #[inline(always)]
    pub(crate) fn valid(&self, left: bool, right: bool) -> i32 {
        self.all - if left { 0 } else { self.left } - if right { 0 } else { self.right }
    }
}

/// Column `c` of `r`, zero outside it.
#[inline(always)]
fn at(r: &[i8], c: isize) -> i32 {
    if c >= 0 && (c as usize) < r.len() {
        r[c as usize] as i32
    } else {
        0
    }
}

/// `acc[j] += w0·r[c − 1] + w1·r[c] + w2·r[c + 1]` with `c = stride · (x0 + j)`, reading zero
/// outside `r` (stride 1 or 2).
#[inline(always)]
pub(crate) fn taps_row(acc: &mut [i32], r: &[i8], x0: usize, stride: usize, w: [i32; 3]) {
    let [w0, w1, w2] = w;
    let n = acc.len();
    if x0 == 0 && n >= 2 && r.len() == stride * n {
        return taps_whole_row(acc, r, stride, w);
    }
    let tap = |c: usize| {
        let c = c as isize;
        w0 * at(r, c - 1) + w1 * at(r, c) + w2 * at(r, c + 1)
    };
    // Interior outputs j in lo..hi read only columns inside r.
    let lo = usize::from(x0 == 0).min(n);
    let last_x = if r.len() >= 2 {
        (r.len() - 2) / stride + 1
    } else {
        0
    };
    let hi = n.min(last_x.saturating_sub(x0)).max(lo);
    for j in (0..lo).chain(hi..n) {
        acc[j] = acc[j].wrapping_add(tap(stride * (x0 + j)));
    }
    if hi == lo {
        return;
    }
    let first = stride * (x0 + lo) - 1;
    let interior = &mut acc[lo..hi];
    if stride == 1 {
        let rr = &r[first..first + interior.len() + 2];
        let (mut p, mut c) = (rr[0] as i32, rr[1] as i32);
        for (a, &nx) in interior.iter_mut().zip(&rr[2..]) {
            let nx = nx as i32;
            *a = a.wrapping_add(w0 * p + w1 * c + w2 * nx);
            (p, c) = (c, nx);
        }
    } else {
        let rr = &r[first..first + 2 * interior.len() + 1];
        let mut p = rr[0] as i32;
        for (a, pair) in interior.iter_mut().zip(rr[1..].chunks_exact(2)) {
            let (c, nx) = (pair[0] as i32, pair[1] as i32);
            *a = a.wrapping_add(w0 * p + w1 * c + w2 * nx);
            p = nx;
        }
    }
}

/// [`taps_row`] of a whole output row (`r.len() = stride · acc.len()`, at least 2 outputs):
/// the edge columns in closed form, the rest with no test of the row's bounds.
#[inline(always)]
fn taps_whole_row(acc: &mut [i32], r: &[i8], stride: usize, w: [i32; 3]) {
    if USE_DSP && stride == 1 && acc.len() >= DSP_MIN_ROW {
        return taps_s1_dsp(acc, r, w);
    }
    let [w0, w1, w2] = w;
    let n = acc.len();
    // Output 0 has no left neighbour; at stride 1 the last output has no right one.
    acc[0] = acc[0].wrapping_add(w1 * r[0] as i32 + w2 * r[1] as i32);
    if stride == 1 {
        let (mut p, mut c) = (r[0] as i32, r[1] as i32);
        for (a, &nx) in acc[1..n - 1].iter_mut().zip(&r[2..]) {
            let nx = nx as i32;
            *a = a.wrapping_add(w0 * p + w1 * c + w2 * nx);
            (p, c) = (c, nx);
        }
        acc[n - 1] = acc[n - 1].wrapping_add(w0 * p + w1 * c);
    } else {
        let mut p = r[1] as i32;
        for (a, pair) in acc[1..].iter_mut().zip(r[2..].chunks_exact(2)) {
            let (c, nx) = (pair[0] as i32, pair[1] as i32);
            *a = a.wrapping_add(w0 * p + w1 * c + w2 * nx);
            p = nx;
        }
    }
}

/// [`taps_row`] at stride 1 over the nearest ×2 up-sampling of the half row `u` (the full row
/// is `u[c / 2]`, `2 · u.len()` columns), with the horizontal phases' summed weights: output
/// `2m` gets `w0·u[m − 1] + (w1 + w2)·u[m]`, output `2m + 1` gets `(w0 + w1)·u[m] + w2·u[m + 1]`.
#[inline(always)]
pub(crate) fn taps_up_row(acc: &mut [i32], u: &[i8], x0: usize, w: [i32; 3]) {
    let [w0, w1, w2] = w;
    let full = 2 * u.len() as isize;
    let up = |c: isize| {
        if c >= 0 && c < full {
            u[c as usize / 2] as i32
        } else {
            0
        }
    };
    let tap = |c: usize| {
        let c = c as isize;
        w0 * up(c - 1) + w1 * up(c) + w2 * up(c + 1)
    };
    let n = acc.len();
    let (w01, w12) = (w0 + w1, w1 + w2);
    if USE_DSP && x0 == 0 && n == 2 * u.len() && n >= DSP_MIN_ROW {
        return taps_up_dsp(acc, u, w);
    }
    if x0 == 0 && n == 2 * u.len() && u.len() >= 2 {
        // The whole row: the first and last pairs in closed form.
        let last = u.len() - 1;
        acc[0] = acc[0].wrapping_add(w12 * u[0] as i32);
        acc[1] = acc[1].wrapping_add(w01 * u[0] as i32 + w2 * u[1] as i32);
        let (mut p, mut c) = (u[0] as i32, u[1] as i32);
        for (pair, &nx) in acc[2..2 * last].chunks_exact_mut(2).zip(&u[2..]) {
            let nx = nx as i32;
            pair[0] = pair[0].wrapping_add(w0 * p + w12 * c);
            pair[1] = pair[1].wrapping_add(w01 * c + w2 * nx);
            (p, c) = (c, nx);
        }
        acc[2 * last] = acc[2 * last].wrapping_add(w0 * p + w12 * c);
        acc[2 * last + 1] = acc[2 * last + 1].wrapping_add(w01 * c);
        return;
    }
    // Pairs (2m, 2m + 1) with 1 ≤ m and m + 1 < u.len() read only inside u.
    let m_first = x0.div_ceil(2).max(1);
    let m_end = ((x0 + n) / 2).min(u.len().saturating_sub(1));
    if m_end <= m_first {
        for (j, a) in acc.iter_mut().enumerate() {
            *a = a.wrapping_add(tap(x0 + j));
        }
        return;
    }
    let (lo, hi) = (2 * m_first - x0, 2 * m_end - x0);
    for j in (0..lo).chain(hi..n) {
        acc[j] = acc[j].wrapping_add(tap(x0 + j));
    }
    let uu = &u[m_first - 1..m_end + 1];
    let (mut p, mut c) = (uu[0] as i32, uu[1] as i32);
    for (pair, &nx) in acc[lo..hi].chunks_exact_mut(2).zip(&uu[2..]) {
        let nx = nx as i32;
        pair[0] = pair[0].wrapping_add(w0 * p + w12 * c);
        pair[1] = pair[1].wrapping_add(w01 * c + w2 * nx);
        (p, c) = (c, nx);
    }
}

/// [`taps_row`] of three input rows with their kernel rows at once, over the whole output row
/// (`x0 = 0`): each accumulator is read and written once for nine taps instead of three times
/// for three. Falls back to three [`taps_row`] calls for a partial row.
#[inline(always)]
pub(crate) fn taps_rows3(
    acc: &mut [i32],
    rows: [&[i8]; 3],
    x0: usize,
    stride: usize,
    w: [[i32; 3]; 3],
) {
    let n = acc.len();
    let whole = x0 == 0 && n >= 2 && rows.iter().all(|r| r.len() == stride * n);
    if !whole {
        for (r, wk) in rows.into_iter().zip(w) {
            taps_row(acc, r, x0, stride, wk);
        }
        return;
    }
    let [r0, r1, r2] = rows;
    let [[a0, a1, a2], [b0, b1, b2], [c0, c1, c2]] = w;
    let col = |x: usize| (r0[x] as i32, r1[x] as i32, r2[x] as i32);
    // Output 0 has no left neighbour.
    let (p, q) = (col(0), col(1));
    acc[0] = acc[0].wrapping_add(a1 * p.0 + a2 * q.0 + b1 * p.1 + b2 * q.1 + c1 * p.2 + c2 * q.2);
    if stride == 1 {
        let (mut p, mut c) = (p, q);
        for (x, a) in acc.iter_mut().enumerate().take(n - 1).skip(1) {
            let nx = col(x + 1);
            let v = a0 * p.0 + a1 * c.0 + a2 * nx.0 + b0 * p.1 + b1 * c.1 + b2 * nx.1;
            *a = a.wrapping_add(v + c0 * p.2 + c1 * c.2 + c2 * nx.2);
            (p, c) = (c, nx);
        }
        // The last output has no right neighbour.
        let v = a0 * p.0 + a1 * c.0 + b0 * p.1 + b1 * c.1 + c0 * p.2 + c1 * c.2;
        acc[n - 1] = acc[n - 1].wrapping_add(v);
    } else {
        let mut p = q;
        for (x, a) in acc.iter_mut().enumerate().skip(1) {
            let (c, nx) = (col(2 * x), col(2 * x + 1));
            let v = a0 * p.0 + a1 * c.0 + a2 * nx.0 + b0 * p.1 + b1 * c.1 + b2 * nx.1;
            *a = a.wrapping_add(v + c0 * p.2 + c1 * c.2 + c2 * nx.2);
            p = nx;
        }
    }
}

/// [`taps_row`] for two output channels at once (`acc[k]` with weights `w[k]`), which share
/// every load of the input: a fused loop over whole rows, two single calls otherwise.
#[inline(always)]
pub(crate) fn taps_row2(
    acc: [&mut [i32]; 2],
    r: &[i8],
    x0: usize,
    stride: usize,
    w: [[i32; 3]; 2],
) {
    let [acc0, acc1] = acc;
    let n = acc0.len();
    if !(x0 == 0 && n >= 2 && acc1.len() == n && r.len() == stride * n) {
        taps_row(acc0, r, x0, stride, w[0]);
        taps_row(acc1, r, x0, stride, w[1]);
        return;
    }
    let [[a0, a1, a2], [b0, b1, b2]] = w;
    let (q0, q1) = (r[0] as i32, r[1] as i32);
    acc0[0] = acc0[0].wrapping_add(a1 * q0 + a2 * q1);
    acc1[0] = acc1[0].wrapping_add(b1 * q0 + b2 * q1);
    if stride == 1 {
        let (mut p, mut c) = (q0, q1);
        let pairs = acc0[1..n - 1].iter_mut().zip(acc1[1..n - 1].iter_mut());
        for ((u, v), &nx) in pairs.zip(&r[2..]) {
            let nx = nx as i32;
            *u = u.wrapping_add(a0 * p + a1 * c + a2 * nx);
            *v = v.wrapping_add(b0 * p + b1 * c + b2 * nx);
            (p, c) = (c, nx);
        }
        acc0[n - 1] = acc0[n - 1].wrapping_add(a0 * p + a1 * c);
        acc1[n - 1] = acc1[n - 1].wrapping_add(b0 * p + b1 * c);
    } else {
        let mut p = q1;
        let pairs = acc0[1..].iter_mut().zip(acc1[1..].iter_mut());
        for ((u, v), cn) in pairs.zip(r[2..].chunks_exact(2)) {
            let (c, nx) = (cn[0] as i32, cn[1] as i32);
            *u = u.wrapping_add(a0 * p + a1 * c + a2 * nx);
            *v = v.wrapping_add(b0 * p + b1 * c + b2 * nx);
            p = nx;
        }
    }
}

/// [`taps_up_row`] for two output channels at once, sharing the loads of the half row: a
/// fused loop over whole rows, two single calls otherwise.
#[inline(always)]
pub(crate) fn taps_up_row2(acc: [&mut [i32]; 2], u: &[i8], x0: usize, w: [[i32; 3]; 2]) {
    let [acc0, acc1] = acc;
    let n = acc0.len();
    if !(x0 == 0 && n == 2 * u.len() && acc1.len() == n && u.len() >= 2) {
        taps_up_row(acc0, u, x0, w[0]);
        taps_up_row(acc1, u, x0, w[1]);
        return;
    }
    let [[a0, a1, a2], [b0, b1, b2]] = w;
    let (a01, a12, b01, b12) = (a0 + a1, a1 + a2, b0 + b1, b1 + b2);
    let last = u.len() - 1;
    let (u0, u1) = (u[0] as i32, u[1] as i32);
    acc0[0] = acc0[0].wrapping_add(a12 * u0);
    acc0[1] = acc0[1].wrapping_add(a01 * u0 + a2 * u1);
    acc1[0] = acc1[0].wrapping_add(b12 * u0);
    acc1[1] = acc1[1].wrapping_add(b01 * u0 + b2 * u1);
    let (mut p, mut c) = (u0, u1);
    let pairs = acc0[2..2 * last]
        .chunks_exact_mut(2)
        .zip(acc1[2..2 * last].chunks_exact_mut(2));
    for ((e, f), &nx) in pairs.zip(&u[2..]) {
        let nx = nx as i32;
        e[0] = e[0].wrapping_add(a0 * p + a12 * c);
        e[1] = e[1].wrapping_add(a01 * c + a2 * nx);
        f[0] = f[0].wrapping_add(b0 * p + b12 * c);
        f[1] = f[1].wrapping_add(b01 * c + b2 * nx);
        (p, c) = (c, nx);
    }
    let (i, j) = (2 * last, 2 * last + 1);
    acc0[i] = acc0[i].wrapping_add(a0 * p + a12 * c);
    acc0[j] = acc0[j].wrapping_add(a01 * c);
    acc1[i] = acc1[i].wrapping_add(b0 * p + b12 * c);
    acc1[j] = acc1[j].wrapping_add(b01 * c);
}

/// `w0·r[x − 1] + w1·r[x] + w2·r[x + 1]` (inside the row).
#[inline(always)]
fn tap3(r: &[i8], x: usize, [w0, w1, w2]: [i32; 3]) -> i32 {
    w0 * r[x - 1] as i32 + w1 * r[x] as i32 + w2 * r[x + 1] as i32
}

/// The whole-row stride-1 kernel with SMLAD: outputs `x` and `x + 1` from the one word
/// `r[x − 1 .. x + 3]` = (b0, b1, b2, b3), whose SXTB16 halves are e = (b0, b2) and
/// o = (b1, b3): `acc[x] += smlad(e, (w0, w2)) + w1·o.lo`,
/// `acc[x + 1] += smlad(o, (w0, w2)) + w1·e.hi`.
#[inline(never)]
fn taps_s1_dsp(acc: &mut [i32], r: &[i8], w: [i32; 3]) {
    let [w0, w1, w2] = w;
    let n = acc.len();
    let (w02, w1p) = (pack(w0, w2), pack(w1, 0));
    acc[0] = acc[0].wrapping_add(w1 * r[0] as i32 + w2 * r[1] as i32);
    // Interior outputs 1..n − 1 in pairs; the word of pair k starts at byte 2k.
    let pairs = (n - 2) / 2;
    let words = Words::new(r, 2, pairs);
    for (k, a) in acc[1..1 + 2 * pairs].chunks_exact_mut(2).enumerate() {
        let v = words.at(2 * k);
        let (e, o) = (sxtb16(v), sxtb16_ror8(v));
        a[0] = smlabb(o, w1p, smlad(e, w02, a[0] as u32)) as i32;
        a[1] = smlatb(e, w1p, smlad(o, w02, a[1] as u32)) as i32;
    }
    for (x, a) in acc.iter_mut().enumerate().take(n - 1).skip(1 + 2 * pairs) {
        *a = a.wrapping_add(tap3(r, x, w));
    }
    acc[n - 1] = acc[n - 1].wrapping_add(w0 * r[n - 2] as i32 + w1 * r[n - 1] as i32);
}

/// The whole up-sampled row ([`taps_up_row`] with `acc.len() = 2·u.len()`, `u.len() ≥ 2`)
/// with SMLAD: pairs m and m + 1 from the one word `u[m − 1 .. m + 3]` = (b0, b1, b2, b3),
/// repacked into (b0, b1), (b1, b2) and (b2, b3) by PKHBT/PKHTB.
#[inline(never)]
fn taps_up_dsp(acc: &mut [i32], u: &[i8], [w0, w1, w2]: [i32; 3]) {
    let (w01, w12) = (w0 + w1, w1 + w2);
    let (even, odd) = (pack(w0, w12), pack(w01, w2));
    let last = u.len() - 1;
    acc[0] = acc[0].wrapping_add(w12 * u[0] as i32);
    acc[1] = acc[1].wrapping_add(w01 * u[0] as i32 + w2 * u[1] as i32);
    // Pairs m = 1 ..< last read u[m − 1 ..= m + 1]; two at a time read one word.
    let doubles = (last - 1) / 2;
    let words = Words::new(u, 2, doubles);
    for (k, a) in acc[2..2 + 4 * doubles].chunks_exact_mut(4).enumerate() {
        let v = words.at(2 * k);
        let (e, o) = (sxtb16(v), sxtb16_ror8(v));
        let (p01, p12, p23) = (pkhbt_lsl16(e, o), pkhbt(o, e), pkhtb_asr16(o, e));
        a[0] = smlad(p01, even, a[0] as u32) as i32;
        a[1] = smlad(p12, odd, a[1] as u32) as i32;
        a[2] = smlad(p12, even, a[2] as u32) as i32;
        a[3] = smlad(p23, odd, a[3] as u32) as i32;
    }
    for m in 1 + 2 * doubles..last {
        let (p, c, nx) = (u[m - 1] as i32, u[m] as i32, u[m + 1] as i32);
        acc[2 * m] = acc[2 * m].wrapping_add(w0 * p + w12 * c);
        acc[2 * m + 1] = acc[2 * m + 1].wrapping_add(w01 * c + w2 * nx);
    }
    let (p, c) = (u[last - 1] as i32, u[last] as i32);
    acc[2 * last] = acc[2 * last].wrapping_add(w0 * p + w12 * c);
    acc[2 * last + 1] = acc[2 * last + 1].wrapping_add(w01 * c);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic int8 values covering the whole range.
    fn values(n: usize, seed: u32) -> [i8; 64] {
        let mut out = [0i8; 64];
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        for v in out.iter_mut().take(n) {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            *v = (s >> 24) as u8 as i8;
        }
        out
    }

    /// The per-column definition: `Σ_k w[k]·r[c + k − 1]` over the columns inside the row.
    fn expected(r: &[i8], c: isize, w: [i32; 3]) -> i32 {
        (0..3)
            .map(|k| {
                let cc = c + k as isize - 1;
                if cc >= 0 && (cc as usize) < r.len() {
                    w[k] * r[cc as usize] as i32
                } else {
                    0
                }
            })
            .sum()
    }

    const WEIGHTS: [[i32; 3]; 3] = [[127, -128, 1], [-127, 55, -3], [0, 9, 127]];

    #[test]
    fn taps_row_equals_the_definition_at_every_chunk_and_stride() {
        for len in [1usize, 2, 3, 7, 14, 28, 40] {
            let r = values(len, len as u32);
            let r = &r[..len];
            for stride in [1usize, 2] {
                let out_w = len / stride;
                for x0 in 0..out_w {
                    for n in 1..=out_w - x0 {
                        for w in WEIGHTS {
                            let mut acc = [5i32; 40];
                            taps_row(&mut acc[..n], r, x0, stride, w);
                            for (j, &a) in acc[..n].iter().enumerate() {
                                let c = (stride * (x0 + j)) as isize;
                                assert_eq!(a, 5 + expected(r, c, w), "len {len} s {stride}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn taps_up_row_equals_the_definition_on_the_up_sampled_row() {
        for half in [1usize, 2, 3, 7, 14, 20] {
            let u = values(half, 7 + half as u32);
            let u = &u[..half];
            let mut full = [0i8; 40];
            for (c, v) in full.iter_mut().take(2 * half).enumerate() {
                *v = u[c / 2];
            }
            let full = &full[..2 * half];
            for x0 in 0..2 * half {
                for n in 1..=2 * half - x0 {
                    for w in WEIGHTS {
                        let mut acc = [-3i32; 40];
                        taps_up_row(&mut acc[..n], u, x0, w);
                        for (j, &a) in acc[..n].iter().enumerate() {
                            let c = (x0 + j) as isize;
                            assert_eq!(a, -3 + expected(full, c, w), "half {half} x0 {x0}");
                        }
                    }
                }
            }
        }
    }

    /// The SMLAD kernels (over the instructions' portable stand-ins here; the firmware's
    /// QEMU check runs the instructions) equal the definition on every whole-row length.
    #[test]
    fn dsp_kernels_equal_the_definition() {
        for len in 2usize..=40 {
            let r = values(len, 100 + len as u32);
            let r = &r[..len];
            for w in WEIGHTS {
                let mut acc = [11i32; 40];
                taps_s1_dsp(&mut acc[..len], r, w);
                for (x, &a) in acc[..len].iter().enumerate() {
                    assert_eq!(a, 11 + expected(r, x as isize, w), "len {len} x {x}");
                }
            }
        }
        for half in 2usize..=20 {
            let u = values(half, 300 + half as u32);
            let u = &u[..half];
            let mut full = [0i8; 40];
            for (c, v) in full.iter_mut().take(2 * half).enumerate() {
                *v = u[c / 2];
            }
            let full = &full[..2 * half];
            for w in WEIGHTS {
                let mut acc = [-9i32; 40];
                taps_up_dsp(&mut acc[..2 * half], u, w);
                for (x, &a) in acc[..2 * half].iter().enumerate() {
                    assert_eq!(a, -9 + expected(full, x as isize, w), "half {half} x {x}");
                }
            }
        }
    }

    #[test]
    fn taps_rows3_equals_three_single_rows() {
        for len in [2usize, 3, 7, 14, 28] {
            for stride in [1usize, 2] {
                let out_w = len / stride;
                if out_w == 0 {
                    continue;
                }
                let rows = [0u32, 1, 2].map(|k| values(len, 40 + k + len as u32));
                let rows = [&rows[0][..len], &rows[1][..len], &rows[2][..len]];
                for x0 in 0..out_w {
                    let n = out_w - x0;
                    let mut fused = [1i32; 40];
                    taps_rows3(&mut fused[..n], rows, x0, stride, WEIGHTS);
                    let mut single = [1i32; 40];
                    for (r, w) in rows.into_iter().zip(WEIGHTS) {
                        taps_row(&mut single[..n], r, x0, stride, w);
                    }
                    assert_eq!(fused[..n], single[..n], "len {len} stride {stride} x0 {x0}");
                }
            }
        }
    }

    /// The two-channel kernels equal two single-channel calls at every length and offset.
    #[test]
    fn two_channel_kernels_equal_two_single_channels() {
        let w2 = [WEIGHTS[0], WEIGHTS[2]];
        for len in [1usize, 2, 3, 7, 14, 28] {
            let r = values(len, 60 + len as u32);
            let r = &r[..len];
            for stride in [1usize, 2] {
                let out_w = len / stride;
                for x0 in 0..out_w {
                    let n = out_w - x0;
                    let (mut a, mut b) = ([2i32; 40], [-2i32; 40]);
                    taps_row2([&mut a[..n], &mut b[..n]], r, x0, stride, w2);
                    let (mut c, mut d) = ([2i32; 40], [-2i32; 40]);
                    taps_row(&mut c[..n], r, x0, stride, w2[0]);
                    taps_row(&mut d[..n], r, x0, stride, w2[1]);
                    assert_eq!(a[..n], c[..n], "len {len} stride {stride} x0 {x0}");
                    assert_eq!(b[..n], d[..n], "len {len} stride {stride} x0 {x0}");
                }
            }
            let half = len;
            for x0 in 0..2 * half {
                let n = 2 * half - x0;
                let (mut a, mut b) = ([3i32; 64], [-3i32; 64]);
                taps_up_row2([&mut a[..n], &mut b[..n]], r, x0, w2);
                let (mut c, mut d) = ([3i32; 64], [-3i32; 64]);
                taps_up_row(&mut c[..n], r, x0, w2[0]);
                taps_up_row(&mut d[..n], r, x0, w2[1]);
                assert_eq!(a[..n], c[..n], "half {half} x0 {x0}");
                assert_eq!(b[..n], d[..n], "half {half} x0 {x0}");
            }
        }
    }

    #[test]
    fn tap_sums_leave_out_the_columns_outside() {
        let mut s = TapSums::default();
        s.add([1, 2, 4]);
        s.add([8, 16, 32]);
        assert_eq!(s.valid(true, true), 63);
        assert_eq!(s.valid(false, true), 63 - 9);
        assert_eq!(s.valid(true, false), 63 - 36);
        assert_eq!(s.valid(false, false), 63 - 45);
    }
}
