//! `slurm_factory::elf`: reading DT_NEEDED/RPATH/RUNPATH/PT_INTERP and rewriting them in place,
//! on binaries compiled here with gcc, checked with `readelf` and by running them.

use std::path::Path;

use slurm_factory::elf::{self, ElfError, Field};

use crate::support::{build_app, readelf_dynamic, run};

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn reads_needed_runpath_and_interpreter_as_readelf_does() {
    let t = tempfile::tempdir().unwrap();
    let lib = t.path().join("lib");
    let app = build_app(&lib, &t.path().join("bin"), lib.to_str().unwrap(), &[]);
    let e = elf::read(&app).unwrap().expect("an ELF file");
    assert!(e.is_64 && e.little_endian);
    assert!(
        e.needed.contains(&"libgreet.so".to_string()),
        "{:?}",
        e.needed
    );
    assert!(
        e.needed.iter().any(|n| n.starts_with("libc.so")),
        "{:?}",
        e.needed
    );
    // Debian's gcc links with --enable-new-dtags: RUNPATH, not RPATH.
    let dynamic = readelf_dynamic(&app);
    assert!(
        dynamic.contains(&format!(
            "(RUNPATH)            Library runpath: [{}]",
            lib.display()
        )),
        "{dynamic}"
    );
    assert_eq!(e.runpath.as_ref().unwrap().text(), lib.to_str().unwrap());
    assert!(e.rpath.is_none());
    let interp = e.interpreter.as_ref().unwrap().text();
    assert!(Path::new(&interp).exists(), "interpreter {interp}");
    // Not ELF: None, not an error.
    let script = t.path().join("script.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    assert!(elf::read(&script).unwrap().is_none());
}

#[test]
fn a_truncated_elf_file_is_an_error_not_a_panic() {
    let t = tempfile::tempdir().unwrap();
    let lib = t.path().join("lib");
    let app = build_app(&lib, &t.path().join("bin"), lib.to_str().unwrap(), &[]);
    let bytes = std::fs::read(&app).unwrap();
    for cut in [5, 40, 64, 200, 1000] {
        let p = t.path().join(format!("cut{cut}"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let err = elf::read(&p).unwrap_err();
        assert!(
            matches!(err, ElfError::Malformed { .. }),
            "cut {cut}: {err}"
        );
        assert!(err.to_string().contains("malformed ELF"), "{err}");
    }
}

#[test]
fn rewriting_the_runpath_in_place_makes_the_moved_library_load() {
    let t = tempfile::tempdir().unwrap();
    let long = t
        .path()
        .join("a-long-build-prefix-that-gets-replaced")
        .join("lib");
    let app = build_app(&long, &t.path().join("bin"), long.to_str().unwrap(), &[]);
    let short = t.path().join("s");
    std::fs::create_dir_all(&short).unwrap();
    std::fs::rename(long.join("libgreet.so"), short.join("libgreet.so")).unwrap();
    let (ok, _, err) = run(&app);
    assert!(!ok, "the app must not find its library before the rewrite");
    assert!(err.contains("libgreet.so"), "{err}");
    let size = std::fs::metadata(&app).unwrap().len();

    assert!(elf::set_search_path(&app, short.to_str().unwrap()).unwrap());
    let (ok, out, err) = run(&app);
    assert!(ok, "{err}");
    assert_eq!(out, "hello from greet\n");
    assert_eq!(
        std::fs::metadata(&app).unwrap().len(),
        size,
        "in place: the size is unchanged"
    );
    assert!(readelf_dynamic(&app).contains(&format!("Library runpath: [{}]", short.display())));
    let bytes = std::fs::read(&app).unwrap();
    assert!(
        !contains(&bytes, long.to_str().unwrap().as_bytes()),
        "no stale copy of the old path"
    );
    // Setting the same value again changes nothing.
    assert!(!elf::set_search_path(&app, short.to_str().unwrap()).unwrap());
}

#[test]
fn origin_relative_runpath_survives_moving_the_tree() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("build-root-long-enough-for-origin");
    let app = build_app(
        &root.join("lib"),
        &root.join("bin"),
        root.join("lib").to_str().unwrap(),
        &[],
    );
    assert!(elf::set_search_path(&app, "$ORIGIN/../lib").unwrap());
    let moved = t.path().join("elsewhere");
    std::fs::rename(&root, &moved).unwrap();
    let (ok, out, err) = run(&moved.join("bin/app"));
    assert!(ok, "{err}");
    assert_eq!(out, "hello from greet\n");
}

#[test]
fn a_longer_value_is_refused_and_the_file_is_untouched() {
    let t = tempfile::tempdir().unwrap();
    let lib = t.path().join("l");
    let app = build_app(&lib, &t.path().join("bin"), lib.to_str().unwrap(), &[]);
    let before = std::fs::read(&app).unwrap();
    let longer = format!("{}/and/a/much/longer/path", lib.display());
    let err = elf::set_search_path(&app, &longer).unwrap_err();
    match &err {
        ElfError::DoesNotFit {
            field,
            old_len,
            new_len,
            ..
        } => {
            assert_eq!(*field, Field::Runpath);
            assert_eq!(*old_len, lib.to_str().unwrap().len());
            assert_eq!(*new_len, longer.len());
        }
        other => panic!("unexpected {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("cannot rewrite the RUNPATH in place") && msg.contains("padded"),
        "{msg}"
    );
    assert_eq!(std::fs::read(&app).unwrap(), before, "nothing written");
}

#[test]
fn rpath_entries_are_substituted_like_spack_and_empty_entries_dropped() {
    let t = tempfile::tempdir().unwrap();
    let old = t.path().join("old-store-root-padded-padded-padded");
    let lib = old.join("pkg-1.0-abc/lib");
    let rpath = format!("{}:/usr/lib/unrelated::", lib.display());
    let app = build_app(
        &lib,
        &t.path().join("bin"),
        &rpath,
        &["-Wl,--disable-new-dtags"],
    );
    let e = elf::read(&app).unwrap().unwrap();
    assert!(e.runpath.is_none());
    assert_eq!(e.rpath.as_ref().unwrap().text(), rpath);
    let new = t.path().join("new");
    std::fs::create_dir_all(new.join("pkg-1.0-abc")).unwrap();
    std::fs::rename(old.join("pkg-1.0-abc/lib"), new.join("pkg-1.0-abc/lib")).unwrap();
    let map = vec![
        (b"/nowhere".to_vec(), b"/x".to_vec()),
        (
            old.to_str().unwrap().as_bytes().to_vec(),
            new.to_str().unwrap().as_bytes().to_vec(),
        ),
    ];
    assert!(elf::substitute_prefixes(&app, &map).unwrap());
    let want = format!("{}/pkg-1.0-abc/lib:/usr/lib/unrelated", new.display());
    assert!(
        readelf_dynamic(&app).contains(&format!("(RPATH)              Library rpath: [{want}]"))
    );
    let (ok, out, err) = run(&app);
    assert!(ok, "{err}");
    assert_eq!(out, "hello from greet\n");
    // Nothing left to substitute: unchanged.
    assert!(!elf::substitute_prefixes(&app, &map).unwrap());
}

#[test]
fn the_interpreter_is_substituted_in_place() {
    let t = tempfile::tempdir().unwrap();
    let real = elf::read(Path::new("/bin/sh"))
        .unwrap()
        .unwrap()
        .interpreter
        .unwrap()
        .text();
    let long = t.path().join("padded-loader-directory-xxxxxxxxxxxx");
    let short = t.path().join("ld");
    for d in [&long, &short] {
        std::fs::create_dir_all(d).unwrap();
        std::os::unix::fs::symlink(&real, d.join("ld.so")).unwrap();
    }
    let lib = t.path().join("lib");
    let interp = format!("-Wl,--dynamic-linker={}/ld.so", long.display());
    let app = build_app(
        &lib,
        &t.path().join("bin"),
        lib.to_str().unwrap(),
        &[&interp],
    );
    let map = vec![(
        long.to_str().unwrap().as_bytes().to_vec(),
        short.to_str().unwrap().as_bytes().to_vec(),
    )];
    assert!(elf::substitute_prefixes(&app, &map).unwrap());
    let e = elf::read(&app).unwrap().unwrap();
    assert_eq!(
        e.interpreter.unwrap().text(),
        format!("{}/ld.so", short.display())
    );
    std::fs::remove_dir_all(&long).unwrap();
    let (ok, out, err) = run(&app);
    assert!(ok, "{err}");
    assert_eq!(out, "hello from greet\n");
}
