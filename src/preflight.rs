//! Preflight: what publishing will need, checked in seconds before an hours-long build.
//!
//! A build leg's first step runs this (`slurm-factory preflight`, the `preflight` action), so a
//! bad secret fails the leg at once with a clear message instead of after six to eight hours of
//! building. The checks are exactly the ones publishing performs, because they are the same code:
//! [`Publisher::prepare`] loads the signing key (it parses, is neither expired nor revoked, and
//! matches `GPG_KEY_ID`), assumes the AWS role with the job's OIDC token and checks that the
//! bucket exists and can be listed; [`Publisher::probe_write`] then proves the prefix accepts a
//! conditional write (the index merge depends on it) and removes the probe again.
//! `--publish none` checks nothing.
//!
//! A passed preflight writes the step output `fingerprint`: the primary fingerprint (40
//! upper-case hex digits) of the signing key. The pipelines pin it for the later steps of the
//! leg (the compiler buildcache a Slurm build installs its toolchain from, and test-install),
//! because that key signed what they read.

use anyhow::{Context, Result};

use crate::buildcache::sign::PublishMode;
use crate::cli::sign_and_upload::{Publisher, S3Flags};
use crate::gha::Runner;
use crate::pgp::KeyFingerprint;

/// What a leg will publish, and where.
#[derive(Debug, Clone)]
pub struct Request {
    /// The destination buildcache (or tarball) URL: `s3://bucket/prefix` or `file:///path`.
    pub destination: String,
    /// What will be published; [`PublishMode::None`] skips every check.
    pub mode: PublishMode,
    /// Read the armored secret key from this file instead of `GPG_PRIVATE_KEY`.
    pub key_file: Option<std::path::PathBuf>,
    /// S3 options.
    pub s3: S3Flags,
}

/// What a successful preflight checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `--publish none`: nothing to check.
    Skipped,
    /// Key, credentials, bucket and a conditional write all passed; the signing key's primary
    /// fingerprint.
    Passed(KeyFingerprint),
}

/// Runs the checks, writes a line per check and a job-summary section. Errors name what is wrong
/// and what to fix; nothing is left at the destination.
pub async fn run(runner: &Runner, req: &Request) -> Result<Outcome> {
    if req.mode == PublishMode::None {
        runner.notice("preflight: publish none, so there is nothing to check");
        runner.set_output("fingerprint", "")?;
        return Ok(Outcome::Skipped);
    }
    let publisher = Publisher::prepare(
        runner,
        &req.destination,
        req.key_file.as_deref(),
        req.s3.clone(),
        req.mode,
        false,
    )
    .await
    .with_context(|| {
        format!(
            "preflight: publishing to {} would fail, so the build did not start",
            req.destination
        )
    })?;
    let fingerprint = publisher
        .fingerprint()
        .context("preflight: no signing key was loaded")?;
    runner.info(&format!(
        "preflight: the signing key {fingerprint} loads and matches GPG_KEY_ID; the destination is reachable"
    ));
    publisher.probe_write(runner).await.with_context(|| {
        format!(
            "preflight: {} does not accept the writes publishing needs, so the build did not start",
            req.destination
        )
    })?;
    runner.info(&format!(
        "preflight: {} accepts conditional writes (probe written, refused when repeated, removed)",
        req.destination
    ));
    runner.append_summary(&format!(
        "### Preflight\n\nPublishing to `{}` will work: the signing key loads (not expired, not revoked, matches `GPG_KEY_ID`), the credentials are accepted and the destination takes conditional writes.\n",
        req.destination
    ))?;
    runner.set_output("fingerprint", fingerprint.as_str())?;
    Ok(Outcome::Passed(fingerprint))
}
