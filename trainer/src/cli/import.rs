//! `trainer import`: a PyTorch safetensors state_dict to a model file.
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use ddpm_core::{ScheduleConfig, ScheduleKind};
use ddpm_torch::{atomic, export};

use super::ScheduleArgs;

#[derive(Args)]
pub struct ImportArgs {
    /// PyTorch safetensors file of a SimpleUNet's state_dict (enc1.weight, …, time_mlp.2.bias)
    /// or a TinyUNet's (enc0.weight, enc0_temb.weight, …, out.bias); a `model.` or `module.`
    /// prefix is accepted.
    #[arg(long)]
    safetensors: PathBuf,
    /// Model file to write.
    #[arg(long)]
    out: PathBuf,
    /// Image height the model was trained on (not stored in a state_dict; a file exported by
    /// `trainer export --safetensors` records it, its schedule and prediction in its metadata,
    /// and then these flags do not apply).
    #[arg(long, default_value_t = 28)]
    height: u32,
    /// Image width the model was trained on.
    #[arg(long, default_value_t = 28)]
    width: u32,
    /// The schedule the weights were trained with.
    #[command(flatten)]
    schedule: ScheduleArgs,
    /// Text stored in the model file's note.
    #[arg(long, default_value = "imported from PyTorch safetensors")]
    note: String,
}

/// The flags that the `ddpm.*` metadata of an exported file settles.
const RECORDED: [(&str, &str); 7] = [
    ("height", "--height"),
    ("width", "--width"),
    ("schedule", "--schedule"),
    ("timesteps", "--timesteps"),
    ("beta_start", "--beta-start"),
    ("beta_end", "--beta-end"),
    ("prediction", "--prediction"),
];

/// Converts as asked; `m` are the subcommand's parsed arguments (to tell flags given from
/// defaults).
pub fn run(a: ImportArgs, m: &ArgMatches) -> Result<()> {
    a.schedule.refuse_inapplicable(m)?;
    let what = a.safetensors.display();
    let (arch, height, width, schedule) = match export::read_metadata(&a.safetensors)? {
        Some((arch, h, w, schedule)) => {
            // Flags given on the command line must agree with what the file records.
            let flags = a.schedule.config();
            let linear = |s: &ScheduleConfig| match s.kind {
                ScheduleKind::Linear {
                    beta_start,
                    beta_end,
                } => Some((beta_start, beta_end)),
                ScheduleKind::Cosine { .. } => None,
            };
            let conflicts: Vec<&str> = RECORDED
                .iter()
                .filter(|(id, _)| m.value_source(id) == Some(ValueSource::CommandLine))
                .filter(|(id, _)| match *id {
                    "height" => a.height != h,
                    "width" => a.width != w,
                    "schedule" => linear(&flags).is_some() != linear(&schedule).is_some(),
                    "timesteps" => flags.timesteps != schedule.timesteps,
                    "beta_start" => linear(&schedule).map(|p| p.0) != Some(a.schedule.beta_start),
                    "beta_end" => linear(&schedule).map(|p| p.1) != Some(a.schedule.beta_end),
                    _ => flags.prediction != schedule.prediction,
                })
                .map(|(_, flag)| *flag)
                .collect();
            if !conflicts.is_empty() {
                bail!(
                    "{what} records its image size ({h}×{w}) and schedule ({}) in its metadata \
                     (written by `trainer export --safetensors`), and {} say otherwise: drop \
                     them",
                    ddpm_trainer::describe::describe_schedule(&schedule),
                    conflicts.join(", ")
                );
            }
            eprintln!("import: {what} records a {arch} network, {h}×{w} images and its schedule");
            (Some(arch), h, w, schedule)
        }
        None => (None, a.height, a.width, a.schedule.config()),
    };
    let (cfg, tensors) = export::read_safetensors_state_dict(&a.safetensors, height, width)?;
    if let Some(arch) = arch.filter(|arch| arch != cfg.arch_name()) {
        bail!(
            "{what}: its metadata names a {arch} network, but its tensors are a {}",
            cfg.arch_name()
        );
    }
    let bytes = export::model_file_bytes(&cfg, &schedule, &tensors, &a.note, None)?;
    atomic::write_atomic(&a.out, &bytes)?;
    eprintln!(
        "wrote {} ({})",
        a.out.display(),
        ddpm_trainer::describe::describe_model(&cfg)
    );
    Ok(())
}
