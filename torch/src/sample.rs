//! The DDPM, DDIM, DPM-Solver++(2M) and UniPC samplers in tch, batched on a device: the step arithmetic of
//! `ddpm_core::diffusion` on tensors (the same f32 coefficients, in the same order) and the
//! sampling loop over a plan.
use anyhow::{Context, Result};
use ddpm_core::diffusion::{
    DdimConfig, DdpmConfig, DdpmVariance, DpmOrder, DpmStep, GuidanceInterval, Move, Plan,
    Resampling, SamplerConfig, UniPcStep,
};
use ddpm_core::{Prediction, Schedule};
use tch::{Device, Kind, Tensor};

use crate::model::Net;

/// The predicted x0 of a batch from the network's output `out` at x_t, the arithmetic of
/// `ddpm_core::diffusion::split_output`: ε: (x − √(1−ᾱ)·ε)/√ᾱ; v: √ᾱ·x − √(1−ᾱ)·v. `sa` = √ᾱ_t and
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

/// One DDPM ancestral step on a batch, the same arithmetic as `ddpm_core::diffusion::ddpm_step`:
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
/// as `ddpm_core::diffusion::ddim_step`. `z` is only read when η > 0.
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

/// Autoguidance on a batch, the arithmetic of `ddpm_core::diffusion::guide_output`: the
/// network's output `out` extrapolated away from the weaker guide's output `guide` at the
/// same x_t, `guide + w·(out − guide)` in f32.
pub fn guide_output(out: &Tensor, guide: &Tensor, weight: f32) -> Tensor {
    guide + (out - guide) * weight as f64
}

/// Whether step `k` of `plan` adds noise (so a z must be drawn).
fn step_needs_noise(cfg: &SamplerConfig, t: u32) -> bool {
    match cfg {
        SamplerConfig::Ddpm(_) => t > 0,
        SamplerConfig::Ddim(c) => c.eta > 0.0,
        SamplerConfig::DpmSolver2M(_) | SamplerConfig::UniPc(_) => false,
    }
}

/// One DPM-Solver++(2M) step on a batch with the core's per-step coefficients `st`
/// (`ddpm_core::diffusion::DpmPlan::step`): x ← cx·x + c0·x0 + c1·x0_prev; returns the new x
/// and this step's x0 (the next step's `x0_prev`).
pub fn dpm_step(
    sched: &Schedule,
    st: &DpmStep,
    x: &Tensor,
    out: &Tensor,
    x0_prev: Option<&Tensor>,
) -> (Tensor, Tensor) {
    let pred = sched.config().prediction;
    let x0 = predicted_x0(pred, x, out, st.sa.into(), st.s1a.into());
    let mut v = x * st.cx as f64 + &x0 * st.c0 as f64;
    if let (DpmOrder::Second, Some(m1)) = (st.order, x0_prev) {
        v += m1 * st.c1 as f64;
    }
    (v, x0)
}

/// The history UniPC keeps between steps on a batch: the previous step's x0 and the
/// corrector's fixed part (`ddpm_core::diffusion::unipc`).
#[derive(Debug)]
pub struct UniPcHistory {
    /// The previous step's x0.
    pub x0: Tensor,
    /// The next corrector's part that does not depend on the next x0.
    pub corr: Tensor,
}

impl Clone for UniPcHistory {
    fn clone(&self) -> Self {
        Self {
            x0: self.x0.shallow_clone(),
            corr: self.corr.shallow_clone(),
        }
    }
}

/// The known pixels of a batch at the noise level of timestep `level` (`None`: the clean
/// image), the arithmetic of `ddpm_core::diffusion::paste_known`: `x_known = √ᾱ·known +
/// √(1−ᾱ)·z` (`known` itself after the last step), `x ← x_known·m + x·(1 − m)`, which is
/// `x_known` where m = 1 and x where m = 0. `known` and `mask` broadcast over the batch.
pub fn paste_known(
    sched: &Schedule,
    level: Option<u32>,
    known: &Tensor,
    mask: &Tensor,
    x: &Tensor,
    z: &Tensor,
) -> Tensor {
    let xk = match level {
        Some(t) => {
            let a = sched.alphas_cumprod()[t as usize];
            known * a.sqrt() as f64 + z * (1.0 - a).sqrt() as f64
        }
        None => known.shallow_clone(),
    };
    xk * mask + x * (mask.ones_like() - mask)
}

/// A batch noised forward from the level of timestep `from` (`None`: clean) to that of `to`,
/// the arithmetic of `ddpm_core::diffusion::jump_back`: `x·√(ᾱ_to/ᾱ_from) +
/// z·√(1 − ᾱ_to/ᾱ_from)`.
pub fn jump_back(sched: &Schedule, from: Option<u32>, to: u32, x: &Tensor, z: &Tensor) -> Tensor {
    let a_from = sched.alpha_bar_or_one(from.map(|f| f as usize));
    let ratio = sched.alphas_cumprod()[to as usize] / a_from;
    x * ratio.sqrt() as f64 + z * (1.0 - ratio).max(0.0).sqrt() as f64
}

/// What a batched inpainting run knows ([`sample_torch`]): the known image(s) and mask(s)
/// (1 kept, 0 drawn), N×C×H×W or 1×C×H×W to share one over the batch, on the sampling
/// device, and RePaint's resampling.
pub struct TorchInpainting {
    /// The known image(s), in the model's range.
    pub known: Tensor,
    /// The mask(s), values in [0, 1].
    pub mask: Tensor,
    /// Passes per block and steps per block.
    pub resampling: Resampling,
}

/// One UniPC step on a batch with the core's per-step coefficients `st`
/// (`ddpm_core::diffusion::UniPcPlan::step`), the arithmetic of `UniPcStep::apply`: the
/// corrector (from the second step on), then the predictor; returns the new x and the history
/// for the next step. `history` is `None` only at the first step.
pub fn unipc_step(
    sched: &Schedule,
    st: &UniPcStep,
    x: &Tensor,
    out: &Tensor,
    history: Option<&UniPcHistory>,
) -> Result<(Tensor, UniPcHistory)> {
    let pred = sched.config().prediction;
    let x0 = predicted_x0(pred, x, out, st.sa.into(), st.s1a.into());
    let xc = match (st.k_corr, history) {
        (None, _) => x.shallow_clone(),
        (Some(k), Some(h)) => &h.corr - (&x0 - &h.x0) * k as f64,
        (Some(_), None) => anyhow::bail!("UniPC: a corrected step without the history"),
    };
    let base = xc * st.cx as f64 + &x0 * st.c0 as f64;
    let (v, corr) = match (st.order, history) {
        (DpmOrder::First, _) => (base.shallow_clone(), base),
        (DpmOrder::Second, Some(h)) => {
            let d = &h.x0 - &x0;
            (&base + &d * st.cd as f64, base + d * st.cd_next as f64)
        }
        (DpmOrder::Second, None) => anyhow::bail!("UniPC: a second-order step without the history"),
    };
    Ok((v, UniPcHistory { x0, corr }))
}

/// Draws `n` samples in one batch on `net`'s device: x_T ~ N(0, I) and each step's z from the
/// torch generator seeded with `seed`; with `guide` = (weaker network, w) every output is
/// guided ([`guide_output`]). With `classes` = (N int64 class labels, w) a class-conditional
/// network draws image i of class `labels[i]` under classifier-free guidance: its "no class"
/// output takes the guide's place (`uncond + w·(cond − uncond)`; w = 1: the conditional
/// output alone). Either guidance applies only at the steps `interval` holds
/// (`GuidanceInterval::ALWAYS`: every step). With `inpaint` the batch completes the known image(s) by RePaint, the walk
/// of `ddpm_core::diffusion::Resampling::moves` ([`paste_known`] after every step,
/// [`jump_back`] between passes, a multistep solver's history kept and restored). `on_step`
/// gets (network passes done, passes in all). Returns an N×C×H×W tensor (not clamped).
#[allow(clippy::too_many_arguments)]
pub fn sample_torch(
    net: &Net,
    guide: Option<(&Net, f32)>,
    classes: Option<(&Tensor, f32)>,
    interval: GuidanceInterval,
    inpaint: Option<&TorchInpainting>,
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
    let resampling = inpaint.map_or(Resampling::NONE, |i| i.resampling);
    resampling
        .validate()
        .map_err(|e| anyhow::anyhow!("inpainting: {e}"))?;
    // libtorch takes the seed as a 64-bit pattern; the cast keeps every bit.
    tch::manual_seed(seed as i64);
    let shape = [
        n as i64,
        c.channels() as i64,
        c.height() as i64,
        c.width() as i64,
    ];
    let mut x = Tensor::randn(shape, (Kind::Float, device));
    // The multistep solvers' history, and the copy kept at the start of a block walked again.
    let mut history: (Option<Tensor>, Option<UniPcHistory>) = (None, None);
    let mut saved: (Option<Tensor>, Option<UniPcHistory>) = (None, None);
    let passes = resampling.passes(plan.len());
    let mut done = 0;
    tch::no_grad(|| -> Result<()> {
        for mv in resampling.moves(&plan) {
            let k = match mv {
                Move::Save => {
                    saved = (
                        history.0.as_ref().map(Tensor::shallow_clone),
                        history.1.clone(),
                    );
                    continue;
                }
                Move::Back { from, to } => {
                    history = (saved.0.as_ref().map(Tensor::shallow_clone), saved.1.clone());
                    x = jump_back(sched, from, to, &x, &x.randn_like());
                    continue;
                }
                Move::Step(k) => k,
            };
            let (t, prev) = plan.step(k).context("step past the sampler's plan")?;
            let t_in = t as f32 / big_t as f32;
            let t_batch = Tensor::full([n as i64], t_in as f64, (Kind::Float, device));
            let mut eps = net.forward_labelled(&x, &t_batch, classes.map(|(y, _)| y));
            let guided = interval.contains(t_in);
            if let Some((g, w)) = guide.filter(|_| guided) {
                eps = guide_output(&eps, &g.forward(&x, &t_batch), w);
            }
            if let Some((_, w)) = classes.filter(|&(_, w)| w != 1.0 && guided) {
                eps = guide_output(&eps, &net.forward(&x, &t_batch), w);
            }
            let z = if step_needs_noise(cfg, t) {
                x.randn_like()
            } else {
                x.zeros_like()
            };
            x = match (cfg, &plan) {
                (SamplerConfig::DpmSolver2M(_), Plan::Dpm(p)) => {
                    let st = p
                        .step(sched, k)
                        .map_err(|e| anyhow::anyhow!("DPM-Solver step {k}: {e}"))?;
                    let (v, x0) = dpm_step(sched, &st, &x, &eps, history.0.as_ref());
                    history.0 = Some(x0);
                    v
                }
                (SamplerConfig::UniPc(_), Plan::UniPc(p)) => {
                    let st = p
                        .step(sched, k)
                        .map_err(|e| anyhow::anyhow!("UniPC step {k}: {e}"))?;
                    let (v, h) = unipc_step(sched, &st, &x, &eps, history.1.as_ref())?;
                    history.1 = Some(h);
                    v
                }
                (SamplerConfig::Ddpm(d), _) => ddpm_step(sched, d, t, &x, &eps, &z),
                (SamplerConfig::Ddim(d), _) => ddim_step(sched, d, t, prev, &x, &eps, &z),
                (SamplerConfig::DpmSolver2M(_) | SamplerConfig::UniPc(_), _) => {
                    anyhow::bail!("multistep solver settings without their plan")
                }
            };
            if let Some(inp) = inpaint {
                let z = match prev {
                    Some(_) => x.randn_like(),
                    None => x.zeros_like(),
                };
                x = paste_known(sched, prev, &inp.known, &inp.mask, &x, &z);
            }
            done += 1;
            on_step(done, passes);
        }
        Ok(())
    })?;
    Ok(x)
}
