//! DDPM and DDIM steps: the update of an image from x_t to the previous timestep, given the
//! network's output.
//!
//! Definitions follow Ho et al. 2020 (DDPM) and Song et al. 2020 (DDIM) with the option names of
//! diffusers' `DDPMScheduler`/`DDIMScheduler`. Each step updates the image (or any part of it)
//! in place and draws its noise through a closure `z(i)`, so a microcontroller needs no buffer
//! for the noise and can apply a step row by row as the network's output appears.

use crate::diffusion::schedule::{Prediction, Schedule};
use serde::{Deserialize, Serialize};

use crate::error::{check_len, Error, Result};

// The sampler options derive serde for the model file's recipe (format version 2): postcard
// writes enum variants by index and struct fields in order, so the order of variants and
// fields below is part of the file format; a change needs a wire form in `file::wire`.

/// Variance σ_t² of a DDPM step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DdpmVariance {
    /// σ_t² = β_t (the seed's choice).
    FixedLarge,
    /// σ_t² = β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t.
    FixedSmall,
}

/// How DDIM picks its S timesteps out of T (diffusers' `timestep_spacing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Spacing {
    /// `(S−1−k)·⌊T/S⌋`: starts below T − 1 when S does not divide T.
    Leading,
    /// `round(T − k·T/S) − 1`: always starts at T − 1.
    Trailing,
    /// `round((S−1−k)·(T−1)/(S−1))`: evenly from T − 1 down to 0.
    Linspace,
}

/// The predicted (x0, ε) at one element from the image value `x` at step t and the network's
/// output `out` there, for a network that predicts `pred`; `sa` = √ᾱ_t, `s1a` = √(1−ᾱ_t).
/// ε: x0 = (x − √(1−ᾱ_t)·ε)/√ᾱ_t. v: x0 = √ᾱ_t·x − √(1−ᾱ_t)·v, ε = √(1−ᾱ_t)·x + √ᾱ_t·v.
#[inline(always)]
pub fn split_output(pred: Prediction, x: f32, out: f32, sa: f32, s1a: f32) -> (f32, f32) {
    match pred {
        Prediction::Eps => ((x - s1a * out) / sa, out),
        Prediction::V => (sa * x - s1a * out, s1a * x + sa * out),
    }
}

/// Options of the DDPM ancestral sampler.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DdpmConfig {
    /// Step variance.
    pub variance: DdpmVariance,
    /// Clip the predicted x0 to [−1, 1] and step through the posterior mean of the clipped x0.
    pub clip_x0: bool,
}

impl Default for DdpmConfig {
    /// The seed's sampler: `fixed_large`, no clipping.
    fn default() -> Self {
        Self {
            variance: DdpmVariance::FixedLarge,
            clip_x0: false,
        }
    }
}

/// Options of the DDIM sampler.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DdimConfig {
    /// Number of steps S, 1 ≤ S ≤ T.
    pub steps: u32,
    /// η ∈ [0, 1]: 0 is deterministic DDIM, 1 has DDPM's posterior variance.
    pub eta: f32,
    /// Timestep spacing.
    pub spacing: Spacing,
    /// Clip the predicted x0 to [−1, 1].
    pub clip_x0: bool,
    /// With `clip_x0`, recompute ε from the clipped x0 (diffusers' `use_clipped_model_output`).
    pub recompute_eps: bool,
}

impl Default for DdimConfig {
    fn default() -> Self {
        Self {
            steps: 50,
            eta: 0.0,
            spacing: Spacing::Leading,
            clip_x0: false,
            recompute_eps: false,
        }
    }
}

/// Options of the multistep solvers, DPM-Solver++(2M) and UniPC (serde: part of the model
/// file's recipe, fields in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SolverConfig {
    /// Number of steps N (network evaluations), 1 ≤ N ≤ T.
    pub steps: u32,
    /// Timestep spacing, as diffusers' `DPMSolverMultistepScheduler` and
    /// `UniPCMultistepScheduler` compute it.
    pub spacing: Spacing,
}

/// Which sampler to run (variants appended last: the recipe encodes the index).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum SamplerConfig {
    /// DDPM ancestral sampling over all T steps.
    Ddpm(DdpmConfig),
    /// DDIM over S of the T steps.
    Ddim(DdimConfig),
    /// DPM-Solver++(2M) over N of the T steps (deterministic; keeps the previous step's x0 per
    /// element: [`crate::diffusion::sample_batch_with_history`]).
    DpmSolver2M(SolverConfig),
    /// UniPC (bh2, order 2, UniC corrector) over N of the T steps (deterministic; keeps two
    /// values per element: the previous x0 and the corrector's fixed part).
    UniPc(SolverConfig),
}

impl SamplerConfig {
    /// Elements of history the sampler keeps for a batch of `batch_len` image elements: the
    /// previous step's x0 per element for DPM-Solver++(2M), that and the corrector's fixed part
    /// for UniPC (two per element), none for DDPM and DDIM
    /// ([`crate::diffusion::sample_batch_with_history`]).
    pub const fn history_len(&self, batch_len: usize) -> usize {
        match self {
            SamplerConfig::DpmSolver2M(_) => batch_len,
            SamplerConfig::UniPc(_) => 2 * batch_len,
            SamplerConfig::Ddpm(_) | SamplerConfig::Ddim(_) => 0,
        }
    }

    /// The lecture notes' sampler: DDPM over all T steps, σ² = β_t, no clipping.
    pub const LEGACY: Self = SamplerConfig::Ddpm(DdpmConfig {
        variance: DdpmVariance::FixedLarge,
        clip_x0: false,
    });
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self::LEGACY
    }
}

/// numpy's `round` (half to even), used by diffusers for timestep lists.
pub(crate) fn round_half_even(v: f64) -> f64 {
    let r = libm::round(v);
    if (v - libm::trunc(v)).abs() == 0.5 && r % 2.0 != 0.0 {
        r - v.signum()
    } else {
        r
    }
}

/// The DDIM timestep list, computed on demand (no storage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DdimTimesteps {
    train_steps: u32,
    steps: u32,
    spacing: Spacing,
}

impl DdimTimesteps {
    /// The list for T = `train_steps` and S = `steps`.
    pub fn new(train_steps: u32, steps: u32, spacing: Spacing) -> Result<Self> {
        if steps == 0 || steps > train_steps {
            return Err(Error::InvalidConfig("DDIM: steps must be in 1..=T"));
        }
        Ok(Self {
            train_steps,
            steps,
            spacing,
        })
    }

    /// Number of steps S.
    pub fn len(&self) -> usize {
        self.steps as usize
    }

    /// Always false (S ≥ 1).
    pub fn is_empty(&self) -> bool {
        self.steps == 0
    }

    /// The k-th timestep (k = 0 is the first, noisiest step); `None` past the end.
    pub fn get(&self, k: usize) -> Option<u32> {
        if k >= self.steps as usize {
            return None;
        }
        let (big_t, s) = (self.train_steps as f64, self.steps as f64);
        let j = (self.steps as usize - 1 - k) as f64;
        let t = match self.spacing {
            Spacing::Leading => {
                (self.steps as usize - 1 - k) as f64 * (self.train_steps / self.steps) as f64
            }
            Spacing::Trailing => round_half_even(big_t - k as f64 * (big_t / s)) - 1.0,
            Spacing::Linspace => {
                if self.steps == 1 {
                    0.0
                } else {
                    round_half_even(j * ((big_t - 1.0) / (s - 1.0)))
                }
            }
        };
        Some((t.max(0.0) as u32).min(self.train_steps - 1))
    }

    /// Iterates over the timesteps, noisiest first.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).filter_map(|k| self.get(k))
    }
}

/// One DDPM ancestral step from x_t to x_{t−1}, in place.
///
/// Without clipping this is the seed's update
/// `x ← (x − β_t/√(1−ᾱ_t)·ε)/√α_t + σ_t·z`; with clipping, x0 = (x − √(1−ᾱ_t)·ε)/√ᾱ_t is
/// clamped to [−1, 1] and x moves to the posterior mean
/// `√ᾱ_{t−1}·β_t/(1−ᾱ_t)·x0 + √α_t·(1−ᾱ_{t−1})/(1−ᾱ_t)·x_t`, plus σ_t·z. No noise at t = 0.
/// `eps` is the network's output: ε, or v when the schedule says the network predicts v
/// ([`split_output`] gives x0 and ε from it).
pub fn ddpm_step<const M: usize>(
    sched: &Schedule<M>,
    cfg: &DdpmConfig,
    t: u32,
    x: &mut [f32],
    eps: &[f32],
    mut z: impl FnMut(usize) -> f32,
) -> Result<()> {
    check_len("eps", x.len(), eps.len())?;
    let t = t as usize;
    if t >= sched.len() {
        return Err(Error::InvalidConfig("timestep beyond the schedule"));
    }
    let beta = sched.betas()[t];
    let alpha = sched.alphas()[t];
    let acp = sched.alphas_cumprod()[t];
    let sigma = if t == 0 {
        0.0
    } else {
        match cfg.variance {
            DdpmVariance::FixedLarge => libm::sqrtf(beta),
            DdpmVariance::FixedSmall => libm::sqrtf(sched.posterior_variance()[t]),
        }
    };
    let pred = sched.config().prediction;
    let (sa, s1a) = (libm::sqrtf(acp), libm::sqrtf(1.0 - acp));
    if cfg.clip_x0 {
        let acp_prev = sched.alpha_bar_or_one(t.checked_sub(1));
        let c_x0 = libm::sqrtf(acp_prev) * beta / (1.0 - acp);
        let c_xt = libm::sqrtf(alpha) * (1.0 - acp_prev) / (1.0 - acp);
        for (i, (xv, &out)) in x.iter_mut().zip(eps).enumerate() {
            let x0 = split_output(pred, *xv, out, sa, s1a).0.clamp(-1.0, 1.0);
            let mut v = c_x0 * x0 + c_xt * *xv;
            if sigma > 0.0 {
                v += sigma * z(i);
            }
            *xv = v;
        }
    } else {
        let coef1 = 1.0 / libm::sqrtf(alpha);
        let coef2 = beta / s1a;
        for (i, (xv, &out)) in x.iter_mut().zip(eps).enumerate() {
            let e = split_output(pred, *xv, out, sa, s1a).1;
            let mut v = coef1 * (*xv - coef2 * e);
            if sigma > 0.0 {
                v += sigma * z(i);
            }
            *xv = v;
        }
    }
    Ok(())
}

/// One DDIM step from x_t to x_{t_prev} (ᾱ_prev = 1 when `t_prev` is `None`), in place
/// (Song et al. 2020, eq. 12):
/// x0 = (x − √(1−ᾱ_t)·ε)/√ᾱ_t (optionally clipped, and ε recomputed from it),
/// σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev),
/// x ← √ᾱ_prev·x0 + √(1−ᾱ_prev−σ²)·ε + σ·z.
/// `eps` is the network's output: ε, or v when the schedule says the network predicts v.
pub fn ddim_step<const M: usize>(
    sched: &Schedule<M>,
    cfg: &DdimConfig,
    t: u32,
    t_prev: Option<u32>,
    x: &mut [f32],
    eps: &[f32],
    mut z: impl FnMut(usize) -> f32,
) -> Result<()> {
    check_len("eps", x.len(), eps.len())?;
    if t as usize >= sched.len() || t_prev.is_some_and(|p| p >= t) {
        return Err(Error::InvalidConfig(
            "DDIM: timesteps must decrease within the schedule",
        ));
    }
    let a_t = sched.alphas_cumprod()[t as usize];
    let a_p = sched.alpha_bar_or_one(t_prev.map(|p| p as usize));
    let var = (1.0 - a_p) / (1.0 - a_t) * (1.0 - a_t / a_p);
    let sigma = cfg.eta * libm::sqrtf(var.max(0.0));
    let c_dir = libm::sqrtf((1.0 - a_p - sigma * sigma).max(0.0));
    let (sa_t, s1a_t, sa_p) = (libm::sqrtf(a_t), libm::sqrtf(1.0 - a_t), libm::sqrtf(a_p));
    let pred = sched.config().prediction;
    for (i, (xv, &out)) in x.iter_mut().zip(eps).enumerate() {
        let (mut x0, mut e) = split_output(pred, *xv, out, sa_t, s1a_t);
        if cfg.clip_x0 {
            x0 = x0.clamp(-1.0, 1.0);
            if cfg.recompute_eps {
                e = (*xv - sa_t * x0) / s1a_t;
            }
        }
        let mut v = sa_p * x0 + c_dir * e;
        if sigma > 0.0 {
            v += sigma * z(i);
        }
        *xv = v;
    }
    Ok(())
}

/// Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself"):
/// extrapolates the network's output `out` away from a weaker model's output `guide` at the same
/// x_t and t, `out ← guide + w·(out − guide)`, element by element in f32. w = 1 gives `out`
/// back up to one rounding, w = 0 the guide exactly; both outputs must be in the same
/// parameterization (the combination is affine with weights summing to one, so mixing ε, v or
/// x0 gives the same step).
pub fn guide_output(out: &mut [f32], guide: &[f32], weight: f32) -> Result<()> {
    check_len("guide output", out.len(), guide.len())?;
    for (o, &g) in out.iter_mut().zip(guide) {
        *o = g + weight * (*o - g);
    }
    Ok(())
}

/// The network time inputs `t/T` at which a guide is applied (Kynkäänniemi et al. 2024,
/// "Applying guidance in a limited interval improves sample and distribution quality in
/// diffusion models"): at a step whose `t/T` lies in `[lo, hi]` the output is the guided mix
/// ([`guide_output`]); at the others it is the model's output alone, and the guide does not
/// run. [`GuidanceInterval::ALWAYS`] guides every step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuidanceInterval {
    lo: f32,
    hi: f32,
}

impl GuidanceInterval {
    /// Every step (`t/T` is in `[0, 1)`).
    pub const ALWAYS: Self = Self { lo: 0.0, hi: 1.0 };

    /// The steps with `lo ≤ t/T ≤ hi`; errors unless `0 ≤ lo ≤ hi ≤ 1`.
    pub fn new(lo: f32, hi: f32) -> Result<Self> {
        if (0.0..=1.0).contains(&lo) && (lo..=1.0).contains(&hi) {
            Ok(Self { lo, hi })
        } else {
            Err(Error::InvalidConfig(
                "a guidance interval is lo ≤ hi within [0, 1] (network time t/T)",
            ))
        }
    }

    /// The lower and upper ends.
    pub fn bounds(self) -> (f32, f32) {
        (self.lo, self.hi)
    }

    /// Whether the step at network time input `t_in` is guided.
    #[inline]
    pub fn contains(self, t_in: f32) -> bool {
        self.lo <= t_in && t_in <= self.hi
    }

    /// Whether every step is guided.
    pub fn is_always(self) -> bool {
        self.lo <= 0.0 && self.hi >= 1.0
    }
}

impl Default for GuidanceInterval {
    fn default() -> Self {
        Self::ALWAYS
    }
}

/// Maps a model output in [−1, 1] to a u8 pixel: `round((clamp(v, −1, 1) + 1)·127.5)`.
pub fn pixel_to_u8(v: f32) -> u8 {
    let c = if v.is_nan() { -1.0 } else { v.clamp(-1.0, 1.0) };
    libm::roundf((c + 1.0) * 127.5) as u8
}
