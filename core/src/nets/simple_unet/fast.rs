//! Host fast path, weights packed once at construction.
//!
//! For the seed's widths ([`WINOGRAD_MIN_CHANNELS`] and up) the two wide layers run Winograd
//! F(2×2, 3×3) over channels-last maps ([`crate::kernels::winograd`]) and the first and last layers run
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

use crate::diffusion::Denoiser;
use crate::error::{check_len, Result};
use crate::kernels::gemm::{transpose_kernel_to_conv, PackedConv};
use crate::kernels::reference::for_each_tap;
use crate::kernels::rows::{run_images, run_split, RowKernel, Workers};
use crate::kernels::winograd::{Epilogue, Geometry, Tile, WinogradConv, WinogradScratch};
use crate::nets::simple_unet::{SimpleUNet, SimpleUNetConfig};

/// Networks whose hidden widths are both at least this use the channels-last Winograd pipeline
/// (enc2 and dec1 by Winograd F(2×2, 3×3), enc1 and dec2 direct); narrower ones run every layer
/// as im2col + sgemm (or direct for the last layer).
pub const WINOGRAD_MIN_CHANNELS: usize = 16;

/// The Winograd output tiles the fast path uses by default.
pub const WINOGRAD_TILE: Tile = Tile::F2;

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
}

impl RowKernel for DirectIn {
    fn channels(&self) -> (usize, usize) {
        (self.in_c, self.out_c)
    }

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
            for_each_tap!(y, xx, h, w, |k, yy, xs| {
                let s = src[yy * w + xs];
                let wr = &self.w[(i * 9 + k) * co + oc..][..L];
                for (a, &wv) in acc.iter_mut().zip(wr) {
                    *a += s * wv;
                }
            });
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
}

impl RowKernel for DirectOut {
    fn channels(&self) -> (usize, usize) {
        (self.in_c, self.out_c)
    }

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
                    for_each_tap!(y, xx, h, w, |k, yy, xs| {
                        let src = &a[((b * h + yy) * w + xs) * ci..][..ci];
                        let wr = &self.w[(oc * 9 + k) * ci..][..ci];
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
                    });
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
    /// The threads the layers and images are split over (feature `threads`).
    workers: Workers,
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
        Self::build(net, tile, crate::kernels::simd::avx2_fma())
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
                workers: Workers::new(1),
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
        self.simd && crate::kernels::simd::avx2_fma() && matches!(self.layers, Layers::Winograd(_))
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
            net.workers = Workers::new(n.max(1));
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
            crate::kernels::reference::linear(
                &[t],
                &self.time0_w,
                &self.time0_b,
                &mut self.hidden,
            )?;
            crate::kernels::reference::relu(&mut self.hidden);
            crate::kernels::reference::linear(&self.hidden, &self.time2_w, &self.time2_b, temb)?;
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
        crate::kernels::reference::relu(&mut self.a1);
        self.enc2.run(&self.a1, h, w, &mut self.cols, &mut self.a2);
        for (chunk, &t) in self.a2.chunks_exact_mut(plane).zip(temb) {
            for v in chunk {
                *v = if *v < 0.0 { t } else { *v + t };
            }
        }
        self.dec1.run(&self.a2, h, w, &mut self.cols, &mut self.a3);
        crate::kernels::reference::relu(&mut self.a3);
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
            workers,
        } = self;
        let (layers, workers) = (&*layers, &*workers);
        run_images(workers, n, len, acts, scratch, out, &|i, acts, sc, o| {
            let (xi, ti) = (&x[i * len..][..len], &temb[i * h2..][..h2]);
            layers.forward(xi, ti, (h, w), simd, acts, (workers, sc), o);
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
        (workers, scratch): (&Workers, &mut [WinogradScratch]),
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
        run_split(
            workers,
            h,
            a1,
            scratch,
            &|r| r.len() * w * h1,
            &|r, _, o| enc1.run_rows(x, g, r, o, simd),
        );
        // A Winograd layer with ReLU (and `add`) from `input` into `out` (`out_c` channels).
        let mut winograd = |conv: &WinogradConv, input: &[f32], add, out: &mut [f32], out_c| {
            let epi = Epilogue { relu: true, add };
            run_split(
                workers,
                g.tile_rows(),
                out,
                scratch,
                &|r| g.out_rows(r).len() * w * out_c,
                &|r, s, o| conv.run_rows(input, g, r, epi, s, o, simd),
            );
        };
        winograd(enc2, a1, Some(temb), a2, h2);
        winograd(dec1, a2, None, a3, h1);
        let a3 = &*a3;
        run_split(
            workers,
            h,
            eps,
            scratch,
            &|r| r.len() * w * c,
            &|r, _, o| dec2.run_rows(a3, g, r, o, simd),
        );
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
