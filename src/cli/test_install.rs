//! `test-install`: install from a published buildcache or tarball and smoke-test it.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

use crate::gha::Runner;

/// Install from a published buildcache (or tarball) in a clean container and smoke-test it.
#[derive(Debug, Parser)]
#[command(
    name = "test-install",
    version,
    after_help = "Examples:\n  test-install --buildcache s3://bucket/compilers/13.4.0/buildcache --spec gcc@13.4.0 --trusted-key signer.asc\n  test-install --tarball ./slurm-25.11-gcc13.4.0-software.tar.gz"
)]
pub struct Args {
    /// Buildcache URL to install from [input: buildcache]
    #[arg(long)]
    pub buildcache: Option<String>,
    /// Spec to install with `spack install --cache-only` [input: spec]
    #[arg(long)]
    pub spec: Option<String>,
    /// Armored public key(s) to trust (repeatable) [input: trusted_keys]
    #[arg(long = "trusted-key")]
    pub trusted_keys: Vec<PathBuf>,
    /// A relocatable tarball to unpack and test with `module load slurm` [input: tarball]
    #[arg(long)]
    pub tarball: Option<PathBuf>,
}

/// Runs `test-install`.
pub async fn run(_args: Args, _runner: Runner) -> Result<()> {
    Err(super::not_implemented("test-install"))
}
