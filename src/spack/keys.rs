//! Which keys a Slurm build trusts: only keys pinned out of band (the catalog's
//! `publish.signing_fingerprints`, `--trusted-fingerprint`, `--trusted-key` files), never what
//! a mirror publishes. The host resolves them before the build (a pinned fingerprint is looked
//! up in the compiler buildcache, over file://, s3:// or https://, and taken only if the
//! published key has exactly that fingerprint) and writes them to the environment directory,
//! where the `trust-keys` step runs `spack gpg trust` on them.

use anyhow::{Context, Result, bail};

use crate::buildcache::storage::{self, Location, OpenOptions};
use crate::buildcache::trust::{Pins, load_key_files};
use crate::catalog::Catalog;
use crate::gha::Runner;
use crate::pgp::TrustedKeys;

/// The pins of a Slurm build: `given` (flags or inputs), its fingerprints defaulting to the
/// catalog's. Refuses when nothing is pinned: a Slurm build installs its toolchain from a
/// signed compiler buildcache and must know which key signs it.
pub fn for_slurm_build(mut given: Pins, catalog: &Catalog) -> Result<Pins> {
    if given.fingerprints.is_empty() {
        given.fingerprints = catalog.signing_fingerprints();
    }
    if given.is_empty() {
        bail!(
            "no signing key is pinned for the compiler buildcache: a Slurm build installs its toolchain from a signed cache and trusts only pinned keys. Pass --trusted-fingerprint <40-hex FPR> (input trusted_fingerprints) or --trusted-key <public key file> (input trusted_keys), or add the fingerprint to publish.signing_fingerprints in the catalog"
        );
    }
    Ok(given)
}

/// The armored keyring to trust: the key files, plus each pinned fingerprint's key as the
/// compiler buildcache at `mirror` publishes it (only under exactly that fingerprint). The
/// mirror is opened (through [`storage::open`]) only when a pin is not covered by the files.
pub async fn keyring(
    pins: &Pins,
    mirror: &str,
    open: &OpenOptions,
    runner: &Runner,
) -> Result<Vec<u8>> {
    let mut given = TrustedKeys::new();
    load_key_files(&mut given, &pins.key_files)?;
    if pins.fingerprints.iter().all(|f| given.contains(f)) {
        return given.armored();
    }
    let location = Location::parse(mirror)?;
    let cache = storage::open(&location, open, runner)
        .await
        .with_context(|| format!("cannot open the compiler buildcache {mirror}"))?;
    let trusted = pins.resolve(cache.as_ref()).await?;
    for f in &pins.fingerprints {
        if !trusted.contains(f) {
            bail!("the pinned key {f} was not found in {mirror}");
        }
    }
    trusted.armored()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgp::KeyFingerprint;

    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spack-v3");
    const FPR: &str = "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD";

    fn runner() -> Runner {
        Runner::from_vars([("NO_COLOR", "1")]).with_sink(Box::new(std::io::sink()))
    }

    #[test]
    fn a_build_without_any_pin_is_refused() {
        let catalog = Catalog::embedded();
        if !catalog.signing_fingerprints().is_empty() {
            return; // the catalog pins a key: there is always a pin
        }
        let e = for_slurm_build(Pins::default(), &catalog).unwrap_err();
        assert!(e.to_string().contains("--trusted-fingerprint"), "{e}");
        let fpr: KeyFingerprint = FPR.parse().unwrap();
        let p = for_slurm_build(
            Pins {
                key_files: vec![],
                fingerprints: vec![fpr.clone()],
            },
            &catalog,
        )
        .unwrap();
        assert_eq!(p.fingerprints, vec![fpr]);
    }

    #[tokio::test]
    async fn a_pin_resolves_from_a_file_mirror_and_a_missing_pin_is_named() {
        let fpr: KeyFingerprint = FPR.parse().unwrap();
        let pins = Pins {
            key_files: vec![],
            fingerprints: vec![fpr.clone()],
        };
        let mirror = format!("file://{FIX}/signed");
        let ring = keyring(&pins, &mirror, &OpenOptions::default(), &runner())
            .await
            .unwrap();
        let mut t = TrustedKeys::new();
        assert_eq!(t.add_armored(&ring).unwrap(), vec![fpr]);

        let other: KeyFingerprint = "0123456789ABCDEF0123456789ABCDEF01234567".parse().unwrap();
        let pins = Pins {
            key_files: vec![],
            fingerprints: vec![other],
        };
        let e = keyring(&pins, &mirror, &OpenOptions::default(), &runner())
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("0123456789ABCDEF"), "{e:#}");
    }

    #[tokio::test]
    async fn a_pin_covered_by_a_key_file_does_not_open_the_mirror() {
        let pins = Pins {
            key_files: vec![format!("{FIX}/keys/demo-signer.pub.asc").into()],
            fingerprints: vec![FPR.parse().unwrap()],
        };
        // Nothing listens on port 1: opening the mirror would fail.
        let ring = keyring(
            &pins,
            "https://127.0.0.1:1/bc",
            &OpenOptions::default(),
            &runner(),
        )
        .await
        .unwrap();
        assert!(!ring.is_empty());
    }
}
