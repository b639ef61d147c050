//! `sign-and-upload`: sign an unsigned local buildcache and publish it.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

use crate::gha::Runner;

/// Sign an unsigned Spack buildcache with OpenPGP and publish it (file:// or s3://).
///
/// The signing key comes from `GPG_PRIVATE_KEY` (ASCII-armored, or base64 of it), unlocked with
/// `GPG_PASSPHRASE` and selected by `GPG_KEY_ID`, or from `--key-file`. It stays in memory.
#[derive(Debug, Parser)]
#[command(
    name = "sign-and-upload",
    version,
    after_help = "Examples:\n  GPG_PRIVATE_KEY=\"$(cat key.asc)\" sign-and-upload --source ./out/buildcache --destination file:///srv/mirror\n  sign-and-upload --source ./out/buildcache --destination s3://bucket/slurm/25.11/13.4.0/buildcache --key-file key.asc\n  sign-and-upload --source ./out/buildcache --destination s3://bucket/p --endpoint-url http://127.0.0.1:9000 --dry-run"
)]
pub struct Args {
    /// The unsigned local buildcache written by the build [input: source]
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Destination buildcache URL: file:///path or s3://bucket/prefix [input: destination]
    #[arg(long)]
    pub destination: Option<String>,
    /// Read the armored secret key from this file instead of GPG_PRIVATE_KEY [input: key_file]
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Which specs to publish: all, slurm-only or none [input: publish]
    #[arg(long)]
    pub publish: Option<String>,
    /// Report what would change without writing anything [input: dry_run]
    #[arg(long)]
    pub dry_run: bool,
    /// S3-compatible endpoint (path-style addressing) [input: endpoint_url] [env: AWS_ENDPOINT_URL]
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// AWS region [input: region]
    #[arg(long)]
    pub region: Option<String>,
    /// IAM role to assume with the job's OIDC token (AWS_ROLE_ARN) [input: role_arn]
    #[arg(long)]
    pub role_arn: Option<String>,
}

/// Runs `sign-and-upload`.
pub async fn run(_args: Args, _runner: Runner) -> Result<()> {
    Err(super::not_implemented("sign-and-upload"))
}
