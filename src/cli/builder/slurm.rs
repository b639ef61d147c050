//! `build-slurm`: build Slurm with a toolchain from the signed compiler buildcache, or from
//! source when no key is pinned (see [`crate::builder`] and [`crate::spack::keys`]).

use anyhow::Result;
use clap::Parser;

use super::CommonBuildArgs;
use crate::buildcache::publish::PublishMode;
use crate::builder::{self, Request};
use crate::catalog::{GccVersion, SlurmVersion, Variant};
use crate::cli::args::TrustArgs;
use crate::cli::{bool_flag_or_input, flag_or_input};
use crate::gha::Runner;
use crate::spack::keys::{self, ToolchainMode};
use crate::spack::{SlurmJobRequest, Toolchain};

/// Build Slurm and its dependencies into an unsigned local Spack buildcache, a view and modules.
#[derive(Debug, Parser)]
#[command(
    name = "build-slurm",
    version,
    after_help = "Examples:\n  build-slurm --slurm-version 25.11 --compiler-version 13.4.0   # no key pinned: GCC from source first\n  build-slurm --slurm-version 24.11 --compiler-version 11.5.0 --gpu --dry-run\n  build-slurm --slurm-version 25.11 --compiler-version 13.4.0 --trusted-fingerprint <FPR>   # GCC from the compiler buildcache\n  build-slurm --trusted-key signer.pub.asc --publish all --destination s3://my-bucket/slurm/25.11/13.4.0/buildcache\n  build-slurm --toolchain source --docker-context ./site-docker --no-cache --timeout-minutes 600\n\nThe toolchain: with a pinned key (--trusted-fingerprint, --trusted-key, or the catalog's publish.signing_fingerprints) it is installed from the signed compiler buildcache; without one, --toolchain auto builds GCC from source in the same container first (about an hour more) and reads no buildcache."
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
    /// What to publish after the build: all, slurm-only (Slurm and its link/run dependencies)
    /// or none [input: publish]
    #[arg(long)]
    pub publish: Option<String>,
    /// Where to publish (file:// or s3://); default from the catalog [input: destination]
    #[arg(long)]
    pub destination: Option<String>,
    /// URL of the signed compiler buildcache to take the toolchain from (file://, s3:// or https://) [input: compiler_buildcache]
    #[arg(long)]
    pub compiler_buildcache: Option<String>,
    /// Where the GCC toolchain comes from: auto (the compiler buildcache when a key is pinned,
    /// else built from source, about an hour more), buildcache (refused without a pinned key)
    /// or source (never reads the compiler buildcache); default auto [input: toolchain]
    #[arg(long, value_name = "auto|buildcache|source")]
    pub toolchain: Option<String>,
    // The compiler cache's signing key, pinned (plus the catalog's
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
    let gpu = bool_flag_or_input(args.gpu.then_some(true), &runner, "gpu", false)?;
    let variant = Variant {
        gpu,
        arch: c.arch.clone(),
        platform: c.platform.clone(),
    };
    let mode: ToolchainMode = flag_or_input(args.toolchain, &runner, "toolchain")
        .as_deref()
        .unwrap_or("auto")
        .parse()?;
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
                    catalog.slurm_prefix(&slurm, &gcc, &variant)
                )
            }),
        )),
    };
    let job = SlurmJobRequest {
        slurm,
        gcc,
        gpu,
        arch: c.arch.clone(),
        platform: Some(c.platform.clone()),
        compiler_mirror: flag_or_input(args.compiler_buildcache, &runner, "compiler_buildcache"),
        slurm_mirror: None,
    }
    .resolve(catalog)?;
    c.check_leg(&job, &runner)?;
    let publish = c.publish_target(&args.common, &runner, publish)?;
    let pins = keys::with_catalog_pins(args.trust.resolve(&runner)?, catalog);
    let (toolchain, trust) = keys::choose_toolchain(mode, pins)?;
    match toolchain {
        Toolchain::Source if mode == ToolchainMode::Auto => runner.notice(&format!(
            "no signing key is pinned for the compiler buildcache (--trusted-fingerprint, --trusted-key or the catalog's publish.signing_fingerprints), so GCC {} is built from source in the build container first: about an hour more, and no buildcache is read",
            job.gcc()
        )),
        Toolchain::Source => runner.info(&format!(
            "--toolchain source: GCC {} is built from source in the build container first",
            job.gcc()
        )),
        Toolchain::Buildcache => runner.info(&format!(
            "the GCC {} toolchain comes from the compiler buildcache {}",
            job.gcc(),
            compiler_mirror_of(&job)
        )),
    }
    let job = job.with_toolchain(toolchain);
    let request = Request {
        job,
        opts: c.opts,
        dry_run: c.dry_run,
        publish,
        s3: c.s3.clone(),
        trust,
    };
    builder::run(request, runner).await
}

fn compiler_mirror_of(job: &crate::spack::Job) -> &str {
    match job {
        crate::spack::Job::Slurm(s) => &s.compiler_mirror,
        crate::spack::Job::Compiler(_) => "",
    }
}
