//! `slurm-factory verify`: check every signature and blob of a buildcache.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;

use super::{bool_flag_or_input, flag_or_input};
use crate::buildcache::verify::{VerifyOptions, verify_buildcache};
use crate::buildcache::{Storage, storage};
use crate::gha::Runner;
use crate::pgp::TrustedKeys;

/// Verify every signed manifest and every blob of a buildcache against trusted keys.
#[derive(Debug, Parser)]
#[command(
    name = "verify",
    after_help = "Examples:\n  slurm-factory verify --buildcache file:///srv/mirror --trusted-key signer.pub.asc\n  slurm-factory verify --buildcache ./out/buildcache --trusted-key a.asc --trusted-key b.asc\n  slurm-factory verify --buildcache s3://bucket/slurm/25.11/13.4.0/buildcache --trusted-key signer.asc"
)]
pub struct Args {
    /// Buildcache URL or directory [input: buildcache]
    #[arg(long)]
    pub buildcache: Option<String>,
    /// Armored public key(s) to trust (repeatable) [input: trusted_keys, one per line]
    #[arg(long = "trusted-key")]
    pub trusted_keys: Vec<PathBuf>,
    /// Accept unsigned spec manifests (still checks blobs) [input: allow_unsigned]
    #[arg(long)]
    pub allow_unsigned: bool,
    /// For s3:// buildcaches: S3-compatible endpoint (path-style) [input: endpoint_url] [env: AWS_ENDPOINT_URL]
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// For s3:// buildcaches: AWS region [input: region]
    #[arg(long)]
    pub region: Option<String>,
}

/// Runs `verify`.
pub async fn run(args: Args, runner: Runner) -> Result<()> {
    let location = flag_or_input(args.buildcache, &runner, "buildcache")
        .context("no buildcache: pass --buildcache file:///path (or a directory)")?;
    let mut key_files = args.trusted_keys;
    if key_files.is_empty() {
        key_files = runner
            .input_list("trusted_keys")
            .into_iter()
            .map(PathBuf::from)
            .collect();
    }
    let allow_unsigned = bool_flag_or_input(
        args.allow_unsigned.then_some(true),
        &runner,
        "allow_unsigned",
        false,
    )?;
    if key_files.is_empty() && !allow_unsigned {
        bail!(
            "no trusted keys: pass --trusted-key <public key file> (repeatable), or --allow-unsigned to check blobs only"
        );
    }
    let mut trusted = TrustedKeys::new();
    for f in &key_files {
        let bytes = std::fs::read(f)
            .with_context(|| format!("cannot read trusted key file {}", f.display()))?;
        let fprs = trusted
            .add_armored(&bytes)
            .with_context(|| format!("{} is not an OpenPGP public key", f.display()))?;
        for fpr in fprs {
            runner.info(&format!("trusting {fpr} (from {})", f.display()));
        }
    }
    let storage: Box<dyn Storage> = match storage::Location::parse(&location)? {
        storage::Location::S3 { bucket, prefix } => {
            let url = crate::s3::S3Url::new(bucket, prefix)?;
            let settings = crate::s3::S3Settings::resolve(
                &runner,
                flag_or_input(args.endpoint_url, &runner, "endpoint_url"),
                flag_or_input(args.region, &runner, "region"),
                None,
            )?;
            let conn = crate::s3::credentials::connection(&runner, &settings).await?;
            Box::new(crate::s3::store::S3Store::new(conn.client, url))
        }
        _ => Box::new(storage::open_local_or_explain(&location)?),
    };
    let report = verify_buildcache(
        storage.as_ref(),
        &trusted,
        &VerifyOptions { allow_unsigned },
    )
    .await?;
    for v in &report.specs {
        if v.ok() {
            runner.info(&format!(
                "ok      {} (signer {}, {} blobs)",
                v.name(),
                v.signer
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unsigned".into()),
                v.blobs_ok
            ));
        } else {
            runner.error(&format!("FAILED  {}: {}", v.name(), v.problems.join("; ")));
        }
    }
    for p in &report.index_problems {
        runner.error(&format!("index: {p}"));
    }
    runner.append_summary(&report.markdown())?;
    if report.ok() {
        runner.info(&format!(
            "verified {} specs in {}",
            report.specs.len(),
            report.url
        ));
        return Ok(());
    }
    let failed: Vec<String> = report
        .failures()
        .map(|v| format!("{}: {}", v.name(), v.problems.join("; ")))
        .chain(report.index_problems.iter().map(|p| format!("index: {p}")))
        .collect();
    if report.specs.is_empty() {
        bail!("{} holds no spec manifests to verify", report.url);
    }
    bail!(
        "verification of {} failed ({} of {} specs):\n  - {}",
        report.url,
        report.failures().count(),
        report.specs.len(),
        failed.join("\n  - ")
    )
}
