//! Relocating an extracted Spack binary package into a new prefix, the way Spack 1.0 does it
//! (`binary_distribution.relocate_package`, `relocate.py`, `relocate_text.py`), without Spack.
//!
//! The tarball's `.spack/binary_distribution` ([`BuildInfo`]) names the build's store root
//! (`buildpath`, padded for binary relocation), every dependency's old prefix
//! (`hash_to_prefix`), and which files to rewrite. The prefix map ([`PrefixMap`]) is ordered:
//! the sbang path, then each spec's own old prefix to its new one, then the old store root to
//! the new one as a fallback. Then, in Spack's order:
//! 1. ELF RPATH/RUNPATH entries and the interpreter that start with an old prefix ([`crate::elf`],
//!    in place);
//! 2. absolute symlinks under an old prefix (`relocate_links`);
//! 3. text files (`relocate_textfiles`): every old prefix that is not the tail of a longer path;
//! 4. prefixes embedded in binaries (`relocate_binaries`) as NUL-terminated C strings, padded
//!    with leading `/` or shortened in place (Spack's `BinaryFilePrefixReplacer`); a new prefix
//!    longer than the old one is refused.
//!
//! Paths listed in the build info come from the archive, so each must be relative, free of
//! `..`, reached without passing through a symlink, and be the kind of file it claims to be.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;

use crate::paths::no_follow_path;

/// The relocation metadata Spack writes to `<prefix>/.spack/binary_distribution`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct BuildInfo {
    /// The build's install-tree root (padded when `padded_length` was set).
    pub buildpath: String,
    /// Tarballs made with the removed `--rel` flag (Spack < 0.20).
    #[serde(default)]
    pub relative_rpaths: bool,
    /// Where the build's `sbang` lived.
    #[serde(default)]
    pub sbang_install_path: Option<String>,
    /// The spec's prefix below `buildpath`.
    #[serde(default)]
    pub relative_prefix: Option<String>,
    /// DAG hash → old prefix, for the spec and its link/run dependencies (Spack ≥ 0.20).
    #[serde(default)]
    pub hash_to_prefix: Option<BTreeMap<String, String>>,
    /// Old prefix → DAG hash (Spack ≤ 0.19).
    #[serde(default)]
    pub prefix_to_hash: Option<BTreeMap<String, String>>,
    /// Text files holding a prefix.
    #[serde(default)]
    pub relocate_textfiles: Vec<String>,
    /// Binaries (ELF) holding a prefix.
    #[serde(default)]
    pub relocate_binaries: Vec<String>,
    /// Symlinks with an absolute target in a prefix.
    #[serde(default)]
    pub relocate_links: Vec<String>,
    /// Whether hardlinks appear once in the lists above.
    #[serde(default)]
    pub hardlinks_deduped: bool,
    /// The Spack checkout that built it (informational).
    #[serde(default)]
    pub spackprefix: Option<String>,
}

/// Where the build info lives inside a prefix.
pub const BUILDINFO: &str = ".spack/binary_distribution";

impl BuildInfo {
    /// Parses the YAML text.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(bytes).context("the build info is not UTF-8")?;
        let info: BuildInfo =
            yaml_serde::from_str(text).context("cannot parse .spack/binary_distribution")?;
        if !info.buildpath.starts_with('/') {
            bail!(
                "the build info's buildpath {:?} is not an absolute path",
                info.buildpath
            );
        }
        Ok(info)
    }

    /// Reads `<prefix>/.spack/binary_distribution` (not through a symlink).
    pub fn read(prefix: &Path) -> Result<Self> {
        let p = no_follow_path(prefix, Path::new(BUILDINFO))?;
        let m = fs::symlink_metadata(&p).with_context(|| {
            format!(
                "{} is missing: not a Spack binary package, cannot relocate it",
                p.display()
            )
        })?;
        if !m.file_type().is_file() {
            bail!("{} is not a regular file", p.display());
        }
        Self::parse(&fs::read(&p)?).with_context(|| p.display().to_string())
    }

    /// The old prefix of each DAG hash.
    pub fn old_prefixes(&self) -> Result<BTreeMap<String, String>> {
        if let Some(m) = &self.hash_to_prefix {
            return Ok(m.clone());
        }
        if let Some(m) = &self.prefix_to_hash {
            return Ok(m.iter().map(|(p, h)| (h.clone(), p.clone())).collect());
        }
        bail!(
            "the package was made by an old `spack buildcache create` without hash_to_prefix; it cannot be relocated"
        )
    }
}

/// An ordered old → new prefix map (identity pairs dropped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixMap(Vec<(Vec<u8>, Vec<u8>)>);

impl PrefixMap {
    /// Builds the map for a spec, in Spack's order: sbang, each known spec prefix, the store root.
    /// `new_prefix_of` gives the new prefix of a DAG hash (the spec and its installed
    /// dependencies); `new_root` is the new install root; `new_sbang` where sbang would live.
    pub fn for_spec(
        info: &BuildInfo,
        new_prefix_of: &BTreeMap<String, PathBuf>,
        new_root: &Path,
        new_sbang: &Path,
    ) -> Result<Self> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(s) = &info.sbang_install_path {
            pairs.push((s.clone(), new_sbang.display().to_string()));
        }
        for (hash, old) in info.old_prefixes()? {
            if let Some(new) = new_prefix_of.get(&hash) {
                pairs.push((old, new.display().to_string()));
            }
        }
        pairs.push((info.buildpath.clone(), new_root.display().to_string()));
        if let Some((old, _)) = pairs.iter().find(|(o, _)| !o.starts_with('/')) {
            bail!("the build info names the prefix {old:?}, which is not an absolute path");
        }
        Ok(PrefixMap::new(
            pairs
                .into_iter()
                .map(|(o, n)| (o.into_bytes(), n.into_bytes()))
                .collect(),
        ))
    }

    /// A map from ordered `(old, new)` pairs; identity pairs and repeated old prefixes are
    /// dropped (the first wins).
    pub fn new(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        let mut out = PrefixMap::default();
        for (old, new) in pairs {
            if old != new && !old.is_empty() && !out.0.iter().any(|(o, _)| *o == old) {
                out.0.push((old, new));
            }
        }
        out
    }

    /// The pairs in order.
    pub fn pairs(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.0
    }

    /// Whether nothing moves.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn new_of(&self, old: &[u8]) -> &[u8] {
        &self
            .0
            .iter()
            .find(|(o, _)| o == old)
            .expect("matched prefix is in the map")
            .1
    }

    fn alternation(&self) -> String {
        self.0
            .iter()
            .map(|(o, _)| regex::escape(&String::from_utf8_lossy(o)))
            .collect::<Vec<_>>()
            .join("|")
    }

    /// The new path for `old` when it starts with an old prefix (first match in order).
    pub fn map_path(&self, old: &[u8]) -> Option<Vec<u8>> {
        self.0
            .iter()
            .find(|(o, _)| old.starts_with(o))
            .map(|(o, n)| [n.as_slice(), &old[o.len()..]].concat())
    }

    /// Spack's text-file replacement: every old prefix not preceded by a path (the lookbehind
    /// `(?<![\w\-_/])` on a run of `[\w\-_]`), keeping what follows. Returns `None` when nothing
    /// changed.
    pub fn replace_text(&self, data: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.is_empty() {
            return Ok(None);
        }
        let re = RegexBuilder::new(&format!(
            r"(?-u)([\w\-]*?)({})([\w\-/]*)",
            self.alternation()
        ))
        .unicode(false)
        .size_limit(64 << 20)
        .build()?;
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'/';
        let mut out = Vec::with_capacity(data.len());
        let mut copied = 0;
        let mut pos = 0;
        let mut changed = false;
        while pos <= data.len() {
            let Some(c) = re.captures_at(data, pos) else {
                break;
            };
            let m = c.get(0).expect("group 0");
            if m.start() > 0 && word(data[m.start() - 1]) {
                pos = m.start() + 1;
                continue;
            }
            let g2 = c.get(2).expect("prefix group");
            out.extend_from_slice(&data[copied..g2.start()]);
            out.extend_from_slice(self.new_of(g2.as_bytes()));
            out.extend_from_slice(&data[g2.end()..m.end()]);
            copied = m.end();
            changed = true;
            pos = if m.end() > m.start() {
                m.end()
            } else {
                m.end() + 1
            };
        }
        if !changed {
            return Ok(None);
        }
        out.extend_from_slice(&data[copied..]);
        Ok(Some(out))
    }

    /// Spack's binary replacement (`BinaryFilePrefixReplacer`, suffix safety size 7): each old
    /// prefix is overwritten in place; the string keeps its length by leading `/` padding when
    /// that is safe for C-string suffix aliasing, or is shortened with a new NUL. Refuses a
    /// longer new prefix. `what` names the file in errors.
    pub fn replace_binary(&self, data: &[u8], what: &str) -> Result<Option<Vec<u8>>> {
        const SAFETY: usize = 7;
        if self.is_empty() {
            return Ok(None);
        }
        let re: Regex = RegexBuilder::new(&format!(
            r"(?-u)({})([^\x00]{{0,{SAFETY}}}\x00)?",
            self.alternation()
        ))
        .unicode(false)
        .size_limit(64 << 20)
        .build()?;
        let tail = |x: &[u8], k: usize| x[x.len() - k.min(x.len())..].to_vec();
        let mut out = data.to_vec();
        let mut changed = false;
        for c in re.captures_iter(data) {
            let g1 = c.get(1).expect("prefix group");
            let old = g1.as_bytes();
            let new = self.new_of(old);
            let m = c.get(0).expect("group 0");
            let null_terminated = m.end() > g1.end();
            let suffix_strlen = (m.end() - g1.end()).saturating_sub(1);
            let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            if new.len() > old.len() {
                bail!(
                    "{what}: cannot replace {:?} with {:?} because the new prefix is longer; build with more padding (config:install_tree:padded_length) or install to a shorter prefix",
                    show(old),
                    show(new)
                );
            }
            let shorter = old.len() - new.len();
            let replacement = if !null_terminated
                || suffix_strlen >= SAFETY
                || tail(old, SAFETY - suffix_strlen) == tail(new, SAFETY - suffix_strlen)
            {
                let mut r = vec![b'/'; shorter];
                r.extend_from_slice(new);
                r
            } else if shorter > SAFETY {
                let mut r = new.to_vec();
                r.extend_from_slice(c.get(2).expect("terminated").as_bytes());
                r
            } else {
                bail!(
                    "{what}: cannot replace {:?} with {:?} in the C string {:?}; build with more padding (config:install_tree:padded_length) or install to a shorter prefix",
                    show(old),
                    show(new),
                    show(&m.as_bytes()[..m.len() - 1])
                );
            };
            out[m.start()..m.start() + replacement.len()].copy_from_slice(&replacement);
            changed = true;
        }
        Ok(changed.then_some(out))
    }
}

/// Writes `bytes` over the regular file `path` (same inode, mode kept), making it writable
/// for the duration when it is read-only.
pub(crate) fn rewrite_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mode = fs::symlink_metadata(path)?.permissions().mode();
    if mode & 0o200 == 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o200))?;
    }
    let r = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes));
    if mode & 0o200 == 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    r.with_context(|| format!("cannot rewrite {}", path.display()))
}

/// What [`relocate_package`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relocated {
    /// ELF files whose RPATH/RUNPATH/interpreter changed.
    pub elf: usize,
    /// Symlinks re-pointed.
    pub links: usize,
    /// Text files changed.
    pub text: usize,
    /// Binaries with embedded prefixes changed.
    pub binary: usize,
}

fn listed(
    prefix: &Path,
    rel: &str,
    what: &str,
    want: fn(&fs::FileType) -> bool,
) -> Result<PathBuf> {
    let p = no_follow_path(prefix, Path::new(rel))
        .with_context(|| format!("the build info lists {what} {rel:?}"))?;
    let m = fs::symlink_metadata(&p).with_context(|| {
        format!("the build info lists {what} {rel:?}, which is not in the package")
    })?;
    if !want(&m.file_type()) {
        bail!(
            "the build info lists {rel:?} as a {what}, but it is not one; refusing to relocate through it"
        );
    }
    Ok(p)
}

/// Relocates the package extracted at `prefix` with `map` (see the module docs).
pub fn relocate_package(prefix: &Path, info: &BuildInfo, map: &PrefixMap) -> Result<Relocated> {
    let mut done = Relocated::default();
    if map.is_empty() {
        return Ok(done);
    }
    if info.relative_rpaths {
        bail!(
            "the package was made with relative RPATHs (`spack buildcache create --rel`, removed in Spack 0.20); it cannot be relocated reliably"
        );
    }
    let is_file = |t: &fs::FileType| t.is_file();
    // Hardlinked copies appear once: relocate each inode once.
    let mut inodes = HashSet::new();
    let mut binaries = Vec::new();
    for rel in &info.relocate_binaries {
        let p = listed(prefix, rel, "binary", is_file)?;
        let m = fs::symlink_metadata(&p)?;
        if inodes.insert((m.dev(), m.ino())) {
            binaries.push(p);
        }
    }
    // Each binary on its own: its ELF strings in place, then the C strings that name a prefix.
    // Files are independent, so they are done in parallel.
    let per_binary: Vec<(bool, bool)> = binaries
        .par_iter()
        .map(|p| -> Result<(bool, bool)> {
            let elf = crate::elf::substitute_prefixes(p, map.pairs())?;
            let data = fs::read(p)?;
            let bin = match map.replace_binary(&data, &p.display().to_string())? {
                Some(new) => {
                    rewrite_file(p, &new)?;
                    true
                }
                None => false,
            };
            Ok((elf, bin))
        })
        .collect::<Result<_>>()?;
    done.elf = per_binary.iter().filter(|(e, _)| *e).count();
    done.binary = per_binary.iter().filter(|(_, b)| *b).count();
    for rel in &info.relocate_links {
        let p = listed(prefix, rel, "symlink", |t| t.is_symlink())?;
        let target = fs::read_link(&p)?;
        if !target.is_absolute() {
            continue;
        }
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str());
        if let Some(new) = map.map_path(bytes) {
            let new = PathBuf::from(std::ffi::OsStr::new(
                std::str::from_utf8(&new).context("symlink target is not UTF-8")?,
            ));
            fs::remove_file(&p)?;
            std::os::unix::fs::symlink(&new, &p)
                .with_context(|| format!("cannot re-point {}", p.display()))?;
            done.links += 1;
        }
    }
    let mut text_inodes = HashSet::new();
    let mut texts = Vec::new();
    for rel in &info.relocate_textfiles {
        let p = listed(prefix, rel, "text file", is_file)?;
        let m = fs::symlink_metadata(&p)?;
        if text_inodes.insert((m.dev(), m.ino())) {
            texts.push(p);
        }
    }
    let changed: Vec<bool> = texts
        .par_iter()
        .map(|p| -> Result<bool> {
            let data = fs::read(p)?;
            Ok(match map.replace_text(&data)? {
                Some(new) => {
                    rewrite_file(p, &new)?;
                    true
                }
                None => false,
            })
        })
        .collect::<Result<_>>()?;
    done.text = changed.iter().filter(|c| **c).count();
    Ok(done)
}
