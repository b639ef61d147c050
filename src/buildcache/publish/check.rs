//! Step 3a: every blob a published manifest names, checked from one open handle (size, then
//! SHA-256) and compared with what the destination holds under its key.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use futures::future::BoxFuture;

use super::keys::KeyPlan;
use super::remote::Remote;
use super::source::SourceSpec;
use super::{Change, PLAN_REQUESTS, SOURCE_READS, bounded};
use crate::buildcache::index::{KeyIndex, read_pointer};
use crate::buildcache::layout::{self, BlobRecord, Sha256Hex, SpecNode};
use crate::buildcache::storage::{Existing, FileBody, LocalDir, Object, ObjectMeta, Storage, Want};
use crate::buildcache::{read_index, read_spec_nodes};
use crate::pgp::SigningKey;

/// What the checks of step 3 found: the source is complete and sound, and the destination's
/// index and key index can be merged.
pub(super) struct Checked {
    /// Every blob to publish, checked, with what the destination holds under its key (`None`:
    /// only reading it back can tell).
    pub(super) files: Vec<(FileBody, Option<Change>)>,
    /// Which selected spec (by index) first names each blob (by checksum): its writes are
    /// counted for that spec.
    pub(super) owner: BTreeMap<String, usize>,
    /// The manifests the destination holds where it may already have ours (by selected index).
    pub(super) existing: BTreeMap<usize, Vec<u8>>,
}

/// Checks every blob the selected specs and published keys need, reads every selected spec's
/// nodes (into `selected`), and reads the destination meanwhile: its index and key index (both
/// must merge), the manifests it may hold signed by `key` (GET), and the version tags of the
/// manifests a listing without ETags showed (HEAD, into `remote`). Any problem of the source
/// fails here, all of them named, before a single write.
pub(super) async fn check_all(
    source: &LocalDir,
    dest: &dyn Storage,
    remote: &mut Remote,
    key: Option<&SigningKey>,
    selected: &mut [SourceSpec],
    keys: &KeyPlan,
) -> Result<Checked> {
    let (records, owner) = blob_records(selected, keys);
    remote
        .list_blobs_if_needed(dest, selected.iter().map(|s| s.entry.key.as_str()))
        .await?;
    let (fetch, look_up) = manifest_reads(key, selected, remote);
    let remote_ref = &*remote;
    let blob_jobs = blob_jobs(source, dest, remote_ref, &records);
    let fetches: Vec<BoxFuture<'_, Result<Option<Object>>>> = fetch
        .iter()
        .map(|&i| Box::pin(dest.get(&selected[i].entry.key)) as BoxFuture<'_, _>)
        .collect();
    let heads: Vec<BoxFuture<'_, Result<Option<ObjectMeta>>>> = look_up
        .iter()
        .map(|k| Box::pin(dest.head(k)) as BoxFuture<'_, _>)
        .collect();
    // The spec nodes for the index (each spec blob checked by size and digest as it is read).
    let node_reads: Vec<BoxFuture<'_, Result<Vec<SpecNode>>>> = selected
        .iter()
        .map(|s| Box::pin(read_spec_nodes(source, &s.entry)) as BoxFuture<'_, _>)
        .collect();
    // Lookups run PLAN_REQUESTS at a time and hashing one per core, so the two overlap; so
    // does reading the destination.
    let (checked, nodes, (dest_index, dest_keys, fetched, looked_up)) = tokio::join!(
        bounded(blob_jobs, PLAN_REQUESTS),
        bounded(node_reads, SOURCE_READS),
        async {
            tokio::join!(
                read_index(dest),
                read_pointer::<KeyIndex>(dest),
                bounded(fetches, PLAN_REQUESTS),
                bounded(heads, PLAN_REQUESTS),
            )
        }
    );

    let mut problems = keys.problems.clone();
    let mut files = Vec::new();
    for (rec, c) in records.iter().zip(checked) {
        match c? {
            Ok(f) => files.push(f),
            Err(p) => {
                let who = owner
                    .get(&rec.checksum)
                    .map(|&i| selected[i].entry.id.to_string())
                    .unwrap_or_else(|| "key".into());
                problems.push(format!("{who}: {p}"));
            }
        }
    }
    if problems.is_empty() {
        for (s, n) in selected.iter_mut().zip(nodes) {
            match n {
                Ok(n) => s.nodes = n,
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "the source buildcache {} is incomplete or corrupt, so nothing was written:\n  - {}",
            source.root().display(),
            problems.join("\n  - ")
        );
    }

    // The destination: its index must merge, its key index must name only known keys.
    dest_index.with_context(|| {
        format!(
            "the destination {} has an index that cannot be read and merged; nothing was written",
            dest.url()
        )
    })?;
    let dest_keys = dest_keys.with_context(|| {
        format!(
            "the destination {} has a key index that cannot be read; nothing was written",
            dest.url()
        )
    })?;
    keys.check_destination(dest, dest_keys.as_ref())?;
    for (k, m) in look_up.into_iter().zip(looked_up) {
        match m? {
            Some(m) => remote.objects.insert(k, m),
            None => remote.objects.remove(&k),
        };
    }
    let mut existing = BTreeMap::new();
    for (&i, o) in fetch.iter().zip(fetched) {
        if let Some(o) = o? {
            existing.insert(i, o.bytes);
        }
    }
    Ok(Checked {
        files,
        owner,
        existing,
    })
}

/// Which selected specs' manifests the destination may already hold signed by `key`: fetched
/// (by index). The others the listing showed without a version tag: looked up (by key).
fn manifest_reads(
    key: Option<&SigningKey>,
    selected: &[SourceSpec],
    remote: &Remote,
) -> (Vec<usize>, Vec<String>) {
    let our_fpr = key.map(SigningKey::fingerprint);
    let fetch: Vec<usize> = match &our_fpr {
        Some(fpr) => selected
            .iter()
            .enumerate()
            .filter(|(_, s)| s.signer.as_ref() != Some(fpr) && remote.may_have(&s.entry.key))
            .map(|(i, _)| i)
            .collect(),
        None => Vec::new(),
    };
    let look_up = selected
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            !fetch.contains(i)
                && remote
                    .objects
                    .get(&s.entry.key)
                    .is_some_and(|m| m.etag.is_none())
        })
        .map(|(_, s)| s.entry.key.clone())
        .collect();
    (fetch, look_up)
}

/// Every blob the selected specs and published keys need, once, largest first (the longest
/// hashes and uploads start first, so none is left running alone at the end:
/// longest-processing-time-first scheduling), and which spec first names each.
fn blob_records(
    selected: &[SourceSpec],
    keys: &KeyPlan,
) -> (Vec<BlobRecord>, BTreeMap<String, usize>) {
    let mut records: Vec<BlobRecord> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    for (i, s) in selected.iter().enumerate() {
        for rec in &s.entry.manifest.data {
            if seen.insert(rec.checksum.clone()) {
                owner.insert(rec.checksum.clone(), i);
                records.push(rec.clone());
            }
        }
    }
    for k in &keys.records {
        if k.bytes.is_none() && seen.insert(k.record.checksum.clone()) {
            records.push(k.record.clone());
        }
    }
    records.sort_by_key(|r| std::cmp::Reverse(r.content_length));
    (records, owner)
}

/// One check per blob: looked up at the destination first (one HEAD, unless the listing
/// showed it absent: bytes the store vouches for by SHA-256 are not hashed again), then checked
/// from one open handle on a blocking thread, one per core at a time.
fn blob_jobs<'a>(
    source: &'a LocalDir,
    dest: &'a dyn Storage,
    remote: &'a Remote,
    records: &'a [BlobRecord],
) -> Vec<BoxFuture<'a, Result<SourceCheck>>> {
    let multipart = dest.multipart();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let cpu = std::sync::Arc::new(tokio::sync::Semaphore::new(workers));
    records
        .iter()
        .map(|rec| {
            let cpu = cpu.clone();
            Box::pin(async move {
                let held = match rec.sha256() {
                    Ok(sha) => {
                        let key = layout::blob_key(&sha);
                        Held::look_up(dest, remote, &key, &sha, rec.content_length).await?
                    }
                    Err(_) => Held::Absent,
                };
                let _hashing = cpu.acquire_owned().await.expect("semaphore open");
                let (src, rec) = (source.clone(), rec.clone());
                tokio::task::spawn_blocking(move || check_source_blob(&src, &rec, multipart, held))
                    .await?
            }) as BoxFuture<'a, _>
        })
        .collect()
}

/// A source blob that passed its checks, with what the destination's copy is known to be
/// (`None`: only reading it back can tell), or what is wrong with it.
pub(super) type SourceCheck = std::result::Result<(FileBody, Option<Change>), String>;

/// What the destination holds under a blob's key, from one lookup before the source is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Held {
    /// Nothing (not listed, or no object): the blob will be uploaded.
    Absent,
    /// Another object (another size, or another SHA-256 the store vouches for): replaced.
    Other,
    /// These very bytes, by a SHA-256 the store vouches for: the source is checked, not hashed.
    Vouched,
    /// An object to compare by the digests the store keeps ([`Existing::wants`]), computed
    /// in the same pass as the source's SHA-256.
    Compare(Existing),
}

impl Held {
    /// Looks up `key` at the destination (unless the listing showed it absent) for a blob of
    /// `size` bytes and SHA-256 `sha`.
    pub(super) async fn look_up(
        dest: &dyn Storage,
        remote: &Remote,
        key: &str,
        sha: &Sha256Hex,
        size: u64,
    ) -> Result<Held> {
        if !remote.may_have(key) {
            return Ok(Held::Absent);
        }
        Ok(match dest.lookup(key).await? {
            None => Held::Absent,
            Some(e) if e.size != size => Held::Other,
            Some(e) => match &e.sha256 {
                Some(d) if d == sha => Held::Vouched,
                Some(_) => Held::Other,
                None => Held::Compare(e),
            },
        })
    }
}

/// Checks one source blob from one open handle: the size from `fstat` first, then, unless the
/// destination vouches for these bytes (they are not uploaded), the SHA-256 and, in the same
/// pass, the part digests an upload in parts will need, or the digests the destination's
/// copy is compared by (`multipart`: the destination's threshold and part size).
fn check_source_blob(
    source: &LocalDir,
    rec: &BlobRecord,
    multipart: Option<(u64, u64)>,
    held: Held,
) -> Result<SourceCheck> {
    use std::io::Read;
    let sha = match rec.sha256() {
        Ok(s) => s,
        Err(e) => return Ok(Err(format!("bad blob record: {e}"))),
    };
    let key = layout::blob_key(&sha);
    let Some((f, size)) = source.open_file(&key)? else {
        return Ok(Err(format!("blob {key} ({}) is missing", rec.media_type)));
    };
    if size != rec.content_length {
        return Ok(Err(format!(
            "blob {key} ({}) is {size} bytes, the manifest says {}",
            rec.media_type, rec.content_length
        )));
    }
    let part_size = multipart.map_or(0, |(_, p)| p);
    let uploaded_in_parts = multipart.is_some_and(|(threshold, p)| p > 0 && size >= threshold);
    let upload = Want {
        part_sha256: uploaded_in_parts,
        ..Want::default()
    };
    let want = match &held {
        Held::Vouched => {
            let body = FileBody {
                source: source.clone(),
                key,
                size,
                sha256: sha,
                part_size: 0,
                parts: Vec::new(),
            };
            return Ok(Ok((body, Some(Change::Unchanged))));
        }
        Held::Absent | Held::Other => upload,
        // What the comparison needs; should the copy differ, the store hashes the parts
        // for the upload itself (one more pass, only then).
        Held::Compare(e) => e.wants(),
    };
    let r = std::io::BufReader::with_capacity(1 << 20, f.take(size));
    let hashed = crate::buildcache::storage::hash_with_parts(r, Some(part_size), want)
        .with_context(|| format!("cannot read {}", source.root().join(&key).display()))?;
    if hashed.whole != sha {
        return Ok(Err(format!(
            "blob {key} ({}) has sha256 {}, the manifest says {sha}",
            rec.media_type, hashed.whole
        )));
    }
    let change = match &held {
        Held::Absent => Some(Change::New),
        Held::Compare(e) => match e.matches(&hashed) {
            Some(true) => Some(Change::Unchanged),
            Some(false) => Some(Change::Update),
            None => None,
        },
        Held::Other => Some(Change::Update),
        Held::Vouched => Some(Change::Unchanged),
    };
    let body = FileBody {
        source: source.clone(),
        key,
        size,
        sha256: sha,
        part_size: if hashed.parts.is_empty() {
            0
        } else {
            part_size
        },
        parts: hashed.parts,
    };
    Ok(Ok((body, change)))
}
