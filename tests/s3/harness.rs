//! Test harness for the S3 tests: a real `moto_server` on loopback (one per test), clients,
//! synthetic Spack v3 buildcaches and a consistency checker that reads the destination the
//! way Spack does.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use slurm_factory::buildcache::layout::{self, BlobRecord as Record, Manifest, Sha256Hex};
use slurm_factory::buildcache::publish::{self, PublishReport};
use slurm_factory::buildcache::storage::{FileBody, LocalDir, S3Store, Storage, WriteMode};
use slurm_factory::gha::{Runner, Secret};
use slurm_factory::pgp::TrustedKeys;
use slurm_factory::s3::progress::ProgressMode;
use slurm_factory::s3::{CredentialSource, S3Settings, S3Url};

use crate::common;

pub const BUCKET: &str = "buildcache-test";

/// A `moto_server` child process on a free loopback port; killed when dropped.
pub struct Moto {
    child: Option<Child>,
    pub port: u16,
    pub endpoint: String,
    env: Vec<(String, String)>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Moto {
    /// Starts moto, or returns `None` after printing why the test is skipped (no moto_server;
    /// under CI that panics instead, see `common::require_tool`).
    pub async fn start() -> Option<Moto> {
        Self::start_with(&[]).await
    }

    /// Starts moto with extra environment variables.
    pub async fn start_with(env: &[(&str, &str)]) -> Option<Moto> {
        common::require_tool("moto_server")?;
        let mut m = Moto {
            child: None,
            port: free_port(),
            endpoint: String::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        m.endpoint = format!("http://127.0.0.1:{}", m.port);
        m.spawn().await;
        Some(m)
    }

    async fn spawn(&mut self) {
        let tool = common::find_tool("moto_server").expect("moto_server");
        let mut cmd = Command::new(tool);
        cmd.args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start moto_server"));
        let http = reqwest::Client::new();
        let t0 = Instant::now();
        loop {
            if http
                .get(format!("{}/moto-api/", self.endpoint))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("moto_server exited at startup: {status}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "moto_server did not answer within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server's process id, while it runs (benchmarks read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (all its in-memory state is lost).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a fresh server on the same port (moto keeps state only in memory: it is empty).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// moto's internal state (`/moto-api/data.json`), to inspect without S3 credentials.
    pub async fn data(&self) -> Value {
        reqwest::get(format!("{}/moto-api/data.json", self.endpoint))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A runner that prints nothing.
pub fn quiet_runner() -> Runner {
    Runner::from_vars([("NO_COLOR", "1")]).with_sink(Box::new(std::io::sink()))
}

/// A sink whose bytes the test can read.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Settings for moto at `endpoint` with moto's dummy static credentials.
pub fn settings(endpoint: &str) -> S3Settings {
    S3Settings {
        endpoint_url: Some(endpoint.to_owned()),
        region: Some("us-east-1".into()),
        credentials: CredentialSource::Static {
            access_key_id: "testing".into(),
            secret_access_key: Secret::new("testing"),
            session_token: None,
        },
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(2),
        ..S3Settings::default()
    }
}

pub async fn client(endpoint: &str) -> Client {
    slurm_factory::s3::connect(&quiet_runner(), &settings(endpoint))
        .await
        .unwrap()
}

pub async fn create_bucket(c: &Client) {
    c.create_bucket().bucket(BUCKET).send().await.unwrap();
}

pub fn url(prefix: &str) -> S3Url {
    S3Url::new(BUCKET, prefix).unwrap()
}

pub fn fixture(which: &str) -> PathBuf {
    common::repo_root()
        .join("tests/fixtures/spack-v3")
        .join(which)
}

// ---------------------------------------------------------------------------------------
// Publishing through the one engine (`buildcache::publish`) to an `S3Store`.

/// The knobs the S3 tests turn: the store's tuning and the engine's policy.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Requests in flight.
    pub concurrency: usize,
    /// Multipart from this size.
    pub multipart_threshold: u64,
    /// Part size.
    pub part_size: u64,
    /// Refuse unsigned spec manifests (no signing key is given in these tests).
    pub require_signed: bool,
    /// Pointer-manifest attempts.
    pub index_attempts: u32,
    /// Whole-object attempts.
    pub object_attempts: u32,
    /// Progress display.
    pub progress: ProgressMode,
    /// Progress interval.
    pub progress_interval: Duration,
    /// Write nothing.
    pub dry_run: bool,
    /// Force the write mode instead of probing.
    pub write_mode: Option<WriteMode>,
    /// Further fingerprints to publish and accept (besides the source's own key manifests).
    pub key_fingerprints: Vec<String>,
    /// The endpoint consumers read from (for the public URL).
    pub endpoint: Option<String>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        let d = publish::PublishOptions::default();
        PublishOptions {
            concurrency: 32,
            multipart_threshold: 64 * 1024 * 1024,
            part_size: 16 * 1024 * 1024,
            require_signed: true,
            index_attempts: d.index_attempts,
            object_attempts: 4,
            progress: d.progress,
            progress_interval: d.progress_interval,
            dry_run: false,
            write_mode: None,
            key_fingerprints: Vec::new(),
            endpoint: None,
        }
    }
}

/// The S3 store of `url` with the tuning of `o`.
pub fn store(c: &Client, url: &S3Url, o: &PublishOptions) -> S3Store {
    let s = S3Store::new(c.clone(), url.clone())
        .with_tuning(o.concurrency, o.multipart_threshold, o.part_size)
        .with_attempts(o.object_attempts);
    let s = match &o.endpoint {
        Some(e) => s.with_public_endpoint(
            Some(e.clone()),
            slurm_factory::s3::credentials::client_region(c),
        ),
        None => s,
    };
    match o.write_mode {
        Some(m) => s.with_write_mode(m),
        None => s,
    }
}

/// Publishes the local buildcache at `src` to `url` with the engine, as `sign-and-upload`
/// does after opening the store (bucket preflight first), without a signing key: signed
/// manifests must verify against the fixture's key; the source's key manifests are published.
pub async fn publish_buildcache(
    runner: &Runner,
    c: &Client,
    url: &S3Url,
    src: &Path,
    o: &PublishOptions,
) -> anyhow::Result<PublishReport> {
    let dest = store(c, url, o);
    dest.preflight().await?;
    let mut trusted = TrustedKeys::new();
    trusted
        .add_armored(&std::fs::read(fixture("keys/demo-signer.pub.asc")).unwrap())
        .unwrap();
    let mut fprs = o.key_fingerprints.clone();
    if let Ok(rd) = std::fs::read_dir(src.join("v3/manifests/key")) {
        for e in rd {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if let Some(f) = name.strip_suffix(".key.manifest.json") {
                fprs.push(f.to_owned());
            }
        }
    }
    let opts = publish::PublishOptions {
        dry_run: o.dry_run,
        trusted,
        allow_unsigned: !o.require_signed,
        publish_key_fingerprints: fprs
            .iter()
            .map(|f| f.parse())
            .collect::<anyhow::Result<_>>()?,
        index_attempts: o.index_attempts,
        progress: o.progress,
        progress_interval: o.progress_interval,
        ..publish::PublishOptions::default()
    };
    publish::publish(
        runner,
        &LocalDir::new(src),
        &dest as &dyn Storage,
        None,
        &opts,
    )
    .await
}

/// `x-amz-checksum-sha256` of a digest: base64 of its 32 bytes.
pub fn b64(d: &Sha256Hex) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(hex::decode(d.as_str()).unwrap())
}

/// The `blobs/` files of a local tree, as (relative path, digest, path, size).
pub fn local_blobs(root: &Path) -> Vec<(String, Sha256Hex, PathBuf, u64)> {
    local_files(root)
        .into_iter()
        .filter(|r| r.starts_with("blobs/"))
        .map(|r| {
            let p = root.join(&r);
            let d = Sha256Hex::parse(r.rsplit('/').next().unwrap()).unwrap();
            let n = std::fs::metadata(&p).unwrap().len();
            (r, d, p, n)
        })
        .collect()
}

/// A manifest as a consumer reads it: signed ones verified against the fixture's key.
fn parse_manifest(bytes: &[u8]) -> anyhow::Result<Manifest> {
    let mut trusted = TrustedKeys::new();
    trusted.add_armored(&std::fs::read(fixture("keys/demo-signer.pub.asc"))?)?;
    Ok(
        slurm_factory::buildcache::signed::read_spec_manifest(bytes, "manifest", &trusted, true)?
            .manifest,
    )
}

/// Copies a directory tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// All keys under `prefix` in the test bucket.
pub async fn keys(c: &Client, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut pages = c
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(p) = pages.next().await {
        for o in p.unwrap().contents() {
            out.insert(o.key().unwrap().to_owned());
        }
    }
    out
}

/// Every file of a local tree as `/`-separated relative paths.
pub fn local_files(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

pub async fn get_bytes(c: &Client, key: &str) -> Option<Vec<u8>> {
    let o = c.get_object().bucket(BUCKET).key(key).send().await.ok()?;
    Some(o.body.collect().await.unwrap().into_bytes().to_vec())
}

/// The DAG hashes in the index at `url` (following index.manifest.json → DB blob).
pub async fn index_specs(c: &Client, url: &S3Url) -> BTreeSet<String> {
    let m = get_bytes(c, &url.key("v3/manifests/index/index.manifest.json"))
        .await
        .expect("index manifest");
    let m = parse_manifest(&m).unwrap();
    let d = Sha256Hex::parse(&m.data[0].checksum).unwrap();
    let db: Value =
        serde_json::from_slice(&get_bytes(c, &url.key(&layout::blob_key(&d))).await.unwrap())
            .unwrap();
    db["database"]["installs"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// The fingerprints in the key index at `url`.
pub async fn key_index(c: &Client, url: &S3Url) -> BTreeSet<String> {
    let m = get_bytes(c, &url.key("v3/manifests/key/keys.manifest.json"))
        .await
        .expect("keys manifest");
    let m = parse_manifest(&m).unwrap();
    let d = Sha256Hex::parse(&m.data[0].checksum).unwrap();
    let doc: Value =
        serde_json::from_slice(&get_bytes(c, &url.key(&layout::blob_key(&d))).await.unwrap())
            .unwrap();
    doc["keys"].as_object().unwrap().keys().cloned().collect()
}

// ---------------------------------------------------------------------------------------
// Synthetic buildcaches.

const B32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A deterministic 32-character DAG-hash-like string.
pub fn dag_hash(seed: &str) -> String {
    Sha256::digest(seed.as_bytes())
        .iter()
        .take(32)
        .map(|b| B32[(*b % 32) as usize] as char)
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift), distinct per seed.
pub fn bytes_for(seed: &str, len: usize) -> Vec<u8> {
    let mut x = u64::from_le_bytes(Sha256::digest(seed.as_bytes())[..8].try_into().unwrap()) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn write_blob(root: &Path, bytes: &[u8]) -> Sha256Hex {
    let d = Sha256Hex::of(bytes);
    let p = root.join(layout::blob_key(&d));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    d
}

fn record(len: usize, media: &str, compression: &str, d: &Sha256Hex) -> Record {
    Record {
        content_length: len as u64,
        media_type: media.into(),
        compression: compression.into(),
        checksum_algorithm: "sha256".into(),
        checksum: d.as_str().into(),
    }
}

fn write_pointer(root: &Path, rel: &str, media: &str, doc: &Value) {
    let bytes = serde_json::to_vec(doc).unwrap();
    let d = write_blob(root, &bytes);
    let m = Manifest::new(vec![record(bytes.len(), media, "none", &d)]);
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, m.to_spack_json()).unwrap();
}

/// What a synthetic cache holds.
#[derive(Debug, Clone)]
pub struct Synth {
    pub root: PathBuf,
    pub specs: BTreeSet<String>,
    pub fingerprint: String,
}

/// Writes a Spack v3 buildcache with one spec per entry of `tarball_sizes` (unsigned spec
/// manifests, a DB v8 index, one public key with its key manifest and key index).
pub fn synth_cache(root: &Path, tag: &str, tarball_sizes: &[usize]) -> Synth {
    let mut nodes = Vec::new();
    let mut specs = BTreeSet::new();
    for (i, size) in tarball_sizes.iter().enumerate() {
        let name = format!("pkg-{tag}-{i}");
        let hash = dag_hash(&format!("{tag}/{i}"));
        let spec = json!({"spec":{"_meta":{"version":5},"nodes":[{"name":name,"version":"1.0","hash":hash}]}});
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&serde_json::to_vec(&spec).unwrap()).unwrap();
        let spec_gz = gz.finish().unwrap();
        nodes.push(slurm_factory::buildcache::layout::parse_spec_blob(&spec_gz, "gzip").unwrap());
        let tarball = bytes_for(&format!("{tag}/{i}/tarball"), *size);
        let td = write_blob(root, &tarball);
        let sd = write_blob(root, &spec_gz);
        let m = Manifest {
            version: 3,
            data: vec![
                record(
                    tarball.len(),
                    "application/vnd.spack.install.v2.tar+gzip",
                    "gzip",
                    &td,
                ),
                record(
                    spec_gz.len(),
                    "application/vnd.spack.spec.v5+json",
                    "gzip",
                    &sd,
                ),
            ],
        };
        let rel = format!("v3/manifests/spec/{name}/{name}-1.0-{hash}.spec.manifest.json");
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, m.to_spack_json()).unwrap();
        specs.insert(hash);
    }
    // The index as Spack writes it (`buildcache::index` reproduces Spack's bytes): installs in
    // push order of (name, version, hash), compact JSON.
    let mut index = slurm_factory::buildcache::Index::new();
    index.merge_published(&nodes).unwrap();
    let db = index.to_json();
    let d = write_blob(root, &db);
    let m = Manifest::new(vec![record(
        db.len(),
        "application/vnd.spack.db.v8+json",
        "none",
        &d,
    )]);
    let p = root.join("v3/manifests/index/index.manifest.json");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, m.to_spack_json()).unwrap();
    let fingerprint = hex::encode_upper(&Sha256::digest(tag.as_bytes())[..20]);
    let key = format!(
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nfake key {tag}\n-----END PGP PUBLIC KEY BLOCK-----\n"
    );
    let kd = write_blob(root, key.as_bytes());
    let km = Manifest::new(vec![record(key.len(), "application/pgp-keys", "none", &kd)]);
    let p = root.join(format!("v3/manifests/key/{fingerprint}.key.manifest.json"));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, km.to_spack_json()).unwrap();
    write_pointer(
        root,
        "v3/manifests/key/keys.manifest.json",
        "application/vnd.spack.keyindex.v1+json",
        &json!({"keys":{fingerprint.clone():{}}}),
    );
    std::fs::write(root.join("v3/layout.json"), br#"{"signing": "gpg"}"#).unwrap();
    Synth {
        root: root.to_owned(),
        specs,
        fingerprint,
    }
}

// ---------------------------------------------------------------------------------------
// The consistency checker.

/// Reads the destination like a consumer: the index manifest → its DB blob → a spec manifest
/// for every install; every spec/key manifest → every blob it names; the key index → its blob.
/// Returns the number of specs in the index, or the first broken reference.
pub async fn check_consistent(c: &Client, url: &S3Url) -> Result<usize, String> {
    let exists = |key: String| async move {
        c.head_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .is_ok()
    };
    let mut specs = 0;
    // The index first: everything it names was published before it.
    if let Some(m) = get_bytes(c, &url.key("v3/manifests/index/index.manifest.json")).await {
        let m = parse_manifest(&m).map_err(|e| e.to_string())?;
        let d = Sha256Hex::parse(&m.data[0].checksum).unwrap();
        let Some(db) = get_bytes(c, &url.key(&layout::blob_key(&d))).await else {
            return Err(format!("index points at missing blob {d}"));
        };
        let db: Value = serde_json::from_slice(&db).map_err(|e| e.to_string())?;
        let hashes: Vec<String> = db["database"]["installs"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let listed = keys(c, &url.key("v3/manifests/spec/")).await;
        for h in &hashes {
            if !listed
                .iter()
                .any(|k| k.ends_with(&format!("-{h}.spec.manifest.json")))
            {
                return Err(format!("index lists {h} but its spec manifest is missing"));
            }
        }
        specs = hashes.len();
    }
    for rel in ["v3/manifests/key/keys.manifest.json"] {
        if let Some(m) = get_bytes(c, &url.key(rel)).await {
            let m = parse_manifest(&m).map_err(|e| e.to_string())?;
            let d = Sha256Hex::parse(&m.data[0].checksum).unwrap();
            if !exists(url.key(&layout::blob_key(&d))).await {
                return Err(format!("{rel} points at missing blob {d}"));
            }
        }
    }
    let manifests: Vec<String> = keys(c, &url.key("v3/manifests/"))
        .await
        .into_iter()
        .filter(|k| k.ends_with(".spec.manifest.json") || k.ends_with(".key.manifest.json"))
        .collect();
    for k in manifests {
        let Some(text) = get_bytes(c, &k).await else {
            return Err(format!("listed manifest {k} vanished"));
        };
        let m = parse_manifest(&text).map_err(|e| format!("{k}: {e}"))?;
        for r in &m.data {
            let d = Sha256Hex::parse(&r.checksum).unwrap();
            if !exists(url.key(&layout::blob_key(&d))).await {
                return Err(format!("{k} points at missing blob {d}"));
            }
        }
    }
    Ok(specs)
}

/// A reader that polls [`check_consistent`] until stopped.
pub struct Reader {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u32, usize, Vec<String>)>,
}

impl Reader {
    pub fn start(c: Client, url: S3Url) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let (mut rounds, mut max_specs, mut violations) = (0u32, 0usize, Vec::new());
            while !s.load(Ordering::Relaxed) {
                match check_consistent(&c, &url).await {
                    Ok(n) => max_specs = max_specs.max(n),
                    Err(e) => violations.push(e),
                }
                rounds += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (rounds, max_specs, violations)
        });
        Reader { stop, task }
    }

    /// Stops the reader and asserts it never saw a broken reference. Returns the rounds.
    pub async fn finish(self) -> u32 {
        self.stop.store(true, Ordering::Relaxed);
        let (rounds, _max, violations) = self.task.await.unwrap();
        assert!(
            violations.is_empty(),
            "a reader saw a manifest or index pointing at a missing object: {violations:?}"
        );
        assert!(rounds > 0, "the reader never ran");
        rounds
    }
}

/// The file `name` in `dir`, which holds `bytes`, as something to upload.
pub fn file_body(dir: &Path, name: &str, bytes: &[u8]) -> FileBody {
    FileBody {
        source: LocalDir::new(dir),
        key: name.into(),
        size: bytes.len() as u64,
        sha256: Sha256Hex::of(bytes),
        parts: Vec::new(),
        part_size: 0,
    }
}
