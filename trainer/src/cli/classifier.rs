//! `trainer classifier`.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use ddpm_trainer::data::idx;
use ddpm_trainer::{parse_device, progress};

use super::Threads;

#[derive(Args)]
pub struct ClassifierArgs {
    /// Directory holding the MNIST train and test IDX files [default: $DDPM_DATA, else
    /// data/mnist].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Classifier file to write (safetensors).
    #[arg(long, default_value = ddpm_trainer::eval::classifier::DEFAULT_PATH)]
    out: PathBuf,
    /// Passes over the training images.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Images per Adam step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Seed of the initial weights and the shuffles.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train on the first N training images only (quick runs).
    #[arg(long)]
    limit: Option<usize>,
    /// Refuse to write the file when the test accuracy is below this fraction (the project
    /// requires 0.985 of the cached classifier).
    #[arg(long, default_value_t = ddpm_trainer::eval::classifier::REQUIRED_TEST_ACCURACY)]
    min_accuracy: f64,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    #[command(flatten)]
    threads: Threads,
    /// No progress bar (also off when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
}

/// Trains and writes the classifier.
pub fn run(a: ClassifierArgs) -> Result<()> {
    use ddpm_trainer::eval::classifier::{self, ClassifierOptions};
    a.threads.apply()?;
    let device = parse_device(&a.device)?;
    let data_dir = a.data.clone().unwrap_or_else(idx::default_data_dir);
    let opts = ClassifierOptions {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        seed: a.seed,
        device,
        limit: a.limit,
        min_accuracy: a.min_accuracy,
        progress: progress::wanted(a.no_progress),
    };
    eprintln!(
        "classifier: MNIST from {} on {} ({} threads), {} epochs of batch {}, lr {}, seed {}",
        data_dir.display(),
        ddpm_trainer::device_name(device),
        tch::get_num_threads(),
        a.epochs,
        a.batch_size,
        a.lr,
        a.seed
    );
    let (net, report) = classifier::train_from_dir(&data_dir, &opts, &mut |m| eprintln!("{m}"))?;
    net.save(&a.out)?;
    println!(
        "test accuracy {:.2}% ({} test images; trained on {} images in {:.0} s, {} parameters)",
        100.0 * report.test_accuracy,
        report.test_images,
        report.train_images,
        report.seconds,
        net.param_count()
    );
    eprintln!("wrote {}", a.out.display());
    Ok(())
}
