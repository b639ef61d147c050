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
    // The full key, as the pipelines publish it (the catalog's tarball_key: its file name names
    // the platform).
    let tarball = assigned(&block, "tarball");
    let out = support::publish_cmd(b, &root.join("out"))
        .arg("--destination")
        .arg(format!("file://{}/{tarball}", dest.display()))
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

/// The newest finished `scripts/real-slurm` build of `release`, or `None` after saying why the
/// test is skipped (under CI: a failure).
fn real_slurm(release: &str) -> Option<PathBuf> {
    let found = std::fs::read_dir(common::repo_root().join(".real-slurm"))
        .ok()
        .and_then(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{release}-")))
                        && p.join("DONE").is_file()
                })
                .max()
        });
    if found.is_none() {
        assert!(
            !common::under_ci(),
            "no real Slurm {release} build under .real-slurm (scripts/real-slurm)"
        );
        eprintln!("skipped: no real Slurm {release} build (run scripts/real-slurm {release})");
    }
    found
}

/// The `packages:` section of the build environment's spack.yaml, as a packages.yaml: the
/// Debian libraries the real build used as externals. A consumer of that cache needs the same
/// externals (in production the cache carries every dependency instead).
fn externals_of(env_yaml: &Path) -> String {
    let doc: yaml_serde::Value =
        yaml_serde::from_str(&std::fs::read_to_string(env_yaml).unwrap()).unwrap();
    let mut out = yaml_serde::Mapping::new();
    out.insert("packages".into(), doc["spack"]["packages"].clone());
    yaml_serde::to_string(&out).unwrap()
}

/// The README's Spack snippet, run by real Spack 1.0.0 (vendored) against a cache that our
/// sign-and-upload signed: real Slurm 24.11.5 built from this repository's recipe
/// (`slurm_factory.slurm`), served over loopback HTTP as the CDN serves it.
#[test]
fn the_readme_spack_snippet_installs_a_cache_we_signed() {
    let Some(entry) = real_slurm("24.11.5") else {
        return;
    };
    let Some(spack) = common::real_spack() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let block = readme_block("spack install --cache-only");
    let cdn = "https://slurm-factory-spack-binary-cache.vantagecompute.ai";
    let mirror_line = block
        .lines()
        .find(|l| l.starts_with("spack mirror add"))
        .expect("the README's Spack snippet adds a mirror");
    let url = mirror_line.split_whitespace().last().unwrap();
    let path = url
        .strip_prefix(cdn)
        .unwrap_or_else(|| panic!("the README's mirror is not under {cdn}: {url}"));

    // Real Spack pushes the real build (unsigned, as the leg's container does); our signer signs.
    let build_home = t.path().join("build-home");
    let unsigned = t.path().join("unsigned");
    let out = spack
        .command(&build_home)
        .arg("-e")
        .arg(entry.join("env"))
        .args(["buildcache", "push", "--unsigned", "--update-index"])
        .arg(&unsigned)
        .arg("slurm")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "spack buildcache push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let www = t.path().join("www");
    let dest = www.join(path.trim_start_matches('/'));
    let out = Command::new(common::bin("sign-and-upload"))
        .arg("--source")
        .arg(&unsigned)
        .arg("--destination")
        .arg(format!("file://{}", dest.display()))
        .arg("--key-file")
        .arg(keys().join("demo-signer.sec.asc"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sign-and-upload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let Some(server) = common::HttpServer::start(&www) else {
        return;
    };

    // The user's machine: a Spack of their own (this machine's site config: Debian's libraries
    // as externals, an install tree of its own).
    let home = t.path().join("home");
    std::fs::create_dir_all(home.join(".spack")).unwrap();
    std::fs::write(
        home.join(".spack/packages.yaml"),
        externals_of(&entry.join("env/spack.yaml")),
    )
    .unwrap();
    std::fs::write(
        home.join(".spack/config.yaml"),
        format!(
            "config:\n  install_tree:\n    root: {}\n",
            t.path().join("opt").display()
        ),
    )
    .unwrap();
    std::fs::write(
        home.join(".spack/repos.yaml"),
        format!("repos:\n  builtin: {}\n", spack.builtin.display()),
    )
    .unwrap();
    std::fs::copy(
        keys().join("demo-signer.pub.asc"),
        t.path().join("signer.pub.asc"),
    )
    .unwrap();
    let script = block
        .replace(
            "https://github.com/vantagecompute/slurm-factory.git",
            &format!("file://{}", common::repo_root().display()),
        )
        .replace(cdn, &server.url);
    let mut sh = Command::new("bash");
    sh.arg("-c")
        .arg(format!("set -euxo pipefail\n{script}"))
        .current_dir(t.path())
        .env("SPACK_PYTHON", &spack.python)
        .env("HOME", &home)
        .env("SPACK_USER_CONFIG_PATH", home.join(".spack"))
        .env("SPACK_USER_CACHE_PATH", home.join(".spack-cache"))
        .env_remove("SPACK_ROOT")
        .env(
            "PATH",
            format!(
                "{}:{}",
                spack.root.join("bin").display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .stdin(std::process::Stdio::null());
    let out = sh.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the README's Spack snippet failed:\n{script}\n---\n{text}"
    );
    let installed: Vec<PathBuf> = walk_find(&t.path().join("opt"), "sinfo");
    assert!(
        !installed.is_empty(),
        "no sinfo was installed under the user's install tree:\n{text}"
    );
}

/// Files named `name` under `root` (not following symlinks).
fn walk_find(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                out.push(p);
            }
        }
    }
    out
}
