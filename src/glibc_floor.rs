//! The glibc floor of an install tree, a view or an archive: the highest `GLIBC_x.y` symbol
//! version any of its ELF files needs (and the highest `GLIBCXX_`/`CXXABI_` for libstdc++), read
//! from the version-needed section (`SHT_GNU_VERNEED`, `.gnu.version_r`) with goblin.
//!
//! The dynamic loader refuses to start a program whose version-needed entries name a version its
//! C library does not define (`version 'GLIBC_2.34' not found`), so the highest such version is
//! the oldest glibc the artifact can run on. Versions compare numerically, component by
//! component (`2.9 < 2.28 < 2.34`, `2.2.5 < 2.3`). For each maximum the first file that needs it
//! is kept (walk order for a tree, depth first with names sorted; sorted paths for an archive),
//! so an error can say which file raised the floor.
//!
//! What counts:
//! - every non-weak version-needed entry named `GLIBC_<n>(.<n>)*`, `GLIBCXX_<n>(.<n>)*` or
//!   `CXXABI_<n>(.<n>)*`, whichever library it is needed from (libc, libm, libpthread and the
//!   loader share glibc's version names);
//! - `GLIBC_ABI_DT_RELR`, which linkers emit for packed relative relocations and which glibc
//!   defines since 2.36: it counts as `GLIBC_2.36`;
//! - other names (`GLIBC_PRIVATE`, `CXXABI_TM_1`, …) do not move the floor.
//!
//! Weak entries (`VER_FLG_WEAK`) are skipped: the loader only warns when they are missing.
//!
//! Nothing is skipped silently: a file that starts with the ELF magic but cannot be parsed, whose
//! version-needed section is cut short, or whose entry names a string outside the string table
//! or carries a `vna_hash` that is not the ELF hash of its name, is an error naming the file.

use std::cmp::Ordering;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use goblin::elf::Elf;
use goblin::elf::section_header::SHT_GNU_VERNEED;

use crate::elf::{ElfError, is_elf};

/// `VER_FLG_WEAK`: a weak version reference.
const VER_FLG_WEAK: u16 = 0x2;

/// A dotted numeric version (`2.34`, `3.4.32`), compared component by component.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(pub Vec<u32>);

impl Version {
    /// Parses `2.34`, `2.2.5`; `None` for anything that is not dot-separated decimal numbers.
    pub fn parse(s: &str) -> Option<Version> {
        let parts: Option<Vec<u32>> = s
            .split('.')
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    None
                } else {
                    p.parse().ok()
                }
            })
            .collect();
        parts.map(Version)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        // Missing components count as 0, so 2.34 == 2.34.0.
        let n = self.0.len().max(other.0.len());
        for i in 0..n {
            let a = self.0.get(i).copied().unwrap_or(0);
            let b = other.0.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => continue,
                o => return o,
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

/// Whose symbol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// The GNU C library (`GLIBC_`).
    Glibc,
    /// libstdc++ (`GLIBCXX_`).
    Glibcxx,
    /// The C++ ABI of libstdc++ (`CXXABI_`).
    Cxxabi,
}

impl Family {
    /// The prefix of the version names (`GLIBC`).
    pub fn prefix(self) -> &'static str {
        match self {
            Family::Glibc => "GLIBC",
            Family::Glibcxx => "GLIBCXX",
            Family::Cxxabi => "CXXABI",
        }
    }
}

/// Classifies a version-needed name: `GLIBC_2.34` is `(Glibc, 2.34)`. `None` for names that do
/// not move a floor.
pub fn classify(name: &str) -> Option<(Family, Version)> {
    if name == "GLIBC_ABI_DT_RELR" {
        return Some((Family::Glibc, Version(vec![2, 36])));
    }
    for family in [Family::Glibcxx, Family::Glibc, Family::Cxxabi] {
        if let Some(rest) = name
            .strip_prefix(family.prefix())
            .and_then(|r| r.strip_prefix('_'))
        {
            return Version::parse(rest).map(|v| (family, v));
        }
    }
    None
}

/// One maximum: the version, its full name and the first file that needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The version (`2.34`).
    pub version: Version,
    /// The version-needed name as written in the file (`GLIBC_2.34`, `GLIBC_ABI_DT_RELR`).
    pub name: String,
    /// The first file, in sorted path order, that needs it (relative to the scanned root, or
    /// the archive path).
    pub file: PathBuf,
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (needed by {})", self.name, self.file.display())
    }
}

/// The floor of a tree: the highest version of each family any ELF file needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Floor {
    /// The highest `GLIBC_` version, when any file needs one.
    pub glibc: Option<Need>,
    /// The highest `GLIBCXX_` version.
    pub glibcxx: Option<Need>,
    /// The highest `CXXABI_` version.
    pub cxxabi: Option<Need>,
    /// How many ELF files were read.
    pub elf_files: u64,
}

impl Floor {
    fn slot(&mut self, family: Family) -> &mut Option<Need> {
        match family {
            Family::Glibc => &mut self.glibc,
            Family::Glibcxx => &mut self.glibcxx,
            Family::Cxxabi => &mut self.cxxabi,
        }
    }

    /// Takes `name` needed by `file` into account. Files must be offered in sorted path order
    /// for "first file" to hold: an equal version never replaces the file already kept.
    fn offer(&mut self, file: &Path, name: &str) {
        let Some((family, version)) = classify(name) else {
            return;
        };
        let slot = self.slot(family);
        let replace = match slot {
            None => true,
            Some(have) => version > have.version,
        };
        if replace {
            *slot = Some(Need {
                version,
                name: name.to_owned(),
                file: file.to_owned(),
            });
        }
    }

    /// One line for summaries: `glibc floor 2.34 (GLIBC_2.34, bin/sinfo)`, or that no file
    /// needs a versioned glibc symbol.
    pub fn describe(&self) -> String {
        match &self.glibc {
            Some(n) => format!(
                "glibc floor {} ({}, {})",
                n.version,
                n.name,
                n.file.display()
            ),
            None => format!(
                "no versioned glibc symbols needed ({} ELF files)",
                self.elf_files
            ),
        }
    }

    /// Rewrites the file of every maximum with `f` (e.g. to drop an archive's build prefix).
    pub fn map_files(&mut self, f: impl Fn(&Path) -> PathBuf) {
        for need in [&mut self.glibc, &mut self.glibcxx, &mut self.cxxabi]
            .into_iter()
            .flatten()
        {
            need.file = f(&need.file);
        }
    }

    /// Takes the floor `other` of the part `label` (a spec) into this one; its files are shown
    /// as `<label>: <file>`. Earlier parts win ties.
    pub fn merge(&mut self, other: Floor, label: &str) {
        self.elf_files += other.elf_files;
        for need in [other.glibc, other.glibcxx, other.cxxabi]
            .into_iter()
            .flatten()
        {
            self.offer(
                &PathBuf::from(format!("{label}: {}", need.file.display())),
                &need.name,
            );
        }
    }

    /// The floor as `data/glibc-floor.txt` records it: one `key: value` line per family found,
    /// plus the number of ELF files read.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (key, need) in [
            ("glibc", &self.glibc),
            ("glibcxx", &self.glibcxx),
            ("cxxabi", &self.cxxabi),
        ] {
            if let Some(n) = need {
                s.push_str(&format!(
                    "{key}: {} {} {}\n",
                    n.version,
                    n.name,
                    n.file.display()
                ));
            }
        }
        s.push_str(&format!("elf-files: {}\n", self.elf_files));
        s
    }
}

/// The ELF hash (`elf_hash` of the System V ABI), which `vna_hash` holds for the version name.
pub fn elf_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in name {
        h = (h << 4).wrapping_add(u32::from(c));
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

fn malformed(path: &Path, reason: impl Into<String>) -> ElfError {
    ElfError::Malformed {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// The version names the ELF image `bytes` needs (non-weak version-needed entries, in file
/// order). `Ok(None)` when `bytes` is not ELF; `Ok(Some(vec![]))` for an ELF file without a
/// version-needed section (static programs, object files).
pub fn version_needs(path: &Path, bytes: &[u8]) -> Result<Option<Vec<String>>, ElfError> {
    if !is_elf(bytes) {
        return Ok(None);
    }
    let elf = Elf::parse(bytes).map_err(|e| malformed(path, e.to_string()))?;
    let Some(verneed) = &elf.verneed else {
        // The loader finds the section through DT_VERNEED; goblin through the section headers.
        // A file stripped of its section headers but still needing versions cannot be read here:
        // say so rather than report a floor that is too low.
        let needs_versions = elf.dynamic.as_ref().is_some_and(|d| {
            d.dyns
                .iter()
                .any(|x| x.d_tag == goblin::elf::dynamic::DT_VERNEED)
        });
        if needs_versions {
            return Err(malformed(
                path,
                "it has DT_VERNEED but no SHT_GNU_VERNEED section header (section headers stripped?), so the glibc versions it needs cannot be read",
            ));
        }
        return Ok(Some(Vec::new()));
    };
    // goblin's iterators stop quietly on a short read; count what they give against what the
    // headers promise so a cut-short section is an error, not a lower floor.
    let promised = elf
        .section_headers
        .iter()
        .find(|s| s.sh_type == SHT_GNU_VERNEED)
        .map_or(0, |s| s.sh_info as usize);
    let mut names = Vec::new();
    let mut files = 0usize;
    for need in verneed.iter() {
        files += 1;
        let mut entries = 0u16;
        for aux in need.iter() {
            entries += 1;
            let name = elf.dynstrtab.get_at(aux.vna_name).ok_or_else(|| {
                malformed(
                    path,
                    format!(
                        "a version-needed entry names offset {:#x}, outside the dynamic string table",
                        aux.vna_name
                    ),
                )
            })?;
            let hash = elf_hash(name.as_bytes());
            if hash != aux.vna_hash {
                return Err(malformed(
                    path,
                    format!(
                        "the version-needed entry {name:?} has vna_hash {:#x}, but the ELF hash of that name is {hash:#x}",
                        aux.vna_hash
                    ),
                ));
            }
            if aux.vna_flags & VER_FLG_WEAK == 0 {
                names.push(name.to_owned());
            }
        }
        if entries != need.vn_cnt {
            return Err(malformed(
                path,
                format!(
                    "a version-needed record promises {} entries but only {entries} can be read; the .gnu.version_r section is truncated or corrupt",
                    need.vn_cnt
                ),
            ));
        }
    }
    if files != promised {
        return Err(malformed(
            path,
            format!(
                "the .gnu.version_r section promises {promised} records but only {files} can be read; it is truncated or corrupt"
            ),
        ));
    }
    Ok(Some(names))
}

/// Why a floor could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    /// An ELF file could not be read or parsed.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// The tree could not be walked.
    #[error("cannot walk {path}: {reason}")]
    Walk {
        /// Where.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The archive could not be read.
    #[error("cannot read the archive: {0}")]
    Archive(String),
}

/// The floor of the directory tree `root`: every regular file (symlinks are not followed, so
/// each file counts once) that starts with the ELF magic. Paths in the result are relative to
/// `root`. Files are visited in sorted path order.
pub fn scan_dir(root: &Path) -> Result<Floor, FloorError> {
    let mut floor = Floor::default();
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name();
    for entry in walk {
        let entry = entry.map_err(|e| FloorError::Walk {
            path: e.path().unwrap_or(root).to_owned(),
            reason: e.to_string(),
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.path();
        let io = |source| ElfError::Io {
            path: path.to_owned(),
            source,
        };
        let mut f = fs::File::open(path).map_err(io)?;
        let mut magic = [0u8; 4];
        let n = read_up_to(&mut f, &mut magic).map_err(io)?;
        if !is_elf(&magic[..n]) {
            continue;
        }
        let bytes = fs::read(path).map_err(io)?;
        let rel = path.strip_prefix(root).unwrap_or(path);
        add_file(&mut floor, path, rel, &bytes)?;
    }
    Ok(floor)
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn add_file(floor: &mut Floor, shown: &Path, rel: &Path, bytes: &[u8]) -> Result<(), ElfError> {
    floor.add(shown, rel, bytes)
}

impl Floor {
    /// Takes the file `bytes` into account (nothing when it is not ELF): `rel` is how the
    /// floor names it, `shown` how errors do. Offer files in sorted path order.
    pub fn add(&mut self, shown: &Path, rel: &Path, bytes: &[u8]) -> Result<(), ElfError> {
        if let Some(names) = version_needs(shown, bytes)? {
            self.elf_files += 1;
            for n in &names {
                self.offer(rel, n);
            }
        }
        Ok(())
    }
}

/// Whether the installer unpacks a tar entry of type `t` as a regular file: `Regular` and
/// `Continuous` ('7', "contiguous file") alike, as `src/install/extract.rs` does and as Python's
/// `tarfile` (Spack's reader) does. The one test of "is this entry a file" for every reader of
/// an archive, so the floor scan sees every file the installer writes.
pub(crate) fn unpacked_as_file(t: tar::EntryType) -> bool {
    matches!(t, tar::EntryType::Regular | tar::EntryType::Continuous)
}

/// The largest single ELF file [`scan_tar`] reads into memory.
pub const MAX_ELF_FILE_BYTES: u64 = 4 << 30;

/// A reader that fails (rather than ending early, which would hide entries) after `left` bytes.
struct Capped<R> {
    inner: R,
    left: u64,
    cap: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(std::io::Error::other(format!(
                "more than {} decompressed bytes; the archive is damaged or an archive bomb",
                self.cap
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The floor of the (uncompressed) tar stream `reader`, read without extracting anything: every
/// regular-file entry that starts with the ELF magic, by its archive path. Entries are sorted by
/// path before the maximum is taken, so the result does not depend on archive order. More than
/// `max_bytes` of archive, or an ELF file larger than [`MAX_ELF_FILE_BYTES`], is an error.
pub fn scan_tar(reader: impl Read, max_bytes: u64) -> Result<Floor, FloorError> {
    let max_file_bytes = max_bytes.min(MAX_ELF_FILE_BYTES);
    let mut archive = tar::Archive::new(Capped {
        inner: reader,
        left: max_bytes,
        cap: max_bytes,
    });
    let mut found: Vec<(PathBuf, Vec<String>)> = Vec::new();
    let mut elf_files = 0;
    let entries = archive
        .entries()
        .map_err(|e| FloorError::Archive(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| FloorError::Archive(e.to_string()))?;
        if !unpacked_as_file(entry.header().entry_type()) {
            continue;
        }
        let path = PathBuf::from(String::from_utf8_lossy(&entry.path_bytes()).into_owned());
        let mut magic = [0u8; 4];
        let n = read_up_to(&mut entry, &mut magic).map_err(|source| ElfError::Io {
            path: path.clone(),
            source,
        })?;
        if !is_elf(&magic[..n]) {
            continue;
        }
        if entry.size() > max_file_bytes {
            return Err(FloorError::Archive(format!(
                "{} is {} bytes, more than the {max_file_bytes} allowed",
                path.display(),
                entry.size()
            )));
        }
        let mut bytes = magic[..n].to_vec();
        entry
            .read_to_end(&mut bytes)
            .map_err(|source| ElfError::Io {
                path: path.clone(),
                source,
            })?;
        if let Some(names) = version_needs(&path, &bytes)? {
            elf_files += 1;
            found.push((path, names));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let mut floor = Floor {
        elf_files,
        ..Floor::default()
    };
    for (path, names) in &found {
        for n in names {
            floor.offer(path, n);
        }
    }
    Ok(floor)
}

/// The C library this process runs on, found where the loader found it: the `libc.so*` mapped
/// into this process (`/proc/self/maps`). `None` when no glibc is mapped (a static or musl
/// build).
pub fn host_libc_path() -> std::io::Result<Option<PathBuf>> {
    let maps = fs::read_to_string("/proc/self/maps")?;
    Ok(maps.lines().find_map(|line| {
        let path = line.split_whitespace().nth(5)?;
        let name = Path::new(path).file_name()?.to_str()?;
        // `libc.so.6`, or `libc-2.28.so` as glibc before 2.34 names the file itself.
        let old_style = name
            .strip_prefix("libc-")
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()) && r.ends_with(".so"));
        (path.starts_with('/') && (name.starts_with("libc.so") || old_style))
            .then(|| PathBuf::from(path))
    }))
}

/// The highest `GLIBC_x.y` version the C library at `libc` defines (its `.gnu.version_d`).
pub fn defined_glibc_version(libc: &Path) -> Result<Version, ElfError> {
    let bytes = fs::read(libc).map_err(|source| ElfError::Io {
        path: libc.to_owned(),
        source,
    })?;
    let elf = Elf::parse(&bytes).map_err(|e| malformed(libc, e.to_string()))?;
    let mut best: Option<Version> = None;
    if let Some(verdef) = &elf.verdef {
        for def in verdef.iter() {
            for aux in def.iter() {
                if let Some(name) = elf.dynstrtab.get_at(aux.vda_name)
                    && let Some((Family::Glibc, v)) = classify(name)
                    && name != "GLIBC_ABI_DT_RELR"
                    && best.as_ref().is_none_or(|b| v > *b)
                {
                    best = Some(v);
                }
            }
        }
    }
    best.ok_or_else(|| malformed(libc, "defines no GLIBC_x.y version; it is not glibc"))
}

/// The host's glibc: where its `libc.so.6` is and the highest version it defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostGlibc {
    /// The mapped C library.
    pub path: PathBuf,
    /// Its highest `GLIBC_` version.
    pub version: Version,
}

/// The `libc.so.6` the host's dynamic loader resolves for `/bin/sh`: the loader named by
/// `/bin/sh`'s `PT_INTERP`, run as `<loader> --list /bin/sh` (what `ldd` does). This is how a
/// static (musl) build of this tool, which maps no C library itself, finds the host's glibc.
pub fn host_libc_via_loader() -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let sh = Path::new("/bin/sh");
    let interp = crate::elf::read(sh)?
        .and_then(|e| e.interpreter)
        .with_context(|| {
            format!(
                "{} has no program interpreter; cannot find the host's dynamic loader",
                sh.display()
            )
        })?
        .text();
    let out = std::process::Command::new(&interp)
        .arg("--list")
        .arg(sh)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LD_PRELOAD")
        .output()
        .with_context(|| format!("cannot run the host's dynamic loader {interp}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let (name, rest) = l.trim().split_once(" => ")?;
            let path = rest.split_whitespace().next()?;
            (name.starts_with("libc.so") && path.starts_with('/')).then(|| PathBuf::from(path))
        })
        .with_context(|| {
            format!(
                "{interp} --list /bin/sh names no libc.so; this host does not run glibc programs (musl?), and slurm-factory artifacts need glibc"
            )
        })
}

/// Finds the host's glibc: the C library mapped into this process ([`host_libc_path`]), or,
/// for a static build, the one the host's loader resolves ([`host_libc_via_loader`]); then the
/// highest version it defines ([`defined_glibc_version`]).
pub fn host_glibc() -> anyhow::Result<HostGlibc> {
    let path = match host_libc_path()? {
        Some(p) => p,
        None => host_libc_via_loader()?,
    };
    let version = defined_glibc_version(&path)?;
    Ok(HostGlibc { path, version })
}

/// Refuses `floor` on `host` when it needs a newer glibc, naming the file and the version.
/// `what` names the artifact in the message.
pub fn check_host(floor: &Floor, host: &HostGlibc, what: &str) -> anyhow::Result<()> {
    if let Some(need) = &floor.glibc
        && need.version > host.version
    {
        anyhow::bail!(
            "{what} needs glibc {} but this host has glibc {} ({}): {} needs {}; nothing was installed. Install the build for an older platform (see the catalog's platforms, e.g. el8 for glibc 2.28) or use a host with glibc {} or newer",
            need.version,
            host.version,
            host.path.display(),
            need.file.display(),
            need.name,
            need.version
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(v("2.9") < v("2.28"));
        assert!(v("2.28") < v("2.34"));
        assert!(v("2.2.5") < v("2.3"));
        assert_eq!(v("2.34"), v("2.34"));
        assert_eq!(v("2.34").cmp(&v("2.34.0")), Ordering::Equal);
        assert!(Version::parse("2.x").is_none());
        assert!(Version::parse("").is_none());
        assert!(Version::parse("2..3").is_none());
    }

    #[test]
    fn names_are_classified() {
        assert_eq!(classify("GLIBC_2.34"), Some((Family::Glibc, v("2.34"))));
        assert_eq!(
            classify("GLIBCXX_3.4.32"),
            Some((Family::Glibcxx, v("3.4.32")))
        );
        assert_eq!(
            classify("CXXABI_1.3.15"),
            Some((Family::Cxxabi, v("1.3.15")))
        );
        assert_eq!(
            classify("GLIBC_ABI_DT_RELR"),
            Some((Family::Glibc, v("2.36")))
        );
        assert_eq!(classify("GLIBC_PRIVATE"), None);
        assert_eq!(classify("CXXABI_TM_1"), None);
        assert_eq!(classify("GCC_3.0"), None);
    }

    #[test]
    fn elf_hash_matches_known_values() {
        // readelf -V prints these hashes for glibc's version names.
        assert_eq!(elf_hash(b"GLIBC_2.2.5"), 0x09691a75);
        assert_eq!(elf_hash(b"GLIBC_2.34"), 0x069691b4);
    }

    #[test]
    fn the_first_file_keeps_an_equal_maximum() {
        let mut f = Floor::default();
        f.offer(Path::new("a"), "GLIBC_2.28");
        f.offer(Path::new("b"), "GLIBC_2.34");
        f.offer(Path::new("c"), "GLIBC_2.34");
        f.offer(Path::new("d"), "GLIBC_2.9");
        let g = f.glibc.unwrap();
        assert_eq!(g.file, Path::new("b"));
        assert_eq!(g.name, "GLIBC_2.34");
    }
}
