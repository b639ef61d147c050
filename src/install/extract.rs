//! Hardened extraction of tar archives (Spack buildcache tarballs and our relocatable tarball).
//!
//! Everything in an archive is attacker-controlled until proven otherwise, so this refuses,
//! naming the entry:
//! - absolute paths and `..` components;
//! - device nodes, FIFOs, sparse files and any entry type that is not a file, directory,
//!   symlink or hardlink;
//! - setuid and setgid bits;
//! - symlinks whose target leaves the extraction root (checked lexically while extracting and
//!   again after, following the links that exist in the tree, so a chain of links cannot escape);
//!   absolute symlink targets only under prefixes the caller will relocate;
//! - hardlinks to anything but a regular file extracted earlier from the same archive;
//! - an entry that would overwrite an existing path (duplicates included), or be written
//!   through a symlink or a file (every parent component is checked with `lstat`; files are
//!   created with `O_EXCL`, which never follows a symlink);
//! - archives over a size or entry-count cap (decompression bombs): the decompressed stream is
//!   counted, not the headers' claims.
//!
//! On any error the caller removes the extraction root (see [`extract_fresh`]).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use tar::EntryType;

pub(crate) use crate::paths::no_follow_path;
use crate::paths::{components, join, kind};

/// Caps against decompression bombs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most decompressed bytes read from the archive (headers and data).
    pub max_bytes: u64,
    /// Most entries.
    pub max_entries: u64,
}

impl Default for Limits {
    /// 32 GiB and one million entries: far above a GCC or Slurm install tree.
    fn default() -> Self {
        Limits {
            max_bytes: 32 << 30,
            max_entries: 1_000_000,
        }
    }
}

/// How to extract.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Caps.
    pub limits: Limits,
    /// Strip this archive-path prefix from every entry (Spack's `_tar_strip_component`):
    /// entries must lie under it, except directories that are its ancestors, which are skipped.
    /// Hardlink targets are stripped too.
    pub strip: Option<String>,
    /// Absolute symlink targets are accepted only under these prefixes (the build prefixes that
    /// relocation rewrites); empty refuses every absolute symlink.
    pub absolute_link_prefixes: Vec<String>,
}

/// What was extracted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Entries written (files, directories, links).
    pub entries: u64,
    /// Regular-file bytes written.
    pub bytes: u64,
    /// Symlinks written (relative to the root).
    pub symlinks: Vec<PathBuf>,
}

/// A reader that fails once more than `left` bytes have been read.
struct Capped<R> {
    inner: R,
    left: u64,
    cap: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::other(format!(
                "the archive decompresses to more than {} bytes, the limit; it is damaged or a decompression bomb",
                self.cap
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn show(comps: &[OsString]) -> String {
    comps
        .iter()
        .map(|c| c.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Makes sure every component of `comps` under `root` is a real directory (creating missing
/// ones), never passing through a symlink or a file.
pub(crate) fn ensure_dirs(root: &Path, comps: &[OsString]) -> Result<()> {
    let mut p = root.to_path_buf();
    for c in comps {
        p.push(c);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(m) => bail!(
                "refusing to write through {} (it is a {}, not a directory)",
                p.display(),
                kind(&m)
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&p).with_context(|| format!("cannot create {}", p.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", p.display())),
        }
    }
    Ok(())
}

/// Lexically resolves symlink `target` from the directory `dir` (components under the root),
/// following symlinks that already exist under `root`; `Err` when it leaves `root`.
/// `root_abs` lets an absolute target that lies inside `root` count as confined.
fn resolve_confined(
    root: &Path,
    dir: &[OsString],
    target: &Path,
    depth: u32,
) -> std::result::Result<Vec<OsString>, String> {
    if depth > 40 {
        return Err("too many levels of symbolic links".into());
    }
    let mut stack: Vec<OsString> = if target.is_absolute() {
        let inside = target.strip_prefix(root).map_err(|_| {
            format!(
                "absolute target {} is outside {}",
                target.display(),
                root.display()
            )
        })?;
        return resolve_confined(root, &[], inside, depth);
    } else {
        dir.to_vec()
    };
    for comp in target.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                if stack.pop().is_none() {
                    return Err(format!("{} leaves {}", target.display(), root.display()));
                }
            }
            Component::Normal(c) => {
                stack.push(c.to_owned());
                let p = join(root, &stack);
                if let Ok(m) = fs::symlink_metadata(&p)
                    && m.file_type().is_symlink()
                {
                    let t = fs::read_link(&p).map_err(|e| e.to_string())?;
                    stack.pop();
                    stack = resolve_confined(root, &stack, &t, depth + 1)?;
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("{} is absolute", target.display()));
            }
        }
    }
    Ok(stack)
}

/// Checks that every symlink in `links` (paths relative to `root`) resolves inside `root`,
/// following the links in the tree. Absolute targets count when they lie inside `root`.
pub(crate) fn check_links_confined(root: &Path, links: &[PathBuf]) -> Result<()> {
    for link in links {
        let comps = components(link.as_os_str().as_bytes(), "symlink")?;
        let Some((_, dir)) = comps.split_last() else {
            continue;
        };
        let full = join(root, &comps);
        let target = fs::read_link(&full)
            .with_context(|| format!("cannot read symlink {}", full.display()))?;
        if let Err(why) = resolve_confined(root, dir, &target, 0) {
            bail!(
                "symlink {} -> {} escapes {}: {why}; refusing an archive that points outside its install prefix",
                link.display(),
                target.display(),
                root.display()
            );
        }
    }
    Ok(())
}

fn strip<'a>(comps: &'a [OsString], prefix: &[OsString]) -> Option<&'a [OsString]> {
    comps.strip_prefix(prefix)
}

/// Extracts the (uncompressed) tar stream `reader` into the existing, empty directory `root`.
///
/// Longer than most functions on purpose: it is the one loop over the archive's entries, with
/// every refusal in the order a reviewer checks them (count, name, mode, type), so no entry
/// can reach the disk by a path that skips a check. Links have their own helpers.
pub fn extract(reader: impl Read, root: &Path, opts: &Options) -> Result<Extracted> {
    let meta = fs::symlink_metadata(root)
        .with_context(|| format!("extraction root {}", root.display()))?;
    if !meta.file_type().is_dir() {
        bail!("extraction root {} is not a directory", root.display());
    }
    let strip_prefix = match &opts.strip {
        Some(s) => components(s.as_bytes(), "strip prefix")?,
        None => Vec::new(),
    };
    let capped = Capped {
        inner: reader,
        left: opts.limits.max_bytes,
        cap: opts.limits.max_bytes,
    };
    let mut archive = tar::Archive::new(capped);
    let mut out = Extracted::default();
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    let mut seen: u64 = 0;
    for entry in archive
        .entries()
        .context("cannot read the archive (not a tar stream?)")?
    {
        let mut entry = entry.context("cannot read the next archive entry")?;
        seen += 1;
        if seen > opts.limits.max_entries {
            bail!(
                "the archive has more than {} entries, the limit; it is damaged or an archive bomb",
                opts.limits.max_entries
            );
        }
        let raw_name = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        let etype = entry.header().entry_type();
        let all = components(&raw_name, "archive entry")?;
        let rel: Vec<OsString> = match strip(&all, &strip_prefix) {
            Some(r) => r.to_vec(),
            None if etype.is_dir() && strip_prefix.starts_with(&all) => continue,
            None => bail!(
                "archive entry {name:?} lies outside the package prefix {:?}; refusing the archive",
                opts.strip.as_deref().unwrap_or("")
            ),
        };
        let mode = entry
            .header()
            .mode()
            .with_context(|| format!("archive entry {name:?}: bad mode"))?;
        if mode & 0o6000 != 0 {
            bail!(
                "archive entry {name:?} has the setuid or setgid bit (mode {mode:o}); refusing to install privileged files"
            );
        }
        if rel.is_empty() {
            if etype.is_dir() {
                continue;
            }
            bail!("archive entry {name:?} would replace the install prefix itself");
        }
        let (leaf, parents) = rel.split_last().expect("non-empty");
        let target = join(root, &rel);
        match etype {
            EntryType::Directory => {
                ensure_dirs(root, &rel).with_context(|| format!("archive entry {name:?}"))?;
                dir_modes.push((target, (mode & 0o777) | 0o700));
            }
            t if crate::glibc_floor::unpacked_as_file(t) => {
                ensure_dirs(root, parents).with_context(|| format!("archive entry {name:?}"))?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .with_context(|| {
                        format!(
                            "archive entry {name:?}: cannot create {} (a duplicate entry or an existing path; refusing to overwrite)",
                            target.display()
                        )
                    })?;
                let n = io::copy(&mut entry, &mut f)
                    .with_context(|| format!("archive entry {name:?}: cannot extract"))?;
                f.set_permissions(fs::Permissions::from_mode(mode & 0o777))?;
                out.bytes += n;
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .with_context(|| format!("archive entry {name:?}: symlink without a target"))?
                    .into_owned();
                make_symlink(&name, &link, root, parents, &target, opts)?;
                out.symlinks.push(PathBuf::from(show(&rel)));
            }
            EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .with_context(|| format!("archive entry {name:?}: hardlink without a target"))?
                    .into_owned();
                make_hardlink(&name, &link, root, parents, &target, &strip_prefix)?;
            }
            EntryType::Char | EntryType::Block => {
                bail!("archive entry {name:?} is a device node; refusing to create devices")
            }
            EntryType::Fifo => {
                bail!("archive entry {name:?} is a FIFO; refusing to create special files")
            }
            EntryType::GNUSparse => {
                bail!("archive entry {name:?} is a sparse file; refusing sparse entries")
            }
            other => bail!(
                "archive entry {name:?} has unsupported type {:?}; only files, directories, symlinks and hardlinks are allowed",
                other.as_byte() as char
            ),
        }
        let _ = leaf;
        out.entries += 1;
    }
    // Every link again, now that the whole tree exists: a chain of links must not escape either.
    let relative: Vec<PathBuf> = out
        .symlinks
        .iter()
        .filter(|l| {
            fs::read_link(root.join(l))
                .map(|t| !t.is_absolute())
                .unwrap_or(true)
        })
        .cloned()
        .collect();
    check_links_confined(root, &relative)?;
    for (dir, mode) in dir_modes.into_iter().rev() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode))?;
    }
    Ok(out)
}

/// Creates the symlink `target` (archive entry `name`) to `link`: a relative link must resolve
/// inside `root`, an absolute one must lie under an allowed build prefix.
fn make_symlink(
    name: &str,
    link: &[u8],
    root: &Path,
    parents: &[OsString],
    target: &Path,
    opts: &Options,
) -> Result<()> {
    let link_path = Path::new(OsStr::from_bytes(link)).to_path_buf();
    if link.is_empty() || link.contains(&0) {
        bail!("archive entry {name:?}: symlink with an empty target");
    }
    if link_path.is_absolute() {
        let text = String::from_utf8_lossy(link);
        let allowed = opts.absolute_link_prefixes.iter().any(|p| {
            let p = p.trim_end_matches('/');
            text == p || text.starts_with(&format!("{p}/"))
        });
        if !allowed || link_path.components().any(|c| c == Component::ParentDir) {
            bail!(
                "archive entry {name:?} is a symlink to the absolute path {text:?}, outside the package's build prefix; refusing a link that escapes the install prefix"
            );
        }
    } else if let Err(why) = resolve_confined(root, parents, &link_path, 0) {
        bail!(
            "archive entry {name:?} is a symlink to {:?}, which escapes the install prefix ({why})",
            String::from_utf8_lossy(link)
        );
    }
    ensure_dirs(root, parents).with_context(|| format!("archive entry {name:?}"))?;
    std::os::unix::fs::symlink(&link_path, target).with_context(|| {
            format!(
                "archive entry {name:?}: cannot create symlink {} (a duplicate entry or an existing path)",
                target.display()
            )
        })?;
    Ok(())
}

/// Creates the hardlink `target` (archive entry `name`) to `link`, which must name a regular
/// file extracted earlier from this archive, inside the package prefix.
fn make_hardlink(
    name: &str,
    link: &[u8],
    root: &Path,
    parents: &[OsString],
    target: &Path,
    strip_prefix: &[OsString],
) -> Result<()> {
    let lcomps =
        components(link, "hardlink target").with_context(|| format!("archive entry {name:?}"))?;
    let Some(lrel) = strip(&lcomps, strip_prefix).filter(|r| !r.is_empty()) else {
        bail!(
            "archive entry {name:?} is a hardlink to {:?}, outside the package prefix; refusing a link that escapes the install prefix",
            String::from_utf8_lossy(link)
        );
    };
    let src = no_follow_path(root, &PathBuf::from(show(lrel)))
        .with_context(|| format!("archive entry {name:?}: hardlink target"))?;
    match fs::symlink_metadata(&src) {
        Ok(m) if m.file_type().is_file() => {}
        _ => bail!(
            "archive entry {name:?} is a hardlink to {:?}, which is not a regular file extracted earlier from this archive",
            String::from_utf8_lossy(link)
        ),
    }
    ensure_dirs(root, parents).with_context(|| format!("archive entry {name:?}"))?;
    fs::hard_link(&src, target).with_context(|| {
        format!(
            "archive entry {name:?}: cannot create hardlink {}",
            target.display()
        )
    })?;
    Ok(())
}

/// Creates `root` (which must not exist yet; its parent is created when missing), extracts into
/// it and removes it again when anything fails, so a refused archive leaves nothing behind.
pub fn extract_fresh(reader: impl Read, root: &Path, opts: &Options) -> Result<Extracted> {
    if fs::symlink_metadata(root).is_ok() {
        bail!(
            "{} already exists; refusing to install over it (remove it or choose another prefix)",
            root.display()
        );
    }
    if let Some(parent) = root.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    fs::create_dir(root).with_context(|| format!("cannot create {}", root.display()))?;
    match extract(reader, root, opts) {
        Ok(x) => Ok(x),
        Err(e) => {
            remove_tree(root);
            Err(e)
        }
    }
}

/// Removes a tree we created, making read-only directories writable first.
pub(crate) fn remove_tree(root: &Path) {
    fn make_writable(p: &Path) {
        if let Ok(m) = fs::symlink_metadata(p)
            && m.file_type().is_dir()
        {
            let _ = fs::set_permissions(
                p,
                fs::Permissions::from_mode(m.permissions().mode() | 0o700),
            );
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    make_writable(&e.path());
                }
            }
        }
    }
    make_writable(root);
    let _ = fs::remove_dir_all(root);
}

/// What [`inspect_spack_tarball`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpackTarball {
    /// The archive-path prefix Spack strips (`_ensure_common_prefix`).
    pub prefix: String,
    /// The bytes of that prefix's `.spack/binary_distribution`.
    pub buildinfo: Vec<u8>,
}

/// Reads a Spack buildcache tarball's listing without extracting it: the package prefix Spack
/// strips (`_ensure_common_prefix`: two levels above the shortest `.spack/binary_distribution`
/// entry) and that build info. Every entry must lie under the prefix or be a directory above it.
pub fn inspect_spack_tarball(reader: impl Read, limits: Limits) -> Result<SpackTarball> {
    const MAX_BUILDINFO: u64 = 16 << 20;
    let capped = Capped {
        inner: reader,
        left: limits.max_bytes,
        cap: limits.max_bytes,
    };
    let mut archive = tar::Archive::new(capped);
    let mut names: Vec<(Vec<u8>, bool, bool)> = Vec::new();
    let mut infos: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for entry in archive
        .entries()
        .context("cannot read the archive (not a tar stream?)")?
    {
        let mut entry = entry.context("cannot read the next archive entry")?;
        if names.len() as u64 >= limits.max_entries {
            bail!(
                "the archive has more than {} entries, the limit; it is damaged or an archive bomb",
                limits.max_entries
            );
        }
        let t = entry.header().entry_type();
        let name = entry.path_bytes().into_owned();
        let file = crate::glibc_floor::unpacked_as_file(t);
        if file && name.ends_with(b".spack/binary_distribution") {
            if entry.size() > MAX_BUILDINFO {
                bail!("{:?} is larger than 16 MiB", String::from_utf8_lossy(&name));
            }
            let mut b = Vec::new();
            entry.read_to_end(&mut b)?;
            infos.push((name.clone(), b));
        }
        names.push((name, file, t.is_dir()));
    }
    let (bd, buildinfo) = infos
        .into_iter()
        .min_by_key(|(n, _)| n.len())
        .context("the tarball is not a Spack package: it has no .spack/binary_distribution file")?;
    let comps = components(&bd, "archive entry")?;
    if comps.len() < 3 {
        bail!("invalid Spack tarball: .spack/binary_distribution is not inside a package prefix");
    }
    let pkg = comps[..comps.len() - 2].to_vec();
    let pkg_s = show(&pkg);
    let mut has_prefix = false;
    for (n, _, is_dir) in &names {
        let c = components(n, "archive entry")?;
        if c == pkg && *is_dir {
            has_prefix = true;
        }
        if !(c.starts_with(&pkg) || *is_dir && pkg.starts_with(&c)) {
            bail!(
                "the tarball holds {:?} outside its package prefix {pkg_s:?}; refusing it",
                String::from_utf8_lossy(n)
            );
        }
    }
    if !has_prefix {
        bail!("the tarball has no directory entry for its package prefix {pkg_s:?}");
    }
    Ok(SpackTarball {
        prefix: pkg_s,
        buildinfo,
    })
}
