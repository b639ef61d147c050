//! Real Slurm, end to end: Slurm 22.05.8 (Spack's builtin recipe, MUNGE) and 24.11.5 (our
//! `slurm_factory.slurm`, `auth/slurm`), built by the vendored real Spack 1.0.0 offline into a
//! padded install tree by `scripts/real-slurm` (cached under `.real-slurm/`; `scripts/test`
//! runs it before the tests), installed by both paths into locations the build never saw:
//!
//! - `spack buildcache push` (real Spack) → `sign-and-upload` → `test-install --buildcache
//!   --cluster-smoke`;
//! - `tarball-publish` → `test-install --tarball --cluster-smoke`, and by hand: `tar -xzf`,
//!   `sh data/install.sh`, `module load slurm` (Debian's Lmod), `sinfo --version`, moved to a
//!   longer path and installed again; every file of the installed tarball is read and none
//!   names the build tree.
//!
//! Every install and smoke runs with the build tree gone: an empty read-only tmpfs is mounted
//! over it in a private mount namespace (`unshare --mount`), so for those processes (and the
//! daemons they start) nothing of the build exists, while the cache stays for the next run.
//! That needs root, as the cluster smoke does (CI runs as root).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GCC: &str = "12.2.0";
const LMOD_INIT: &str = "/usr/share/lmod/lmod/init/sh";

/// One cached build of `scripts/real-slurm`.
struct Build {
    /// `.real-slurm/<release>-<key>`: the whole build tree (install tree, view, environment).
    dir: PathBuf,
    /// `22.05.8`.
    release: &'static str,
}

impl Build {
    /// The view as Spack 1.0 wrote it: a symlink to `._view/<hash>`.
    fn view(&self) -> PathBuf {
        self.dir.join("view")
    }

    /// The catalog series (`22.05`), as tarball-publish names the tarball.
    fn series(&self) -> &'static str {
        &self.release[..5]
    }

    fn tarball_name(&self) -> String {
        format!("slurm-{}-gcc{GCC}-software.tar.gz", self.series())
    }
}

/// The cached build of `release`, or `None` after saying why the test is skipped (outside CI:
/// not root, or `scripts/real-slurm` has not run). Under CI a missing build fails.
fn build(release: &'static str) -> Option<Build> {
    if !rustix::process::getuid().is_root() {
        assert!(
            !common::under_ci(),
            "the real Slurm tests need root (mount namespaces, daemons)"
        );
        eprintln!(
            "skipped: the real Slurm tests hide the build tree with a mount namespace and start daemons; run them as root (CI does)"
        );
        return None;
    }
    for tool in ["unshare", "tar", "sh", "munged"] {
        common::require_tool(tool)?;
    }
    let cache = common::repo_root().join(".real-slurm");
    let found = std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{release}-"))
                && e.path().join("DONE").is_file()
        });
    match found {
        Some(e) => Some(Build {
            dir: e.path(),
            release,
        }),
        None if common::under_ci() => {
            panic!(
                "no real Slurm {release} build under .real-slurm/: scripts/test runs scripts/real-slurm first"
            )
        }
        None => {
            eprintln!(
                "skipped: no real Slurm {release} build (run scripts/real-slurm {release}); under CI this fails"
            );
            None
        }
    }
}

/// `cmd` run with the build tree hidden: in a private mount namespace with an empty read-only
/// tmpfs over `build.dir`. The script checks the build tree is really empty before it execs.
fn hidden(build: &Build, cmd: &Command) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            r#"mount -t tmpfs -o ro,size=4k,mode=0555 real-slurm-hidden "$1" || exit 97
[ -z "$(ls -A "$1")" ] || { echo "the build tree $1 is still visible" >&2; exit 98; }
shift; exec "$@""#,
        )
        .arg("sh")
        .arg(&build.dir)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    // The wrapped commands are scrubbed (env_clear) ones: carry exactly what they set.
    c.env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    if let Some(d) = cmd.get_current_dir() {
        c.current_dir(d);
    }
    c
}

fn run(mut c: Command) -> (Output, String) {
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

fn key(which: &str) -> PathBuf {
    common::repo_root().join(format!(
        "tests/fixtures/spack-v3/keys/demo-signer.{which}.asc"
    ))
}

/// The job summary rows every passing cluster smoke writes.
fn assert_cluster_smoke_passed(summary: &str, release: &str, auth: &str) {
    assert!(summary.contains("Cluster smoke test passed"), "{summary}");
    for row in [
        format!("| Slurm version | ✅ {}", &release[..5]),
        "| slurmctld started | ✅ pid ".to_owned(),
        "| slurmd started | ✅ pid ".to_owned(),
        "| node idle | ✅ ".to_owned(),
        "| srun -N1 hostname | ✅ printed ".to_owned(),
        "COMPLETED (ExitCode 0:0), file written".to_owned(),
        "| daemons stopped | ✅ ".to_owned(),
    ] {
        assert!(summary.contains(&row), "missing {row:?} in:\n{summary}");
    }
    assert_eq!(
        summary.contains("| munged started | ✅"),
        auth == "munge",
        "{summary}"
    );
    assert!(!summary.contains('❌'), "{summary}");
}

// ---------------------------------------------------------------------------------------
// The buildcache path.

fn buildcache_path(release: &'static str, auth: &str) {
    let Some(b) = build(release) else { return };
    let Some(spack) = common::real_spack() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let home = b.dir.join("home");
    // Real Spack pushes the build (unsigned, as build-slurm's container does).
    let mut push = spack.command(&home);
    push.arg("-e")
        .arg(b.dir.join("env"))
        .args(["buildcache", "push", "--unsigned", "--update-index"])
        .arg(d.join("unsigned"))
        .arg("slurm");
    let (out, text) = run(push);
    assert!(out.status.success(), "spack buildcache push:\n{text}");
    // Our signer, into a file:// cache.
    let signed = format!("file://{}", d.join("signed").display());
    let mut sign = common::in_actions("sign-and-upload", d);
    sign.arg("--source")
        .arg(d.join("unsigned"))
        .args(["--destination", &signed, "--key-file"])
        .arg(key("sec"));
    let (out, text) = run(sign);
    assert!(out.status.success(), "sign-and-upload:\n{text}");

    // Installed where the build never was, with the build tree gone.
    let prefix = d.join("installed/somewhere/else");
    let work = d.join("work");
    let tmp = d.join("tmp");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let mut ti = common::in_actions("test-install", d);
    ti.current_dir(&work)
        .env("TMPDIR", &tmp)
        .args(["--buildcache", &signed, "--spec", "slurm", "--prefix"])
        .arg(&prefix)
        .arg("--trusted-key")
        .arg(key("pub"))
        .arg("--cluster-smoke");
    let (out, text) = run(hidden(&b, &ti));
    let summary = std::fs::read_to_string(d.join("summary.md")).unwrap();
    assert!(out.status.success(), "{}: {text}\n{summary}", out.status);
    assert_cluster_smoke_passed(&summary, b.release, auth);
}

#[test]
fn slurm_22_05_buildcache_path_runs_a_cluster_where_the_build_never_was() {
    buildcache_path("22.05.8", "munge");
}

#[test]
fn slurm_24_11_buildcache_path_runs_a_cluster_where_the_build_never_was() {
    buildcache_path("24.11.5", "slurm");
}

// ---------------------------------------------------------------------------------------
// The tarball path.

fn publish(b: &Build, out: &Path) -> PathBuf {
    std::fs::create_dir_all(out).unwrap();
    let mut c = common::in_actions("tarball-publish", out);
    // The view exactly as Spack 1.0 wrote it: a symlink to ._view/<hash>.
    assert!(
        std::fs::symlink_metadata(b.view())
            .unwrap()
            .file_type()
            .is_symlink()
    );
    c.arg("--view")
        .arg(b.view())
        .args(["--slurm-version", b.series(), "--compiler-version", GCC])
        .arg("--output")
        .arg(out)
        .arg("--key-file")
        .arg(key("sec"))
        .env("SOURCE_DATE_EPOCH", "1700000000");
    let (o, text) = run(c);
    assert!(o.status.success(), "tarball-publish:\n{text}");
    assert!(!text.contains("::warning::"), "{text}");
    out.join(b.tarball_name())
}

fn tarball_path(release: &'static str, auth: &str) {
    let Some(b) = build(release) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tarball = publish(&b, &d.join("out"));

    let prefix = d.join("opt/slurm");
    let work = d.join("work");
    let tmp = d.join("tmp");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let mut ti = common::in_actions("test-install", d);
    ti.current_dir(&work)
        .env("TMPDIR", &tmp)
        .arg("--tarball")
        .arg(&tarball)
        .arg("--prefix")
        .arg(&prefix)
        .arg("--trusted-key")
        .arg(key("pub"))
        .arg("--cluster-smoke");
    let (out, text) = run(hidden(&b, &ti));
    let summary = std::fs::read_to_string(d.join("summary.md")).unwrap();
    assert!(out.status.success(), "{}: {text}\n{summary}", out.status);
    assert_cluster_smoke_passed(&summary, b.release, auth);
}

#[test]
fn slurm_22_05_tarball_runs_a_cluster_where_it_is_unpacked() {
    tarball_path("22.05.8", "munge");
}

#[test]
fn slurm_24_11_tarball_runs_a_cluster_where_it_is_unpacked() {
    tarball_path("24.11.5", "slurm");
}

/// The manual path: nothing of ours but the tarball, a POSIX shell, tar and Lmod.
fn manual_path(release: &'static str) {
    let Some(b) = build(release) else { return };
    if !Path::new(LMOD_INIT).is_file() {
        assert!(
            !common::under_ci(),
            "Debian's Lmod ({LMOD_INIT}) is missing"
        );
        eprintln!("skipped: Debian's Lmod is not installed ({LMOD_INIT}); under CI this fails");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tarball = publish(&b, &d.join("out"));
    let first = d.join("a");
    let moved = d.join("moved/to/a/much/longer/path/than/before/slurm");
    // Slurm >= 22.05 clients read a configuration before they print their version: give them
    // one that says nothing about where Slurm is (no PluginDir), like a site's own.
    let conf = d.join("etc/slurm.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, "ClusterName=smoke\nSlurmctldHost=localhost\n").unwrap();
    let script = r#"set -eu
tarball=$1 first=$2 moved=$3 lmod=$4
mkdir -p "$first"
tar -xzf "$tarball" -C "$first"
sh "$first/data/install.sh"
. "$lmod"
module use "$first/modules"
module load slurm
echo "== $(command -v sinfo)"
sinfo --version
srun --version
scontrol --version
module purge
mkdir -p "$(dirname "$moved")"
mv "$first" "$moved"
sh "$moved/data/install.sh"
sh "$moved/data/install.sh"
module use "$moved/modules"
module load slurm
echo "== $(command -v sinfo)"
sinfo --version
"$moved/view/sbin/slurmd" -V
"#;
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(script)
        .arg("sh")
        .arg(&tarball)
        .arg(&first)
        .arg(&moved)
        .arg(LMOD_INIT)
        .env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .env("HOME", d)
        .env("SLURM_CONF", &conf);
    let (out, text) = run(hidden(&b, &c));
    assert!(out.status.success(), "{text}");
    let v = &b.release;
    assert_eq!(text.matches(&format!("slurm {v}\n")).count(), 5, "{text}");
    assert!(
        text.contains(&format!("== {}/view/bin/sinfo", first.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("== {}/view/bin/sinfo", moved.display())),
        "{text}"
    );
    assert!(text.contains("already installed at"), "{text}");

    assert_names_no_build_path(&b, &moved);
}

/// Reads every file of the installed tarball at `root`: none names the install tree or the
/// view of the build (the view both as configured and as the `._view/<hash>` it points at).
/// Only the records of the build say where it was: `data/MANIFEST` and
/// `data/build-prefixes.txt`. Any other mention of the build directory must be a source file
/// name under its stage (`__FILE__` in Slurm's log messages; never opened), which is counted.
fn assert_names_no_build_path(b: &Build, root: &Path) {
    let dir = b.dir.to_str().unwrap().to_owned();
    let needles = [
        format!("{dir}/opt"),
        format!("{dir}/view"),
        format!("{dir}/._view"),
    ];
    let records = [
        root.join("data/MANIFEST"),
        root.join("data/build-prefixes.txt"),
    ];
    let mut bad = Vec::new();
    let mut files = 0;
    let mut stage_names = 0;
    for e in walkdir::WalkDir::new(root).follow_links(false) {
        let e = e.unwrap();
        let bytes = if e.file_type().is_symlink() {
            std::fs::read_link(e.path())
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else if e.file_type().is_file() {
            files += 1;
            std::fs::read(e.path()).unwrap()
        } else {
            continue;
        };
        if records.iter().any(|r| r == e.path()) {
            continue;
        }
        let shown = e.path().display().to_string();
        if needles
            .iter()
            .any(|n| memchr::memmem::find(&bytes, n.as_bytes()).is_some())
        {
            bad.push(shown.clone());
        }
        for at in memchr::memmem::find_iter(&bytes, dir.as_bytes()) {
            if bytes[at + dir.len()..].starts_with(b"/stage/") {
                stage_names += 1;
            } else if !bad.contains(&shown) {
                bad.push(shown.clone());
            }
        }
    }
    assert!(files > 100, "only {files} files installed");
    assert!(bad.is_empty(), "these name the build tree {dir}: {bad:?}");
    eprintln!("{files} files read; {stage_names} source file names under the build's stage");
}

#[test]
fn slurm_22_05_tarball_by_hand_runs_from_anywhere_and_names_no_build_path() {
    manual_path("22.05.8");
}

#[test]
fn slurm_24_11_tarball_by_hand_runs_from_anywhere_and_names_no_build_path() {
    manual_path("24.11.5");
}

// ---------------------------------------------------------------------------------------
// What the builds are.

#[test]
fn real_builds_have_every_plugin_the_cluster_smoke_loads() {
    for (release, has_task_none) in [("22.05.8", true), ("24.11.5", false)] {
        let Some(b) = build(release) else { continue };
        let plugins = b.view().join("lib/slurm");
        for p in slurm_factory::cluster::config::REQUIRED_PLUGINS {
            assert!(plugins.join(p).is_file(), "Slurm {release} lacks {p}");
        }
        // Why the smoke does not use task/none: 24.11 has none.
        assert_eq!(
            plugins.join("task_none.so").is_file(),
            has_task_none,
            "{release}"
        );
    }
}
