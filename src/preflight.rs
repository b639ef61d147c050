//! Preflight: what publishing will need, checked in seconds before an hours-long build.
//!
//! A build leg's first step runs this (`slurm-factory preflight`, the `preflight` action), so a
//! bad secret fails the leg at once with a clear message instead of after six to eight hours of
//! building. The checks are exactly the ones publishing performs, because they are the same code:
//! the command line loads the signing key (it parses, is neither expired nor revoked, and
//! matches the key id asked for), [`Publisher::prepare`] assumes the AWS role with the job's
//! OIDC token and checks that the bucket exists and can be listed; [`Publisher::probe_write`] then proves the prefix accepts a
//! conditional write (the index merge depends on it) and removes the probe again.
//! `--publish none` checks nothing.
//!
//! A passed preflight writes the step output `fingerprint`: the primary fingerprint (40
//! upper-case hex digits) of the signing key. The pipelines pin it for the later steps of the
//! leg (the compiler buildcache a Slurm build installs its toolchain from, and test-install),
//! because that key signed what they read.

use anyhow::{Context, Result};

use crate::buildcache::publish::PublishMode;
use crate::buildcache::publish::{PublishTarget, Publisher};
use crate::gha::Runner;
use crate::pgp::KeyFingerprint;

/// What a leg will publish, and where.
#[derive(Debug)]
pub enum Request {
    /// `--publish none`: nothing to check.
    Nothing,
    /// Publishing `mode` to `target` (its key already loaded by the caller).
    Publish {
        /// What will be published.
        mode: PublishMode,
        /// The destination, the signing key and the S3 settings.
        target: Box<PublishTarget>,
    },
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
pub async fn run(runner: &Runner, req: Request) -> Result<Outcome> {
    let (mode, target) = match req {
        Request::Publish { mode, target } if mode != PublishMode::None => (mode, target),
        _ => {
            runner.notice("preflight: publish none, so there is nothing to check");
            runner.set_output("fingerprint", "")?;
            return Ok(Outcome::Skipped);
        }
    };
    let destination = target.destination.clone();
    let publisher = Publisher::prepare(runner, *target, mode, false)
        .await
        .with_context(|| {
            format!("preflight: publishing to {destination} would fail, so the build did not start")
        })?;
    let fingerprint = publisher
        .fingerprint()
        .context("preflight: no signing key was loaded")?;
    runner.info(&format!(
        "preflight: the signing key {fingerprint} loads and matches the key id asked for; the destination is reachable"
    ));
    publisher.probe_write(runner).await.with_context(|| {
        format!(
            "preflight: {destination} does not accept the writes publishing needs, so the build did not start"
        )
    })?;
    runner.info(&format!(
        "preflight: {destination} accepts conditional writes (probe written, refused when repeated, removed)"
    ));
    runner.append_summary(&format!(
        "### Preflight\n\nPublishing to `{destination}` will work: the signing key loads (not expired, not revoked, matches the key id asked for), the credentials are accepted and the destination takes conditional writes.\n"
    ))?;
    runner.set_output("fingerprint", fingerprint.as_str())?;
    Ok(Outcome::Passed(fingerprint))
}
