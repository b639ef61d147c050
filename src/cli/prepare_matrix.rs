//! `prepare-matrix`: expand the requested versions into a GitHub Actions build matrix.
//!
//! Outputs `matrix` (`{"include":[...]}`, see [`crate::matrix::MatrixEntry`]) and `count`, and
//! a Markdown table in the job summary. Every input is validated before anything is written:
//! on bad input the command fails with an `::error::` and `$GITHUB_OUTPUT` is left untouched.
//! Each leg carries its input fingerprint; legs a verified build stamp vouches for are dropped
//! ([`crate::matrix::skip`]), so the matrix may be empty (`count` 0).

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

use super::args::{S3Args, TrustArgs};
use super::{bool_flag_or_input, flag_or_input};
use crate::buildcache::publish::PublishMode;
use crate::catalog::Catalog;
use crate::fingerprint::Sources;
use crate::gha::Runner;
use crate::matrix::skip::{self, SkipRequest, StampSource};
use crate::matrix::{self, Kind, Request};

/// Expand requested versions into a validated GitHub Actions build matrix.
#[derive(Debug, Parser)]
#[command(
    name = "prepare-matrix",
    version,
    after_help = "Outputs: matrix (JSON {\"include\":[...]}) and count, to $GITHUB_OUTPUT inside Actions, else to stdout as key=value.\n\nExamples:\n  prepare-matrix --kind compiler --compiler-versions all\n  prepare-matrix --kind slurm --slurm-versions '25.11 24.11' --compiler-versions 13.4.0\n  prepare-matrix --kind slurm --architectures all --gpu\n  prepare-matrix --kind tarball --platforms el8,ubuntu24.04\n  prepare-matrix --kind slurm --trusted-fingerprint <FPR> --source-dir .   # skip legs a signed stamp shows are built\n  prepare-matrix --kind slurm --trusted-fingerprint <FPR> --force          # build every leg\n  INPUT_KIND=tarball INPUT_SLURM_VERSIONS=25.11 prepare-matrix"
)]
pub struct Args {
    /// What the matrix builds: compiler, slurm or tarball [input: kind]
    #[arg(long)]
    pub kind: Option<String>,
    /// GCC versions: `all` or a comma/space separated list; default all (for slurm and tarball:
    /// the compilers paired with Slurm) [input: compiler_versions]
    #[arg(long)]
    pub compiler_versions: Option<String>,
    /// Slurm releases: `all` or a comma/space separated list; default all [input: slurm_versions]
    #[arg(long)]
    pub slurm_versions: Option<String>,
    /// Target architectures: `all` or a list (amd64, arm64); default amd64 [input: architectures]
    #[arg(long)]
    pub architectures: Option<String>,
    /// Build platforms (OS images): `all` or a list (el8, el9, ubuntu24.04); default the
    /// catalog's default, el8 (the lowest glibc floor) [input: platforms]
    #[arg(long)]
    pub platforms: Option<String>,
    /// Slurm and tarball legs build with GPU support; their buildcache prefixes and tarball keys
    /// carry `-gpu` (true/false; default false; ignored for compiler) [input: gpu]
    #[arg(long)]
    pub gpu: bool,
    /// Use this catalog file instead of the embedded one [input: catalog] [env: SLURM_FACTORY_CATALOG]
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Look up each leg's signed build stamp and drop the legs it shows are built from the same
    /// inputs (true/false; default true) [input: skip_built]
    #[arg(long, value_name = "BOOL")]
    pub skip_built: Option<bool>,
    /// Build every leg, whatever the stamps say [input: force]
    #[arg(long)]
    pub force: bool,
    /// What the run publishes: all, slurm-only or none (none never skips; a slurm-only stamp
    /// does not satisfy all) [input: publish]
    #[arg(long)]
    pub publish: Option<String>,
    /// Where stamps are read: auto (S3 when AWS credentials are set, else the catalog's public
    /// URLs), s3 or public [input: stamps_from]
    #[arg(long)]
    pub stamps_from: Option<String>,
    /// Read spack-repo/ and docker/ from this checkout for the fingerprints (default: the copies
    /// embedded in this binary) [input: source_dir]
    #[arg(long, value_name = "DIR")]
    pub source_dir: Option<PathBuf>,
    /// Fingerprint the image context the legs build from (their `--docker-context`) instead of
    /// docker/<platform>/ [env: SLURM_FACTORY_DOCKER_CONTEXT]
    #[arg(long, value_name = "DIR")]
    pub docker_context: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub trust: TrustArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub s3: S3Args,
}

/// Runs `prepare-matrix`.
pub async fn run(args: Args, runner: Runner) -> Result<()> {
    let kind = flag_or_input(args.kind, &runner, "kind").ok_or_else(|| {
        anyhow::anyhow!(
            "no kind given: pass --kind or the `kind` input, one of compiler, slurm, tarball"
        )
    })?;
    let kind: Kind = kind.parse()?;
    let catalog_path = super::catalog_path(args.catalog, &runner);
    let catalog = Catalog::load_or_embedded(catalog_path.as_deref())?;
    let request = Request {
        kind,
        compiler_versions: flag_or_input(args.compiler_versions, &runner, "compiler_versions"),
        slurm_versions: flag_or_input(args.slurm_versions, &runner, "slurm_versions"),
        architectures: flag_or_input(args.architectures, &runner, "architectures"),
        platforms: flag_or_input(args.platforms, &runner, "platforms"),
        gpu: bool_flag_or_input(args.gpu.then_some(true), &runner, "gpu", false)?,
    };
    let matrix = matrix::plan(&catalog, &request)?;
    let sources = match flag_or_input(
        args.source_dir.map(|p| p.display().to_string()),
        &runner,
        "source_dir",
    )
    .filter(|d| !d.trim().is_empty())
    {
        Some(d) => Sources::checkout(d),
        None => Sources::embedded(),
    }
    .with_docker_context(super::docker_context(args.docker_context, &runner));
    let legs = skip::fingerprinted(matrix, &catalog, &sources)?;
    let pins = crate::spack::keys::with_catalog_pins(args.trust.resolve(&runner)?, &catalog);
    let stamps_from = flag_or_input(args.stamps_from, &runner, "stamps_from");
    let source =
        StampSource::from_setting(stamps_from.as_deref(), args.s3.resolve(&runner)?, &runner)?;
    let req = SkipRequest {
        lookup: bool_flag_or_input(args.skip_built, &runner, "skip_built", true)?,
        force: bool_flag_or_input(args.force.then_some(true), &runner, "force", false)?,
        publish: flag_or_input(args.publish, &runner, "publish")
            .filter(|p| !p.trim().is_empty())
            .as_deref()
            .unwrap_or("all")
            .parse::<PublishMode>()?,
        pins,
        source,
    };
    skip::decide(&catalog, kind, legs, &req, &runner)
        .await
        .report(&runner)
}
