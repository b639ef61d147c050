//! An S3 client with the right credentials, endpoint and region.
//!
//! In GitHub Actions with a role ([`CredentialSource::GithubOidc`], from `--role-arn`) the job's OIDC token (audience
//! `sts.amazonaws.com`) is exchanged for temporary credentials with STS
//! `AssumeRoleWithWebIdentity`. [`GithubOidcProvider`] implements the SDK's
//! `ProvideCredentials`: the SDK's identity cache calls it again [`REFRESH_BEFORE`] before the
//! credentials expire, and it then fetches a **fresh** OIDC token and assumes the role again,
//! so uploads longer than the session keep working. Without a role, the standard AWS chain
//! (environment, profile, web-identity token file, container, IMDS) is used.
//!
//! Every credential (access key id, secret, session token, OIDC token) is registered with
//! `::add-mask::` before anything could print it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};
use aws_credential_types::provider::{self, ProvideCredentials, future};
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, IdentityCache, Region, RequestChecksumCalculation,
    SharedCredentialsProvider,
};
use aws_smithy_async::time::SharedTimeSource;

use crate::gha::{Runner, Secret};

/// The OIDC audience AWS STS expects.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// The longest role session AWS allows (and what upstream used): 4 hours.
pub const MAX_SESSION: Duration = Duration::from_secs(4 * 3600);

/// How long before expiry the credentials are refreshed (the SDK's identity cache jitters it
/// down by up to half: a refresh comes between 5 and 2.5 minutes before expiry).
pub const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// The region used when none is configured anywhere.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Where the credentials come from.
#[derive(Clone, Debug)]
pub enum CredentialSource {
    /// The standard AWS credential chain (environment, profile, web identity file, IMDS, ...).
    Chain,
    /// The GitHub OIDC token exchanged for a role session (`AssumeRoleWithWebIdentity`).
    GithubOidc {
        /// The role to assume.
        role_arn: String,
    },
    /// Explicit static credentials (tests, or a caller that already holds credentials).
    Static {
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: Secret,
        /// Session token, for temporary credentials.
        session_token: Option<Secret>,
    },
}

/// How to reach S3.
#[derive(Clone, Debug)]
pub struct S3Settings {
    /// S3-compatible endpoint (enables path-style addressing); `None` = AWS.
    pub endpoint_url: Option<String>,
    /// STS endpoint for `AssumeRoleWithWebIdentity`; `None` = AWS.
    pub sts_endpoint_url: Option<String>,
    /// Region; `None` = the SDK's profile, else [`DEFAULT_REGION`].
    pub region: Option<String>,
    /// Where the credentials come from.
    pub credentials: CredentialSource,
    /// Requested role session length (capped at [`MAX_SESSION`]).
    pub session_duration: Duration,
    /// Attempts per request (the SDK's standard retry mode: exponential backoff with jitter
    /// on 5xx, throttling such as `SlowDown`, and connection errors).
    pub max_attempts: u32,
    /// First retry backoff.
    pub initial_backoff: Duration,
    /// Longest single backoff.
    pub max_backoff: Duration,
    /// The clock the SDK reads for request signing and credential expiry; `None` = the
    /// system clock. Tests move a clock of their own forward to exercise the refresh.
    pub time_source: Option<SharedTimeSource>,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            endpoint_url: None,
            sts_endpoint_url: None,
            region: None,
            credentials: CredentialSource::Chain,
            session_duration: MAX_SESSION,
            max_attempts: 8,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            time_source: None,
        }
    }
}

impl S3Settings {
    /// Settings for these values, each already resolved by the caller (the command line takes
    /// a flag, else the action input, else the AWS environment): the endpoint must be an
    /// `http(s)://` URL and the role a well-formed IAM role ARN. A role selects
    /// [`CredentialSource::GithubOidc`], otherwise the standard chain. Empty values count as
    /// absent.
    pub fn new(
        endpoint_url: Option<String>,
        sts_endpoint_url: Option<String>,
        region: Option<String>,
        role_arn: Option<String>,
    ) -> Result<Self> {
        let nonempty = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let endpoint_url = nonempty(endpoint_url);
        if let Some(e) = &endpoint_url {
            check_endpoint(e)?;
        }
        let sts_endpoint_url = nonempty(sts_endpoint_url);
        if let Some(e) = &sts_endpoint_url {
            check_endpoint(e)?;
        }
        let credentials = match nonempty(role_arn) {
            Some(role_arn) => {
                check_role_arn(&role_arn)?;
                CredentialSource::GithubOidc { role_arn }
            }
            None => CredentialSource::Chain,
        };
        Ok(S3Settings {
            endpoint_url,
            sts_endpoint_url,
            region: nonempty(region),
            credentials,
            ..S3Settings::default()
        })
    }
}

fn check_endpoint(e: &str) -> Result<()> {
    if !(e.starts_with("http://") || e.starts_with("https://")) {
        bail!("invalid endpoint URL {e:?}: expected http://host[:port] or https://host[:port]");
    }
    Ok(())
}

/// Checks the shape of an IAM role ARN (`arn:<partition>:iam::<12 digits>:role/<name>`).
pub fn check_role_arn(arn: &str) -> Result<()> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].starts_with("role/")
        && parts[5].len() > 5;
    if !ok {
        bail!(
            "invalid role ARN {arn:?}: expected arn:aws:iam::<12-digit account>:role/<name> (check --role-arn or the secret it comes from)"
        );
    }
    Ok(())
}

/// A role session name from the run (`GITHUB_RUN_ID`, `GITHUB_RUN_ATTEMPT`), reduced to the
/// characters STS accepts (`[\w+=,.@-]`, 2–64 long).
pub fn session_name(runner: &Runner) -> String {
    let run = runner.var("GITHUB_RUN_ID").unwrap_or("local");
    let attempt = runner.var("GITHUB_RUN_ATTEMPT").unwrap_or("1");
    let raw = format!("slurm-factory-{run}-{attempt}");
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(64);
    s
}

/// Credentials from the GitHub OIDC token and STS `AssumeRoleWithWebIdentity`. Each call
/// fetches a fresh OIDC token (they live only minutes) and assumes the role again.
#[derive(Clone, Debug)]
pub struct GithubOidcProvider {
    inner: Arc<OidcInner>,
}

#[derive(Debug)]
struct OidcInner {
    runner: Runner,
    sts: aws_sdk_sts::Client,
    role_arn: String,
    session_name: String,
    duration: Duration,
}

impl GithubOidcProvider {
    /// A provider for `role_arn`, talking to STS through `sts`.
    pub fn new(
        runner: Runner,
        sts: aws_sdk_sts::Client,
        role_arn: String,
        duration: Duration,
    ) -> Self {
        let session_name = session_name(&runner);
        GithubOidcProvider {
            inner: Arc::new(OidcInner {
                runner,
                sts,
                role_arn,
                session_name,
                duration: duration.min(MAX_SESSION).max(Duration::from_secs(900)),
            }),
        }
    }

    /// Fetches an OIDC token and assumes the role. If the role's maximum session is shorter
    /// than the requested duration, retries with one hour (the IAM default maximum).
    pub async fn assume(&self) -> Result<Credentials> {
        let me = &self.inner;
        let token = me.runner.oidc_token(Some(STS_AUDIENCE)).await?;
        let mut duration = me.duration;
        loop {
            let out = me
                .sts
                .assume_role_with_web_identity()
                .role_arn(&me.role_arn)
                .role_session_name(&me.session_name)
                .web_identity_token(token.expose())
                .duration_seconds(duration.as_secs() as i32)
                .send()
                .await;
            match out {
                Ok(out) => {
                    let Some(c) = out.credentials() else {
                        bail!("STS AssumeRoleWithWebIdentity answered without credentials");
                    };
                    me.runner.add_mask(c.access_key_id());
                    me.runner.add_mask(c.secret_access_key());
                    me.runner.add_mask(c.session_token());
                    let expiry = SystemTime::try_from(*c.expiration()).ok();
                    return Ok(Credentials::new(
                        c.access_key_id(),
                        c.secret_access_key(),
                        Some(c.session_token().to_owned()),
                        expiry,
                        "github-oidc",
                    ));
                }
                Err(e) => {
                    let text = format!("{}", aws_sdk_sts::error::DisplayErrorContext(&e));
                    if text.contains("DurationSeconds") && duration > Duration::from_secs(3600) {
                        me.runner.warning(&format!(
                            "role {} does not allow {}s sessions; retrying with 3600s (raise the role's MaxSessionDuration for long uploads)",
                            me.role_arn,
                            duration.as_secs()
                        ));
                        duration = Duration::from_secs(3600);
                        continue;
                    }
                    bail!(
                        "STS AssumeRoleWithWebIdentity for role {} failed: {text}. Check that the role trusts this repository's OIDC subject (token.actions.githubusercontent.com) with audience {STS_AUDIENCE}",
                        me.role_arn
                    );
                }
            }
        }
    }
}

impl ProvideCredentials for GithubOidcProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.assume()
                .await
                .map_err(|e| provider::error::CredentialsError::provider_error(format!("{e:#}")))
        })
    }
}

/// Builds the S3 client described by `settings`. With [`CredentialSource::GithubOidc`] the
/// first role session is assumed right away, so a missing `id-token` permission or a role
/// that does not trust the repository fails here, before anything is uploaded.
pub async fn connect(runner: &Runner, settings: &S3Settings) -> Result<aws_sdk_s3::Client> {
    Ok(connection(runner, settings).await?.client)
}

/// A client together with the credentials provider and region it was built with.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The S3 client.
    pub client: aws_sdk_s3::Client,
    /// The provider behind the client's identity cache (calling it fetches new credentials).
    pub credentials: SharedCredentialsProvider,
    /// The resolved region.
    pub region: String,
}

/// Like [`connect`], also returning the provider and region.
pub async fn connection(runner: &Runner, settings: &S3Settings) -> Result<Connection> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = &settings.region {
        loader = loader.region(Region::new(r.clone()));
    }
    // Credentials are chosen below; the shared config only resolves the region (and, for the
    // chain, the credentials).
    if !matches!(settings.credentials, CredentialSource::Chain) {
        loader = loader.no_credentials();
    }
    let shared = loader.load().await;
    let region = shared
        .region()
        .cloned()
        .unwrap_or_else(|| Region::new(DEFAULT_REGION));

    let provider: SharedCredentialsProvider = match &settings.credentials {
        CredentialSource::Chain => match shared.credentials_provider() {
            Some(p) => p,
            None => bail!(
                "no AWS credentials in the standard chain (environment, profile, web identity, instance metadata): provide some, or pass --role-arn inside GitHub Actions"
            ),
        },
        CredentialSource::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            runner.add_mask(access_key_id);
            runner.add_mask(secret_access_key.expose());
            if let Some(t) = session_token {
                runner.add_mask(t.expose());
            }
            SharedCredentialsProvider::new(Credentials::new(
                access_key_id,
                secret_access_key.expose(),
                session_token.as_ref().map(|t| t.expose().to_owned()),
                None,
                "static",
            ))
        }
        CredentialSource::GithubOidc { role_arn } => {
            let mut sts = aws_sdk_sts::config::Builder::from(&shared)
                .region(region.clone())
                .behavior_version(BehaviorVersion::latest());
            if let Some(e) = &settings.sts_endpoint_url {
                sts = sts.endpoint_url(e);
            }
            let sts = aws_sdk_sts::Client::from_conf(sts.build());
            let p = GithubOidcProvider::new(
                runner.clone(),
                sts,
                role_arn.clone(),
                settings.session_duration,
            );
            // Fail now (no side effects yet) rather than at the first upload.
            p.assume().await?;
            SharedCredentialsProvider::new(p)
        }
    };

    if matches!(settings.credentials, CredentialSource::Chain) {
        // Resolve once so missing or broken credentials fail before any work, and mask them.
        let creds = provider.provide_credentials().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot load AWS credentials from the standard chain (environment, profile, web identity, instance metadata): {}. Provide some, or pass --role-arn inside GitHub Actions",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            )
        })?;
        runner.add_mask(creds.access_key_id());
        runner.add_mask(creds.secret_access_key());
        if let Some(t) = creds.session_token() {
            runner.add_mask(t);
        }
    }

    let retry = RetryConfig::standard()
        .with_max_attempts(settings.max_attempts.max(1))
        .with_initial_backoff(settings.initial_backoff)
        .with_max_backoff(settings.max_backoff);
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .build();
    let region_name = region.to_string();
    let mut conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(region)
        .credentials_provider(provider.clone())
        .identity_cache(IdentityCache::lazy().buffer_time(REFRESH_BEFORE).build())
        .retry_config(retry)
        .timeout_config(timeouts)
        // We send a precomputed SHA-256 for every upload ourselves; no SDK CRC32 on top.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
    if let Some(sleep) = shared.sleep_impl() {
        conf = conf.sleep_impl(sleep);
    }
    if let Some(time) = settings
        .time_source
        .clone()
        .or_else(|| shared.time_source())
    {
        conf = conf.time_source(time);
    }
    if let Some(e) = &settings.endpoint_url {
        conf = conf.endpoint_url(e).force_path_style(true);
    }
    Ok(Connection {
        client: aws_sdk_s3::Client::from_conf(conf.build()),
        credentials: provider,
        region: region_name,
    })
}

/// The region a client was built for.
pub fn client_region(client: &aws_sdk_s3::Client) -> String {
    client
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| DEFAULT_REGION.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_sanitised() {
        let r = Runner::from_vars([("GITHUB_RUN_ID", "123 456/x"), ("GITHUB_RUN_ATTEMPT", "2")]);
        assert_eq!(session_name(&r), "slurm-factory-123-456-x-2");
        let long = "9".repeat(100);
        let r = Runner::from_vars([("GITHUB_RUN_ID", long.as_str())]);
        assert_eq!(session_name(&r).len(), 64);
        assert_eq!(
            session_name(&Runner::from_vars::<[(&str, &str); 0], _, _>([])),
            "slurm-factory-local-1"
        );
    }

    #[test]
    fn role_arns_are_checked() {
        check_role_arn("arn:aws:iam::123456789012:role/gha-publish").unwrap();
        check_role_arn("arn:aws-us-gov:iam::123456789012:role/path/r").unwrap();
        for bad in [
            "",
            "role/x",
            "arn:aws:iam::1234:role/x",
            "arn:aws:iam::123456789012:user/x",
        ] {
            assert!(check_role_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_check_their_values() {
        let s = S3Settings::new(
            Some("http://127.0.0.1:1".into()),
            None,
            Some(" eu-west-1 ".into()),
            Some("arn:aws:iam::123456789012:role/r".into()),
        )
        .unwrap();
        assert_eq!(s.endpoint_url.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert!(matches!(s.credentials, CredentialSource::GithubOidc { .. }));
        assert!(S3Settings::new(Some("minio:9000".into()), None, None, None).is_err());
        assert!(S3Settings::new(None, Some("sts".into()), None, None).is_err());
        assert!(S3Settings::new(None, None, None, Some("role/x".into())).is_err());
        let s = S3Settings::new(Some(" ".into()), None, None, Some(String::new())).unwrap();
        assert!(s.endpoint_url.is_none());
        assert!(matches!(s.credentials, CredentialSource::Chain));
    }
}
