//! Diffusion: the noise [`schedule`], the seeded [`noise`], the sampler [`steps`] (DDPM, DDIM,
//! autoguidance), the multistep solvers' step functions and timesteps (DPM-Solver++(2M),
//! [`dpm_solver`]; UniPC, [`unipc`]), what a sampler drives ([`denoiser`]) and the one loop
//! that drives it ([`driver`]), and inpainting by RePaint over that loop ([`inpaint`]).

pub mod denoiser;
pub mod dpm_solver;
pub mod driver;
pub mod inpaint;
pub mod noise;
pub mod plan;
pub mod schedule;
pub mod steps;
pub mod unipc;

pub use denoiser::{Denoiser, Guided, ReferenceDenoiser, ReferenceNet};
pub use dpm_solver::{dpm_step, DpmOrder, DpmPlan, DpmStep, DpmTimesteps};
pub use driver::{
    sample, sample_batch, sample_batch_with_history, sample_step, step, Collect, Network,
    OutputSink, WholeImages,
};
pub use inpaint::{
    apply_move, inpaint_batch, jump_back, paste_known, Inpainting, MaskShape, Move, Moves,
    Resampling,
};
pub use noise::GaussianNoise;
pub use plan::Plan;
pub use schedule::{Prediction, Schedule, ScheduleConfig, ScheduleKind};
pub use steps::*;
pub use unipc::{unipc_step, UniPcPlan, UniPcStep};
