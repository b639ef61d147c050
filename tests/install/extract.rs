//! Hardened extraction: one hostile archive per attack, built here with raw tar headers, each
//! refused with a message naming the entry, and nothing written outside (or left inside) the
//! target.

use std::io::Write;
use std::path::Path;

use slurm_factory::install::extract::{self, Limits, Options};
use tar::{EntryType, Header};

/// An archive under construction: raw headers, so names the `tar` crate would refuse to write
/// (absolute, `..`) can be written.
struct Raw(tar::Builder<Vec<u8>>);

impl Raw {
    fn new() -> Self {
        Raw(tar::Builder::new(Vec::new()))
    }
    fn entry(mut self, name: &str, kind: EntryType, link: &str, mode: u32, data: &[u8]) -> Self {
        let mut h = Header::new_gnu();
        {
            let g = h.as_gnu_mut().unwrap();
            g.name[..name.len()].copy_from_slice(name.as_bytes());
            g.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(name, EntryType::Regular, "", 0o644, data)
    }
    fn dir(self, name: &str) -> Self {
        self.entry(name, EntryType::Directory, "", 0o755, b"")
    }
    fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(name, EntryType::Symlink, target, 0o777, b"")
    }
    fn hardlink(self, name: &str, target: &str) -> Self {
        self.entry(name, EntryType::Link, target, 0o644, b"")
    }
    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// Extracts into a fresh `<tmp>/sandbox/root` and returns the error text. Asserts the root was
/// removed and nothing appeared next to it.
fn refused(archive: Vec<u8>, opts: &Options) -> String {
    let t = tempfile::tempdir().unwrap();
    let sandbox = t.path().join("sandbox");
    std::fs::create_dir(&sandbox).unwrap();
    let root = sandbox.join("root");
    let err = extract::extract_fresh(archive.as_slice(), &root, opts).unwrap_err();
    assert!(!root.exists(), "a refused archive leaves nothing behind");
    let left: Vec<_> = std::fs::read_dir(&sandbox).unwrap().collect();
    assert!(
        left.is_empty(),
        "nothing written next to the root: {left:?}"
    );
    format!("{err:#}")
}

#[test]
fn a_benign_archive_extracts_with_modes_links_and_hardlinks() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let a = Raw::new()
        .dir("bin/")
        .entry(
            "bin/tool",
            EntryType::Regular,
            "",
            0o755,
            b"#!/bin/sh\necho hi\n",
        )
        .symlink("bin/alias", "tool")
        .file("share/doc/readme", b"text")
        .hardlink("share/doc/again", "share/doc/readme")
        .symlink("share/up", "../bin/tool")
        .bytes();
    let x = extract::extract_fresh(a.as_slice(), &root, &Options::default()).unwrap();
    assert_eq!(x.entries, 6);
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::metadata(root.join("bin/tool")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        std::fs::read_link(root.join("bin/alias")).unwrap(),
        Path::new("tool")
    );
    assert_eq!(
        std::fs::metadata(root.join("share/doc/again"))
            .unwrap()
            .ino(),
        std::fs::metadata(root.join("share/doc/readme"))
            .unwrap()
            .ino()
    );
    assert_eq!(
        std::fs::read(root.join("share/up")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
}

#[test]
fn path_traversal_is_refused() {
    let msg = refused(
        Raw::new()
            .file("ok", b"1")
            .file("a/../../evil", b"x")
            .bytes(),
        &Options::default(),
    );
    assert!(
        msg.contains("\"a/../../evil\"") && msg.contains("`..`"),
        "{msg}"
    );
}

#[test]
fn absolute_paths_are_refused() {
    let msg = refused(
        Raw::new().file("/tmp/evil-absolute", b"x").bytes(),
        &Options::default(),
    );
    assert!(
        msg.contains("\"/tmp/evil-absolute\" is an absolute path"),
        "{msg}"
    );
    assert!(!Path::new("/tmp/evil-absolute").exists());
}

#[test]
fn an_escaping_relative_symlink_is_refused() {
    let msg = refused(
        Raw::new()
            .dir("bin/")
            .symlink("bin/passwd", "../../etc/passwd")
            .bytes(),
        &Options::default(),
    );
    assert!(
        msg.contains("\"bin/passwd\" is a symlink") && msg.contains("escapes"),
        "{msg}"
    );
}

#[test]
fn a_chain_of_symlinks_that_escapes_together_is_refused() {
    // a/t -> s/../x is harmless while a/s does not exist; a/s -> .. then makes a/t point above
    // the root. Only the check after extraction, following links, sees it.
    let a = Raw::new()
        .dir("a/")
        .symlink("a/t", "s/../../x")
        .symlink("a/s", "..")
        .bytes();
    let msg = refused(a, &Options::default());
    assert!(msg.contains("symlink a/t -> s/../../x escapes"), "{msg}");
}

#[test]
fn an_absolute_symlink_is_refused_unless_under_a_relocated_build_prefix() {
    let msg = refused(
        Raw::new().symlink("etc", "/etc").bytes(),
        &Options::default(),
    );
    assert!(
        msg.contains("\"etc\" is a symlink to the absolute path \"/etc\""),
        "{msg}"
    );
    let opts = Options {
        absolute_link_prefixes: vec!["/old/store".into()],
        ..Options::default()
    };
    let msg = refused(Raw::new().symlink("x", "/old/storeevil/bin").bytes(), &opts);
    assert!(
        msg.contains("\"x\" is a symlink to the absolute path"),
        "{msg}"
    );
    let msg = refused(
        Raw::new().symlink("x", "/old/store/../../etc").bytes(),
        &opts,
    );
    assert!(
        msg.contains("\"x\" is a symlink to the absolute path"),
        "{msg}"
    );
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("r");
    let ok = Raw::new().symlink("x", "/old/store/pkg/bin/tool").bytes();
    extract::extract_fresh(ok.as_slice(), &root, &opts).unwrap();
    assert_eq!(
        std::fs::read_link(root.join("x")).unwrap(),
        Path::new("/old/store/pkg/bin/tool")
    );
}

#[test]
fn an_escaping_hardlink_is_refused() {
    let msg = refused(
        Raw::new().hardlink("pw", "../etc/passwd").bytes(),
        &Options::default(),
    );
    assert!(msg.contains("\"pw\"") && msg.contains("`..`"), "{msg}");
    let msg = refused(
        Raw::new().hardlink("pw", "/etc/passwd").bytes(),
        &Options::default(),
    );
    assert!(
        msg.contains("\"pw\"") && msg.contains("absolute path"),
        "{msg}"
    );
    // A hardlink to a symlink inside the archive would let the link's target be reached later.
    let msg = refused(
        Raw::new().symlink("l", "x").hardlink("h", "l").bytes(),
        &Options::default(),
    );
    assert!(
        msg.contains("\"h\" is a hardlink to \"l\", which is not a regular file"),
        "{msg}"
    );
    // A hardlink to a file that is not (yet) in the archive.
    let msg = refused(
        Raw::new()
            .hardlink("h", "later")
            .file("later", b"1")
            .bytes(),
        &Options::default(),
    );
    assert!(msg.contains("\"h\" is a hardlink"), "{msg}");
}

#[test]
fn device_nodes_and_fifos_are_refused() {
    for (kind, what) in [
        (EntryType::Char, "device node"),
        (EntryType::Block, "device node"),
        (EntryType::Fifo, "FIFO"),
    ] {
        let msg = refused(
            Raw::new().entry("dev/x", kind, "", 0o644, b"").bytes(),
            &Options::default(),
        );
        assert!(msg.contains(&format!("\"dev/x\" is a {what}")), "{msg}");
    }
}

#[test]
fn setuid_and_setgid_files_are_refused() {
    for mode in [0o4755, 0o2755] {
        let msg = refused(
            Raw::new()
                .entry("bin/su", EntryType::Regular, "", mode, b"x")
                .bytes(),
            &Options::default(),
        );
        assert!(
            msg.contains("\"bin/su\" has the setuid or setgid bit"),
            "{msg}"
        );
    }
}

#[test]
fn writing_through_an_archive_symlink_is_refused() {
    let msg = refused(
        Raw::new()
            .dir("sub/")
            .symlink("d", "sub")
            .file("d/f", b"x")
            .bytes(),
        &Options::default(),
    );
    assert!(
        msg.contains("\"d/f\"") && msg.contains("refusing to write through"),
        "{msg}"
    );
}

#[test]
fn a_pre_existing_symlink_in_the_target_is_never_followed() {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let root = t.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("bin")).unwrap();
    let a = Raw::new().file("bin/x", b"x").bytes();
    let err = extract::extract(a.as_slice(), &root, &Options::default()).unwrap_err();
    assert!(
        format!("{err:#}").contains("refusing to write through"),
        "{err:#}"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    // A pre-existing symlink as the file itself: O_EXCL refuses it.
    std::os::unix::fs::symlink(outside.join("f"), root.join("f")).unwrap();
    let a = Raw::new().file("f", b"x").bytes();
    let err = extract::extract(a.as_slice(), &root, &Options::default()).unwrap_err();
    assert!(
        format!("{err:#}").contains("refusing to overwrite"),
        "{err:#}"
    );
    assert!(!outside.join("f").exists());
}

#[test]
fn duplicate_entries_are_refused() {
    let msg = refused(
        Raw::new().file("a", b"1").file("a", b"2").bytes(),
        &Options::default(),
    );
    assert!(msg.contains("\"a\"") && msg.contains("duplicate"), "{msg}");
}

#[test]
fn decompression_and_entry_bombs_are_capped() {
    // 64 MiB of zeros gzip to about 64 KiB; the cap is on what decompresses, not on headers.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_size(64 << 20);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "zeros", std::io::repeat(0).take_exact(64 << 20))
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 1 << 20);
    let opts = Options {
        limits: Limits {
            max_bytes: 8 << 20,
            max_entries: 100,
        },
        ..Options::default()
    };
    let msg = refused_reader(flate2::read::GzDecoder::new(gz.as_slice()), &opts);
    assert!(
        msg.contains("decompresses to more than 8388608 bytes"),
        "{msg}"
    );

    let mut raw = Raw::new();
    for i in 0..20 {
        raw = raw.file(&format!("f{i}"), b"");
    }
    let opts = Options {
        limits: Limits {
            max_bytes: 1 << 30,
            max_entries: 10,
        },
        ..Options::default()
    };
    let msg = refused(raw.bytes(), &opts);
    assert!(msg.contains("more than 10 entries"), "{msg}");
}

fn refused_reader(r: impl std::io::Read, opts: &Options) -> String {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let err = extract::extract_fresh(r, &root, opts).unwrap_err();
    assert!(!root.exists());
    format!("{err:#}")
}

trait TakeExact: std::io::Read + Sized {
    fn take_exact(self, n: u64) -> std::io::Take<Self> {
        self.take(n)
    }
}
impl<R: std::io::Read> TakeExact for R {}

#[test]
fn spack_tarball_prefix_is_found_and_outsiders_refused() {
    let fixture = crate::common::repo_root().join(
        "tests/fixtures/spack-v3/signed/blobs/sha256/96/96a55c590468f224a92393a4a5f5afe8247c27656ad94ade35768a3da116e366",
    );
    let gz = std::fs::read(fixture).unwrap();
    let found = extract::inspect_spack_tarball(
        flate2::read::GzDecoder::new(gz.as_slice()),
        Limits::default(),
    )
    .unwrap();
    let prefix = found.prefix;
    assert!(
        String::from_utf8(found.buildinfo)
            .unwrap()
            .contains("relocate_binaries: [bin/demo-app]")
    );
    assert!(
        prefix.starts_with("tmp/research/spack/demo/store/__spack_path_placeholder__/"),
        "{prefix}"
    );
    assert!(
        prefix.ends_with("/linux-x86_64_v4/demo-app-2.0-resh3sdm7oulbae23jllsxfemfp24cba"),
        "{prefix}"
    );

    let a = Raw::new()
        .dir("st/")
        .dir("st/pkg/")
        .file("st/pkg/.spack/binary_distribution", b"buildpath: /st\n")
        .file("st/other/evil", b"x")
        .bytes();
    let err = extract::inspect_spack_tarball(a.as_slice(), Limits::default()).unwrap_err();
    assert!(
        format!("{err:#}").contains("\"st/other/evil\" outside its package prefix \"st/pkg\""),
        "{err:#}"
    );
    let err = extract::inspect_spack_tarball(
        Raw::new().file("x", b"").bytes().as_slice(),
        Limits::default(),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("not a Spack package"),
        "{err:#}"
    );
}
