//! Sampling: the DDPM and DDIM samplers run batched in tch (`--backend torch`), the ddpm-core
//! host sampler (`--backend core`), and the output writers (PNG grid, IDX).
use std::path::Path;

use anyhow::{Context, Result};
use ddpm_core::sampler::{DdimConfig, DdpmConfig, DdpmVariance, Plan, SamplerConfig};
use ddpm_core::{Prediction, Schedule};
use tch::{Device, Kind, Tensor};

use crate::model::Net;

/// The predicted x0 of a batch from the network's output `out` at x_t, the arithmetic of
/// `ddpm_core::sampler::split_output`: ε: (x − √(1−ᾱ)·ε)/√ᾱ; v: √ᾱ·x − √(1−ᾱ)·v. `sa` = √ᾱ_t and
/// `s1a` = √(1−ᾱ_t) (the samplers pass the core's f32 values, widened exactly).
pub fn predicted_x0(pred: Prediction, x: &Tensor, out: &Tensor, sa: f64, s1a: f64) -> Tensor {
    match pred {
        Prediction::Eps => (x - out * s1a) / sa,
        Prediction::V => x * sa - out * s1a,
    }
}

/// The predicted ε of a batch from the network's output `out` at x_t: ε itself, or, for v,
/// √(1−ᾱ)·x + √ᾱ·v (see [`predicted_x0`]).
pub fn predicted_eps(pred: Prediction, x: &Tensor, out: &Tensor, sa: f64, s1a: f64) -> Tensor {
    match pred {
        Prediction::Eps => out.shallow_clone(),
        Prediction::V => x * s1a + out * sa,
    }
}

/// One DDPM ancestral step on a batch, the same arithmetic as `ddpm_core::sampler::ddpm_step`:
/// coefficients in f32 from the core's schedule, `x ← (x − β_t/√(1−ᾱ_t)·ε)/√α_t + σ_t·z`
/// (or the posterior mean of the clipped x0 with `clip_x0`), no noise at t = 0. `z` is only
/// read when the step adds noise. `eps` is the network's output (ε, or v when the schedule's
/// network predicts v).
pub fn ddpm_step(
    sched: &Schedule,
    cfg: &DdpmConfig,
    t: u32,
    x: &Tensor,
    eps: &Tensor,
    z: &Tensor,
) -> Tensor {
    let t = t as usize;
    let beta = sched.betas()[t];
    let alpha = sched.alphas()[t];
    let acp = sched.alphas_cumprod()[t];
    let sigma = if t == 0 {
        0.0
    } else {
        match cfg.variance {
            DdpmVariance::FixedLarge => beta.sqrt(),
            DdpmVariance::FixedSmall => sched.posterior_variance()[t].sqrt(),
        }
    };
    let pred = sched.config().prediction;
    let (sa, s1a) = (acp.sqrt(), (1.0 - acp).sqrt());
    let v = if cfg.clip_x0 {
        let acp_prev = sched.alpha_bar_or_one(t.checked_sub(1));
        let c_x0 = acp_prev.sqrt() * beta / (1.0 - acp);
        let c_xt = alpha.sqrt() * (1.0 - acp_prev) / (1.0 - acp);
        let x0 = predicted_x0(pred, x, eps, sa.into(), s1a.into()).clamp(-1.0, 1.0);
        x0 * c_x0 as f64 + x * c_xt as f64
    } else {
        let coef1 = 1.0 / alpha.sqrt();
        let coef2 = beta / s1a;
        let e = predicted_eps(pred, x, eps, sa.into(), s1a.into());
        (x - e * coef2 as f64) * coef1 as f64
    };
    if sigma > 0.0 {
        v + z * sigma as f64
    } else {
        v
    }
}

/// One DDIM step on a batch from t to `t_prev` (ᾱ_prev = 1 when `None`), the same arithmetic
/// as `ddpm_core::sampler::ddim_step`. `z` is only read when η > 0.
pub fn ddim_step(
    sched: &Schedule,
    cfg: &DdimConfig,
    t: u32,
    t_prev: Option<u32>,
    x: &Tensor,
    eps: &Tensor,
    z: &Tensor,
) -> Tensor {
    let a_t = sched.alphas_cumprod()[t as usize];
    let a_p = sched.alpha_bar_or_one(t_prev.map(|p| p as usize));
    let var = (1.0 - a_p) / (1.0 - a_t) * (1.0 - a_t / a_p);
    let sigma = cfg.eta * var.max(0.0).sqrt();
    let c_dir = (1.0 - a_p - sigma * sigma).max(0.0).sqrt();
    let (sa_t, s1a_t, sa_p) = (a_t.sqrt(), (1.0 - a_t).sqrt(), a_p.sqrt());
    let pred = sched.config().prediction;
    let mut x0 = predicted_x0(pred, x, eps, sa_t.into(), s1a_t.into());
    let mut e = predicted_eps(pred, x, eps, sa_t.into(), s1a_t.into());
    if cfg.clip_x0 {
        x0 = x0.clamp(-1.0, 1.0);
        if cfg.recompute_eps {
            e = (x - &x0 * sa_t as f64) / s1a_t as f64;
        }
    }
    let v = x0 * sa_p as f64 + e * c_dir as f64;
    if sigma > 0.0 {
        v + z * sigma as f64
    } else {
        v
    }
}

/// Autoguidance on a batch, the arithmetic of `ddpm_core::sampler::guide_output`: the
/// network's output `out` extrapolated away from the weaker guide's output `guide` at the
/// same x_t, `guide + w·(out − guide)` in f32.
pub fn guide_output(out: &Tensor, guide: &Tensor, weight: f32) -> Tensor {
    guide + (out - guide) * weight as f64
}

/// Refuses a guide (`guide_path`, its header's model and schedule) that cannot guide a model
/// with `model` and `schedule`: the two must draw images of one shape under one schedule and
/// parameterization, or `guide + w·(model − guide)` mixes unrelated quantities.
pub fn check_guide(
    (model, schedule): (&ddpm_core::ModelConfig, &ddpm_core::ScheduleConfig),
    (guide, guide_schedule): (&ddpm_core::ModelConfig, &ddpm_core::ScheduleConfig),
    guide_path: &Path,
) -> Result<()> {
    let shape = |c: &ddpm_core::ModelConfig| (c.channels(), c.height(), c.width());
    if shape(model) != shape(guide) {
        anyhow::bail!(
            "{}: the guide draws {:?} images (channels, height, width), the model {:?}",
            guide_path.display(),
            shape(guide),
            shape(model)
        );
    }
    if schedule != guide_schedule {
        anyhow::bail!(
            "{}: the guide was trained with another schedule or parameterization \
             ({guide_schedule:?}) than the model ({schedule:?})",
            guide_path.display()
        );
    }
    Ok(())
}

/// Whether step `k` of `plan` adds noise (so a z must be drawn).
fn step_needs_noise(cfg: &SamplerConfig, t: u32) -> bool {
    match cfg {
        SamplerConfig::Ddpm(_) => t > 0,
        SamplerConfig::Ddim(c) => c.eta > 0.0,
    }
}

/// Draws `n` samples in one batch on `net`'s device: x_T ~ N(0, I) and each step's z from the
/// torch generator seeded with `seed`; with `guide` = (weaker network, w) every output is
/// guided ([`guide_output`]). Returns an N×C×H×W tensor (not clamped).
#[allow(clippy::too_many_arguments)]
pub fn sample_torch(
    net: &Net,
    guide: Option<(&Net, f32)>,
    sched: &Schedule,
    cfg: &SamplerConfig,
    n: usize,
    seed: u64,
    device: Device,
    mut on_step: impl FnMut(usize, usize),
) -> Result<Tensor> {
    let c = net.config();
    let big_t = sched.len() as u32;
    let plan = Plan::new(cfg, big_t).map_err(|e| anyhow::anyhow!("sampler settings: {e}"))?;
    // libtorch takes the seed as a 64-bit pattern; the cast keeps every bit.
    tch::manual_seed(seed as i64);
    let shape = [
        n as i64,
        c.channels() as i64,
        c.height() as i64,
        c.width() as i64,
    ];
    let mut x = Tensor::randn(shape, (Kind::Float, device));
    tch::no_grad(|| -> Result<()> {
        for k in 0..plan.len() {
            let (t, prev) = plan.step(k).context("step past the sampler's plan")?;
            let t_in = t as f32 / big_t as f32;
            let t_batch = Tensor::full([n as i64], t_in as f64, (Kind::Float, device));
            let mut eps = net.forward(&x, &t_batch);
            if let Some((g, w)) = guide {
                eps = guide_output(&eps, &g.forward(&x, &t_batch), w);
            }
            let z = if step_needs_noise(cfg, t) {
                x.randn_like()
            } else {
                x.zeros_like()
            };
            x = match cfg {
                SamplerConfig::Ddpm(d) => ddpm_step(sched, d, t, &x, &eps, &z),
                SamplerConfig::Ddim(d) => ddim_step(sched, d, t, prev, &x, &eps, &z),
            };
            on_step(k + 1, plan.len());
        }
        Ok(())
    })?;
    Ok(x)
}

/// Model outputs in [−1, 1] to u8 pixels with the core's mapping.
pub fn to_pixels(values: &[f32]) -> Vec<u8> {
    values.iter().map(|&v| ddpm_core::pixel_to_u8(v)).collect()
}

/// Layout of an image grid.
#[derive(Debug, Clone, Copy)]
pub struct GridLayout {
    /// Images per row.
    pub cols: usize,
    /// Rows.
    pub rows: usize,
    /// Border around and between images, in image pixels (before upscaling).
    pub border: usize,
    /// Integer upscale factor.
    pub scale: usize,
}

impl GridLayout {
    /// A near-square grid for `n` images (4×4 for 16) with a 2-pixel border, upscaled ×4.
    pub fn for_count(n: usize) -> Self {
        let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
        Self {
            cols,
            rows: n.div_ceil(cols).max(1),
            border: 2,
            scale: 4,
        }
    }
}

/// Renders `n` C×H×W u8 images (C = 1 grey or 3 RGB) into one grid image; returns
/// (width, height, channels, pixels).
pub fn render_grid(
    pixels: &[u8],
    n: usize,
    (c, h, w): (usize, usize, usize),
    layout: GridLayout,
) -> (usize, usize, usize, Vec<u8>) {
    let b = layout.border;
    let gw = layout.cols * w + (layout.cols + 1) * b;
    let gh = layout.rows * h + (layout.rows + 1) * b;
    let (sw, sh) = (gw * layout.scale, gh * layout.scale);
    let mut out = vec![0u8; sw * sh * c];
    for i in 0..n {
        let (gr, gc) = (i / layout.cols, i % layout.cols);
        let (oy, ox) = (b + gr * (h + b), b + gc * (w + b));
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let v = pixels[((i * c + ch) * h + y) * w + x];
                    for dy in 0..layout.scale {
                        let row = (oy + y) * layout.scale + dy;
                        for dx in 0..layout.scale {
                            let col = (ox + x) * layout.scale + dx;
                            out[(row * sw + col) * c + ch] = v;
                        }
                    }
                }
            }
        }
    }
    (sw, sh, c, out)
}

/// Writes `n` C×H×W u8 images as a PNG grid, atomically.
pub fn write_png_grid(
    path: &Path,
    pixels: &[u8],
    n: usize,
    chw: (usize, usize, usize),
    layout: GridLayout,
) -> Result<()> {
    let (w, h, c, data) = render_grid(pixels, n, chw, layout);
    let color = match c {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        other => anyhow::bail!("a PNG grid needs 1 or 3 channels, the images have {other}"),
    };
    crate::atomic::write_atomic_with(path, |tmp| {
        let file = std::io::BufWriter::new(std::fs::File::create(tmp)?);
        let mut enc = png::Encoder::new(file, w as u32, h as u32);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(&data)?;
        writer.finish()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guide_of_another_shape_or_schedule_is_refused_naming_its_file() {
        use ddpm_core::{ModelConfig, Prediction, ScheduleConfig, TinyUNetConfig};
        let model = ModelConfig::TinyUNet(TinyUNetConfig::DEFAULT);
        let smaller = ModelConfig::TinyUNet(TinyUNetConfig {
            widths: [16, 32, 32],
            ..TinyUNetConfig::DEFAULT
        });
        let sched = ScheduleConfig::cosine(300).predicting(Prediction::V);
        let g = Path::new("runs/g.ddpm");
        // Another architecture or width is what a guide may be.
        check_guide((&model, &sched), (&smaller, &sched), g).unwrap();
        let taller = ModelConfig::TinyUNet(TinyUNetConfig {
            height: 32,
            ..TinyUNetConfig::DEFAULT
        });
        let e = check_guide((&model, &sched), (&taller, &sched), g).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("runs/g.ddpm: the guide draws (1, 32, 28)"),
            "{e}"
        );
        for other in [ScheduleConfig::cosine(300), ScheduleConfig::cosine(1000)] {
            let e = check_guide((&model, &sched), (&smaller, &other), g).unwrap_err();
            assert!(
                e.to_string()
                    .contains("another schedule or parameterization"),
                "{e}"
            );
        }
    }

    #[test]
    fn grid_places_images_with_borders() {
        // Two 1×2×2 images side by side, border 1, no upscaling.
        let layout = GridLayout {
            cols: 2,
            rows: 1,
            border: 1,
            scale: 1,
        };
        let px = [1, 2, 3, 4, 5, 6, 7, 8];
        let (w, h, c, out) = render_grid(&px, 2, (1, 2, 2), layout);
        assert_eq!((w, h, c), (7, 4, 1));
        #[rustfmt::skip]
        let expected = [
            0, 0, 0, 0, 0, 0, 0,
            0, 1, 2, 0, 5, 6, 0,
            0, 3, 4, 0, 7, 8, 0,
            0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn sixteen_images_make_a_four_by_four_grid_scaled_by_four() {
        let l = GridLayout::for_count(16);
        assert_eq!((l.cols, l.rows, l.border, l.scale), (4, 4, 2, 4));
        let (w, h, _, _) = render_grid(&vec![255; 16 * 784], 16, (1, 28, 28), l);
        assert_eq!((w, h), ((4 * 28 + 5 * 2) * 4, (4 * 28 + 5 * 2) * 4));
        assert_eq!(GridLayout::for_count(5).rows, 2);
    }
}
