//! `actions/_shared/install.sh`, the install step of every composite action: resolution order,
//! verification of downloads, of the binaries job's artifact and of cached binaries, failing
//! closed, and the runner protocol (no value can start a workflow command or add an output).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{ActionCommand, runner_file_pairs, runner_process_log};

fn root() -> PathBuf {
    common::repo_root()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The outputs the runner reads from a `$GITHUB_OUTPUT` file (fails the test if it would
/// reject the file).
fn outputs(gh: &str) -> BTreeMap<String, String> {
    runner_file_pairs(gh)
        .unwrap_or_else(|e| panic!("the runner rejects the output file: {e}\n{gh}"))
        .into_iter()
        .collect()
}

fn bin_dir(gh: &str) -> String {
    let o = outputs(gh);
    assert_eq!(o.len(), 1, "exactly one output: {o:?}");
    o["bin_dir"].clone()
}

/// The workflow commands the runner would process from the script's stdout.
fn commands(out: &Output) -> Vec<ActionCommand> {
    runner_process_log(&String::from_utf8_lossy(&out.stdout))
}

struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    /// A copy of the action layout: Cargo.toml, actions/_shared/install.sh, actions/checksums.txt
    /// and actions/prepare-matrix/.
    fn new(checksums: &str) -> Layout {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::copy(root().join("Cargo.toml"), p.join("Cargo.toml")).unwrap();
        std::fs::create_dir_all(p.join("actions/_shared")).unwrap();
        std::fs::create_dir_all(p.join("actions/prepare-matrix")).unwrap();
        std::fs::create_dir_all(p.join("fakebin")).unwrap();
        std::fs::create_dir_all(p.join("tmp")).unwrap();
        std::fs::copy(
            root().join("actions/_shared/install.sh"),
            p.join("actions/_shared/install.sh"),
        )
        .unwrap();
        std::fs::write(p.join("actions/checksums.txt"), checksums).unwrap();
        Layout { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A stand-in executable in `fakebin/` (the real one needs the network or a full build).
    fn fake(&self, name: &str, script: &str) {
        let p = self.path().join("fakebin").join(name);
        std::fs::write(&p, format!("#!/usr/bin/env bash\n{script}")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn run(&self, env: &[(&str, &str)]) -> (Output, String) {
        let out_file = self.path().join("github_output");
        std::fs::write(&out_file, "").unwrap();
        let path = format!(
            "{}:{}",
            self.path().join("fakebin").display(),
            std::env::var("PATH").unwrap()
        );
        let mut c = Command::new("bash");
        c.arg(self.path().join("actions/_shared/install.sh"))
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.path())
            .env(
                "GITHUB_ACTION_PATH",
                self.path().join("actions/prepare-matrix"),
            )
            .env("GITHUB_OUTPUT", &out_file)
            .env("RUNNER_TEMP", self.path().join("tmp"))
            .env("RUNNER_OS", "Linux")
            .env("RUNNER_ARCH", "X64")
            .env("SF_BINARY", "prepare-matrix")
            .env("SF_ACTION_REPOSITORY", "vantagecompute/slurm-factory");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (out, std::fs::read_to_string(out_file).unwrap())
    }

    fn version(&self) -> String {
        let t = std::fs::read_to_string(self.path().join("Cargo.toml")).unwrap();
        t.lines()
            .find_map(|l| l.strip_prefix("version = \""))
            .unwrap()
            .trim_end_matches('"')
            .to_owned()
    }

    fn asset(&self) -> String {
        format!(
            "slurm-factory-v{}-x86_64-unknown-linux-musl.tar.gz",
            self.version()
        )
    }

    /// A release tarball holding a stand-in prepare-matrix; returns its path and SHA-256.
    fn release_tarball(&self) -> (PathBuf, String) {
        use sha2::Digest;
        let stage = self.path().join("stage");
        std::fs::create_dir_all(&stage).unwrap();
        std::fs::write(stage.join("prepare-matrix"), "#!/bin/sh\necho stand-in\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            stage.join("prepare-matrix"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let tarball = self.path().join("release.tar.gz");
        let st = Command::new("tar")
            .arg("-czf")
            .arg(&tarball)
            .arg("-C")
            .arg(&stage)
            .arg("prepare-matrix")
            .status()
            .unwrap();
        assert!(st.success());
        let sha = hex::encode(sha2::Sha256::digest(std::fs::read(&tarball).unwrap()));
        (tarball, sha)
    }

    /// A stand-in `curl` (no network here) that serves `file` and records its arguments.
    fn fake_curl(&self, file: &Path) {
        self.fake(
            "curl",
            &format!(
                "printf '%s\\n' \"$@\" > \"{args}\"\nout=\nwhile [ $# -gt 0 ]; do if [ \"$1\" = -o ]; then out=$2; fi; shift; done\ncp \"{file}\" \"$out\"\n",
                args = self.path().join("curl-args").display(),
                file = file.display()
            ),
        );
    }
}

#[test]
fn install_uses_an_explicit_bin_dir() {
    let l = Layout::new("");
    let bin = common::bin("prepare-matrix");
    let dir = bin.parent().unwrap().to_str().unwrap();
    let (out, gh) = l.run(&[("SLURM_FACTORY_BIN_DIR", dir)]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(bin_dir(&gh), dir);

    let (out, gh) = l.run(&[("SLURM_FACTORY_BIN_DIR", l.path().to_str().unwrap())]);
    assert!(!out.status.success());
    assert!(text(&out).contains("has no executable prepare-matrix"));
    assert!(gh.is_empty());
}

#[test]
fn install_builds_from_source_when_no_prebuilt_binary_is_listed() {
    // Stand-in cargo: a real release build of the whole crate takes minutes; the script's part
    // (choosing the fallback, running cargo in the action's checkout, reporting the bin dir) is real.
    let l = Layout::new("# no entries\n");
    let target = l.path().join("target-dir");
    l.fake(
        "cargo",
        &format!(
            "printf '%s\\n' \"$PWD\" \"$@\" > \"{log}\"\nmkdir -p \"$CARGO_TARGET_DIR/release\"\nprintf '#!/bin/sh\\n' > \"$CARGO_TARGET_DIR/release/prepare-matrix\"\nchmod +x \"$CARGO_TARGET_DIR/release/prepare-matrix\"\n",
            log = l.path().join("cargo-log").display()
        ),
    );
    let (out, gh) = l.run(&[("CARGO_TARGET_DIR", target.to_str().unwrap())]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("no prebuilt"), "{t}");
    let log = std::fs::read_to_string(l.path().join("cargo-log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        Path::new(lines[0]).canonicalize().unwrap(),
        l.path().canonicalize().unwrap(),
        "cargo runs at the action's repository root"
    );
    assert_eq!(&lines[1..], ["build", "--locked", "--release", "--bins"]);
    assert_eq!(bin_dir(&gh), format!("{}/release", target.display()));

    // build_from_source=true builds even when an entry exists.
    let l2 = Layout::new(&format!("{}  {}\n", "a".repeat(64), l.asset()));
    l2.fake("cargo", "mkdir -p \"$CARGO_TARGET_DIR/release\"; printf '#!/bin/sh\\n' > \"$CARGO_TARGET_DIR/release/prepare-matrix\"; chmod +x \"$CARGO_TARGET_DIR/release/prepare-matrix\"\n");
    let (out, _) = l2.run(&[
        ("CARGO_TARGET_DIR", target.to_str().unwrap()),
        ("INPUT_BUILD_FROM_SOURCE", "true"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn install_downloads_and_verifies_a_listed_release_asset() {
    let probe = Layout::new("");
    let (tarball, sha) = probe.release_tarball();
    let l = Layout::new(&format!("# header\n{sha}  {}\n", probe.asset()));
    l.fake_curl(&tarball);
    let (out, gh) = l.run(&[]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let args = std::fs::read_to_string(l.path().join("curl-args")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    for flag in ["--proto", "=https", "--tlsv1.2", "-fsSL", "--retry"] {
        assert!(args.contains(&flag), "curl called without {flag}: {args:?}");
    }
    let url = format!(
        "https://github.com/vantagecompute/slurm-factory/releases/download/v{}/{}",
        l.version(),
        l.asset()
    );
    assert!(args.contains(&url.as_str()), "{args:?}");
    let dir = bin_dir(&gh);
    assert!(Path::new(&dir).join("prepare-matrix").is_file());
}

#[test]
fn install_fails_closed() {
    let probe = Layout::new("");
    let (tarball, sha) = probe.release_tarball();
    let asset = probe.asset();

    // Checksum mismatch.
    let l = Layout::new(&format!("{}  {asset}\n", "0".repeat(64)));
    l.fake_curl(&tarball);
    let (out, gh) = l.run(&[]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("checksum mismatch"),
        "{t}"
    );
    assert!(t.contains(&sha), "the actual digest is reported: {t}");
    assert!(gh.is_empty());

    // Duplicate and malformed entries.
    let l = Layout::new(&format!("{sha}  {asset}\n{sha}  {asset}\n"));
    let (out, _) = l.run(&[]);
    assert!(!out.status.success() && text(&out).contains("more than once"));
    let l = Layout::new(&format!("{}  {asset}\n", "Z".repeat(64)));
    let (out, _) = l.run(&[]);
    assert!(!out.status.success() && text(&out).contains("not lowercase hex"));

    // Missing checksum file.
    let l = Layout::new("");
    std::fs::remove_file(l.path().join("actions/checksums.txt")).unwrap();
    let (out, _) = l.run(&[]);
    assert!(!out.status.success() && text(&out).contains("checksums.txt is missing"));

    // Unsupported runner.
    let l = Layout::new("");
    let (out, _) = l.run(&[("RUNNER_OS", "Windows")]);
    assert!(!out.status.success() && text(&out).contains("only Linux"));

    // An entry exists but curl is missing: refuse instead of falling back.
    let l = Layout::new(&format!("{sha}  {asset}\n"));
    let tools = l.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    for t in [
        "sed",
        "awk",
        "head",
        "wc",
        "cat",
        "mktemp",
        "rm",
        "mkdir",
        "tar",
        "sha256sum",
        "cut",
        "gzip",
        "bash",
        "od",
        "tr",
        "grep",
    ] {
        if let Some(p) = which(t) {
            std::os::unix::fs::symlink(p, tools.join(t)).unwrap();
        }
    }
    let out = Command::new(tools.join("bash"))
        .arg(l.path().join("actions/_shared/install.sh"))
        .env_clear()
        .env("PATH", &tools)
        .env(
            "GITHUB_ACTION_PATH",
            l.path().join("actions/prepare-matrix"),
        )
        .env("RUNNER_TEMP", l.path().join("tmp"))
        .env("RUNNER_OS", "Linux")
        .env("RUNNER_ARCH", "X64")
        .env("SF_BINARY", "prepare-matrix")
        .output()
        .unwrap();
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("curl is required"),
        "{t}"
    );

    // Not a binary name.
    let l = Layout::new("");
    let (out, _) = l.run(&[("SF_BINARY", "../../bin/sh")]);
    assert!(!out.status.success());
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------------
// Runner protocol: hostile values (issue 13)

/// A hostile `build_from_source` (as the issue reproduced it) is reported in one `::error::`
/// whose message, once the runner unescapes it, is exactly the value: no `::add-mask::` (or any
/// other) command is processed, and no output is written.
#[test]
fn a_hostile_input_in_a_message_starts_no_workflow_command() {
    let l = Layout::new("");
    for hostile in [
        "maybe\n::add-mask::secret-value",
        "maybe\r::set-output name=bin_dir::/tmp/evil",
        "50%0A::warning::still one line",
        "x\n##[add-mask]legacy",
    ] {
        let (out, gh) = l.run(&[("INPUT_BUILD_FROM_SOURCE", hostile)]);
        assert!(!out.status.success(), "{hostile:?}: {}", text(&out));
        let cmds = commands(&out);
        assert_eq!(cmds.len(), 1, "{hostile:?}: {cmds:?}\n{}", text(&out));
        assert_eq!(cmds[0].command, "error");
        assert_eq!(
            cmds[0].data,
            format!("build_from_source must be true or false, got {hostile}"),
            "the message survives the runner's unescaping unchanged"
        );
        assert!(outputs(&gh).is_empty(), "{gh}");
    }
}

/// A plain log line holding a command-like value is printed inside a stop-commands window.
#[test]
fn a_hostile_value_in_a_log_line_is_inert() {
    let l = Layout::new("");
    let dir = l.path().join("bins ::add-mask::x ##[warning]y");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(common::bin("prepare-matrix"), dir.join("prepare-matrix")).unwrap();
    let (out, gh) = l.run(&[("SLURM_FACTORY_BIN_DIR", dir.to_str().unwrap())]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(commands(&out).is_empty(), "{}", text(&out));
    assert!(text(&out).contains("::stop-commands::"), "{}", text(&out));
    assert_eq!(bin_dir(&gh), dir.to_str().unwrap());
}

/// A newline in SLURM_FACTORY_BIN_DIR cannot add an output: the value is written as one
/// heredoc record with a random delimiter, and the runner reads back exactly one output.
#[test]
fn a_newline_in_a_value_adds_no_output() {
    let l = Layout::new("");
    let dir = l.path().join("bins\nextra=injected\nbin_dir<<EOF");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(common::bin("prepare-matrix"), dir.join("prepare-matrix")).unwrap();
    let (out, gh) = l.run(&[("SLURM_FACTORY_BIN_DIR", dir.to_str().unwrap())]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(bin_dir(&gh), dir.to_str().unwrap(), "{gh}");
    assert!(commands(&out).is_empty(), "{}", text(&out));
    // Two runs use two different delimiters.
    let (_, gh2) = l.run(&[("SLURM_FACTORY_BIN_DIR", dir.to_str().unwrap())]);
    let delim = |g: &str| {
        g.lines()
            .next()
            .unwrap()
            .split_once("<<")
            .unwrap()
            .1
            .to_owned()
    };
    assert_ne!(delim(&gh), delim(&gh2));
    assert!(delim(&gh).starts_with("ghadelimiter_") && delim(&gh).len() == 45);
}

// ---------------------------------------------------------------------------------------------
// The binaries job's artifact (input `binaries`)

/// An artifact directory as actions/download-artifact leaves it: the binaries without their
/// executable bit, and SHA256SUMS.
fn artifact(l: &Layout, sums: Option<&str>) -> PathBuf {
    use sha2::Digest;
    let dir = l.path().join("artifact");
    std::fs::create_dir_all(&dir).unwrap();
    let body = b"#!/bin/sh\necho artifact prepare-matrix\n";
    std::fs::write(dir.join("prepare-matrix"), body).unwrap();
    let sha = hex::encode(sha2::Sha256::digest(body));
    let sums = sums.map_or_else(
        || format!("{sha}  prepare-matrix\n{}  build-slurm\n", "1".repeat(64)),
        str::to_owned,
    );
    std::fs::write(dir.join("SHA256SUMS"), sums).unwrap();
    dir
}

#[test]
fn binaries_from_the_artifact_are_verified_copied_and_made_executable() {
    let l = Layout::new("");
    let dir = artifact(&l, None);
    let (out, gh) = l.run(&[("INPUT_BINARIES", dir.to_str().unwrap())]);
    assert!(out.status.success(), "{}", text(&out));
    let got = PathBuf::from(bin_dir(&gh));
    assert_ne!(got, dir, "the verified copy lives in a private directory");
    assert!(got.starts_with(l.path().join("tmp")));
    let run = Command::new(got.join("prepare-matrix")).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "artifact prepare-matrix\n"
    );
    // SLURM_FACTORY_BIN_DIR still wins (local replay).
    let bin = common::bin("prepare-matrix");
    let explicit = bin.parent().unwrap().to_str().unwrap();
    let (_, gh) = l.run(&[
        ("INPUT_BINARIES", dir.to_str().unwrap()),
        ("SLURM_FACTORY_BIN_DIR", explicit),
    ]);
    assert_eq!(bin_dir(&gh), explicit);
}

#[test]
fn a_tampered_or_unlisted_artifact_binary_never_runs() {
    // Tampered after the sums were written.
    let l = Layout::new("");
    let dir = artifact(&l, None);
    std::fs::write(dir.join("prepare-matrix"), "#!/bin/sh\necho evil\n").unwrap();
    let (out, gh) = l.run(&[("INPUT_BINARIES", dir.to_str().unwrap())]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("checksum mismatch for prepare-matrix"),
        "{}",
        text(&out)
    );
    assert!(outputs(&gh).is_empty());

    for (sums, needle) in [
        (
            format!("{}  build-slurm\n", "1".repeat(64)),
            "does not list prepare-matrix",
        ),
        (
            format!("{0}  prepare-matrix\n{0}  prepare-matrix\n", "1".repeat(64)),
            "more than once",
        ),
        (
            format!("{}  prepare-matrix\n", "A".repeat(64)),
            "not lowercase hex",
        ),
        ("abc  prepare-matrix\n".to_owned(), "not a SHA-256"),
    ] {
        let l = Layout::new("");
        let dir = artifact(&l, Some(&sums));
        let (out, gh) = l.run(&[("INPUT_BINARIES", dir.to_str().unwrap())]);
        assert!(
            !out.status.success() && text(&out).contains(needle),
            "{needle}: {}",
            text(&out)
        );
        assert!(outputs(&gh).is_empty());
    }

    // No SHA256SUMS at all; a symlink instead of the binary.
    let l = Layout::new("");
    let dir = artifact(&l, None);
    std::fs::remove_file(dir.join("SHA256SUMS")).unwrap();
    let (out, _) = l.run(&[("INPUT_BINARIES", dir.to_str().unwrap())]);
    assert!(!out.status.success() && text(&out).contains("has no SHA256SUMS"));
    let l = Layout::new("");
    let dir = artifact(&l, None);
    std::fs::rename(dir.join("prepare-matrix"), l.path().join("real")).unwrap();
    std::os::unix::fs::symlink(l.path().join("real"), dir.join("prepare-matrix")).unwrap();
    let (out, _) = l.run(&[("INPUT_BINARIES", dir.to_str().unwrap())]);
    assert!(
        !out.status.success() && text(&out).contains("no regular file"),
        "{}",
        text(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// Cached release binaries are re-verified by their own SHA-256

#[test]
fn a_cached_binary_is_reused_only_while_its_own_digest_matches_the_verified_asset() {
    let probe = Layout::new("");
    let (tarball, sha) = probe.release_tarball();
    let l = Layout::new(&format!("{sha}  {}\n", probe.asset()));
    l.fake_curl(&tarball);
    let (out, gh) = l.run(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let dir = PathBuf::from(bin_dir(&gh));
    let curl_args = l.path().join("curl-args");

    // Untouched: reused without a download.
    std::fs::remove_file(&curl_args).unwrap();
    let (out, gh) = l.run(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("SHA-256 re-verified"), "{}", text(&out));
    assert!(!curl_args.exists(), "no download for a verified cache");
    assert_eq!(bin_dir(&gh), dir.to_str().unwrap());

    // The cached binary replaced (a marker file would not notice): downloaded again.
    std::fs::write(dir.join("prepare-matrix"), "#!/bin/sh\necho evil\n").unwrap();
    let (out, _) = l.run(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("does not match"), "{}", text(&out));
    assert!(curl_args.exists(), "downloaded again");
    let run = Command::new(dir.join("prepare-matrix")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "stand-in\n");
}

/// The `[[bin]]` names of Cargo.toml: what the release packs (the generator's `binaries`).
fn cargo_bins() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let mut out = Vec::new();
    let mut in_bin = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(v) = line.strip_prefix("name = ") {
            out.push(v.trim_matches('"').to_owned());
        }
    }
    assert!(out.len() >= 7, "{out:?}");
    out
}

/// The release job and install.sh agree: the release workflow's packaging and checksum scripts
/// (`scripts/release-package`, `scripts/release-checksums`, the ones `release.yml` runs) are run
/// on this build's binaries; their `checksums.txt` becomes `actions/checksums.txt`, the assets
/// are served by a loopback release server at `<base>/v<version>/<asset>`, and install.sh
/// downloads, verifies and unpacks the asset for a binary, which then runs. A tampered asset and
/// a plain-http base that is not loopback are refused.
#[test]
fn what_the_release_job_packs_is_what_install_sh_downloads_and_verifies() {
    // The generated release workflow runs exactly these scripts.
    let release = std::fs::read_to_string(root().join(".github/workflows/release.yml")).unwrap();
    for needle in [
        "scripts/release-package \"$GITHUB_REF_NAME\" \"$TARGET\" \"target/$TARGET/release\" dist",
        "scripts/release-checksums \"$GITHUB_REF_NAME\" dist",
        "cp dist/checksums.txt checksums.txt",
        "'tree[][path]=actions/checksums.txt'",
    ] {
        assert!(
            release.contains(needle),
            "release.yml does not run {needle}"
        );
    }
    // ... and packs every binary an action runs.
    let every = format!("BINARIES: {}", cargo_bins().join(" "));
    assert!(
        release.contains(&every),
        "release.yml does not pack: {every}"
    );

    let probe = Layout::new("");
    let tag = format!("v{}", probe.version());
    let target = "x86_64-unknown-linux-musl";
    let bin_dir_built = common::bin("prepare-matrix")
        .parent()
        .unwrap()
        .to_path_buf();
    let serve = tempfile::tempdir().unwrap();
    let dist = serve.path().join(&tag);
    let pack = Command::new(root().join("scripts/release-package"))
        .args([&tag, target])
        .arg(&bin_dir_built)
        .arg(&dist)
        // One binary keeps the test lean (debug builds are large); that the release packs every
        // binary is checked on release.yml above.
        .env("BINARIES", "prepare-matrix")
        .output()
        .unwrap();
    assert!(pack.status.success(), "{}", text(&pack));
    let sums = Command::new(root().join("scripts/release-checksums"))
        .arg(&tag)
        .arg(&dist)
        .output()
        .unwrap();
    assert!(sums.status.success(), "{}", text(&sums));
    let checksums = std::fs::read_to_string(dist.join("checksums.txt")).unwrap();
    assert!(checksums.contains(&probe.asset()), "{checksums}");

    let Some(server) = common::HttpServer::start(serve.path()) else {
        return;
    };
    let l = Layout::new(&checksums);
    let (out, gh) = l.run(&[("SLURM_FACTORY_RELEASE_URL", server.url.as_str())]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("installed verified"), "{t}");
    let dir = bin_dir(&gh);
    let v = Command::new(Path::new(&dir).join("prepare-matrix"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).contains(&probe.version()), "{}", text(&v));
    // A tampered asset is refused; nothing is installed.
    std::fs::write(dist.join(probe.asset()), b"tampered").unwrap();
    let l = Layout::new(&checksums);
    let (out, gh) = l.run(&[("SLURM_FACTORY_RELEASE_URL", server.url.as_str())]);
    assert!(!out.status.success());
    assert!(text(&out).contains("checksum mismatch"), "{}", text(&out));
    assert!(outputs(&gh).is_empty(), "{gh}");

    // Only https, or plain http to the loopback address.
    for bad in [
        "http://example.com",
        "http://127.0.0.1.example.com",
        "http://localhost:1@example.com",
        "ftp://127.0.0.1",
    ] {
        let l = Layout::new(&checksums);
        let (out, _) = l.run(&[("SLURM_FACTORY_RELEASE_URL", bad)]);
        assert!(!out.status.success(), "{bad} accepted");
        assert!(
            text(&out).contains("SLURM_FACTORY_RELEASE_URL"),
            "{bad}: {}",
            text(&out)
        );
    }
}
