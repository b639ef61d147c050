//! Installing a relocatable tarball built here by the agreed contract (view/, modules/, data/,
//! data/install.sh resolving @SLURM_FACTORY_PREFIX@, SHA256SUMS and a detached .asc): verified,
//! unpacked, install script run, then smoke-checked with Debian's Lmod.

use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::buildcache::{fixtures, signer_key, test_install};
use crate::support::{build_app, gcc, write};

pub(crate) const NAME: &str = "slurm-25.11-gcc13.4.0-software.tar.gz";

const INSTALL_SH: &str = r#"#!/bin/sh
# Resolves the placeholder in the files data/relocate-text.txt lists, from this script's location.
set -eu
prefix=$(cd "$(dirname "$0")/.." && pwd -P)
while IFS= read -r f; do
  [ -n "$f" ] || continue
  sed -i "s|@SLURM_FACTORY_PREFIX@|$prefix|g" "$prefix/$f"
done < "$prefix/data/relocate-text.txt"
"#;

const MODULEFILE: &str = r#"local prefix = myFileName():match("(.*)/modules/") or error("cannot find the prefix")
conflict("slurm")
family("workloadmanager")
setenv("SLURM_ROOT", pathJoin(prefix, "view"))
prepend_path("PATH", pathJoin(prefix, "view/bin"))
"#;

/// Builds a view with real ELF files ($ORIGIN RUNPATH) into `stage`, packs it as the contract
/// says into `out/NAME`, and writes SHA256SUMS and NAME.asc signed by the fixture key.
/// `tweak` may edit the stage before packing.
pub(crate) fn build_tarball(dir: &Path, tweak: impl FnOnce(&Path)) -> PathBuf {
    let stage = dir.join("stage");
    let view = stage.join("view");
    let app = build_app(&view.join("lib"), &view.join("bin"), "$ORIGIN/../lib", &[]);
    // A `sinfo` that reports a version and needs the view's library.
    let src = write(
        dir,
        "sinfo.c",
        "#include <stdio.h>\nconst char* greet(void);\nint main(){ printf(\"slurm 25.11.0 (%s)\\n\", greet()); return 0; }\n",
    );
    let sinfo = view.join("bin/sinfo");
    let l = format!("-L{}", view.join("lib").display());
    gcc(&[
        "-o",
        sinfo.to_str().unwrap(),
        src.to_str().unwrap(),
        &l,
        "-lgreet",
        "-Wl,-rpath,$ORIGIN/../lib",
    ]);
    assert!(app.is_file());
    write(
        &view,
        "etc/slurm-env.sh",
        "SLURM_ROOT=@SLURM_FACTORY_PREFIX@/view\n",
    );
    write(&stage, "modules/slurm/25.11.lua", MODULEFILE);
    write(&stage, "data/install.sh", INSTALL_SH);
    write(&stage, "data/relocate-text.txt", "view/etc/slurm-env.sh\n");
    tweak(&stage);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let tarball = out.join(NAME);
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&tarball).unwrap(),
        flate2::Compression::fast(),
    );
    let mut b = tar::Builder::new(gz);
    b.follow_symlinks(false);
    for top in ["view", "modules", "data"] {
        if stage.join(top).exists() {
            b.append_dir_all(top, stage.join(top)).unwrap();
        }
    }
    b.into_inner().unwrap().finish().unwrap();
    let bytes = std::fs::read(&tarball).unwrap();
    std::fs::write(
        out.join("SHA256SUMS"),
        format!("{}  {NAME}\n", hex::encode(sha2::Sha256::digest(&bytes))),
    )
    .unwrap();
    let key = slurm_factory::pgp::SigningKey::load(
        &std::fs::read(fixtures().join("keys/demo-signer.sec.asc")).unwrap(),
        None,
        None,
    )
    .unwrap();
    std::fs::write(
        out.join(format!("{NAME}.asc")),
        key.detached_sign(bytes.as_slice()).unwrap(),
    )
    .unwrap();
    tarball
}

fn args<'a>(tarball: &'a str, prefix: &'a str, key: &'a str) -> Vec<&'a str> {
    vec![
        "--tarball",
        tarball,
        "--prefix",
        prefix,
        "--trusted-key",
        key,
    ]
}

#[test]
fn a_signed_tarball_installs_runs_from_two_places_and_module_loads() {
    if !Path::new(slurm_factory::install::smoke::LMOD_INIT).exists() {
        assert!(
            !crate::common::under_ci(),
            "Debian's lmod must be installed under CI"
        );
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tarball = build_tarball(t.path(), |_| {});
    let key = signer_key();
    for place in ["first/prefix", "second/somewhere/much/deeper"] {
        let prefix = t.path().join(place);
        let work = tempfile::tempdir().unwrap();
        let (code, stdout, summary) = test_install(
            work.path(),
            &args(
                tarball.to_str().unwrap(),
                prefix.to_str().unwrap(),
                key.to_str().unwrap(),
            ),
        );
        assert_eq!(code, 0, "{stdout}");
        assert!(summary.contains("### test-install: passed"), "{summary}");
        assert!(
            summary.contains("| `sinfo --version` | ✅ ok | slurm 25.11.0 (hello from greet) |"),
            "{summary}"
        );
        // Loaded through Lmod, `sinfo` on PATH is the unpacked one and runs.
        assert!(
            summary.contains(
                "| `module load slurm` (Lmod) | ✅ ok | slurm 25.11.0 (hello from greet) |"
            ),
            "{summary}"
        );
        assert!(
            summary.contains("libraries resolve (2 ELF files) | ✅ ok"),
            "{summary}"
        );
        let env = std::fs::read_to_string(prefix.join("view/etc/slurm-env.sh")).unwrap();
        assert_eq!(env, format!("SLURM_ROOT={}/view\n", prefix.display()));
        let (ok, out, err) = crate::support::run(&prefix.join("view/bin/app"));
        assert!(ok, "{err}");
        assert_eq!(out, "hello from greet\n");
    }
}

fn refused(tarball: &Path, key: &Path, want: &str) -> PathBuf {
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("p");
    let (code, stdout, _) = test_install(
        t.path(),
        &args(
            tarball.to_str().unwrap(),
            prefix.to_str().unwrap(),
            key.to_str().unwrap(),
        ),
    );
    assert_eq!(code, 1, "{stdout}");
    let err = stdout
        .lines()
        .find(|l| l.starts_with("::error::"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(err.contains(want), "{err}");
    assert!(!prefix.exists(), "nothing installed");
    prefix
}

#[test]
fn a_tampered_tarball_fails_its_signature() {
    let t = tempfile::tempdir().unwrap();
    let tarball = build_tarball(t.path(), |_| {});
    let mut b = std::fs::read(&tarball).unwrap();
    let n = b.len();
    b[n / 2] ^= 1;
    std::fs::write(&tarball, b).unwrap();
    refused(
        &tarball,
        &signer_key(),
        &format!("{NAME}.asc does not verify {NAME}: bad signature"),
    );
}

#[test]
fn a_sha256sums_that_disagrees_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let tarball = build_tarball(t.path(), |_| {});
    let sums = tarball.parent().unwrap().join("SHA256SUMS");
    std::fs::write(&sums, format!("{}  {NAME}\n", "0".repeat(64))).unwrap();
    refused(&tarball, &signer_key(), "but SHA256SUMS lists 0000");
    std::fs::write(&sums, format!("{}  other.tar.gz\n", "0".repeat(64))).unwrap();
    refused(
        &tarball,
        &signer_key(),
        &format!("SHA256SUMS does not list {NAME}"),
    );
    std::fs::write(&sums, "garbage\n").unwrap();
    refused(&tarball, &signer_key(), "SHA256SUMS line 1 is not");
}

#[test]
fn a_failing_install_script_is_reported_and_the_prefix_removed() {
    let t = tempfile::tempdir().unwrap();
    let tarball = build_tarball(t.path(), |stage| {
        std::fs::write(
            stage.join("data/install.sh"),
            "echo cannot relocate >&2\nexit 3\n",
        )
        .unwrap();
    });
    refused(
        &tarball,
        &signer_key(),
        "data/install.sh failed (exit status: 3): cannot relocate",
    );
}

#[test]
fn a_tarball_with_an_escaping_symlink_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let tarball = build_tarball(t.path(), |stage| {
        std::os::unix::fs::symlink("../../../../etc/shadow", stage.join("view/etc/shadow"))
            .unwrap();
    });
    refused(
        &tarball,
        &signer_key(),
        "\"view/etc/shadow\" is a symlink to \"../../../../etc/shadow\", which escapes",
    );
}

#[test]
fn a_tarball_url_downloads_its_sums_and_signature_beside_it() {
    let t = tempfile::tempdir().unwrap();
    let tarball = build_tarball(t.path(), |_| {});
    let Some(server) = crate::common::HttpServer::start(tarball.parent().unwrap()) else {
        return;
    };
    let url = format!("{}/{NAME}", server.url);
    let key = signer_key();
    let prefix = t.path().join("from-http");
    // Plain http to a host other than loopback is refused unless asked for, before any
    // connection (TEST-NET-1 is never contacted).
    let work = tempfile::tempdir().unwrap();
    let (code, stdout, _) = test_install(
        work.path(),
        &args(
            &format!("http://192.0.2.1:1/{NAME}"),
            prefix.to_str().unwrap(),
            key.to_str().unwrap(),
        ),
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("is plain http://; use https://"),
        "{stdout}"
    );
    assert!(!prefix.exists());
    // To loopback nothing leaves the machine: no flag needed.
    let a = args(&url, prefix.to_str().unwrap(), key.to_str().unwrap());
    let (code, stdout, summary) = test_install(work.path(), &a);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        summary.contains(&format!(
            "| install `{NAME}` | ✅ ok | signed by 1A00B8893F4FAE1A76DB389DE145321FBC9F04BD"
        )),
        "{summary}"
    );
    // The signature comes from the same place: a missing .asc is an error, not a skip.
    std::fs::remove_file(tarball.parent().unwrap().join(format!("{NAME}.asc"))).unwrap();
    let prefix2 = t.path().join("again");
    let mut a = args(&url, prefix2.to_str().unwrap(), key.to_str().unwrap());
    a.push("--allow-insecure-http");
    let (code, stdout, _) = test_install(work.path(), &a);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!("the signature {url}.asc is missing")),
        "{stdout}"
    );
    assert!(!prefix2.exists());
}

#[test]
fn an_oversized_or_special_sidecar_file_is_refused_before_it_is_read() {
    // SHA256SUMS and the .asc are a few hundred bytes; a hostile directory or server could
    // make them endless. Each is capped at 1 MiB, and locally only regular files are read
    // (a FIFO would block the run forever).
    let t = tempfile::tempdir().unwrap();
    let tarball = build_tarball(t.path(), |_| {});
    let dir = tarball.parent().unwrap().to_owned();
    let sums = dir.join("SHA256SUMS");
    let good_sums = std::fs::read(&sums).unwrap();
    let mut big = good_sums.clone();
    big.resize((1 << 20) + 1, b'\n');
    std::fs::write(&sums, &big).unwrap();
    refused(
        &tarball,
        &signer_key(),
        "SHA256SUMS is larger than 1048576 bytes",
    );
    std::fs::remove_file(&sums).unwrap();
    let st = std::process::Command::new("mkfifo")
        .arg(&sums)
        .status()
        .unwrap();
    assert!(st.success());
    refused(
        &tarball,
        &signer_key(),
        "SHA256SUMS: it is a FIFO (named pipe)",
    );
    std::fs::remove_file(&sums).unwrap();
    std::fs::write(&sums, &good_sums).unwrap();

    // Over HTTP: a signature file that does not end where a signature would.
    let asc = dir.join(format!("{NAME}.asc"));
    let mut sig = std::fs::read(&asc).unwrap();
    sig.resize(2 << 20, b' ');
    std::fs::write(&asc, &sig).unwrap();
    let Some(server) = crate::common::HttpServer::start(&dir) else {
        return;
    };
    let url = format!("{}/{NAME}", server.url);
    let key = signer_key();
    let prefix = t.path().join("from-http");
    let work = tempfile::tempdir().unwrap();
    let mut a = args(&url, prefix.to_str().unwrap(), key.to_str().unwrap());
    a.push("--allow-insecure-http");
    let (code, stdout, _) = test_install(work.path(), &a);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{url}.asc is larger than 1048576 bytes; refusing it"
        )),
        "{stdout}"
    );
    assert!(!prefix.exists());
}

const FPR: &str = "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD";

/// `--tarball` with only `--trusted-fingerprint` (what the tarball pipeline passes): the key is
/// the `<FPR>.pub.asc` published beside the tarball, trusted only because its fingerprint is
/// the pinned one.
fn pinned(tarball: &str, prefix: &Path, fpr: &str, extra: &[&str]) -> (i32, String, String) {
    let work = tempfile::tempdir().unwrap();
    let mut a = vec![
        "--tarball",
        tarball,
        "--prefix",
        prefix.to_str().unwrap(),
        "--trusted-fingerprint",
        fpr,
    ];
    a.extend_from_slice(extra);
    test_install(work.path(), &a)
}

#[test]
fn a_pinned_fingerprint_resolves_the_key_published_beside_the_tarball() {
    let t = tempfile::tempdir().unwrap();
    let tarball = build_tarball(t.path(), |_| {});
    let dir = tarball.parent().unwrap();
    let published = dir.join(format!("{FPR}.pub.asc"));
    let path = tarball.to_str().unwrap();

    // Nothing published under the pin: refused, saying what to do.
    let prefix = t.path().join("p0");
    let (code, stdout, _) = pinned(path, &prefix, FPR, &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!("the tarball's directory publishes no key {FPR}"))
            && stdout.contains("--trusted-key"),
        "{stdout}"
    );
    assert!(!prefix.exists());

    // Published: verified and installed.
    std::fs::copy(signer_key(), &published).unwrap();
    let prefix = t.path().join("p1");
    let (code, stdout, summary) = pinned(path, &prefix, &FPR.to_lowercase(), &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        summary.contains(&format!("| install `{NAME}` | ✅ ok | signed by {FPR}")),
        "{summary}"
    );
    assert!(prefix.join("view/bin/sinfo").is_file());

    // Another pin: its key is not there, so nothing is trusted, nothing installed.
    let prefix = t.path().join("p2");
    let other = "0123456789ABCDEF0123456789ABCDEF01234567";
    let (code, stdout, _) = pinned(path, &prefix, other, &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!("publishes no key {other}")),
        "{stdout}"
    );
    assert!(!prefix.exists());

    // A different key published under the pinned name is not trusted.
    use sequoia_openpgp::serialize::SerializeInto;
    let (cert, _) =
        sequoia_openpgp::cert::CertBuilder::general_purpose(Some("Mallory <m@example.com>"))
            .generate()
            .unwrap();
    std::fs::write(&published, cert.armored().to_vec().unwrap()).unwrap();
    let prefix = t.path().join("p3");
    let (code, stdout, _) = pinned(path, &prefix, FPR, &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!("not the pinned {FPR}; it is not trusted")),
        "{stdout}"
    );
    assert!(!prefix.exists());

    // A "key" of 2 MiB is refused by its size, from a directory and over HTTP.
    std::fs::write(&published, vec![b'x'; 2 << 20]).unwrap();
    let Some(server) = crate::common::HttpServer::start(dir) else {
        return;
    };
    let url = format!("{}/{NAME}", server.url);
    for (src, extra) in [
        (path, &[][..]),
        (url.as_str(), &["--allow-insecure-http"][..]),
    ] {
        let prefix = t.path().join("p-big");
        let (code, stdout, _) = pinned(src, &prefix, FPR, extra);
        assert_eq!(code, 1, "{stdout}");
        assert!(
            stdout.contains(&format!("{FPR}.pub.asc is larger than 1048576 bytes")),
            "{stdout}"
        );
        assert!(!prefix.exists());
    }

    // Over HTTP the key is fetched from beside the tarball URL too.
    std::fs::copy(signer_key(), &published).unwrap();
    let prefix = t.path().join("p4");
    let (code, stdout, _) = pinned(&url, &prefix, FPR, &["--allow-insecure-http"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(prefix.join("view/bin/sinfo").is_file());
}

#[test]
fn a_tarball_signed_by_another_key_fails_against_the_pinned_one() {
    let t = tempfile::tempdir().unwrap();
    let tarball = build_tarball(t.path(), |_| {});
    let dir = tarball.parent().unwrap();
    std::fs::copy(signer_key(), dir.join(format!("{FPR}.pub.asc"))).unwrap();
    // Re-sign with someone else's key, and publish theirs beside it too.
    let (cert, _) =
        sequoia_openpgp::cert::CertBuilder::general_purpose(Some("Mallory <m@example.com>"))
            .generate()
            .unwrap();
    use sequoia_openpgp::serialize::SerializeInto;
    let mallory = slurm_factory::pgp::SigningKey::load(
        &cert.as_tsk().armored().to_vec().unwrap(),
        None,
        None,
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{NAME}.asc")),
        mallory
            .detached_sign(std::fs::read(&tarball).unwrap().as_slice())
            .unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{}.pub.asc", mallory.fingerprint())),
        cert.armored().to_vec().unwrap(),
    )
    .unwrap();
    let prefix = t.path().join("p");
    let (code, stdout, _) = pinned(tarball.to_str().unwrap(), &prefix, FPR, &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!("{NAME}.asc does not verify {NAME}")),
        "{stdout}"
    );
    assert!(!prefix.exists());
}
