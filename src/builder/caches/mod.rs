//! The caches a self-hosted runner keeps between runs, shared by the legs that run on it at
//! once: Spack's downloaded sources ([`sources`]) and the build images ([`images`]).
//!
//! Where: a root directory ([`CacheSettings::resolve`]: `--cache-dir`, the action input
//! `cache_dir` or `SLURM_FACTORY_CACHE_DIR`, else the catalog's `caches.dir`, else
//! `$RUNNER_TOOL_CACHE/slurm-factory`, `$XDG_CACHE_HOME/slurm-factory` or
//! `~/.cache/slurm-factory`) holding `spack-sources/` (Spack's source cache layout, as is) and
//! `images/` (`docker save` archives named by the build context's digest), each with a lock
//! file beside it.
//!
//! How ([`CacheDir`]): an entry is written to a temporary name in its directory and linked
//! into place without replacing anything (a hard link fails when the name exists), so a reader
//! never sees a partial file and two legs adding the same file at once both succeed with one
//! copy. Every path is walked one component at a time with `O_NOFOLLOW`: a symbolic link, FIFO
//! or other special file found in a cache (or in what a leg offers it) is never followed,
//! opened, counted or promoted, only reported. Using an entry refreshes its modification time;
//! [`CacheDir::prune`], under an exclusive lock on the cache's lock file, deletes the least
//! recently used entries until the cache is within its cap. Nothing here fails a build: a
//! cache that cannot be used is a warning.

use std::ffi::OsStr;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, UTIME_NOW};

use crate::buildcache::storage::file_kind as kind;
use crate::catalog::Caches;
use crate::gha::Runner;

pub mod images;
pub mod sources;

/// The environment variable naming the cache root for local use (`off` turns caches off).
pub const CACHE_DIR_ENV: &str = "SLURM_FACTORY_CACHE_DIR";

/// The value of `--cache-dir` (input `cache_dir`, [`CACHE_DIR_ENV`]) that turns caches off.
pub const CACHE_OFF: &str = "off";

/// The directory under the cache root holding Spack's source cache.
pub const SOURCES_DIR: &str = "spack-sources";

/// The directory under the cache root holding saved build images.
pub const IMAGES_DIR: &str = "images";

/// Where a build keeps its caches, and their caps; `root: None` means no caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// The root directory (absolute), or `None` when caches are off.
    pub root: Option<PathBuf>,
    /// Cap of the source cache, in bytes.
    pub source_max: u64,
    /// Cap of the image cache, in bytes.
    pub image_max: u64,
}

impl CacheSettings {
    /// No caches (what a build without a cache root does: everything is downloaded and built).
    pub fn off() -> CacheSettings {
        let d = Caches::default();
        CacheSettings {
            root: None,
            source_max: d.source_cache_max.bytes(),
            image_max: d.image_cache_max.bytes(),
        }
    }

    /// The settings of a build: `explicit` (`--cache-dir`, input `cache_dir` or
    /// [`CACHE_DIR_ENV`]; `off` turns caches off, anything else must be an absolute path) wins;
    /// else the catalog's `caches` (off when `enabled: false`; its `dir`, else the runner's
    /// tool cache, `$XDG_CACHE_HOME` or `$HOME/.cache`, each + `/slurm-factory`).
    pub fn resolve(
        explicit: Option<&Path>,
        catalog: &Caches,
        runner: &Runner,
    ) -> Result<CacheSettings> {
        let mut s = CacheSettings {
            root: None,
            source_max: catalog.source_cache_max.bytes(),
            image_max: catalog.image_cache_max.bytes(),
        };
        if let Some(dir) = explicit {
            if dir.as_os_str() == CACHE_OFF {
                return Ok(s);
            }
            if !dir.is_absolute() {
                bail!(
                    "--cache-dir {}: give an absolute path (the caches outlive the build's working directory), or `{CACHE_OFF}` to build without caches",
                    dir.display()
                );
            }
            s.root = Some(dir.to_path_buf());
            return Ok(s);
        }
        if !catalog.enabled {
            return Ok(s);
        }
        let env_dir = |name: &str| {
            runner
                .var(name)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        s.root = catalog
            .dir
            .as_ref()
            .map(PathBuf::from)
            .or_else(|| env_dir("RUNNER_TOOL_CACHE"))
            .or_else(|| env_dir("XDG_CACHE_HOME"))
            .or_else(|| env_dir("HOME").map(|h| h.join(".cache")))
            .map(|p| {
                if catalog.dir.is_some() {
                    p
                } else {
                    p.join("slurm-factory")
                }
            });
        Ok(s)
    }

    /// The shared source cache, if caches are on.
    pub fn sources(&self) -> Result<Option<CacheDir>> {
        self.root
            .as_ref()
            .map(|r| CacheDir::open(r, SOURCES_DIR, self.source_max))
            .transpose()
    }

    /// The image cache, if caches are on.
    pub fn images(&self) -> Result<Option<CacheDir>> {
        self.root
            .as_ref()
            .map(|r| CacheDir::open(r, IMAGES_DIR, self.image_max))
            .transpose()
    }
}

// Directories and files are opened as the buildcache's local store opens them: never through
// a link, never blocking on a FIFO.
use crate::buildcache::storage::{DIR_FLAGS, FILE_FLAGS};

/// Temporary files of writers that died are removed by [`CacheDir::prune`] after this long.
const STALE_TEMP: Duration = Duration::from_secs(24 * 3600);

fn io(e: rustix::io::Errno) -> std::io::Error {
    std::io::Error::from(e)
}

/// The components of a relative entry path: plain names, none empty, `.`, `..` or starting
/// with `.` (names starting with `.` are the caches' own temporary and lock files).
pub(crate) fn components(rel: &str) -> Result<Vec<&str>> {
    let parts: Vec<&str> = rel.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || p.starts_with('.') || p.contains('\0'))
    {
        bail!("{rel:?} is not a cache entry name (plain relative names only)");
    }
    Ok(parts)
}

/// A regular file found by [`walk`].
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// Its path relative to the walked root.
    pub(crate) rel: String,
    /// Its size.
    pub(crate) size: u64,
    /// Its modification time.
    pub(crate) mtime: SystemTime,
}

/// What [`walk`] saw.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    /// Regular files (names not starting with `.`).
    pub(crate) files: Vec<Found>,
    /// Regular files whose name starts with `.` (temporary files).
    pub(crate) hidden: Vec<Found>,
    /// Entries that are neither regular files nor directories, never followed or opened:
    /// `(path, what it is)`.
    pub(crate) refused: Vec<(String, &'static str)>,
}

/// Every entry under the directory `root` (opened by the caller), without following links.
pub(crate) fn walk(root: OwnedFd, shown: &Path) -> Result<Walk> {
    let mut out = Walk::default();
    let mut stack = vec![(root, String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = rustix::fs::Dir::read_from(&dir)
            .map_err(io)
            .with_context(|| format!("cannot list {}", shown.join(&rel).display()))?;
        for entry in entries {
            let entry = entry
                .map_err(io)
                .with_context(|| format!("cannot list {}", shown.join(&rel).display()))?;
            let raw = entry.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            let name = OsStr::from_bytes(raw).to_string_lossy().into_owned();
            let key = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let st = match rustix::fs::statat(&dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(e) if e == rustix::io::Errno::NOENT => continue, // removed meanwhile
                Err(e) => {
                    return Err(io(e))
                        .with_context(|| format!("cannot stat {}", shown.join(&key).display()));
                }
            };
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    if name.starts_with('.') {
                        out.refused.push((key, "a hidden directory"));
                        continue;
                    }
                    match rustix::fs::openat(&dir, entry.file_name(), DIR_FLAGS, Mode::empty()) {
                        Ok(sub) => stack.push((sub, key)),
                        Err(e) if e == rustix::io::Errno::NOENT => {}
                        Err(e) => {
                            return Err(io(e)).with_context(|| {
                                format!("cannot open {}", shown.join(&key).display())
                            });
                        }
                    }
                }
                FileType::RegularFile => {
                    let found = Found {
                        rel: key,
                        size: st.st_size as u64,
                        mtime: SystemTime::UNIX_EPOCH
                            + Duration::new(st.st_mtime as u64, st.st_mtime_nsec as u32),
                    };
                    if name.starts_with('.') {
                        out.hidden.push(found);
                    } else {
                        out.files.push(found);
                    }
                }
                other => out.refused.push((key, kind(other))),
            }
        }
    }
    out.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// Opens the directory at `path` (following a link there: the caller chose it).
pub(crate) fn open_dir(path: &Path) -> Result<Option<OwnedFd>> {
    match rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e == rustix::io::Errno::NOENT => Ok(None),
        Err(e) => Err(io(e)).with_context(|| format!("cannot open {}", path.display())),
    }
}

/// Opens the regular file `rel` under the directory `root` for reading, without following a
/// link anywhere on the way and without blocking on a FIFO; `None` when it is absent or not a
/// regular file.
pub(crate) fn open_regular(root: &OwnedFd, rel: &str) -> Result<Option<std::fs::File>> {
    let parts = components(rel)?;
    let (name, dirs) = parts.split_last().expect("split gives one part");
    let mut dir = rustix::fs::openat(root, ".", DIR_FLAGS, Mode::empty()).map_err(io)?;
    for d in dirs {
        dir = match rustix::fs::openat(&dir, *d, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(_) => return Ok(None),
        };
    }
    let fd = match rustix::fs::openat(&dir, *name, FILE_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        Err(_) => return Ok(None),
    };
    let st = rustix::fs::fstat(&fd).map_err(io)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(None);
    }
    Ok(Some(std::fs::File::from(fd)))
}

/// Whether an insert added the entry or found it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// This call added it.
    New,
    /// It was there already (another leg may have added it meanwhile); nothing was replaced.
    Existed,
}

/// What [`CacheDir::prune`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Entries kept, and their bytes.
    pub kept: (usize, u64),
    /// Entries evicted (least recently used first), and their bytes.
    pub evicted: Vec<(String, u64)>,
    /// Entries that are not regular files or directories (left alone, never followed).
    pub refused: Vec<(String, &'static str)>,
}

/// One cache directory under a cache root, with its lock file and cap (see the module docs).
#[derive(Debug, Clone)]
pub struct CacheDir {
    path: PathBuf,
    lock: PathBuf,
    max: u64,
}

/// A file being written into a [`CacheDir`]: write through [`Pending::file`], then
/// [`Pending::commit`]; dropped uncommitted, the temporary file is removed.
#[derive(Debug)]
pub struct Pending {
    dir: OwnedFd,
    tmp: String,
    name: String,
    shown: PathBuf,
    file: Option<std::fs::File>,
}

impl Pending {
    /// The temporary file.
    pub fn file(&mut self) -> &mut std::fs::File {
        self.file
            .as_mut()
            .expect("a pending entry has its file until committed")
    }

    /// Flushes the file and links it into place unless the name exists.
    pub fn commit(mut self) -> Result<Inserted> {
        let mut file = self.file.take().expect("committed once");
        file.flush()?;
        file.sync_all()
            .with_context(|| format!("cannot write {}", self.shown.display()))?;
        drop(file);
        let r = rustix::fs::linkat(
            &self.dir,
            self.tmp.as_str(),
            &self.dir,
            self.name.as_str(),
            AtFlags::empty(),
        );
        match r {
            Ok(()) => Ok(Inserted::New),
            Err(e) if e == rustix::io::Errno::EXIST => Ok(Inserted::Existed),
            Err(e) => Err(io(e)).with_context(|| format!("cannot add {}", self.shown.display())),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let _ = rustix::fs::unlinkat(&self.dir, self.tmp.as_str(), AtFlags::empty());
    }
}

impl CacheDir {
    /// The cache `name` under `root` (both created when missing), capped at `max` bytes.
    /// Refused when `root/name` is not a directory (a link there is not followed).
    pub fn open(root: &Path, name: &str, max: u64) -> Result<CacheDir> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the cache directory {}", root.display()))?;
        let path = root.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!(
                "{} is not a directory (a link or a file is not followed): remove it and the cache is made afresh",
                path.display()
            ),
            Err(_) => std::fs::create_dir(&path)
                .or_else(|e| if path.is_dir() { Ok(()) } else { Err(e) })
                .with_context(|| format!("cannot create {}", path.display()))?,
        }
        Ok(CacheDir {
            lock: root.join(format!(".{name}.lock")),
            path,
            max,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cap, in bytes.
    pub fn max(&self) -> u64 {
        self.max
    }

    fn root(&self) -> Result<OwnedFd> {
        open_dir(&self.path)?.with_context(|| format!("{} is gone", self.path.display()))
    }

    /// The directory of `rel` and its file name, walking (and with `create`, creating) every
    /// directory without following links; `None` when a directory is missing (without
    /// `create`) or is not a directory.
    fn parent_of(&self, rel: &str, create: bool) -> Result<Option<(OwnedFd, String)>> {
        let parts = components(rel)?;
        let (name, dirs) = parts.split_last().expect("split gives one part");
        let mut dir = self.root()?;
        for d in dirs {
            let mut opened = rustix::fs::openat(&dir, *d, DIR_FLAGS, Mode::empty());
            if create && opened.as_ref().err() == Some(&rustix::io::Errno::NOENT) {
                match rustix::fs::mkdirat(&dir, *d, Mode::from_raw_mode(0o755)) {
                    Ok(()) => {}
                    Err(e) if e == rustix::io::Errno::EXIST => {}
                    Err(e) => {
                        return Err(io(e)).with_context(|| {
                            format!(
                                "cannot create a directory for {}",
                                self.path.join(rel).display()
                            )
                        });
                    }
                }
                opened = rustix::fs::openat(&dir, *d, DIR_FLAGS, Mode::empty());
            }
            dir = match opened {
                Ok(fd) => fd,
                Err(_) => return Ok(None),
            };
        }
        Ok(Some((dir, (*name).to_owned())))
    }

    /// The entry `rel`, opened for reading, when it is a regular file.
    pub fn open_entry(&self, rel: &str) -> Result<Option<std::fs::File>> {
        open_regular(&self.root()?, rel)
    }

    /// What `rel` is, without following a link: `None` when absent.
    pub fn entry_kind(&self, rel: &str) -> Result<Option<&'static str>> {
        let Some((dir, name)) = self.parent_of(rel, false)? else {
            return Ok(None);
        };
        match rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(kind(FileType::from_raw_mode(st.st_mode)))),
            Err(_) => Ok(None),
        }
    }

    /// Marks the regular file `rel` as just used (its modification time becomes now); false
    /// when it is absent or not a regular file.
    pub fn touch(&self, rel: &str) -> Result<bool> {
        let Some((dir, name)) = self.parent_of(rel, false)? else {
            return Ok(false);
        };
        match rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
            _ => return Ok(false),
        }
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_NOW,
        };
        rustix::fs::utimensat(
            &dir,
            name.as_str(),
            &Timestamps {
                last_access: now,
                last_modification: now,
            },
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io)
        .with_context(|| format!("cannot touch {}", self.path.join(rel).display()))?;
        Ok(true)
    }

    /// Starts writing the entry `rel` (a temporary file in its directory).
    pub fn begin(&self, rel: &str) -> Result<Pending> {
        let shown = self.path.join(rel);
        let (dir, name) = self
            .parent_of(rel, true)?
            .with_context(|| format!("cannot create the directory of {}", shown.display()))?;
        let tmp = format!(".{name}.tmp-{}", uuid::Uuid::new_v4().simple());
        let fd = rustix::fs::openat(
            &dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(io)
        .with_context(|| format!("cannot create a temporary file for {}", shown.display()))?;
        Ok(Pending {
            dir,
            tmp,
            name,
            shown,
            file: Some(std::fs::File::from(fd)),
        })
    }

    /// Takes the cache's lock (exclusive; blocks while another process holds it).
    fn lock(&self) -> Result<std::fs::File> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags_nofollow()
            .open(&self.lock)
            .with_context(|| format!("cannot open the lock file {}", self.lock.display()))?;
        f.lock()
            .with_context(|| format!("cannot lock {}", self.lock.display()))?;
        Ok(f)
    }

    /// Under the lock: removes temporary files older than a day, then deletes the least
    /// recently used entries (oldest modification time first) until the cache holds at most
    /// its cap. Links and special files are neither followed nor counted nor removed.
    pub fn prune(&self) -> Result<PruneReport> {
        let _lock = self.lock()?;
        let found = walk(self.root()?, &self.path)?;
        let now = SystemTime::now();
        for t in &found.hidden {
            if now
                .duration_since(t.mtime)
                .is_ok_and(|age| age > STALE_TEMP)
            {
                let _ = self.remove(&t.rel, true);
            }
        }
        let mut files = found.files;
        files.sort_by(|a, b| a.mtime.cmp(&b.mtime).then(a.rel.cmp(&b.rel)));
        let mut total: u64 = files.iter().map(|f| f.size).sum();
        let mut report = PruneReport {
            refused: found.refused,
            ..Default::default()
        };
        let mut kept = files.len();
        for f in files {
            if total <= self.max {
                break;
            }
            if self.remove(&f.rel, false)? {
                total -= f.size;
                kept -= 1;
                report.evicted.push((f.rel, f.size));
            }
        }
        report.kept = (kept, total);
        Ok(report)
    }

    /// Removes the regular file `rel` (`hidden`: a name starting with `.`); false when it is
    /// gone or not a regular file.
    fn remove(&self, rel: &str, hidden: bool) -> Result<bool> {
        let (dirs, name) = match rel.rsplit_once('/') {
            Some((d, n)) => (Some(d), n),
            None => (None, rel),
        };
        if !hidden {
            components(rel)?;
        }
        let dir = match dirs {
            Some(d) => match self.parent_of(&format!("{d}/x"), false)? {
                Some((fd, _)) => fd,
                None => return Ok(false),
            },
            None => self.root()?,
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
            _ => return Ok(false),
        }
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(e) if e == rustix::io::Errno::NOENT => Ok(false),
            Err(e) => Err(io(e))
                .with_context(|| format!("cannot evict {}", self.path.join(rel).display())),
        }
    }

    /// Prunes and reports it in the log (`what` names the cache); a failure is a warning.
    pub fn prune_reported(&self, what: &str, runner: &Runner) {
        match self.prune() {
            Ok(r) => {
                for (p, k) in &r.refused {
                    runner.warning(&format!(
                        "the {what} cache holds {} which is {k}: it is never followed or used; remove it",
                        self.path.join(p).display()
                    ));
                }
                let evicted: u64 = r.evicted.iter().map(|(_, b)| b).sum();
                runner.info(&format!(
                    "The {what} cache {} holds {} file(s), {} of its {} cap{}",
                    self.path.display(),
                    r.kept.0,
                    human_bytes(r.kept.1),
                    human_bytes(self.max),
                    if r.evicted.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; evicted the {} least recently used ({})",
                            r.evicted.len(),
                            human_bytes(evicted)
                        )
                    }
                ));
            }
            Err(e) => runner.warning(&format!(
                "the {what} cache {} could not be pruned: {e:#}",
                self.path.display()
            )),
        }
    }
}

/// `O_NOFOLLOW` for [`std::fs::OpenOptions`].
trait NoFollow {
    fn custom_flags_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for std::fs::OpenOptions {
    fn custom_flags_nofollow(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(OFlags::NOFOLLOW.bits() as i32)
    }
}

/// `1.5 GiB`, `12 MiB`, `300 B`: the crate's one size formatter.
pub(crate) use crate::s3::progress::human_bytes;

#[cfg(test)]
mod tests;
