//! DPM-Solver++(2M): the multistep second-order solver of the diffusion ODE in data-prediction
//! form (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
//! Probabilistic Models", algorithm 2), with the options of diffusers'
//! `DPMSolverMultistepScheduler` defaults: midpoint solver type, the first step and the final
//! step of first order (`lower_order_final`, `final_sigmas_type = "zero"`), no thresholding.
//!
//! With α_t = √ᾱ_t, σ_t = √(1−ᾱ_t) and λ_t = ln α_t − ln σ_t, a step from s0 to t with
//! h = λ_t − λ_s0 and the predicted data x0 (D0 = m0 at s0, m1 at the step before, s1) is
//!
//! - first order: x_t = (σ_t/σ_s0)·x − α_t·(e^{−h} − 1)·m0 (DDIM's update);
//! - second order: x_t = (σ_t/σ_s0)·x − α_t·(e^{−h} − 1)·D0 − ½·α_t·(e^{−h} − 1)·D1 with
//!   D1 = (m0 − m1)/r0, r0 = h_0/h, h_0 = λ_s0 − λ_s1;
//! - the final step goes to σ = 0 and returns x0.
//!
//! Every step is the per-element affine map `x ← cx·x + c0·x0 + c1·x0_prev`
//! ([`DpmStep::apply`]): [`DpmPlan::step`] computes the three coefficients once per step and the
//! caller keeps the previous step's x0 per element (a history slice as long as the image).
//!
//! Precision: σ, α, λ, h and the coefficients are computed in f64 from the schedule's f32 ᾱ
//! (λ differences of nearby timesteps and e^{−h} − 1 for small h lose digits in f32; per step
//! this costs a handful of f64 operations) and rounded once to f32; the per-element update
//! runs in f32 like the other samplers.

use crate::diffusion::schedule::{Prediction, Schedule};
use crate::diffusion::steps::{round_half_even, split_output, Spacing};
use crate::error::{check_len, Error, Result};

/// The DPM-Solver multistep timestep list of diffusers (`DPMSolverMultistepScheduler`, no
/// λ clipping, `steps_offset` 0), computed on demand (no storage). Its formulas differ from
/// DDIM's ([`crate::diffusion::DdimTimesteps`]), for N steps out of T:
///
/// - linspace: `linspace(0, T−1, N+1).round()[::-1][:-1]`, the k-th is `round((N−k)·(T−1)/N)`;
/// - leading: `(arange(0, N+1)·(T // (N+1)))[::-1][:-1]`, the k-th is `(N−k)·⌊T/(N+1)⌋`;
/// - trailing: `arange(T, 0, −T/N).round() − 1`, the k-th is `round(T + k·δ) − 1` with numpy's
///   δ = (T − T/N) − T;
///
/// rounding half to even as numpy does. For some N (T = 300: 7, 14, 28, …) numpy's float
/// `arange` gives diffusers' trailing list an extra last entry −1; this list has the first N.
/// Linspace repeats timesteps when N is close to T; [`DpmPlan::new`] rejects such lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DpmTimesteps {
    train_steps: u32,
    steps: u32,
    spacing: Spacing,
}

impl DpmTimesteps {
    /// The list for T = `train_steps` and N = `steps`, 1 ≤ N ≤ T.
    pub fn new(train_steps: u32, steps: u32, spacing: Spacing) -> Result<Self> {
        if steps == 0 || steps > train_steps {
            return Err(Error::InvalidConfig(
                "DPM-Solver/UniPC: steps must be in 1..=T",
            ));
        }
        Ok(Self {
            train_steps,
            steps,
            spacing,
        })
    }

    /// [`Self::new`] for a solver: also errors when the list repeats a timestep (linspace with
    /// N close to T), where a solver step would divide by h = 0.
    pub fn distinct(train_steps: u32, steps: u32, spacing: Spacing) -> Result<Self> {
        let list = Self::new(train_steps, steps, spacing)?;
        let mut prev: Option<u32> = None;
        for t in list.iter() {
            if prev.is_some_and(|p| t >= p) {
                return Err(Error::InvalidConfig(
                    "DPM-Solver/UniPC: the timestep list repeats a timestep (too many steps for linspace)",
                ));
            }
            prev = Some(t);
        }
        Ok(list)
    }

    /// T, the schedule's number of timesteps.
    pub fn train_steps(&self) -> u32 {
        self.train_steps
    }

    /// Number of steps N.
    pub fn len(&self) -> usize {
        self.steps as usize
    }

    /// Always false (N ≥ 1).
    pub fn is_empty(&self) -> bool {
        self.steps == 0
    }

    /// The k-th timestep (k = 0 is the first, noisiest step); `None` past the end.
    pub fn get(&self, k: usize) -> Option<u32> {
        if k >= self.steps as usize {
            return None;
        }
        let (big_t, n) = (self.train_steps as f64, self.steps as f64);
        let j = (self.steps as usize - k) as f64;
        let t = match self.spacing {
            Spacing::Linspace => round_half_even(j * ((big_t - 1.0) / n)),
            Spacing::Leading => j * (self.train_steps / (self.steps + 1)) as f64,
            Spacing::Trailing => {
                // numpy's float arange: start + k·δ with δ = (start + step) − start, which is
                // not exactly −T/N (it decides ties such as 262.5 vs 262.50000000000017).
                let delta = (big_t - big_t / n) - big_t;
                round_half_even(big_t + k as f64 * delta) - 1.0
            }
        };
        Some((t.max(0.0) as u32).min(self.train_steps - 1))
    }

    /// Iterates over the timesteps, noisiest first.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).filter_map(|k| self.get(k))
    }
}

/// The order of one DPM-Solver++ step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpmOrder {
    /// First order: uses only the current x0 (the first step and the final step).
    First,
    /// Second order (midpoint): also the previous step's x0.
    Second,
}

/// The coefficients of one DPM-Solver++(2M) step: `x ← cx·x + c0·x0 + c1·x0_prev`, where x0
/// is predicted from the network's output at timestep `t` with `sa` = √ᾱ_t, `s1a` = √(1−ᾱ_t).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpmStep {
    /// The step's timestep (where the network is evaluated).
    pub t: u32,
    /// The timestep the step goes to; `None` for the final step to σ = 0.
    pub t_prev: Option<u32>,
    /// The step's order.
    pub order: DpmOrder,
    /// √ᾱ_t, for the x0 prediction.
    pub sa: f32,
    /// √(1−ᾱ_t), for the x0 prediction.
    pub s1a: f32,
    /// Coefficient of the current image value x.
    pub cx: f32,
    /// Coefficient of the current x0.
    pub c0: f32,
    /// Coefficient of the previous step's x0 (0 for first-order steps).
    pub c1: f32,
}

impl DpmStep {
    /// One element: from the image value `x` at t and the network's output `out` there (for a
    /// network predicting `pred`), returns (the new value, this step's x0). The caller stores
    /// x0 as the next step's `x0_prev`; `x0_prev` is unused (multiplied by 0) in first-order
    /// steps.
    #[inline(always)]
    pub fn apply(&self, pred: Prediction, x: f32, out: f32, x0_prev: f32) -> (f32, f32) {
        let x0 = split_output(pred, x, out, self.sa, self.s1a).0;
        let v = match self.order {
            DpmOrder::First => self.cx * x + self.c0 * x0,
            DpmOrder::Second => self.cx * x + self.c0 * x0 + self.c1 * x0_prev,
        };
        (v, x0)
    }
}

/// A DPM-Solver++(2M) run over a schedule: its timestep list; [`DpmPlan::step`] gives each
/// step's coefficients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DpmPlan {
    timesteps: DpmTimesteps,
}

/// ln α − ln σ at ᾱ = `acp` (f64), with α and σ.
pub(crate) fn alpha_sigma_lambda(acp: f32) -> (f64, f64, f64) {
    let a = acp as f64;
    let (alpha, sigma) = (libm::sqrt(a), libm::sqrt(1.0 - a));
    (alpha, sigma, libm::log(alpha) - libm::log(sigma))
}

pub(crate) const BAD_SCHEDULE: Error = Error::InvalidConfig(
    "DPM-Solver: the schedule's alpha-bar must lie strictly in (0, 1) and decrease along the steps",
);

impl DpmPlan {
    /// The plan of N = `steps` steps with `spacing` over `sched` (T = its length). Errors when
    /// N is not in 1..=T or the list repeats a timestep (linspace with N close to T).
    pub fn new<const M: usize>(sched: &Schedule<M>, steps: u32, spacing: Spacing) -> Result<Self> {
        Self::for_train_steps(sched.len() as u32, steps, spacing)
    }

    /// [`Self::new`] for a schedule of `train_steps` timesteps.
    pub fn for_train_steps(train_steps: u32, steps: u32, spacing: Spacing) -> Result<Self> {
        let timesteps = DpmTimesteps::distinct(train_steps, steps, spacing)?;
        Ok(Self { timesteps })
    }

    /// The timestep list.
    pub fn timesteps(&self) -> &DpmTimesteps {
        &self.timesteps
    }

    /// Number of steps (network evaluations).
    pub fn len(&self) -> usize {
        self.timesteps.len()
    }

    /// Always false.
    pub fn is_empty(&self) -> bool {
        self.timesteps.is_empty()
    }

    /// The coefficients of step k over `sched` (the schedule the plan was made for). Errors for
    /// k past the end, a schedule of another length, or an ᾱ that gives no finite step (ᾱ
    /// rounded to 1 or 0 in f32, or not decreasing).
    pub fn step<const M: usize>(&self, sched: &Schedule<M>, k: usize) -> Result<DpmStep> {
        if sched.len() != self.timesteps.train_steps as usize {
            return Err(Error::InvalidConfig(
                "DPM-Solver: the plan was made for a schedule of another length",
            ));
        }
        let t = self
            .timesteps
            .get(k)
            .ok_or(Error::InvalidConfig("DPM-Solver: step index past the end"))?;
        let acp = sched.alphas_cumprod();
        let t_prev = self.timesteps.get(k + 1);
        let (alpha_s0, sigma_s0, lambda_s0) = alpha_sigma_lambda(acp[t as usize]);
        if !(sigma_s0 > 0.0 && alpha_s0 > 0.0 && lambda_s0.is_finite()) {
            return Err(BAD_SCHEDULE);
        }
        let (sa, s1a) = (alpha_s0 as f32, sigma_s0 as f32);
        let Some(tp) = t_prev else {
            // σ_t = 0: h = ∞, e^{−h} = 0, α_t = 1, so x_t = x0.
            return Ok(DpmStep {
                t,
                t_prev,
                order: DpmOrder::First,
                sa,
                s1a,
                cx: 0.0,
                c0: 1.0,
                c1: 0.0,
            });
        };
        let (alpha_t, sigma_t, lambda_t) = alpha_sigma_lambda(acp[tp as usize]);
        let h = lambda_t - lambda_s0;
        // −α_t·(e^{−h} − 1), with expm1 for small h.
        let a = -alpha_t * libm::expm1(-h);
        let cx = sigma_t / sigma_s0;
        let (order, c0, c1) = match k.checked_sub(1).and_then(|j| self.timesteps.get(j)) {
            None => (DpmOrder::First, a, 0.0),
            Some(s1) => {
                let lambda_s1 = alpha_sigma_lambda(acp[s1 as usize]).2;
                let h0 = lambda_s0 - lambda_s1;
                if h0.is_nan() || h0 <= 0.0 {
                    return Err(BAD_SCHEDULE);
                }
                // A·D0 + ½A·D1 with D1 = (m0 − m1)·h/h0.
                let half = 0.5 * a * (h / h0);
                (DpmOrder::Second, a + half, -half)
            }
        };
        let step = DpmStep {
            t,
            t_prev,
            order,
            sa,
            s1a,
            cx: cx as f32,
            c0: c0 as f32,
            c1: c1 as f32,
        };
        let finite = [step.cx, step.c0, step.c1].iter().all(|c| c.is_finite());
        if !(h > 0.0 && finite) {
            return Err(BAD_SCHEDULE);
        }
        Ok(step)
    }
}

/// One DPM-Solver++(2M) step over an image (or any part of it), in place: for every element,
/// x0 is predicted from `x` and the network's output `out` (ε or v, as the schedule's network
/// predicts), `x ← cx·x + c0·x0 + c1·x0_prev` with `x0_prev = history[i]`, and `history[i]`
/// then holds this step's x0 for the next step. `out` and `history` must be as long as `x`;
/// the history's contents are not read in first-order steps (the first step may pass any
/// values).
pub fn dpm_step(
    step: &DpmStep,
    pred: Prediction,
    x: &mut [f32],
    out: &[f32],
    history: &mut [f32],
) -> Result<()> {
    check_len("network output", x.len(), out.len())?;
    check_len("DPM-Solver history", x.len(), history.len())?;
    for ((xv, &o), hv) in x.iter_mut().zip(out).zip(history.iter_mut()) {
        let (v, x0) = step.apply(pred, *xv, o, *hv);
        *xv = v;
        *hv = x0;
    }
    Ok(())
}
