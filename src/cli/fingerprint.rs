//! `slurm-factory fingerprint`: content fingerprint of a build's inputs (incremental pipelines).

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

use crate::gha::Runner;

/// Print a content fingerprint of everything that determines a build's output.
#[derive(Debug, Parser)]
#[command(
    name = "fingerprint",
    after_help = "Examples:\n  slurm-factory fingerprint --slurm-version 25.11 --compiler-version 13.4.0\n  slurm-factory fingerprint --kind compiler --compiler-version 14.2.0"
)]
pub struct Args {
    /// compiler, slurm or tarball
    #[arg(long)]
    pub kind: Option<String>,
    /// Slurm release
    #[arg(long)]
    pub slurm_version: Option<String>,
    /// GCC toolchain
    #[arg(long)]
    pub compiler_version: Option<String>,
    /// Use this catalog file instead of the embedded one
    #[arg(long)]
    pub catalog: Option<PathBuf>,
}

/// Runs `fingerprint`.
pub async fn run(_args: Args, _runner: Runner) -> Result<()> {
    Err(super::not_implemented("fingerprint"))
}
