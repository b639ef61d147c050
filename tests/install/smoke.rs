//! The smoke checks on their own (`--check-only`): the compiler path against the host's gcc,
//! g++ and gfortran in /usr, a broken gfortran that makes it fail, and Debian's Slurm tools.

use std::os::unix::fs::PermissionsExt;

use crate::buildcache::test_install;

#[test]
fn host_compilers_pass_the_compiler_checks() {
    if crate::common::require_tool("gfortran").is_none() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (code, stdout, summary) = test_install(
        t.path(),
        &["--check-only", "--compiler", "--prefix", "/usr"],
    );
    assert_eq!(code, 0, "{stdout}\n{summary}");
    for lang in ["C", "C++", "Fortran"] {
        assert!(
            summary.contains(&format!("| hello world in {lang} (`"))
                && summary.contains(&format!("compiled and ran: \\\"hello from {lang}\\\""))
                || summary.contains(&format!("compiled and ran: \"hello from {lang}\"")),
            "{lang}: {summary}"
        );
    }
    assert!(
        summary.contains("libraries resolve (3 ELF files) | ✅ ok"),
        "{summary}"
    );
    // Debian's Slurm is installed for the tests: its tools answer the version checks.
    if std::path::Path::new("/usr/bin/sinfo").exists() {
        assert!(
            summary.contains("| `sinfo --version` | ✅ ok | slurm"),
            "{summary}"
        );
    }
}

#[test]
fn a_broken_gfortran_fails_the_run() {
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("gcc");
    let bin = prefix.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for c in ["gcc", "g++"] {
        std::os::unix::fs::symlink(format!("/usr/bin/{c}"), bin.join(c)).unwrap();
    }
    let fc = bin.join("gfortran");
    std::fs::write(
        &fc,
        "#!/bin/sh\necho 'gfortran: internal compiler error' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fc, std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let (code, stdout, summary) = test_install(
        work.path(),
        &[
            "--check-only",
            "--compiler",
            "--prefix",
            prefix.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(summary.contains("### test-install: FAILED"), "{summary}");
    assert!(
        summary.contains("| hello world in C (`gcc`) | ✅ ok |"),
        "{summary}"
    );
    assert!(
        summary.contains("| hello world in Fortran (`gfortran`) | ❌ failed |"),
        "{summary}"
    );
    assert!(summary.contains("internal compiler error"), "{summary}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("::error::") && l.contains("1 smoke check(s) failed")),
        "{stdout}"
    );
}
