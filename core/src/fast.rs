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
