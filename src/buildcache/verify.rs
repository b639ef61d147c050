//! Verifying a published buildcache: every spec manifest's signature against trusted keys,
//! every blob's size and sha256, that each manifest describes the spec its key names, and that
//! the index is consistent. Used by `slurm-factory verify` and by `test-install`.

use std::collections::BTreeSet;

use anyhow::Result;

use super::layout::SpecId;
use super::{
    Storage, check_blob, read_index, read_spec_entry, read_spec_nodes, spec_manifest_keys,
};
use crate::pgp::{KeyFingerprint, TrustedKeys, VerifyError};

/// Options of [`verify_buildcache`].
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Accept unsigned spec manifests (blobs are still checked).
    pub allow_unsigned: bool,
}

/// The result for one spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecVerdict {
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
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
    /// The spec's display name (or its key).
    pub fn name(&self) -> String {
        self.id
            .as_ref()
            .map(|i| i.to_string())
            .unwrap_or_else(|| self.key.clone())
    }
}

/// The result of [`verify_buildcache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The buildcache URL.
    pub url: String,
    /// Per spec manifest, sorted by key.
    pub specs: Vec<SpecVerdict>,
    /// Problems with the index (missing, corrupt, or naming specs without manifests).
    pub index_problems: Vec<String>,
}

impl VerifyReport {
    /// Whether everything verified.
    pub fn ok(&self) -> bool {
        self.index_problems.is_empty()
            && self.specs.iter().all(SpecVerdict::ok)
            && !self.specs.is_empty()
    }

    /// Failed specs.
    pub fn failures(&self) -> impl Iterator<Item = &SpecVerdict> {
        self.specs.iter().filter(|s| !s.ok())
    }

    /// A Markdown table of the results.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "### Buildcache verification: {}\n\n`{}`\n\n| Spec | Signer | Blobs | Result |\n|---|---|---:|---|\n",
            if self.ok() { "passed" } else { "FAILED" },
            self.url
        );
        for v in &self.specs {
            s.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                v.name(),
                v.signer
                    .as_ref()
                    .map(|f| format!("`{f}`"))
                    .unwrap_or_else(|| "-".into()),
                v.blobs_ok,
                if v.ok() {
                    "ok".to_string()
                } else {
                    v.problems.join("; ").replace('|', "\\|")
                }
            ));
        }
        if self.specs.is_empty() {
            s.push_str("| (none) | - | 0 | no spec manifests found |\n");
        }
        for p in &self.index_problems {
            s.push_str(&format!("\nIndex: {p}\n"));
        }
        s
    }
}

/// Verifies every spec manifest and blob of the buildcache in `storage` against `trusted`.
/// Failures are reported per spec, not returned as errors; an `Err` means the buildcache
/// could not be read at all.
pub async fn verify_buildcache(
    storage: &dyn Storage,
    trusted: &TrustedKeys,
    opts: &VerifyOptions,
) -> Result<VerifyReport> {
    let mut specs = Vec::new();
    let mut present = BTreeSet::new();
    for key in spec_manifest_keys(storage).await? {
        let mut v = SpecVerdict {
            id: SpecId::from_manifest_key(&key).ok(),
            key: key.clone(),
            signer: None,
            blobs_ok: 0,
            problems: Vec::new(),
        };
        let entry = match read_spec_entry(storage, &key).await {
            Ok(e) => e,
            Err(e) => {
                v.problems.push(format!("{e:#}"));
                specs.push(v);
                continue;
            }
        };
        present.insert(entry.id.hash.clone());
        match trusted.verify_cleartext(&entry.stored) {
            Ok(ok) => v.signer = Some(ok.signer),
            Err(VerifyError::Unsigned) if opts.allow_unsigned => {}
            Err(e) => v.problems.push(format!("signature: {e}")),
        }
        for rec in &entry.manifest.data {
            match check_blob(storage, rec).await? {
                Ok(()) => v.blobs_ok += 1,
                Err(p) => v.problems.push(p.to_string()),
            }
        }
        if v.problems.is_empty()
            && let Err(e) = read_spec_nodes(storage, &entry).await
        {
            v.problems.push(format!("{e:#}"));
        }
        specs.push(v);
    }
    let mut index_problems = Vec::new();
    match read_index(storage).await {
        Ok(Some((index, _))) => {
            for h in index.in_buildcache() {
                if !present.contains(&h) {
                    index_problems.push(format!(
                        "the index lists {h} as in the buildcache, but it has no spec manifest"
                    ));
                }
            }
            let listed = index.in_buildcache();
            for h in &present {
                if !listed.contains(h) {
                    index_problems.push(format!(
                        "spec {h} has a manifest but the index does not list it (run sign-and-upload again or `spack buildcache update-index`)"
                    ));
                }
            }
        }
        Ok(None) => index_problems.push(
            "no index (v3/manifests/index/index.manifest.json); `spack install --cache-only` will not find the specs"
                .into(),
        ),
        Err(e) => index_problems.push(format!("{e:#}")),
    }
    Ok(VerifyReport {
        url: storage.url(),
        specs,
        index_problems,
    })
}
