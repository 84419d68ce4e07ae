//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ddpm_core::{format::ModelWriter, AsModelConfig, GaussianNoise, ScheduleConfig};

/// Random parameters shaped like PyTorch's default init: uniform-ish magnitudes ~ 1/√fan_in,
/// scaled by `scale`.
pub fn random_params(cfg: &impl AsModelConfig, seed: u64, scale: f32) -> Vec<f32> {
    let cfg = cfg.as_model_config();
    let mut g = GaussianNoise::new(seed);
    let mut out = Vec::with_capacity(cfg.param_count());
    for spec in &cfg.tensor_specs() {
        // Conv2d [out, in, 3, 3] and ConvTranspose2d [in, out, 3, 3] both take dims[1]·9 as
        // fan-in in PyTorch's init; Linear [out, in] takes dims[1]; biases use a fixed 64.
        let fan_in = match spec.rank {
            4 => spec.dims[1] as f32 * 9.0,
            2 => spec.dims[1] as f32,
            _ => 64.0,
        };
        let s = scale / fan_in.sqrt();
        for _ in 0..spec.numel() {
            out.push(g.next_gaussian() * s);
        }
    }
    out
}

/// Random values in [−3, 3].
pub fn random_input(n: usize, seed: u64) -> Vec<f32> {
    let mut g = GaussianNoise::new(seed);
    (0..n)
        .map(|_| (g.next_gaussian()).clamp(-3.0, 3.0))
        .collect()
}

/// A model file holding `params`.
pub fn model_bytes(cfg: &impl AsModelConfig, sched: ScheduleConfig, params: &[f32]) -> Vec<u8> {
    let cfg = cfg.as_model_config();
    let mut w = ModelWriter::new(cfg, sched, "test model");
    let mut rest = params;
    for spec in &cfg.tensor_specs() {
        let (head, tail) = rest.split_at(spec.numel());
        w.push_f32(spec.name, spec.dims(), head).unwrap();
        rest = tail;
    }
    w.finish()
}

/// max |a − b| / max |b|; infinite when either side holds a NaN or an infinity, or the lengths
/// differ, so a broken path can never pass a tolerance check.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.iter().chain(b).any(|v| !v.is_finite()) {
        return f32::INFINITY;
    }
    let scale = b
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}
