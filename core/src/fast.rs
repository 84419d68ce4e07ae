//! Host fast path: im2col + `matrixmultiply` sgemm, weights packed once at construction.
//!
//! Every 3×3 layer becomes one GEMM `out[o, p] = Σ_k W[o, k]·cols[k, p]` with
//! k = (input channel, ky, kx) and p = output pixel. The transposed convolutions are turned into
//! ordinary convolutions at load time (kernel rotated 180°, in/out swapped), biases are written
//! into the output before the GEMM accumulates onto them (β = 1), and ReLU and the time
//! embedding are applied in one pass afterwards. The only `unsafe` in the crate is the sgemm call.

use alloc::vec;
use alloc::vec::Vec;

use crate::config::SimpleUNetConfig;
use crate::error::{check_len, Result};
use crate::sampler::Denoiser;
use crate::simple_unet::SimpleUNet;

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

/// Layers with at least this many input and output channels use Winograd F(2×2, 3×3).
pub const WINOGRAD_MIN_CHANNELS: usize = 16;

/// One 3×3 layer in the form that computes it fastest.
#[derive(Clone)]
enum FastConv {
    Gemm(PackedConv),
    Winograd(crate::winograd::WinogradConv),
}

impl FastConv {
    fn new(in_c: usize, out_c: usize, weight: Vec<f32>, bias: &[f32]) -> Self {
        if in_c >= WINOGRAD_MIN_CHANNELS && out_c >= WINOGRAD_MIN_CHANNELS {
            FastConv::Winograd(crate::winograd::WinogradConv::new(
                &weight, bias, in_c, out_c,
            ))
        } else {
            FastConv::Gemm(PackedConv {
                in_c,
                out_c,
                weight,
                bias: bias.to_vec(),
            })
        }
    }

    fn run(&self, input: &[f32], h: usize, w: usize, scratch: &mut Scratch, out: &mut [f32]) {
        match self {
            FastConv::Gemm(p) => p.run(input, h, w, &mut scratch.cols, out),
            FastConv::Winograd(c) => c.run(input, 1, h, w, &mut scratch.winograd, out),
        }
    }
}

#[derive(Clone, Default)]
struct Scratch {
    cols: Vec<f32>,
    winograd: crate::winograd::WinogradScratch,
}

/// A SimpleUNet with weights packed for the im2col + sgemm path. Owns its scratch buffers, so
/// one instance runs one forward pass at a time.
#[derive(Clone)]
pub struct FastSimpleUNet {
    cfg: SimpleUNetConfig,
    enc1: FastConv,
    enc2: FastConv,
    dec1: FastConv,
    dec2: FastConv,
    time0_w: Vec<f32>,
    time0_b: Vec<f32>,
    time2_w: Vec<f32>,
    time2_b: Vec<f32>,
    scratch: Scratch,
    a1: Vec<f32>,
    a2: Vec<f32>,
    a3: Vec<f32>,
    hidden: Vec<f32>,
    temb: Vec<f32>,
}

impl FastSimpleUNet {
    /// Packs the weights of `net`.
    pub fn new(net: &SimpleUNet<'_>) -> Self {
        let cfg = *net.config();
        let p = net.params();
        let (c, h1, h2) = (
            cfg.channels as usize,
            cfg.hidden1 as usize,
            cfg.hidden2 as usize,
        );
        let plane = (cfg.height * cfg.width) as usize;
        Self {
            cfg,
            enc1: FastConv::new(c, h1, p.enc1_w.to_vec(), p.enc1_b),
            enc2: FastConv::new(h1, h2, p.enc2_w.to_vec(), p.enc2_b),
            dec1: FastConv::new(h2, h1, transpose_kernel_to_conv(p.dec1_w, h2, h1), p.dec1_b),
            dec2: FastConv::new(h1, c, transpose_kernel_to_conv(p.dec2_w, h1, c), p.dec2_b),
            time0_w: p.time0_w.to_vec(),
            time0_b: p.time0_b.to_vec(),
            time2_w: p.time2_w.to_vec(),
            time2_b: p.time2_b.to_vec(),
            scratch: Scratch {
                cols: vec![0.0; h1.max(h2).max(c) * 9 * plane],
                winograd: Default::default(),
            },
            a1: vec![0.0; h1 * plane],
            a2: vec![0.0; h2 * plane],
            a3: vec![0.0; h1 * plane],
            hidden: vec![0.0; h2],
            temb: vec![0.0; h2],
        }
    }

    /// The network's sizes.
    pub fn config(&self) -> &SimpleUNetConfig {
        &self.cfg
    }

    /// Predicted noise for one image; same contract as
    /// [`SimpleUNet::forward_reference`](crate::SimpleUNet::forward_reference).
    pub fn forward(&mut self, x: &[f32], t_in: f32, out: &mut [f32]) -> Result<()> {
        let cfg = self.cfg;
        check_len("input image", cfg.image_len(), x.len())?;
        check_len("output image", cfg.image_len(), out.len())?;
        let (h, w) = (cfg.height as usize, cfg.width as usize);
        let plane = h * w;
        crate::layers::linear(&[t_in], &self.time0_w, &self.time0_b, &mut self.hidden)?;
        crate::layers::relu(&mut self.hidden);
        crate::layers::linear(&self.hidden, &self.time2_w, &self.time2_b, &mut self.temb)?;

        self.enc1.run(x, h, w, &mut self.scratch, &mut self.a1);
        crate::layers::relu(&mut self.a1);
        self.enc2
            .run(&self.a1, h, w, &mut self.scratch, &mut self.a2);
        for (chunk, &t) in self.a2.chunks_exact_mut(plane).zip(&self.temb) {
            for v in chunk {
                *v = if *v < 0.0 { t } else { *v + t };
            }
        }
        self.dec1
            .run(&self.a2, h, w, &mut self.scratch, &mut self.a3);
        crate::layers::relu(&mut self.a3);
        self.dec2.run(&self.a3, h, w, &mut self.scratch, out);
        Ok(())
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

/// Writes the im2col matrix `[in_c·9, oh·ow]` of a `[in_c, h, w]` map for a 3×3 padding-1
/// convolution with any stride (output `oh × ow`).
fn im2col3x3_strided(
    input: &[f32],
    in_c: usize,
    (h, w): (usize, usize),
    stride: usize,
    (oh, ow): (usize, usize),
    cols: &mut [f32],
) {
    let plane = h * w;
    let out_plane = oh * ow;
    for i in 0..in_c {
        let src = &input[i * plane..(i + 1) * plane];
        for ky in 0..3 {
            for kx in 0..3 {
                let row = &mut cols[((i * 3 + ky) * 3 + kx) * out_plane..][..out_plane];
                for oy in 0..oh {
                    let iy = (oy * stride + ky) as isize - 1;
                    let dst = &mut row[oy * ow..(oy + 1) * ow];
                    if iy < 0 || iy >= h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let s = &src[iy as usize * w..(iy as usize + 1) * w];
                    for (ox, d) in dst.iter_mut().enumerate() {
                        let ix = (ox * stride + kx) as isize - 1;
                        *d = if ix < 0 || ix >= w as isize {
                            0.0
                        } else {
                            s[ix as usize]
                        };
                    }
                }
            }
        }
    }
}

impl PackedConv {
    /// `out = bias + W ∗ input` with stride `stride` over an `h×w` map (output
    /// `⌊(h−1)/stride⌋+1` rows), always as one GEMM.
    fn run_strided(
        &self,
        input: &[f32],
        (h, w): (usize, usize),
        stride: usize,
        cols: &mut [f32],
        out: &mut [f32],
    ) {
        let (oh, ow) = ((h - 1) / stride + 1, (w - 1) / stride + 1);
        let out_plane = oh * ow;
        let k = self.in_c * 9;
        im2col3x3_strided(
            input,
            self.in_c,
            (h, w),
            stride,
            (oh, ow),
            &mut cols[..k * out_plane],
        );
        for (chunk, &b) in out.chunks_exact_mut(out_plane).zip(&self.bias) {
            chunk.fill(b);
        }
        sgemm(
            self.out_c,
            k,
            out_plane,
            &self.weight,
            &cols[..k * out_plane],
            out,
            1.0,
        );
    }
}

/// `out[c, y, x] = in[c, y/2, x/2]` for a `[c, h, w]` input (output `[c, 2h, 2w]`).
fn upsample2x(input: &[f32], c: usize, h: usize, w: usize, out: &mut [f32]) {
    let (oh, ow) = (2 * h, 2 * w);
    for ch in 0..c {
        for y in 0..oh {
            let src = &input[(ch * h + y / 2) * w..][..w];
            let dst = &mut out[(ch * oh + y) * ow..][..ow];
            for (pair, &v) in dst.chunks_exact_mut(2).zip(src) {
                pair[0] = v;
                pair[1] = v;
            }
        }
    }
}

/// Adds `proj[o]` to every pixel of channel `o` and applies ReLU, in one pass.
fn add_relu(x: &mut [f32], plane: usize, proj: &[f32]) {
    for (chunk, &t) in x.chunks_exact_mut(plane).zip(proj) {
        for v in chunk {
            let s = *v + t;
            *v = if s < 0.0 { 0.0 } else { s };
        }
    }
}

/// A TinyUNet with weights packed for the fast path: the two stride-2 layers as strided
/// im2col + sgemm, the stride-1 layers as [`SimpleUNet`]'s (Winograd for wide layers, im2col +
/// sgemm, direct for the last layer). Skip tensors are written into the back of the buffers
/// they are concatenated into, as in [`TinyUNet::forward_reference`](crate::TinyUNet). Owns
/// its scratch, so one instance runs one forward pass at a time.
#[derive(Clone)]
pub struct FastTinyUNet {
    cfg: crate::config::TinyUNetConfig,
    enc0: FastConv,
    down1: PackedConv,
    down2: PackedConv,
    mid: FastConv,
    up2: FastConv,
    up1: FastConv,
    out: FastConv,
    time0_w: Vec<f32>,
    time0_b: Vec<f32>,
    time2_w: Vec<f32>,
    time2_b: Vec<f32>,
    temb_w: [Vec<f32>; 6],
    temb_b: [Vec<f32>; 6],
    scratch: Scratch,
    cat1: Vec<f32>,
    u1: Vec<f32>,
    cat2: Vec<f32>,
    u2: Vec<f32>,
    d2: Vec<f32>,
    m: Vec<f32>,
    emb: Vec<f32>,
    hidden: Vec<f32>,
    temb: Vec<f32>,
    proj: Vec<f32>,
}

impl FastTinyUNet {
    /// Packs the weights of `net`.
    pub fn new(net: &crate::tiny_unet::TinyUNet<'_>) -> Self {
        use crate::tiny_unet::block;
        let cfg = *net.config();
        let p = net.params();
        let c = cfg.channels as usize;
        let [w1, w2, w3] = cfg.widths.map(|v| v as usize);
        let [p1, p2, p3] = cfg.planes();
        let (e, d) = (cfg.emb_dim as usize, cfg.temb_dim as usize);
        let b = &p.blocks;
        let packed = |k: usize, in_c: usize, out_c: usize| PackedConv {
            in_c,
            out_c,
            weight: b[k].conv_w.to_vec(),
            bias: b[k].conv_b.to_vec(),
        };
        let conv = |k: usize, in_c: usize, out_c: usize| {
            FastConv::new(in_c, out_c, b[k].conv_w.to_vec(), b[k].conv_b)
        };
        let cols = [
            c * 9 * p1,
            w1 * 9 * p2,
            w2 * 9 * p3,
            w3 * 9 * p3,
            (w3 + w2) * 9 * p2,
            (w2 + w1) * 9 * p1,
            w1 * 9 * p1,
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        Self {
            cfg,
            enc0: conv(block::ENC0, c, w1),
            down1: packed(block::DOWN1, w1, w2),
            down2: packed(block::DOWN2, w2, w3),
            mid: conv(block::MID, w3, w3),
            up2: conv(block::UP2, w3 + w2, w2),
            up1: conv(block::UP1, w2 + w1, w1),
            out: FastConv::new(w1, c, p.out_w.to_vec(), p.out_b),
            time0_w: p.time0_w.to_vec(),
            time0_b: p.time0_b.to_vec(),
            time2_w: p.time2_w.to_vec(),
            time2_b: p.time2_b.to_vec(),
            temb_w: core::array::from_fn(|k| b[k].temb_w.to_vec()),
            temb_b: core::array::from_fn(|k| b[k].temb_b.to_vec()),
            scratch: Scratch {
                cols: vec![0.0; cols],
                winograd: Default::default(),
            },
            cat1: vec![0.0; (w2 + w1) * p1],
            u1: vec![0.0; w1 * p1],
            cat2: vec![0.0; (w3 + w2) * p2],
            u2: vec![0.0; w2 * p2],
            d2: vec![0.0; w3 * p3],
            m: vec![0.0; w3 * p3],
            emb: vec![0.0; e],
            hidden: vec![0.0; d],
            temb: vec![0.0; d],
            proj: vec![0.0; w1.max(w2).max(w3)],
        }
    }

    /// The network's sizes.
    pub fn config(&self) -> &crate::config::TinyUNetConfig {
        &self.cfg
    }

    /// The time projection of block `k` into `self.proj[..out_c]`.
    fn project(&mut self, k: usize, out_c: usize) -> Result<()> {
        crate::layers::linear(
            &self.temb,
            &self.temb_w[k],
            &self.temb_b[k],
            &mut self.proj[..out_c],
        )
    }

    /// Predicted noise for one image; same contract as
    /// [`TinyUNet::forward_reference`](crate::TinyUNet::forward_reference).
    pub fn forward(&mut self, x: &[f32], t_in: f32, out: &mut [f32]) -> Result<()> {
        use crate::config::{TINY_MAX_PERIOD, TINY_TIME_SCALE};
        use crate::tiny_unet::block;
        let cfg = self.cfg;
        check_len("input image", cfg.image_len(), x.len())?;
        check_len("output image", cfg.image_len(), out.len())?;
        let (h, w) = (cfg.height as usize, cfg.width as usize);
        let [w1, w2, w3] = cfg.widths.map(|v| v as usize);
        let [p1, p2, p3] = cfg.planes();
        let (h2, wd2, h3, wd3) = (h / 2, w / 2, h / 4, w / 4);

        crate::layers::sinusoidal_embedding(
            t_in * TINY_TIME_SCALE,
            TINY_MAX_PERIOD,
            &mut self.emb,
        )?;
        crate::layers::linear(&self.emb, &self.time0_w, &self.time0_b, &mut self.hidden)?;
        crate::layers::relu(&mut self.hidden);
        crate::layers::linear(&self.hidden, &self.time2_w, &self.time2_b, &mut self.temb)?;

        // enc0 → s1, the back of cat1.
        {
            let s1 = &mut self.cat1[w2 * p1..];
            self.enc0.run(x, h, w, &mut self.scratch, s1);
        }
        self.project(block::ENC0, w1)?;
        add_relu(&mut self.cat1[w2 * p1..], p1, &self.proj[..w1]);
        // down1 → s2, the back of cat2.
        self.down1.run_strided(
            &self.cat1[w2 * p1..],
            (h, w),
            2,
            &mut self.scratch.cols,
            &mut self.cat2[w3 * p2..],
        );
        self.project(block::DOWN1, w2)?;
        add_relu(&mut self.cat2[w3 * p2..], p2, &self.proj[..w2]);
        // down2 → d2.
        self.down2.run_strided(
            &self.cat2[w3 * p2..],
            (h2, wd2),
            2,
            &mut self.scratch.cols,
            &mut self.d2,
        );
        self.project(block::DOWN2, w3)?;
        add_relu(&mut self.d2, p3, &self.proj[..w3]);
        // mid → m.
        self.mid
            .run(&self.d2, h3, wd3, &mut self.scratch, &mut self.m);
        self.project(block::MID, w3)?;
        add_relu(&mut self.m, p3, &self.proj[..w3]);
        // up2: [up(m), s2] → u2.
        upsample2x(&self.m, w3, h3, wd3, &mut self.cat2[..w3 * p2]);
        self.up2
            .run(&self.cat2, h2, wd2, &mut self.scratch, &mut self.u2);
        self.project(block::UP2, w2)?;
        add_relu(&mut self.u2, p2, &self.proj[..w2]);
        // up1: [up(u2), s1] → u1.
        upsample2x(&self.u2, w2, h2, wd2, &mut self.cat1[..w2 * p1]);
        self.up1
            .run(&self.cat1, h, w, &mut self.scratch, &mut self.u1);
        self.project(block::UP1, w1)?;
        add_relu(&mut self.u1, p1, &self.proj[..w1]);
        // out, no ReLU.
        self.out.run(&self.u1, h, w, &mut self.scratch, out);
        Ok(())
    }
}

impl Denoiser for FastTinyUNet {
    fn image_len(&self) -> usize {
        self.cfg.image_len()
    }
    fn predict_noise(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> Result<()> {
        self.forward(x, t_in, eps)
    }
}
