//! Tampering with a signed buildcache: each change is rejected by `slurm-factory verify`,
//! naming the spec and the reason.

use std::path::{Path, PathBuf};

use super::common;
use super::support::*;

const LIB: &str =
    "v3/manifests/spec/demo-lib/demo-lib-1.0-or7dti47ajgrd2y5bgs2dujuath2dz3p.spec.manifest.json";
const APP: &str =
    "v3/manifests/spec/demo-app/demo-app-2.0-resh3sdm7oulbae23jllsxfemfp24cba.spec.manifest.json";

/// A buildcache signed with the fixture key by our own binary.
fn signed_copy(root: &Path) -> PathBuf {
    let dest = root.join("mirror");
    let mut c = common::scrubbed("sign-and-upload");
    c.env(
        "GPG_PRIVATE_KEY",
        String::from_utf8(fixture_secret()).unwrap(),
    )
    .arg("--source")
    .arg(fixtures().join("unsigned"))
    .arg("--destination")
    .arg(&dest);
    let (ok, out) = run(c);
    assert!(ok, "{out}");
    dest
}

fn verify(dir: &Path, keys: &[&Path]) -> (bool, String) {
    let mut c = common::scrubbed("slurm-factory");
    c.arg("verify")
        .arg("--buildcache")
        .arg(format!("file://{}", dir.display()));
    for k in keys {
        c.arg("--trusted-key").arg(k);
    }
    run(c)
}

fn flip(path: &Path, pick: impl Fn(&[u8]) -> usize) {
    let mut b = std::fs::read(path).unwrap();
    let i = pick(&b);
    b[i] = if b[i] == b'a' { b'b' } else { b'a' };
    std::fs::write(path, b).unwrap();
}

fn find(hay: &[u8], needle: &str) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap_or_else(|| panic!("{needle} not found"))
}

#[test]
fn tampered_buildcaches_are_rejected_naming_spec_and_reason() {
    let t = tempfile::tempdir().unwrap();
    let good = signed_copy(t.path());
    let pubkey = fixture_public();
    let (ok, out) = verify(&good, &[&pubkey]);
    assert!(ok, "untampered copy must verify: {out}");

    let case = |name: &str, change: &dyn Fn(&Path)| -> String {
        let dir = t.path().join(name);
        copy_tree(&good, &dir);
        change(&dir);
        let (ok, out) = verify(&dir, &[&pubkey]);
        assert!(!ok, "{name}: verify must fail: {out}");
        out
    };

    // One byte of the signed manifest text (inside the "mediaType" value).
    let out = case("manifest-byte", &|d| {
        flip(&d.join(LIB), |b| find(b, "vnd.spack.install") + 4)
    });
    assert!(out.contains("FAILED  demo-lib@1.0/or7dti4"), "{out}");
    assert!(out.contains("bad signature"), "{out}");
    assert!(
        !out.contains("FAILED  demo-app"),
        "only the tampered spec fails: {out}"
    );

    // One byte of a blob (the demo-app tarball).
    let out = case("blob-byte", &|d| {
        flip(
            &d.join(
                "blobs/sha256/96/96a55c590468f224a92393a4a5f5afe8247c27656ad94ade35768a3da116e366",
            ),
            |_| 1000,
        )
    });
    assert!(out.contains("FAILED  demo-app@2.0/resh3sd"), "{out}");
    assert!(
        out.contains("has sha256") && out.contains("the manifest says 96a55c59"),
        "{out}"
    );

    // One byte of the signature's base64, in the middle of the signature MPI.
    let out = case("signature-byte", &|d| {
        flip(&d.join(APP), |b| find(b, "-----END PGP SIGNATURE") - 80)
    });
    assert!(out.contains("FAILED  demo-app@2.0/resh3sd"), "{out}");
    assert!(out.contains("signature:"), "{out}");

    // demo-lib's validly signed manifest stored as demo-app's.
    let out = case("swapped", &|d| {
        std::fs::copy(d.join(LIB), d.join(APP)).unwrap();
    });
    assert!(out.contains("FAILED  demo-app@2.0/resh3sd"), "{out}");
    assert!(out.contains("swapped or misplaced manifest"), "{out}");

    // Signed by a key nobody trusts.
    if let Some(gpg) = Gpg::new() {
        let other = gpg.generate("Mallory <mallory@example.com>", "ed25519", "sign", "0", "");
        let key = slurm_factory::pgp::SigningKey::load(&gpg.export_secret(&other, ""), None, None)
            .unwrap();
        let out = case("untrusted", &|d| {
            // The signed text is the unsigned fixture's manifest, byte for byte.
            let text = std::fs::read(fixtures().join("unsigned").join(LIB)).unwrap();
            std::fs::write(d.join(LIB), key.clearsign(&text).unwrap()).unwrap();
        });
        assert!(out.contains("FAILED  demo-lib@1.0/or7dti4"), "{out}");
        assert!(out.contains("untrusted or unknown key"), "{out}");

        // A trusted key that was revoked afterwards: its signatures no longer count.
        let dir = t.path().join("revoked");
        let rk = gpg.generate("Revoked Later <rl@example.com>", "ed25519", "sign", "0", "");
        let key =
            slurm_factory::pgp::SigningKey::load(&gpg.export_secret(&rk, ""), None, None).unwrap();
        copy_tree(&good, &dir);
        for m in spec_manifests(&dir) {
            let rel = m.strip_prefix(&dir).unwrap();
            let text = std::fs::read(fixtures().join("unsigned").join(rel)).unwrap();
            std::fs::write(&m, key.clearsign(&text).unwrap()).unwrap();
        }
        let before = dir.join("before.asc");
        std::fs::write(&before, gpg.export_public(&rk)).unwrap();
        assert!(verify(&dir, &[&before]).0, "valid before revocation");
        gpg.revoke(&rk);
        let after = dir.join("after.asc");
        std::fs::write(&after, gpg.export_public(&rk)).unwrap();
        let (ok, out) = verify(&dir, &[&after]);
        assert!(!ok && out.contains("is revoked"), "{out}");
    }

    // Unsigned manifests are refused unless explicitly allowed.
    let (ok, out) = verify(&fixtures().join("unsigned"), &[&pubkey]);
    assert!(!ok && out.contains("not signed"), "{out}");
    let mut c = common::scrubbed("slurm-factory");
    c.args(["verify", "--allow-unsigned", "--buildcache"])
        .arg(fixtures().join("unsigned"));
    let (ok, out) = run(c);
    assert!(ok, "{out}");
}
