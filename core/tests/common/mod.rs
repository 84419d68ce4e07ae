//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod solver_golden;

use ddpm_core::{file::ModelWriter, AsModelConfig, GaussianNoise, ScheduleConfig};

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

/// The fast paths of both networks behind one interface, so that the batch and thread tests are
/// written once.
#[cfg(feature = "fast")]
pub trait FastBatch {
    /// Elements of one image.
    fn image_len(&self) -> usize;
    /// One image.
    fn forward_one(&mut self, x: &[f32], t_in: f32, out: &mut [f32]);
    /// A batch of images.
    fn forward_many(&mut self, x: &[f32], t_in: &[f32], out: &mut [f32]);
}

#[cfg(feature = "fast")]
macro_rules! impl_fast_batch {
    ($t:ty) => {
        impl FastBatch for $t {
            fn image_len(&self) -> usize {
                self.config().image_len()
            }
            fn forward_one(&mut self, x: &[f32], t_in: f32, out: &mut [f32]) {
                self.forward(x, t_in, out).unwrap();
            }
            fn forward_many(&mut self, x: &[f32], t_in: &[f32], out: &mut [f32]) {
                self.forward_batch(x, t_in, out).unwrap();
            }
        }
    };
}
#[cfg(feature = "fast")]
impl_fast_batch!(ddpm_core::simple_unet::FastSimpleUNet);
#[cfg(feature = "fast")]
impl_fast_batch!(ddpm_core::tiny_unet::FastTinyUNet);

/// Each image of `x` through the single-image pass on its own, concatenated: the reference
/// of the batch and thread tests.
#[cfg(feature = "fast")]
pub fn single_runs(fast: &mut impl FastBatch, x: &[f32], t_in: &[f32]) -> Vec<f32> {
    let len = fast.image_len();
    let mut out = vec![0.0f32; x.len()];
    for ((xi, oi), &t) in x.chunks_exact(len).zip(out.chunks_exact_mut(len)).zip(t_in) {
        fast.forward_one(xi, t, oi);
    }
    out
}

/// The batch `x` through `forward_many` gives `single_runs` bit for bit, and so do its first
/// two images afterwards (a smaller batch after a larger one: scratch already grown).
#[cfg(feature = "fast")]
pub fn assert_batch_equals_single(fast: &mut impl FastBatch, x: &[f32], t_in: &[f32], what: &str) {
    let want = single_runs(fast, x, t_in);
    let mut got = vec![0.0f32; x.len()];
    fast.forward_many(x, t_in, &mut got);
    assert_eq!(got, want, "{what}");
    let two = 2 * fast.image_len();
    let mut got2 = vec![0.0f32; two];
    fast.forward_many(&x[..two], &t_in[..2], &mut got2);
    assert_eq!(got2, want[..two], "{what}, batch 2");
}
