//! `slurm-factory verify`: check every signature and blob of a buildcache.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

use crate::gha::Runner;

/// Verify every signed manifest and every blob of a buildcache against trusted keys.
#[derive(Debug, Parser)]
#[command(
    name = "verify",
    after_help = "Examples:\n  slurm-factory verify --buildcache file:///srv/mirror --trusted-key signer.pub.asc\n  slurm-factory verify --buildcache ./out/buildcache --trusted-key a.asc --trusted-key b.asc"
)]
pub struct Args {
    /// Buildcache URL or directory [input: buildcache]
    #[arg(long)]
    pub buildcache: Option<String>,
    /// Armored public key(s) to trust (repeatable) [input: trusted_keys, one per line]
    #[arg(long = "trusted-key")]
    pub trusted_keys: Vec<PathBuf>,
    /// Accept unsigned spec manifests (still checks blobs) [input: allow_unsigned]
    #[arg(long)]
    pub allow_unsigned: bool,
}

/// Runs `verify`.
pub async fn run(_args: Args, _runner: Runner) -> Result<()> {
    Err(super::not_implemented("verify"))
}
