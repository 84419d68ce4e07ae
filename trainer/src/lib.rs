//! `ddpm-trainer`: trains the seed's DDPM (SimpleUNet, ε-prediction) with libtorch through tch,
//! on the CPU or a CUDA GPU, and moves the weights to and from the ddpm-core model file.
//!
//! Data flow:
//! 1. [`idx`] reads MNIST IDX files (raw or gzip); [`fetch`] downloads and verifies them.
//! 2. [`train::fit`] puts the images on the device as one tensor and trains [`model::SimpleUNet`]
//!    against the noise [`schedule`], checkpointing every epoch.
//! 3. [`export`] writes the ddpm-core model file (and PyTorch safetensors) and reads them back.
//! 4. [`sample`] draws images with the torch samplers or through `ddpm_core::host`, and writes
//!    PNG grids and IDX files.
//! 5. [`eval`] measures a model: the variational bound in bits/dim, and sample quality judged
//!    by the [`classifier`].
pub mod atomic;
pub mod classifier;
pub mod compare;
pub mod eval;
pub mod export;
pub mod fetch;
pub mod idx;
pub mod model;
pub mod quantize;
pub mod quantize_tiny;
pub mod sample;
pub mod schedule;
pub mod train;

pub use sample::{ddim_step, ddpm_step, guide_output};

/// Resolves `--device`: `cpu`, `cuda` (an error when CUDA is not usable), `cuda:N`, or `auto`
/// (CUDA when available, else CPU).
pub fn parse_device(s: &str) -> anyhow::Result<tch::Device> {
    match s {
        "cpu" => Ok(tch::Device::Cpu),
        "auto" => Ok(tch::Device::cuda_if_available()),
        "cuda" => cuda_device(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => cuda_device(i),
            _ => anyhow::bail!("unknown device {other:?}: use auto, cpu, cuda or cuda:N"),
        },
    }
}

fn cuda_device(i: usize) -> anyhow::Result<tch::Device> {
    let count = tch::Cuda::device_count() as usize;
    if i >= count {
        anyhow::bail!(
            "--device cuda:{i} asked for, but libtorch sees {count} CUDA device(s) \
             (cuda available: {})",
            tch::Cuda::is_available()
        );
    }
    Ok(tch::Device::Cuda(i))
}
