//! `ddpm-trainer`: trains the seed's DDPM (SimpleUNet, ε-prediction) with libtorch through tch,
//! on the CPU or a CUDA GPU, and moves the weights to and from the ddpm-core model file. The
//! libtorch networks, schedule, samplers and weight conversion are the `ddpm-torch` crate.
//!
//! Data flow:
//! 1. [`data::idx`] reads MNIST IDX files (raw or gzip); [`data::fetch`] downloads and
//!    verifies them.
//! 2. [`train::fit`] puts the images on the device as one tensor and trains a
//!    `ddpm_torch::model::Net` against the noise schedule (`ddpm_torch::schedule`),
//!    checkpointing every epoch; [`train::config`] builds and checks its options.
//! 3. [`load`] reads a model file (and a guide) from disk and checks it once; the weights go
//!    out through `ddpm_torch::export` (model file, PyTorch safetensors) and [`quantize`]
//!    (int8 model files).
//! 4. [`sample`] writes what the samplers (`ddpm_torch::sample` or `ddpm_core::host`) draw as
//!    PNG grids and IDX files; [`inpaint`] completes a digit partly hidden and measures
//!    completions.
//! 5. [`eval`] measures a model: the variational bound in bits/dim, and sample quality judged
//!    by the [`eval::classifier`]; [`eval::compare`] holds an int8 export against its f32 model.
pub mod data;
pub mod describe;
pub mod draw;
pub mod eval;
pub mod info;
pub mod inpaint;
mod json;
pub mod load;
pub mod progress;
pub mod quantize;
pub mod sample;
pub mod train;

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

/// A device as `--device` names it: `cpu`, `cuda:N` (`mps`, `vulkan` for the others).
pub fn device_name(d: tch::Device) -> String {
    match d {
        tch::Device::Cpu => "cpu".to_owned(),
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        tch::Device::Mps => "mps".to_owned(),
        tch::Device::Vulkan => "vulkan".to_owned(),
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
