//! `trainer compare-int8`.
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use ddpm_trainer::describe::describe_sampler;
use ddpm_trainer::eval::{classifier, compare};
use ddpm_trainer::{load, progress};

use super::sampler::{Compare, SamplerArgs};
use super::JudgeArgs;

/// The f32 model compare-int8 reads without --model (the committed SimpleUNet; its int8
/// export is --int8-model's default).
const DEFAULT_F32_MODEL: &str = "models/simple_unet_mnist.ddpm";

#[derive(Args)]
pub struct CompareInt8Args {
    /// f32 model file [default: models/simple_unet_mnist.ddpm].
    #[arg(long, value_name = "F32FILE")]
    model: Option<PathBuf>,
    /// Its int8 export (`trainer export --int8`).
    #[arg(
        long,
        alias = "int8",
        value_name = "INT8FILE",
        default_value = "models/simple_unet_mnist_int8.ddpm"
    )]
    int8_model: PathBuf,
    /// Images per model; image i of both uses noise seed SEED + i.
    #[arg(long, default_value_t = 100)]
    n: usize,
    #[command(flatten)]
    sampler: SamplerArgs<Compare>,
    /// PNG to write: rows of f32 samples, each followed by the row of their int8 twins.
    #[arg(long, default_value = "side_by_side.png")]
    out: PathBuf,
    #[command(flatten)]
    judge: JudgeArgs,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// Compares as asked and reports.
pub fn run(a: CompareInt8Args) -> Result<()> {
    let sampler = a.sampler.config()?;
    let device = a.judge.setup()?;
    let seed = a.sampler.seed();
    let model_path = a
        .model
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_F32_MODEL));
    for (flag, p) in [("--model", &model_path), ("--int8-model", &a.int8_model)] {
        if !p.is_file() {
            bail!(
                "{}: no such model file ({flag}; the int8 file comes from \
                 `trainer export --model F32FILE --int8 --out INT8FILE`)",
                p.display()
            );
        }
    }
    let timesteps = load::with_model_file(&model_path, |f| Ok(f.header().schedule.timesteps))?;
    let clf = classifier::load_or_train(&a.judge.classifier, &a.judge.data_dir(), device)?;
    let opts = compare::CompareOptions {
        n: a.n,
        sampler,
        seed,
        workers: a.judge.workers()?,
        progress: progress::wanted(a.no_progress),
    };
    eprintln!(
        "compare-int8: {} images each from {} and {}, {}, seeds {}..={}",
        a.n,
        model_path.display(),
        a.int8_model.display(),
        describe_sampler(&opts.sampler, timesteps),
        seed,
        seed.wrapping_add(a.n.saturating_sub(1) as u64)
    );
    let (r, _) = compare::compare(&model_path, &a.int8_model, &clf, &opts, Some(&a.out))?;
    let l = &r.labels;
    println!(
        "images: {} per model, {}, seed {}",
        r.n,
        describe_sampler(&opts.sampler, timesteps),
        seed
    );
    println!(
        "mean |f32 - int8| pixel difference: {:.2} (0-255 scale); largest {}",
        r.mean_abs_diff, r.max_abs_diff
    );
    println!(
        "same classifier label: {:.1}% ({} of {})",
        100.0 * l.same_label,
        (l.same_label * l.n as f64).round(),
        l.n
    );
    println!(
        "classifier-confident (top probability > {}): f32 {:.1}%, int8 {:.1}%",
        classifier::CONFIDENT_PROB,
        100.0 * l.confident_f32,
        100.0 * l.confident_int8
    );
    println!(
        "labels f32:  {}",
        compare::format_histogram(&l.histogram_f32)
    );
    println!(
        "labels int8: {}",
        compare::format_histogram(&l.histogram_int8)
    );
    println!(
        "sampling time: f32 (host) {:.1} s, int8 (row streaming) {:.1} s",
        r.f32_seconds, r.int8_seconds
    );
    eprintln!(
        "wrote {} (f32 rows, each followed by the int8 row of the same seeds)",
        a.out.display()
    );
    Ok(())
}
