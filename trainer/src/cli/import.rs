//! `trainer import`: a PyTorch safetensors state_dict to a model file.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
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
    /// Image height the model was trained on (not stored in a state_dict).
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

/// Converts as asked.
pub fn run(a: ImportArgs) -> Result<()> {
    let (cfg, tensors) = export::read_safetensors_state_dict(&a.safetensors, a.height, a.width)?;
    let bytes = export::model_file_bytes(&cfg, &a.schedule.config(), &tensors, &a.note)?;
    atomic::write_atomic(&a.out, &bytes)?;
    eprintln!("wrote {} ({cfg:?})", a.out.display());
    Ok(())
}
