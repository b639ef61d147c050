//! `slurm-factory`: the umbrella CLI for people, one subcommand per action plus `workflows`,
//! `verify`, `fingerprint` and `notify`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use slurm_factory::cli::{
    builder, fingerprint, main_with, notify, preflight, prepare_matrix, report, sign_and_upload,
    tarball_publish, test_install, verify, workflows,
};

/// Build relocatable Slurm and GCC toolchains with Spack in Docker, sign and publish buildcaches.
#[derive(Debug, Parser)]
#[command(
    name = "slurm-factory",
    version,
    after_help = "Examples:\n  slurm-factory build-slurm --slurm-version 25.11 --compiler-version 13.4.0\n  slurm-factory prepare-matrix --kind slurm\n  slurm-factory verify --buildcache file:///srv/mirror --trusted-key signer.asc\n  slurm-factory workflows check\n  slurm-factory preflight --destination s3://my-bucket/slurm/25.11/13.4.0/buildcache\n  slurm-factory report"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Expand requested versions into a GitHub Actions build matrix
    PrepareMatrix(prepare_matrix::Args),
    /// Build a GCC toolchain into an unsigned local buildcache
    BuildCompiler(builder::CompilerArgs),
    /// Build Slurm into an unsigned local buildcache, a view and modules
    BuildSlurm(builder::SlurmArgs),
    /// Sign a local buildcache and publish it
    SignAndUpload(sign_and_upload::Args),
    /// Install from a published buildcache or tarball and smoke-test it
    TestInstall(test_install::Args),
    /// Package and publish a relocatable tarball
    TarballPublish(tarball_publish::Args),
    /// Verify a buildcache's signatures and blobs
    Verify(verify::Args),
    /// Generate or check the GitHub workflows
    Workflows(workflows::Args),
    /// Fingerprint a build's inputs
    Fingerprint(fingerprint::Args),
    /// Post a Slack message about a failed run (SLACK_WEBHOOK_URL; no-op when unset)
    Notify(notify::Args),
    /// Check the signing key, the AWS role and the destination before building
    Preflight(preflight::Args),
    /// One Slurm × GCC table and one Slack message for a whole pipeline run
    Report(report::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    main_with(|runner| async move {
        match cli.command {
            Command::PrepareMatrix(a) => prepare_matrix::run(a, runner).await,
            Command::BuildCompiler(a) => builder::run_compiler(a, runner).await,
            Command::BuildSlurm(a) => builder::run_slurm(a, runner).await,
            Command::SignAndUpload(a) => sign_and_upload::run(a, runner).await,
            Command::TestInstall(a) => test_install::run(a, runner).await,
            Command::TarballPublish(a) => tarball_publish::run(a, runner).await,
            Command::Verify(a) => verify::run(a, runner).await,
            Command::Workflows(a) => workflows::run(a, runner).await,
            Command::Fingerprint(a) => fingerprint::run(a, runner).await,
            Command::Notify(a) => notify::run(a, runner).await,
            Command::Preflight(a) => preflight::run(a, runner).await,
            Command::Report(a) => report::run(a, runner).await,
        }
    })
}
