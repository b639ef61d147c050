//! Concurrency and fault tolerance: many publishers on one prefix, dropped connections,
//! injected 503s, a server outage and a killed server. A reader polls the destination
//! throughout and must never see a manifest or an index that points at a missing object.

use std::collections::BTreeSet;
use std::time::Duration;

use slurm_factory::buildcache::storage::{S3Store, WriteMode};
use slurm_factory::s3::progress::ProgressMode;

use crate::harness::*;
use crate::proxy::{FaultProxy, Plan};

fn opts() -> PublishOptions {
    PublishOptions {
        progress: ProgressMode::Quiet,
        require_signed: false,
        multipart_threshold: 6 * 1024 * 1024,
        part_size: 5 * 1024 * 1024,
        ..PublishOptions::default()
    }
}

/// Sizes with one multipart-sized tarball among small ones.
fn sizes(tag_index: usize) -> Vec<usize> {
    vec![
        1024 + tag_index,
        40_000,
        11 * 1024 * 1024 + 17 * tag_index,
        300_000,
    ]
}

async fn publish_concurrently(
    endpoint: &str,
    n: usize,
    tag: &str,
    write_mode: Option<WriteMode>,
) -> Vec<String> {
    let reader_client = client(endpoint).await;
    let url = url(tag);
    let dir = tempfile::tempdir().unwrap();
    let caches: Vec<Synth> = (0..n)
        .map(|i| {
            synth_cache(
                &dir.path().join(i.to_string()),
                &format!("{tag}-{i}"),
                &[1000 + i, 20_000, 70_000],
            )
        })
        .collect();
    let reader = Reader::start(reader_client.clone(), url.clone());
    // Every publisher knows the others' keys (as matrix legs share one signing key).
    let fprs: Vec<String> = caches.iter().map(|s| s.fingerprint.clone()).collect();
    let mut tasks = Vec::new();
    for s in &caches {
        let c = client(endpoint).await;
        let url = url.clone();
        let root = s.root.clone();
        let o = PublishOptions {
            write_mode,
            key_fingerprints: fprs.clone(),
            ..opts()
        };
        tasks.push(tokio::spawn(async move {
            publish_buildcache(&quiet_runner(), &c, &url, &root, &o).await
        }));
    }
    let mut attempts = Vec::new();
    let mut modes = Vec::new();
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert!(r.index_written);
        attempts.push(r.index_attempts);
        modes.push(r.write_mode.unwrap());
    }
    let rounds = reader.finish().await;
    let want: BTreeSet<String> = caches
        .iter()
        .flat_map(|s| s.specs.iter().cloned())
        .collect();
    assert_eq!(want.len(), 3 * n);
    assert_eq!(
        index_specs(&reader_client, &url).await,
        want,
        "index attempts {attempts:?}"
    );
    let fprs: BTreeSet<String> = caches.iter().map(|s| s.fingerprint.clone()).collect();
    assert_eq!(key_index(&reader_client, &url).await, fprs);
    assert_eq!(check_consistent(&reader_client, &url).await, Ok(3 * n));
    eprintln!("{n} publishers: index attempts {attempts:?}, reader rounds {rounds}");
    modes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_publishers_end_with_every_spec_in_the_index() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    create_bucket(&client(&moto.endpoint).await).await;
    let modes = publish_concurrently(&moto.endpoint, 8, "eight", None).await;
    assert!(modes.iter().all(|m| m == "conditional"), "{modes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_conditional_writes_the_lock_fallback_keeps_every_spec() {
    // The proxy strips If-Match/If-None-Match, like a server that ignores them: the probe must
    // notice and the publishers must serialise through the lease lock.
    let Some(moto) = Moto::start().await else {
        return;
    };
    create_bucket(&client(&moto.endpoint).await).await;
    let proxy = FaultProxy::start(
        moto.port,
        Plan {
            strip_conditions: true,
            ..Plan::default()
        },
    )
    .await;
    let probe = S3Store::new(client(&proxy.endpoint).await, url("lock"))
        .probe_write_mode()
        .await
        .unwrap();
    assert_eq!(probe, WriteMode::Lock);
    let modes = publish_concurrently(&proxy.endpoint, 4, "lock", None).await;
    assert!(modes.iter().all(|m| m == "lock"), "{modes:?}");
    assert!(
        proxy
            .stats()
            .stripped
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

/// Publishes one synthetic cache through `proxy` with a reader polling directly at moto, and
/// checks the end state.
async fn publish_through(
    moto: &Moto,
    proxy: &FaultProxy,
    tag: &str,
) -> slurm_factory::buildcache::publish::PublishReport {
    let direct = client(&moto.endpoint).await;
    let url = url(tag);
    let dir = tempfile::tempdir().unwrap();
    let s = synth_cache(dir.path(), tag, &sizes(1));
    let reader = Reader::start(direct.clone(), url.clone());
    let c = client(&proxy.endpoint).await;
    let r = publish_buildcache(&quiet_runner(), &c, &url, &s.root, &opts())
        .await
        .unwrap();
    reader.finish().await;
    assert_eq!(index_specs(&direct, &url).await, s.specs);
    assert_eq!(check_consistent(&direct, &url).await, Ok(s.specs.len()));
    for rel in local_files(&s.root) {
        if rel.starts_with("blobs/") {
            let got = get_bytes(&direct, &url.key(&rel)).await.expect("blob");
            assert_eq!(got, std::fs::read(s.root.join(&rel)).unwrap(), "{rel}");
        }
    }
    let mpu = direct
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert!(
        mpu.uploads().is_empty(),
        "incomplete multipart uploads left: {:?}",
        mpu.uploads()
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_connections_are_retried_to_a_complete_cache() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    create_bucket(&client(&moto.endpoint).await).await;
    let proxy = FaultProxy::start(
        moto.port,
        Plan {
            drop_every: Some(4),
            ..Plan::default()
        },
    )
    .await;
    publish_through(&moto, &proxy, "dropped").await;
    assert!(
        proxy
            .stats()
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn injected_503_slowdowns_are_retried_to_a_complete_cache() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    create_bucket(&client(&moto.endpoint).await).await;
    let proxy = FaultProxy::start(
        moto.port,
        Plan {
            fail_503_every: Some(3),
            fail_503: BTreeSet::from([1, 2]),
            ..Plan::default()
        },
    )
    .await;
    publish_through(&moto, &proxy, "slowdown").await;
    assert!(
        proxy
            .stats()
            .injected_503
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_server_outage_mid_upload_is_ridden_out_by_retries() {
    // "Server down, then back with its data": the proxy refuses every connection for 1.5 s
    // from the 12th request on (moto keeps state only in memory, so a real restart would
    // also lose the bucket; see the next tests for a real kill).
    let Some(moto) = Moto::start().await else {
        return;
    };
    create_bucket(&client(&moto.endpoint).await).await;
    let proxy = FaultProxy::start(
        moto.port,
        Plan {
            outage: Some((12, Duration::from_millis(1500))),
            ..Plan::default()
        },
    )
    .await;
    publish_through(&moto, &proxy, "outage").await;
    assert!(
        proxy
            .stats()
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_outage_fails_the_run_and_a_rerun_uploads_only_what_is_missing() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let direct = client(&moto.endpoint).await;
    create_bucket(&direct).await;
    let proxy = FaultProxy::start(
        moto.port,
        Plan {
            outage: Some((14, Duration::from_secs(5))),
            ..Plan::default()
        },
    )
    .await;
    let url = url("rerun");
    let dir = tempfile::tempdir().unwrap();
    let s = synth_cache(
        dir.path(),
        "rerun",
        &[2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000],
    );
    let reader = Reader::start(direct.clone(), url.clone());
    // Few retries, so the run gives up inside the outage.
    let mut st = settings(&proxy.endpoint);
    st.max_attempts = 2;
    let c = slurm_factory::s3::connect(&quiet_runner(), &st)
        .await
        .unwrap();
    let o = PublishOptions {
        object_attempts: 1,
        concurrency: 2,
        ..opts()
    };
    let err = publish_buildcache(&quiet_runner(), &c, &url, &s.root, &o)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("Re-run"), "{err:#}");
    // The index was never written, so a consumer sees no half-published specs.
    assert!(
        get_bytes(&direct, &url.key("v3/manifests/index/index.manifest.json"))
            .await
            .is_none()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let r = publish_buildcache(&quiet_runner(), &c, &url, &s.root, &o)
        .await
        .unwrap();
    reader.finish().await;
    assert!(
        r.objects_skipped > 0,
        "the re-run re-uploaded everything: {r:?}"
    );
    let total = local_files(&s.root).len() as u64;
    assert!(r.objects_uploaded < total + 4, "{r:?}");
    assert_eq!(index_specs(&direct, &url).await, s.specs);
    assert_eq!(check_consistent(&direct, &url).await, Ok(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_mid_upload_then_restarted_ends_complete_after_a_rerun() {
    // A real kill of moto_server in the middle of an upload. moto keeps everything in memory,
    // so the restarted server is empty (bucket included): the test recreates the bucket, as an
    // operator would recreate a lost one, and the re-run then publishes everything again. What
    // this proves: the killed run fails cleanly (no panic, no hang) and a re-run against the
    // restarted server converges to a complete, consistent cache.
    let Some(mut moto) = Moto::start().await else {
        return;
    };
    create_bucket(&client(&moto.endpoint).await).await;
    let url = url("killed");
    let dir = tempfile::tempdir().unwrap();
    let sizes: Vec<usize> = (0..40).map(|i| 200_000 + i * 1000).collect();
    let s = synth_cache(dir.path(), "killed", &sizes);
    let mut st = settings(&moto.endpoint);
    st.max_attempts = 3;
    let c = slurm_factory::s3::connect(&quiet_runner(), &st)
        .await
        .unwrap();
    let o = PublishOptions {
        concurrency: 2,
        object_attempts: 1,
        ..opts()
    };
    let watcher = client(&moto.endpoint).await;
    let root = s.root.clone();
    let (c2, url2, o2) = (c.clone(), url.clone(), o.clone());
    let run =
        tokio::spawn(
            async move { publish_buildcache(&quiet_runner(), &c2, &url2, &root, &o2).await },
        );
    // Kill once some blobs are in.
    loop {
        if keys(&watcher, &url.key("blobs/")).await.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    moto.kill();
    let err = run.await.unwrap().unwrap_err();
    assert!(format!("{err:#}").contains("Re-run"), "{err:#}");
    moto.restart().await;
    let direct = client(&moto.endpoint).await;
    create_bucket(&direct).await;
    let reader = Reader::start(direct.clone(), url.clone());
    let r = publish_buildcache(&quiet_runner(), &c, &url, &s.root, &o)
        .await
        .unwrap();
    reader.finish().await;
    assert!(r.index_written);
    assert_eq!(index_specs(&direct, &url).await, s.specs);
    assert_eq!(check_consistent(&direct, &url).await, Ok(40));
}
