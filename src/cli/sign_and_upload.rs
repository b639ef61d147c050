//! `sign-and-upload`: sign an unsigned local buildcache and publish it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use base64::Engine as _;
use clap::Parser;

use super::{bool_flag_or_input, flag_or_input};
use crate::buildcache::sign::{self, Change, PublishMode, PublishOptions};
use crate::buildcache::{LocalDir, Storage, storage};
use crate::gha::Runner;
use crate::pgp::SigningKey;

/// Sign an unsigned Spack buildcache with OpenPGP and publish it (file:// or s3://).
///
/// The signing key comes from `GPG_PRIVATE_KEY` (ASCII-armored, or base64 of it), unlocked with
/// `GPG_PASSPHRASE` and selected by `GPG_KEY_ID`, or from `--key-file`. It stays in memory.
#[derive(Debug, Parser)]
#[command(
    name = "sign-and-upload",
    version,
    after_help = "Examples:\n  GPG_PRIVATE_KEY=\"$(cat key.asc)\" sign-and-upload --source ./out/buildcache --destination file:///srv/mirror\n  sign-and-upload --source ./out/buildcache --destination s3://bucket/slurm/25.11/13.4.0/buildcache --key-file key.asc\n  sign-and-upload --source ./out/buildcache --destination s3://bucket/p --endpoint-url http://127.0.0.1:9000 --dry-run"
)]
pub struct Args {
    /// The unsigned local buildcache written by the build [input: source]
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Destination buildcache URL: file:///path or s3://bucket/prefix [input: destination]
    #[arg(long)]
    pub destination: Option<String>,
    /// Read the armored secret key from this file instead of GPG_PRIVATE_KEY [input: key_file]
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Which specs to publish: all, slurm-only or none [input: publish]
    #[arg(long)]
    pub publish: Option<String>,
    /// Report what would change without writing anything [input: dry_run]
    #[arg(long)]
    pub dry_run: bool,
    /// S3-compatible endpoint (path-style addressing) [input: endpoint_url] [env: AWS_ENDPOINT_URL]
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// AWS region [input: region]
    #[arg(long)]
    pub region: Option<String>,
    /// IAM role to assume with the job's OIDC token (AWS_ROLE_ARN) [input: role_arn]
    #[arg(long)]
    pub role_arn: Option<String>,
}

/// Registers the key material and passphrase with the runner's log masker: every line of
/// the value as given and of its decoded armor (the runner masks line by line).
fn mask_secrets(runner: &Runner, material: &str, passphrase: Option<&str>) {
    if let Some(p) = passphrase {
        runner.add_mask(p);
    }
    let mut lines: Vec<String> = material.lines().map(|l| l.trim().to_owned()).collect();
    let compact: String = material.split_whitespace().collect();
    if !material.trim_start().starts_with("-----BEGIN")
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(compact.as_bytes())
        && let Ok(text) = String::from_utf8(decoded)
    {
        lines.push(compact);
        lines.extend(text.lines().map(|l| l.trim().to_owned()));
    }
    for line in lines {
        let public_armor = line.starts_with("-----")
            || line.starts_with("Comment:")
            || line.starts_with("Version:");
        if line.len() >= 4 && !public_armor {
            runner.add_mask(&line);
        }
    }
}

/// Loads the signing key from `--key-file` or `GPG_PRIVATE_KEY`, with `GPG_PASSPHRASE` and
/// `GPG_KEY_ID`, masking the secrets first. Prints only the public fingerprint.
pub fn load_signing_key(key_file: Option<&std::path::Path>, runner: &Runner) -> Result<SigningKey> {
    let passphrase = runner.var("GPG_PASSPHRASE").filter(|p| !p.is_empty());
    let key_id = runner.var("GPG_KEY_ID").filter(|k| !k.trim().is_empty());
    let material: Vec<u8> = match key_file {
        Some(path) => std::fs::read(path).with_context(|| {
            format!(
                "cannot read the signing key file {}; pass the path of an ASCII-armored secret key",
                path.display()
            )
        })?,
        None => runner
            .var("GPG_PRIVATE_KEY")
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_default(),
    };
    mask_secrets(runner, &String::from_utf8_lossy(&material), passphrase);
    let key = SigningKey::load(&material, passphrase, key_id).map_err(anyhow::Error::new)?;
    Ok(key)
}

/// Runs `sign-and-upload`.
pub async fn run(args: Args, runner: Runner) -> Result<()> {
    let publish: PublishMode = flag_or_input(args.publish, &runner, "publish")
        .as_deref()
        .unwrap_or("all")
        .parse()?;
    let dry_run = bool_flag_or_input(args.dry_run.then_some(true), &runner, "dry_run", false)?;
    let destination = flag_or_input(args.destination, &runner, "destination").context(
        "no destination: pass --destination file:///path (or set the action input `destination`)",
    )?;
    let source = args
        .source
        .or_else(|| runner.input("source").map(PathBuf::from))
        .context("no source: pass --source <dir> (the unsigned buildcache the build wrote)")?;
    let key_file = args
        .key_file
        .or_else(|| runner.input("key_file").map(PathBuf::from));
    let s3 = S3Flags {
        endpoint_url: flag_or_input(args.endpoint_url, &runner, "endpoint_url"),
        region: flag_or_input(args.region, &runner, "region"),
        role_arn: flag_or_input(args.role_arn, &runner, "role_arn"),
    };
    let publisher = Publisher::prepare(
        &runner,
        &destination,
        key_file.as_deref(),
        s3,
        publish,
        dry_run,
    )
    .await?;
    publisher.publish(&runner, &source).await
}

/// A publication whose key, destination, credentials and bucket have been checked, so that
/// signing and uploading can follow later (for `build-* --publish`, after an hours-long build)
/// without failing on input that was wrong from the start.
pub struct Publisher {
    mode: PublishMode,
    dry_run: bool,
    target: Target,
}

enum Target {
    Nothing,
    Local {
        dest: LocalDir,
        key: Box<SigningKey>,
    },
    S3(Box<S3Target>),
}

struct S3Target {
    key: SigningKey,
    url: crate::s3::S3Url,
    settings: crate::s3::S3Settings,
    conn: crate::s3::credentials::Connection,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("mode", &self.mode)
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Checks everything that can be wrong before any write: the publish mode, the
    /// destination URL, the signing key (`--key-file` or `GPG_PRIVATE_KEY`, masked), and for
    /// `s3://` the credentials (assuming the OIDC role) and the bucket.
    pub async fn prepare(
        runner: &Runner,
        destination: &str,
        key_file: Option<&std::path::Path>,
        s3: S3Flags,
        mode: PublishMode,
        dry_run: bool,
    ) -> Result<Publisher> {
        let target = if mode == PublishMode::None {
            Target::Nothing
        } else if let storage::Location::S3 { bucket, prefix } =
            storage::Location::parse(destination)?
        {
            let url = crate::s3::S3Url::new(bucket, prefix)?;
            // Nothing touches the network before the key loads.
            let key = load_signing_key(key_file, runner)?;
            announce_key(runner, &key);
            let settings =
                crate::s3::S3Settings::resolve(runner, s3.endpoint_url, s3.region, s3.role_arn)?;
            let conn = crate::s3::credentials::connection(runner, &settings).await?;
            crate::s3::preflight(&conn.client, &url).await?;
            Target::S3(Box::new(S3Target {
                key,
                url,
                settings,
                conn,
            }))
        } else {
            let dest = storage::open_local_or_explain(destination)?;
            let key = load_signing_key(key_file, runner)?;
            announce_key(runner, &key);
            Target::Local {
                dest,
                key: Box::new(key),
            }
        };
        Ok(Publisher {
            mode,
            dry_run,
            target,
        })
    }

    /// Proves the destination accepts the writes publishing makes, leaving nothing behind: on
    /// S3 the index's conditional-write probe ([`crate::s3::index::probe_write_mode`]: a probe
    /// object created with `If-None-Match: *`, created again to see it refused, deleted); on a
    /// `file://` mirror a probe file created only if absent, then removed. Used by preflight.
    pub async fn probe_write(&self, runner: &Runner) -> Result<()> {
        match &self.target {
            Target::Nothing => Ok(()),
            Target::S3(t) => {
                let mode = crate::s3::index::probe_write_mode(&t.conn.client, &t.url).await?;
                if mode != crate::s3::index::WriteMode::Conditional {
                    runner.warning(&format!(
                        "{} does not honour conditional writes (If-None-Match); publishing will fall back to a lease lock, which is best-effort when legs publish to one prefix at the same time",
                        t.url
                    ));
                }
                Ok(())
            }
            Target::Local { dest, .. } => {
                let key = format!(".slurm-factory-probe-{}", uuid::Uuid::new_v4().simple());
                dest.put(
                    &key,
                    b"preflight".to_vec(),
                    storage::PutOptions {
                        precondition: storage::Precondition::IfAbsent,
                        ..storage::PutOptions::default()
                    },
                )
                .await
                .with_context(|| format!("cannot write to {}", dest.url()))?;
                let path = dest.path(&key)?;
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove the probe {}", path.display()))?;
                Ok(())
            }
        }
    }

    /// Signs the unsigned buildcache at `source`, publishes it, and writes the step outputs
    /// (`buildcache-url`, `specs-published`, `bytes-uploaded`) and the job summary.
    pub async fn publish(self, runner: &Runner, source: &std::path::Path) -> Result<()> {
        let (mode, dry_run) = (self.mode, self.dry_run);
        match self.target {
            Target::Nothing => {
                runner.notice("publish: none — nothing was signed or published");
                runner.set_outputs(&[
                    ("buildcache-url", ""),
                    ("specs-published", "0"),
                    ("bytes-uploaded", "0"),
                ])?;
                runner.append_summary(
                    "### Sign and upload\n\nPublish mode `none`: nothing was signed or published.\n",
                )?;
                Ok(())
            }
            Target::Local { dest, key } => {
                publish_local(runner, source, &dest, &key, mode, dry_run).await
            }
            Target::S3(t) => {
                let S3Target {
                    key,
                    url,
                    settings,
                    conn,
                } = *t;
                run_s3(runner, source, &key, url, &settings, &conn, mode, dry_run).await
            }
        }
    }
}

fn announce_key(runner: &Runner, key: &SigningKey) {
    runner.info(&format!(
        "signing key: {} (signing subkey {})",
        key.fingerprint(),
        key.signing_fingerprint()
    ));
}

async fn publish_local(
    runner: &Runner,
    source: &std::path::Path,
    dest: &LocalDir,
    key: &SigningKey,
    mode: PublishMode,
    dry_run: bool,
) -> Result<()> {
    let source = LocalDir::new(source);
    let opts = PublishOptions { mode, dry_run };
    let report = {
        let _g = runner.group(&format!(
            "{} {} to {}",
            if dry_run {
                "Plan (dry run):"
            } else {
                "Sign and publish"
            },
            source.root().display(),
            dest.url()
        ));
        let report = sign::publish(&source, dest, key, &opts).await?;
        for o in &report.objects {
            if o.change != Change::Unchanged {
                runner.info(&format!(
                    "{}{:9} {} ({} bytes)",
                    if dry_run { "would write " } else { "" },
                    o.change.to_string(),
                    o.key,
                    o.size
                ));
            }
        }
        report
    };
    let bytes = if dry_run { 0 } else { report.bytes_uploaded() };
    runner.info(&format!(
        "{} specs, {} objects {}, {} bytes; index has {} records",
        report.specs.len(),
        report.objects_written(),
        if dry_run {
            "would be written"
        } else {
            "written"
        },
        report.bytes_uploaded(),
        report.index_records
    ));
    runner.set_outputs(&[
        ("buildcache-url", report.url.as_str()),
        ("specs-published", &report.specs.len().to_string()),
        ("bytes-uploaded", &bytes.to_string()),
    ])?;
    runner.append_summary(&report.summary_markdown())?;
    Ok(())
}

/// The S3 options of a publication (`--endpoint-url`, `--region`, `--role-arn`).
#[derive(Debug, Clone, Default)]
pub struct S3Flags {
    /// S3-compatible endpoint (path-style addressing).
    pub endpoint_url: Option<String>,
    /// AWS region.
    pub region: Option<String>,
    /// IAM role to assume with the job's OIDC token.
    pub role_arn: Option<String>,
}

/// `sign-and-upload` to `s3://`: check the key, the credentials (role) and the bucket first;
/// sign into a local staging buildcache (seeded with the destination's current spec
/// manifests, so unchanged specs keep their signatures and are not uploaded again); publish
/// the staging cache with the S3 engine (parallel, checksummed, index merged last with a
/// conditional write).
#[allow(clippy::too_many_arguments)]
async fn run_s3(
    runner: &Runner,
    source: &std::path::Path,
    key: &SigningKey,
    url: crate::s3::S3Url,
    settings: &crate::s3::S3Settings,
    conn: &crate::s3::credentials::Connection,
    publish: PublishMode,
    dry_run: bool,
) -> Result<()> {
    use crate::s3;

    let store = s3::store::S3Store::new(conn.client.clone(), url.clone());

    // 3. Sign into a staging directory next to the runner's other temporary files.
    let staging_parent = runner
        .var("RUNNER_TEMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let staging = tempfile::Builder::new()
        .prefix("sign-and-upload-")
        .tempdir_in(&staging_parent)
        .with_context(|| {
            format!(
                "cannot create a staging directory in {}",
                staging_parent.display()
            )
        })?;
    let src = LocalDir::new(source);
    let stage = LocalDir::new(staging.path());
    let spec_keys: Vec<String> = src
        .list("v3/manifests/spec/")
        .await
        .with_context(|| format!("cannot list the source buildcache {}", source.display()))?
        .into_iter()
        .map(|m| m.key)
        .filter(|k| k.ends_with(".spec.manifest.json"))
        .collect();
    for chunk in spec_keys.chunks(16) {
        let fetched = futures::future::try_join_all(chunk.iter().map(|k| store.get(k))).await?;
        for (k, obj) in chunk.iter().zip(fetched) {
            if let Some((bytes, _)) = obj {
                stage.put(k, bytes, storage::PutOptions::default()).await?;
            }
        }
    }
    let signed = {
        let _g = runner.group(&format!("Sign {} (staging)", source.display()));
        sign::publish(
            &src,
            &stage,
            key,
            &PublishOptions {
                mode: publish,
                dry_run: false,
            },
        )
        .await?
    };
    runner.info(&format!(
        "signed {} spec(s) with {}",
        signed.specs.len(),
        signed.fingerprint
    ));

    // 4. Publish.
    let opts = s3::PublishOptions {
        dry_run,
        require_signed: true,
        ..s3::PublishOptions::default()
    };
    let report = s3::publish_buildcache(runner, &conn.client, &url, staging.path(), &opts).await?;
    let catalog = crate::catalog::Catalog::embedded();
    let public = s3::upload::public_url(
        Some(&catalog),
        &url,
        settings.endpoint_url.as_deref(),
        &conn.region,
    );
    runner.info(&format!(
        "{} {} object(s), {} byte(s); {} already there. Consumers: spack mirror add <name> {public}",
        if dry_run { "would upload" } else { "uploaded" },
        report.objects_uploaded,
        report.bytes_uploaded,
        report.objects_skipped
    ));
    s3::upload::write_outputs(runner, &report, &url, &public)
}
