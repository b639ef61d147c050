//! `slurm-factory preflight`: check the signing key, the AWS role and the destination before a
//! build (see [`crate::preflight`]).

use anyhow::{Context, Result};
use clap::Parser;

use super::args::{S3Args, SigningKeyArgs, publish_target};
use super::flag_or_input;
use crate::buildcache::publish::PublishMode;
use crate::gha::Runner;
use crate::preflight::{self, Request};

/// Check, in seconds and before building, everything publishing will need.
///
/// The signing key (GPG_PRIVATE_KEY or --key-file, unlocked with GPG_PASSPHRASE) must parse, be
/// neither expired nor revoked and match GPG_KEY_ID; for s3:// the role (AWS_ROLE_ARN or
/// --role-arn) must be assumable with the job's OIDC token, the bucket must exist and the prefix
/// must accept a conditional write (a probe object, written once, refused when written again,
/// then deleted). `--publish none` checks nothing.
#[derive(Debug, Parser)]
#[command(
    name = "preflight",
    after_help = "Examples:\n  GPG_PRIVATE_KEY=\"$(cat key.asc)\" GPG_KEY_ID=E145321FBC9F04BD slurm-factory preflight --destination s3://my-bucket/slurm/25.11/13.4.0/buildcache\n  slurm-factory preflight --destination file:///srv/mirror --key-file key.asc\n  slurm-factory preflight --destination s3://bucket/p --endpoint-url http://127.0.0.1:9000 --publish slurm-only"
)]
pub struct Args {
    /// Where the build will publish: s3://bucket/prefix or file:///path [input: destination]
    #[arg(long)]
    pub destination: Option<String>,
    /// What will be published: all, slurm-only or none (none checks nothing) [input: publish]
    #[arg(long)]
    pub publish: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub key: SigningKeyArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub s3: S3Args,
}

/// Runs `preflight`.
pub async fn run(args: Args, runner: Runner) -> Result<()> {
    let mode: PublishMode = flag_or_input(args.publish, &runner, "publish")
        .as_deref()
        .unwrap_or("all")
        .parse()?;
    if mode == PublishMode::None {
        return preflight::run(&runner, Request::Nothing).await.map(|_| ());
    }
    let destination = flag_or_input(args.destination, &runner, "destination")
        .filter(|d| !d.trim().is_empty())
        .context(
            "no destination: pass --destination s3://bucket/prefix or file:///path (the action input `destination`)",
        )?;
    let context =
        format!("preflight: publishing to {destination} would fail, so the build did not start");
    let target = publish_target(destination, &args.key, &args.s3, &runner).context(context)?;
    preflight::run(
        &runner,
        Request::Publish {
            mode,
            target: Box::new(target),
        },
    )
    .await
    .map(|_| ())
}
