//! Helpers of `tests/cluster.rs`: the gate on Debian's Slurm, running `test-install`, and
//! checking by pid that no daemon survived.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use slurm_factory::gha::Runner;

use super::common;

/// Proof that Debian's Slurm and MUNGE are there and the daemons may run.
pub struct Ready;

/// `Some` when the real cluster can run here: as root (CI runs as root), or under CI where a
/// missing tool is a failure (`common::require_tool` panics). Skips only outside CI as a
/// non-root user, or when a tool is missing outside CI.
pub fn debian_slurm() -> Option<Ready> {
    if !rustix::process::getuid().is_root() && !common::under_ci() {
        eprintln!(
            "skipped: the cluster smoke test starts slurmctld/slurmd/munged; run it as root (CI does)"
        );
        return None;
    }
    for tool in [
        "slurmctld",
        "slurmd",
        "sinfo",
        "srun",
        "sbatch",
        "squeue",
        "scontrol",
        "munged",
    ] {
        common::require_tool(tool)?;
    }
    Some(Ready)
}

/// `test-install --prefix <prefix> --cluster-smoke` believing it runs in Actions, with
/// `$GITHUB_STEP_SUMMARY` at `dir/summary.md`, the current directory `dir/work` (where the
/// debug bundle goes) and `TMPDIR` `dir/tmp` (where the throwaway directory goes).
pub fn smoke_cmd(dir: &Path, prefix: &Path) -> Command {
    for sub in ["work", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let mut c = common::in_actions("test-install", dir);
    c.current_dir(dir.join("work"))
        .env("TMPDIR", dir.join("tmp"))
        .arg("--prefix")
        .arg(prefix)
        .arg("--cluster-smoke");
    c
}

/// A runner for in-process calls, with its job summary at `dir/summary.md`.
pub fn runner_in(dir: &Path) -> Runner {
    let summary = dir.join("summary.md");
    std::fs::write(&summary, "").unwrap();
    Runner::from_vars([
        ("GITHUB_ACTIONS", "true".to_owned()),
        ("GITHUB_STEP_SUMMARY", summary.display().to_string()),
    ])
}

/// A prefix under `dir` whose `bin/` and `sbin/` link to Debian's Slurm commands, without
/// any plugin directory.
pub fn prefix_with_commands(dir: &Path) -> PathBuf {
    let prefix = dir.join("prefix");
    for (sub, names) in [
        (
            "bin",
            &["sinfo", "srun", "sbatch", "squeue", "scontrol"][..],
        ),
        ("sbin", &["slurmctld", "slurmd"][..]),
    ] {
        std::fs::create_dir_all(prefix.join(sub)).unwrap();
        for n in names {
            let real = common::find_tool(n).unwrap();
            std::os::unix::fs::symlink(real, prefix.join(sub).join(n)).unwrap();
        }
    }
    prefix
}

/// Links `names` from Debian's plugin directory into `prefix/lib/slurm`.
pub fn link_plugins(prefix: &Path, names: &[&str]) {
    let real = Path::new("/usr/lib/x86_64-linux-gnu/slurm-wlm");
    let real = if real.is_dir() {
        real.to_owned()
    } else {
        PathBuf::from("/usr/lib/aarch64-linux-gnu/slurm-wlm")
    };
    let lib = prefix.join("lib/slurm");
    std::fs::create_dir_all(&lib).unwrap();
    for n in names {
        std::os::unix::fs::symlink(real.join(n), lib.join(n)).unwrap();
    }
}

/// The `name pid` lines of a debug bundle's `daemons.txt`.
pub fn bundle_pids(bundle: &Path) -> Vec<(String, u32)> {
    let text = std::fs::read_to_string(bundle.join("daemons.txt"))
        .unwrap_or_else(|e| panic!("{}/daemons.txt: {e}", bundle.display()));
    text.lines()
        .map(|l| {
            let (n, p) = l.split_once(' ').unwrap();
            (n.to_owned(), p.parse().unwrap())
        })
        .collect()
}

/// Whether `pid` is a live process (a zombie counts as gone: it runs nothing).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// Asserts every pid is gone (allowing a moment for the kernel to finish the exit), and
/// that no process mentions `scope` (the test's directory, holding its throwaway cluster)
/// on its command line.
pub fn assert_all_gone(pids: &[(String, u32)], scope: &Path) {
    assert!(!pids.is_empty(), "no daemon pids recorded");
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<_> = pids.iter().filter(|(_, p)| alive(*p)).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < until, "daemons still running: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nothing else started in this test's cluster survived either.
    let scope = scope.display().to_string();
    let steps: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
            // Job steps carry the cluster's SLURM_CONF in their environment.
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let env = String::from_utf8_lossy(&env);
            (alive(pid) && (cmd.contains(&scope) || env.contains(&scope)))
                .then(|| format!("{pid}: {cmd}"))
        })
        .collect();
    assert!(
        steps.is_empty(),
        "processes of a smoke cluster still running: {steps:?}"
    );
}

/// Reads the pid files of the three daemons in the single `slurm-smoke-*` directory under
/// `tmp` once all exist.
pub fn wait_for_pid_files(tmp: &Path, limit: Duration) -> Result<Vec<(String, u32)>, String> {
    let until = Instant::now() + limit;
    loop {
        let work = std::fs::read_dir(tmp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("slurm-smoke-"))
            });
        if let Some(work) = work {
            let files = [
                ("munged", work.join("munge/munged.pid")),
                ("slurmctld", work.join("log/slurmctld.pid")),
                ("slurmd", work.join("log/slurmd.pid")),
            ];
            let read: Vec<_> = files
                .iter()
                .filter_map(|(n, f)| {
                    let pid = std::fs::read_to_string(f).ok()?.trim().parse().ok()?;
                    Some(((*n).to_owned(), pid))
                })
                .collect();
            if read.len() == files.len() {
                return Ok(read);
            }
        }
        if Instant::now() > until {
            return Err(format!(
                "the daemons' pid files did not appear under {}",
                tmp.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends signal `sig` (`TERM`, `INT`) to `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success());
}
