//! Post-training quantization of an f32 SimpleUNet into an int8 model file (host side).
//!
//! [`Calibrator`] runs the f32 reference forward pass on calibration inputs and records the
//! range of every activation tensor the int8 network stores (input, enc1, enc2 + time
//! embedding, dec1); [`quantize_simple_unet`] turns the ranges and the f32 weights into the
//! int8 file [`crate::nets::simple_unet::int8::Int8SimpleUNet`] reads.
//!
//! [`QuantPlan`] is the full post-training quantizer: it keeps the calibration inputs and,
//! besides the activation ranges, can choose per-channel weight clipping by MSE, equalize
//! weight ranges across consecutive ReLU layers and correct the bias that weight (and
//! activation) rounding leaves in each layer's output (Nagel et al. 2019, "Data-Free
//! Quantization Through Weight Equalization and Bias Correction", ICCV). It also simulates
//! the int8 network in real numbers with any part kept in f32 ([`QuantMask`]), which is how
//! the error of each part is measured.

use alloc::vec;
use alloc::vec::Vec;

use crate::diffusion::schedule::ScheduleConfig;
use crate::error::Result;
use crate::file::{ModelWriter, Precision};
use crate::kernels::calibrate::{RangeMethod, RangeStats, CALIBRATION_STRIDE};
use crate::kernels::quant::{
    quantize_weight, weight_scale, ActQuant, InputQuant, QuantizedMultiplier,
};
use crate::nets::simple_unet::{SimpleUNet, SimpleUNetConfig};
use crate::nets::ModelConfig;

/// The four activation tensors the int8 network stores.
pub const ACTIVATIONS: [&str; 4] = ["input", "enc1", "enc2", "dec1"];

/// Records activation ranges of an f32 SimpleUNet on calibration inputs, and keeps the inputs
/// themselves for [`QuantPlan`].
pub struct Calibrator<'w> {
    net: SimpleUNet<'w>,
    workspace: Vec<f32>,
    out: Vec<f32>,
    stats: RangeStats,
    inputs: Vec<f32>,
    t_ins: Vec<f32>,
}

impl<'w> Calibrator<'w> {
    /// A calibrator for `net`; every `stride`-th value is kept for percentiles.
    pub fn new(net: SimpleUNet<'w>, stride: usize) -> Self {
        let cfg = *net.config();
        Self {
            net,
            workspace: vec![0.0; cfg.workspace_len()],
            out: vec![0.0; cfg.image_len()],
            stats: RangeStats::new(stride),
            inputs: Vec::new(),
            t_ins: Vec::new(),
        }
    }

    /// Runs the network on one input (`x` at time input `t_in`) and records its activations.
    pub fn observe(&mut self, x: &[f32], t_in: f32) -> Result<()> {
        self.net
            .forward_reference(x, t_in, &mut self.workspace, &mut self.out)?;
        let cfg = *self.net.config();
        let plane = cfg.height as usize * cfg.width as usize;
        let (h1, h2) = (cfg.hidden1 as usize, cfg.hidden2 as usize);
        let ws = &self.workspace;
        self.stats.record(0, x);
        self.stats.record(1, &ws[..h1 * plane]);
        self.stats.record(2, &ws[h1 * plane..(h1 + h2) * plane]);
        self.stats
            .record(3, &ws[(h1 + h2) * plane..(2 * h1 + h2) * plane]);
        self.inputs.extend_from_slice(x);
        self.t_ins.push(t_in);
        Ok(())
    }

    /// The chosen range of each of [`ACTIVATIONS`].
    pub fn ranges(&self, method: RangeMethod) -> [(f32, f32); 4] {
        self.stats.ranges(method)
    }

    /// The inputs observed so far (concatenated images) and their time inputs.
    pub fn inputs(&self) -> (&[f32], &[f32]) {
        (&self.inputs, &self.t_ins)
    }
}

/// Writes the int8 model file of `net` with activation `ranges` (in [`ACTIVATIONS`] order),
/// weight scales from each output channel's largest magnitude and the f32 biases as they are.
pub fn quantize_simple_unet(
    net: &SimpleUNet<'_>,
    schedule: ScheduleConfig,
    ranges: [(f32, f32); 4],
    note: &str,
) -> Result<Vec<u8>> {
    let cfg: SimpleUNetConfig = *net.config();
    let p = net.params();
    let weights = [p.enc1_w, p.enc2_w, p.dec1_w, p.dec2_w];
    let biases = [p.enc1_b, p.enc2_b, p.dec1_b, p.dec2_b];
    let scales: [Vec<f32>; 4] =
        core::array::from_fn(|l| weight_scales(&cfg, l, weights[l], WeightClip::Max));
    write_int8(
        net,
        schedule,
        note,
        biases,
        &scales,
        act_quants(&ranges, 8),
        8,
    )
}

/// Input and output channels of layer `l` (enc1, enc2, dec1, dec2) and whether its kernel has
/// the ConvTranspose2d layout `[in, out, 3, 3]`.
fn layer_shape(cfg: &SimpleUNetConfig, l: usize) -> (usize, usize, bool) {
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
fn weight_index(
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
fn out_channel(cfg: &SimpleUNetConfig, l: usize, wt: &[f32], o: usize) -> Vec<f32> {
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
fn weight_scales(cfg: &SimpleUNetConfig, l: usize, wt: &[f32], clip: WeightClip) -> Vec<f32> {
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
const WEIGHT_CLIP_STEPS: usize = 100;

/// Writes the int8 file: `net`'s weights quantized with `scales`, `biases` quantized to int32,
/// activation quantizations `acts` (in [`ACTIVATIONS`] order) and `net`'s f32 time MLP.
fn write_int8(
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
const EQUALIZE_SWEEPS: usize = 8;

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
fn act_quants(ranges: &[(f32, f32); 4], input_bits: u32) -> [ActQuant; 4] {
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

    fn any(&self) -> bool {
        self.acts.iter().chain(&self.weights).any(|&b| b)
    }
}

/// Offsets of the twelve parameter tensors in the flat `state_dict`-ordered storage.
fn param_offsets(cfg: &SimpleUNetConfig) -> [usize; 13] {
    let mut off = [0usize; 13];
    for (k, spec) in cfg.tensor_specs().iter().enumerate() {
        off[k + 1] = off[k] + spec.numel();
    }
    off
}

/// A batch's trace through the simulated network.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The stored activations as the next layer reads them (input, enc1, enc2 + time
    /// embedding, dec1; dequantized where quantized), each `[n][channels][h][w]`.
    pub acts: [Vec<f32>; 4],
    /// Each conv layer's output before its ReLU; the last is ε.
    pub pre: [Vec<f32>; 4],
}

/// The int8 network in real numbers: quantized weights dequantized, activations rounded to
/// their grids, the time embedding rounded to enc2's grid as the int8 executor adds it. Equal
/// to the integer executor up to the rounding of the requantization multiplier (2⁻³¹
/// relative), the int32 bias grid, ties, and the order of f32 sums.
struct Sim<'a> {
    cfg: SimpleUNetConfig,
    params: &'a [f32],
    biases: [&'a [f32]; 4],
    scales: &'a [Vec<f32>; 4],
    acts: [ActQuant; 4],
    input_bits: u32,
}

impl Sim<'_> {
    fn run(&self, x: &[f32], t_in: &[f32], mask: QuantMask) -> Result<Trace> {
        let cfg = self.cfg;
        let n = t_in.len();
        let (h, w) = (cfg.height as usize, cfg.width as usize);
        let plane = h * w;
        let off = param_offsets(&cfg);
        let net = SimpleUNet::from_flat(cfg, self.params)?;
        let h2 = cfg.hidden2 as usize;
        let mut temb = vec![0.0f32; n * h2];
        let mut hidden = vec![0.0f32; h2];
        for (b, te) in temb.chunks_exact_mut(h2).enumerate() {
            net.time_embedding(t_in[b], &mut hidden, te)?;
        }
        let mut input = x[..n * cfg.image_len()].to_vec();
        if mask.acts[0] {
            let q = InputQuant {
                q: self.acts[0],
                bits: self.input_bits,
            };
            for e in &mut input {
                *e = q.dequantize(q.quantize(*e));
            }
        }
        let mut acts: [Vec<f32>; 4] = [input, Vec::new(), Vec::new(), Vec::new()];
        let mut pre: [Vec<f32>; 4] = Default::default();
        for l in 0..4 {
            let (in_c, out_c, tr) = layer_shape(&cfg, l);
            let wt = &self.params[off[2 * l]..off[2 * l + 1]];
            let mut kernel = vec![0.0f32; in_c * out_c * 9];
            for o in 0..out_c {
                let s = self.scales[l].get(o).copied().unwrap_or(1.0);
                for i in 0..in_c {
                    for k in 0..9 {
                        let mut v = wt[weight_index(in_c, out_c, tr, o, i, k)];
                        if mask.weights[l] {
                            v = quantize_weight(v, s) as f32 * s;
                        }
                        // Transposed (stride 1, padding 1) = conv with the kernel rotated 180°.
                        kernel[(o * in_c + i) * 9 + if tr { 8 - k } else { k }] = v;
                    }
                }
            }
            let mut out = vec![0.0f32; n * out_c * plane];
            conv_batch(
                &kernel,
                self.biases[l],
                in_c,
                out_c,
                n,
                h,
                w,
                &acts[l],
                &mut out,
            )?;
            if l < 3 {
                let mut a = out.clone();
                let q = self.acts[l + 1];
                for (j, v) in a.iter_mut().enumerate() {
                    let r = v.max(0.0);
                    if l == 1 {
                        let (b, o) = (j / (out_c * plane), (j / plane) % out_c);
                        let te = temb[b * h2 + o];
                        *v = if mask.acts[2] {
                            let offset = libm::roundf(te / q.scale) as i32;
                            let qv = (libm::roundf(r / q.scale) as i32 + offset + q.zero_point)
                                .clamp(-128, 127);
                            q.scale * (qv - q.zero_point) as f32
                        } else {
                            r + te
                        };
                    } else {
                        *v = if mask.acts[l + 1] {
                            q.dequantize(q.quantize(r))
                        } else {
                            r
                        };
                    }
                }
                acts[l + 1] = a;
            }
            pre[l] = out;
        }
        Ok(Trace { acts, pre })
    }
}

/// `out = bias + kernel ∗ input` (3×3, stride 1, padding 1) for `n` maps (Winograd with the
/// `fast` feature).
#[cfg(feature = "fast")]
#[allow(clippy::too_many_arguments)]
fn conv_batch(
    kernel: &[f32],
    bias: &[f32],
    in_c: usize,
    out_c: usize,
    n: usize,
    h: usize,
    w: usize,
    input: &[f32],
    out: &mut [f32],
) -> Result<()> {
    use crate::kernels::winograd::{Epilogue, Geometry, Tile, WinogradConv};
    let conv = WinogradConv::new(kernel, bias, in_c, out_c, Tile::F2);
    // The Winograd layer works channels-last: transpose each map in and out.
    let plane = h * w;
    let mut hwc_in = vec![0.0f32; n * in_c * plane];
    for (src, dst) in input
        .chunks_exact(in_c * plane)
        .zip(hwc_in.chunks_exact_mut(in_c * plane))
    {
        for (ch, row) in src.chunks_exact(plane).enumerate() {
            for (p, &v) in row.iter().enumerate() {
                dst[p * in_c + ch] = v;
            }
        }
    }
    let mut hwc_out = vec![0.0f32; n * out_c * plane];
    let epi = Epilogue {
        relu: false,
        add: None,
    };
    conv.run(
        &hwc_in,
        Geometry::new(n, h, w, Tile::F2),
        epi,
        &mut Default::default(),
        &mut hwc_out,
        true,
    );
    for (src, dst) in hwc_out
        .chunks_exact(out_c * plane)
        .zip(out.chunks_exact_mut(out_c * plane))
    {
        for (p, px) in src.chunks_exact(out_c).enumerate() {
            for (ch, &v) in px.iter().enumerate() {
                dst[ch * plane + p] = v;
            }
        }
    }
    Ok(())
}

/// `out = bias + kernel ∗ input` (3×3, stride 1, padding 1) for `n` maps (reference loops).
#[cfg(not(feature = "fast"))]
#[allow(clippy::too_many_arguments)]
fn conv_batch(
    kernel: &[f32],
    bias: &[f32],
    in_c: usize,
    out_c: usize,
    n: usize,
    h: usize,
    w: usize,
    input: &[f32],
    out: &mut [f32],
) -> Result<()> {
    let (ip, op) = (in_c * h * w, out_c * h * w);
    for b in 0..n {
        crate::kernels::reference::conv3x3(
            &input[b * ip..(b + 1) * ip],
            crate::kernels::reference::Dims::new(in_c, h, w),
            kernel,
            bias,
            out_c,
            1,
            &mut out[b * op..(b + 1) * op],
        )?;
    }
    Ok(())
}

/// Calibration inputs the [`RangeMethod::EpsMse`] search simulates per candidate.
const EPS_SEARCH_INPUTS: usize = 128;
/// Candidates of the [`RangeMethod::EpsMse`] search: the observed range times
/// `EPS_SEARCH_RATIO^i`, i < `EPS_SEARCH_STEPS` (1 down to 0.2, 4% apart).
const EPS_SEARCH_STEPS: usize = 40;
const EPS_SEARCH_RATIO: f32 = 0.96;

/// Calibration inputs simulated at once (bounds the simulation's memory to a few tens of MB).
const SIM_CHUNK: usize = 32;

/// A complete post-training quantization of a SimpleUNet: the (equalized) f32 weights, the
/// (corrected) biases, per-channel weight scales and per-tensor activation quantizations.

#[derive(Debug, Clone)]
pub struct QuantPlan {
    cfg: SimpleUNetConfig,
    params: Vec<f32>,
    biases: [Vec<f32>; 4],
    scales: [Vec<f32>; 4],
    acts: [ActQuant; 4],
    input_bits: u32,
    ranges: [(f32, f32); 4],
}

impl QuantPlan {
    /// Quantizes `net` with `opts`, calibrating on the inputs `cal` observed.
    pub fn build(net: &SimpleUNet<'_>, cal: &Calibrator<'_>, opts: &QuantOptions) -> Result<Self> {
        if !matches!(opts.input_bits, 8 | 16) {
            return Err(crate::error::Error::InvalidConfig(
                "input bits must be 8 or 16",
            ));
        }
        let cfg = *net.config();
        let p = net.params();
        let mut params = Vec::with_capacity(cfg.param_count());
        for part in [
            p.enc1_w, p.enc1_b, p.enc2_w, p.enc2_b, p.dec1_w, p.dec1_b, p.dec2_w, p.dec2_b,
            p.time0_w, p.time0_b, p.time2_w, p.time2_b,
        ] {
            params.extend_from_slice(part);
        }
        let (xs, ts) = cal.inputs();
        let img = cfg.image_len();
        let plane = (cfg.height * cfg.width) as usize;
        let off = param_offsets(&cfg);
        let no_scales: [Vec<f32>; 4] = Default::default();
        let dummy = [ActQuant::from_range(-1.0, 1.0); 4];
        let bias_of = |params: &[f32], l: usize| params[off[2 * l + 1]..off[2 * l + 2]].to_vec();
        // Runs `f` on f32 traces of `params` over the calibration inputs.
        let f32_pass = |params: &[f32], f: &mut dyn FnMut(&Trace)| -> Result<()> {
            let biases: [Vec<f32>; 4] = core::array::from_fn(|l| bias_of(params, l));
            let sim = Sim {
                cfg,
                params,
                biases: core::array::from_fn(|l| biases[l].as_slice()),
                scales: &no_scales,
                acts: dummy,
                input_bits: 8,
            };
            for (x, t) in xs.chunks(SIM_CHUNK * img).zip(ts.chunks(SIM_CHUNK)) {
                f(&sim.run(x, t, QuantMask::NONE)?);
            }
            Ok(())
        };

        if opts.equalize != Equalize::Off {
            // Per-channel ranges of the three ReLU-layer outputs (largest magnitude).
            let widths = [
                cfg.hidden1 as usize,
                cfg.hidden2 as usize,
                cfg.hidden1 as usize,
            ];
            let mut ch_range: [Vec<f32>; 3] = core::array::from_fn(|k| vec![0.0; widths[k]]);
            f32_pass(&params, &mut |tr| {
                for k in 0..3 {
                    for (j, v) in tr.acts[k + 1].iter().enumerate() {
                        let o = (j / plane) % widths[k];
                        ch_range[k][o] = ch_range[k][o].max(v.abs());
                    }
                }
            })?;
            equalize(&cfg, &mut params, opts.equalize, &ch_range);
        }

        let mut stats = RangeStats::new(CALIBRATION_STRIDE);
        f32_pass(&params, &mut |tr| {
            for k in 0..4 {
                stats.record(k, &tr.acts[k]);
            }
        })?;
        let mut ranges = stats.ranges(opts.range);
        let scales: [Vec<f32>; 4] = core::array::from_fn(|l| {
            weight_scales(
                &cfg,
                l,
                &params[off[2 * l]..off[2 * l + 1]],
                opts.weight_clip,
            )
        });
        let mut biases: [Vec<f32>; 4] = core::array::from_fn(|l| bias_of(&params, l));
        if opts.range == RangeMethod::EpsMse && !ts.is_empty() {
            let n = ts.len().min(EPS_SEARCH_INPUTS);
            let (x, t) = (&xs[..n * img], &ts[..n]);
            let bias_refs: [&[f32]; 4] = core::array::from_fn(|l| biases[l].as_slice());
            let mut reference = Vec::new();
            for (xc, tc) in x.chunks(SIM_CHUNK * img).zip(t.chunks(SIM_CHUNK)) {
                let f = Sim {
                    cfg,
                    params: &params,
                    biases: bias_refs,
                    scales: &no_scales,
                    acts: dummy,
                    input_bits: 8,
                }
                .run(xc, tc, QuantMask::NONE)?;
                reference.extend_from_slice(&f.pre[3]);
            }
            let eps_mse = |ranges: &[(f32, f32); 4]| -> Result<f64> {
                let sim = Sim {
                    cfg,
                    params: &params,
                    biases: bias_refs,
                    scales: &scales,
                    acts: act_quants(ranges, opts.input_bits),
                    input_bits: opts.input_bits,
                };
                let mut sum = 0.0f64;
                let chunks = x.chunks(SIM_CHUNK * img).zip(t.chunks(SIM_CHUNK));
                for ((xc, tc), rc) in chunks.zip(reference.chunks(SIM_CHUNK * img)) {
                    let q = sim.run(xc, tc, QuantMask::ALL)?;
                    sum += q.pre[3]
                        .iter()
                        .zip(rc)
                        .map(|(a, b)| {
                            let d = (a - b) as f64;
                            d * d
                        })
                        .sum::<f64>();
                }
                Ok(sum)
            };
            for k in 0..4 {
                let (lo0, hi0) = (stats.min[k].min(0.0), stats.max[k].max(0.0));
                let mut best = (ranges[k], eps_mse(&ranges)?);
                for i in 0..EPS_SEARCH_STEPS {
                    let f = libm::powf(EPS_SEARCH_RATIO, i as f32);
                    let mut cand = ranges;
                    cand[k] = (lo0 * f, hi0 * f);
                    let e = eps_mse(&cand)?;
                    if e < best.1 {
                        best = (cand[k], e);
                    }
                }
                ranges[k] = best.0;
            }
        }
        let acts = act_quants(&ranges, opts.input_bits);

        if opts.bias_correction && !ts.is_empty() {
            let f32_biases: [Vec<f32>; 4] = biases.clone();
            for l in 0..4 {
                let (_, out_c, _) = layer_shape(&cfg, l);
                let mut diff = vec![0.0f64; out_c];
                for (x, t) in xs.chunks(SIM_CHUNK * img).zip(ts.chunks(SIM_CHUNK)) {
                    let q = Sim {
                        cfg,
                        params: &params,
                        biases: core::array::from_fn(|k| biases[k].as_slice()),
                        scales: &scales,
                        acts,
                        input_bits: opts.input_bits,
                    }
                    .run(x, t, QuantMask::ALL)?;
                    let f = Sim {
                        cfg,
                        params: &params,
                        biases: core::array::from_fn(|k| f32_biases[k].as_slice()),
                        scales: &no_scales,
                        acts: dummy,
                        input_bits: 8,
                    }
                    .run(x, t, QuantMask::NONE)?;
                    for (j, (a, b)) in q.pre[l].iter().zip(&f.pre[l]).enumerate() {
                        diff[(j / plane) % out_c] += (*a - *b) as f64;
                    }
                }
                let count = (ts.len() * plane) as f64;
                for (b, d) in biases[l].iter_mut().zip(&diff) {
                    *b -= (*d / count) as f32;
                }
            }
        }
        Ok(Self {
            cfg,
            params,
            biases,
            scales,
            acts,
            input_bits: opts.input_bits,
            ranges,
        })
    }

    /// The activation ranges chosen, in [`ACTIVATIONS`] order.
    pub fn ranges(&self) -> [(f32, f32); 4] {
        self.ranges
    }

    /// The f32 network this plan quantizes (equalized when asked: the same function as the
    /// original up to f32 rounding; biases uncorrected).
    pub fn f32_net(&self) -> Result<SimpleUNet<'_>> {
        SimpleUNet::from_flat(self.cfg, &self.params)
    }

    /// Simulates the network on `n = t_in.len()` inputs `x` (`[n][c][h][w]`) with the parts
    /// `mask` names quantized, writing ε to `eps`. With [`QuantMask::NONE`] this is the f32
    /// network; otherwise the corrected biases are used.
    pub fn simulate(&self, x: &[f32], t_in: &[f32], mask: QuantMask) -> Result<Vec<f32>> {
        let off = param_offsets(&self.cfg);
        let f32_biases: [&[f32]; 4] =
            core::array::from_fn(|l| &self.params[off[2 * l + 1]..off[2 * l + 2]]);
        let sim = Sim {
            cfg: self.cfg,
            params: &self.params,
            biases: if mask.any() {
                core::array::from_fn(|l| self.biases[l].as_slice())
            } else {
                f32_biases
            },
            scales: &self.scales,
            acts: self.acts,
            input_bits: self.input_bits,
        };
        crate::error::check_len(
            "simulation input",
            t_in.len() * self.cfg.image_len(),
            x.len(),
        )?;
        Ok(sim.run(x, t_in, mask)?.pre[3].clone())
    }

    /// The int8 model file.
    pub fn write(&self, schedule: ScheduleConfig, note: &str) -> Result<Vec<u8>> {
        let net = self.f32_net()?;
        write_int8(
            &net,
            schedule,
            note,
            core::array::from_fn(|l| self.biases[l].as_slice()),
            &self.scales,
            self.acts,
            self.input_bits,
        )
    }
}

/// Rescales `params` in place (see [`Equalize`]); `ch_range[k]` holds the per-channel largest
/// magnitude of the enc1, enc2 + time embedding and dec1 outputs.
fn equalize(cfg: &SimpleUNetConfig, params: &mut [f32], mode: Equalize, ch_range: &[Vec<f32>; 3]) {
    let off = param_offsets(cfg);
    let h2 = cfg.hidden2 as usize;
    let sweeps = match mode {
        Equalize::Off => 0,
        Equalize::Weights => EQUALIZE_SWEEPS,
        Equalize::Activations => 1,
    };
    for _ in 0..sweeps {
        for (b, ranges) in ch_range.iter().enumerate() {
            let (l1, l2) = (b, b + 1);
            let (in1, out1, tr1) = layer_shape(cfg, l1);
            let (_, out2, tr2) = layer_shape(cfg, l2);
            for ch in 0..out1 {
                let w1 = off[2 * l1];
                let w2 = off[2 * l2];
                let r1 = match mode {
                    Equalize::Activations => ranges[ch],
                    _ => (0..in1)
                        .flat_map(|i| (0..9).map(move |k| (i, k)))
                        .map(|(i, k)| params[w1 + weight_index(in1, out1, tr1, ch, i, k)].abs())
                        .fold(0.0f32, f32::max),
                };
                let r2 = (0..out2)
                    .flat_map(|o| (0..9).map(move |k| (o, k)))
                    .map(|(o, k)| params[w2 + weight_index(out1, out2, tr2, o, ch, k)].abs())
                    .fold(0.0f32, f32::max);
                if !(r1 > 0.0 && r2 > 0.0 && r1.is_finite() && r2.is_finite()) {
                    continue;
                }
                let s = libm::sqrtf(r1 / r2);
                for i in 0..in1 {
                    for k in 0..9 {
                        params[w1 + weight_index(in1, out1, tr1, ch, i, k)] /= s;
                    }
                }
                params[off[2 * l1 + 1] + ch] /= s;
                if b == 1 {
                    // enc2's output includes the time embedding: scale its last Linear's row.
                    for v in &mut params[off[10] + ch * h2..off[10] + (ch + 1) * h2] {
                        *v /= s;
                    }
                    params[off[11] + ch] /= s;
                }
                for o in 0..out2 {
                    for k in 0..9 {
                        params[w2 + weight_index(out1, out2, tr2, o, ch, k)] *= s;
                    }
                }
            }
        }
    }
}

fn names(
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

fn out_names(layer: &str) -> (&'static str, &'static str) {
    match layer {
        "enc1" => ("enc1.output_scale", "enc1.output_zero_point"),
        "enc2" => ("enc2.output_scale", "enc2.output_zero_point"),
        _ => ("dec1.output_scale", "dec1.output_zero_point"),
    }
}
