//! The subcommands' arguments, one module per subcommand, and the argument groups they share:
//! the noise schedule ([`ScheduleArgs`], `fit` and `import`), the sampler ([`sampler`],
//! `sample`, `eval` and `compare-int8`) and the judge of samples ([`JudgeArgs`], `eval` and
//! `compare-int8`). Each module maps its arguments to calls into the library.
pub mod classifier;
pub mod compare_int8;
pub mod completions;
pub mod eval;
pub mod export;
pub mod fetch;
pub mod fit;
pub mod import;
pub mod info;
pub mod inpaint;
pub mod sample;
pub mod sampler;

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, ValueEnum};
use ddpm_core::{Prediction, ScheduleConfig};
use ddpm_trainer::data::idx;
use ddpm_trainer::parse_device;

/// Whether the flag of argument `id` was typed on the command line (rather than left at its
/// default).
pub fn given(m: &ArgMatches, id: &str) -> bool {
    m.value_source(id) == Some(ValueSource::CommandLine)
}

/// Default model file of `sample` and `eval`: the committed TinyUNet, whose recipe names its
/// guide and sampler.
pub const DEFAULT_MODEL: &str = "models/tiny_unet_mnist.ddpm";

#[derive(Clone, Copy, ValueEnum)]
pub enum ScheduleArg {
    /// β evenly spaced from --beta-start to --beta-end (the lecture notes').
    Linear,
    /// Cosine ᾱ (Nichol & Dhariwal 2021, s = 0.008, β ≤ 0.999).
    Cosine,
}

/// `--prediction` values.
#[derive(Clone, Copy, ValueEnum)]
pub enum PredictionArg {
    /// The noise ε (the lecture notes').
    Eps,
    /// The velocity v = √ᾱ_t·ε − √(1−ᾱ_t)·x0 (Salimans & Ho 2022): x0 stays well conditioned
    /// at the noisiest steps, where ε-prediction must recover it from a 1/√ᾱ_t-amplified
    /// difference.
    V,
}

#[derive(Args, Clone)]
pub struct ScheduleArgs {
    /// Noise schedule.
    #[arg(long, value_enum, default_value = "linear")]
    pub schedule: ScheduleArg,
    /// Number of diffusion steps T.
    #[arg(long, default_value_t = 300)]
    pub timesteps: u32,
    /// First β of the linear schedule.
    #[arg(long, default_value_t = 1e-4)]
    pub beta_start: f64,
    /// Last β of the linear schedule.
    #[arg(long, default_value_t = 0.02)]
    pub beta_end: f64,
    /// What the network predicts (its training target; recorded in the model file, where the
    /// samplers read it).
    #[arg(long, value_enum, default_value = "eps")]
    pub prediction: PredictionArg,
}

impl ScheduleArgs {
    pub fn config(&self) -> ScheduleConfig {
        let c = match self.schedule {
            ScheduleArg::Linear => {
                ScheduleConfig::linear(self.timesteps, self.beta_start, self.beta_end)
            }
            ScheduleArg::Cosine => ScheduleConfig::cosine(self.timesteps),
        };
        c.predicting(match self.prediction {
            PredictionArg::Eps => Prediction::Eps,
            PredictionArg::V => Prediction::V,
        })
    }

    /// Refuses --beta-start and --beta-end with --schedule cosine, which has no β range. `m`
    /// tells flags given from defaults.
    pub fn refuse_inapplicable(&self, m: &ArgMatches) -> Result<()> {
        if let ScheduleArg::Cosine = self.schedule {
            for (id, flag) in [("beta_start", "--beta-start"), ("beta_end", "--beta-end")] {
                if given(m, id) {
                    bail!(
                        "{flag} applies to --schedule linear only: the cosine schedule's β \
                         follow from its ᾱ curve"
                    );
                }
            }
        }
        Ok(())
    }

    /// The schedule as a note names it: `linear(START..END)` or `cosine`.
    pub fn describe(&self) -> String {
        match self.schedule {
            ScheduleArg::Linear => format!("linear({}..{})", self.beta_start, self.beta_end),
            ScheduleArg::Cosine => "cosine".to_owned(),
        }
    }
}

/// `--threads`, shared by the subcommands that run libtorch.
#[derive(Args)]
pub struct Threads {
    /// CPU threads: libtorch's, and the core sampler's (`sample --backend core`) [default:
    /// all cores].
    #[arg(long)]
    pub threads: Option<usize>,
}

impl Threads {
    /// The thread count asked for (default: all cores).
    pub fn count(&self) -> Result<usize> {
        match self.threads {
            Some(0) => bail!("--threads must be at least 1"),
            Some(n) => Ok(n),
            None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        }
    }

    /// Sets libtorch's CPU thread count (default: all cores).
    pub fn apply(&self) -> Result<()> {
        tch::set_num_threads(self.count()? as i32);
        Ok(())
    }
}

/// `--model`, or the default model file.
pub fn model_or_default(model: Option<PathBuf>) -> PathBuf {
    model.unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL))
}

/// Where samples are judged, shared by `eval` and `compare-int8`: the classifier, the data,
/// the devices and the thread counts.
#[derive(Args)]
pub struct JudgeArgs {
    /// The MNIST classifier that judges samples (trained and cached there when missing, which
    /// takes minutes).
    #[arg(long, default_value = ddpm_trainer::eval::classifier::DEFAULT_PATH)]
    pub classifier: PathBuf,
    /// MNIST directory: test images (eval's bound and reference features), training images
    /// (eval's real-image floor and a missing classifier) [default: $DDPM_DATA, else
    /// data/mnist].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Device of the classifier (and of the network for eval --nll): auto, cpu, cuda or cuda:N.
    /// Samples are drawn through ddpm-core on the CPU.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[command(flatten)]
    pub threads: Threads,
    /// Threads drawing the samples through ddpm-core, each a run of whole images (results do
    /// not depend on it) [default: all cores].
    #[arg(long)]
    pub workers: Option<usize>,
}

impl JudgeArgs {
    /// Sets libtorch's thread count and returns the device.
    pub fn setup(&self) -> Result<tch::Device> {
        self.threads.apply()?;
        parse_device(&self.device)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(idx::default_data_dir)
    }

    pub fn workers(&self) -> Result<usize> {
        let n = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if n == 0 {
            bail!("--workers must be at least 1");
        }
        Ok(n)
    }
}
