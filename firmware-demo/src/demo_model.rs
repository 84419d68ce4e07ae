//! What the demo samples: a small SimpleUNet with synthetic weights, run by ddpm-core's
//! reference forward pass and DDIM sampler.
//!
//! This module uses nothing but `core` and `ddpm_core`, so the host-side check compiles the very
//! same file and compares its results bit for bit with the firmware's. The firmware only calls
//! [`generate`] on a [`Buffers`]; a trained model (int8, borrowed from flash) replaces this
//! module without touching the rest of the firmware.
//!
//! The weights are N(0, 1) draws of [`GaussianNoise`] seeded with [`WEIGHT_SEED`], scaled by
//! [`WEIGHT_SCALE`], in `state_dict` order: nothing to learn from, but every layer, the time
//! embedding, the schedule, the sampler and the noise stream take part, so any difference in
//! floating-point results between two platforms shows up in the image.

use ddpm_core::sampler::{self, DdimConfig, SamplerConfig};
use ddpm_core::{
    pixel_to_u8, GaussianNoise, ReferenceDenoiser, Result, Schedule, ScheduleConfig, SimpleUNet,
    SimpleUNetConfig,
};

/// The network: 1×8×8 images, 4 and 8 hidden channels (753 parameters).
pub const CONFIG: SimpleUNetConfig = SimpleUNetConfig {
    channels: 1,
    height: 8,
    width: 8,
    hidden1: 4,
    hidden2: 8,
};

/// Elements of one image.
pub const IMAGE_LEN: usize = CONFIG.image_len();
/// Parameters of the network.
pub const PARAM_LEN: usize = CONFIG.param_count();
/// f32 scratch of the reference forward pass.
pub const WORKSPACE_LEN: usize = CONFIG.workspace_len();

/// Seed of the synthetic weights (fixed: the build-time seed changes only the sample).
pub const WEIGHT_SEED: u64 = 2024;
/// Scale of the synthetic weights, small enough to keep activations in a sane range.
pub const WEIGHT_SCALE: f32 = 0.3;

/// Largest number of timesteps the schedule storage holds (16 bytes each).
pub const MAX_T: usize = 300;
/// The noise schedule: the seed's linear β from 1e-4 to 0.02 over T = 300.
pub const SCHEDULE: ScheduleConfig = ScheduleConfig::linear(300, 1e-4, 0.02);

/// Seed of the sample when `DDPM_DEMO_SEED` is not set at build time.
pub const DEFAULT_SEED: u64 = 42;
/// DDIM steps when `DDPM_DEMO_STEPS` is not set at build time.
pub const DEFAULT_STEPS: u32 = 10;

/// The sampler: deterministic DDIM (η = 0, `leading` spacing, no clipping).
pub fn sampler_config(steps: u32) -> SamplerConfig {
    SamplerConfig::Ddim(DdimConfig {
        steps,
        ..DdimConfig::default()
    })
}

/// Every buffer sampling needs, sized at compile time so it can live in a `static`.
pub struct Buffers {
    /// Network parameters, all tensors concatenated in `state_dict` order.
    pub params: [f32; PARAM_LEN],
    /// Scratch of the forward pass.
    pub workspace: [f32; WORKSPACE_LEN],
    /// The image being denoised.
    pub x: [f32; IMAGE_LEN],
    /// The predicted noise.
    pub eps: [f32; IMAGE_LEN],
    /// The finished image as u8 pixels.
    pub image: [u8; IMAGE_LEN],
}

impl Buffers {
    /// All zeros (a `const`, so a `static` of it lands in `.bss`).
    pub const ZEROED: Self = Self {
        params: [0.0; PARAM_LEN],
        workspace: [0.0; WORKSPACE_LEN],
        x: [0.0; IMAGE_LEN],
        eps: [0.0; IMAGE_LEN],
        image: [0; IMAGE_LEN],
    };
}

/// Fills `params` with the synthetic weights.
pub fn fill_weights(params: &mut [f32]) {
    let mut noise = GaussianNoise::new(WEIGHT_SEED);
    for p in params {
        *p = noise.next_gaussian() * WEIGHT_SCALE;
    }
}

/// Samples one image with `seed` and `steps` DDIM steps into `bufs.image`.
pub fn generate(bufs: &mut Buffers, seed: u64, steps: u32) -> Result<()> {
    fill_weights(&mut bufs.params);
    // On the stack: `Schedule::new` returns the tables by value, so a static copy would only
    // add to the stack's own copy.
    let schedule: Schedule<MAX_T> = Schedule::new(&SCHEDULE)?;
    let net = SimpleUNet::from_flat(CONFIG, &bufs.params)?;
    let mut denoiser = ReferenceDenoiser::new(net, &mut bufs.workspace)?;
    sampler::sample(
        &mut denoiser,
        &schedule,
        &sampler_config(steps),
        seed,
        &mut bufs.x,
        &mut bufs.eps,
    )?;
    for (px, &v) in bufs.image.iter_mut().zip(bufs.x.iter()) {
        *px = pixel_to_u8(v);
    }
    Ok(())
}
