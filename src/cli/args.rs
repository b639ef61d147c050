//! Argument groups shared by several commands, each flattened into their `Args` with
//! `#[command(flatten)]`, so a flag is spelled, documented and read (flag, else action input)
//! in one place.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::flag_or_input;
pub(crate) use super::signing_key::SigningKeyArgs;
use crate::buildcache::publish::PublishTarget;
use crate::buildcache::trust::{Pins, load_key_files};
use crate::gha::Runner;
use crate::pgp::TrustedKeys;
use crate::s3::S3Settings;

/// How to reach `s3://` locations.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct S3Args {
    /// For s3:// URLs: S3-compatible endpoint (path-style addressing) [input: endpoint_url] [env: AWS_ENDPOINT_URL]
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// For s3:// URLs: AWS region [input: region] [env: AWS_REGION, AWS_DEFAULT_REGION]
    #[arg(long)]
    pub region: Option<String>,
    /// For s3:// URLs: IAM role to assume with the job's OIDC token [input: role_arn] [env: AWS_ROLE_ARN]
    #[arg(long)]
    pub role_arn: Option<String>,
}

impl S3Args {
    /// The S3 settings: each flag, else its action input, else its `AWS_*` variable
    /// (`AWS_ENDPOINT_URL_STS` has no flag). This is the only place that reads them.
    pub fn resolve(&self, runner: &Runner) -> Result<S3Settings> {
        let env = |vars: &[&str]| {
            vars.iter()
                .filter_map(|v| runner.var(v))
                .find(|v| !v.trim().is_empty())
                .map(str::to_owned)
        };
        let pick = |flag: &Option<String>, input: &str, vars: &[&str]| {
            flag_or_input(flag.clone(), runner, input)
                .filter(|v| !v.trim().is_empty())
                .or_else(|| env(vars))
        };
        S3Settings::new(
            pick(&self.endpoint_url, "endpoint_url", &["AWS_ENDPOINT_URL"]),
            env(&["AWS_ENDPOINT_URL_STS"]),
            pick(&self.region, "region", &["AWS_REGION", "AWS_DEFAULT_REGION"]),
            pick(&self.role_arn, "role_arn", &["AWS_ROLE_ARN"]),
        )
        .context("the S3 settings (--endpoint-url/AWS_ENDPOINT_URL, --region/AWS_REGION, --role-arn/AWS_ROLE_ARN) are invalid")
    }
}

/// A leg's publish target: `destination`, the signing key (loaded and masked here) and the
/// S3 settings, the one value preflight, the builds, sign-and-upload and tarball-publish take.
pub(crate) fn publish_target(
    destination: String,
    key: &SigningKeyArgs,
    s3: &S3Args,
    runner: &Runner,
) -> Result<PublishTarget> {
    let key = key.load(runner)?;
    Ok(PublishTarget {
        destination,
        key,
        s3: s3.resolve(runner)?,
    })
}

/// The keys a consumer trusts: pinned out of band, never what a mirror publishes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TrustArgs {
    /// Armored public key file to trust (repeatable; the input takes one per line) [input: trusted_keys]
    #[arg(long = "trusted-key", value_name = "FILE")]
    pub trusted_keys: Vec<PathBuf>,
    /// Fingerprint to trust (repeatable; the input takes one per line): a key a mirror
    /// publishes is used only if its fingerprint is exactly this one [input: trusted_fingerprints]
    #[arg(long = "trusted-fingerprint", value_name = "FPR")]
    pub trusted_fingerprints: Vec<String>,
}

impl TrustArgs {
    /// The flags, else the inputs `trusted_keys` and `trusted_fingerprints` (one per line);
    /// a malformed fingerprint is an error naming it.
    pub fn resolve(&self, runner: &Runner) -> Result<Pins> {
        let key_files = paths_or_input(&self.trusted_keys, runner, "trusted_keys");
        let fingerprints = if self.trusted_fingerprints.is_empty() {
            runner.input_list("trusted_fingerprints")
        } else {
            self.trusted_fingerprints.clone()
        };
        Ok(Pins {
            key_files,
            fingerprints: fingerprints
                .iter()
                .map(|f| f.parse())
                .collect::<Result<_>>()?,
        })
    }
}

/// A repeatable path flag, else the action input `input` (one path per line).
pub(crate) fn paths_or_input(flag: &[PathBuf], runner: &Runner, input: &str) -> Vec<PathBuf> {
    if flag.is_empty() {
        runner
            .input_list(input)
            .into_iter()
            .map(PathBuf::from)
            .collect()
    } else {
        flag.to_vec()
    }
}

/// Loads public key files into a trust set, logging each fingerprint with its file.
pub(crate) fn load_trusted_key_files(files: &[PathBuf], runner: &Runner) -> Result<TrustedKeys> {
    let mut trusted = TrustedKeys::new();
    for f in files {
        for fpr in load_key_files(&mut trusted, std::slice::from_ref(f))? {
            runner.info(&format!("trusting {fpr} (from {})", f.display()));
        }
    }
    Ok(trusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(vars: &[(&str, &str)]) -> Runner {
        Runner::from_vars(vars.iter().copied()).with_sink(Box::new(std::io::sink()))
    }

    #[test]
    fn flags_win_over_inputs_and_inputs_fill_in() {
        let r = runner(&[
            ("INPUT_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("INPUT_REGION", "eu-west-1"),
            ("INPUT_KEY_FILE", "/in/key.asc"),
            (
                "INPUT_TRUSTED_FINGERPRINTS",
                "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD\n",
            ),
        ]);
        let s3 = S3Args {
            region: Some("us-east-2".into()),
            ..S3Args::default()
        }
        .resolve(&r)
        .unwrap();
        assert_eq!(s3.endpoint_url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(s3.region.as_deref(), Some("us-east-2"));
        assert!(matches!(s3.credentials, crate::s3::CredentialSource::Chain));
        assert_eq!(
            SigningKeyArgs::default().resolve(&r),
            Some(PathBuf::from("/in/key.asc"))
        );
        let t = TrustArgs::default().resolve(&r).unwrap();
        assert_eq!(t.fingerprints.len(), 1);
        assert!(t.key_files.is_empty());
        let t = TrustArgs {
            trusted_keys: vec!["a.asc".into()],
            trusted_fingerprints: vec![],
        }
        .resolve(&runner(&[]))
        .unwrap();
        assert_eq!(t.key_files, vec![PathBuf::from("a.asc")]);
        assert!(!t.is_empty());
        assert!(Pins::default().is_empty());
    }

    #[test]
    fn s3_settings_fall_back_to_the_aws_environment() {
        let r = runner(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_REGION", ""),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/r"),
            ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:2"),
        ]);
        let s = S3Args::default().resolve(&r).unwrap();
        assert_eq!(s.endpoint_url.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(s.sts_endpoint_url.as_deref(), Some("http://127.0.0.1:2"));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert!(matches!(
            s.credentials,
            crate::s3::CredentialSource::GithubOidc { .. }
        ));
        // A flag wins over the environment; an invalid value is refused by name.
        let s = S3Args {
            endpoint_url: Some("https://minio:9000".into()),
            ..S3Args::default()
        }
        .resolve(&r)
        .unwrap();
        assert_eq!(s.endpoint_url.as_deref(), Some("https://minio:9000"));
        let e = S3Args {
            endpoint_url: Some("minio:9000".into()),
            ..S3Args::default()
        }
        .resolve(&r)
        .unwrap_err();
        assert!(format!("{e:#}").contains("minio:9000"), "{e:#}");
        let none = S3Args::default()
            .resolve(&runner(&[("AWS_ROLE_ARN", "")]))
            .unwrap();
        assert!(matches!(
            none.credentials,
            crate::s3::CredentialSource::Chain
        ));
    }

    #[test]
    fn a_malformed_fingerprint_is_refused_by_name() {
        let e = TrustArgs {
            trusted_keys: vec![],
            trusted_fingerprints: vec!["E145321FBC9F04BD".into()],
        }
        .resolve(&runner(&[]))
        .unwrap_err();
        assert!(format!("{e:#}").contains("E145321FBC9F04BD"), "{e:#}");
    }
}
