//! The int8 SimpleUNet file's weights and tensor names: per-channel weight scales (optionally
//! clipped), quantized kernels and biases, and the options the planner chooses from.

use alloc::vec;
use alloc::vec::Vec;

use crate::diffusion::schedule::ScheduleConfig;
use crate::error::Result;
use crate::file::{ModelWriter, Precision};
use crate::kernels::calibrate::RangeMethod;
use crate::kernels::quant::{
    quantize_weight, weight_scale, ActQuant, InputQuant, QuantizedMultiplier,
};
use crate::nets::simple_unet::{SimpleUNet, SimpleUNetConfig};
use crate::nets::ModelConfig;

/// Input and output channels of layer `l` (enc1, enc2, dec1, dec2) and whether its kernel has
/// the ConvTranspose2d layout `[in, out, 3, 3]`.
pub(crate) fn layer_shape(cfg: &SimpleUNetConfig, l: usize) -> (usize, usize, bool) {
    let (c, h1, h2) = (
        cfg.channels as usize,
        cfg.hidden1 as usize,
        cfg.hidden2 as usize,
    );
    match l {
        0 => (c, h1, false),
        1 => (h1, h2, false),
        2 => (h2, h1, true),
        _ => (h1, c, true),
    }
}

/// Index of tap `k` from input channel `i` to output channel `o` in layer `l`'s own layout.
#[inline]
pub(crate) fn weight_index(
    in_c: usize,
    out_c: usize,
    transposed: bool,
    o: usize,
    i: usize,
    k: usize,
) -> usize {
    if transposed {
        (i * out_c + o) * 9 + k
    } else {
        (o * in_c + i) * 9 + k
    }
}

/// The taps of output channel `o` of layer `l`.
pub(crate) fn out_channel(cfg: &SimpleUNetConfig, l: usize, wt: &[f32], o: usize) -> Vec<f32> {
    let (in_c, out_c, tr) = layer_shape(cfg, l);
    let mut v = Vec::with_capacity(in_c * 9);
    for i in 0..in_c {
        for k in 0..9 {
            v.push(wt[weight_index(in_c, out_c, tr, o, i, k)]);
        }
    }
    v
}

/// How the symmetric per-output-channel weight scale is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightClip {
    /// `max |w| / 127`: no weight is clipped.
    Max,
    /// The clipping threshold (a fraction of `max |w|`) that minimises the channel's squared
    /// quantization error, clipping included.
    Mse,
}

/// Per-output-channel weight scales of layer `l`.
pub(crate) fn weight_scales(
    cfg: &SimpleUNetConfig,
    l: usize,
    wt: &[f32],
    clip: WeightClip,
) -> Vec<f32> {
    let (_, out_c, _) = layer_shape(cfg, l);
    (0..out_c)
        .map(|o| {
            let ch = out_channel(cfg, l, wt, o);
            let full = weight_scale(&ch);
            match clip {
                WeightClip::Max => full,
                WeightClip::Mse => {
                    let err = |s: f32| -> f64 {
                        ch.iter()
                            .map(|&w| {
                                let d = (quantize_weight(w, s) as f32 * s - w) as f64;
                                d * d
                            })
                            .sum()
                    };
                    // Fractions 1, 0.995, …, 0.5 of the unclipped scale.
                    let mut best = (full, err(full));
                    for i in 1..=WEIGHT_CLIP_STEPS {
                        let s = full * (1.0 - 0.5 * i as f32 / WEIGHT_CLIP_STEPS as f32);
                        let e = err(s);
                        if e < best.1 {
                            best = (s, e);
                        }
                    }
                    best.0
                }
            }
        })
        .collect()
}

/// Steps of the weight clipping search between no clipping and half the largest magnitude.
pub(crate) const WEIGHT_CLIP_STEPS: usize = 100;

/// Writes the int8 file: `net`'s weights quantized with `scales`, `biases` quantized to int32,
/// activation quantizations `acts` (in [`ACTIVATIONS`] order) and `net`'s f32 time MLP.
pub(crate) fn write_int8(
    net: &SimpleUNet<'_>,
    schedule: ScheduleConfig,
    note: &str,
    biases: [&[f32]; 4],
    scales: &[Vec<f32>; 4],
    acts: [ActQuant; 4],
    input_bits: u32,
) -> Result<Vec<u8>> {
    let cfg: SimpleUNetConfig = *net.config();
    let p = net.params();
    let mut w = ModelWriter::new(ModelConfig::SimpleUNet(cfg), schedule, note)
        .with_precision(Precision::Int8);
    w.push_f32("input.scale", &[1], &[acts[0].scale])?;
    w.push_i32("input.zero_point", &[1], &[acts[0].zero_point])?;
    if input_bits == 16 {
        // Absent in 8-bit files, which therefore read as before.
        w.push_i32("input.bits", &[1], &[16])?;
    }
    let h2 = cfg.hidden2;
    let weights = [p.enc1_w, p.enc2_w, p.dec1_w, p.dec2_w];
    for (l, name) in ["enc1", "enc2", "dec1", "dec2"].into_iter().enumerate() {
        let (in_c, out_c, transposed) = layer_shape(&cfg, l);
        let (wt, bias, scales) = (weights[l], biases[l], &scales[l]);
        let in_scale = acts[l].scale;
        let mut q = vec![0i8; wt.len()];
        for i in 0..in_c {
            for (o, &scale) in scales.iter().enumerate() {
                for k in 0..9 {
                    let idx = weight_index(in_c, out_c, transposed, o, i, k);
                    q[idx] = quantize_weight(wt[idx], scale);
                }
            }
        }
        let qbias: Vec<i32> = (0..out_c)
            .map(|o| {
                let v = libm::round(bias[o] as f64 / (in_scale as f64 * scales[o] as f64));
                v.clamp(i32::MIN as f64 / 2.0, i32::MAX as f64 / 2.0) as i32
            })
            .collect();
        let wdims = if transposed {
            [in_c as u32, out_c as u32, 3, 3]
        } else {
            [out_c as u32, in_c as u32, 3, 3]
        };
        let (wn, bn, sn, mn, shn) = names(name);
        w.push_i8(wn, &wdims, &q)?;
        w.push_i32(bn, &[out_c as u32], &qbias)?;
        w.push_f32(sn, &[out_c as u32], scales)?;
        if l < 3 {
            let out = acts[l + 1];
            let mults: Vec<QuantizedMultiplier> = scales
                .iter()
                .map(|s| {
                    QuantizedMultiplier::from_real(in_scale as f64 * *s as f64 / out.scale as f64)
                })
                .collect();
            let m: Vec<i32> = mults.iter().map(|m| m.multiplier).collect();
            let sh: Vec<i32> = mults.iter().map(|m| m.shift).collect();
            w.push_i32(mn, &[out_c as u32], &m)?;
            w.push_i32(shn, &[out_c as u32], &sh)?;
            let (os, oz) = out_names(name);
            w.push_f32(os, &[1], &[out.scale])?;
            w.push_i32(oz, &[1], &[out.zero_point])?;
        } else {
            // The last layer is dequantized from its accumulator; unit multipliers keep the
            // per-layer tensor set uniform.
            w.push_i32(mn, &[out_c as u32], &vec![1 << 30; out_c])?;
            w.push_i32(shn, &[out_c as u32], &vec![1; out_c])?;
            let deq: Vec<f32> = scales.iter().map(|s| in_scale * s).collect();
            w.push_f32("dec2.dequant", &[out_c as u32], &deq)?;
        }
    }
    w.push_f32("time_mlp.0.weight", &[h2, 1], p.time0_w)?;
    w.push_f32("time_mlp.0.bias", &[h2], p.time0_b)?;
    w.push_f32("time_mlp.2.weight", &[h2, h2], p.time2_w)?;
    w.push_f32("time_mlp.2.bias", &[h2], p.time2_b)?;
    Ok(w.finish())
}

/// Cross-layer equalization at the three ReLU boundaries (enc1→enc2, enc2 + time
/// embedding→dec1, dec1→dec2). Scaling channel `o` of a ReLU layer's output by `1/s_o > 0`
/// and the next layer's input channel `o` by `s_o` leaves the f32 network unchanged, because
/// ReLU is positively homogeneous; at enc2 the time embedding added after the ReLU is scaled
/// with it (its last Linear's row `o`), so the identity holds there too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Equalize {
    /// No rescaling.
    Off,
    /// Nagel et al. (2019), eq. 7: `s_o = √(r1_o / r2_o)` with `r1_o` the range of the first
    /// layer's output channel `o` weights and `r2_o` that of the second layer's input channel
    /// `o` weights, iterated over the three boundaries until the scales settle.
    Weights,
    /// `s_o = √(a_o / r2_o)` with `a_o` the calibration range of activation channel `o`: the
    /// first layer's weights are quantized per output channel, so scaling them costs nothing,
    /// and what competes with the next layer's weight range is the per-tensor activation
    /// grid. One pass (activation ranges scale exactly with `1/s_o`).
    Activations,
}

/// Sweeps of [`Equalize::Weights`] (Nagel et al. iterate to convergence; the scales of this
/// three-boundary chain change by well under 1% after a few sweeps).
pub(crate) const EQUALIZE_SWEEPS: usize = 8;

/// The choices of [`QuantPlan::build`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantOptions {
    /// Activation ranges.
    pub range: RangeMethod,
    /// Weight scales.
    pub weight_clip: WeightClip,
    /// Cross-layer equalization.
    pub equalize: Equalize,
    /// Empirical bias correction (Nagel et al. 2019, section 4.2): layer by layer, the mean
    /// per-channel difference between the int8-simulated and the f32 pre-activations over the
    /// calibration inputs is subtracted from the bias.
    pub bias_correction: bool,
    /// Bits of the input tensor: 8 (int8 like every other activation) or 16 (symmetric int16,
    /// zero point 0; enc1 then multiplies int16 inputs by int8 weights).
    pub input_bits: u32,
}

/// The activation quantizations of `ranges` ([`ACTIVATIONS`] order), the input on a grid of
/// `input_bits` ([`InputQuant::from_range`]).
pub(crate) fn act_quants(ranges: &[(f32, f32); 4], input_bits: u32) -> [ActQuant; 4] {
    core::array::from_fn(|k| {
        let (lo, hi) = ranges[k];
        if k == 0 {
            InputQuant::from_range(input_bits, lo, hi).q
        } else {
            ActQuant::from_range(lo, hi)
        }
    })
}

impl QuantOptions {
    /// Min/max activation ranges, unclipped weights, nothing else: the plain TFLite recipe.
    pub const PLAIN: Self = Self {
        range: RangeMethod::MinMax,
        weight_clip: WeightClip::Max,
        equalize: Equalize::Off,
        bias_correction: false,
        input_bits: 8,
    };
}

/// Which parts a simulation quantizes: the four stored activations ([`ACTIVATIONS`]) and the
/// weights of the four conv layers (enc1, enc2, dec1, dec2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantMask {
    /// Activations quantized, in [`ACTIVATIONS`] order.
    pub acts: [bool; 4],
    /// Weights quantized: enc1, enc2, dec1, dec2.
    pub weights: [bool; 4],
}

impl QuantMask {
    /// Everything quantized: the int8 network.
    pub const ALL: Self = Self {
        acts: [true; 4],
        weights: [true; 4],
    };
    /// Nothing quantized: the f32 network.
    pub const NONE: Self = Self {
        acts: [false; 4],
        weights: [false; 4],
    };

    pub(crate) fn any(&self) -> bool {
        self.acts.iter().chain(&self.weights).any(|&b| b)
    }
}

pub(crate) fn names(
    layer: &str,
) -> (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
) {
    match layer {
        "enc1" => (
            "enc1.weight",
            "enc1.bias",
            "enc1.weight_scale",
            "enc1.multiplier",
            "enc1.shift",
        ),
        "enc2" => (
            "enc2.weight",
            "enc2.bias",
            "enc2.weight_scale",
            "enc2.multiplier",
            "enc2.shift",
        ),
        "dec1" => (
            "dec1.weight",
            "dec1.bias",
            "dec1.weight_scale",
            "dec1.multiplier",
            "dec1.shift",
        ),
        _ => (
            "dec2.weight",
            "dec2.bias",
            "dec2.weight_scale",
            "dec2.multiplier",
            "dec2.shift",
        ),
    }
}

pub(crate) fn out_names(layer: &str) -> (&'static str, &'static str) {
    match layer {
        "enc1" => ("enc1.output_scale", "enc1.output_zero_point"),
        "enc2" => ("enc2.output_scale", "enc2.output_zero_point"),
        _ => ("dec1.output_scale", "dec1.output_zero_point"),
    }
}
