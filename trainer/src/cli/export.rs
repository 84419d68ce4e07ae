//! `trainer export`: a checkpoint or a model file to a model file, an int8 model file or a
//! PyTorch safetensors file.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{ArgMatches, Args};
use ddpm_core::file::{ModelFile, ModelWriter, OwnedRecipe, Precision, Recipe};
use ddpm_core::kernels::calibrate::RangeMethod;
use ddpm_core::simple_unet::ptq::{Equalize, QuantOptions, WeightClip};
use ddpm_torch::{atomic, export};
use ddpm_trainer::describe::describe_sampler;
use ddpm_trainer::quantize::{self, Int8Export};
use ddpm_trainer::{load, train};

use super::given;
use super::sampler::{SamplerArgs, Stored};

#[derive(Args)]
pub struct ExportArgs {
    /// Checkpoint written by `fit` to export from.
    #[arg(long, conflicts_with = "model", required_unless_present = "model")]
    checkpoint: Option<PathBuf>,
    /// Model file to export from (e.g. to convert it to safetensors).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// Write a PyTorch safetensors state_dict (the lecture notes' names) instead of a model
    /// file.
    #[arg(long)]
    safetensors: bool,
    /// Export the raw weights even when the checkpoint has an EMA.
    #[arg(long)]
    raw: bool,
    /// Text stored in the model file's note [default: the source model file's note].
    #[arg(long, default_value = "")]
    note: String,
    /// The recipe recorded in the model file written (how `sample` and `eval` draw it when no
    /// flag says otherwise): the source model file's, or for a checkpoint its architecture's
    /// default, with these flags applied field by field. An int8 file records no guide.
    #[command(flatten)]
    recipe: SamplerArgs<Stored>,
    /// Write an int8 model file (post-training quantization, TFLite Micro conventions),
    /// calibrated on noised training images and DDPM (SimpleUNet) or DDIM-10 (TinyUNet)
    /// trajectory states.
    #[arg(long, conflicts_with = "safetensors")]
    int8: bool,
    /// --int8: MNIST directory for calibration (train split) and the accuracy report (test
    /// split) [default: $DDPM_DATA, else data/mnist].
    #[arg(long)]
    data: Option<PathBuf>,
    /// --int8: activation ranges (per tensor) from the calibration values: `minmax`, a
    /// percentile `pNN.NN` (and its mirror), `mse` (the clipping thresholds that minimise
    /// each tensor's quantization mean squared error) or `eps` (those that minimise the mean
    /// squared error of the network's output ε, tensor by tensor, in the simulated int8
    /// network).
    #[arg(long, default_value = "p99.99", value_parser = parse_range)]
    range: RangeMethod,
    /// --int8: per-output-channel weight scale: `max` (max |w| / 127) or `mse` (the clipping
    /// threshold that minimises the channel's squared quantization error).
    #[arg(long, default_value = "mse", value_parser = parse_weight_clip)]
    weight_clip: WeightClip,
    /// --int8: cross-layer equalization at the ReLU boundaries (exact in f32): `off`,
    /// `weights` (Nagel et al. 2019: balance weight ranges) or `activations` (balance each
    /// activation channel's range against the next layer's weights).
    #[arg(long, default_value = "activations", value_parser = parse_equalize)]
    equalize: Equalize,
    /// --int8: no empirical bias correction (by default each layer's mean output error over
    /// the calibration inputs is corrected).
    #[arg(long)]
    no_bias_correction: bool,
    /// The earlier spelling of --no-bias-correction: --bias-correction true|false.
    #[arg(
        long,
        hide = true,
        value_name = "true|false",
        action = clap::ArgAction::Set,
        conflicts_with = "no_bias_correction"
    )]
    bias_correction: Option<bool>,
    /// --int8: bits of the network input x_t: 16 (symmetric int16, zero point 0; enc1
    /// multiplies int16 inputs by int8 weights) or 8 (int8 like every other activation, the
    /// earlier default).
    #[arg(long, default_value_t = 16, value_parser = parse_input_bits)]
    input_bits: u32,
    /// --int8: also print how much of ε's error each quantized part causes (the int8 network
    /// simulated with one part at a time quantized, and with one part kept in f32).
    #[arg(long)]
    ablation: bool,
    /// --int8: noised training images to calibrate on.
    #[arg(long, default_value_t = 512)]
    calib_images: usize,
    /// --int8: sampler trajectories whose states are calibrated on (SimpleUNet: DDPM, every
    /// 10th step; TinyUNet: DDIM 10 steps, every step).
    #[arg(long, default_value_t = 4)]
    calib_trajectories: usize,
    /// --int8: noised test images for the accuracy report.
    #[arg(long, default_value_t = 64)]
    eval_images: usize,
    /// --int8: seed of the calibration draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn parse_range(s: &str) -> std::result::Result<RangeMethod, String> {
    match s {
        "minmax" => return Ok(RangeMethod::MinMax),
        "mse" => return Ok(RangeMethod::Mse),
        "eps" => return Ok(RangeMethod::EpsMse),
        _ => {}
    }
    match s.strip_prefix('p').map(str::parse::<f32>) {
        Some(Ok(p)) if p > 50.0 && p <= 100.0 => Ok(RangeMethod::Percentile(p)),
        _ => Err(format!(
            "{s:?}: use minmax, mse, eps or pNN.NN (a percentile above 50, e.g. p99.99)"
        )),
    }
}

fn parse_weight_clip(s: &str) -> std::result::Result<WeightClip, String> {
    match s {
        "max" => Ok(WeightClip::Max),
        "mse" => Ok(WeightClip::Mse),
        _ => Err(format!("{s:?}: use max or mse")),
    }
}

fn parse_input_bits(s: &str) -> std::result::Result<u32, String> {
    match s {
        "8" => Ok(8),
        "16" => Ok(16),
        _ => Err(format!("input bits must be 8 or 16, not `{s}`")),
    }
}

fn parse_equalize(s: &str) -> std::result::Result<Equalize, String> {
    match s {
        "off" => Ok(Equalize::Off),
        "weights" => Ok(Equalize::Weights),
        "activations" => Ok(Equalize::Activations),
        _ => Err(format!("{s:?}: use off, weights or activations")),
    }
}

/// The flags of `export --int8` (argument id, flag), all refused without it.
const INT8_ONLY: [(&str, &str); 12] = [
    ("data", "--data"),
    ("range", "--range"),
    ("weight_clip", "--weight-clip"),
    ("equalize", "--equalize"),
    ("no_bias_correction", "--no-bias-correction"),
    ("bias_correction", "--bias-correction"),
    ("input_bits", "--input-bits"),
    ("ablation", "--ablation"),
    ("calib_images", "--calib-images"),
    ("calib_trajectories", "--calib-trajectories"),
    ("eval_images", "--eval-images"),
    ("seed", "--seed"),
];

/// The flags of `export --int8` that only the SimpleUNet quantizer reads.
const SIMPLE_UNET_ONLY: [&str; 6] = [
    "--weight-clip",
    "--equalize",
    "--no-bias-correction",
    "--bias-correction",
    "--input-bits",
    "--ablation",
];

impl ExportArgs {
    /// Refuses the flags that do not apply to the export asked for; `m` tells flags given from
    /// defaults.
    fn refuse_inapplicable(&self, m: &ArgMatches) -> Result<()> {
        if !self.int8 {
            if let Some((_, flag)) = INT8_ONLY.iter().find(|(id, _)| given(m, id)) {
                bail!(
                    "{flag} applies to --int8 only: it is a setting of the post-training \
                     quantization"
                );
            }
        }
        if self.raw && self.checkpoint.is_none() {
            bail!(
                "--raw applies to --checkpoint only: a model file holds one set of weights, \
                 without an EMA"
            );
        }
        if self.safetensors && given(m, "note") {
            bail!("--note applies to model files: a safetensors file has no note");
        }
        Ok(())
    }
}

/// The recipe to record over `base` (the source's, of a schedule with `timesteps` steps): the
/// flags applied, the guide dropped from an int8 file; checked, and said on standard error.
fn recipe_over(
    a: &ExportArgs,
    base: &Recipe<'_>,
    timesteps: u32,
    int8: bool,
) -> Result<OwnedRecipe> {
    let mut recipe = a.recipe.resolve_recipe(base)?;
    if int8 {
        recipe.guide = None;
    }
    recipe
        .as_recipe()
        .check(timesteps)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.out.display()))?;
    eprintln!(
        "export: recipe {}, {}",
        describe_sampler(&recipe.sampler, timesteps),
        match &recipe.guide {
            Some((g, w)) => format!("guided by {g} (next to the model) with weight {w}"),
            None => "unguided".to_owned(),
        }
    );
    Ok(recipe)
}

/// `bytes` (a model file just written) with its recipe replaced by `recipe`.
fn with_recipe(bytes: &[u8], recipe: &OwnedRecipe) -> Result<Vec<u8>> {
    let file =
        ModelFile::parse(bytes).map_err(|e| anyhow::anyhow!("re-reading the export: {e}"))?;
    Ok(ModelWriter::copy_of(&file)
        .map_err(|e| anyhow::anyhow!("re-writing the export: {e}"))?
        .with_recipe(&recipe.as_recipe())
        .finish())
}

/// Exports as asked; `m` are the subcommand's parsed arguments (to tell flags given from
/// defaults).
pub fn run(a: ExportArgs, m: &ArgMatches) -> Result<()> {
    a.refuse_inapplicable(m)?;
    let recipe_flags = a.recipe.given();
    if a.safetensors {
        if let Some(flag) = recipe_flags.first() {
            bail!("{flag} applies to model files: a safetensors file records no recipe");
        }
    }
    if a.int8 && a.recipe.own.guide.is_some() {
        bail!(
            "--guide applies to f32 model files: an int8 model samples unguided (the int8 \
             executors, as on the microcontroller, run one network)"
        );
    }
    let simple_unet_only = INT8_ONLY
        .iter()
        .filter(|(id, flag)| SIMPLE_UNET_ONLY.contains(flag) && given(m, id))
        .map(|(_, flag)| *flag)
        .collect();
    let int8 = Int8Export {
        data: a.data.clone(),
        calib_images: a.calib_images,
        calib_trajectories: a.calib_trajectories,
        quant: QuantOptions {
            range: a.range,
            weight_clip: a.weight_clip,
            equalize: a.equalize,
            bias_correction: a.bias_correction.unwrap_or(!a.no_bias_correction),
            input_bits: a.input_bits,
        },
        seed: a.seed,
        eval_images: a.eval_images,
        ablation: a.ablation,
        simple_unet_only,
    };
    let log = &mut |m: &str| eprintln!("{m}");
    if let Some(ckpt) = &a.checkpoint {
        let w = train::checkpoint_weights(ckpt, !a.raw)?;
        eprintln!(
            "export: {} weights from {}",
            if w.ema { "EMA" } else { "raw" },
            ckpt.display()
        );
        let note = if a.note.is_empty() {
            format!("exported from {}", ckpt.display())
        } else {
            a.note.clone()
        };
        if a.safetensors {
            export::write_safetensors(&a.out, &w.tensors, Some((&w.model, &w.schedule)))?;
        } else {
            let base = Recipe::for_model(&w.model, &w.schedule);
            let recipe = recipe_over(&a, &base, w.schedule.timesteps, a.int8)?;
            let f32_bytes = export::model_file_bytes(
                &w.model,
                &w.schedule,
                &w.tensors,
                &note,
                Some(&recipe.as_recipe()),
            )?;
            if a.int8 {
                let file = quantize::parse_f32(&f32_bytes)?;
                let bytes = quantize::export_int8(&file, &int8, &note, log)?;
                atomic::write_atomic(&a.out, &with_recipe(&bytes, &recipe)?)?;
            } else {
                atomic::write_atomic(&a.out, &f32_bytes)?;
            }
        }
    } else {
        let path = a
            .model
            .as_ref()
            .context("--checkpoint or --model is needed")?;
        // Read and checked once: the tensors and, for --int8, the quantizer's input.
        load::with_model_file(path, |file| {
            let h = file.header();
            let note = if a.note.is_empty() { h.note } else { &a.note };
            let timesteps = h.schedule.timesteps;
            if h.precision == Precision::Int8 && !a.safetensors && !a.int8 {
                // An int8 file written again: its tensors as they are, with the note and
                // recipe asked for.
                let recipe = recipe_over(&a, &h.recipe, timesteps, true)?;
                let bytes = ModelWriter::copy_of(file)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                    .with_note(note)
                    .with_recipe(&recipe.as_recipe())
                    .finish();
                return atomic::write_atomic(&a.out, &bytes);
            }
            let m = export::from_model_file(file, &path.display().to_string())?;
            if a.safetensors {
                export::write_safetensors(&a.out, &m.tensors, Some((&m.config, &m.schedule)))
            } else if a.int8 {
                let recipe = recipe_over(&a, &h.recipe, timesteps, true)?;
                let bytes = quantize::export_int8(file, &int8, note, log)?;
                atomic::write_atomic(&a.out, &with_recipe(&bytes, &recipe)?)
            } else {
                let recipe = recipe_over(&a, &h.recipe, timesteps, false)?;
                let bytes = export::model_file_bytes(
                    &m.config,
                    &m.schedule,
                    &m.tensors,
                    note,
                    Some(&recipe.as_recipe()),
                )?;
                atomic::write_atomic(&a.out, &bytes)
            }
        })?;
    }
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddpm_trainer::quantize::{equalize_name, range_name, weight_clip_name};

    #[test]
    fn notes_name_the_settings_as_the_flags_do() {
        for r in [
            RangeMethod::MinMax,
            RangeMethod::Percentile(99.99),
            RangeMethod::Percentile(100.0),
            RangeMethod::Mse,
            RangeMethod::EpsMse,
        ] {
            assert_eq!(parse_range(&range_name(r)), Ok(r));
        }
        assert_eq!(range_name(RangeMethod::Percentile(99.99)), "p99.99");
        for w in [WeightClip::Max, WeightClip::Mse] {
            assert_eq!(parse_weight_clip(weight_clip_name(w)), Ok(w));
        }
        for e in [Equalize::Off, Equalize::Weights, Equalize::Activations] {
            assert_eq!(parse_equalize(equalize_name(e)), Ok(e));
        }
    }
}
