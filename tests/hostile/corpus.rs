//! The shared corpus machinery: a case is a set of file edits on a copy of the real signed
//! Spack buildcache plus the keys a consumer trusts; `assert_refused` runs the real binary on
//! it. Keys are crafted with sequoia at chosen times (creation, expiry, revocation, signing).
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use sequoia_openpgp as openpgp;

use openpgp::cert::prelude::*;
use openpgp::packet::signature::SignatureBuilder;
use openpgp::packet::{Key, Packet, key};
use openpgp::parse::Parse;
use openpgp::serialize::SerializeInto;
use openpgp::serialize::stream::{Message, Signer};
use openpgp::types::{Curve, HashAlgorithm, KeyFlags, ReasonForRevocation, SignatureType};
use openpgp::{Cert, Fingerprint};

use super::common;

pub const FIXTURE_FPR: &str = "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD";
pub const LIB: &str =
    "v3/manifests/spec/demo-lib/demo-lib-1.0-or7dti47ajgrd2y5bgs2dujuath2dz3p.spec.manifest.json";
pub const APP: &str =
    "v3/manifests/spec/demo-app/demo-app-2.0-resh3sdm7oulbae23jllsxfemfp24cba.spec.manifest.json";
pub const LIB_ID: &str = "demo-lib@1.0/or7dti4";
pub const APP_ID: &str = "demo-app@2.0/resh3sd";
pub const DAY: Duration = Duration::from_secs(86_400);

pub fn fixtures() -> PathBuf {
    common::repo_root().join("tests/fixtures/spack-v3")
}

pub fn signed_file(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("signed").join(rel)).unwrap()
}

/// The manifest text Spack signed (the unsigned fixture's manifest, byte for byte).
pub fn unsigned_text(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("unsigned").join(rel)).unwrap()
}

pub fn fixture_public() -> Vec<u8> {
    std::fs::read(fixtures().join("keys/demo-signer.pub.asc")).unwrap()
}

pub fn fixture_cert() -> Cert {
    Cert::from_bytes(&std::fs::read(fixtures().join("keys/demo-signer.sec.asc")).unwrap()).unwrap()
}

/// One hostile case.
pub struct Case {
    pub name: String,
    /// Files written over a copy of the signed fixture (relative path, bytes).
    pub files: Vec<(String, Vec<u8>)>,
    /// Armored public keys the consumer trusts (`--trusted-key`).
    pub keys: Vec<Vec<u8>>,
    /// The manifest whose signature verdict `gpg --verify` cross-checks, if one applies.
    pub manifest: Option<String>,
    /// A detached signature and its data, over the same text with the same key and time, for
    /// `sqv` (which reads only detached signatures).
    pub detached: Option<(Vec<u8>, Vec<u8>)>,
    /// The spec reported as failed.
    pub failed: &'static str,
    /// What the refusal must say.
    pub needle: String,
}

impl Case {
    /// A case replacing the demo-lib manifest, trusting the fixture key.
    pub fn lib_manifest(name: &str, bytes: Vec<u8>, needle: &str) -> Case {
        Case {
            name: name.into(),
            files: vec![(LIB.into(), bytes)],
            keys: vec![fixture_public()],
            manifest: Some(LIB.into()),
            detached: None,
            failed: LIB_ID,
            needle: needle.into(),
        }
    }

    /// Writes the case's buildcache and key files under `root`; returns (cache, key files).
    pub fn materialize(&self, root: &Path) -> (PathBuf, Vec<PathBuf>) {
        let dir = root.join(&self.name);
        let cache = dir.join("cache");
        copy_tree(&fixtures().join("signed"), &cache);
        for (rel, bytes) in &self.files {
            let p = cache.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let keys = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let p = dir.join(format!("trusted-{i}.asc"));
                std::fs::write(&p, k).unwrap();
                p
            })
            .collect();
        (cache, keys)
    }
}

/// Runs `slurm-factory verify` on `cache` with these trusted key files and extra arguments.
pub fn verify(cache: &Path, keys: &[PathBuf], extra: &[&str]) -> (bool, String) {
    let mut c = common::scrubbed("slurm-factory");
    c.arg("verify")
        .arg("--buildcache")
        .arg(format!("file://{}", cache.display()));
    for k in keys {
        c.arg("--trusted-key").arg(k);
    }
    c.args(extra);
    run(c)
}

pub fn run(mut c: Command) -> (bool, String) {
    let out = c.output().unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

/// Runs the case through the binary: it must fail, report the case's spec as FAILED with the
/// expected reason and the manifest's key, leave the other spec alone, and write nothing.
pub fn assert_refused(root: &Path, case: &Case) -> String {
    let (cache, keys) = case.materialize(root);
    let before = read_tree(&cache);
    let (ok, out) = verify(&cache, &keys, &[]);
    assert!(!ok, "{}: verify must fail:\n{out}", case.name);
    let line = out
        .lines()
        .find(|l| l.contains(&format!("FAILED  {}", case.failed)))
        .unwrap_or_else(|| panic!("{}: no FAILED line for {}:\n{out}", case.name, case.failed));
    assert!(
        line.contains(&case.needle),
        "{}: expected {:?} in:\n{line}",
        case.name,
        case.needle
    );
    if let Some(m) = &case.manifest {
        assert!(
            line.contains(m.as_str()),
            "{}: the message names {m}:\n{line}",
            case.name
        );
    }
    assert_eq!(
        read_tree(&cache),
        before,
        "{}: verify wrote nothing",
        case.name
    );
    out
}

/// Copies a directory tree.
pub fn copy_tree(from: &Path, to: &Path) {
    for (rel, bytes) in read_tree(from) {
        let p = to.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

/// Every file under `root` (relative path → bytes).
pub fn read_tree(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

// ---- keys crafted with sequoia ------------------------------------------------------------

/// Now, rounded down to a second (OpenPGP times are whole seconds).
pub fn now() -> SystemTime {
    let s = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
}

/// A certificate created at `created`, valid for `validity` (forever when `None`); the primary
/// key signs (`subkey: None`) or a signing subkey created at `subkey.0`, valid for `subkey.1`.
pub fn craft(
    created: SystemTime,
    validity: Option<Duration>,
    subkey: Option<(SystemTime, Option<Duration>)>,
) -> Cert {
    let mut b = CertBuilder::new()
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_creation_time(created)
        .set_validity_period(validity)
        .add_userid("Hostile Corpus <hostile@example.com>");
    if subkey.is_none() {
        b = b.set_primary_key_flags(KeyFlags::empty().set_certification().set_signing());
    }
    let (cert, _) = b.generate().unwrap();
    let Some((sub_created, sub_validity)) = subkey else {
        return cert;
    };
    // A signing subkey bound at its own creation time (CertBuilder binds at the cert's).
    let mut sub: Key<key::SecretParts, key::SubordinateRole> =
        key::Key4::generate_ecc(true, Curve::Ed25519)
            .unwrap()
            .into();
    sub.set_creation_time(sub_created).unwrap();
    let mut sub_signer = sub.clone().into_keypair().unwrap();
    let mut primary = cert
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .unwrap()
        .into_keypair()
        .unwrap();
    let backsig = SignatureBuilder::new(SignatureType::PrimaryKeyBinding)
        .set_signature_creation_time(sub_created)
        .unwrap()
        .sign_primary_key_binding(&mut sub_signer, cert.primary_key().key(), &sub)
        .unwrap();
    let binding = SignatureBuilder::new(SignatureType::SubkeyBinding)
        .set_signature_creation_time(sub_created)
        .unwrap()
        .set_key_flags(KeyFlags::empty().set_signing())
        .unwrap()
        .set_key_validity_period(sub_validity)
        .unwrap()
        .set_embedded_signature(backsig)
        .unwrap()
        .sign_subkey_binding(&mut primary, None, &sub)
        .unwrap();
    cert.insert_packets(vec![Packet::from(sub), binding.into()])
        .unwrap()
        .0
}

/// The certificate's signing (sub)key: the subkey when there is one.
pub fn signing_fpr(cert: &Cert) -> Fingerprint {
    cert.keys()
        .subkeys()
        .next()
        .map(|k| k.key().fingerprint())
        .unwrap_or_else(|| cert.fingerprint())
}

fn keypair(cert: &Cert, fpr: &Fingerprint) -> openpgp::crypto::KeyPair {
    cert.keys()
        .secret()
        .find(|k| k.key().fingerprint() == *fpr)
        .unwrap()
        .key()
        .clone()
        .into_keypair()
        .unwrap()
}

/// Cleartext-signs `text` with `cert`'s key `fpr`, as made at time `at`.
pub fn clearsign_at(
    cert: &Cert,
    fpr: &Fingerprint,
    text: &[u8],
    at: SystemTime,
    hash: HashAlgorithm,
) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let m = Message::new(&mut out);
        let mut s = Signer::with_template(
            m,
            keypair(cert, fpr),
            SignatureBuilder::new(SignatureType::Text),
        )
        .unwrap()
        .creation_time(at)
        .cleartext()
        .hash_algo(hash)
        .unwrap()
        .build()
        .unwrap();
        s.write_all(text).unwrap();
        s.finalize().unwrap();
    }
    out
}

/// An armored detached signature over `data` by `cert`'s key `fpr` at time `at`.
pub fn detached_at(cert: &Cert, fpr: &Fingerprint, data: &[u8], at: SystemTime) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let m = Message::new(&mut out);
        let m = openpgp::serialize::stream::Armorer::new(m)
            .kind(openpgp::armor::Kind::Signature)
            .build()
            .unwrap();
        let mut s = Signer::new(m, keypair(cert, fpr))
            .unwrap()
            .creation_time(at)
            .detached()
            .hash_algo(HashAlgorithm::SHA512)
            .unwrap()
            .build()
            .unwrap();
        s.write_all(data).unwrap();
        s.finalize().unwrap();
    }
    out
}

/// `cert` revoked at `at` for `reason` (the whole certificate, or the subkey `sub`).
pub fn revoke_at(
    cert: &Cert,
    sub: Option<&Fingerprint>,
    reason: ReasonForRevocation,
    at: SystemTime,
) -> Cert {
    let mut primary = keypair(cert, &cert.fingerprint());
    let sig = match sub {
        None => CertRevocationBuilder::new()
            .set_reason_for_revocation(reason, b"hostile corpus")
            .unwrap()
            .set_signature_creation_time(at)
            .unwrap()
            .build(&mut primary, cert, None)
            .unwrap(),
        Some(fpr) => {
            let k = cert
                .keys()
                .subkeys()
                .find(|k| k.key().fingerprint() == *fpr)
                .unwrap();
            SubkeyRevocationBuilder::new()
                .set_reason_for_revocation(reason, b"hostile corpus")
                .unwrap()
                .set_signature_creation_time(at)
                .unwrap()
                .build(&mut primary, cert, k.key(), None)
                .unwrap()
        }
    };
    cert.clone().insert_packets(sig).unwrap().0
}

/// The public certificate, armored.
pub fn public(cert: &Cert) -> Vec<u8> {
    cert.clone()
        .strip_secret_key_material()
        .armored()
        .to_vec()
        .unwrap()
}
