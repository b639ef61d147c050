//! The destination as its listings saw it.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::buildcache::storage::{ObjectMeta, Storage};

/// The destination as its listings saw it: `v3/` (manifests, indexes) when the store can
/// list, and `blobs/` only when some manifest is missing (see [`Remote::list_blobs_if_needed`]).
pub(super) struct Remote {
    /// Whether `v3/` was listed (every manifest key is known).
    pub(super) listed: bool,
    /// Whether `blobs/` was listed (every blob key is known).
    pub(super) blobs_listed: bool,
    pub(super) objects: BTreeMap<String, ObjectMeta>,
}

impl Remote {
    /// Lists `v3/`.
    pub(super) async fn read(dest: &dyn Storage) -> Result<Self> {
        if !dest.can_list() {
            return Ok(Remote {
                listed: false,
                blobs_listed: false,
                objects: BTreeMap::new(),
            });
        }
        Ok(Remote {
            listed: true,
            blobs_listed: false,
            objects: dest
                .list("v3/")
                .await?
                .into_iter()
                .map(|m| (m.key.clone(), m))
                .collect(),
        })
    }

    /// Lists `blobs/` unless the destination holds the manifest of every spec in
    /// `manifests`. This engine writes a spec's blobs before its manifest, so a present
    /// manifest says its blobs are most likely there: they are looked up one by one anyway
    /// (one HEAD each, to compare by digest), and listing them too would only add requests. A
    /// missing manifest means blobs are likely missing, and the listing saves a HEAD per
    /// absent blob.
    pub(super) async fn list_blobs_if_needed<'a>(
        &mut self,
        dest: &dyn Storage,
        mut manifests: impl Iterator<Item = &'a str>,
    ) -> Result<()> {
        if !self.listed || manifests.all(|k| self.objects.contains_key(k)) {
            return Ok(());
        }
        for m in dest.list("blobs/").await? {
            self.objects.insert(m.key.clone(), m);
        }
        self.blobs_listed = true;
        Ok(())
    }

    /// Whether `key` may exist (unknown when its prefix was not listed).
    pub(super) fn may_have(&self, key: &str) -> bool {
        let known = if key.starts_with("blobs/") {
            self.blobs_listed
        } else {
            self.listed
        };
        !known || self.objects.contains_key(key)
    }
}
