//! S3 publishing against a real S3-compatible server: `moto_server` (from the test venv) on
//! loopback, one per test. Faults come from a fault-injecting TCP proxy in `s3/proxy.rs`.
//!
//! Only GitHub's OIDC token endpoint is fake (a tiny loopback HTTP server): GitHub's API cannot
//! run here. moto's STS accepts any web-identity token, so the exchange itself is real.

mod common;
#[path = "s3/faults.rs"]
mod faults;
#[path = "s3/harness.rs"]
mod harness;
#[path = "s3/proxy.rs"]
mod proxy;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::types::{ChecksumMode, ObjectAttributes};
use harness::*;
use slurm_factory::buildcache::layout::Sha256Hex;
use slurm_factory::buildcache::storage::{S3Store, Storage, WriteMode};
use slurm_factory::gha::Runner;
use slurm_factory::s3::CredentialSource;
use slurm_factory::s3::progress::ProgressMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn opts() -> PublishOptions {
    PublishOptions {
        progress: ProgressMode::Quiet,
        ..PublishOptions::default()
    }
}

fn unsigned_opts() -> PublishOptions {
    PublishOptions {
        require_signed: false,
        ..opts()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishes_the_signed_fixture_then_skips_everything_on_rerun() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let url = url("slurm/25.11/13.4.0/buildcache");
    let src = fixture("signed");

    let r = publish_buildcache(&quiet_runner(), &c, &url, &src, &opts())
        .await
        .unwrap();
    let local = local_files(&src);
    // Every local file is at the destination under the same relative path, byte for byte,
    // except the pointer manifests, which were re-written by the merge (same content here).
    let remote = keys(&c, url.prefix()).await;
    for rel in &local {
        let key = url.key(rel);
        assert!(remote.contains(&key), "{key} missing");
        let got = get_bytes(&c, &key).await.unwrap();
        let want = std::fs::read(src.join(rel)).unwrap();
        if !rel.ends_with("index.manifest.json") && !rel.ends_with("keys.manifest.json") {
            assert_eq!(got, want, "{rel} differs");
        }
    }
    assert!(remote.len() >= local.len());
    assert_eq!(r.specs_published, 2);
    assert!(r.index_written);
    assert_eq!(r.index_attempts, 1);
    assert_eq!(r.write_mode.as_deref(), Some("conditional"));
    assert_eq!(r.blobs_uploaded, 7);
    assert_eq!(
        index_specs(&c, &url).await,
        BTreeSet::from([
            "or7dti47ajgrd2y5bgs2dujuath2dz3p".to_owned(),
            "resh3sdm7oulbae23jllsxfemfp24cba".to_owned()
        ])
    );
    assert_eq!(
        key_index(&c, &url).await,
        BTreeSet::from(["1A00B8893F4FAE1A76DB389DE145321FBC9F04BD".to_owned()])
    );
    assert_eq!(check_consistent(&c, &url).await, Ok(2));

    // Cache-Control: immutable blobs, short manifests, revalidated index.
    let cc = |k: String| {
        let c = c.clone();
        async move {
            c.head_object()
                .bucket(BUCKET)
                .key(k)
                .send()
                .await
                .unwrap()
                .cache_control()
                .unwrap_or_default()
                .to_owned()
        }
    };
    let blob = local.iter().find(|r| r.starts_with("blobs/")).unwrap();
    assert_eq!(
        cc(url.key(blob)).await,
        "public, max-age=31536000, immutable"
    );
    let spec = local
        .iter()
        .find(|r| r.ends_with(".spec.manifest.json"))
        .unwrap();
    assert_eq!(
        cc(url.key(spec)).await,
        "public, max-age=60, must-revalidate"
    );
    assert_eq!(
        cc(url.key("v3/manifests/index/index.manifest.json")).await,
        "no-cache"
    );

    // A no-change re-run uploads nothing and does not touch the index.
    let r2 = publish_buildcache(&quiet_runner(), &c, &url, &src, &opts())
        .await
        .unwrap();
    assert_eq!(r2.objects_uploaded, 0, "{r2:?}");
    assert_eq!(r2.bytes_uploaded, 0);
    assert!(!r2.index_written);
    // 7 blobs + 2 spec manifests + 1 key manifest + layout.json.
    assert_eq!(r2.objects_skipped, 11);
    let md = r2.summary_markdown();
    assert!(md.contains("| skipped (already there) | 11 |"), "{md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reupload_after_partial_state_sends_only_what_is_missing() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let url = url("p");
    let dir = tempfile::tempdir().unwrap();
    let s = synth_cache(dir.path(), "partial", &[1000, 2000, 3000, 4000]);
    // Simulate an interrupted earlier run: half of the blobs are already there (uploaded with
    // their SHA-256 checksums, as the engine does).
    let blobs = local_blobs(&s.root);
    let half: Vec<_> = blobs.iter().take(blobs.len() / 2).collect();
    for (rel, d, path, _) in &half {
        c.put_object()
            .bucket(BUCKET)
            .key(url.key(rel))
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .checksum_sha256(b64(d))
            .body(std::fs::read(path).unwrap().into())
            .send()
            .await
            .unwrap();
    }
    let r = publish_buildcache(&quiet_runner(), &c, &url, &s.root, &unsigned_opts())
        .await
        .unwrap();
    assert_eq!(r.blobs_uploaded as usize, blobs.len() - half.len());
    assert_eq!(r.objects_skipped as usize, half.len());
    assert_eq!(index_specs(&c, &url).await, s.specs);
    assert_eq!(check_consistent(&c, &url).await, Ok(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multipart_uploads_carry_sha256_checksums_s3_stores() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let url = url("mp");
    let dir = tempfile::tempdir().unwrap();
    let big = 12 * 1024 * 1024 + 123;
    let s = synth_cache(dir.path(), "mp", &[big, 4096]);
    let o = PublishOptions {
        multipart_threshold: 6 * 1024 * 1024,
        part_size: 5 * 1024 * 1024,
        ..unsigned_opts()
    };
    let r = publish_buildcache(&quiet_runner(), &c, &url, &s.root, &o)
        .await
        .unwrap();
    assert_eq!(check_consistent(&c, &url).await, Ok(2));
    assert!(r.bytes_uploaded >= big as u64);

    let mut saw_multipart = false;
    for (rel, digest, path, size) in local_blobs(&s.root) {
        let key = url.key(&rel);
        let head = c
            .head_object()
            .bucket(BUCKET)
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        let stored = head.checksum_sha256().unwrap_or_default().to_owned();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(Sha256Hex::of(&data), digest, "local blob sanity");
        // The downloaded bytes are the local bytes.
        assert_eq!(Sha256Hex::of(&get_bytes(&c, &key).await.unwrap()), digest);
        if size as usize == big {
            saw_multipart = true;
            // S3's multipart checksum: SHA-256 over the parts' SHA-256s, "-<parts>".
            let parts: Vec<&[u8]> = data.chunks(5 * 1024 * 1024).collect();
            assert_eq!(parts.len(), 3);
            // moto computes the composite from the bytes it received, so equality proves
            // every part arrived intact under the SHA-256 algorithm we declared.
            let mut concat = Vec::new();
            for part in &parts {
                concat.extend_from_slice(&hex::decode(Sha256Hex::of(part).as_str()).unwrap());
            }
            let composite = b64(&Sha256Hex::of(&concat));
            // AWS appends "-<parts>" to a composite checksum; moto does not.
            assert_eq!(
                stored.trim_end_matches("-3"),
                composite,
                "composite checksum"
            );
        } else {
            assert_eq!(stored, b64(&digest), "{key}: stored checksum");
            let attrs = c
                .get_object_attributes()
                .bucket(BUCKET)
                .key(&key)
                .object_attributes(ObjectAttributes::Checksum)
                .send()
                .await
                .unwrap();
            assert_eq!(
                attrs.checksum().and_then(|c| c.checksum_sha256()),
                Some(b64(&digest).as_str())
            );
        }
    }
    assert!(saw_multipart);
    // Nothing left half-done.
    let mpu = c
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert!(mpu.uploads().is_empty(), "{:?}", mpu.uploads());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_competing_writer_between_read_and_write_gets_merged() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let direct = client(&moto.endpoint).await;
    create_bucket(&direct).await;
    let url = url("race");
    let dir = tempfile::tempdir().unwrap();
    let a = synth_cache(&dir.path().join("a"), "writer-a", &[100, 200]);
    let b = synth_cache(&dir.path().join("b"), "writer-b", &[300]);
    // Seed an index so A's write is an If-Match on an existing ETag.
    let seed = synth_cache(&dir.path().join("seed"), "seed", &[50]);
    // The three publishers know each other's keys.
    let race_opts = PublishOptions {
        key_fingerprints: vec![
            a.fingerprint.clone(),
            b.fingerprint.clone(),
            seed.fingerprint.clone(),
        ],
        ..unsigned_opts()
    };
    publish_buildcache(&quiet_runner(), &direct, &url, &seed.root, &race_opts)
        .await
        .unwrap();

    // A goes through the proxy, which holds A's PUT of index.manifest.json until B (direct)
    // has published: A read the index before B wrote it, so A's If-Match must fail.
    let (arrived_tx, mut arrived_rx) = tokio::sync::mpsc::channel(1);
    let (go_tx, go_rx) = tokio::sync::oneshot::channel();
    let proxy = proxy::FaultProxy::start(
        moto.port,
        proxy::Plan {
            hold: Some(proxy::Hold {
                method: "PUT",
                path_contains: "index/index.manifest.json",
                arrived: arrived_tx,
                go: go_rx,
            }),
            ..proxy::Plan::default()
        },
    )
    .await;
    let via_proxy = client(&proxy.endpoint).await;
    let url_a = url.clone();
    let a_root = a.root.clone();
    let a_opts = race_opts.clone();
    let writer_a = tokio::spawn(async move {
        publish_buildcache(&quiet_runner(), &via_proxy, &url_a, &a_root, &a_opts).await
    });
    arrived_rx.recv().await.expect("A reached its index write");
    let rb = publish_buildcache(&quiet_runner(), &direct, &url, &b.root, &race_opts)
        .await
        .unwrap();
    assert!(rb.index_written);
    go_tx.send(()).unwrap();
    let ra = writer_a.await.unwrap().unwrap();
    assert!(ra.index_written);
    assert!(
        ra.index_attempts >= 2,
        "A's stale If-Match was not rejected: {ra:?}"
    );
    let want: BTreeSet<String> = a
        .specs
        .iter()
        .chain(&b.specs)
        .chain(&seed.specs)
        .cloned()
        .collect();
    assert_eq!(index_specs(&direct, &url).await, want);
    assert_eq!(key_index(&direct, &url).await.len(), 3);
    assert_eq!(check_consistent(&direct, &url).await, Ok(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_writes_are_enforced_by_the_server() {
    // What the engine relies on, checked on the real server: If-None-Match:* refuses to
    // overwrite, If-Match refuses a stale ETag, and the probe detects both.
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let put = |cond: Option<&str>, etag: Option<&str>| {
        let mut r = c
            .put_object()
            .bucket(BUCKET)
            .key("k")
            .body(b"x".to_vec().into());
        if let Some(v) = cond {
            r = r.if_none_match(v);
        }
        if let Some(e) = etag {
            r = r.if_match(e);
        }
        r.send()
    };
    let first = put(Some("*"), None).await.unwrap();
    let err = put(Some("*"), None).await.unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 412);
    let err = put(None, Some("\"0000\"")).await.unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 412);
    put(None, first.e_tag()).await.unwrap();
    assert_eq!(
        S3Store::new(c.clone(), url("x"))
            .probe_write_mode()
            .await
            .unwrap(),
        WriteMode::Conditional
    );
    // Through a proxy that drops the headers, the probe falls back to the lock.
    let proxy = proxy::FaultProxy::start(
        moto.port,
        proxy::Plan {
            strip_conditions: true,
            ..Default::default()
        },
    )
    .await;
    let pc = client(&proxy.endpoint).await;
    assert_eq!(
        S3Store::new(pc, url("x")).probe_write_mode().await.unwrap(),
        WriteMode::Lock
    );
}

/// Some S3-compatible servers (s3s-fs) list objects without ETags. A re-run must then ask
/// for the ETags with HEAD requests and still upload nothing that is unchanged, while a
/// manifest that did change goes up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_that_lists_without_etags_still_skips_unchanged_manifests() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let url = url("no-etags");
    let dir = tempfile::tempdir().unwrap();
    let s = synth_cache(dir.path(), "noetag", &[1024, 2048, 4096]);
    publish_buildcache(&quiet_runner(), &c, &url, &s.root, &unsigned_opts())
        .await
        .unwrap();

    let proxy = proxy::FaultProxy::start(
        moto.port,
        proxy::Plan {
            strip_list_etags: true,
            ..Default::default()
        },
    )
    .await;
    let pc = client(&proxy.endpoint).await;
    let r = publish_buildcache(&quiet_runner(), &pc, &url, &s.root, &unsigned_opts())
        .await
        .unwrap();
    let stats = proxy.stats();
    assert!(
        stats
            .listings_without_etags
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2,
        "the blobs/ and v3/ listings went through the proxy without ETags"
    );
    // 3 spec manifests, 1 key manifest and layout.json were compared by HEAD.
    let heads = stats.heads.load(std::sync::atomic::Ordering::Relaxed);
    assert!(heads >= 5, "only {heads} HEAD request(s)");
    assert_eq!(r.objects_uploaded, 0, "{r:?}");
    assert!(!r.index_written);

    // A manifest whose bytes changed (same size) is uploaded again.
    let spec = local_files(&s.root)
        .into_iter()
        .find(|f| f.ends_with(".spec.manifest.json"))
        .unwrap();
    let path = s.root.join(&spec);
    let text = std::fs::read_to_string(&path).unwrap();
    // Same JSON, same size, other bytes: the first line break becomes a space.
    assert!(text.contains('\n'));
    std::fs::write(&path, text.replacen('\n', " ", 1)).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, text.len());
    let r = publish_buildcache(&quiet_runner(), &pc, &url, &s.root, &unsigned_opts())
        .await
        .unwrap();
    assert_eq!(r.objects_uploaded, 1, "{r:?}");
    assert_eq!(
        get_bytes(&c, &url.key(&spec)).await.unwrap(),
        std::fs::read(&path).unwrap()
    );
}

// ---------------------------------------------------------------------------------------
// STS AssumeRoleWithWebIdentity with a loopback OIDC token endpoint.

/// A fake of GitHub's OIDC token endpoint (GitHub's API cannot run here): answers every GET
/// with `{"value": "<jwt-like token>"}` and records the audience and bearer it was asked with.
struct OidcServer {
    url: String,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    status: u16,
}

async fn oidc_server(status: u16) -> OidcServer {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token?api-version=2.0", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let (mut conn, _) = l.accept().await.unwrap();
            n += 1;
            let mut buf = vec![0u8; 8192];
            let len = conn.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..len]).into_owned();
            let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
            let auth = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("authorization: ")
                        .or_else(|| l.strip_prefix("Authorization: "))
                })
                .unwrap_or_default()
                .to_owned();
            s.lock().unwrap().push((path, auth));
            let body =
                format!("{{\"value\":\"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOnRlc3QifQ.sig{n}\"}}");
            let reason = if status == 200 { "OK" } else { "Forbidden" };
            let resp = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
            let _ = conn.shutdown().await;
        }
    });
    OidcServer { url, seen, status }
}

fn actions_runner(oidc: Option<&OidcServer>, sink: Captured) -> Runner {
    let mut vars = vec![
        ("GITHUB_ACTIONS".to_owned(), "true".to_owned()),
        ("GITHUB_RUN_ID".to_owned(), "987654".to_owned()),
        ("GITHUB_RUN_ATTEMPT".to_owned(), "3".to_owned()),
    ];
    if let Some(o) = oidc {
        vars.push(("ACTIONS_ID_TOKEN_REQUEST_URL".into(), o.url.clone()));
        vars.push((
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN".into(),
            "runner-bearer".into(),
        ));
    }
    Runner::from_vars(vars).with_sink(Box::new(sink))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oidc_token_is_exchanged_with_sts_and_every_credential_is_masked() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    create_bucket(&client(&moto.endpoint).await).await;
    let oidc = oidc_server(200).await;
    let out = Captured::default();
    let runner = actions_runner(Some(&oidc), out.clone());
    let mut s = settings(&moto.endpoint);
    s.credentials = CredentialSource::GithubOidc {
        role_arn: "arn:aws:iam::123456789012:role/gha-publish".into(),
    };
    s.sts_endpoint_url = Some(moto.endpoint.clone());
    let conn = slurm_factory::s3::credentials::connection(&runner, &s)
        .await
        .unwrap();
    let c = conn.client.clone();
    // The client works with the assumed-role credentials.
    let url = url("sts");
    let r = publish_buildcache(&runner, &c, &url, &fixture("signed"), &opts())
        .await
        .unwrap();
    assert_eq!(r.specs_published, 2);
    assert_eq!(check_consistent(&c, &url).await, Ok(2));

    let seen = oidc.seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for (path, auth) in &seen {
        assert!(path.contains("audience=sts.amazonaws.com"), "{path}");
        assert_eq!(auth, "Bearer runner-bearer");
    }
    // Each role session's credentials are masked before use.
    let creds = aws_sdk_s3::config::ProvideCredentials::provide_credentials(&conn.credentials)
        .await
        .unwrap();
    assert!(creds.session_token().is_some(), "not temporary credentials");
    assert!(creds.expiry().is_some());
    let log = out.text();
    for secret in [
        creds.access_key_id(),
        creds.secret_access_key(),
        creds.session_token().unwrap(),
    ] {
        assert!(
            log.contains(&format!("::add-mask::{secret}\n")),
            "{secret} not masked"
        );
    }
    assert!(
        log.contains("::add-mask::eyJhbGciOiJSUzI1NiJ9."),
        "OIDC token not masked"
    );
    // Nothing secret was printed other than in add-mask commands.
    for line in log.lines().filter(|l| !l.starts_with("::add-mask::")) {
        assert!(
            !line.contains(creds.secret_access_key()),
            "secret leaked: {line}"
        );
    }

    // Refresh: every call of the provider fetches a new OIDC token and assumes again.
    let before = oidc.seen.lock().unwrap().len();
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::new()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .region(aws_sdk_sts::config::Region::new("us-east-1"))
            .endpoint_url(&moto.endpoint)
            .build(),
    );
    let p = slurm_factory::s3::credentials::GithubOidcProvider::new(
        runner.clone(),
        sts,
        "arn:aws:iam::123456789012:role/gha-publish".into(),
        Duration::from_secs(4 * 3600),
    );
    let c1 = p.assume().await.unwrap();
    let c2 = p.assume().await.unwrap();
    assert_ne!(c1.access_key_id(), c2.access_key_id());
    assert_eq!(oidc.seen.lock().unwrap().len(), before + 2);
    let _ = oidc.status;
}

/// A clock the test moves by hand, for the SDK's signing and credential-expiry checks.
#[derive(Debug, Clone)]
struct TestClock(Arc<Mutex<std::time::SystemTime>>);

impl aws_smithy_async::time::TimeSource for TestClock {
    fn now(&self) -> std::time::SystemTime {
        *self.0.lock().unwrap()
    }
}

/// On a long run the role session is renewed before it expires: with a 15-minute session
/// (STS's minimum), the client keeps its credentials at +2 min and assumes the role again, with
/// a fresh OIDC token, once fewer than `REFRESH_BEFORE` (5 min, jittered by the SDK down to
/// 2.5 min) are left. (After the renewal the test's clock runs ahead of moto's, so the new
/// credentials look short-lived to the client; the test stops there.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn assumed_role_credentials_are_refreshed_before_they_expire() {
    use slurm_factory::s3::credentials::REFRESH_BEFORE;
    let Some(moto) = Moto::start().await else {
        return;
    };
    create_bucket(&client(&moto.endpoint).await).await;
    let oidc = oidc_server(200).await;
    let runner = actions_runner(Some(&oidc), Captured::default());
    let clock = TestClock(Arc::new(Mutex::new(std::time::SystemTime::now())));
    let mut s = settings(&moto.endpoint);
    s.credentials = CredentialSource::GithubOidc {
        role_arn: "arn:aws:iam::123456789012:role/gha-publish".into(),
    };
    s.sts_endpoint_url = Some(moto.endpoint.clone());
    s.session_duration = Duration::from_secs(900);
    s.time_source = Some(aws_smithy_async::time::SharedTimeSource::new(clock.clone()));
    let conn = slurm_factory::s3::credentials::connection(&runner, &s)
        .await
        .unwrap();
    let c = conn.client;
    let tokens = || oidc.seen.lock().unwrap().len();
    let list = || c.list_objects_v2().bucket(BUCKET).send();

    list().await.unwrap();
    let after_first = tokens();
    assert!(after_first >= 1);
    let advance = |secs: u64| {
        let mut t = clock.0.lock().unwrap();
        *t += Duration::from_secs(secs);
    };
    // +2 min: 13 min left, the cached credentials are used.
    advance(120);
    list().await.unwrap();
    assert_eq!(tokens(), after_first, "credentials renewed too early");
    // +13 min 20 s: 100 s left. The SDK refreshes when fewer than REFRESH_BEFORE, jittered
    // down by up to half, are left; 100 s is below either bound, so the next request assumes
    // the role again with a fresh OIDC token.
    advance(680);
    assert!(Duration::from_secs(900 - 800) < REFRESH_BEFORE / 2);
    list().await.unwrap();
    assert_eq!(tokens(), after_first + 1, "credentials were not renewed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_id_token_permission_fails_before_any_upload() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let mut s = settings(&moto.endpoint);
    s.credentials = CredentialSource::GithubOidc {
        role_arn: "arn:aws:iam::123456789012:role/gha-publish".into(),
    };
    s.sts_endpoint_url = Some(moto.endpoint.clone());
    // No ACTIONS_ID_TOKEN_REQUEST_* variables: the job lacks `permissions: id-token: write`.
    let err = slurm_factory::s3::connect(&actions_runner(None, Captured::default()), &s)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("id-token: write"), "{err:#}");
    // And a token endpoint that refuses (403) is reported the same way.
    let oidc = oidc_server(403).await;
    let err = slurm_factory::s3::connect(&actions_runner(Some(&oidc), Captured::default()), &s)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("id-token: write"), "{err:#}");
    assert!(keys(&c, "").await.is_empty());
}

// ---------------------------------------------------------------------------------------
// Bad input: a clear error and nothing uploaded.

async fn assert_bucket_empty(c: &aws_sdk_s3::Client) {
    let k = keys(c, "").await;
    assert!(k.is_empty(), "something was uploaded: {k:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_bucket_is_reported_before_anything_is_uploaded() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let wrong = slurm_factory::s3::S3Url::new("no-such-bucket", "p").unwrap();
    let err = publish_buildcache(&quiet_runner(), &c, &wrong, &fixture("signed"), &opts())
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("\"no-such-bucket\" does not exist"), "{msg}");
    assert_bucket_empty(&c).await;
    let buckets = c.list_buckets().send().await.unwrap();
    assert_eq!(buckets.buckets().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn denied_credentials_are_reported_before_anything_is_uploaded() {
    // moto enforces IAM authentication after INITIAL_NO_AUTH_ACTION_COUNT requests: the first
    // (CreateBucket) is free, then moto's dummy keys are unknown and every request is refused
    // with InvalidAccessKeyId/403, as AWS does for a wrong key.
    let Some(moto) = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "1")]).await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let err = publish_buildcache(&quiet_runner(), &c, &url("p"), &fixture("signed"), &opts())
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("credentials were refused"), "{msg}");
    // Inspect moto's state without S3 credentials: no object anywhere.
    let data = moto.data().await;
    assert_eq!(data["s3"]["FakeBucket"].as_array().unwrap().len(), 1);
    let objects = data["s3"]["FakeKey"].as_array().map_or(0, Vec::len);
    assert_eq!(
        objects, 0,
        "objects were uploaded: {}",
        data["s3"]["FakeKey"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_local_blob_stops_the_run_before_anything_is_uploaded() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture("signed"), dir.path());
    let victim = dir
        .path()
        .join("blobs/sha256/aa/aaabfbfcf309a896016154087cab77adb725da675df94849d32b2a0ee0bd7bec");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    let err = publish_buildcache(&quiet_runner(), &c, &url("p"), dir.path(), &opts())
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("incomplete or corrupt")
            && msg.contains("aaabfbfc")
            && msg.contains("has sha256"),
        "{msg}"
    );
    assert!(msg.contains("nothing was written"), "{msg}");
    assert_bucket_empty(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unsigned_cache_is_refused_when_signing_is_required() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let err = publish_buildcache(
        &quiet_runner(),
        &c,
        &url("p"),
        &fixture("unsigned"),
        &opts(),
    )
    .await
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("unsigned buildcache") && msg.contains("2 spec manifest(s)"),
        "{msg}"
    );
    assert_bucket_empty(&c).await;
    // Allowed explicitly, it publishes.
    publish_buildcache(
        &quiet_runner(),
        &c,
        &url("p"),
        &fixture("unsigned"),
        &unsigned_opts(),
    )
    .await
    .unwrap();
    assert_eq!(check_consistent(&c, &url("p")).await, Ok(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_incomplete_local_cache_is_refused() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture("signed"), dir.path());
    std::fs::remove_file(
        dir.path().join(
            "blobs/sha256/96/96a55c590468f224a92393a4a5f5afe8247c27656ad94ade35768a3da116e366",
        ),
    )
    .unwrap();
    let err = publish_buildcache(&quiet_runner(), &c, &url("p"), dir.path(), &opts())
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("incomplete") && msg.contains("96a55c59"),
        "{msg}"
    );
    assert_bucket_empty(&c).await;
    // A stray file is refused too.
    copy_tree(&fixture("signed"), dir.path());
    std::fs::write(dir.path().join("v3/notes.txt"), "x").unwrap();
    let err = publish_buildcache(&quiet_runner(), &c, &url("p"), dir.path(), &opts())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("v3/notes.txt"), "{err:#}");
    assert_bucket_empty(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_simultaneous_index_merges_lose_nothing() {
    // Maximum contention on the compare-and-swap: 16 writers released by one barrier merge
    // distinct entries into one index.
    use slurm_factory::buildcache::index::{Index, update_pointer};
    use slurm_factory::buildcache::layout::SpecNode;
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let url = url("cas");
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (c, url, barrier) = (c.clone(), url.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let h = dag_hash(&format!("cas-{i}"));
            let spec = serde_json::json!({"name": format!("cas-{i}"), "version": "1.0", "hash": h});
            let ours = vec![vec![
                SpecNode::from_raw(serde_json::value::to_raw_value(&spec).unwrap()).unwrap(),
            ]];
            let store = S3Store::new(c, url).with_write_mode(WriteMode::Conditional);
            barrier.wait().await;
            let u = update_pointer::<Index>(
                &store,
                |i| i.merge_published(&ours).map(|_| ()),
                100,
                false,
            )
            .await
            .unwrap();
            (h, u.attempts)
        }));
    }
    let mut want = BTreeSet::new();
    let mut attempts = Vec::new();
    for t in tasks {
        let (h, a) = t.await.unwrap();
        want.insert(h);
        attempts.push(a);
    }
    assert_eq!(index_specs(&c, &url).await, want);
    assert!(
        attempts.iter().any(|a| *a > 1),
        "no writer ever lost a race, so the test proved nothing: {attempts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn object_store_conditions_streaming_and_digests() {
    use slurm_factory::buildcache::storage::{
        FileBody, Precondition, PreconditionFailed, PutOptions,
    };
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let store = S3Store::new(c.clone(), url("store"));
    let cond = |precondition: Precondition| PutOptions {
        content_type: Some("text/plain".into()),
        cache_control: Some("no-cache".into()),
        precondition,
    };
    assert!(store.get("v3/x").await.unwrap().is_none());
    assert!(store.head("v3/x").await.unwrap().is_none());
    let m = store
        .put("v3/x", b"one".to_vec(), cond(Precondition::IfAbsent))
        .await
        .unwrap();
    let e = store
        .put("v3/x", b"two".to_vec(), cond(Precondition::IfAbsent))
        .await
        .unwrap_err();
    assert!(e.downcast_ref::<PreconditionFailed>().is_some(), "{e}");
    let e = store
        .put(
            "v3/x",
            b"two".to_vec(),
            cond(Precondition::IfMatch("\"nope\"".into())),
        )
        .await
        .unwrap_err();
    assert!(e.downcast_ref::<PreconditionFailed>().is_some(), "{e}");
    store
        .put(
            "v3/x",
            b"two".to_vec(),
            cond(Precondition::IfMatch(m.etag.unwrap())),
        )
        .await
        .unwrap();
    assert_eq!(store.get("v3/x").await.unwrap().unwrap().bytes, b"two");

    // A large file streams as a multipart upload; a small one as one PUT.
    let dir = tempfile::tempdir().unwrap();
    let big = bytes_for("store-big", 17 * 1024 * 1024 + 5);
    std::fs::write(dir.path().join("big"), &big).unwrap();
    std::fs::write(dir.path().join("small"), b"small").unwrap();
    let body = |name: &str, bytes: &[u8]| file_body(dir.path(), name, bytes);
    let store = store.with_tuning(16, 16 * 1024 * 1024, 16 * 1024 * 1024);
    store
        .put_file("blobs/big", &body("big", &big), PutOptions::default())
        .await
        .unwrap();
    store
        .put_file(
            "blobs/small",
            &body("small", b"small"),
            PutOptions::default(),
        )
        .await
        .unwrap();
    // A file that is not the bytes it claims to be (changed since it was checked) is refused:
    // what goes up is read and hashed from one handle right before it is sent.
    let e = store
        .put_file(
            "blobs/liar",
            &FileBody {
                sha256: Sha256Hex::of(b"other"),
                ..body("small", b"small")
            },
            PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("blobs/liar")
            && format!("{e:#}").contains("changed since it was checked"),
        "{e:#}"
    );
    assert!(store.head("blobs/liar").await.unwrap().is_none());
    assert_eq!(
        Sha256Hex::of(&store.get("blobs/big").await.unwrap().unwrap().bytes),
        Sha256Hex::of(&big)
    );
    let listed: Vec<String> = store
        .list("blobs/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(listed, ["blobs/big", "blobs/small"]);
    // Digest from the stored checksum (single PUT) and by download (multipart composite).
    assert_eq!(
        store.digest("blobs/small").await.unwrap(),
        Some((Sha256Hex::of(b"small"), 5))
    );
    assert_eq!(
        store.digest("blobs/big").await.unwrap(),
        Some((Sha256Hex::of(&big), big.len() as u64))
    );
    assert!(store.digest("blobs/none").await.unwrap().is_none());
    // `holds` compares by digest: the composite checksum of the multipart object, the stored
    // one of the single-part object, and a same-size object with other bytes is not it.
    assert_eq!(
        store.holds("blobs/big", &body("big", &big)).await.unwrap(),
        Some(true)
    );
    assert_eq!(
        store
            .holds("blobs/small", &body("small", b"small"))
            .await
            .unwrap(),
        Some(true)
    );
    std::fs::write(dir.path().join("other"), b"SMALL").unwrap();
    assert_eq!(
        store
            .holds("blobs/small", &body("other", b"SMALL"))
            .await
            .unwrap(),
        Some(false)
    );
    assert_eq!(
        store
            .holds("blobs/none", &body("small", b"small"))
            .await
            .unwrap(),
        None
    );
    store.delete("blobs/small").await.unwrap();
    store.delete("blobs/small").await.unwrap();
    assert!(store.head("blobs/small").await.unwrap().is_none());
    let mpu = c
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert!(mpu.uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_compares_by_etag_when_the_server_kept_no_sha256() {
    // Objects written without a SHA-256 checksum (by another tool, or kept by a server that
    // stores none for a multipart upload, as s3s-fs does) are compared by their ETag, the
    // MD5 of the bytes or of the part MD5s, recomputed locally: no download. Other bytes of
    // the same size are not taken for ours. The proxy counts the object GETs.
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let url = url("etag");
    let dir = tempfile::tempdir().unwrap();
    const PART: usize = 5 * 1024 * 1024;
    let big = bytes_for("etag-big", 2 * PART + 77);
    let small = bytes_for("etag-small", 4096);
    let mut other = small.clone();
    other[100] ^= 1;
    for (name, bytes) in [("big", &big), ("small", &small), ("other", &other)] {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    // Written by plain SDK calls, with no SHA-256: one PUT, and one multipart upload of 5 MiB parts.
    c.put_object()
        .bucket(BUCKET)
        .key(url.key("blobs/small"))
        .body(small.clone().into())
        .send()
        .await
        .unwrap();
    let mpu = c
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(url.key("blobs/big"))
        .send()
        .await
        .unwrap();
    let id = mpu.upload_id().unwrap();
    let mut done = Vec::new();
    for (i, chunk) in big.chunks(PART).enumerate() {
        let n = i as i32 + 1;
        let p = c
            .upload_part()
            .bucket(BUCKET)
            .key(url.key("blobs/big"))
            .upload_id(id)
            .part_number(n)
            .body(chunk.to_vec().into())
            .send()
            .await
            .unwrap();
        done.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(n)
                .e_tag(p.e_tag().unwrap())
                .build(),
        );
    }
    c.complete_multipart_upload()
        .bucket(BUCKET)
        .key(url.key("blobs/big"))
        .upload_id(id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let head = c
        .head_object()
        .bucket(BUCKET)
        .key(url.key("blobs/big"))
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert!(head.checksum_sha256().is_none(), "{head:?}");
    assert!(head.e_tag().unwrap().ends_with("-3\""), "{head:?}");

    let proxy = proxy::FaultProxy::start(moto.port, proxy::Plan::default()).await;
    let pc = client(&proxy.endpoint).await;
    let body = |name: &str, bytes: &[u8]| file_body(dir.path(), name, bytes);
    let gets = || {
        proxy
            .stats()
            .object_gets
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let store = S3Store::new(pc.clone(), url.clone()).with_tuning(4, PART as u64, PART as u64);
    assert_eq!(
        store.holds("blobs/big", &body("big", &big)).await.unwrap(),
        Some(true)
    );
    assert_eq!(
        store
            .holds("blobs/small", &body("small", &small))
            .await
            .unwrap(),
        Some(true)
    );
    assert_eq!(gets(), 0, "compared by ETag, nothing downloaded");
    // Same size, other bytes: the MD5 differs, the download confirms it is not ours.
    assert_eq!(
        store
            .holds("blobs/small", &body("other", &other))
            .await
            .unwrap(),
        Some(false)
    );
    assert_eq!(gets(), 1);
    // Another part size cannot reproduce the ETag: the bytes are compared.
    let store6 = S3Store::new(pc, url).with_tuning(4, 6 << 20, 6 << 20);
    assert_eq!(
        store6.holds("blobs/big", &body("big", &big)).await.unwrap(),
        Some(true)
    );
    assert_eq!(gets(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outputs_and_summary_are_written_for_the_runner() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("output");
    let summary = dir.path().join("summary.md");
    std::fs::write(&out, "").unwrap();
    std::fs::write(&summary, "").unwrap();
    let runner = Runner::from_vars([
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_OUTPUT", out.to_str().unwrap()),
        ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
    ])
    .with_sink(Box::new(std::io::sink()));
    let url = url("slurm/25.11/13.4.0/buildcache");
    let o = PublishOptions {
        endpoint: Some(moto.endpoint.clone()),
        ..opts()
    };
    let r = publish_buildcache(&runner, &c, &url, &fixture("signed"), &o)
        .await
        .unwrap();
    let public = r.public_url.clone();
    assert_eq!(
        public,
        format!("{}/{BUCKET}/slurm/25.11/13.4.0/buildcache", moto.endpoint)
    );
    slurm_factory::buildcache::publish::write_outputs(&runner, &r).unwrap();
    let o = std::fs::read_to_string(&out).unwrap();
    assert!(o.contains("buildcache-url<<") && o.contains(&public), "{o}");
    assert!(
        o.contains("specs-published<<") && o.contains("\n2\n"),
        "{o}"
    );
    assert!(o.contains(&format!("\n{}\n", r.bytes_uploaded)), "{o}");
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("| uploaded | 13 |"), "{md}");
    assert!(
        md.contains(&format!("spack mirror add <name> {public}")),
        "{md}"
    );
    // The catalog's bucket maps to the CDN.
    let catalog = slurm_factory::catalog::Catalog::load_or_embedded(None).unwrap();
    let cat_url = slurm_factory::s3::S3Url::new(
        &catalog.publish.buildcache_bucket,
        "slurm/25.11/13.4.0/buildcache",
    )
    .unwrap();
    assert_eq!(
        S3Store::new(c.clone(), cat_url)
            .with_public_endpoint(None, "us-east-1".into())
            .public_url(),
        catalog.cdn_url("slurm/25.11/13.4.0/buildcache")
    );
}

/// In Actions the upload is one collapsible group with periodic progress lines, and the job
/// summary reports objects, bytes, what was skipped and the throughput; a re-run reports
/// everything as skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn progress_lines_in_a_group_and_a_summary_with_skips_and_throughput() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let s = synth_cache(&dir.path().join("cache"), "progress", &[8 << 20; 6]);
    let log = Captured::default();
    let runner = Runner::from_vars([("GITHUB_ACTIONS", "true")]).with_sink(Box::new(log.clone()));
    let url = url("progress");
    let o = PublishOptions {
        require_signed: false,
        progress: ProgressMode::Lines,
        progress_interval: Duration::from_millis(20),
        ..PublishOptions::default()
    };
    let r = publish_buildcache(&runner, &c, &url, &s.root, &o)
        .await
        .unwrap();
    let text = log.text();
    let group = text
        .find(&format!("::group::Uploading to {url}"))
        .unwrap_or_else(|| panic!("no group: {text}"));
    let end = text[group..]
        .find("::endgroup::")
        .map(|i| group + i)
        .unwrap_or_else(|| panic!("group not closed: {text}"));
    let inside = &text[group..end];
    let ticks: Vec<&str> = inside
        .lines()
        .filter(|l| l.contains(" objects, ") && l.ends_with("/s)"))
        .collect();
    assert!(!ticks.is_empty(), "no progress line in the group: {inside}");
    let total = r.objects_uploaded - 2; // the pointer manifests are written after the group
    assert!(
        ticks
            .iter()
            .all(|l| l.contains(&format!("/{total} objects"))),
        "{ticks:?}"
    );
    let md = r.summary_markdown();
    assert!(
        md.contains(&format!("| uploaded | {} |", r.objects_uploaded)),
        "{md}"
    );
    assert!(md.contains("| skipped (already there) | 0 | 0 B |"), "{md}");
    assert!(md.contains("MiB/s") || md.contains("GiB/s"), "{md}");

    // The re-run uploads nothing and says so.
    let r2 = publish_buildcache(&quiet_runner(), &c, &url, &s.root, &o)
        .await
        .unwrap();
    assert_eq!(r2.objects_uploaded, 0);
    let md = r2.summary_markdown();
    assert!(md.contains("| uploaded | 0 | 0 B |"), "{md}");
    assert!(
        md.contains(&format!(
            "| skipped (already there) | {} |",
            local_files(&s.root).len() - 2
        )),
        "{md}"
    );
    assert!(md.contains("index unchanged"), "{md}");
}

// ---------------------------------------------------------------------------------------
// The `sign-and-upload` binary end to end: unsigned cache → signed → S3.

fn sign_and_upload(moto: &Moto, dir: &std::path::Path, dest: &str) -> std::process::Command {
    sign_and_upload_with_key(moto, dir, dest, &fixture("keys/demo-signer.sec.asc"))
}

fn sign_and_upload_with_key(
    moto: &Moto,
    dir: &std::path::Path,
    dest: &str,
    key: &std::path::Path,
) -> std::process::Command {
    let mut c = common::in_actions("sign-and-upload", dir);
    c.args([
        "--source",
        fixture("unsigned").to_str().unwrap(),
        "--destination",
        dest,
        "--endpoint-url",
        &moto.endpoint,
        "--region",
        "us-east-1",
        "--key-file",
        key.to_str().unwrap(),
    ])
    .env("AWS_ACCESS_KEY_ID", "testing")
    .env("AWS_SECRET_ACCESS_KEY", "testing")
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .env("AWS_CONFIG_FILE", "/dev/null")
    .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    .env("RUNNER_TEMP", dir);
    c
}

fn outputs(dir: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    common::runner_file_map(&dir.join("output"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_and_upload_publishes_a_signed_cache_to_s3_and_reruns_as_a_no_op() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let url = url("slurm/25.11/13.4.0/buildcache");
    let dest = url.to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = sign_and_upload(&moto, dir.path(), &dest).output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{log}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = outputs(dir.path());
    assert_eq!(o["specs-published"], "2");
    assert_eq!(
        o["buildcache-url"],
        format!("{}/{BUCKET}/{}", moto.endpoint, url.prefix())
    );
    assert!(
        o["bytes-uploaded"].parse::<u64>().unwrap() > 10_000,
        "{o:?}"
    );
    assert!(log.contains("::group::"), "{log}");
    // The published cache is complete, and its spec manifests are signed.
    assert_eq!(check_consistent(&c, &url).await, Ok(2));
    for k in keys(&c, &url.key("v3/manifests/spec/")).await {
        let text = String::from_utf8(get_bytes(&c, &k).await.unwrap()).unwrap();
        assert!(
            text.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA"),
            "{k}"
        );
    }
    assert_eq!(
        key_index(&c, &url).await,
        BTreeSet::from(["1A00B8893F4FAE1A76DB389DE145321FBC9F04BD".to_owned()])
    );
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(summary.contains("spack mirror add"), "{summary}");

    // Same input again: nothing to upload (the existing signatures are kept).
    let dir2 = tempfile::tempdir().unwrap();
    let out = sign_and_upload(&moto, dir2.path(), &dest).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(outputs(dir2.path())["bytes-uploaded"], "0");
    // The staging directory was cleaned up.
    let leftovers: Vec<_> = std::fs::read_dir(dir2.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("sign-and-upload-")
        })
        .collect();
    assert!(leftovers.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_and_upload_fails_before_uploading_on_a_missing_key_role_or_bucket() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let dest = url("p").to_string();

    // No key: the key file does not exist.
    let dir = tempfile::tempdir().unwrap();
    let out = sign_and_upload_with_key(
        &moto,
        dir.path(),
        &dest,
        std::path::Path::new("/nonexistent/key.asc"),
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("cannot read the signing key file"));

    // A role, but the job has no id-token permission.
    let dir = tempfile::tempdir().unwrap();
    let out = sign_and_upload(&moto, dir.path(), &dest)
        .args(["--role-arn", "arn:aws:iam::123456789012:role/publish"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("id-token: write"));

    // A malformed role.
    let out = sign_and_upload(&moto, dir.path(), &dest)
        .args(["--role-arn", "publish"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("invalid role ARN"));

    // A bucket that does not exist.
    let out = sign_and_upload(&moto, dir.path(), "s3://missing-bucket/p")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"missing-bucket\" does not exist"));

    assert_bucket_empty(&c).await;
}

fn verify_s3(moto: &Moto, dest: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    common::in_actions("slurm-factory", dir.path())
        .args([
            "verify",
            "--buildcache",
            dest,
            "--endpoint-url",
            &moto.endpoint,
        ])
        .args(["--region", "us-east-1", "--trusted-key"])
        .arg(fixture("keys/demo-signer.pub.asc"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap()
}

/// `slurm-factory verify` reads an s3:// buildcache: the published cache verifies, and after
/// one blob is overwritten with other bytes it fails, naming the spec.
#[tokio::test(flavor = "multi_thread")]
async fn verify_reads_s3_buildcaches_and_catches_a_tampered_blob() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let c = client(&moto.endpoint).await;
    create_bucket(&c).await;
    let url = url("slurm/25.11/13.4.0/buildcache");
    let dest = url.to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = sign_and_upload(&moto, dir.path(), &dest).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let ok = verify_s3(&moto, &dest);
    let log = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{log}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(log.contains("verified 2 specs"), "{log}");

    // Overwrite demo-lib's tarball blob (the larger record of its manifest) with other bytes.
    let blob = "blobs/sha256/aa/aaabfbfcf309a896016154087cab77adb725da675df94849d32b2a0ee0bd7bec";
    c.put_object()
        .bucket(BUCKET)
        .key(url.key(blob))
        .body(b"not the tarball".to_vec().into())
        .send()
        .await
        .unwrap();
    let bad = verify_s3(&moto, &dest);
    let log = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{log}");
    assert!(
        log.lines()
            .any(|l| l.starts_with("::error::") && l.contains("demo-lib")),
        "the failure must name the spec: {log}"
    );
}
