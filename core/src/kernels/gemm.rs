//! im2col + `matrixmultiply` sgemm for 3×3 convolutions, with weights packed once.

use alloc::vec;
use alloc::vec::Vec;

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
pub(crate) fn im2col3x3(input: &[f32], in_c: usize, h: usize, w: usize, cols: &mut [f32]) {
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
pub(crate) const DIRECT_MAX_OUT: usize = 4;

/// One conv layer packed for GEMM.
#[derive(Clone)]
pub(crate) struct PackedConv {
    pub(crate) in_c: usize,
    pub(crate) out_c: usize,
    /// `[out_c, in_c·9]`, row-major.
    pub(crate) weight: Vec<f32>,
    pub(crate) bias: Vec<f32>,
}

impl PackedConv {
    /// `out = bias + W ∗ input` over an `h×w` map, using `cols` as im2col scratch.
    pub(crate) fn run(&self, input: &[f32], h: usize, w: usize, cols: &mut [f32], out: &mut [f32]) {
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
    pub(crate) fn run_direct(&self, input: &[f32], h: usize, w: usize, out: &mut [f32]) {
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
pub(crate) fn grown(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}
