//! Noise schedules: β_t, α_t = 1 − β_t, ᾱ_t = ∏_{s≤t} α_s and the posterior variance β̃_t,
//! precomputed once into fixed-size storage.
//!
//! Timesteps are zero-based as in the seed: t runs over 0..T, and ᾱ_{−1} = 1. All values are
//! computed in f64 and rounded once to f32, so any implementation that does the same (the trainer
//! does) gets bit-identical tables.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the noise variances β_t are laid out over the timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum ScheduleKind {
    /// β evenly spaced from `beta_start` to `beta_end` (Ho et al. 2020; the seed's choice).
    Linear {
        /// β at t = 0.
        beta_start: f64,
        /// β at t = T − 1.
        beta_end: f64,
    },
    /// ᾱ_t = f(t)/f(0), f(t) = cos²(((t/T) + s)/(1 + s)·π/2) (Nichol & Dhariwal 2021).
    Cosine {
        /// Offset `s` (0.008 in the paper).
        s: f64,
        /// Upper clip of β (0.999 in the paper).
        max_beta: f64,
    },
}

/// What the network's output stands for; the samplers turn it into ε and x0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Prediction {
    /// The noise ε in x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε (Ho et al. 2020; the seed's choice).
    #[default]
    Eps,
    /// The velocity v = √ᾱ_t·ε − √(1−ᾱ_t)·x0 (Salimans & Ho 2022, section 4), from which
    /// x0 = √ᾱ_t·x_t − √(1−ᾱ_t)·v and ε = √(1−ᾱ_t)·x_t + √ᾱ_t·v. Unlike ε it keeps x0 well
    /// conditioned where ᾱ_t → 0, at the noisiest steps that decide a sample's shape.
    V,
}

/// A noise schedule: its kind, the number of diffusion steps T, and what the network trained
/// on it predicts.
///
/// On the wire (postcard, in the model file's header) a schedule for an ε-predicting network
/// is written exactly as files wrote it before [`Prediction`] existed (the kind's variant, its
/// fields, T), so those files decode unchanged and such models still write the same bytes; any
/// other prediction is written as a third kind variant that wraps the kind and the prediction
/// ([`WireScheduleKind`](crate::file::wire::WireScheduleKind)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScheduleConfig {
    /// The β layout.
    pub kind: ScheduleKind,
    /// Number of diffusion steps T; timesteps run 0..T.
    pub timesteps: u32,
    /// What the network's output stands for.
    pub prediction: Prediction,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self::linear(300, 1e-4, 0.02)
    }
}

impl ScheduleConfig {
    /// A linear schedule.
    pub const fn linear(timesteps: u32, beta_start: f64, beta_end: f64) -> Self {
        Self {
            kind: ScheduleKind::Linear {
                beta_start,
                beta_end,
            },
            timesteps,
            prediction: Prediction::Eps,
        }
    }

    /// The cosine schedule with the paper's s = 0.008 and β ≤ 0.999.
    pub const fn cosine(timesteps: u32) -> Self {
        Self {
            kind: ScheduleKind::Cosine {
                s: 0.008,
                max_beta: 0.999,
            },
            timesteps,
            prediction: Prediction::Eps,
        }
    }

    /// The same schedule for a network that predicts `prediction`.
    pub const fn predicting(self, prediction: Prediction) -> Self {
        Self { prediction, ..self }
    }
}

/// Largest T the default [`Schedule`] holds.
pub const DEFAULT_MAX_T: usize = 1000;

/// A precomputed schedule for up to `MAX_T` timesteps (16 bytes of storage per timestep).
#[derive(Clone)]
pub struct Schedule<const MAX_T: usize = DEFAULT_MAX_T> {
    config: ScheduleConfig,
    len: usize,
    betas: [f32; MAX_T],
    alphas: [f32; MAX_T],
    alphas_cumprod: [f32; MAX_T],
    posterior_variance: [f32; MAX_T],
}

/// f(t) of the cosine schedule.
fn cosine_f(t: f64, big_t: f64, s: f64) -> f64 {
    let c = libm::cos(((t / big_t) + s) / (1.0 + s) * core::f64::consts::FRAC_PI_2);
    c * c
}

impl ScheduleConfig {
    /// Checks T and the β parameters.
    pub fn validate(&self, max_t: usize) -> Result<()> {
        if self.timesteps == 0 || self.timesteps as usize > max_t {
            return Err(Error::InvalidConfig(
                "schedule: T must be at least 1 and fit the schedule's storage",
            ));
        }
        match self.kind {
            ScheduleKind::Linear {
                beta_start,
                beta_end,
            } => {
                let ok = |b: f64| b > 0.0 && b < 1.0;
                if !ok(beta_start) || !ok(beta_end) {
                    return Err(Error::InvalidConfig(
                        "schedule: linear betas must lie in (0, 1)",
                    ));
                }
            }
            ScheduleKind::Cosine { s, max_beta } => {
                if !((0.0..1.0).contains(&s) && max_beta > 0.0 && max_beta < 1.0) {
                    return Err(Error::InvalidConfig(
                        "schedule: cosine needs 0 <= s < 1 and 0 < max_beta < 1",
                    ));
                }
            }
        }
        Ok(())
    }

    /// β_t in f64 for t in 0..T (before rounding to f32).
    pub fn beta_f64(&self, t: usize) -> f64 {
        let big_t = self.timesteps as f64;
        match self.kind {
            ScheduleKind::Linear {
                beta_start,
                beta_end,
            } => {
                if self.timesteps == 1 {
                    beta_start
                } else {
                    beta_start + (beta_end - beta_start) * (t as f64) / (big_t - 1.0)
                }
            }
            ScheduleKind::Cosine { s, max_beta } => {
                let ratio = cosine_f(t as f64 + 1.0, big_t, s) / cosine_f(t as f64, big_t, s);
                (1.0 - ratio).min(max_beta)
            }
        }
    }
}

/// Calls `f(t, [β, α, ᾱ, β̃])` with every entry of `config`'s tables, in f32 as the tables
/// store them (computed in f64, rounded once), until `f` returns false.
fn for_each_entry(config: &ScheduleConfig, mut f: impl FnMut(usize, [f32; 4]) -> bool) {
    let mut acp_prev = 1.0f64;
    for t in 0..config.timesteps as usize {
        let beta = config.beta_f64(t);
        let alpha = 1.0 - beta;
        let acp = acp_prev * alpha;
        let post = (1.0 - acp_prev) / (1.0 - acp) * beta;
        if !f(t, [beta as f32, alpha as f32, acp as f32, post as f32]) {
            return;
        }
        acp_prev = acp;
    }
}

impl<const MAX_T: usize> Schedule<MAX_T> {
    /// Precomputes the tables for `config`.
    pub fn new(config: &ScheduleConfig) -> Result<Self> {
        let mut s = Self::EMPTY;
        s.fill(config)?;
        Ok(s)
    }

    /// A placeholder schedule of the default linear configuration with no tables filled in;
    /// [`Schedule::fill`] it before use. Lets firmware keep the tables in a `static` and fill
    /// them in place, without a copy on the stack.
    pub const EMPTY: Self = Self {
        config: ScheduleConfig::linear(1, 1e-4, 0.02),
        len: 0,
        betas: [0.0; MAX_T],
        alphas: [0.0; MAX_T],
        alphas_cumprod: [0.0; MAX_T],
        posterior_variance: [0.0; MAX_T],
    };

    /// Computes the tables for `config` in place.
    pub fn fill(&mut self, config: &ScheduleConfig) -> Result<()> {
        config.validate(MAX_T)?;
        let len = config.timesteps as usize;
        self.config = *config;
        self.len = len;
        for_each_entry(config, |t, [beta, alpha, acp, post]| {
            self.betas[t] = beta;
            self.alphas[t] = alpha;
            self.alphas_cumprod[t] = acp;
            self.posterior_variance[t] = post;
            true
        });
        Ok(())
    }

    /// A schedule from tables computed elsewhere: what [`Schedule::fill`] would store for
    /// `config` (T = `config.timesteps` entries of each table are used, the rest must be 0).
    /// A `const fn`, so a build script can write a schedule's tables into a `static` that stays
    /// in flash (the firmware demo does, and checks it with [`Schedule::check_tables`]).
    pub const fn from_tables(
        config: ScheduleConfig,
        betas: [f32; MAX_T],
        alphas: [f32; MAX_T],
        alphas_cumprod: [f32; MAX_T],
        posterior_variance: [f32; MAX_T],
    ) -> Self {
        Self {
            config,
            len: config.timesteps as usize,
            betas,
            alphas,
            alphas_cumprod,
            posterior_variance,
        }
    }

    /// Checks that the tables are exactly, bit for bit, what [`Schedule::fill`] computes for
    /// `config`, recomputing them one entry at a time (no storage): for a schedule made by
    /// [`Schedule::from_tables`]. Errors name the first table that differs.
    // Not inlined: its loop would otherwise widen the caller's stack frame, which on a device
    // stays live while the sampler runs (1.1 KB more stack high-water in the firmware demo).
    #[inline(never)]
    pub fn check_tables(&self, config: &ScheduleConfig) -> Result<()> {
        config.validate(MAX_T)?;
        if self.config != *config || self.len != config.timesteps as usize {
            return Err(Error::InvalidConfig(
                "schedule tables: made for another schedule than the model file's",
            ));
        }
        const DIFFERS: [&str; 4] = [
            "schedule tables: a beta differs",
            "schedule tables: an alpha differs",
            "schedule tables: an alpha-bar differs",
            "schedule tables: a posterior variance differs",
        ];
        let mut bad = None;
        for_each_entry(config, |t, entry| {
            let stored = [
                self.betas[t],
                self.alphas[t],
                self.alphas_cumprod[t],
                self.posterior_variance[t],
            ];
            bad = (0..4).find(|&i| stored[i].to_bits() != entry[i].to_bits());
            bad.is_none()
        });
        match bad {
            None => Ok(()),
            Some(i) => Err(Error::InvalidConfig(DIFFERS[i])),
        }
    }

    /// The configuration this schedule was built from.
    pub fn config(&self) -> &ScheduleConfig {
        &self.config
    }
    /// Number of timesteps T.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True only for [`Schedule::EMPTY`] before [`Schedule::fill`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// β_t for t in 0..T.
    pub fn betas(&self) -> &[f32] {
        &self.betas[..self.len]
    }
    /// α_t = 1 − β_t.
    pub fn alphas(&self) -> &[f32] {
        &self.alphas[..self.len]
    }
    /// ᾱ_t = ∏_{s≤t} α_s.
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod[..self.len]
    }
    /// β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t, with ᾱ_{−1} = 1 (so β̃_0 = 0).
    pub fn posterior_variance(&self) -> &[f32] {
        &self.posterior_variance[..self.len]
    }
    /// ᾱ_t for t ≥ 0, and 1 for `None` (the step after the last).
    pub fn alpha_bar_or_one(&self, t: Option<usize>) -> f32 {
        match t {
            Some(t) => self.alphas_cumprod[t.min(self.len.saturating_sub(1)).min(MAX_T - 1)],
            None => 1.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-30)
    }

    #[test]
    fn linear_matches_closed_form() {
        let s: Schedule = Schedule::new(&ScheduleConfig::default()).unwrap();
        assert_eq!(s.len(), 300);
        assert_eq!(s.betas()[0], 1e-4f32);
        assert_eq!(s.betas()[299], 0.02f32);
        // ᾱ_T of the seed's schedule: √ᾱ_T ≈ 0.22 (the quality issue quotes it).
        let mut prod = 1.0f64;
        for t in 0..300 {
            let beta = 1e-4 + (0.02 - 1e-4) * t as f64 / 299.0;
            prod *= 1.0 - beta;
            assert!(close(s.alphas_cumprod()[t] as f64, prod, 1e-7), "t={t}");
        }
        let sqrt_acp_last = (s.alphas_cumprod()[299] as f64).sqrt();
        assert!((sqrt_acp_last - 0.2192).abs() < 1e-4, "{sqrt_acp_last}");
        assert_eq!(s.posterior_variance()[0], 0.0);
        // β̃_t < β_t for t > 0.
        for t in 1..300 {
            assert!(s.posterior_variance()[t] < s.betas()[t]);
        }
    }

    #[test]
    fn cosine_matches_closed_form() {
        for big_t in [10u32, 300, 1000] {
            let s: Schedule = Schedule::new(&ScheduleConfig::cosine(big_t)).unwrap();
            let f = |t: f64| {
                let c = ((t / big_t as f64 + 0.008) / 1.008 * core::f64::consts::FRAC_PI_2).cos();
                c * c
            };
            for t in 0..big_t as usize {
                // Without clipping, ᾱ_t = f(t+1)/f(0) exactly (the product telescopes).
                let expected = f(t as f64 + 1.0) / f(0.0);
                let beta = 1.0 - f(t as f64 + 1.0) / f(t as f64);
                if beta < 0.999 {
                    assert!(
                        close(s.alphas_cumprod()[t] as f64, expected, 1e-6),
                        "T={big_t} t={t}: {} vs {expected}",
                        s.alphas_cumprod()[t]
                    );
                } else {
                    assert_eq!(s.betas()[t], 0.999f32);
                }
            }
            // The last β is clipped to 0.999 (f(T) = cos²(π/2) ≈ 0).
            assert_eq!(s.betas()[big_t as usize - 1], 0.999f32);
        }
        // The quality issue's figure: √ᾱ_T ≈ 0.0002 for cosine at T = 300.
        let s: Schedule = Schedule::new(&ScheduleConfig::cosine(300)).unwrap();
        let r = (s.alphas_cumprod()[299] as f64).sqrt();
        assert!(r < 1e-3, "{r}");
    }

    #[test]
    fn fill_in_place_equals_new() {
        let mut s: Schedule<300> = Schedule::EMPTY;
        assert!(s.is_empty());
        s.fill(&ScheduleConfig::cosine(300)).unwrap();
        let n: Schedule<300> = Schedule::new(&ScheduleConfig::cosine(300)).unwrap();
        assert_eq!(s.alphas_cumprod(), n.alphas_cumprod());
        assert_eq!(s.posterior_variance(), n.posterior_variance());
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(Schedule::<10>::new(&ScheduleConfig::linear(11, 1e-4, 0.02)).is_err());
        assert!(Schedule::<10>::new(&ScheduleConfig::linear(0, 1e-4, 0.02)).is_err());
        assert!(Schedule::<10>::new(&ScheduleConfig::linear(10, 0.0, 0.02)).is_err());
        assert!(Schedule::<10>::new(&ScheduleConfig::linear(10, f64::NAN, 0.02)).is_err());
        assert!(Schedule::<1000>::new(&ScheduleConfig::cosine(1000)).is_ok());
    }

    #[test]
    fn tables_from_elsewhere_are_checked_bit_for_bit() {
        for cfg in [ScheduleConfig::default(), ScheduleConfig::cosine(300)] {
            let s: Schedule<300> = Schedule::new(&cfg).unwrap();
            let copy = Schedule::<300>::from_tables(
                cfg,
                s.betas,
                s.alphas,
                s.alphas_cumprod,
                s.posterior_variance,
            );
            assert_eq!(copy.check_tables(&cfg), Ok(()));
            assert_eq!(copy.alphas_cumprod(), s.alphas_cumprod());
            // One bit off in one table, or another schedule: named errors.
            let mut acp = s.alphas_cumprod;
            acp[137] = f32::from_bits(acp[137].to_bits() ^ 1);
            let bad =
                Schedule::<300>::from_tables(cfg, s.betas, s.alphas, acp, s.posterior_variance);
            assert_eq!(
                bad.check_tables(&cfg),
                Err(Error::InvalidConfig(
                    "schedule tables: an alpha-bar differs"
                ))
            );
            let other = ScheduleConfig::linear(300, 1e-4, 0.03);
            assert!(matches!(
                copy.check_tables(&other),
                Err(Error::InvalidConfig(_))
            ));
        }
    }
}
