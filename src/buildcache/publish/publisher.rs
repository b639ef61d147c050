//! A publication prepared before the work that produces its source: [`PublishTarget`] (where
//! and with which key) and [`Publisher`] (checked in seconds, used hours later).

use std::fmt;

use anyhow::{Context, Result, bail};

use super::{Change, PublishMode, PublishOptions, publish, write_outputs};
use crate::buildcache::storage::{LocalDir, PutOptions, Storage};
use crate::gha::Runner;
use crate::pgp::{KeyFingerprint, SigningKey, TrustedKeys};

/// Where a leg publishes and with what: the destination URL (`s3://bucket/prefix` or
/// `file:///path`), the loaded signing key and how to reach S3. The one value preflight, the
/// builds, sign-and-upload and tarball-publish take; the command line builds it (it alone
/// reads the key's and S3's environment).
#[derive(Debug)]
pub struct PublishTarget {
    /// The destination URL.
    pub destination: String,
    /// The signing key (its `Debug` shows only public fingerprints).
    pub key: SigningKey,
    /// How to reach `s3://` destinations.
    pub s3: crate::s3::S3Settings,
}

impl PublishTarget {
    /// The storage options for writing to this target.
    pub fn open_options(&self) -> crate::buildcache::storage::OpenOptions {
        crate::buildcache::storage::OpenOptions {
            writable: true,
            s3: self.s3.clone(),
            ..crate::buildcache::storage::OpenOptions::default()
        }
    }
}

/// A publication whose key, destination, credentials and bucket have been checked, so that
/// signing and uploading can follow later (for `build-* --publish`, after an hours-long build)
/// without failing on input that was wrong from the start.
pub struct Publisher {
    opts: PublishOptions,
    target: Option<(SigningKey, Box<dyn Storage>)>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("mode", &self.opts.mode)
            .field("dry_run", &self.opts.dry_run)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publication of nothing (`--publish none`): signs and uploads nothing, and says so.
    pub fn none() -> Publisher {
        Publisher {
            opts: PublishOptions {
                mode: PublishMode::None,
                ..PublishOptions::default()
            },
            target: None,
        }
    }

    /// Checks everything that can be wrong before any write: the destination URL, and for
    /// `s3://` the credentials (assuming the OIDC role) and the bucket. The key was loaded by
    /// the caller. `mode` [`PublishMode::None`] is [`Publisher::none`].
    pub async fn prepare(
        runner: &Runner,
        target: PublishTarget,
        mode: PublishMode,
        dry_run: bool,
    ) -> Result<Publisher> {
        if mode == PublishMode::None {
            return Ok(Publisher::none());
        }
        let opts = PublishOptions {
            mode,
            dry_run,
            ..PublishOptions::default()
        };
        let location = crate::buildcache::storage::Location::parse(&target.destination)?;
        if let crate::buildcache::storage::Location::Http(u) = &location {
            bail!(
                "{u}: HTTP(S) buildcaches are read-only; publish to the s3:// or file:// location of the same buildcache"
            );
        }
        let dest =
            crate::buildcache::storage::open(&location, &target.open_options(), runner).await?;
        Ok(Publisher {
            opts,
            target: Some((target.key, dest)),
        })
    }

    /// The primary fingerprint of the signing key (`None` for `--publish none`): the name a
    /// consumer pins the published cache's key by.
    pub fn fingerprint(&self) -> Option<KeyFingerprint> {
        self.target.as_ref().map(|(key, _)| key.fingerprint())
    }

    /// Proves the destination accepts the writes publishing makes, leaving nothing behind: the
    /// store's write-mode probe (on S3 a probe object created with `If-None-Match: *`, created
    /// again to see it refused, deleted), then one object created only if absent and deleted.
    /// Used by preflight.
    pub async fn probe_write(&self, runner: &Runner) -> Result<()> {
        let Some((_, dest)) = &self.target else {
            return Ok(());
        };
        if dest.write_mode().await? != crate::buildcache::storage::WriteMode::Conditional {
            runner.warning(&format!(
                "{} does not honour conditional writes (If-None-Match); publishing will fall back to a lease lock, which is best-effort when legs publish to one prefix at the same time",
                dest.url()
            ));
        }
        let key = format!(".slurm-factory-probe-{}", uuid::Uuid::new_v4().simple());
        dest.put(
            &key,
            b"preflight".to_vec(),
            PutOptions {
                precondition: crate::buildcache::storage::Precondition::IfAbsent,
                ..PutOptions::default()
            },
        )
        .await
        .with_context(|| format!("cannot write to {}", dest.url()))?;
        dest.delete(&key)
            .await
            .with_context(|| format!("cannot remove the probe {key} from {}", dest.url()))
    }

    /// Sets the trust and key policy: keys accepted on clearsigned source manifests,
    /// fingerprints to publish and accept, and whether unknown destination keys are kept.
    pub fn with_policy(
        mut self,
        trusted: TrustedKeys,
        publish_key_fingerprints: Vec<KeyFingerprint>,
        accept_unknown_keys: bool,
    ) -> Self {
        self.opts.trusted = trusted;
        self.opts.publish_key_fingerprints = publish_key_fingerprints;
        self.opts.accept_unknown_keys = accept_unknown_keys;
        self
    }

    /// Signs the buildcache at `source`, publishes it, and writes the step outputs
    /// (`buildcache-url`, `specs-published`, `bytes-uploaded`) and the job summary.
    pub async fn publish(self, runner: &Runner, source: &std::path::Path) -> Result<()> {
        self.publish_done(runner, source).await.map(drop)
    }

    /// [`Publisher::publish`], returning what was published, where and with which key
    /// (`None` for `publish none` and a dry run): what a build stamp vouches for.
    pub async fn publish_done(
        self,
        runner: &Runner,
        source: &std::path::Path,
    ) -> Result<Option<Done>> {
        let Some((key, dest)) = self.target else {
            runner.notice("publish: none — nothing was signed or published");
            runner.set_outputs(&[
                ("buildcache-url", ""),
                ("specs-published", "0"),
                ("bytes-uploaded", "0"),
            ])?;
            runner.append_summary(
                "### Sign and upload\n\nPublish mode `none`: nothing was signed or published.\n",
            )?;
            return Ok(None);
        };
        let dry_run = self.opts.dry_run;
        let source = LocalDir::new(source);
        let report = publish(runner, &source, dest.as_ref(), Some(&key), &self.opts).await?;
        for o in report
            .objects
            .iter()
            .filter(|o| o.change != Change::Unchanged)
        {
            runner.info(&format!(
                "{}{:9} {} ({} bytes)",
                if dry_run { "would write " } else { "" },
                o.change.to_string(),
                o.key,
                o.size
            ));
        }
        runner.info(&format!(
            "{} specs, {} objects {}, {} bytes, {} already there; index has {} records. Consumers: spack mirror add <name> {}",
            report.specs.len(),
            report.objects_uploaded,
            if dry_run { "would be written" } else { "written" },
            report.bytes_uploaded,
            report.objects_skipped,
            report.index_records,
            report.public_url
        ));
        write_outputs(runner, &report)?;
        Ok((!dry_run).then_some(Done {
            mode: self.opts.mode,
            report,
            key,
            dest,
        }))
    }
}

/// A finished publication: the report, the destination and the key that signed it.
#[derive(Debug)]
pub struct Done {
    /// The publish mode.
    pub mode: PublishMode,
    /// What was published.
    pub report: super::PublishReport,
    /// The signing key.
    pub key: SigningKey,
    /// The destination.
    pub dest: Box<dyn Storage>,
}
