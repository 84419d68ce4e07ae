// What both builds (default and `tiny`) sample with, `include!`d into each model module.

/// Largest number of timesteps the schedule storage holds (16 bytes each; the trainer's
/// default T = 300). A model trained with more steps is refused by `Schedule::fill`.
pub const MAX_T: usize = 300;

/// Seed of the sample when `DDPM_DEMO_SEED` is not set at build time.
pub const DEFAULT_SEED: u64 = 42;
/// DDIM steps when `DDPM_DEMO_STEPS` is not set at build time.
pub const DEFAULT_STEPS: u32 = 10;

/// The sampler: deterministic DDIM (η = 0, `leading` spacing), x0 clipped to [−1, 1] with ε
/// recomputed from it, which keeps few-step samples clean.
pub fn sampler_config(steps: u32) -> SamplerConfig {
    SamplerConfig::Ddim(DdimConfig {
        steps,
        clip_x0: true,
        recompute_eps: true,
        ..DdimConfig::default()
    })
}
