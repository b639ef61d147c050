//! Reading and rewriting the dynamic-linking strings of ELF files: `DT_NEEDED`, `DT_RPATH`,
//! `DT_RUNPATH` and the `PT_INTERP` interpreter.
//!
//! Parsing uses goblin. Rewriting is done **in place**, the way Spack 1.0 does it
//! (`lib/spack/spack/util/elf.py`): a string is overwritten at its file offset when the new value
//! is not longer than the old one, and the bytes it no longer uses are set to NUL. Nothing moves,
//! so section and segment layout, sizes and the inode stay as they were. When a new string does
//! not fit, the file is left untouched and [`ElfError::DoesNotFit`] says which string, how long
//! it is and how long the replacement would be (Spack falls back to `patchelf` then; we refuse,
//! the fix is a longer build prefix, such as Spack's `padded_length`).
//!
//! Edits are all-or-nothing: every new value is checked before the first byte is written.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use goblin::elf::Elf;
use goblin::elf::dynamic::{DF_1_NODEFLIB, DT_FLAGS_1, DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME};
use goblin::elf::program_header::PT_INTERP;

/// The ELF magic number.
pub const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// Which string of an ELF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `DT_RPATH` (searched before `LD_LIBRARY_PATH`, inherited by dependencies).
    Rpath,
    /// `DT_RUNPATH` (searched after `LD_LIBRARY_PATH`, what current linkers write by default).
    Runpath,
    /// The `PT_INTERP` program interpreter (the dynamic loader).
    Interpreter,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Field::Rpath => "RPATH",
            Field::Runpath => "RUNPATH",
            Field::Interpreter => "interpreter (PT_INTERP)",
        })
    }
}

/// A NUL-terminated string inside an ELF file that can be rewritten in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InPlaceString {
    /// The bytes, without the terminating NUL.
    pub value: Vec<u8>,
    /// File offset of the first byte.
    pub offset: u64,
}

impl InPlaceString {
    /// The value as text (lossy for non-UTF-8 bytes).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }
    /// The longest value that fits in place (the old length; the old NUL terminator stays).
    pub fn capacity(&self) -> usize {
        self.value.len()
    }
}

/// What an ELF file needs from the dynamic loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfFile {
    /// 64-bit (`ELFCLASS64`).
    pub is_64: bool,
    /// Little-endian.
    pub little_endian: bool,
    /// `e_machine`.
    pub machine: u16,
    /// `DT_NEEDED` entries, in order.
    pub needed: Vec<String>,
    /// `DT_RPATH`, when present.
    pub rpath: Option<InPlaceString>,
    /// `DT_RUNPATH`, when present.
    pub runpath: Option<InPlaceString>,
    /// `PT_INTERP`, when present.
    pub interpreter: Option<InPlaceString>,
    /// `DT_SONAME`, when present.
    pub soname: Option<String>,
    /// `DF_1_NODEFLIB` in `DT_FLAGS_1`: the loader searches neither `ld.so.cache` nor the
    /// default directories for this object's dependencies.
    pub nodeflib: bool,
}

impl ElfFile {
    /// The string of `field`, when the file has it.
    pub fn field(&self, field: Field) -> Option<&InPlaceString> {
        match field {
            Field::Rpath => self.rpath.as_ref(),
            Field::Runpath => self.runpath.as_ref(),
            Field::Interpreter => self.interpreter.as_ref(),
        }
    }
    /// Whether the file has a dynamic section (a dynamically linked executable or library).
    pub fn is_dynamic(&self) -> bool {
        !self.needed.is_empty() || self.rpath.is_some() || self.runpath.is_some()
    }
}

/// Why an ELF file could not be read or rewritten.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file starts with the ELF magic but is not a well-formed ELF file.
    #[error(
        "{path}: malformed ELF file: {reason}; the file is damaged or not what it claims to be"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The new string is longer than the old one and cannot be written in place.
    #[error(
        "{path}: cannot rewrite the {field} in place: the new value {new:?} is {new_len} bytes but the old value {old:?} has room for {old_len}; build with a longer (padded) install prefix or install to a shorter prefix"
    )]
    DoesNotFit {
        /// The file.
        path: PathBuf,
        /// Which string.
        field: Field,
        /// The old value.
        old: String,
        /// The new value.
        new: String,
        /// Bytes available.
        old_len: usize,
        /// Bytes needed.
        new_len: usize,
    },
    /// An edit names a string the file does not have.
    #[error("{path}: has no {field} to rewrite")]
    Missing {
        /// The file.
        path: PathBuf,
        /// Which string.
        field: Field,
    },
    /// A new value contains a NUL byte.
    #[error("{path}: the new {field} contains a NUL byte")]
    Nul {
        /// The file.
        path: PathBuf,
        /// Which string.
        field: Field,
    },
}

/// Whether `bytes` start with the ELF magic number.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(ELF_MAGIC)
}

fn malformed(path: &Path, reason: impl Into<String>) -> ElfError {
    ElfError::Malformed {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Reads the NUL-terminated string at `start` that must end before `end`.
fn c_string(bytes: &[u8], start: usize, end: usize) -> Option<&[u8]> {
    let end = end.min(bytes.len());
    if start >= end {
        return None;
    }
    let len = bytes[start..end].iter().position(|&b| b == 0)?;
    Some(&bytes[start..start + len])
}

/// Parses the dynamic-linking strings of the ELF image `bytes` (`path` is used in messages).
/// Returns `None` when `bytes` is not an ELF file at all.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Option<ElfFile>, ElfError> {
    if !is_elf(bytes) {
        return Ok(None);
    }
    let elf = Elf::parse(bytes).map_err(|e| malformed(path, e.to_string()))?;
    let mut out = ElfFile {
        is_64: elf.is_64,
        little_endian: elf.little_endian,
        machine: elf.header.e_machine,
        needed: Vec::new(),
        rpath: None,
        runpath: None,
        interpreter: None,
        soname: None,
        nodeflib: false,
    };
    for ph in &elf.program_headers {
        if ph.p_type == PT_INTERP {
            let start = usize::try_from(ph.p_offset).map_err(|_| malformed(path, "PT_INTERP"))?;
            let size = usize::try_from(ph.p_filesz).map_err(|_| malformed(path, "PT_INTERP"))?;
            let end = start
                .checked_add(size)
                .ok_or_else(|| malformed(path, "PT_INTERP overflows"))?;
            let s = c_string(bytes, start, end).ok_or_else(|| {
                malformed(
                    path,
                    "PT_INTERP is not a NUL-terminated string inside the file",
                )
            })?;
            out.interpreter = Some(InPlaceString {
                value: s.to_vec(),
                offset: start as u64,
            });
        }
    }
    if let Some(dynamic) = &elf.dynamic {
        let strtab = dynamic.info.strtab;
        let strsz = dynamic.info.strsz;
        let has_strings = dynamic
            .dyns
            .iter()
            .any(|d| matches!(d.d_tag, DT_NEEDED | DT_RPATH | DT_RUNPATH | DT_SONAME));
        if has_strings && (strtab == 0 || strsz == 0) {
            return Err(malformed(
                path,
                "the dynamic section has no string table (DT_STRTAB/DT_STRSZ)",
            ));
        }
        let table_end = strtab
            .checked_add(strsz)
            .ok_or_else(|| malformed(path, "DT_STRTAB + DT_STRSZ overflows"))?;
        if has_strings && table_end > bytes.len() {
            return Err(malformed(
                path,
                "the dynamic string table extends past the end of the file",
            ));
        }
        for d in &dynamic.dyns {
            if d.d_tag == DT_FLAGS_1 {
                out.nodeflib = d.d_val & DF_1_NODEFLIB != 0;
            }
            if !matches!(d.d_tag, DT_NEEDED | DT_RPATH | DT_RUNPATH | DT_SONAME) {
                continue;
            }
            let rel = usize::try_from(d.d_val).map_err(|_| malformed(path, "string offset"))?;
            let start = strtab
                .checked_add(rel)
                .ok_or_else(|| malformed(path, "string offset overflows"))?;
            let s = c_string(bytes, start, table_end).ok_or_else(|| {
                malformed(
                    path,
                    format!(
                        "dynamic entry {:#x} points outside the string table",
                        d.d_tag
                    ),
                )
            })?;
            let string = InPlaceString {
                value: s.to_vec(),
                offset: start as u64,
            };
            match d.d_tag {
                DT_NEEDED => out.needed.push(string.text()),
                DT_RPATH => out.rpath = Some(string),
                DT_SONAME => out.soname = Some(string.text()),
                _ => out.runpath = Some(string),
            }
        }
    }
    Ok(Some(out))
}

/// Reads `path` and parses it with [`parse`]. `Ok(None)` means the file is not ELF.
pub fn read(path: &Path) -> Result<Option<ElfFile>, ElfError> {
    let bytes = fs::read(path).map_err(|source| ElfError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &bytes)
}

/// One in-place edit: set `field` to `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// Which string.
    pub field: Field,
    /// The new value (no NUL).
    pub value: Vec<u8>,
}

/// Applies `edits` to the ELF file at `path` in place, all or nothing: when any new value does
/// not fit, nothing is written. Returns whether anything changed. A file that is not ELF is an
/// error here (use [`read`] first to decide).
pub fn apply(path: &Path, edits: &[Edit]) -> Result<bool, ElfError> {
    let io = |source| ElfError::Io {
        path: path.to_owned(),
        source,
    };
    let bytes = fs::read(path).map_err(io)?;
    let writes = plan_writes(path, &bytes, edits)?;
    if writes.is_empty() {
        return Ok(false);
    }
    write_at(path, &writes).map_err(io)?;
    Ok(true)
}

/// Applies `edits` to the ELF image `bytes` in memory, as [`apply`] does to a file (`path`
/// names it in errors), all or nothing. Returns whether anything changed.
pub fn apply_in_memory(path: &Path, bytes: &mut [u8], edits: &[Edit]) -> Result<bool, ElfError> {
    let writes = plan_writes(path, bytes, edits)?;
    for (off, data) in &writes {
        let start =
            usize::try_from(*off).map_err(|_| malformed(path, "string offset out of range"))?;
        bytes
            .get_mut(start..start + data.len())
            .ok_or_else(|| malformed(path, "string offset out of range"))?
            .copy_from_slice(data);
    }
    Ok(!writes.is_empty())
}

/// The `(offset, bytes)` writes that apply `edits` to the ELF image `bytes`; checks every edit
/// before returning any.
fn plan_writes(path: &Path, bytes: &[u8], edits: &[Edit]) -> Result<Vec<(u64, Vec<u8>)>, ElfError> {
    let elf = parse(path, bytes)?.ok_or_else(|| malformed(path, "not an ELF file"))?;
    let mut writes: Vec<(u64, Vec<u8>)> = Vec::new();
    for e in edits {
        let old = elf.field(e.field).ok_or(ElfError::Missing {
            path: path.to_owned(),
            field: e.field,
        })?;
        if e.value.contains(&0) {
            return Err(ElfError::Nul {
                path: path.to_owned(),
                field: e.field,
            });
        }
        if e.value == old.value {
            continue;
        }
        if e.value.len() > old.capacity() {
            return Err(ElfError::DoesNotFit {
                path: path.to_owned(),
                field: e.field,
                old: old.text(),
                new: String::from_utf8_lossy(&e.value).into_owned(),
                old_len: old.capacity(),
                new_len: e.value.len(),
            });
        }
        // New value, then NULs over what is left of the old one (so `strings` shows no stale
        // path); the old terminator stays.
        let mut data = e.value.clone();
        data.resize(old.capacity(), 0);
        writes.push((old.offset, data));
    }
    Ok(writes)
}

/// Writes each `(offset, bytes)` into the existing file, making it writable for the duration
/// when it is read-only (install trees often are) and restoring its mode afterwards.
fn write_at(path: &Path, writes: &[(u64, Vec<u8>)]) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mode = meta.permissions().mode();
    let made_writable = mode & 0o200 == 0;
    if made_writable {
        fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o200))?;
    }
    let result = (|| {
        let mut f = fs::OpenOptions::new().write(true).open(path)?;
        for (off, data) in writes {
            f.seek(SeekFrom::Start(*off))?;
            f.write_all(data)?;
        }
        // Not synced here: the installer makes the whole tree durable at once (one `syncfs`
        // before its prefixes are moved into place).
        Ok(())
    })();
    if made_writable {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    result
}

/// Sets every search path the file has (`DT_RPATH` and/or `DT_RUNPATH`) to `value`, in place.
/// Returns `Ok(false)` when the file has neither (an in-place rewrite cannot add one) or
/// already has `value`.
pub fn set_search_path(path: &Path, value: &str) -> Result<bool, ElfError> {
    let Some(elf) = read(path)? else {
        return Err(malformed(path, "not an ELF file"));
    };
    let edits: Vec<Edit> = [Field::Rpath, Field::Runpath]
        .into_iter()
        .filter(|f| elf.field(*f).is_some())
        .map(|field| Edit {
            field,
            value: value.as_bytes().to_vec(),
        })
        .collect();
    apply(path, &edits)
}

/// Replaces old prefixes with new ones in the RPATH/RUNPATH entries and the interpreter of the
/// ELF file at `path`, in place, exactly as Spack's `substitute_rpath_and_pt_interp_in_place_or_raise`:
/// each `:`-separated entry (empty entries dropped) that starts with an old prefix gets that
/// prefix replaced by the first matching pair of `prefix_map` (in order); the interpreter
/// likewise. Returns whether the file changed; `Ok(false)` for files that are not ELF.
pub fn substitute_prefixes(
    path: &Path,
    prefix_map: &[(Vec<u8>, Vec<u8>)],
) -> Result<bool, ElfError> {
    let Some(elf) = read(path)? else {
        return Ok(false);
    };
    let substitute = |s: &[u8]| -> Option<Vec<u8>> {
        prefix_map
            .iter()
            .find(|(old, _)| s.starts_with(old))
            .map(|(old, new)| [new.as_slice(), &s[old.len()..]].concat())
    };
    let mut edits = Vec::new();
    for field in [Field::Rpath, Field::Runpath] {
        let Some(old) = elf.field(field) else {
            continue;
        };
        let entries: Vec<&[u8]> = old
            .value
            .split(|&b| b == b':')
            .filter(|e| !e.is_empty())
            .collect();
        let mut changed = false;
        let new: Vec<Vec<u8>> = entries
            .iter()
            .map(|e| match substitute(e) {
                Some(n) => {
                    changed = true;
                    n
                }
                None => e.to_vec(),
            })
            .collect();
        if changed {
            edits.push(Edit {
                field,
                value: new.join(&b':'),
            });
        }
    }
    if let Some(interp) = &elf.interpreter
        && let Some(value) = substitute(&interp.value)
    {
        edits.push(Edit {
            field: Field::Interpreter,
            value,
        });
    }
    apply(path, &edits)
}
