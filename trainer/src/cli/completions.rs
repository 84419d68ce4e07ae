//! `trainer completions`: a shell completion script on standard output.
use std::io::Write;

use anyhow::{Context, Result};
use clap::{Args, Command, ValueEnum};
use clap_complete::{generate, Shell};

/// The shells there are scripts for.
#[derive(Clone, Copy, ValueEnum)]
pub enum ShellArg {
    /// Bash (with the bash-completion package).
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: ShellArg,
}

/// Writes the script completing `cmd` in the shell asked for to standard output.
pub fn run(a: CompletionsArgs, cmd: &mut Command) -> Result<()> {
    let shell = match a.shell {
        ShellArg::Bash => Shell::Bash,
        ShellArg::Zsh => Shell::Zsh,
        ShellArg::Fish => Shell::Fish,
    };
    let name = cmd.get_name().to_owned();
    let mut script = Vec::new();
    generate(shell, cmd, name, &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("writing the completion script to standard output")
}
