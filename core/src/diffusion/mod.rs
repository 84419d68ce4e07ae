//! Diffusion: the noise [`schedule`], the seeded [`noise`], the sampler [`steps`] (DDPM, DDIM,
//! autoguidance), what a sampler drives ([`denoiser`]) and the one loop that drives it
//! ([`driver`]).

pub mod denoiser;
pub mod driver;
pub mod noise;
pub mod schedule;
pub mod steps;

pub use denoiser::{Denoiser, Guided, ReferenceDenoiser, ReferenceNet};
pub use driver::{
    sample, sample_batch, sample_step, step, Collect, Network, OutputSink, WholeImages,
};
pub use noise::GaussianNoise;
pub use schedule::{Prediction, Schedule, ScheduleConfig, ScheduleKind};
pub use steps::*;
