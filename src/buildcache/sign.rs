//! Signing an unsigned local buildcache and publishing it to a destination [`Storage`]: the
//! library half of `sign-and-upload`.
//!
//! [`publish`] first checks everything (every blob's size and sha256 against its manifest,
//! every spec blob against its manifest's name), so a bad source fails before anything is
//! written. It then writes, in this order, so a reader never sees a manifest whose blobs are
//! missing or an index naming a spec whose manifest is missing:
//!
//! 1. blobs (tarballs, spec JSON, the public key, the key index), content-addressed and
//!    skipped when already present;
//! 2. spec manifests, clearsigned; the key manifest and the key index manifest;
//! 3. `v3/layout.json` when absent;
//! 4. the index: the destination's DB v8 index merged with the published specs (nothing is
//!    lost), its blob, then `index.manifest.json` last, with a conditional write that retries
//!    on a concurrent writer.
//!
//! Re-running on the same input writes nothing: a destination manifest that already verifies
//! with our key over the same text is kept (a new signature would differ in its creation time).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result, bail};

use super::index::{Index, KeyIndex, MergeStats};
use super::layout::{self, BlobRecord, Manifest, SpecId, SpecNode};
use super::storage::{LocalDir, Precondition, PreconditionFailed, PutOptions, Storage};
use super::{
    SpecEntry, check_blob, read_index, read_spec_entry, read_spec_nodes, spec_manifest_keys,
};
use crate::pgp::{KeyFingerprint, SigningKey, TrustedKeys};

/// Which specs to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublishMode {
    /// Every spec in the source (Slurm and its dependencies).
    #[default]
    All,
    /// Only Slurm's own spec (package name `slurm`).
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
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Which specs to publish.
    pub mode: PublishMode,
    /// Plan and report only; write nothing.
    pub dry_run: bool,
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
#[derive(Debug, Clone)]
pub struct PublishReport {
    /// Destination URL.
    pub url: String,
    /// Public fingerprint of the signing certificate.
    pub fingerprint: KeyFingerprint,
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
    /// Whether nothing was written.
    pub dry_run: bool,
}

impl PublishReport {
    /// Bytes written (or, in a dry run, that would be written).
    pub fn bytes_uploaded(&self) -> u64 {
        self.objects
            .iter()
            .filter(|o| o.change != Change::Unchanged)
            .map(|o| o.size)
            .sum()
    }

    /// Number of objects written (or that would be).
    pub fn objects_written(&self) -> usize {
        self.objects
            .iter()
            .filter(|o| o.change != Change::Unchanged)
            .count()
    }

    /// A Markdown job summary.
    pub fn summary_markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(if self.dry_run {
            "### Sign and upload (dry run: nothing written)\n\n"
        } else {
            "### Sign and upload\n\n"
        });
        s.push_str(&format!(
            "Buildcache `{}`, signed by `{}`.\n\n| Spec | Manifest | Blobs written | Bytes |\n|---|---|---:|---:|\n",
            self.url, self.fingerprint
        ));
        for sp in &self.specs {
            s.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                sp.id, sp.manifest, sp.blobs_written, sp.bytes
            ));
        }
        s.push_str(&format!(
            "\nIndex: {} records ({} added, {} updated, {} kept). {} objects {}, {} bytes.\n",
            self.index_records,
            self.index.added.len(),
            self.index.updated.len(),
            self.index.kept,
            self.objects_written(),
            if self.dry_run {
                "would be written"
            } else {
                "written"
            },
            self.bytes_uploaded()
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

/// Cleartext-signs many texts, in parallel over the available cores, preserving order.
pub fn sign_all(key: &SigningKey, texts: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(texts.len().max(1));
    if threads <= 1 {
        return texts.iter().map(|t| key.clearsign(t)).collect();
    }
    let chunk = texts.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = texts
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|t| key.clearsign(t))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(texts.len());
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| anyhow::anyhow!("a signing thread panicked"))??,
            );
        }
        Ok(out)
    })
}

/// The manifest text to sign: the manifest bytes, minus a final line break (a cleartext
/// signature cannot carry one; Spack writes none).
fn text_to_sign(entry: &SpecEntry) -> &[u8] {
    entry.text.strip_suffix(b"\n").unwrap_or(&entry.text)
}

struct SourceSpec {
    entry: SpecEntry,
    nodes: Vec<SpecNode>,
}

/// Reads and checks the whole source; any problem fails here, before a single write.
async fn load_source(source: &LocalDir) -> Result<Vec<SourceSpec>> {
    if !source.root().is_dir() {
        bail!(
            "the source buildcache {} does not exist or is not a directory; pass the directory `spack buildcache push` wrote (it contains v3/ and blobs/)",
            source.root().display()
        );
    }
    let keys = spec_manifest_keys(source).await?;
    if keys.is_empty() {
        bail!(
            "the source {} holds no spec manifests (v3/manifests/spec/<name>/*.spec.manifest.json); is it a Spack 1.0 (layout v3) buildcache?",
            source.root().display()
        );
    }
    let mut specs = Vec::new();
    let mut problems = Vec::new();
    for key in keys {
        let entry = match read_spec_entry(source, &key).await {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("{e:#}"));
                continue;
            }
        };
        let mut ok = true;
        for rec in &entry.manifest.data {
            if let Err(p) = check_blob(source, rec).await? {
                problems.push(format!("{}: {p}", entry.id));
                ok = false;
            }
        }
        if !ok {
            continue;
        }
        match read_spec_nodes(source, &entry).await {
            Ok(nodes) => specs.push(SourceSpec { entry, nodes }),
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    if !problems.is_empty() {
        bail!(
            "the source buildcache {} failed its checks, so nothing was written:\n  - {}",
            source.root().display(),
            problems.join("\n  - ")
        );
    }
    Ok(specs)
}

/// A pending write.
enum Body {
    File(std::path::PathBuf),
    Bytes(Vec<u8>),
}

struct Pending {
    key: String,
    body: Body,
    size: u64,
    change: Change,
    content_type: &'static str,
}

async fn plan_bytes(
    dest: &dyn Storage,
    key: String,
    bytes: Vec<u8>,
    content_type: &'static str,
) -> Result<Pending> {
    let change = match dest.get(&key).await? {
        Some(o) if o.bytes == bytes => Change::Unchanged,
        Some(_) => Change::Update,
        None => Change::New,
    };
    Ok(Pending {
        key,
        size: bytes.len() as u64,
        body: Body::Bytes(bytes),
        change,
        content_type,
    })
}

/// Plans a content-addressed blob: present with the right size means unchanged.
async fn plan_blob(dest: &dyn Storage, rec: &BlobRecord, body: Body) -> Result<Pending> {
    let key = rec.key()?;
    let change = match dest.head(&key).await? {
        Some(m) if m.size == rec.content_length => Change::Unchanged,
        Some(_) => Change::Update,
        None => Change::New,
    };
    Ok(Pending {
        key,
        body,
        size: rec.content_length,
        change,
        content_type: "application/octet-stream",
    })
}

async fn execute(dest: &dyn Storage, p: &Pending) -> Result<()> {
    if p.change == Change::Unchanged {
        return Ok(());
    }
    let opts = PutOptions::typed(p.content_type);
    match &p.body {
        Body::File(path) => dest.put_file(&p.key, path, opts).await,
        Body::Bytes(b) => dest.put(&p.key, b.clone(), opts).await,
    }
    .with_context(|| format!("cannot write {} to {}", p.key, dest.url()))?;
    Ok(())
}

/// The fingerprints the destination's key index should list: what it lists now, every key
/// manifest present (as Spack's `generate_key_index` lists them), and ours.
async fn merged_key_index(dest: &dyn Storage, ours: &KeyFingerprint) -> Result<KeyIndex> {
    let mut idx = KeyIndex::default();
    if let Some(obj) = dest.get(layout::KEY_INDEX_MANIFEST).await? {
        let m = super::signed::read_unsigned_manifest(&obj.bytes, layout::KEY_INDEX_MANIFEST)
            .context("the destination's key index manifest is malformed")?;
        if let Some(rec) = m.data.first()
            && let Some(blob) = dest.get(&rec.key()?).await?
        {
            idx = KeyIndex::parse(&blob.bytes)?;
        }
    }
    for m in dest.list(layout::KEY_PREFIX).await? {
        if let Some(fpr) = m
            .key
            .strip_prefix(layout::KEY_PREFIX)
            .and_then(|k| k.strip_suffix(layout::KEY_SUFFIX))
            && !fpr.contains('/')
        {
            idx.keys.insert(fpr.to_owned());
        }
    }
    idx.insert(ours);
    Ok(idx)
}

/// Signs the unsigned buildcache at `source` with `key` and publishes it to `dest`. See the
/// module documentation for the checks, the write order and idempotency.
pub async fn publish(
    source: &LocalDir,
    dest: &dyn Storage,
    key: &SigningKey,
    opts: &PublishOptions,
) -> Result<PublishReport> {
    let fingerprint = key.fingerprint();
    let mut report = PublishReport {
        url: dest.url(),
        fingerprint: fingerprint.clone(),
        specs: Vec::new(),
        skipped: Vec::new(),
        objects: Vec::new(),
        index: MergeStats {
            added: vec![],
            updated: vec![],
            kept: 0,
        },
        index_records: 0,
        dry_run: opts.dry_run,
    };
    if opts.mode == PublishMode::None {
        return Ok(report);
    }
    let all = load_source(source).await?;
    // A destination index we could not merge must stop us before anything is written.
    read_index(dest).await.with_context(|| {
        format!(
            "the destination {} has an index that cannot be read and merged; nothing was written",
            dest.url()
        )
    })?;
    let (selected, skipped): (Vec<SourceSpec>, Vec<SourceSpec>) = all
        .into_iter()
        .partition(|s| opts.mode == PublishMode::All || s.entry.id.name == "slurm");
    report.skipped = skipped.into_iter().map(|s| s.entry.id).collect();
    if selected.is_empty() {
        bail!(
            "publish mode slurm-only, but the source {} has no spec named `slurm` (it has: {}); nothing was written",
            source.root().display(),
            report
                .skipped
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    // Spec manifests: keep those that already verify with our key over the same text.
    let mut trusted = TrustedKeys::new();
    trusted.add_cert(key.public_cert().clone());
    let mut manifest_changes = Vec::new();
    let mut to_sign = Vec::new();
    for (i, s) in selected.iter().enumerate() {
        let text = text_to_sign(&s.entry);
        match dest.get(&s.entry.key).await? {
            Some(existing) => {
                let keep = trusted
                    .verify_cleartext(&existing.bytes)
                    .is_ok_and(|v| v.signer == fingerprint && v.text == text);
                if keep {
                    manifest_changes.push((Change::Unchanged, existing.bytes));
                } else {
                    manifest_changes.push((Change::Update, Vec::new()));
                    to_sign.push(i);
                }
            }
            None => {
                manifest_changes.push((Change::New, Vec::new()));
                to_sign.push(i);
            }
        }
    }
    let texts: Vec<&[u8]> = to_sign
        .iter()
        .map(|&i| text_to_sign(&selected[i].entry))
        .collect();
    let signed = sign_all(key, &texts).context("cannot sign the spec manifests")?;
    for (i, bytes) in to_sign.into_iter().zip(signed) {
        manifest_changes[i].1 = bytes;
    }

    // Phase 1: blobs.
    let mut blobs: Vec<Pending> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut spec_of_blob: BTreeMap<String, usize> = BTreeMap::new();
    for (i, s) in selected.iter().enumerate() {
        for rec in &s.entry.manifest.data {
            let k = rec.key()?;
            if !seen.insert(k.clone()) {
                continue;
            }
            let path = source.path(&k)?;
            blobs.push(plan_blob(dest, rec, Body::File(path)).await?);
            spec_of_blob.insert(k, i);
        }
    }
    let pub_key = key.public_key_armored()?;
    let key_rec = BlobRecord::for_bytes(&pub_key, layout::KEY_MEDIA_TYPE, "none");
    blobs.push(plan_blob(dest, &key_rec, Body::Bytes(pub_key)).await?);
    let key_index = merged_key_index(dest, &fingerprint).await?.to_json();
    let key_index_rec = BlobRecord::for_bytes(&key_index, layout::KEY_INDEX_MEDIA_TYPE, "none");
    blobs.push(plan_blob(dest, &key_index_rec, Body::Bytes(key_index)).await?);

    // Phase 2: manifests.
    let mut manifests: Vec<Pending> = Vec::new();
    for (s, (change, bytes)) in selected.iter().zip(manifest_changes) {
        manifests.push(Pending {
            key: s.entry.key.clone(),
            size: bytes.len() as u64,
            body: Body::Bytes(bytes),
            change,
            content_type: "application/json",
        });
    }
    manifests.push(
        plan_bytes(
            dest,
            layout::key_manifest_key(&fingerprint),
            Manifest::new(vec![key_rec]).to_spack_json(),
            "application/json",
        )
        .await?,
    );
    manifests.push(
        plan_bytes(
            dest,
            layout::KEY_INDEX_MANIFEST.into(),
            Manifest::new(vec![key_index_rec]).to_spack_json(),
            "application/json",
        )
        .await?,
    );
    // Phase 3: layout.json, only when absent (Spack's maybe_push_layout_json).
    let layout_json = if dest.head(layout::LAYOUT_JSON).await?.is_some() {
        None
    } else {
        Some(Pending {
            key: layout::LAYOUT_JSON.into(),
            body: Body::Bytes(layout::LAYOUT_JSON_BYTES.to_vec()),
            size: layout::LAYOUT_JSON_BYTES.len() as u64,
            change: Change::New,
            content_type: "application/json",
        })
    };

    // Per-spec accounting.
    for (i, s) in selected.iter().enumerate() {
        let written: Vec<&Pending> = blobs
            .iter()
            .filter(|b| spec_of_blob.get(&b.key) == Some(&i) && b.change != Change::Unchanged)
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

    let published: Vec<Vec<SpecNode>> = selected.iter().map(|s| s.nodes.clone()).collect();
    if !opts.dry_run {
        for p in blobs
            .iter()
            .chain(manifests.iter())
            .chain(layout_json.iter())
        {
            execute(dest, p).await?;
        }
    }
    for p in blobs
        .iter()
        .chain(manifests.iter())
        .chain(layout_json.iter())
    {
        report.objects.push(ObjectChange {
            key: p.key.clone(),
            change: p.change,
            size: p.size,
        });
    }

    // Phase 4: the index, last; retried when another writer updates it concurrently.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (mut index, etag) = match read_index(dest).await? {
            Some((i, e)) => (i, e),
            None => (Index::new(), None),
        };
        let stats = index.merge_published(&published)?;
        let blob = index.to_json();
        let rec = BlobRecord::for_bytes(&blob, layout::INDEX_MEDIA_TYPE, "none");
        let blob_plan = plan_blob(dest, &rec, Body::Bytes(blob)).await?;
        let manifest_plan = plan_bytes(
            dest,
            layout::INDEX_MANIFEST.into(),
            Manifest::new(vec![rec]).to_spack_json(),
            "application/json",
        )
        .await?;
        if !opts.dry_run {
            execute(dest, &blob_plan).await?;
            if manifest_plan.change != Change::Unchanged {
                let Body::Bytes(bytes) = &manifest_plan.body else {
                    unreachable!("manifests are in memory")
                };
                let precondition = match etag {
                    Some(e) => Precondition::IfMatch(e),
                    None => Precondition::IfAbsent,
                };
                let put = dest
                    .put(
                        &manifest_plan.key,
                        bytes.clone(),
                        PutOptions {
                            content_type: Some("application/json".into()),
                            cache_control: Some("no-cache".into()),
                            precondition,
                        },
                    )
                    .await;
                if let Err(e) = put {
                    if e.downcast_ref::<PreconditionFailed>().is_some() && attempt < 5 {
                        continue;
                    }
                    return Err(
                        e.context(format!("cannot write the index manifest to {}", dest.url()))
                    );
                }
            }
        }
        report.index = stats;
        report.index_records = index.len();
        report.objects.push(ObjectChange {
            key: blob_plan.key,
            change: blob_plan.change,
            size: blob_plan.size,
        });
        report.objects.push(ObjectChange {
            key: manifest_plan.key,
            change: manifest_plan.change,
            size: manifest_plan.size,
        });
        break;
    }
    Ok(report)
}
