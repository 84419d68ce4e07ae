//! `trainer info`.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use ddpm_trainer::info;

#[derive(Args)]
pub struct InfoArgs {
    /// The model file.
    model: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Prints what the model file holds.
pub fn run(a: InfoArgs) -> Result<()> {
    let report = info::read(&a.model)?;
    if a.json {
        print!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(())
}
