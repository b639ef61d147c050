//! Race-free updates of the buildcache's pointer manifests: the index
//! (`v3/manifests/index/index.manifest.json` → DB v8 blob) and the key index
//! (`v3/manifests/key/keys.manifest.json` → key-index blob).
//!
//! Many publishers (32 matrix legs) write one prefix at the same time. Each update is a
//! read-merge-write cycle:
//!
//! 1. GET the manifest (remember its ETag) and the blob it points at;
//! 2. merge our entries into it ([`merge_index`], [`merge_keys`]); stop if nothing changes;
//! 3. PUT the merged blob (content-addressed, so it never overwrites anything that matters);
//! 4. PUT the manifest with `If-Match: <etag>` (or `If-None-Match: *` when there was none).
//!    A 412/409 means someone else won the race: start again from 1 (with jittered backoff);
//! 5. read it back and check that our entries are there (defence in depth against servers
//!    whose conditional check is not atomic; real S3's is).
//!
//! **Fallback for servers without conditional writes.** [`probe_write_mode`] creates a probe
//! object twice with `If-None-Match: *`: when the server answers 501, or accepts the second
//! create, it cannot do compare-and-swap, and [`WriteMode::Lock`] is used: a lease lock object
//! `v3/.slurm-factory.lock` holding a random owner token. A publisher waits while a fresh lock
//! (younger than [`LOCK_STALE`]) exists, writes its token, waits [`LOCK_SETTLE`], reads the lock
//! back and owns it only if its token is still there; it then does steps 1–5 without
//! conditions and deletes the lock. Without an atomic primitive this is best-effort (two
//! publishers whose lock writes land within the settle time of each other's read-back can
//! both proceed); step 5 catches most such losses and retries. For such servers, running one
//! final publisher (or `spack buildcache update-index`) after the matrix is the safe choice.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use serde_json::Value;

use super::S3Url;
use super::local::{INDEX_MEDIA_TYPE, KEYS_MEDIA_TYPE, Manifest, Record, Sha256Hex};
use super::retry::{self, ErrorKind, classify, describe};
use crate::buildcache::index::Index;

/// `Cache-Control` of content-addressed blobs: a CDN may keep them forever.
pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of spec/key manifests and the layout file.
pub const CACHE_MANIFEST: &str = "public, max-age=60, must-revalidate";
/// `Cache-Control` of the index and key index manifests: always revalidate (cheap 304s).
pub const CACHE_INDEX: &str = "no-cache";

/// The lock object of [`WriteMode::Lock`], relative to the buildcache prefix.
pub const LOCK_REL: &str = "v3/.slurm-factory.lock";
/// A lock older than this is considered abandoned.
pub const LOCK_STALE: Duration = Duration::from_secs(300);
/// How long a publisher waits after writing its lock token before reading it back.
pub const LOCK_SETTLE: Duration = Duration::from_millis(750);

/// How the pointer manifests are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Compare-and-swap with `If-Match` / `If-None-Match` (AWS S3, MinIO, moto, ...).
    Conditional,
    /// The lease-lock fallback for servers that ignore or reject conditional writes.
    Lock,
}

/// Which pointer manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pointer {
    /// The spec index (DB v8).
    Index,
    /// The key index.
    Keys,
}

impl Pointer {
    /// The manifest's path relative to the prefix.
    pub fn manifest_rel(self) -> &'static str {
        match self {
            Pointer::Index => super::local::INDEX_MANIFEST,
            Pointer::Keys => super::local::KEYS_MANIFEST,
        }
    }

    fn media_type(self) -> &'static str {
        match self {
            Pointer::Index => INDEX_MEDIA_TYPE,
            Pointer::Keys => KEYS_MEDIA_TYPE,
        }
    }

    /// Merges `ours` into `remote`.
    pub fn merge(self, remote: &Value, ours: &Value) -> Result<Value> {
        match self {
            Pointer::Index => merge_index(remote, ours),
            Pointer::Keys => merge_keys(remote, ours),
        }
    }

    /// Whether every entry of `ours` is in `remote`, and, for the index, every spec we
    /// publish is marked `in_buildcache` there.
    pub fn contains(self, remote: &Value, ours: &Value) -> bool {
        let (r, o) = match self {
            Pointer::Index => (
                &remote["database"]["installs"],
                &ours["database"]["installs"],
            ),
            Pointer::Keys => (&remote["keys"], &ours["keys"]),
        };
        let published = |rec: &Value| rec["in_buildcache"].as_bool() == Some(true);
        match (r.as_object(), o.as_object()) {
            (Some(r), Some(o)) => o.iter().all(|(k, ours)| {
                r.get(k).is_some_and(|theirs| {
                    self == Pointer::Keys || !published(ours) || published(theirs)
                })
            }),
            (_, None) => true,
            _ => false,
        }
    }
}

/// Merges two Spack DB v8 indexes (`{"database":{"version":"8","installs":{hash: record}}}`)
/// with [`crate::buildcache::index::Index::merge_index`]: the union of `installs`; for a hash
/// in both, our record wins only where we publish its binary (`in_buildcache: true`), so no
/// spec another publisher pushed is hidden; `ref_count` is recomputed.
pub fn merge_index(remote: &Value, ours: &Value) -> Result<Value> {
    let parse = |what: &str, v: &Value| -> Result<Index> {
        let version = v["database"]["version"].as_str().unwrap_or("?");
        if version != "8" {
            bail!(
                "the {what} buildcache index is database version {version}, not 8; both sides must come from Spack 1.0 (layout v3)"
            );
        }
        if !v["database"]["installs"].is_object() {
            bail!("the {what} buildcache index has no `database.installs` object");
        }
        Index::parse(&serde_json::to_vec(v)?).with_context(|| {
            format!("the {what} buildcache index is malformed; regenerate it with `spack buildcache update-index`")
        })
    };
    let mut merged = parse("remote", remote)?;
    merged.merge_index(&parse("local", ours)?)?;
    Ok(serde_json::from_slice(&merged.to_json())?)
}

/// Merges two key indexes (`{"keys":{FPR:{}}}`): the union of `keys`.
pub fn merge_keys(remote: &Value, ours: &Value) -> Result<Value> {
    for (what, v) in [("remote", remote), ("local", ours)] {
        if !v["keys"].is_object() {
            bail!("the {what} key index has no `keys` object");
        }
    }
    let mut merged = remote.clone();
    let keys = merged["keys"].as_object_mut().expect("checked");
    for (k, v) in ours["keys"].as_object().expect("checked") {
        keys.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Ok(merged)
}

/// What an update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerUpdate {
    /// Whether the manifest was written (false: the remote already held every entry).
    pub written: bool,
    /// Read-merge-write cycles used (1 = no conflict).
    pub attempts: u32,
    /// Objects actually written (merged blobs that were new, and the manifest).
    pub objects_written: u64,
}

/// The current state of a pointer manifest at the destination.
#[derive(Debug, Clone)]
pub struct Current {
    /// The manifest's ETag (for `If-Match`).
    pub etag: String,
    /// The JSON document the manifest points at.
    pub doc: Value,
}

/// Reads a pointer manifest and the document it points at; `None` when there is no manifest.
pub async fn read_current(client: &Client, url: &S3Url, rel: &str) -> Result<Option<Current>> {
    let key = url.key(rel);
    let out = client
        .get_object()
        .bucket(url.bucket())
        .key(&key)
        .send()
        .await;
    let out = match out {
        Ok(o) => o,
        Err(e) if classify(&e) == ErrorKind::NotFound => return Ok(None),
        Err(e) => bail!("cannot read s3://{}/{key}: {}", url.bucket(), describe(&e)),
    };
    let etag = out.e_tag().unwrap_or_default().to_owned();
    let bytes = out
        .body
        .collect()
        .await
        .with_context(|| format!("cannot read s3://{}/{key}", url.bucket()))?
        .into_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let m = Manifest::parse(&text)
        .with_context(|| format!("s3://{}/{key} is not a valid manifest", url.bucket()))?;
    let r = m.data.first().context("pointer manifest without records")?;
    let digest = Sha256Hex::parse(&r.checksum)?;
    let doc = read_blob_json(client, url, &digest).await.with_context(|| {
        format!(
            "s3://{}/{key} points at blob {digest}, which cannot be read; repair the destination (e.g. `spack buildcache update-index`) before publishing",
            url.bucket()
        )
    })?;
    Ok(Some(Current { etag, doc }))
}

/// Reads a content-addressed JSON blob and checks its digest.
pub async fn read_blob_json(client: &Client, url: &S3Url, digest: &Sha256Hex) -> Result<Value> {
    let key = url.key(&digest.blob_path());
    let out = client
        .get_object()
        .bucket(url.bucket())
        .key(&key)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GET {key}: {}", describe(&e)))?;
    let bytes = out.body.collect().await?.into_bytes();
    if Sha256Hex::of(&bytes) != *digest {
        bail!("blob {key} does not match its SHA-256 name");
    }
    Ok(serde_json::from_slice(&bytes)?)
}

/// PUTs a small object. `condition`: `Some(Some(etag))` → `If-Match`, `Some(None)` →
/// `If-None-Match: *`, `None` → unconditional. Returns the new ETag.
pub(crate) async fn put_small(
    client: &Client,
    url: &S3Url,
    rel: &str,
    bytes: Vec<u8>,
    content_type: &str,
    cache_control: &str,
    condition: Option<Option<&str>>,
) -> Result<String, aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::put_object::PutObjectError>>
{
    let digest = Sha256Hex::of(&bytes);
    let mut req = client
        .put_object()
        .bucket(url.bucket())
        .key(url.key(rel))
        .content_type(content_type)
        .cache_control(cache_control)
        .content_length(bytes.len() as i64)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(digest.to_base64())
        .body(ByteStream::from(bytes));
    match condition {
        Some(Some(etag)) => req = req.if_match(etag),
        Some(None) => req = req.if_none_match("*"),
        None => {}
    }
    let out = req.send().await?;
    Ok(out.e_tag().unwrap_or_default().to_owned())
}

/// Finds out whether the destination supports conditional writes (see the module docs).
/// Writes and deletes one tiny probe object under `v3/`.
pub async fn probe_write_mode(client: &Client, url: &S3Url) -> Result<WriteMode> {
    let rel = format!(
        "v3/.slurm-factory-cas-probe-{}",
        uuid::Uuid::new_v4().simple()
    );
    let put = |body: &'static [u8]| {
        put_small(
            client,
            url,
            &rel,
            body.to_vec(),
            "text/plain",
            "no-store",
            Some(None),
        )
    };
    let mode = match put(b"1").await {
        Err(e) if classify(&e) == ErrorKind::NotImplemented => WriteMode::Lock,
        Err(e) => bail!(
            "cannot write to {url}: {}. Check that the credentials may s3:PutObject there",
            describe(&e)
        ),
        Ok(_) => match put(b"2").await {
            Ok(_) => WriteMode::Lock,
            Err(e) if classify(&e) == ErrorKind::Conflict => WriteMode::Conditional,
            Err(e) if classify(&e) == ErrorKind::NotImplemented => WriteMode::Lock,
            Err(e) => bail!("cannot write to {url}: {}", describe(&e)),
        },
    };
    // Best effort: a leftover probe is a few bytes nobody reads.
    let _ = client
        .delete_object()
        .bucket(url.bucket())
        .key(url.key(&rel))
        .send()
        .await;
    Ok(mode)
}

/// Merges `ours` into the destination's pointer manifest (see the module docs).
pub async fn update_pointer(
    client: &Client,
    url: &S3Url,
    pointer: Pointer,
    ours: &Value,
    mode: WriteMode,
    max_attempts: u32,
) -> Result<PointerUpdate> {
    update_pointer_with(client, url, pointer, ours, None, mode, max_attempts).await
}

/// [`update_pointer`], where `published` is the record of `ours` as a blob that is already
/// at the destination (the local cache's own index blob, uploaded with the other blobs): when
/// there is nothing to merge with, the manifest points at it, keeping Spack's exact bytes.
pub async fn update_pointer_with(
    client: &Client,
    url: &S3Url,
    pointer: Pointer,
    ours: &Value,
    published: Option<&Record>,
    mode: WriteMode,
    max_attempts: u32,
) -> Result<PointerUpdate> {
    let lock = match mode {
        WriteMode::Conditional => None,
        WriteMode::Lock => Some(LeaseLock::acquire(client, url).await?),
    };
    let result = update_cycles(client, url, pointer, ours, published, mode, max_attempts).await;
    if let Some(l) = lock {
        l.release(client, url).await;
    }
    result
}

async fn update_cycles(
    client: &Client,
    url: &S3Url,
    pointer: Pointer,
    ours: &Value,
    published: Option<&Record>,
    mode: WriteMode,
    max_attempts: u32,
) -> Result<PointerUpdate> {
    let rel = pointer.manifest_rel();
    let mut written = false;
    let mut objects_written = 0;
    for attempt in 1..=max_attempts.max(1) {
        let current = read_current(client, url, rel).await?;
        let merged = match &current {
            Some(c) => {
                let merged = pointer.merge(&c.doc, ours)?;
                if merged == c.doc {
                    return Ok(PointerUpdate {
                        written,
                        attempts: attempt,
                        objects_written,
                    });
                }
                merged
            }
            None => ours.clone(),
        };
        let record = match (&current, published) {
            (None, Some(r)) => r.clone(),
            _ => {
                let blob = serde_json::to_vec(&merged)?;
                let digest = Sha256Hex::of(&blob);
                let record = Record {
                    content_length: blob.len() as u64,
                    media_type: pointer.media_type().to_owned(),
                    compression: "none".to_owned(),
                    checksum_algorithm: "sha256".to_owned(),
                    checksum: digest.as_str().to_owned(),
                };
                // The blob first: the manifest must never point at something missing.
                let blob_cond = (mode == WriteMode::Conditional).then_some(None);
                match put_small(
                    client,
                    url,
                    &digest.blob_path(),
                    blob,
                    "application/json",
                    CACHE_IMMUTABLE,
                    blob_cond,
                )
                .await
                {
                    Ok(_) => objects_written += 1,
                    // Already there: content-addressed, so it is the same bytes.
                    Err(e) if classify(&e) == ErrorKind::Conflict => {}
                    Err(e) => bail!("cannot upload the merged {rel} blob: {}", describe(&e)),
                }
                record
            }
        };
        let condition = match (mode, &current) {
            (WriteMode::Lock, _) => None,
            (WriteMode::Conditional, Some(c)) => Some(Some(c.etag.as_str())),
            (WriteMode::Conditional, None) => Some(None),
        };
        let manifest = Manifest::single(record).to_spack_json();
        match put_small(
            client,
            url,
            rel,
            manifest,
            "application/json",
            CACHE_INDEX,
            condition,
        )
        .await
        {
            Ok(_) => {
                written = true;
                objects_written += 1;
                // Read back: our entries must be there (or in a later writer's merge).
                if let Some(now) = read_current(client, url, rel).await?
                    && pointer.contains(&now.doc, ours)
                {
                    return Ok(PointerUpdate {
                        written,
                        attempts: attempt,
                        objects_written,
                    });
                }
            }
            Err(e) if classify(&e) == ErrorKind::Conflict => {}
            Err(e) if classify(&e) == ErrorKind::NotFound && mode == WriteMode::Conditional => {
                // If-Match on an object deleted meanwhile: start over.
            }
            Err(e) => bail!("cannot write {rel}: {}", describe(&e)),
        }
        tokio::time::sleep(retry::backoff(
            attempt,
            Duration::from_millis(50),
            Duration::from_secs(3),
        ))
        .await;
    }
    bail!(
        "gave up updating {rel} at {url} after {max_attempts} attempts: other publishers kept changing it. Re-run this step; it uploads only what is missing"
    )
}

/// The lease lock of [`WriteMode::Lock`].
struct LeaseLock {
    token: String,
}

impl LeaseLock {
    async fn acquire(client: &Client, url: &S3Url) -> Result<Self> {
        let token = uuid::Uuid::new_v4().to_string();
        let key = url.key(LOCK_REL);
        let deadline = Instant::now() + LOCK_STALE * 2;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if Instant::now() > deadline {
                bail!(
                    "could not take the publish lock s3://{}/{key} for {}s; if no other publisher is running, delete it",
                    url.bucket(),
                    (LOCK_STALE * 2).as_secs()
                );
            }
            let head = client
                .head_object()
                .bucket(url.bucket())
                .key(&key)
                .send()
                .await;
            let free = match head {
                Err(e) if classify(&e) == ErrorKind::NotFound => true,
                Err(e) => bail!("cannot check the publish lock {key}: {}", describe(&e)),
                Ok(h) => h
                    .last_modified()
                    .and_then(|t| std::time::SystemTime::try_from(*t).ok())
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > LOCK_STALE),
            };
            if free {
                put_small(
                    client,
                    url,
                    LOCK_REL,
                    token.clone().into_bytes(),
                    "text/plain",
                    "no-store",
                    None,
                )
                .await
                .map_err(|e| anyhow::anyhow!("cannot write the publish lock: {}", describe(&e)))?;
                tokio::time::sleep(LOCK_SETTLE).await;
                let got = client
                    .get_object()
                    .bucket(url.bucket())
                    .key(&key)
                    .send()
                    .await;
                if let Ok(o) = got {
                    let body = o.body.collect().await.map(|b| b.into_bytes());
                    if body.is_ok_and(|b| b.as_ref() == token.as_bytes()) {
                        return Ok(LeaseLock { token });
                    }
                }
            }
            tokio::time::sleep(retry::backoff(
                attempt.min(6),
                Duration::from_millis(200),
                Duration::from_secs(3),
            ))
            .await;
        }
    }

    async fn release(self, client: &Client, url: &S3Url) {
        let key = url.key(LOCK_REL);
        // Delete only our own lock.
        if let Ok(o) = client
            .get_object()
            .bucket(url.bucket())
            .key(&key)
            .send()
            .await
            && let Ok(b) = o.body.collect().await
            && b.into_bytes().as_ref() == self.token.as_bytes()
        {
            let _ = client
                .delete_object()
                .bucket(url.bucket())
                .key(&key)
                .send()
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(name: &str, hash: &str, deps: &[&str], in_buildcache: bool) -> Value {
        let deps: Vec<Value> = deps
            .iter()
            .map(|d| json!({"name": d, "hash": d, "parameters": {"deptypes": ["link"], "virtuals": []}}))
            .collect();
        json!({"spec": {"name": name, "version": "1.0", "hash": hash, "dependencies": deps}, "ref_count": 0, "in_buildcache": in_buildcache})
    }

    fn db(records: &[(&str, Value)]) -> Value {
        let installs: serde_json::Map<String, Value> = records
            .iter()
            .map(|(h, r)| (h.to_string(), r.clone()))
            .collect();
        json!({"database": {"version": "8", "installs": installs}})
    }

    #[test]
    fn index_merge_is_a_union() {
        let a = db(&[
            ("a", rec("a", "a", &[], true)),
            ("b", rec("b", "b", &["a"], true)),
        ]);
        let b = db(&[
            ("a", rec("a", "a", &[], true)),
            ("c", rec("c", "c", &["a"], true)),
        ]);
        let m = merge_index(&a, &b).unwrap();
        let installs = m["database"]["installs"].as_object().unwrap();
        let keys: Vec<_> = installs.keys().cloned().collect();
        assert_eq!(keys, ["a", "b", "c"]);
        // Two records depend on `a` now.
        assert_eq!(installs["a"]["ref_count"], 2);
        assert!(Pointer::Index.contains(&m, &a) && Pointer::Index.contains(&m, &b));
        assert!(!Pointer::Index.contains(&a, &b));
        let v7 = json!({"database":{"version":"7","installs":{}}});
        assert!(
            merge_index(&v7, &b)
                .unwrap_err()
                .to_string()
                .contains("version 7")
        );
        let broken = json!({"database":{"version":"8","installs":{"x":{"ref_count":0}}}});
        let err = format!("{:#}", merge_index(&broken, &b).unwrap_err());
        assert!(
            err.contains("remote buildcache index is malformed"),
            "{err}"
        );
    }

    /// Publisher A pushed `x`; publisher B has `x` only as a dependency it did not push
    /// (`in_buildcache: false`). B's merge must not hide A's `x` from Spack.
    #[test]
    fn a_dependency_record_never_unpublishes_a_pushed_spec() {
        let remote = db(&[("x", rec("x", "x", &[], true))]);
        let ours = db(&[
            ("x", rec("x", "x", &[], false)),
            ("y", rec("y", "y", &["x"], true)),
        ]);
        let m = merge_index(&remote, &ours).unwrap();
        let installs = &m["database"]["installs"];
        assert_eq!(installs["x"]["in_buildcache"], true);
        assert_eq!(installs["y"]["in_buildcache"], true);
        assert_eq!(installs["x"]["ref_count"], 1);
        assert!(Pointer::Index.contains(&m, &ours));
        // And a remote that has `x` unpublished gets it published by one who pushes it.
        let m2 = merge_index(&ours, &remote).unwrap();
        assert_eq!(m2["database"]["installs"]["x"]["in_buildcache"], true);
        // A destination that still shows our pushed spec as unpublished does not contain ours.
        assert!(!Pointer::Index.contains(&ours, &remote));
    }

    #[test]
    fn key_merge_is_a_union() {
        let a = json!({"keys":{"A":{}}});
        let b = json!({"keys":{"B":{}}});
        let m = merge_keys(&a, &b).unwrap();
        assert_eq!(m, json!({"keys":{"A":{},"B":{}}}));
        assert!(merge_keys(&json!({}), &b).is_err());
    }
}
