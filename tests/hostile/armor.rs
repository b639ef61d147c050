//! Byte surgery on the armor of Spack's own signed manifest: every file that is not exactly one
//! cleartext-signed message as GnuPG writes it is refused, whatever sequoia alone would say.

use sequoia_openpgp::types::HashAlgorithm;

use super::corpus::*;

fn replace_once(hay: &[u8], from: &str, to: &str) -> Vec<u8> {
    let s = String::from_utf8(hay.to_vec()).unwrap();
    assert!(s.contains(from), "{from:?} not in the manifest");
    s.replacen(from, to, 1).into_bytes()
}

/// The armor cases, all on demo-lib's manifest.
pub fn cases() -> Vec<Case> {
    let lib = signed_file(LIB);
    let app = signed_file(APP);
    let cat = |a: &[u8], b: &[u8]| [a, b].concat();
    let text = unsigned_text(LIB);
    let fixture = fixture_cert();
    let fpr = fixture.fingerprint();
    let mut v = vec![
        Case::lib_manifest(
            "crlf",
            String::from_utf8(lib.clone())
                .unwrap()
                .replace('\n', "\r\n")
                .into_bytes(),
            "carriage return",
        ),
        Case::lib_manifest(
            "cr-in-body",
            replace_once(&lib, "\"version\":3,\n", "\"version\":3,\r\n"),
            "carriage return",
        ),
        Case::lib_manifest(
            "whitespace-line-ends-headers",
            replace_once(&lib, "Hash: SHA512\n\n", "Hash: SHA512\n \n"),
            "holds only whitespace",
        ),
        Case::lib_manifest(
            "whitespace-line-in-signature-armor",
            replace_once(
                &lib,
                "-----BEGIN PGP SIGNATURE-----\n\n",
                "-----BEGIN PGP SIGNATURE-----\n\t\n",
            ),
            "signature armor",
        ),
        Case::lib_manifest(
            "trailing-text",
            cat(&lib, b"{\"version\":3,\"data\":[]}\n"),
            "continues after",
        ),
        Case::lib_manifest(
            "trailing-blank-lines",
            cat(&lib, b"\n\n"),
            "continues after",
        ),
        Case::lib_manifest(
            "text-before-header",
            cat(b"{\"version\":3}\n", &lib),
            "data before",
        ),
        Case::lib_manifest("blank-line-before-header", cat(b"\n", &lib), "data before"),
        Case::lib_manifest("two-messages", cat(&lib, &app), "continues after"),
        Case::lib_manifest(
            "two-messages-other-first",
            cat(&app, &lib),
            "continues after",
        ),
        Case::lib_manifest(
            "unescaped-dash-line",
            replace_once(&lib, "\"version\":3,\n", "\"version\":3,\n-x\n"),
            "not dash-escaped",
        ),
        Case::lib_manifest(
            "gratuitous-dash-escape",
            replace_once(&lib, "\"version\":3,\n", "- \"version\":3,\n"),
            "dash-escaped",
        ),
        Case::lib_manifest(
            "trailing-space-in-body",
            replace_once(&lib, "\"version\":3,\n", "\"version\":3, \n"),
            "ends with whitespace",
        ),
        Case::lib_manifest(
            "no-hash-header",
            replace_once(&lib, "Hash: SHA512\n", ""),
            "0 'Hash:' armor headers",
        ),
        Case::lib_manifest(
            "two-hash-headers",
            replace_once(&lib, "Hash: SHA512\n", "Hash: SHA512\nHash: SHA512\n"),
            "2 'Hash:' armor headers",
        ),
        Case::lib_manifest(
            "hash-header-list",
            replace_once(&lib, "Hash: SHA512\n", "Hash: SHA256,SHA512\n"),
            "exactly one digest algorithm",
        ),
        Case::lib_manifest(
            "hash-header-mismatch",
            replace_once(&lib, "Hash: SHA512\n", "Hash: SHA256\n"),
            "Hash: SHA256",
        ),
        Case::lib_manifest(
            "unknown-armor-header",
            replace_once(&lib, "Hash: SHA512\n", "Hash: SHA512\nComment: hi\n"),
            "only 'Hash:'",
        ),
        Case::lib_manifest(
            "body-byte-flipped",
            replace_once(&lib, "vnd.spack.install", "vnd.spack.instbll"),
            "bad signature",
        ),
        Case::lib_manifest(
            "garbage-after-checksum",
            replace_once(&lib, "=UPWK\n", "=UPWK\nAAAA\n"),
            "not base64",
        ),
    ];
    // A real signature made with SHA256 under a header claiming SHA512.
    let sha256 = clearsign_at(&fixture, &fpr, &text, now(), HashAlgorithm::SHA256);
    v.push(Case::lib_manifest(
        "hash-header-claims-sha512-for-sha256-signature",
        replace_once(&sha256, "Hash: SHA256\n", "Hash: SHA512\n"),
        "Hash: SHA512",
    ));
    v
}

#[test]
fn malformed_armor_is_refused_naming_the_manifest() {
    let t = tempfile::tempdir().unwrap();
    for case in cases() {
        assert_refused(t.path(), &case);
    }
}

#[test]
fn the_untouched_fixture_verifies() {
    let t = tempfile::tempdir().unwrap();
    let key = t.path().join("k.asc");
    std::fs::write(&key, fixture_public()).unwrap();
    let (ok, out) = verify(&fixtures().join("signed"), &[key], &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("ok      {LIB_ID} (signer {FIXTURE_FPR}")),
        "{out}"
    );
}
