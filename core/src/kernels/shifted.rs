//! Shifted-run 3×3 convolutions over padded channels-first maps: each tap reads a contiguous run
//! of the input plane, so no im2col matrix is formed; register-blocked kernels in portable,
//! AVX2 + FMA (x86-64) and SIMD128 (WebAssembly built with `+simd128`) forms.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

/// Output channels of one block of [`ShiftedConv`]'s kernel.
pub(crate) const SR: usize = 4;
/// Pixels of one block of [`ShiftedConv`]'s kernel (two AVX vectors; with [`SR`] = 4, eight
/// accumulators, which the FMA latency needs, and room for the operands: wider blocks spill).
pub(crate) const SP: usize = 16;

/// The geometry of a padded channels-first map: `[c][h+2][w+2]` planes with a zero border.
/// Tap (ky, kx) of output pixel `q = y·(w+2) + x` is then element `q + ky·(w+2) + kx` of a
/// plane, so a 3×3 convolution reads shifted contiguous runs instead of an im2col matrix.
#[derive(Clone, Copy)]
pub(crate) struct Grid {
    pub(crate) h: usize,
    pub(crate) w: usize,
}

impl Grid {
    /// Length of a padded row.
    pub(crate) fn pw(self) -> usize {
        self.w + 2
    }

    /// Length of a padded plane.
    pub(crate) fn plane(self) -> usize {
        (self.h + 2) * self.pw()
    }

    /// Values a buffer of `c` padded planes holds: the planes and the slack that the kernel's
    /// last pixel block may read past the last plane (values that only reach discarded
    /// outputs).
    pub(crate) fn len(self, c: usize) -> usize {
        c * self.plane() + SP + 2
    }

    /// Where the interior of a padded map lives.
    pub(crate) fn padded(self) -> Map {
        Map {
            plane: self.plane(),
            row: self.pw(),
            origin: self.pw() + 1,
        }
    }
}

/// Where value (channel, y, x) of a map lives: `channel·plane + y·row + x + origin`.
#[derive(Clone, Copy)]
pub(crate) struct Map {
    pub(crate) plane: usize,
    pub(crate) row: usize,
    pub(crate) origin: usize,
}

impl Map {
    /// A dense `[c][h][w]` map.
    pub(crate) fn dense(h: usize, w: usize) -> Self {
        Map {
            plane: h * w,
            row: w,
            origin: 0,
        }
    }

    /// Index of value (c, y, x).
    pub(crate) fn at(self, c: usize, y: usize, x: usize) -> usize {
        c * self.plane + y * self.row + x + self.origin
    }
}

/// Where a [`ShiftedConv`] finds its taps: output pixel `q = y·row + x` of channel block `o`
/// is `Σ_i Σ_t w[o, i, t] · input[i·plane + offs[t] + q]`.
#[derive(Clone, Copy)]
pub(crate) struct Taps {
    pub(crate) plane: usize,
    pub(crate) row: usize,
    /// The first `n` are used.
    pub(crate) offs: [usize; 9],
    pub(crate) n: usize,
}

impl Taps {
    /// The taps of a 3×3 convolution with stride `stride` (1 or 2) over grid `g`: for stride 1
    /// the padded map itself ([`Grid`]); for stride 2 its four phases ([`split_phases`]), in
    /// which output pixel (y, x) finds tap (ky, kx) at (y + ky/2, x + kx/2) of phase
    /// (ky mod 2, kx mod 2).
    pub(crate) fn new(g: Grid, stride: usize) -> Self {
        if stride == 1 {
            let pw = g.pw();
            return Taps {
                plane: g.plane(),
                row: pw,
                offs: core::array::from_fn(|t| (t / 3) * pw + t % 3),
                n: 9,
            };
        }
        let (row, pp) = (g.pw() / 2, g.plane() / 4);
        Taps {
            plane: g.plane(),
            row,
            offs: core::array::from_fn(|t| {
                let (ky, kx) = (t / 3, t % 3);
                ((ky % 2) * 2 + kx % 2) * pp + (ky / 2) * row + kx / 2
            }),
            n: 9,
        }
    }

    /// The four taps (ty, tx) ∈ {0, 1}² of phase (a, b) of a 3×3 convolution over the 2×
    /// nearest-neighbour up-sampling of the padded map of grid `g` ([`UpConv`]): output pixel
    /// (2y + a, 2x + b) of the up-sampled map reads only pixels (y + ty + a − 1,
    /// x + tx + b − 1) of `g`.
    pub(crate) fn phase(g: Grid, a: usize, b: usize) -> Self {
        let pw = g.pw();
        Taps {
            plane: g.plane(),
            row: pw,
            offs: core::array::from_fn(|t| (t / 2 + a) * pw + t % 2 + b),
            n: 4,
        }
    }

    /// Values per output channel of [`ShiftedConv::run_rows`] for `rows` output rows.
    pub(crate) fn part_len(self, rows: usize) -> usize {
        (rows * self.row).div_ceil(SP) * SP
    }
}

/// A 3×3 padding-1 convolution (stride 1 or 2) computed straight from a padded map ([`Grid`];
/// for stride 2, its phases): each kernel call accumulates [`SR`] output channels × [`SP`]
/// consecutive output pixels over all input channels and taps in registers (one FMA chain per
/// output value, starting from the bias, in the reference's (channel, ky, kx) order), with no
/// im2col and no packing of the input. [`UpConv`] uses it with four taps.
#[derive(Clone)]
pub(crate) struct ShiftedConv {
    pub(crate) in_c: usize,
    pub(crate) out_c: usize,
    pub(crate) stride: usize,
    /// `[out_c.div_ceil(SR)][in_c][taps][SR]`, zero past `out_c`.
    pub(crate) w: Vec<f32>,
    /// `[out_c.div_ceil(SR)·SR]`, zero past `out_c`.
    pub(crate) bias: Vec<f32>,
}

impl ShiftedConv {
    /// From a Conv2d kernel `[out, in, 3, 3]` and bias `[out]`.
    pub(crate) fn new(
        weight: &[f32],
        bias: &[f32],
        in_c: usize,
        out_c: usize,
        stride: usize,
    ) -> Self {
        Self::packed((in_c, out_c, 9), stride, bias, |o, i, t| {
            weight[(o * in_c + i) * 9 + t]
        })
    }

    /// `taps` taps per input channel, tap `t` of input `i` for output `o` weighing
    /// `weight(o, i, t)`, with `bias` (zero past its end).
    pub(crate) fn packed(
        (in_c, out_c, taps): (usize, usize, usize),
        stride: usize,
        bias: &[f32],
        weight: impl Fn(usize, usize, usize) -> f32,
    ) -> Self {
        let blocks = out_c.div_ceil(SR);
        let mut w = vec![0.0f32; blocks * in_c * taps * SR];
        for o in 0..out_c {
            for i in 0..in_c {
                for t in 0..taps {
                    w[(((o / SR) * in_c + i) * taps + t) * SR + o % SR] = weight(o, i, t);
                }
            }
        }
        let mut b = vec![0.0f32; blocks * SR];
        b[..bias.len()].copy_from_slice(bias);
        Self {
            in_c,
            out_c,
            stride,
            w,
            bias: b,
        }
    }

    /// The output grid for input grid `g`.
    pub(crate) fn out_grid(&self, g: Grid) -> Grid {
        Grid {
            h: g.h / self.stride,
            w: g.w / self.stride,
        }
    }

    /// [`Self::run_channel_blocks`] of every output channel block.
    #[cfg(test)]
    pub(crate) fn run_rows(
        &self,
        input: &[f32],
        taps: Taps,
        rows: Range<usize>,
        out: &mut [f32],
        simd: bool,
    ) {
        self.run_channel_blocks(input, taps, rows, 0..self.blocks(), out, simd);
    }

    /// Blocks of [`SR`] output channels (the last one padded with zero weights).
    pub(crate) fn blocks(&self) -> usize {
        self.bias.len() / SR
    }

    /// The output rows `rows` of `bias + W ∗ input` over the taps `taps` (the padded map,
    /// its phases for stride 2, or an [`UpConv`] phase) for the output channel blocks `blocks`
    /// (channels `SR · blocks.start ..`), into `out` as `[blocks.len()·SR][np]` with
    /// `np = taps.part_len(rows.len())`: value (o, y, x) at
    /// `(o − SR · blocks.start)·np + (y − rows.start)·taps.row + x`. The columns past the
    /// output width, the slack past the last row and the channels past `out_c` hold values to
    /// discard.
    pub(crate) fn run_channel_blocks(
        &self,
        input: &[f32],
        taps: Taps,
        rows: Range<usize>,
        blocks: Range<usize>,
        out: &mut [f32],
        simd: bool,
    ) {
        match taps.n {
            4 => self.run_blocks::<4>(input, taps, rows, blocks, out, simd),
            _ => self.run_blocks::<9>(input, taps, rows, blocks, out, simd),
        }
    }

    /// [`Self::run_channel_blocks`] with `T` taps per input channel.
    fn run_blocks<const T: usize>(
        &self,
        input: &[f32],
        taps: Taps,
        rows: Range<usize>,
        blocks: Range<usize>,
        out: &mut [f32],
        simd: bool,
    ) {
        let (ci, plane) = (self.in_c, taps.plane);
        let offs: &[usize; T] = taps.offs[..T].try_into().expect("at most 9 taps");
        let np = taps.part_len(rows.len());
        let q0 = rows.start * taps.row;
        assert!(input.len() >= (ci - 1) * plane + q0 + np + offs.iter().max().unwrap_or(&0));
        let (b0, nb) = (blocks.start, blocks.len());
        for (ob, (w, bias)) in self
            .w
            .chunks_exact(ci * T * SR)
            .zip(self.bias.chunks_exact(SR))
            .skip(b0)
            .take(nb)
            .enumerate()
        {
            let mut p = 0;
            while p < np {
                let x = &input[q0 + p..];
                let o = &mut out[ob * SR * np + p..];
                #[cfg(all(feature = "std", target_arch = "x86_64"))]
                if simd && p + 2 * SP <= np && crate::kernels::simd::avx512f() {
                    // SAFETY: the CPU supports AVX-512F (checked just above).
                    unsafe { shifted_avx512(ci, plane, offs, x, w, bias, o, np) };
                    p += 2 * SP;
                    continue;
                }
                p += SP;
                #[cfg(all(feature = "std", target_arch = "x86_64"))]
                if simd && crate::kernels::simd::avx2_fma() {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    unsafe { shifted_avx2(ci, plane, offs, x, w, bias, o, np) };
                    continue;
                }
                #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                if simd {
                    shifted_simd128(ci, plane, offs, x, w, bias, o, np);
                    continue;
                }
                let _ = simd;
                shifted_portable(ci, plane, offs, x, w, bias, o, np);
            }
        }
    }
}

/// [`ShiftedConv`]'s kernel, portable form: `out[r·np + l] = bias[r] + Σ_i Σ_t w[(i·T + t)·SR
/// + r] · x[i·plane + offs[t] + l]` for `r < SR`, `l < SP`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn shifted_portable<const T: usize>(
    in_c: usize,
    plane: usize,
    offs: &[usize; T],
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    out: &mut [f32],
    np: usize,
) {
    let mut acc = [[0.0f32; SP]; SR];
    for (a, &b) in acc.iter_mut().zip(bias) {
        *a = [b; SP];
    }
    for (i, wi) in w[..in_c * T * SR].chunks_exact(T * SR).enumerate() {
        for (&off, wr) in offs.iter().zip(wi.chunks_exact(SR)) {
            let xs = &x[i * plane + off..][..SP];
            for (a, &wv) in acc.iter_mut().zip(wr) {
                for (a, &xv) in a.iter_mut().zip(xs) {
                    *a += wv * xv;
                }
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        out[r * np..][..SP].copy_from_slice(a);
    }
}

/// [`ShiftedConv`]'s kernel with AVX2 and FMA: the sums of [`shifted_portable`] in the same
/// order, each one FMA chain.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[allow(clippy::too_many_arguments)]
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn shifted_avx2<const T: usize>(
    in_c: usize,
    plane: usize,
    offs: &[usize; T],
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    out: &mut [f32],
    np: usize,
) {
    use core::arch::x86_64::*;
    const NV: usize = SP / 8;
    let reach = offs.iter().max().copied().unwrap_or(0);
    assert!(in_c >= 1 && x.len() >= (in_c - 1) * plane + reach + SP);
    assert!(w.len() >= in_c * T * SR && bias.len() >= SR && out.len() >= (SR - 1) * np + SP);
    let mut acc = [[_mm256_setzero_ps(); NV]; SR];
    for (a, &b) in acc.iter_mut().zip(bias) {
        *a = [_mm256_set1_ps(b); NV];
    }
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    for i in 0..in_c {
        for (t, &off) in offs.iter().enumerate() {
            // SAFETY: i·plane + off + SP ≤ (in_c − 1)·plane + reach + SP ≤ x.len(), and
            // (i·T + t)·SR + SR ≤ in_c·T·SR ≤ w.len() (both asserted above).
            unsafe {
                let xr = xp.add(i * plane + off);
                let mut xv = [_mm256_setzero_ps(); NV];
                for (v, xv) in xv.iter_mut().enumerate() {
                    *xv = _mm256_loadu_ps(xr.add(8 * v));
                }
                let wr = wp.add((i * T + t) * SR);
                for (r, a) in acc.iter_mut().enumerate() {
                    let b = _mm256_broadcast_ss(&*wr.add(r));
                    for (a, &xv) in a.iter_mut().zip(&xv) {
                        *a = _mm256_fmadd_ps(xv, b, *a);
                    }
                }
            }
        }
    }
    let op = out.as_mut_ptr();
    for (r, a) in acc.iter().enumerate() {
        for (v, &a) in a.iter().enumerate() {
            // SAFETY: r·np + 8·v + 8 ≤ (SR − 1)·np + SP ≤ out.len() (asserted above).
            unsafe { _mm256_storeu_ps(op.add(r * np + 8 * v), a) };
        }
    }
}

/// Two blocks of [`ShiftedConv`]'s kernel at once with AVX-512F (`2·SP` pixels, one 16-lane
/// vector each per channel: eight accumulators, as the AVX2 kernel has): every output value is
/// the same FMA chain in the same order as in [`shifted_avx2`], so the same bits.
///
/// # Safety
/// The CPU must support AVX-512F.
#[allow(clippy::too_many_arguments)]
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx512f")]
unsafe fn shifted_avx512<const T: usize>(
    in_c: usize,
    plane: usize,
    offs: &[usize; T],
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    out: &mut [f32],
    np: usize,
) {
    use core::arch::x86_64::*;
    /// 16-lane vectors per channel: the two blocks.
    const NV: usize = 2 * SP / 16;
    let reach = offs.iter().max().copied().unwrap_or(0);
    assert!(in_c >= 1 && x.len() >= (in_c - 1) * plane + reach + 2 * SP);
    assert!(w.len() >= in_c * T * SR && bias.len() >= SR && out.len() >= (SR - 1) * np + 2 * SP);
    let mut acc = [[_mm512_setzero_ps(); NV]; SR];
    for (a, &b) in acc.iter_mut().zip(bias) {
        *a = [_mm512_set1_ps(b); NV];
    }
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    for i in 0..in_c {
        for (t, &off) in offs.iter().enumerate() {
            // SAFETY: i·plane + off + 2·SP ≤ (in_c − 1)·plane + reach + 2·SP ≤ x.len(), and
            // (i·T + t)·SR + SR ≤ in_c·T·SR ≤ w.len() (both asserted above).
            unsafe {
                let xr = xp.add(i * plane + off);
                let mut xv = [_mm512_setzero_ps(); NV];
                for (v, xv) in xv.iter_mut().enumerate() {
                    *xv = _mm512_loadu_ps(xr.add(16 * v));
                }
                let wr = wp.add((i * T + t) * SR);
                for (r, a) in acc.iter_mut().enumerate() {
                    let b = _mm512_set1_ps(*wr.add(r));
                    for (a, &xv) in a.iter_mut().zip(&xv) {
                        *a = _mm512_fmadd_ps(xv, b, *a);
                    }
                }
            }
        }
    }
    let op = out.as_mut_ptr();
    for (r, a) in acc.iter().enumerate() {
        for (v, &a) in a.iter().enumerate() {
            // SAFETY: r·np + 16·v + 16 ≤ (SR − 1)·np + 2·SP ≤ out.len() (asserted above).
            unsafe { _mm512_storeu_ps(op.add(r * np + 16 * v), a) };
        }
    }
}

/// [`ShiftedConv`]'s kernel with WebAssembly's SIMD128: the products and sums of
/// [`shifted_portable`] in the same order, four lanes at a time. SIMD128 has no fused
/// multiply-add, so every value rounds as in the portable kernel: the results are the same
/// bits (the page's test compares them with the host's portable path). The block's pixels go
/// in two halves of eight, so that the accumulators (4 channels × 2 vectors) and the operands
/// fit the 16 vector registers a browser's x86-64 code has.
#[allow(clippy::too_many_arguments)]
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn shifted_simd128<const T: usize>(
    in_c: usize,
    plane: usize,
    offs: &[usize; T],
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    out: &mut [f32],
    np: usize,
) {
    use core::arch::wasm32::*;
    /// Vectors of four pixels per half.
    const NV: usize = 2;
    let reach = offs.iter().max().copied().unwrap_or(0);
    assert!(in_c >= 1 && x.len() >= (in_c - 1) * plane + reach + SP);
    assert!(w.len() >= in_c * T * SR && bias.len() >= SR && out.len() >= (SR - 1) * np + SP);
    let (xp, op) = (x.as_ptr(), out.as_mut_ptr());
    for half in (0..SP).step_by(4 * NV) {
        let mut acc = [[f32x4_splat(0.0); NV]; SR];
        for (a, &b) in acc.iter_mut().zip(bias) {
            *a = [f32x4_splat(b); NV];
        }
        for i in 0..in_c {
            for (t, &off) in offs.iter().enumerate() {
                let mut xv = [f32x4_splat(0.0); NV];
                for (v, xv) in xv.iter_mut().enumerate() {
                    // SAFETY: i·plane + off + half + 4·v + 4 ≤ (in_c − 1)·plane + reach + SP
                    // ≤ x.len() (asserted above); v128_load has no alignment requirement.
                    *xv =
                        unsafe { v128_load(xp.add(i * plane + off + half + 4 * v) as *const v128) };
                }
                let wr = &w[(i * T + t) * SR..][..SR];
                for (a, &wv) in acc.iter_mut().zip(wr) {
                    let b = f32x4_splat(wv);
                    for (a, &xv) in a.iter_mut().zip(&xv) {
                        *a = f32x4_add(*a, f32x4_mul(b, xv));
                    }
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            for (v, &a) in a.iter().enumerate() {
                // SAFETY: r·np + half + 4·v + 4 ≤ (SR − 1)·np + SP ≤ out.len() (asserted above).
                unsafe { v128_store(op.add(r * np + half + 4 * v) as *mut v128, a) };
            }
        }
    }
}

#[cfg(all(test, feature = "std", target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Deterministic values in [−1, 1).
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(3);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The layer through `run_rows` (AVX-512F on two blocks at a time where the CPU has it)
    /// equals the AVX2 kernel run block by block, bit for bit, on every grid the TinyUNet uses
    /// and at both strides and the up-sampling phases' four taps.
    #[test]
    fn avx512_blocks_equal_the_avx2_kernel_bit_for_bit() {
        if !(crate::kernels::simd::avx2_fma() && crate::kernels::simd::avx512f()) {
            return;
        }
        for (side, in_c, out_c, stride, taps) in [
            (28, 1, 24, 1, 9),
            (28, 24, 64, 2, 9),
            (14, 64, 56, 2, 9),
            (7, 56, 56, 1, 9),
            (14, 56, 64, 1, 4),
            (28, 24, 1, 1, 9),
        ] {
            let g = Grid { h: side, w: side };
            let tp = match (taps, stride) {
                (4, _) => Taps::phase(g, 1, 0),
                (_, s) => Taps::new(g, s),
            };
            let weight = values(out_c * in_c * taps, side as u32 + in_c as u32);
            let bias = values(out_c, 7);
            let conv = ShiftedConv::packed((in_c, out_c, taps), stride, &bias, |o, i, t| {
                weight[(o * in_c + i) * taps + t]
            });
            let input = values(g.len(in_c), 11 + side as u32);
            let rows = 0..side / stride;
            let np = tp.part_len(rows.len());
            let blocks = conv.bias.len();
            let mut fast = vec![0.0f32; blocks * np];
            conv.run_rows(&input, tp, rows.clone(), &mut fast, true);
            let mut plain = vec![0.0f32; blocks * np];
            let offs: [usize; 9] = tp.offs;
            let q0 = rows.start * tp.row;
            for (ob, (w, b)) in conv
                .w
                .chunks_exact(in_c * taps * SR)
                .zip(conv.bias.chunks_exact(SR))
                .enumerate()
            {
                for p in (0..np).step_by(SP) {
                    let (x, o) = (&input[q0 + p..], &mut plain[ob * SR * np + p..]);
                    // SAFETY: the CPU has AVX2 and FMA (checked above).
                    unsafe {
                        match taps {
                            4 => shifted_avx2::<4>(
                                in_c,
                                tp.plane,
                                offs[..4].try_into().unwrap(),
                                x,
                                w,
                                b,
                                o,
                                np,
                            ),
                            _ => shifted_avx2::<9>(in_c, tp.plane, &offs, x, w, b, o, np),
                        }
                    }
                }
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&fast),
                bits(&plain),
                "{side}×{side}, {in_c}→{out_c}, stride {stride}, {taps} taps"
            );
        }
    }
}
