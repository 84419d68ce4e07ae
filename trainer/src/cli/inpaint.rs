//! `trainer inpaint`.
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use ddpm_core::diffusion::Resampling;
use ddpm_trainer::data::idx;
use ddpm_trainer::draw::ClassChoice;
use ddpm_trainer::inpaint::{self, MaskSpec, MeasureOptions};
use ddpm_trainer::sample::{self, Backend, Inpaint, SampleOptions};
use ddpm_trainer::{eval, load, progress};

use super::sample::BackendArg;
use super::sampler::{Guided, SamplerArgs};
use super::{model_or_default, JudgeArgs, DEFAULT_MODEL};

#[derive(Args)]
pub struct InpaintArgs {
    /// Model file, sampled with the recipe it carries (sampler and guide) unless flags say
    /// otherwise [default: models/tiny_unet_mnist.ddpm].
    #[arg(long)]
    model: Option<PathBuf>,
    /// The digit to complete: a PNG of the model's image size (grey, or colour averaged), or
    /// an IDX file of images (pick one with --index).
    #[arg(long, required_unless_present = "measure", conflicts_with = "measure")]
    image: Option<PathBuf>,
    /// Which image of an IDX --image [default: 0].
    #[arg(long)]
    index: Option<usize>,
    /// What is hidden and drawn: top, bottom, left, right (a half), center (the middle
    /// square), or a PNG of the image's size, white hidden and black kept. With --measure, a
    /// comma-separated list [default: top,bottom,left,right with --measure].
    #[arg(long, value_delimiter = ',', value_parser = MaskSpec::parse)]
    mask: Vec<MaskSpec>,
    /// Completions to draw (completion i from noise seed SEED + i).
    #[arg(long, default_value_t = 8)]
    n: usize,
    /// RePaint's resampling: passes over each block of --jump steps (1: none).
    #[arg(long, default_value_t = 1)]
    resample: u32,
    /// RePaint's jump: steps per block walked --resample times.
    #[arg(long, default_value_t = 1)]
    jump: u32,
    #[command(flatten)]
    sampler: SamplerArgs<Guided>,
    /// PNG to write: the original, the masked input (hidden pixels grey) and the completions
    /// in one row.
    #[arg(long, default_value = "inpaint.png")]
    out: PathBuf,
    /// Also write the completions as u8 IDX (N×H×W).
    #[arg(long)]
    idx: Option<PathBuf>,
    /// Which implementation samples (torch: on --device).
    #[arg(long, value_enum, default_value = "core")]
    backend: BackendArg,
    /// Instead of --image: complete the first N MNIST test digits under each --mask and print
    /// how often the classifier gives a completion the original's label, beside the masked
    /// image zero-filled and plain samples.
    #[arg(long, value_name = "N")]
    measure: Option<usize>,
    /// --measure: also train a classifier on the visible part of each mask for this many
    /// epochs and report the ceiling E[p(true label | visible part)] on the test split.
    #[arg(long, value_name = "EPOCHS", requires = "measure")]
    ceiling: Option<usize>,
    /// --measure: write the figures as JSON to this file.
    #[arg(long, value_name = "FILE", requires = "measure")]
    json_out: Option<PathBuf>,
    /// --class visible: epochs of the classifier trained on the kept part of the training
    /// digits whose p(class | kept part) the completions' classes are drawn from [default: 2].
    #[arg(long, value_name = "EPOCHS")]
    visible_epochs: Option<usize>,
    #[command(flatten)]
    judge: JudgeArgs,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// Completes the digit (or measures completions) as asked.
pub fn run(a: InpaintArgs) -> Result<()> {
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    let resampling = Resampling {
        resample: a.resample,
        jump: a.jump,
    };
    resampling
        .validate()
        .map_err(|e| anyhow::anyhow!("--resample {} --jump {}: {e}", a.resample, a.jump))?;
    let path = model_or_default(a.model.clone());
    if !path.is_file() {
        bail!(
            "{}: no such model file (pass --model FILE, or run from the project root for the \
             default {DEFAULT_MODEL})",
            path.display()
        );
    }
    let backend = match a.backend {
        BackendArg::Torch => Backend::Torch(a.judge.setup()?),
        BackendArg::Core => Backend::Core {
            threads: a.judge.workers()?,
        },
    };
    let recipe = load::recipe(&path)?;
    let (sampler, guide) = a.sampler.over_recipe(&recipe, &path)?;
    let model = load::with_model_file(&path, |f| Ok(f.header().model))?;
    // --class visible: the classes are drawn once the mask is known (per mask with --measure).
    let visible = match a.sampler.own.classes() {
        Some((ClassChoice::Visible, w)) => {
            ClassChoice::Visible.check(&model, &path)?;
            let epochs = a.visible_epochs.unwrap_or(2);
            if epochs == 0 {
                bail!("--visible-epochs must be at least 1");
            }
            Some((epochs, w))
        }
        _ if a.visible_epochs.is_some() => bail!(
            "--visible-epochs sets the classifier of --class visible: give --class visible too"
        ),
        _ => None,
    };
    let classes = match a.sampler.own.classes() {
        Some((ClassChoice::All, _)) => bail!(
            "--class all draws a grid of every class; inpainting completes one digit: give \
             --class K, or --class visible for the class its kept part suggests"
        ),
        Some((ClassChoice::Visible, _)) => None,
        Some((choice, w)) => {
            let k = choice.check(&model, &path)?;
            let count = a.measure.unwrap_or(a.n);
            Some((choice.labels(count, k)?, w))
        }
        None => None,
    };
    let cfg_guided =
        classes.as_ref().is_some_and(|(_, w)| *w != 1.0) || visible.is_some_and(|(_, w)| w != 1.0);
    let guidance_interval = a.sampler.own.interval(guide.is_some() || cfg_guided)?;
    let base = SampleOptions {
        model: &path,
        guide: guide.as_ref().map(|(g, w)| (g.as_path(), *w)),
        sampler,
        n: a.n,
        seed: a.sampler.seed(),
        backend,
        progress: progress::wanted(a.no_progress),
        classes,
        inpaint: None,
        guidance_interval,
    };
    if let Some(digits) = a.measure {
        let masks = if a.mask.is_empty() {
            MaskSpec::HALVES.to_vec()
        } else {
            a.mask.clone()
        };
        let device = a.judge.setup()?;
        let data = a.judge.data_dir();
        let clf = eval::classifier::load_or_train(&a.judge.classifier, &data, device)?;
        let opts = MeasureOptions {
            sampling: base,
            digits,
            masks,
            resampling,
            data,
            classifier: &clf,
            ceiling_epochs: a.ceiling,
            class_from_visible: visible,
        };
        let report = inpaint::measure(&opts, &mut |m| eprintln!("{m}"))?;
        print!("{}", inpaint::format_report(&report));
        if let Some(out) = &a.json_out {
            ddpm_torch::atomic::write_atomic_with(out, |tmp| {
                std::fs::write(tmp, inpaint::report_json(&report))?;
                Ok(())
            })?;
            eprintln!("wrote {}", out.display());
        }
        return Ok(());
    }
    let image = a
        .image
        .as_ref()
        .expect("clap requires --image without --measure");
    let spec = match a.mask.as_slice() {
        [one] => one.clone(),
        [] => bail!("--mask: say what is hidden: top, bottom, left, right, center or FILE.png"),
        _ => bail!("--mask: one mask for --image (a list is for --measure)"),
    };
    let (pixels, h, w) = inpaint::read_image(image, a.index)?;
    let (mc, mh, mw) = (model.channels(), model.height(), model.width());
    if (mc, mh, mw) != (1, h, w) {
        bail!(
            "--image {}: the image is {h}×{w} grey; {} draws {mc}×{mh}×{mw} images",
            image.display(),
            path.display()
        );
    }
    let keep = spec.keep(h, w)?;
    let classes = match visible {
        Some((epochs, weight)) => {
            let device = a.judge.setup()?;
            let data = a.judge.data_dir();
            eprintln!(
                "--class visible: training a classifier on the kept part of the MNIST training \
                 digits ({epochs} epochs, {})",
                data.display()
            );
            let test = idx::Mnist::load(&data, idx::Split::Test, h, w)?;
            let c = inpaint::visible_classifier(
                &data,
                &test,
                &keep,
                epochs,
                inpaint::VISIBLE_CLASS_SEED,
                device,
            )?;
            let probs = c.probabilities(&inpaint::fill_hidden(&pixels, &keep, 0));
            let labels = inpaint::draw_classes(&probs, a.n, a.sampler.seed());
            let mut ranked: Vec<(usize, f32)> = probs.iter().copied().enumerate().collect();
            ranked.sort_by(|x, y| y.1.total_cmp(&x.1));
            let top: Vec<String> = ranked[..3]
                .iter()
                .map(|(k, p)| format!("{k} ({:.0}%)", 100.0 * p))
                .collect();
            let drawn: Vec<String> = labels.iter().map(u32::to_string).collect();
            eprintln!(
                "the kept part suggests {}; completions of classes {}",
                top.join(", "),
                drawn.join(" ")
            );
            Some((labels, weight))
        }
        None => base.classes.clone(),
    };
    let opts = SampleOptions {
        classes,
        inpaint: Some(Inpaint {
            known: inpaint::to_model(&pixels),
            mask: keep.clone(),
            resampling,
        }),
        ..base
    };
    let drawn = sample::draw(&opts)?;
    let completions = sample::to_pixels(&drawn.values);
    let kept = inpaint::kept_deviation(&completions, &pixels, &keep);
    let mut grid = pixels.clone();
    grid.extend(inpaint::fill_hidden(&pixels, &keep, inpaint::HIDDEN_GREY));
    grid.extend(&completions);
    let count = a.n + 2;
    let layout = sample::GridLayout {
        cols: count,
        rows: 1,
        ..sample::GridLayout::for_count(count)
    };
    sample::write_png_grid(&a.out, &grid, count, (1, h, w), layout)?;
    let hidden = keep.iter().filter(|&&k| k < 1.0).count();
    eprintln!(
        "completed {} ({} of {} pixels hidden by --mask {}) {} times in {:.1} s; kept pixels \
         within {kept} levels of the original; wrote {} (original, masked, completions)",
        image.display(),
        hidden,
        h * w,
        spec.name(),
        a.n,
        drawn.seconds,
        a.out.display()
    );
    if let Some(idx_path) = &a.idx {
        ddpm_trainer::data::idx::write_idx(idx_path, &[a.n, h, w], &completions)?;
        eprintln!("wrote {}", idx_path.display());
    }
    Ok(())
}
