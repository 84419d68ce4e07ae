//! `trainer eval`.
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{ArgMatches, Args};
use ddpm_trainer::{eval, load, progress};

use super::sampler::{Flavor, Guided, SamplerArgs};
use super::{given, model_or_default, JudgeArgs};

#[derive(Args)]
pub struct EvalArgs {
    /// Model file; --fid samples it with its recipe (sampler and guide) unless flags say
    /// otherwise [default: models/tiny_unet_mnist.ddpm].
    #[arg(long)]
    model: Option<PathBuf>,
    /// The variational bound (L_0, Σ L_{t−1}, L_T) in bits/dim on the MNIST test images, one
    /// x_t per image and step, with --variance and --clip-x0 defining p_θ.
    #[arg(long)]
    nll: bool,
    /// Sample quality: classifier-feature Fréchet distance to the test set, IS analog,
    /// confident share and labels of --n images, and the same for real training images.
    #[arg(long)]
    fid: bool,
    /// --nll: the first N test images only [default: all 10,000].
    #[arg(long)]
    limit: Option<usize>,
    /// --nll: images per batch through the network.
    #[arg(long, alias = "batch", default_value_t = 100)]
    batch_size: usize,
    /// --nll: write the mean of every step's term (bits/dim) as CSV here.
    #[arg(long)]
    curve: Option<PathBuf>,
    /// --fid: number of samples (and of real training images for the floor).
    #[arg(long, alias = "samples", default_value_t = 1000)]
    n: usize,
    #[command(flatten)]
    sampler: SamplerArgs<Guided>,
    #[command(flatten)]
    judge: JudgeArgs,
    /// Write all figures as JSON to this file.
    #[arg(long, alias = "json", value_name = "FILE")]
    json_out: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
}

impl EvalArgs {
    /// Refuses the flags of the mode not asked for: those of --nll without it, those of --fid
    /// without it. `m` tells flags given from defaults.
    fn refuse_other_mode(&self, m: &ArgMatches) -> Result<()> {
        if !self.nll {
            let nll_only = [
                (
                    self.limit.is_some(),
                    "--limit",
                    "it picks the test images of the bound",
                ),
                (
                    given(m, "batch_size"),
                    "--batch-size",
                    "it sets how many test images go through the network at once",
                ),
                (
                    self.curve.is_some(),
                    "--curve",
                    "it writes the bound's per-step terms",
                ),
            ];
            if let Some((_, flag, why)) = nll_only.iter().find(|f| f.0) {
                bail!("{flag} applies to --nll: {why}");
            }
        }
        if !self.fid {
            let fid_only = [
                (given(m, "n"), "--n", "it is the number of samples judged"),
                (
                    self.judge.workers.is_some(),
                    "--workers",
                    "they draw the samples",
                ),
                (
                    given(m, "classifier"),
                    "--classifier",
                    "it judges the samples",
                ),
            ];
            let mut fid_only = fid_only.into_iter().chain([(
                self.sampler.own.class.is_some(),
                "--class",
                "it picks the classes of the samples",
            )]);
            if let Some((_, flag, why)) = fid_only.find(|f| f.0) {
                bail!("{flag} applies to --fid: {why}");
            }
            self.sampler.refuse_sampling_only()?;
        }
        Ok(())
    }
}

/// Evaluates as asked; `m` are the subcommand's parsed arguments (to tell flags given from
/// defaults).
pub fn run(a: EvalArgs, m: &ArgMatches) -> Result<()> {
    // Without --nll or --fid, the library says there is nothing to do.
    if a.nll || a.fid {
        a.refuse_other_mode(m)?;
    }
    let model = model_or_default(a.model);
    // --fid samples with the model's recipe (its sampler and guide) under the flags given;
    // --nll's model p_θ is the lecture notes' DDPM under --variance and --clip-x0.
    let base = Guided::base();
    if a.nll && a.sampler.own.guide.is_some() {
        bail!(
            "--nll bounds the model's own likelihood; a guided sampler has no such bound \
             (drop --guide, or run --fid alone)"
        );
    }
    let (sampler, guide) = if a.fid {
        eval::check_model_file(&model)?;
        let recipe = load::recipe(&model)?;
        let sampler = if a.nll {
            // --variance, which --nll reads, is not refused with a DDIM recipe.
            a.sampler.resolve_with_bound(recipe.sampler)?.0
        } else {
            a.sampler.resolve(recipe.sampler)?
        };
        (sampler, a.sampler.recipe_guide(&recipe, &model)?)
    } else {
        (base, a.sampler.own.guide()?)
    };
    let cfg_guided = a.sampler.own.classes().is_some_and(|(_, w)| w != 1.0);
    let guidance_interval = a.sampler.own.interval(guide.is_some() || cfg_guided)?;
    let bound = a.sampler.bound_model(base);
    let device = a.judge.setup()?;
    let workers = a.judge.workers()?;
    let opts = eval::EvalOptions {
        model,
        nll: a.nll,
        fid: a.fid,
        data: a.judge.data_dir(),
        device,
        progress: progress::wanted(a.no_progress),
        json: a.json_out,
        bound: eval::nll::BoundOptions {
            variance: bound.variance,
            clip_x0: bound.clip_x0,
            seed: a.sampler.seed(),
        },
        limit: a.limit,
        batch: a.batch_size,
        curve: a.curve,
        sampler,
        guide,
        seed: a.sampler.seed(),
        samples: a.n,
        workers,
        classifier: a.judge.classifier,
        classes: a.sampler.own.classes(),
        guidance_interval,
    };
    eval::run(&opts)
}
