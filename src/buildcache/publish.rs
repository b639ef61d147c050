//! The one publish engine: a local Spack v3 buildcache (what `spack buildcache push` wrote)
//! to any writable [`Storage`] (`file://` or `s3://`), signed on the way.
//!
//! 1. **Check the source, all of it, before anything is written.** Every file is walked
//!    without following links (a link or a FIFO is refused by name) and must belong to a v3
//!    buildcache. A clearsigned spec manifest is accepted only if it verifies against a
//!    trusted key (the options' keys or the signing key), and only the text the signature
//!    covers is used from then on; an unsigned one is accepted when a signing key will sign
//!    it (or, without a key, only with [`PublishOptions::allow_unsigned`]). Every blob a
//!    published manifest names is checked: its size first (from `fstat`, before reading),
//!    then its SHA-256; every spec blob must describe the spec its manifest key names.
//! 2. **Keys.** The key index names only the signing key, the keys that signed the published
//!    manifests (trusted by the caller) and fingerprints listed in
//!    [`PublishOptions::publish_key_fingerprints`]; of those the engine publishes the keys it
//!    has (the signing key, and key manifests in the source). A destination key index that
//!    already names another fingerprint is refused, because Spack users may trust every key it
//!    lists, unless [`PublishOptions::accept_unknown_keys`].
//! 3. **Plan against the destination**: one listing of `blobs/` and `v3/`; a blob that is
//!    there is compared by SHA-256 ([`Storage::holds`]), never by size alone: a blob with
//!    other bytes under its digest's key is **replaced** by the checked source bytes, so the
//!    published cache verifies. A destination spec manifest that already verifies with the
//!    signing key over the same text is kept (a new signature would differ only in its time),
//!    so a re-run writes nothing.
//! 4. **Sign** what needs signing (the verified text, never unverified bytes), in parallel.
//! 5. **Write**, so a reader never sees a manifest or an index that points at a missing
//!    object: blobs (bounded parallelism; large files as parallel multipart uploads where the
//!    store does that; every upload carries the checked SHA-256 and is refused if the file
//!    changed since), then spec and key manifests and `layout.json` (when absent), then the
//!    key index and, last, the index, each through the one compare-and-swap loop
//!    ([`super::index::update_pointer`]) that merges again when another publisher won.
//!
//! Nothing is written when any check of steps 1–3 fails, and a dry run writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use futures::future::BoxFuture;
use md5::{Digest as _, Md5};

use super::index::{Index, KeyIndex, MergeStats, update_pointer};
use super::layout::{self, BlobRecord, Manifest, Sha256Hex, SpecId, SpecNode};
use super::storage::{Existing, FileBody, LocalDir, ObjectMeta, PutOptions, Storage, Want};
use super::{SpecEntry, read_index, read_spec_nodes};
use crate::gha::Runner;
use crate::pgp::{KeyFingerprint, SigningKey, TrustedKeys};
use crate::s3::progress::{Counters, Progress, ProgressMode, human_bytes};

/// Which specs to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublishMode {
    /// Every spec in the source (Slurm and its dependencies).
    #[default]
    All,
    /// Slurm (package name `slurm`) and everything it needs at run time: its link/run
    /// dependency closure, which is what `spack install --cache-only slurm` and test-install
    /// install with it. Left out: the other roots built beside it (openmpi, hdf5, ...) and
    /// build-only tools. So a slurm-only cache installs Slurm on its own.
    SlurmOnly,
    /// Nothing: sign nothing, publish nothing.
    None,
}

impl FromStr for PublishMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "all" => Ok(PublishMode::All),
            "slurm-only" => Ok(PublishMode::SlurmOnly),
            "none" => Ok(PublishMode::None),
            other => bail!("publish mode {other:?} is not one of: all, slurm-only, none"),
        }
    }
}

impl fmt::Display for PublishMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PublishMode::All => "all",
            PublishMode::SlurmOnly => "slurm-only",
            PublishMode::None => "none",
        })
    }
}

/// Options of [`publish`].
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Which specs to publish.
    pub mode: PublishMode,
    /// Check and plan everything, report what would change, write nothing.
    pub dry_run: bool,
    /// Keys whose signatures on source manifests are accepted (the signing key always is).
    pub trusted: TrustedKeys,
    /// Without a signing key: publish unsigned spec manifests as they are.
    pub allow_unsigned: bool,
    /// Further keys to publish from the source and to accept in the destination's key index.
    pub publish_key_fingerprints: Vec<KeyFingerprint>,
    /// Keep a destination key index that names keys this publish does not know.
    pub accept_unknown_keys: bool,
    /// Read-merge-write cycles of each pointer manifest before giving up.
    pub index_attempts: u32,
    /// How upload progress is shown.
    pub progress: ProgressMode,
    /// Interval of the periodic progress lines.
    pub progress_interval: Duration,
    /// The package [`PublishMode::SlurmOnly`] keeps with its run-time closure: `slurm`. (Tests
    /// name a package of the Spack-written fixture caches, which hold no Slurm.)
    pub slurm_package: String,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            mode: PublishMode::All,
            dry_run: false,
            trusted: TrustedKeys::new(),
            allow_unsigned: false,
            publish_key_fingerprints: Vec::new(),
            accept_unknown_keys: false,
            index_attempts: 40,
            progress: ProgressMode::Auto,
            progress_interval: Duration::from_secs(10),
            slurm_package: "slurm".to_owned(),
        }
    }
}

/// What happens (or would happen) to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// The object is new at the destination.
    New,
    /// The object exists and is replaced.
    Update,
    /// The object is already as it should be; not written.
    Unchanged,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::New => "new",
            Change::Update => "update",
            Change::Unchanged => "unchanged",
        })
    }
}

/// One object write of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChange {
    /// Destination key.
    pub key: String,
    /// What happens to it.
    pub change: Change,
    /// Its size in bytes.
    pub size: u64,
}

/// The outcome for one published spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecOutcome {
    /// The spec.
    pub id: SpecId,
    /// What happened to its (signed) manifest.
    pub manifest: Change,
    /// Blobs of this spec written (not already present).
    pub blobs_written: usize,
    /// Bytes written for this spec (blobs and manifest).
    pub bytes: u64,
}

/// The result of [`publish`].
#[derive(Debug, Clone, Default)]
pub struct PublishReport {
    /// Destination URL.
    pub url: String,
    /// The URL consumers read from (`spack mirror add`).
    pub public_url: String,
    /// Public fingerprint of the signing certificate, when the engine signed.
    pub fingerprint: Option<KeyFingerprint>,
    /// Per published spec.
    pub specs: Vec<SpecOutcome>,
    /// Specs in the source that the publish mode left out.
    pub skipped: Vec<SpecId>,
    /// Every object considered, in write order.
    pub objects: Vec<ObjectChange>,
    /// Index merge statistics.
    pub index: MergeStats,
    /// Total records in the merged index.
    pub index_records: usize,
    /// Objects written (or, in a dry run, that would be).
    pub objects_uploaded: u64,
    /// Bytes written (or that would be).
    pub bytes_uploaded: u64,
    /// Objects already at the destination as they should be.
    pub objects_skipped: u64,
    /// Bytes of those.
    pub bytes_skipped: u64,
    /// Blobs written.
    pub blobs_uploaded: u64,
    /// Spec manifests published.
    pub specs_published: u64,
    /// Whether the index manifest was (or would be) rewritten.
    pub index_written: bool,
    /// Read-merge-write cycles the index took.
    pub index_attempts: u32,
    /// How concurrent publishers were kept apart (`conditional` or `lock`).
    pub write_mode: Option<String>,
    /// Wall time.
    pub elapsed: Duration,
    /// Whether nothing was written.
    pub dry_run: bool,
}

impl PublishReport {
    /// Upload throughput in bytes per second.
    pub fn throughput(&self) -> f64 {
        self.bytes_uploaded as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }

    /// Objects written (or that would be).
    pub fn objects_written(&self) -> usize {
        self.objects_uploaded as usize
    }

    /// A Markdown job summary: per spec, and the totals.
    pub fn summary_markdown(&self) -> String {
        let mut s = format!(
            "### Sign and upload{}\n\nBuildcache `{}`{}.\n\n",
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            },
            self.url,
            match &self.fingerprint {
                Some(f) => format!(", signed by `{f}`"),
                None => String::new(),
            }
        );
        if !self.specs.is_empty() {
            s.push_str("| Spec | Manifest | Blobs written | Bytes |\n|---|---|---:|---:|\n");
            for sp in &self.specs {
                s.push_str(&format!(
                    "| `{}` | {} | {} | {} |\n",
                    sp.id, sp.manifest, sp.blobs_written, sp.bytes
                ));
            }
            s.push('\n');
        }
        let verb = if self.dry_run {
            "would upload"
        } else {
            "uploaded"
        };
        s.push_str(&format!(
            "| | objects | bytes |\n|---|---:|---:|\n| {verb} | {} | {} |\n| skipped (already there) | {} | {} |\n\n",
            self.objects_uploaded,
            human_bytes(self.bytes_uploaded),
            self.objects_skipped,
            human_bytes(self.bytes_skipped),
        ));
        s.push_str(&format!(
            "{} specs, index {} ({} records: {} added, {} updated, {} kept; {} attempt(s), {}), {:.1} s, {}/s\n",
            self.specs_published,
            if self.index_written {
                if self.dry_run { "would be updated" } else { "updated" }
            } else {
                "unchanged"
            },
            self.index_records,
            self.index.added.len(),
            self.index.updated.len(),
            self.index.kept,
            self.index_attempts,
            self.write_mode.as_deref().unwrap_or("-"),
            self.elapsed.as_secs_f64(),
            human_bytes(self.throughput() as u64),
        ));
        if !self.skipped.is_empty() {
            s.push_str(&format!(
                "\nNot published (publish mode): {}\n",
                self.skipped
                    .iter()
                    .map(|i| format!("`{i}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        s
    }
}

/// A checked source spec: its verified manifest text, who signed it, and its nodes.
struct SourceSpec {
    entry: SpecEntry,
    signer: Option<KeyFingerprint>,
    nodes: Vec<SpecNode>,
}

/// What a source file is, by its key.
fn classify(key: &str) -> Option<&'static str> {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        ["blobs", "sha256", shard, name]
            if Sha256Hex::parse(name).is_ok() && name.get(..2) == Some(*shard) =>
        {
            Some("blob")
        }
        ["v3", "layout.json"] => Some("layout"),
        ["v3", "manifests", "index", "index.manifest.json"] => Some("index"),
        ["v3", "manifests", "key", "keys.manifest.json"] => Some("key index"),
        ["v3", "manifests", "key", name] if name.ends_with(layout::KEY_SUFFIX) => Some("key"),
        ["v3", "manifests", "spec", _, name] if name.ends_with(layout::SPEC_SUFFIX) => Some("spec"),
        _ => None,
    }
}

/// Source files read at a time (local reads: a few per core keep the blocking pool busy).
const SOURCE_READS: usize = 16;

/// Runs `futs` with at most `limit` in flight; results in order.
async fn bounded<'a, T: 'a>(futs: Vec<BoxFuture<'a, T>>, limit: usize) -> Vec<T> {
    futures::stream::iter(futs)
        .buffered(limit.max(1))
        .collect()
        .await
}

/// A source blob that passed its checks, with what the destination's copy is known to be
/// (`None`: only reading it back can tell), or what is wrong with it.
type SourceCheck = std::result::Result<(FileBody, Option<Change>), String>;

/// What the destination holds under a blob's key, from one lookup before the source is read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Held {
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
    async fn look_up(
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
    let hashed = super::storage::hash_with_parts(r, Some(part_size), want)
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

/// The manifest text to sign: the manifest bytes, minus a final line break (a cleartext
/// signature cannot carry one; Spack writes none).
fn text_to_sign(text: &[u8]) -> &[u8] {
    text.strip_suffix(b"\n").unwrap_or(text)
}

/// Reads and checks the whole source; any problem fails here, before a single write.
async fn load_source(
    source: &LocalDir,
    trusted: &TrustedKeys,
    signing: bool,
    allow_unsigned: bool,
) -> Result<(Vec<SourceSpec>, Vec<ObjectMeta>)> {
    let root = source.root();
    if !std::fs::symlink_metadata(root).is_ok_and(|m| m.is_dir()) {
        bail!(
            "the source buildcache {} does not exist or is not a directory; pass the directory `spack buildcache push` wrote (it contains v3/ and blobs/)",
            root.display()
        );
    }
    let files = source.list("").await.with_context(|| {
        format!(
            "the source buildcache {} cannot be published; nothing was written",
            root.display()
        )
    })?;
    let unknown: Vec<&str> = files
        .iter()
        .map(|f| f.key.as_str())
        .filter(|k| classify(k).is_none())
        .collect();
    if !unknown.is_empty() {
        bail!(
            "{} holds files that are not part of a Spack v3 buildcache: {}. Remove them or point --source at the buildcache root; nothing was written",
            root.display(),
            unknown.join(", ")
        );
    }
    let keys: Vec<&str> = files
        .iter()
        .map(|f| f.key.as_str())
        .filter(|k| classify(k) == Some("spec"))
        .collect();
    if keys.is_empty() {
        bail!(
            "the source {} holds no spec manifests (v3/manifests/spec/<name>/*.spec.manifest.json); is it a Spack 1.0 (layout v3) buildcache?",
            root.display()
        );
    }
    let mut specs = Vec::new();
    let mut problems = Vec::new();
    let mut unsigned = Vec::new();
    // Read SOURCE_READS manifests at a time (each read is a hop to a blocking thread).
    let reads: Vec<BoxFuture<'_, Result<Option<crate::buildcache::storage::Object>>>> = keys
        .iter()
        .map(|k| Box::pin(source.get(k)) as BoxFuture<'_, _>)
        .collect();
    let read = bounded(reads, SOURCE_READS).await;
    for (key, got) in keys.into_iter().zip(read) {
        let id = match SpecId::from_manifest_key(key) {
            Ok(id) => id,
            Err(e) => {
                problems.push(format!("{e:#}"));
                continue;
            }
        };
        let stored = got?.with_context(|| format!("{key} disappeared"))?.bytes;
        // Signed: verified against the trusted keys, and only the verified text is used.
        let read = match super::signed::read_spec_manifest(&stored, key, trusted, true) {
            Ok(r) => r,
            Err(e) if e.verify_error().is_some() => {
                problems.push(format!(
                    "{id}: {key} is signed, but the signature is not accepted: {e}. Only manifests signed by a trusted key are re-published (pass that key's public key as a trusted key), or give the unsigned manifest"
                ));
                continue;
            }
            Err(e) => {
                problems.push(format!("{id}: {e}"));
                continue;
            }
        };
        if read.signer.is_none() && !signing && !allow_unsigned {
            unsigned.push(key.to_owned());
        }
        let (text, signer, manifest) = (read.text, read.signer, read.manifest);
        specs.push((
            SpecEntry {
                id,
                key: key.to_owned(),
                stored,
                text,
                manifest,
            },
            signer,
        ));
    }
    if !unsigned.is_empty() {
        bail!(
            "refusing to publish an unsigned buildcache: {} spec manifest(s) are not OpenPGP-signed ({}). Give a signing key, or allow unsigned caches explicitly; nothing was written",
            unsigned.len(),
            unsigned.join(", ")
        );
    }
    if !problems.is_empty() {
        bail!(
            "the source buildcache {} failed its checks, so nothing was written:\n  - {}",
            root.display(),
            problems.join("\n  - ")
        );
    }
    Ok((
        specs
            .into_iter()
            .map(|(entry, signer)| SourceSpec {
                entry,
                signer,
                nodes: Vec::new(),
            })
            .collect(),
        files,
    ))
}

/// The DAG hashes of every spec named `root` in the source and of its link/run dependency
/// closure, read from the root specs' own spec blobs (each spec JSON holds its whole DAG; the
/// blob is checked against its manifest's digest first). Dependencies the source does not hold
/// (externals) are simply not published.
fn runtime_closure_of(
    source: &LocalDir,
    all: &[SourceSpec],
    root: &str,
) -> Result<BTreeSet<String>> {
    let mut keep = BTreeSet::new();
    for s in all.iter().filter(|s| s.entry.id.name == root) {
        let rec = s
            .entry
            .manifest
            .spec_blob()
            .with_context(|| format!("{}: the manifest lists no spec blob", s.entry.id))?;
        let sha = rec.sha256()?;
        let path = source.path(&layout::blob_key(&sha))?;
        let bytes = std::fs::read(&path)
            .with_context(|| format!("{}: cannot read {}", s.entry.id, path.display()))?;
        if Sha256Hex::of(&bytes) != sha {
            bail!(
                "{}: the spec blob {} does not match its manifest's digest; nothing was written",
                s.entry.id,
                path.display()
            );
        }
        let nodes =
            layout::parse_spec_blob_capped(&bytes, &rec.compression, layout::SPEC_JSON_MAX_BYTES)?;
        let by_hash: BTreeMap<&str, &SpecNode> =
            nodes.iter().map(|n| (n.hash.as_str(), n)).collect();
        let mut todo = vec![s.entry.id.hash.clone()];
        while let Some(h) = todo.pop() {
            if !keep.insert(h.clone()) {
                continue;
            }
            if let Some(n) = by_hash.get(h.as_str()) {
                todo.extend(n.runtime_dependencies.iter().cloned());
            }
        }
    }
    Ok(keep)
}

/// A pending write.
enum Body {
    File(FileBody),
    Bytes(Vec<u8>),
}

struct Pending {
    key: String,
    body: Body,
    size: u64,
    change: Change,
    content_type: &'static str,
}

impl Pending {
    fn object(&self) -> ObjectChange {
        ObjectChange {
            key: self.key.clone(),
            change: self.change,
            size: self.size,
        }
    }
}

/// The destination as its listings saw it: `v3/` (manifests, indexes) when the store can
/// list, and `blobs/` only when some manifest is missing (see [`Remote::list_blobs_if_needed`]).
struct Remote {
    /// Whether `v3/` was listed (every manifest key is known).
    listed: bool,
    /// Whether `blobs/` was listed (every blob key is known).
    blobs_listed: bool,
    objects: BTreeMap<String, ObjectMeta>,
}

impl Remote {
    /// Lists `v3/`.
    async fn read(dest: &dyn Storage) -> Result<Self> {
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
    async fn list_blobs_if_needed<'a>(
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
    fn may_have(&self, key: &str) -> bool {
        let known = if key.starts_with("blobs/") {
            self.blobs_listed
        } else {
            self.listed
        };
        !known || self.objects.contains_key(key)
    }
}

/// Plans a small in-memory blob (a public key): present with the same SHA-256 means
/// unchanged; other bytes under the digest's key are replaced.
async fn plan_blob(dest: &dyn Storage, remote: &Remote, bytes: Vec<u8>) -> Result<Pending> {
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

/// Requests in flight while planning (HEADs and small GETs; uploads use the store's own
/// concurrency). Planning is latency-bound: a no-change re-run is mostly these.
const PLAN_REQUESTS: usize = 64;

/// Whether `etag` is a single-part ETag, the MD5 of `bytes`.
fn etag_is_md5_of(etag: &str, bytes: &[u8]) -> bool {
    !etag.contains('-') && etag.len() == 32 && etag == hex::encode(Md5::digest(bytes))
}

/// Plans a manifest (small, in memory): unchanged when the destination has these bytes.
async fn plan_bytes(
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

async fn execute(dest: &dyn Storage, p: &Pending, counters: &Counters) -> Result<()> {
    if p.change == Change::Unchanged {
        return Ok(());
    }
    let opts = PutOptions::typed(p.content_type);
    match &p.body {
        Body::File(f) => dest.put_file(&p.key, f, opts).await,
        Body::Bytes(b) => dest.put(&p.key, b.clone(), opts).await,
    }
    .with_context(|| format!("cannot write {} to {}", p.key, dest.url()))?;
    counters.objects.fetch_add(1, Ordering::Relaxed);
    counters.bytes.fetch_add(p.size, Ordering::Relaxed);
    Ok(())
}

/// Writes `items` with at most `limit` in flight; every one is attempted even when one fails
/// (a re-run then has less to do), and the first error is returned.
async fn write_all(
    dest: &dyn Storage,
    items: &[Pending],
    limit: usize,
    counters: &Counters,
) -> Result<()> {
    let futs: Vec<BoxFuture<'_, Result<()>>> = items
        .iter()
        .map(|p| Box::pin(execute(dest, p, counters)) as BoxFuture<'_, _>)
        .collect();
    bounded(futs, limit).await.into_iter().collect()
}

/// Signs and publishes the buildcache at `source` to `dest` (see the module documentation).
/// With `key`, unsigned manifests are signed with it; without, manifests are published as
/// they are (signed ones verified, unsigned ones only with `allow_unsigned`).
pub async fn publish(
    runner: &Runner,
    source: &LocalDir,
    dest: &dyn Storage,
    key: Option<&SigningKey>,
    opts: &PublishOptions,
) -> Result<PublishReport> {
    let t0 = Instant::now();
    let mut report = PublishReport {
        url: dest.url(),
        public_url: dest.public_url(),
        fingerprint: key.map(SigningKey::fingerprint),
        dry_run: opts.dry_run,
        ..PublishReport::default()
    };
    if opts.mode == PublishMode::None {
        return Ok(report);
    }
    if !dest.capabilities().write {
        bail!(
            "{} cannot be written; publish to its s3:// or file:// location",
            dest.url()
        );
    }

    // 1. The source.
    let mut trusted = opts.trusted.clone();
    if let Some(k) = key {
        trusted.add_cert(k.public_cert().clone());
    }
    // The destination is listed meanwhile; a source error is still reported first.
    let (loaded, listed) = tokio::join!(
        load_source(source, &trusted, key.is_some(), opts.allow_unsigned),
        Remote::read(dest)
    );
    let (all, source_files) = loaded?;
    let keep = match opts.mode {
        PublishMode::All | PublishMode::None => None,
        PublishMode::SlurmOnly => Some(runtime_closure_of(source, &all, &opts.slurm_package)?),
    };
    let (selected, skipped): (Vec<SourceSpec>, Vec<SourceSpec>) = all
        .into_iter()
        .partition(|s| keep.as_ref().is_none_or(|k| k.contains(&s.entry.id.hash)));
    report.skipped = skipped.into_iter().map(|s| s.entry.id).collect();
    if selected.is_empty() {
        bail!(
            "publish mode slurm-only, but the source {} has no spec named `{}` (it has: {}); nothing was written",
            source.root().display(),
            opts.slurm_package,
            report
                .skipped
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if keep.is_some() {
        runner.info(&format!(
            "publish slurm-only: {} and its run-time dependencies ({} specs); left out {} (other roots, build-only)",
            opts.slurm_package,
            selected.len(),
            report.skipped.len()
        ));
    }
    let mut selected = selected;

    // Keys: ours, the signers of what we publish, and the listed ones.
    let mut allowed: BTreeSet<String> = opts
        .publish_key_fingerprints
        .iter()
        .map(KeyFingerprint::to_string)
        .collect();
    if let Some(k) = key {
        allowed.insert(k.fingerprint().to_string());
    }
    for s in &selected {
        if let Some(f) = &s.signer {
            allowed.insert(f.to_string());
        }
    }
    let mut key_records: Vec<(String, BlobRecord, Option<Vec<u8>>)> = Vec::new();
    if let Some(k) = key {
        let armored = k.public_key_armored()?;
        let rec = BlobRecord::for_bytes(&armored, layout::KEY_MEDIA_TYPE, "none");
        key_records.push((k.fingerprint().to_string(), rec, Some(armored)));
    }
    let mut problems = Vec::new();
    for fpr in &allowed {
        if key_records.iter().any(|(f, _, _)| f == fpr) {
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
        match super::signed::read_unsigned_manifest(&text, &mkey) {
            Ok(m) => match m.blob(layout::KEY_MEDIA_TYPE).or_else(|| m.data.first()) {
                Some(r) => key_records.push((fpr.clone(), r.clone(), None)),
                None => problems.push(format!("{mkey} lists no key blob")),
            },
            Err(e) => problems.push(format!("{mkey}: {e:#}")),
        }
    }

    // Every blob the selected specs and published keys need, once.
    let multipart = dest.multipart();
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
    for (_, rec, bytes) in &key_records {
        if bytes.is_none() && seen.insert(rec.checksum.clone()) {
            records.push(rec.clone());
        }
    }
    // Largest first: the longest hashes and uploads start first, so none is left running
    // alone at the end (longest-processing-time-first scheduling).
    records.sort_by_key(|r| std::cmp::Reverse(r.content_length));
    // Every blob is checked from one open handle. One the listing shows at the destination is
    // looked up first (one HEAD): bytes the store vouches for by SHA-256 are not hashed again.
    // Lookups run PLAN_REQUESTS at a time and hashing one per core, so the two overlap; so does
    // reading the destination: its index and key index, the manifests it may hold signed by us
    // (GET), and the version tags of manifests a listing without ETags showed (HEAD).
    let mut remote = listed?;
    remote
        .list_blobs_if_needed(dest, selected.iter().map(|s| s.entry.key.as_str()))
        .await?;
    let remote_ref = &remote;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let cpu = std::sync::Arc::new(tokio::sync::Semaphore::new(workers));
    let blob_jobs: Vec<BoxFuture<'_, Result<SourceCheck>>> = records
        .iter()
        .map(|rec| {
            let cpu = cpu.clone();
            Box::pin(async move {
                let held = match rec.sha256() {
                    Ok(sha) => {
                        let key = layout::blob_key(&sha);
                        Held::look_up(dest, remote_ref, &key, &sha, rec.content_length).await?
                    }
                    Err(_) => Held::Absent,
                };
                let _hashing = cpu.acquire_owned().await.expect("semaphore open");
                let (src, rec) = (source.clone(), rec.clone());
                tokio::task::spawn_blocking(move || check_source_blob(&src, &rec, multipart, held))
                    .await?
            }) as BoxFuture<'_, _>
        })
        .collect();

    let our_fpr = key.map(SigningKey::fingerprint);
    // Which manifests the destination may already hold signed by us: fetched.
    let fetch: Vec<usize> = match &our_fpr {
        Some(fpr) => selected
            .iter()
            .enumerate()
            .filter(|(_, s)| s.signer.as_ref() != Some(fpr) && remote.may_have(&s.entry.key))
            .map(|(i, _)| i)
            .collect(),
        None => Vec::new(),
    };
    // The others the listing showed without a version tag: looked up.
    let look_up: Vec<String> = selected
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
    let fetches: Vec<BoxFuture<'_, Result<Option<crate::buildcache::storage::Object>>>> = fetch
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
    let (checked, nodes, (dest_index, dest_keys, fetched, looked_up)) = tokio::join!(
        bounded(blob_jobs, PLAN_REQUESTS),
        bounded(node_reads, SOURCE_READS),
        async {
            tokio::join!(
                read_index(dest),
                super::index::read_pointer::<KeyIndex>(dest),
                bounded(fetches, PLAN_REQUESTS),
                bounded(heads, PLAN_REQUESTS),
            )
        }
    );

    let mut files: Vec<(FileBody, Option<Change>)> = Vec::new();
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

    // 3. The destination: its index must merge, its key index must name only known keys.
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
    if let Some(current) = &dest_keys {
        let unknown: Vec<&String> = current
            .doc
            .keys
            .iter()
            .filter(|f| !allowed.contains(*f))
            .collect();
        if !unknown.is_empty() && !opts.accept_unknown_keys {
            bail!(
                "the destination key index {}/{} names keys this publish does not know: {}. Spack users may trust every key it lists, so nothing was written. If you expect them, pass --publish-key-fingerprint <FPR> for each, or --accept-unknown-keys to keep them",
                dest.url(),
                layout::KEY_INDEX_MANIFEST,
                unknown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let published_fprs: BTreeSet<String> = key_records.iter().map(|(f, _, _)| f.clone()).collect();
    let looked_up: Vec<(String, Option<ObjectMeta>)> = look_up
        .into_iter()
        .zip(looked_up)
        .map(|(k, m)| m.map(|m| (k, m)))
        .collect::<Result<_>>()?;
    for (k, m) in looked_up {
        match m {
            Some(m) => remote.objects.insert(k, m),
            None => remote.objects.remove(&k),
        };
    }
    let remote_ref = &remote;

    // Spec manifests: keep what already carries our signature over the same text.
    let mut ours_only = TrustedKeys::new();
    if let Some(k) = key {
        ours_only.add_cert(k.public_cert().clone());
    }
    let mut existing: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    for (&i, o) in fetch.iter().zip(fetched) {
        if let Some(o) = o? {
            existing.insert(i, o.bytes);
        }
    }
    let mut manifest_bytes: Vec<Option<Vec<u8>>> = Vec::with_capacity(selected.len());
    // Manifests kept exactly as the destination holds them: nothing to compare or write.
    let mut kept_remote: BTreeSet<usize> = BTreeSet::new();
    let mut to_sign = Vec::new();
    for (i, s) in selected.iter().enumerate() {
        let text = text_to_sign(&s.entry.text);
        let Some(fpr) = &our_fpr else {
            manifest_bytes.push(Some(s.entry.stored.clone()));
            continue;
        };
        if s.signer.as_ref() == Some(fpr) {
            // Already signed by this key over this (verified) text.
            manifest_bytes.push(Some(s.entry.stored.clone()));
            continue;
        }
        match existing.remove(&i) {
            Some(bytes)
                if ours_only
                    .verify_cleartext(&bytes)
                    .is_ok_and(|v| &v.signer == fpr && v.text == text) =>
            {
                manifest_bytes.push(Some(bytes));
                kept_remote.insert(i);
            }
            _ => {
                manifest_bytes.push(None);
                to_sign.push(i);
            }
        }
    }
    if let Some(k) = key {
        let texts: Vec<&[u8]> = to_sign
            .iter()
            .map(|&i| text_to_sign(&selected[i].entry.text))
            .collect();
        let signed = super::sign::sign_all(k, &texts).context("cannot sign the spec manifests")?;
        for (i, bytes) in to_sign.into_iter().zip(signed) {
            manifest_bytes[i] = Some(bytes);
        }
    }

    // Plan the blobs (compared by digest) and the manifests.
    let mut blobs = Vec::new();
    let plans: Vec<BoxFuture<'_, Result<Pending>>> = files
        .into_iter()
        .map(|(f, change)| {
            Box::pin(async move {
                let change = match change {
                    Some(c) => c,
                    // Nothing the store keeps could tell: read its copy back.
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
            }) as BoxFuture<'_, _>
        })
        .collect();
    for p in bounded(plans, PLAN_REQUESTS).await {
        blobs.push(p?);
    }
    for (_, _, bytes) in &key_records {
        if let Some(b) = bytes {
            blobs.push(plan_blob(dest, &remote, b.clone()).await?);
        }
    }
    let mut manifests = Vec::new();
    let kept_ref = &kept_remote;
    let manifest_plans: Vec<BoxFuture<'_, Result<Pending>>> = selected
        .iter()
        .zip(manifest_bytes)
        .enumerate()
        .map(|(i, (s, b))| {
            let (key, bytes) = (s.entry.key.clone(), b.unwrap_or_default());
            Box::pin(async move {
                if kept_ref.contains(&i) {
                    // Read from the destination a moment ago: these are its bytes.
                    return Ok(Pending {
                        key,
                        size: bytes.len() as u64,
                        body: Body::Bytes(bytes),
                        change: Change::Unchanged,
                        content_type: "application/json",
                    });
                }
                plan_bytes(dest, remote_ref, key, bytes).await
            }) as BoxFuture<'_, _>
        })
        .collect();
    for p in bounded(manifest_plans, PLAN_REQUESTS).await {
        manifests.push(p?);
    }
    for (fpr, rec, _) in &key_records {
        manifests.push(
            plan_bytes(
                dest,
                &remote,
                format!("{}{fpr}{}", layout::KEY_PREFIX, layout::KEY_SUFFIX),
                Manifest::new(vec![rec.clone()]).to_spack_json(),
            )
            .await?,
        );
    }
    if !remote.may_have(layout::LAYOUT_JSON) || dest.head(layout::LAYOUT_JSON).await?.is_none() {
        manifests.push(Pending {
            key: layout::LAYOUT_JSON.into(),
            size: layout::LAYOUT_JSON_BYTES.len() as u64,
            body: Body::Bytes(layout::LAYOUT_JSON_BYTES.to_vec()),
            change: Change::New,
            content_type: "application/json",
        });
    } else {
        manifests.push(Pending {
            key: layout::LAYOUT_JSON.into(),
            size: layout::LAYOUT_JSON_BYTES.len() as u64,
            body: Body::Bytes(Vec::new()),
            change: Change::Unchanged,
            content_type: "application/json",
        });
    }

    // Per-spec accounting.
    // Each blob write is counted once, for the first spec that lists the blob.
    let blob_writes: BTreeMap<&str, &Pending> = blobs
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
        let m = &manifests[i];
        report.specs.push(SpecOutcome {
            id: s.entry.id.clone(),
            manifest: m.change,
            blobs_written: written.len(),
            bytes: written.iter().map(|b| b.size).sum::<u64>()
                + if m.change == Change::Unchanged {
                    0
                } else {
                    m.size
                },
        });
    }
    report.specs_published = selected.len() as u64;
    for p in blobs.iter().chain(&manifests) {
        report.objects.push(p.object());
        if p.change == Change::Unchanged {
            report.objects_skipped += 1;
            report.bytes_skipped += p.size;
        }
    }
    let pending_blobs = blobs
        .iter()
        .filter(|p| p.change != Change::Unchanged)
        .count() as u64;
    let pending: Vec<&Pending> = blobs
        .iter()
        .chain(&manifests)
        .filter(|p| p.change != Change::Unchanged)
        .collect();
    let merge_keys = |k: &mut KeyIndex| -> Result<()> {
        let unknown: Vec<&String> = k.keys.iter().filter(|f| !allowed.contains(*f)).collect();
        if !unknown.is_empty() && !opts.accept_unknown_keys {
            bail!(
                "the destination key index gained keys this publish does not know while it ran: {unknown:?}; the index was not changed"
            );
        }
        k.keys.extend(published_fprs.iter().cloned());
        Ok(())
    };
    let published: Vec<Vec<SpecNode>> = selected.iter().map(|s| s.nodes.clone()).collect();
    let merge_index = |i: &mut Index| -> Result<()> { i.merge_published(&published).map(|_| ()) };

    // What the key index would be (for the plan and the progress totals).
    let key_plan = update_pointer::<KeyIndex>(dest, &merge_keys, 1, true).await?;
    let key_objects = if key_plan.written { 2 } else { 0 };
    let total_objects = pending.len() as u64 + key_objects;
    let total_bytes: u64 = pending.iter().map(|p| p.size).sum();
    runner.info(&format!(
        "{}: {} blob(s) and {} manifest(s) to {}write ({}), {} object(s) already there",
        dest.url(),
        pending_blobs,
        pending.len() as u64 - pending_blobs,
        if opts.dry_run { "(dry run) " } else { "" },
        human_bytes(total_bytes),
        report.objects_skipped
    ));

    if opts.dry_run {
        if !key_plan.written {
            report.objects_skipped += 2;
        }
        let index_plan = update_pointer::<Index>(dest, &merge_index, 1, true).await?;
        let mut idx_stats_doc = read_index(dest).await?.map(|(i, _)| i).unwrap_or_default();
        report.index = idx_stats_doc.merge_published(&published)?;
        report.index_records = index_plan.doc.len();
        report.index_written = index_plan.written;
        report.objects_uploaded = total_objects + if index_plan.written { 2 } else { 0 };
        report.bytes_uploaded = total_bytes;
        report.blobs_uploaded = pending_blobs;
        for (k, w) in [
            (layout::KEY_INDEX_MANIFEST, key_plan.written),
            (layout::INDEX_MANIFEST, index_plan.written),
        ] {
            report.objects.push(ObjectChange {
                key: k.into(),
                change: if w { Change::Update } else { Change::Unchanged },
                size: 0,
            });
        }
        report.elapsed = t0.elapsed();
        return Ok(report);
    }

    // 5. Write: blobs, manifests, key index (in one progress group), then the index.
    let limit = dest.concurrency();
    {
        let _group = runner.group(&format!("Uploading to {}", dest.url()));
        let progress = Progress::start(
            runner,
            opts.progress,
            opts.progress_interval,
            total_objects,
            total_bytes,
        );
        let counters = progress.counters();
        let (blob_writes, manifest_writes): (Vec<&Pending>, Vec<&Pending>) = pending
            .iter()
            .partition(|p| matches!(p.body, Body::File(_)) || p.key.starts_with("blobs/"));
        let blob_writes: Vec<Pending> = blob_writes.into_iter().map(clone_pending).collect();
        write_all(dest, &blob_writes, limit, &counters)
            .await
            .map_err(|e| {
                e.context(format!(
                    "uploading blobs to {} failed; no manifest or index was changed. Re-run to upload what is missing",
                    dest.url()
                ))
            })?;
        let manifest_writes: Vec<Pending> =
            manifest_writes.into_iter().map(clone_pending).collect();
        write_all(dest, &manifest_writes, limit, &counters)
            .await
            .map_err(|e| {
                e.context(format!(
                    "uploading manifests to {} failed; the index was not changed. Re-run to finish",
                    dest.url()
                ))
            })?;
        let keys =
            update_pointer::<KeyIndex>(dest, &merge_keys, opts.index_attempts, false).await?;
        counters
            .objects
            .fetch_add(keys.objects_written, Ordering::Relaxed);
        counters
            .bytes
            .fetch_add(keys.bytes_written, Ordering::Relaxed);
        if !keys.written {
            report.objects_skipped += 2;
        }
        report.objects_uploaded = counters.objects.load(Ordering::Relaxed);
        report.bytes_uploaded = counters.bytes.load(Ordering::Relaxed);
        report.blobs_uploaded = pending_blobs + u64::from(keys.objects_written > 1);
        progress.finish();
    }
    let mode = dest.write_mode().await?;
    if mode == super::storage::WriteMode::Lock {
        runner.warning(&format!(
            "{} does not support conditional writes; merging the index under a lease lock ({}). Run a final publish after concurrent jobs to be safe",
            dest.url(),
            super::index::LOCK_KEY
        ));
    }
    let before = read_index(dest).await?.map(|(i, _)| i).unwrap_or_default();
    let idx = update_pointer::<Index>(dest, &merge_index, opts.index_attempts, false).await?;
    let mut stats_doc = before;
    report.index = stats_doc.merge_published(&published)?;
    report.index_records = idx.doc.len();
    report.index_written = idx.written;
    report.index_attempts = idx.attempts;
    report.write_mode = Some(idx.write_mode.to_string());
    report.objects_uploaded += idx.objects_written;
    report.bytes_uploaded += idx.bytes_written;
    report.blobs_uploaded += u64::from(idx.objects_written > 1);
    report.objects.push(ObjectChange {
        key: layout::INDEX_MANIFEST.into(),
        change: if idx.written {
            Change::Update
        } else {
            Change::Unchanged
        },
        size: 0,
    });
    report.elapsed = t0.elapsed();
    Ok(report)
}

fn clone_pending(p: &Pending) -> Pending {
    Pending {
        key: p.key.clone(),
        body: match &p.body {
            Body::File(f) => Body::File(f.clone()),
            Body::Bytes(b) => Body::Bytes(b.clone()),
        },
        size: p.size,
        change: p.change,
        content_type: p.content_type,
    }
}

/// Writes the step outputs of a publish (`buildcache-url`, `specs-published`,
/// `bytes-uploaded`) and its job-summary section.
pub fn write_outputs(runner: &Runner, report: &PublishReport) -> Result<()> {
    let bytes = if report.dry_run {
        0
    } else {
        report.bytes_uploaded
    };
    runner.set_outputs(&[
        ("buildcache-url", report.public_url.as_str()),
        ("specs-published", &report.specs_published.to_string()),
        ("bytes-uploaded", &bytes.to_string()),
    ])?;
    runner.append_summary(&format!(
        "{}\nConsumers: `spack mirror add <name> {}`\n",
        report.summary_markdown(),
        report.public_url
    ))
}

// ---------------------------------------------------------------------------------------------
// A publication prepared before the work that produces the source.

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
    pub fn open_options(&self) -> super::storage::OpenOptions {
        super::storage::OpenOptions {
            writable: true,
            s3: self.s3.clone(),
            ..super::storage::OpenOptions::default()
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
        let location = super::storage::Location::parse(&target.destination)?;
        if let super::storage::Location::Http(u) = &location {
            bail!(
                "{u}: HTTP(S) buildcaches are read-only; publish to the s3:// or file:// location of the same buildcache"
            );
        }
        let dest = super::storage::open(&location, &target.open_options(), runner).await?;
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
        if dest.write_mode().await? != super::storage::WriteMode::Conditional {
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
                precondition: super::storage::Precondition::IfAbsent,
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
        let Some((key, dest)) = self.target else {
            runner.notice("publish: none — nothing was signed or published");
            runner.set_outputs(&[
                ("buildcache-url", ""),
                ("specs-published", "0"),
                ("bytes-uploaded", "0"),
            ])?;
            return runner.append_summary(
                "### Sign and upload\n\nPublish mode `none`: nothing was signed or published.\n",
            );
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
        write_outputs(runner, &report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buildcache::storage::{Capabilities, Object, WriteMode};

    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spack-v3");

    /// A directory that vouches for its objects' SHA-256 the way S3 does for single-part
    /// objects with a stored checksum (`lookup`). A stand-in: the S3 servers the tests
    /// run (moto) keep no checksums, so this path is otherwise exercised only by the bench.
    #[derive(Debug)]
    struct Vouching(LocalDir, std::sync::Mutex<Vec<String>>);

    impl Vouching {
        fn new(dir: &std::path::Path) -> Self {
            Vouching(LocalDir::new(dir), Default::default())
        }

        /// The prefixes listed since the last call.
        fn listed(&self) -> Vec<String> {
            std::mem::take(&mut *self.1.lock().unwrap())
        }
    }

    impl Storage for Vouching {
        fn url(&self) -> String {
            self.0.url()
        }
        fn capabilities(&self) -> Capabilities {
            self.0.capabilities()
        }
        fn write_mode<'a>(&'a self) -> BoxFuture<'a, Result<WriteMode>> {
            self.0.write_mode()
        }
        fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Object>>> {
            self.0.get(key)
        }
        fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectMeta>>> {
            self.0.head(key)
        }
        fn put<'a>(
            &'a self,
            key: &'a str,
            bytes: Vec<u8>,
            opts: PutOptions,
        ) -> BoxFuture<'a, Result<ObjectMeta>> {
            self.0.put(key, bytes, opts)
        }
        fn put_file<'a>(
            &'a self,
            key: &'a str,
            file: &'a FileBody,
            opts: PutOptions,
        ) -> BoxFuture<'a, Result<ObjectMeta>> {
            self.0.put_file(key, file, opts)
        }
        fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
            self.0.delete(key)
        }
        fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectMeta>>> {
            self.1.lock().unwrap().push(prefix.to_owned());
            self.0.list(prefix)
        }
        fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Existing>>> {
            Box::pin(async move {
                Ok(self.0.digest(key).await?.map(|(d, size)| Existing {
                    size,
                    sha256: Some(d),
                    ..Existing::default()
                }))
            })
        }
    }

    fn copy(from: &std::path::Path, to: &std::path::Path) {
        for e in walkdir::WalkDir::new(from) {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(from).unwrap();
            if e.file_type().is_dir() {
                std::fs::create_dir_all(to.join(rel)).unwrap();
            } else {
                std::fs::copy(e.path(), to.join(rel)).unwrap();
            }
        }
    }

    fn flip_a_byte(path: &std::path::Path) {
        let mut b = std::fs::read(path).unwrap();
        b[100] ^= 0xff;
        std::fs::write(path, b).unwrap();
    }

    /// The largest blob of a buildcache directory (a tarball), relative to it.
    fn largest_blob(root: &std::path::Path) -> String {
        walkdir::WalkDir::new(root.join("blobs"))
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .max_by_key(|e| e.metadata().unwrap().len())
            .map(|e| e.path().strip_prefix(root).unwrap().display().to_string())
            .unwrap()
    }

    /// The unsigned fixture copied to `src`, to publish to an empty vouching `dst`.
    struct Fixture {
        _dir: tempfile::TempDir,
        runner: Runner,
        src: std::path::PathBuf,
        dst: std::path::PathBuf,
        source: LocalDir,
        dest: Vouching,
        opts: PublishOptions,
    }

    impl Fixture {
        fn new() -> Self {
            let runner =
                Runner::from_vars([("NO_COLOR", "1")]).with_sink(Box::new(std::io::sink()));
            let dir = tempfile::tempdir().unwrap();
            let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
            copy(std::path::Path::new(&format!("{FIX}/unsigned")), &src);
            Fixture {
                runner,
                source: LocalDir::new(&src),
                dest: Vouching::new(&dst),
                opts: PublishOptions {
                    allow_unsigned: true,
                    progress: ProgressMode::Quiet,
                    ..PublishOptions::default()
                },
                _dir: dir,
                src,
                dst,
            }
        }
    }

    #[tokio::test]
    async fn blobs_are_listed_only_when_a_manifest_is_missing() {
        let f = Fixture::new();
        let (runner, source, dest, opts) = (&f.runner, &f.source, &f.dest, &f.opts);
        let dst = f.dst.clone();
        // An empty destination: every manifest is missing, so the blobs are listed (and none
        // is looked up one by one).
        let first = publish(runner, source, dest, None, opts).await.unwrap();
        assert!(first.blobs_uploaded > 0);
        assert_eq!(dest.listed(), ["v3/", "blobs/"]);

        // A re-run: every manifest is there, so its blobs are looked up, not listed.
        let again = publish(runner, source, dest, None, opts).await.unwrap();
        assert_eq!(again.objects_uploaded, 0, "{:?}", again.objects);
        assert_eq!(dest.listed(), ["v3/"]);

        // A blob deleted behind a present manifest is still found missing (by its lookup)
        // and uploaded again.
        let blob = largest_blob(&dst);
        std::fs::remove_file(dst.join(&blob)).unwrap();
        let healed = publish(runner, source, dest, None, opts).await.unwrap();
        assert_eq!(dest.listed(), ["v3/"]);
        assert!(
            healed
                .objects
                .iter()
                .any(|o| o.key == blob && o.change == Change::New),
            "{:?}",
            healed.objects
        );
        assert!(dst.join(&blob).is_file());

        // A missing manifest: the blobs are listed again, and only the manifest is written.
        let manifest = walkdir::WalkDir::new(dst.join("v3/manifests/spec"))
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .find(|p| p.is_file())
            .unwrap();
        std::fs::remove_file(&manifest).unwrap();
        let restored = publish(runner, source, dest, None, opts).await.unwrap();
        assert_eq!(dest.listed(), ["v3/", "blobs/"]);
        assert_eq!(restored.blobs_uploaded, 0, "{:?}", restored.objects);
        assert!(manifest.is_file());
    }

    #[tokio::test]
    async fn what_the_destination_vouches_for_is_kept_and_anything_else_is_replaced() {
        let f = Fixture::new();
        let (runner, source, dest, opts) = (&f.runner, &f.source, &f.dest, &f.opts);
        let (src, dst) = (f.src.clone(), f.dst.clone());
        let first = publish(runner, source, dest, None, opts).await.unwrap();
        assert!(first.blobs_uploaded > 0);
        let blob = largest_blob(&dst);
        let good = std::fs::read(dst.join(&blob)).unwrap();

        // A re-run: nothing is written.
        let again = publish(runner, source, dest, None, opts).await.unwrap();
        assert_eq!(again.objects_uploaded, 0, "{:?}", again.objects);

        // A bucket writer puts other bytes of the same size under the blob's key: the store
        // vouches for *their* digest, which is not the recorded one, so the blob is replaced.
        flip_a_byte(&dst.join(&blob));
        let fixed = publish(runner, source, dest, None, opts).await.unwrap();
        assert!(
            fixed
                .objects
                .iter()
                .any(|o| o.key == blob && o.change == Change::Update),
            "{:?}",
            fixed.objects
        );
        assert_eq!(std::fs::read(dst.join(&blob)).unwrap(), good);

        // A source blob whose bytes the destination already vouches for is not read: nothing
        // of it would be published (the key names its digest). A corrupt one is not noticed...
        flip_a_byte(&src.join(&blob));
        let kept = publish(runner, source, dest, None, opts).await.unwrap();
        assert_eq!(kept.objects_uploaded, 0, "{:?}", kept.objects);
        assert_eq!(std::fs::read(dst.join(&blob)).unwrap(), good);
        // ...until it would be uploaded: then it is hashed and refused, and nothing is written.
        std::fs::remove_file(dst.join(&blob)).unwrap();
        let e = publish(runner, source, dest, None, opts).await.unwrap_err();
        assert!(format!("{e:#}").contains("has sha256"), "{e:#}");
        assert!(!dst.join(&blob).exists(), "a corrupt blob was published");
    }
}
