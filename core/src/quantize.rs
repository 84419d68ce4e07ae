//! Post-training quantization of an f32 SimpleUNet into an int8 model file (host side).
//!
//! [`Calibrator`] runs the f32 reference forward pass on calibration inputs and records the
//! range of every activation tensor the int8 network stores (input, enc1, enc2 + time
//! embedding, dec1); [`quantize_simple_unet`] turns the ranges and the f32 weights into the
//! int8 file [`crate::int8::Int8SimpleUNet`] reads.

use alloc::vec;
use alloc::vec::Vec;

use crate::config::{ModelConfig, ScheduleConfig, SimpleUNetConfig};
use crate::error::Result;
use crate::format::{ModelWriter, Precision};
use crate::quant::{quantize_weight, weight_scale, ActQuant, QuantizedMultiplier};
use crate::simple_unet::SimpleUNet;

/// How an activation range is chosen from the calibration values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RangeMethod {
    /// The smallest and largest value seen.
    MinMax,
    /// The given lower and upper percentiles (e.g. 0.01 and 99.99) of a fixed-stride
    /// subsample of the values seen.
    Percentile(f32),
}

/// The four activation tensors the int8 network stores.
pub const ACTIVATIONS: [&str; 4] = ["input", "enc1", "enc2", "dec1"];

/// Records activation ranges of an f32 SimpleUNet on calibration inputs.
pub struct Calibrator<'w> {
    net: SimpleUNet<'w>,
    workspace: Vec<f32>,
    out: Vec<f32>,
    min: [f32; 4],
    max: [f32; 4],
    samples: [Vec<f32>; 4],
    stride: usize,
    counter: usize,
}

impl<'w> Calibrator<'w> {
    /// A calibrator for `net`; every `stride`-th value is kept for percentiles.
    pub fn new(net: SimpleUNet<'w>, stride: usize) -> Self {
        let cfg = *net.config();
        Self {
            net,
            workspace: vec![0.0; cfg.workspace_len()],
            out: vec![0.0; cfg.image_len()],
            min: [f32::INFINITY; 4],
            max: [f32::NEG_INFINITY; 4],
            samples: Default::default(),
            stride: stride.max(1),
            counter: 0,
        }
    }

    fn record(&mut self, k: usize, values: &[f32]) {
        for &v in values {
            self.min[k] = self.min[k].min(v);
            self.max[k] = self.max[k].max(v);
            self.counter += 1;
            if self.counter % self.stride == 0 {
                self.samples[k].push(v);
            }
        }
    }

    /// Runs the network on one input (`x` at time input `t_in`) and records its activations.
    pub fn observe(&mut self, x: &[f32], t_in: f32) -> Result<()> {
        self.net
            .forward_reference(x, t_in, &mut self.workspace, &mut self.out)?;
        let cfg = *self.net.config();
        let plane = cfg.height as usize * cfg.width as usize;
        let (h1, h2) = (cfg.hidden1 as usize, cfg.hidden2 as usize);
        let ws = core::mem::take(&mut self.workspace);
        self.record(0, x);
        self.record(1, &ws[..h1 * plane]);
        self.record(2, &ws[h1 * plane..(h1 + h2) * plane]);
        self.record(3, &ws[(h1 + h2) * plane..(2 * h1 + h2) * plane]);
        self.workspace = ws;
        Ok(())
    }

    /// The chosen range of each of [`ACTIVATIONS`].
    pub fn ranges(&self, method: RangeMethod) -> [(f32, f32); 4] {
        core::array::from_fn(|k| match method {
            RangeMethod::MinMax => (self.min[k], self.max[k]),
            RangeMethod::Percentile(p) => {
                let mut v = self.samples[k].clone();
                if v.is_empty() {
                    return (self.min[k], self.max[k]);
                }
                v.sort_by(|a, b| a.total_cmp(b));
                let at = |q: f32| {
                    let i = libm::roundf((q / 100.0) * (v.len() - 1) as f32) as usize;
                    v[i.min(v.len() - 1)]
                };
                (at(100.0 - p), at(p))
            }
        })
    }
}

/// Writes the int8 model file of `net` with activation `ranges` (in [`ACTIVATIONS`] order).
pub fn quantize_simple_unet(
    net: &SimpleUNet<'_>,
    schedule: ScheduleConfig,
    ranges: [(f32, f32); 4],
    note: &str,
) -> Result<Vec<u8>> {
    let cfg: SimpleUNetConfig = *net.config();
    let p = net.params();
    let acts = ranges.map(|(lo, hi)| ActQuant::from_range(lo, hi));
    let mut w = ModelWriter::new(ModelConfig::SimpleUNet(cfg), schedule, note)
        .with_precision(Precision::Int8);
    w.push_f32("input.scale", &[1], &[acts[0].scale])?;
    w.push_i32("input.zero_point", &[1], &[acts[0].zero_point])?;
    let (c, h1, h2) = (cfg.channels, cfg.hidden1, cfg.hidden2);
    // (name, weight, bias, in, out, transposed)
    type LayerSpec<'p> = (&'static str, &'p [f32], &'p [f32], u32, u32, bool);
    let layers: [LayerSpec<'_>; 4] = [
        ("enc1", p.enc1_w, p.enc1_b, c, h1, false),
        ("enc2", p.enc2_w, p.enc2_b, h1, h2, false),
        ("dec1", p.dec1_w, p.dec1_b, h2, h1, true),
        ("dec2", p.dec2_w, p.dec2_b, h1, c, true),
    ];
    for (l, (name, wt, bias, in_c, out_c, transposed)) in layers.into_iter().enumerate() {
        let (in_c, out_c) = (in_c as usize, out_c as usize);
        let in_scale = acts[l].scale;
        // Gather each output channel's taps (the layout differs for transposed kernels).
        let channel = |o: usize| -> Vec<f32> {
            let mut v = Vec::with_capacity(in_c * 9);
            for i in 0..in_c {
                for k in 0..9 {
                    v.push(if transposed {
                        wt[(i * out_c + o) * 9 + k]
                    } else {
                        wt[(o * in_c + i) * 9 + k]
                    });
                }
            }
            v
        };
        let scales: Vec<f32> = (0..out_c).map(|o| weight_scale(&channel(o))).collect();
        let mut q = vec![0i8; wt.len()];
        for i in 0..in_c {
            for (o, &scale) in scales.iter().enumerate() {
                for k in 0..9 {
                    let idx = if transposed {
                        (i * out_c + o) * 9 + k
                    } else {
                        (o * in_c + i) * 9 + k
                    };
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
        w.push_f32(sn, &[out_c as u32], &scales)?;
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
