//! The storage backends as readers and writers see them: `slurm-factory verify` over a plain
//! HTTP server (Python's `http.server` on loopback, a real web server) serving the signed Spack
//! fixture and a tampered copy, the refusal of plain `http://` without the flag, and hostile
//! trees (symlinks, FIFOs, sparse files) in `file://` caches and sources.

mod common;
#[allow(dead_code)]
#[path = "signing/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::HttpServer;
use support::{FIXTURE_FPR, copy_tree, read_tree};

fn fixture(which: &str) -> PathBuf {
    support::fixtures().join(which)
}

fn verify(buildcache: &str, extra: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = common::in_actions("slurm-factory", dir.path())
        .args(["verify", "--buildcache", buildcache, "--trusted-key"])
        .arg(fixture("keys/demo-signer.pub.asc"))
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `verify` reads a buildcache from a plain web server (which cannot list: it walks from the
/// index), passes the signed fixture, fails a tampered copy naming the file, and refuses
/// plain http:// to anything but a loopback host without `--allow-insecure-http`.
#[test]
fn verify_reads_a_buildcache_over_http_and_catches_tampering() {
    let root = tempfile::tempdir().unwrap();
    copy_tree(&fixture("signed"), &root.path().join("good"));
    copy_tree(&fixture("signed"), &root.path().join("bad"));
    // Same size, other bytes: demo-lib's tarball.
    let blob = "blobs/sha256/aa/aaabfbfcf309a896016154087cab77adb725da675df94849d32b2a0ee0bd7bec";
    let path = root.path().join("bad").join(blob);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let Some(server) = HttpServer::start(root.path()) else {
        return;
    };

    // Plain http:// to a host that is not loopback (TEST-NET-1: refused before any connection).
    let (ok, out) = verify("http://192.0.2.1:1/good", &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("--allow-insecure-http") && out.contains("http://"),
        "plain http must be refused with a clear message: {out}"
    );

    // To loopback nothing leaves the machine: no flag needed (signatures are checked anyway).
    let good = format!("{}/good", server.url);
    let (ok, out) = verify(&good, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("verified 2 specs"), "{out}");
    let (ok, out) = verify(&good, &["--allow-insecure-http"]);
    assert!(ok, "{out}");
    assert!(out.contains("verified 2 specs"), "{out}");
    assert!(out.contains("ok      demo-lib@1.0/or7dti4"), "{out}");

    let (ok, out) = verify(&format!("{}/bad/", server.url), &["--allow-insecure-http"]);
    assert!(!ok, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("::error::")
            && l.contains("demo-lib")
            && l.contains("aaabfbfc")),
        "the failure must name the spec and the blob: {out}"
    );

    // A path with nothing behind it: no index, so nothing to verify, and it says why.
    let (ok, out) = verify(
        &format!("{}/nothing", server.url),
        &["--allow-insecure-http"],
    );
    assert!(!ok && out.contains("no index"), "{out}");
}

// ---------------------------------------------------------------------------------------
// Hostile sources and destinations for `sign-and-upload` (file:// destination).

const LIB_TARBALL: &str =
    "blobs/sha256/aa/aaabfbfcf309a896016154087cab77adb725da675df94849d32b2a0ee0bd7bec";
const LIB_MANIFEST: &str =
    "v3/manifests/spec/demo-lib/demo-lib-1.0-or7dti47ajgrd2y5bgs2dujuath2dz3p.spec.manifest.json";

/// Runs `sign-and-upload` with the fixture's key (as an Actions step, with a timeout so a
/// hang fails the test); returns (success, all output).
fn sign_upload(source: &Path, dest: &Path, extra: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::in_actions("sign-and-upload", dir.path())
        .arg("--source")
        .arg(source)
        .arg("--destination")
        .arg(format!("file://{}", dest.display()))
        .arg("--key-file")
        .arg(fixture("keys/demo-signer.sec.asc"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("sign-and-upload hung for 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn unsigned_copy(t: &Path) -> PathBuf {
    let src = t.join("src");
    copy_tree(&fixture("unsigned"), &src);
    src
}

#[test]
fn a_symlinked_blob_in_the_source_is_refused_by_name_and_nothing_is_written() {
    let t = tempfile::tempdir().unwrap();
    let src = unsigned_copy(t.path());
    // The link points at a file with the very bytes the manifest expects: still refused.
    let real = t.path().join("outside-tarball");
    std::fs::rename(src.join(LIB_TARBALL), &real).unwrap();
    std::os::unix::fs::symlink(&real, src.join(LIB_TARBALL)).unwrap();
    let dest = t.path().join("mirror");
    let (ok, out) = sign_upload(&src, &dest, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(LIB_TARBALL) && out.contains("symbolic link"),
        "{out}"
    );
    assert!(!dest.exists(), "something was written");
}

#[test]
fn a_symlinked_directory_in_the_source_is_refused_by_name_and_nothing_is_written() {
    let t = tempfile::tempdir().unwrap();
    let src = unsigned_copy(t.path());
    let outside = t.path().join("outside-shard");
    std::fs::rename(src.join("blobs/sha256/aa"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, src.join("blobs/sha256/aa")).unwrap();
    let dest = t.path().join("mirror");
    let (ok, out) = sign_upload(&src, &dest, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("blobs/sha256/aa") && out.contains("symbolic link"),
        "{out}"
    );
    assert!(!dest.exists(), "something was written");
}

#[test]
fn a_fifo_blob_in_the_source_is_refused_without_hanging() {
    let t = tempfile::tempdir().unwrap();
    let src = unsigned_copy(t.path());
    std::fs::remove_file(src.join(LIB_TARBALL)).unwrap();
    let st = Command::new("mkfifo")
        .arg(src.join(LIB_TARBALL))
        .status()
        .unwrap();
    assert!(st.success());
    let dest = t.path().join("mirror");
    let t0 = Instant::now();
    let (ok, out) = sign_upload(&src, &dest, &[]);
    assert!(!ok, "{out}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert!(out.contains(LIB_TARBALL) && out.contains("FIFO"), "{out}");
    assert!(!dest.exists(), "something was written");
}

#[test]
fn a_sparse_2_gib_blob_is_refused_by_its_size_before_it_is_read() {
    let t = tempfile::tempdir().unwrap();
    let src = unsigned_copy(t.path());
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(src.join(LIB_TARBALL))
        .unwrap();
    f.set_len(2 << 30).unwrap();
    drop(f);
    let dest = t.path().join("mirror");
    let t0 = Instant::now();
    let (ok, out) = sign_upload(&src, &dest, &[]);
    let took = t0.elapsed();
    assert!(!ok, "{out}");
    assert!(
        out.contains("aaabfbfc") && out.contains("2147483648 bytes, the manifest says 5289"),
        "{out}"
    );
    // Hashing 2 GiB takes seconds here; the size check takes none.
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}: was it hashed?"
    );
    assert!(!dest.exists(), "something was written");
}

/// A destination blob of the right size but other bytes is replaced by the checked source
/// bytes (the key is the digest, so only one content belongs there), and the published cache
/// verifies.
#[test]
fn a_same_size_wrong_content_destination_blob_is_replaced_and_the_cache_verifies() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("mirror");
    let (ok, out) = sign_upload(&fixture("unsigned"), &dest, &[]);
    assert!(ok, "{out}");
    let good = std::fs::read(dest.join(LIB_TARBALL)).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 0xff;
    std::fs::write(dest.join(LIB_TARBALL), &bad).unwrap();
    let (ok, out) = verify(dest.to_str().unwrap(), &[]);
    assert!(!ok && out.contains("aaabfbfc"), "{out}");

    let (ok, out) = sign_upload(&fixture("unsigned"), &dest, &[]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("update    {LIB_TARBALL}")), "{out}");
    assert_eq!(std::fs::read(dest.join(LIB_TARBALL)).unwrap(), good);
    let (ok, out) = verify(dest.to_str().unwrap(), &[]);
    assert!(ok, "{out}");
}

/// A destination key index naming a key this run does not know is refused (Spack users may
/// trust every key it lists), with nothing written; accepted explicitly, or when listed.
#[test]
fn an_unknown_key_in_the_destination_key_index_is_refused_unless_accepted() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("mirror");
    let (ok, out) = sign_upload(&fixture("unsigned"), &dest, &[]);
    assert!(ok, "{out}");
    // Someone with write access adds their key to the key index.
    let intruder = "0123456789ABCDEF0123456789ABCDEF01234567";
    let blob = format!("{{\"keys\":{{\"{intruder}\":{{}},\"{FIXTURE_FPR}\":{{}}}}}}");
    let sha = sha256_hex(blob.as_bytes());
    let blob_key = format!("blobs/sha256/{}/{sha}", &sha[..2]);
    std::fs::create_dir_all(dest.join(&blob_key).parent().unwrap()).unwrap();
    std::fs::write(dest.join(&blob_key), &blob).unwrap();
    std::fs::write(
        dest.join("v3/manifests/key/keys.manifest.json"),
        format!(
            "{{\n\"version\":3,\n\"data\":[\n{{\n\"contentLength\":{},\n\"mediaType\":\"application/vnd.spack.keyindex.v1+json\",\n\"compression\":\"none\",\n\"checksumAlgorithm\":\"sha256\",\n\"checksum\":\"{sha}\"\n}}\n]\n}}",
            blob.len()
        ),
    )
    .unwrap();
    // Something to publish: the source gains a new spec (the app manifest re-published
    // after the dest lost it).
    std::fs::remove_file(dest.join(LIB_MANIFEST)).unwrap();
    let before = read_tree(&dest);
    let (ok, out) = sign_upload(&fixture("unsigned"), &dest, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(intruder) && out.contains("--accept-unknown-keys"),
        "{out}"
    );
    assert_eq!(read_tree(&dest), before, "something was written");

    // Listed: accepted and kept.
    let (ok, out) = sign_upload(
        &fixture("unsigned"),
        &dest,
        &["--publish-key-fingerprint", intruder],
    );
    assert!(ok, "{out}");
    assert!(dest.join(LIB_MANIFEST).exists());
    // Accepted explicitly.
    std::fs::remove_file(dest.join(LIB_MANIFEST)).unwrap();
    let (ok, out) = sign_upload(&fixture("unsigned"), &dest, &["--accept-unknown-keys"]);
    assert!(ok, "{out}");
    assert!(dest.join(LIB_MANIFEST).exists());
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// A source manifest that is already clearsigned, by a key nobody trusts, is refused with
/// nothing written; trusted explicitly, its verified text is re-signed with our key.
#[test]
fn a_clearsigned_source_by_an_untrusted_key_is_refused() {
    use sequoia_openpgp::cert::CertBuilder;
    use sequoia_openpgp::serialize::SerializeInto;
    let t = tempfile::tempdir().unwrap();
    let src = unsigned_copy(t.path());
    let (cert, _) = CertBuilder::general_purpose(Some("intruder <i@example.org>"))
        .generate()
        .unwrap();
    let secret = cert.as_tsk().armored().to_vec().unwrap();
    let public = t.path().join("intruder.pub.asc");
    std::fs::write(&public, cert.armored().to_vec().unwrap()).unwrap();
    let key = slurm_factory::pgp::SigningKey::load(&secret, None, None).unwrap();
    let text = std::fs::read(src.join(LIB_MANIFEST)).unwrap();
    std::fs::write(src.join(LIB_MANIFEST), key.clearsign(&text).unwrap()).unwrap();

    let dest = t.path().join("mirror");
    let (ok, out) = sign_upload(&src, &dest, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("demo-lib@1.0/or7dti4") && out.contains("not accepted"),
        "{out}"
    );
    assert!(!dest.exists(), "something was written");

    // Trusted: published, signed by our key (the intruder's key is not published).
    let (ok, out) = sign_upload(&src, &dest, &["--trusted-key", public.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (ok, out) = verify(dest.to_str().unwrap(), &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "ok      demo-lib@1.0/or7dti4 (signer {FIXTURE_FPR}"
        )),
        "{out}"
    );
    let keys: Vec<String> = std::fs::read_dir(dest.join("v3/manifests/key"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        keys.iter()
            .all(|k| k.starts_with(FIXTURE_FPR) || k == "keys.manifest.json"),
        "{keys:?}"
    );
}
