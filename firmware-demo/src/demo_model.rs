//! What the demo samples: the trained default MNIST model (SimpleUNet, 1×28×28), embedded in
//! flash with `include_bytes!` and run by ddpm-core's row-streaming executor with the build's
//! sampler (DDIM by default), so the whole sample needs about 29 KB of RAM.
//!
//! Default build: the int8 model file `models/simple_unet_mnist_int8.ddpm` (weights read in
//! place from flash, integer convolutions). With the `f32` feature: the f32 model file
//! `models/simple_unet_mnist.ddpm` through the f32 streaming path (for FPU parts; ~96 KB of
//! RAM, see link/memory-f32.x).
//!
//! This module uses nothing but `core` and `ddpm_core`, so the host-side check compiles the very
//! same file and compares its results bit for bit with the firmware's.

use ddpm_core::diffusion::{GuidanceInterval, SamplerConfig};
use ddpm_core::file::ModelFile;
use ddpm_core::simple_unet::stream::sample_streaming_with_history;
use ddpm_core::{pixel_to_u8, Error, Result, Schedule, SimpleUNetConfig};

/// The network: the seed's SimpleUNet on 1×28×28 images.
pub const CONFIG: SimpleUNetConfig = SimpleUNetConfig::SEED;
/// Elements of one image.
pub const IMAGE_LEN: usize = CONFIG.image_len();

/// The embedded model file (stays in flash).
#[cfg(not(feature = "f32"))]
pub static MODEL: &[u8] = include_bytes!("../../models/simple_unet_mnist_int8.ddpm");
/// The embedded model file (stays in flash).
#[cfg(feature = "f32")]
pub static MODEL: &[u8] = include_bytes!("../../models/simple_unet_mnist.ddpm");

/// What the model is, for the printout.
#[cfg(not(feature = "f32"))]
pub const DESCRIPTION: &str = "trained SimpleUNet 1x28x28, hidden 64/128, int8, row streaming";
/// What the model is, for the printout.
#[cfg(feature = "f32")]
pub const DESCRIPTION: &str = "trained SimpleUNet 1x28x28, hidden 64/128, f32, row streaming";

include!("demo_settings.rs");

#[cfg(not(feature = "f32"))]
type Scratch = ddpm_core::simple_unet::int8::SeedInt8StreamBuffers;
#[cfg(feature = "f32")]
type Scratch = ddpm_core::simple_unet::int8::SeedF32StreamBuffers;

/// Every buffer sampling needs, sized at compile time so it can live in a `static`; `H` f32
/// values of sampler history (at least the sampler's [`DemoSampler::history_len`]).
pub struct Buffers<const H: usize> {
    /// Rolling row windows and time-embedding scratch of the streaming executor.
    pub scratch: Scratch,
    /// The image being denoised (ε is never stored whole).
    pub x: [f32; IMAGE_LEN],
    /// The multistep sampler's history.
    pub history: [f32; H],
    /// The finished image as u8 pixels.
    pub image: [u8; IMAGE_LEN],
}

impl<const H: usize> Buffers<H> {
    /// All zeros (a `const`, so a `static` of it lands in `.bss`).
    pub const ZEROED: Self = Self {
        scratch: Scratch::ZEROED,
        x: [0.0; IMAGE_LEN],
        history: [0.0; H],
        image: [0; IMAGE_LEN],
    };
}

impl<const H: usize> Buffers<H> {
    /// The finished image.
    pub fn image(&self) -> &[u8] {
        &self.image
    }
}

/// Samples one image with `sampler`, `seed` and `steps` steps into `bufs.image` (unguided,
/// unconditional, no inpainting: `guidance`, `class` and `inpaint` must be `None` and
/// `interval` every step; those are the TinyUNet build's). `schedule`
/// must hold exactly the tables of the embedded model's schedule (checked bit for bit: the
/// firmware keeps them in flash, written at build time).
#[allow(clippy::too_many_arguments)]
pub fn generate<const H: usize>(
    bufs: &mut Buffers<H>,
    schedule: &Schedule<MAX_T>,
    sampler: DemoSampler,
    guidance: Option<f32>,
    interval: GuidanceInterval,
    class: Option<u32>,
    inpaint: Option<DemoInpaint>,
    seed: u64,
    steps: u32,
) -> Result<()> {
    if inpaint.is_some() {
        return Err(Error::InvalidConfig(
            "inpainting runs in the TinyUNet build (feature `tiny`)",
        ));
    }
    if guidance.is_some() || !interval.is_always() {
        return Err(Error::InvalidConfig(
            "guided sampling runs in the TinyUNet build (feature `tiny`)",
        ));
    }
    if class.is_some() {
        return Err(Error::InvalidConfig(
            "class-conditional sampling runs in the TinyUNet build (feature `tiny`)",
        ));
    }
    let file = ModelFile::parse(MODEL)?;
    schedule.check_tables(&file.header().schedule)?;
    #[cfg(not(feature = "f32"))]
    let net = ddpm_core::simple_unet::int8::Int8SimpleUNet::from_file(&file)?;
    #[cfg(feature = "f32")]
    let net = ddpm_core::simple_unet::stream::F32StreamNet::from_file(&file)?;
    sample_streaming_with_history(
        &net,
        schedule,
        &sampler.config(steps),
        seed,
        &mut bufs.x,
        &mut bufs.scratch.scratch(),
        history_for(sampler, &mut bufs.history)?,
    )?;
    for (px, &v) in bufs.image.iter_mut().zip(bufs.x.iter()) {
        *px = pixel_to_u8(v);
    }
    Ok(())
}
