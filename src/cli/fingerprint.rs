//! `slurm-factory fingerprint`: the input fingerprint of one leg ([`crate::fingerprint`]).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Parser;

use super::{catalog_path, flag_or_input};
use crate::catalog::{Arch, Catalog, GccVersion};
use crate::fingerprint::{self, Sources};
use crate::gha::Runner;
use crate::spack::{Job, SlurmJobRequest};

/// Print the input fingerprint of one leg: a SHA-256 of everything that can change what it builds
/// (the tool's version, the leg as the catalog resolves it, the generated Spack environment, the
/// spack-repo/ recipes, the docker/ image context and the Spack commits it pins), with every
/// ingredient and its own hash. Formatting-only edits of the catalog change nothing.
#[derive(Debug, Parser)]
#[command(
    name = "fingerprint",
    after_help = "Examples:\n  slurm-factory fingerprint --slurm-version 25.11 --compiler-version 13.4.0\n  slurm-factory fingerprint --kind compiler --compiler-version 14.2.0 --json\n  slurm-factory fingerprint --kind tarball --slurm-version 24.11 --compiler-version 13.4.0 --gpu --arch arm64\n  slurm-factory fingerprint --slurm-version 25.11 --compiler-version 13.4.0 --source-dir .   # recipes from this checkout"
)]
pub struct Args {
    /// compiler, slurm (default) or tarball
    #[arg(long)]
    pub kind: Option<String>,
    /// Slurm release (default from the catalog)
    #[arg(long)]
    pub slurm_version: Option<String>,
    /// GCC toolchain (default from the catalog)
    #[arg(long)]
    pub compiler_version: Option<String>,
    /// Target architecture (default from the catalog)
    #[arg(long)]
    pub arch: Option<String>,
    /// A GPU build (Slurm and tarball legs)
    #[arg(long)]
    pub gpu: bool,
    /// Build platform: el8, el9 or ubuntu24.04 (default from the catalog)
    #[arg(long)]
    pub platform: Option<String>,
    /// Read spack-repo/ and docker/ from this checkout instead of the copies embedded in the binary
    #[arg(long, value_name = "DIR")]
    pub source_dir: Option<PathBuf>,
    /// Hash this image context as the `docker` ingredient, as a build from it does
    /// [env: SLURM_FACTORY_DOCKER_CONTEXT]
    #[arg(long, value_name = "DIR")]
    pub docker_context: Option<PathBuf>,
    /// Print JSON: {"leg", "fingerprint", "ingredients": {name: {"value", "sha256"}}}
    #[arg(long)]
    pub json: bool,
    /// Use this catalog file instead of the embedded one [env: SLURM_FACTORY_CATALOG]
    #[arg(long)]
    pub catalog: Option<PathBuf>,
}

/// Runs `fingerprint`.
pub async fn run(args: Args, runner: Runner) -> Result<()> {
    let catalog = Catalog::load_or_embedded(catalog_path(args.catalog, &runner).as_deref())?;
    let kind = flag_or_input(args.kind, &runner, "kind").unwrap_or_else(|| "slurm".into());
    let gcc: GccVersion = match args.compiler_version {
        Some(v) => v.parse()?,
        None => catalog.compilers.default.clone(),
    };
    let arch = args
        .arch
        .map(Arch)
        .unwrap_or_else(|| catalog.architectures.default.clone());
    let platform = args.platform.map(crate::catalog::PlatformName);
    let (job, tarball) = match kind.as_str() {
        "compiler" => {
            if args.gpu || args.slurm_version.is_some() {
                bail!(
                    "a compiler leg has no Slurm release and no GPU variant: drop --slurm-version/--gpu"
                );
            }
            (
                Job::compiler_on(&catalog, gcc, arch, platform.as_ref())?,
                false,
            )
        }
        "slurm" | "tarball" => {
            let slurm = match args.slurm_version {
                Some(v) => v.parse()?,
                None => catalog.slurm.default.clone(),
            };
            let job = SlurmJobRequest {
                slurm,
                gcc,
                gpu: args.gpu,
                arch,
                platform,
                compiler_mirror: None,
                slurm_mirror: None,
            }
            .resolve(&catalog)?;
            (job, kind == "tarball")
        }
        other => bail!("--kind {other:?} is not one of compiler, slurm, tarball"),
    };
    let sources = match args.source_dir {
        Some(d) => Sources::checkout(d),
        None => Sources::embedded(),
    }
    .with_docker_context(super::docker_context(args.docker_context, &runner));
    let f = fingerprint::of(&job, tarball, &sources)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&f)?);
    } else {
        print!("{}", f.text());
    }
    Ok(())
}
