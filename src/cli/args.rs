//! Argument groups shared by several commands, each flattened into their `Args` with
//! `#[command(flatten)]`, so a flag is spelled, documented and read (flag, else action input)
//! in one place.

use std::path::PathBuf;

use anyhow::Result;

use super::flag_or_input;
use crate::buildcache::publish::S3Flags;
use crate::buildcache::trust::{Pins, load_key_files};
use crate::gha::Runner;
use crate::pgp::TrustedKeys;

/// How to reach `s3://` locations.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct S3Args {
    /// For s3:// URLs: S3-compatible endpoint (path-style addressing) [input: endpoint_url] [env: AWS_ENDPOINT_URL]
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// For s3:// URLs: AWS region [input: region]
    #[arg(long)]
    pub region: Option<String>,
    /// For s3:// URLs: IAM role to assume with the job's OIDC token [input: role_arn] [env: AWS_ROLE_ARN]
    #[arg(long)]
    pub role_arn: Option<String>,
}

impl S3Args {
    /// The flags, each falling back to its action input.
    pub fn resolve(&self, runner: &Runner) -> S3Flags {
        S3Flags {
            endpoint_url: flag_or_input(self.endpoint_url.clone(), runner, "endpoint_url"),
            region: flag_or_input(self.region.clone(), runner, "region"),
            role_arn: flag_or_input(self.role_arn.clone(), runner, "role_arn"),
        }
    }
}

/// Where the OpenPGP signing key comes from, when not from `GPG_PRIVATE_KEY`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SigningKeyArgs {
    /// Read the armored secret key from this file instead of GPG_PRIVATE_KEY (unlocked with GPG_PASSPHRASE) [input: key_file]
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

impl SigningKeyArgs {
    /// `--key-file`, else the action input `key_file`.
    pub fn resolve(&self, runner: &Runner) -> Option<PathBuf> {
        self.key_file
            .clone()
            .or_else(|| runner.input("key_file").map(PathBuf::from))
    }
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
pub fn paths_or_input(flag: &[PathBuf], runner: &Runner, input: &str) -> Vec<PathBuf> {
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
pub fn load_trusted_key_files(files: &[PathBuf], runner: &Runner) -> Result<TrustedKeys> {
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
        .resolve(&r);
        assert_eq!(s3.endpoint_url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(s3.region.as_deref(), Some("us-east-2"));
        assert_eq!(s3.role_arn, None);
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
