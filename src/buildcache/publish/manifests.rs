//! Step 4: the spec manifests to publish, signed where they need it (the verified text, never
//! unverified bytes), in parallel.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};

use super::source::SourceSpec;
use crate::pgp::{SigningKey, TrustedKeys};

/// The manifest text to sign: the manifest bytes, minus a final line break (a cleartext
/// signature cannot carry one; Spack writes none).
pub(super) fn text_to_sign(text: &[u8]) -> &[u8] {
    text.strip_suffix(b"\n").unwrap_or(text)
}

/// The bytes of each selected spec's manifest, in order, and which of them are the
/// destination's own (already signed by `key` over the same text: a new signature would differ
/// only in its time, so they are kept and a re-run writes nothing). Without a key, manifests
/// are published as the source holds them (signed ones were verified when read).
pub(super) fn sign_manifests(
    key: Option<&SigningKey>,
    selected: &[SourceSpec],
    mut existing: BTreeMap<usize, Vec<u8>>,
) -> Result<(Vec<Vec<u8>>, BTreeSet<usize>)> {
    let Some(key) = key else {
        let stored = selected.iter().map(|s| s.entry.stored.clone()).collect();
        return Ok((stored, BTreeSet::new()));
    };
    let fpr = key.fingerprint();
    let mut ours_only = TrustedKeys::new();
    ours_only.add_cert(key.public_cert().clone());
    let mut bytes: Vec<Option<Vec<u8>>> = Vec::with_capacity(selected.len());
    let mut kept_remote = BTreeSet::new();
    let mut to_sign = Vec::new();
    for (i, s) in selected.iter().enumerate() {
        let text = text_to_sign(&s.entry.text);
        if s.signer.as_ref() == Some(&fpr) {
            // Already signed by this key over this (verified) text.
            bytes.push(Some(s.entry.stored.clone()));
            continue;
        }
        match existing.remove(&i) {
            Some(theirs)
                if ours_only
                    .verify_cleartext(&theirs)
                    .is_ok_and(|v| v.signer == fpr && v.text == text) =>
            {
                bytes.push(Some(theirs));
                kept_remote.insert(i);
            }
            _ => {
                bytes.push(None);
                to_sign.push(i);
            }
        }
    }
    let texts: Vec<(&str, &[u8])> = to_sign
        .iter()
        .map(|&i| {
            let e = &selected[i].entry;
            (e.key.as_str(), text_to_sign(&e.text))
        })
        .collect();
    let signed =
        crate::buildcache::sign::sign_all(key, &texts).context("cannot sign the spec manifests")?;
    for (i, b) in to_sign.into_iter().zip(signed) {
        bytes[i] = Some(b);
    }
    Ok((
        bytes.into_iter().map(Option::unwrap_or_default).collect(),
        kept_remote,
    ))
}
