//! Object-level access to a buildcache prefix in S3: get, head, conditional put, streamed file
//! put (multipart with per-part SHA-256 for large files) and list. Keys are relative to the
//! prefix (`blobs/sha256/..`, `v3/manifests/..`).
//!
//! The method set mirrors the `buildcache::Storage` trait of the signing side, so
//! `impl Storage for S3Store` is a direct delegation (`Precondition::IfAbsent` →
//! [`Condition::IfAbsent`], `PutError::PreconditionFailed` → its `PreconditionFailed`).

use std::path::Path;

use anyhow::{Context, Result};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;

use super::S3Url;
use super::index::put_small;
use super::local::{Sha256Hex, hash_file};
use super::retry::{ErrorKind, classify, describe};
use super::upload::MIN_PART;

/// A write condition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Condition {
    /// Unconditional.
    #[default]
    None,
    /// `If-None-Match: *`: only if the key does not exist.
    IfAbsent,
    /// `If-Match: <etag>`: only if the key still has this ETag.
    IfMatch(String),
}

/// Why a put failed.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The condition did not hold (412/409): someone else wrote first.
    #[error("{key} changed while we were updating it (a concurrent writer); retry")]
    PreconditionFailed {
        /// The relative key.
        key: String,
    },
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Metadata of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Key relative to the prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag (quotes removed).
    pub etag: Option<String>,
}

/// A buildcache prefix in a bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    url: S3Url,
    part_size: u64,
}

impl S3Store {
    /// A store for `url` through `client`.
    pub fn new(client: Client, url: S3Url) -> Self {
        S3Store {
            client,
            url,
            part_size: 16 * 1024 * 1024,
        }
    }

    /// The `s3://bucket/prefix` URL.
    pub fn url(&self) -> &S3Url {
        &self.url
    }

    /// The object's bytes and ETag, or `None` when absent.
    pub async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Option<String>)>> {
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
                Ok(Some((bytes, etag)))
            }
            Err(e) if classify(&e) == ErrorKind::NotFound => Ok(None),
            Err(e) => anyhow::bail!("GET {}/{key}: {}", self.url, describe(&e)),
        }
    }

    /// The object's metadata, or `None` when absent.
    pub async fn head(&self, key: &str) -> Result<Option<Meta>> {
        let out = self
            .client
            .head_object()
            .bucket(self.url.bucket())
            .key(self.url.key(key))
            .send()
            .await;
        match out {
            Ok(h) => Ok(Some(Meta {
                key: key.to_owned(),
                size: h.content_length().unwrap_or(0).max(0) as u64,
                etag: h.e_tag().map(|e| e.trim_matches('"').to_owned()),
            })),
            Err(e) if classify(&e) == ErrorKind::NotFound => Ok(None),
            Err(e) => anyhow::bail!("HEAD {}/{key}: {}", self.url, describe(&e)),
        }
    }

    /// Writes `bytes` (with its SHA-256 checksum) under a condition. Returns the new ETag.
    pub async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        cache_control: &str,
        condition: Condition,
    ) -> Result<Meta, PutError> {
        let size = bytes.len() as u64;
        let cond = match &condition {
            Condition::None => None,
            Condition::IfAbsent => Some(None),
            Condition::IfMatch(e) => Some(Some(e.as_str())),
        };
        // S3 ETags are quoted strings; accept one given without quotes.
        let quoted;
        let cond = match cond {
            Some(Some(e)) if !e.starts_with('"') => {
                quoted = format!("\"{e}\"");
                Some(Some(quoted.as_str()))
            }
            other => other,
        };
        match put_small(
            &self.client,
            &self.url,
            key,
            bytes,
            content_type,
            cache_control,
            cond,
        )
        .await
        {
            Ok(etag) => Ok(Meta {
                key: key.to_owned(),
                size,
                etag: Some(etag.trim_matches('"').to_owned()),
            }),
            Err(e) if classify(&e) == ErrorKind::Conflict => Err(PutError::PreconditionFailed {
                key: key.to_owned(),
            }),
            Err(e) => Err(PutError::Other(anyhow::anyhow!(
                "PUT {}/{key}: {}",
                self.url,
                describe(&e)
            ))),
        }
    }

    /// Streams the file at `path` to `key` with SHA-256 checksums: one PUT below the part size,
    /// else a multipart upload with parallel parts (aborted on failure).
    pub async fn put_file(
        &self,
        key: &str,
        path: &Path,
        content_type: &str,
        cache_control: &str,
    ) -> Result<Meta> {
        let size = tokio::fs::metadata(path)
            .await
            .with_context(|| format!("cannot stat {}", path.display()))?
            .len();
        if size >= self.part_size.max(MIN_PART) {
            let file = super::local::LocalFile {
                rel: key.to_owned(),
                path: path.to_owned(),
                size,
            };
            super::upload::put_file_multipart(
                &self.client,
                &self.url,
                file,
                self.part_size.max(MIN_PART),
                content_type,
                cache_control,
            )
            .await?;
            return Ok(Meta {
                key: key.to_owned(),
                size,
                etag: None,
            });
        }
        let p = path.to_owned();
        let (digest, _) = tokio::task::spawn_blocking(move || hash_file(&p, None)).await??;
        let body = ByteStream::from_path(path)
            .await
            .with_context(|| format!("cannot read {}", path.display()))?;
        let out = self
            .client
            .put_object()
            .bucket(self.url.bucket())
            .key(self.url.key(key))
            .content_type(content_type)
            .cache_control(cache_control)
            .content_length(size as i64)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(digest.to_base64())
            .body(body)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("PUT {}/{key}: {}", self.url, describe(&e)))?;
        Ok(Meta {
            key: key.to_owned(),
            size,
            etag: out.e_tag().map(|e| e.trim_matches('"').to_owned()),
        })
    }

    /// Every object under `prefix` (relative), sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Meta>> {
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
                    out.push(Meta {
                        key: rel.to_owned(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        etag: o.e_tag().map(|e| e.trim_matches('"').to_owned()),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// SHA-256 and size of an object, from the checksum S3 stored when we uploaded it (no
    /// download) or, failing that, by downloading it.
    pub async fn digest(&self, key: &str) -> Result<Option<(Sha256Hex, u64)>> {
        let head = self
            .client
            .head_object()
            .bucket(self.url.bucket())
            .key(self.url.key(key))
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await;
        match head {
            Err(e) if classify(&e) == ErrorKind::NotFound => return Ok(None),
            Err(e) => anyhow::bail!("HEAD {}/{key}: {}", self.url, describe(&e)),
            Ok(h) => {
                use base64::Engine as _;
                // A multipart object's checksum is a checksum of part checksums (its ETag
                // ends in `-<parts>`; moto even omits the suffix on the checksum): only a
                // single-part object's stored checksum is the SHA-256 of its bytes.
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
            }
        }
        Ok(self
            .get(key)
            .await?
            .map(|(b, _)| (Sha256Hex::of(&b), b.len() as u64)))
    }
}

/// The signing side's object-store trait, so `sign`, `verify` and the index code can work on an
/// S3 prefix directly. Cache-Control follows the engine's policy: immutable for blobs, no-cache
/// for the index and key index, short for other manifests.
impl crate::buildcache::Storage for S3Store {
    fn url(&self) -> String {
        self.url.to_string()
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<crate::buildcache::storage::Object>>> {
        Box::pin(async move {
            Ok(S3Store::get(self, key)
                .await?
                .map(|(bytes, etag)| crate::buildcache::storage::Object { bytes, etag }))
        })
    }

    fn head<'a>(
        &'a self,
        key: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<crate::buildcache::storage::ObjectMeta>>>
    {
        Box::pin(async move { Ok(S3Store::head(self, key).await?.map(to_meta)) })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        opts: crate::buildcache::storage::PutOptions,
    ) -> futures::future::BoxFuture<'a, Result<crate::buildcache::storage::ObjectMeta>> {
        use crate::buildcache::storage::{Precondition, PreconditionFailed};
        Box::pin(async move {
            let condition = match opts.precondition {
                Precondition::None => Condition::None,
                Precondition::IfAbsent => Condition::IfAbsent,
                Precondition::IfMatch(e) => Condition::IfMatch(e),
            };
            let content_type = opts.content_type.as_deref().unwrap_or("application/json");
            let cache_control = opts
                .cache_control
                .unwrap_or_else(|| cache_control_for(key).to_owned());
            match S3Store::put(self, key, bytes, content_type, &cache_control, condition).await {
                Ok(m) => Ok(to_meta(m)),
                Err(PutError::PreconditionFailed { key }) => {
                    Err(anyhow::Error::new(PreconditionFailed { key }))
                }
                Err(PutError::Other(e)) => Err(e),
            }
        })
    }

    fn put_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a Path,
        opts: crate::buildcache::storage::PutOptions,
    ) -> futures::future::BoxFuture<'a, Result<crate::buildcache::storage::ObjectMeta>> {
        Box::pin(async move {
            let content_type = opts
                .content_type
                .as_deref()
                .unwrap_or("application/octet-stream");
            let cache_control = opts
                .cache_control
                .unwrap_or_else(|| cache_control_for(key).to_owned());
            Ok(to_meta(
                S3Store::put_file(self, key, path, content_type, &cache_control).await?,
            ))
        })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Vec<crate::buildcache::storage::ObjectMeta>>> {
        Box::pin(async move {
            Ok(S3Store::list(self, prefix)
                .await?
                .into_iter()
                .map(to_meta)
                .collect())
        })
    }

    fn digest<'a>(
        &'a self,
        key: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<(crate::buildcache::layout::Sha256Hex, u64)>>>
    {
        Box::pin(async move {
            match S3Store::digest(self, key).await? {
                Some((d, n)) => Ok(Some((
                    crate::buildcache::layout::Sha256Hex::parse(d.as_str())?,
                    n,
                ))),
                None => Ok(None),
            }
        })
    }
}

fn to_meta(m: Meta) -> crate::buildcache::storage::ObjectMeta {
    crate::buildcache::storage::ObjectMeta {
        key: m.key,
        size: m.size,
        etag: m.etag,
    }
}

/// The engine's Cache-Control policy by key.
pub fn cache_control_for(key: &str) -> &'static str {
    use super::index::{CACHE_IMMUTABLE, CACHE_INDEX, CACHE_MANIFEST};
    if key.starts_with("blobs/") {
        CACHE_IMMUTABLE
    } else if key.ends_with("index.manifest.json") || key.ends_with("keys.manifest.json") {
        CACHE_INDEX
    } else {
        CACHE_MANIFEST
    }
}
