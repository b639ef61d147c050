//! Step 3b: the writes, each planned against the destination (new, update or unchanged).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use futures::future::BoxFuture;
use md5::{Digest as _, Md5};

use super::check::Held;
use super::keys::KeyPlan;
use super::remote::Remote;
use super::report::{ObjectChange, PublishReport, SpecOutcome};
use super::source::SourceSpec;
use super::{Change, PLAN_REQUESTS, bounded};
use crate::buildcache::layout::{self, Manifest, Sha256Hex};
use crate::buildcache::storage::{FileBody, ObjectMeta, Storage};

/// Every write of a publish, planned: blobs first, then manifests (spec manifests in the
/// order of the selected specs, then key manifests, then `layout.json`).
pub(super) struct Plan {
    pub(super) blobs: Vec<Pending>,
    pub(super) manifests: Vec<Pending>,
}

impl Plan {
    /// Plans the blobs (compared by digest) and the manifests against the destination.
    /// `manifest_bytes` are the selected specs' manifests; those in `kept` are the
    /// destination's own bytes.
    pub(super) async fn make(
        dest: &dyn Storage,
        remote: &Remote,
        files: Vec<(FileBody, Option<Change>)>,
        keys: &KeyPlan,
        selected: &[SourceSpec],
        (manifest_bytes, kept): (Vec<Vec<u8>>, BTreeSet<usize>),
    ) -> Result<Plan> {
        let plans: Vec<BoxFuture<'_, Result<Pending>>> = files
            .into_iter()
            .map(|(f, change)| Box::pin(plan_file(dest, f, change)) as BoxFuture<'_, _>)
            .collect();
        let mut blobs = bounded(plans, PLAN_REQUESTS)
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        for k in &keys.records {
            if let Some(b) = &k.bytes {
                blobs.push(plan_blob(dest, remote, b.clone()).await?);
            }
        }
        let kept = &kept;
        let manifest_plans: Vec<BoxFuture<'_, Result<Pending>>> = selected
            .iter()
            .zip(manifest_bytes)
            .enumerate()
            .map(|(i, (s, bytes))| {
                let key = s.entry.key.clone();
                Box::pin(async move {
                    if kept.contains(&i) {
                        // Read from the destination a moment ago: these are its bytes.
                        return Ok(Pending::bytes(key, bytes, Change::Unchanged));
                    }
                    plan_bytes(dest, remote, key, bytes).await
                }) as BoxFuture<'_, _>
            })
            .collect();
        let mut manifests = bounded(manifest_plans, PLAN_REQUESTS)
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        for k in &keys.records {
            let json = Manifest::new(vec![k.record.clone()]).to_spack_json();
            manifests.push(plan_bytes(dest, remote, k.manifest_key(), json).await?);
        }
        let layout_present =
            remote.may_have(layout::LAYOUT_JSON) && dest.head(layout::LAYOUT_JSON).await?.is_some();
        manifests.push(if layout_present {
            Pending::bytes(layout::LAYOUT_JSON.into(), Vec::new(), Change::Unchanged)
                .sized(layout::LAYOUT_JSON_BYTES.len() as u64)
        } else {
            Pending::bytes(
                layout::LAYOUT_JSON.into(),
                layout::LAYOUT_JSON_BYTES.to_vec(),
                Change::New,
            )
        });
        Ok(Plan { blobs, manifests })
    }

    /// The writes to make, blobs first.
    pub(super) fn pending(&self) -> Vec<&Pending> {
        self.blobs
            .iter()
            .chain(&self.manifests)
            .filter(|p| p.change != Change::Unchanged)
            .collect()
    }

    /// How many blobs are written.
    pub(super) fn pending_blobs(&self) -> u64 {
        self.blobs
            .iter()
            .filter(|p| p.change != Change::Unchanged)
            .count() as u64
    }

    /// Fills the report's per-spec outcomes and object list. Each blob write is counted once,
    /// for the first spec that lists the blob.
    pub(super) fn account(
        &self,
        selected: &[SourceSpec],
        owner: &BTreeMap<String, usize>,
        report: &mut PublishReport,
    ) {
        let blob_writes: BTreeMap<&str, &Pending> = self
            .blobs
            .iter()
            .filter(|b| b.change != Change::Unchanged)
            .map(|b| (b.key.as_str(), b))
            .collect();
        for (i, s) in selected.iter().enumerate() {
            let written: Vec<&Pending> = s
                .entry
                .manifest
                .data
                .iter()
                .filter(|r| owner.get(&r.checksum) == Some(&i))
                .filter_map(|r| r.sha256().ok())
                .filter_map(|sha| blob_writes.get_key_value(layout::blob_key(&sha).as_str()))
                .collect::<BTreeMap<_, _>>()
                .into_values()
                .copied()
                .collect();
            let m = &self.manifests[i];
            let manifest_bytes = if m.change == Change::Unchanged {
                0
            } else {
                m.size
            };
            report.specs.push(SpecOutcome {
                id: s.entry.id.clone(),
                manifest: m.change,
                blobs_written: written.len(),
                bytes: written.iter().map(|b| b.size).sum::<u64>() + manifest_bytes,
            });
        }
        report.specs_published = selected.len() as u64;
        for p in self.blobs.iter().chain(&self.manifests) {
            report.objects.push(p.object());
            if p.change == Change::Unchanged {
                report.objects_skipped += 1;
                report.bytes_skipped += p.size;
            }
        }
    }
}

/// Plans a checked source blob: what the check found, or, when nothing the store keeps could
/// tell, what reading its copy back says.
async fn plan_file(dest: &dyn Storage, f: FileBody, change: Option<Change>) -> Result<Pending> {
    let change = match change {
        Some(c) => c,
        None => match dest.digest(&f.key).await? {
            Some((d, n)) if d == f.sha256 && n == f.size => Change::Unchanged,
            Some(_) => Change::Update,
            None => Change::New,
        },
    };
    Ok(Pending {
        key: f.key.clone(),
        size: f.size,
        body: Body::File(f),
        change,
        content_type: "application/octet-stream",
    })
}

/// A pending write.
pub(super) enum Body {
    File(FileBody),
    Bytes(Vec<u8>),
}

pub(super) struct Pending {
    pub(super) key: String,
    pub(super) body: Body,
    pub(super) size: u64,
    pub(super) change: Change,
    pub(super) content_type: &'static str,
}

impl Pending {
    /// A small in-memory write (a manifest).
    fn bytes(key: String, bytes: Vec<u8>, change: Change) -> Pending {
        Pending {
            key,
            size: bytes.len() as u64,
            body: Body::Bytes(bytes),
            change,
            content_type: "application/json",
        }
    }

    /// The same write, accounted as `size` bytes (an unchanged object not held in memory).
    fn sized(self, size: u64) -> Pending {
        Pending { size, ..self }
    }

    fn object(&self) -> ObjectChange {
        ObjectChange {
            key: self.key.clone(),
            change: self.change,
            size: self.size,
        }
    }
}

/// Plans a small in-memory blob (a public key): present with the same SHA-256 means
/// unchanged; other bytes under the digest's key are replaced.
pub(super) async fn plan_blob(
    dest: &dyn Storage,
    remote: &Remote,
    bytes: Vec<u8>,
) -> Result<Pending> {
    let sha = Sha256Hex::of(&bytes);
    let key = layout::blob_key(&sha);
    let size = bytes.len() as u64;
    let change = match Held::look_up(dest, remote, &key, &sha, size).await? {
        Held::Absent => Change::New,
        Held::Other => Change::Update,
        Held::Vouched => Change::Unchanged,
        Held::Compare(e) if e.md5.as_deref().is_some_and(|m| etag_is_md5_of(m, &bytes)) => {
            Change::Unchanged
        }
        Held::Compare(_) => match dest.digest(&key).await? {
            Some((d, n)) if d == sha && n == size => Change::Unchanged,
            Some(_) => Change::Update,
            None => Change::New,
        },
    };
    Ok(Pending {
        key,
        size,
        body: Body::Bytes(bytes),
        change,
        content_type: "application/octet-stream",
    })
}

/// Whether `etag` is a single-part ETag, the MD5 of `bytes`.
fn etag_is_md5_of(etag: &str, bytes: &[u8]) -> bool {
    !etag.contains('-') && etag.len() == 32 && etag == hex::encode(Md5::digest(bytes))
}

/// Plans a manifest (small, in memory): unchanged when the destination has these bytes.
pub(super) async fn plan_bytes(
    dest: &dyn Storage,
    remote: &Remote,
    key: String,
    bytes: Vec<u8>,
) -> Result<Pending> {
    let change = match remote.objects.get(&key) {
        None if remote.listed => Change::New,
        Some(m) if m.size != bytes.len() as u64 => Change::Update,
        // A single-part ETag is the MD5 of the bytes: no download for the common case.
        Some(ObjectMeta { etag: Some(e), .. }) if etag_is_md5_of(e, &bytes) => Change::Unchanged,
        // Listed without an ETag (some servers): a HEAD has it, else download.
        _ => match dest.head(&key).await? {
            None => Change::New,
            Some(m) if m.size != bytes.len() as u64 => Change::Update,
            Some(ObjectMeta { etag: Some(e), .. }) if etag_is_md5_of(&e, &bytes) => {
                Change::Unchanged
            }
            Some(_) => match dest.get(&key).await? {
                Some(o) if o.bytes == bytes => Change::Unchanged,
                Some(_) => Change::Update,
                None => Change::New,
            },
        },
    };
    Ok(Pending {
        key,
        size: bytes.len() as u64,
        body: Body::Bytes(bytes),
        change,
        content_type: "application/json",
    })
}
