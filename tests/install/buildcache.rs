//! Installing from the real Spack 1.0 buildcache in tests/fixtures/spack-v3/signed with the
//! `test-install` binary: relocation proven by running the installed demo-app, and every
//! tampering refused with nothing installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;

const APP: &str = "linux-x86_64_v4/demo-app-2.0-resh3sdm7oulbae23jllsxfemfp24cba";
const LIB: &str = "linux-x86_64_v4/demo-lib-1.0-or7dti47ajgrd2y5bgs2dujuath2dz3p";
const BUILDPATH: &str = "/tmp/research/spack/demo/store/__spack_path_placeholder__/__spack_path_placeholder__/__spack_path_placeholder__/__spack_path_pla";
const LIB_TARBALL: &str =
    "blobs/sha256/aa/aaabfbfcf309a896016154087cab77adb725da675df94849d32b2a0ee0bd7bec";
const APP_MANIFEST: &str =
    "v3/manifests/spec/demo-app/demo-app-2.0-resh3sdm7oulbae23jllsxfemfp24cba.spec.manifest.json";

pub fn fixtures() -> PathBuf {
    common::repo_root().join("tests/fixtures/spack-v3")
}

pub fn signer_key() -> PathBuf {
    fixtures().join("keys/demo-signer.pub.asc")
}

/// A writable copy of the signed fixture buildcache.
pub fn copy_signed(dir: &Path) -> PathBuf {
    let dst = dir.join("cache");
    let st = Command::new("cp")
        .arg("-r")
        .arg(fixtures().join("signed"))
        .arg(&dst)
        .status()
        .unwrap();
    assert!(st.success());
    dst
}

/// Runs test-install as in Actions; returns (exit code, stdout, summary).
pub fn test_install(work: &Path, args: &[&str]) -> (i32, String, String) {
    let out = common::in_actions("test-install", work)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let summary = std::fs::read_to_string(work.join("summary.md")).unwrap();
    (out.status.code().unwrap_or(-1), stdout, summary)
}

fn install_args<'a>(cache: &'a str, prefix: &'a str, key: &'a str) -> Vec<&'a str> {
    vec![
        "--buildcache",
        cache,
        "--spec",
        "demo-app",
        "--prefix",
        prefix,
        "--trusted-key",
        key,
    ]
}

/// Collapses the leading `/` padding Spack's binary relocation puts in front of a shortened
/// C string (`////new/prefix` is the same path as `/new/prefix`).
fn unpad(s: &str) -> String {
    format!("/{}", s.trim_start_matches('/'))
}

/// The proof relocation worked: the installed demo-app finds the relocated demo-lib (through
/// its rewritten RUNPATH, no `LD_LIBRARY_PATH`) and prints the library's embedded prefix
/// string, which must be demo-lib's new prefix under `prefix`.
pub fn assert_demo_app_prints_its_new_lib_prefix(prefix: &Path) {
    let out = Command::new(prefix.join(APP).join("bin/demo-app"))
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        unpad(printed.trim()),
        prefix.join(LIB).to_str().unwrap(),
        "{printed:?}"
    );
}

#[test]
fn demo_app_installs_relocated_into_a_prefix_of_a_different_length_and_runs() {
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("opt/sw");
    assert_ne!(prefix.to_str().unwrap().len(), BUILDPATH.len());
    let cache = format!("file://{}", fixtures().join("signed").display());
    let key = signer_key();
    let (code, stdout, summary) = test_install(
        t.path(),
        &install_args(&cache, prefix.to_str().unwrap(), key.to_str().unwrap()),
    );
    assert_eq!(code, 0, "{stdout}");
    assert!(summary.contains("### test-install: passed"), "{summary}");
    assert!(
        summary.contains("| install `demo-lib@1.0/or7dti4` | ✅ ok |"),
        "{summary}"
    );
    assert!(
        summary.contains("| install `demo-app@2.0/resh3sd` | ✅ ok |"),
        "{summary}"
    );
    assert!(summary.contains("libraries resolve ("), "{summary}");

    let app = prefix.join(APP);
    let lib = prefix.join(LIB);
    assert_demo_app_prints_its_new_lib_prefix(&prefix);
    // The script points at the new prefix, and running it runs the relocated binary.
    let script = std::fs::read_to_string(app.join("bin/demo-app.sh")).unwrap();
    assert_eq!(
        script,
        format!("#!/bin/sh\nexec {}/bin/demo-app \"$@\"\n", app.display())
    );
    let out = Command::new(app.join("bin/demo-app.sh")).output().unwrap();
    assert_eq!(
        unpad(String::from_utf8(out.stdout).unwrap().trim()),
        lib.to_str().unwrap()
    );
    // Links: the absolute one re-pointed into the new prefix, the relative one untouched.
    assert_eq!(
        std::fs::read_link(app.join("bin/abs-link")).unwrap(),
        app.join("bin/demo-app")
    );
    assert_eq!(
        std::fs::read_link(app.join("bin/rel-link")).unwrap(),
        Path::new("demo-app")
    );
    // The header (a text file) names the new prefix; no file in the tree names the build path.
    let header = std::fs::read_to_string(lib.join("include/demo.h")).unwrap();
    assert!(
        header.starts_with(&format!("/* installed at {} */", lib.display())),
        "{header}"
    );
    let elf = slurm_factory::elf::read(&app.join("bin/demo-app"))
        .unwrap()
        .unwrap();
    let search = elf.runpath.or(elf.rpath).unwrap().text();
    assert_eq!(search, lib.join("lib").to_str().unwrap());
    for f in [
        app.join("bin/demo-app"),
        app.join("bin/demo-app.sh"),
        lib.join("lib/libdemo.so"),
        lib.join("include/demo.h"),
    ] {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes
                .windows(BUILDPATH.len())
                .any(|w| w == BUILDPATH.as_bytes()),
            "{} still names the build path",
            f.display()
        );
    }
    // Nothing of the staging is left beside the prefixes.
    let left: Vec<_> = std::fs::read_dir(&prefix)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".slurm-factory-staging"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Installing again finds both installed and changes nothing.
    let again = tempfile::tempdir().unwrap();
    let (code, stdout, summary) = test_install(
        again.path(),
        &install_args(&cache, prefix.to_str().unwrap(), key.to_str().unwrap()),
    );
    assert_eq!(code, 0, "{stdout}");
    assert!(summary.contains("already installed"), "{summary}");
}

/// Runs an install that must be refused; asserts exit 1, an `::error::` containing `want`, and
/// that the prefix holds nothing.
fn assert_refused(cache: &Path, key: &Path, spec: &str, want: &str) {
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("p");
    let url = format!("file://{}", cache.display());
    let (code, stdout, _) = test_install(
        t.path(),
        &[
            "--buildcache",
            &url,
            "--spec",
            spec,
            "--prefix",
            prefix.to_str().unwrap(),
            "--trusted-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{stdout}");
    let err = stdout
        .lines()
        .find(|l| l.starts_with("::error::"))
        .unwrap_or_else(|| panic!("no ::error:: in {stdout}"));
    assert!(err.contains(want), "{err}");
    let left: Vec<_> = std::fs::read_dir(&prefix)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let files: Vec<_> = left
        .iter()
        .filter(|p| !p.is_dir() || std::fs::read_dir(p).unwrap().next().is_some())
        .collect();
    assert!(files.is_empty(), "nothing may be installed: {files:?}");
}

#[test]
fn a_blob_whose_sha256_differs_from_the_manifest_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let cache = copy_signed(t.path());
    // Same size, one byte changed: only the digest can tell.
    let p = cache.join(LIB_TARBALL);
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len();
    b[n - 20] ^= 0x55;
    std::fs::write(&p, b).unwrap();
    assert_refused(
        &cache,
        &signer_key(),
        "demo-app",
        "demo-lib@1.0/or7dti4 (manifest v3/manifests/spec/demo-lib/demo-lib-1.0-or7dti47ajgrd2y5bgs2dujuath2dz3p.spec.manifest.json): blob blobs/sha256/aa/aaabfbfcf309a896016154087cab77adb725da675df94849d32b2a0ee0bd7bec (application/vnd.spack.install.v2.tar+gzip) has sha256",
    );
}

#[test]
fn a_manifest_whose_record_was_edited_is_refused_by_its_signature() {
    let t = tempfile::tempdir().unwrap();
    let cache = copy_signed(t.path());
    // Point the manifest's tarball record at the spec blob's digest: a checksum swap inside
    // signed text.
    let p = cache.join(APP_MANIFEST);
    let text = std::fs::read_to_string(&p).unwrap();
    let edited = text.replace(
        "96a55c590468f224a92393a4a5f5afe8247c27656ad94ade35768a3da116e366",
        "aaabfbfcf309a896016154087cab77adb725da675df94849d32b2a0ee0bd7bec",
    );
    assert_ne!(text, edited);
    std::fs::write(&p, edited).unwrap();
    assert_refused(
        &cache,
        &signer_key(),
        "demo-app",
        "demo-app-2.0-resh3sdm7oulbae23jllsxfemfp24cba.spec.manifest.json: bad signature",
    );
}

#[test]
fn a_damaged_signature_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let cache = copy_signed(t.path());
    let p = cache.join(APP_MANIFEST);
    let text = std::fs::read_to_string(&p).unwrap();
    let sig_start = text.find("-----BEGIN PGP SIGNATURE-----").unwrap() + 40;
    let mut bytes = text.into_bytes();
    // Flip a base64 character inside the signature packet.
    let i = sig_start + 30;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    std::fs::write(&p, bytes).unwrap();
    assert_refused(
        &cache,
        &signer_key(),
        "demo-app",
        "demo-app@2.0/resh3sd (manifest v3/manifests/spec/demo-app/",
    );
}

#[test]
fn a_cache_signed_by_a_key_that_is_not_trusted_is_refused() {
    use sequoia_openpgp::serialize::SerializeInto;
    let t = tempfile::tempdir().unwrap();
    let (cert, _) =
        sequoia_openpgp::cert::CertBuilder::general_purpose(Some("Someone Else <x@example.com>"))
            .generate()
            .unwrap();
    let other = t.path().join("other.asc");
    std::fs::write(&other, cert.armored().to_vec().unwrap()).unwrap();
    assert_refused(
        &fixtures().join("signed"),
        &other,
        "demo-app",
        "signed by an untrusted or unknown key",
    );
}

#[test]
fn unsigned_manifests_are_refused() {
    assert_refused(
        &fixtures().join("unsigned"),
        &signer_key(),
        "demo-lib",
        "not signed",
    );
}

#[test]
fn an_unknown_or_ambiguous_spec_is_explained() {
    let cache = fixtures().join("signed");
    assert_refused(&cache, &signer_key(), "nope", "no spec matching nope");
    assert_refused(
        &cache,
        &signer_key(),
        "demo-app@9",
        "(it has: demo-app@2.0/resh3sd, demo-lib@1.0/or7dti4)",
    );
    assert_refused(&cache, &signer_key(), "/", "is not understood");
}

#[test]
fn a_prefix_too_long_for_the_padded_build_path_is_refused_and_cleaned_up() {
    let t = tempfile::tempdir().unwrap();
    let deep = t.path().join("x".repeat(200));
    let url = format!("file://{}", fixtures().join("signed").display());
    let key = signer_key();
    let (code, stdout, _) = test_install(
        t.path(),
        &[
            "--buildcache",
            &url,
            "--spec",
            "/or7dti4",
            "--prefix",
            deep.to_str().unwrap(),
            "--trusted-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("because the new prefix is longer") && stdout.contains("padded_length"),
        "{stdout}"
    );
    assert!(!deep.join(LIB).exists());
}

const FPR: &str = "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD";

#[test]
fn a_pinned_fingerprint_trusts_only_the_key_the_cache_publishes_under_it() {
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("p");
    let url = format!("file://{}", fixtures().join("signed").display());
    let (code, stdout, summary) = test_install(
        t.path(),
        &[
            "--buildcache",
            &url,
            "--spec",
            "demo-lib",
            "--prefix",
            prefix.to_str().unwrap(),
            "--trusted-fingerprint",
            FPR,
        ],
    );
    assert_eq!(code, 0, "{stdout}");
    assert!(
        summary.contains(&format!("verified (signer {FPR})")),
        "{summary}"
    );
    assert!(prefix.join(LIB).join("lib/libdemo.so").is_file());

    // A fingerprint the cache does not publish: refused, nothing installed.
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("p");
    let (code, stdout, _) = test_install(
        t.path(),
        &[
            "--buildcache",
            &url,
            "--spec",
            "demo-lib",
            "--prefix",
            prefix.to_str().unwrap(),
            "--trusted-fingerprint",
            "0123456789ABCDEF0123456789ABCDEF01234567",
        ],
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("publishes no key 0123456789ABCDEF"),
        "{stdout}"
    );
    assert!(!prefix.exists());

    // A short key id is not a pin.
    let (code, stdout, _) = test_install(
        t.path(),
        &[
            "--buildcache",
            &url,
            "--spec",
            "demo-lib",
            "--prefix",
            prefix.to_str().unwrap(),
            "--trusted-fingerprint",
            "E145321FBC9F04BD",
        ],
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("give all 40 hex digits"), "{stdout}");
}

#[test]
fn a_cache_publishing_its_own_key_is_not_trusted_without_a_pin() {
    // The fixture publishes the signer's key; with no key file and no pin nothing is trusted.
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("p");
    let url = format!("file://{}", fixtures().join("signed").display());
    let (code, stdout, _) = test_install(
        t.path(),
        &[
            "--buildcache",
            &url,
            "--spec",
            "demo-lib",
            "--prefix",
            prefix.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("no trusted keys"), "{stdout}");
    assert!(!prefix.exists());
}

#[test]
fn an_installed_prefix_whose_spec_is_another_build_is_refused_and_left_alone() {
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("p");
    let url = format!("file://{}", fixtures().join("signed").display());
    let key = signer_key();
    let args = [
        "--buildcache",
        &url,
        "--spec",
        "demo-app",
        "--prefix",
        prefix.to_str().unwrap(),
        "--trusted-key",
        key.to_str().unwrap(),
    ];
    let (code, stdout, _) = test_install(t.path(), &args);
    assert_eq!(code, 0, "{stdout}");

    // demo-lib's prefix now claims to hold another build.
    let spec_json = prefix.join(LIB).join(".spack/spec.json");
    let text = std::fs::read_to_string(&spec_json).unwrap();
    let other = "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";
    std::fs::write(
        &spec_json,
        text.replace("or7dti47ajgrd2y5bgs2dujuath2dz3p", other),
    )
    .unwrap();
    let (code, stdout, _) = test_install(t.path(), &args);
    assert_eq!(code, 1, "{stdout}");
    let err = stdout.lines().find(|l| l.starts_with("::error::")).unwrap();
    assert!(
        err.contains(&format!(
            "{} holds another build: its .spack/spec.json is demo-lib@1.0/{other}, not /or7dti47ajgrd2y5bgs2dujuath2dz3p",
            prefix.join(LIB).display()
        )) && err.contains("remove it or choose another --prefix"),
        "{err}"
    );

    // A damaged spec file is not "installed" either.
    std::fs::write(&spec_json, "{\"spec\": trunc").unwrap();
    let (code, stdout, _) = test_install(t.path(), &args);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{} is not a readable Spack spec file",
            spec_json.display()
        )),
        "{stdout}"
    );
    // Refusing touched nothing: both installed prefixes are still there.
    assert!(prefix.join(LIB).join("lib/libdemo.so").is_file());
    assert!(prefix.join(APP).join("bin/demo-app").is_file());
}

/// Durable once: the install flushes its files with one `syncfs` and syncs only the directories
/// its prefixes were renamed into, never a file at a time (strace counts the calls of the
/// installer and its threads).
#[test]
fn the_install_is_made_durable_with_one_syncfs_and_no_per_file_syncs() {
    let Some(strace) = common::find_tool("strace") else {
        eprintln!("skipped: strace is not installed");
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("opt/sw");
    let cache = format!("file://{}", fixtures().join("signed").display());
    let key = signer_key();
    let log = t.path().join("strace.log");
    let out = Command::new(strace)
        .arg("-f")
        .arg("-qq")
        .arg("-e")
        .arg("trace=fsync,fdatasync,syncfs,sync,sync_file_range")
        .arg("-o")
        .arg(&log)
        .arg(common::bin("test-install"))
        .args(install_args(
            &cache,
            prefix.to_str().unwrap(),
            key.to_str().unwrap(),
        ))
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("GITHUB_ACTIONS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let count = |call: &str| {
        text.lines()
            .filter(|l| l.contains(&format!("{call}(")))
            .count()
    };
    assert_eq!(count("syncfs"), 1, "{text}");
    assert_eq!(count("fdatasync"), 0, "{text}");
    assert_eq!(count("sync_file_range"), 0, "{text}");
    // The prefixes' parent directory and the root: two directory fsyncs.
    assert_eq!(count("fsync"), 2, "{text}");
    assert_demo_app_prints_its_new_lib_prefix(&prefix);
}
