//! `ddpm-core`: a `no_std` denoising-diffusion inference core.
//!
//! Data flow, top to bottom:
//! 1. [`format::ModelFile::parse`] checks and decodes a model file written by the trainer
//!    (magic, version, length, CRC-32, header, named tensors) without allocating.
//! 2. [`simple_unet::load_params`] copies the weights into caller-owned storage and
//!    [`SimpleUNet`] runs the seed's network over them with the reference [`layers`];
//!    [`fast::FastSimpleUNet`] (feature `fast`) is the host's fast path (Winograd with SIMD
//!    kernels, im2col + sgemm for narrow networks), checked against it.
//!    [`TinyUNet`] (module [`tiny_unet`]) is the compact down-sampling U-Net, with its fast
//!    path [`fast::FastTinyUNet`].
//! 3. [`Schedule`] precomputes β, α, ᾱ and the posterior variance for a [`ScheduleConfig`].
//! 4. [`sampler`] steps DDPM or DDIM, drawing noise from [`GaussianNoise`], driving any
//!    [`sampler::Denoiser`].
//! 5. [`host::HostModel`] (feature `alloc`) bundles all of it for host programs.
//!
//! No heap is needed for inference: the caller owns every buffer, and sizes are checked once.
//!
//! ```
//! use ddpm_core::{sampler, GaussianNoise, ReferenceDenoiser, Schedule, ScheduleConfig,
//!                 SimpleUNet, SimpleUNetConfig};
//! // A tiny configuration with all-zero weights: the network then predicts ε = 0.
//! let cfg = SimpleUNetConfig { channels: 1, height: 4, width: 4, hidden1: 2, hidden2: 3 };
//! let params = vec![0.0f32; cfg.param_count()];
//! let mut workspace = vec![0.0f32; cfg.workspace_len()];
//! let net = SimpleUNet::from_flat(cfg, &params).unwrap();
//! let mut den = ReferenceDenoiser::new(net, &mut workspace).unwrap();
//! let schedule: Schedule = Schedule::new(&ScheduleConfig::default()).unwrap();
//! let (mut x, mut eps) = ([0.0f32; 16], [0.0f32; 16]);
//! let cfg = sampler::SamplerConfig::Ddim(sampler::DdimConfig { steps: 10, ..Default::default() });
//! sampler::sample(&mut den, &schedule, &cfg, 42, &mut x, &mut eps).unwrap();
//! // With ε = 0 and η = 0, DDIM scales the initial noise by 1/√ᾱ_t of its first timestep.
//! let mut noise = GaussianNoise::new(42);
//! let first = noise.next_gaussian();
//! let t0 = sampler::DdimTimesteps::new(300, 10, sampler::Spacing::Leading).unwrap().get(0).unwrap();
//! let expected = first / schedule.alphas_cumprod()[t0 as usize].sqrt();
//! assert!((x[0] - expected).abs() <= 1e-5 * expected.abs());
//! ```
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod config;
mod crc32;
pub mod error;
#[cfg(feature = "fast")]
pub mod fast;
pub mod format;
#[cfg(feature = "alloc")]
pub mod host;
pub mod int8;
pub mod layers;
pub mod noise;
pub mod quant;
#[cfg(feature = "alloc")]
pub mod quantize;
pub mod sampler;
pub mod schedule;
#[cfg(feature = "fast")]
mod simd;
pub mod simple_unet;
pub mod stream;
pub mod tiny_int8;
#[cfg(feature = "alloc")]
pub mod tiny_quantize;
pub mod tiny_unet;
#[cfg(feature = "fast")]
pub mod winograd;

pub use config::{
    AsModelConfig, ModelConfig, Prediction, ScheduleConfig, ScheduleKind, SimpleUNetConfig,
    TensorSpec, TinyUNetConfig,
};
pub use crc32::crc32;
pub use error::{Error, Result};
pub use noise::GaussianNoise;
pub use sampler::{pixel_to_u8, ReferenceDenoiser};
pub use schedule::Schedule;
pub use simple_unet::SimpleUNet;
pub use tiny_unet::{TinyReferenceDenoiser, TinyUNet};
