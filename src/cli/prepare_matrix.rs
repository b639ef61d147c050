//! `prepare-matrix`: expand the requested versions into a GitHub Actions build matrix.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

use crate::gha::Runner;

/// Expand requested versions into a validated GitHub Actions build matrix.
#[derive(Debug, Parser)]
#[command(
    name = "prepare-matrix",
    version,
    after_help = "Examples:\n  prepare-matrix --kind compiler --compiler-versions all\n  prepare-matrix --kind slurm --slurm-versions '25.11 24.11' --compiler-versions 13.4.0\n  INPUT_KIND=tarball INPUT_SLURM_VERSIONS=25.11 prepare-matrix"
)]
pub struct Args {
    /// What the matrix builds: compiler, slurm or tarball [input: kind]
    #[arg(long)]
    pub kind: Option<String>,
    /// GCC versions: `all` or a comma/space separated list [input: compiler_versions]
    #[arg(long)]
    pub compiler_versions: Option<String>,
    /// Slurm releases: `all` or a comma/space separated list [input: slurm_versions]
    #[arg(long)]
    pub slurm_versions: Option<String>,
    /// Target architectures: `all` or a list (amd64, arm64) [input: architectures]
    #[arg(long)]
    pub architectures: Option<String>,
    /// Use this catalog file instead of the embedded one [input: catalog]
    #[arg(long)]
    pub catalog: Option<PathBuf>,
}

/// Runs `prepare-matrix`.
pub async fn run(_args: Args, _runner: Runner) -> Result<()> {
    Err(super::not_implemented("prepare-matrix"))
}
