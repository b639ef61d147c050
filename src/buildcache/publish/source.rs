//! Step 1: the source, read and checked whole before anything is written, and the specs the
//! publish mode selects from it.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use futures::future::BoxFuture;

use super::{SOURCE_READS, bounded};
use crate::buildcache::SpecEntry;
use crate::buildcache::layout::{self, Sha256Hex, SpecId, SpecNode};
use crate::buildcache::storage::{LocalDir, ObjectMeta, Storage};
use crate::pgp::{KeyFingerprint, TrustedKeys};

/// A checked source spec: its verified manifest text, who signed it, and its nodes.
pub(super) struct SourceSpec {
    pub(super) entry: SpecEntry,
    pub(super) signer: Option<KeyFingerprint>,
    pub(super) nodes: Vec<SpecNode>,
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

/// Reads and checks the whole source; any problem fails here, before a single write.
pub(super) async fn load_source(
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
        let read = match crate::buildcache::signed::read_spec_manifest(&stored, key, trusted, true)
        {
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

/// The specs a publish mode selects from a checked source (the others are `skipped`).
pub(super) fn select(
    runner: &crate::gha::Runner,
    source: &LocalDir,
    all: Vec<SourceSpec>,
    mode: super::PublishMode,
    slurm_package: &str,
) -> Result<(Vec<SourceSpec>, Vec<SpecId>)> {
    let keep = match mode {
        super::PublishMode::All | super::PublishMode::None => None,
        super::PublishMode::SlurmOnly => Some(runtime_closure_of(source, &all, slurm_package)?),
    };
    let (selected, skipped): (Vec<SourceSpec>, Vec<SourceSpec>) = all
        .into_iter()
        .partition(|s| keep.as_ref().is_none_or(|k| k.contains(&s.entry.id.hash)));
    let skipped: Vec<SpecId> = skipped.into_iter().map(|s| s.entry.id).collect();
    if selected.is_empty() {
        bail!(
            "publish mode slurm-only, but the source {} has no spec named `{slurm_package}` (it has: {}); nothing was written",
            source.root().display(),
            skipped
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if keep.is_some() {
        runner.info(&format!(
            "publish slurm-only: {slurm_package} and its run-time dependencies ({} specs); left out {} (other roots, build-only)",
            selected.len(),
            skipped.len()
        ));
    }
    Ok((selected, skipped))
}
