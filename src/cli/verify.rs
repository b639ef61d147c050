//! `slurm-factory verify`: check every signature and blob of a buildcache (the engine is
//! [`crate::buildcache::verify`]).

use anyhow::{Context, Result, bail};
use clap::Parser;

use super::args::{S3Args, TrustArgs};
use super::{bool_flag_or_input, flag_or_input};
use crate::buildcache::verify::{VerifyOptions, verify_buildcache};
use crate::buildcache::{layout, storage};
use crate::gha::Runner;

/// Verify every signed manifest and every blob of a buildcache against trusted keys.
#[derive(Debug, Parser)]
#[command(
    name = "verify",
    after_help = "Examples:\n  slurm-factory verify --buildcache file:///srv/mirror --trusted-key signer.pub.asc\n  slurm-factory verify --buildcache ./out/buildcache --trusted-key a.asc --trusted-key b.asc\n  slurm-factory verify --buildcache s3://bucket/slurm/25.11/13.4.0/buildcache --trusted-key signer.asc\n  slurm-factory verify --buildcache file:///srv/mirror --trusted-fingerprint 1A00B8893F4FAE1A76DB389DE145321FBC9F04BD\n  slurm-factory verify --buildcache https://cdn.example.org/slurm/25.11/13.4.0/buildcache --trusted-key signer.asc\n  slurm-factory verify --buildcache http://mirror.internal:8000/buildcache --allow-insecure-http --trusted-key signer.asc"
)]
pub struct Args {
    /// Buildcache URL or directory [input: buildcache]
    #[arg(long)]
    pub buildcache: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub trust: TrustArgs,
    /// Cap on a spec blob's decompressed JSON, in bytes [input: max_spec_bytes]
    #[arg(long)]
    pub max_spec_bytes: Option<u64>,
    /// Accept unsigned spec manifests (still checks blobs) [input: allow_unsigned]
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Read a plain http:// buildcache on a host other than loopback (private mirrors; loopback needs no flag); signatures are still checked [input: allow_insecure_http]
    #[arg(long)]
    pub allow_insecure_http: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub s3: S3Args,
}

/// Runs `verify`.
pub async fn run(args: Args, runner: Runner) -> Result<()> {
    let location = flag_or_input(args.buildcache, &runner, "buildcache")
        .context("no buildcache: pass --buildcache file:///path (or a directory)")?;
    let pins = args.trust.resolve(&runner)?;
    let allow_unsigned = bool_flag_or_input(
        args.allow_unsigned.then_some(true),
        &runner,
        "allow_unsigned",
        false,
    )?;
    if pins.is_empty() && !allow_unsigned {
        bail!(
            "no trusted keys: pass --trusted-key <public key file> or --trusted-fingerprint <FPR> (repeatable), or --allow-unsigned to check blobs only"
        );
    }
    let max_spec_json = match args.max_spec_bytes {
        Some(n) => n,
        None => match flag_or_input(None, &runner, "max_spec_bytes") {
            Some(s) => s
                .parse()
                .with_context(|| format!("max_spec_bytes {s:?} is not a number of bytes"))?,
            None => layout::SPEC_JSON_MAX_BYTES,
        },
    };
    let open = storage::OpenOptions {
        allow_insecure_http: bool_flag_or_input(
            args.allow_insecure_http.then_some(true),
            &runner,
            "allow_insecure_http",
            false,
        )?,
        writable: false,
        s3: args.s3.resolve(&runner)?,
    };
    let storage = storage::open(&storage::Location::parse(&location)?, &open, &runner).await?;
    let trusted = pins.resolve(storage.as_ref()).await?;
    for fpr in trusted.fingerprints() {
        runner.info(&format!("trusting {fpr}"));
    }
    let opts = VerifyOptions {
        allow_unsigned,
        max_spec_json,
    };
    let report = verify_buildcache(storage.as_ref(), &trusted, &opts).await?;
    report.log(&runner);
    runner.append_summary(&report.markdown())?;
    report.outcome()?;
    runner.info(&format!(
        "verified {} specs in {}",
        report.specs.len(),
        report.url
    ));
    Ok(())
}
