//! Which keys a Slurm build trusts: only keys pinned out of band (the catalog's
//! `publish.signing_fingerprints`, `--trusted-fingerprint`, `--trusted-key` files), never what
//! a mirror publishes. The host resolves them before the build (a pinned fingerprint is looked
//! up in the compiler buildcache and taken only if the published key has exactly that
//! fingerprint) and writes them to the environment directory, where the `trust-keys` step runs
//! `spack gpg trust` on them.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::buildcache::storage::{LocalDir, Location};
use crate::buildcache::trust::pinned_keys;
use crate::catalog::Catalog;
use crate::pgp::KeyFingerprint;

/// The pinned trust of a Slurm build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedTrust {
    /// Public key files, trusted as given.
    pub key_files: Vec<PathBuf>,
    /// Pinned fingerprints, resolved against the compiler buildcache.
    pub fingerprints: Vec<KeyFingerprint>,
}

impl PinnedTrust {
    /// Key files and fingerprints from flags or inputs; without fingerprints, the catalog's.
    /// Refuses when nothing is pinned: a Slurm build installs its toolchain from a signed
    /// compiler buildcache and must know which key signs it.
    pub fn resolve(
        key_files: Vec<PathBuf>,
        fingerprints: &[String],
        catalog: &Catalog,
    ) -> Result<Self> {
        let mut fprs = fingerprints
            .iter()
            .map(|f| f.parse::<KeyFingerprint>())
            .collect::<Result<Vec<_>>>()?;
        if fprs.is_empty() {
            fprs = catalog.signing_fingerprints();
        }
        if fprs.is_empty() && key_files.is_empty() {
            bail!(
                "no signing key is pinned for the compiler buildcache: a Slurm build installs its toolchain from a signed cache and trusts only pinned keys. Pass --trusted-fingerprint <40-hex FPR> (input trusted_fingerprints) or --trusted-key <public key file> (input trusted_keys), or add the fingerprint to publish.signing_fingerprints in the catalog"
            );
        }
        Ok(PinnedTrust {
            key_files,
            fingerprints: fprs,
        })
    }

    /// The armored keyring to trust: the key files, plus each pinned fingerprint's key as the
    /// compiler buildcache at `mirror` publishes it (only under exactly that fingerprint).
    pub async fn keyring(&self, mirror: &str) -> Result<Vec<u8>> {
        let local = match Location::parse(mirror)? {
            Location::Local(p) => LocalDir::new(p),
            _ if self.fingerprints.is_empty() => LocalDir::new("/nonexistent"),
            other => {
                // Only pins not covered by the key files need the mirror.
                let mut given = crate::pgp::TrustedKeys::new();
                crate::buildcache::trust::load_key_files(&mut given, &self.key_files)?;
                if self.fingerprints.iter().all(|f| given.contains(f)) {
                    return given.armored();
                }
                bail!(
                    "the pinned key must be fetched from the compiler buildcache {}, but this build reads keys only from file:// mirrors; pass the public key with --trusted-key <file> (its fingerprint is still checked against the pin)",
                    other.url()
                );
            }
        };
        let trusted = pinned_keys(&local, &self.key_files, &self.fingerprints).await?;
        for f in &self.fingerprints {
            if !trusted.contains(f) {
                bail!("the pinned key {f} was not found");
            }
        }
        trusted.armored()
    }
}
