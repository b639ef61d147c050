//! `sign-and-upload` on the Spack fixtures: GnuPG/sqv interop, key publication as
//! `spack buildcache keys --install --trust` reads it, index merge, idempotency, dry run,
//! publish modes and input errors.

use std::io::Write;
use std::path::Path;

use slurm_factory::buildcache::index::Index;
use slurm_factory::pgp::TrustedKeys;

use super::common;
use super::support::*;

/// Runs `sign-and-upload` inside a simulated Actions step; returns (success, output, outputs file).
fn sign_upload(dir: &Path, source: &Path, dest: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut c = common::in_actions("sign-and-upload", dir);
    c.env(
        "GPG_PRIVATE_KEY",
        String::from_utf8(fixture_secret()).unwrap(),
    )
    .arg("--source")
    .arg(source)
    .arg("--destination")
    .arg(format!("file://{}", dest.display()))
    .args(extra);
    let (ok, out) = run(c);
    let outputs = std::fs::read_to_string(dir.join("output")).unwrap();
    (ok, out, outputs)
}

#[test]
fn signed_fixture_verifies_with_gnupg_and_sqv_and_keys_install_like_spack() {
    let Some(gpg) = Gpg::new() else { return };
    let Some(sqv) = common::require_tool("sqv") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("mirror");
    let (ok, out, outputs) = sign_upload(t.path(), &fixtures().join("unsigned"), &dest, &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains(FIXTURE_FPR),
        "prints the public fingerprint: {out}"
    );
    assert!(outputs.contains("specs-published<<"), "{outputs}");
    assert!(outputs.contains("\n2\n"), "{outputs}");
    assert!(
        outputs.contains(&format!("file://{}", dest.display())),
        "{outputs}"
    );
    let summary = std::fs::read_to_string(t.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("| `demo-lib@1.0/or7dti4` | new | 2 |"),
        "{summary}"
    );

    // Do what `spack buildcache keys --install --trust` does (binary_distribution._get_keys +
    // spack.util.gpg.trust): key index manifest -> key index blob -> key manifest -> key blob
    // -> `gpg --import` + ultimate ownertrust.
    let read_manifest_blob = |key: &str| {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dest.join(key)).unwrap()).unwrap();
        let sum = m["data"][0]["checksum"].as_str().unwrap().to_owned();
        std::fs::read(dest.join(format!("blobs/sha256/{}/{sum}", &sum[..2]))).unwrap()
    };
    let key_index: serde_json::Value =
        serde_json::from_slice(&read_manifest_blob("v3/manifests/key/keys.manifest.json")).unwrap();
    let fprs: Vec<&String> = key_index["keys"].as_object().unwrap().keys().collect();
    assert_eq!(fprs, [FIXTURE_FPR]);
    let key_blob = read_manifest_blob(&format!("v3/manifests/key/{FIXTURE_FPR}.key.manifest.json"));
    assert!(!String::from_utf8_lossy(&key_blob).contains("PRIVATE"));
    let key_path = t.path().join("key.pub");
    std::fs::write(&key_path, &key_blob).unwrap();
    gpg.import(&key_path);
    let mut trust = gpg
        .cmd()
        .arg("--import-ownertrust")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(trust.stdin.take().unwrap(), "{FIXTURE_FPR}:6:").unwrap();
    assert!(trust.wait().unwrap().success());

    let manifests = spec_manifests(&dest);
    assert_eq!(manifests.len(), 2);
    for m in &manifests {
        let (good, err) = gpg.verify(&[m]);
        assert!(good, "gpg --verify {}: {err}", m.display());
        assert!(
            err.contains("Good signature") && err.contains("[ultimate]"),
            "{err}"
        );
        let signed = std::fs::read_to_string(m).unwrap();
        assert!(signed.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{\n"));
        assert_eq!(
            signed.matches("Hash:").count(),
            1,
            "exactly one Hash header"
        );
        // The signed text is the unsigned manifest, byte for byte.
        let rel = m.strip_prefix(&dest).unwrap();
        let (body, sig) = split_cleartext(&signed);
        assert_eq!(
            body.as_bytes(),
            std::fs::read(fixtures().join("unsigned").join(rel)).unwrap()
        );
        // sqv (Sequoia's verifier, as Debian ships it) checks the signature over that text.
        let sig_path = t.path().join("m.sig");
        let body_path = t.path().join("m.txt");
        std::fs::write(&sig_path, sig).unwrap();
        std::fs::write(&body_path, &body).unwrap();
        let out = std::process::Command::new(&sqv)
            .arg("--keyring")
            .arg(fixture_public())
            .arg(&sig_path)
            .arg(&body_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sqv: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), FIXTURE_FPR);
    }
    // Blobs are the source's bytes; the index is exactly the one Spack wrote for these specs.
    let src = read_tree(&fixtures().join("unsigned"));
    let got = read_tree(&dest);
    for (k, v) in src.iter().filter(|(k, _)| k.starts_with("blobs/")) {
        assert_eq!(got.get(k), Some(v), "{k}");
    }
    assert_eq!(
        got["v3/manifests/index/index.manifest.json"],
        std::fs::read(fixtures().join("signed/v3/manifests/index/index.manifest.json")).unwrap()
    );
    assert_eq!(got["v3/layout.json"], br#"{"signing": "gpg"}"#);
}

#[test]
fn signatures_are_v4_sha512() {
    let Some(gpg) = Gpg::new() else { return };
    let key = slurm_factory::pgp::SigningKey::load(&fixture_secret(), None, None).unwrap();
    let signed = key.clearsign(b"{\n\"x\":1\n}").unwrap();
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("m.asc");
    let (_, sig) = split_cleartext(&String::from_utf8(signed).unwrap());
    std::fs::write(&p, sig).unwrap();
    let out = gpg.ok(&["--list-packets", p.to_str().unwrap()]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains(":signature packet:"), "{listing}");
    assert!(listing.contains("version 4, created"), "{listing}");
    assert!(
        listing.contains("digest algo 10"),
        "SHA512 is digest algo 10: {listing}"
    );
    assert!(
        listing.contains("sigclass 0x01"),
        "canonical text signature: {listing}"
    );
}

#[test]
fn our_verifier_accepts_spack_and_gnupg_signed_manifests() {
    let Some(gpg) = Gpg::new() else { return };
    let mut trusted = TrustedKeys::new();
    trusted
        .add_armored(&std::fs::read(fixture_public()).unwrap())
        .unwrap();
    // Spack-written (gpg 2.x under `spack buildcache push`).
    for m in spec_manifests(&fixtures().join("signed")) {
        let v = trusted
            .verify_cleartext(&std::fs::read(&m).unwrap())
            .unwrap();
        assert_eq!(v.signer.as_str(), FIXTURE_FPR);
        let rel = m.strip_prefix(fixtures().join("signed")).unwrap();
        assert_eq!(
            v.text,
            std::fs::read(fixtures().join("unsigned").join(rel)).unwrap()
        );
    }
    // GnuPG-signed here and now.
    let sec = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(sec.path(), fixture_secret()).unwrap();
    gpg.import(sec.path());
    let t = tempfile::tempdir().unwrap();
    for m in spec_manifests(&fixtures().join("unsigned")) {
        let out = t.path().join("signed.json");
        gpg.ok(&[
            "--yes",
            "--clearsign",
            "--digest-algo",
            "SHA512",
            "--local-user",
            FIXTURE_FPR,
            "--output",
            out.to_str().unwrap(),
            m.to_str().unwrap(),
        ]);
        let v = trusted
            .verify_cleartext(&std::fs::read(&out).unwrap())
            .unwrap();
        assert_eq!(v.signer.as_str(), FIXTURE_FPR);
        assert_eq!(v.text, std::fs::read(&m).unwrap());
    }
    // And the CLI over the whole Spack-signed fixture.
    let (ok, out) = run({
        let mut c = common::scrubbed("slurm-factory");
        c.args(["verify", "--buildcache"])
            .arg(fixtures().join("signed"))
            .arg("--trusted-key")
            .arg(fixture_public());
        c
    });
    assert!(ok, "{out}");
    assert!(out.contains("ok      demo-app@2.0/resh3sd"), "{out}");
}

#[test]
fn detached_signature_verifies_with_gpg() {
    let Some(gpg) = Gpg::new() else { return };
    let key = slurm_factory::pgp::SigningKey::load(&fixture_secret(), None, None).unwrap();
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("slurm.tar.gz");
    std::fs::write(&data, vec![7u8; 100_000]).unwrap();
    let asc = t.path().join("slurm.tar.gz.asc");
    std::fs::write(
        &asc,
        key.detached_sign(std::fs::File::open(&data).unwrap())
            .unwrap(),
    )
    .unwrap();
    gpg.import(&fixture_public());
    let (good, err) = gpg.verify(&[&asc, &data]);
    assert!(good, "{err}");
    let mut trusted = TrustedKeys::new();
    trusted
        .add_armored(&std::fs::read(fixture_public()).unwrap())
        .unwrap();
    let sig = std::fs::read(&asc).unwrap();
    assert!(
        trusted
            .verify_detached(&sig, &std::fs::read(&data).unwrap())
            .is_ok()
    );
    let mut bad = std::fs::read(&data).unwrap();
    bad[500] ^= 1;
    assert!(trusted.verify_detached(&sig, &bad).is_err());
    std::fs::write(&data, &bad).unwrap();
    assert!(!gpg.verify(&[&asc, &data]).0);
}

/// A source buildcache with only the given specs of the unsigned fixture.
fn partial_source(dir: &Path, names: &[&str]) {
    let src = fixtures().join("unsigned");
    for (rel, bytes) in read_tree(&src) {
        let keep = if rel.starts_with("v3/manifests/spec/") {
            names
                .iter()
                .any(|n| rel.starts_with(&format!("v3/manifests/spec/{n}/")))
        } else {
            !rel.starts_with("v3/manifests/index")
        };
        if keep {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
    }
}

fn index_of(dest: &Path) -> Index {
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dest.join("v3/manifests/index/index.manifest.json")).unwrap(),
    )
    .unwrap();
    let sum = m["data"][0]["checksum"].as_str().unwrap();
    Index::parse(&std::fs::read(dest.join(format!("blobs/sha256/{}/{sum}", &sum[..2]))).unwrap())
        .unwrap()
}

#[test]
fn merged_index_is_the_union_and_reruns_are_byte_identical() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("mirror");
    let old = t.path().join("old");
    let new = t.path().join("new");
    partial_source(&old, &["demo-lib"]);
    partial_source(&new, &["demo-app"]);
    let (ok, out, _) = sign_upload(t.path(), &old, &dest, &[]);
    assert!(ok, "{out}");
    let first = index_of(&dest);
    assert_eq!(first.in_buildcache().len(), 1);
    let (ok, out, _) = sign_upload(t.path(), &new, &dest, &[]);
    assert!(ok, "{out}");
    let merged = index_of(&dest);
    assert_eq!(
        merged.in_buildcache().into_iter().collect::<Vec<_>>(),
        [
            "or7dti47ajgrd2y5bgs2dujuath2dz3p",
            "resh3sdm7oulbae23jllsxfemfp24cba"
        ],
        "old spec kept, new spec added"
    );
    // Same bytes as the index Spack wrote for the two specs pushed together.
    assert_eq!(
        merged.to_json(),
        std::fs::read(
            fixtures().join("signed/blobs/sha256/3b/3b1a943f61eb419b1398ac1706576c10250dafaa2a9f7fa19c13d8a2288606bc")
        )
        .unwrap()
    );
    assert_eq!(spec_manifests(&dest).len(), 2);

    // Re-running either input changes nothing at all.
    let before = read_tree(&dest);
    for src in [&new, &old] {
        let (ok, out, outputs) = sign_upload(t.path(), src, &dest, &[]);
        assert!(ok, "{out}");
        assert!(
            outputs.contains("bytes-uploaded<<") && outputs.contains("\n0\n"),
            "{outputs}"
        );
        assert_eq!(read_tree(&dest), before, "re-run must be byte-identical");
    }
}

#[test]
fn dry_run_reports_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("mirror");
    let (ok, out, _) = sign_upload(
        t.path(),
        &fixtures().join("unsigned"),
        &dest,
        &["--dry-run"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("would write new"), "{out}");
    assert!(
        out.contains("v3/manifests/index/index.manifest.json"),
        "{out}"
    );
    assert!(!dest.exists(), "dry run created the destination");
    // On an existing destination it reports the pending changes only.
    let (ok, out, _) = sign_upload(t.path(), &fixtures().join("unsigned"), &dest, &[]);
    assert!(ok, "{out}");
    let before = read_tree(&dest);
    let (ok, out, _) = sign_upload(
        t.path(),
        &fixtures().join("unsigned"),
        &dest,
        &["--dry-run"],
    );
    assert!(ok, "{out}");
    assert!(!out.contains("would write"), "nothing to change: {out}");
    assert_eq!(read_tree(&dest), before);
}

/// The DAG hashes of the Spack-written fixture specs.
const DEMO_LIB: &str = "or7dti47ajgrd2y5bgs2dujuath2dz3p";
const DEMO_APP: &str = "resh3sdm7oulbae23jllsxfemfp24cba";

/// Adds a synthetic `slurm` spec (test-made, in Spack's v3 format) to a copy of the fixture.
/// It links the fixture's demo-lib (a run-time dependency) and needs demo-app only to build.
fn source_with_slurm(dir: &Path) {
    use slurm_factory::buildcache::{BlobRecord, Manifest};
    copy_tree(&fixtures().join("unsigned"), dir);
    let hash = "abcdefghijklmnopqrstuvwxyz234567";
    let spec = format!(
        r#"{{"spec":{{"_meta":{{"version":5}},"nodes":[{{"name":"slurm","version":"25.11.6","namespace":"builtin","hash":"{hash}","dependencies":[{{"name":"demo-lib","hash":"{DEMO_LIB}","parameters":{{"deptypes":["build","link"],"virtuals":[]}}}},{{"name":"demo-app","hash":"{DEMO_APP}","parameters":{{"deptypes":["build"],"virtuals":[]}}}}]}}]}},"buildcache_layout_version":2}}"#
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(spec.as_bytes()).unwrap();
    let spec_gz = gz.finish().unwrap();
    let tarball = b"not really a tarball, but content-addressed bytes".to_vec();
    let recs = vec![
        BlobRecord::for_bytes(
            &tarball,
            "application/vnd.spack.install.v2.tar+gzip",
            "gzip",
        ),
        BlobRecord::for_bytes(&spec_gz, "application/vnd.spack.spec.v5+json", "gzip"),
    ];
    for (rec, bytes) in recs.iter().zip([&tarball, &spec_gz]) {
        let p = dir.join(rec.key().unwrap());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    let m = dir.join(format!(
        "v3/manifests/spec/slurm/slurm-25.11.6-{hash}.spec.manifest.json"
    ));
    std::fs::create_dir_all(m.parent().unwrap()).unwrap();
    std::fs::write(m, Manifest::new(recs).to_spack_json()).unwrap();
}

#[test]
fn publish_modes() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    source_with_slurm(&src);
    // slurm-only: Slurm and its run-time (link/run) closure are signed and indexed; a
    // dependency needed only to build Slurm is not.
    let dest = t.path().join("slurm-only");
    let (ok, out, outputs) = sign_upload(t.path(), &src, &dest, &["--publish", "slurm-only"]);
    assert!(ok, "{out}");
    assert!(outputs.contains("\n2\n"), "{outputs}");
    let mut manifests: Vec<String> = spec_manifests(&dest)
        .iter()
        .map(|m| m.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    manifests.sort();
    assert_eq!(
        manifests,
        [
            format!("demo-lib-1.0-{DEMO_LIB}.spec.manifest.json"),
            "slurm-25.11.6-abcdefghijklmnopqrstuvwxyz234567.spec.manifest.json".to_owned()
        ]
    );
    assert_eq!(index_of(&dest).len(), 2);
    assert!(
        dest.join("blobs/sha256/aa").exists(),
        "demo-lib's tarball (aaabfbfc...) is published"
    );
    assert!(
        !dest.join("blobs/sha256/96").exists(),
        "demo-app's tarball (96a55c59...), build-only, is not"
    );
    // all: everything.
    let dest = t.path().join("all");
    let (ok, out, _) = sign_upload(t.path(), &src, &dest, &["--publish", "all"]);
    assert!(ok, "{out}");
    assert_eq!(spec_manifests(&dest).len(), 3);
    // none: nothing, successfully.
    let dest = t.path().join("none");
    let (ok, out, outputs) = sign_upload(t.path(), &src, &dest, &["--publish", "none"]);
    assert!(ok, "{out}");
    assert!(out.contains("nothing was signed or published"), "{out}");
    assert!(
        outputs.contains("specs-published<<") && outputs.contains("\n0\n"),
        "{outputs}"
    );
    assert!(!dest.exists());
    // slurm-only without a slurm spec fails before writing.
    let dest = t.path().join("no-slurm");
    let (ok, out, _) = sign_upload(
        t.path(),
        &fixtures().join("unsigned"),
        &dest,
        &["--publish", "slurm-only"],
    );
    assert!(!ok);
    assert!(out.contains("no spec named `slurm`"), "{out}");
    assert!(!dest.exists());
    let (ok, out, _) = sign_upload(t.path(), &src, &dest, &["--publish", "some"]);
    assert!(
        !ok && out.contains("not one of: all, slurm-only, none"),
        "{out}"
    );
}

#[test]
fn bad_inputs_fail_before_writing() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("mirror");
    // Missing source.
    let (ok, out, _) = sign_upload(t.path(), &t.path().join("nope"), &dest, &[]);
    assert!(
        !ok && out.contains("does not exist or is not a directory"),
        "{out}"
    );
    assert!(!dest.exists());
    // A corrupt blob in the source: named, nothing written.
    let src = t.path().join("src");
    copy_tree(&fixtures().join("unsigned"), &src);
    let blob = src
        .join("blobs/sha256/aa/aaabfbfcf309a896016154087cab77adb725da675df94849d32b2a0ee0bd7bec");
    let mut b = std::fs::read(&blob).unwrap();
    b[100] ^= 0x40;
    std::fs::write(&blob, b).unwrap();
    let (ok, out, _) = sign_upload(t.path(), &src, &dest, &[]);
    assert!(!ok);
    assert!(
        out.contains("demo-lib@1.0/or7dti4") && out.contains("has sha256"),
        "{out}"
    );
    assert!(out.contains("nothing was written"), "{out}");
    assert!(!dest.exists());
    // A destination whose index cannot be merged: refused before any write.
    let bad_dest = t.path().join("bad-dest");
    copy_tree(&fixtures().join("signed"), &bad_dest);
    let idx = bad_dest
        .join("blobs/sha256/3b/3b1a943f61eb419b1398ac1706576c10250dafaa2a9f7fa19c13d8a2288606bc");
    std::fs::write(&idx, b"{}").unwrap();
    let before = read_tree(&bad_dest);
    let (ok, out, _) = sign_upload(t.path(), &fixtures().join("unsigned"), &bad_dest, &[]);
    assert!(
        !ok && out.contains("cannot be read and merged; nothing was written"),
        "{out}"
    );
    assert_eq!(read_tree(&bad_dest), before);
    // No key.
    let mut c = common::in_actions("sign-and-upload", t.path());
    c.arg("--source")
        .arg(fixtures().join("unsigned"))
        .arg("--destination")
        .arg(format!("file://{}", dest.display()));
    let (ok, out) = run(c);
    assert!(!ok && out.contains("no signing key was given"), "{out}");
    assert!(!dest.exists());
    // s3:// without any AWS credentials: refused before anything is signed or uploaded.
    let mut c = common::scrubbed("sign-and-upload");
    c.env(
        "GPG_PRIVATE_KEY",
        String::from_utf8(fixture_secret()).unwrap(),
    )
    .arg("--source")
    .arg(fixtures().join("unsigned"))
    .args(["--destination", "s3://bucket/prefix"]);
    let (ok, out) = run(c);
    assert!(!ok && out.contains("AWS credentials"), "{out}");
    // --key-file works as well as the environment.
    let key = t.path().join("key.asc");
    std::fs::write(&key, fixture_secret()).unwrap();
    let mut c = common::scrubbed("sign-and-upload");
    c.arg("--source")
        .arg(fixtures().join("unsigned"))
        .arg("--destination")
        .arg(&dest)
        .arg("--key-file")
        .arg(&key);
    let (ok, out) = run(c);
    assert!(ok, "{out}");
    assert_eq!(spec_manifests(&dest).len(), 2);
}

/// `publish: slurm-only` gives a cache that installs on its own: the root and its link/run
/// closure. Shown on the Spack-written fixture through the publish engine sign-and-upload runs,
/// naming demo-app as the root (the fixtures hold no Slurm; the engine's default root is
/// `slurm`): demo-app and the demo-lib it links are published, and `test-install` of demo-app
/// from that signed cache succeeds. With demo-lib as the root, demo-app is left out.
#[tokio::test(flavor = "multi_thread")]
async fn slurm_only_publishes_what_installs_and_test_install_succeeds() {
    use slurm_factory::buildcache::LocalDir;
    use slurm_factory::buildcache::publish::{PublishMode, PublishOptions, publish};
    use slurm_factory::buildcache::storage::{self, Location, OpenOptions};
    use slurm_factory::gha::Runner;
    use slurm_factory::s3::progress::ProgressMode;

    let t = tempfile::tempdir().unwrap();
    let runner = Runner::from_vars([("NO_COLOR", "1")]).with_sink(Box::new(std::io::sink()));
    let key = slurm_factory::pgp::SigningKey::load(fixture_secret().as_ref(), None, None).unwrap();
    let mut published = Vec::new();
    for root in ["demo-app", "demo-lib"] {
        let dest = t.path().join(root);
        let store = storage::open(
            &Location::parse(&format!("file://{}", dest.display())).unwrap(),
            &OpenOptions {
                writable: true,
                ..OpenOptions::default()
            },
            &runner,
        )
        .await
        .unwrap();
        let opts = PublishOptions {
            mode: PublishMode::SlurmOnly,
            slurm_package: root.to_owned(),
            progress: ProgressMode::Quiet,
            ..PublishOptions::default()
        };
        let report = publish(
            &runner,
            &LocalDir::new(fixtures().join("unsigned")),
            store.as_ref(),
            Some(&key),
            &opts,
        )
        .await
        .unwrap();
        let mut names: Vec<String> = report.specs.iter().map(|s| s.id.name.clone()).collect();
        names.sort();
        published.push(names);
    }
    assert_eq!(published, [vec!["demo-app", "demo-lib"], vec!["demo-lib"]]);

    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    let out = common::in_actions("test-install", dir.path())
        .arg("--buildcache")
        .arg(format!("file://{}", t.path().join("demo-app").display()))
        .args(["--spec", "demo-app"])
        .arg("--prefix")
        .arg(&prefix)
        .arg("--trusted-fingerprint")
        .arg(FIXTURE_FPR)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "test-install from the slurm-only cache failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A source manifest that no cleartext signature could cover as GnuPG reads it (a line ending
/// in whitespace) is refused before anything is written, and the refusal names the manifest.
#[test]
fn an_unsignable_source_manifest_is_refused_by_name() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    copy_tree(&fixtures().join("unsigned"), &src);
    let manifest = spec_manifests(&src)
        .into_iter()
        .find(|m| m.to_string_lossy().contains("demo-lib"))
        .unwrap();
    let text = std::fs::read_to_string(&manifest).unwrap();
    let bad = text.replacen("\"version\":3,\n", "\"version\":3, \n", 1);
    assert_ne!(bad, text, "the fixture's layout changed");
    std::fs::write(&manifest, bad).unwrap();
    let dest = t.path().join("dest");
    let (ok, out, _) = sign_upload(t.path(), &src, &dest, &[]);
    assert!(!ok, "{out}");
    let name = manifest
        .strip_prefix(&src)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        out.contains("ends with whitespace") && out.contains(&name),
        "the refusal must name {name}: {out}"
    );
    assert!(!dest.exists(), "nothing may be written");
}
