//! The upload engine: publish a local Spack v3 buildcache to `s3://bucket/prefix`.
//!
//! Order (a reader never sees a manifest or an index that points at a missing object):
//!
//! 1. check the local tree ([`LocalCache::scan`]), the signing requirement and that every
//!    blob a manifest names is here or already at the destination; [`preflight`] the bucket;
//! 2. list `blobs/` and `v3/` once each (a no-change re-run costs two or three listings);
//! 3. hash every blob that has to be uploaded (its name is its SHA-256: a corrupt file stops
//!    the run **before** anything is written);
//! 4. upload the missing blobs with bounded parallelism, large ones as multipart uploads with
//!    parallel parts, each request carrying its SHA-256 (`x-amz-checksum-sha256`, per part
//!    for multipart) so S3 rejects corrupted bytes; a failed multipart upload is aborted;
//! 5. upload the spec and key manifests and the layout file that differ from the destination;
//! 6. merge the key index, then the index, race-free ([`super::index`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use futures::StreamExt;
use md5::{Digest as _, Md5};
use tokio::sync::Semaphore;

use super::S3Url;
use super::index::{self, CACHE_IMMUTABLE, CACHE_MANIFEST, Pointer, WriteMode};
use super::local::{LocalBlob, LocalCache, LocalFile, Sha256Hex, hash_file};
use super::progress::{Counters, Progress, ProgressMode, human_bytes};
use super::retry::{ErrorKind, classify, describe};
use crate::gha::Runner;

/// S3's smallest multipart part (except the last).
pub const MIN_PART: u64 = 5 * 1024 * 1024;

/// Tuning and policy of a publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Requests in flight at once (blobs and parts together).
    pub concurrency: usize,
    /// Objects at least this large go up as multipart uploads.
    pub multipart_threshold: u64,
    /// Part size of multipart uploads (at least [`MIN_PART`]).
    pub part_size: u64,
    /// Refuse to publish spec manifests that are not OpenPGP cleartext-signed.
    pub require_signed: bool,
    /// Read-merge-write cycles for each pointer manifest before giving up.
    pub index_attempts: u32,
    /// Whole-object attempts (on top of the SDK's per-request retries).
    pub object_attempts: u32,
    /// How progress is shown.
    pub progress: ProgressMode,
    /// Interval of the periodic progress lines.
    pub progress_interval: Duration,
    /// Plan only: check everything, list what would be uploaded, write nothing.
    pub dry_run: bool,
    /// Force the pointer-update mode instead of probing the server (tests).
    pub write_mode: Option<WriteMode>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            concurrency: 16,
            multipart_threshold: 64 * 1024 * 1024,
            part_size: 16 * 1024 * 1024,
            require_signed: true,
            index_attempts: 40,
            object_attempts: 4,
            progress: ProgressMode::Auto,
            progress_interval: Duration::from_secs(10),
            dry_run: false,
            write_mode: None,
        }
    }
}

/// What a publish did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublishReport {
    /// Objects uploaded (blobs, manifests, pointer manifests and their blobs).
    pub objects_uploaded: u64,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// Objects skipped because the destination already had them.
    pub objects_skipped: u64,
    /// Bytes of the skipped objects.
    pub bytes_skipped: u64,
    /// Blobs uploaded.
    pub blobs_uploaded: u64,
    /// Spec manifests in the published cache.
    pub specs_published: u64,
    /// Whether the index manifest was rewritten.
    pub index_written: bool,
    /// Read-merge-write cycles the index took.
    pub index_attempts: u32,
    /// How the pointer manifests were written.
    pub write_mode: Option<String>,
    /// Wall time.
    pub elapsed: Duration,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
}

impl PublishReport {
    /// Upload throughput in bytes per second.
    pub fn throughput(&self) -> f64 {
        self.bytes_uploaded as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }

    /// A Markdown job-summary section.
    pub fn summary_markdown(&self, destination: &str) -> String {
        let verb = if self.dry_run {
            "would upload"
        } else {
            "uploaded"
        };
        format!(
            "### Buildcache published to `{destination}`{}\n\n| | objects | bytes |\n|---|---:|---:|\n| {verb} | {} | {} |\n| skipped (already there) | {} | {} |\n\n{} specs, index {} ({} attempt(s), {}), {:.1} s, {}/s\n",
            if self.dry_run { " (dry run)" } else { "" },
            self.objects_uploaded,
            human_bytes(self.bytes_uploaded),
            self.objects_skipped,
            human_bytes(self.bytes_skipped),
            self.specs_published,
            if self.index_written {
                "updated"
            } else {
                "unchanged"
            },
            self.index_attempts,
            self.write_mode.as_deref().unwrap_or("-"),
            self.elapsed.as_secs_f64(),
            human_bytes(self.throughput() as u64),
        )
    }
}

/// Checks, before anything is written, that the bucket exists and the credentials may read
/// and list it. The errors say which of the two is wrong.
pub async fn preflight(client: &Client, url: &S3Url) -> Result<()> {
    match client.head_bucket().bucket(url.bucket()).send().await {
        Ok(_) => {}
        Err(e) => {
            let text = describe(&e);
            match classify(&e) {
                ErrorKind::NotFound => bail!(
                    "bucket {:?} does not exist (at this endpoint/region): check the destination URL {url}, --endpoint-url and --region",
                    url.bucket()
                ),
                ErrorKind::Denied => bail!(
                    "the credentials were refused for bucket {:?}: {text}. Check AWS_ROLE_ARN/--role-arn (and that the role may s3:ListBucket, s3:GetObject and s3:PutObject on {url}) or the AWS_* credentials",
                    url.bucket()
                ),
                _ => bail!("cannot reach bucket {:?}: {text}", url.bucket()),
            }
        }
    }
    client
        .list_objects_v2()
        .bucket(url.bucket())
        .prefix(url.key(""))
        .max_keys(1)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot list {url}: {}. Publishing needs s3:ListBucket to skip what is already there",
                describe(&e)
            )
        })?;
    Ok(())
}

/// One object at the destination, from a listing.
#[derive(Debug, Clone)]
struct Remote {
    size: u64,
    etag: String,
}

async fn list(client: &Client, url: &S3Url, rel_prefix: &str) -> Result<BTreeMap<String, Remote>> {
    let mut out = BTreeMap::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(url.bucket())
        .prefix(url.key(rel_prefix))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| anyhow::anyhow!("cannot list {url}/{rel_prefix}: {}", describe(&e)))?;
        for o in page.contents() {
            let Some(rel) = o.key().and_then(|k| url.rel(k)) else {
                continue;
            };
            out.insert(
                rel.to_owned(),
                Remote {
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
                },
            );
        }
    }
    Ok(out)
}

/// The ETag of `rel` from a HEAD request (empty when the server gives none).
async fn head_etag(client: &Client, url: &S3Url, rel: &str) -> Result<String> {
    let head = client
        .head_object()
        .bucket(url.bucket())
        .key(url.key(rel))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read {url}/{rel}: {}", describe(&e)))?;
    Ok(head
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned())
}

/// A blob ready to go: verified digest and, for multipart, its part digests.
#[derive(Debug, Clone)]
struct Planned {
    blob: LocalBlob,
    parts: Vec<Sha256Hex>,
}

/// Publishes the buildcache at `source` to `url`. See the module docs for the order and the
/// guarantees. Nothing is written when the local cache or the destination is wrong.
pub async fn publish_buildcache(
    runner: &Runner,
    client: &Client,
    url: &S3Url,
    source: &Path,
    opts: &PublishOptions,
) -> Result<PublishReport> {
    let t0 = Instant::now();
    let part_size = opts.part_size.max(MIN_PART);
    let threshold = opts.multipart_threshold.max(part_size);
    let src = source.to_owned();
    let local = tokio::task::spawn_blocking(move || LocalCache::scan(&src)).await??;

    // --- Checks that need nothing but the local tree.
    if opts.require_signed && !local.all_signed {
        let unsigned: Vec<&str> = local
            .spec_manifests
            .iter()
            .filter(|(f, _, _)| {
                std::fs::read_to_string(&f.path)
                    .map(|t| !super::local::is_clearsigned(&t))
                    .unwrap_or(true)
            })
            .map(|(f, _, _)| f.rel.as_str())
            .collect();
        bail!(
            "refusing to publish an unsigned buildcache: {} spec manifest(s) are not OpenPGP-signed ({}). Sign it first (sign-and-upload does), or allow unsigned caches explicitly",
            unsigned.len(),
            unsigned.join(", ")
        );
    }
    let Some((_, index_manifest)) = &local.index_manifest else {
        bail!(
            "{} has no {}: push with `spack buildcache push --update-index` (or run `spack buildcache update-index`) first",
            source.display(),
            super::local::INDEX_MANIFEST
        );
    };
    let local_index = local.read_pointed_json(index_manifest)?;
    let index_record = index_manifest.data[0].clone();
    let local_keys = match &local.keys_manifest {
        Some((_, m)) => Some((local.read_pointed_json(m)?, m.data[0].clone())),
        None => None,
    };

    // --- The destination.
    preflight(client, url).await?;
    let (remote_blobs, remote_v3) =
        tokio::try_join!(list(client, url, "blobs/"), list(client, url, "v3/"))?;

    let missing_refs: Vec<String> = local
        .referenced_blobs()
        .into_iter()
        .filter(|(d, _)| !local.blobs.contains_key(d) && !remote_blobs.contains_key(&d.blob_path()))
        .map(|(d, by)| format!("{} (named by {by})", d.blob_path()))
        .collect();
    if !missing_refs.is_empty() {
        bail!(
            "the local buildcache is incomplete: blobs {} are neither in {} nor at {url}; nothing was uploaded",
            missing_refs.join(", "),
            source.display()
        );
    }
    let remote_specs: std::collections::BTreeSet<String> = remote_v3
        .keys()
        .filter_map(|k| k.strip_suffix(".spec.manifest.json"))
        .filter_map(|k| k.rsplit('-').next())
        .map(str::to_owned)
        .collect();
    let local_specs = local.spec_hashes();
    if let Some(installs) = local_index["database"]["installs"].as_object() {
        let orphans: Vec<&String> = installs
            .iter()
            .filter(|(_, r)| r["in_buildcache"].as_bool().unwrap_or(true))
            .map(|(h, _)| h)
            .filter(|h| !local_specs.contains(*h) && !remote_specs.contains(*h))
            .collect();
        if !orphans.is_empty() {
            bail!(
                "the local index lists specs without a spec manifest here or at {url}: {orphans:?}; rebuild the index (`spack buildcache update-index`); nothing was uploaded"
            );
        }
    }

    let mut report = PublishReport {
        specs_published: local.spec_manifests.len() as u64,
        dry_run: opts.dry_run,
        ..PublishReport::default()
    };
    let mut to_hash = Vec::new();
    for b in local.blobs.values() {
        match remote_blobs.get(&b.file.rel) {
            Some(r) if r.size == b.file.size => {
                report.objects_skipped += 1;
                report.bytes_skipped += b.file.size;
            }
            _ => to_hash.push(b.clone()),
        }
    }

    // --- Verify what will be uploaded (all of it, before the first byte goes out).
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hashing: Vec<_> = to_hash
        .into_iter()
        .map(|blob| async move {
            let path = blob.file.path.clone();
            let parts = (blob.file.size >= threshold).then_some(part_size);
            let (digest, part_digests) =
                tokio::task::spawn_blocking(move || hash_file(&path, parts)).await??;
            if digest != blob.digest {
                bail!(
                    "local blob {} is corrupt: its SHA-256 is {digest}, not the {} its name promises; rebuild or re-fetch the buildcache. Nothing was uploaded",
                    blob.file.rel,
                    blob.digest
                );
            }
            Ok(Planned { blob, parts: part_digests })
        })
        .collect();
    let planned = bounded(hashing, workers)
        .await
        .into_iter()
        .collect::<Result<Vec<Planned>>>()?;

    // Manifests that differ from the destination (single-part ETag = MD5 of the content).
    let mut manifests: Vec<LocalFile> = local
        .spec_manifests
        .iter()
        .map(|(f, _, _)| f.clone())
        .chain(local.key_manifests.iter().map(|(f, _)| f.clone()))
        .chain(local.layout.iter().cloned())
        .collect();
    manifests.sort_by(|a, b| a.rel.cmp(&b.rel));
    // Read and compare them with bounded parallelism (the comparison may need a HEAD each).
    let remote_v3 = &remote_v3;
    let compared: Vec<Result<(LocalFile, Vec<u8>, bool)>> = futures::stream::iter(manifests)
        .map(|f| async move {
            let bytes = tokio::fs::read(&f.path)
                .await
                .with_context(|| format!("cannot read {}", f.path.display()))?;
            let md5 = hex::encode(Md5::digest(&bytes));
            let mut remote = remote_v3.get(&f.rel).cloned();
            // Some S3-compatible servers (s3s-fs, for one) list objects without ETags; ask
            // for the ETag of a same-size manifest so an unchanged one is not uploaded again.
            if let Some(r) = remote.as_mut()
                && r.etag.is_empty()
                && r.size == bytes.len() as u64
            {
                r.etag = head_etag(client, url, &f.rel).await?;
            }
            let unchanged =
                matches!(remote, Some(r) if r.etag == md5 && r.size == bytes.len() as u64);
            Ok((f, bytes, unchanged))
        })
        .buffered(opts.concurrency.max(1))
        .collect()
        .await;
    let mut manifest_bytes = Vec::new();
    for c in compared {
        let (f, bytes, unchanged) = c?;
        if unchanged {
            report.objects_skipped += 1;
            report.bytes_skipped += f.size;
        } else {
            manifest_bytes.push((f, bytes));
        }
    }

    let total_objects = (planned.len() + manifest_bytes.len()) as u64;
    let total_bytes: u64 = planned.iter().map(|p| p.blob.file.size).sum::<u64>()
        + manifest_bytes
            .iter()
            .map(|(_, b)| b.len() as u64)
            .sum::<u64>();
    runner.info(&format!(
        "{url}: {} blob(s) and {} manifest(s) to upload ({}), {} object(s) already there",
        planned.len(),
        manifest_bytes.len(),
        human_bytes(total_bytes),
        report.objects_skipped
    ));
    if opts.dry_run {
        report.objects_uploaded = total_objects;
        report.bytes_uploaded = total_bytes;
        report.elapsed = t0.elapsed();
        return Ok(report);
    }

    // --- Upload: blobs, then manifests, then pointers.
    let _group = runner.group(&format!("Uploading to {url}"));
    let progress = Progress::start(
        runner,
        opts.progress,
        opts.progress_interval,
        total_objects,
        total_bytes,
    );
    let counters = progress.counters();
    let slots = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let ctx = Ctx {
        client: client.clone(),
        url: url.clone(),
        slots,
        counters: counters.clone(),
        part_size,
        attempts: opts.object_attempts.max(1),
    };

    let blob_count = planned.len() as u64;
    // Every blob is attempted even when one fails, so a re-run has less to do; the first
    // error is reported. Multipart uploads abort themselves on failure.
    let uploads: Vec<_> = planned.into_iter().map(|p| ctx.upload_blob(p)).collect();
    let results = bounded(uploads, opts.concurrency.max(1)).await;
    if let Some(e) = results.into_iter().find_map(Result::err) {
        return Err(e.context(format!(
            "uploading blobs to {url} failed; no manifest or index was changed. Re-run to upload what is missing"
        )));
    }
    report.blobs_uploaded = blob_count;

    let uploads: Vec<_> = manifest_bytes
        .into_iter()
        .map(|(f, bytes)| ctx.upload_manifest(f, bytes))
        .collect();
    let results = bounded(uploads, opts.concurrency.max(1)).await;
    if let Some(e) = results.into_iter().find_map(Result::err) {
        return Err(e.context(format!(
            "uploading manifests to {url} failed; the index was not changed. Re-run to finish"
        )));
    }
    progress.finish();
    report.objects_uploaded = counters.objects.load(Ordering::Relaxed);
    report.bytes_uploaded = counters.bytes.load(Ordering::Relaxed);

    let mode = match opts.write_mode {
        Some(m) => m,
        None => index::probe_write_mode(client, url).await?,
    };
    if mode == WriteMode::Lock {
        runner.warning(&format!(
            "{url} does not support conditional writes; merging the index under a lease lock ({}). Run a final publish after concurrent jobs to be safe",
            index::LOCK_REL
        ));
    }
    report.write_mode = Some(format!("{mode:?}").to_lowercase());
    if let Some((keys, record)) = &local_keys {
        let u = index::update_pointer_with(
            client,
            url,
            Pointer::Keys,
            keys,
            Some(record),
            mode,
            opts.index_attempts,
        )
        .await?;
        report.objects_uploaded += u.objects_written;
    }
    let u = index::update_pointer_with(
        client,
        url,
        Pointer::Index,
        &local_index,
        Some(&index_record),
        mode,
        opts.index_attempts,
    )
    .await?;
    report.index_written = u.written;
    report.index_attempts = u.attempts;
    report.objects_uploaded += u.objects_written;
    report.elapsed = t0.elapsed();
    Ok(report)
}

/// The public URL consumers use for a published prefix: the catalog's CDN when `url` is in the
/// catalog's buildcache bucket, else the S3 (or endpoint) URL.
pub fn public_url(
    catalog: Option<&crate::catalog::Catalog>,
    url: &S3Url,
    endpoint: Option<&str>,
    region: &str,
) -> String {
    match catalog {
        Some(c) if c.publish.buildcache_bucket == url.bucket() && endpoint.is_none() => {
            c.cdn_url(url.prefix())
        }
        _ => url.http_url(endpoint, region),
    }
}

/// Runs `futs` with at most `limit` of them in flight; results in completion order.
async fn bounded<F: std::future::Future>(futs: Vec<F>, limit: usize) -> Vec<F::Output> {
    let mut pending = futs.into_iter();
    let mut running = futures::stream::FuturesUnordered::new();
    let mut out = Vec::new();
    for f in pending.by_ref().take(limit.max(1)) {
        running.push(f);
    }
    while let Some(r) = running.next().await {
        out.push(r);
        if let Some(f) = pending.next() {
            running.push(f);
        }
    }
    out
}

/// Writes the step outputs of a publish (`buildcache-url`, `specs-published`,
/// `bytes-uploaded`) and its job-summary section.
pub fn write_outputs(
    runner: &Runner,
    report: &PublishReport,
    destination: &S3Url,
    buildcache_url: &str,
) -> Result<()> {
    runner.set_output("buildcache-url", buildcache_url)?;
    runner.set_output("specs-published", &report.specs_published.to_string())?;
    let bytes = if report.dry_run {
        0
    } else {
        report.bytes_uploaded
    };
    runner.set_output("bytes-uploaded", &bytes.to_string())?;
    runner.append_summary(&format!(
        "{}
Consumers: `spack mirror add <name> {buildcache_url}`
",
        report.summary_markdown(&destination.to_string())
    ))
}

/// Uploads one local file as a multipart upload with per-part SHA-256 checksums (parts in
/// parallel, the upload aborted on failure). For [`super::store::S3Store::put_file`].
pub(crate) async fn put_file_multipart(
    client: &Client,
    url: &S3Url,
    file: LocalFile,
    part_size: u64,
    content_type: &str,
    cache_control: &str,
) -> Result<()> {
    let path = file.path.clone();
    let (digest, parts) =
        tokio::task::spawn_blocking(move || hash_file(&path, Some(part_size))).await??;
    let ctx = Ctx {
        client: client.clone(),
        url: url.clone(),
        slots: Arc::new(Semaphore::new(8)),
        counters: Arc::new(Counters::default()),
        part_size,
        attempts: 3,
    };
    let rel = file.rel.clone();
    let p = Planned {
        blob: LocalBlob { digest, file },
        parts,
    };
    super::retry::with_retries(
        ctx.attempts,
        Duration::from_millis(500),
        |e: &OpError| e.kind == ErrorKind::Transient,
        |_| ctx.multipart(&p, content_type, cache_control),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}").context(format!("cannot upload {rel}")))
}

/// Shared state of the upload tasks.
struct Ctx {
    client: Client,
    url: S3Url,
    slots: Arc<Semaphore>,
    counters: Arc<Counters>,
    part_size: u64,
    attempts: u32,
}

/// An S3 failure with its classification, for whole-object retries.
#[derive(Debug)]
struct OpError {
    kind: ErrorKind,
    msg: String,
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for OpError {}

fn op_err<E, R>(what: &str, e: &aws_sdk_s3::error::SdkError<E, R>) -> OpError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: super::retry::HttpStatus + std::fmt::Debug,
{
    OpError {
        kind: classify(e),
        msg: format!("{what}: {}", describe(e)),
    }
}

impl Ctx {
    async fn upload_blob(&self, p: Planned) -> Result<()> {
        let rel = p.blob.file.rel.clone();
        let r = super::retry::with_retries(
            self.attempts,
            Duration::from_millis(500),
            |e: &OpError| e.kind == ErrorKind::Transient,
            |_| async {
                if p.parts.is_empty() {
                    self.put_blob(&p).await
                } else {
                    self.multipart(&p, "application/octet-stream", CACHE_IMMUTABLE)
                        .await
                }
            },
        )
        .await;
        r.map_err(|e| anyhow::anyhow!("{e}").context(format!("cannot upload {rel}")))?;
        self.counters.objects.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn put_blob(&self, p: &Planned) -> Result<(), OpError> {
        let f = &p.blob.file;
        let _slot = self.slots.acquire().await.expect("semaphore open");
        let body = ByteStream::read_from()
            .path(&f.path)
            .buffer_size(256 * 1024)
            .build()
            .await
            .map_err(|e| OpError {
                kind: ErrorKind::Permanent,
                msg: format!("cannot read {}: {e}", f.path.display()),
            })?;
        self.client
            .put_object()
            .bucket(self.url.bucket())
            .key(self.url.key(&f.rel))
            .content_type("application/octet-stream")
            .cache_control(CACHE_IMMUTABLE)
            .content_length(f.size as i64)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(p.blob.digest.to_base64())
            .body(body)
            .send()
            .await
            .map_err(|e| op_err(&format!("PUT {}", f.rel), &e))?;
        self.counters.bytes.fetch_add(f.size, Ordering::Relaxed);
        Ok(())
    }

    async fn multipart(
        &self,
        p: &Planned,
        content_type: &str,
        cache_control: &str,
    ) -> Result<(), OpError> {
        let f = &p.blob.file;
        let key = self.url.key(&f.rel);
        let created = {
            let _slot = self.slots.acquire().await.expect("semaphore open");
            self.client
                .create_multipart_upload()
                .bucket(self.url.bucket())
                .key(&key)
                .content_type(content_type)
                .cache_control(cache_control)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .send()
                .await
                .map_err(|e| op_err(&format!("CreateMultipartUpload {}", f.rel), &e))?
        };
        let Some(upload_id) = created.upload_id().map(str::to_owned) else {
            return Err(OpError {
                kind: ErrorKind::Permanent,
                msg: "CreateMultipartUpload returned no upload id".into(),
            });
        };
        let mut guard = AbortGuard {
            client: self.client.clone(),
            bucket: self.url.bucket().to_owned(),
            key: key.clone(),
            upload_id: Some(upload_id.clone()),
        };
        let result = self.send_parts(p, &key, &upload_id).await;
        match result {
            Ok(()) => {
                guard.upload_id = None;
                Ok(())
            }
            Err(e) => {
                guard.abort().await;
                Err(e)
            }
        }
    }

    async fn send_parts(&self, p: &Planned, key: &str, upload_id: &str) -> Result<(), OpError> {
        let f = &p.blob.file;
        let sends: Vec<_> = p
            .parts
            .iter()
            .enumerate()
            .map(|(i, digest)| async move {
                let offset = i as u64 * self.part_size;
                let len = self.part_size.min(f.size - offset);
                let _slot = self.slots.acquire().await.expect("semaphore open");
                let body = ByteStream::read_from()
                    .path(&f.path)
                    .offset(offset)
                    .length(Length::Exact(len))
                    .buffer_size(256 * 1024)
                    .build()
                    .await
                    .map_err(|e| OpError {
                        kind: ErrorKind::Permanent,
                        msg: format!("cannot read {}: {e}", f.path.display()),
                    })?;
                let out = self
                    .client
                    .upload_part()
                    .bucket(self.url.bucket())
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(i as i32 + 1)
                    .content_length(len as i64)
                    .checksum_algorithm(ChecksumAlgorithm::Sha256)
                    .checksum_sha256(digest.to_base64())
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| op_err(&format!("UploadPart {} #{}", f.rel, i + 1), &e))?;
                self.counters.bytes.fetch_add(len, Ordering::Relaxed);
                Ok::<_, OpError>(
                    CompletedPart::builder()
                        .part_number(i as i32 + 1)
                        .set_e_tag(out.e_tag().map(str::to_owned))
                        .checksum_sha256(digest.to_base64())
                        .build(),
                )
            })
            .collect();
        let parts = bounded(sends, 8)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, OpError>>();
        let mut parts = match parts {
            Ok(p) => p,
            Err(e) => {
                // Bytes of parts that went up are uploaded again on retry; do not count them.
                return Err(e);
            }
        };
        parts.sort_by_key(|p| p.part_number());
        let _slot = self.slots.acquire().await.expect("semaphore open");
        self.client
            .complete_multipart_upload()
            .bucket(self.url.bucket())
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| op_err(&format!("CompleteMultipartUpload {}", f.rel), &e))?;
        Ok(())
    }

    async fn upload_manifest(&self, f: LocalFile, bytes: Vec<u8>) -> Result<()> {
        let len = bytes.len() as u64;
        super::retry::with_retries(
            self.attempts,
            Duration::from_millis(500),
            |e: &OpError| e.kind == ErrorKind::Transient,
            |_| {
                let bytes = bytes.clone();
                let f = &f;
                async move {
                    let _slot = self.slots.acquire().await.expect("semaphore open");
                    index::put_small(
                        &self.client,
                        &self.url,
                        &f.rel,
                        bytes,
                        "application/json",
                        CACHE_MANIFEST,
                        None,
                    )
                    .await
                    .map_err(|e| op_err(&format!("PUT {}", f.rel), &e))
                }
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.counters.objects.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }
}

/// Aborts a multipart upload that did not complete, so no invisible parts are left (and
/// billed). On the error path it is awaited; if the task is cancelled it is spawned.
struct AbortGuard {
    client: Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
}

impl AbortGuard {
    async fn abort(&mut self) {
        let Some(id) = self.upload_id.take() else {
            return;
        };
        // The failure that got us here may be an outage: keep trying for a while, so no
        // invisible parts are left behind (a bucket lifecycle rule
        // `AbortIncompleteMultipartUpload` is the backstop).
        for attempt in 0..8 {
            let r = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&id)
                .send()
                .await;
            match r {
                Ok(_) => return,
                Err(e) if classify(&e) == ErrorKind::NotFound => return,
                Err(_) => {
                    tokio::time::sleep(super::retry::backoff(
                        attempt,
                        Duration::from_millis(250),
                        Duration::from_secs(5),
                    ))
                    .await
                }
            }
        }
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if let Some(id) = self.upload_id.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let (client, bucket, key) =
                (self.client.clone(), self.bucket.clone(), self.key.clone());
            handle.spawn(async move {
                let _ = client
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await;
            });
        }
    }
}
