//! `slurm-factory verify`: check every signature and blob of a buildcache.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;

use super::{bool_flag_or_input, flag_or_input};
use crate::buildcache::trust::pinned_keys;
use crate::buildcache::verify::{VerifyOptions, verify_buildcache};
use crate::buildcache::{Storage, layout, storage};
use crate::gha::Runner;
use crate::pgp::KeyFingerprint;

/// Verify every signed manifest and every blob of a buildcache against trusted keys.
#[derive(Debug, Parser)]
#[command(
    name = "verify",
    after_help = "Examples:\n  slurm-factory verify --buildcache file:///srv/mirror --trusted-key signer.pub.asc\n  slurm-factory verify --buildcache ./out/buildcache --trusted-key a.asc --trusted-key b.asc\n  slurm-factory verify --buildcache s3://bucket/slurm/25.11/13.4.0/buildcache --trusted-key signer.asc\n  slurm-factory verify --buildcache file:///srv/mirror --trusted-fingerprint 1A00B8893F4FAE1A76DB389DE145321FBC9F04BD"
)]
pub struct Args {
    /// Buildcache URL or directory [input: buildcache]
    #[arg(long)]
    pub buildcache: Option<String>,
    /// Armored public key(s) to trust (repeatable) [input: trusted_keys, one per line]
    #[arg(long = "trusted-key")]
    pub trusted_keys: Vec<PathBuf>,
    /// Fingerprint(s) to trust (repeatable): the key the buildcache publishes is used only if
    /// its fingerprint is exactly this one [input: trusted_fingerprints, one per line]
    #[arg(long = "trusted-fingerprint")]
    pub trusted_fingerprints: Vec<String>,
    /// Cap on a spec blob's decompressed JSON, in bytes [input: max_spec_bytes]
    #[arg(long)]
    pub max_spec_bytes: Option<u64>,
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
    let mut fingerprints = args.trusted_fingerprints;
    if fingerprints.is_empty() {
        fingerprints = runner.input_list("trusted_fingerprints");
    }
    let fingerprints = fingerprints
        .iter()
        .map(|f| f.parse::<KeyFingerprint>())
        .collect::<Result<Vec<_>>>()?;
    let allow_unsigned = bool_flag_or_input(
        args.allow_unsigned.then_some(true),
        &runner,
        "allow_unsigned",
        false,
    )?;
    if key_files.is_empty() && fingerprints.is_empty() && !allow_unsigned {
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
    let trusted = pinned_keys(storage.as_ref(), &key_files, &fingerprints).await?;
    for fpr in trusted.fingerprints() {
        runner.info(&format!("trusting {fpr}"));
    }
    let opts = VerifyOptions {
        allow_unsigned,
        max_spec_json,
    };
    let report = verify_buildcache(storage.as_ref(), &trusted, &opts).await?;
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
    for k in &report.keys {
        match &k.problem {
            Some(p) => runner.error(&format!("published key {}: {p}", k.fingerprint)),
            None if !k.trusted => runner.info(&format!(
                "the cache publishes key {}, which is not trusted (pin it to trust it)",
                k.fingerprint
            )),
            None => {}
        }
    }
    for n in &report.notes {
        runner.info(n);
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
        .chain(report.keys.iter().filter_map(|k| {
            k.problem
                .as_ref()
                .map(|p| format!("published key {}: {p}", k.fingerprint))
        }))
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
