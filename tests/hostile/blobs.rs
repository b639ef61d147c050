//! Substituted content: blobs swapped for attacker-chosen ones (with the manifest re-signed by
//! an untrusted key, left with the old signature, or unsigned), manifests moved to another
//! spec's key, a spec the trusted key never signed, and a gzip bomb as a spec blob.

use std::io::Write;

use sequoia_openpgp::types::HashAlgorithm;
use sha2::Digest;

use super::corpus::*;

const LIB_TARBALL: &str = "aaabfbfcf309a896016154087cab77adb725da675df94849d32b2a0ee0bd7bec";
const LIB_SPEC: &str = "b21f87a953e1e24a549e3b7dfe885b14afafbd689a87ccd704e6bb633488f518";

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}/{digest}", &digest[..2])
}

/// demo-lib's manifest text with the record of `old` pointing at `new` instead.
fn repoint(old: &str, old_len: u64, new: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(unsigned_text(LIB)).unwrap();
    let from = format!("\"contentLength\":{old_len},");
    let to = format!("\"contentLength\":{},", new.len());
    assert!(text.contains(&from) && text.contains(old));
    text.replacen(&from, &to, 1)
        .replacen(old, &sha(new), 1)
        .into_bytes()
}

/// `n` spaces through real `gzip -9` (fast, where a debug-build encoder would take long).
fn gzip_bomb(n: usize) -> Vec<u8> {
    let mut child = std::process::Command::new("gzip")
        .arg("-9c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..n >> 20 {
            stdin.write_all(&chunk).unwrap();
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

pub fn cases() -> Vec<Case> {
    let now = now();
    let attacker = craft(now - DAY * 3, None, None);
    let afpr = signing_fpr(&attacker);
    let evil = b"#!/bin/sh\necho owned\n".to_vec();
    let evil_text = repoint(LIB_TARBALL, 5289, &evil);
    let mut v = Vec::new();

    let mut c = Case::lib_manifest(
        "swapped-blob-resigned-by-untrusted-key",
        clearsign_at(
            &attacker,
            &afpr,
            &evil_text,
            now - DAY,
            HashAlgorithm::SHA512,
        ),
        "untrusted or unknown key",
    );
    c.files.push((blob_path(&sha(&evil)), evil.clone()));
    v.push(c);

    let signed = String::from_utf8(signed_file(LIB)).unwrap();
    let mut c = Case::lib_manifest(
        "swapped-blob-old-signature",
        signed
            .replacen(LIB_TARBALL, &sha(&evil), 1)
            .replacen(
                "\"contentLength\":5289,",
                &format!("\"contentLength\":{},", evil.len()),
                1,
            )
            .into_bytes(),
        "bad signature",
    );
    c.files.push((blob_path(&sha(&evil)), evil.clone()));
    v.push(c);

    let mut c = Case::lib_manifest("swapped-blob-unsigned-manifest", evil_text, "not signed");
    c.files.push((blob_path(&sha(&evil)), evil.clone()));
    v.push(c);

    // The tarball blob itself replaced in place (the manifest untouched).
    v.push(Case {
        files: vec![(blob_path(LIB_TARBALL), evil.clone())],
        manifest: None,
        ..Case::lib_manifest(
            "blob-replaced-in-place",
            signed_file(LIB),
            "the manifest says",
        )
    });

    // demo-lib's validly signed manifest stored as demo-app's: the key never signed that.
    v.push(Case {
        files: vec![(APP.into(), signed_file(LIB))],
        failed: APP_ID,
        manifest: Some(APP.into()),
        ..Case::lib_manifest(
            "manifest-moved-to-another-spec",
            vec![],
            "swapped or misplaced manifest",
        )
    });

    // A spec the index does not name, signed by an untrusted key: found by listing.
    let other = "v3/manifests/spec/demo-lib/demo-lib-1.0-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.spec.manifest.json";
    v.push(Case {
        files: vec![(
            other.into(),
            clearsign_at(
                &attacker,
                &afpr,
                &unsigned_text(LIB),
                now - DAY,
                HashAlgorithm::SHA512,
            ),
        )],
        failed: "demo-lib@1.0/aaaaaaa",
        manifest: Some(other.into()),
        ..Case::lib_manifest(
            "unindexed-spec-signed-by-untrusted-key",
            vec![],
            "untrusted or unknown key",
        )
    });

    // A gzip bomb as demo-lib's spec blob, in a manifest the trusted key did sign.
    let bomb = gzip_bomb(100 << 20);
    let fixture = fixture_cert();
    let bomb_text = repoint(LIB_SPEC, 314, &bomb);
    let mut c = Case::lib_manifest(
        "gzip-bomb-spec-blob",
        clearsign_at(
            &fixture,
            &fixture.fingerprint(),
            &bomb_text,
            now - DAY,
            HashAlgorithm::SHA512,
        ),
        "decompression bomb",
    );
    c.files.push((blob_path(&sha(&bomb)), bomb));
    v.push(c);
    v
}

#[test]
fn substituted_content_is_refused() {
    let t = tempfile::tempdir().unwrap();
    for case in cases() {
        // Empty manifests in the struct update syntax above mean "no LIB edit".
        let mut case = case;
        case.files.retain(|(_, b)| !b.is_empty());
        assert_refused(t.path(), &case);
    }
}

#[test]
fn the_spec_size_cap_is_configurable() {
    let t = tempfile::tempdir().unwrap();
    let case = cases()
        .into_iter()
        .find(|c| c.name == "gzip-bomb-spec-blob")
        .unwrap();
    let (cache, keys) = case.materialize(t.path());
    // The compressed blob (~100 KiB) fits under 1 MiB; inflating stops at the cap.
    let (ok, out) = verify(&cache, &keys, &["--max-spec-bytes", "1048576"]);
    assert!(!ok);
    assert!(
        out.contains("larger than 1048576 bytes once decompressed"),
        "{out}"
    );
    // A compressed blob already over the cap is refused before it is read.
    let (ok, out) = verify(&cache, &keys, &["--max-spec-bytes", "65536"]);
    assert!(!ok);
    assert!(
        out.contains("over the 65536-byte limit for spec JSON"),
        "{out}"
    );
}
