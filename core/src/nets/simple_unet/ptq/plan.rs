//! [`QuantPlan`]: the full SimpleUNet post-training quantizer, which keeps the calibration
//! inputs, simulates the int8 network in real numbers with any part kept in f32, and chooses
//! weight clipping, cross-layer equalization and bias correction from what it measures.

use alloc::vec;
use alloc::vec::Vec;

use crate::diffusion::schedule::ScheduleConfig;
use crate::error::Result;
use crate::kernels::calibrate::{RangeMethod, RangeStats, CALIBRATION_STRIDE};
use crate::kernels::quant::{quantize_weight, ActQuant, InputQuant};
use crate::nets::simple_unet::ptq::calibrator::Calibrator;
use crate::nets::simple_unet::ptq::writer::*;
use crate::nets::simple_unet::{SimpleUNet, SimpleUNetConfig};

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

/// Transposes each `rows × cols` matrix of `src` (row-major, one after another) into the
/// same place of `dst`: `dst[c·rows + r] = src[r·cols + c]`.
#[cfg(feature = "fast")]
fn transpose_each(src: &[f32], dst: &mut [f32], rows: usize, cols: usize) {
    for (src, dst) in src
        .chunks_exact(rows * cols)
        .zip(dst.chunks_exact_mut(rows * cols))
    {
        for (r, row) in src.chunks_exact(cols).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                dst[c * rows + r] = v;
            }
        }
    }
}

/// `out = bias + kernel ∗ input` (3×3, stride 1, padding 1) for `n` maps: Winograd with the
/// `fast` feature, the reference loops without it.
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
    #[cfg(feature = "fast")]
    {
        use crate::kernels::winograd::{Epilogue, Geometry, Tile, WinogradConv};
        let conv = WinogradConv::new(kernel, bias, in_c, out_c, Tile::F2);
        // The Winograd layer works channels-last: transpose each map in and out.
        let plane = h * w;
        let mut hwc_in = vec![0.0f32; n * in_c * plane];
        transpose_each(input, &mut hwc_in, in_c, plane);
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
        transpose_each(&hwc_out, out, plane, out_c);
    }
    #[cfg(not(feature = "fast"))]
    {
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

        let mut stats = RangeStats::<4>::new(CALIBRATION_STRIDE);
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
