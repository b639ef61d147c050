//! What is S3-specific and not Spack-specific in publishing buildcaches to S3 (and
//! S3-compatible servers); the object store itself is
//! [`crate::buildcache::storage::S3Store`] and the engine [`crate::buildcache::publish`].
//!
//! - [`credentials`]: an S3 client from GitHub OIDC → STS `AssumeRoleWithWebIdentity` (refreshed
//!   before expiry) or from the standard AWS credential chain, with `--endpoint-url`
//!   (path-style addressing) and `--region`. Every credential is masked in the log.
//! - [`retry`]: backoff with jitter, and error classification.
//! - [`progress`]: a `::group::` with periodic lines in Actions, an indicatif bar on a TTY.
//! - [`S3Url`], an `s3://bucket/prefix` URL.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};

pub mod credentials;
pub mod progress;
pub(crate) mod retry;

pub use credentials::{CredentialSource, S3Settings, connect};

/// A parsed `s3://bucket/prefix` URL. The prefix has no leading or trailing `/` (it may be
/// empty: the bucket root).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Url {
    bucket: String,
    prefix: String,
}

impl S3Url {
    /// A URL from its parts; the prefix is normalised (no leading/trailing `/`).
    pub fn new(bucket: impl Into<String>, prefix: impl AsRef<str>) -> Result<Self> {
        let bucket = bucket.into();
        check_bucket(&bucket)?;
        let prefix = prefix.as_ref().trim_matches('/').to_owned();
        if prefix
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
            && !prefix.is_empty()
        {
            bail!(
                "invalid S3 prefix {prefix:?}: it has an empty, `.` or `..` path component; use a plain path like `slurm/25.11/13.4.0/buildcache`"
            );
        }
        Ok(S3Url { bucket, prefix })
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix (no leading or trailing `/`, possibly empty).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The object key of `rel` (a `/`-separated path relative to the prefix).
    pub fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// The path relative to the prefix of an object key under it.
    pub fn rel<'a>(&self, key: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            Some(key)
        } else {
            key.strip_prefix(&self.prefix)?.strip_prefix('/')
        }
    }

    /// The HTTP(S) URL of the prefix at an S3-compatible `endpoint` (path-style), or at AWS
    /// (`https://<bucket>.s3.<region>.amazonaws.com/<prefix>`) when `endpoint` is `None`.
    pub fn http_url(&self, endpoint: Option<&str>, region: &str) -> String {
        let base = match endpoint {
            Some(e) => format!("{}/{}", e.trim_end_matches('/'), self.bucket),
            None => format!("https://{}.s3.{region}.amazonaws.com", self.bucket),
        };
        if self.prefix.is_empty() {
            base
        } else {
            format!("{base}/{}", self.prefix)
        }
    }
}

/// Checks an S3 bucket name against the general-purpose bucket naming rules.
fn check_bucket(bucket: &str) -> Result<()> {
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let ends_ok = bucket
        .bytes()
        .next()
        .zip(bucket.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if !(3..=63).contains(&bucket.len()) || !ok_chars || !ends_ok || bucket.contains("..") {
        bail!(
            "invalid S3 bucket name {bucket:?}: bucket names are 3-63 characters of lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit"
        );
    }
    Ok(())
}

impl FromStr for S3Url {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let Some(rest) = s.strip_prefix("s3://") else {
            bail!("{s:?} is not an S3 URL: expected s3://<bucket>/<prefix>");
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("{s:?} has no bucket: expected s3://<bucket>/<prefix>");
        }
        S3Url::new(bucket, prefix)
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let u: S3Url = "s3://my-bucket/slurm/25.11/13.4.0/buildcache/"
            .parse()
            .unwrap();
        assert_eq!(u.bucket(), "my-bucket");
        assert_eq!(u.prefix(), "slurm/25.11/13.4.0/buildcache");
        assert_eq!(
            u.key("v3/layout.json"),
            "slurm/25.11/13.4.0/buildcache/v3/layout.json"
        );
        assert_eq!(
            u.rel("slurm/25.11/13.4.0/buildcache/blobs/sha256/aa/x"),
            Some("blobs/sha256/aa/x")
        );
        assert_eq!(u.rel("slurm/25.11/13.4.0/buildcachex/y"), None);
        assert_eq!(
            u.to_string(),
            "s3://my-bucket/slurm/25.11/13.4.0/buildcache"
        );
        let root: S3Url = "s3://bkt".parse().unwrap();
        assert_eq!(root.key("a"), "a");
        assert_eq!(root.to_string(), "s3://bkt");
        assert_eq!(
            u.http_url(Some("http://127.0.0.1:9000/"), "us-east-1"),
            "http://127.0.0.1:9000/my-bucket/slurm/25.11/13.4.0/buildcache"
        );
        assert_eq!(
            root.http_url(None, "eu-west-1"),
            "https://bkt.s3.eu-west-1.amazonaws.com"
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "http://b/p",
            "s3:///p",
            "s3://B/p",
            "s3://ab/p",
            "s3://bucket/a//b",
            "s3://bucket/a/../b",
            "s3://-bucket/p",
        ] {
            assert!(bad.parse::<S3Url>().is_err(), "{bad} accepted");
        }
    }
}
