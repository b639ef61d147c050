//! Test support: a throwaway GnuPG home, key generation with real gpg, fixture copies and
//! tree comparison.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::common;

pub const FIXTURE_FPR: &str = "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD";

pub fn fixtures() -> PathBuf {
    common::repo_root().join("tests/fixtures/spack-v3")
}

pub fn fixture_secret() -> Vec<u8> {
    std::fs::read(fixtures().join("keys/demo-signer.sec.asc")).unwrap()
}

pub fn fixture_public() -> PathBuf {
    fixtures().join("keys/demo-signer.pub.asc")
}

/// A real gpg with its own GNUPGHOME in a tempdir.
pub struct Gpg {
    pub bin: PathBuf,
    pub home: tempfile::TempDir,
}

impl Gpg {
    /// Real gpg, or `None` (skip) when it is not installed.
    pub fn new() -> Option<Self> {
        let bin = common::require_tool("gpg")?;
        let home = tempfile::tempdir().unwrap();
        let mut perms = std::fs::metadata(home.path()).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
        std::fs::set_permissions(home.path(), perms).unwrap();
        Some(Gpg { bin, home })
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("GNUPGHOME", self.home.path())
            .args(["--batch", "--no-tty"]);
        c
    }

    /// Runs gpg and panics with its output on failure.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn import(&self, path: &Path) {
        self.ok(&["--import", path.to_str().unwrap()]);
    }

    /// Generates a key; returns its primary fingerprint.
    pub fn generate(&self, uid: &str, algo: &str, usage: &str, expire: &str, pass: &str) -> String {
        self.ok(&[
            "--passphrase",
            pass,
            "--pinentry-mode",
            "loopback",
            "--quick-gen-key",
            uid,
            algo,
            usage,
            expire,
        ]);
        self.fpr(uid)
    }

    pub fn fpr(&self, uid: &str) -> String {
        self.fprs(uid)[0].clone()
    }

    /// Fingerprints of the primary key and subkeys of `uid`, primary first.
    pub fn fprs(&self, uid: &str) -> Vec<String> {
        let out = self.ok(&["--with-colons", "--list-keys", uid]);
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("fpr:"))
            .map(|l| l.split(':').nth(9).unwrap().to_owned())
            .collect()
    }

    pub fn export_secret(&self, what: &str, pass: &str) -> Vec<u8> {
        self.ok(&[
            "--passphrase",
            pass,
            "--pinentry-mode",
            "loopback",
            "--armor",
            "--export-secret-keys",
            what,
        ])
        .stdout
    }

    pub fn export_secret_subkeys(&self, what: &str, pass: &str) -> Vec<u8> {
        self.ok(&[
            "--passphrase",
            pass,
            "--pinentry-mode",
            "loopback",
            "--armor",
            "--export-secret-subkeys",
            what,
        ])
        .stdout
    }

    pub fn export_public(&self, what: &str) -> Vec<u8> {
        self.ok(&["--armor", "--export", what]).stdout
    }

    /// Imports the revocation certificate gpg made at key generation, revoking the key.
    pub fn revoke(&self, fpr: &str) {
        let rev = self.home.path().join(format!("openpgp-revocs.d/{fpr}.rev"));
        let text = std::fs::read_to_string(&rev).unwrap();
        let armored = text.replace(
            ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        );
        let p = self.home.path().join("rev.asc");
        std::fs::write(&p, armored).unwrap();
        self.import(&p);
    }

    /// `gpg --verify` of a file (clearsigned) or of `sig` over `data`; returns (ok, stderr).
    pub fn verify(&self, files: &[&Path]) -> (bool, String) {
        let mut c = self.cmd();
        c.arg("--verify");
        for f in files {
            c.arg(f);
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Copies a directory tree.
pub fn copy_tree(from: &Path, to: &Path) {
    for (rel, bytes) in read_tree(from) {
        let p = to.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

/// Every file under `root` (relative path → bytes).
pub fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The spec manifests under a buildcache root.
pub fn spec_manifests(root: &Path) -> Vec<PathBuf> {
    read_tree(&root.join("v3/manifests/spec"))
        .into_keys()
        .map(|k| root.join("v3/manifests/spec").join(k))
        .collect()
}

/// Splits a cleartext-signed file the way a reader of RFC 9580 §7 would (independently of
/// our code): the dash-unescaped text and the armored signature.
pub fn split_cleartext(signed: &str) -> (String, String) {
    let (_, rest) = signed.split_once("\n\n").expect("armor headers end");
    let (body, sig) = rest
        .split_once("\n-----BEGIN PGP SIGNATURE-----")
        .expect("signature block");
    let body: Vec<&str> = body
        .split('\n')
        .map(|l| l.strip_prefix("- ").unwrap_or(l))
        .collect();
    (
        body.join("\n"),
        format!("-----BEGIN PGP SIGNATURE-----{sig}"),
    )
}

/// Output of one of our binaries, both streams.
pub fn run(mut c: Command) -> (bool, String) {
    let out = c.output().unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}
