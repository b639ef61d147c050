//! Publishing to moto_server on loopback: the tarball, its signature and SHA256SUMS land under
//! the destination prefix, the outputs `url` and `sha256` and the job summary are written, and
//! a second leg's tarball under the same prefix keeps the first leg's sums line.

use std::process::Command;

use crate::common;
use crate::harness::*;
use crate::support::*;

const FPR: &str = "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD";

fn publish_to(moto: &Moto, b: &Build, dir: &std::path::Path, dest: &str) -> Command {
    let keys = common::repo_root().join("tests/fixtures/spack-v3/keys");
    let mut c = common::in_actions("tarball-publish", dir);
    c.env("INPUT_BUILD_DIR", &b.out)
        .env("INPUT_SLURM_VERSION", "25.11")
        .env("INPUT_COMPILER_VERSION", "13.4.0")
        .env("INPUT_DESTINATION", dest)
        .env("INPUT_DRY_RUN", "false")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env(
            "GPG_PRIVATE_KEY",
            std::fs::read_to_string(keys.join("demo-signer.sec.asc")).unwrap(),
        )
        .args(["--endpoint-url", &moto.endpoint, "--region", "us-east-1"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_tarball_signature_and_sums_to_s3() {
    let Some(b) = build(false) else { return };
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let name = "slurm-25.11-gcc13.4.0-software.tar.gz";
    let dest = format!("s3://{BUCKET}/slurm-factory/25.11/13.4.0/{name}");
    let out = publish_to(&moto, &b, dir.path(), &dest).output().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    // Secrets never reach the log.
    assert!(!log.contains("PRIVATE KEY BLOCK"), "{log}");

    let prefix = "slurm-factory/25.11/13.4.0";
    let tarball = get_bytes(&c, &format!("{prefix}/{name}"))
        .await
        .expect("tarball uploaded");
    let local = std::fs::read(b.out.join("tarball").join(name)).unwrap();
    assert_eq!(tarball, local);
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&tarball));
    let sums = String::from_utf8(
        get_bytes(&c, &format!("{prefix}/SHA256SUMS"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(sums, format!("{sha}  {name}\n"));
    let sig = get_bytes(&c, &format!("{prefix}/{name}.asc"))
        .await
        .unwrap();
    assert!(sig.starts_with(b"-----BEGIN PGP SIGNATURE-----"));
    // The signer's public key beside them, named by its fingerprint, public parts only.
    let key = get_bytes(&c, &format!("{prefix}/{FPR}.pub.asc"))
        .await
        .expect("public key uploaded");
    assert!(key.starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    assert!(!String::from_utf8_lossy(&key).contains("PRIVATE KEY"));

    let outputs = common::runner_file_map(&dir.path().join("output"));
    assert_eq!(outputs.get("sha256"), Some(&sha));
    let url = format!("{}/{BUCKET}/{prefix}/{name}", moto.endpoint);
    assert_eq!(outputs.get("url"), Some(&url));
    assert!(log.contains(&url), "{log}");
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        summary.contains(&url) && summary.contains(&sha),
        "{summary}"
    );

    // Another leg (an arm64 name) under the same prefix keeps our line.
    let other = format!("s3://{BUCKET}/{prefix}/slurm-25.11-gcc13.4.0-software-arm64.tar.gz");
    let dir2 = tempfile::tempdir().unwrap();
    let out = publish_to(&moto, &b, dir2.path(), &other).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sums = String::from_utf8(
        get_bytes(&c, &format!("{prefix}/SHA256SUMS"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        sums,
        format!("{sha}  slurm-25.11-gcc13.4.0-software-arm64.tar.gz\n{sha}  {name}\n")
    );

    // No signing key: refused before anything is packed or uploaded.
    let dir4 = tempfile::tempdir().unwrap();
    let out_dir = b.tmp.path().join("unsigned");
    let out = publish_to(&moto, &b, dir4.path(), &format!("s3://{BUCKET}/unsigned/"))
        .env_remove("GPG_PRIVATE_KEY")
        .arg("--output")
        .arg(&out_dir)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.lines().any(|l| l.starts_with("::error::")
            && l.contains("refusing to publish")
            && l.contains("GPG_PRIVATE_KEY")
            && l.contains("--key-file")),
        "{log}"
    );
    assert!(keys(&c, "unsigned/").await.is_empty());
    assert!(!out_dir.exists());

    // A destination bucket that does not exist fails before packing anything.
    let dir3 = tempfile::tempdir().unwrap();
    let out_dir = b.tmp.path().join("never");
    let out = publish_to(&moto, &b, dir3.path(), "s3://no-such-bucket-here/x/")
        .arg("--output")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!out_dir.exists());
}

/// `--publish` keys the tarball as the catalog does for the leg's platform and variant, names the
/// local file the same way, and checks the floor against that platform: with no `--platform` it
/// is the catalog's default (el8, glibc 2.28), which refuses what this host's gcc built and
/// uploads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_keys_the_tarball_under_the_catalog_platform_and_checks_its_floor() {
    let Some(b) = build(false) else { return };
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    // The embedded catalog's tarball bucket, as the pipelines publish to it.
    let bucket = slurm_factory::catalog::Catalog::embedded()
        .publish
        .tarball_bucket;
    c.create_bucket().bucket(&bucket).send().await.unwrap();
    let listed = |prefix: &'static str| {
        let c = c.clone();
        let bucket = bucket.clone();
        async move {
            let o = c
                .list_objects_v2()
                .bucket(&bucket)
                .prefix(prefix)
                .send()
                .await
                .unwrap();
            o.contents()
                .iter()
                .map(|o| o.key().unwrap().to_owned())
                .collect::<std::collections::BTreeSet<_>>()
        }
    };
    let run = |platform: Option<&str>, out: &std::path::Path| {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = publish_to(&moto, &b, dir.path(), "");
        cmd.env_remove("INPUT_DESTINATION")
            .args(["--publish", "--gpu", "--arch", "arm64", "--output"])
            .arg(out);
        if let Some(p) = platform {
            cmd.args(["--platform", p]);
        }
        let o = cmd.output().unwrap();
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            dir,
        )
    };

    // ubuntu24.04 (glibc 2.39) takes what this host built: the key names the platform and the
    // variant, and so do the local file, SHA256SUMS and the signature.
    let out = b.tmp.path().join("ubuntu");
    let (ok, log, dir) = run(Some("ubuntu24.04"), &out);
    assert!(ok, "{log}");
    let prefix = "slurm-factory/ubuntu24.04/25.11/13.4.0-gpu-arm64";
    let name = "slurm-25.11-gcc13.4.0-gpu-arm64-ubuntu24.04-software.tar.gz";
    assert_eq!(
        listed("slurm-factory/").await,
        [
            format!("{prefix}/{FPR}.pub.asc"),
            format!("{prefix}/SHA256SUMS"),
            format!("{prefix}/{name}"),
            format!("{prefix}/{name}.asc"),
        ]
        .into_iter()
        .collect()
    );
    let local = std::fs::read(out.join(name)).expect("the local tarball has the published name");
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&local));
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert_eq!(sums, format!("{sha}  {name}\n"));
    assert!(out.join(format!("{name}.asc")).is_file());
    let outputs = common::runner_file_map(&dir.path().join("output"));
    assert_eq!(
        outputs.get("url"),
        Some(&format!("{}/{bucket}/{prefix}/{name}", moto.endpoint))
    );
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("ubuntu24.04 (Ubuntu 24.04, glibc 2.39)"),
        "{summary}"
    );

    // Without --platform the key is the catalog default's (el8), and so is the floor checked:
    // a host whose glibc is newer than 2.28 built something el8 cannot run. Refused, nothing
    // uploaded, the file and the version named.
    let host_glibc = String::from_utf8(
        Command::new("getconf")
            .arg("GNU_LIBC_VERSION")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    if !host_glibc.trim().ends_with(" 2.28") {
        for platform in [None, Some("el8")] {
            let out = b.tmp.path().join(format!("el8-{}", platform.is_some()));
            let (ok, log, _dir) = run(platform, &out);
            assert!(!ok, "{log}");
            assert!(
                log.lines().any(|l| l.starts_with("::error::")
                    && l.contains(
                        "the catalog promises platform el8 (Rocky Linux 8) runs it with glibc 2.28"
                    )
                    && l.contains("view/bin/")),
                "{log}"
            );
            assert!(listed("slurm-factory/el8/").await.is_empty());
        }
    }
}
