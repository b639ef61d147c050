//! `tarball-publish`: package the view and modules into a relocatable tarball and publish it.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

use crate::gha::Runner;

/// Package a Slurm view and its modules as a relocatable tarball, sign it and publish it to S3.
#[derive(Debug, Parser)]
#[command(
    name = "tarball-publish",
    version,
    after_help = "Examples:\n  tarball-publish --build-dir ./out --slurm-version 25.11 --compiler-version 13.4.0\n  tarball-publish --build-dir ./out --destination s3://vantage-public-assets/slurm-factory/ --dry-run"
)]
pub struct Args {
    /// Output directory of `build-slurm` (holds view/ and modules/) [input: build_dir]
    #[arg(long)]
    pub build_dir: Option<PathBuf>,
    /// Slurm release of the build [input: slurm_version]
    #[arg(long)]
    pub slurm_version: Option<String>,
    /// GCC toolchain of the build [input: compiler_version]
    #[arg(long)]
    pub compiler_version: Option<String>,
    /// Destination (s3://bucket/key or file:///path); default from the catalog [input: destination]
    #[arg(long)]
    pub destination: Option<String>,
    /// Report what would be uploaded without uploading [input: dry_run]
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `tarball-publish`.
pub async fn run(_args: Args, _runner: Runner) -> Result<()> {
    Err(super::not_implemented("tarball-publish"))
}
