//! The int8 TinyUNet's convs through the row kernels (`kernels::int8_rows`): the accumulators
//! of one output row, for one output channel or two at once, and the loops that hand them to
//! requantization or dequantization (the per-pixel oracle, [`TinyQConv::accumulate`], stays in
//! `int8.rs`).

use crate::kernels::int8_rows::{
    taps_row, taps_row2, taps_rows3, taps_up_row, taps_up_row2, TapSums, ROW_CHUNK,
};
use crate::kernels::int8_tiles::{conv_row2, conv_up_row2, Planes};
use crate::nets::tiny_unet::int8::TinyQConv;
use crate::nets::tiny_unet::sources::{Kernel, Source};

/// Longest output row whose three kernel rows go through one fused pass ([`taps_rows3`]): on
/// the short quarter-resolution rows the fused pass saves the most per call; on longer ones
/// the single-row kernels measured faster on the Cortex-M4 (docs/firmware.md).
const FUSED_MAX_ROW: usize = 8;

/// Whether the two-channel rows of the channels that are not up-sampled go through the
/// register tiles (`kernels::int8_tiles`): on Arm with feature `arm-dsp`, where they cost
/// fewer instructions than the row kernels, and in the core's own tests, which check them
/// against the per-pixel oracle through the whole network on the host (the host's builds
/// keep the row kernels, so the firmware's QEMU checks compare the two).
const USE_TILES: bool = cfg!(any(test, all(feature = "arm-dsp", target_arch = "arm")));

impl TinyQConv<'_> {
    /// [`TinyQConv::accumulate`] of output columns `x0..x0 + acc.len()` of row `y` of channel
    /// `o` into `acc`, one input row and kernel row at a time through the row kernels (up-sampled
    /// channels at half resolution, their kernel rows summed per vertical phase), the zero
    /// point subtracted once per column.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    pub(crate) fn accumulate_row<S: Source>(
        &self,
        src: &S,
        in_h: usize,
        in_w: usize,
        o: usize,
        y: usize,
        x0: usize,
        offset: i32,
        acc: &mut [i32],
    ) {
        acc.fill(self.bias.get(o).saturating_add(offset));
        let mut sums = TapSums::default();
        let up_c = src.up_channels();
        let cy = y * self.stride;
        let kernel_rows = |i: usize| {
            let base = (o * self.in_c + i) * 9;
            (0..3usize).filter_map(move |ky| {
                let iy = (cy + ky).checked_sub(1).filter(|&iy| iy < in_h)?;
                let w = &self.weight[base + 3 * ky..base + 3 * ky + 3];
                Some((
                    iy,
                    [w[0] as i8 as i32, w[1] as i8 as i32, w[2] as i8 as i32],
                ))
            })
        };
        for i in 0..self.in_c {
            if i < up_c {
                // Input rows iy map to half-resolution rows iy / 2: at most two distinct ones,
                // each read once with the summed weights of its kernel rows.
                let mut phases = [(usize::MAX, [0i32; 3]); 2];
                let mut count = 0;
                for (iy, w) in kernel_rows(i) {
                    sums.add(w);
                    if count > 0 && phases[count - 1].0 == iy / 2 {
                        let p = &mut phases[count - 1].1;
                        *p = [p[0] + w[0], p[1] + w[1], p[2] + w[2]];
                    } else {
                        phases[count] = (iy / 2, w);
                        count += 1;
                    }
                }
                for &(n, w) in &phases[..count] {
                    taps_up_row(acc, src.row(i, n), x0, w);
                }
            } else if cy >= 1 && cy + 1 < in_h && acc.len() <= FUSED_MAX_ROW {
                // All three kernel rows read the map: one pass over the accumulators.
                let base = (o * self.in_c + i) * 9;
                let w = &self.weight[base..base + 9];
                let tap = |k: usize| w[k] as i8 as i32;
                let wk = [0, 1, 2].map(|ky| [tap(3 * ky), tap(3 * ky + 1), tap(3 * ky + 2)]);
                wk.iter().for_each(|&k| sums.add(k));
                let rows = [0, 1, 2].map(|ky| src.row(i, cy + ky - 1));
                taps_rows3(acc, rows, x0, self.stride, wk);
            } else {
                for (iy, w) in kernel_rows(i) {
                    sums.add(w);
                    taps_row(acc, src.row(i, iy), x0, self.stride, w);
                }
            }
        }
        let zp = self.input.zero_point;
        for (j, a) in acc.iter_mut().enumerate() {
            let c = (x0 + j) * self.stride;
            *a = a.wrapping_sub(zp.wrapping_mul(sums.valid(c >= 1, c + 1 < in_w)));
        }
    }

    /// [`TinyQConv::accumulate_row`] of output channels `o` and `o + 1` at once into `acc`,
    /// every input row read once for both (the two-channel row kernels); `offsets` are the two
    /// channels' time offsets.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    pub(crate) fn accumulate_row2<S: Source>(
        &self,
        src: &S,
        in_h: usize,
        in_w: usize,
        o: usize,
        y: usize,
        x0: usize,
        offsets: [i32; 2],
        acc: [&mut [i32]; 2],
    ) {
        let [acc0, acc1] = acc;
        acc0.fill(self.bias.get(o).saturating_add(offsets[0]));
        acc1.fill(self.bias.get(o + 1).saturating_add(offsets[1]));
        let mut sums = [TapSums::default(); 2];
        let up_c = src.up_channels();
        let cy = y * self.stride;
        let row_w = |oo: usize, i: usize, ky: usize| {
            let b = (oo * self.in_c + i) * 9 + 3 * ky;
            let w = &self.weight[b..b + 3];
            [w[0] as i8 as i32, w[1] as i8 as i32, w[2] as i8 as i32]
        };
        let valid = |ky: usize| (cy + ky).checked_sub(1).filter(|&iy| iy < in_h);
        // The channels that are not up-sampled through the register tiles, which take off the
        // zero point themselves (so they add nothing to `sums`).
        let tiled = USE_TILES && x0 == 0 && up_c < self.in_c && {
            let mut rows = [(Planes::EMPTY, 0usize); 3];
            let mut count = 0;
            for ky in 0..3 {
                if let Some(iy) = valid(ky) {
                    let (data, stride) = src.plane(up_c, iy);
                    rows[count] = (Planes { data, stride }, ky);
                    count += 1;
                }
            }
            let taps =
                |oo: usize| &self.weight[(oo * self.in_c + up_c) * 9..(oo + 1) * self.in_c * 9];
            let n = self.in_c - up_c;
            let zp = self.input.zero_point;
            let acc = [&mut *acc0, &mut *acc1];
            conv_row2(
                acc,
                &rows[..count],
                [taps(o), taps(o + 1)],
                n,
                in_w,
                self.stride,
                zp,
            )
        };
        // The up-sampled channels through their register tiles, which also subtract the zero
        // point: at most two half rows, each with the kernel rows that read it.
        let up_tiled = USE_TILES && x0 == 0 && up_c > 0 && {
            // Output row y reads half rows y / 2 − 1 and y / 2 (y even) or y / 2 and y / 2 + 1
            // (y odd), where they exist.
            let half = |n: Option<usize>| {
                n.filter(|&n| n < in_h.div_ceil(2)).map(|n| {
                    let (data, stride) = src.plane(0, n);
                    Planes { data, stride }
                })
            };
            let (odd, r) = (y % 2 == 1, y / 2);
            let (upper, lower) = if odd {
                (half(Some(r)), half(Some(r + 1)))
            } else {
                (half(r.checked_sub(1)), half(Some(r)))
            };
            let taps = |oo: usize| &self.weight[oo * self.in_c * 9..(oo * self.in_c + up_c) * 9];
            let acc = [&mut *acc0, &mut *acc1];
            let (zp, half_w) = (self.input.zero_point, in_w / 2);
            conv_up_row2(
                acc,
                upper,
                lower,
                odd,
                [taps(o), taps(o + 1)],
                up_c,
                half_w,
                zp,
            )
        };
        for i in if up_tiled { up_c } else { 0 }..self.in_c {
            if i < up_c {
                // As in accumulate_row: at most two half-resolution rows, weights summed.
                let mut phases = [(usize::MAX, [[0i32; 3]; 2]); 2];
                let mut count = 0;
                for ky in 0..3 {
                    let Some(iy) = valid(ky) else { continue };
                    let w = [row_w(o, i, ky), row_w(o + 1, i, ky)];
                    sums[0].add(w[0]);
                    sums[1].add(w[1]);
                    if count > 0 && phases[count - 1].0 == iy / 2 {
                        let p = &mut phases[count - 1].1;
                        for k in 0..2 {
                            p[k] = [p[k][0] + w[k][0], p[k][1] + w[k][1], p[k][2] + w[k][2]];
                        }
                    } else {
                        phases[count] = (iy / 2, w);
                        count += 1;
                    }
                }
                for &(n, w) in &phases[..count] {
                    taps_up_row2([&mut *acc0, &mut *acc1], src.row(i, n), x0, w);
                }
            } else if tiled {
                // The register tiles below took every channel from here on.
                break;
            } else {
                for ky in 0..3 {
                    let Some(iy) = valid(ky) else { continue };
                    let w = [row_w(o, i, ky), row_w(o + 1, i, ky)];
                    sums[0].add(w[0]);
                    sums[1].add(w[1]);
                    taps_row2([&mut *acc0, &mut *acc1], src.row(i, iy), x0, self.stride, w);
                }
            }
        }
        let zp = self.input.zero_point;
        for (k, acc) in [acc0, acc1].into_iter().enumerate() {
            for (j, a) in acc.iter_mut().enumerate() {
                let c = (x0 + j) * self.stride;
                *a = a.wrapping_sub(zp.wrapping_mul(sums[k].valid(c >= 1, c + 1 < in_w)));
            }
        }
    }

    /// The accumulators of output row `y` of channel `o` with `kernel`, in runs of at most
    /// [`ROW_CHUNK`] columns: `f(x, acc)` for each column `x` of the row.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn for_each_acc<S: Source>(
        &self,
        kernel: Kernel,
        src: &S,
        in_h: usize,
        in_w: usize,
        o: usize,
        y: usize,
        offset: i32,
        mut f: impl FnMut(usize, i32),
    ) {
        let out_w = in_w / self.stride;
        match kernel {
            Kernel::Oracle => {
                for x in 0..out_w {
                    f(x, self.accumulate(src, in_h, in_w, o, y, x, offset));
                }
            }
            Kernel::Rows => {
                let mut run = [0i32; ROW_CHUNK];
                for x0 in (0..out_w).step_by(ROW_CHUNK) {
                    let acc = &mut run[..ROW_CHUNK.min(out_w - x0)];
                    self.accumulate_row(src, in_h, in_w, o, y, x0, offset, acc);
                    for (j, &a) in acc.iter().enumerate() {
                        f(x0 + j, a);
                    }
                }
            }
        }
    }

    /// [`TinyQConv::for_each_acc`] of channels `o` and `o + 1` together (the row kernel
    /// computes both in one pass; the oracle one after the other): `f(k, x, acc)` for channel
    /// `o + k`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn for_each_acc2<S: Source>(
        &self,
        kernel: Kernel,
        src: &S,
        in_h: usize,
        in_w: usize,
        o: usize,
        y: usize,
        offsets: [i32; 2],
        mut f: impl FnMut(usize, usize, i32),
    ) {
        let out_w = in_w / self.stride;
        match kernel {
            Kernel::Oracle => {
                for (k, &offset) in offsets.iter().enumerate() {
                    self.for_each_acc(kernel, src, in_h, in_w, o + k, y, offset, |x, a| f(k, x, a));
                }
            }
            Kernel::Rows => {
                let mut runs = [[0i32; ROW_CHUNK]; 2];
                for x0 in (0..out_w).step_by(ROW_CHUNK) {
                    let n = ROW_CHUNK.min(out_w - x0);
                    let [r0, r1] = &mut runs;
                    let acc = [&mut r0[..n], &mut r1[..n]];
                    self.accumulate_row2(src, in_h, in_w, o, y, x0, offsets, acc);
                    for (k, run) in runs.iter().enumerate() {
                        for (j, &a) in run[..n].iter().enumerate() {
                            f(k, x0 + j, a);
                        }
                    }
                }
            }
        }
    }
}
