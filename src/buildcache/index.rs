//! The buildcache index (Spack's DB v8 JSON, `application/vnd.spack.db.v8+json`) and the key
//! index (`application/vnd.spack.keyindex.v1+json`), with a merge that never loses a spec.
//!
//! The index blob is what Spack's `BuildCacheDatabase._write_to_file` writes:
//! `{"database":{"version":"8","installs":{<hash>:{"spec":<node>,"ref_count":N,"in_buildcache":B}}}}`
//! in compact JSON (`separators=(",", ":")`), installs in insertion order, dependencies before
//! their dependents. Spec nodes are carried verbatim (raw JSON), so entries written by Spack are
//! re-emitted byte for byte.
//!
//! [`update_pointer`] is the one compare-and-swap loop that writes the index and the key
//! index, on every backend.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::layout::{self, BlobRecord, Manifest, Sha256Hex, SpecNode, py_json_str};
use super::storage::{Precondition, PreconditionFailed, PutOptions, Storage, WriteMode};
use crate::pgp::KeyFingerprint;

/// The DB version Spack 1.0 writes.
pub const DB_VERSION: &str = "8";

/// One install record of the index.
#[derive(Debug, Clone)]
pub struct InstallRecord {
    /// The spec node, verbatim.
    pub spec: Box<RawValue>,
    /// Number of dependents in the index.
    pub ref_count: u64,
    /// Whether the spec's binary is in this buildcache.
    pub in_buildcache: bool,
    /// Other fields (`origin`, ...), kept in order.
    pub extra: Vec<(String, Box<RawValue>)>,
}

/// The buildcache index: install records by DAG hash, in order.
#[derive(Debug, Clone, Default)]
pub struct Index {
    installs: Vec<(String, InstallRecord)>,
}

/// Order-preserving map deserialization helper.
struct Ordered<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = m.next_entry::<String, V>()? {
                    v.push((k, val));
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V2(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct DbFile {
    database: DbBody,
}

#[derive(Deserialize)]
struct DbBody {
    version: String,
    installs: Ordered<Box<RawValue>>,
}

impl InstallRecord {
    fn from_raw(hash: &str, raw: &RawValue) -> Result<Self> {
        let fields: Ordered<Box<RawValue>> = serde_json::from_str(raw.get())
            .with_context(|| format!("index record {hash} is not a JSON object"))?;
        let mut spec = None;
        let mut ref_count = 0;
        let mut in_buildcache = false;
        let mut extra = Vec::new();
        for (k, v) in fields.0 {
            match k.as_str() {
                "spec" => spec = Some(v),
                "ref_count" => {
                    ref_count = serde_json::from_str(v.get())
                        .with_context(|| format!("index record {hash}: bad ref_count"))?
                }
                "in_buildcache" => {
                    in_buildcache = serde_json::from_str(v.get())
                        .with_context(|| format!("index record {hash}: bad in_buildcache"))?
                }
                _ => extra.push((k, v)),
            }
        }
        let spec = spec.with_context(|| format!("index record {hash} has no spec"))?;
        Ok(InstallRecord {
            spec,
            ref_count,
            in_buildcache,
            extra,
        })
    }

    fn node(&self) -> Result<SpecNode> {
        SpecNode::from_raw(self.spec.clone())
    }
}

/// A change [`Index::merge_published`] made, for reports and dry runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Specs that were not in the index before.
    pub added: Vec<String>,
    /// Specs that were in the index and were published again.
    pub updated: Vec<String>,
    /// Records kept from the existing index.
    pub kept: usize,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses an index blob (DB v8 JSON).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let f: DbFile = serde_json::from_slice(bytes)
            .context("the index blob is not Spack database JSON ({\"database\": {...}})")?;
        if f.database.version != DB_VERSION {
            bail!(
                "the index is Spack database version {:?}; this tool reads and writes version {DB_VERSION} (Spack 1.0). Regenerate it with `spack buildcache update-index` from Spack 1.0",
                f.database.version
            );
        }
        let installs = f
            .database
            .installs
            .0
            .into_iter()
            .map(|(h, raw)| InstallRecord::from_raw(&h, &raw).map(|r| (h, r)))
            .collect::<Result<_>>()?;
        Ok(Index { installs })
    }

    /// The records, in order.
    pub fn records(&self) -> impl Iterator<Item = (&str, &InstallRecord)> {
        self.installs.iter().map(|(h, r)| (h.as_str(), r))
    }

    /// The record of `hash`.
    pub fn get(&self, hash: &str) -> Option<&InstallRecord> {
        self.installs
            .iter()
            .find(|(h, _)| h == hash)
            .map(|(_, r)| r)
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.installs.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.installs.is_empty()
    }

    /// Hashes of the records with `in_buildcache: true`.
    pub fn in_buildcache(&self) -> BTreeSet<String> {
        self.installs
            .iter()
            .filter(|(_, r)| r.in_buildcache)
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// Merges published specs into the index, as Spack's `db.add(spec)` +
    /// `db.mark(spec, "in_buildcache", True)` would, without losing any existing record:
    ///
    /// - each published spec (`nodes[0]` of its spec file) is added, or its existing record
    ///   updated in place, with `in_buildcache: true`;
    /// - its dependencies (`nodes[1..]`) not yet in the index are added before it with
    ///   `in_buildcache: false` (existing records, and their flags, are kept);
    /// - `ref_count` is recomputed over the merged index (number of records depending on it).
    ///
    /// Published specs are processed in (name, version, hash) order, so the result depends only
    /// on the inputs; merging the same specs again yields identical bytes.
    pub fn merge_published(&mut self, published: &[Vec<SpecNode>]) -> Result<MergeStats> {
        let before: HashSet<String> = self.installs.iter().map(|(h, _)| h.clone()).collect();
        let mut roots: Vec<&Vec<SpecNode>> = published.iter().filter(|n| !n.is_empty()).collect();
        roots.sort_by(|a, b| {
            (&a[0].name, &a[0].version, &a[0].hash).cmp(&(&b[0].name, &b[0].version, &b[0].hash))
        });
        let root_hashes: HashSet<&str> = roots.iter().map(|n| n[0].hash.as_str()).collect();
        let mut stats = MergeStats {
            added: Vec::new(),
            updated: Vec::new(),
            kept: before.len(),
        };
        for nodes in roots {
            let by_hash: HashMap<&str, &SpecNode> =
                nodes.iter().map(|n| (n.hash.as_str(), n)).collect();
            // Post-order DFS from the root: dependencies first.
            let mut order = Vec::new();
            let mut seen = HashSet::new();
            let mut stack = vec![(nodes[0].hash.as_str(), false)];
            while let Some((h, expanded)) = stack.pop() {
                if expanded {
                    order.push(h);
                    continue;
                }
                if !seen.insert(h) {
                    continue;
                }
                stack.push((h, true));
                if let Some(n) = by_hash.get(h) {
                    for d in n.dependencies.iter().rev() {
                        if by_hash.contains_key(d.as_str()) && !seen.contains(d.as_str()) {
                            stack.push((d.as_str(), false));
                        }
                    }
                }
            }
            for h in order {
                let node = by_hash[h];
                let is_root = h == nodes[0].hash;
                let published_here = is_root || root_hashes.contains(h);
                match self.installs.iter_mut().find(|(k, _)| k == h) {
                    Some((_, rec)) => {
                        if is_root {
                            rec.spec = node.raw.clone();
                            rec.in_buildcache = true;
                            if before.contains(h) && !stats.updated.iter().any(|u| u == h) {
                                stats.updated.push(h.to_owned());
                            }
                        }
                    }
                    None => {
                        self.installs.push((
                            h.to_owned(),
                            InstallRecord {
                                spec: node.raw.clone(),
                                ref_count: 0,
                                in_buildcache: is_root,
                                extra: Vec::new(),
                            },
                        ));
                        if published_here {
                            stats.added.push(h.to_owned());
                        }
                    }
                }
            }
        }
        self.recount()?;
        Ok(stats)
    }

    /// Recomputes every `ref_count` as the number of records that depend on it.
    pub fn recount(&mut self) -> Result<()> {
        let mut counts: HashMap<String, u64> = HashMap::new();
        for (h, r) in &self.installs {
            let node = r
                .node()
                .with_context(|| format!("index record {h} has a malformed spec"))?;
            let mut deps: Vec<String> = node.dependencies;
            deps.sort();
            deps.dedup();
            for d in deps {
                *counts.entry(d).or_default() += 1;
            }
        }
        for (h, r) in &mut self.installs {
            r.ref_count = counts.get(h).copied().unwrap_or(0);
        }
        Ok(())
    }

    /// Serializes as Spack does (`sjson.dump`, compact, no trailing newline).
    pub fn to_json(&self) -> Vec<u8> {
        let mut s = String::from("{\"database\":{\"version\":\"8\",\"installs\":{");
        for (i, (h, r)) in self.installs.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&py_json_str(h));
            s.push_str(":{\"spec\":");
            s.push_str(r.spec.get());
            s.push_str(&format!(
                ",\"ref_count\":{},\"in_buildcache\":{}",
                r.ref_count, r.in_buildcache
            ));
            for (k, v) in &r.extra {
                s.push(',');
                s.push_str(&py_json_str(k));
                s.push(':');
                s.push_str(v.get());
            }
            s.push('}');
        }
        s.push_str("}}}");
        s.into_bytes()
    }
}

/// The key index: `{"keys":{"<FPR>":{}}}`, fingerprints sorted (Spack's `generate_key_index`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIndex {
    /// The fingerprints.
    pub keys: BTreeSet<String>,
}

#[derive(Deserialize)]
struct KeyIndexFile {
    keys: Ordered<serde::de::IgnoredAny>,
}

impl KeyIndex {
    /// Parses a key index blob.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let f: KeyIndexFile = serde_json::from_slice(bytes)
            .context("the key index blob is not {\"keys\": {...}} JSON")?;
        Ok(KeyIndex {
            keys: f.keys.0.into_iter().map(|(k, _)| k).collect(),
        })
    }

    /// Adds a fingerprint.
    pub fn insert(&mut self, fpr: &KeyFingerprint) -> bool {
        self.keys.insert(fpr.to_string())
    }

    /// Serializes as Spack does (`sjson.dump`).
    pub fn to_json(&self) -> Vec<u8> {
        let body: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("{}:{{}}", py_json_str(k)))
            .collect();
        format!("{{\"keys\":{{{}}}}}", body.join(",")).into_bytes()
    }
}

/// A document a pointer manifest points at: the index or the key index.
pub trait PointerDoc: Clone + Sized {
    /// The pointer manifest's key.
    const MANIFEST: &'static str;
    /// The media type of the blob.
    const MEDIA_TYPE: &'static str;
    /// What it is, for messages.
    const WHAT: &'static str;
    /// Parses the blob.
    fn parse_blob(bytes: &[u8]) -> Result<Self>;
    /// The blob bytes, exactly as Spack writes them.
    fn blob(&self) -> Vec<u8>;
    /// The document of a buildcache that has none yet.
    fn empty() -> Self;
}

impl PointerDoc for Index {
    const MANIFEST: &'static str = layout::INDEX_MANIFEST;
    const MEDIA_TYPE: &'static str = layout::INDEX_MEDIA_TYPE;
    const WHAT: &'static str = "index";
    fn parse_blob(bytes: &[u8]) -> Result<Self> {
        Index::parse(bytes)
    }
    fn blob(&self) -> Vec<u8> {
        self.to_json()
    }
    fn empty() -> Self {
        Index::new()
    }
}

impl PointerDoc for KeyIndex {
    const MANIFEST: &'static str = layout::KEY_INDEX_MANIFEST;
    const MEDIA_TYPE: &'static str = layout::KEY_INDEX_MEDIA_TYPE;
    const WHAT: &'static str = "key index";
    fn parse_blob(bytes: &[u8]) -> Result<Self> {
        KeyIndex::parse(bytes)
    }
    fn blob(&self) -> Vec<u8> {
        self.to_json()
    }
    fn empty() -> Self {
        KeyIndex::default()
    }
}

/// A pointer manifest as read: the document, its blob bytes and the manifest's version tag.
#[derive(Debug, Clone)]
pub struct Current<T> {
    /// The parsed document.
    pub doc: T,
    /// The blob bytes it was parsed from.
    pub blob: Vec<u8>,
    /// The manifest's version tag, for `If-Match`.
    pub etag: Option<String>,
}

/// Reads the pointer manifest of `T` and the blob it names (checking its SHA-256), or `None`
/// when there is no manifest.
pub async fn read_pointer<T: PointerDoc>(store: &dyn Storage) -> Result<Option<Current<T>>> {
    let Some(obj) = store.get(T::MANIFEST).await? else {
        return Ok(None);
    };
    let m = super::signed::read_unsigned_manifest(&obj.bytes, T::MANIFEST)
        .with_context(|| format!("the {} of {}", T::WHAT, store.url()))?;
    let rec = m
        .blob(T::MEDIA_TYPE)
        .or_else(|| m.data.first())
        .with_context(|| format!("{} lists no {} blob", T::MANIFEST, T::WHAT))?;
    let key = rec.key()?;
    let blob = store.get(&key).await?.with_context(|| {
        format!(
            "the {} manifest of {} points at {key}, which is missing",
            T::WHAT,
            store.url()
        )
    })?;
    if Sha256Hex::of(&blob.bytes).as_str() != rec.checksum {
        bail!(
            "the {} blob {key} of {} does not match its manifest's sha256",
            T::WHAT,
            store.url()
        );
    }
    let doc = T::parse_blob(&blob.bytes)
        .with_context(|| format!("{} blob {key} of {}", T::WHAT, store.url()))?;
    Ok(Some(Current {
        doc,
        blob: blob.bytes,
        etag: obj.etag,
    }))
}

/// What [`update_pointer`] did.
#[derive(Debug, Clone)]
pub struct PointerUpdate<T> {
    /// The document as it is now (or would be, in a dry run).
    pub doc: T,
    /// Whether the manifest was written (false: the destination already held everything).
    pub written: bool,
    /// Read-merge-write cycles used (1 = no conflict).
    pub attempts: u32,
    /// Objects written (the merged blob when new, and the manifest).
    pub objects_written: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// How concurrent writers were kept apart.
    pub write_mode: WriteMode,
}

/// The lease lock of [`WriteMode::Lock`], relative to the buildcache root.
pub const LOCK_KEY: &str = "v3/.slurm-factory.lock";
/// A lock older than this is considered abandoned.
pub const LOCK_STALE: Duration = Duration::from_secs(300);
/// How long a publisher waits after writing its lock token before reading it back.
pub const LOCK_SETTLE: Duration = Duration::from_millis(750);

/// The one compare-and-swap loop of the buildcache's pointer manifests (the index and the
/// key index), for every backend. Many publishers (matrix legs) write one prefix at once;
/// each update is a read-merge-write cycle:
///
/// 1. read the manifest (remember its version tag) and the blob it points at;
/// 2. `merge` our entries into it; stop when the blob would not change;
/// 3. write the merged blob (content-addressed, so it never overwrites anything that matters);
/// 4. write the manifest with `If-Match: <tag>` (or `If-None-Match: *` when there was none).
///    A lost race ([`PreconditionFailed`]) starts again from 1 after a jittered backoff;
/// 5. read it back and check that merging again changes nothing: our entries are there
///    (defence in depth against servers whose conditional check is not atomic).
///
/// Stores without conditional writes ([`WriteMode::Lock`]) first take a lease lock
/// ([`LOCK_KEY`] holding a random token): wait while a fresh lock (younger than
/// [`LOCK_STALE`]) exists, write the token, wait [`LOCK_SETTLE`], and own the lock only if the
/// token is still there; then steps 1–5 without conditions, and delete the lock. Without an
/// atomic primitive this is best effort; step 5 catches most losses. For such servers run one
/// final publisher (or `spack buildcache update-index`) after the matrix.
///
/// `dry_run` reads and merges but writes nothing (and does not probe the store).
pub async fn update_pointer<T: PointerDoc>(
    store: &dyn Storage,
    merge: impl Fn(&mut T) -> Result<()>,
    max_attempts: u32,
    dry_run: bool,
) -> Result<PointerUpdate<T>> {
    if dry_run {
        let current = read_pointer::<T>(store).await?;
        let mut doc = current.as_ref().map_or_else(T::empty, |c| c.doc.clone());
        merge(&mut doc)?;
        let written = current.as_ref().is_none_or(|c| c.blob != doc.blob());
        return Ok(PointerUpdate {
            doc,
            written,
            attempts: 1,
            objects_written: 0,
            bytes_written: 0,
            write_mode: WriteMode::Conditional,
        });
    }
    let mode = store.write_mode().await?;
    let lock = match mode {
        WriteMode::Conditional => None,
        WriteMode::Lock => Some(LeaseLock::acquire(store).await?),
    };
    let result = cas_cycles(store, &merge, max_attempts, mode).await;
    if let Some(l) = lock {
        l.release(store).await;
    }
    result
}

async fn cas_cycles<T: PointerDoc>(
    store: &dyn Storage,
    merge: &impl Fn(&mut T) -> Result<()>,
    max_attempts: u32,
    mode: WriteMode,
) -> Result<PointerUpdate<T>> {
    let mut update = PointerUpdate {
        doc: T::empty(),
        written: false,
        attempts: 0,
        objects_written: 0,
        bytes_written: 0,
        write_mode: mode,
    };
    for attempt in 1..=max_attempts.max(1) {
        update.attempts = attempt;
        let current = read_pointer::<T>(store).await?;
        let mut doc = current.as_ref().map_or_else(T::empty, |c| c.doc.clone());
        merge(&mut doc)?;
        let blob = doc.blob();
        if let Some(c) = &current
            && c.blob == blob
        {
            update.doc = doc;
            return Ok(update);
        }
        // The blob first: the manifest must never point at something missing.
        let rec = BlobRecord::for_bytes(&blob, T::MEDIA_TYPE, "none");
        let key = rec.key()?;
        let present = store
            .digest(&key)
            .await?
            .is_some_and(|(d, n)| d.as_str() == rec.checksum && n == rec.content_length);
        if !present {
            store
                .put(&key, blob.clone(), PutOptions::typed("application/json"))
                .await
                .with_context(|| format!("cannot write the merged {} blob {key}", T::WHAT))?;
            update.objects_written += 1;
            update.bytes_written += blob.len() as u64;
        }
        let precondition = match (mode, &current) {
            (WriteMode::Lock, _) => Precondition::None,
            (WriteMode::Conditional, Some(Current { etag: Some(e), .. })) => {
                Precondition::IfMatch(e.clone())
            }
            (WriteMode::Conditional, Some(_)) => bail!(
                "{} of {} has no version tag, so it cannot be updated safely",
                T::MANIFEST,
                store.url()
            ),
            (WriteMode::Conditional, None) => Precondition::IfAbsent,
        };
        let manifest = Manifest::new(vec![rec]).to_spack_json();
        let len = manifest.len() as u64;
        let put = store
            .put(
                T::MANIFEST,
                manifest,
                PutOptions {
                    content_type: Some("application/json".into()),
                    cache_control: Some("no-cache".into()),
                    precondition,
                },
            )
            .await;
        match put {
            Ok(_) => {
                update.written = true;
                update.objects_written += 1;
                update.bytes_written += len;
                // Read back: our entries must be there (or in a later writer's merge).
                if let Some(now) = read_pointer::<T>(store).await? {
                    let mut again = now.doc.clone();
                    merge(&mut again)?;
                    if again.blob() == now.blob {
                        update.doc = now.doc;
                        return Ok(update);
                    }
                }
            }
            Err(e) if e.downcast_ref::<PreconditionFailed>().is_some() => {}
            Err(e) => {
                return Err(e.context(format!(
                    "cannot write the {} manifest to {}",
                    T::WHAT,
                    store.url()
                )));
            }
        }
        tokio::time::sleep(backoff(
            attempt,
            Duration::from_millis(50),
            Duration::from_secs(3),
        ))
        .await;
    }
    bail!(
        "gave up updating {} at {} after {max_attempts} attempts: other publishers kept changing it. Re-run this step; it uploads only what is missing",
        T::MANIFEST,
        store.url()
    )
}

/// Full-jitter exponential backoff, at least `base / 2`.
fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    use rand::Rng;
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    let ceiling = exp.min(cap).max(base);
    let ms = ceiling.as_millis().max(1) as u64;
    let floor = (base.as_millis() as u64 / 2).min(ms);
    Duration::from_millis(rand::rng().random_range(floor..=ms))
}

/// The lease lock of [`WriteMode::Lock`].
struct LeaseLock {
    token: String,
}

impl LeaseLock {
    async fn acquire(store: &dyn Storage) -> Result<Self> {
        let token = uuid::Uuid::new_v4().to_string();
        let deadline = Instant::now() + LOCK_STALE * 2;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if Instant::now() > deadline {
                bail!(
                    "could not take the publish lock {}/{LOCK_KEY} for {}s; if no other publisher is running, delete it",
                    store.url(),
                    (LOCK_STALE * 2).as_secs()
                );
            }
            let free = match store.head(LOCK_KEY).await? {
                None => true,
                Some(m) => m
                    .last_modified
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > LOCK_STALE),
            };
            if free {
                store
                    .put(
                        LOCK_KEY,
                        token.clone().into_bytes(),
                        PutOptions {
                            content_type: Some("text/plain".into()),
                            cache_control: Some("no-store".into()),
                            precondition: Precondition::None,
                        },
                    )
                    .await
                    .context("cannot write the publish lock")?;
                tokio::time::sleep(LOCK_SETTLE).await;
                if let Ok(Some(o)) = store.get(LOCK_KEY).await
                    && o.bytes == token.as_bytes()
                {
                    return Ok(LeaseLock { token });
                }
            }
            tokio::time::sleep(backoff(
                attempt.min(6),
                Duration::from_millis(200),
                Duration::from_secs(3),
            ))
            .await;
        }
    }

    async fn release(self, store: &dyn Storage) {
        // Delete only our own lock.
        if let Ok(Some(o)) = store.get(LOCK_KEY).await
            && o.bytes == self.token.as_bytes()
        {
            let _ = store.delete(LOCK_KEY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::parse_spec_blob;
    use super::*;

    const FIX: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/spack-v3/unsigned"
    );

    fn blob(sha: &str) -> Vec<u8> {
        std::fs::read(format!("{FIX}/blobs/sha256/{}/{sha}", &sha[..2])).unwrap()
    }

    const INDEX: &str = "3b1a943f61eb419b1398ac1706576c10250dafaa2a9f7fa19c13d8a2288606bc";
    const LIB_SPEC: &str = "b21f87a953e1e24a549e3b7dfe885b14afafbd689a87ccd704e6bb633488f518";
    const APP_SPEC: &str = "66e007e37548666b4316eff22082d8080452d7360581e4e20dff58605da222a0";

    #[test]
    fn spack_index_roundtrips() {
        let bytes = blob(INDEX);
        let idx = Index::parse(&bytes).unwrap();
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.to_json(), bytes);
    }

    #[test]
    fn merge_from_spec_blobs_reproduces_spacks_index() {
        let lib = parse_spec_blob(&blob(LIB_SPEC), "gzip").unwrap();
        let app = parse_spec_blob(&blob(APP_SPEC), "gzip").unwrap();
        let mut idx = Index::new();
        let stats = idx.merge_published(&[app.clone(), lib.clone()]).unwrap();
        assert_eq!(stats.added.len(), 2);
        assert_eq!(
            String::from_utf8(idx.to_json()).unwrap(),
            String::from_utf8(blob(INDEX)).unwrap()
        );
        // Merging again changes nothing.
        let again = idx.merge_published(&[lib, app]).unwrap();
        assert_eq!(again.added.len(), 0);
        assert_eq!(again.updated.len(), 2);
        assert_eq!(idx.to_json(), blob(INDEX));
    }

    #[test]
    fn app_alone_adds_lib_as_not_in_buildcache() {
        let app = parse_spec_blob(&blob(APP_SPEC), "gzip").unwrap();
        let mut idx = Index::new();
        idx.merge_published(&[app]).unwrap();
        let lib = idx.get("or7dti47ajgrd2y5bgs2dujuath2dz3p").unwrap();
        assert!(!lib.in_buildcache);
        assert_eq!(lib.ref_count, 1);
        assert!(
            idx.get("resh3sdm7oulbae23jllsxfemfp24cba")
                .unwrap()
                .in_buildcache
        );
    }

    /// Two publishers of Spack 1.0's real specs, one after the other on one prefix, as the
    /// compare-and-swap loop applies them: one pushed `lib`, the other `app` (with `lib` only as
    /// an unpushed dependency). Either order gives Spack's own index of both, byte for byte,
    /// and `lib` stays published.
    #[test]
    fn two_publishers_in_either_order_give_spacks_index_of_both() {
        let lib = parse_spec_blob(&blob(LIB_SPEC), "gzip").unwrap();
        let app = parse_spec_blob(&blob(APP_SPEC), "gzip").unwrap();
        let lib_hash = "or7dti47ajgrd2y5bgs2dujuath2dz3p";
        let app_hash = "resh3sdm7oulbae23jllsxfemfp24cba";

        let mut lib_first = Index::new();
        lib_first
            .merge_published(std::slice::from_ref(&lib))
            .unwrap();
        let stats = lib_first
            .merge_published(std::slice::from_ref(&app))
            .unwrap();
        assert_eq!(stats.added, [app_hash]);
        assert!(stats.updated.is_empty(), "{stats:?}");
        assert_eq!(stats.kept, 1);
        assert!(lib_first.get(lib_hash).unwrap().in_buildcache);
        assert_eq!(lib_first.to_json(), blob(INDEX));

        let mut app_first = Index::new();
        app_first
            .merge_published(std::slice::from_ref(&app))
            .unwrap();
        assert!(!app_first.get(lib_hash).unwrap().in_buildcache);
        app_first
            .merge_published(std::slice::from_ref(&lib))
            .unwrap();
        assert!(app_first.get(lib_hash).unwrap().in_buildcache);
        assert_eq!(app_first.get(lib_hash).unwrap().ref_count, 1);
        assert_eq!(app_first.in_buildcache(), lib_first.in_buildcache());

        // A publisher that has `lib` only as a dependency never unpublishes it, and merging
        // what is already there changes nothing.
        let before = lib_first.to_json();
        let stats = lib_first.merge_published(&[app]).unwrap();
        assert!(stats.added.is_empty(), "{stats:?}");
        assert!(lib_first.get(lib_hash).unwrap().in_buildcache);
        assert_eq!(lib_first.to_json(), before);
    }

    #[test]
    fn key_index_shape() {
        let bytes = std::fs::read(format!(
            "{FIX}/../signed/blobs/sha256/57/5763f227fb924761f115294d3e3dc87de120ebd4cee451d5dff21a74a0647e8b"
        ))
        .unwrap();
        let k = KeyIndex::parse(&bytes).unwrap();
        assert_eq!(k.to_json(), bytes);
        assert_eq!(KeyIndex::default().to_json(), b"{\"keys\":{}}");
    }
}
