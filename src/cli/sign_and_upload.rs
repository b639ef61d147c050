//! `sign-and-upload`: sign a local buildcache and publish it. The engine is
//! [`crate::buildcache::publish`]; this is its argument surface.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

use super::args::{S3Args, SigningKeyArgs, load_trusted_key_files, paths_or_input, publish_target};
use super::{bool_flag_or_input, flag_or_input};
use crate::buildcache::publish::{PublishMode, Publisher};
use crate::gha::Runner;

/// Sign a Spack buildcache with OpenPGP and publish it (file:// or s3://).
///
/// The signing key comes from `GPG_PRIVATE_KEY` (ASCII-armored, or base64 of it), unlocked with
/// `GPG_PASSPHRASE` and selected by `GPG_KEY_ID`, or from `--key-file`. It stays in memory.
/// Every file of the source is checked before anything is written; an already clearsigned
/// manifest is accepted only when it verifies against the signing key or a `--trusted-key`.
#[derive(Debug, Parser)]
#[command(
    name = "sign-and-upload",
    version,
    after_help = "Examples:\n  GPG_PRIVATE_KEY=\"$(cat key.asc)\" sign-and-upload --source ./out/buildcache --destination file:///srv/mirror\n  sign-and-upload --source ./out/buildcache --destination s3://bucket/slurm/25.11/13.4.0/buildcache --key-file key.asc\n  sign-and-upload --source ./out/buildcache --destination s3://bucket/p --endpoint-url http://127.0.0.1:9000 --dry-run\n  sign-and-upload --source ./out/buildcache --destination file:///srv/mirror --key-file key.asc --publish-key-fingerprint 1A00B8893F4FAE1A76DB389DE145321FBC9F04BD"
)]
pub struct Args {
    /// The local buildcache written by the build [input: source]
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Destination buildcache URL: file:///path or s3://bucket/prefix [input: destination]
    #[arg(long)]
    pub destination: Option<String>,
    /// Which specs to publish: all, slurm-only (Slurm and its link/run dependency closure: a
    /// cache that installs Slurm on its own, without the other roots or build-only tools) or
    /// none [input: publish]
    #[arg(long)]
    pub publish: Option<String>,
    /// Report what would change without writing anything [input: dry_run]
    #[arg(long)]
    pub dry_run: bool,
    /// Public key accepted on already-signed source manifests (repeatable) [input: trusted_keys, one per line]
    #[arg(long = "trusted-key")]
    pub trusted_keys: Vec<PathBuf>,
    /// Fingerprint of another key to publish from the source and to accept in the destination's key index (repeatable) [input: publish_key_fingerprints, one per line]
    #[arg(long = "publish-key-fingerprint")]
    pub publish_key_fingerprints: Vec<String>,
    /// The leg being published, as the workflow passes `${{ toJSON(matrix) }}`: after the
    /// index, a signed build stamp with the leg's fingerprint (recomputed here and checked
    /// against the plan's) is written beside the buildcache; without it, no stamp [input: leg]
    #[arg(long, value_name = "JSON")]
    pub leg: Option<String>,
    /// Keep a destination key index that names keys this run does not know [input: accept_unknown_keys]
    #[arg(long)]
    pub accept_unknown_keys: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub key: SigningKeyArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub s3: S3Args,
}

/// Runs `sign-and-upload`.
pub async fn run(args: Args, runner: Runner) -> Result<()> {
    let publish: PublishMode = flag_or_input(args.publish, &runner, "publish")
        .as_deref()
        .unwrap_or("all")
        .parse()?;
    let dry_run = bool_flag_or_input(args.dry_run.then_some(true), &runner, "dry_run", false)?;
    let accept_unknown_keys = bool_flag_or_input(
        args.accept_unknown_keys.then_some(true),
        &runner,
        "accept_unknown_keys",
        false,
    )?;
    let destination = flag_or_input(args.destination, &runner, "destination").context(
        "no destination: pass --destination file:///path (or set the action input `destination`)",
    )?;
    let source = args
        .source
        .or_else(|| runner.input("source").map(PathBuf::from))
        .context("no source: pass --source <dir> (the buildcache the build wrote)")?;
    let mut fingerprints = args.publish_key_fingerprints;
    if fingerprints.is_empty() {
        fingerprints = runner.input_list("publish_key_fingerprints");
    }
    let fingerprints = fingerprints
        .iter()
        .map(|f| f.parse())
        .collect::<Result<Vec<_>>>()?;
    let trusted = load_trusted_key_files(
        &paths_or_input(&args.trusted_keys, &runner, "trusted_keys"),
        &runner,
    )?;
    // The leg's fingerprint is checked before anything is written.
    let stamp = match flag_or_input(args.leg, &runner, "leg").filter(|l| !l.trim().is_empty()) {
        Some(json) if publish != PublishMode::None => {
            let catalog = crate::catalog::Catalog::load_or_embedded(
                super::catalog_path(None, &runner).as_deref(),
            )?;
            let kinds = [crate::matrix::Kind::Compiler, crate::matrix::Kind::Slurm];
            Some(
                crate::matrix::MatrixEntry::leg_fingerprint(
                    &json,
                    &kinds,
                    &catalog,
                    &crate::fingerprint::Sources::embedded()
                        .with_docker_context(super::docker_context(None, &runner)),
                    "nothing was stamped",
                )?
                .1,
            )
        }
        _ => None,
    };
    let publisher = if publish == PublishMode::None {
        Publisher::none()
    } else {
        // The key loads before anything touches the network.
        let target = publish_target(destination, &args.key, &args.s3, &runner)?;
        Publisher::prepare(&runner, target, publish, dry_run).await?
    };
    let done = publisher
        .with_policy(trusted, fingerprints, accept_unknown_keys)
        .publish_done(&runner, &source)
        .await?;
    match (done, stamp) {
        (Some(done), Some(f)) => crate::stamp::stamp_buildcache(&runner, &done, &f).await,
        _ => Ok(()),
    }
}
