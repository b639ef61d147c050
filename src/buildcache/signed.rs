//! The only reader of buildcache manifests.
//!
//! A signed manifest is parsed from the text the signature verification returns
//! ([`crate::pgp::Verified::text`]) and from nothing else: there is no second, hand-written
//! reading of clearsigned text that could disagree with the signature (CRLF, whitespace-only
//! armor lines, trailing data). [`read_manifest`] verifies; [`read_unsigned_manifest`] reads
//! the manifests Spack never signs (index, key index, key manifests, unsigned sources) and
//! refuses any OpenPGP armor instead of stripping it.
//!
//! Every error names the manifest's key.

use std::time::SystemTime;

use super::layout::Manifest;
use crate::pgp::{KeyFingerprint, TrustedKeys, VerifyError, contains_armor};

/// A manifest whose signature verified against a trusted key.
#[derive(Debug, Clone)]
pub struct SignedManifest {
    /// The manifest's key.
    pub key: String,
    /// The signer's certificate (primary key) fingerprint.
    pub signer: KeyFingerprint,
    /// The (sub)key that made the signature.
    pub signing_key: KeyFingerprint,
    /// The signed text, exactly as the signature covers it.
    pub text: Vec<u8>,
    /// The manifest parsed from `text`.
    pub manifest: Manifest,
}

/// What is wrong with a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestProblem {
    /// The signature (or the file around it) did not verify.
    #[error("{0}")]
    Signature(#[from] VerifyError),
    /// An OpenPGP-signed file where an unsigned manifest belongs.
    #[error(
        "holds OpenPGP armor, but this manifest is read unsigned; a signed file is only read through signature verification against a trusted key"
    )]
    UnexpectedSignature,
    /// The (verified or unsigned) text is not a layout-v3 manifest.
    #[error("{0}")]
    Invalid(String),
}

/// A manifest that was refused, with its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest {key}: {problem}")]
pub struct ManifestError {
    /// The manifest's key.
    pub key: String,
    /// Why.
    pub problem: ManifestProblem,
}

impl ManifestError {
    fn new(key: &str, problem: impl Into<ManifestProblem>) -> Self {
        ManifestError {
            key: key.to_owned(),
            problem: problem.into(),
        }
    }

    /// The signature problem, when that is why.
    pub fn verify_error(&self) -> Option<&VerifyError> {
        match &self.problem {
            ManifestProblem::Signature(e) => Some(e),
            _ => None,
        }
    }
}

fn parse(key: &str, text: &[u8]) -> Result<Manifest, ManifestError> {
    Manifest::from_json(text)
        .map_err(|e| ManifestError::new(key, ManifestProblem::Invalid(format!("{e:#}"))))
}

/// Verifies the clearsigned manifest `stored` (the bytes at `key`) against `trusted` and
/// parses the manifest from the verified text only.
pub fn read_manifest(
    stored: &[u8],
    key: &str,
    trusted: &TrustedKeys,
) -> Result<SignedManifest, ManifestError> {
    read_manifest_at(stored, key, trusted, None)
}

/// [`read_manifest`] with key validity judged at `now` (default: the system time).
pub fn read_manifest_at(
    stored: &[u8],
    key: &str,
    trusted: &TrustedKeys,
    now: Option<SystemTime>,
) -> Result<SignedManifest, ManifestError> {
    let v = trusted
        .verify_cleartext_at(stored, now)
        .map_err(|e| ManifestError::new(key, e))?;
    let manifest = parse(key, &v.text)?;
    Ok(SignedManifest {
        key: key.to_owned(),
        signer: v.signer,
        signing_key: v.signing_key,
        text: v.text,
        manifest,
    })
}

/// Reads a manifest that is not signed (index, key index, key manifests, or an unsigned
/// source). Refuses a file holding OpenPGP armor: a clearsigned manifest is never read
/// without verifying it ([`read_manifest`]).
pub fn read_unsigned_manifest(stored: &[u8], key: &str) -> Result<Manifest, ManifestError> {
    if contains_armor(stored) {
        return Err(ManifestError::new(
            key,
            ManifestProblem::UnexpectedSignature,
        ));
    }
    parse(key, stored)
}

/// A spec manifest read under a trust policy: verified when signed, accepted unsigned only
/// when `allow_unsigned`.
#[derive(Debug, Clone)]
pub struct ReadManifest {
    /// The signer, when it was signed (and verified).
    pub signer: Option<KeyFingerprint>,
    /// The manifest text that was parsed (the verified text when signed).
    pub text: Vec<u8>,
    /// The manifest.
    pub manifest: Manifest,
}

/// Reads a spec manifest: a signed one must verify against `trusted`; an unsigned one is
/// refused ([`VerifyError::Unsigned`]) unless `allow_unsigned`.
pub fn read_spec_manifest(
    stored: &[u8],
    key: &str,
    trusted: &TrustedKeys,
    allow_unsigned: bool,
) -> Result<ReadManifest, ManifestError> {
    if allow_unsigned && !contains_armor(stored) {
        let manifest = read_unsigned_manifest(stored, key)?;
        return Ok(ReadManifest {
            signer: None,
            text: stored.to_vec(),
            manifest,
        });
    }
    let m = read_manifest(stored, key, trusted)?;
    Ok(ReadManifest {
        signer: Some(m.signer),
        text: m.text,
        manifest: m.manifest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spack-v3");
    const LIB: &str = "v3/manifests/spec/demo-lib/demo-lib-1.0-or7dti47ajgrd2y5bgs2dujuath2dz3p.spec.manifest.json";

    fn trusted() -> TrustedKeys {
        let mut t = TrustedKeys::new();
        t.add_armored(&std::fs::read(format!("{FIX}/keys/demo-signer.pub.asc")).unwrap())
            .unwrap();
        t
    }

    #[test]
    fn spack_signed_manifest_reads_from_the_verified_text() {
        let stored = std::fs::read(format!("{FIX}/signed/{LIB}")).unwrap();
        let unsigned = std::fs::read(format!("{FIX}/unsigned/{LIB}")).unwrap();
        let m = read_manifest(&stored, LIB, &trusted()).unwrap();
        assert_eq!(
            m.signer.as_str(),
            "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD"
        );
        assert_eq!(m.text, unsigned);
        assert_eq!(m.manifest, Manifest::from_json(&unsigned).unwrap());

        let e = read_unsigned_manifest(&stored, LIB).unwrap_err();
        assert_eq!(e.problem, ManifestProblem::UnexpectedSignature);
        assert!(
            e.to_string().starts_with(&format!("manifest {LIB}: ")),
            "{e}"
        );
        let e = read_manifest(&unsigned, LIB, &trusted()).unwrap_err();
        assert_eq!(e.verify_error(), Some(&VerifyError::Unsigned));
        assert!(read_spec_manifest(&unsigned, LIB, &trusted(), true).is_ok());
        assert_eq!(
            read_spec_manifest(&stored, LIB, &TrustedKeys::new(), true)
                .unwrap_err()
                .verify_error()
                .map(|e| matches!(e, VerifyError::UnknownSigner(_))),
            Some(true)
        );
    }
}
