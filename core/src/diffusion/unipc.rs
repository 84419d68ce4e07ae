//! UniPC: the unified predictor-corrector multistep solver of the diffusion ODE (Zhao et al.
//! 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion
//! Models"), in data-prediction form with the options of diffusers' `UniPCMultistepScheduler`
//! defaults: B(h) = e^h − 1 ("bh2"), predictor UniP of order 2, the UniC corrector after every
//! step but the last, the first and the final step of first order (`lower_order_final`), the
//! final step to σ = 0, no thresholding. Its timestep lists are DPM-Solver's
//! ([`DpmTimesteps`]; diffusers computes them with the same formulas).
//!
//! With α, σ, λ = ln α − ln σ as in [`crate::diffusion::dpm_solver`], m_k the x0 predicted at
//! step k's timestep s_k, h = λ_{k+1} − λ_k and r = (λ_{k−1} − λ_k)/h, step k
//!
//! 1. corrects the image the network was evaluated at (k > 0, UniC of the order of step k − 1):
//!    x_c = x̃ − α_k·B(h_{k−1})·(ρ₀·D + ρ₁·(m_k − m_{k−1})), where x̃ is the first-order part of
//!    step k − 1's update from its own corrected image and D its D1 term (order 2 only; order 1
//!    has ρ₁ = ½);
//! 2. predicts (UniP): x_{k+1} = (σ_{k+1}/σ_k)·x_c − α_{k+1}·(e^{−h} − 1)·m_k
//!    − ½·α_{k+1}·B(h)·D1 with D1 = (m_{k−1} − m_k)/r for order 2.
//!
//! The corrector of step k + 1 needs the corrected image of step k, m_{k−1} and m_k; diffusers
//! keeps the corrected image and both x0. Here the part of step k + 1's corrector that does not
//! depend on m_{k+1} is computed during step k, when those three are at hand (it is the
//! predictor's first-order part plus another multiple of D1), so the history is two values per
//! element instead of three: that part `c` and m_k. Every step is then, per element, an affine
//! map of (x, ε or v, m, c) ([`UniPcStep::apply`]) with coefficients computed once per step in
//! f64 (as for DPM-Solver++) and rounded once to f32.

use crate::diffusion::dpm_solver::{alpha_sigma_lambda, DpmOrder, DpmTimesteps, BAD_SCHEDULE};
use crate::diffusion::schedule::{Prediction, Schedule};
use crate::diffusion::steps::{split_output, Spacing};
use crate::error::{check_len, Error, Result};

/// The coefficients of one UniPC step (see the module documentation): per element, with x0
/// predicted from the network's output at `t` (`sa` = √ᾱ_t, `s1a` = √(1−ᾱ_t)),
///
/// - x_c = c − `k_corr`·(x0 − m) when the step corrects (`k_corr` is `None` at the first step),
///   else x_c = x;
/// - x̃ = `cx`·x_c + `c0`·x0;
/// - the new image x̃ + `cd`·(m − x0), the new c = x̃ + `cd_next`·(m − x0), the new m = x0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UniPcStep {
    /// The step's timestep (where the network is evaluated).
    pub t: u32,
    /// The timestep the step goes to; `None` for the final step to σ = 0.
    pub t_prev: Option<u32>,
    /// The predictor's order.
    pub order: DpmOrder,
    /// √ᾱ_t, for the x0 prediction.
    pub sa: f32,
    /// √(1−ᾱ_t), for the x0 prediction.
    pub s1a: f32,
    /// The corrector's coefficient of (x0 − m): α_t·B(h)·ρ of the previous interval; `None`
    /// when the step does not correct (the first step).
    pub k_corr: Option<f32>,
    /// Coefficient of the corrected image in the predictor's first-order part.
    pub cx: f32,
    /// Coefficient of x0 in the predictor's first-order part.
    pub c0: f32,
    /// Coefficient of (m − x0) in the predictor (0 for a first-order step).
    pub cd: f32,
    /// Coefficient of (m − x0) in the next corrector's fixed part (0 after a first-order step).
    pub cd_next: f32,
}

impl UniPcStep {
    /// One element: from the image value `x` at t, the network's output `out` there (for a
    /// network predicting `pred`), the previous step's x0 `m` and the corrector's fixed part
    /// `c`, returns (the new value, this step's x0, the next step's `c`). `m` and `c` are not
    /// read at the first step (their coefficients are 0 there).
    #[inline(always)]
    pub fn apply(&self, pred: Prediction, x: f32, out: f32, m: f32, c: f32) -> (f32, f32, f32) {
        let x0 = split_output(pred, x, out, self.sa, self.s1a).0;
        let xc = match self.k_corr {
            Some(k) => c - k * (x0 - m),
            None => x,
        };
        let base = self.cx * xc + self.c0 * x0;
        match self.order {
            DpmOrder::First => (base, x0, base),
            DpmOrder::Second => {
                let d = m - x0;
                (base + self.cd * d, x0, base + self.cd_next * d)
            }
        }
    }
}

/// A UniPC run over a schedule: its timestep list; [`UniPcPlan::step`] gives each step's
/// coefficients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniPcPlan {
    timesteps: DpmTimesteps,
}

/// The predictor's order at step k of n: first at the first and the last step
/// (`lower_order_final`), second otherwise.
fn order_at(k: usize, n: usize) -> DpmOrder {
    if k == 0 || k + 1 >= n {
        DpmOrder::First
    } else {
        DpmOrder::Second
    }
}

/// One interval s_k → s_{k+1} of the walk, in f64.
struct Interval {
    /// α at s_{k+1}.
    alpha_t: f64,
    /// σ_{k+1}/σ_k.
    cx: f64,
    /// −α_{k+1}·(e^{−h} − 1), the coefficient of m_k.
    c0: f64,
    /// α_{k+1}·B(h) with B(h) = e^{−h} − 1 (data prediction: h enters with its sign flipped).
    alpha_bh: f64,
    /// −h.
    hh: f64,
    /// r = (λ_{k−1} − λ_k)/h for a second-order step.
    r: Option<f64>,
}

impl UniPcPlan {
    /// The plan of N = `steps` steps with `spacing` over `sched` (T = its length). Errors when
    /// N is not in 1..=T or the list repeats a timestep (linspace with N close to T).
    pub fn new<const M: usize>(sched: &Schedule<M>, steps: u32, spacing: Spacing) -> Result<Self> {
        Self::for_train_steps(sched.len() as u32, steps, spacing)
    }

    /// [`Self::new`] for a schedule of `train_steps` timesteps.
    pub fn for_train_steps(train_steps: u32, steps: u32, spacing: Spacing) -> Result<Self> {
        Ok(Self {
            timesteps: DpmTimesteps::distinct(train_steps, steps, spacing)?,
        })
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

    /// The interval from step k's timestep to step k + 1's (`None` past the list: the final
    /// step to σ = 0, handled by the caller), with r when step k is of second order.
    fn interval(&self, acp: &[f32], k: usize) -> Result<Option<Interval>> {
        let t = self.timesteps.get(k).ok_or(BAD_SCHEDULE)?;
        let Some(tn) = self.timesteps.get(k + 1) else {
            return Ok(None);
        };
        let (_, sigma_s0, lambda_s0) = alpha_sigma_lambda(acp[t as usize]);
        let (alpha_t, sigma_t, lambda_t) = alpha_sigma_lambda(acp[tn as usize]);
        let h = lambda_t - lambda_s0;
        if !(h > 0.0 && h.is_finite() && sigma_s0 > 0.0) {
            return Err(BAD_SCHEDULE);
        }
        let hh = -h;
        let bh = libm::expm1(hh);
        let r = match order_at(k, self.len()) {
            DpmOrder::First => None,
            DpmOrder::Second => {
                let s1 = self.timesteps.get(k - 1).ok_or(BAD_SCHEDULE)?;
                let lambda_s1 = alpha_sigma_lambda(acp[s1 as usize]).2;
                let r = (lambda_s1 - lambda_s0) / h;
                if !(r < 0.0 && r.is_finite()) {
                    return Err(BAD_SCHEDULE);
                }
                Some(r)
            }
        };
        Ok(Some(Interval {
            alpha_t,
            cx: sigma_t / sigma_s0,
            c0: -alpha_t * bh,
            alpha_bh: alpha_t * bh,
            hh,
            r,
        }))
    }

    /// The corrector's weights (ρ₀ for D1, ρ₁ for the new x0's difference) after an interval:
    /// ρ₁ = ½ for order 1; for order 2 the solution of [[1, 1], [r, 1]]·ρ = b with
    /// b_i = i!·φ_{i+1}(hh)·hh/B(h) as diffusers builds them (φ by the recursion
    /// φ_{k+1} = (φ_k − 1/k!)/hh from φ_1 = (e^{hh} − 1)/hh).
    fn corrector_weights(iv: &Interval) -> (f64, f64) {
        let Some(r) = iv.r else {
            return (0.0, 0.5);
        };
        let bh = iv.alpha_bh / iv.alpha_t;
        let h_phi_1 = bh;
        let h_phi_2 = h_phi_1 / iv.hh - 1.0;
        let b1 = h_phi_2 / bh;
        let h_phi_3 = h_phi_2 / iv.hh - 0.5;
        let b2 = 2.0 * h_phi_3 / bh;
        let rho0 = (b1 - b2) / (1.0 - r);
        (rho0, b1 - rho0)
    }

    /// The coefficients of step k over `sched` (the schedule the plan was made for). Errors for
    /// k past the end, a schedule of another length, or an ᾱ that gives no finite step (ᾱ
    /// rounded to 1 or 0 in f32, or not decreasing).
    pub fn step<const M: usize>(&self, sched: &Schedule<M>, k: usize) -> Result<UniPcStep> {
        if sched.len() != self.timesteps.train_steps() as usize {
            return Err(Error::InvalidConfig(
                "UniPC: the plan was made for a schedule of another length",
            ));
        }
        let t = self
            .timesteps
            .get(k)
            .ok_or(Error::InvalidConfig("UniPC: step index past the end"))?;
        let acp = sched.alphas_cumprod();
        let (alpha_s0, sigma_s0, lambda_s0) = alpha_sigma_lambda(acp[t as usize]);
        if !(sigma_s0 > 0.0 && alpha_s0 > 0.0 && lambda_s0.is_finite()) {
            return Err(BAD_SCHEDULE);
        }
        // The corrector: the previous interval's weight of (m_k − m_{k−1}).
        let k_corr = match k.checked_sub(1) {
            None => None,
            Some(j) => {
                let iv = self.interval(acp, j)?.ok_or(BAD_SCHEDULE)?;
                let (_, rho1) = Self::corrector_weights(&iv);
                Some((iv.alpha_bh * rho1) as f32)
            }
        };
        let order = order_at(k, self.len());
        let (cx, c0, cd, cd_next) = match self.interval(acp, k)? {
            // σ = 0 after the final step: the update returns x0.
            None => (0.0, 1.0, 0.0, 0.0),
            Some(iv) => match iv.r {
                None => (iv.cx, iv.c0, 0.0, 0.0),
                Some(r) => {
                    // D1 = (m_{k−1} − m_k)/r: ½·α·B(h)·D1 in the predictor, ρ₀·α·B(h)·D1 in
                    // the next corrector, both subtracted.
                    let (rho0, _) = Self::corrector_weights(&iv);
                    (
                        iv.cx,
                        iv.c0,
                        -0.5 * iv.alpha_bh / r,
                        -rho0 * iv.alpha_bh / r,
                    )
                }
            },
        };
        let step = UniPcStep {
            t,
            t_prev: self.timesteps.get(k + 1),
            order,
            sa: alpha_s0 as f32,
            s1a: sigma_s0 as f32,
            k_corr,
            cx: cx as f32,
            c0: c0 as f32,
            cd: cd as f32,
            cd_next: cd_next as f32,
        };
        let finite = [
            step.cx,
            step.c0,
            step.cd,
            step.cd_next,
            k_corr.unwrap_or(0.0),
        ]
        .iter()
        .all(|c| c.is_finite());
        if !finite {
            return Err(BAD_SCHEDULE);
        }
        Ok(step)
    }
}

/// One UniPC step over an image (or any part of it), in place: for every element, x0 is
/// predicted from `x` and the network's output `out` (ε or v, as the schedule's network
/// predicts), the image is corrected and advanced ([`UniPcStep::apply`]), and `m[i]`, `c[i]`
/// then hold this step's x0 and the next corrector's fixed part. `out`, `m` and `c` must be as
/// long as `x`; at the first step their contents are not read.
pub fn unipc_step(
    step: &UniPcStep,
    pred: Prediction,
    x: &mut [f32],
    out: &[f32],
    m: &mut [f32],
    c: &mut [f32],
) -> Result<()> {
    check_len("network output", x.len(), out.len())?;
    check_len("UniPC history (x0)", x.len(), m.len())?;
    check_len("UniPC history (corrector)", x.len(), c.len())?;
    for (((xv, &o), mv), cv) in x.iter_mut().zip(out).zip(m.iter_mut()).zip(c.iter_mut()) {
        let (v, x0, cn) = step.apply(pred, *xv, o, *mv, *cv);
        *xv = v;
        *mv = x0;
        *cv = cn;
    }
    Ok(())
}
