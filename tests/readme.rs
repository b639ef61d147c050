//! Every command a user copies from README.md to act on our artifacts runs here, as written
//! (issue 20): only the host of a public URL, the pinned fingerprint placeholder and the install
//! location are replaced, by a loopback web server, the fixture key's fingerprint and a temporary
//! directory. What the commands act on was made by our own binaries (tarball-publish,
//! sign-and-upload).

mod common;
#[path = "tarball/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The fixture signing key's fingerprint.
const FPR: &str = "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD";
const TARBALL_HOST: &str = "https://vantage-public-assets.s3.amazonaws.com";

fn keys() -> PathBuf {
    common::repo_root().join("tests/fixtures/spack-v3/keys")
}

/// The fenced `sh` block of README.md that contains `needle`.
fn readme_block(needle: &str) -> String {
    let text = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match &mut block {
            None if line.trim_start() == "```sh" => block = Some(String::new()),
            None => {}
            Some(b) if line.trim_start().starts_with("```") => {
                if b.contains(needle) {
                    return b.clone();
                }
                block = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
        }
    }
    panic!("README.md has no sh block with {needle:?}")
}

/// The value a `name=value` line of `block` assigns.
fn assigned<'a>(block: &'a str, name: &str) -> &'a str {
    block
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("the README block assigns no {name}=:\n{block}"))
}

/// Runs `script` with bash (errexit, pipefail, Lmod's `module` defined) in `dir`.
fn run_bash(script: &str, dir: &Path) -> (bool, String) {
    let full =
        format!("set -euo pipefail\nsource /usr/share/lmod/lmod/init/bash\nset -x\n{script}");
    let out = Command::new("bash")
        .arg("-c")
        .arg(full)
        .current_dir(dir)
        .env_remove("GNUPGHOME")
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("SLURM_CONF")
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

/// Publishes a Spack-like build with our tarball-publish where the README's `base` URL points
/// (under `root`), and returns the README's tarball snippet with its URL, fingerprint and
/// install location made local.
fn published_tarball_snippet(b: &support::Build, root: &Path, url: &str, opt: &Path) -> String {
    let block = readme_block("gpg --import");
    let base = assigned(&block, "base");
    let path = base
        .strip_prefix(TARBALL_HOST)
        .unwrap_or_else(|| panic!("the README's base URL is not under {TARBALL_HOST}: {base}"));
    let dest = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(&dest).unwrap();
    let out = support::publish_cmd(b, &root.join("out"))
        .arg("--destination")
        .arg(format!("file://{}/", dest.display()))
        .env(
            "GPG_PRIVATE_KEY",
            std::fs::read_to_string(keys().join("demo-signer.sec.asc")).unwrap(),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tarball-publish failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tarball = assigned(&block, "tarball");
    assert!(
        dest.join(tarball).is_file(),
        "the README names {tarball}, which tarball-publish did not write to {}",
        dest.display()
    );
    let fpr_line = block
        .lines()
        .find(|l| l.starts_with("fpr="))
        .expect("the README block pins a fingerprint (fpr=...)")
        .to_owned();
    block
        .replace(TARBALL_HOST, url)
        .replace(&fpr_line, &format!("fpr={FPR}"))
        .replace("/opt/slurm", &opt.display().to_string())
}

#[test]
fn the_readme_tarball_snippet_runs_as_written() {
    let Some(b) = support::build(false) else {
        return;
    };
    for tool in ["gpg", "curl", "sha256sum"] {
        if common::require_tool(tool).is_none() {
            return;
        }
    }
    if !Path::new("/usr/share/lmod/lmod/init/bash").is_file() {
        assert!(!common::under_ci(), "Lmod is required under CI");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("www");
    let Some(server) = common::HttpServer::start(&root) else {
        return;
    };
    let opt = t.path().join("opt/slurm");
    let script = published_tarball_snippet(&b, &root, &server.url, &opt);
    b.remove_build_tree();
    let work = t.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (ok, out) = run_bash(&script, &work);
    assert!(
        ok,
        "the README's tarball snippet failed:\n{script}\n---\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("[GNUPG:] VALIDSIG ") && l.ends_with(FPR)),
        "{out}"
    );
    assert!(
        out.contains("slurm 25.11"),
        "sinfo --version did not run:\n{out}"
    );

    // The same snippet refuses a tarball signed by another key, even when that key is the one
    // published under the pinned fingerprint's name (a bucket writer can replace both).
    let Some(gpg) = common::require_tool("gpg") else {
        return;
    };
    let home = t.path().join("other-gnupg");
    std::fs::create_dir_all(&home).unwrap();
    let gpg_in = |args: &[&str]| {
        let o = Command::new(&gpg)
            .env("GNUPGHOME", &home)
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    };
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    gpg_in(&[
        "--quick-gen-key",
        "Mallory <m@example.org>",
        "ed25519",
        "sign",
        "never",
    ]);
    let block = readme_block("gpg --import");
    let tarball = assigned(&block, "tarball");
    let dest = root.join(
        assigned(&block, "base")
            .strip_prefix(TARBALL_HOST)
            .unwrap()
            .trim_start_matches('/'),
    );
    let asc = dest.join(format!("{tarball}.asc"));
    std::fs::remove_file(&asc).unwrap();
    gpg_in(&[
        "--armor",
        "--detach-sign",
        "--output",
        asc.to_str().unwrap(),
        dest.join(tarball).to_str().unwrap(),
    ]);
    let key = gpg_in(&["--armor", "--export"]);
    std::fs::write(dest.join(format!("{FPR}.pub.asc")), key).unwrap();
    let work = t.path().join("work2");
    std::fs::create_dir_all(&work).unwrap();
    let opt2 = t.path().join("opt2/slurm");
    let (ok, out) = run_bash(
        &script.replace(&opt.display().to_string(), &opt2.display().to_string()),
        &work,
    );
    assert!(!ok, "a tarball signed by another key passed:\n{out}");
    assert!(!opt2.exists(), "nothing may be unpacked: {out}");
}
