//! Where buildcaches live: an object-store abstraction ([`Storage`]) with a local-directory
//! implementation ([`LocalDir`]). The S3 implementation plugs into the same trait.
//!
//! Keys are `/`-separated paths relative to the buildcache root (`blobs/sha256/..`,
//! `v3/manifests/..`). Writes can carry a [`Precondition`] so a read-modify-write of the index
//! can detect a concurrent writer ([`PreconditionFailed`]) and retry instead of losing specs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use futures::future::BoxFuture;

use super::layout::Sha256Hex;

/// Metadata of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// An opaque version tag for conditional writes (S3 ETag; sha256 of the bytes locally).
    pub etag: Option<String>,
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

/// An object store holding a buildcache. Object-safe: use it as `&dyn Storage`.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The buildcache URL, for messages and outputs (`file:///...`, `s3://bucket/prefix`).
    fn url(&self) -> String;

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

    /// Writes the local file `path` at `key`. The default reads the file into memory; stores
    /// that can stream large files (multipart uploads) override it.
    fn put_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a Path,
        opts: PutOptions,
    ) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(async move {
            let bytes = tokio::fs::read(path)
                .await
                .with_context(|| format!("cannot read {}", path.display()))?;
            self.put(key, bytes, opts).await
        })
    }

    /// Every object whose key starts with `prefix` (recursively), sorted by key.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectMeta>>>;

    /// The SHA-256 and size of the object at `key`. The default downloads it; stores that can
    /// hash without buffering override it.
    fn digest<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<(Sha256Hex, u64)>>> {
        Box::pin(async move {
            Ok(self.get(key).await?.map(|o| {
                let n = o.bytes.len() as u64;
                (Sha256Hex::of(&o.bytes), n)
            }))
        })
    }
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
    /// An HTTP(S) URL (read-only mirrors).
    Http(String),
}

impl Location {
    /// Parses `file:///path`, `s3://bucket/prefix`, `http(s)://...` or a plain path.
    pub fn parse(url: &str) -> Result<Self> {
        let url = url.trim();
        if url.is_empty() {
            bail!(
                "the buildcache location is empty; give file:///path, s3://bucket/prefix or a directory"
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
        if url.starts_with("https://") || url.starts_with("http://") {
            return Ok(Location::Http(url.into()));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            bail!(
                "unsupported buildcache URL scheme {scheme:?} in {url:?}: use file://, s3:// or a directory"
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

/// Opens the storage at `url` for the backends this module implements (local directories).
/// `s3://` is opened by the S3 module; `http(s)://` is not supported yet.
pub fn open_local_or_explain(url: &str) -> Result<LocalDir> {
    match Location::parse(url)? {
        Location::Local(p) => Ok(LocalDir::new(p)),
        Location::S3 { .. } => bail!(
            "s3 destination: implemented by the S3 publishing issue; this build supports file:// buildcaches only"
        ),
        Location::Http(u) => bail!(
            "{u}: HTTP(S) buildcaches are read-only and not supported here yet; use the s3:// or file:// location of the same buildcache"
        ),
    }
}

/// A buildcache in a local directory. Writes go through a temporary file and a rename, so
/// readers never see partial objects.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    /// A buildcache rooted at `root` (need not exist yet; writes create it).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDir { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key`. Rejects keys that would escape the root.
    pub fn path(&self, key: &str) -> Result<PathBuf> {
        if key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            bail!("invalid object key {key:?}");
        }
        Ok(self.root.join(key))
    }

    fn etag_of(path: &Path) -> Result<Option<String>> {
        match std::fs::File::open(path) {
            Ok(f) => Ok(Some(Sha256Hex::of_reader(f)?.0.as_str().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn write_atomic(
        &self,
        key: &str,
        write: impl FnOnce(&Path) -> Result<()>,
        opts: &PutOptions,
    ) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        let dir = path.parent().expect("key has a parent");
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            uuid::Uuid::new_v4().simple()
        ));
        let result = (|| {
            write(&tmp)?;
            match &opts.precondition {
                Precondition::None => {
                    std::fs::rename(&tmp, &path)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                Precondition::IfAbsent => {
                    // A hard link fails atomically when the target exists.
                    match std::fs::hard_link(&tmp, &path) {
                        Ok(()) => {
                            let _ = std::fs::remove_file(&tmp);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                            return Err(anyhow::Error::new(PreconditionFailed { key: key.into() }));
                        }
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("cannot write {}", path.display()));
                        }
                    }
                }
                Precondition::IfMatch(etag) => {
                    // Local directories have a single writer in practice; this check catches
                    // a changed object but is not atomic across processes.
                    if Self::etag_of(&path)?.as_deref() != Some(etag.as_str()) {
                        return Err(anyhow::Error::new(PreconditionFailed { key: key.into() }));
                    }
                    std::fs::rename(&tmp, &path)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        let size = std::fs::metadata(&path)?.len();
        Ok(ObjectMeta {
            key: key.into(),
            size,
            etag: Self::etag_of(&path)?,
        })
    }
}

impl Storage for LocalDir {
    fn url(&self) -> String {
        let abs = std::path::absolute(&self.root).unwrap_or_else(|_| self.root.clone());
        format!("file://{}", abs.display())
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Object>>> {
        Box::pin(async move {
            let path = self.path(key)?;
            match tokio::fs::read(&path).await {
                Ok(bytes) => {
                    let etag = Some(Sha256Hex::of(&bytes).as_str().to_owned());
                    Ok(Some(Object { bytes, etag }))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
            }
        })
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectMeta>>> {
        Box::pin(async move {
            let path = self.path(key)?;
            match tokio::fs::metadata(&path).await {
                Ok(m) if m.is_file() => Ok(Some(ObjectMeta {
                    key: key.into(),
                    size: m.len(),
                    etag: None,
                })),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("cannot stat {}", path.display())),
            }
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        opts: PutOptions,
    ) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(async move {
            let this = self.clone();
            let key = key.to_owned();
            tokio::task::spawn_blocking(move || {
                this.write_atomic(
                    &key,
                    |tmp| {
                        std::fs::write(tmp, &bytes)
                            .with_context(|| format!("cannot write {}", tmp.display()))
                    },
                    &opts,
                )
            })
            .await?
        })
    }

    fn put_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a Path,
        opts: PutOptions,
    ) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(async move {
            let this = self.clone();
            let key = key.to_owned();
            let src = path.to_owned();
            tokio::task::spawn_blocking(move || {
                this.write_atomic(
                    &key,
                    |tmp| {
                        std::fs::copy(&src, tmp).map(|_| ()).with_context(|| {
                            format!("cannot copy {} to {}", src.display(), tmp.display())
                        })
                    },
                    &opts,
                )
            })
            .await?
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectMeta>>> {
        Box::pin(async move {
            let root = self.root.clone();
            let prefix = prefix.to_owned();
            tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                // Walk from the deepest directory the prefix names.
                let start_rel = match prefix.rfind('/') {
                    Some(i) => &prefix[..i],
                    None => "",
                };
                let start = if start_rel.is_empty() {
                    root.clone()
                } else {
                    root.join(start_rel)
                };
                let mut stack = vec![start];
                while let Some(dir) = stack.pop() {
                    let rd = match std::fs::read_dir(&dir) {
                        Ok(rd) => rd,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("cannot list {}", dir.display()));
                        }
                    };
                    for entry in rd {
                        let entry = entry?;
                        let ft = entry.file_type()?;
                        let p = entry.path();
                        if ft.is_dir() {
                            stack.push(p);
                        } else if ft.is_file() {
                            let rel = p
                                .strip_prefix(&root)
                                .expect("under root")
                                .to_string_lossy()
                                .replace('\\', "/");
                            let name = entry.file_name();
                            if name.to_string_lossy().starts_with('.') {
                                continue; // temporary files of in-flight writes
                            }
                            if rel.starts_with(&prefix) {
                                out.push(ObjectMeta {
                                    key: rel,
                                    size: entry.metadata()?.len(),
                                    etag: None,
                                });
                            }
                        }
                    }
                }
                out.sort_by(|a, b| a.key.cmp(&b.key));
                Ok(out)
            })
            .await?
        })
    }

    fn digest<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<(Sha256Hex, u64)>>> {
        Box::pin(async move {
            let path = self.path(key)?;
            tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
                Ok(f) => Ok(Some(Sha256Hex::of_reader(std::io::BufReader::new(f))?)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
            })
            .await?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let e = open_local_or_explain("s3://b/p").unwrap_err().to_string();
        assert!(e.contains("S3 publishing issue"), "{e}");
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
