//! `slurm-factory workflows`: generate and drift-check `.github/workflows` and the actions.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::gha::Runner;

/// Generate the GitHub workflows from `workflows-src/`, or check the committed ones for drift.
#[derive(Debug, Parser)]
#[command(
    name = "workflows",
    after_help = "Examples:\n  slurm-factory workflows generate\n  slurm-factory workflows check"
)]
pub struct Args {
    /// Repository root (default: the current directory)
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
    #[command(subcommand)]
    #[allow(missing_docs)]
    pub command: Command,
}

/// `workflows` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render .github/workflows/*.yml and actions/*/action.yml from workflows-src/
    Generate,
    /// Re-render in memory and fail with a diff if the committed files differ
    Check,
}

/// Runs `workflows`.
pub async fn run(_args: Args, _runner: Runner) -> Result<()> {
    Err(super::not_implemented("workflows"))
}
