//! Nothing the binary prints or writes during a signing run contains the private key, the
//! passphrase, or any substring of them.

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine as _;
use sequoia_openpgp as openpgp;

use openpgp::packet::key::SecretKeyMaterial;
use openpgp::parse::Parse;
use openpgp::serialize::MarshalInto;

use super::common;
use super::support::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The secret-only bytes of a TSK: each key's secret MPIs (or their ciphertext when protected).
fn secret_bytes(tsk: &[u8]) -> Vec<Vec<u8>> {
    let cert = openpgp::Cert::from_bytes(tsk).unwrap();
    let mut out = Vec::new();
    for ka in cert.keys().secret() {
        match ka.key().optional_secret().unwrap() {
            SecretKeyMaterial::Unencrypted(u) => out.push(u.map(|m| m.to_vec().unwrap())),
            SecretKeyMaterial::Encrypted(e) => {
                if let Ok(ct) = e.ciphertext() {
                    out.push(ct.to_vec());
                }
            }
        }
    }
    assert!(!out.is_empty());
    out
}

/// Every 16-char window of `s`.
fn windows(s: &str, n: usize) -> impl Iterator<Item = &str> {
    (0..s.len().saturating_sub(n - 1)).map(move |i| &s[i..i + n])
}

/// Needles derived from secret bytes: 16-byte raw windows, hex windows, and base64 windows at
/// all three byte alignments (without the edge characters that depend on neighbours).
fn needles(secrets: &[Vec<u8>]) -> (Vec<Vec<u8>>, BTreeSet<String>) {
    let mut raw = Vec::new();
    let mut text = BTreeSet::new();
    for s in secrets {
        for w in s.windows(16) {
            raw.push(w.to_vec());
        }
        let hex = hex::encode(s);
        for w in windows(&hex, 32) {
            text.insert(w.to_owned());
            text.insert(w.to_uppercase());
        }
        for off in 0..3 {
            if s.len() <= off + 24 {
                continue;
            }
            let enc = B64.encode(&s[off..]);
            let inner = &enc[4..enc.len() - 8];
            for w in windows(inner, 16) {
                text.insert(w.to_owned());
            }
        }
    }
    (raw, text)
}

fn scan_signing_run(tsk: &[u8], public_armor: &[u8], passphrase: &str) {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("mirror");
    let env_value = B64.encode(tsk);
    let mut c = common::in_actions("sign-and-upload", t.path());
    c.env("GPG_PRIVATE_KEY", &env_value)
        .env("GPG_PASSPHRASE", passphrase)
        .env("RUNNER_DEBUG", "1")
        .arg("--source")
        .arg(fixtures().join("unsigned"))
        .arg("--destination")
        .arg(format!("file://{}", dest.display()));
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // `::add-mask::` lines are consumed by the runner and never shown in the log; they are
    // the one place a secret may appear, and they must be there.
    let masks: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("::add-mask::"))
        .collect();
    assert!(masks.contains(&passphrase), "the passphrase is masked");
    assert!(
        masks.contains(&env_value.as_str()),
        "the key value is masked"
    );
    let shown: String = stdout
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(shown.contains("signing key: "), "{shown}");

    // Everything printed or written: both streams, the runner files, the destination tree.
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("stdout".into(), shown.into_bytes()),
        ("stderr".into(), out.stderr.clone()),
    ];
    for (rel, bytes) in read_tree(t.path()) {
        files.push((rel, bytes));
    }
    assert!(files.iter().any(|(n, _)| n.contains("spec.manifest.json")));

    let (raw, mut text) = needles(&secret_bytes(tsk));
    // Windows of the secret as given (base64 of armor) and of the armor's body, minus what
    // the public key export also contains (public by definition: the published key blob).
    let public_text = String::from_utf8_lossy(public_armor).replace('\n', "");
    let public_b64 = B64.encode(public_armor);
    let armor_body: String = String::from_utf8_lossy(tsk)
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.contains(':') && !l.is_empty())
        .collect();
    for src in [env_value.as_str(), armor_body.as_str()] {
        for w in windows(src, 16) {
            if !public_text.contains(w) && !public_b64.contains(w) {
                text.insert(w.to_owned());
            }
        }
    }
    if !passphrase.is_empty() {
        text.insert(passphrase.to_owned());
        for w in windows(passphrase, 12) {
            text.insert(w.to_owned());
        }
    }
    assert!(text.len() > 100, "enough needles: {}", text.len());
    // The check can fail: the key as given, or its armor, would be caught.
    let armor_flat = String::from_utf8_lossy(tsk).replace('\n', "");
    assert!(text.iter().any(|n| armor_flat.contains(n.as_str())));
    assert!(text.iter().any(|n| env_value.contains(n.as_str())));
    for (name, bytes) in &files {
        let hay = String::from_utf8_lossy(bytes);
        for n in &text {
            assert!(
                !hay.contains(n.as_str()),
                "{name} contains secret substring {n:?}"
            );
        }
        for r in &raw {
            assert!(
                !bytes.windows(r.len()).any(|w| w == r.as_slice()),
                "{name} contains 16 raw secret bytes"
            );
        }
    }
    // No stray files outside the destination and the runner files.
    for (rel, _) in read_tree(t.path()) {
        assert!(
            rel.starts_with("mirror/")
                || ["output", "env", "summary.md", "state", "path"].contains(&rel.as_str()),
            "unexpected file {rel}"
        );
    }
    let _ = Path::new("");
}

#[test]
fn signing_run_leaks_no_key_material_unprotected_rsa() {
    scan_signing_run(
        &fixture_secret(),
        &std::fs::read(fixture_public()).unwrap(),
        "an unused passphrase that must still never show",
    );
}

#[test]
fn signing_run_leaks_no_key_material_protected_ed25519() {
    let Some(gpg) = Gpg::new() else { return };
    let pass = "Tr0ub4dor&3-long-enough-to-window";
    let fpr = gpg.generate("Scan <scan@example.com>", "ed25519", "sign", "0", pass);
    scan_signing_run(
        &gpg.export_secret(&fpr, pass),
        &gpg.export_public(&fpr),
        pass,
    );
}
