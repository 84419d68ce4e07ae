//! Post-training quantization of an f32 TinyUNet into the int8 file
//! [`crate::nets::tiny_unet::int8::Int8TinyUNet`] reads (host side).
//!
//! [`TinyCalibrator`] runs the f32 reference forward pass and records the range of the
//! activation tensors the int8 network stores (x, s1, s2, d2, m, u2, u1, then m1, m2, … of the
//! further mid blocks, in [`TINY_ACTIVATIONS`] order). [`quantize_tiny_unet`] then gives both
//! halves of each concatenation one shared quantization, chosen from the union of their ranges:
//! `cat1 = [up(u2), s1]` (enc0 and up2 emit at it) and `cat2 = [up(last mid output), s2]`
//! (down1 and the last mid block emit at it), so the int8 concatenation is a plain
//! juxtaposition of bytes.

use alloc::vec;
use alloc::vec::Vec;

use crate::diffusion::schedule::ScheduleConfig;
use crate::error::Result;
use crate::file::{ModelWriter, Precision};
use crate::kernels::calibrate::{Observer, RangeMethod};
use crate::kernels::quant::{quantize_weight, weight_scale, ActQuant, QuantizedMultiplier};
use crate::nets::tiny_unet::int8::{
    last_mid, layer_count, tensor_names, EXTRA_MID_LAYER, MAX_ACTIVATIONS, OUT,
};
use crate::nets::tiny_unet::{TinyUNet, TinyUNetConfig};
use crate::nets::ModelConfig;

/// The activation tensors the int8 TinyUNet stores, in calibration order; a network has the
/// first [`layer_count`] of them.
pub const TINY_ACTIVATIONS: [&str; MAX_ACTIVATIONS] = [
    "x", "s1", "s2", "d2", "m", "u2", "u1", "m1", "m2", "m3", "m4", "m5", "m6", "m7",
];

/// Index in [`TINY_ACTIVATIONS`] of the output of layer `l` of
/// [`LAYERS`](crate::nets::tiny_unet::int8::LAYERS) (any but `out`).
const fn output_activation(l: usize) -> usize {
    if l < OUT {
        l + 1
    } else {
        l
    }
}

/// Records activation ranges of an f32 TinyUNet on calibration inputs.
pub struct TinyCalibrator<'w> {
    obs: Observer<TinyUNet<'w>, MAX_ACTIVATIONS>,
}

/// Where each of the network's [`TINY_ACTIVATIONS`] but x lies in
/// [`TinyUNet::forward_reference`]'s workspace: `[up(u2) | s1] u1 [up(m) | s2] u2 d2 m m1 …`.
pub fn reference_workspace_ranges(cfg: &TinyUNetConfig) -> Vec<core::ops::Range<usize>> {
    let [p1, p2, p3] = cfg.planes();
    let [w1, w2, w3] = cfg.widths.map(|v| v as usize);
    let s1 = w2 * p1..(w2 + w1) * p1;
    let u1 = s1.end..s1.end + w1 * p1;
    let s2 = u1.end + w3 * p2..u1.end + (w3 + w2) * p2;
    let u2 = s2.end..s2.end + w2 * p2;
    let d2 = u2.end..u2.end + w3 * p3;
    let m = d2.end..d2.end + w3 * p3;
    let extra = (1..cfg.mid_blocks as usize).map(|k| m.start + k * w3 * p3..m.end + k * w3 * p3);
    let mut r = vec![s1, s2, d2, m.clone(), u2, u1];
    r.extend(extra);
    r
}

impl<'w> TinyCalibrator<'w> {
    /// A calibrator for `net`; every `stride`-th value is kept for percentiles.
    pub fn new(net: TinyUNet<'w>, stride: usize) -> Self {
        Self {
            obs: Observer::new(net, stride),
        }
    }

    /// Makes a class-conditional network compute for `class` (`None`: "no class") in the
    /// observations that follow.
    pub fn set_class(&mut self, class: Option<u32>) -> Result<()> {
        self.obs.net = self.obs.net.with_class(class)?;
        Ok(())
    }

    /// Runs the network on `x` at time input `t_in` and records its activations.
    pub fn observe(&mut self, x: &[f32], t_in: f32) -> Result<()> {
        let parts = reference_workspace_ranges(self.obs.net.config());
        self.obs.observe(x, t_in, parts)
    }

    /// The chosen range of each of the network's [`TINY_ACTIVATIONS`] ([`layer_count`] of
    /// them).
    pub fn ranges(&self, method: RangeMethod) -> Vec<(f32, f32)> {
        let n = layer_count(self.obs.net.config());
        let stats = &self.obs.stats;
        (0..n)
            .map(|k| match method {
                // TinyUNet has no ε-driven planner: both take the per-tensor MSE range, searched
                // even when no value was subsampled.
                RangeMethod::Mse | RangeMethod::EpsMse => stats.mse_range(k),
                _ => stats.range(k, method),
            })
            .collect()
    }
}

fn union(a: (f32, f32), b: (f32, f32)) -> (f32, f32) {
    (a.0.min(b.0), a.1.max(b.1))
}

/// The stored activation quantizations of a network with `cfg`'s sizes from calibration
/// `ranges` ([`TINY_ACTIVATIONS`] order, [`layer_count`] of them): s1 and u2 share `cat1`'s, s2
/// and the last mid block's output share `cat2`'s, every other tensor has its own.
pub fn activation_quants(cfg: &TinyUNetConfig, ranges: &[(f32, f32)]) -> Result<Vec<ActQuant>> {
    crate::error::check_len("activation ranges", layer_count(cfg), ranges.len())?;
    let q = |r: (f32, f32)| ActQuant::from_range(r.0, r.1);
    let m_last = output_activation(last_mid(cfg));
    let cat1 = q(union(ranges[1], ranges[5]));
    let cat2 = q(union(ranges[2], ranges[m_last]));
    Ok((0..ranges.len())
        .map(|k| match k {
            1 | 5 => cat1,
            2 => cat2,
            _ if k == m_last => cat2,
            _ => q(ranges[k]),
        })
        .collect())
}

/// Writes the int8 model file of `net` with activation `ranges` ([`TINY_ACTIVATIONS`] order).
pub fn quantize_tiny_unet(
    net: &TinyUNet<'_>,
    schedule: ScheduleConfig,
    ranges: &[(f32, f32)],
    note: &str,
) -> Result<Vec<u8>> {
    let cfg = *net.config();
    let p = net.params();
    let a = activation_quants(&cfg, ranges)?;
    let mut w = ModelWriter::new(ModelConfig::TinyUNet(cfg), schedule, note)
        .with_precision(Precision::Int8);
    w.push_f32("input.scale", &[1], &[a[0].scale])?;
    w.push_i32("input.zero_point", &[1], &[a[0].zero_point])?;
    let c = cfg.channels;
    let [w1, w2, w3] = cfg.widths;
    let d = cfg.temb_dim;
    // Per layer (LAYERS order): weight, bias, time projection, in/out channels, input
    // quantization, output quantization.
    let blocks = &p.blocks;
    let m_last = output_activation(last_mid(&cfg));
    let layer = |l: usize| {
        let (in_c, out_c, input) = match l {
            0 => (c, w1, a[0]),
            1 => (w1, w2, a[1]),
            2 => (w2, w3, a[2]),
            3 => (w3, w3, a[3]),
            4 => (w3 + w2, w2, a[m_last]),
            5 => (w2 + w1, w1, a[5]),
            OUT => (w1, c, a[6]),
            // mid1 reads m; mid2 … read the previous extra mid block's output.
            _ => (w3, w3, a[if l == EXTRA_MID_LAYER { 4 } else { l - 1 }]),
        };
        let (wt, bias, temb) = if l == OUT {
            (p.out_w, p.out_b, None)
        } else {
            // Blocks are indexed as LAYERS but for `out`: mid1 is block 6, layer 7.
            let b = &blocks[if l < OUT { l } else { l - 1 }];
            (b.conv_w, b.conv_b, Some((b.temb_w, b.temb_b)))
        };
        let out = (l != OUT).then(|| a[output_activation(l)]);
        (wt, bias, temb, in_c, out_c, input, out)
    };
    for k in 0..layer_count(&cfg) {
        let (wt, bias, temb, in_c, out_c, input, out) = layer(k);
        let [wn, bn, mn, shn, bsn, osn, ozn, twn, tbn] = tensor_names(k);
        let per = in_c as usize * 9;
        let scales: Vec<f32> = wt.chunks(per).map(weight_scale).collect();
        let q: Vec<i8> = wt
            .iter()
            .enumerate()
            .map(|(i, &v)| quantize_weight(v, scales[i / per]))
            .collect();
        let bias_scale: Vec<f32> = scales.iter().map(|s| input.scale * s).collect();
        let qbias: Vec<i32> = bias
            .iter()
            .zip(&bias_scale)
            .map(|(&b, &u)| {
                let v = libm::round(b as f64 / u as f64);
                v.clamp(i32::MIN as f64 / 2.0, i32::MAX as f64 / 2.0) as i32
            })
            .collect();
        w.push_i8(wn, &[out_c, in_c, 3, 3], &q)?;
        w.push_i32(bn, &[out_c], &qbias)?;
        w.push_f32(bsn, &[out_c], &bias_scale)?;
        let (mults, shifts): (Vec<i32>, Vec<i32>) = match out {
            Some(o) => scales
                .iter()
                .map(|s| {
                    let m = QuantizedMultiplier::from_real(
                        input.scale as f64 * *s as f64 / o.scale as f64,
                    );
                    (m.multiplier, m.shift)
                })
                .unzip(),
            // `out` is dequantized from its accumulator; unit multipliers keep the per-layer
            // tensor set uniform.
            None => (vec![1 << 30; out_c as usize], vec![1; out_c as usize]),
        };
        w.push_i32(mn, &[out_c], &mults)?;
        w.push_i32(shn, &[out_c], &shifts)?;
        if let (Some(o), Some((temb_w, temb_b))) = (out, temb) {
            w.push_f32(osn, &[1], &[o.scale])?;
            w.push_i32(ozn, &[1], &[o.zero_point])?;
            w.push_f32(twn, &[out_c, d], temb_w)?;
            w.push_f32(tbn, &[out_c], temb_b)?;
        }
    }
    let e = cfg.emb_dim;
    w.push_f32("time_mlp.0.weight", &[d, e], p.time0_w)?;
    w.push_f32("time_mlp.0.bias", &[d], p.time0_b)?;
    w.push_f32("time_mlp.2.weight", &[d, d], p.time2_w)?;
    w.push_f32("time_mlp.2.bias", &[d], p.time2_b)?;
    if cfg.is_conditional() {
        w.push_f32("class_emb.weight", &[cfg.classes + 1, d], p.class_emb)?;
    }
    Ok(w.finish())
}
