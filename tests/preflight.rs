//! `slurm-factory preflight`: the checks a build leg runs before building, with the real binary
//! against a real `moto_server` on loopback and the Spack-written fixture key.

mod common;
#[path = "s3/harness.rs"]
mod harness;

use std::path::Path;
use std::process::{Command, Output};

use harness::{BUCKET, Moto, client, create_bucket};

fn key_file() -> std::path::PathBuf {
    common::repo_root().join("tests/fixtures/spack-v3/keys/demo-signer.sec.asc")
}

fn preflight(dir: &Path, endpoint: &str) -> Command {
    let mut c = common::in_actions("slurm-factory", dir);
    c.arg("preflight")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["--endpoint-url", endpoint]);
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn error_of(o: &Output) -> String {
    common::runner_process_log(&String::from_utf8_lossy(&o.stdout))
        .into_iter()
        .find(|c| c.command == "error")
        .map(|c| c.data)
        .unwrap_or_else(|| panic!("no ::error:: in {}", text(o)))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_key_and_a_writable_prefix_pass_and_leave_nothing_behind() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let out = preflight(dir.path(), &moto.endpoint)
        .arg("--destination")
        .arg(format!("s3://{BUCKET}/slurm/25.11/13.4.0/buildcache"))
        .arg("--key-file")
        .arg(key_file())
        .env("GPG_KEY_ID", "E145321FBC9F04BD")
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("accepts conditional writes"), "{t}");
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(summary.contains("### Preflight"), "{summary}");
    let listed = c.list_objects_v2().bucket(BUCKET).send().await.unwrap();
    assert_eq!(
        listed.key_count(),
        Some(0),
        "the probe was removed: {listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_secrets_fail_in_seconds_with_what_to_fix() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let dest = format!("s3://{BUCKET}/slurm/25.11/13.4.0/buildcache");
    let dir = tempfile::tempdir().unwrap();

    // A malformed key: refused before anything touches the network.
    let out = preflight(dir.path(), "http://127.0.0.1:9")
        .args(["--destination", &dest])
        .env("GPG_PRIVATE_KEY", "this is not an OpenPGP key")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let e = error_of(&out);
    assert!(e.starts_with("preflight: publishing to s3://"), "{e}");
    assert!(e.contains("so the build did not start"), "{e}");
    assert!(
        !e.contains("127.0.0.1:9"),
        "no network before the key loads: {e}"
    );

    // GPG_KEY_ID names another key.
    let out = preflight(dir.path(), &moto.endpoint)
        .args(["--destination", &dest])
        .arg("--key-file")
        .arg(key_file())
        .env("GPG_KEY_ID", "0123456789ABCDEF")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        error_of(&out).contains("key id 0123456789ABCDEF does not match")
            && error_of(&out).contains("Fix GPG_KEY_ID"),
        "{}",
        error_of(&out)
    );

    // A bucket that does not exist.
    let out = preflight(dir.path(), &moto.endpoint)
        .args(["--destination", "s3://no-such-bucket/p"])
        .arg("--key-file")
        .arg(key_file())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        error_of(&out).contains("does not exist"),
        "{}",
        error_of(&out)
    );

    // None of it wrote anything.
    let listed = c.list_objects_v2().bucket(BUCKET).send().await.unwrap();
    assert_eq!(listed.key_count(), Some(0));
}

#[test]
fn publish_none_checks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::in_actions("slurm-factory", dir.path())
        .args(["preflight", "--publish", "none"])
        .env("GPG_PRIVATE_KEY", "garbage")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("publish none, so there is nothing to check"));
}

#[test]
fn a_file_mirror_is_probed_too() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    let out = common::in_actions("slurm-factory", dir.path())
        .args(["preflight", "--destination"])
        .arg(format!("file://{}", mirror.display()))
        .arg("--key-file")
        .arg(key_file())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_dir(&mirror).unwrap().count(),
        0,
        "the probe was removed"
    );

    // Inputs as the action passes them.
    let out = common::in_actions("slurm-factory", dir.path())
        .arg("preflight")
        .env("INPUT_DESTINATION", format!("file://{}", mirror.display()))
        .env("INPUT_PUBLISH", "all")
        .env(
            "GPG_PRIVATE_KEY",
            std::fs::read_to_string(key_file()).unwrap(),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// A passed preflight writes the output `fingerprint`: the signing key's primary fingerprint,
/// 40 upper-case hex digits, which the pipelines pin in the leg's later steps. `publish none`
/// writes it empty (nothing is pinned, so build-slurm's `toolchain: auto` builds from source).
#[test]
fn preflight_outputs_the_fingerprint_the_leg_pins() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    let out = common::in_actions("slurm-factory", dir.path())
        .arg("preflight")
        .env("INPUT_DESTINATION", format!("file://{}", mirror.display()))
        .env(
            "GPG_PRIVATE_KEY",
            std::fs::read_to_string(key_file()).unwrap(),
        )
        .env("GPG_KEY_ID", "E145321FBC9F04BD")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let outputs = common::runner_file_map(&dir.path().join("output"));
    assert_eq!(
        outputs.get("fingerprint").map(String::as_str),
        Some("1A00B8893F4FAE1A76DB389DE145321FBC9F04BD"),
        "{outputs:?}"
    );

    let none = tempfile::tempdir().unwrap();
    let out = common::in_actions("slurm-factory", none.path())
        .args(["preflight", "--publish", "none"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let outputs = common::runner_file_map(&none.path().join("output"));
    assert_eq!(outputs.get("fingerprint").map(String::as_str), Some(""));
}
