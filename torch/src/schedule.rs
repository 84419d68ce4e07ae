//! The noise schedule as device tensors, taken from `ddpm_core::Schedule` (computed in f64 and
//! rounded once to f32), so the trainer and the core use bit-identical tables.
use anyhow::Result;
use ddpm_core::{Schedule, ScheduleConfig};
use tch::{Device, Tensor};

/// Schedule tables on a device, indexed by timestep.
#[derive(Debug)]
pub struct DeviceSchedule {
    /// T.
    pub timesteps: i64,
    /// β_t.
    pub betas: Tensor,
    /// α_t = 1 − β_t.
    pub alphas: Tensor,
    /// ᾱ_t.
    pub alphas_cumprod: Tensor,
    /// β̃_t, the posterior variance.
    pub posterior_variance: Tensor,
    /// √ᾱ_t (computed in f32 from ᾱ_t, as the seed's `alphas_cumprod[t]**0.5`).
    pub sqrt_alphas_cumprod: Tensor,
    /// √(1 − ᾱ_t).
    pub sqrt_one_minus_alphas_cumprod: Tensor,
    /// The signal-to-noise ratio ᾱ_t / (1 − ᾱ_t).
    pub snr: Tensor,
}

impl DeviceSchedule {
    /// Builds the core's tables for `cfg` and copies them to `device`.
    pub fn new(cfg: &ScheduleConfig, device: Device) -> Result<(Self, Box<Schedule>)> {
        let host: Box<Schedule> = Box::new(
            Schedule::new(cfg)
                .map_err(|e| anyhow::anyhow!("schedule of T = {}: {e}", cfg.timesteps))?,
        );
        let t = |v: &[f32]| Tensor::from_slice(v).to_device(device);
        let acp = t(host.alphas_cumprod());
        let s = Self {
            timesteps: host.len() as i64,
            betas: t(host.betas()),
            alphas: t(host.alphas()),
            sqrt_alphas_cumprod: acp.sqrt(),
            sqrt_one_minus_alphas_cumprod: (1.0f64 - &acp).sqrt(),
            snr: &acp / (1.0f64 - &acp),
            alphas_cumprod: acp,
            posterior_variance: t(host.posterior_variance()),
        };
        Ok((s, host))
    }
}
