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
