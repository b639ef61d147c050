//! `slurm-factory verify`: check every signature and blob of a buildcache.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;

use super::{bool_flag_or_input, flag_or_input, trusted_keys_from};
use crate::buildcache::storage;
use crate::buildcache::verify::{VerifyOptions, verify_buildcache};
use crate::gha::Runner;

/// Verify every signed manifest and every blob of a buildcache against trusted keys.
#[derive(Debug, Parser)]
#[command(
    name = "verify",
    after_help = "Examples:\n  slurm-factory verify --buildcache file:///srv/mirror --trusted-key signer.pub.asc\n  slurm-factory verify --buildcache ./out/buildcache --trusted-key a.asc --trusted-key b.asc\n  slurm-factory verify --buildcache s3://bucket/slurm/25.11/13.4.0/buildcache --trusted-key signer.asc\n  slurm-factory verify --buildcache https://cdn.example.org/slurm/25.11/13.4.0/buildcache --trusted-key signer.asc\n  slurm-factory verify --buildcache http://127.0.0.1:8000/buildcache --allow-insecure-http --trusted-key signer.asc"
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
    /// Read a plain http:// buildcache (loopback tests, private mirrors); signatures are still checked [input: allow_insecure_http]
    #[arg(long)]
    pub allow_insecure_http: bool,
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
    let allow_unsigned = bool_flag_or_input(
        args.allow_unsigned.then_some(true),
        &runner,
        "allow_unsigned",
        false,
    )?;
    let (trusted, key_files) = trusted_keys_from(args.trusted_keys, &runner, "trusted_keys")?;
    if key_files == 0 && !allow_unsigned {
        bail!(
            "no trusted keys: pass --trusted-key <public key file> (repeatable), or --allow-unsigned to check blobs only"
        );
    }
    let opts = storage::OpenOptions {
        allow_insecure_http: bool_flag_or_input(
            args.allow_insecure_http.then_some(true),
            &runner,
            "allow_insecure_http",
            false,
        )?,
        endpoint_url: flag_or_input(args.endpoint_url, &runner, "endpoint_url"),
        region: flag_or_input(args.region, &runner, "region"),
        ..storage::OpenOptions::default()
    };
    let storage = storage::open(&storage::Location::parse(&location)?, &opts, &runner).await?;
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
