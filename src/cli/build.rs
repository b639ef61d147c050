//! `build-compiler` and `build-slurm`: run the Spack build inside the build container.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

use crate::gha::Runner;

/// Options shared by both builders.
#[derive(Debug, clap::Args)]
pub struct CommonBuildArgs {
    /// Target architecture: amd64 or arm64 [input: arch]
    #[arg(long)]
    pub arch: Option<String>,
    /// Directory that receives the build's outputs (buildcache, view, modules, logs) [input: output_dir]
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Rebuild the container image without Docker's layer cache [input: no_cache]
    #[arg(long)]
    pub no_cache: bool,
    /// Print the generated spack.yaml, Dockerfile and steps without touching Docker [input: dry_run]
    #[arg(long)]
    pub dry_run: bool,
    /// Job timeout in minutes (default from the catalog) [input: timeout_minutes]
    #[arg(long)]
    pub timeout_minutes: Option<u32>,
    /// Use this catalog file instead of the embedded one [input: catalog]
    #[arg(long)]
    pub catalog: Option<PathBuf>,
}

/// Build a relocatable GCC toolchain into an unsigned local Spack buildcache.
#[derive(Debug, Parser)]
#[command(
    name = "build-compiler",
    version,
    after_help = "Examples:\n  build-compiler --compiler-version 13.4.0 --dry-run\n  build-compiler --compiler-version 14.2.0 --output-dir ./out\n  build-compiler --compiler-version 13.4.0 --publish s3://my-bucket/compilers/13.4.0/buildcache"
)]
pub struct CompilerArgs {
    /// GCC version to build (default from the catalog) [input: compiler_version]
    #[arg(long)]
    pub compiler_version: Option<String>,
    /// After building, sign and publish the buildcache to this URL (file:// or s3://) [input: publish_to]
    #[arg(long)]
    pub publish: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonBuildArgs,
}

/// Build Slurm and its dependencies into an unsigned local Spack buildcache, a view and modules.
#[derive(Debug, Parser)]
#[command(
    name = "build-slurm",
    version,
    after_help = "Examples:\n  build-slurm --slurm-version 25.11 --compiler-version 13.4.0\n  build-slurm --slurm-version 24.11 --compiler-version 11.5.0 --gpu --dry-run\n  build-slurm --publish all --destination s3://my-bucket/slurm/25.11/13.4.0/buildcache"
)]
pub struct SlurmArgs {
    /// Slurm release to build (default from the catalog) [input: slurm_version]
    #[arg(long)]
    pub slurm_version: Option<String>,
    /// GCC toolchain to build with (default from the catalog) [input: compiler_version]
    #[arg(long)]
    pub compiler_version: Option<String>,
    /// Build with NVIDIA NVML and AMD ROCm SMI support [input: gpu]
    #[arg(long)]
    pub gpu: bool,
    /// What to publish after the build: all, slurm-only or none [input: publish]
    #[arg(long)]
    pub publish: Option<String>,
    /// Where to publish (file:// or s3://); default from the catalog [input: destination]
    #[arg(long)]
    pub destination: Option<String>,
    /// URL of the signed compiler buildcache to take the toolchain from [input: compiler_buildcache]
    #[arg(long)]
    pub compiler_buildcache: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonBuildArgs,
}

/// Runs `build-compiler`.
pub async fn run_compiler(_args: CompilerArgs, _runner: Runner) -> Result<()> {
    Err(super::not_implemented("build-compiler"))
}

/// Runs `build-slurm`.
pub async fn run_slurm(_args: SlurmArgs, _runner: Runner) -> Result<()> {
    Err(super::not_implemented("build-slurm"))
}
