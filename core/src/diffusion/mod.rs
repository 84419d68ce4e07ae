//! Diffusion: the noise [`schedule`], the seeded [`noise`], the sampler [`steps`] (DDPM, DDIM,
//! autoguidance), the DPM-Solver++(2M) step functions and timesteps ([`dpm_solver`]), what a sampler drives ([`denoiser`]) and the one loop that drives it
//! ([`driver`]).

pub mod denoiser;
pub mod dpm_solver;
pub mod driver;
pub mod noise;
pub mod plan;
pub mod schedule;
pub mod steps;

pub use denoiser::{Denoiser, Guided, ReferenceDenoiser, ReferenceNet};
pub use dpm_solver::{dpm_step, DpmOrder, DpmPlan, DpmStep, DpmTimesteps};
pub use driver::{
    sample, sample_batch, sample_batch_with_history, sample_step, step, Collect, Network,
    OutputSink, WholeImages,
};
pub use noise::GaussianNoise;
pub use plan::Plan;
pub use schedule::{Prediction, Schedule, ScheduleConfig, ScheduleKind};
pub use steps::*;
