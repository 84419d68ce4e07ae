//! The x86-64 kernels of the host int8 executor: AVX2 (8 lanes) and AVX-512 VNNI (16 lanes).

use core::arch::x86_64::*;

use super::{Layout, RowPlan, LANES, MAX_VECTORS};

/// [`super::portable_row_sums`] with `V` vectors of eight lanes per output row.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn row_sums_avx2<const V: usize>(
    plan: &RowPlan<'_>,
    l: &Layout,
    rows: &[u32],
) -> [i32; LANES * MAX_VECTORS] {
    let mut acc = [_mm256_setzero_si256(); V];
    // Adds `Σ_v madd(src[LANES · v ..], w)` to the accumulators.
    let mut madd = |src: &[u32], w: __m256i| {
        let src = &src[..LANES * V];
        for (v, a) in acc.iter_mut().enumerate() {
            // SAFETY: `src` holds `LANES · V` words; an unaligned load of eight of them
            // at `LANES · v` stays inside it.
            let x = unsafe { _mm256_loadu_si256(src.as_ptr().add(LANES * v).cast()) };
            *a = _mm256_add_epi32(*a, _mm256_madd_epi16(x, w));
        }
    };
    let up_pairs = plan.up.len() / 4;
    for &(slot, iy) in plan.up_rows {
        for u in 0..up_pairs {
            let base = (iy * l.pairs + u) * l.block;
            let w = &plan.up[(slot * up_pairs + u) * 2..][..2];
            // Even lanes the low word, odd lanes the high word.
            madd(&rows[base..], _mm256_set1_epi64x(w[0] as i64));
            madd(&rows[base + 2..], _mm256_set1_epi64x(w[1] as i64));
        }
    }
    let plain_pairs = plan.plain.len() / 9;
    for &(ky, iy) in plan.plain_rows {
        for q in 0..plain_pairs {
            let base = (iy * l.pairs + up_pairs + q) * l.block;
            let wk = &plan.plain[(ky * plain_pairs + q) * 3..][..3];
            for (kx, &wp) in wk.iter().enumerate() {
                madd(&rows[l.tap(base, kx)..], _mm256_set1_epi32(wp as i32));
            }
        }
    }
    let mut out = [0i32; LANES * MAX_VECTORS];
    for (v, a) in acc.iter().enumerate() {
        // SAFETY: `out` holds `LANES · MAX_VECTORS ≥ LANES · V` lanes.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(LANES * v).cast(), *a) };
    }
    out
}

/// [`super::portable_row_sums`] with `V` vectors of sixteen lanes per output row, the
/// multiply-add and the sum in one `vpdpwssd` (no saturation: the pairs' sums are far from
/// the int32 limits).
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512 VNNI.
#[target_feature(enable = "avx512f,avx512vnni")]
pub(super) unsafe fn row_sums_vnni<const V: usize>(
    plan: &RowPlan<'_>,
    l: &Layout,
    rows: &[u32],
) -> [i32; LANES * MAX_VECTORS] {
    const WIDE: usize = 2 * LANES;
    // One chain of sums per tap: `vpdpwssd` waits for its accumulator, so three
    // independent chains per vector keep the multiplier busy.
    let mut acc = [[_mm512_setzero_si512(); V]; 3];
    let mut dot = |chain: usize, src: &[u32], w: __m512i| {
        let src = &src[..WIDE * V];
        for (v, a) in acc[chain].iter_mut().enumerate() {
            // SAFETY: `src` holds `WIDE · V` words; an unaligned load of sixteen of them
            // at `WIDE · v` stays inside it.
            let x = unsafe { _mm512_loadu_si512(src.as_ptr().add(WIDE * v).cast()) };
            *a = _mm512_dpwssd_epi32(*a, x, w);
        }
    };
    let up_pairs = plan.up.len() / 4;
    for &(slot, iy) in plan.up_rows {
        for u in 0..up_pairs {
            let base = (iy * l.pairs + u) * l.block;
            let w = &plan.up[(slot * up_pairs + u) * 2..][..2];
            dot(0, &rows[base..], _mm512_set1_epi64(w[0] as i64));
            dot(2, &rows[base + 2..], _mm512_set1_epi64(w[1] as i64));
        }
    }
    let plain_pairs = plan.plain.len() / 9;
    for &(ky, iy) in plan.plain_rows {
        for q in 0..plain_pairs {
            let base = (iy * l.pairs + up_pairs + q) * l.block;
            let wk = &plan.plain[(ky * plain_pairs + q) * 3..][..3];
            for (kx, &wp) in wk.iter().enumerate() {
                dot(kx, &rows[l.tap(base, kx)..], _mm512_set1_epi32(wp as i32));
            }
        }
    }
    let mut sum = acc[0];
    for (s, (b, c)) in sum.iter_mut().zip(acc[1].iter().zip(&acc[2])) {
        *s = _mm512_add_epi32(*s, _mm512_add_epi32(*b, *c));
    }
    let mut out = [0i32; LANES * MAX_VECTORS];
    for (v, a) in sum.iter().enumerate() {
        // SAFETY: `out` holds `LANES · MAX_VECTORS ≥ WIDE · V` lanes (V ≤ 2).
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(WIDE * v).cast(), *a) };
    }
    out
}
