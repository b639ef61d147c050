//! Where buildcaches live: one object-store trait ([`Storage`]), three backends and one
//! factory ([`open`]), the only place that turns a URL into a backend:
//!
//! - [`LocalDir`] (`file://` or a path): hostile-file safe (no symlinks followed, nothing but
//!   regular files and directories, sizes checked before hashing);
//! - [`S3Store`] (`s3://bucket/prefix`): the only code that talks to the AWS SDK (parallel
//!   multipart uploads with SHA-256 checksums, conditional writes, Cache-Control);
//! - [`HttpStore`] (`https://`, or `http://` with `allow_insecure_http`): read-only, cannot
//!   list, so readers walk from the index and the key index.
//!
//! Keys are `/`-separated paths relative to the buildcache root (`blobs/sha256/..`,
//! `v3/manifests/..`). Writes can carry a [`Precondition`] so a read-modify-write of the index
//! can detect a concurrent writer ([`PreconditionFailed`]) and retry instead of losing specs.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use futures::future::BoxFuture;

use super::layout::Sha256Hex;
use crate::gha::Runner;

mod http;
mod local;
pub(crate) mod s3;

pub use http::HttpStore;
pub use local::LocalDir;
pub(crate) use local::kind as file_kind;
pub(crate) use local::{DIR_FLAGS, FILE_FLAGS};
pub use s3::{S3Store, WriteMode};

/// Metadata of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// An opaque version tag for conditional writes (S3 ETag; sha256 of the bytes locally).
    pub etag: Option<String>,
    /// When the object was last written, where the store says.
    pub last_modified: Option<SystemTime>,
}

impl ObjectMeta {
    /// Metadata with a key and a size only.
    pub fn sized(key: &str, size: u64) -> Self {
        ObjectMeta {
            key: key.to_owned(),
            size,
            etag: None,
            last_modified: None,
        }
    }
}

/// An object's bytes and version tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The version tag (see [`ObjectMeta::etag`]).
    pub etag: Option<String>,
}

/// A condition a write must meet (S3 `If-None-Match: *` / `If-Match: <etag>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Precondition {
    /// Write unconditionally.
    #[default]
    None,
    /// Write only if the key does not exist yet.
    IfAbsent,
    /// Write only if the key's current version tag is this one.
    IfMatch(String),
}

/// Options of a write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// `Content-Type` for stores that keep one.
    pub content_type: Option<String>,
    /// `Cache-Control` for stores that keep one (mutable manifests want a short one).
    pub cache_control: Option<String>,
    /// Condition the write must meet.
    pub precondition: Precondition,
}

impl PutOptions {
    /// Options with a content type.
    pub fn typed(content_type: &str) -> Self {
        PutOptions {
            content_type: Some(content_type.into()),
            ..Self::default()
        }
    }
}

/// The error of a write whose [`Precondition`] did not hold (someone else wrote first).
#[derive(Debug, thiserror::Error)]
#[error("{key} changed while we were updating it (a concurrent writer); retry")]
pub struct PreconditionFailed {
    /// The key.
    pub key: String,
}

/// What a store can do beyond reading single objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Whether [`Storage::list`] works (HTTP mirrors cannot list).
    pub list: bool,
    /// Whether the store can be written at all.
    pub write: bool,
}

/// A local file to write to a store, with the size and SHA-256 its bytes must have (checked
/// by the store while it copies or uploads: a file changed since it was checked is refused).
#[derive(Debug, Clone)]
pub struct FileBody {
    /// The directory the file is in (opened without following links below its root).
    pub source: LocalDir,
    /// The file's key in `source`.
    pub key: String,
    /// Its size.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: Sha256Hex,
    /// SHA-256 of each `part_size` slice, for stores that upload in parts (may be empty: the
    /// store then hashes the parts itself).
    pub parts: Vec<Sha256Hex>,
    /// The slice size of `parts`.
    pub part_size: u64,
}

/// What a store says about an existing object from one lookup, without reading it: its size
/// and the digests it keeps, which tell what a local file must be hashed with to be compared
/// (`Existing::wants`, `Existing::matches`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    /// Its size.
    pub size: u64,
    /// The SHA-256 of all its bytes, as the store vouches for it (S3's checksum of a
    /// single-part object, checked by the server when the bytes were written).
    pub sha256: Option<Sha256Hex>,
    /// A multipart object's stored SHA-256 checksum (base64): full-object, or the composite
    /// of its part checksums (with or without AWS's `-<parts>`).
    pub multipart_sha256: Option<String>,
    /// A single-part ETag that is an MD5 of the bytes.
    pub md5: Option<String>,
    /// A multipart ETag: the MD5 of the part MD5s, then `-<parts>`.
    pub parts_etag: Option<String>,
}

impl Existing {
    /// Digests of a local file, besides its SHA-256, that [`Existing::matches`] needs: part
    /// SHA-256s for a stored multipart checksum, else part MD5s for a multipart ETag, else
    /// the MD5 for a single-part ETag (nothing when the store vouches for a SHA-256).
    pub(crate) fn wants(&self) -> Want {
        if self.sha256.is_some() {
            Want::default()
        } else if self.multipart_sha256.is_some() {
            Want {
                part_sha256: true,
                ..Want::default()
            }
        } else if self.parts_etag.is_some() {
            Want {
                part_md5: true,
                ..Want::default()
            }
        } else {
            Want {
                md5: self.md5.is_some(),
                ..Want::default()
            }
        }
    }

    /// Whether the object holds the bytes `local` was hashed from (with [`Existing::wants`],
    /// parts at the store's part size): `Some(false)` when the size or the vouched SHA-256
    /// differ, `None` when nothing the store keeps can tell (another part size, an ETag that
    /// is not an MD5): then only reading the object back can.
    ///
    /// An ETag is the server's MD5 of what it stored: a same-MD5 object with other bytes would
    /// take an MD5 second preimage of our file. And what a store vouches for only decides
    /// whether to upload: consumers check every blob's SHA-256 against the signed manifest.
    pub(crate) fn matches(&self, local: &Hashed) -> Option<bool> {
        if self.size != local.len {
            return Some(false);
        }
        if let Some(d) = &self.sha256 {
            return Some(*d == local.whole);
        }
        if let Some(stored) = &self.multipart_sha256 {
            use base64::Engine;
            let b64 = |raw: &[u8]| base64::engine::general_purpose::STANDARD.encode(raw);
            let whole = b64(&hex::decode(local.whole.as_str()).expect("hex"));
            // Servers that keep a full-object SHA-256 for a multipart upload.
            if *stored == whole {
                return Some(true);
            }
            if !local.parts.is_empty() {
                let mut concat = Vec::with_capacity(local.parts.len() * 32);
                for p in &local.parts {
                    concat.extend_from_slice(&hex::decode(p.as_str()).expect("hex"));
                }
                // AWS appends "-<parts>"; moto does not.
                let composite = b64(&hex::decode(Sha256Hex::of(&concat).as_str()).expect("hex"));
                if stored.split('-').next() == Some(composite.as_str()) {
                    return Some(true);
                }
            }
        }
        if self.parts_etag.is_some() && self.parts_etag == local.parts_etag {
            return Some(true);
        }
        if self.md5.is_some() && self.md5 == local.md5 {
            return Some(true);
        }
        None
    }
}

/// Which digests one pass over a file computes besides its SHA-256 ([`hash_with_parts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Want {
    /// The SHA-256 of each part (a multipart upload's part checksums).
    pub part_sha256: bool,
    /// The MD5 of each part, for the ETag a multipart upload gets.
    pub part_md5: bool,
    /// The MD5 of all the bytes (a single-part ETag).
    pub md5: bool,
}

/// An object store holding a buildcache. Object-safe: use it as `&dyn Storage`.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The buildcache URL, for messages and outputs (`file:///...`, `s3://bucket/prefix`).
    fn url(&self) -> String;

    /// The URL consumers read the buildcache from (`spack mirror add`): the CDN or HTTP URL of
    /// an S3 prefix, else [`Storage::url`].
    fn public_url(&self) -> String {
        self.url()
    }

    /// What the store can do.
    fn capabilities(&self) -> Capabilities;

    /// Whether [`Storage::list`] works.
    fn can_list(&self) -> bool {
        self.capabilities().list
    }

    /// How the store makes a read-modify-write safe against concurrent writers: atomic
    /// conditional writes, or (for servers without them) a lease lock. Stores may probe.
    fn write_mode<'a>(&'a self) -> BoxFuture<'a, Result<WriteMode>> {
        Box::pin(async { Ok(WriteMode::Conditional) })
    }

    /// Requests the store keeps in flight at once for bulk uploads.
    fn concurrency(&self) -> usize {
        4
    }

    /// `(threshold, part size)` when files from `threshold` up are uploaded in parts (whose
    /// SHA-256s a caller may compute in the same pass as the whole file's: [`FileBody::parts`]).
    fn multipart(&self) -> Option<(u64, u64)> {
        None
    }

    /// The object at `key`, or `None` when there is none.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Object>>>;

    /// Metadata of the object at `key`, or `None` when there is none.
    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectMeta>>>;

    /// Writes `bytes` at `key`, atomically (readers see the old or the new object). Fails with
    /// [`PreconditionFailed`] (inside the `anyhow::Error`) when `opts.precondition` does not hold.
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        opts: PutOptions,
    ) -> BoxFuture<'a, Result<ObjectMeta>>;

    /// Writes the local file `file.path` at `key`, refusing it unless its bytes have
    /// `file.size` and `file.sha256` (large files go up in parts where the store can).
    fn put_file<'a>(
        &'a self,
        key: &'a str,
        file: &'a FileBody,
        opts: PutOptions,
    ) -> BoxFuture<'a, Result<ObjectMeta>>;

    /// Deletes the object at `key` (absent is fine).
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Every object whose key starts with `prefix` (recursively), sorted by key.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectMeta>>>;

    /// The SHA-256 and size of the object at `key`. The default downloads it; stores that can
    /// hash without buffering (or know the digest) override it. Check the size with
    /// [`Storage::head`] first: this reads the whole object.
    fn digest<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<(Sha256Hex, u64)>>> {
        Box::pin(async move {
            Ok(self.get(key).await?.map(|o| {
                let n = o.bytes.len() as u64;
                (Sha256Hex::of(&o.bytes), n)
            }))
        })
    }

    /// Copies the object at `key` into `out` as it is read, never holding it whole: at most
    /// `max` bytes (a larger object is refused, not truncated). Returns its SHA-256 and size,
    /// or `None` when there is no object. The default reads it with [`Storage::get`]; stores
    /// that can stream override it.
    fn copy_to<'a>(
        &'a self,
        key: &'a str,
        out: &'a mut std::fs::File,
        max: u64,
    ) -> BoxFuture<'a, Result<Option<(Sha256Hex, u64)>>> {
        Box::pin(async move {
            let Some(o) = self.get(key).await? else {
                return Ok(None);
            };
            let n = o.bytes.len() as u64;
            if n > max {
                bail!("{key} is larger than {max} bytes; refusing it");
            }
            std::io::Write::write_all(out, &o.bytes)
                .with_context(|| format!("{key}: cannot write the copy"))?;
            Ok(Some((Sha256Hex::of(&o.bytes), n)))
        })
    }

    /// What the store says about the object at `key` without reading it (one request), or
    /// `None` when there is none. The default knows only its size; S3 adds the checksums
    /// and ETag it keeps.
    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Existing>>> {
        Box::pin(async move {
            Ok(self.head(key).await?.map(|m| Existing {
                size: m.size,
                ..Existing::default()
            }))
        })
    }

    /// Whether the object at `key` holds exactly the bytes of `file`, compared by size and
    /// then by a digest (never by size alone: a same-size object with other bytes is not
    /// it): what [`Storage::lookup`] vouches for, recomputed from the file, else the object
    /// read back and hashed. `None` when there is no object.
    fn holds<'a>(
        &'a self,
        key: &'a str,
        file: &'a FileBody,
    ) -> BoxFuture<'a, Result<Option<bool>>> {
        Box::pin(async move {
            let Some(e) = self.lookup(key).await? else {
                return Ok(None);
            };
            if e.size != file.size {
                return Ok(Some(false));
            }
            let (want, part_size) = (e.wants(), self.multipart().map_or(0, |(_, p)| p));
            let f = file.clone();
            let local = tokio::task::spawn_blocking(move || -> Result<Hashed> {
                use std::io::Read;
                let r = std::io::BufReader::with_capacity(1 << 20, f.open()?.take(f.size));
                hash_with_parts(r, Some(part_size), want)
                    .with_context(|| format!("cannot read {}", f.path().display()))
            })
            .await??;
            if local.whole != file.sha256 {
                bail!(
                    "{} changed: its SHA-256 is now {}, it was {}",
                    file.path().display(),
                    local.whole,
                    file.sha256
                );
            }
            if let Some(m) = e.matches(&local) {
                return Ok(Some(m));
            }
            Ok(Some(
                self.digest(key)
                    .await?
                    .is_some_and(|(d, n)| d == file.sha256 && n == file.size),
            ))
        })
    }
}

/// What one pass over a file's bytes yields: see [`hash_with_parts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hashed {
    /// SHA-256 of all the bytes.
    pub whole: Sha256Hex,
    /// SHA-256 of each part (with [`Want::part_sha256`] and a part size).
    pub parts: Vec<Sha256Hex>,
    /// The ETag S3 gives a multipart upload of these parts (with [`Want::part_md5`]).
    pub parts_etag: Option<String>,
    /// The MD5 of all the bytes (with [`Want::md5`]).
    pub md5: Option<String>,
    /// How many bytes were read.
    pub len: u64,
}

/// The ETag S3 gives a multipart upload: the MD5 of the parts' MD5s, then `-<parts>`.
pub(crate) fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    for m in part_md5s {
        h.update(m);
    }
    format!("{}-{}", hex::encode(h.finalize()), part_md5s.len())
}

/// The SHA-256 of everything `r` yields and, in the same pass, what `want` asks for: with a
/// `part_size`, the SHA-256 of each `part_size` slice (a multipart upload's part checksums)
/// and the ETag such an upload gets (the MD5 of the part MD5s); the MD5 of all the bytes
/// (a single-part ETag). Only what is asked for is computed: an MD5 pass costs more than
/// the SHA-256 itself.
pub(crate) fn hash_with_parts(
    mut r: impl std::io::Read,
    part_size: Option<u64>,
    want: Want,
) -> std::io::Result<Hashed> {
    use md5::Md5;
    use sha2::{Digest, Sha256};
    let hex_of = |h: Sha256| Sha256Hex::parse(&hex::encode(h.finalize())).expect("sha256 hex");
    let part_size = part_size
        .filter(|p| *p > 0)
        .filter(|_| want.part_sha256 || want.part_md5);
    let mut whole = Sha256::new();
    let mut whole_md5 = want.md5.then(Md5::new);
    let (mut part, mut part_md5) = (Sha256::new(), Md5::new());
    let (mut in_part, mut total) = (0u64, 0u64);
    let (mut parts, mut md5s) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        let mut chunk = &buf[..n];
        whole.update(chunk);
        if let Some(m) = &mut whole_md5 {
            m.update(chunk);
        }
        if let Some(ps) = part_size {
            while !chunk.is_empty() {
                let take = ((ps - in_part) as usize).min(chunk.len());
                if want.part_sha256 {
                    part.update(&chunk[..take]);
                }
                if want.part_md5 {
                    part_md5.update(&chunk[..take]);
                }
                in_part += take as u64;
                chunk = &chunk[take..];
                if in_part == ps {
                    parts.push(hex_of(std::mem::take(&mut part)));
                    md5s.push(std::mem::take(&mut part_md5).finalize().into());
                    in_part = 0;
                }
            }
        }
    }
    if in_part > 0 {
        parts.push(hex_of(part));
        md5s.push(part_md5.finalize().into());
    }
    if !want.part_sha256 {
        parts.clear();
    }
    Ok(Hashed {
        whole: hex_of(whole),
        parts_etag: (want.part_md5 && !md5s.is_empty()).then(|| multipart_etag(&md5s)),
        md5: whole_md5.map(|m| hex::encode(m.finalize())),
        parts,
        len: total,
    })
}

/// Whether `key` exists.
pub async fn exists(storage: &dyn Storage, key: &str) -> Result<bool> {
    Ok(storage.head(key).await?.is_some())
}

/// Where a buildcache is, parsed from a URL or a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory (`file:///abs/path`, or a plain path).
    Local(PathBuf),
    /// An S3 bucket and key prefix (`s3://bucket/prefix`).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix without leading or trailing `/` (may be empty).
        prefix: String,
    },
    /// An HTTP(S) URL (read-only mirrors), without a trailing `/`.
    Http(String),
}

impl Location {
    /// Parses `file:///path`, `s3://bucket/prefix`, `http(s)://...` or a plain path.
    pub fn parse(url: &str) -> Result<Self> {
        let url = url.trim();
        if url.is_empty() {
            bail!(
                "the buildcache location is empty; give file:///path, s3://bucket/prefix, https://host/path or a directory"
            );
        }
        if let Some(rest) = url.strip_prefix("file://") {
            if !rest.starts_with('/') {
                bail!(
                    "{url:?} is not an absolute file:// URL: write file:///absolute/path (three slashes)"
                );
            }
            return Ok(Location::Local(PathBuf::from(percent_decode(rest)?)));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("{url:?} has no bucket name: write s3://bucket/prefix");
            }
            return Ok(Location::S3 {
                bucket: bucket.into(),
                prefix: prefix.trim_matches('/').into(),
            });
        }
        if let Some(rest) = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
        {
            if rest.is_empty() || rest.starts_with('/') {
                bail!("{url:?} has no host: write https://host/path");
            }
            if url.contains(['?', '#']) {
                bail!("{url:?}: a buildcache URL cannot carry a query or a fragment");
            }
            return Ok(Location::Http(url.trim_end_matches('/').into()));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            bail!(
                "unsupported buildcache URL scheme {scheme:?} in {url:?}: use file://, s3://, https:// or a directory"
            );
        }
        Ok(Location::Local(PathBuf::from(url)))
    }

    /// The canonical URL form.
    pub fn url(&self) -> String {
        match self {
            Location::Local(p) => format!("file://{}", p.display()),
            Location::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            Location::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
            Location::Http(u) => u.clone(),
        }
    }
}

fn percent_decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .with_context(|| format!("bad percent escape in {s:?}"))?;
            out.push(h);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("file:// URL is not UTF-8 after decoding")
}

/// How [`open`] connects.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Accept `http://` URLs to hosts other than loopback (private mirrors). Signatures are
    /// checked either way; without this only `https://` and loopback `http://` are read.
    pub allow_insecure_http: bool,
    /// The buildcache will be written: for `s3://`, check first that the bucket exists and
    /// the credentials may list it (before anything else happens).
    pub writable: bool,
    /// How to reach `s3://` locations (endpoint, region, credentials), resolved by the caller
    /// (the command line reads its flags and the AWS environment).
    pub s3: crate::s3::S3Settings,
}

/// Opens the buildcache at `location`: the one place that turns a URL into a backend.
/// `s3://` resolves credentials (OIDC → STS in Actions, else the AWS chain) through `runner`,
/// which masks them.
pub async fn open(
    location: &Location,
    opts: &OpenOptions,
    runner: &Runner,
) -> Result<Box<dyn Storage>> {
    match location {
        Location::Local(p) => Ok(Box::new(LocalDir::new(p))),
        Location::Http(u) => Ok(Box::new(HttpStore::new(u, opts.allow_insecure_http)?)),
        Location::S3 { bucket, prefix } => {
            let url = crate::s3::S3Url::new(bucket.clone(), prefix)?;
            let conn = crate::s3::credentials::connection(runner, &opts.s3).await?;
            let store = S3Store::new(conn.client, url)
                .with_public_endpoint(opts.s3.endpoint_url.clone(), conn.region.clone());
            if opts.writable {
                store.preflight().await?;
            }
            Ok(Box::new(store))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Want = Want {
        part_sha256: true,
        part_md5: true,
        md5: true,
    };

    fn hashed(bytes: &[u8], part_size: u64, want: Want) -> Hashed {
        hash_with_parts(bytes, Some(part_size), want).unwrap()
    }

    #[test]
    fn one_pass_computes_only_what_is_asked() {
        use md5::{Digest, Md5};
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let h = hashed(&bytes, 4096, Want::default());
        assert_eq!(h.whole, Sha256Hex::of(&bytes));
        assert_eq!(h.len, 10_000);
        assert!(h.parts.is_empty() && h.parts_etag.is_none() && h.md5.is_none());

        let h = hashed(&bytes, 4096, ALL);
        let chunks: Vec<&[u8]> = bytes.chunks(4096).collect();
        assert_eq!(
            h.parts,
            chunks.iter().map(|c| Sha256Hex::of(c)).collect::<Vec<_>>()
        );
        let md5s: Vec<[u8; 16]> = chunks.iter().map(|c| Md5::digest(c).into()).collect();
        assert_eq!(h.parts_etag, Some(multipart_etag(&md5s)));
        assert!(h.parts_etag.as_deref().unwrap().ends_with("-3"));
        assert_eq!(h.md5, Some(hex::encode(Md5::digest(&bytes))));

        // Part MD5s alone (a multipart ETag to compare with): no part SHA-256s are kept.
        let only = hashed(
            &bytes,
            4096,
            Want {
                part_md5: true,
                ..Want::default()
            },
        );
        assert!(only.parts.is_empty());
        assert_eq!(only.parts_etag, h.parts_etag);
    }

    #[test]
    fn an_existing_object_is_compared_by_what_the_store_keeps() {
        use base64::Engine;
        let b64 = |hex_digest: &str| {
            base64::engine::general_purpose::STANDARD.encode(hex::decode(hex_digest).unwrap())
        };
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 13) as u8).collect();
        let mut other = bytes.clone();
        other[5_000] ^= 1;
        let local = hashed(&bytes, 4096, ALL);
        let theirs = hashed(&other, 4096, ALL);
        let size = bytes.len() as u64;

        // A vouched SHA-256 needs nothing more, and decides.
        let vouched = Existing {
            size,
            sha256: Some(local.whole.clone()),
            ..Existing::default()
        };
        assert_eq!(vouched.wants(), Want::default());
        assert_eq!(vouched.matches(&local), Some(true));
        assert_eq!(vouched.matches(&theirs), Some(false));
        // Another size is another object, whatever the digests.
        let shorter = Existing {
            size: size - 1,
            ..vouched.clone()
        };
        assert_eq!(shorter.matches(&local), Some(false));

        // A single-part ETag: the MD5 of the bytes.
        let md5 = Existing {
            size,
            md5: local.md5.clone(),
            ..Existing::default()
        };
        assert_eq!(
            md5.wants(),
            Want {
                md5: true,
                ..Want::default()
            }
        );
        assert_eq!(md5.matches(&local), Some(true));
        // A different MD5 may be another part size or encryption: only a read-back can tell.
        assert_eq!(md5.matches(&theirs), None);

        // A multipart ETag: part MD5s at our part size.
        let etag = Existing {
            size,
            parts_etag: local.parts_etag.clone(),
            ..Existing::default()
        };
        assert_eq!(
            etag.wants(),
            Want {
                part_md5: true,
                ..Want::default()
            }
        );
        assert_eq!(etag.matches(&local), Some(true));
        assert_eq!(etag.matches(&theirs), None);

        // A composite SHA-256 of part checksums (AWS appends -<parts>, moto does not), which
        // is preferred to the ETag when both are there.
        let mut concat = Vec::new();
        for p in &local.parts {
            concat.extend(hex::decode(p.as_str()).unwrap());
        }
        let composite = b64(Sha256Hex::of(&concat).as_str());
        for stored in [composite.clone(), format!("{composite}-3")] {
            let e = Existing {
                size,
                multipart_sha256: Some(stored),
                parts_etag: Some("0123456789abcdef0123456789abcdef-3".into()),
                ..Existing::default()
            };
            assert_eq!(
                e.wants(),
                Want {
                    part_sha256: true,
                    ..Want::default()
                }
            );
            assert_eq!(e.matches(&local), Some(true));
            assert_eq!(e.matches(&theirs), None);
        }
        // A full-object SHA-256 kept for a multipart upload.
        let full = Existing {
            size,
            multipart_sha256: Some(b64(local.whole.as_str())),
            ..Existing::default()
        };
        assert_eq!(full.matches(&local), Some(true));

        // Nothing kept: only a read-back can tell.
        let bare = Existing {
            size,
            ..Existing::default()
        };
        assert_eq!(bare.wants(), Want::default());
        assert_eq!(bare.matches(&local), None);
    }

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse("file:///srv/m%20x").unwrap(),
            Location::Local("/srv/m x".into())
        );
        assert_eq!(
            Location::parse("s3://b/a/b/").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                prefix: "a/b".into()
            }
        );
        assert!(Location::parse("file://rel").is_err());
        assert!(Location::parse("ftp://x").is_err());
        assert_eq!(
            Location::parse("https://cdn.example/slurm/bc/").unwrap(),
            Location::Http("https://cdn.example/slurm/bc".into())
        );
        assert!(Location::parse("https:///x").is_err());
        assert!(Location::parse("https://h/x?y=1").is_err());
    }

    #[tokio::test]
    async fn the_factory_refuses_plain_http_unless_allowed_or_loopback() {
        let runner = Runner::from_vars([("NO_COLOR", "1")]).with_sink(Box::new(std::io::sink()));
        let loopback = Location::parse("http://127.0.0.1:1/bc").unwrap();
        open(&loopback, &OpenOptions::default(), &runner)
            .await
            .expect("plain http:// to loopback needs no flag");
        let loc = Location::parse("http://192.0.2.1:1/bc").unwrap();
        let e = open(&loc, &OpenOptions::default(), &runner)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("--allow-insecure-http"), "{e}");
        let s = open(
            &loc,
            &OpenOptions {
                allow_insecure_http: true,
                ..OpenOptions::default()
            },
            &runner,
        )
        .await
        .unwrap();
        assert!(!s.can_list());
        assert_eq!(s.url(), "http://192.0.2.1:1/bc");
    }

    #[tokio::test]
    async fn local_roundtrip_and_preconditions() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalDir::new(d.path());
        assert!(s.get("a/b").await.unwrap().is_none());
        let m = s
            .put("a/b", b"one".to_vec(), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(m.size, 3);
        let again = s
            .put(
                "a/b",
                b"two".to_vec(),
                PutOptions {
                    precondition: Precondition::IfAbsent,
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(again.downcast_ref::<PreconditionFailed>().is_some());
        let stale = s
            .put(
                "a/b",
                b"two".to_vec(),
                PutOptions {
                    precondition: Precondition::IfMatch("nope".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(stale.downcast_ref::<PreconditionFailed>().is_some());
        let ok = s
            .put(
                "a/b",
                b"two".to_vec(),
                PutOptions {
                    precondition: Precondition::IfMatch(m.etag.unwrap()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(s.get("a/b").await.unwrap().unwrap().bytes, b"two");
        assert_eq!(ok.size, 3);
        s.put("a/c/d", b"x".to_vec(), PutOptions::default())
            .await
            .unwrap();
        let keys: Vec<String> = s
            .list("a/")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, ["a/b", "a/c/d"]);
        assert!(s.path("../x").is_err());
    }
}
