//! The variational bound on the negative log-likelihood of a DDPM, in bits per dimension.
//!
//! With data x₀ scaled to [−1, 1] and the forward process q(x_t | x_{t−1}) = N(√α_t·x_{t−1}, β_t),
//! the negative ELBO of the lecture notes' decomposition (Ho et al. 2020, eq. 5 and §3.3) is
//!
//! ```text
//! L = L_T + Σ_{t=2..T} L_{t−1} + L_0
//! L_T     = KL(q(x_T | x₀) ‖ N(0, I))                                  (prior, no parameters)
//! L_{t−1} = E_{q(x_t | x₀)} KL(q(x_{t−1} | x_t, x₀) ‖ p_θ(x_{t−1} | x_t))   (t = 2..T)
//! L_0     = E_{q(x₁ | x₀)} [−log p_θ(x₀ | x₁)]                            (decoder)
//! ```
//!
//! Each L_{t−1} and L_0 is evaluated at one x_t drawn from q(x_t | x₀) for every image and every
//! t (an exact sum over t, a one-sample estimate of each expectation), so the mean over many
//! images is an unbiased estimate of the bound. The decoder p_θ(x₀ | x₁) is the discretized
//! Gaussian of Ho et al. §3.3: the pixel values 0..=255 map to 2k/255 − 1, each owns the bin of
//! half-width 1/255 around it, and the two edge bins take the tails; its mean is μ_θ(x₁, 1) and
//! its variance the step variance (below). Dividing the nats by D·ln 2 (D = C·H·W) gives bits
//! per dimension, an upper bound on the discrete data's negative log-likelihood.
//!
//! Timesteps in code are zero-based as everywhere in this project: step `k` in 0..T is the
//! paper's t = k + 1, the network sees k/T, and ᾱ_{−1} = 1. So `k = 0` is L_0 and step `k ≥ 1`
//! is the paper's L_{t−1} = L_k.
//!
//! Model variance (`--variance`, as the samplers): `fixed_large` σ²_t = β_t, `fixed_small`
//! σ²_t = β̃_t. For the decoder (k = 0) `fixed_large` uses β_1 (code β₀); `fixed_small` would
//! use β̃_1 = 0, a point mass, so it takes β̃_2 (code β̃₁) instead, as Ho et al.'s released
//! evaluation does (its `posterior_log_variance_clipped`). With `clip_x0` the model mean is the
//! posterior mean of the clipped predicted x₀, as in the samplers and in that evaluation.
//!
//! The arithmetic is f64 on the trainer's device; only the network runs in f32. The schedule
//! is the model file's, with β_t taken in f64 before the rounding to f32 (the same process up to
//! that rounding), and α_t, ᾱ_t, β̃_t derived from those β in f64 so that q is self-consistent.

use anyhow::{bail, Context, Result};
use ddpm_core::diffusion::DdpmVariance;
use ddpm_core::{GaussianNoise, Prediction, ScheduleConfig};
use tch::{Device, Kind, Tensor};

use crate::train::derive_seed;
use ddpm_torch::sample::{predicted_eps, predicted_x0};

/// Half the width of a pixel bin on the [−1, 1] scale (256 bins over a range of 2).
pub const BIN_HALF_WIDTH: f64 = 1.0 / 255.0;
/// Values beyond ±`EDGE` are the edge pixels (0 and 255 map to exactly ∓1; the nearest inner
/// pixels are 2/255 ≈ 0.0078 away, so any threshold between 1 − 0.0078 and 1 works).
const EDGE: f64 = 0.999;
/// Seed tag of the x_t draws (see [`crate::train::derive_seed`]).
const TAG_NLL: u64 = 201;

/// The forward process in f64: β_t and everything derived from it, for steps 0..T.
#[derive(Debug, Clone)]
pub struct Diffusion {
    betas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    posterior_variance: Vec<f64>,
    /// Posterior mean μ̃_t = coef_x0·x₀ + coef_xt·x_t.
    coef_x0: Vec<f64>,
    coef_xt: Vec<f64>,
    /// What the network's output stands for.
    prediction: Prediction,
}

impl Diffusion {
    /// The process with these β (each in (0, 1)).
    pub fn from_betas(betas: &[f64]) -> Result<Self> {
        if betas.is_empty() {
            bail!("the noise schedule has no steps");
        }
        if let Some((k, b)) = betas
            .iter()
            .enumerate()
            .find(|(_, &b)| !(b > 0.0 && b < 1.0))
        {
            bail!("β at step {k} is {b}; every β must lie in (0, 1)");
        }
        let mut acp = Vec::with_capacity(betas.len());
        let (mut var, mut c0, mut ct) = (Vec::new(), Vec::new(), Vec::new());
        let mut prev = 1.0f64;
        for &b in betas {
            let a = 1.0 - b;
            let cur = prev * a;
            acp.push(cur);
            var.push((1.0 - prev) / (1.0 - cur) * b);
            c0.push(prev.sqrt() * b / (1.0 - cur));
            ct.push(a.sqrt() * (1.0 - prev) / (1.0 - cur));
            prev = cur;
        }
        Ok(Self {
            betas: betas.to_vec(),
            alphas_cumprod: acp,
            posterior_variance: var,
            coef_x0: c0,
            coef_xt: ct,
            prediction: Prediction::Eps,
        })
    }

    /// The process of a model file's schedule (β in f64, before rounding to f32).
    pub fn from_schedule(cfg: &ScheduleConfig) -> Result<Self> {
        cfg.validate(usize::MAX).map_err(|e| {
            anyhow::anyhow!("schedule {}: {e}", crate::describe::describe_schedule(cfg))
        })?;
        let betas: Vec<f64> = (0..cfg.timesteps as usize)
            .map(|t| cfg.beta_f64(t))
            .collect();
        Ok(Self {
            prediction: cfg.prediction,
            ..Self::from_betas(&betas)?
        })
    }

    /// Number of steps T.
    pub fn timesteps(&self) -> usize {
        self.betas.len()
    }

    /// ᾱ at step k.
    pub fn alpha_bar(&self, k: usize) -> f64 {
        self.alphas_cumprod[k]
    }

    /// Variance of p_θ(x_{k−1} | x_k) at step k (k = 0: the decoder's), see the module notes.
    pub fn model_variance(&self, k: usize, variance: DdpmVariance) -> Result<f64> {
        Ok(match (variance, k) {
            (DdpmVariance::FixedLarge, _) => self.betas[k],
            (DdpmVariance::FixedSmall, 0) => *self
                .posterior_variance
                .get(1)
                .context("fixed_small needs T ≥ 2: its decoder variance is β̃ of the second step")?,
            (DdpmVariance::FixedSmall, _) => self.posterior_variance[k],
        })
    }

    /// μ_θ(x_k, k) from the predicted noise: (x_k − β_k/√(1−ᾱ_k)·ε)/√α_k, or with `clip_x0`
    /// the posterior mean of the predicted x₀ clipped to [−1, 1]. `out` is the network's output:
    /// ε, or v for a v-predicting network (x₀ and ε from it as the samplers take them).
    fn model_mean(&self, k: usize, x_t: &Tensor, out: &Tensor, clip_x0: bool) -> Tensor {
        let (b, acp) = (self.betas[k], self.alphas_cumprod[k]);
        let (sa, s1a) = (acp.sqrt(), (1.0 - acp).sqrt());
        if clip_x0 {
            let x0 = predicted_x0(self.prediction, x_t, out, sa, s1a).clamp(-1.0, 1.0);
            x0 * self.coef_x0[k] + x_t * self.coef_xt[k]
        } else {
            let eps = predicted_eps(self.prediction, x_t, out, sa, s1a);
            (x_t - eps * (b / s1a)) / (1.0 - b).sqrt()
        }
    }
}

/// KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) per element, in nats.
pub fn normal_kl(mean1: &Tensor, logvar1: f64, mean2: &Tensor, logvar2: f64) -> Tensor {
    let d = mean1 - mean2;
    (&d * &d * (-logvar2).exp() + ((logvar1 - logvar2).exp() + logvar2 - logvar1 - 1.0)) * 0.5
}

/// log(1 − e^d) for d ≤ 0, accurate at both ends (Mächler's log1mexp).
fn log1mexp(d: &Tensor) -> Tensor {
    let near = d.gt(-std::f64::consts::LN_2);
    let a = (-(d.expm1())).log();
    let b = (-(d.exp())).log1p();
    a.where_self(&near, &b)
}

/// log P(x) of the discretized Gaussian decoder, per element: x holds pixel values on the grid
/// 2k/255 − 1; each owns [x − 1/255, x + 1/255], except that −1 takes (−∞, −1 + 1/255] and 1
/// takes [1 − 1/255, ∞). The bin mass Φ(b) − Φ(a) (standardised bounds) is computed in log space
/// from whichever side keeps it accurate, so far-tail bins give finite logs rather than −∞.
pub fn discretized_gaussian_log_likelihood(x: &Tensor, mean: &Tensor, log_scale: f64) -> Tensor {
    let inv = (-log_scale).exp();
    let inf = f64::INFINITY;
    let lo = ((x - mean - BIN_HALF_WIDTH) * inv).where_scalarother(&x.gt(-EDGE), -inf);
    let hi = ((x - mean + BIN_HALF_WIDTH) * inv).where_scalarother(&x.lt(EDGE), inf);
    // Upper tail (lo ≥ 0): Φ(−lo) − Φ(−hi).
    let l_lo = (-&lo).special_log_ndtr();
    let upper = &l_lo + log1mexp(&((-&hi).special_log_ndtr() - &l_lo));
    // Lower tail (hi ≤ 0): Φ(hi) − Φ(lo).
    let l_hi = hi.special_log_ndtr();
    let lower = &l_hi + log1mexp(&(lo.special_log_ndtr() - &l_hi));
    // Straddling 0: 1 − Φ(lo) − Φ(−hi), both terms below ½.
    let middle = (-(lo.special_ndtr() + (-&hi).special_ndtr())).log1p();
    upper.where_self(&lo.ge(0.0), &lower.where_self(&hi.le(0.0), &middle))
}

/// What the bound is evaluated with.
#[derive(Debug, Clone, Copy)]
pub struct BoundOptions {
    /// Model variance.
    pub variance: DdpmVariance,
    /// Model mean from the predicted x₀ clipped to [−1, 1].
    pub clip_x0: bool,
    /// Seed of the x_t draws: image `i` at step `k` draws from its own stream, so results do
    /// not depend on the batch size, the device or the order of evaluation.
    pub seed: u64,
}

/// The bound's terms for a set of images, in nats per image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageTerms {
    /// Images.
    pub n: usize,
    /// T.
    pub timesteps: usize,
    /// n × T row-major: step 0 is L_0 (decoder), step k ≥ 1 is L_k = KL at the paper's t = k+1.
    pub steps: Vec<f64>,
    /// L_T per image.
    pub prior: Vec<f64>,
}

/// The noise of image `index` at step `k` (n·`len` values of one stream per image).
fn draw_noise(seed: u64, first_index: usize, n: usize, len: usize, k: usize, t: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n * len];
    for (j, chunk) in out.chunks_exact_mut(len).enumerate() {
        let counter = ((first_index + j) as u64) * t as u64 + k as u64;
        GaussianNoise::new(derive_seed(seed, TAG_NLL, counter) as u64).fill(chunk);
    }
    out
}

/// A network's noise prediction ε_θ(x, t_in): x is N×C×H×W f32 and t_in holds N values k/T
/// (f32), both on the evaluation device; the result has x's shape.
pub type EpsModel<'a> = dyn FnMut(&Tensor, &Tensor) -> Result<Tensor> + 'a;

/// The bound's terms for one batch: `x0` is N×C×H×W f64 on the device, on the pixel grid;
/// `first_index` is the global index of its first image (which selects the noise streams).
/// `on_step` is called after each of the T steps.
pub fn bound_batch(
    eps_model: &mut EpsModel<'_>,
    diff: &Diffusion,
    x0: &Tensor,
    first_index: usize,
    opts: &BoundOptions,
    on_step: &mut dyn FnMut(),
) -> Result<ImageTerms> {
    let shape = x0.size();
    if shape.len() != 4 {
        bail!("bound_batch: images must be N×C×H×W, got {shape:?}");
    }
    let n = shape[0] as usize;
    let len = (shape[1] * shape[2] * shape[3]) as usize;
    let t = diff.timesteps();
    let device = x0.device();
    let x0 = x0.to_kind(Kind::Double);
    let mut steps = vec![0.0f64; n * t];
    tch::no_grad(|| -> Result<()> {
        for k in 0..t {
            let acp = diff.alpha_bar(k);
            let noise = Tensor::from_slice(&draw_noise(opts.seed, first_index, n, len, k, t))
                .view(shape.as_slice())
                .to_kind(Kind::Double)
                .to_device(device);
            let x_t = &x0 * acp.sqrt() + noise * (1.0 - acp).sqrt();
            let t_in = Tensor::full([n as i64], k as f64 / t as f64, (Kind::Float, device));
            let eps = eps_model(&x_t.to_kind(Kind::Float), &t_in)
                .with_context(|| format!("the network at step {k}"))?;
            if eps.size() != shape {
                bail!("the network returned {:?} for input {shape:?}", eps.size());
            }
            let eps = eps.to_kind(Kind::Double);
            let mean = diff.model_mean(k, &x_t, &eps, opts.clip_x0);
            let logvar = diff.model_variance(k, opts.variance)?.ln();
            let per_pixel = if k == 0 {
                -discretized_gaussian_log_likelihood(&x0, &mean, 0.5 * logvar)
            } else {
                let q_mean = &x0 * diff.coef_x0[k] + &x_t * diff.coef_xt[k];
                normal_kl(&q_mean, diff.posterior_variance[k].ln(), &mean, logvar)
            };
            let per_image = per_pixel.view([n as i64, -1]).sum_dim_intlist(
                [1i64].as_slice(),
                false,
                Kind::Double,
            );
            let v = Vec::<f64>::try_from(per_image.to_device(Device::Cpu))
                .context("reading the bound's terms")?;
            for (i, x) in v.into_iter().enumerate() {
                steps[i * t + k] = x;
            }
            on_step();
        }
        Ok(())
    })?;
    let acp_last = diff.alpha_bar(t - 1);
    let prior = tch::no_grad(|| {
        let m = &x0 * acp_last.sqrt();
        let kl = normal_kl(&m, (1.0 - acp_last).ln(), &m.zeros_like(), 0.0);
        kl.view([n as i64, -1])
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Double)
            .to_device(Device::Cpu)
    });
    let prior = Vec::<f64>::try_from(prior).context("reading the prior term")?;
    Ok(ImageTerms {
        n,
        timesteps: t,
        steps,
        prior,
    })
}

/// The bound over a data set, in bits per dimension.
#[derive(Debug, Clone)]
pub struct BoundReport {
    /// Images evaluated.
    pub n: usize,
    /// Dimensions per image D = C·H·W.
    pub dims: usize,
    /// T.
    pub timesteps: usize,
    /// Mean L_0 (decoder), bits/dim.
    pub decoder: f64,
    /// Mean Σ_{t=2..T} L_{t−1}, bits/dim.
    pub diffusion: f64,
    /// Mean L_T (prior), bits/dim.
    pub prior: f64,
    /// Mean total, bits/dim.
    pub total: f64,
    /// Standard error of the mean total over the images, bits/dim.
    pub total_std_error: f64,
    /// Mean of each step's term, bits/dim: entry 0 is L_0, entry k ≥ 1 is L_k.
    pub curve: Vec<f64>,
}

impl BoundReport {
    /// Means over the images of `terms`, converted from nats per image to bits per dimension.
    pub fn from_terms(terms: &ImageTerms, dims: usize) -> Result<Self> {
        let (n, t) = (terms.n, terms.timesteps);
        if n == 0 {
            bail!("no images to average the bound over");
        }
        let scale = 1.0 / (dims as f64 * std::f64::consts::LN_2);
        let mut curve = vec![0.0f64; t];
        let mut totals = Vec::with_capacity(n);
        for (row, prior) in terms.steps.chunks_exact(t).zip(&terms.prior) {
            for (c, v) in curve.iter_mut().zip(row) {
                *c += v * scale / n as f64;
            }
            totals.push((row.iter().sum::<f64>() + prior) * scale);
        }
        let total = totals.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            totals.iter().map(|v| (v - total).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Ok(Self {
            n,
            dims,
            timesteps: t,
            decoder: curve[0],
            diffusion: curve[1..].iter().sum(),
            prior: terms.prior.iter().sum::<f64>() * scale / n as f64,
            total,
            total_std_error: (var / n as f64).sqrt(),
            curve,
        })
    }
}

/// The bound of `eps_model` on `images` (u8, n·C·H·W), evaluated `batch` images at a time on
/// `device`; `on_step` is called after each batch step with the number of images it covered.
#[allow(clippy::too_many_arguments)]
pub fn variational_bound(
    eps_model: &mut EpsModel<'_>,
    diff: &Diffusion,
    images: &[u8],
    (c, h, w): (usize, usize, usize),
    opts: &BoundOptions,
    batch: usize,
    device: Device,
    on_step: &mut dyn FnMut(usize),
) -> Result<BoundReport> {
    let len = c * h * w;
    if len == 0 || !images.len().is_multiple_of(len) {
        bail!(
            "{} bytes are not a whole number of {c}×{h}×{w} images",
            images.len()
        );
    }
    if batch == 0 {
        bail!("the batch size must be at least 1");
    }
    let n = images.len() / len;
    let mut all = ImageTerms {
        n,
        timesteps: diff.timesteps(),
        steps: Vec::with_capacity(n * diff.timesteps()),
        prior: Vec::with_capacity(n),
    };
    for (b, chunk) in images.chunks(batch * len).enumerate() {
        let m = chunk.len() / len;
        let x0 = Tensor::from_slice(chunk)
            .view([m as i64, c as i64, h as i64, w as i64])
            .to_kind(Kind::Double)
            .to_device(device)
            / 127.5
            - 1.0;
        let terms = bound_batch(eps_model, diff, &x0, b * batch, opts, &mut || on_step(m))?;
        all.steps.extend(terms.steps);
        all.prior.extend(terms.prior);
    }
    BoundReport::from_terms(&all, len)
}

/// Writes the per-step curve as CSV (`t,term,bits_per_dim`, t as in the paper: 1..T), atomically.
pub fn write_curve_csv(path: &std::path::Path, report: &BoundReport) -> Result<()> {
    let mut s = String::from("t,term,bits_per_dim\n");
    for (k, v) in report.curve.iter().enumerate() {
        let term = if k == 0 {
            "L_0".to_owned()
        } else {
            format!("L_{k}")
        };
        s.push_str(&format!("{},{term},{v:.9e}\n", k + 1));
    }
    s.push_str(&format!(
        "{},L_T,{:.9e}\n",
        report.timesteps + 1,
        report.prior
    ));
    ddpm_torch::atomic::write_atomic(path, s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t64(v: &[f64]) -> Tensor {
        Tensor::from_slice(v)
    }

    fn vec64(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).contiguous().view([-1])).unwrap()
    }

    /// ∫_a^b φ(z) dz by composite Simpson integration (infinite ends cut at ±40, where the
    /// rest is below 1e-300). Simpson's error on a panel is h⁴/180·φ⁗, and φ⁗(z) ≈ z⁴·φ(z),
    /// so relative to the local density it is about (h·z)⁴/180: with h ≤ 2e-4 and |z| ≤ 7
    /// where the masses below live, under 1e-14.
    fn mass_by_quadrature(a: f64, b: f64) -> f64 {
        let (a, b) = (a.max(-40.0), b.min(40.0));
        let steps = ((((b - a) / 2e-4).ceil() as usize).max(1000) + 1) & !1usize;
        let h = (b - a) / steps as f64;
        let pdf = |x: f64| (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let mut s = pdf(a) + pdf(b);
        for i in 1..steps {
            let w = if i % 2 == 1 { 4.0 } else { 2.0 };
            s += w * pdf(a + i as f64 * h);
        }
        s * h / 3.0
    }

    #[test]
    fn kl_of_identical_gaussians_is_zero_and_a_hand_case() {
        let m = t64(&[0.3, -2.0, 7.5]);
        assert_eq!(vec64(&normal_kl(&m, 0.7, &m, 0.7)), vec![0.0; 3]);
        // KL(N(1, 1) ‖ N(0, 4)) = ½(ln 4 − 0 + (1 + 1)/4 − 1) = ln 2 − ¼.
        let kl = vec64(&normal_kl(&t64(&[1.0]), 0.0, &t64(&[0.0]), 4f64.ln()))[0];
        assert!((kl - (std::f64::consts::LN_2 - 0.25)).abs() < 1e-15, "{kl}");
        // KL(N(0, e²) ‖ N(0, 1)) = ½(0 − 2 + e² − 1).
        let kl = vec64(&normal_kl(&t64(&[0.0]), 2.0, &t64(&[0.0]), 0.0))[0];
        let want = 0.5 * (2f64.exp() - 3.0);
        assert!((kl - want).abs() < 1e-14, "{kl} vs {want}");
    }

    /// Every pixel value of the 256-bin grid, as a tensor.
    fn grid() -> Tensor {
        Tensor::arange(256, (Kind::Double, Device::Cpu)) / 127.5 - 1.0
    }

    #[test]
    fn bin_probabilities_sum_to_one() {
        // Sum of 256 masses, each with a relative error of a few ulp: 1e-12 leaves ample room
        // above the ~1e-14 that accumulates, and far below any missing or doubled bin.
        const SUM_TOL: f64 = 1e-12;
        for (mu, log_scale) in [
            (0.0, (0.01f64).ln()),
            (0.3, (0.5f64).ln()),
            (-0.97, (1e-3f64).ln()),
            (1.4, (0.2f64).ln()),
            (-3.0, (2.0f64).ln()),
            (0.5, (1e-5f64).ln()),
            (0.0, (40.0f64).ln()),
        ] {
            let x = grid();
            let ll = discretized_gaussian_log_likelihood(&x, &x.full_like(mu), log_scale);
            let p = vec64(&ll.exp());
            let sum: f64 = p.iter().sum();
            assert!(
                (sum - 1.0).abs() < SUM_TOL,
                "mu {mu} scale {}: sum {sum}",
                log_scale.exp()
            );
            assert!(vec64(&ll).iter().all(|v| v.is_finite()), "mu {mu}");
        }
    }

    #[test]
    fn bin_mass_equals_an_independent_cdf_difference() {
        // The quadrature is good to 1e-14 relative (above) and libtorch's ndtr to a few ulp;
        // 1e-12 relative is tight yet leaves room for both.
        const MASS_REL_TOL: f64 = 1e-12;
        let check = |mu: f64, sigma: f64, bins: &[usize]| {
            let x = grid();
            let ll = vec64(&discretized_gaussian_log_likelihood(
                &x,
                &x.full_like(mu),
                sigma.ln(),
            ));
            for &k in bins {
                let xv = 2.0 * k as f64 / 255.0 - 1.0;
                let z = |v: f64| (v - mu) / sigma;
                let lo = if k == 0 {
                    f64::NEG_INFINITY
                } else {
                    z(xv - 1.0 / 255.0)
                };
                let hi = if k == 255 {
                    f64::INFINITY
                } else {
                    z(xv + 1.0 / 255.0)
                };
                let want = mass_by_quadrature(lo, hi);
                let got = ll[k].exp();
                assert!(
                    ((got - want) / want).abs() < MASS_REL_TOL,
                    "mu {mu} sigma {sigma} bin {k}: {got} vs {want}"
                );
            }
        };
        // Bins on both sides of the mean and straddling it (all within 8σ, where the quadrature
        // holds its accuracy; far tails have their own test below).
        check(0.1234, 0.05, &[130, 140, 141, 142, 150, 160]);
        // The edge bins next to a mean near them, and at a mean far outside (almost all the
        // mass in the tail bin).
        check(-0.98, 0.02, &[0, 1, 2, 5]);
        check(0.97, 0.03, &[250, 253, 254, 255]);
        check(-5.0, 1.0, &[0, 1, 128, 255]);
        check(5.0, 1.0, &[0, 128, 254, 255]);
    }

    #[test]
    fn far_tail_bins_have_finite_accurate_logs() {
        // A bin 30σ above the mean: mass ≈ Q(a) − Q(b) with Q(z) = φ(z)/z·(1 − 1/z² + 3/z⁴
        // − 15/z⁶ + 105/z⁸ …); at z ≈ 30 the truncation error is below 945/30¹⁰ ≈ 2e-12
        // relative, so the log agrees to 1e-9 absolute with room for the ulp-level errors.
        const LOG_TOL: f64 = 1e-9;
        let q = |z: f64| {
            let z2 = z * z;
            (-0.5 * z2).exp() / (z * (2.0 * std::f64::consts::PI).sqrt())
                * (1.0 - 1.0 / z2 + 3.0 / (z2 * z2) - 15.0 / (z2 * z2 * z2)
                    + 105.0 / (z2 * z2 * z2 * z2))
        };
        let sigma = 1e-3f64;
        let x = 2.0 * 200.0 / 255.0 - 1.0;
        for (mu, sign) in [(x - 30.0 * sigma, 1.0), (x + 30.0 * sigma, -1.0)] {
            let ll = vec64(&discretized_gaussian_log_likelihood(
                &t64(&[x]),
                &t64(&[mu]),
                sigma.ln(),
            ))[0];
            let (a, b) = (
                sign * (x - sign * BIN_HALF_WIDTH - mu) / sigma,
                sign * (x + sign * BIN_HALF_WIDTH - mu) / sigma,
            );
            let want = (q(a) - q(b)).ln();
            assert!(
                ll.is_finite() && (ll - want).abs() < LOG_TOL,
                "{ll} vs {want}"
            );
        }
    }

    #[test]
    fn schedule_tables_follow_the_recurrences() {
        let d = Diffusion::from_betas(&[0.1, 0.2, 0.3]).unwrap();
        let acp = [0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.7];
        for (k, a) in acp.iter().enumerate() {
            assert!((d.alpha_bar(k) - a).abs() < 1e-15);
        }
        // β̃_1 = (1 − 0.9)/(1 − 0.72)·0.2.
        let want = 0.1 / 0.28 * 0.2;
        let got = d.model_variance(1, DdpmVariance::FixedSmall).unwrap();
        assert!((got - want).abs() < 1e-15);
        // The decoder: β₀ (large), β̃₁ (small; β̃₀ = 0).
        assert_eq!(d.model_variance(0, DdpmVariance::FixedLarge).unwrap(), 0.1);
        assert_eq!(d.model_variance(0, DdpmVariance::FixedSmall).unwrap(), got);
        assert!(Diffusion::from_betas(&[0.1, 1.0]).is_err());
        assert!(Diffusion::from_betas(&[]).is_err());
        let one = Diffusion::from_betas(&[0.1]).unwrap();
        assert!(one.model_variance(0, DdpmVariance::FixedSmall).is_err());
    }

    #[test]
    fn clipped_and_plain_model_means_agree_when_x0_is_inside() {
        // With x₀ predicted inside [−1, 1] the posterior mean of the predicted x₀ equals the
        // ε-form (x_t − β/√(1−ᾱ)·ε)/√α: algebra in f64, so a few ulp of values near 1.
        let d = Diffusion::from_betas(&[0.01, 0.05, 0.1]).unwrap();
        let x_t = t64(&[0.2, -0.4, 0.9]);
        let eps = t64(&[0.1, 0.0, 0.3]);
        for k in 0..3 {
            let a = vec64(&d.model_mean(k, &x_t, &eps, false));
            let b = vec64(&d.model_mean(k, &x_t, &eps, true));
            for (u, v) in a.iter().zip(&b) {
                assert!((u - v).abs() < 1e-14, "step {k}: {u} vs {v}");
            }
        }
    }
}
