//! `test-install --buildcache` over the network backends of the storage factory: the signed
//! Spack fixture served by a real web server (Python's `http.server` on loopback) and by
//! moto_server (S3 on loopback). The relocated demo-app must run and print demo-lib's new
//! prefix, exactly as from `file://`.

use std::path::Path;

use crate::buildcache::{assert_demo_app_prints_its_new_lib_prefix, fixtures, signer_key};
use crate::common;
use crate::harness::{BUCKET, Moto, client, create_bucket};

const FPR: &str = "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD";

fn run(cmd: &mut std::process::Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn install_cmd(work: &Path, url: &str, prefix: &Path) -> std::process::Command {
    let mut c = common::in_actions("test-install", work);
    c.args(["--buildcache", url, "--spec", "demo-app@2.0", "--prefix"])
        .arg(prefix)
        .arg("--trusted-key")
        .arg(signer_key());
    c
}

#[test]
fn demo_app_installs_over_plain_http_to_loopback_and_elsewhere_only_with_the_flag() {
    let Some(server) = common::HttpServer::start(&fixtures()) else {
        return;
    };
    let url = format!("{}/signed", server.url);

    // Plain http:// to a host that is not loopback is refused without the flag, before any
    // connection (TEST-NET-1 is never contacted): clear message, nothing installed.
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("opt/sw");
    let (code, out) = run(&mut install_cmd(
        t.path(),
        "http://192.0.2.1:1/signed",
        &prefix,
    ));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("::error::") && l.contains("--allow-insecure-http")),
        "{out}"
    );
    assert!(!prefix.exists(), "nothing may be installed");

    // To loopback, without the flag: verified against the pinned key, relocated, and the app
    // runs.
    let (code, out) = run(&mut install_cmd(t.path(), &url, &prefix));
    assert_eq!(code, 0, "{out}");
    let summary = std::fs::read_to_string(t.path().join("summary.md")).unwrap();
    assert!(
        summary.contains(&format!("from `{url}`")),
        "the summary names the URL: {summary}"
    );
    assert!(
        summary.contains("| install `demo-app@2.0/resh3sd` | ✅ ok |"),
        "{summary}"
    );
    assert_demo_app_prints_its_new_lib_prefix(&prefix);

    // The action input works as the flag does, and a pinned fingerprint resolves against the
    // key the web server publishes.
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("p");
    let (code, out) = run(common::in_actions("test-install", t.path())
        .env("INPUT_BUILDCACHE", &url)
        .env("INPUT_SPEC", "demo-app")
        .env("INPUT_PREFIX", &prefix)
        .env("INPUT_TRUSTED_FINGERPRINTS", FPR)
        .env("INPUT_ALLOW_INSECURE_HTTP", "true"));
    assert_eq!(code, 0, "{out}");
    assert_demo_app_prints_its_new_lib_prefix(&prefix);
}

/// Uploads every file of `dir` under `prefix/` in the test bucket.
async fn upload_tree(c: &aws_sdk_s3::Client, dir: &Path, prefix: &str) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(dir).unwrap().to_str().unwrap();
            c.put_object()
                .bucket(BUCKET)
                .key(format!("{prefix}/{rel}"))
                .body(std::fs::read(&p).unwrap().into())
                .send()
                .await
                .unwrap();
            n += 1;
        }
    }
    n
}

fn s3_cmd(moto: &Moto, work: &Path, url: &str, prefix: &Path) -> std::process::Command {
    let mut c = install_cmd(work, url, prefix);
    c.env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_app_installs_from_s3() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let n = upload_tree(&c, &fixtures().join("signed"), "caches/demo").await;
    assert!(n >= 12, "uploaded {n} files");

    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("opt/sw");
    let url = format!("s3://{BUCKET}/caches/demo");
    let (code, out) = run(&mut s3_cmd(&moto, t.path(), &url, &prefix));
    assert_eq!(code, 0, "{out}");
    let summary = std::fs::read_to_string(t.path().join("summary.md")).unwrap();
    assert!(summary.contains(&format!("from `{url}`")), "{summary}");
    assert!(
        summary.contains("| install `demo-lib@1.0/or7dti4` | ✅ ok |"),
        "{summary}"
    );
    assert_demo_app_prints_its_new_lib_prefix(&prefix);

    // A prefix of the bucket holding no buildcache: refused, saying there is no index.
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("p");
    let (code, out) = run(&mut s3_cmd(
        &moto,
        t.path(),
        &format!("s3://{BUCKET}/caches/none"),
        &prefix,
    ));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("has no index"), "{out}");
    assert!(!prefix.exists());
}
