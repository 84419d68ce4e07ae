//! Reference layer functions: plain direct loops, written to mirror PyTorch's definitions line
//! for line. They are the oracle every faster path is tested against, and the building blocks
//! that network architectures compose.
//!
//! Tensors are flat row-major slices in PyTorch's layouts: activations `[C, H, W]`, Conv2d
//! weights `[out, in, 3, 3]`, ConvTranspose2d weights `[in, out, 3, 3]`, Linear weights
//! `[out, in]`. Every function checks its slice lengths first and returns
//! [`Error::BufferSize`](crate::Error::BufferSize) instead of panicking.

use crate::error::{check_len, Result};

/// Size of a `[C, H, W]` activation map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl Dims {
    /// A `[c, h, w]` map.
    pub const fn new(c: usize, h: usize, w: usize) -> Self {
        Self { c, h, w }
    }
    /// Number of elements.
    pub const fn len(&self) -> usize {
        self.c * self.h * self.w
    }
    /// True when the map has no elements.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Output size of a 3×3, padding-1 convolution with the given stride.
    pub const fn conv3x3_out(&self, out_c: usize, stride: usize) -> Dims {
        Dims::new(
            out_c,
            (self.h + 2 - 3) / stride + 1,
            (self.w + 2 - 3) / stride + 1,
        )
    }
}

/// Runs `body` for the taps `k = ky·3 + kx` of the 3×3 window whose centre is (`cy`, `cx`)
/// that fall inside an `h × w` map, with (`iy`, `ix`) = (`cy + ky − 1`, `cx + kx − 1`) the
/// input pixel, in row-major order; the padding taps are skipped (they contribute nothing).
/// `for_each_tap!(cy, cx, h, w, |k, iy, ix| { … })`. A macro rather than a function taking a
/// closure: the SIMD direct layers of the fast path measured 5% slower through the closure,
/// and the expansion is the loop as if written out at each site.
macro_rules! for_each_tap {
    ($cy:expr, $cx:expr, $h:expr, $w:expr, |$k:ident, $iy:ident, $ix:ident| $body:block) => {
        for ky in 0..3usize {
            let iy = $cy as isize + ky as isize - 1;
            if iy < 0 || iy >= $h as isize {
                continue;
            }
            for kx in 0..3usize {
                let ix = $cx as isize + kx as isize - 1;
                if ix < 0 || ix >= $w as isize {
                    continue;
                }
                let ($k, $iy, $ix) = (ky * 3 + kx, iy as usize, ix as usize);
                $body
            }
        }
    };
}
pub(crate) use for_each_tap;

/// Conv2d(in→out, kernel 3×3, padding 1, given stride) with bias, as `torch.nn.Conv2d`:
/// `out[o, y, x] = bias[o] + Σ_i Σ_ky Σ_kx w[o, i, ky, kx] · in[i, y·s + ky − 1, x·s + kx − 1]`,
/// reading zeros outside the input.
pub fn conv3x3(
    input: &[f32],
    in_dims: Dims,
    weight: &[f32],
    bias: &[f32],
    out_c: usize,
    stride: usize,
    output: &mut [f32],
) -> Result<Dims> {
    if stride == 0 {
        return Err(crate::Error::InvalidConfig(
            "conv3x3: stride must be at least 1",
        ));
    }
    let od = in_dims.conv3x3_out(out_c, stride);
    check_len("conv3x3 input", in_dims.len(), input.len())?;
    check_len("conv3x3 weight", out_c * in_dims.c * 9, weight.len())?;
    check_len("conv3x3 bias", out_c, bias.len())?;
    check_len("conv3x3 output", od.len(), output.len())?;
    let (h, w) = (in_dims.h, in_dims.w);
    for o in 0..out_c {
        for oy in 0..od.h {
            for ox in 0..od.w {
                let mut acc = bias[o];
                for i in 0..in_dims.c {
                    for_each_tap!(oy * stride, ox * stride, h, w, |k, iy, ix| {
                        let wv = weight[(o * in_dims.c + i) * 9 + k];
                        acc += wv * input[(i * h + iy) * w + ix];
                    });
                }
                output[(o * od.h + oy) * od.w + ox] = acc;
            }
        }
    }
    Ok(od)
}

/// ConvTranspose2d(in→out, kernel 3×3, stride 1, padding 1) with bias, as
/// `torch.nn.ConvTranspose2d`, written in its scatter form: every input pixel `in[i, y, x]`
/// adds `in[i, y, x] · w[i, o, ky, kx]` to `out[o, y + ky − 1, x + kx − 1]` (dropped when
/// outside the output). Output size equals input size.
pub fn conv_transpose3x3(
    input: &[f32],
    in_dims: Dims,
    weight: &[f32],
    bias: &[f32],
    out_c: usize,
    output: &mut [f32],
) -> Result<Dims> {
    let od = Dims::new(out_c, in_dims.h, in_dims.w);
    check_len("conv_transpose3x3 input", in_dims.len(), input.len())?;
    check_len(
        "conv_transpose3x3 weight",
        in_dims.c * out_c * 9,
        weight.len(),
    )?;
    check_len("conv_transpose3x3 bias", out_c, bias.len())?;
    check_len("conv_transpose3x3 output", od.len(), output.len())?;
    let plane = od.h * od.w;
    for o in 0..out_c {
        output[o * plane..(o + 1) * plane].fill(bias[o]);
    }
    for i in 0..in_dims.c {
        for y in 0..in_dims.h {
            for x in 0..in_dims.w {
                let v = input[(i * in_dims.h + y) * in_dims.w + x];
                for o in 0..out_c {
                    for_each_tap!(y, x, od.h, od.w, |k, oy, ox| {
                        let wv = weight[(i * out_c + o) * 9 + k];
                        output[(o * od.h + oy) * od.w + ox] += v * wv;
                    });
                }
            }
        }
    }
    Ok(od)
}

/// Linear(in→out) with bias, as `torch.nn.Linear`: `out[o] = bias[o] + Σ_i w[o, i] · in[i]`.
pub fn linear(input: &[f32], weight: &[f32], bias: &[f32], output: &mut [f32]) -> Result<()> {
    let (n_in, n_out) = (input.len(), output.len());
    check_len("linear weight", n_out * n_in, weight.len())?;
    check_len("linear bias", n_out, bias.len())?;
    for o in 0..n_out {
        let mut acc = bias[o];
        for i in 0..n_in {
            acc += weight[o * n_in + i] * input[i];
        }
        output[o] = acc;
    }
    Ok(())
}

/// ReLU in place: `x = max(x, 0)`.
pub fn relu(x: &mut [f32]) {
    for v in x.iter_mut() {
        if *v < 0.0 {
            *v = 0.0;
        }
    }
}

/// Adds `per_channel[c]` to every pixel of channel `c` of a `[C, H, W]` map (a `[C, 1, 1]`
/// broadcast in PyTorch terms).
pub fn add_per_channel(x: &mut [f32], dims: Dims, per_channel: &[f32]) -> Result<()> {
    check_len("add_per_channel map", dims.len(), x.len())?;
    check_len("add_per_channel values", dims.c, per_channel.len())?;
    let plane = dims.h * dims.w;
    for (chunk, &v) in x.chunks_exact_mut(plane.max(1)).zip(per_channel) {
        for p in chunk {
            *p += v;
        }
    }
    Ok(())
}

/// Nearest-neighbour up-sampling by 2, as `torch.nn.functional.interpolate(x, scale_factor=2,
/// mode="nearest")`: `out[c, y, x] = in[c, ⌊y/2⌋, ⌊x/2⌋]` on a `[C, 2H, 2W]` map.
pub fn upsample_nearest2x(input: &[f32], in_dims: Dims, output: &mut [f32]) -> Result<Dims> {
    let od = Dims::new(in_dims.c, 2 * in_dims.h, 2 * in_dims.w);
    check_len("upsample input", in_dims.len(), input.len())?;
    check_len("upsample output", od.len(), output.len())?;
    for c in 0..od.c {
        for y in 0..od.h {
            for x in 0..od.w {
                output[(c * od.h + y) * od.w + x] =
                    input[(c * in_dims.h + y / 2) * in_dims.w + x / 2];
            }
        }
    }
    Ok(od)
}

/// Frequency `k` of a sinusoidal embedding with `half` frequencies (Ho et al. 2020's
/// `get_timestep_embedding`, after Vaswani et al. 2017): `exp(−ln(max_period)·k/(half − 1))`,
/// computed in f64 and rounded once to f32, so every implementation that takes this table
/// multiplies by the same f32 numbers. `half` must be at least 2.
pub fn sinusoidal_frequency(k: usize, half: usize, max_period: f64) -> f32 {
    libm::exp(-libm::log(max_period) * k as f64 / (half - 1) as f64) as f32
}

/// Sinusoidal embedding of the scalar `s` into `out` (even length 2·half, half ≥ 2):
/// `out[k] = sin(s·f_k)` and `out[half + k] = cos(s·f_k)` with f_k from
/// [`sinusoidal_frequency`]; the product `s·f_k` is one f32 multiply.
pub fn sinusoidal_embedding(s: f32, max_period: f64, out: &mut [f32]) -> Result<()> {
    if !out.len().is_multiple_of(2) || out.len() < 4 {
        return Err(crate::Error::InvalidConfig(
            "sinusoidal embedding: length must be even and at least 4",
        ));
    }
    let half = out.len() / 2;
    let (sin, cos) = out.split_at_mut(half);
    for k in 0..half {
        let arg = s * sinusoidal_frequency(k, half, max_period);
        sin[k] = libm::sinf(arg);
        cos[k] = libm::cosf(arg);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv3x3_hand_computed() {
        // 1×3×3 input 1..9, one output channel, all-ones kernel, bias 0.5:
        // each output is 0.5 + the sum of the input's 3×3 neighbourhood (zeros outside).
        let input: [f32; 9] = [1., 2., 3., 4., 5., 6., 7., 8., 9.];
        let mut out = [0.0f32; 9];
        conv3x3(
            &input,
            Dims::new(1, 3, 3),
            &[1.0; 9],
            &[0.5],
            1,
            1,
            &mut out,
        )
        .unwrap();
        let expected = [12., 21., 16., 27., 45., 33., 24., 39., 28.].map(|v: f32| v + 0.5);
        assert_eq!(out, expected);

        // A kernel with a single 1 at (ky, kx) = (0, 2) reads in[y − 1, x + 1].
        let mut k = [0.0f32; 9];
        k[2] = 1.0;
        conv3x3(&input, Dims::new(1, 3, 3), &k, &[0.0], 1, 1, &mut out).unwrap();
        assert_eq!(out, [0., 0., 0., 2., 3., 0., 5., 6., 0.]);

        // Two input channels, two outputs; weights select channel 1 centre and channel 0 centre.
        let two: [f32; 8] = [1., 2., 3., 4., 10., 20., 30., 40.];
        let mut w = [0.0f32; 36];
        w[9 + 4] = 1.0; // out 0 <- in 1 centre
        w[18 + 4] = 2.0; // out 1 <- in 0 centre ×2
        let mut out2 = [0.0f32; 8];
        conv3x3(&two, Dims::new(2, 2, 2), &w, &[0.0, 1.0], 2, 1, &mut out2).unwrap();
        assert_eq!(out2, [10., 20., 30., 40., 3., 5., 7., 9.]);
    }

    #[test]
    fn conv3x3_stride2() {
        // 1×4×4 input, stride 2 → 2×2 output; centre tap only reads in[2y, 2x].
        let input: [f32; 16] = core::array::from_fn(|i| i as f32);
        let mut k = [0.0f32; 9];
        k[4] = 1.0;
        let mut out = [0.0f32; 4];
        let od = conv3x3(&input, Dims::new(1, 4, 4), &k, &[0.0], 1, 2, &mut out).unwrap();
        assert_eq!(od, Dims::new(1, 2, 2));
        assert_eq!(out, [0., 2., 8., 10.]);
        // 28 → 14 → 7, as the compact U-Net needs.
        assert_eq!(Dims::new(1, 28, 28).conv3x3_out(8, 2), Dims::new(8, 14, 14));
        assert_eq!(Dims::new(1, 14, 14).conv3x3_out(8, 2), Dims::new(8, 7, 7));
    }

    #[test]
    fn conv_transpose_hand_computed() {
        // A single input pixel scatters the kernel, rotated as ConvTranspose2d defines:
        // in[1,1] = 1 on a 3×3 map gives out[y, x] = w[y, x] (padding 1 re-centres it).
        let mut input = [0.0f32; 9];
        input[4] = 1.0;
        let w: [f32; 9] = [1., 2., 3., 4., 5., 6., 7., 8., 9.];
        let mut out = [0.0f32; 9];
        conv_transpose3x3(&input, Dims::new(1, 3, 3), &w, &[0.0], 1, &mut out).unwrap();
        assert_eq!(out, w);
        // The corner pixel in[0,0] = 1 puts w[ky, kx] at out[ky − 1, kx − 1]: w[1..,1..].
        let mut input = [0.0f32; 9];
        input[0] = 1.0;
        conv_transpose3x3(&input, Dims::new(1, 3, 3), &w, &[0.25], 1, &mut out).unwrap();
        assert_eq!(out, [5.25, 6.25, 0.25, 8.25, 9.25, 0.25, 0.25, 0.25, 0.25]);
    }

    #[test]
    fn conv_transpose_is_flipped_conv() {
        // Stride-1 pad-1 transposed conv == conv with the kernel rotated 180° and in/out swapped.
        let (ci, co) = (3usize, 2usize);
        let d = Dims::new(ci, 4, 5);
        let input: [f32; 60] = core::array::from_fn(|i| ((i * 7919) % 13) as f32 - 6.0);
        let wt: [f32; 54] = core::array::from_fn(|i| ((i * 104729) % 11) as f32 - 5.0);
        let mut wc = [0.0f32; 54];
        for i in 0..ci {
            for o in 0..co {
                for k in 0..9 {
                    wc[(o * ci + i) * 9 + (8 - k)] = wt[(i * co + o) * 9 + k];
                }
            }
        }
        let bias = [0.5, -1.0];
        let mut a = [0.0f32; 40];
        let mut b = [0.0f32; 40];
        conv_transpose3x3(&input, d, &wt, &bias, co, &mut a).unwrap();
        conv3x3(&input, d, &wc, &bias, co, 1, &mut b).unwrap();
        // Small integers: both orders of summation are exact.
        assert_eq!(a, b);
    }

    #[test]
    fn linear_relu_add() {
        let mut out = [0.0f32; 2];
        linear(
            &[1.0, 2.0, 3.0],
            &[1., 0., -1., 0.5, 0.5, 0.5],
            &[10.0, 0.0],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [8.0, 3.0]);
        let mut x = [-1.0, 0.0, 2.0, -0.5];
        relu(&mut x);
        assert_eq!(x, [0.0, 0.0, 2.0, 0.0]);
        let mut m = [1.0f32; 8];
        add_per_channel(&mut m, Dims::new(2, 2, 2), &[1.0, -2.0]).unwrap();
        assert_eq!(m, [2., 2., 2., 2., -1., -1., -1., -1.]);
    }

    #[test]
    fn upsample_nearest_hand_computed() {
        // Two 2×2 channels; every pixel becomes a 2×2 block.
        let input = [1., 2., 3., 4., 5., 6., 7., 8.];
        let mut out = [0.0f32; 32];
        let od = upsample_nearest2x(&input, Dims::new(2, 2, 2), &mut out).unwrap();
        assert_eq!(od, Dims::new(2, 4, 4));
        #[rustfmt::skip]
        let expected = [
            1., 1., 2., 2.,  1., 1., 2., 2.,  3., 3., 4., 4.,  3., 3., 4., 4.,
            5., 5., 6., 6.,  5., 5., 6., 6.,  7., 7., 8., 8.,  7., 7., 8., 8.,
        ];
        assert_eq!(out, expected);
        assert!(upsample_nearest2x(&input, Dims::new(2, 2, 2), &mut [0.0; 31]).is_err());
    }

    #[test]
    fn sinusoidal_embedding_closed_form() {
        // half = 4 frequencies 10000^(−k/3): 1, 10000^(−1/3), 10000^(−2/3), 1e-4.
        let mut out = [0.0f32; 8];
        sinusoidal_embedding(250.0, 10_000.0, &mut out).unwrap();
        for k in 0..4 {
            let f = libm::pow(10_000.0, -(k as f64) / 3.0);
            assert_eq!(sinusoidal_frequency(k, 4, 10_000.0), f as f32);
            let arg = (250.0f32 * f as f32) as f64;
            // libm's sinf/cosf are within one ulp of the exact value of the f32 argument.
            assert!((out[k] as f64 - libm::sin(arg)).abs() <= 1.2e-7, "sin {k}");
            assert!(
                (out[4 + k] as f64 - libm::cos(arg)).abs() <= 1.2e-7,
                "cos {k}"
            );
        }
        // s = 0: sines 0, cosines 1.
        sinusoidal_embedding(0.0, 10_000.0, &mut out).unwrap();
        assert_eq!(out, [0., 0., 0., 0., 1., 1., 1., 1.]);
        assert!(sinusoidal_embedding(1.0, 10_000.0, &mut [0.0; 7]).is_err());
        assert!(sinusoidal_embedding(1.0, 10_000.0, &mut [0.0; 2]).is_err());
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let mut out = [0.0f32; 9];
        let (d, x8, x9, b) = (Dims::new(1, 3, 3), [0.0; 8], [0.0; 9], [0.0]);
        assert!(conv3x3(&x8, d, &x9, &b, 1, 1, &mut out).is_err());
        assert!(conv3x3(&x9, d, &x9, &b, 1, 0, &mut out).is_err());
        assert!(conv_transpose3x3(&x9, d, &x8, &b, 1, &mut out).is_err());
        assert!(linear(&[0.0; 3], &[0.0; 5], &[0.0; 2], &mut [0.0; 2]).is_err());
        assert!(add_per_channel(&mut [0.0; 8], Dims::new(2, 2, 2), &[0.0]).is_err());
    }
}
