//! `slurm-factory workflows`: generate and drift-check `.github/workflows` and the actions.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::gha::Runner;
use crate::workflows::{self, DriftKind};

/// Generate the GitHub workflows from `workflows-src/`, or check the committed ones for drift.
#[derive(Debug, Parser)]
#[command(
    name = "workflows",
    after_help = "Examples:\n  slurm-factory workflows generate\n  slurm-factory workflows check\n  slurm-factory workflows check --root /path/to/slurm-factory"
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
pub async fn run(args: Args, runner: Runner) -> Result<()> {
    let root = match args.root {
        Some(r) => r,
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    match args.command {
        Command::Generate => {
            let changed = workflows::generate(&root)?;
            if changed.is_empty() {
                runner.info("generated workflows and actions are already up to date");
            }
            for p in changed {
                runner.info(&format!("wrote {}", p.display()));
            }
            Ok(())
        }
        Command::Check => {
            let drift = workflows::check(&root)?;
            if drift.is_empty() {
                runner.info("generated workflows and actions are up to date");
                return Ok(());
            }
            for d in &drift {
                let what = match d.kind {
                    DriftKind::Changed => "differs from what workflows-src generates",
                    DriftKind::Missing => "is missing",
                    DriftKind::Orphaned => "is generated but its source is gone",
                };
                runner.info(&format!("{} {what}:", d.path.display()));
                runner.info(&d.diff);
            }
            bail!(
                "{} generated file(s) are stale: {}. Generated files must not be edited by hand; edit workflows-src/ or catalog.yaml, then run `{}` and commit the result",
                drift.len(),
                drift
                    .iter()
                    .map(|d| d.path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                workflows::FIX_COMMAND
            )
        }
    }
}
