//! `trainer sample`.
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use ddpm_core::file::Precision;
use ddpm_core::ModelConfig;
use ddpm_trainer::describe::{describe_interval, describe_sampler};
use ddpm_trainer::draw::ClassChoice;
use ddpm_trainer::sample::{self, Backend, SampleOptions};
use ddpm_trainer::{data::idx, load, parse_device, progress};

use super::sampler::{Guided, SamplerArgs};
use super::{model_or_default, Threads, DEFAULT_MODEL};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum BackendArg {
    /// ddpm-core on the CPU (noise of image i from seed + i, as on a microcontroller).
    Core,
    /// The same samplers in libtorch, batched, on --device.
    Torch,
}

#[derive(Args)]
pub struct SampleArgs {
    /// Model file, sampled with the recipe it carries (sampler and guide; `trainer info MODEL`
    /// shows it) unless flags say otherwise [default: models/tiny_unet_mnist.ddpm].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Number of images.
    #[arg(long, default_value_t = 16)]
    n: usize,
    #[command(flatten)]
    sampler: SamplerArgs<Guided>,
    /// PNG grid to write (near-square, 2-pixel borders, upscaled ×4).
    #[arg(long, default_value = "samples.png")]
    out: PathBuf,
    /// Also write the images as u8 IDX (N×H×W, or N×C×H×W for C > 1).
    #[arg(long)]
    idx: Option<PathBuf>,
    /// Which implementation samples.
    #[arg(long, value_enum, default_value = "core")]
    backend: BackendArg,
    /// Device of --backend torch: auto, cpu, cuda or cuda:N [default: auto].
    #[arg(long)]
    device: Option<String>,
    #[command(flatten)]
    threads: Threads,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Also print the first image as ASCII art (its first channel) on standard output.
    #[arg(long)]
    ascii: bool,
}

/// Samples as asked and writes the images.
pub fn run(a: SampleArgs) -> Result<()> {
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    let path = model_or_default(a.model.clone());
    if !path.is_file() {
        bail!(
            "{}: no such model file (train one with `trainer fit --out FILE` and pass \
             --model FILE, or run from the project root for the default {DEFAULT_MODEL})",
            path.display()
        );
    }
    let backend = match a.backend {
        BackendArg::Core => {
            if a.device.is_some() {
                bail!(
                    "--device applies to --backend torch: the core backend samples on the CPU \
                     (with --threads threads)"
                );
            }
            Backend::Core {
                threads: a.threads.count()?,
            }
        }
        BackendArg::Torch => {
            a.threads.apply()?;
            Backend::Torch(parse_device(a.device.as_deref().unwrap_or("auto"))?)
        }
    };
    let recipe = load::recipe(&path)?;
    let (sampler, guide) = a.sampler.over_recipe(&recipe, &path)?;
    // --class all: --n images of every class, a grid row per class.
    let (classes, n, layout) = match a.sampler.own.classes() {
        Some((choice, w)) => {
            let model = load::with_model_file(&path, |f| Ok(f.header().model))?;
            let k = choice.check(&model, &path)?;
            let (n, layout) = match choice {
                ClassChoice::All => {
                    let n = a.n * k as usize;
                    let layout = sample::GridLayout {
                        cols: a.n,
                        rows: k as usize,
                        ..sample::GridLayout::for_count(n)
                    };
                    (n, layout)
                }
                ClassChoice::One(_) | ClassChoice::Visible => {
                    (a.n, sample::GridLayout::for_count(a.n))
                }
            };
            (Some((choice.labels(n, k)?, w)), n, layout)
        }
        None => (None, a.n, sample::GridLayout::for_count(a.n)),
    };
    let cfg_guided = classes.as_ref().is_some_and(|(_, w)| *w != 1.0);
    let interval = a.sampler.own.interval(guide.is_some() || cfg_guided)?;
    let opts = SampleOptions {
        model: &path,
        guide: guide.as_ref().map(|(g, w)| (g.as_path(), *w)),
        sampler,
        n,
        seed: a.sampler.seed(),
        backend,
        progress: progress::wanted(a.no_progress),
        classes: classes.clone(),
        inpaint: None,
        guidance_interval: interval,
    };
    let drawn = sample::draw(&opts)?;
    let mcfg = drawn.model;
    let pixels = sample::to_pixels(&drawn.values);
    let chw = (mcfg.channels(), mcfg.height(), mcfg.width());
    sample::write_png_grid(&a.out, &pixels, n, chw, layout)?;
    let guided = match &opts.guide {
        Some((g, w)) => format!(", guided by {} with weight {w}", g.display()),
        None => match &classes {
            Some((_, w)) => format!(", classifier-free guidance weight {w}"),
            None => String::new(),
        },
    } + &describe_interval(interval);
    let drew = match a.sampler.own.class {
        Some(ClassChoice::One(k)) => format!("{n} images of class {k}"),
        Some(ClassChoice::All) => format!("{n} images ({} of each class)", a.n),
        Some(ClassChoice::Visible) | None => format!("{n} images"),
    };
    let given = a.sampler.given();
    let how = if given.is_empty() {
        "the model's recipe".to_owned()
    } else {
        format!("the model's recipe with {}", given.join(", "))
    };
    eprintln!(
        "drew {drew} from {} ({}{}, {}{guided}; {how}) in {:.1} s; wrote {}",
        path.display(),
        arch_name(&mcfg),
        if drawn.precision == Precision::Int8 {
            " int8"
        } else {
            ""
        },
        describe_sampler(&opts.sampler, drawn.schedule.timesteps),
        drawn.seconds,
        a.out.display(),
    );
    if a.ascii {
        let (h, w) = (chw.1, chw.2);
        print!("{}", sample::ascii_art(&pixels[..h * w], h, w));
    }
    if let Some(idx_path) = &a.idx {
        let dims: Vec<usize> = if chw.0 == 1 {
            vec![n, chw.1, chw.2]
        } else {
            vec![n, chw.0, chw.1, chw.2]
        };
        idx::write_idx(idx_path, &dims, &pixels)?;
        eprintln!("wrote {}", idx_path.display());
    }
    Ok(())
}

/// The architecture as the README and the help text name it.
fn arch_name(m: &ModelConfig) -> &'static str {
    match m {
        ModelConfig::SimpleUNet(_) => "SimpleUNet",
        ModelConfig::TinyUNet(_) => "TinyUNet",
    }
}
