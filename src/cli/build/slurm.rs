//! `build-slurm`: build Slurm with a toolchain from the signed compiler buildcache (see
//! [`crate::build`]).

use anyhow::Result;
use clap::Parser;

use super::CommonBuildArgs;
use crate::build::{self, Request};
use crate::buildcache::publish::PublishMode;
use crate::catalog::{GccVersion, SlurmVersion};
use crate::cli::args::TrustArgs;
use crate::cli::{bool_flag_or_input, flag_or_input};
use crate::gha::Runner;
use crate::spack::SlurmJobRequest;
use crate::spack::keys;

/// Build Slurm and its dependencies into an unsigned local Spack buildcache, a view and modules.
#[derive(Debug, Parser)]
#[command(
    name = "build-slurm",
    version,
    after_help = "Examples:\n  build-slurm --slurm-version 25.11 --compiler-version 13.4.0\n  build-slurm --slurm-version 24.11 --compiler-version 11.5.0 --gpu --dry-run\n  build-slurm --publish all --destination s3://my-bucket/slurm/25.11/13.4.0/buildcache\n  build-slurm --docker-context ./site-docker --no-cache --timeout-minutes 600"
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
    /// URL of the signed compiler buildcache to take the toolchain from (file://, s3:// or https://) [input: compiler_buildcache]
    #[arg(long)]
    pub compiler_buildcache: Option<String>,
    // The compiler cache's signing key, pinned (default: the catalog's
    // publish.signing_fingerprints).
    #[command(flatten, next_help_heading = "Trust (the compiler buildcache's key)")]
    #[allow(missing_docs)]
    pub trust: TrustArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonBuildArgs,
}

/// Runs `build-slurm`.
pub async fn run_slurm(args: SlurmArgs, runner: Runner) -> Result<()> {
    let c = args.common.resolve(&runner, |c| c.timeouts.slurm)?;
    let catalog = &c.catalog;
    let slurm: SlurmVersion = match flag_or_input(args.slurm_version, &runner, "slurm_version") {
        Some(v) => v.parse()?,
        None => catalog.slurm.default.clone(),
    };
    let gcc: GccVersion = match flag_or_input(args.compiler_version, &runner, "compiler_version") {
        Some(v) => v.parse()?,
        None => catalog.compilers.default.clone(),
    };
    let publish = match flag_or_input(args.publish, &runner, "publish")
        .as_deref()
        .unwrap_or("none")
        .parse::<PublishMode>()?
    {
        PublishMode::None => None,
        mode => Some((
            mode,
            flag_or_input(args.destination, &runner, "destination").unwrap_or_else(|| {
                format!(
                    "s3://{}/{}",
                    catalog.publish.buildcache_bucket,
                    catalog.slurm_prefix(&slurm, &gcc)
                )
            }),
        )),
    };
    let job = SlurmJobRequest {
        slurm,
        gcc,
        gpu: bool_flag_or_input(args.gpu.then_some(true), &runner, "gpu", false)?,
        arch: c.arch,
        compiler_mirror: flag_or_input(args.compiler_buildcache, &runner, "compiler_buildcache"),
        slurm_mirror: None,
    }
    .resolve(catalog)?;
    let trust = keys::for_slurm_build(args.trust.resolve(&runner)?, catalog)?;
    let request = Request {
        job,
        opts: c.opts,
        dry_run: c.dry_run,
        publish,
        key_file: args.common.key.resolve(&runner),
        s3: args.common.s3.resolve(&runner),
        trust: Some(trust),
    };
    build::run(request, runner).await
}
