//! Verifying a published buildcache by walking it from its index, the way a consumer reads it:
//! index manifest → index blob → each spec's signed manifest → its blobs; key index → key
//! manifests → key blobs. It needs no listing, so it works on read-only HTTP mirrors; a store
//! that can list is also searched for spec manifests the index does not name.
//!
//! [`verify_spec`] is the per-spec check (signature against trusted keys, every blob's size and
//! sha256, the spec blob's root is the spec the manifest's key names) that `test-install`
//! reuses before installing anything.

use std::collections::BTreeSet;

use anyhow::{Context, Result};

use super::index::KeyIndex;
use super::layout::{self, Manifest, SPEC_JSON_MAX_BYTES, Sha256Hex, SpecId, SpecNode};
use super::signed::{read_spec_manifest, read_unsigned_manifest};
use super::{Storage, check_blob, read_index, spec_nodes};
use crate::pgp::{KeyFingerprint, TrustedKeys};

/// Options of [`verify_buildcache`] and [`verify_spec`].
#[derive(Debug, Clone)]
pub(crate) struct VerifyOptions {
    /// Accept unsigned spec manifests (blobs are still checked; signed ones still verified).
    pub allow_unsigned: bool,
    /// Cap on a spec blob's decompressed JSON, in bytes.
    pub max_spec_json: u64,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            allow_unsigned: false,
            max_spec_json: SPEC_JSON_MAX_BYTES,
        }
    }
}

/// A spec that verified.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedSpec {
    /// The spec.
    pub id: SpecId,
    /// Its manifest's key.
    pub key: String,
    /// Who signed its manifest (`None` only when unsigned manifests were allowed).
    pub signer: Option<KeyFingerprint>,
    /// The manifest, parsed from the verified text.
    pub manifest: Manifest,
    /// The spec's nodes, root first, from its verified spec blob.
    pub nodes: Vec<SpecNode>,
}

/// A spec that did not verify, with every reason found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{id} (manifest {key}): {}", problems.join("; "))]
pub(crate) struct SpecRejected {
    /// The spec.
    pub id: SpecId,
    /// Its manifest's key.
    pub key: String,
    /// The signer, when the signature verified and something else failed.
    pub signer: Option<KeyFingerprint>,
    /// Blobs that matched their records.
    pub blobs_ok: usize,
    /// What is wrong; never empty.
    pub problems: Vec<String>,
}

/// Verifies one spec of the buildcache in `storage`: its manifest's signature against
/// `trusted` (the manifest is parsed from the signed text only), every blob's size and sha256,
/// and that the spec blob's root is `id`. Nothing is trusted on failure.
pub(crate) async fn verify_spec(
    storage: &dyn Storage,
    trusted: &TrustedKeys,
    id: &SpecId,
    opts: &VerifyOptions,
) -> Result<VerifiedSpec, SpecRejected> {
    let key = id.manifest_key();
    let mut rejected = SpecRejected {
        id: id.clone(),
        key: key.clone(),
        signer: None,
        blobs_ok: 0,
        problems: Vec::new(),
    };
    let stored = match storage.get(&key).await {
        Ok(Some(o)) => o.bytes,
        Ok(None) => {
            rejected.problems.push(format!(
                "manifest {key} is missing (the index lists the spec as in the buildcache)"
            ));
            return Err(rejected);
        }
        Err(e) => {
            rejected.problems.push(format!("{e:#}"));
            return Err(rejected);
        }
    };
    let read = match read_spec_manifest(&stored, &key, trusted, opts.allow_unsigned) {
        Ok(r) => r,
        Err(e) => {
            rejected.problems.push(e.to_string());
            return Err(rejected);
        }
    };
    rejected.signer = read.signer.clone();
    for rec in &read.manifest.data {
        match check_blob(storage, rec).await {
            Ok(Ok(())) => rejected.blobs_ok += 1,
            Ok(Err(p)) => rejected.problems.push(p.to_string()),
            Err(e) => rejected.problems.push(format!("{e:#}")),
        }
    }
    if !rejected.problems.is_empty() {
        return Err(rejected);
    }
    match spec_nodes(storage, id, &key, &read.manifest, opts.max_spec_json).await {
        Ok(nodes) => Ok(VerifiedSpec {
            id: id.clone(),
            key,
            signer: read.signer,
            manifest: read.manifest,
            nodes,
        }),
        Err(e) => {
            rejected.problems.push(format!("{e:#}"));
            Err(rejected)
        }
    }
}

/// The result for one spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpecVerdict {
    /// The spec (from the manifest key), or `None` when the key itself is malformed.
    pub id: Option<SpecId>,
    /// The manifest key.
    pub key: String,
    /// Who signed it, when the signature verified.
    pub signer: Option<KeyFingerprint>,
    /// Blobs that matched their records.
    pub blobs_ok: usize,
    /// Everything wrong with it; empty means verified.
    pub problems: Vec<String>,
}

impl SpecVerdict {
    /// Whether the spec passed.
    pub(crate) fn ok(&self) -> bool {
        self.problems.is_empty()
    }
    /// The spec's display name (or its key).
    pub(crate) fn name(&self) -> String {
        self.id
            .as_ref()
            .map(|i| i.to_string())
            .unwrap_or_else(|| self.key.clone())
    }

    fn of(r: Result<VerifiedSpec, SpecRejected>) -> Self {
        match r {
            Ok(v) => SpecVerdict {
                blobs_ok: v.manifest.data.len(),
                id: Some(v.id),
                key: v.key,
                signer: v.signer,
                problems: Vec::new(),
            },
            Err(r) => SpecVerdict {
                id: Some(r.id),
                key: r.key,
                signer: r.signer,
                blobs_ok: r.blobs_ok,
                problems: r.problems,
            },
        }
    }
}

/// A key the buildcache publishes (from its key index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyVerdict {
    /// The fingerprint the key index names.
    pub fingerprint: String,
    /// Whether it is one of the trusted keys (publishing a key never makes it trusted).
    pub trusted: bool,
    /// What is wrong with its key manifest or blob, if anything.
    pub problem: Option<String>,
}

/// The result of [`verify_buildcache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifyReport {
    /// The buildcache URL.
    pub url: String,
    /// Per spec, in index order, then manifests found by listing that the index does not name.
    pub specs: Vec<SpecVerdict>,
    /// Problems with the index (missing, corrupt, naming a spec without a manifest, ...).
    pub index_problems: Vec<String>,
    /// The keys the key index names.
    pub keys: Vec<KeyVerdict>,
    /// Remarks that are not failures (no key index, could not list).
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// Whether everything verified.
    pub(crate) fn ok(&self) -> bool {
        self.index_problems.is_empty()
            && self.specs.iter().all(SpecVerdict::ok)
            && !self.specs.is_empty()
            && self.keys.iter().all(|k| k.problem.is_none())
    }

    /// Failed specs.
    pub(crate) fn failures(&self) -> impl Iterator<Item = &SpecVerdict> {
        self.specs.iter().filter(|s| !s.ok())
    }

    /// Logs one line per spec (errors as `::error::`), the index's problems, the published
    /// keys that are broken or not trusted, and the notes.
    pub(crate) fn log(&self, runner: &crate::gha::Runner) {
        for v in &self.specs {
            if v.ok() {
                runner.info(&format!(
                    "ok      {} (signer {}, {} blobs)",
                    v.name(),
                    v.signer
                        .as_ref()
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "unsigned".into()),
                    v.blobs_ok
                ));
            } else {
                runner.error(&format!("FAILED  {}: {}", v.name(), v.problems.join("; ")));
            }
        }
        for p in &self.index_problems {
            runner.error(&format!("index: {p}"));
        }
        for k in &self.keys {
            match &k.problem {
                Some(p) => runner.error(&format!("published key {}: {p}", k.fingerprint)),
                None if !k.trusted => runner.info(&format!(
                    "the cache publishes key {}, which is not trusted (pin it to trust it)",
                    k.fingerprint
                )),
                None => {}
            }
        }
        for n in &self.notes {
            runner.info(n);
        }
    }

    /// `Ok` when everything verified, else an error listing every failure.
    pub(crate) fn outcome(&self) -> Result<()> {
        if self.ok() {
            return Ok(());
        }
        if self.specs.is_empty() {
            anyhow::bail!("{} holds no spec manifests to verify", self.url);
        }
        let failed: Vec<String> = self
            .failures()
            .map(|v| format!("{}: {}", v.name(), v.problems.join("; ")))
            .chain(self.index_problems.iter().map(|p| format!("index: {p}")))
            .chain(self.keys.iter().filter_map(|k| {
                k.problem
                    .as_ref()
                    .map(|p| format!("published key {}: {p}", k.fingerprint))
            }))
            .collect();
        anyhow::bail!(
            "verification of {} failed ({} of {} specs):\n  - {}",
            self.url,
            self.failures().count(),
            self.specs.len(),
            failed.join("\n  - ")
        )
    }

    /// A Markdown table of the results.
    pub(crate) fn markdown(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut s = format!(
            "### Buildcache verification: {}\n\n`{}`\n\n| Spec | Signer | Blobs | Result |\n|---|---|---:|---|\n",
            if self.ok() { "passed" } else { "FAILED" },
            cell(&self.url)
        );
        for v in &self.specs {
            s.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                cell(&v.name()),
                v.signer
                    .as_ref()
                    .map(|f| format!("`{f}`"))
                    .unwrap_or_else(|| "-".into()),
                v.blobs_ok,
                if v.ok() {
                    "ok".to_string()
                } else {
                    cell(&v.problems.join("; "))
                }
            ));
        }
        if self.specs.is_empty() {
            s.push_str("| (none) | - | 0 | no spec manifests found |\n");
        }
        for k in &self.keys {
            s.push_str(&format!(
                "\nPublished key `{}`: {}{}\n",
                cell(&k.fingerprint),
                if k.trusted { "trusted" } else { "not trusted" },
                k.problem
                    .as_ref()
                    .map(|p| format!(", {}", cell(p)))
                    .unwrap_or_default()
            ));
        }
        for p in &self.index_problems {
            s.push_str(&format!("\nIndex: {}\n", cell(p)));
        }
        for n in &self.notes {
            s.push_str(&format!("\nNote: {}\n", cell(n)));
        }
        s
    }
}

/// The spec ids the index marks as in the buildcache, in index order.
fn indexed_specs(index: &super::Index, problems: &mut Vec<String>) -> Vec<SpecId> {
    let mut ids = Vec::new();
    for (hash, rec) in index.records() {
        if !rec.in_buildcache {
            continue;
        }
        match SpecNode::from_raw(rec.spec.clone()) {
            Ok(node) if node.hash == hash => {
                let id = SpecId {
                    name: node.name,
                    version: node.version,
                    hash: node.hash,
                };
                // The id becomes an object key: refuse names that would escape the layout.
                match SpecId::from_manifest_key(&id.manifest_key()) {
                    Ok(back) if back == id => ids.push(id),
                    _ => problems.push(format!(
                        "the index names a spec {:?}@{:?} whose manifest key would be malformed",
                        id.name, id.version
                    )),
                }
            }
            Ok(node) => problems.push(format!(
                "the index record {hash} describes a spec with hash {}",
                node.hash
            )),
            Err(e) => problems.push(format!("the index record {hash} is malformed: {e:#}")),
        }
    }
    ids
}

/// Checks the key index and each key manifest and blob it names.
async fn verify_keys(
    storage: &dyn Storage,
    trusted: &TrustedKeys,
    notes: &mut Vec<String>,
) -> Result<Vec<KeyVerdict>> {
    let Some(obj) = storage.get(layout::KEY_INDEX_MANIFEST).await? else {
        notes.push(format!(
            "no key index ({}); keys are trusted from --trusted-key/--trusted-fingerprint only anyway",
            layout::KEY_INDEX_MANIFEST
        ));
        return Ok(Vec::new());
    };
    let fail = |p: String| {
        Ok(vec![KeyVerdict {
            fingerprint: "(key index)".into(),
            trusted: false,
            problem: Some(p),
        }])
    };
    let m = match read_unsigned_manifest(&obj.bytes, layout::KEY_INDEX_MANIFEST) {
        Ok(m) => m,
        Err(e) => return fail(e.to_string()),
    };
    let Some(rec) = m.data.first() else {
        return fail(format!("{} lists no blob", layout::KEY_INDEX_MANIFEST));
    };
    let blob = match blob_bytes(storage, rec, layout::KEY_INDEX_MANIFEST).await? {
        Ok(b) => b,
        Err(p) => return fail(p),
    };
    let index = match KeyIndex::parse(&blob) {
        Ok(i) => i,
        Err(e) => return fail(format!("{e:#}")),
    };
    let trusted_fprs: BTreeSet<String> = trusted
        .fingerprints()
        .iter()
        .map(|f| f.to_string())
        .collect();
    let mut out = Vec::new();
    for fpr in index.keys {
        let mut v = KeyVerdict {
            trusted: trusted_fprs.contains(&fpr),
            fingerprint: fpr.clone(),
            problem: None,
        };
        match fpr.parse::<KeyFingerprint>() {
            Ok(parsed) if parsed.as_str() == fpr => {
                let mkey = layout::key_manifest_key(&parsed);
                v.problem = match storage.get(&mkey).await? {
                    None => Some(format!("the key index names it but {mkey} is missing")),
                    Some(o) => match read_unsigned_manifest(&o.bytes, &mkey) {
                        Err(e) => Some(e.to_string()),
                        Ok(km) => match km.blob(layout::KEY_MEDIA_TYPE) {
                            None => Some(format!("{mkey} lists no public key blob")),
                            Some(rec) => blob_bytes(storage, rec, &mkey).await?.err(),
                        },
                    },
                };
            }
            _ => v.problem = Some(format!("{fpr:?} is not an upper-case OpenPGP fingerprint")),
        }
        out.push(v);
    }
    Ok(out)
}

/// The bytes of the blob `rec` names (from manifest `mkey`), size-checked before reading and
/// digest-checked after; `Ok(Err(..))` says what is wrong with it.
async fn blob_bytes(
    storage: &dyn Storage,
    rec: &super::BlobRecord,
    mkey: &str,
) -> Result<std::result::Result<Vec<u8>, String>> {
    const MAX: u64 = 256 << 20;
    let sha = match rec.sha256() {
        Ok(s) => s,
        Err(e) => return Ok(Err(format!("manifest {mkey}: {e:#}"))),
    };
    let key = layout::blob_key(&sha);
    let Some(meta) = storage.head(&key).await? else {
        return Ok(Err(format!("blob {key} (named by {mkey}) is missing")));
    };
    if meta.size != rec.content_length || meta.size > MAX {
        return Ok(Err(format!(
            "blob {key} is {} bytes, manifest {mkey} says {}",
            meta.size, rec.content_length
        )));
    }
    let Some(obj) = storage.get(&key).await? else {
        return Ok(Err(format!("blob {key} (named by {mkey}) is missing")));
    };
    if obj.bytes.len() as u64 != rec.content_length || Sha256Hex::of(&obj.bytes) != sha {
        return Ok(Err(format!(
            "blob {key} does not match its record in manifest {mkey}"
        )));
    }
    Ok(Ok(obj.bytes))
}

/// Verifies the buildcache in `storage` against `trusted`, walking from its index (see the
/// module documentation). Failures are reported per spec, not returned as errors; an `Err`
/// means the buildcache could not be read at all.
pub(crate) async fn verify_buildcache(
    storage: &dyn Storage,
    trusted: &TrustedKeys,
    opts: &VerifyOptions,
) -> Result<VerifyReport> {
    let url = storage.url();
    let mut index_problems = Vec::new();
    let mut notes = Vec::new();
    let ids = match read_index(storage).await {
        Ok(Some((index, _))) => indexed_specs(&index, &mut index_problems),
        Ok(None) => {
            index_problems.push(format!(
                "no index ({}); `spack install --cache-only` will not find the specs",
                layout::INDEX_MANIFEST
            ));
            Vec::new()
        }
        Err(e) => {
            index_problems.push(format!("{e:#}"));
            Vec::new()
        }
    };
    let mut specs = Vec::new();
    let mut named = BTreeSet::new();
    for id in &ids {
        named.insert(id.manifest_key());
        let v = SpecVerdict::of(verify_spec(storage, trusted, id, opts).await);
        specs.push(v);
    }
    // Stores that can list: also check the manifests the index does not name.
    let listed = if storage.can_list() {
        storage.list(layout::SPEC_PREFIX).await
    } else {
        Err(anyhow::anyhow!(
            "{url} cannot be listed (HTTP), so manifests the index does not name are not seen"
        ))
    };
    match listed {
        Ok(listed) => {
            for key in listed
                .into_iter()
                .map(|m| m.key)
                .filter(|k| k.ends_with(layout::SPEC_SUFFIX) && !named.contains(k))
            {
                let v = match SpecId::from_manifest_key(&key) {
                    Ok(id) => SpecVerdict::of(verify_spec(storage, trusted, &id, opts).await),
                    Err(e) => SpecVerdict {
                        id: None,
                        key: key.clone(),
                        signer: None,
                        blobs_ok: 0,
                        problems: vec![format!("{e:#}")],
                    },
                };
                index_problems.push(format!(
                    "spec {} has a manifest but the index does not list it (run sign-and-upload again or `spack buildcache update-index`)",
                    v.name()
                ));
                specs.push(v);
            }
        }
        Err(e) => notes.push(format!(
            "only the specs the index names were checked ({:#})",
            e
        )),
    }
    let keys = verify_keys(storage, trusted, &mut notes)
        .await
        .with_context(|| format!("cannot read the key index of {url}"))?;
    Ok(VerifyReport {
        url,
        specs,
        index_problems,
        keys,
        notes,
    })
}
