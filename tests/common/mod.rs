//! Helpers shared by the integration tests: locating external tools, skipping (or, under CI,
//! failing) when one is missing, and running our binaries with a scrubbed environment.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python venv the test command installs tools into (`SLURM_FACTORY_VENV`, default `.venv`).
pub fn venv() -> PathBuf {
    std::env::var_os("SLURM_FACTORY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv"))
}

/// Whether we run under CI (`CI` set), where a missing tool is a failure, not a skip.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Finds tool `name` in the venv's `bin/` or on `PATH`.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let in_venv = venv().join("bin").join(name);
    if in_venv.is_file() {
        return Some(in_venv);
    }
    on_path(name)
}

/// Returns tool `name`, or `None` after printing why the calling test is skipped. Under CI a
/// missing tool panics instead: the test command installs every tool, so absence is a bug.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    match find_tool(name) {
        Some(p) => Some(p),
        None if under_ci() => panic!(
            "required test tool `{name}` not found (venv {} or PATH); run scripts/install-test-deps.sh",
            venv().display()
        ),
        None => {
            eprintln!(
                "skipped: `{name}` is not installed (run scripts/install-test-deps.sh); under CI this fails"
            );
            None
        }
    }
}

/// Path of one of our binaries, built by Cargo for this test run.
pub fn bin(name: &str) -> PathBuf {
    assert_cmd::cargo::cargo_bin(name)
}

/// A command for one of our binaries with an environment scrubbed of everything the GitHub
/// runner or the developer's shell could leak in (`GITHUB_*`, `RUNNER_*`, `ACTIONS_*`,
/// `INPUT_*`, AWS and GPG variables), keeping only `PATH` and `HOME`.
pub fn scrubbed(name: &str) -> Command {
    let mut c = Command::new(bin(name));
    c.env_clear();
    for keep in ["PATH", "HOME", "TMPDIR", "LANG"] {
        if let Some(v) = std::env::var_os(keep) {
            c.env(keep, v);
        }
    }
    c.env("NO_COLOR", "1");
    c
}

/// A scrubbed command that believes it runs inside GitHub Actions, with fresh, empty
/// `$GITHUB_OUTPUT`, `$GITHUB_ENV` and `$GITHUB_STEP_SUMMARY` files in `dir`.
pub fn in_actions(name: &str, dir: &Path) -> Command {
    let mut c = scrubbed(name);
    c.env("GITHUB_ACTIONS", "true");
    for (var, file) in [
        ("GITHUB_OUTPUT", "output"),
        ("GITHUB_ENV", "env"),
        ("GITHUB_STEP_SUMMARY", "summary.md"),
        ("GITHUB_STATE", "state"),
        ("GITHUB_PATH", "path"),
    ] {
        let p = dir.join(file);
        std::fs::write(&p, "").unwrap();
        c.env(var, p);
    }
    c
}
