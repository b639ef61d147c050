//! `build-compiler`: build a GCC toolchain into a local buildcache (see [`crate::builder`]).

use anyhow::Result;
use clap::Parser;

use super::CommonBuildArgs;
use crate::buildcache::publish::PublishMode;
use crate::builder::{self, Request};
use crate::catalog::GccVersion;
use crate::cli::flag_or_input;
use crate::gha::Runner;
use crate::spack::Job;

/// Build a relocatable GCC toolchain into an unsigned local Spack buildcache.
#[derive(Debug, Parser)]
#[command(
    name = "build-compiler",
    version,
    after_help = "Examples:\n  build-compiler --compiler-version 13.4.0 --dry-run\n  build-compiler --compiler-version 13.4.0 --platform ubuntu24.04 --dry-run\n  build-compiler --compiler-version 14.2.0 --output-dir ./out\n  build-compiler --compiler-version 13.4.0 --publish s3://my-bucket/compilers/13.4.0/buildcache"
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

/// Runs `build-compiler`.
pub async fn run_compiler(args: CompilerArgs, runner: Runner) -> Result<()> {
    let c = args.common.resolve(&runner, |c| c.timeouts.compiler)?;
    let gcc: GccVersion = match flag_or_input(args.compiler_version, &runner, "compiler_version") {
        Some(v) => v.parse()?,
        None => c.catalog.compilers.default.clone(),
    };
    let job = Job::compiler_on(&c.catalog, gcc, c.arch.clone(), Some(&c.platform))?;
    c.check_leg(&job, &runner)?;
    let publish = c.publish_target(
        &args.common,
        &runner,
        flag_or_input(args.publish, &runner, "publish_to").map(|dest| (PublishMode::All, dest)),
    )?;
    let request = Request {
        job,
        opts: c.opts,
        dry_run: c.dry_run,
        publish,
        s3: c.s3,
        trust: None,
    };
    builder::run(request, runner).await
}
