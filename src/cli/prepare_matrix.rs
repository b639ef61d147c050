//! `prepare-matrix`: expand the requested versions into a GitHub Actions build matrix.
//!
//! Outputs `matrix` (`{"include":[...]}`, see [`crate::matrix::MatrixEntry`]) and `count`, and
//! a Markdown table in the job summary. Every input is validated before anything is written:
//! on bad input the command fails with an `::error::` and `$GITHUB_OUTPUT` is left untouched.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

use crate::catalog::Catalog;
use crate::gha::Runner;
use crate::matrix::{self, Kind, Request};

use super::{bool_flag_or_input, flag_or_input};

/// Expand requested versions into a validated GitHub Actions build matrix.
#[derive(Debug, Parser)]
#[command(
    name = "prepare-matrix",
    version,
    after_help = "Outputs: matrix (JSON {\"include\":[...]}) and count, to $GITHUB_OUTPUT inside Actions, else to stdout as key=value.\n\nExamples:\n  prepare-matrix --kind compiler --compiler-versions all\n  prepare-matrix --kind slurm --slurm-versions '25.11 24.11' --compiler-versions 13.4.0\n  prepare-matrix --kind slurm --architectures all --gpu\n  prepare-matrix --kind tarball --platforms el8,ubuntu24.04\n  INPUT_KIND=tarball INPUT_SLURM_VERSIONS=25.11 prepare-matrix"
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
    let json = matrix.to_json();
    let count = matrix.len().to_string();
    runner.set_outputs(&[("matrix", &json), ("count", &count)])?;
    runner.append_summary(&matrix.summary_markdown())?;
    if runner.in_actions() {
        let jobs = if matrix.len() == 1 { "job" } else { "jobs" };
        runner.info(&format!("{kind} matrix: {count} {jobs}"));
    }
    Ok(())
}
