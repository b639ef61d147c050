//! [`S3Store`]: a buildcache prefix in an S3 bucket (AWS or S3-compatible), and the only code
//! that talks to the AWS SDK about objects.
//!
//! - every write carries its SHA-256 (`x-amz-checksum-sha256`, per part for multipart
//!   uploads), so the server refuses bytes that are not the ones that were checked;
//! - files from [`S3Store::multipart_threshold`] up go up as multipart uploads with parallel
//!   parts (aborted on failure, so no invisible parts are left);
//! - requests in flight are bounded by one semaphore shared by parts and objects;
//! - a whole object is retried on transient failures on top of the SDK's per-request retries;
//! - Cache-Control: immutable for blobs, short for manifests, `no-cache` for the index and
//!   key index;
//! - conditional writes (`If-None-Match: *`, `If-Match`) where the server enforces them
//!   ([`S3Store::probe_write_mode`]), else [`WriteMode::Lock`];
//! - [`Storage::digest`] reads the SHA-256 S3 stored for a single-part object instead of
//!   downloading it; [`Storage::lookup`] reports what one HEAD says (stored checksums, an
//!   MD5 or multipart ETag), which a local file is compared with (`Existing::matches`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use futures::future::BoxFuture;
use tokio::sync::{OnceCell, Semaphore};

use super::{
    Capabilities, Existing, FileBody, Object, ObjectMeta, Precondition, PreconditionFailed,
    PutOptions, Storage,
};
use crate::buildcache::layout::Sha256Hex;
use crate::s3::S3Url;
use crate::s3::retry::{self, ErrorKind, classify, describe};

/// S3's smallest multipart part (except the last).
pub(crate) const MIN_PART: u64 = 5 * 1024 * 1024;
/// `Cache-Control` of content-addressed blobs: a CDN may keep them forever.
pub(crate) const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of spec/key manifests and the layout file.
pub(crate) const CACHE_MANIFEST: &str = "public, max-age=60, must-revalidate";
/// `Cache-Control` of the index and key index manifests: always revalidate (cheap 304s).
pub(crate) const CACHE_INDEX: &str = "no-cache";

/// How a read-modify-write of the index is made safe against concurrent writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Compare-and-swap with conditional writes (AWS S3, MinIO, moto, local directories).
    Conditional,
    /// A lease lock, for servers that ignore or reject conditional writes (best effort; see
    /// [`crate::buildcache::index`]).
    Lock,
}

impl std::fmt::Display for WriteMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteMode::Conditional => "conditional",
            WriteMode::Lock => "lock",
        })
    }
}

/// The engine's Cache-Control policy by key.
pub(crate) fn cache_control_for(key: &str) -> &'static str {
    if key.starts_with("blobs/") {
        CACHE_IMMUTABLE
    } else if key.ends_with("index.manifest.json") || key.ends_with("keys.manifest.json") {
        CACHE_INDEX
    } else {
        CACHE_MANIFEST
    }
}

/// A buildcache prefix in a bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    url: S3Url,
    part_size: u64,
    multipart_threshold: u64,
    concurrency: usize,
    attempts: u32,
    slots: Arc<Semaphore>,
    write_mode: Arc<OnceCell<WriteMode>>,
    public: Option<(Option<String>, String)>,
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
    R: retry::HttpStatus + std::fmt::Debug,
{
    OpError {
        kind: classify(e),
        msg: format!("{what}: {}", describe(e)),
    }
}

fn b64(d: &Sha256Hex) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(hex::decode(d.as_str()).expect("validated hex"))
}

/// The `Content-Type` of a blob upload: the caller's, else binary.
fn content_type(opts: &PutOptions) -> &str {
    opts.content_type
        .as_deref()
        .unwrap_or("application/octet-stream")
}

/// The `Cache-Control` of an upload: the caller's, else the one for `key`'s kind.
fn cache_control<'a>(opts: &'a PutOptions, key: &str) -> &'a str {
    opts.cache_control
        .as_deref()
        .unwrap_or_else(|| cache_control_for(key))
}

/// The SHA-256 and size S3 stored for a single-part object (`None` for a multipart one, whose
/// checksum is a checksum of part checksums: its ETag ends in `-<parts>`, and moto even omits
/// the suffix on the checksum, or for an object stored without a SHA-256).
fn single_part_sha256(
    h: &aws_sdk_s3::operation::head_object::HeadObjectOutput,
) -> Result<Option<(Sha256Hex, u64)>> {
    let multipart = h.e_tag().is_some_and(|e| e.trim_matches('"').contains('-'))
        || h.checksum_type() == Some(&aws_sdk_s3::types::ChecksumType::Composite);
    if !multipart
        && let Some(c) = h.checksum_sha256().filter(|c| !c.contains('-'))
        && let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(c)
        && raw.len() == 32
    {
        let size = h.content_length().unwrap_or(0).max(0) as u64;
        return Ok(Some((Sha256Hex::parse(&hex::encode(raw))?, size)));
    }
    Ok(None)
}

/// What one HEAD (with checksums) says about an object: its size, the SHA-256 S3 stored for
/// a single-part object, a multipart object's stored checksum, and its ETag when that is an
/// MD5 (single-part) or a multipart ETag (`<md5>-<parts>`). An ETag of another form (as with
/// SSE-KMS) says nothing.
fn existing(h: &aws_sdk_s3::operation::head_object::HeadObjectOutput) -> Existing {
    let etag = h.e_tag().map(|e| e.trim_matches('"').to_owned());
    let multipart = etag.as_deref().is_some_and(|e| e.contains('-'))
        || h.checksum_type() == Some(&aws_sdk_s3::types::ChecksumType::Composite)
        || h.checksum_sha256().is_some_and(|c| c.contains('-'));
    let parts_etag = etag.as_deref().filter(|e| {
        e.split_once('-').is_some_and(|(md5, n)| {
            is_md5_hex(md5) && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        })
    });
    Existing {
        size: h.content_length().unwrap_or(0).max(0) as u64,
        sha256: single_part_sha256(h).ok().flatten().map(|(d, _)| d),
        multipart_sha256: h.checksum_sha256().filter(|_| multipart).map(str::to_owned),
        md5: etag.clone().filter(|e| !multipart && is_md5_hex(e)),
        parts_etag: parts_etag.map(str::to_owned),
    }
}

/// Reads `len` bytes of `file` from `offset` through a handle opened without following links,
/// and checks that they have the SHA-256 `want`: what is sent is exactly what was checked,
/// whatever happens to the file in between (and whether or not the server checks the
/// declared checksum).
async fn read_checked(
    file: &FileBody,
    offset: u64,
    len: u64,
    want: &Sha256Hex,
) -> Result<Vec<u8>, OpError> {
    use std::io::{Read, Seek, SeekFrom};
    let (f, want) = (file.clone(), want.clone());
    let r = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
        let mut h = f.open()?;
        h.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(len as usize);
        h.take(len)
            .read_to_end(&mut buf)
            .with_context(|| format!("cannot read {}", f.path().display()))?;
        if buf.len() as u64 != len || Sha256Hex::of(&buf) != want {
            bail!(
                "{} changed since it was checked (bytes {offset}..{} are not the ones hashed); nothing was uploaded",
                f.path().display(),
                offset + len
            );
        }
        Ok(buf)
    })
    .await;
    match r {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(OpError {
            kind: ErrorKind::Permanent,
            msg: format!("{e:#}"),
        }),
        Err(e) => Err(OpError {
            kind: ErrorKind::Permanent,
            msg: e.to_string(),
        }),
    }
}

/// Signs a request with `digest` as its payload hash (`x-amz-content-sha256`) instead of
/// letting the SDK hash the body again: the body was just read and checked against that very
/// SHA-256, so the signature covers the same bytes for one hashing pass less. The server still
/// checks the payload against it, and the `x-amz-checksum-sha256` against what it stored.
#[derive(Debug)]
struct PrecomputedPayload(Sha256Hex);

impl aws_sdk_s3::config::Intercept for PrecomputedPayload {
    fn name(&self) -> &'static str {
        "PrecomputedPayload"
    }

    fn modify_before_signing(
        &self,
        _: &mut aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        cfg.interceptor_state()
            .store_put(aws_runtime::auth::PayloadSigningOverride::Precomputed(
                self.0.to_string(),
            ));
        Ok(())
    }
}

/// SHA-256 of every `part_size` slice of `file` (a multipart upload's part checksums), read
/// without following links.
fn part_digests(file: &FileBody, part_size: u64) -> Result<Vec<Sha256Hex>> {
    use std::io::Read;
    let r = std::io::BufReader::with_capacity(1 << 20, file.open()?.take(file.size));
    let want = super::Want {
        part_sha256: true,
        ..super::Want::default()
    };
    Ok(super::hash_with_parts(r, Some(part_size), want)
        .with_context(|| format!("cannot read {}", file.path().display()))?
        .parts)
}

impl S3Store {
    /// A store for `url` through `client`: 32 uploads in flight (at most 512 MiB of parts held),
    /// multipart from 64 MiB in 16 MiB parts, 4 attempts per object.
    pub fn new(client: Client, url: S3Url) -> Self {
        S3Store {
            client,
            url,
            part_size: 16 * 1024 * 1024,
            multipart_threshold: 64 * 1024 * 1024,
            concurrency: 32,
            attempts: 4,
            slots: Arc::new(Semaphore::new(32)),
            write_mode: Arc::new(OnceCell::new()),
            public: None,
        }
    }

    /// Requests in flight, the multipart threshold and the part size (at least [`MIN_PART`]).
    pub fn with_tuning(
        mut self,
        concurrency: usize,
        multipart_threshold: u64,
        part_size: u64,
    ) -> Self {
        self.concurrency = concurrency.max(1);
        self.slots = Arc::new(Semaphore::new(self.concurrency));
        self.part_size = part_size.max(MIN_PART);
        self.multipart_threshold = multipart_threshold.max(self.part_size);
        self
    }

    /// Whole-object attempts (on top of the SDK's per-request retries).
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Uses `mode` instead of probing the server (tests).
    pub fn with_write_mode(self, mode: WriteMode) -> Self {
        let _ = self.write_mode.set(mode);
        self
    }

    /// The endpoint (None: AWS) and region consumers read from, for [`Storage::public_url`].
    pub fn with_public_endpoint(mut self, endpoint: Option<String>, region: String) -> Self {
        self.public = Some((endpoint, region));
        self
    }

    /// The `s3://bucket/prefix` URL.
    pub fn s3_url(&self) -> &S3Url {
        &self.url
    }

    /// Files at least this large go up as multipart uploads.
    pub fn multipart_threshold(&self) -> u64 {
        self.multipart_threshold
    }

    /// Checks, before anything is written, that the bucket exists and the credentials may read
    /// and list it. The errors say which of the two is wrong.
    pub async fn preflight(&self) -> Result<()> {
        let url = &self.url;
        if let Err(e) = self.client.head_bucket().bucket(url.bucket()).send().await {
            let text = describe(&e);
            match classify(&e) {
                ErrorKind::NotFound => bail!(
                    "bucket {:?} does not exist (at this endpoint/region): check the destination URL {url}, --endpoint-url and --region",
                    url.bucket()
                ),
                ErrorKind::Denied => bail!(
                    "the credentials were refused for bucket {:?}: {text}. Check the role (--role-arn) and that it may s3:ListBucket, s3:GetObject and s3:PutObject on {url}, or the credentials of the standard AWS chain",
                    url.bucket()
                ),
                _ => bail!("cannot reach bucket {:?}: {text}", url.bucket()),
            }
        }
        self.client
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

    /// Finds out whether the server enforces conditional writes: creates a probe object twice
    /// with `If-None-Match: *`. A server that answers 501, or accepts the second create, cannot
    /// do compare-and-swap ([`WriteMode::Lock`]). Writes and deletes one tiny object under `v3/`.
    pub async fn probe_write_mode(&self) -> Result<WriteMode> {
        let rel = format!(
            "v3/.slurm-factory-cas-probe-{}",
            uuid::Uuid::new_v4().simple()
        );
        let url = &self.url;
        let put = |body: &'static [u8]| {
            self.put_raw(
                &rel,
                body.to_vec(),
                "text/plain",
                "no-store",
                &Precondition::IfAbsent,
            )
        };
        let mode = match put(b"1").await {
            Err(e) if classify(&e) == ErrorKind::NotImplemented => WriteMode::Lock,
            Err(e) => bail!(
                "cannot write to {url}: {}. Check that the credentials may s3:PutObject there",
                describe(&e)
            ),
            Ok(_) => match put(b"2").await {
                Ok(_) => WriteMode::Lock,
                Err(e) if classify(&e) == ErrorKind::Conflict => WriteMode::Conditional,
                Err(e) if classify(&e) == ErrorKind::NotImplemented => WriteMode::Lock,
                Err(e) => bail!("cannot write to {url}: {}", describe(&e)),
            },
        };
        // Best effort: a leftover probe is a few bytes nobody reads.
        let _ = self
            .client
            .delete_object()
            .bucket(url.bucket())
            .key(url.key(&rel))
            .send()
            .await;
        Ok(mode)
    }

    /// One PUT of a small object with its SHA-256, under a condition. Returns the new ETag.
    async fn put_raw(
        &self,
        rel: &str,
        bytes: Vec<u8>,
        content_type: &str,
        cache_control: &str,
        condition: &Precondition,
    ) -> Result<
        String,
        aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::put_object::PutObjectError>,
    > {
        let digest = Sha256Hex::of(&bytes);
        let _slot = self.slots.acquire().await.expect("semaphore open");
        let mut req = self
            .client
            .put_object()
            .bucket(self.url.bucket())
            .key(self.url.key(rel))
            .content_type(content_type)
            .cache_control(cache_control)
            .content_length(bytes.len() as i64)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(b64(&digest))
            .body(ByteStream::from(bytes));
        match condition {
            Precondition::IfMatch(etag) if etag.starts_with('"') => req = req.if_match(etag),
            Precondition::IfMatch(etag) => req = req.if_match(format!("\"{etag}\"")),
            Precondition::IfAbsent => req = req.if_none_match("*"),
            Precondition::None => {}
        }
        let out = req
            .customize()
            .interceptor(PrecomputedPayload(digest.clone()))
            .send()
            .await?;
        Ok(out.e_tag().unwrap_or_default().trim_matches('"').to_owned())
    }

    async fn put_single(
        &self,
        key: &str,
        file: &FileBody,
        opts: &PutOptions,
    ) -> Result<(), OpError> {
        let bytes = read_checked(file, 0, file.size, &file.sha256).await?;
        let _slot = self.slots.acquire().await.expect("semaphore open");
        self.client
            .put_object()
            .bucket(self.url.bucket())
            .key(self.url.key(key))
            .content_type(content_type(opts))
            .cache_control(cache_control(opts, key))
            .content_length(file.size as i64)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(b64(&file.sha256))
            .body(ByteStream::from(bytes))
            .customize()
            .interceptor(PrecomputedPayload(file.sha256.clone()))
            .send()
            .await
            .map_err(|e| op_err(&format!("PUT {key}"), &e))?;
        Ok(())
    }

    async fn multipart(
        &self,
        key: &str,
        file: &FileBody,
        parts: &[Sha256Hex],
        opts: &PutOptions,
    ) -> Result<(), OpError> {
        let full = self.url.key(key);
        let created = {
            let _slot = self.slots.acquire().await.expect("semaphore open");
            self.client
                .create_multipart_upload()
                .bucket(self.url.bucket())
                .key(&full)
                .content_type(content_type(opts))
                .cache_control(cache_control(opts, key))
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .send()
                .await
                .map_err(|e| op_err(&format!("CreateMultipartUpload {key}"), &e))?
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
            key: full.clone(),
            upload_id: Some(upload_id.clone()),
        };
        match self.send_parts(key, &full, file, parts, &upload_id).await {
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

    async fn send_parts(
        &self,
        key: &str,
        full: &str,
        file: &FileBody,
        parts: &[Sha256Hex],
        upload_id: &str,
    ) -> Result<(), OpError> {
        let sends = parts.iter().enumerate().map(|(i, digest)| async move {
            let offset = i as u64 * self.part_size;
            let len = self.part_size.min(file.size - offset);
            let _slot = self.slots.acquire().await.expect("semaphore open");
            let body = ByteStream::from(read_checked(file, offset, len, digest).await?);
            let out = self
                .client
                .upload_part()
                .bucket(self.url.bucket())
                .key(full)
                .upload_id(upload_id)
                .part_number(i as i32 + 1)
                .content_length(len as i64)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(b64(digest))
                .body(body)
                .customize()
                .interceptor(PrecomputedPayload(digest.clone()))
                .send()
                .await
                .map_err(|e| op_err(&format!("UploadPart {key} #{}", i + 1), &e))?;
            Ok::<_, OpError>(
                CompletedPart::builder()
                    .part_number(i as i32 + 1)
                    .set_e_tag(out.e_tag().map(str::to_owned))
                    .checksum_sha256(b64(digest))
                    .build(),
            )
        });
        let mut done = futures::future::try_join_all(sends).await?;
        done.sort_by_key(|p| p.part_number());
        let _slot = self.slots.acquire().await.expect("semaphore open");
        self.client
            .complete_multipart_upload()
            .bucket(self.url.bucket())
            .key(full)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| op_err(&format!("CompleteMultipartUpload {key}"), &e))?;
        Ok(())
    }

    /// HEAD of `key` (`None`: no such object), with the stored checksums when `checksums`.
    async fn head_object(
        &self,
        key: &str,
        checksums: bool,
    ) -> Result<Option<aws_sdk_s3::operation::head_object::HeadObjectOutput>> {
        let mut req = self
            .client
            .head_object()
            .bucket(self.url.bucket())
            .key(self.url.key(key));
        if checksums {
            req = req.checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled);
        }
        match req.send().await {
            Ok(h) => Ok(Some(h)),
            Err(e) if classify(&e) == ErrorKind::NotFound => Ok(None),
            Err(e) => bail!("HEAD {}/{key}: {}", self.url, describe(&e)),
        }
    }
}

/// Whether `s` is 32 lowercase hex digits (an MD5).
fn is_md5_hex(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Storage for S3Store {
    fn url(&self) -> String {
        self.url.to_string()
    }

    fn public_url(&self) -> String {
        match &self.public {
            None => self.url.to_string(),
            Some((endpoint, region)) => {
                let catalog = crate::catalog::Catalog::embedded();
                if catalog.publish.buildcache_bucket == self.url.bucket() && endpoint.is_none() {
                    catalog.cdn_url(self.url.prefix())
                } else {
                    self.url.http_url(endpoint.as_deref(), region)
                }
            }
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            list: true,
            write: true,
        }
    }

    fn write_mode<'a>(&'a self) -> BoxFuture<'a, Result<WriteMode>> {
        Box::pin(async move {
            self.write_mode
                .get_or_try_init(|| self.probe_write_mode())
                .await
                .copied()
        })
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn multipart(&self) -> Option<(u64, u64)> {
        Some((self.multipart_threshold, self.part_size))
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Object>>> {
        Box::pin(async move {
            let out = self
                .client
                .get_object()
                .bucket(self.url.bucket())
                .key(self.url.key(key))
                .send()
                .await;
            match out {
                Ok(o) => {
                    let etag = o.e_tag().map(|e| e.trim_matches('"').to_owned());
                    let bytes = o
                        .body
                        .collect()
                        .await
                        .with_context(|| format!("cannot read {}/{key}", self.url))?
                        .into_bytes()
                        .to_vec();
                    Ok(Some(Object { bytes, etag }))
                }
                Err(e) if classify(&e) == ErrorKind::NotFound => Ok(None),
                Err(e) => bail!("GET {}/{key}: {}", self.url, describe(&e)),
            }
        })
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectMeta>>> {
        Box::pin(async move {
            Ok(self.head_object(key, false).await?.map(|h| ObjectMeta {
                key: key.to_owned(),
                size: h.content_length().unwrap_or(0).max(0) as u64,
                etag: h.e_tag().map(|e| e.trim_matches('"').to_owned()),
                last_modified: h
                    .last_modified()
                    .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
            }))
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        opts: PutOptions,
    ) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(async move {
            let size = bytes.len() as u64;
            let content_type = opts.content_type.as_deref().unwrap_or("application/json");
            let cache_control = opts
                .cache_control
                .as_deref()
                .unwrap_or_else(|| cache_control_for(key));
            // Unconditional writes are retried whole on transient failures; a conditional one
            // is not (its retry is the caller's read-merge-write cycle).
            let attempts = if opts.precondition == Precondition::None {
                self.attempts
            } else {
                1
            };
            let r = retry::with_retries(
                attempts,
                Duration::from_millis(500),
                |e: &aws_sdk_s3::error::SdkError<_, _>| classify(e) == ErrorKind::Transient,
                |_| {
                    self.put_raw(
                        key,
                        bytes.clone(),
                        content_type,
                        cache_control,
                        &opts.precondition,
                    )
                },
            )
            .await;
            match r {
                Ok(etag) => Ok(ObjectMeta {
                    key: key.to_owned(),
                    size,
                    etag: Some(etag),
                    last_modified: None,
                }),
                Err(e) if classify(&e) == ErrorKind::Conflict => {
                    Err(anyhow::Error::new(PreconditionFailed { key: key.into() }))
                }
                // If-Match on an object deleted meanwhile: also a lost race.
                Err(e)
                    if classify(&e) == ErrorKind::NotFound
                        && matches!(opts.precondition, Precondition::IfMatch(_)) =>
                {
                    Err(anyhow::Error::new(PreconditionFailed { key: key.into() }))
                }
                Err(e) => bail!("PUT {}/{key}: {}", self.url, describe(&e)),
            }
        })
    }

    fn put_file<'a>(
        &'a self,
        key: &'a str,
        file: &'a FileBody,
        opts: PutOptions,
    ) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(async move {
            let multipart = file.size >= self.multipart_threshold;
            let parts = if !multipart {
                Vec::new()
            } else if file.part_size == self.part_size && !file.parts.is_empty() {
                file.parts.clone()
            } else {
                let (f, ps) = (file.clone(), self.part_size);
                tokio::task::spawn_blocking(move || part_digests(&f, ps)).await??
            };
            retry::with_retries(
                self.attempts,
                Duration::from_millis(500),
                |e: &OpError| e.kind == ErrorKind::Transient,
                |_| async {
                    if multipart {
                        self.multipart(key, file, &parts, &opts).await
                    } else {
                        self.put_single(key, file, &opts).await
                    }
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}").context(format!("cannot upload {key}")))?;
            Ok(ObjectMeta::sized(key, file.size))
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self
                .client
                .delete_object()
                .bucket(self.url.bucket())
                .key(self.url.key(key))
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if classify(&e) == ErrorKind::NotFound => Ok(()),
                Err(e) => bail!("DELETE {}/{key}: {}", self.url, describe(&e)),
            }
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectMeta>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(self.url.bucket())
                .prefix(self.url.key(prefix))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    anyhow::anyhow!("cannot list {}/{prefix}: {}", self.url, describe(&e))
                })?;
                for o in page.contents() {
                    if let Some(rel) = o.key().and_then(|k| self.url.rel(k)) {
                        out.push(ObjectMeta {
                            key: rel.to_owned(),
                            size: o.size().unwrap_or(0).max(0) as u64,
                            etag: o
                                .e_tag()
                                .map(|e| e.trim_matches('"').to_owned())
                                .filter(|e| !e.is_empty()),
                            last_modified: None,
                        });
                    }
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
    }

    fn digest<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<(Sha256Hex, u64)>>> {
        Box::pin(async move {
            let Some(h) = self.head_object(key, true).await? else {
                return Ok(None);
            };
            if let Some(d) = single_part_sha256(&h)? {
                return Ok(Some(d));
            }
            Ok(Storage::get(self, key)
                .await?
                .map(|o| (Sha256Hex::of(&o.bytes), o.bytes.len() as u64)))
        })
    }

    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Existing>>> {
        Box::pin(async move { Ok(self.head_object(key, true).await?.map(|h| existing(&h))) })
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
                    tokio::time::sleep(retry::backoff(
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::head_object::HeadObjectOutput;
    use aws_sdk_s3::types::ChecksumType;

    const MD5: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_head_says_only_what_its_fields_can_vouch_for() {
        let sha = Sha256Hex::of(b"x");
        let raw = hex::decode(sha.as_str()).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);

        // Single part with a stored SHA-256: vouched, and its MD5 ETag kept.
        let h = HeadObjectOutput::builder()
            .content_length(1)
            .e_tag(format!("\"{MD5}\""))
            .checksum_sha256(&b64)
            .build();
        let e = existing(&h);
        assert_eq!(e.sha256, Some(sha.clone()));
        assert_eq!(e.md5.as_deref(), Some(MD5));
        assert_eq!((e.multipart_sha256, e.parts_etag), (None, None));

        // Multipart: the stored checksum is not a whole-object SHA-256, whatever it looks like
        // (moto omits the -<parts> suffix but says COMPOSITE).
        let h = HeadObjectOutput::builder()
            .content_length(1)
            .e_tag(format!("\"{MD5}-3\""))
            .checksum_sha256(&b64)
            .checksum_type(ChecksumType::Composite)
            .build();
        let e = existing(&h);
        assert_eq!(e.sha256, None);
        assert_eq!(e.multipart_sha256.as_deref(), Some(b64.as_str()));
        assert_eq!(e.parts_etag.as_deref(), Some(format!("{MD5}-3").as_str()));
        assert_eq!(e.md5, None);

        // ETags that are not MD5s (SSE-KMS, a malformed part count) say nothing.
        for etag in [
            "not-an-md5",
            "\"0123\"",
            &format!("{MD5}-"),
            &format!("{MD5}-3x"),
        ] {
            let h = HeadObjectOutput::builder()
                .content_length(7)
                .e_tag(etag)
                .build();
            let e = existing(&h);
            assert_eq!(
                e,
                Existing {
                    size: 7,
                    ..Existing::default()
                },
                "{etag}"
            );
        }
    }
}
