//! `trainer eval`.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use ddpm_trainer::{eval, progress};

use super::sampler::{Guided, SamplerArgs};
use super::{model_or_default, JudgeArgs};

#[derive(Args)]
pub struct EvalArgs {
    /// Model file [default: models/simple_unet_mnist.ddpm].
    #[arg(long)]
    model: Option<PathBuf>,
    /// The variational bound (L_0, Σ L_{t−1}, L_T) in bits/dim on the MNIST test images, one
    /// x_t per image and step, with --variance and --clip-x0 defining p_θ.
    #[arg(long)]
    nll: bool,
    /// Sample quality: classifier-feature Fréchet distance to the test set, IS analog,
    /// confident share and labels of --samples images, and the same for real training images.
    #[arg(long)]
    fid: bool,
    /// --nll: the first N test images only [default: all 10,000].
    #[arg(long)]
    limit: Option<usize>,
    /// --nll: images per batch through the network.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// --nll: write the mean of every step's term (bits/dim) as CSV here.
    #[arg(long)]
    curve: Option<PathBuf>,
    /// --fid: number of samples (and of real training images for the floor).
    #[arg(long, default_value_t = 1000)]
    samples: usize,
    #[command(flatten)]
    sampler: SamplerArgs<Guided>,
    #[command(flatten)]
    judge: JudgeArgs,
    /// Write all figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
}

/// Evaluates as asked.
pub fn run(a: EvalArgs) -> Result<()> {
    let device = a.judge.setup()?;
    let workers = a.judge.workers()?;
    let opts = eval::EvalOptions {
        model: model_or_default(a.model),
        nll: a.nll,
        fid: a.fid,
        data: a.judge.data_dir(),
        device,
        progress: progress::wanted(a.no_progress),
        json: a.json,
        bound: eval::nll::BoundOptions {
            variance: a.sampler.variance(),
            clip_x0: a.sampler.clip_x0,
            seed: a.sampler.seed(),
        },
        limit: a.limit,
        batch: a.batch,
        curve: a.curve,
        sampler: a.sampler.config(),
        guide: a
            .sampler
            .own
            .guide
            .clone()
            .map(|g| (g, a.sampler.own.guidance)),
        seed: a.sampler.seed(),
        samples: a.samples,
        workers,
        classifier: a.judge.classifier,
    };
    eval::run(&opts)
}
