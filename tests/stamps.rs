//! Build stamps end to end against a real `moto_server` on loopback, with our binaries:
//! `sign-and-upload --leg` publishes two legs (a toolchain and a Slurm buildcache) and stamps
//! them; `prepare-matrix` then skips both as unchanged, schedules only the Slurm leg after a
//! Slurm recipe changes in a checkout (saying which ingredient changed), builds everything with
//! `--force`, and never skips on a stamp whose objects are gone, whose signature does not
//! verify against the pinned key (another key, tampered text), when no key is pinned, or when
//! the lookup fails.

mod common;
#[path = "s3/harness.rs"]
#[allow(unused_imports)]
mod harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::{Moto, client};
use slurm_factory::catalog::Catalog;
use slurm_factory::pgp::SigningKey;
use slurm_factory::stamp::{BUILDCACHE_STAMP, Published, Stamp};

const FPR: &str = "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD";

fn fixture(rel: &str) -> PathBuf {
    common::repo_root()
        .join("tests/fixtures/spack-v3")
        .join(rel)
}

fn s3_env(c: &mut Command, endpoint: &str, dir: &Path) {
    c.args(["--endpoint-url", endpoint, "--region", "us-east-1"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("RUNNER_TEMP", dir)
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", "vantagecompute/slurm-factory")
        .env("GITHUB_RUN_ID", "4242");
}

/// What one prepare-matrix run gave.
struct Plan {
    ok: bool,
    outputs: BTreeMap<String, String>,
    summary: String,
    log: String,
}

impl Plan {
    fn legs(&self) -> Vec<serde_json::Value> {
        let m: serde_json::Value = serde_json::from_str(&self.outputs["matrix"]).unwrap();
        m["include"].as_array().unwrap().clone()
    }

    /// The decision the summary shows for the only leg.
    fn decision(&self) -> &str {
        self.summary
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| Leg"))
            .map(|l| l.rsplit(" | ").next().unwrap().trim_end_matches(" |"))
            .next()
            .unwrap_or_else(|| panic!("no leg row in:\n{}", self.summary))
    }
}

/// prepare-matrix for one leg of `kind` (GCC 13.4.0; Slurm 25.11), reading stamps from S3.
fn plan(endpoint: &str, kind: &str, checkout: &Path, extra: &[&str]) -> Plan {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::in_actions("prepare-matrix", dir.path());
    c.args(["--kind", kind, "--compiler-versions", "13.4.0"]);
    if kind != "compiler" {
        c.args(["--slurm-versions", "25.11"]);
    }
    c.args(["--stamps-from", "s3", "--source-dir"])
        .arg(checkout)
        .args(extra);
    s3_env(&mut c, endpoint, dir.path());
    let out = c.output().unwrap();
    Plan {
        ok: out.status.success(),
        outputs: common::runner_file_map(&dir.path().join("output")),
        summary: std::fs::read_to_string(dir.path().join("summary.md")).unwrap(),
        log: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn pinned(endpoint: &str, kind: &str, checkout: &Path, extra: &[&str]) -> Plan {
    let mut args = vec!["--trusted-fingerprint", FPR];
    args.extend_from_slice(extra);
    let p = plan(endpoint, kind, checkout, &args);
    assert!(p.ok, "{}", p.log);
    p
}

/// sign-and-upload of the fixture cache as `leg`, stamped.
fn publish(moto: &Moto, leg: &serde_json::Value, bucket: &str) {
    let (ok, log) = run_publish(moto, leg, bucket);
    assert!(ok, "{log}");
    assert!(log.contains("build stamp s3://"), "{log}");
}

/// Runs sign-and-upload of the fixture cache as `leg`: (success, its output).
fn run_publish(moto: &Moto, leg: &serde_json::Value, bucket: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::in_actions("sign-and-upload", dir.path());
    c.arg("--source")
        .arg(fixture("unsigned"))
        .arg("--destination")
        .arg(format!(
            "s3://{bucket}/{}",
            leg["buildcache_prefix"].as_str().unwrap()
        ))
        .arg("--key-file")
        .arg(fixture("keys/demo-signer.sec.asc"))
        .arg("--leg")
        .arg(leg.to_string());
    s3_env(&mut c, &moto.endpoint, dir.path());
    let out = c.output().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), log)
}

/// A checkout of this repository's recipes and image contexts, to edit.
fn checkout() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for d in ["spack-repo", "docker"] {
        let st = Command::new("cp")
            .arg("-R")
            .arg(common::repo_root().join(d))
            .arg(t.path())
            .status()
            .unwrap();
        assert!(st.success());
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn published_legs_are_skipped_until_their_inputs_change_and_bad_stamps_never_skip() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let catalog = Catalog::embedded();
    let bucket = catalog.publish.buildcache_bucket.clone();
    let s3 = client(&moto.endpoint).await;
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let co = checkout();

    // Nothing published yet: both legs build, because there is no stamp.
    let first_gcc = pinned(&moto.endpoint, "compiler", co.path(), &[]);
    let first_slurm = pinned(&moto.endpoint, "slurm", co.path(), &[]);
    for p in [&first_gcc, &first_slurm] {
        assert_eq!(p.outputs["count"], "1", "{}", p.summary);
        assert_eq!(p.decision(), "build (no stamp)");
    }
    let gcc = first_gcc.legs()[0].clone();
    let slurm = first_slurm.legs()[0].clone();
    assert!(gcc["fingerprint"].as_str().unwrap().starts_with("sha256:"));

    // A leg whose fingerprint is not what this binary computes is refused before anything is
    // written, naming the ingredient that differs.
    let mut forged = gcc.clone();
    forged["fingerprint"] = format!("sha256:{}", "0".repeat(64)).into();
    forged["ingredients"]["spack-repo"] = "0".repeat(64).into();
    let (ok, log) = run_publish(&moto, &forged, &bucket);
    assert!(!ok, "{log}");
    assert!(
        log.contains("::error::") && log.contains("(differing ingredients: spack-repo)"),
        "{log}"
    );
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap()
        .key_count()
        .unwrap_or(0);
    assert_eq!(listed, 0, "a refused leg wrote to the bucket");

    // Publish both legs: each writes its stamp last.
    publish(&moto, &gcc, &bucket);
    publish(&moto, &slurm, &bucket);
    let stamp_key = format!(
        "{}/{BUILDCACHE_STAMP}",
        gcc["buildcache_prefix"].as_str().unwrap()
    );
    let stored = s3
        .get_object()
        .bucket(&bucket)
        .key(&stamp_key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec();

    // Dispatched again, unchanged: both are skipped, since the publishing run; the matrix is
    // empty and valid.
    for kind in ["compiler", "slurm"] {
        let p = pinned(&moto.endpoint, kind, co.path(), &[]);
        assert_eq!(p.outputs["count"], "0", "{}", p.summary);
        assert_eq!(p.outputs["matrix"], r#"{"include":[]}"#);
        assert_eq!(
            p.decision(),
            "skip (unchanged since https://github.com/vantagecompute/slurm-factory/actions/runs/4242)"
        );
        assert!(p.summary.contains("0 of 1"), "{}", p.summary);
    }

    // A Slurm recipe changes in the checkout: only the Slurm leg, whose fingerprint holds it,
    // is scheduled, and the summary says which ingredient changed.
    let recipe = co
        .path()
        .join("spack-repo/spack_repo/slurm_factory/packages/slurm/package.py");
    let mut text = std::fs::read_to_string(&recipe).unwrap();
    text.push_str("\n# a patched recipe\n");
    std::fs::write(&recipe, text).unwrap();
    let p = pinned(&moto.endpoint, "slurm", co.path(), &[]);
    assert_eq!(p.outputs["count"], "1");
    assert_eq!(p.decision(), "build (changed: spack-repo)");
    assert_ne!(p.legs()[0]["fingerprint"], slurm["fingerprint"]);
    let p = pinned(&moto.endpoint, "compiler", co.path(), &[]);
    assert_eq!(p.outputs["count"], "0", "{}", p.summary);

    // The gcc recipe changes: the compiler leg rebuilds, and so does the Slurm leg, whose
    // toolchain (the compiler leg's fingerprint) changed with it; then it is put back.
    let gcc_recipe = co
        .path()
        .join("spack-repo/spack_repo/slurm_factory/packages/gcc/package.py");
    let original_gcc = std::fs::read_to_string(&gcc_recipe).unwrap();
    std::fs::write(
        &gcc_recipe,
        format!("{original_gcc}\n# a patched toolchain\n"),
    )
    .unwrap();
    let p = pinned(&moto.endpoint, "compiler", co.path(), &[]);
    assert_eq!(p.decision(), "build (changed: spack-repo)");
    let p = pinned(&moto.endpoint, "slurm", co.path(), &[]);
    assert_eq!(p.decision(), "build (changed: spack-repo, toolchain)");
    std::fs::write(&gcc_recipe, original_gcc).unwrap();

    // force: every leg builds, whatever the stamps say.
    for kind in ["compiler", "slurm"] {
        let p = pinned(&moto.endpoint, kind, co.path(), &["--force"]);
        assert_eq!(p.outputs["count"], "1");
        assert_eq!(p.decision(), "build (forced)");
    }
    // A run that publishes nothing never skips.
    let p = pinned(
        &moto.endpoint,
        "compiler",
        co.path(),
        &["--publish", "none"],
    );
    assert_eq!(p.outputs["count"], "1");
    assert!(
        p.decision().starts_with("build (publish none"),
        "{}",
        p.summary
    );

    // No pinned key: nothing can be trusted, so nothing is skipped, and the summary says what
    // to set.
    let p = plan(&moto.endpoint, "compiler", co.path(), &[]);
    assert!(p.ok, "{}", p.log);
    assert_eq!(p.outputs["count"], "1");
    assert_eq!(p.decision(), "build (no pinned key)");
    assert!(
        p.summary.contains("SLURM_FACTORY_SIGNING_FINGERPRINTS"),
        "{}",
        p.summary
    );

    let put = |bytes: Vec<u8>| {
        let s3 = s3.clone();
        let (bucket, key) = (bucket.clone(), stamp_key.clone());
        async move {
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(bytes.into())
                .send()
                .await
                .unwrap();
        }
    };

    // Tampered stamp text (the signature no longer covers it): not verified, built.
    let tampered = String::from_utf8(stored.clone()).unwrap().replacen(
        "\"mode\": \"all\"",
        "\"mode\": \"alL\"",
        1,
    );
    put(tampered.into_bytes()).await;
    let p = pinned(&moto.endpoint, "compiler", co.path(), &[]);
    assert_eq!(p.outputs["count"], "1");
    assert!(
        p.decision()
            .starts_with("build (stamp not verified: bad signature"),
        "{}",
        p.summary
    );

    // The same stamp signed by another key: not the pinned one, built.
    let original: Stamp = serde_json::from_slice(&stamp_text(&stored)).unwrap();
    let other = other_key();
    put(original.sign(&other).unwrap()).await;
    let p = pinned(&moto.endpoint, "compiler", co.path(), &[]);
    assert_eq!(p.outputs["count"], "1");
    assert!(
        p.decision()
            .starts_with("build (stamp not verified: signed by an untrusted or unknown key"),
        "{}",
        p.summary
    );

    // A huge object under the stamp's name: refused by its size, built.
    put(vec![b' '; 300_000]).await;
    let p = pinned(&moto.endpoint, "compiler", co.path(), &[]);
    assert_eq!(p.outputs["count"], "1");
    assert!(
        p.decision()
            .starts_with("build (stamp not verified: the stamp is 300000 bytes, over the limit"),
        "{}",
        p.summary
    );

    // The genuine stamp back: skipped again; then one object it names is deleted: built.
    put(stored.clone()).await;
    assert_eq!(
        pinned(&moto.endpoint, "compiler", co.path(), &[]).outputs["count"],
        "0"
    );
    let Published::Buildcache { specs, .. } = &original.published else {
        panic!("a compiler leg stamps a buildcache")
    };
    assert_eq!(specs.len(), 2, "{specs:?}");
    let gone = format!(
        "{}/{}",
        gcc["buildcache_prefix"].as_str().unwrap(),
        specs[0].manifest
    );
    s3.delete_object()
        .bucket(&bucket)
        .key(&gone)
        .send()
        .await
        .unwrap();
    let p = pinned(&moto.endpoint, "compiler", co.path(), &[]);
    assert_eq!(p.outputs["count"], "1");
    assert_eq!(
        p.decision(),
        format!("build (objects missing: {})", specs[0].manifest)
    );

    // A stamp of a slurm-only publication (as sign-and-upload --publish slurm-only writes it,
    // signed by the pinned key) does not satisfy a run that publishes all; it does satisfy a
    // slurm-only run. (Against the recipes as published: a fresh checkout.)
    let fresh = checkout();
    let slurm_key = format!(
        "{}/{BUILDCACHE_STAMP}",
        slurm["buildcache_prefix"].as_str().unwrap()
    );
    let stored_slurm = s3
        .get_object()
        .bucket(&bucket)
        .key(&slurm_key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec();
    let mut narrow: Stamp = serde_json::from_slice(&stamp_text(&stored_slurm)).unwrap();
    if let Published::Buildcache { mode, .. } = &mut narrow.published {
        *mode = "slurm-only".into();
    }
    let demo = SigningKey::load(
        &std::fs::read(fixture("keys/demo-signer.sec.asc")).unwrap(),
        None,
        None,
    )
    .unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key(&slurm_key)
        .body(narrow.sign(&demo).unwrap().into())
        .send()
        .await
        .unwrap();
    let p = pinned(&moto.endpoint, "slurm", fresh.path(), &[]);
    assert_eq!(p.outputs["count"], "1");
    assert_eq!(
        p.decision(),
        "build (published slurm-only; this run publishes all)"
    );
    let p = pinned(
        &moto.endpoint,
        "slurm",
        fresh.path(),
        &["--publish", "slurm-only"],
    );
    assert_eq!(p.outputs["count"], "0", "{}", p.summary);

    // A lookup that fails for another reason than "not found" builds, with the error.
    let dead = format!("http://127.0.0.1:{}", harness::free_port());
    let p = pinned(&dead, "slurm", co.path(), &[]);
    assert_eq!(p.outputs["count"], "1");
    assert!(
        p.decision().starts_with("build (lookup failed: "),
        "{}",
        p.summary
    );
}

/// The JSON text a stored clearsigned stamp carries (for a test that re-signs it).
fn stamp_text(stored: &[u8]) -> Vec<u8> {
    let mut keys = slurm_factory::pgp::TrustedKeys::new();
    keys.add_armored(&std::fs::read(fixture("keys/demo-signer.pub.asc")).unwrap())
        .unwrap();
    slurm_factory::stamp::read(stored, &keys)
        .unwrap()
        .stamp
        .to_json()
}

/// A signing key nobody pinned.
fn other_key() -> SigningKey {
    use sequoia_openpgp::serialize::SerializeInto;
    let (cert, _) = sequoia_openpgp::cert::CertBuilder::general_purpose(Some("other <o@x>"))
        .generate()
        .unwrap();
    SigningKey::load(&cert.as_tsk().armored().to_vec().unwrap(), None, None).unwrap()
}
