//! `tarball-publish` end to end with real tools: gcc-compiled ELF files in a Spack-like view,
//! GNU tar to unpack, the binaries run from two unpack locations without `LD_LIBRARY_PATH`,
//! Debian's Lmod for `module load slurm`, real GnuPG and `sqv` for the signature, and
//! moto_server on loopback for the upload.

mod common;
#[path = "tarball/floor.rs"]
mod floor;
#[path = "common/glibc_patch.rs"]
mod glibc_patch;
#[path = "tarball/support.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use support::*;

fn pack(build: &Build, output: &Path) -> std::path::PathBuf {
    let out = publish_cmd(build, output).output().unwrap();
    assert!(
        out.status.success(),
        "tarball-publish failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    output.join("slurm-25.11-gcc13.4.0-software.tar.gz")
}

#[test]
fn relocated_binaries_run_from_two_places_without_ld_library_path() {
    let Some(b) = build(false) else { return };
    let out = b.tmp.path().join("dist");
    let tarball = pack(&b, &out);
    // Nothing the old RPATHs name exists any more.
    b.remove_build_tree();
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert!(
        sums.ends_with("  slurm-25.11-gcc13.4.0-software.tar.gz\n"),
        "{sums}"
    );

    let short = b.tmp.path().join("a");
    let long = b
        .tmp
        .path()
        .join("a-much-longer-location/with/several/levels");
    for root in [&short, &long] {
        unpack_and_install(&tarball, root);
        let view = root.join("view");
        for cmd in ["sinfo", "srun"] {
            let (ok, text) = run_clean(Command::new(view.join("bin").join(cmd)).arg("--version"));
            assert!(ok, "{cmd} from {}: {text}", root.display());
            assert_eq!(text, "slurm 25.11.6\n");
        }
        // RUNPATH stays RUNPATH, RPATH stays RPATH, both $ORIGIN-relative, no build path left.
        let d = readelf_dynamic(&view.join("bin/sinfo"));
        assert!(
            d.contains("(RUNPATH)") && d.contains("[$ORIGIN/../lib]"),
            "{d}"
        );
        let d = readelf_dynamic(&view.join("bin/srun"));
        assert!(
            d.contains("(RPATH)") && d.contains("[$ORIGIN/../lib]"),
            "{d}"
        );
        let d = readelf_dynamic(&view.join("lib/slurm/auth_demo.so"));
        assert!(d.contains("[$ORIGIN/..]"), "{d}");
        assert!(!d.contains("__spack_path_placeholder__"), "{d}");
        // Text files name the new location.
        let seff = std::fs::read_to_string(view.join("bin/seff")).unwrap();
        assert!(
            seff.contains(&format!("exec \"{}/bin/sinfo\"", view.display())),
            "{seff}"
        );
        let (ok, text) = run_clean(Command::new(view.join("bin/seff")).arg("-V"));
        assert!(ok, "{text}");
        let conf = std::fs::read_to_string(root.join("data/slurm.conf")).unwrap();
        assert!(
            conf.contains(&format!("PluginDir={}/lib/slurm\n", view.display())),
            "{conf}"
        );
        // What a runtime does not need is gone; man pages of commands stay.
        for gone in [
            "include",
            "lib/libdemo.a",
            "lib/pkgconfig",
            "share/doc",
            "share/man/man3",
            "lib/python3/__pycache__",
        ] {
            assert!(!view.join(gone).exists(), "{gone} shipped");
        }
        assert!(view.join("share/man/man1/sinfo.1").is_file());
        assert_eq!(
            std::fs::read_link(view.join("lib/libdemo-abs.so")).unwrap(),
            Path::new("libdemo.so.1")
        );
    }

    // Idempotent in place; a moved tree is relocated again.
    let before = std::fs::read(short.join("view/bin/seff")).unwrap();
    let again = Command::new("sh")
        .arg(short.join("data/install.sh"))
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to do"));
    assert_eq!(std::fs::read(short.join("view/bin/seff")).unwrap(), before);
    let moved = b.tmp.path().join("moved");
    std::fs::rename(&short, &moved).unwrap();
    assert!(
        Command::new("sh")
            .arg(moved.join("data/install.sh"))
            .status()
            .unwrap()
            .success()
    );
    let seff = std::fs::read_to_string(moved.join("view/bin/seff")).unwrap();
    assert!(
        seff.contains(&format!("{}/bin/sinfo", moved.join("view").display())),
        "{seff}"
    );
    assert!(!seff.contains(&short.display().to_string()) || moved.starts_with(&short));
}

#[test]
fn module_load_slurm_works_under_lmod() {
    let init = Path::new("/usr/share/lmod/lmod/init/bash");
    if !init.is_file() {
        assert!(!common::under_ci(), "Debian's lmod is not installed");
        eprintln!("skipped: lmod is not installed");
        return;
    }
    let Some(b) = build(true) else { return };
    let tarball = pack(&b, &b.tmp.path().join("dist"));
    b.remove_build_tree();
    let root = b.tmp.path().join("site/slurm");
    unpack_and_install(&tarball, &root);
    assert!(root.join("modules/openmpi/5.0.8.lua").is_file());
    let script = format!(
        r#"set -e
unset LD_LIBRARY_PATH SLURM_CONF
source {init}
module use {root}/modules
module load slurm
sinfo --version
echo "ROOT=$SLURM_ROOT"
echo "CONF=$SLURM_CONF"
echo "LD=${{LD_LIBRARY_PATH:-unset}}"
case ":$MANPATH:" in *":{root}/view/share/man:"*) echo MANPATH-OK;; esac
module load openmpi
echo "OPAL=$OPAL_PREFIX"
module unload slurm
echo "AFTER=${{SLURM_CONF:-unset}}"
export SLURM_CONF=/srv/mine.conf
module load slurm
echo "MINE=$SLURM_CONF"
"#,
        init = init.display(),
        root = root.display()
    );
    let (ok, text) = run_clean(Command::new("bash").arg("-c").arg(&script));
    assert!(ok, "{text}");
    let view = root.join("view");
    for want in [
        "slurm 25.11.6".to_owned(),
        format!("ROOT={}", view.display()),
        "CONF=/etc/slurm/slurm.conf".to_owned(),
        "LD=unset".to_owned(),
        "MANPATH-OK".to_owned(),
        format!("OPAL={}", view.display()),
        "AFTER=unset".to_owned(),
        "MINE=/srv/mine.conf".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == want),
            "missing {want:?} in:\n{text}"
        );
    }
}

#[test]
fn two_runs_give_identical_bytes_with_normalised_entries() {
    let Some(b) = build(true) else { return };
    let one = pack(&b, &b.tmp.path().join("one"));
    let two = pack(&b, &b.tmp.path().join("two"));
    assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
    // gzip -t accepts it; every entry is root-owned with the epoch's mtime.
    assert!(
        Command::new("gzip")
            .arg("-t")
            .arg(&one)
            .status()
            .unwrap()
            .success()
    );
    let list = Command::new("tar")
        .args(["--numeric-owner", "--full-time", "-tvzf"])
        .arg(&one)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    let names: Vec<&str> = list
        .lines()
        .map(|l| l.split_whitespace().nth(5).unwrap())
        .collect();
    assert_eq!(names.first(), Some(&"view/"));
    assert_eq!(names.last(), Some(&"data/MANIFEST"));
    for l in list.lines() {
        assert!(l.contains(" 0/0 "), "{l}");
        assert!(l.contains("2023-11-14 22:13:20"), "{l}");
    }
    // A different SOURCE_DATE_EPOCH gives different bytes.
    let other = b.tmp.path().join("three");
    let out = publish_cmd(&b, &other)
        .env("SOURCE_DATE_EPOCH", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_ne!(
        std::fs::read(other.join("slurm-25.11-gcc13.4.0-software.tar.gz")).unwrap(),
        std::fs::read(&one).unwrap()
    );
    // The manifest names every file with its sha256, the specs and the toolchain.
    let dir = b.tmp.path().join("x");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(
        Command::new("tar")
            .arg("-xzf")
            .arg(&one)
            .arg("-C")
            .arg(&dir)
            .status()
            .unwrap()
            .success()
    );
    let manifest = std::fs::read_to_string(dir.join("data/MANIFEST")).unwrap();
    assert!(manifest.contains("toolchain gcc@13.4.0\n"));
    assert!(manifest.contains(&format!("spec slurm@25-11-6-1/{HASH_SLURM}\n")));
    let mut files = 0;
    for line in manifest.lines().filter(|l| l.starts_with("file ")) {
        let parts: Vec<&str> = line.splitn(4, ' ').collect();
        let bytes = std::fs::read(dir.join(parts[3])).unwrap();
        assert_eq!(
            parts[1],
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            "{line}"
        );
        files += 1;
    }
    assert!(files >= 10, "{manifest}");
}

#[test]
fn the_signature_verifies_with_gpg_and_sqv() {
    let Some(b) = build(false) else { return };
    let Some(sqv) = common::require_tool("sqv") else {
        return;
    };
    let Some(gpg) = common::require_tool("gpg") else {
        return;
    };
    let keys = common::repo_root().join("tests/fixtures/spack-v3/keys");
    let out = b.tmp.path().join("dist");
    let res = publish_cmd(&b, &out)
        .arg("--key-file")
        .arg(keys.join("demo-signer.sec.asc"))
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let tarball = out.join("slurm-25.11-gcc13.4.0-software.tar.gz");
    let sig = out.join("slurm-25.11-gcc13.4.0-software.tar.gz.asc");
    assert!(
        std::fs::read_to_string(&sig)
            .unwrap()
            .starts_with("-----BEGIN PGP SIGNATURE-----")
    );
    let s = Command::new(&sqv)
        .arg("--keyring")
        .arg(keys.join("demo-signer.pub.asc"))
        .arg(&sig)
        .arg(&tarball)
        .output()
        .unwrap();
    assert!(
        s.status.success(),
        "sqv: {}",
        String::from_utf8_lossy(&s.stderr)
    );
    let home = tempfile::tempdir().unwrap();
    let gpg_cmd = |args: &[&std::ffi::OsStr]| {
        Command::new(&gpg)
            .env("GNUPGHOME", home.path())
            .args(["--batch", "--no-tty"])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(
        gpg_cmd(&[
            "--import".as_ref(),
            keys.join("demo-signer.pub.asc").as_os_str()
        ])
        .status
        .success()
    );
    let v = gpg_cmd(&["--verify".as_ref(), sig.as_os_str(), tarball.as_os_str()]);
    assert!(
        v.status.success(),
        "gpg: {}",
        String::from_utf8_lossy(&v.stderr)
    );
    // A changed byte fails both.
    let mut bytes = std::fs::read(&tarball).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&tarball, bytes).unwrap();
    assert!(
        !gpg_cmd(&["--verify".as_ref(), sig.as_os_str(), tarball.as_os_str()])
            .status
            .success()
    );
    let s = Command::new(&sqv)
        .arg("--keyring")
        .arg(keys.join("demo-signer.pub.asc"))
        .arg(&sig)
        .arg(&tarball)
        .status()
        .unwrap();
    assert!(!s.success());
}

/// The contract with `test-install --tarball`: it verifies our `.asc` and `SHA256SUMS`, unpacks
/// with its hardened extractor, runs our `data/install.sh` and smoke-tests the result.
#[test]
fn test_install_installs_and_checks_our_tarball() {
    let Some(b) = build(false) else { return };
    let keys = common::repo_root().join("tests/fixtures/spack-v3/keys");
    let out = b.tmp.path().join("dist");
    let res = publish_cmd(&b, &out)
        .arg("--key-file")
        .arg(keys.join("demo-signer.sec.asc"))
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    b.remove_build_tree();
    let prefix = b.tmp.path().join("opt/slurm");
    let (ok, text) = run_clean(
        common::scrubbed("test-install")
            .arg("--tarball")
            .arg(out.join("slurm-25.11-gcc13.4.0-software.tar.gz"))
            .arg("--prefix")
            .arg(&prefix)
            .arg("--trusted-key")
            .arg(keys.join("demo-signer.pub.asc")),
    );
    assert!(ok, "test-install refused our tarball:\n{text}");
    let seff = std::fs::read_to_string(prefix.join("view/bin/seff")).unwrap();
    assert!(
        seff.contains(&prefix.join("view").display().to_string()),
        "{seff}"
    );
    // The pipeline passes only the pinned fingerprint: the public key we published beside
    // the tarball resolves it.
    let fpr = "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD";
    let published = std::fs::read_to_string(out.join(format!("{fpr}.pub.asc"))).unwrap();
    assert!(published.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    assert!(!published.contains("PRIVATE"));
    let prefix = b.tmp.path().join("opt/pinned");
    let (ok, text) = run_clean(
        common::scrubbed("test-install")
            .arg("--tarball")
            .arg(out.join("slurm-25.11-gcc13.4.0-software.tar.gz"))
            .arg("--prefix")
            .arg(&prefix)
            .args(["--trusted-fingerprint", fpr]),
    );
    assert!(
        ok,
        "test-install refused our tarball by fingerprint:\n{text}"
    );
    assert!(text.contains(&format!("trusting {fpr}")), "{text}");
}

fn fails_cleanly(mut c: Command, output: &Path, want: &str) {
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "succeeded: {text}");
    assert!(text.contains(want), "expected {want:?} in:\n{text}");
    assert!(
        !output.exists() || std::fs::read_dir(output).unwrap().next().is_none(),
        "wrote into {}",
        output.display()
    );
}

#[test]
fn bad_inputs_fail_with_clear_errors_and_write_nothing() {
    let Some(b) = build(false) else { return };
    let out = b.tmp.path().join("dist");

    let mut c = common::scrubbed("tarball-publish");
    c.arg("--view")
        .arg(b.tmp.path().join("missing/view"))
        .args([
            "--slurm-version",
            "25.11",
            "--compiler-version",
            "13.4.0",
            "--build-prefix",
            "/slurm-factory/x/install",
            "--output",
        ])
        .arg(&out);
    fails_cleanly(c, &out, "does not exist");

    // A view without Slurm commands.
    std::fs::rename(b.view().join("bin"), b.view().join("bin.away")).unwrap();
    fails_cleanly(publish_cmd(&b, &out), &out, "has no Slurm commands");
    std::fs::rename(b.view().join("bin.away"), b.view().join("bin")).unwrap();

    // An output directory that cannot be created (its parent is a file).
    let file = b.tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    fails_cleanly(
        publish_cmd(&b, &file.join("out")),
        &file.join("out"),
        "cannot create the output directory",
    );

    // A symlink out of the view, a FIFO, a bad version, a bad key.
    std::os::unix::fs::symlink("/etc/passwd", b.view().join("lib/escape")).unwrap();
    fails_cleanly(publish_cmd(&b, &out), &out, "outside the view");
    std::fs::remove_file(b.view().join("lib/escape")).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(b.view().join("lib/fifo"))
            .status()
            .unwrap()
            .success()
    );
    fails_cleanly(publish_cmd(&b, &out), &out, "FIFO");
    std::fs::remove_file(b.view().join("lib/fifo")).unwrap();
    let mut c = common::scrubbed("tarball-publish");
    c.arg("--build-dir")
        .arg(&b.out)
        .args([
            "--slurm-version",
            "25",
            "--compiler-version",
            "13.4.0",
            "--output",
        ])
        .arg(&out);
    fails_cleanly(c, &out, "is not a Slurm version");
    let bad_key = b.tmp.path().join("bad.asc");
    std::fs::write(&bad_key, "not a key").unwrap();
    let mut c = publish_cmd(&b, &out);
    c.arg("--key-file").arg(&bad_key);
    fails_cleanly(c, &out, "key");
    let mut c = publish_cmd(&b, &out);
    c.args(["--destination", "https://example.invalid/x"]);
    fails_cleanly(c, &out, "is not s3://");
    // A destination without a signing key (an unset secret is an empty variable): refused
    // before packing, and nothing reaches the destination.
    let dest = b.tmp.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let mut c = publish_cmd(&b, &out);
    c.env("GPG_PRIVATE_KEY", "")
        .arg("--destination")
        .arg(format!("file://{}/", dest.display()));
    fails_cleanly(c, &out, "refusing to publish");
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);
    // And the good run still works after all that; an empty GPG_PRIVATE_KEY means "not
    // signed" for a local build, not a key error, and it says so loudly.
    let res = publish_cmd(&b, &out)
        .env("GPG_PRIVATE_KEY", "")
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(
        log.lines()
            .any(|l| l.contains("warning") && l.contains("NOT SIGNED")),
        "{log}"
    );
    assert!(out.join("slurm-25.11-gcc13.4.0-software.tar.gz").is_file());
    assert!(
        !out.join("slurm-25.11-gcc13.4.0-software.tar.gz.asc")
            .exists()
    );
}

#[path = "s3/harness.rs"]
mod harness;
#[path = "tarball/publish.rs"]
mod publish;

#[test]
fn the_install_script_is_posix_sh_and_shellcheck_clean() {
    common::assert_posix_sh(&common::repo_root().join("src/tarball/templates/install.sh"));
}

/// A failing rewrite exits non-zero and says why.
#[test]
fn the_install_script_fails_loudly() {
    let Some(b) = build(false) else { return };
    let tarball = pack(&b, &b.tmp.path().join("dist"));
    let root = b.tmp.path().join("u");
    std::fs::create_dir_all(&root).unwrap();
    assert!(
        Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&root)
            .status()
            .unwrap()
            .success()
    );
    // A listed file that went missing.
    std::fs::remove_file(root.join("view/bin/seff")).unwrap();
    let out = Command::new("sh")
        .arg(root.join("data/install.sh"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("listed in relocate-text.txt but missing")
    );
    // A list naming a path outside the tarball.
    std::fs::write(root.join("data/relocate-text.txt"), "../../etc/passwd\n").unwrap();
    let out = Command::new("sh")
        .arg(root.join("data/install.sh"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside the tarball"));
}

#[test]
fn relocate_refuses_what_is_not_an_unpacked_tarball_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let relative = common::scrubbed("tarball-publish")
        .args(["relocate", "some/relative/dir"])
        .output()
        .unwrap();
    assert!(!relative.status.success());
    let text = String::from_utf8_lossy(&relative.stderr).into_owned()
        + &String::from_utf8_lossy(&relative.stdout);
    assert!(text.contains("is not an absolute path"), "{text}");

    let empty = common::scrubbed("tarball-publish")
        .arg("relocate")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!empty.status.success());
    let text = String::from_utf8_lossy(&empty.stderr).into_owned()
        + &String::from_utf8_lossy(&empty.stdout);
    assert!(
        text.contains("is not an unpacked slurm-factory tarball"),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Spack 1.0 writes the view root as a symlink to `._view/<hash>`; that is the view to pack.
#[test]
fn a_view_root_that_is_a_symlink_to_spack_1_0s_view_directory_is_packed() {
    let Some(b) = build(false) else { return };
    let real = b.ns.join("._view/4fpwwbutgilgoaz6exlo6ukmzazepvko");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::rename(b.view(), &real).unwrap();
    std::os::unix::fs::symlink(&real, b.view()).unwrap();
    let out = b.tmp.path().join("dist");
    let tarball = pack(&b, &out);
    let root = b.tmp.path().join("unpacked");
    unpack_and_install(&tarball, &root);
    let (ok, text) = run_clean(Command::new(root.join("view/bin/sinfo")).arg("--version"));
    assert!(ok && text == "slurm 25.11.6\n", "{text}");
    assert!(root.join("view/bin/srun").is_file());
}

/// A tarball whose binaries need rewriting but whose relocator is gone (a partial copy) is
/// refused by install.sh with what to do, and nothing is recorded as installed.
#[test]
fn install_sh_refuses_binaries_to_relocate_without_the_relocator() {
    let Some(b) = build(false) else { return };
    let tarball = pack(&b, &b.tmp.path().join("dist"));
    let root = b.tmp.path().join("partial");
    std::fs::create_dir_all(&root).unwrap();
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(root.join("data/relocate-binary.txt"), "view/bin/sinfo\n").unwrap();
    let (ok, text) = run_clean(Command::new("sh").arg(root.join("data/install.sh")));
    assert!(!ok, "{text}");
    assert!(
        text.contains("data/bin/tarball-publish is missing or not executable")
            && text.contains("unpack it again"),
        "{text}"
    );
    assert!(!root.join("data/.installed-prefix").exists());
}

/// `--view <path>` without env/spack.yaml beside it: the path is the view root, so a program
/// whose RPATH is `<view>/lib` gets an `$ORIGIN`-relative one and, unpacked elsewhere with the
/// view gone, still finds its library.
#[test]
fn a_bare_view_is_its_own_root_and_rpaths_into_it_become_origin_relative() {
    let t = tempfile::tempdir().unwrap();
    let view = t.path().join("bare/view");
    let lib = view.join("lib");
    let bin = view.join("bin");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let src = t.path().join("greet.c");
    std::fs::write(
        &src,
        "const char* greet(void){return \"hello from greet\";}\n",
    )
    .unwrap();
    let gcc = |args: &[&std::ffi::OsStr]| {
        let out = Command::new("gcc").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let so = lib.join("libgreet.so");
    gcc(&[
        "-shared".as_ref(),
        "-fPIC".as_ref(),
        "-o".as_ref(),
        so.as_os_str(),
        src.as_os_str(),
    ]);
    let main = t.path().join("sinfo.c");
    std::fs::write(
        &main,
        "#include <stdio.h>\nconst char* greet(void);\nint main(){ printf(\"slurm 25.11.0 (%s)\\n\", greet()); return 0; }\n",
    )
    .unwrap();
    let sinfo = bin.join("sinfo");
    let l = format!("-L{}", lib.display());
    let rpath = format!("-Wl,-rpath,{}", lib.display());
    gcc(&[
        "-o".as_ref(),
        sinfo.as_os_str(),
        main.as_os_str(),
        l.as_ref(),
        "-lgreet".as_ref(),
        rpath.as_ref(),
    ]);
    assert!(readelf_dynamic(&sinfo).contains(lib.to_str().unwrap()));
    let out = t.path().join("out");
    let res = common::scrubbed("tarball-publish")
        .arg("--view")
        .arg(&view)
        .args([
            "--slurm-version",
            "25.11",
            "--compiler-version",
            "13.4.0",
            "--build-prefix",
            "/slurm-factory/x/install",
            "--output",
        ])
        .arg(&out)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    // The build's view is gone; the tarball is unpacked somewhere else.
    std::fs::remove_dir_all(t.path().join("bare")).unwrap();
    let dir = t.path().join("elsewhere/slurm");
    unpack_and_install(&out.join("slurm-25.11-gcc13.4.0-software.tar.gz"), &dir);
    let unpacked = dir.join("view/bin/sinfo");
    let dynamic = readelf_dynamic(&unpacked);
    assert!(dynamic.contains("[$ORIGIN/../lib]"), "{dynamic}");
    let (ok, text) = run_clean(&mut Command::new(&unpacked));
    assert!(ok, "{text}");
    assert_eq!(text, "slurm 25.11.0 (hello from greet)\n");
}
