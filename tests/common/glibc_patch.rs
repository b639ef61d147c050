//! Patching an ELF file's version-needed entry to name another glibc version, for tests of
//! the glibc floor: the `.dynstr` bytes of the name and the entry's `vna_hash` (the System V ELF
//! hash of the name) are rewritten in place, so the entry stays consistent and `readelf -V` and
//! the dynamic loader see the new version. Only same-length names, so nothing moves.
#![allow(dead_code)]

use std::path::Path;

use slurm_factory::glibc_floor::elf_hash;

fn le_u16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn le_u32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn le_u64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Section `(offset, size, link)` of the first section of type `sh_type` in a 64-bit
/// little-endian ELF image, and the sections' table.
fn section(b: &[u8], sh_type: u32) -> (usize, usize, usize, Vec<(usize, usize)>) {
    let shoff = le_u64(b, 0x28) as usize;
    let shentsize = le_u16(b, 0x3a) as usize;
    let shnum = le_u16(b, 0x3c) as usize;
    let table: Vec<(u32, usize, usize, usize)> = (0..shnum)
        .map(|i| {
            let s = shoff + i * shentsize;
            (
                le_u32(b, s + 4),
                le_u64(b, s + 0x18) as usize,
                le_u64(b, s + 0x20) as usize,
                le_u32(b, s + 0x28) as usize,
            )
        })
        .collect();
    let (_, off, size, link) = *table
        .iter()
        .find(|s| s.0 == sh_type)
        .expect("the section exists");
    (off, size, link, table.iter().map(|s| (s.1, s.2)).collect())
}

/// Rewrites the version-needed entry `from` (e.g. `GLIBC_2.34`) of the x86_64/aarch64 ELF file
/// `path` to `to` (same length) in place: the `.dynstr` bytes and the `vna_hash`. With
/// `fix_hash == false` the hash is left stale (an inconsistent entry).
pub fn patch_glibc_version(path: &Path, from: &str, to: &str, fix_hash: bool) {
    assert_eq!(from.len(), to.len(), "same length, so nothing moves");
    let mut b = std::fs::read(path).unwrap();
    assert_eq!(&b[..4], b"\x7fELF");
    assert_eq!(b[4], 2, "64-bit");
    assert_eq!(b[5], 1, "little-endian");
    const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
    let (vr_off, _, link, table) = section(&b, SHT_GNU_VERNEED);
    let strtab = table[link].0;
    let count = {
        let shoff = le_u64(&b, 0x28) as usize;
        let shentsize = le_u16(&b, 0x3a) as usize;
        let i = (0..le_u16(&b, 0x3c) as usize)
            .find(|i| le_u32(&b, shoff + i * shentsize + 4) == SHT_GNU_VERNEED)
            .unwrap();
        le_u32(&b, shoff + i * shentsize + 0x2c) as usize
    };
    let mut patched = 0;
    let mut vn = vr_off;
    for _ in 0..count {
        let cnt = le_u16(&b, vn + 2) as usize;
        let mut aux = vn + le_u32(&b, vn + 8) as usize;
        for _ in 0..cnt {
            let name_at = strtab + le_u32(&b, aux + 8) as usize;
            let end = name_at + b[name_at..].iter().position(|&c| c == 0).unwrap();
            if &b[name_at..end] == from.as_bytes() {
                assert_eq!(le_u32(&b, aux), elf_hash(from.as_bytes()));
                b[name_at..end].copy_from_slice(to.as_bytes());
                if fix_hash {
                    b[aux..aux + 4].copy_from_slice(&elf_hash(to.as_bytes()).to_le_bytes());
                }
                patched += 1;
            }
            aux += le_u32(&b, aux + 12) as usize;
        }
        vn += le_u32(&b, vn + 12) as usize;
    }
    assert_eq!(patched, 1, "{} needs {from} exactly once", path.display());
    std::fs::write(path, b).unwrap();
}
