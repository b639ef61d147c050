//! OpenPGP signing and verification on sequoia-openpgp (pure-Rust crypto backend), without gpg
//! and without an agent.
//!
//! - [`SigningKey`] loads a secret key from its ASCII armor (or base64 of the armor, as the
//!   upstream pipelines' key secret stores it), unlocks it with a passphrase, and selects the
//!   signing-capable (sub)key, optionally by key id or fingerprint. Secret material stays in
//!   memory (sequoia additionally keeps unlocked secrets encrypted in memory); nothing is
//!   written to disk and [`std::fmt::Debug`] shows only the public fingerprint.
//! - [`SigningKey::clearsign`] writes an OpenPGP v4 cleartext signature the way GnuPG does for
//!   `gpg --clearsign --digest-algo SHA512`: one `Hash: SHA512` armor header, dash-escaped text.
//!   Spack verifies these with plain `gpg --verify`.
//! - [`SigningKey::detached_sign`] writes an armored detached signature (`file.asc`) that
//!   `gpg --verify file.asc file` accepts.
//! - [`TrustedKeys`] verifies cleartext and detached signatures against a set of trusted
//!   certificates and returns the signer, or a [`VerifyError`] that says why not.

use std::io::{Read, Write};
use std::time::SystemTime;

use base64::Engine as _;
use openpgp::cert::prelude::*;
use openpgp::crypto::{KeyPair, Password, S2K};
use openpgp::packet::key::SecretKeyMaterial;
use openpgp::packet::signature::SignatureBuilder;
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationError, VerificationHelper,
    VerifierBuilder,
};
use openpgp::policy::StandardPolicy;
use openpgp::serialize::SerializeInto;
use openpgp::serialize::stream::{Armorer, Message, Signer};
use openpgp::types::{HashAlgorithm, RevocationStatus, SignatureType};
use openpgp::{Cert, Fingerprint, KeyHandle};
use sequoia_openpgp as openpgp;

/// The armor line that starts an OpenPGP cleartext-signed message.
pub const CLEARSIGN_HEADER: &str = "-----BEGIN PGP SIGNED MESSAGE-----";

/// GnuPG silently truncates cleartext lines longer than this many bytes (its `MAX_LINELEN`
/// minus the line ending). We refuse to sign such text rather than produce a signature that a
/// GnuPG verifier would compute over different bytes.
pub const GNUPG_MAX_LINE: usize = 19_995;

/// A public OpenPGP fingerprint, upper-case hex (40 digits for v4 keys).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyFingerprint(String);

impl KeyFingerprint {
    fn of(fpr: &Fingerprint) -> Self {
        KeyFingerprint(fpr.to_hex())
    }
    /// The fingerprint as upper-case hex without spaces.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<FPR>.pub.asc`: the name the signer's public key is published under beside a tarball,
    /// so a consumer holding only the fingerprint (what `--trusted-fingerprint` pins) finds it.
    pub fn public_key_file(&self) -> String {
        format!("{}.pub.asc", self.0)
    }
}

impl std::str::FromStr for KeyFingerprint {
    type Err = anyhow::Error;
    /// Parses a full fingerprint (40 hex digits for v4 keys, 64 for v6), upper or lower case,
    /// spaces allowed (as `gpg --fingerprint` prints it), an `0x` prefix allowed. Key ids are
    /// refused: only a full fingerprint pins a key. The one parser of a user-given fingerprint.
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let trimmed = s.trim();
        let clean: String = trimmed
            .strip_prefix("0x")
            .or_else(|| trimmed.strip_prefix("0X"))
            .unwrap_or(trimmed)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if !matches!(clean.len(), 40 | 64) || !clean.bytes().all(|b| b.is_ascii_hexdigit()) {
            anyhow::bail!(
                "{s:?} is not an OpenPGP fingerprint: give all 40 hex digits (gpg --fingerprint --with-colons <key>), not a key id or a name"
            );
        }
        Ok(KeyFingerprint(clean.to_ascii_uppercase()))
    }
}

impl KeyFingerprint {
    /// The fingerprint of a sequoia certificate.
    pub fn of_cert(cert: &Cert) -> Self {
        Self::of(&cert.fingerprint())
    }
}

impl std::fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a signing key could not be loaded. Messages never contain secret material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The input is empty.
    #[error("no signing key was given")]
    Missing,
    /// The input is neither OpenPGP data nor base64 of it.
    #[error(
        "the signing key is not an OpenPGP secret key: expected ASCII armor starting with '-----BEGIN PGP PRIVATE KEY BLOCK-----' or base64 of it ({0})"
    )]
    NotAKey(String),
    /// The input held several certificates and no key id chose one.
    #[error(
        "the key material holds {0} certificates ({1}); give the fingerprint of the one to sign with as the key id"
    )]
    Ambiguous(usize, String),
    /// Only public keys were given.
    #[error(
        "the key {0} has no secret key material: give the secret key (gpg --armor --export-secret-keys), not the public key"
    )]
    PublicOnly(KeyFingerprint),
    /// The requested key id is not in the key material.
    #[error("the key id {wanted} does not match the given key: it holds {available}")]
    KeyIdMismatch {
        /// What was asked for.
        wanted: String,
        /// The fingerprints present.
        available: String,
    },
    /// The key id is not a key id or fingerprint.
    #[error(
        "the key id {0:?} is not a key id or fingerprint: use the 16-hex-digit long key id or the 40-hex-digit fingerprint (gpg --list-secret-keys --keyid-format long)"
    )]
    BadKeyId(String),
    /// The certificate is expired.
    #[error(
        "the key {0} has expired ({1}); extend its expiry with `gpg --quick-set-expire` and export it again, or use another key"
    )]
    Expired(KeyFingerprint, String),
    /// The certificate is revoked.
    #[error("the key {0} is revoked; it must not sign anything. Use another key")]
    Revoked(KeyFingerprint),
    /// The certificate is not valid under the standard policy.
    #[error("the key {0} is not valid under the OpenPGP standard policy: {1}")]
    Invalid(KeyFingerprint, String),
    /// No alive, non-revoked signing-capable key with secret material.
    #[error(
        "the key {0} has no usable signing (sub)key with secret material{1}; add one with `gpg --quick-add-key <fpr> ed25519 sign` and export it"
    )]
    NoSigningKey(KeyFingerprint, String),
    /// The key is protected and no passphrase was given.
    #[error("the signing key {0} is passphrase-protected and no passphrase was given")]
    NeedPassphrase(KeyFingerprint),
    /// The passphrase does not unlock the key.
    #[error("wrong passphrase for the signing key {0}: the passphrase given does not unlock it")]
    WrongPassphrase(KeyFingerprint),
    /// Any other OpenPGP failure while preparing the key.
    #[error("cannot use the signing key: {0}")]
    Other(String),
}

/// A secret signing key, unlocked and ready to sign. Held in memory only.
pub struct SigningKey {
    public: Cert,
    keypair: KeyPair,
    signing_fpr: KeyFingerprint,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("fingerprint", &self.fingerprint())
            .field("signing_subkey", &self.signing_fpr)
            .finish_non_exhaustive()
    }
}

/// Decodes the key text: ASCII armor or binary OpenPGP as is; otherwise base64 of either.
fn decode_material(material: &[u8]) -> Result<Vec<u8>, KeyError> {
    let trimmed = material.trim_ascii();
    if trimmed.is_empty() {
        return Err(KeyError::Missing);
    }
    if trimmed.starts_with(b"-----BEGIN PGP") {
        return Ok(trimmed.to_vec());
    }
    // Binary OpenPGP packets have the high bit set in their first byte; base64 text never does.
    if trimmed[0] & 0x80 != 0 {
        return Ok(trimmed.to_vec());
    }
    let compact: Vec<u8> = trimmed
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    match base64::engine::general_purpose::STANDARD.decode(&compact) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        Ok(_) => Err(KeyError::Missing),
        Err(e) => Err(KeyError::NotAKey(format!("not base64 either: {e}"))),
    }
}

/// Parses a key id given by the user (`0x` prefix, spaces allowed) into a key handle.
fn parse_key_id(id: &str) -> Result<KeyHandle, KeyError> {
    let clean: String = id
        .trim()
        .trim_start_matches("0x")
        .trim_start_matches("0X")
        .trim_end_matches('!')
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let ok_len = matches!(clean.len(), 16 | 40 | 64);
    if !ok_len || !clean.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(KeyError::BadKeyId(id.to_owned()));
    }
    clean
        .parse::<KeyHandle>()
        .map_err(|_| KeyError::BadKeyId(id.to_owned()))
}

/// The certificate that holds the key `wanted` (`key_id` as the user gave it), or the only one.
fn choose_cert(
    certs: Vec<Cert>,
    wanted: Option<&KeyHandle>,
    key_id: Option<&str>,
) -> Result<Cert, KeyError> {
    let list = |certs: &[Cert]| {
        certs
            .iter()
            .map(|c| c.fingerprint().to_hex())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match wanted {
        Some(h) => certs
            .iter()
            .find(|c| c.keys().any(|k| k.key().key_handle().aliases(h)))
            .cloned()
            .ok_or_else(|| KeyError::KeyIdMismatch {
                wanted: key_id.unwrap_or_default().trim().to_owned(),
                available: list(&certs),
            }),
        None if certs.len() == 1 => Ok(certs.into_iter().next().expect("one certificate")),
        None => Err(KeyError::Ambiguous(certs.len(), list(&certs))),
    }
}

fn is_stub(material: &SecretKeyMaterial) -> bool {
    matches!(material, SecretKeyMaterial::Encrypted(e)
        if matches!(e.s2k(), S2K::Private { tag: 101, .. }))
}

fn format_time(t: SystemTime) -> String {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => {
            let days = d.as_secs() / 86_400;
            let (y, m, dd) = civil_from_days(days as i64);
            format!("{y:04}-{m:02}-{dd:02}")
        }
        Err(_) => "before 1970".into(),
    }
}

/// `t` as RFC 3339 UTC to the second (`2026-12-07T21:41:03Z`).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let s = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((s / 86_400) as i64);
    let r = s % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        r / 3600,
        r / 60 % 60,
        r % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl SigningKey {
    /// Loads a secret key from `material` (ASCII armor, binary, or base64 of either), unlocks
    /// it with `passphrase` when protected, and selects the signing key. `key_id` (long key id
    /// or fingerprint of the primary key or of a signing subkey) picks among several
    /// certificates or subkeys and must match when given.
    pub fn load(
        material: &[u8],
        passphrase: Option<&str>,
        key_id: Option<&str>,
    ) -> Result<Self, KeyError> {
        Self::load_at(material, passphrase, key_id, SystemTime::now())
    }

    /// [`SigningKey::load`] evaluated at time `now` (for expiry checks).
    pub fn load_at(
        material: &[u8],
        passphrase: Option<&str>,
        key_id: Option<&str>,
        now: SystemTime,
    ) -> Result<Self, KeyError> {
        let bytes = decode_material(material)?;
        let certs: Vec<Cert> = CertParser::from_bytes(&bytes)
            .map_err(|e| KeyError::NotAKey(e.to_string()))?
            .collect::<openpgp::Result<Vec<Cert>>>()
            .map_err(|e| KeyError::NotAKey(e.to_string()))?;
        if certs.is_empty() {
            return Err(KeyError::NotAKey("no certificate found".into()));
        }
        let wanted = key_id
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse_key_id)
            .transpose()?;
        let cert = choose_cert(certs, wanted.as_ref(), key_id)?;
        let fpr = KeyFingerprint::of(&cert.fingerprint());
        if !cert.is_tsk() {
            return Err(KeyError::PublicOnly(fpr));
        }
        let policy = StandardPolicy::new();
        if let RevocationStatus::Revoked(_) = cert.revocation_status(&policy, now) {
            return Err(KeyError::Revoked(fpr));
        }
        let vc = cert
            .with_policy(&policy, now)
            .map_err(|e| KeyError::Invalid(fpr.clone(), e.to_string()))?;
        if let Err(e) = vc.alive() {
            let when = vc
                .primary_key()
                .key_expiration_time()
                .map(format_time)
                .unwrap_or_else(|| e.to_string());
            return Err(KeyError::Expired(fpr, when));
        }
        // Signing-capable keys with secret material; report why others were skipped.
        let mut skipped = Vec::new();
        let mut candidates = Vec::new();
        for ka in vc.keys().for_signing().secret() {
            let kfpr = ka.key().fingerprint();
            if let Some(h) = &wanted
                && !h.aliases(KeyHandle::from(cert.fingerprint()))
                && !ka.key().key_handle().aliases(h)
            {
                continue;
            }
            if let RevocationStatus::Revoked(_) = ka.revocation_status() {
                skipped.push(format!("{kfpr} is revoked"));
                continue;
            }
            if let Err(e) = ka.alive() {
                let when = ka
                    .key_expiration_time()
                    .map(format_time)
                    .unwrap_or_else(|| e.to_string());
                skipped.push(format!("{kfpr} expired {when}"));
                continue;
            }
            if is_stub(ka.key().optional_secret().expect("secret() filter")) {
                skipped.push(format!("{kfpr} has only a gpg stub, no secret"));
                continue;
            }
            candidates.push(ka.key().clone());
        }
        if let Some(h) = &wanted
            && candidates.is_empty()
            && skipped.is_empty()
            && !h.aliases(KeyHandle::from(cert.fingerprint()))
        {
            return Err(KeyError::NoSigningKey(
                fpr,
                format!(" matching the key id {} (it is not signing-capable)", h),
            ));
        }
        // Newest key first, like GnuPG's default choice.
        candidates.sort_by_key(|k| std::cmp::Reverse(k.creation_time()));
        let Some(key) = candidates.into_iter().next() else {
            let why = if skipped.is_empty() {
                String::new()
            } else {
                format!(" ({})", skipped.join("; "))
            };
            return Err(KeyError::NoSigningKey(fpr, why));
        };
        let signing_fpr = KeyFingerprint::of(&key.fingerprint());
        let key = key
            .parts_into_secret()
            .map_err(|e| KeyError::Other(e.to_string()))?;
        let key = if key.has_unencrypted_secret() {
            key
        } else {
            let Some(pass) = passphrase.filter(|p| !p.is_empty()) else {
                return Err(KeyError::NeedPassphrase(fpr));
            };
            key.decrypt_secret(&Password::from(pass))
                .map_err(|_| KeyError::WrongPassphrase(fpr.clone()))?
        };
        let keypair = key
            .into_keypair()
            .map_err(|e| KeyError::Other(e.to_string()))?;
        Ok(SigningKey {
            public: cert.strip_secret_key_material(),
            keypair,
            signing_fpr,
        })
    }

    /// The public fingerprint of the certificate (the primary key), the name Spack uses for
    /// the key in a buildcache.
    pub fn fingerprint(&self) -> KeyFingerprint {
        KeyFingerprint::of(&self.public.fingerprint())
    }

    /// The fingerprint of the (sub)key that makes the signatures.
    pub fn signing_fingerprint(&self) -> &KeyFingerprint {
        &self.signing_fpr
    }

    /// The public certificate.
    pub fn public_cert(&self) -> &Cert {
        &self.public
    }

    /// The public certificate, ASCII-armored (what `gpg --armor --export` would publish).
    pub fn public_key_armored(&self) -> anyhow::Result<Vec<u8>> {
        self.public.armored().to_vec()
    }

    /// Cleartext-signs `text` (OpenPGP v4 signature, SHA-512, one `Hash:` header), as
    /// `gpg --clearsign --digest-algo SHA512` does. The signed text is exactly `text`: as in
    /// GnuPG, a final line break is not part of it, and trailing whitespace on a line is not
    /// signed, so text with such whitespace or with lines GnuPG would truncate is refused.
    pub fn clearsign(&self, text: &[u8]) -> anyhow::Result<Vec<u8>> {
        check_cleartext(text)?;
        let mut out = Vec::with_capacity(text.len() + 1200);
        {
            let message = Message::new(&mut out);
            let mut signer = Signer::with_template(
                message,
                self.keypair.clone(),
                SignatureBuilder::new(SignatureType::Text),
            )?
            .cleartext()
            .hash_algo(HashAlgorithm::SHA512)?
            .build()?;
            signer.write_all(text)?;
            signer.finalize()?;
        }
        Ok(out)
    }

    /// An ASCII-armored detached signature over `data` (binary mode, SHA-512), verifiable with
    /// `gpg --verify data.asc data`.
    pub fn detached_sign(&self, mut data: impl Read) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        {
            let message = Message::new(&mut out);
            let message = Armorer::new(message)
                .kind(openpgp::armor::Kind::Signature)
                .build()?;
            let mut signer = Signer::new(message, self.keypair.clone())?
                .detached()
                .hash_algo(HashAlgorithm::SHA512)?
                .build()?;
            std::io::copy(&mut data, &mut signer)?;
            signer.finalize()?;
        }
        Ok(out)
    }
}

/// Refuses text whose cleartext signature would not round-trip through GnuPG byte for byte.
fn check_cleartext(text: &[u8]) -> anyhow::Result<()> {
    for (i, line) in text.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > GNUPG_MAX_LINE {
            anyhow::bail!(
                "line {} is {} bytes long; GnuPG truncates cleartext lines over {GNUPG_MAX_LINE} bytes, so a verifier would check different text. Write the document with line breaks (Spack writes manifests one JSON token per line)",
                i + 1,
                line.len()
            );
        }
        if line.last().is_some_and(|b| *b == b' ' || *b == b'\t') {
            anyhow::bail!(
                "line {} ends with whitespace, which a cleartext signature does not cover; strip it before signing",
                i + 1
            );
        }
    }
    Ok(())
}

/// Why a signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The document carries no signature.
    #[error("not signed: the manifest is plain text, not an OpenPGP cleartext-signed message")]
    Unsigned,
    /// The file is not exactly one well-formed cleartext-signed message (data outside it, CR
    /// line ends, whitespace-only armor lines, missing or extra `Hash:` headers, ...).
    #[error(
        "malformed cleartext-signed message: {0}. GnuPG, Spack and this tool could read such a file differently, so it is refused; re-sign the manifest"
    )]
    Armor(String),
    /// The `Hash:` armor header names another algorithm than the signature uses.
    #[error(
        "the armor header says 'Hash: {header}' but the signature was made with {actual}; GnuPG and Spack refuse such a message"
    )]
    HashMismatch {
        /// What the header says.
        header: String,
        /// The signature's digest algorithm.
        actual: String,
    },
    /// Not exactly one signature.
    #[error("the message carries {0} signatures; a Spack manifest carries exactly one")]
    SignatureCount(usize),
    /// The signature was made by a key that is not trusted.
    #[error(
        "signed by an untrusted or unknown key {0}; trust it only if you obtained its fingerprint out of band (--trusted-key <file> or --trusted-fingerprint <FPR>)"
    )]
    UnknownSigner(String),
    /// The signing key (or subkey) is expired, at the signature's time or now.
    #[error("the signing key {key} is expired {detail}")]
    KeyExpired {
        /// The expired (sub)key.
        key: KeyFingerprint,
        /// When and since when.
        detail: String,
    },
    /// The signing key (or subkey) is revoked, for any reason.
    #[error("the signing key {key} is revoked {detail}")]
    KeyRevoked {
        /// The revoked (sub)key.
        key: KeyFingerprint,
        /// When, and the reason given.
        detail: String,
    },
    /// The signing key (or subkey) was created after the time it is checked at.
    #[error("the signing key {key} is not valid yet {detail}")]
    KeyNotYetValid {
        /// The (sub)key.
        key: KeyFingerprint,
        /// Its creation time against the check time.
        detail: String,
    },
    /// Another problem with the signing key (not signing-capable, not bound).
    #[error("the signing key {0} cannot be used: {1}")]
    BadKey(String, String),
    /// The signature does not match the text: it or the text was modified.
    #[error("bad signature: the signed text or the signature was modified ({0})")]
    BadSignature(String),
    /// The input is not well-formed OpenPGP.
    #[error("malformed signature: {0}")]
    Malformed(String),
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The fingerprint of the signer's certificate (primary key).
    pub signer: KeyFingerprint,
    /// The fingerprint of the (sub)key that made the signature.
    pub signing_key: KeyFingerprint,
    /// The signed text (for cleartext signatures), exactly as signed: the only bytes a caller
    /// may parse.
    pub text: Vec<u8>,
}

/// A set of trusted public certificates.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    certs: Vec<Cert>,
}

impl TrustedKeys {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every certificate in `bytes` (armored or binary keyring). Secret parts are dropped.
    pub fn add_armored(&mut self, bytes: &[u8]) -> anyhow::Result<Vec<KeyFingerprint>> {
        let mut added = Vec::new();
        for cert in CertParser::from_bytes(bytes)? {
            let cert = cert?;
            added.push(KeyFingerprint::of(&cert.fingerprint()));
            self.add_cert(cert);
        }
        if added.is_empty() {
            anyhow::bail!("no OpenPGP certificate found");
        }
        Ok(added)
    }

    /// Adds a certificate (merged with one of the same fingerprint already present).
    pub fn add_cert(&mut self, cert: Cert) {
        let cert = cert.strip_secret_key_material();
        match self
            .certs
            .iter_mut()
            .find(|c| c.fingerprint() == cert.fingerprint())
        {
            Some(existing) => {
                if let Ok(merged) = existing.clone().merge_public(cert.clone()) {
                    *existing = merged;
                }
            }
            None => self.certs.push(cert),
        }
    }

    /// The trusted fingerprints.
    pub fn fingerprints(&self) -> Vec<KeyFingerprint> {
        self.certs
            .iter()
            .map(|c| KeyFingerprint::of(&c.fingerprint()))
            .collect()
    }

    /// Whether a certificate with this primary fingerprint is trusted.
    pub fn contains(&self, fpr: &KeyFingerprint) -> bool {
        self.certs
            .iter()
            .any(|c| KeyFingerprint::of(&c.fingerprint()) == *fpr)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// Every certificate, public parts only, ASCII-armored one after another (a keyring file
    /// `gpg --import` and `spack gpg trust` read).
    pub fn armored(&self) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        for c in &self.certs {
            out.extend(c.armored().to_vec()?);
        }
        Ok(out)
    }

    /// Verifies a cleartext-signed document and returns the signer and the signed text.
    ///
    /// The file must be exactly one cleartext-signed message as GnuPG writes it (see
    /// [`VerifyError::Armor`]), with exactly one signature whose digest algorithm is the one
    /// the single `Hash:` header names, made by a trusted key that was valid when it signed
    /// and is still valid now (not expired, not revoked for any reason, not created later).
    pub fn verify_cleartext(&self, signed: &[u8]) -> Result<Verified, VerifyError> {
        self.verify_cleartext_at(signed, None)
    }

    /// [`TrustedKeys::verify_cleartext`] with "now" being `at` (default: the system time).
    pub fn verify_cleartext_at(
        &self,
        signed: &[u8],
        at: Option<SystemTime>,
    ) -> Result<Verified, VerifyError> {
        let header_hash = check_armor(signed)?;
        let now = at.unwrap_or_else(SystemTime::now);
        let policy = StandardPolicy::new();
        let helper = Helper::new(&self.certs, now, Some(header_hash));
        let mut v = VerifierBuilder::from_bytes(signed)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?
            .with_policy(&policy, Some(now), helper)
            .map_err(classify_early)?;
        let mut text = Vec::new();
        v.read_to_end(&mut text)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        if !v.message_processed() {
            return Err(VerifyError::Malformed(
                "the message was not read to its end".into(),
            ));
        }
        let helper = v.into_helper();
        let (signer, signing_key) = helper.result()?;
        Ok(Verified {
            signer,
            signing_key,
            text,
        })
    }

    /// Verifies a detached (armored or binary) signature over `data`, with the same key
    /// validity rules as [`TrustedKeys::verify_cleartext`].
    pub fn verify_detached(&self, signature: &[u8], data: &[u8]) -> Result<Verified, VerifyError> {
        self.verify_detached_reader(signature, data)
    }

    /// [`TrustedKeys::verify_detached`] over data read from `data` as it is hashed (a large
    /// file is never held in memory).
    pub fn verify_detached_reader<R: std::io::Read + Send + Sync>(
        &self,
        signature: &[u8],
        data: R,
    ) -> Result<Verified, VerifyError> {
        let now = SystemTime::now();
        let policy = StandardPolicy::new();
        let helper = Helper::new(&self.certs, now, None);
        let mut v = DetachedVerifierBuilder::from_bytes(signature)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?
            .with_policy(&policy, Some(now), helper)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let r = v.verify_reader(data);
        let helper = v.into_helper();
        let (signer, signing_key) = helper.result()?;
        r.map_err(|e| VerifyError::BadSignature(e.to_string()))?;
        Ok(Verified {
            signer,
            signing_key,
            text: Vec::new(),
        })
    }
}

/// Whether `bytes` looks like an OpenPGP cleartext-signed message (leading whitespace
/// tolerated: use this to route a file, never to accept one).
pub fn is_clearsigned(bytes: &[u8]) -> bool {
    bytes
        .trim_ascii_start()
        .starts_with(CLEARSIGN_HEADER.as_bytes())
}

/// Whether `bytes` hold OpenPGP armor anywhere (a signed message, a signature, a key).
pub fn contains_armor(bytes: &[u8]) -> bool {
    bytes.windows(14).any(|w| w == b"-----BEGIN PGP")
}

const SIG_BEGIN: &str = "-----BEGIN PGP SIGNATURE-----";
const SIG_END: &str = "-----END PGP SIGNATURE-----";

/// Checks that `signed` is exactly one cleartext-signed message in the form GnuPG writes and
/// reads without ambiguity, and returns the algorithm its single `Hash:` header names.
///
/// Refused: anything before the first line or after the signature block, CR characters,
/// whitespace-only or unknown armor header lines, zero or several `Hash:` headers (or a list),
/// body lines starting with `-` that are not dash-escaped, body lines ending with whitespace
/// (the signature does not cover it) or longer than GnuPG reads, and any malformed line in the
/// signature armor.
fn check_armor(signed: &[u8]) -> Result<String, VerifyError> {
    if !signed.starts_with(CLEARSIGN_HEADER.as_bytes()) {
        if contains_armor(signed) {
            return armor(format!(
                "the file has data before its '{CLEARSIGN_HEADER}' line (or holds another kind of OpenPGP message)"
            ));
        }
        return Err(VerifyError::Unsigned);
    }
    let Ok(text) = std::str::from_utf8(signed) else {
        return armor("the file is not UTF-8 text".into());
    };
    if let Some(at) = text.find('\r') {
        let line = text[..at].matches('\n').count() + 1;
        return armor(format!(
            "line {line} has a carriage return (CRLF line ends); Spack and GnuPG write LF-only manifests"
        ));
    }
    let text = text.strip_suffix('\n').unwrap_or(text);
    let lines: Vec<&str> = text.split('\n').collect();
    if lines[0] != CLEARSIGN_HEADER {
        return armor(format!(
            "the first line is not exactly '{CLEARSIGN_HEADER}'"
        ));
    }
    let mut i = 1;
    let hash = armor_headers(&lines, &mut i)?;
    i += 1;
    dash_escaped_text(&lines, &mut i)?;
    i += 1;
    signature_armor(&lines, &mut i)?;
    Ok(hash.to_owned())
}

fn armor<T>(m: String) -> Result<T, VerifyError> {
    Err(VerifyError::Armor(m))
}

/// The armor headers from line `i` (0-based) up to the first empty line (left at `i`): exactly
/// one `Hash:` header naming one algorithm, which is returned.
fn armor_headers<'a>(lines: &[&'a str], i: &mut usize) -> Result<&'a str, VerifyError> {
    let mut hashes = Vec::new();
    loop {
        let Some(line) = lines.get(*i) else {
            return armor("no empty line ends the armor headers".into());
        };
        if line.is_empty() {
            break;
        }
        if line.trim().is_empty() {
            return armor(format!(
                "armor header line {} holds only whitespace (readers disagree on whether it ends the headers)",
                *i + 1
            ));
        }
        match line.strip_prefix("Hash: ") {
            Some(v) => hashes.push(v),
            None => {
                return armor(format!(
                    "line {} is not a 'Hash:' armor header ({line:?}); a cleartext signature allows only 'Hash:'",
                    *i + 1
                ));
            }
        }
        *i += 1;
    }
    let hash = match hashes.as_slice() {
        [one] => *one,
        _ => {
            return armor(format!(
                "{} 'Hash:' armor headers; Spack and GnuPG expect exactly one",
                hashes.len()
            ));
        }
    };
    if hash.is_empty()
        || !hash
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
    {
        return armor(format!(
            "'Hash: {hash}' does not name exactly one digest algorithm"
        ));
    }
    Ok(hash)
}

/// The dash-escaped text from line `i` up to the signature's first line (left at `i`).
fn dash_escaped_text(lines: &[&str], i: &mut usize) -> Result<(), VerifyError> {
    loop {
        let Some(line) = lines.get(*i) else {
            return armor(format!("no '{SIG_BEGIN}' line"));
        };
        if *line == SIG_BEGIN {
            return Ok(());
        }
        if line.starts_with('-') && !line.starts_with("- ") {
            return armor(format!(
                "line {} starts with '-' but is not dash-escaped ('- ')",
                *i + 1
            ));
        }
        if let Some(rest) = line.strip_prefix("- ")
            && !rest.starts_with('-')
            && !rest.starts_with("From ")
        {
            return armor(format!(
                "line {} is dash-escaped but does not start with '-' (GnuPG escapes only lines starting with '-' or 'From ')",
                *i + 1
            ));
        }
        if line.ends_with([' ', '\t']) {
            return armor(format!(
                "line {} ends with whitespace, which the signature does not cover",
                *i + 1
            ));
        }
        if line.len() > GNUPG_MAX_LINE {
            return armor(format!(
                "line {} is {} bytes long; GnuPG truncates lines over {GNUPG_MAX_LINE} bytes",
                *i + 1,
                line.len()
            ));
        }
        *i += 1;
    }
}

/// The signature armor from line `i`: optional Version/Comment headers, an empty line,
/// base64, an optional checksum, the end line, and nothing after it.
fn signature_armor(lines: &[&str], i: &mut usize) -> Result<(), VerifyError> {
    loop {
        let Some(line) = lines.get(*i) else {
            return armor(format!("the signature block has no '{SIG_END}' line"));
        };
        if line.is_empty() {
            break;
        }
        if !(line.starts_with("Version: ") || line.starts_with("Comment: ")) || line.trim() != *line
        {
            return armor(format!(
                "line {} is not an empty line or a Version/Comment header in the signature armor ({line:?})",
                *i + 1
            ));
        }
        *i += 1;
    }
    *i += 1;
    let mut base64_lines = 0;
    let mut checksum = false;
    loop {
        let Some(line) = lines.get(*i) else {
            return armor(format!("the signature block has no '{SIG_END}' line"));
        };
        if *line == SIG_END {
            break;
        }
        let is_b64 = !line.is_empty()
            && line
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
        if checksum || !is_b64 {
            return armor(format!(
                "line {} of the signature armor is not base64 ({line:?})",
                *i + 1
            ));
        }
        if line.starts_with('=') {
            checksum = true;
        } else {
            base64_lines += 1;
        }
        *i += 1;
    }
    if base64_lines == 0 {
        return armor("the signature block is empty".into());
    }
    if *i + 1 != lines.len() {
        return armor(format!(
            "the file continues after '{SIG_END}' (line {}): trailing data or a second message",
            *i + 2
        ));
    }
    Ok(())
}

/// The name GnuPG writes in a `Hash:` header for `algo`.
fn hash_header_name(algo: HashAlgorithm) -> String {
    match algo {
        HashAlgorithm::MD5 => "MD5".into(),
        HashAlgorithm::SHA1 => "SHA1".into(),
        HashAlgorithm::RipeMD => "RIPEMD160".into(),
        HashAlgorithm::SHA224 => "SHA224".into(),
        HashAlgorithm::SHA256 => "SHA256".into(),
        HashAlgorithm::SHA384 => "SHA384".into(),
        HashAlgorithm::SHA512 => "SHA512".into(),
        HashAlgorithm::SHA3_256 => "SHA3-256".into(),
        HashAlgorithm::SHA3_512 => "SHA3-512".into(),
        other => other.to_string(),
    }
}

fn classify_early(e: anyhow::Error) -> VerifyError {
    // The verifier checks the signatures while building when the message is small; errors
    // from `check` surface here, already classified.
    match e.downcast::<VerifyError>() {
        Ok(v) => v,
        Err(e) => VerifyError::Malformed(format!("{e:#}")),
    }
}

fn reason_of(revs: &[&openpgp::packet::Signature]) -> String {
    revs.iter()
        .map(|r| match r.reason_for_revocation() {
            Some((code, b"")) => format!("reason: {code}"),
            Some((code, msg)) => {
                format!("reason: {code}, {:?}", String::from_utf8_lossy(msg))
            }
            None => "no reason given".into(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether the (sub)key `key` of `cert` may have made a signature at time `t`: the
/// certificate and the key exist, are bound, alive and not revoked (for any reason) at `t`.
/// `when` says what `t` is, for the message.
fn key_problem(cert: &Cert, key: &Fingerprint, t: SystemTime, when: &str) -> Option<VerifyError> {
    let policy = StandardPolicy::new();
    let cfpr = KeyFingerprint::of(&cert.fingerprint());
    let primary = cert.primary_key().key();
    if primary.creation_time() > t {
        return Some(VerifyError::KeyNotYetValid {
            key: cfpr,
            detail: format!(
                "{when}: the certificate was created on {}",
                format_time(primary.creation_time())
            ),
        });
    }
    if let RevocationStatus::Revoked(revs) = cert.revocation_status(&policy, t) {
        return Some(VerifyError::KeyRevoked {
            key: cfpr,
            detail: format!("{when} ({})", reason_of(&revs)),
        });
    }
    let vc = match cert.with_policy(&policy, t) {
        Ok(vc) => vc,
        Err(e) => {
            return Some(VerifyError::BadKey(
                cfpr.to_string(),
                format!("{when}: {e}"),
            ));
        }
    };
    if vc.alive().is_err() {
        let until = vc
            .primary_key()
            .key_expiration_time()
            .map(format_time)
            .unwrap_or_else(|| "an unknown date".into());
        return Some(VerifyError::KeyExpired {
            key: cfpr,
            detail: format!("{when}: it expired on {until}"),
        });
    }
    if *key == cert.fingerprint() {
        return None;
    }
    let kfpr = KeyFingerprint::of(key);
    let Some(ka) = vc.keys().key_handle(key.clone()).next() else {
        let created = cert
            .keys()
            .subkeys()
            .find(|k| k.key().fingerprint() == *key)
            .map(|k| k.key().creation_time());
        return Some(match created {
            Some(c) if c > t => VerifyError::KeyNotYetValid {
                key: kfpr,
                detail: format!("{when}: the subkey was created on {}", format_time(c)),
            },
            _ => VerifyError::BadKey(
                kfpr.to_string(),
                format!("{when}: the subkey is not validly bound to its certificate"),
            ),
        });
    };
    if let RevocationStatus::Revoked(revs) = ka.revocation_status() {
        return Some(VerifyError::KeyRevoked {
            key: kfpr,
            detail: format!("{when} (subkey; {})", reason_of(&revs)),
        });
    }
    if ka.alive().is_err() {
        let until = ka
            .key_expiration_time()
            .map(format_time)
            .unwrap_or_else(|| "an unknown date".into());
        return Some(VerifyError::KeyExpired {
            key: kfpr,
            detail: format!("{when}: the subkey expired on {until}"),
        });
    }
    if !ka.for_signing() {
        return Some(VerifyError::BadKey(
            kfpr.to_string(),
            format!("{when}: the subkey is not signing-capable"),
        ));
    }
    None
}

fn signing_time(sig: &openpgp::packet::Signature) -> (SystemTime, String) {
    let t = sig
        .signature_creation_time()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    (t, format!("when it signed ({})", format_time(t)))
}

struct Helper<'a> {
    certs: &'a [Cert],
    now: SystemTime,
    header_hash: Option<String>,
    outcome: Option<Result<(KeyFingerprint, KeyFingerprint), VerifyError>>,
}

impl<'a> Helper<'a> {
    fn new(certs: &'a [Cert], now: SystemTime, header_hash: Option<String>) -> Self {
        Helper {
            certs,
            now,
            header_hash,
            outcome: None,
        }
    }
    fn result(&self) -> Result<(KeyFingerprint, KeyFingerprint), VerifyError> {
        self.outcome
            .clone()
            .unwrap_or_else(|| Err(VerifyError::Malformed("no signature was checked".into())))
    }

    /// The verdict on one signature result.
    fn judge(
        &self,
        r: Result<openpgp::parse::stream::GoodChecksum<'_>, VerificationError<'_>>,
    ) -> Result<(KeyFingerprint, KeyFingerprint), VerifyError> {
        match r {
            Ok(good) => {
                let actual = hash_header_name(good.sig.hash_algo());
                if let Some(header) = &self.header_hash
                    && *header != actual
                {
                    return Err(VerifyError::HashMismatch {
                        header: header.clone(),
                        actual,
                    });
                }
                let cert = good.ka.cert();
                let key = good.ka.key().fingerprint();
                // Sequoia checked the key at the signature's time; it must be valid now too
                // (an expiry or a revocation, even "superseded", published since counts).
                let (t, when) = signing_time(good.sig);
                if let Some(p) = key_problem(cert, &key, t, &when) {
                    return Err(p);
                }
                if let Some(p) = key_problem(cert, &key, self.now, "now") {
                    return Err(p);
                }
                Ok((
                    KeyFingerprint::of(&cert.fingerprint()),
                    KeyFingerprint::of(&key),
                ))
            }
            Err(VerificationError::MissingKey { sig }) => {
                let issuers: Vec<String> = sig.get_issuers().iter().map(|h| h.to_hex()).collect();
                Err(VerifyError::UnknownSigner(if issuers.is_empty() {
                    "(no issuer recorded)".into()
                } else {
                    issuers.join("/")
                }))
            }
            Err(VerificationError::BadKey { sig, ka, error, .. }) => {
                let (t, when) = signing_time(sig);
                Err(
                    key_problem(ka.cert(), &ka.key().fingerprint(), t, &when).unwrap_or_else(
                        || {
                            VerifyError::BadKey(
                                ka.key().fingerprint().to_hex(),
                                format!("{error:#}"),
                            )
                        },
                    ),
                )
            }
            Err(VerificationError::UnboundKey {
                sig, cert, error, ..
            }) => {
                let (t, when) = signing_time(sig);
                let key = sig
                    .issuer_fingerprints()
                    .next()
                    .cloned()
                    .unwrap_or_else(|| cert.fingerprint());
                Err(key_problem(cert, &key, t, &when).unwrap_or_else(|| {
                    VerifyError::BadKey(cert.fingerprint().to_hex(), format!("{error:#}"))
                }))
            }
            Err(VerificationError::BadSignature { ka, error, .. }) => {
                // A signature from the future is "not alive": say why when it is the key.
                let key = ka.key().fingerprint();
                Err(key_problem(ka.cert(), &key, self.now, "now")
                    .unwrap_or_else(|| VerifyError::BadSignature(format!("{error}"))))
            }
            Err(VerificationError::MalformedSignature { error, .. }) => {
                Err(VerifyError::Malformed(format!("{error}")))
            }
            Err(other) => Err(VerifyError::Malformed(other.to_string())),
        }
    }
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self
            .certs
            .iter()
            .filter(|c| {
                c.keys()
                    .any(|k| ids.iter().any(|id| k.key().key_handle().aliases(id)))
            })
            .cloned()
            .collect())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let mut results = Vec::new();
        let mut other_layers = false;
        for layer in structure.into_iter() {
            match layer {
                MessageLayer::SignatureGroup { results: r } => results.extend(r),
                MessageLayer::Compression { .. } | MessageLayer::Encryption { .. } => {
                    other_layers = true
                }
            }
        }
        let outcome = if other_layers {
            Err(VerifyError::Malformed(
                "compressed or encrypted data where only a signed text was expected".into(),
            ))
        } else if results.is_empty() {
            Err(VerifyError::Unsigned)
        } else if results.len() > 1 {
            Err(VerifyError::SignatureCount(results.len()))
        } else {
            let r = results.pop().expect("one result");
            self.judge(r)
        };
        self.outcome = Some(outcome.clone());
        outcome.map(|_| ()).map_err(anyhow::Error::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(p: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/spack-v3/{p}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn roundtrip_and_format() {
        let key = SigningKey::load(&fixture("keys/demo-signer.sec.asc"), None, None).unwrap();
        assert_eq!(
            key.fingerprint().as_str(),
            "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD"
        );
        let text = b"{\n\"a\":1,\n- dash\n}";
        let signed = key.clearsign(text).unwrap();
        let s = String::from_utf8(signed.clone()).unwrap();
        assert!(
            s.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{\n"),
            "{s}"
        );
        assert_eq!(s.matches("Hash:").count(), 1);
        assert!(
            s.contains("\n- - dash\n}\n-----BEGIN PGP SIGNATURE-----\n"),
            "{s}"
        );
        let mut trusted = TrustedKeys::new();
        trusted
            .add_armored(&fixture("keys/demo-signer.pub.asc"))
            .unwrap();
        let v = trusted.verify_cleartext(&signed).unwrap();
        assert_eq!(v.text, text);
        assert_eq!(v.signer, key.fingerprint());
    }

    #[test]
    fn key_id_forms() {
        assert!(parse_key_id("0xE145321FBC9F04BD").is_ok());
        assert!(parse_key_id("1A00 B889 3F4F AE1A 76DB  389D E145 321F BC9F 04BD").is_ok());
        assert!(matches!(parse_key_id("alice"), Err(KeyError::BadKeyId(_))));
        let err = SigningKey::load(
            &fixture("keys/demo-signer.sec.asc"),
            None,
            Some("0123456789ABCDEF"),
        )
        .unwrap_err();
        assert!(matches!(err, KeyError::KeyIdMismatch { .. }), "{err}");
    }
}
