//! Keys made by real `gpg --batch --quick-gen-key`: RSA-4096 and ed25519, with and without a
//! passphrase, expired, revoked, signing-subkey-only, no signing key, key id selection. Every
//! usable key's signatures verify with gpg; every unusable one fails with a clear message.

use std::path::Path;

use base64::Engine as _;
use slurm_factory::pgp::{KeyError, SigningKey};

use super::common;
use super::support::*;

const TEXT: &[u8] = b"{\n\"version\":3,\n\"data\":[]\n}";

/// Signs TEXT with `key` and checks it with `gpg --verify` in `gpg`'s home.
fn gpg_accepts(gpg: &Gpg, key: &SigningKey, dir: &Path) -> String {
    let p = dir.join(format!("{}.json", key.signing_fingerprint()));
    std::fs::write(&p, key.clearsign(TEXT).unwrap()).unwrap();
    let (good, err) = gpg.verify(&[&p]);
    assert!(good, "gpg rejected a signature by {key:?}: {err}");
    err
}

/// Runs the binary with this key material and expects failure with `needle`, nothing written.
fn binary_refuses(material: &[u8], pass: Option<&str>, key_id: Option<&str>, needle: &str) {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("mirror");
    let mut c = common::in_actions("sign-and-upload", t.path());
    c.env(
        "GPG_PRIVATE_KEY",
        String::from_utf8(material.to_vec()).unwrap(),
    )
    .arg("--source")
    .arg(fixtures().join("unsigned"))
    .arg("--destination")
    .arg(format!("file://{}", dest.display()));
    if let Some(p) = pass {
        c.env("GPG_PASSPHRASE", p);
    }
    if let Some(k) = key_id {
        c.env("GPG_KEY_ID", k);
    }
    let (ok, out) = run(c);
    assert!(!ok, "expected failure ({needle}): {out}");
    assert!(
        out.contains("::error::") && out.contains(needle),
        "expected {needle:?} in: {out}"
    );
    assert!(!dest.exists(), "a refused key must not write anything");
}

#[test]
fn rsa4096_without_passphrase() {
    let Some(gpg) = Gpg::new() else { return };
    let fpr = gpg.generate("RSA Signer <rsa@example.com>", "rsa4096", "sign", "0", "");
    let sec = gpg.export_secret(&fpr, "");
    let key = SigningKey::load(&sec, None, None).unwrap();
    assert_eq!(key.fingerprint().as_str(), fpr);
    let t = tempfile::tempdir().unwrap();
    let err = gpg_accepts(&gpg, &key, t.path());
    assert!(err.contains("using RSA key"), "{err}");
    // Base64 of the armor (how the upstream GPG_PRIVATE_KEY secret stores it) loads the same.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&sec);
    let again = SigningKey::load(b64.as_bytes(), None, Some(&fpr)).unwrap();
    assert_eq!(again.fingerprint(), key.fingerprint());
    // The long key id selects it too.
    assert!(SigningKey::load(&sec, None, Some(&fpr[24..])).is_ok());
}

#[test]
fn ed25519_with_and_without_passphrase() {
    let Some(gpg) = Gpg::new() else { return };
    let t = tempfile::tempdir().unwrap();
    let open = gpg.generate("Open <open@example.com>", "ed25519", "sign", "0", "");
    let key = SigningKey::load(&gpg.export_secret(&open, ""), None, None).unwrap();
    let err = gpg_accepts(&gpg, &key, t.path());
    assert!(err.contains("using EDDSA key"), "{err}");

    let pass = "correct horse battery staple";
    let locked = gpg.generate("Locked <locked@example.com>", "ed25519", "sign", "0", pass);
    let sec = gpg.export_secret(&locked, pass);
    assert!(String::from_utf8_lossy(&sec).contains("PRIVATE KEY"));
    let key = SigningKey::load(&sec, Some(pass), None).unwrap();
    gpg_accepts(&gpg, &key, t.path());
    let e = SigningKey::load(&sec, Some("wrong"), None).unwrap_err();
    assert!(matches!(e, KeyError::WrongPassphrase(_)), "{e}");
    assert!(e.to_string().contains("wrong passphrase"), "{e}");
    let e = SigningKey::load(&sec, None, None).unwrap_err();
    assert!(matches!(e, KeyError::NeedPassphrase(_)), "{e}");
    assert!(e.to_string().contains("no passphrase was given"), "{e}");
    binary_refuses(
        &sec,
        Some("wrong"),
        None,
        "wrong passphrase for the signing key",
    );
    binary_refuses(&sec, None, None, "is passphrase-protected");
    binary_refuses(&sec, None, None, "Set GPG_PASSPHRASE");
}

#[test]
fn expired_and_revoked_keys_are_refused() {
    let Some(gpg) = Gpg::new() else { return };
    // Made in 2020 with a one-day lifetime.
    gpg.ok(&[
        "--faked-system-time",
        "20200101T000000",
        "--passphrase",
        "",
        "--pinentry-mode",
        "loopback",
        "--quick-gen-key",
        "Expired <expired@example.com>",
        "ed25519",
        "sign",
        "1d",
    ]);
    let exp = gpg.fpr("expired@example.com");
    let sec = gpg.export_secret(&exp, "");
    let e = SigningKey::load(&sec, None, None).unwrap_err();
    assert!(matches!(e, KeyError::Expired(..)), "{e}");
    assert!(e.to_string().contains("has expired (2020-01-02)"), "{e}");
    binary_refuses(&sec, None, None, "has expired");

    let rev = gpg.generate("Revoked <revoked@example.com>", "ed25519", "sign", "0", "");
    gpg.revoke(&rev);
    let sec = gpg.export_secret(&rev, "");
    let e = SigningKey::load(&sec, None, None).unwrap_err();
    assert!(matches!(e, KeyError::Revoked(_)), "{e}");
    binary_refuses(&sec, None, None, "is revoked");
}

#[test]
fn signing_subkey_only_no_signing_key_and_key_id_mismatch() {
    let Some(gpg) = Gpg::new() else { return };
    let t = tempfile::tempdir().unwrap();
    // Certification-only primary plus a signing subkey; export only the subkey's secret
    // (`--export-secret-subkeys SUB!`), so the primary is a gpg stub (GNU dummy S2K).
    let primary = gpg.generate("Sub Only <sub@example.com>", "ed25519", "cert", "0", "");
    gpg.ok(&[
        "--passphrase",
        "",
        "--pinentry-mode",
        "loopback",
        "--quick-add-key",
        &primary,
        "ed25519",
        "sign",
        "0",
    ]);
    let fprs = gpg.fprs("sub@example.com");
    let sub = fprs[1].clone();
    let sec = gpg.export_secret_subkeys(&format!("{sub}!"), "");
    let key = SigningKey::load(&sec, None, None).unwrap();
    assert_eq!(key.fingerprint().as_str(), primary);
    assert_eq!(key.signing_fingerprint().as_str(), sub);
    let err = gpg_accepts(&gpg, &key, t.path());
    assert!(err.contains(&sub), "gpg reports the subkey: {err}");
    // Selecting by the subkey's long id or by the primary's fingerprint both work.
    assert!(SigningKey::load(&sec, None, Some(&sub[24..])).is_ok());
    assert!(SigningKey::load(&sec, None, Some(&primary)).is_ok());

    // Certification primary plus an encryption subkey: nothing can sign.
    let nosign = gpg.generate("No Sign <nosign@example.com>", "ed25519", "cert", "0", "");
    gpg.ok(&[
        "--passphrase",
        "",
        "--pinentry-mode",
        "loopback",
        "--quick-add-key",
        &nosign,
        "cv25519",
        "encr",
        "0",
    ]);
    let sec2 = gpg.export_secret(&nosign, "");
    let e = SigningKey::load(&sec2, None, None).unwrap_err();
    assert!(matches!(e, KeyError::NoSigningKey(..)), "{e}");
    binary_refuses(&sec2, None, None, "has no usable signing (sub)key");

    // A key id that is not in the material.
    let e = SigningKey::load(&sec, None, Some("0x0123456789ABCDEF")).unwrap_err();
    assert!(matches!(e, KeyError::KeyIdMismatch { .. }), "{e}");
    assert!(
        e.to_string().contains(&primary),
        "lists what the key holds: {e}"
    );
    binary_refuses(&sec, None, Some(&nosign), "does not match the given key");
    binary_refuses(&sec, None, Some("alice"), "is not a key id or fingerprint");
    // A public key where a secret key belongs.
    let e = SigningKey::load(&gpg.export_public(&primary), None, None).unwrap_err();
    assert!(matches!(e, KeyError::PublicOnly(_)), "{e}");
    binary_refuses(b"hello world", None, None, "not an OpenPGP secret key");
}
