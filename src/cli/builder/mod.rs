//! `build-compiler` and `build-slurm`: the argument surfaces of the build engine
//! ([`crate::builder`]). Both turn flags and action inputs into a [`crate::builder::Request`].

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::args::{S3Args, SigningKeyArgs, publish_target};
use super::{bool_flag_or_input, flag_input_or_env, flag_or_input};
use crate::buildcache::publish::PublishMode;
use crate::buildcache::publish::PublishTarget;
use crate::builder::caches::{CACHE_DIR_ENV, CacheSettings};
use crate::builder::{BuildOptions, DEFAULT_OUTPUT_DIR, build_timeout};
use crate::catalog::{Arch, Catalog, PlatformName};
use crate::gha::Runner;
use crate::spack::RunId;

mod compiler;
mod slurm;

pub use compiler::{CompilerArgs, run_compiler};
pub use slurm::{SlurmArgs, run_slurm};

/// Options shared by both builders.
#[derive(Debug, clap::Args)]
pub struct CommonBuildArgs {
    /// Target architecture: amd64 or arm64 [input: arch]
    #[arg(long)]
    pub arch: Option<String>,
    /// Build platform, the OS image the build runs in: el8, el9 or ubuntu24.04 (default from
    /// the catalog: el8, the lowest glibc floor). Refused when the catalog records no image
    /// digest for it [input: platform]
    #[arg(long)]
    pub platform: Option<String>,
    /// Directory that receives the build's outputs (buildcache, view, modules, logs) [input: output_dir]
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Rebuild the container image without Docker's layer cache or the image cache [input: no_cache]
    #[arg(long)]
    pub no_cache: bool,
    /// Root of the caches kept between runs, or `off` (default: $RUNNER_TOOL_CACHE/slurm-factory,
    /// see the README) [input: cache_dir] [env: SLURM_FACTORY_CACHE_DIR]
    #[arg(long, value_name = "DIR|off")]
    pub cache_dir: Option<PathBuf>,
    /// Print the generated spack.yaml, Dockerfile and steps without touching Docker [input: dry_run]
    #[arg(long)]
    pub dry_run: bool,
    /// Job timeout in minutes (default from the catalog) [input: timeout_minutes]
    #[arg(long)]
    pub timeout_minutes: Option<u32>,
    /// Use this catalog file instead of the embedded one [input: catalog] [env: SLURM_FACTORY_CATALOG]
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Build the container image from this directory (holding a Dockerfile) instead of the
    /// embedded docker/ definition, e.g. to add a site proxy or CA. The image must provide
    /// `spack` on PATH [input: docker_context] [env: SLURM_FACTORY_DOCKER_CONTEXT]
    #[arg(long, value_name = "DIR")]
    pub docker_context: Option<PathBuf>,
    /// The leg as the plan recorded it (a prepare-matrix matrix entry, JSON): its fingerprint is
    /// recomputed and a leg that differs from the plan's is refused before anything is built [input: leg]
    #[arg(long, value_name = "JSON")]
    pub leg: Option<String>,
    #[command(flatten, next_help_heading = "Publishing")]
    #[allow(missing_docs)]
    pub key: SigningKeyArgs,
    #[command(flatten, next_help_heading = "S3 (publishing, compiler buildcache)")]
    #[allow(missing_docs)]
    pub s3: S3Args,
}

/// The common flags, resolved.
struct Common {
    catalog: Catalog,
    arch: Arch,
    platform: PlatformName,
    opts: BuildOptions,
    dry_run: bool,
    s3: crate::s3::S3Settings,
    leg: Option<String>,
}

impl Common {
    /// With a `leg`, refuses a job that is not the leg or whose fingerprint differs from the
    /// plan's ([`crate::builder::leg::check`]), before any Docker or Spack work.
    fn check_leg(&self, job: &crate::spack::Job, runner: &Runner) -> Result<()> {
        let (leg, context) = (self.leg.as_deref(), self.opts.docker_context.clone());
        crate::builder::leg::check_given(leg, job, &self.catalog, context, runner)
    }

    /// The publish target of `publish` (mode and destination): the signing key is loaded (and
    /// masked) now, before anything is built. A dry run publishes nothing and loads no key.
    fn publish_target(
        &self,
        args: &CommonBuildArgs,
        runner: &Runner,
        publish: Option<(PublishMode, String)>,
    ) -> Result<Option<(PublishMode, PublishTarget)>> {
        match publish {
            Some((mode, destination)) if !self.dry_run && mode != PublishMode::None => {
                let context =
                    format!("--publish {mode} to {destination} cannot work, so nothing was built");
                let target =
                    publish_target(destination, &args.key, &args.s3, runner).context(context)?;
                Ok(Some((mode, target)))
            }
            _ => Ok(None),
        }
    }
}

impl CommonBuildArgs {
    /// Reads the flags (else the action inputs); `timeout` picks the catalog's default timeout.
    fn resolve(&self, runner: &Runner, timeout: fn(&Catalog) -> u32) -> Result<Common> {
        let path = super::catalog_path(self.catalog.clone(), runner);
        let catalog = Catalog::load_or_embedded(path.as_deref())?;
        let arch = flag_or_input(self.arch.clone(), runner, "arch")
            .map(Arch)
            .unwrap_or_else(|| catalog.architectures.default.clone());
        let platform = flag_or_input(self.platform.clone(), runner, "platform");
        let platform = catalog.platform_or_default(platform.as_deref())?;
        // Refused before anything else: an image the catalog cannot pin is never built.
        platform.pinned_image()?;
        let platform = platform.name.clone();
        let output_dir = self
            .output_dir
            .clone()
            .or_else(|| runner.input("output_dir").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OUTPUT_DIR));
        let docker_context = super::docker_context(self.docker_context.clone(), runner);
        let cache_dir =
            flag_input_or_env(self.cache_dir.clone(), runner, "cache_dir", CACHE_DIR_ENV);
        let no_cache =
            bool_flag_or_input(self.no_cache.then_some(true), runner, "no_cache", false)?;
        let dry_run = bool_flag_or_input(self.dry_run.then_some(true), runner, "dry_run", false)?;
        let input = runner.input("timeout_minutes");
        let timeout = build_timeout(self.timeout_minutes, input, timeout(&catalog))?;
        let opts = BuildOptions {
            output_dir,
            docker_context,
            no_cache,
            timeout,
            user: None,
            run_id: RunId::from_runner(runner),
            caches: CacheSettings::resolve(cache_dir.as_deref(), &catalog.caches, runner)?,
        };
        Ok(Common {
            catalog,
            arch,
            platform,
            opts,
            dry_run,
            s3: self.s3.resolve(runner)?,
            leg: flag_or_input(self.leg.clone(), runner, "leg").filter(|l| !l.trim().is_empty()),
        })
    }
}
