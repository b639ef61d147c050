//! Which keys a Slurm build trusts, and so where its toolchain comes from
//! ([`choose_toolchain`]): only keys pinned out of band (the catalog's
//! `publish.signing_fingerprints`, `--trusted-fingerprint`, `--trusted-key` files), never what
//! a mirror publishes. The host resolves them before the build (a pinned fingerprint is looked
//! up in the compiler buildcache, over file://, s3:// or https://, and taken only if the
//! published key has exactly that fingerprint) and writes them to the environment directory,
//! where the `trust-keys` step runs `spack gpg trust` on them.

use anyhow::{Context, Result, bail};

use crate::buildcache::storage::{self, Location, OpenOptions};
use crate::buildcache::trust::Pins;
use crate::catalog::Catalog;
use crate::gha::Runner;
use crate::spack::Toolchain;

/// `--toolchain`: where a Slurm build's GCC toolchain comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ToolchainMode {
    /// The compiler buildcache when a key is pinned, else from source.
    Auto,
    /// The compiler buildcache; refused without a pinned key.
    Buildcache,
    /// From source; the compiler buildcache is never read.
    Source,
}

impl std::str::FromStr for ToolchainMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "auto" => Ok(ToolchainMode::Auto),
            "buildcache" => Ok(ToolchainMode::Buildcache),
            "source" => Ok(ToolchainMode::Source),
            other => {
                bail!("--toolchain (input toolchain) is {other:?}: use auto, buildcache or source")
            }
        }
    }
}

/// The pins of a Slurm build: `given` (flags or inputs) plus the catalog's
/// `publish.signing_fingerprints` (catalog pins always apply).
pub(crate) fn with_catalog_pins(mut given: Pins, catalog: &Catalog) -> Pins {
    for f in catalog.signing_fingerprints() {
        if !given.fingerprints.contains(&f) {
            given.fingerprints.push(f);
        }
    }
    given
}

/// Where the toolchain of a Slurm build with `pins` comes from, and the pins it then trusts:
/// `auto` takes the compiler buildcache when anything is pinned and otherwise builds from
/// source; `buildcache` without a pin is refused; `source` trusts (and reads) nothing.
pub(crate) fn choose_toolchain(
    mode: ToolchainMode,
    pins: Pins,
) -> Result<(Toolchain, Option<Pins>)> {
    match mode {
        ToolchainMode::Source => Ok((Toolchain::Source, None)),
        ToolchainMode::Auto if pins.is_empty() => Ok((Toolchain::Source, None)),
        ToolchainMode::Auto => Ok((Toolchain::Buildcache, Some(pins))),
        ToolchainMode::Buildcache if pins.is_empty() => bail!(
            "no signing key is pinned for the compiler buildcache: --toolchain buildcache installs the toolchain from a signed cache and trusts only pinned keys. Pass --trusted-fingerprint <40-hex FPR> (input trusted_fingerprints) or --trusted-key <public key file> (input trusted_keys), add the fingerprint to publish.signing_fingerprints in the catalog, or use --toolchain auto or source to build GCC from source (about an hour more)"
        ),
        ToolchainMode::Buildcache => Ok((Toolchain::Buildcache, Some(pins))),
    }
}

/// The armored keyring to trust: the key files, plus each pinned fingerprint's key as the
/// compiler buildcache at `mirror` publishes it (only under exactly that fingerprint). The
/// mirror is opened (through [`storage::open`]) only when a pin is not covered by the files.
pub(crate) async fn keyring(
    pins: &Pins,
    mirror: &str,
    open: &OpenOptions,
    runner: &Runner,
) -> Result<Vec<u8>> {
    let (given, rest) = pins.given_by_files()?;
    if rest.is_empty() {
        return given.armored();
    }
    let location = Location::parse(mirror)?;
    let cache = storage::open(&location, open, runner)
        .await
        .with_context(|| format!("cannot open the compiler buildcache {mirror}"))?;
    let trusted = pins.resolve(cache.as_ref()).await?;
    trusted.armored()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgp::{KeyFingerprint, TrustedKeys};

    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spack-v3");
    const FPR: &str = "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD";

    fn runner() -> Runner {
        Runner::from_vars([("NO_COLOR", "1")]).with_sink(Box::new(std::io::sink()))
    }

    #[test]
    fn the_toolchain_follows_the_pins() {
        let catalog = Catalog::embedded();
        let fpr: KeyFingerprint = FPR.parse().unwrap();
        let pinned = Pins {
            key_files: vec![],
            fingerprints: vec![fpr.clone()],
        };
        let with = with_catalog_pins(pinned.clone(), &catalog);
        assert!(with.fingerprints.contains(&fpr));
        let (t, p) = choose_toolchain(ToolchainMode::Auto, with.clone()).unwrap();
        assert_eq!((t, p), (Toolchain::Buildcache, Some(with.clone())));
        let (t, p) = choose_toolchain(ToolchainMode::Source, with.clone()).unwrap();
        assert_eq!((t, p), (Toolchain::Source, None));
        let (t, _) = choose_toolchain(ToolchainMode::Buildcache, with).unwrap();
        assert_eq!(t, Toolchain::Buildcache);
        // Nothing pinned: auto builds from source, buildcache is refused with what to do.
        let none = with_catalog_pins(Pins::default(), &catalog);
        if none.is_empty() {
            let (t, p) = choose_toolchain(ToolchainMode::Auto, none.clone()).unwrap();
            assert_eq!((t, p), (Toolchain::Source, None));
            let e = choose_toolchain(ToolchainMode::Buildcache, none).unwrap_err();
            assert!(e.to_string().contains("--trusted-fingerprint"), "{e}");
            assert!(e.to_string().contains("--toolchain auto or source"), "{e}");
        }
        assert!("sideways".parse::<ToolchainMode>().is_err());
        assert_eq!(
            "source".parse::<ToolchainMode>().unwrap(),
            ToolchainMode::Source
        );
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
