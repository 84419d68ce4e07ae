//! Host fast path, weights packed once at construction.
//!
//! For the seed's widths ([`WINOGRAD_MIN_CHANNELS`] and up) the two wide layers run Winograd
//! F(2×2, 3×3) over channels-last maps ([`crate::winograd`]) and the first and last layers run
//! direct loops along the channels; whole batches go through each layer at once, and with the
//! feature `threads` each layer's rows are split over threads.
//!
//! Narrow networks use im2col + `matrixmultiply` sgemm: every 3×3 layer becomes one GEMM `out[o, p] = Σ_k W[o, k]·cols[k, p]` with
//! k = (input channel, ky, kx) and p = output pixel. The transposed convolutions are turned into
//! ordinary convolutions at load time (kernel rotated 180°, in/out swapped), biases are written
//! into the output before the GEMM accumulates onto them (β = 1), and ReLU and the time
//! embedding are applied in one pass afterwards.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use crate::config::SimpleUNetConfig;
use crate::error::{check_len, Result};
use crate::sampler::Denoiser;
use crate::simple_unet::SimpleUNet;
use crate::winograd::{Epilogue, Geometry, Tile, WinogradConv, WinogradScratch};

/// `c = a · b + beta · c` for dense row-major `a` (m×k), `b` (k×n) and `c` (m×n).
///
/// # Panics
/// When a slice is shorter than its matrix (a bug in the caller, not reachable from a checked
/// configuration).
pub(crate) fn sgemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32], beta: f32) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    // SAFETY: the assertion above guarantees that the three slices hold the dense row-major
    // matrices the dimensions and strides describe; `c` is a unique borrow, so it cannot
    // overlap `a` or `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Rotates a ConvTranspose2d kernel `[in, out, 3, 3]` into the equivalent Conv2d kernel
/// `[out, in, 3, 3]` (valid for stride 1, padding 1).
pub fn transpose_kernel_to_conv(w: &[f32], in_c: usize, out_c: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; in_c * out_c * 9];
    for i in 0..in_c {
        for o in 0..out_c {
            for k in 0..9 {
                out[(o * in_c + i) * 9 + (8 - k)] = w[(i * out_c + o) * 9 + k];
            }
        }
    }
    out
}

/// Writes the im2col matrix `[in_c·9, h·w]` of a `[in_c, h, w]` map for a 3×3 stride-1
/// padding-1 convolution.
fn im2col3x3(input: &[f32], in_c: usize, h: usize, w: usize, cols: &mut [f32]) {
    let plane = h * w;
    for i in 0..in_c {
        let src = &input[i * plane..(i + 1) * plane];
        for ky in 0..3 {
            for kx in 0..3 {
                let row = &mut cols[((i * 3 + ky) * 3 + kx) * plane..][..plane];
                for y in 0..h {
                    let dst = &mut row[y * w..(y + 1) * w];
                    let iy = y as isize + ky as isize - 1;
                    if iy < 0 || iy >= h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let s = &src[iy as usize * w..(iy as usize + 1) * w];
                    match kx {
                        0 => {
                            dst[0] = 0.0;
                            dst[1..].copy_from_slice(&s[..w - 1]);
                        }
                        1 => dst.copy_from_slice(s),
                        _ => {
                            dst[..w - 1].copy_from_slice(&s[1..]);
                            dst[w - 1] = 0.0;
                        }
                    }
                }
            }
        }
    }
}

/// Layers with at most this many output channels (the last layer, `hidden1 → c`) skip the
/// GEMM: a one-row GEMM runs at a few GFLOP/s, while shifted row updates vectorise well.
const DIRECT_MAX_OUT: usize = 4;

/// One conv layer packed for GEMM.
#[derive(Clone)]
struct PackedConv {
    in_c: usize,
    out_c: usize,
    /// `[out_c, in_c·9]`, row-major.
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl PackedConv {
    /// `out = bias + W ∗ input` over an `h×w` map, using `cols` as im2col scratch.
    fn run(&self, input: &[f32], h: usize, w: usize, cols: &mut [f32], out: &mut [f32]) {
        if self.out_c <= DIRECT_MAX_OUT {
            return self.run_direct(input, h, w, out);
        }
        let plane = h * w;
        let k = self.in_c * 9;
        im2col3x3(input, self.in_c, h, w, &mut cols[..k * plane]);
        for (chunk, &b) in out.chunks_exact_mut(plane).zip(&self.bias) {
            chunk.fill(b);
        }
        sgemm(
            self.out_c,
            k,
            plane,
            &self.weight,
            &cols[..k * plane],
            out,
            1.0,
        );
    }
}

impl PackedConv {
    /// Direct convolution by shifted row updates: for every input channel and tap, add
    /// `w · input row` to the output row it lands on (zero padding = skipped edges).
    fn run_direct(&self, input: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let plane = h * w;
        for (o, dst) in out.chunks_exact_mut(plane).enumerate().take(self.out_c) {
            dst.fill(self.bias[o]);
            for i in 0..self.in_c {
                let src = &input[i * plane..(i + 1) * plane];
                let taps = &self.weight[(o * self.in_c + i) * 9..][..9];
                for y in 0..h {
                    let d = &mut dst[y * w..(y + 1) * w];
                    for ky in 0..3 {
                        let iy = y as isize + ky as isize - 1;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let s = &src[iy as usize * w..(iy as usize + 1) * w];
                        let (k0, k1, k2) = (taps[ky * 3], taps[ky * 3 + 1], taps[ky * 3 + 2]);
                        for x in 0..w {
                            d[x] += k1 * s[x];
                        }
                        for x in 1..w {
                            d[x] += k0 * s[x - 1];
                        }
                        for x in 0..w - 1 {
                            d[x] += k2 * s[x + 1];
                        }
                    }
                }
            }
        }
    }
}

/// `v[..len]`, growing `v` first if it is shorter (scratch that keeps its largest size, so a
/// smaller layer after a larger one does not refill it).
fn grown(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// Networks whose hidden widths are both at least this use the channels-last Winograd pipeline
/// (enc2 and dec1 by Winograd F(2×2, 3×3), enc1 and dec2 direct); narrower ones run every layer
/// as im2col + sgemm (or direct for the last layer).
pub const WINOGRAD_MIN_CHANNELS: usize = 16;

/// The Winograd output tiles the fast path uses by default.
pub const WINOGRAD_TILE: Tile = Tile::F2;

/// `0..total` cut into `parts` contiguous near-equal ranges.
fn split_range(total: usize, parts: usize, p: usize) -> Range<usize> {
    p * total / parts..(p + 1) * total / parts
}

/// Computes the rows `r` of a layer into `out` (those rows only), with `scratch`.
type RowsFn<'a, S> = dyn Fn(Range<usize>, &mut S, &mut [f32]) + Sync + 'a;

/// Runs `f(rows, scratch, out_part)` over `rows` rows cut into at most `scratch.len()`
/// contiguous ranges ([`split_range`]), one per thread (feature `threads`; one range
/// otherwise). `len_of(r)` is how many values of `out` the rows `r` own; the ranges own
/// consecutive parts of `out` (callers that write into their scratch instead pass an empty
/// `out` and `len_of` = 0).
fn run_split<S: Send>(
    rows: usize,
    out: &mut [f32],
    scratch: &mut [S],
    len_of: &(dyn Fn(Range<usize>) -> usize + Sync),
    f: &RowsFn<'_, S>,
) {
    #[cfg(feature = "threads")]
    let parts = scratch.len().min(rows).max(1);
    #[cfg(feature = "threads")]
    if parts > 1 {
        std::thread::scope(|s| {
            let mut rest = out;
            for (p, sc) in scratch.iter_mut().enumerate().take(parts) {
                let r = split_range(rows, parts, p);
                let (mine, tail) = core::mem::take(&mut rest).split_at_mut(len_of(r.clone()));
                rest = tail;
                if p + 1 == parts {
                    f(r, sc, mine);
                } else {
                    s.spawn(move || f(r, sc, mine));
                }
            }
        });
        return;
    }
    let _ = len_of;
    f(0..rows, &mut scratch[0], out);
}

/// One image of a batch through a network: `f(i, activations, scratch, out_i)`, free to split
/// its layers over `scratch.len()` threads.
type ImageFn<'a, A, S> = dyn Fn(usize, &mut A, &mut [S], &mut [f32]) + Sync + 'a;

/// Runs `one` over `n` images whose outputs are the consecutive `len`-value parts of `out`.
/// With several threads (feature `threads`: `acts` and `scratch` hold one set per thread) and
/// several images, the images are shared out in contiguous runs, one thread per run with its
/// own activations and scratch; otherwise they run one after the other on this thread, each
/// with all the scratch (so a single image's layers can be split).
fn run_images<A: Send, S: Send>(
    n: usize,
    len: usize,
    acts: &mut [A],
    scratch: &mut [S],
    out: &mut [f32],
    one: &ImageFn<'_, A, S>,
) {
    #[cfg(feature = "threads")]
    {
        let parts = scratch.len().min(acts.len()).min(n);
        if parts > 1 {
            std::thread::scope(|s| {
                let mut rest = out;
                for (p, (a, sc)) in acts
                    .iter_mut()
                    .zip(scratch.iter_mut())
                    .enumerate()
                    .take(parts)
                {
                    let r = split_range(n, parts, p);
                    let (mine, tail) = core::mem::take(&mut rest).split_at_mut(r.len() * len);
                    rest = tail;
                    let job = move || {
                        for (i, o) in r.zip(mine.chunks_exact_mut(len)) {
                            one(i, a, core::slice::from_mut(sc), o);
                        }
                    };
                    if p + 1 == parts {
                        job();
                    } else {
                        s.spawn(job);
                    }
                }
            });
            return;
        }
    }
    for (i, o) in out.chunks_exact_mut(len).enumerate().take(n) {
        one(i, &mut acts[0], scratch, o);
    }
}

/// A layer whose output rows are computed independently: `rows_impl` is written once, in
/// portable Rust, and compiled twice by [`dispatch_rows`] (plain, and with AVX2 + FMA enabled).
trait RowKernel {
    /// Output rows `rows` of the `g`-shaped input `x` into `out` (those rows only).
    fn rows_impl(&self, x: &[f32], g: Geometry, rows: Range<usize>, out: &mut [f32]);
}

/// Runs `k.rows_impl` compiled for AVX2 + FMA when `simd` asks for it and the CPU has both,
/// otherwise the portable build.
fn dispatch_rows<K: RowKernel>(
    k: &K,
    x: &[f32],
    g: Geometry,
    rows: Range<usize>,
    out: &mut [f32],
    simd: bool,
) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if simd && crate::simd::avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { rows_avx2(k, x, g, rows, out) };
    }
    let _ = simd;
    k.rows_impl(x, g, rows, out);
}

/// [`RowKernel::rows_impl`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2<K: RowKernel>(
    k: &K,
    x: &[f32],
    g: Geometry,
    rows: Range<usize>,
    out: &mut [f32],
) {
    k.rows_impl(x, g, rows, out);
}

/// The first layer, direct: a `[n][c][h][w]` image to a channels-last `[n][h][w][out]` map,
/// with bias and ReLU.
#[derive(Clone)]
struct DirectIn {
    in_c: usize,
    out_c: usize,
    /// `[in][tap][out]`.
    w: Vec<f32>,
    bias: Vec<f32>,
}

impl DirectIn {
    fn new(weight: &[f32], bias: &[f32], in_c: usize, out_c: usize) -> Self {
        let mut w = vec![0.0f32; in_c * 9 * out_c];
        for o in 0..out_c {
            for i in 0..in_c {
                for tap in 0..9 {
                    w[(i * 9 + tap) * out_c + o] = weight[(o * in_c + i) * 9 + tap];
                }
            }
        }
        Self {
            in_c,
            out_c,
            w,
            bias: bias.to_vec(),
        }
    }

    /// Output rows `rows` (numbered `b·h + y`) into `out` (those rows only).
    fn run_rows(&self, x: &[f32], g: Geometry, rows: Range<usize>, out: &mut [f32], simd: bool) {
        assert!(x.len() >= g.n * self.in_c * g.h * g.w);
        assert!(out.len() >= rows.len() * g.w * self.out_c && rows.end <= g.n * g.h);
        dispatch_rows(self, x, g, rows, out, simd);
    }
}

impl RowKernel for DirectIn {
    #[inline(always)]
    fn rows_impl(&self, x: &[f32], g: Geometry, rows: Range<usize>, out: &mut [f32]) {
        let co = self.out_c;
        let full = co / OUT_CHUNK * OUT_CHUNK;
        for (ri, gr) in rows.enumerate() {
            let (b, y) = (gr / g.h, gr % g.h);
            for xx in 0..g.w {
                let o = &mut out[(ri * g.w + xx) * co..][..co];
                for oc in (0..full).step_by(OUT_CHUNK) {
                    let acc = self.pixel::<OUT_CHUNK>(x, g, b, y, xx, oc);
                    let dst: &mut [f32; OUT_CHUNK] = (&mut o[oc..oc + OUT_CHUNK])
                        .try_into()
                        .expect("chunk length");
                    *dst = acc;
                }
                for (oc, v) in o.iter_mut().enumerate().skip(full) {
                    *v = self.pixel::<1>(x, g, b, y, xx, oc)[0];
                }
            }
        }
    }
}

impl DirectIn {
    /// ReLU(bias + taps) of output channels `oc .. oc + L` at pixel (y, xx) of image `b`.
    #[inline(always)]
    fn pixel<const L: usize>(
        &self,
        x: &[f32],
        g: Geometry,
        b: usize,
        y: usize,
        xx: usize,
        oc: usize,
    ) -> [f32; L] {
        let (ci, co, h, w) = (self.in_c, self.out_c, g.h, g.w);
        let plane = h * w;
        let mut acc = [0.0f32; L];
        acc.copy_from_slice(&self.bias[oc..oc + L]);
        for i in 0..ci {
            let src = &x[(b * ci + i) * plane..][..plane];
            for ky in 0..3 {
                let yy = y as isize + ky as isize - 1;
                if yy < 0 || yy >= h as isize {
                    continue;
                }
                for kx in 0..3 {
                    let xs = xx as isize + kx as isize - 1;
                    if xs < 0 || xs >= w as isize {
                        continue;
                    }
                    let s = src[yy as usize * w + xs as usize];
                    let wr = &self.w[(i * 9 + ky * 3 + kx) * co + oc..][..L];
                    for (a, &wv) in acc.iter_mut().zip(wr) {
                        *a += s * wv;
                    }
                }
            }
        }
        for a in acc.iter_mut() {
            if *a < 0.0 {
                *a = 0.0;
            }
        }
        acc
    }
}

/// Output channels the first layer accumulates at once (two AVX vectors).
const OUT_CHUNK: usize = 16;

/// The last layer, direct: a channels-last `[n][h][w][in]` map to channels-last `[n][h][w][out]`
/// values with bias, each a dot product along the contiguous input channels.
#[derive(Clone)]
struct DirectOut {
    in_c: usize,
    out_c: usize,
    /// `[out][tap][in]`.
    w: Vec<f32>,
    bias: Vec<f32>,
}

/// Lanes of the dot products' partial sums (one AVX vector).
const LANES: usize = 8;

impl DirectOut {
    fn new(weight: &[f32], bias: &[f32], in_c: usize, out_c: usize) -> Self {
        Self {
            in_c,
            out_c,
            w: weight[..out_c * in_c * 9].to_vec(),
            bias: bias.to_vec(),
        }
        .repack()
    }

    /// `[out][in][tap]` → `[out][tap][in]`.
    fn repack(mut self) -> Self {
        let (ci, co) = (self.in_c, self.out_c);
        let mut w = vec![0.0f32; co * 9 * ci];
        for o in 0..co {
            for i in 0..ci {
                for tap in 0..9 {
                    w[(o * 9 + tap) * ci + i] = self.w[(o * ci + i) * 9 + tap];
                }
            }
        }
        self.w = w;
        self
    }

    /// Output rows `rows` (numbered `b·h + y`) into `out` (those rows only).
    fn run_rows(&self, a: &[f32], g: Geometry, rows: Range<usize>, out: &mut [f32], simd: bool) {
        assert!(a.len() >= g.n * g.h * g.w * self.in_c);
        assert!(out.len() >= rows.len() * g.w * self.out_c && rows.end <= g.n * g.h);
        dispatch_rows(self, a, g, rows, out, simd);
    }
}

impl RowKernel for DirectOut {
    #[inline(always)]
    fn rows_impl(&self, a: &[f32], g: Geometry, rows: Range<usize>, out: &mut [f32]) {
        let (ci, co, h, w) = (self.in_c, self.out_c, g.h, g.w);
        let split = ci / LANES * LANES;
        for (ri, gr) in rows.enumerate() {
            let (b, y) = (gr / h, gr % h);
            for xx in 0..w {
                for oc in 0..co {
                    let mut acc = [0.0f32; LANES];
                    let mut rem = 0.0f32;
                    for ky in 0..3 {
                        let yy = y as isize + ky as isize - 1;
                        if yy < 0 || yy >= h as isize {
                            continue;
                        }
                        for kx in 0..3 {
                            let xs = xx as isize + kx as isize - 1;
                            if xs < 0 || xs >= w as isize {
                                continue;
                            }
                            let src = &a[((b * h + yy as usize) * w + xs as usize) * ci..][..ci];
                            let wr = &self.w[(oc * 9 + ky * 3 + kx) * ci..][..ci];
                            for (s, wv) in src[..split]
                                .chunks_exact(LANES)
                                .zip(wr[..split].chunks_exact(LANES))
                            {
                                for l in 0..LANES {
                                    acc[l] += s[l] * wv[l];
                                }
                            }
                            for (s, wv) in src[split..].iter().zip(&wr[split..]) {
                                rem += s * wv;
                            }
                        }
                    }
                    let lanes = ((acc[0] + acc[4]) + (acc[1] + acc[5]))
                        + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
                    out[(ri * w + xx) * co + oc] = self.bias[oc] + (lanes + rem);
                }
            }
        }
    }
}

/// The im2col + sgemm layers of a narrow network (hidden widths below
/// [`WINOGRAD_MIN_CHANNELS`]), `[c][h][w]` maps, one image at a time.
#[derive(Clone)]
struct GemmNet {
    enc1: PackedConv,
    enc2: PackedConv,
    dec1: PackedConv,
    dec2: PackedConv,
    cols: Vec<f32>,
    a1: Vec<f32>,
    a2: Vec<f32>,
    a3: Vec<f32>,
}

/// The channels-last Winograd layers of a wide network.
#[derive(Clone)]
struct WinogradLayers {
    enc1: DirectIn,
    enc2: WinogradConv,
    dec1: WinogradConv,
    dec2: DirectOut,
}

/// Activations of one image, channels-last.
#[derive(Clone, Default)]
struct Activations {
    a1: Vec<f32>,
    a2: Vec<f32>,
    a3: Vec<f32>,
    eps: Vec<f32>,
}

/// The Winograd pipeline with its buffers: one set of activations and scratch per thread.
#[derive(Clone)]
struct WinogradNet {
    layers: WinogradLayers,
    acts: Vec<Activations>,
    scratch: Vec<WinogradScratch>,
}

#[derive(Clone)]
enum Layers {
    Gemm(GemmNet),
    Winograd(WinogradNet),
}

/// A SimpleUNet with weights packed for the host: for the seed's widths, Winograd F(2×2, 3×3)
/// with an AVX2 + FMA micro-kernel (detected at run time; portable kernels otherwise) for the
/// two wide layers and direct loops for the first and last; im2col + sgemm for narrow
/// networks. Owns its scratch buffers (grown to the largest batch seen), so one instance runs
/// one forward pass at a time.
#[derive(Clone)]
pub struct FastSimpleUNet {
    cfg: SimpleUNetConfig,
    layers: Layers,
    time0_w: Vec<f32>,
    time0_b: Vec<f32>,
    time2_w: Vec<f32>,
    time2_b: Vec<f32>,
    hidden: Vec<f32>,
    /// `[n][hidden2]`.
    temb: Vec<f32>,
    simd: bool,
}

impl FastSimpleUNet {
    /// Packs the weights of `net` (Winograd tiles [`WINOGRAD_TILE`]).
    pub fn new(net: &SimpleUNet<'_>) -> Self {
        Self::with_tile(net, WINOGRAD_TILE)
    }

    /// Packs the weights of `net` with Winograd output tiles `tile` for the wide layers.
    ///
    /// The Winograd pipeline runs when the hidden widths are at least
    /// [`WINOGRAD_MIN_CHANNELS`] and the CPU has AVX2 and FMA; otherwise every layer runs as
    /// im2col + `matrixmultiply` sgemm, whose own kernels (SSE, NEON, …) beat the portable
    /// Winograd micro-kernel on such CPUs.
    pub fn with_tile(net: &SimpleUNet<'_>, tile: Tile) -> Self {
        Self::build(net, tile, crate::simd::avx2_fma())
    }

    /// The Winograd pipeline with its portable kernels on any CPU (for tests and timing; the
    /// SIMD kernels stay off), or im2col + sgemm for narrow networks.
    pub fn portable_winograd(net: &SimpleUNet<'_>, tile: Tile) -> Self {
        let mut s = Self::build(net, tile, true);
        s.simd = false;
        s
    }

    fn build(net: &SimpleUNet<'_>, tile: Tile, winograd: bool) -> Self {
        let cfg = *net.config();
        let p = net.params();
        let (c, h1, h2) = (
            cfg.channels as usize,
            cfg.hidden1 as usize,
            cfg.hidden2 as usize,
        );
        let plane = (cfg.height * cfg.width) as usize;
        let dec1_w = transpose_kernel_to_conv(p.dec1_w, h2, h1);
        let dec2_w = transpose_kernel_to_conv(p.dec2_w, h1, c);
        let layers = if winograd && h1 >= WINOGRAD_MIN_CHANNELS && h2 >= WINOGRAD_MIN_CHANNELS {
            Layers::Winograd(WinogradNet {
                layers: WinogradLayers {
                    enc1: DirectIn::new(p.enc1_w, p.enc1_b, c, h1),
                    enc2: WinogradConv::new(p.enc2_w, p.enc2_b, h1, h2, tile),
                    dec1: WinogradConv::new(&dec1_w, p.dec1_b, h2, h1, tile),
                    dec2: DirectOut::new(&dec2_w, p.dec2_b, h1, c),
                },
                acts: vec![Activations::default()],
                scratch: vec![WinogradScratch::default()],
            })
        } else {
            let packed = |in_c, out_c, weight: Vec<f32>, bias: &[f32]| PackedConv {
                in_c,
                out_c,
                weight,
                bias: bias.to_vec(),
            };
            Layers::Gemm(GemmNet {
                enc1: packed(c, h1, p.enc1_w.to_vec(), p.enc1_b),
                enc2: packed(h1, h2, p.enc2_w.to_vec(), p.enc2_b),
                dec1: packed(h2, h1, dec1_w, p.dec1_b),
                dec2: packed(h1, c, dec2_w, p.dec2_b),
                cols: vec![0.0; h1.max(h2).max(c) * 9 * plane],
                a1: vec![0.0; h1 * plane],
                a2: vec![0.0; h2 * plane],
                a3: vec![0.0; h1 * plane],
            })
        };
        Self {
            cfg,
            layers,
            time0_w: p.time0_w.to_vec(),
            time0_b: p.time0_b.to_vec(),
            time2_w: p.time2_w.to_vec(),
            time2_b: p.time2_b.to_vec(),
            hidden: vec![0.0; h2],
            temb: Vec::new(),
            simd: true,
        }
    }

    /// The network's sizes.
    pub fn config(&self) -> &SimpleUNetConfig {
        &self.cfg
    }

    /// Whether this instance runs the Winograd pipeline with the AVX2 + FMA kernels.
    pub fn uses_simd(&self) -> bool {
        self.simd && crate::simd::avx2_fma() && matches!(self.layers, Layers::Winograd(_))
    }

    /// Runs on `n` threads (at least 1; feature `threads`): a batch's images are shared out
    /// between the threads, and a single image's layers are split by rows. Results do not
    /// depend on the thread count: every output value is computed by the same operations.
    /// Only the Winograd pipeline (hidden widths ≥ [`WINOGRAD_MIN_CHANNELS`]) runs threaded.
    #[cfg(feature = "threads")]
    pub fn set_threads(&mut self, n: usize) {
        if let Layers::Winograd(net) = &mut self.layers {
            net.scratch.resize_with(n.max(1), Default::default);
            net.acts.resize_with(n.max(1), Default::default);
        }
    }

    /// Threads a forward pass uses.
    pub fn threads(&self) -> usize {
        match &self.layers {
            Layers::Winograd(net) => net.scratch.len(),
            Layers::Gemm(_) => 1,
        }
    }

    /// Predicted noise for one image; same contract as
    /// [`SimpleUNet::forward_reference`](crate::SimpleUNet::forward_reference).
    pub fn forward(&mut self, x: &[f32], t_in: f32, out: &mut [f32]) -> Result<()> {
        self.forward_batch(x, &[t_in], out)
    }

    /// Predicted noise for `t_in.len()` images (`x` and `out`: the images' `[c][h][w]` values
    /// concatenated), image `i` at network time input `t_in[i]`. Each image's result equals
    /// [`Self::forward`] on that image alone, bit for bit.
    pub fn forward_batch(&mut self, x: &[f32], t_in: &[f32], out: &mut [f32]) -> Result<()> {
        let cfg = self.cfg;
        let n = t_in.len();
        let len = cfg.image_len();
        check_len("input images", n * len, x.len())?;
        check_len("output images", n * len, out.len())?;
        let h2 = cfg.hidden2 as usize;
        self.temb.resize(n * h2, 0.0);
        for (&t, temb) in t_in.iter().zip(self.temb.chunks_exact_mut(h2)) {
            crate::layers::linear(&[t], &self.time0_w, &self.time0_b, &mut self.hidden)?;
            crate::layers::relu(&mut self.hidden);
            crate::layers::linear(&self.hidden, &self.time2_w, &self.time2_b, temb)?;
        }
        let (h, w) = (cfg.height as usize, cfg.width as usize);
        match &mut self.layers {
            Layers::Gemm(net) => {
                for ((xi, oi), temb) in x
                    .chunks_exact(len)
                    .zip(out.chunks_exact_mut(len))
                    .zip(self.temb.chunks_exact(h2))
                {
                    net.forward(xi, temb, h, w, oi);
                }
            }
            Layers::Winograd(net) => {
                net.forward(x, &self.temb, n, (h, w), self.simd, out);
            }
        }
        Ok(())
    }
}

impl GemmNet {
    fn forward(&mut self, x: &[f32], temb: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let plane = h * w;
        self.enc1.run(x, h, w, &mut self.cols, &mut self.a1);
        crate::layers::relu(&mut self.a1);
        self.enc2.run(&self.a1, h, w, &mut self.cols, &mut self.a2);
        for (chunk, &t) in self.a2.chunks_exact_mut(plane).zip(temb) {
            for v in chunk {
                *v = if *v < 0.0 { t } else { *v + t };
            }
        }
        self.dec1.run(&self.a2, h, w, &mut self.cols, &mut self.a3);
        crate::layers::relu(&mut self.a3);
        self.dec2.run(&self.a3, h, w, &mut self.cols, out);
    }
}

impl WinogradNet {
    /// `n` images, one after the other through the whole network (its activations then stay
    /// in the caches; a batch through each layer at once measured slower per image here).
    /// With several threads, a batch's images are shared out, one image's rows split.
    fn forward(
        &mut self,
        x: &[f32],
        temb: &[f32],
        n: usize,
        (h, w): (usize, usize),
        simd: bool,
        out: &mut [f32],
    ) {
        let len = x.len() / n.max(1);
        let h2 = temb.len() / n.max(1);
        let Self {
            layers,
            acts,
            scratch,
        } = self;
        let layers = &*layers;
        run_images(n, len, acts, scratch, out, &|i, acts, sc, o| {
            let (xi, ti) = (&x[i * len..][..len], &temb[i * h2..][..h2]);
            layers.forward(xi, ti, (h, w), simd, acts, sc, o);
        });
    }
}

impl WinogradLayers {
    /// One image through the four layers; each layer's rows are split over `scratch.len()`
    /// threads.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &[f32],
        temb: &[f32],
        (h, w): (usize, usize),
        simd: bool,
        acts: &mut Activations,
        scratch: &mut [WinogradScratch],
        out: &mut [f32],
    ) {
        let (h1, h2) = (self.enc2.in_channels(), self.enc2.out_channels());
        let c = self.dec2.out_c;
        let g = Geometry::new(1, h, w, self.enc2.tile());
        let pixels = h * w;
        acts.a1.resize(pixels * h1, 0.0);
        acts.a2.resize(pixels * h2, 0.0);
        acts.a3.resize(pixels * h1, 0.0);
        acts.eps.resize(pixels * c, 0.0);
        let Activations { a1, a2, a3, eps } = acts;
        let Self {
            enc1,
            enc2,
            dec1,
            dec2,
        } = self;
        run_split(h, a1, scratch, &|r| r.len() * w * h1, &|r, _, o| {
            enc1.run_rows(x, g, r, o, simd)
        });
        let a1 = &*a1;
        let epi = Epilogue {
            relu: true,
            add: Some(temb),
        };
        run_split(
            g.tile_rows(),
            a2,
            scratch,
            &|r| g.out_rows(r).len() * w * h2,
            &|r, s, o| enc2.run_rows(a1, g, r, epi, s, o, simd),
        );
        let a2 = &*a2;
        let epi = Epilogue {
            relu: true,
            add: None,
        };
        run_split(
            g.tile_rows(),
            a3,
            scratch,
            &|r| g.out_rows(r).len() * w * h1,
            &|r, s, o| dec1.run_rows(a2, g, r, epi, s, o, simd),
        );
        let a3 = &*a3;
        run_split(h, eps, scratch, &|r| r.len() * w * c, &|r, _, o| {
            dec2.run_rows(a3, g, r, o, simd)
        });
        // Channels-last ε to the image's [c][h][w] layout.
        for (p, px) in eps.chunks_exact(c).enumerate() {
            for (ch, &v) in px.iter().enumerate() {
                out[ch * pixels + p] = v;
            }
        }
    }
}

impl Denoiser for FastSimpleUNet {
    fn image_len(&self) -> usize {
        self.cfg.image_len()
    }
    fn predict_noise(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> Result<()> {
        self.forward(x, t_in, eps)
    }
}

/// Whether this CPU runs the fast path's AVX2 + FMA kernels (x86-64 with `std`).
pub fn simd_available() -> bool {
    crate::simd::avx2_fma()
}

/// Strides of TinyUNet's enc0, down1, down2 and mid.
const TINY_STRIDES: [usize; 4] = [1, 2, 2, 1];

/// A TinyUNet layer is split over threads only when every thread gets at least this many
/// multiply-adds (about 40 µs of work; a spawn costs tens of microseconds, so the first and
/// last layers and the 7×7 ones of the default network stay on one thread).
const MIN_SPLIT_MACS: usize = 1_500_000;

/// Output channels of one block of [`ShiftedConv`]'s kernel.
const SR: usize = 4;
/// Pixels of one block of [`ShiftedConv`]'s kernel (two AVX vectors; with [`SR`] = 4, eight
/// accumulators, which the FMA latency needs, and room for the operands: wider blocks spill).
const SP: usize = 16;

/// The geometry of a padded channels-first map: `[c][h+2][w+2]` planes with a zero border.
/// Tap (ky, kx) of output pixel `q = y·(w+2) + x` is then element `q + ky·(w+2) + kx` of a
/// plane, so a 3×3 convolution reads shifted contiguous runs instead of an im2col matrix.
#[derive(Clone, Copy)]
struct Grid {
    h: usize,
    w: usize,
}

impl Grid {
    /// Length of a padded row.
    fn pw(self) -> usize {
        self.w + 2
    }

    /// Length of a padded plane.
    fn plane(self) -> usize {
        (self.h + 2) * self.pw()
    }

    /// Values a buffer of `c` padded planes holds: the planes and the slack that the kernel's
    /// last pixel block may read past the last plane (values that only reach discarded
    /// outputs).
    fn len(self, c: usize) -> usize {
        c * self.plane() + SP + 2
    }

    /// Where the interior of a padded map lives.
    fn padded(self) -> Map {
        Map {
            plane: self.plane(),
            row: self.pw(),
            origin: self.pw() + 1,
        }
    }
}

/// Where value (channel, y, x) of a map lives: `channel·plane + y·row + x + origin`.
#[derive(Clone, Copy)]
struct Map {
    plane: usize,
    row: usize,
    origin: usize,
}

impl Map {
    /// A dense `[c][h][w]` map.
    fn dense(h: usize, w: usize) -> Self {
        Map {
            plane: h * w,
            row: w,
            origin: 0,
        }
    }

    /// Index of value (c, y, x).
    fn at(self, c: usize, y: usize, x: usize) -> usize {
        c * self.plane + y * self.row + x + self.origin
    }
}

/// Where a [`ShiftedConv`] finds its taps: output pixel `q = y·row + x` of channel block `o`
/// is `Σ_i Σ_t w[o, i, t] · input[i·plane + offs[t] + q]`.
#[derive(Clone, Copy)]
struct Taps {
    plane: usize,
    row: usize,
    /// The first `n` are used.
    offs: [usize; 9],
    n: usize,
}

impl Taps {
    /// The taps of a 3×3 convolution with stride `stride` (1 or 2) over grid `g`: for stride 1
    /// the padded map itself ([`Grid`]); for stride 2 its four phases ([`split_phases`]), in
    /// which output pixel (y, x) finds tap (ky, kx) at (y + ky/2, x + kx/2) of phase
    /// (ky mod 2, kx mod 2).
    fn new(g: Grid, stride: usize) -> Self {
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
    fn phase(g: Grid, a: usize, b: usize) -> Self {
        let pw = g.pw();
        Taps {
            plane: g.plane(),
            row: pw,
            offs: core::array::from_fn(|t| (t / 2 + a) * pw + t % 2 + b),
            n: 4,
        }
    }

    /// Values per output channel of [`ShiftedConv::run_rows`] for `rows` output rows.
    fn part_len(self, rows: usize) -> usize {
        (rows * self.row).div_ceil(SP) * SP
    }
}

/// A 3×3 padding-1 convolution (stride 1 or 2) computed straight from a padded map ([`Grid`];
/// for stride 2, its phases): each kernel call accumulates [`SR`] output channels × [`SP`]
/// consecutive output pixels over all input channels and taps in registers (one FMA chain per
/// output value, starting from the bias, in the reference's (channel, ky, kx) order), with no
/// im2col and no packing of the input. [`UpConv`] uses it with four taps.
#[derive(Clone)]
struct ShiftedConv {
    in_c: usize,
    out_c: usize,
    stride: usize,
    /// `[out_c.div_ceil(SR)][in_c][taps][SR]`, zero past `out_c`.
    w: Vec<f32>,
    /// `[out_c.div_ceil(SR)·SR]`, zero past `out_c`.
    bias: Vec<f32>,
}

impl ShiftedConv {
    /// From a Conv2d kernel `[out, in, 3, 3]` and bias `[out]`.
    fn new(weight: &[f32], bias: &[f32], in_c: usize, out_c: usize, stride: usize) -> Self {
        Self::packed((in_c, out_c, 9), stride, bias, |o, i, t| {
            weight[(o * in_c + i) * 9 + t]
        })
    }

    /// `taps` taps per input channel, tap `t` of input `i` for output `o` weighing
    /// `weight(o, i, t)`, with `bias` (zero past its end).
    fn packed(
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
    fn out_grid(&self, g: Grid) -> Grid {
        Grid {
            h: g.h / self.stride,
            w: g.w / self.stride,
        }
    }

    /// The output rows `rows` of `bias + W ∗ input` over the taps `taps` (the padded map,
    /// its phases for stride 2, or an [`UpConv`] phase), into `out` as
    /// `[out_c.div_ceil(SR)·SR][np]` with `np = taps.part_len(rows.len())`: value (o, y, x) at
    /// `o·np + (y − rows.start)·taps.row + x`. The columns past the output width, the slack
    /// past the last row and the channels past `out_c` hold values to discard.
    fn run_rows(&self, input: &[f32], taps: Taps, rows: Range<usize>, out: &mut [f32], simd: bool) {
        match taps.n {
            4 => self.run_blocks::<4>(input, taps, rows, out, simd),
            _ => self.run_blocks::<9>(input, taps, rows, out, simd),
        }
    }

    /// [`Self::run_rows`] with `T` taps per input channel.
    fn run_blocks<const T: usize>(
        &self,
        input: &[f32],
        taps: Taps,
        rows: Range<usize>,
        out: &mut [f32],
        simd: bool,
    ) {
        let (ci, plane) = (self.in_c, taps.plane);
        let offs: &[usize; T] = taps.offs[..T].try_into().expect("at most 9 taps");
        let np = taps.part_len(rows.len());
        let q0 = rows.start * taps.row;
        assert!(input.len() >= (ci - 1) * plane + q0 + np + offs.iter().max().unwrap_or(&0));
        for (ob, (w, bias)) in self
            .w
            .chunks_exact(ci * T * SR)
            .zip(self.bias.chunks_exact(SR))
            .enumerate()
        {
            for p in (0..np).step_by(SP) {
                let x = &input[q0 + p..];
                let o = &mut out[ob * SR * np + p..];
                #[cfg(all(feature = "std", target_arch = "x86_64"))]
                if simd && crate::simd::avx2_fma() {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    unsafe { shifted_avx2(ci, plane, offs, x, w, bias, o, np) };
                    continue;
                }
                let _ = simd;
                shifted_portable(ci, plane, offs, x, w, bias, o, np);
            }
        }
    }
}

/// A 3×3 stride-1 convolution over `[up(a), s]`, the 2× nearest-neighbour up-sampling of a map
/// `a` concatenated with a skip map `s` (TinyUNet's up2 and up1). The up-sampling is never
/// formed: output pixel (2y + a', 2x + b') sees `up(a)` through only 2×2 distinct pixels of
/// `a`, so each of the four output phases is a four-tap convolution of `a` with summed
/// weights ([`Taps::phase`]): 4/9 of the multiply-adds of `a`'s channels. `s`'s channels
/// run as an ordinary [`ShiftedConv`] (with the bias), and the epilogue adds the two.
#[derive(Clone)]
struct UpConv {
    skip: ShiftedConv,
    /// Phases (0,0), (0,1), (1,0), (1,1).
    phases: [ShiftedConv; 4],
}

/// `FOLD[a][t]`: the kernel rows (or columns) that tap `t` of phase `a` of an [`UpConv`] sums.
const FOLD: [[&[usize]; 2]; 2] = [[&[0], &[1, 2]], [&[0, 1], &[2]]];

impl UpConv {
    /// From a Conv2d kernel `[out, ca + cs, 3, 3]` over `[up(a), s]` and bias `[out]`.
    fn new(weight: &[f32], bias: &[f32], (ca, cs): (usize, usize), out_c: usize) -> Self {
        let at = |o: usize, i: usize, ky: usize, kx: usize| {
            weight[(o * (ca + cs) + i) * 9 + ky * 3 + kx]
        };
        let skip = ShiftedConv::packed((cs, out_c, 9), 1, bias, |o, i, t| {
            at(o, ca + i, t / 3, t % 3)
        });
        let phases = core::array::from_fn(|ph| {
            let (a, b) = (ph / 2, ph % 2);
            ShiftedConv::packed((ca, out_c, 4), 1, &[], |o, i, t| {
                let mut sum = 0.0f32;
                for &ky in FOLD[a][t / 2] {
                    for &kx in FOLD[b][t % 2] {
                        sum += at(o, i, ky, kx);
                    }
                }
                sum
            })
        });
        Self { skip, phases }
    }
}

/// Rearranges `c` padded planes of grid `g` (even sizes) into their four stride-2 phases, in
/// place of each plane: phase (a, b) holds the plane's values at (2Y + a, 2X + b) as
/// `[(h+2)/2][(w+2)/2]`, the phases in the order (0,0), (0,1), (1,0), (1,1).
fn split_phases(src: &[f32], c: usize, g: Grid, dst: &mut [f32]) {
    let (pw, half) = (g.pw(), g.pw() / 2);
    let pp = g.plane() / 4;
    for (s, d) in src
        .chunks_exact(g.plane())
        .zip(dst.chunks_exact_mut(g.plane()))
        .take(c)
    {
        for (ph, q) in d.chunks_exact_mut(pp).enumerate() {
            let (a, b) = (ph / 2, ph % 2);
            for (yy, qrow) in q.chunks_exact_mut(half).enumerate() {
                let srow = &s[(2 * yy + a) * pw..][..pw];
                for (v, pair) in qrow.iter_mut().zip(srow.chunks_exact(2)) {
                    *v = pair[b];
                }
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

/// Scratch of one thread of [`FastTinyUNet`]: the output of the rows it computes (grown as
/// needed).
#[derive(Clone, Default)]
struct TinyScratch {
    part: Vec<f32>,
}

/// Activations of one image of [`FastTinyUNet`], padded channels-first maps ([`Grid`]).
#[derive(Clone)]
struct TinyActs {
    x: Vec<f32>,
    /// The input of a stride-2 layer, split into phases ([`split_phases`]).
    phases: Vec<f32>,
    s1: Vec<f32>,
    s2: Vec<f32>,
    d2: Vec<f32>,
    m: Vec<f32>,
    u2: Vec<f32>,
    u1: Vec<f32>,
}

impl TinyActs {
    fn new(cfg: &crate::config::TinyUNetConfig) -> Self {
        let c = cfg.channels as usize;
        let [w1, w2, w3] = cfg.widths.map(|v| v as usize);
        let [g1, g2, g3] = tiny_grids(cfg);
        Self {
            x: vec![0.0; g1.len(c)],
            phases: vec![0.0; g1.len(w1).max(g2.len(w2))],
            s1: vec![0.0; g1.len(w1)],
            s2: vec![0.0; g2.len(w2)],
            d2: vec![0.0; g3.len(w3)],
            m: vec![0.0; g3.len(w3)],
            u2: vec![0.0; g2.len(w2)],
            u1: vec![0.0; g1.len(w1)],
        }
    }
}

/// The full, half and quarter resolution grids of a TinyUNet.
fn tiny_grids(cfg: &crate::config::TinyUNetConfig) -> [Grid; 3] {
    let (h, w) = (cfg.height as usize, cfg.width as usize);
    [1, 2, 4].map(|s| Grid { h: h / s, w: w / s })
}

/// The packed weights of a [`FastTinyUNet`], shared by its threads.
#[derive(Clone)]
struct TinyLayers {
    cfg: crate::config::TinyUNetConfig,
    /// enc0, down1, down2, mid.
    enc: [ShiftedConv; 4],
    /// up2, up1.
    dec: [UpConv; 2],
    /// mid1, mid2, … (`mid_blocks − 1` of them).
    extra_mid: Vec<ShiftedConv>,
    out: ShiftedConv,
    time0_w: Vec<f32>,
    time0_b: Vec<f32>,
    time2_w: Vec<f32>,
    time2_b: Vec<f32>,
    /// Every block's time projection, in [`crate::tiny_unet::block`] order.
    temb_w: Vec<Vec<f32>>,
    temb_b: Vec<Vec<f32>>,
    /// Use the AVX2 + FMA kernel where the CPU has it.
    simd: bool,
}

/// `dst = ReLU(conv(input) + proj)` per output channel, or `dst = conv(input)` when `proj` is
/// `None`, for input grid `g` (`input` as [`ShiftedConv::run_rows`] takes it); `dst` is written
/// at map `to`. The output rows are split over up to `scratch.len()` threads (feature
/// `threads`), each computing its rows into its own scratch; the epilogue then gathers the
/// parts. Every output value goes through the same operations whatever the split, so results
/// do not depend on the thread count.
#[allow(clippy::too_many_arguments)]
fn tiny_layer(
    conv: &ShiftedConv,
    input: &[f32],
    g: Grid,
    proj: Option<&[f32]>,
    scratch: &mut [TinyScratch],
    simd: bool,
    dst: &mut [f32],
    to: Map,
) {
    let og = conv.out_grid(g);
    let taps = Taps::new(g, conv.stride);
    let macs = conv.in_c * 9 * conv.out_c * og.h * og.w;
    let parts = scratch.len().min(og.h).min(macs / MIN_SPLIT_MACS).max(1);
    let scratch = &mut scratch[..parts];
    run_split(og.h, &mut [], scratch, &|_| 0, &|r, sc, _| {
        let part = grown(&mut sc.part, conv.bias.len() * taps.part_len(r.len()));
        conv.run_rows(input, taps, r, part, simd);
    });
    for (p, sc) in scratch.iter().enumerate() {
        let rows = split_range(og.h, parts, p);
        let np = taps.part_len(rows.len());
        for o in 0..conv.out_c {
            for (ry, y) in rows.clone().enumerate() {
                let src = &sc.part[o * np + ry * taps.row..][..og.w];
                let d = &mut dst[to.at(o, y, 0)..][..og.w];
                match proj {
                    Some(pr) => {
                        for (d, &s) in d.iter_mut().zip(src) {
                            *d = add_relu(s, pr[o]);
                        }
                    }
                    None => d.copy_from_slice(src),
                }
            }
        }
    }
}

/// `ReLU(v + p)`.
fn add_relu(v: f32, p: f32) -> f32 {
    let s = v + p;
    if s < 0.0 {
        0.0
    } else {
        s
    }
}

/// `dst = ReLU(conv([up(a), s]) + proj)` per output channel for an [`UpConv`]: `a` the padded
/// map of grid `g`, `s` the padded map of the doubled grid; `dst` is written at map `to`. Split
/// over threads by rows of `g` (two output rows each), like [`tiny_layer`].
#[allow(clippy::too_many_arguments)]
fn up_layer(
    conv: &UpConv,
    (a, g): (&[f32], Grid),
    s: &[f32],
    proj: &[f32],
    scratch: &mut [TinyScratch],
    simd: bool,
    dst: &mut [f32],
    to: Map,
) {
    let big = Grid {
        h: 2 * g.h,
        w: 2 * g.w,
    };
    let (skip, ph) = (Taps::new(big, 1), Taps::phase(g, 0, 0));
    let (ca, cs, out_c) = (conv.phases[0].in_c, conv.skip.in_c, conv.skip.out_c);
    let macs = (ca * 4 + cs * 9) * out_c * big.h * big.w;
    let parts = scratch.len().min(g.h).min(macs / MIN_SPLIT_MACS).max(1);
    let scratch = &mut scratch[..parts];
    let cpad = conv.skip.bias.len();
    let lens = |r: &Range<usize>| (skip.part_len(2 * r.len()), ph.part_len(r.len()));
    run_split(g.h, &mut [], scratch, &|_| 0, &|r, sc, _| {
        let (ns, nl) = lens(&r);
        let part = grown(&mut sc.part, cpad * (ns + 4 * nl));
        let (sp, up) = part.split_at_mut(cpad * ns);
        conv.skip
            .run_rows(s, skip, 2 * r.start..2 * r.end, sp, simd);
        for (k, (c, u)) in conv
            .phases
            .iter()
            .zip(up.chunks_exact_mut(cpad * nl))
            .enumerate()
        {
            c.run_rows(a, Taps::phase(g, k / 2, k % 2), r.clone(), u, simd);
        }
    });
    for (p, sc) in scratch.iter().enumerate() {
        let rows = split_range(g.h, parts, p);
        let (ns, nl) = lens(&rows);
        let (sp, up) = sc.part.split_at(cpad * ns);
        for o in 0..out_c {
            for y in 2 * rows.start..2 * rows.end {
                let ry = y - 2 * rows.start;
                let src = &sp[o * ns + ry * skip.row..][..big.w];
                let phase = |b: usize| {
                    let k = (y % 2) * 2 + b;
                    &up[(k * cpad + o) * nl + (ry / 2) * ph.row..][..g.w]
                };
                let (even, odd) = (phase(0), phase(1));
                let d = &mut dst[to.at(o, y, 0)..][..big.w];
                for (((d, s), &e), &q) in d
                    .chunks_exact_mut(2)
                    .zip(src.chunks_exact(2))
                    .zip(even)
                    .zip(odd)
                {
                    d[0] = add_relu(s[0] + e, proj[o]);
                    d[1] = add_relu(s[1] + q, proj[o]);
                }
            }
        }
    }
}

impl TinyLayers {
    /// Output channels of each block, in [`crate::tiny_unet::block`] order.
    fn block_widths(&self) -> impl Iterator<Item = usize> + '_ {
        let [e0, e1, e2, e3] = &self.enc;
        [e0, e1, e2, e3, &self.dec[0].skip, &self.dec[1].skip]
            .into_iter()
            .chain(&self.extra_mid)
            .map(|c| c.out_c)
    }

    /// Length of one image's time projections (all blocks').
    fn proj_len(&self) -> usize {
        self.block_widths().sum()
    }

    /// Every block's time projections at network time input `t_in`, concatenated into
    /// `proj` ([`Self::proj_len`] values), with `emb`, `hidden` and `temb` as scratch.
    fn projections(
        &self,
        t_in: f32,
        (emb, hidden, temb): (&mut [f32], &mut [f32], &mut [f32]),
        proj: &mut [f32],
    ) -> Result<()> {
        use crate::config::{TINY_MAX_PERIOD, TINY_TIME_SCALE};
        crate::layers::sinusoidal_embedding(t_in * TINY_TIME_SCALE, TINY_MAX_PERIOD, emb)?;
        crate::layers::linear(emb, &self.time0_w, &self.time0_b, hidden)?;
        crate::layers::relu(hidden);
        crate::layers::linear(hidden, &self.time2_w, &self.time2_b, temb)?;
        let mut rest = proj;
        for (k, width) in self.block_widths().enumerate() {
            let (pr, tail) = rest.split_at_mut(width);
            crate::layers::linear(temb, &self.temb_w[k], &self.temb_b[k], pr)?;
            rest = tail;
        }
        Ok(())
    }

    /// One image `x` through the network with its time projections `proj`; each layer's rows
    /// are split over `scratch.len()` threads.
    fn forward(
        &self,
        x: &[f32],
        proj: &[f32],
        acts: &mut TinyActs,
        scratch: &mut [TinyScratch],
        out: &mut [f32],
    ) {
        let cfg = self.cfg;
        let (c, [w1, w2, _]) = (cfg.channels as usize, cfg.widths.map(|v| v as usize));
        let [g1, g2, g3] = tiny_grids(&cfg);
        let mut projs = [&[][..]; crate::tiny_unet::block::MAX];
        let mut rest = proj;
        for (pr, width) in projs.iter_mut().zip(self.block_widths()) {
            (*pr, rest) = rest.split_at(width);
        }
        let [p0, p1, p2, p3, p4, p5, extra_projs @ ..] = projs;
        let TinyActs {
            x: xp,
            phases,
            s1,
            s2,
            d2,
            m,
            u2,
            u1,
        } = acts;
        let simd = self.simd;
        let [enc0, down1, down2, mid] = &self.enc;
        let [up2, up1] = &self.dec;
        let dense = Map::dense(g1.h, g1.w);
        copy_into_padded(x, dense, c, g1, xp);
        // enc0 → s1; down1 (on s1's phases) → s2; down2 (on s2's phases) → d2; mid → m.
        tiny_layer(enc0, xp, g1, Some(p0), scratch, simd, s1, g1.padded());
        split_phases(s1, w1, g1, phases);
        tiny_layer(down1, phases, g1, Some(p1), scratch, simd, s2, g2.padded());
        split_phases(s2, w2, g2, phases);
        tiny_layer(down2, phases, g2, Some(p2), scratch, simd, d2, g3.padded());
        tiny_layer(mid, d2, g3, Some(p3), scratch, simd, m, g3.padded());
        // mid1 …: the map passes between m and d2; `m` names the latest.
        let (mut m, mut spare) = (m, d2);
        for (conv, pr) in self.extra_mid.iter().zip(extra_projs) {
            tiny_layer(conv, m, g3, Some(pr), scratch, simd, spare, g3.padded());
            core::mem::swap(&mut m, &mut spare);
        }
        // up2: [up(m), s2] → u2; up1: [up(u2), s1] → u1.
        up_layer(up2, (m, g3), s2, p4, scratch, simd, u2, g2.padded());
        up_layer(up1, (u2, g2), s1, p5, scratch, simd, u1, g1.padded());
        // out, no ReLU.
        tiny_layer(&self.out, u1, g1, None, scratch, simd, out, dense);
    }
}

/// Copies `c` channels of the map `src` (at `from`) into the interior of the padded map `dst`
/// of grid `g`.
fn copy_into_padded(src: &[f32], from: Map, c: usize, g: Grid, dst: &mut [f32]) {
    let to = g.padded();
    for ch in 0..c {
        for y in 0..g.h {
            dst[to.at(ch, y, 0)..][..g.w].copy_from_slice(&src[from.at(ch, y, 0)..][..g.w]);
        }
    }
}

/// A TinyUNet with weights packed for the fast path: every conv computed straight from padded
/// channels-first maps by one kernel ([`ShiftedConv`]: no im2col, no packing, an AVX2 + FMA
/// kernel where the CPU has one), the stride-2 layers over their input's four phases, the
/// up-sampling blocks without forming the up-sampled map ([`UpConv`]), and the time projection
/// and ReLU applied as each layer's output is gathered. (The channels-last Winograd layers of
/// [`FastSimpleUNet`] round more; through a transpose adapter they put TinyUNet's forward
/// property at 1.05e-5 against its 1e-5 bound.) Owns its scratch (one set per thread), so one
/// instance runs one forward pass at a time.
#[derive(Clone)]
pub struct FastTinyUNet {
    layers: TinyLayers,
    emb: Vec<f32>,
    hidden: Vec<f32>,
    temb: Vec<f32>,
    /// `[n][proj_len]`: every image's six time projections.
    proj: Vec<f32>,
    /// One per thread.
    acts: Vec<TinyActs>,
    /// One per thread.
    scratch: Vec<TinyScratch>,
}

impl FastTinyUNet {
    /// Packs the weights of `net`.
    pub fn new(net: &crate::tiny_unet::TinyUNet<'_>) -> Self {
        let cfg = *net.config();
        let p = net.params();
        let c = cfg.channels as usize;
        let [w1, w2, w3] = cfg.widths.map(|v| v as usize);
        let (e, d) = (cfg.emb_dim as usize, cfg.temb_dim as usize);
        let b = &p.blocks;
        use crate::tiny_unet::block::EXTRA_MID;
        let blocks = EXTRA_MID + cfg.mid_blocks as usize - 1;
        let conv = |k: usize, in_c: usize, out_c: usize| {
            ShiftedConv::new(b[k].conv_w, b[k].conv_b, in_c, out_c, TINY_STRIDES[k])
        };
        let up = |k: usize, ca: usize, cs: usize, out_c: usize| {
            UpConv::new(b[k].conv_w, b[k].conv_b, (ca, cs), out_c)
        };
        let layers = TinyLayers {
            cfg,
            enc: [
                conv(0, c, w1),
                conv(1, w1, w2),
                conv(2, w2, w3),
                conv(3, w3, w3),
            ],
            dec: [up(4, w3, w2, w2), up(5, w2, w1, w1)],
            extra_mid: (0..blocks - EXTRA_MID)
                .map(|k| {
                    let b = &b[EXTRA_MID + k];
                    ShiftedConv::new(b.conv_w, b.conv_b, w3, w3, 1)
                })
                .collect(),
            out: ShiftedConv::new(p.out_w, p.out_b, w1, c, 1),
            time0_w: p.time0_w.to_vec(),
            time0_b: p.time0_b.to_vec(),
            time2_w: p.time2_w.to_vec(),
            time2_b: p.time2_b.to_vec(),
            temb_w: b[..blocks].iter().map(|b| b.temb_w.to_vec()).collect(),
            temb_b: b[..blocks].iter().map(|b| b.temb_b.to_vec()).collect(),
            simd: true,
        };
        Self {
            emb: vec![0.0; e],
            hidden: vec![0.0; d],
            temb: vec![0.0; d],
            proj: Vec::new(),
            acts: vec![TinyActs::new(&cfg)],
            scratch: vec![TinyScratch::default()],
            layers,
        }
    }

    /// Packs the weights of `net` for the portable kernels on any CPU (for tests and timing;
    /// the AVX2 + FMA kernel stays off).
    pub fn portable(net: &crate::tiny_unet::TinyUNet<'_>) -> Self {
        let mut s = Self::new(net);
        s.layers.simd = false;
        s
    }

    /// The network's sizes.
    pub fn config(&self) -> &crate::config::TinyUNetConfig {
        &self.layers.cfg
    }

    /// Runs on `n` threads (at least 1; feature `threads`): a batch's images are shared out
    /// between the threads, and a single image's larger layers are split by output rows.
    /// Results do not depend on the thread count: every output value is computed by the same
    /// operations.
    #[cfg(feature = "threads")]
    pub fn set_threads(&mut self, n: usize) {
        let cfg = self.layers.cfg;
        self.scratch.resize_with(n.max(1), Default::default);
        self.acts.resize_with(n.max(1), || TinyActs::new(&cfg));
    }

    /// Threads a forward pass uses.
    pub fn threads(&self) -> usize {
        self.scratch.len()
    }

    /// Predicted noise for one image; same contract as
    /// [`TinyUNet::forward_reference`](crate::TinyUNet::forward_reference).
    pub fn forward(&mut self, x: &[f32], t_in: f32, out: &mut [f32]) -> Result<()> {
        self.forward_batch(x, &[t_in], out)
    }

    /// Predicted noise for `t_in.len()` images (`x` and `out`: the images' `[c][h][w]` values
    /// concatenated), image `i` at network time input `t_in[i]`. Each image's result equals
    /// [`Self::forward`] on that image alone, bit for bit.
    pub fn forward_batch(&mut self, x: &[f32], t_in: &[f32], out: &mut [f32]) -> Result<()> {
        let n = t_in.len();
        let len = self.layers.cfg.image_len();
        check_len("input image", n * len, x.len())?;
        check_len("output image", n * len, out.len())?;
        let pl = self.layers.proj_len();
        grown(&mut self.proj, n * pl);
        for (&t, pr) in t_in.iter().zip(self.proj.chunks_exact_mut(pl)) {
            let time = (&mut self.emb[..], &mut self.hidden[..], &mut self.temb[..]);
            self.layers.projections(t, time, pr)?;
        }
        let Self {
            layers,
            proj,
            acts,
            scratch,
            ..
        } = self;
        let (layers, proj) = (&*layers, &proj[..]);
        run_images(n, len, acts, scratch, out, &|i, a, sc, o| {
            layers.forward(&x[i * len..][..len], &proj[i * pl..][..pl], a, sc, o);
        });
        Ok(())
    }
}

impl Denoiser for FastTinyUNet {
    fn image_len(&self) -> usize {
        self.layers.cfg.image_len()
    }
    fn predict_noise(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> Result<()> {
        self.forward(x, t_in, eps)
    }
}
