//! glibc's `/etc/ld.so.cache`, read the way the dynamic loader reads it (`elf/dl-cache.c`).
//!
//! Only the format glibc has written since 2.32, `glibc-ld.so.cache1.1`, is read: alone, or
//! after the old `ld.so-1.7.0` table that glibc < 2.32 (EL8's 2.28) writes in front of it ("compat"
//! format). A file with only the old table is refused: no glibc we support writes one.
//!
//! The file is input from outside the program: every offset and count is checked against the
//! file's length before it is used, strings must be NUL-terminated inside the file, and a file
//! larger than [`MAX_BYTES`] is refused. A damaged cache is an error the caller reports; the
//! loader then ignores the cache too and searches its default directories.
//!
//! Layout (native byte order, which the header's `flags` byte names):
//!
//! ```text
//! header (48 bytes): magic "glibc-ld.so.cache" (17) version "1.1" (3) nlibs u32 len_strings u32
//!                    flags u8 (2 = little, 3 = big endian) pad [3] extension_offset u32 unused [3]u32
//! entry (24 bytes):  flags i32 key u32 value u32 osversion u32 hwcap u64
//! ```
//!
//! `key` (the soname) and `value` (the path) are offsets from the start of the new-format header.
//! Bit 62 of `hwcap` marks a `glibc-hwcaps` entry; its low 32 bits index the subdirectory names of
//! the extension section tagged 1 (`cache_extension_tag_glibc_hwcaps`).

use std::path::{Path, PathBuf};

/// The largest cache read (a real one is tens of kilobytes).
pub const MAX_BYTES: u64 = 64 << 20;

const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const HEADER: usize = 48;
const ENTRY: usize = 24;
const OLD_HEADER: usize = 16; // magic (11) + pad to 12 + nlibs u32
const OLD_ENTRY: usize = 12;
const EXTENSION_MAGIC: u32 = 0xeaa4_2174;
const TAG_GLIBC_HWCAPS: u32 = 1;
const HWCAP_EXTENSION: u64 = 1 << 62;

/// Why a cache file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}; the dynamic loader ignores a damaged cache, and so does this check")]
pub struct CacheError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// One library the cache lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's flags: the ELF type and the architecture (`FLAG_ELF_LIBC6 | FLAG_X8664_LIB64`
    /// is `0x0303`).
    pub flags: i32,
    /// The soname it is found by.
    pub soname: Vec<u8>,
    /// Its path.
    pub path: PathBuf,
    /// The `glibc-hwcaps` subdirectory it is in (`x86-64-v3`), when it is in one.
    pub hwcaps: Option<String>,
    /// Legacy hwcap bits (glibc < 2.37): entries with any are never chosen here.
    pub legacy_hwcap: u64,
}

/// A parsed `ld.so.cache`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cache {
    /// Every entry, in file order (glibc sorts them by soname, most specific first).
    pub entries: Vec<Entry>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    big: bool,
}

impl Reader<'_> {
    fn u32_at(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
    fn u64_at(&self, at: usize) -> Option<u64> {
        let b: [u8; 8] = self.bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(if self.big {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }
    /// The NUL-terminated string at `at`, which must end inside the file.
    fn c_str(&self, at: usize) -> Option<&[u8]> {
        let rest = self.bytes.get(at..)?;
        let n = rest.iter().position(|&b| b == 0)?;
        Some(&rest[..n])
    }
}

impl Cache {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self, CacheError> {
        use std::io::Read;
        let err = |reason: String| CacheError {
            path: path.to_owned(),
            reason,
        };
        let f = std::fs::File::open(path).map_err(|e| err(format!("cannot open it: {e}")))?;
        let m = f.metadata().map_err(|e| err(e.to_string()))?;
        if !m.is_file() {
            return Err(err("not a regular file".into()));
        }
        let mut bytes = Vec::new();
        f.take(MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| err(format!("cannot read it: {e}")))?;
        if bytes.len() as u64 > MAX_BYTES {
            return Err(err(format!("larger than {MAX_BYTES} bytes")));
        }
        Self::parse(&bytes).map_err(err)
    }

    /// Parses the bytes of a cache file.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let start = if bytes.starts_with(NEW_MAGIC) {
            0
        } else if bytes.starts_with(OLD_MAGIC) {
            // The old table: header, nlibs entries of 12 bytes, then the new format aligned to
            // 8 bytes (`ALIGN_CACHE`). The old table is only skipped, never read.
            let n = bytes
                .get(12..16)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_ne_bytes)
                .ok_or("truncated old-format header")? as usize;
            let end = n
                .checked_mul(OLD_ENTRY)
                .and_then(|x| x.checked_add(OLD_HEADER))
                .ok_or("old-format entry count overflows")?;
            let aligned = end.checked_add(7).ok_or("overflow")? & !7;
            match bytes.get(aligned..) {
                Some(rest) if rest.starts_with(NEW_MAGIC) => aligned,
                _ => {
                    return Err(
                        "only the old ld.so-1.7.0 format, which no supported glibc writes; run ldconfig"
                            .into(),
                    );
                }
            }
        } else {
            return Err("not an ld.so cache (no glibc-ld.so.cache1.1 magic)".into());
        };
        let new = &bytes[start..];
        if new.len() < HEADER {
            return Err("truncated header".into());
        }
        let big = match new[28] {
            2 => false,
            3 => true,
            // 0: written by a glibc that did not record it; the native order.
            0 => cfg!(target_endian = "big"),
            other => return Err(format!("unknown byte-order flag {other}")),
        };
        let r = Reader { bytes: new, big };
        let nlibs = r.u32_at(20).ok_or("truncated header")? as usize;
        let entries_end = nlibs
            .checked_mul(ENTRY)
            .and_then(|n| n.checked_add(HEADER))
            .ok_or("entry count overflows")?;
        if entries_end > new.len() {
            return Err(format!(
                "it claims {nlibs} entries, more than its {} bytes hold",
                new.len()
            ));
        }
        let ext = r.u32_at(32).ok_or("truncated header")? as usize;
        let hwcaps = if ext == 0 {
            Vec::new()
        } else {
            Self::hwcaps_names(&r, ext)?
        };
        let mut entries = Vec::with_capacity(nlibs);
        for i in 0..nlibs {
            let at = HEADER + i * ENTRY;
            let flags = r.u32_at(at).ok_or("truncated entry")? as i32;
            let key = r.u32_at(at + 4).ok_or("truncated entry")? as usize;
            let value = r.u32_at(at + 8).ok_or("truncated entry")? as usize;
            let hwcap = r.u64_at(at + 16).ok_or("truncated entry")?;
            let soname = r
                .c_str(key)
                .ok_or_else(|| format!("entry {i}: its name is not a string inside the file"))?;
            let value = r
                .c_str(value)
                .ok_or_else(|| format!("entry {i}: its path is not a string inside the file"))?;
            if soname.is_empty() || value.first() != Some(&b'/') {
                return Err(format!("entry {i}: an empty name or a relative path"));
            }
            let (hw, legacy) = if hwcap & HWCAP_EXTENSION != 0 {
                let idx = (hwcap & 0xffff_ffff) as usize;
                let name = hwcaps.get(idx).ok_or_else(|| {
                    format!("entry {i}: glibc-hwcaps index {idx} is out of range")
                })?;
                (Some(name.clone()), 0)
            } else {
                (None, hwcap)
            };
            entries.push(Entry {
                flags,
                soname: soname.to_vec(),
                path: PathBuf::from(std::ffi::OsStr::new(
                    std::str::from_utf8(value)
                        .map_err(|_| format!("entry {i}: its path is not UTF-8"))?,
                )),
                hwcaps: hw,
                legacy_hwcap: legacy,
            });
        }
        Ok(Cache { entries })
    }

    /// The `glibc-hwcaps` subdirectory names of the extension section at `ext`.
    fn hwcaps_names(r: &Reader<'_>, ext: usize) -> Result<Vec<String>, String> {
        if r.u32_at(ext) != Some(EXTENSION_MAGIC) {
            // glibc ignores a missing or foreign extension block.
            return Ok(Vec::new());
        }
        let count = r.u32_at(ext + 4).ok_or("truncated extension header")? as usize;
        let mut out = Vec::new();
        for s in 0..count {
            let at = s
                .checked_mul(16)
                .and_then(|x| x.checked_add(ext + 8))
                .ok_or("extension count overflows")?;
            let tag = r.u32_at(at).ok_or("truncated extension section")?;
            if tag != TAG_GLIBC_HWCAPS {
                continue;
            }
            let off = r.u32_at(at + 8).ok_or("truncated extension section")? as usize;
            let size = r.u32_at(at + 12).ok_or("truncated extension section")? as usize;
            if !size.is_multiple_of(4) || off.checked_add(size).is_none_or(|e| e > r.bytes.len()) {
                return Err("the glibc-hwcaps section lies outside the file".into());
            }
            for k in 0..size / 4 {
                let so = r.u32_at(off + 4 * k).ok_or("truncated hwcaps section")? as usize;
                let name = r
                    .c_str(so)
                    .ok_or("a glibc-hwcaps name is not a string inside the file")?;
                out.push(String::from_utf8_lossy(name).into_owned());
            }
        }
        Ok(out)
    }

    /// The path the loader takes for `soname` with entry flags `want`: the entry in the most
    /// preferred of `hwcaps` subdirectories (in priority order), else the plain entry. Entries
    /// with legacy hwcap bits are passed over.
    pub fn lookup(&self, soname: &[u8], want: &[i32], hwcaps: &[&str]) -> Option<&Path> {
        let hits = || {
            self.entries.iter().filter(move |e| {
                e.soname == soname && want.contains(&e.flags) && e.legacy_hwcap == 0
            })
        };
        for sub in hwcaps {
            if let Some(e) = hits().find(|e| e.hwcaps.as_deref() == Some(sub)) {
                return Some(&e.path);
            }
        }
        hits()
            .find(|e| e.hwcaps.is_none())
            .map(|e| e.path.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian cache with `entries` (flags, soname, path, hwcap) and, when given, a
    /// glibc-hwcaps extension naming `subdirs`.
    fn build(entries: &[(i32, &str, &str, u64)], subdirs: &[&str]) -> Vec<u8> {
        let mut strings: Vec<u8> = Vec::new();
        let strings_at = HEADER + entries.len() * ENTRY;
        let mut add = |s: &str| {
            let at = strings_at + strings.len();
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            at as u32
        };
        let mut table = Vec::new();
        for (flags, name, path, hwcap) in entries {
            let k = add(name);
            let v = add(path);
            table.extend_from_slice(&flags.to_le_bytes());
            table.extend_from_slice(&k.to_le_bytes());
            table.extend_from_slice(&v.to_le_bytes());
            table.extend_from_slice(&0u32.to_le_bytes());
            table.extend_from_slice(&hwcap.to_le_bytes());
        }
        let sub_offsets: Vec<u32> = subdirs.iter().map(|s| add(s)).collect();
        let mut out = Vec::new();
        out.extend_from_slice(NEW_MAGIC);
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        out.extend_from_slice(&[2, 0, 0, 0]);
        out.extend_from_slice(&0u32.to_le_bytes()); // extension offset, patched below
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&table);
        out.extend_from_slice(&strings);
        if !subdirs.is_empty() {
            while out.len() % 4 != 0 {
                out.push(0);
            }
            let ext = out.len() as u32;
            out[32..36].copy_from_slice(&ext.to_le_bytes());
            let data = ext + 8 + 16;
            for v in [
                EXTENSION_MAGIC,
                1,
                TAG_GLIBC_HWCAPS,
                0,
                data,
                4 * subdirs.len() as u32,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            for o in sub_offsets {
                out.extend_from_slice(&o.to_le_bytes());
            }
        }
        out
    }

    #[test]
    fn entries_are_found_by_name_flags_and_hwcaps_priority() {
        let bytes = build(
            &[
                (
                    0x0303,
                    "libz.so.1",
                    "/usr/lib/glibc-hwcaps/x86-64-v3/libz.so.1",
                    HWCAP_EXTENSION,
                ),
                (0x0303, "libz.so.1", "/usr/lib/libz.so.1", 0),
                (0x0003, "libz.so.1", "/usr/lib32/libz.so.1", 0),
                (0x0303, "libm.so.6", "/usr/lib/libm.so.6", 1 << 3),
            ],
            &["x86-64-v3"],
        );
        let c = Cache::parse(&bytes).unwrap();
        assert_eq!(c.entries.len(), 4);
        assert_eq!(
            c.lookup(b"libz.so.1", &[0x0303], &["x86-64-v3"]),
            Some(Path::new("/usr/lib/glibc-hwcaps/x86-64-v3/libz.so.1"))
        );
        assert_eq!(
            c.lookup(b"libz.so.1", &[0x0303], &[]),
            Some(Path::new("/usr/lib/libz.so.1"))
        );
        assert_eq!(
            c.lookup(b"libz.so.1", &[0x0003], &[]),
            Some(Path::new("/usr/lib32/libz.so.1"))
        );
        // Only a legacy-hwcap entry: passed over.
        assert_eq!(c.lookup(b"libm.so.6", &[0x0303], &[]), None);
        assert_eq!(c.lookup(b"libnone.so", &[0x0303], &[]), None);
    }

    #[test]
    fn the_compat_format_is_read_through_the_old_table() {
        let new = build(&[(0x0303, "liba.so", "/lib/liba.so", 0)], &[]);
        let mut old = Vec::new();
        old.extend_from_slice(OLD_MAGIC);
        old.push(0);
        old.extend_from_slice(&1u32.to_ne_bytes());
        old.extend_from_slice(&[0; OLD_ENTRY]);
        while old.len() % 8 != 0 {
            old.push(0);
        }
        old.extend_from_slice(&new);
        let c = Cache::parse(&old).unwrap();
        assert_eq!(
            c.lookup(b"liba.so", &[0x0303], &[]),
            Some(Path::new("/lib/liba.so"))
        );
        // The old table alone is refused.
        assert!(Cache::parse(&old[..24]).unwrap_err().contains("old"));
    }

    #[test]
    fn damaged_caches_are_refused_not_trusted() {
        let good = build(
            &[(0x0303, "liba.so", "/lib/liba.so", HWCAP_EXTENSION)],
            &["x86-64-v2"],
        );
        assert!(Cache::parse(&good).is_ok());
        // Every truncation is an error or a smaller valid cache, never a panic.
        for n in 0..good.len() {
            let _ = Cache::parse(&good[..n]);
        }
        // A huge entry count.
        let mut b = good.clone();
        b[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Cache::parse(&b).unwrap_err().contains("entries"));
        // A string offset past the end.
        let mut b = good.clone();
        b[HEADER + 4..HEADER + 8].copy_from_slice(&(good.len() as u32 + 5).to_le_bytes());
        assert!(Cache::parse(&b).unwrap_err().contains("not a string"));
        // A string without its NUL: cut the file inside the last string.
        let mut b = good.clone();
        let last_nul = b.iter().rposition(|&x| x == 0).unwrap();
        b.truncate(last_nul);
        assert!(Cache::parse(&b).is_err());
        // A hwcaps index out of range.
        let mut b = good.clone();
        b[HEADER + 16..HEADER + 24].copy_from_slice(&(HWCAP_EXTENSION | 7).to_le_bytes());
        assert!(Cache::parse(&b).unwrap_err().contains("out of range"));
        // A relative path.
        let rel = build(&[(0x0303, "liba.so", "lib/liba.so", 0)], &[]);
        assert!(Cache::parse(&rel).unwrap_err().contains("relative"));
        // Not a cache at all; an unknown byte-order flag.
        assert!(Cache::parse(b"hello").is_err());
        let mut b = good.clone();
        b[28] = 9;
        assert!(Cache::parse(&b).unwrap_err().contains("byte-order"));
        // Every single-byte corruption of the header and table parses or errs, never panics.
        for i in 0..HEADER + ENTRY {
            let mut b = good.clone();
            b[i] ^= 0xff;
            let _ = Cache::parse(&b);
        }
    }

    #[test]
    fn the_hosts_cache_parses_and_knows_libc() {
        let p = Path::new("/etc/ld.so.cache");
        if !p.exists() {
            return;
        }
        let c = Cache::read(p).unwrap();
        assert!(
            c.entries.iter().any(|e| e.soname == b"libc.so.6"),
            "no libc.so.6 in {} entries",
            c.entries.len()
        );
    }
}
