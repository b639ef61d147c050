//! Step 2: the keys. The key index names only the signing key, the keys that signed the
//! published manifests (trusted by the caller) and the fingerprints the options list; of those
//! the engine publishes the keys it has (the signing key, and key manifests in the source). A
//! destination key index that names another fingerprint is refused unless the options accept
//! unknown keys, because Spack users may trust every key it lists.

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail};

use super::PublishOptions;
use super::source::SourceSpec;
use crate::buildcache::index::{Current, KeyIndex};
use crate::buildcache::layout::{self, BlobRecord};
use crate::buildcache::storage::{LocalDir, ObjectMeta, Storage};
use crate::pgp::{KeyFingerprint, SigningKey};

/// One key the publish writes a key manifest for.
pub(super) struct KeyRecord {
    /// Its fingerprint (upper-case hex).
    pub(super) fingerprint: String,
    /// Its blob record.
    pub(super) record: BlobRecord,
    /// The armored key, when the engine holds it in memory (the signing key); `None` when its
    /// blob comes from the source.
    pub(super) bytes: Option<Vec<u8>>,
}

impl KeyRecord {
    /// The key manifest's key.
    pub(super) fn manifest_key(&self) -> String {
        format!(
            "{}{}{}",
            layout::KEY_PREFIX,
            self.fingerprint,
            layout::KEY_SUFFIX
        )
    }
}

/// The key policy of one publish.
pub(super) struct KeyPlan {
    /// Fingerprints the destination's key index may name.
    pub(super) allowed: BTreeSet<String>,
    /// The keys published.
    pub(super) records: Vec<KeyRecord>,
    /// Problems with the source's key manifests (reported with the blob checks).
    pub(super) problems: Vec<String>,
    /// Keep a destination key index that names other keys.
    accept_unknown: bool,
}

impl KeyPlan {
    /// Ours, the signers of what is published, and the listed ones; of those, the keys the
    /// engine can publish.
    pub(super) async fn gather(
        source: &LocalDir,
        source_files: &[ObjectMeta],
        key: Option<&SigningKey>,
        opts: &PublishOptions,
        selected: &[SourceSpec],
    ) -> Result<KeyPlan> {
        let mut allowed: BTreeSet<String> = opts
            .publish_key_fingerprints
            .iter()
            .map(KeyFingerprint::to_string)
            .collect();
        if let Some(k) = key {
            allowed.insert(k.fingerprint().to_string());
        }
        for s in selected {
            if let Some(f) = &s.signer {
                allowed.insert(f.to_string());
            }
        }
        let mut records = Vec::new();
        if let Some(k) = key {
            let armored = k.public_key_armored()?;
            records.push(KeyRecord {
                fingerprint: k.fingerprint().to_string(),
                record: BlobRecord::for_bytes(&armored, layout::KEY_MEDIA_TYPE, "none"),
                bytes: Some(armored),
            });
        }
        let mut problems = Vec::new();
        for fpr in &allowed {
            if records.iter().any(|r| &r.fingerprint == fpr) {
                continue;
            }
            let mkey = format!("{}{fpr}{}", layout::KEY_PREFIX, layout::KEY_SUFFIX);
            if !source_files.iter().any(|f| f.key == mkey) {
                continue; // Accepted at the destination, but we have no key manifest to publish.
            }
            let text = source
                .get(&mkey)
                .await?
                .context("key manifest vanished")?
                .bytes;
            match crate::buildcache::signed::read_unsigned_manifest(&text, &mkey) {
                Ok(m) => match m.blob(layout::KEY_MEDIA_TYPE).or_else(|| m.data.first()) {
                    Some(r) => records.push(KeyRecord {
                        fingerprint: fpr.clone(),
                        record: r.clone(),
                        bytes: None,
                    }),
                    None => problems.push(format!("{mkey} lists no key blob")),
                },
                Err(e) => problems.push(format!("{mkey}: {e:#}")),
            }
        }
        Ok(KeyPlan {
            allowed,
            records,
            problems,
            accept_unknown: opts.accept_unknown_keys,
        })
    }

    /// Refuses a destination key index that names keys this publish does not know.
    pub(super) fn check_destination(
        &self,
        dest: &dyn Storage,
        current: Option<&Current<KeyIndex>>,
    ) -> Result<()> {
        let Some(current) = current else {
            return Ok(());
        };
        let unknown: Vec<&str> = current
            .doc
            .keys
            .iter()
            .filter(|f| !self.allowed.contains(*f))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() && !self.accept_unknown {
            bail!(
                "the destination key index {}/{} names keys this publish does not know: {}. Spack users may trust every key it lists, so nothing was written. If you expect them, pass --publish-key-fingerprint <FPR> for each, or --accept-unknown-keys to keep them",
                dest.url(),
                layout::KEY_INDEX_MANIFEST,
                unknown.join(", ")
            );
        }
        Ok(())
    }

    /// Merges the published keys into the destination's key index `k`, refusing keys another
    /// publisher added meanwhile that this one does not know.
    pub(super) fn merge(&self, k: &mut KeyIndex) -> Result<()> {
        let unknown: Vec<&String> = k
            .keys
            .iter()
            .filter(|f| !self.allowed.contains(*f))
            .collect();
        if !unknown.is_empty() && !self.accept_unknown {
            bail!(
                "the destination key index gained keys this publish does not know while it ran: {unknown:?}; the index was not changed"
            );
        }
        k.keys
            .extend(self.records.iter().map(|r| r.fingerprint.clone()));
        Ok(())
    }
}
