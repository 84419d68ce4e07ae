//! `trainer fetch-data`.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use ddpm_trainer::data::{fetch, idx};
use ddpm_trainer::progress;

#[derive(Args)]
pub struct FetchArgs {
    /// Directory to put the four decompressed MNIST files in, where the other commands look
    /// [default: $DDPM_DATA, else data/mnist].
    #[arg(long, alias = "dir")]
    data: Option<PathBuf>,
    /// Base URL of a mirror (repeatable; tried in order; a file's URL is base + name + .gz)
    /// [default: ossci-datasets S3, Google cvdf-datasets, yann.lecun.com].
    #[arg(long = "mirror", value_name = "URL")]
    mirrors: Vec<String>,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
}

/// Fetches as asked.
pub fn run(a: FetchArgs) -> Result<()> {
    let mirrors: Vec<String> = if a.mirrors.is_empty() {
        fetch::DEFAULT_MIRRORS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        a.mirrors.clone()
    };
    let dir = a.data.clone().unwrap_or_else(idx::default_data_dir);
    fetch::fetch_mnist(&dir, &mirrors, progress::wanted(a.no_progress), &mut |m| {
        eprintln!("{m}")
    })?;
    eprintln!("MNIST is in {}", dir.display());
    Ok(())
}
