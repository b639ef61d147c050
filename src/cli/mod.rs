//! Argument surfaces and entry points of the binaries.
//!
//! Every action binary is `clap` over one module here: `Args` (the flags, which also read the
//! action's `INPUT_*` variables, flags winning) and `run`. The umbrella `slurm-factory` CLI
//! embeds the same `Args` as subcommands, so both spellings behave identically.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::gha::Runner;

pub(crate) mod args;
pub mod builder;
pub mod fingerprint;
pub mod notify;
pub mod preflight;
pub mod prepare_matrix;
pub mod report;
pub mod sign_and_upload;
pub(crate) mod signing_key;
pub mod tarball_publish;
pub mod test_install;
pub mod verify;
pub mod workflows;

/// Exit code for a failure the user can fix (bad input, missing tool).
pub const EXIT_FAILURE: u8 = 1;

/// Runs an entry point on a Tokio runtime and turns an error into an `::error::` annotation
/// (or a red message on a terminal) and a non-zero exit code.
pub fn main_with<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce(Runner) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let runner = Runner::from_env();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            runner.error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match rt.block_on(f(runner.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            runner.error(&format!("{e:#}"));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `flag` if given, else input `name` of the action.
pub fn flag_or_input(flag: Option<String>, runner: &Runner, name: &str) -> Option<String> {
    flag.or_else(|| runner.input(name))
}

/// `flag` if given, else input `name`, else the environment variable `env` (a default for
/// every step of a replay or a fork's runners, e.g. `SLURM_FACTORY_CATALOG`); empty values
/// count as unset.
pub fn flag_input_or_env(
    flag: Option<PathBuf>,
    runner: &Runner,
    name: &str,
    env: &str,
) -> Option<PathBuf> {
    flag.or_else(|| runner.input(name).map(PathBuf::from))
        .or_else(|| runner.var(env).filter(|v| !v.is_empty()).map(PathBuf::from))
}

/// The image context a build uses instead of the embedded docker/: `--docker-context`, else
/// input `docker_context`, else `SLURM_FACTORY_DOCKER_CONTEXT`. The build steps build from it,
/// and every step that fingerprints a leg (plan, build, publish) hashes it as the `docker`
/// ingredient ([`crate::fingerprint::Sources::with_docker_context`]).
pub fn docker_context(flag: Option<PathBuf>, runner: &Runner) -> Option<PathBuf> {
    flag_input_or_env(
        flag,
        runner,
        "docker_context",
        crate::docker::context::DOCKER_CONTEXT_ENV,
    )
}

/// The catalog file to use instead of the embedded one: `--catalog`, else input `catalog`,
/// else `SLURM_FACTORY_CATALOG`.
pub fn catalog_path(flag: Option<PathBuf>, runner: &Runner) -> Option<PathBuf> {
    flag_input_or_env(flag, runner, "catalog", "SLURM_FACTORY_CATALOG")
}

/// `flag` if given, else boolean input `name`, else `default`.
pub fn bool_flag_or_input(
    flag: Option<bool>,
    runner: &Runner,
    name: &str,
    default: bool,
) -> Result<bool> {
    Ok(match flag {
        Some(b) => b,
        None => runner.input_bool(name)?.unwrap_or(default),
    })
}
