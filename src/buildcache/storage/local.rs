//! [`LocalDir`]: a buildcache in a local directory, read as hostile input.
//!
//! A source tree or a `file://` cache may hold anything its writer chose, so every path is
//! walked one component at a time from the root with `O_NOFOLLOW` (`openat`/`statat` on the
//! parent's descriptor, never a path string through a link):
//!
//! - a symbolic link anywhere under the root (a blob, or a whole directory pointing outside
//!   the cache) is refused by name;
//! - anything that is not a regular file or a directory (FIFO, socket, device) is refused by
//!   name, after a `statat` that cannot block; files are opened `O_NONBLOCK` and checked again
//!   with `fstat` on the open descriptor, so a file swapped for a FIFO in between cannot hang
//!   the run either;
//! - sizes come from that `fstat` and are compared before anything is hashed
//!   ([`crate::buildcache::check_blob`] asks [`Storage::head`] first);
//! - [`Storage::put_file`] copies and hashes from one open handle, and refuses the copy when
//!   the bytes are not the size and SHA-256 the caller checked.
//!
//! Writes go through a temporary file in the target directory and a rename, so readers never
//! see partial objects; directories are created without following links either.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use futures::future::BoxFuture;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use sha2::{Digest, Sha256};

use super::{
    Capabilities, FileBody, Object, ObjectMeta, Precondition, PreconditionFailed, PutOptions,
    Storage,
};
use crate::buildcache::layout::Sha256Hex;

/// A buildcache in a local directory (see the module documentation).
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

/// How a directory is opened: read-only, never through a symlink.
pub(crate) const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);
/// How a file is opened: read-only, never through a symlink, never blocking on a FIFO.
pub(crate) const FILE_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::CLOEXEC);

/// What an entry of type `ft` is, for messages (`a symbolic link`, `a FIFO (named pipe)`).
pub(crate) fn kind(ft: FileType) -> &'static str {
    match ft {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO (named pipe)",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "a file of unknown type",
    }
}

/// The error for an entry that is not what a buildcache may hold.
fn refuse(path: &Path, ft: FileType) -> anyhow::Error {
    let why = if ft == FileType::Symlink {
        "buildcache files are read without following links (a link can point anywhere outside the cache); replace it with the file or directory itself"
    } else {
        "a buildcache holds only regular files and directories"
    };
    anyhow::anyhow!("refusing {}: it is {}; {why}", path.display(), kind(ft))
}

fn not_found(e: &rustix::io::Errno) -> bool {
    *e == rustix::io::Errno::NOENT
}

/// `statat` without following a link: the entry's type and size, `None` when absent, an
/// error naming `path` when it is not of type `want`.
fn stat_as(dir: &OwnedFd, name: &str, path: &Path, want: FileType) -> Result<Option<u64>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => {
            let ft = FileType::from_raw_mode(st.st_mode);
            if ft != want {
                return Err(refuse(path, ft));
            }
            Ok(Some(st.st_size as u64))
        }
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => {
            Err(std::io::Error::from(e)).with_context(|| format!("cannot stat {}", path.display()))
        }
    }
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

    /// The file of `key`, for messages and for tools that need a path. Rejects keys that would
    /// escape the root. Read it through [`Storage`], which does not follow links.
    pub fn path(&self, key: &str) -> Result<PathBuf> {
        components(key)?;
        Ok(self.root.join(key))
    }

    /// Opens the root directory (following a link there: the caller chose the root).
    fn open_root(&self) -> Result<Option<OwnedFd>> {
        match rustix::fs::open(
            &self.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(std::io::Error::from(e))
                .with_context(|| format!("cannot open directory {}", self.root.display())),
        }
    }

    /// Opens the directory `comps` under `dir` one component at a time without following
    /// links; `None` when a component does not exist (and `create` is false).
    fn open_dirs(&self, dir: OwnedFd, comps: &[&str], create: bool) -> Result<Option<OwnedFd>> {
        let mut dir = dir;
        let mut path = self.root.clone();
        for c in comps {
            path.push(c);
            if create {
                match rustix::fs::mkdirat(&dir, *c, Mode::from_raw_mode(0o755)) {
                    Ok(()) => {}
                    Err(e) if e == rustix::io::Errno::EXIST => {}
                    Err(e) => {
                        return Err(std::io::Error::from(e)).with_context(|| {
                            format!("cannot create directory {}", path.display())
                        });
                    }
                }
            }
            if stat_as(&dir, c, &path, FileType::Directory)?.is_none() {
                return Ok(None);
            }
            dir = match rustix::fs::openat(&dir, *c, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(e) if not_found(&e) => return Ok(None),
                Err(e) if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR => {
                    return Err(refuse(&path, FileType::Symlink));
                }
                Err(e) => {
                    return Err(std::io::Error::from(e))
                        .with_context(|| format!("cannot open directory {}", path.display()));
                }
            };
        }
        Ok(Some(dir))
    }

    /// The parent directory of `key`, opened without following links.
    fn parent_of(&self, key: &str, create: bool) -> Result<Option<(OwnedFd, String)>> {
        let comps = components(key)?;
        let (name, parents) = comps.split_last().expect("a key has components");
        if create {
            std::fs::create_dir_all(&self.root)
                .with_context(|| format!("cannot create directory {}", self.root.display()))?;
        }
        let Some(root) = self.open_root()? else {
            return Ok(None);
        };
        Ok(self
            .open_dirs(root, parents, create)?
            .map(|d| (d, (*name).to_owned())))
    }

    /// Metadata of the regular file at `key` without opening it; an error naming the file when
    /// it is anything else.
    fn stat_file(&self, key: &str) -> Result<Option<u64>> {
        let Some((dir, name)) = self.parent_of(key, false)? else {
            return Ok(None);
        };
        stat_as(&dir, &name, &self.root.join(key), FileType::RegularFile)
    }

    /// Opens the regular file at `key` for reading without following links and without
    /// blocking, with its size from `fstat` on the open descriptor.
    pub(crate) fn open_file(&self, key: &str) -> Result<Option<(std::fs::File, u64)>> {
        let path = self.root.join(key);
        let Some((dir, name)) = self.parent_of(key, false)? else {
            return Ok(None);
        };
        // Check the type first: opening a FIFO or a device can block or have side effects.
        if stat_as(&dir, &name, &path, FileType::RegularFile)?.is_none() {
            return Ok(None);
        }
        let fd = match rustix::fs::openat(&dir, name.as_str(), FILE_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) if e == rustix::io::Errno::LOOP => {
                return Err(refuse(&path, FileType::Symlink));
            }
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("cannot open {}", path.display()));
            }
        };
        // Swapped between the stat and the open? The descriptor decides.
        let st = rustix::fs::fstat(&fd)
            .map_err(std::io::Error::from)
            .with_context(|| format!("cannot stat {}", path.display()))?;
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft != FileType::RegularFile {
            return Err(refuse(&path, ft));
        }
        Ok(Some((std::fs::File::from(fd), st.st_size as u64)))
    }

    /// Reads the whole regular file at `key` (see [`LocalDir::open_file`]).
    fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let Some((f, size)) = self.open_file(key)? else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(size as usize);
        f.take(size)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", self.root.join(key).display()))?;
        Ok(Some(bytes))
    }

    fn etag_of(&self, key: &str) -> Result<Option<String>> {
        Ok(self.read(key)?.map(|b| Sha256Hex::of(&b).to_string()))
    }

    /// Writes `key` through a temporary file that `fill` writes, then renames it into place
    /// under `opts.precondition`.
    fn write_atomic(
        &self,
        key: &str,
        fill: impl FnOnce(&mut std::fs::File, &Path) -> Result<()>,
        opts: &PutOptions,
    ) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        let (dir, name) = self
            .parent_of(key, true)?
            .with_context(|| format!("cannot create the directory of {}", path.display()))?;
        let tmp = format!(".{name}.tmp-{}", uuid::Uuid::new_v4().simple());
        let tmp_path = path.with_file_name(&tmp);
        let fd = rustix::fs::openat(
            &dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot create {}", tmp_path.display()))?;
        let mut file = std::fs::File::from(fd);
        let result = (|| {
            fill(&mut file, &tmp_path)?;
            file.flush()?;
            drop(file);
            match &opts.precondition {
                Precondition::None => {
                    rustix::fs::renameat(&dir, tmp.as_str(), &dir, name.as_str())
                        .map_err(std::io::Error::from)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                Precondition::IfAbsent => {
                    // A hard link fails atomically when the target exists.
                    match rustix::fs::linkat(
                        &dir,
                        tmp.as_str(),
                        &dir,
                        name.as_str(),
                        AtFlags::empty(),
                    ) {
                        Ok(()) => {
                            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
                        }
                        Err(e) if e == rustix::io::Errno::EXIST => {
                            return Err(anyhow::Error::new(PreconditionFailed { key: key.into() }));
                        }
                        Err(e) => {
                            return Err(std::io::Error::from(e))
                                .with_context(|| format!("cannot write {}", path.display()));
                        }
                    }
                }
                Precondition::IfMatch(etag) => {
                    // Local directories have a single writer in practice; this check catches
                    // a changed object but is not atomic across processes.
                    if self.etag_of(key)?.as_deref() != Some(etag.as_str()) {
                        return Err(anyhow::Error::new(PreconditionFailed { key: key.into() }));
                    }
                    rustix::fs::renameat(&dir, tmp.as_str(), &dir, name.as_str())
                        .map_err(std::io::Error::from)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        }
        result?;
        let bytes = self.read(key)?.unwrap_or_default();
        Ok(ObjectMeta {
            key: key.into(),
            size: bytes.len() as u64,
            etag: Some(Sha256Hex::of(&bytes).to_string()),
            last_modified: None,
        })
    }

    /// Every regular file under `prefix`, sorted; refuses links and special files by name.
    fn list_blocking(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        let start_rel = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let comps: Vec<&str> = if start_rel.is_empty() {
            Vec::new()
        } else {
            components(start_rel)?
        };
        let Some(root) = self.open_root()? else {
            return Ok(out);
        };
        let Some(start) = self.open_dirs(root, &comps, false)? else {
            return Ok(out);
        };
        let mut stack = vec![(start, start_rel.to_owned())];
        while let Some((dir, rel)) = stack.pop() {
            let shown = |name: &str| {
                if rel.is_empty() {
                    name.to_owned()
                } else {
                    format!("{rel}/{name}")
                }
            };
            let entries = rustix::fs::Dir::read_from(&dir)
                .map_err(std::io::Error::from)
                .with_context(|| format!("cannot list {}", self.root.join(&rel).display()))?;
            for entry in entries {
                let entry = entry
                    .map_err(std::io::Error::from)
                    .with_context(|| format!("cannot list {}", self.root.join(&rel).display()))?;
                let raw = entry.file_name().to_bytes();
                if raw == b"." || raw == b".." {
                    continue;
                }
                let name = OsStr::from_bytes(raw).to_string_lossy().into_owned();
                let key = shown(&name);
                let st = rustix::fs::statat(&dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(std::io::Error::from)
                    .with_context(|| format!("cannot stat {}", self.root.join(&key).display()))?;
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => {
                        let sub =
                            rustix::fs::openat(&dir, entry.file_name(), DIR_FLAGS, Mode::empty())
                                .map_err(std::io::Error::from)
                                .with_context(|| {
                                    format!(
                                        "cannot open directory {}",
                                        self.root.join(&key).display()
                                    )
                                })?;
                        stack.push((sub, key));
                    }
                    FileType::RegularFile => {
                        if name.starts_with('.') {
                            continue; // temporary files of in-flight writes
                        }
                        if key.starts_with(prefix) {
                            out.push(ObjectMeta::sized(&key, st.st_size as u64));
                        }
                    }
                    ft => return Err(refuse(&self.root.join(&key), ft)),
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn copy_verified(&self, key: &str, src: &FileBody, opts: &PutOptions) -> Result<ObjectMeta> {
        let mut input = src.open()?;
        self.write_atomic(
            key,
            |out, tmp| {
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 1 << 20];
                let mut n = 0u64;
                loop {
                    let k = input
                        .read(&mut buf)
                        .with_context(|| format!("cannot read {}", src.path().display()))?;
                    if k == 0 {
                        break;
                    }
                    h.update(&buf[..k]);
                    n += k as u64;
                    out.write_all(&buf[..k])
                        .with_context(|| format!("cannot write {}", tmp.display()))?;
                }
                let got = hex::encode(h.finalize());
                if n != src.size || got != src.sha256.as_str() {
                    bail!(
                        "{} changed while it was copied (sha256 {got}, {n} bytes; expected {}, {} bytes); nothing was written at {key}",
                        src.path().display(),
                        src.sha256,
                        src.size
                    );
                }
                Ok(())
            },
            opts,
        )
    }
}

/// The `/`-separated components of a key; refuses keys that would escape the root.
fn components(key: &str) -> Result<Vec<&str>> {
    if key.is_empty()
        || key.starts_with('/')
        || key.contains('\0')
        || key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        bail!("invalid object key {key:?}");
    }
    Ok(key.split('/').collect())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}

impl Storage for LocalDir {
    fn url(&self) -> String {
        let abs = std::path::absolute(&self.root).unwrap_or_else(|_| self.root.clone());
        format!("file://{}", abs.display())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            list: true,
            write: true,
        }
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Object>>> {
        let (this, key) = (self.clone(), key.to_owned());
        Box::pin(blocking(move || {
            Ok(this.read(&key)?.map(|bytes| Object {
                etag: Some(Sha256Hex::of(&bytes).to_string()),
                bytes,
            }))
        }))
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectMeta>>> {
        let (this, key) = (self.clone(), key.to_owned());
        Box::pin(blocking(move || {
            Ok(this
                .stat_file(&key)?
                .map(|size| ObjectMeta::sized(&key, size)))
        }))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        opts: PutOptions,
    ) -> BoxFuture<'a, Result<ObjectMeta>> {
        let (this, key) = (self.clone(), key.to_owned());
        Box::pin(blocking(move || {
            this.write_atomic(
                &key,
                |f, tmp| {
                    f.write_all(&bytes)
                        .with_context(|| format!("cannot write {}", tmp.display()))
                },
                &opts,
            )
        }))
    }

    fn put_file<'a>(
        &'a self,
        key: &'a str,
        file: &'a FileBody,
        opts: PutOptions,
    ) -> BoxFuture<'a, Result<ObjectMeta>> {
        let (this, key, file) = (self.clone(), key.to_owned(), file.clone());
        Box::pin(blocking(move || this.copy_verified(&key, &file, &opts)))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        let (this, key) = (self.clone(), key.to_owned());
        Box::pin(blocking(move || {
            let Some((dir, name)) = this.parent_of(&key, false)? else {
                return Ok(());
            };
            match rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty()) {
                Ok(()) => Ok(()),
                Err(e) if not_found(&e) => Ok(()),
                Err(e) => Err(std::io::Error::from(e))
                    .with_context(|| format!("cannot delete {}", this.root.join(&key).display())),
            }
        }))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectMeta>>> {
        let (this, prefix) = (self.clone(), prefix.to_owned());
        Box::pin(blocking(move || this.list_blocking(&prefix)))
    }

    fn copy_to<'a>(
        &'a self,
        key: &'a str,
        out: &'a mut std::fs::File,
        max: u64,
    ) -> BoxFuture<'a, Result<Option<(Sha256Hex, u64)>>> {
        Box::pin(async move {
            let Some((f, size)) = self.open_file(key)? else {
                return Ok(None);
            };
            let path = self.root.join(key);
            if size > max {
                bail!("{} is larger than {max} bytes; refusing it", path.display());
            }
            let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
            let mut tee = HashingReader::new(f.take(size));
            let n = std::io::copy(&mut tee, &mut out)
                .and_then(|n| out.flush().map(|()| n))
                .with_context(|| format!("cannot copy {}", path.display()))?;
            if n != size {
                bail!("{} changed size while it was read", path.display());
            }
            Ok(Some((tee.finish(), n)))
        })
    }

    fn digest<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<(Sha256Hex, u64)>>> {
        let (this, key) = (self.clone(), key.to_owned());
        Box::pin(blocking(move || {
            let Some((f, size)) = this.open_file(&key)? else {
                return Ok(None);
            };
            let (d, n) =
                Sha256Hex::of_reader(std::io::BufReader::with_capacity(1 << 20, f.take(size)))
                    .with_context(|| format!("cannot read {}", this.root.join(&key).display()))?;
            Ok(Some((d, n)))
        }))
    }
}

impl FileBody {
    /// The file's path, for messages.
    pub fn path(&self) -> PathBuf {
        self.source.root().join(&self.key)
    }

    /// Opens the file without following links and checks it still has the size it was
    /// checked with.
    pub(crate) fn open(&self) -> Result<std::fs::File> {
        let (f, size) = self
            .source
            .open_file(&self.key)?
            .with_context(|| format!("{} disappeared", self.path().display()))?;
        if size != self.size {
            bail!(
                "{} is {size} bytes, not the {} it had when it was checked; nothing was written",
                self.path().display(),
                self.size
            );
        }
        Ok(f)
    }
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hash: sha2::Sha256,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hash: sha2::Digest::new(),
        }
    }
    fn finish(self) -> Sha256Hex {
        Sha256Hex::parse(&hex::encode(sha2::Digest::finalize(self.hash)))
            .expect("a SHA-256 is 64 hex digits")
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hash, &buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn cache() -> (tempfile::TempDir, LocalDir) {
        let d = tempfile::tempdir().unwrap();
        let s = LocalDir::new(d.path().join("c"));
        std::fs::create_dir_all(d.path().join("c/blobs/sha256/aa")).unwrap();
        (d, s)
    }

    #[tokio::test]
    async fn symlinked_files_and_directories_are_refused_by_name() {
        let (d, s) = cache();
        std::fs::write(d.path().join("outside"), b"secret").unwrap();
        symlink(
            d.path().join("outside"),
            d.path().join("c/blobs/sha256/aa/link"),
        )
        .unwrap();
        for e in [
            s.get("blobs/sha256/aa/link").await.unwrap_err(),
            s.head("blobs/sha256/aa/link").await.unwrap_err(),
            s.digest("blobs/sha256/aa/link").await.unwrap_err(),
            s.list("blobs/").await.unwrap_err(),
        ] {
            let m = format!("{e:#}");
            assert!(
                m.contains("blobs/sha256/aa/link") && m.contains("symbolic link"),
                "{m}"
            );
        }
        // A whole directory pointing outside the cache.
        std::fs::create_dir_all(d.path().join("elsewhere/x")).unwrap();
        std::fs::write(d.path().join("elsewhere/x/f"), b"secret").unwrap();
        symlink(d.path().join("elsewhere"), d.path().join("c/v3")).unwrap();
        let m = format!("{:#}", s.get("v3/x/f").await.unwrap_err());
        assert!(m.contains("/c/v3") && m.contains("symbolic link"), "{m}");
        // Writing through it is refused as well, and nothing lands outside.
        let m = format!(
            "{:#}",
            s.put("v3/x/g", b"x".to_vec(), PutOptions::default())
                .await
                .unwrap_err()
        );
        assert!(m.contains("symbolic link"), "{m}");
        assert!(!d.path().join("elsewhere/x/g").exists());
    }

    #[tokio::test]
    async fn a_fifo_is_refused_without_blocking() {
        let (d, s) = cache();
        let fifo = d.path().join("c/blobs/sha256/aa/fifo");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            (
                s.get("blobs/sha256/aa/fifo").await,
                s.digest("blobs/sha256/aa/fifo").await,
                s.list("").await,
            )
        })
        .await
        .expect("reading a FIFO hung");
        for e in [r.0.unwrap_err(), r.1.unwrap_err(), r.2.unwrap_err()] {
            let m = format!("{e:#}");
            assert!(m.contains("aa/fifo") && m.contains("FIFO"), "{m}");
        }
    }

    #[tokio::test]
    async fn a_sparse_file_has_its_size_read_without_reading_it() {
        let (d, s) = cache();
        let f = std::fs::File::create(d.path().join("c/blobs/sha256/aa/big")).unwrap();
        f.set_len(2 << 30).unwrap();
        let t0 = std::time::Instant::now();
        let m = s.head("blobs/sha256/aa/big").await.unwrap().unwrap();
        assert_eq!(m.size, 2 << 30);
        assert!(t0.elapsed() < std::time::Duration::from_secs(2));
    }

    #[tokio::test]
    async fn put_file_refuses_a_source_that_changed_since_it_was_checked() {
        let (d, s) = cache();
        let src = LocalDir::new(d.path().join("src"));
        src.put("f", b"hello".to_vec(), PutOptions::default())
            .await
            .unwrap();
        let body = FileBody {
            source: src.clone(),
            key: "f".into(),
            size: 5,
            sha256: Sha256Hex::of(b"HELLO"),
            parts: vec![],
            part_size: 0,
        };
        let e = s
            .put_file("blobs/x", &body, PutOptions::default())
            .await
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("changed while it was copied"),
            "{e:#}"
        );
        assert!(s.head("blobs/x").await.unwrap().is_none());
        let ok = FileBody {
            sha256: Sha256Hex::of(b"hello"),
            ..body
        };
        s.put_file("blobs/x", &ok, PutOptions::default())
            .await
            .unwrap();
        assert_eq!(s.get("blobs/x").await.unwrap().unwrap().bytes, b"hello");
        s.delete("blobs/x").await.unwrap();
        s.delete("blobs/x").await.unwrap();
        assert!(s.head("blobs/x").await.unwrap().is_none());
    }
}
