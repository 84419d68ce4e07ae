//! `trainer`: fit the lecture notes' DDPM on MNIST with libtorch, export/import weights, sample
//! images.
//! Parses the arguments and hands them to the subcommand's module in [`cli`].
mod cli;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use cli::{
    classifier, compare_int8, completions, eval, export, fetch, fit, import, info, inpaint, sample,
};

#[derive(Parser)]
#[command(
    name = "trainer",
    version,
    about = "Train the lecture notes' DDPM (SimpleUNet, or the compact TinyUNet) on MNIST with \
             libtorch, export it to the ddpm-core model file, and sample images from it."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a SimpleUNet (default) or a TinyUNet on MNIST IDX files (defaults: the lecture
    /// notes' recipe).
    Fit(fit::FitArgs),
    /// Write a model file (or a PyTorch safetensors file) from a checkpoint or a model file.
    Export(export::ExportArgs),
    /// Turn a PyTorch safetensors state_dict (SimpleUNet or TinyUNet) into a model file.
    Import(import::ImportArgs),
    /// Draw images from a model file and write a PNG grid (and optionally an IDX file).
    Sample(sample::SampleArgs),
    /// Complete a digit of which a part is hidden (RePaint), or measure completions of MNIST
    /// test digits against baselines (--measure).
    Inpaint(inpaint::InpaintArgs),
    /// Download MNIST from public mirrors and verify the decompressed files' SHA-256.
    FetchData(fetch::FetchArgs),
    /// Train the small MNIST classifier that judges samples and write it (safetensors).
    Classifier(classifier::ClassifierArgs),
    /// Sample an f32 model and its int8 export with the same seeds and compare the images:
    /// pixel difference, classifier labels, confident share, and a side-by-side PNG.
    CompareInt8(compare_int8::CompareInt8Args),
    /// Measure a model: the variational bound in bits/dim on MNIST test images (--nll) and
    /// sample quality judged by the project's classifier (--fid).
    Eval(eval::EvalArgs),
    /// Show what a model file holds: architecture and sizes, parameters, precision, schedule,
    /// how it was made, its tensors, size and CRC (text, or --json).
    Info(info::InfoArgs),
    /// Print a shell completion script (bash, zsh or fish) to standard output
    ///
    /// Install it where the shell looks for completions, e.g.
    ///   bash: trainer completions bash > ~/.local/share/bash-completion/completions/trainer
    ///   zsh:  trainer completions zsh > ~/.zfunc/_trainer  (with `fpath+=~/.zfunc` before
    ///         `compinit` in ~/.zshrc)
    ///   fish: trainer completions fish > ~/.config/fish/completions/trainer.fish
    /// and start a new shell.
    #[command(verbatim_doc_comment)]
    Completions(completions::CompletionsArgs),
}

fn main() {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let sub = |name: &str| {
        matches
            .subcommand_matches(name)
            .expect("the parsed subcommand has its matches")
    };
    let result = match cli.command {
        Command::Fit(a) => fit::run(a, sub("fit")),
        Command::Export(a) => export::run(a, sub("export")),
        Command::Import(a) => import::run(a, sub("import")),
        Command::Sample(a) => sample::run(a),
        Command::Inpaint(a) => inpaint::run(a),
        Command::FetchData(a) => fetch::run(a),
        Command::Classifier(a) => classifier::run(a),
        Command::CompareInt8(a) => compare_int8::run(a),
        Command::Eval(a) => eval::run(a, sub("eval")),
        Command::Info(a) => info::run(a),
        Command::Completions(a) => completions::run(a, &mut Cli::command()),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        // clap's own checks: unique names, and conflicts and requirements naming real arguments.
        Cli::command().debug_assert();
    }
}
