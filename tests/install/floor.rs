//! The glibc floor (`slurm_factory::glibc_floor`) on ELF files compiled here with the host's gcc
//! (glibc 2.36 in the dev container, ≥ 2.34 on any current CI runner) and on a patched copy whose
//! version-needed entry names `GLIBC_2.99`, cross-checked against `readelf -V` and the real
//! dynamic loader.
//!
//! How the `GLIBC_2.99` copy is made ([`patch_glibc_version`]): a program built on glibc ≥ 2.34
//! needs `GLIBC_2.34` (for `__libc_start_main`). In the `.gnu.version_r` section we find the
//! `Elf64_Vernaux` entry whose `vna_name` points at the string `GLIBC_2.34` in `.dynstr`,
//! overwrite those string bytes with `GLIBC_2.99` (same length, so nothing moves) and set the
//! entry's `vna_hash` to the System V ELF hash of the new name. The entry is then consistent:
//! `readelf -V` lists `GLIBC_2.99` and the loader refuses to start the program with
//! "version `GLIBC_2.99' not found", exactly as on a host older than the file needs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use slurm_factory::glibc_floor::{self, Version};

use crate::glibc_patch::patch_glibc_version;
use crate::support;

/// Builds `dir/bin/app` (C, calls `puts`), `dir/lib/libplain.so` and `dir/bin/cxx` (C++, needs
/// libstdc++'s `GLIBCXX_`/`CXXABI_` versions), plus a script and a data file. Returns `dir`.
pub fn build_tree(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    let bin = dir.join("bin");
    let lib = dir.join("lib");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&lib).unwrap();
    let app_c = support::write(
        &src,
        "app.c",
        "#include <stdio.h>\nint main(void){ puts(\"floor app\"); return 0; }\n",
    );
    support::gcc(&[
        "-O1",
        "-o",
        bin.join("app").to_str().unwrap(),
        app_c.to_str().unwrap(),
    ]);
    let plain_c = support::write(
        &src,
        "plain.c",
        "#include <string.h>\nsize_t plain(const char *s){ return strlen(s); }\n",
    );
    support::gcc(&[
        "-shared",
        "-fPIC",
        "-o",
        lib.join("libplain.so").to_str().unwrap(),
        plain_c.to_str().unwrap(),
    ]);
    let cxx = support::write(
        &src,
        "cxx.cc",
        "#include <iostream>\n#include <string>\n#include <stdexcept>\nint main(int c, char**){ try { if (c > 5) throw std::runtime_error(\"x\"); std::string s(\"floor cxx\"); std::cout << s << std::endl; } catch (const std::exception &e) { return 1; } return 0; }\n",
    );
    let out = Command::new("g++")
        .args(["-O1", "-o"])
        .arg(bin.join("cxx"))
        .arg(&cxx)
        .output()
        .expect("g++ runs");
    assert!(
        out.status.success(),
        "g++ failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(bin.join("script.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::write(dir.join("README"), "not ELF\n").unwrap();
    std::os::unix::fs::symlink("app", bin.join("app-link")).unwrap();
    std::fs::remove_dir_all(&src).unwrap();
    dir.to_owned()
}

/// Every `Name: <FAMILY>_x.y` of `readelf -V` over the files, with the file that needs it.
fn readelf_needs(files: &[PathBuf], family: &str) -> Vec<(Version, String, PathBuf)> {
    let mut out = Vec::new();
    for f in files {
        let o = Command::new("readelf")
            .arg("-V")
            .arg(f)
            .output()
            .expect("readelf runs");
        let text = String::from_utf8_lossy(&o.stdout);
        let mut in_needs = false;
        for line in text.lines() {
            if line.starts_with("Version needs section") {
                in_needs = true;
            } else if line.starts_with("Version ") {
                in_needs = false;
            }
            if !in_needs {
                continue;
            }
            if let Some(rest) = line.split("Name: ").nth(1) {
                let name = rest.split_whitespace().next().unwrap();
                if let Some(v) = name
                    .strip_prefix(family)
                    .and_then(|r| r.strip_prefix('_'))
                    .and_then(Version::parse)
                {
                    out.push((v, name.to_owned(), f.clone()));
                }
            }
        }
    }
    out
}

/// The maximum of `readelf_needs`, the first file in the given (sorted) order winning ties.
fn readelf_max(files: &[PathBuf], family: &str) -> Option<(Version, String, PathBuf)> {
    let mut best: Option<(Version, String, PathBuf)> = None;
    for n in readelf_needs(files, family) {
        if best.as_ref().is_none_or(|b| n.0 > b.0) {
            best = Some(n);
        }
    }
    best
}

/// Builds the tree in `dir` and patches its `bin/app` to need `GLIBC_2.99`.
pub fn build_tree_needing_2_99(dir: &Path) -> PathBuf {
    build_tree(dir);
    patch_glibc_version(&dir.join("bin/app"), "GLIBC_2.34", "GLIBC_2.99", true);
    dir.to_owned()
}

fn elf_files(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| std::fs::read(p).unwrap().starts_with(b"\x7fELF"))
        .collect();
    v.sort();
    v
}

#[test]
fn floor_of_files_built_here_matches_readelf() {
    let t = tempfile::tempdir().unwrap();
    let root = build_tree(t.path());
    let floor = glibc_floor::scan_dir(&root).unwrap();
    let files = elf_files(&root);
    assert_eq!(floor.elf_files, files.len() as u64);
    assert_eq!(files.len(), 3, "{files:?}");

    let g = floor.glibc.clone().expect("a glibc floor");
    let (rv, rname, rfile) = readelf_max(&files, "GLIBC").unwrap();
    assert_eq!(g.version, rv);
    assert_eq!(g.name, rname);
    assert_eq!(root.join(&g.file), rfile);
    // Any program built on glibc >= 2.34 needs GLIBC_2.34 for __libc_start_main.
    assert!(g.version >= Version::parse("2.34").unwrap(), "{g}");
    // bin/app and bin/cxx both need it; the first in path order is kept.
    assert_eq!(g.file, Path::new("bin/app"));

    let x = floor.glibcxx.clone().expect("a GLIBCXX floor from bin/cxx");
    let (xv, xname, _) = readelf_max(&files, "GLIBCXX").unwrap();
    assert_eq!((x.version.clone(), x.name.clone()), (xv, xname));
    assert_eq!(x.file, Path::new("bin/cxx"));
    let c = floor.cxxabi.clone().expect("a CXXABI floor from bin/cxx");
    let (cv, _, _) = readelf_max(&files, "CXXABI").unwrap();
    assert_eq!(c.version, cv);

    // objdump -T agrees that the GLIBC_2.34 need comes from a versioned dynamic symbol.
    let o = Command::new("objdump")
        .arg("-T")
        .arg(root.join("bin/app"))
        .output()
        .expect("objdump runs");
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(
        t.lines()
            .any(|l| l.contains(&format!("({})", g.name)) || l.contains(&format!(" {} ", g.name))),
        "objdump -T shows no symbol versioned {}:\n{t}",
        g.name
    );

    let text = floor.to_text();
    assert!(
        text.contains(&format!("glibc: {} {} bin/app\n", g.version, g.name)),
        "{text}"
    );
}

#[test]
fn a_copy_patched_to_need_glibc_2_99_raises_the_floor_and_the_loader_agrees() {
    let t = tempfile::tempdir().unwrap();
    let root = build_tree_needing_2_99(t.path());
    let app = root.join("bin/app");

    let readelf = Command::new("readelf")
        .arg("-V")
        .arg(&app)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&readelf.stdout);
    assert!(text.contains("Name: GLIBC_2.99"), "{text}");
    assert!(!text.contains("GLIBC_2.34"), "{text}");

    let floor = glibc_floor::scan_dir(&root).unwrap();
    let g = floor.glibc.unwrap();
    assert_eq!(g.version, Version::parse("2.99").unwrap());
    assert_eq!(g.name, "GLIBC_2.99");
    assert_eq!(g.file, Path::new("bin/app"));
    assert_eq!(
        readelf_max(&elf_files(&root), "GLIBC").unwrap().0,
        g.version
    );

    // The real loader refuses it the way an old host refuses a new build.
    let (ok, _, err) = support::run(&app);
    assert!(!ok);
    assert!(err.contains("GLIBC_2.99' not found"), "{err}");

    // The same tree as a tar stream gives the same floor, with archive paths.
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.append_dir_all("pkg", &root).unwrap();
    let bytes = tar.into_inner().unwrap();
    let from_tar = glibc_floor::scan_tar(bytes.as_slice(), 1 << 30).unwrap();
    let tg = from_tar.glibc.unwrap();
    assert_eq!(tg.name, "GLIBC_2.99");
    assert_eq!(tg.file, Path::new("pkg/bin/app"));
    assert_eq!(from_tar.elf_files, 3);
}

/// One tar entry of `kind` at `path` holding `bytes`.
fn append(tar: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, bytes: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(bytes.len() as u64);
    h.set_mode(0o755);
    tar.append_data(&mut h, path, bytes).unwrap();
}

/// The floor scan is a second reader of the archive the installer unpacks: every entry the
/// installer writes as a file must be scanned, whatever tar calls it, and a damaged or oversized
/// stream is an error, never a lower floor.
#[test]
fn the_tar_scan_sees_every_entry_the_installer_writes_and_refuses_damaged_streams() {
    let t = tempfile::tempdir().unwrap();
    let root = build_tree_needing_2_99(t.path());
    let new = std::fs::read(root.join("bin/app")).unwrap();
    let ok_root = build_tree(&t.path().join("ok"));
    let old = std::fs::read(ok_root.join("bin/app")).unwrap();
    let host = glibc_floor::scan_dir(&ok_root).unwrap().glibc.unwrap();
    assert!(host.version < Version::parse("2.99").unwrap());

    // A "contiguous file" entry (type '7') is unpacked as a regular file (src/install/extract.rs),
    // so its ELF needs count.
    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "pkg/bin/ok", tar::EntryType::Regular, &old);
    append(&mut tar, "pkg/bin/app", tar::EntryType::Continuous, &new);
    let contiguous = tar.into_inner().unwrap();
    let floor = glibc_floor::scan_tar(contiguous.as_slice(), 1 << 30).unwrap();
    let g = floor.glibc.unwrap();
    assert_eq!(
        (g.name.as_str(), g.file.as_path()),
        ("GLIBC_2.99", Path::new("pkg/bin/app"))
    );
    assert_eq!(floor.elf_files, 2);

    // Two entries at one path: whichever one a reader keeps, the higher need counts.
    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "pkg/bin/app", tar::EntryType::Regular, &new);
    append(&mut tar, "pkg/bin/app", tar::EntryType::Regular, &old);
    let twice = tar.into_inner().unwrap();
    let g = glibc_floor::scan_tar(twice.as_slice(), 1 << 30)
        .unwrap()
        .glibc
        .unwrap();
    assert_eq!(g.name, "GLIBC_2.99");

    // Cut short inside the file that needs 2.99: an error, not the floor of what came before.
    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "pkg/bin/ok", tar::EntryType::Regular, &old);
    append(&mut tar, "pkg/bin/app", tar::EntryType::Regular, &new);
    let whole = tar.into_inner().unwrap();
    let cut = &whole[..512 + old.len().div_ceil(512) * 512 + 512 + new.len() / 2];
    let err = glibc_floor::scan_tar(cut, 1 << 30).unwrap_err().to_string();
    assert!(
        err.contains("pkg/bin/app") || err.contains("archive"),
        "{err}"
    );

    // More bytes than allowed (an archive bomb once inflated): refused, naming the cap. Each
    // file fits under the cap; the stream does not.
    let cap = (old.len().max(new.len()) + 1024) as u64;
    assert!((whole.len() as u64) > cap);
    let err = glibc_floor::scan_tar(whole.as_slice(), cap)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("more than {cap} decompressed bytes")),
        "{err}"
    );
    // One file over the cap is named.
    let err = glibc_floor::scan_tar(whole.as_slice(), 4096)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pkg/bin/ok is") && err.contains("more than the 4096 allowed"),
        "{err}"
    );

    // Entries that are not files are not read as ELF: a symlink, a FIFO and a directory.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    tar.append_link(&mut h, "pkg/bin/link", "app").unwrap();
    append(&mut tar, "pkg/fifo", tar::EntryType::Fifo, &[]);
    append(&mut tar, "pkg/dir", tar::EntryType::Directory, &[]);
    let floor = glibc_floor::scan_tar(tar.into_inner().unwrap().as_slice(), 1 << 30).unwrap();
    assert_eq!(floor.elf_files, 0);
    assert!(floor.glibc.is_none());
}

#[test]
fn inconsistent_truncated_and_non_elf_files_are_reported_not_skipped() {
    let t = tempfile::tempdir().unwrap();
    let root = build_tree(t.path());
    let app = root.join("bin/app");

    // The name patched but not the hash: an inconsistent entry is an error naming the file.
    let stale = t.path().join("stale");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::copy(&app, stale.join("app")).unwrap();
    patch_glibc_version(&stale.join("app"), "GLIBC_2.34", "GLIBC_2.99", false);
    let e = glibc_floor::scan_dir(&stale).unwrap_err().to_string();
    assert!(e.contains("vna_hash") && e.contains("stale/app"), "{e}");

    // A truncated copy: reported with its path.
    let cut = t.path().join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    let bytes = std::fs::read(&app).unwrap();
    std::fs::write(cut.join("app"), &bytes[..bytes.len() / 3]).unwrap();
    let e = glibc_floor::scan_dir(&cut).unwrap_err().to_string();
    assert!(e.contains("cut/app") && e.contains("malformed ELF"), "{e}");

    // Only the magic: reported too.
    let magic = t.path().join("magic");
    std::fs::create_dir_all(&magic).unwrap();
    std::fs::write(magic.join("x"), b"\x7fELF").unwrap();
    let e = glibc_floor::scan_dir(&magic).unwrap_err().to_string();
    assert!(e.contains("magic/x"), "{e}");

    // Section headers stripped (e_shoff, e_shnum, e_shstrndx zeroed) while DT_VERNEED remains:
    // the versions cannot be read through goblin, which is an error, not an empty floor.
    let noshdr = t.path().join("noshdr");
    std::fs::create_dir_all(&noshdr).unwrap();
    let mut b = std::fs::read(&app).unwrap();
    b[0x28..0x30].fill(0);
    b[0x3c..0x40].fill(0);
    std::fs::write(noshdr.join("app"), &b).unwrap();
    let e = glibc_floor::scan_dir(&noshdr).unwrap_err().to_string();
    assert!(e.contains("noshdr/app") && e.contains("DT_VERNEED"), "{e}");

    // Nothing ELF: an empty floor, not an error.
    let none = t.path().join("none");
    std::fs::create_dir_all(&none).unwrap();
    std::fs::write(none.join("a.txt"), "text").unwrap();
    let f = glibc_floor::scan_dir(&none).unwrap();
    assert_eq!(f.elf_files, 0);
    assert!(f.glibc.is_none());
}

#[test]
fn the_host_glibc_is_read_from_the_mapped_libc_and_matches_ldd() {
    let host = glibc_floor::host_glibc().unwrap();
    assert!(host.path.is_absolute());
    let out = Command::new("ldd").arg("--version").output().unwrap();
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let ldd = Version::parse(first.split_whitespace().last().unwrap()).unwrap();
    assert_eq!(host.version, ldd, "{first}");
    // A static build finds it through the loader instead: the same file.
    let via_loader = glibc_floor::host_libc_via_loader().unwrap();
    assert_eq!(
        std::fs::canonicalize(via_loader).unwrap(),
        std::fs::canonicalize(&host.path).unwrap()
    );
}

/// The `::error::` line of a `test-install` run, unescaped.
fn error_line(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("::error::"))
        .unwrap_or_else(|| panic!("no ::error:: in {stdout}"));
    crate::common::runner_unescape_data(line)
}

#[test]
fn test_install_refuses_a_tarball_whose_floor_is_above_the_hosts_glibc_before_writing() {
    let t = tempfile::tempdir().unwrap();
    let tarball = crate::tarball::build_tarball(t.path(), |stage| {
        let tree = build_tree_needing_2_99(&stage.join("floor-src"));
        std::fs::copy(tree.join("bin/app"), stage.join("view/bin/new-app")).unwrap();
        std::fs::remove_dir_all(stage.join("floor-src")).unwrap();
    });
    let key = crate::buildcache::signer_key();
    // An existing empty mount point stays as it was; a missing prefix is not created.
    for (i, pre_create) in [(0, true), (1, false)] {
        let prefix = t.path().join(format!("p{i}"));
        if pre_create {
            std::fs::create_dir(&prefix).unwrap();
        }
        let work = t.path().join(format!("w{i}"));
        std::fs::create_dir_all(&work).unwrap();
        let (code, stdout, _) = crate::buildcache::test_install(
            &work,
            &[
                "--tarball",
                tarball.to_str().unwrap(),
                "--prefix",
                prefix.to_str().unwrap(),
                "--trusted-key",
                key.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 1, "{stdout}");
        let err = error_line(&stdout);
        let host = glibc_floor::host_glibc().unwrap();
        assert!(
            err.contains(&format!(
                "({}): view/bin/new-app needs GLIBC_2.99",
                host.path.display()
            )) && err.contains("needs glibc 2.99 but this host has glibc")
                && err.contains(crate::tarball::NAME),
            "{err}"
        );
        if pre_create {
            assert_eq!(std::fs::read_dir(&prefix).unwrap().count(), 0, "untouched");
        } else {
            assert!(!prefix.exists(), "nothing written");
        }
    }
}

#[test]
fn test_install_refuses_a_buildcache_whose_floor_is_above_the_hosts_glibc_before_writing() {
    use crate::synth::{Node, Package, write_cache};
    let t = tempfile::tempdir().unwrap();
    let good = build_tree(&t.path().join("good"));
    let bad = build_tree_needing_2_99(&t.path().join("bad"));
    let read = |p: PathBuf| std::fs::read(p).unwrap();
    let dep = Node::new("libplain", "1.0", "plainaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    let mut root = Node::new("hello", "1.0", "helloaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    root.deps.push(serde_json::json!({
        "name": dep.name, "hash": dep.hash,
        "parameters": {"deptypes": ["build", "link"], "virtuals": []}
    }));
    let packages = [
        Package {
            node: dep.clone(),
            dag: vec![],
            files: vec![(
                "lib/libplain.so".into(),
                read(good.join("lib/libplain.so")),
                0o755,
            )],
            text: vec![],
        },
        Package {
            node: root.clone(),
            dag: vec![dep.clone()],
            files: vec![
                ("bin/app".into(), read(bad.join("bin/app")), 0o755),
                ("bin/cxx".into(), read(good.join("bin/cxx")), 0o755),
            ],
            text: vec![],
        },
    ];
    let cache = t.path().join("cache");
    write_cache(&cache, &packages);
    let prefix = t.path().join("prefix");
    let key = crate::buildcache::signer_key();
    let (code, stdout, _) = crate::buildcache::test_install(
        t.path(),
        &[
            "--buildcache",
            &format!("file://{}", cache.display()),
            "--spec",
            "hello",
            "--prefix",
            prefix.to_str().unwrap(),
            "--trusted-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{stdout}");
    let err = error_line(&stdout);
    assert!(
        err.contains("needs glibc 2.99 but this host has glibc")
            && err.contains("hello@1.0/helloaa")
            && err.contains("helloaa: bin/app needs GLIBC_2.99"),
        "{err}"
    );
    assert!(!prefix.exists(), "nothing written, not even the dependency");
}

#[test]
fn a_tarball_within_the_hosts_glibc_installs_and_its_floor_is_in_the_summary() {
    let t = tempfile::tempdir().unwrap();
    let tarball = crate::tarball::build_tarball(t.path(), |_| {});
    let want = readelf_max(&[t.path().join("stage/view/bin/app")], "GLIBC").unwrap();
    let key = crate::buildcache::signer_key();
    let prefix = t.path().join("p");
    let (code, stdout, summary) = crate::buildcache::test_install(
        t.path(),
        &[
            "--tarball",
            tarball.to_str().unwrap(),
            "--prefix",
            prefix.to_str().unwrap(),
            "--trusted-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stdout}");
    assert!(
        summary.contains(&format!(
            "install script ran; glibc floor {} ({}, view/bin/app)",
            want.0, want.1
        )),
        "{summary}"
    );
}
