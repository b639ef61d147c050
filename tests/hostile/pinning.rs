//! Pinned trust: `--trusted-fingerprint` takes from the cache only the key with exactly that
//! fingerprint; a key the cache publishes is never trusted because it is published.

use sequoia_openpgp::types::HashAlgorithm;
use sha2::Digest;

use super::corpus::*;

const KEY_MANIFEST: &str =
    "v3/manifests/key/1A00B8893F4FAE1A76DB389DE145321FBC9F04BD.key.manifest.json";

fn pin(cache: &std::path::Path, fprs: &[&str]) -> (bool, String) {
    let mut args = Vec::new();
    for f in fprs {
        args.push("--trusted-fingerprint");
        args.push(*f);
    }
    verify(cache, &[], &args)
}

#[test]
fn a_pinned_fingerprint_resolves_against_the_published_key() {
    let (ok, out) = pin(&fixtures().join("signed"), &[FIXTURE_FPR]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("trusting {FIXTURE_FPR}")), "{out}");
    // Lower case and gpg's spaced form pin the same key.
    let spaced = "1a00 b889 3f4f ae1a 76db  389d e145 321f bc9f 04bd";
    assert!(pin(&fixtures().join("signed"), &[spaced]).0);
    // A key id is not a pin.
    let (ok, out) = pin(&fixtures().join("signed"), &["E145321FBC9F04BD"]);
    assert!(!ok && out.contains("not an OpenPGP fingerprint"), "{out}");
}

#[test]
fn a_mirror_cannot_choose_the_trusted_key() {
    let t = tempfile::tempdir().unwrap();
    let now = now();
    let attacker = craft(now - DAY * 3, None, None);
    let afpr = signing_fpr(&attacker);
    let apub = public(&attacker);

    // The attacker re-signs every manifest and publishes their key under the pinned
    // fingerprint's key manifest.
    let cache = t.path().join("cache");
    copy_tree(&fixtures().join("signed"), &cache);
    for rel in [LIB, APP] {
        std::fs::write(
            cache.join(rel),
            clearsign_at(
                &attacker,
                &afpr,
                &unsigned_text(rel),
                now - DAY,
                HashAlgorithm::SHA512,
            ),
        )
        .unwrap();
    }
    let digest = hex::encode(sha2::Sha256::digest(&apub));
    let blob = cache.join(format!("blobs/sha256/{}/{digest}", &digest[..2]));
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::write(&blob, &apub).unwrap();
    let manifest = format!(
        "{{\n\"version\":3,\n\"data\":[\n{{\n\"contentLength\":{},\n\"mediaType\":\"application/pgp-keys\",\n\"compression\":\"none\",\n\"checksumAlgorithm\":\"sha256\",\n\"checksum\":\"{digest}\"\n}}\n]\n}}",
        apub.len()
    );
    std::fs::write(cache.join(KEY_MANIFEST), &manifest).unwrap();
    let (ok, out) = pin(&cache, &[FIXTURE_FPR]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("not the pinned {FIXTURE_FPR}")) && out.contains(KEY_MANIFEST),
        "{out}"
    );

    // The attacker's own key manifest: published, never trusted unless pinned.
    let own = format!(
        "v3/manifests/key/{}.key.manifest.json",
        attacker.fingerprint().to_hex()
    );
    std::fs::write(cache.join(&own), &manifest).unwrap();
    std::fs::copy(
        fixtures().join("signed").join(KEY_MANIFEST),
        cache.join(KEY_MANIFEST),
    )
    .unwrap();
    let (ok, out) = pin(&cache, &[FIXTURE_FPR]);
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("FAILED  {LIB_ID}")), "{out}");
    assert!(out.contains("untrusted or unknown key"), "{out}");
    assert!(
        !out.contains(&format!("trusting {}", attacker.fingerprint().to_hex())),
        "{out}"
    );

    // A fingerprint the cache does not publish at all.
    let (ok, out) = pin(&cache, &["0123456789ABCDEF0123456789ABCDEF01234567"]);
    assert!(
        !ok && out.contains("publishes no key 0123456789ABCDEF"),
        "{out}"
    );
}
