//! Pinned key trust: a consumer trusts only keys it was given out of band, never what a mirror
//! publishes.
//!
//! Trust comes from two places: public key files (`--trusted-key`), trusted as given, and
//! fingerprints (`--trusted-fingerprint`, a catalog entry). A pinned fingerprint may be
//! resolved against the key a buildcache publishes (`v3/manifests/key/<FPR>.key.manifest.json`
//! and its blob), but only the certificate whose primary fingerprint is exactly the pinned one
//! is taken from it: any other key in the blob, and any key the cache publishes that was not
//! pinned, is never trusted.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sequoia_openpgp::cert::CertParser;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::serialize::SerializeInto;

use super::layout::{self, Sha256Hex};
use super::signed::read_unsigned_manifest;
use super::storage::Storage;
use crate::pgp::{KeyFingerprint, TrustedKeys};

/// A published public key blob larger than this is refused (real keys are a few KiB).
pub(crate) const MAX_KEY_BLOB_BYTES: u64 = 1 << 20;

/// Keys pinned out of band: public key files, trusted as given, and fingerprints, resolved
/// against the keys a cache publishes (a published key is taken only under exactly a pinned
/// fingerprint). What a mirror publishes is never trusted on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    /// Public key files, trusted as given.
    pub key_files: Vec<PathBuf>,
    /// Pinned fingerprints.
    pub fingerprints: Vec<KeyFingerprint>,
}

impl Pins {
    /// Nothing is pinned.
    pub fn is_empty(&self) -> bool {
        self.key_files.is_empty() && self.fingerprints.is_empty()
    }

    /// The keys the key files give, and the pinned fingerprints they do not cover (those
    /// must be resolved against what a mirror publishes).
    pub fn given_by_files(&self) -> Result<(TrustedKeys, Vec<KeyFingerprint>)> {
        let mut trusted = TrustedKeys::new();
        load_key_files(&mut trusted, &self.key_files)?;
        let rest = self
            .fingerprints
            .iter()
            .filter(|f| !trusted.contains(f))
            .cloned()
            .collect();
        Ok((trusted, rest))
    }

    /// The trust set, the one way pins become trusted keys: every key file, plus, for each
    /// pinned fingerprint no file gives, the certificate `fetch` returns for it (armored; the
    /// fetcher takes only the certificate with exactly that fingerprint from what a mirror
    /// publishes, e.g. [`published_key`] for a buildcache).
    pub async fn trusted_keys<F, Fut>(&self, fetch: F) -> Result<TrustedKeys>
    where
        F: Fn(KeyFingerprint) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<u8>>>,
    {
        let (mut trusted, rest) = self.given_by_files()?;
        for fpr in rest {
            let armored = fetch(fpr.clone()).await?;
            let got = trusted.add_armored(&armored)?;
            if !got.contains(&fpr) {
                bail!("the key resolved for the pinned {fpr} is another key; it is not trusted");
            }
        }
        Ok(trusted)
    }

    /// The trust set against a buildcache: [`Pins::trusted_keys`] with each pinned key as
    /// `storage` publishes it ([`published_key`]).
    pub async fn resolve(&self, storage: &dyn Storage) -> Result<TrustedKeys> {
        self.trusted_keys(|f| async move { published_key(storage, &f).await })
            .await
    }
}

/// Reads the public key files in `paths` into a trust set (every certificate in each file).
pub(crate) fn load_key_files(
    trusted: &mut TrustedKeys,
    paths: &[PathBuf],
) -> Result<Vec<KeyFingerprint>> {
    let mut all = Vec::new();
    for p in paths {
        all.extend(load_key_file(trusted, p)?);
    }
    Ok(all)
}

fn load_key_file(trusted: &mut TrustedKeys, path: &Path) -> Result<Vec<KeyFingerprint>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read trusted key file {}", path.display()))?;
    trusted.add_armored(&bytes).with_context(|| {
        format!(
            "the trusted key file {} is not an OpenPGP public key (export one with gpg --armor --export <FPR>)",
            path.display()
        )
    })
}

/// Fetches the key `storage` publishes for the pinned `fpr` and returns that certificate
/// only. Fails when the cache publishes no such key, when its blob does not match its
/// manifest, or when the published blob does not hold a certificate with exactly this
/// fingerprint.
pub(crate) async fn published_key(storage: &dyn Storage, fpr: &KeyFingerprint) -> Result<Vec<u8>> {
    let url = storage.url();
    let mkey = layout::key_manifest_key(fpr);
    let Some(obj) = storage
        .get(&mkey)
        .await
        .with_context(|| format!("cannot read {mkey} from {url}"))?
    else {
        bail!(
            "{url} publishes no key {fpr} ({mkey} is missing); get the public key out of band and pass it with --trusted-key <file>"
        );
    };
    let manifest = read_unsigned_manifest(&obj.bytes, &mkey)?;
    let rec = manifest.blob(layout::KEY_MEDIA_TYPE).with_context(|| {
        format!(
            "manifest {mkey} of {url} lists no {} blob",
            layout::KEY_MEDIA_TYPE
        )
    })?;
    if rec.content_length > MAX_KEY_BLOB_BYTES {
        bail!(
            "manifest {mkey} of {url} names a {}-byte key blob; a public key is a few KiB, so it is refused",
            rec.content_length
        );
    }
    let sha = rec.sha256().with_context(|| format!("manifest {mkey}"))?;
    let bkey = layout::blob_key(&sha);
    let blob = storage
        .get(&bkey)
        .await?
        .with_context(|| format!("{url}: key blob {bkey} (named by {mkey}) is missing"))?
        .bytes;
    if blob.len() as u64 != rec.content_length || Sha256Hex::of(&blob) != sha {
        bail!("{url}: key blob {bkey} does not match its manifest {mkey} (size or sha256)");
    }
    pinned_cert(&blob, fpr, &format!("{url} publishes under {mkey}"))
}

/// From published key material `bytes` (described by `what`, e.g. "https://…/x.asc"), the
/// one certificate whose primary fingerprint is exactly the pinned `fpr`, ASCII-armored,
/// public parts only. Every other certificate in `bytes` is ignored; none matching is an
/// error. The one rule for resolving a pin against what a mirror publishes.
pub(crate) fn pinned_cert(bytes: &[u8], fpr: &KeyFingerprint, what: &str) -> Result<Vec<u8>> {
    if bytes.len() as u64 > MAX_KEY_BLOB_BYTES {
        bail!(
            "the key {what} has {} bytes; a public key is a few KiB, so it is refused",
            bytes.len()
        );
    }
    let mut found = Vec::new();
    for cert in CertParser::from_bytes(bytes)
        .with_context(|| format!("the key {what} is not an OpenPGP key"))?
    {
        let cert = cert.with_context(|| format!("the key {what} is malformed"))?;
        let got = KeyFingerprint::of_cert(&cert);
        if got == *fpr {
            return cert
                .strip_secret_key_material()
                .armored()
                .to_vec()
                .context("cannot armor the published key");
        }
        found.push(got.to_string());
    }
    bail!(
        "the key {what} is {}, not the pinned {fpr}; it is not trusted (a mirror cannot choose which key you trust)",
        if found.is_empty() {
            "empty".to_owned()
        } else {
            found.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buildcache::LocalDir;

    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spack-v3");
    const FPR: &str = "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD";

    #[tokio::test]
    async fn pinned_fingerprint_resolves_only_the_pinned_key() {
        let cache = LocalDir::new(format!("{FIX}/signed"));
        let fpr: KeyFingerprint = FPR.to_lowercase().parse().unwrap();
        let pins = |fingerprints: Vec<KeyFingerprint>| Pins {
            key_files: Vec::new(),
            fingerprints,
        };
        let t = pins(vec![fpr.clone()]).resolve(&cache).await.unwrap();
        assert_eq!(t.fingerprints(), vec![fpr]);
        // A fingerprint the cache does not publish is an error, not an empty trust set.
        let other: KeyFingerprint = "0123456789ABCDEF0123456789ABCDEF01234567".parse().unwrap();
        let e = pins(vec![other]).resolve(&cache).await.unwrap_err();
        assert!(
            format!("{e:#}").contains("publishes no key 0123456789ABCDEF"),
            "{e:#}"
        );
        // Nothing pinned, nothing trusted, whatever the cache publishes.
        assert!(pins(vec![]).resolve(&cache).await.unwrap().is_empty());
        assert!("E145321FBC9F04BD".parse::<KeyFingerprint>().is_err());
    }
}
