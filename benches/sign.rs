//! Bench: cleartext-sign 1,000 Spack manifests with our signer (sequoia, in process) and with a
//! `gpg --clearsign --digest-algo SHA512` loop over the same files (what Spack does, one gpg
//! process per manifest), in the same run, with the same key. Prints both times and the ratio.
//!
//! Run: `cargo bench --bench sign` (needs gpg; `SIGN_BENCH_N` changes the count).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use slurm_factory::buildcache::sign::sign_all;
use slurm_factory::buildcache::{BlobRecord, Manifest};
use slurm_factory::pgp::{SigningKey, TrustedKeys};

fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.env("GNUPGHOME", home)
        .args(["--batch", "--no-tty", "--quiet"]);
    c
}

fn run(c: &mut Command) {
    let out = c.output().expect("gpg runs");
    assert!(
        out.status.success(),
        "gpg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Result {
    label: String,
    ours_1: Duration,
    ours_n: Duration,
    gpg: Duration,
}

fn bench_key(
    label: &str,
    home: &Path,
    secret: &[u8],
    fpr: &str,
    files: &[std::path::PathBuf],
    texts: &[Vec<u8>],
) -> Result {
    let key = SigningKey::load(secret, None, None).expect("key loads");
    assert_eq!(key.fingerprint().as_str(), fpr);
    let refs: Vec<&[u8]> = texts.iter().map(|t| t.as_slice()).collect();

    // Ours, one thread.
    let t0 = Instant::now();
    let single: Vec<Vec<u8>> = refs.iter().map(|t| key.clearsign(t).unwrap()).collect();
    let ours_1 = t0.elapsed();
    // Ours, all cores (what sign-and-upload uses).
    let t0 = Instant::now();
    let named: Vec<(&str, &[u8])> = refs.iter().map(|t| ("manifest", *t)).collect();
    let parallel = sign_all(&key, &named).unwrap();
    let ours_n = t0.elapsed();

    // gpg, one process per manifest, like Spack's `spack.util.gpg.sign`.
    let out_dir = home.join(format!("out-{label}"));
    std::fs::create_dir_all(&out_dir).unwrap();
    let t0 = Instant::now();
    for (i, f) in files.iter().enumerate() {
        let out = out_dir.join(format!("{i}.sig"));
        run(gpg(home)
            .args([
                "--yes",
                "--clearsign",
                "--digest-algo",
                "SHA512",
                "--armor",
                "--local-user",
                fpr,
                "--output",
            ])
            .arg(&out)
            .arg(f));
    }
    let gpg_time = t0.elapsed();

    // Sanity: every signature (ours and gpg's) verifies over the same text.
    let mut trusted = TrustedKeys::new();
    trusted.add_cert(key.public_cert().clone());
    for (i, t) in texts.iter().enumerate() {
        for s in [
            &single[i],
            &parallel[i],
            &std::fs::read(out_dir.join(format!("{i}.sig"))).unwrap(),
        ] {
            assert_eq!(&trusted.verify_cleartext(s).unwrap().text, t);
        }
    }
    Result {
        label: label.into(),
        ours_1,
        ours_n,
        gpg: gpg_time,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us with no such flag: then
    // do a tiny smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("SIGN_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 1000 } else { 5 });
    if Command::new("gpg").arg("--version").output().is_err() {
        if std::env::var_os("CI").is_some() {
            panic!("gpg is required for the signing bench");
        }
        eprintln!("skipped: gpg is not installed");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let mut perms = std::fs::metadata(home.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
    std::fs::set_permissions(home.path(), perms).unwrap();

    // 1,000 distinct manifests in Spack's exact format.
    let files_dir = home.path().join("manifests");
    std::fs::create_dir_all(&files_dir).unwrap();
    let mut files = Vec::new();
    let mut texts = Vec::new();
    for i in 0..n {
        let tar = format!("tarball-{i}").into_bytes();
        let spec = format!("spec-{i}").into_bytes();
        let m = Manifest::new(vec![
            BlobRecord::for_bytes(&tar, "application/vnd.spack.install.v2.tar+gzip", "gzip"),
            BlobRecord::for_bytes(&spec, "application/vnd.spack.spec.v5+json", "gzip"),
        ])
        .to_spack_json();
        let p = files_dir.join(format!("m{i}.spec.manifest.json"));
        std::fs::write(&p, &m).unwrap();
        files.push(p);
        texts.push(m);
    }

    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let rsa_secret =
        std::fs::read(root.join("tests/fixtures/spack-v3/keys/demo-signer.sec.asc")).unwrap();
    let rsa_path = home.path().join("rsa.asc");
    std::fs::write(&rsa_path, &rsa_secret).unwrap();
    run(gpg(home.path()).arg("--import").arg(&rsa_path));
    run(gpg(home.path()).args([
        "--passphrase",
        "",
        "--pinentry-mode",
        "loopback",
        "--quick-gen-key",
        "Bench <bench@example.com>",
        "ed25519",
        "sign",
        "0",
    ]));
    let listing = gpg(home.path())
        .args(["--with-colons", "--list-keys", "bench@example.com"])
        .output()
        .unwrap();
    let ed_fpr = String::from_utf8(listing.stdout)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .unwrap()
        .split(':')
        .nth(9)
        .unwrap()
        .to_owned();
    let ed_secret = gpg(home.path())
        .args(["--armor", "--export-secret-keys", &ed_fpr])
        .output()
        .unwrap()
        .stdout;

    let results = [
        bench_key(
            "rsa4096",
            home.path(),
            &rsa_secret,
            "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD",
            &files,
            &texts,
        ),
        bench_key("ed25519", home.path(), &ed_secret, &ed_fpr, &files, &texts),
    ];
    let cores = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1);
    println!("signing {n} Spack manifests (cleartext, SHA512), {cores} cores");
    println!(
        "{:<8} {:>14} {:>14} {:>14} {:>10} {:>10}",
        "key", "ours 1 thread", "ours parallel", "gpg loop", "ratio 1t", "ratio par"
    );
    for r in &results {
        println!(
            "{:<8} {:>12.3} s {:>12.3} s {:>12.3} s {:>9.1}x {:>9.1}x",
            r.label,
            r.ours_1.as_secs_f64(),
            r.ours_n.as_secs_f64(),
            r.gpg.as_secs_f64(),
            r.gpg.as_secs_f64() / r.ours_1.as_secs_f64(),
            r.gpg.as_secs_f64() / r.ours_n.as_secs_f64(),
        );
    }
}
