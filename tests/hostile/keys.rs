//! Keys that must not count, crafted with sequoia at chosen times: expired (now, or already
//! when it signed), revoked for any reason (a "superseded" revocation issued after the
//! signature included), created in the future, signatures older than their key, for primary
//! keys and signing subkeys alike. A fresh valid key is the control: its signature verifies.

use std::time::SystemTime;

use sequoia_openpgp::types::{HashAlgorithm, ReasonForRevocation};

use super::corpus::*;

/// A case: demo-lib's manifest signed with `cert` at `signed`, trusted as given.
fn signed_by(name: &str, cert: &sequoia_openpgp::Cert, signed: SystemTime, needle: &str) -> Case {
    let text = unsigned_text(LIB);
    let fpr = signing_fpr(cert);
    let mut c = Case::lib_manifest(
        name,
        clearsign_at(cert, &fpr, &text, signed, HashAlgorithm::SHA512),
        needle,
    );
    c.keys.push(public(cert));
    c.detached = Some((detached_at(cert, &fpr, &text, signed), text));
    c
}

pub fn cases() -> Vec<Case> {
    let now = now();
    let ago = |days: u32| now - DAY * days;
    let ahead = |days: u32| now + DAY * days;
    let mut v = Vec::new();

    let k = craft(ago(30), Some(DAY * 10), None);
    v.push(signed_by(
        "expired-now",
        &k,
        ago(25),
        "is expired now: it expired on",
    ));
    v.push(signed_by(
        "expired-when-it-signed",
        &k,
        ago(5),
        "is expired when it signed",
    ));

    for (name, reason) in [
        ("revoked-compromised", ReasonForRevocation::KeyCompromised),
        (
            "revoked-superseded-later",
            ReasonForRevocation::KeySuperseded,
        ),
        ("revoked-retired-later", ReasonForRevocation::KeyRetired),
        ("revoked-no-reason", ReasonForRevocation::Unspecified),
    ] {
        let k = craft(ago(30), None, None);
        let k = revoke_at(&k, None, reason, ago(2));
        v.push(signed_by(name, &k, ago(20), "is revoked"));
    }

    let k = craft(ahead(3), None, None);
    v.push(signed_by("future-key", &k, ahead(3), "is not valid yet"));
    let k = craft(ago(10), None, None);
    v.push(signed_by(
        "signature-older-than-key",
        &k,
        ago(20),
        "is not valid yet when it signed",
    ));

    // Signing subkeys under a valid primary.
    let k = craft(ago(30), None, Some((ago(30), Some(DAY * 10))));
    v.push(signed_by(
        "subkey-expired-now",
        &k,
        ago(25),
        "the subkey expired on",
    ));
    let k = craft(ago(30), None, Some((ago(30), None)));
    let sub = signing_fpr(&k);
    let k = revoke_at(&k, Some(&sub), ReasonForRevocation::KeySuperseded, ago(2));
    v.push(signed_by(
        "subkey-revoked-superseded-later",
        &k,
        ago(20),
        "is revoked now (subkey",
    ));
    let k = craft(ago(30), None, Some((ago(30), None)));
    let sub = signing_fpr(&k);
    let k = revoke_at(&k, Some(&sub), ReasonForRevocation::KeyCompromised, ago(2));
    v.push(signed_by(
        "subkey-revoked-compromised",
        &k,
        ago(20),
        "is revoked",
    ));
    let k = craft(ago(30), None, Some((ahead(3), None)));
    v.push(signed_by("future-subkey", &k, ahead(3), "is not valid yet"));
    v
}

#[test]
fn invalid_keys_are_refused_each_with_its_own_message() {
    let t = tempfile::tempdir().unwrap();
    for case in cases() {
        assert_refused(t.path(), &case);
    }
}

#[test]
fn a_valid_crafted_key_and_subkey_verify() {
    // The control: the same crafting, without the defect, is accepted.
    let t = tempfile::tempdir().unwrap();
    let now = now();
    for (name, cert) in [
        ("valid-primary", craft(now - DAY * 30, None, None)),
        (
            "valid-subkey",
            craft(
                now - DAY * 30,
                Some(DAY * 365),
                Some((now - DAY * 20, None)),
            ),
        ),
    ] {
        let case = signed_by(name, &cert, now - DAY, "");
        let (cache, keys) = case.materialize(t.path());
        let (ok, out) = verify(&cache, &keys, &[]);
        assert!(ok, "{name}: {out}");
        let signer = cert.fingerprint().to_hex();
        assert!(
            out.contains(&format!("ok      {LIB_ID} (signer {signer}")),
            "{out}"
        );
    }
}
