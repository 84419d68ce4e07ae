//! `ddpm-core`: a `no_std` denoising-diffusion inference core.
//!
//! The crate's folders are its architecture:
//! - [`file`]: the model file, the one contract with the trainer. [`file::ModelFile::parse`]
//!   checks and decodes one (magic, version, length, CRC-32, header, named tensors) without
//!   allocating; int8 tensors are borrowed in place (from flash on a microcontroller).
//! - [`nets`]: one folder per network, its variants under the same names: [`simple_unet`] (the
//!   lecture notes' model) and [`tiny_unet`] (the compact down-sampling U-Net), each with
//!   `config`, `reference` (plain loops, the oracle), `fast` (host SIMD), `int8`, the
//!   microcontroller executor (`stream` / `planned`) and `ptq` (the quantizer).
//! - [`kernels`]: the layers the networks compose: reference layers, integer arithmetic,
//!   calibration statistics, GEMM, Winograd and shifted-run SIMD kernels.
//! - [`diffusion`]: the noise [`Schedule`], seeded [`GaussianNoise`], the DDPM/DDIM steps and
//!   autoguidance, and [`diffusion::driver`], the one loop that walks a sampler's plan over any
//!   network, whole-image or row-streamed.
//! - [`host`] (feature `alloc`): [`host::HostModel`] bundles it all for host programs.
//!
//! No heap is needed for inference: the caller owns every buffer, and sizes are checked once.
//!
//! ```
//! use ddpm_core::{diffusion, GaussianNoise, ReferenceDenoiser, Schedule, ScheduleConfig,
//!                 SimpleUNet, SimpleUNetConfig};
//! // A tiny configuration with all-zero weights: the network then predicts ε = 0.
//! let cfg = SimpleUNetConfig { channels: 1, height: 4, width: 4, hidden1: 2, hidden2: 3 };
//! let params = vec![0.0f32; cfg.param_count()];
//! let mut workspace = vec![0.0f32; cfg.workspace_len()];
//! let net = SimpleUNet::from_flat(cfg, &params).unwrap();
//! let mut den = ReferenceDenoiser::new(net, &mut workspace).unwrap();
//! let schedule: Schedule = Schedule::new(&ScheduleConfig::default()).unwrap();
//! let (mut x, mut eps) = ([0.0f32; 16], [0.0f32; 16]);
//! let cfg = diffusion::SamplerConfig::Ddim(diffusion::DdimConfig { steps: 10, ..Default::default() });
//! diffusion::sample(&mut den, &schedule, &cfg, 42, &mut x, &mut eps).unwrap();
//! // With ε = 0 and η = 0, DDIM scales the initial noise by 1/√ᾱ_t of its first timestep.
//! let mut noise = GaussianNoise::new(42);
//! let first = noise.next_gaussian();
//! let t0 = diffusion::DdimTimesteps::new(300, 10, diffusion::Spacing::Leading).unwrap().get(0).unwrap();
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

pub mod diffusion;
pub mod error;
pub mod file;
#[cfg(feature = "alloc")]
pub mod host;
pub mod kernels;
pub mod nets;

pub use diffusion::{pixel_to_u8, GaussianNoise, Prediction, ReferenceDenoiser, Schedule};
pub use diffusion::{ScheduleConfig, ScheduleKind};
pub use error::{Error, Result};
pub use file::crc32;
pub use nets::simple_unet::{SimpleUNet, SimpleUNetConfig};
pub use nets::tiny_unet::{TinyReferenceDenoiser, TinyUNet, TinyUNetConfig};
pub use nets::{simple_unet, tiny_unet, AsModelConfig, ModelConfig, TensorSpec};
