//! The cluster smoke test (`test-install --cluster-smoke`) against a real Slurm: Debian's
//! `slurmctld`, `slurmd` and `slurm-client` (22.05) installed under `/usr`, with MUNGE from
//! Debian's `munge`. Real daemons on loopback, real jobs; nothing is faked.
//!
//! The daemons need root (or CI, where a missing tool fails instead of skipping). Every test
//! reads the started daemons' pids from the debug bundle's `daemons.txt` (or from their pid
//! files) and asserts that none is left running.

mod common;
#[path = "cluster/support.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use slurm_factory::cluster::{self, Options};
use slurm_factory::gha::Runner;
use support::{Ready, assert_all_gone, bundle_pids, debian_slurm, runner_in, smoke_cmd};

#[test]
fn smoke_test_passes_against_debian_slurm_and_stops_every_daemon() {
    let Some(Ready) = debian_slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = smoke_cmd(dir.path(), Path::new("/usr")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");

    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(summary.contains("Cluster smoke test passed"), "{summary}");
    for row in [
        "| Slurm version | ✅ 22.05",
        "| munged started | ✅ pid ",
        "| slurmctld started | ✅ pid ",
        "| slurmd started | ✅ pid ",
        "| node idle | ✅ ",
        "| srun -N1 hostname | ✅ printed ",
        "| sbatch --wrap | ✅ job ",
        "COMPLETED (ExitCode 0:0), file written",
        "| daemons stopped | ✅ slurmd (pid ",
    ] {
        assert!(summary.contains(row), "missing {row:?} in:\n{summary}");
    }
    assert!(!summary.contains('❌'), "{summary}");

    let bundle = dir.path().join("work").join(cluster::DEBUG_BUNDLE);
    // munged in the foreground logs to stderr: munged.out.
    for f in [
        "slurm.conf",
        "slurmctld.log",
        "slurmd.log",
        "munged.out",
        "daemons.txt",
    ] {
        assert!(bundle.join(f).is_file(), "{f} missing from the bundle");
    }
    let ctld = std::fs::read_to_string(bundle.join("slurmctld.log")).unwrap();
    assert!(ctld.contains("_job_complete"), "{ctld}");
    // The keys never leave the throwaway directory, which is removed.
    for e in std::fs::read_dir(&bundle).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains("key"), "{name} in the bundle");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "throwaway directory left behind: {leftovers:?}"
    );

    let pids = bundle_pids(&bundle);
    let names: Vec<&str> = pids.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["munged", "slurmctld", "slurmd"]);
    assert_all_gone(&pids, dir.path());
}

#[test]
fn a_prefix_without_plugins_is_refused_before_anything_starts() {
    let Some(Ready) = debian_slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The real commands, but no plugin directory at all.
    let prefix = support::prefix_with_commands(dir.path());
    let out = smoke_cmd(dir.path(), &prefix).output().unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("::error::no Slurm plugin directory (PluginDir) in"),
        "{stdout}"
    );
    assert!(stdout.contains("slurm-wlm-basic-plugins"), "{stdout}");
    // Nothing was started or written.
    assert!(!dir.path().join("work").join(cluster::DEBUG_BUNDLE).exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn a_plugin_dir_missing_the_auth_plugin_fails_with_the_controller_log() {
    let Some(Ready) = debian_slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Passes our layout check (the four plugins the config names), but slurmctld cannot
    // load auth/munge from it: the daemon itself must fail, and we must say so.
    let prefix = support::prefix_with_commands(dir.path());
    support::link_plugins(&prefix, cluster::config::REQUIRED_PLUGINS);
    let out = smoke_cmd(dir.path(), &prefix).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("slurmctld exited"), "{stdout}");
    assert!(stdout.contains("a wrong PluginDir"), "{stdout}");
    // The log tail is printed inside a group, with workflow commands stopped.
    assert!(
        stdout.contains("::group::slurmctld.log: last 40 lines"),
        "{stdout}"
    );
    assert!(stdout.contains("auth/munge"), "{stdout}");
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(summary.contains("Cluster smoke test failed"), "{summary}");
    assert!(summary.contains("| slurmctld started | ❌ "), "{summary}");
    let bundle = dir.path().join("work").join(cluster::DEBUG_BUNDLE);
    let pids = bundle_pids(&bundle);
    assert!(pids.iter().any(|(n, _)| n == "slurmctld"), "{pids:?}");
    assert_all_gone(&pids, dir.path());
}

fn run_library(dir: &Path, opts: &Options) -> (anyhow::Result<cluster::Report>, String) {
    let runner: Runner = runner_in(dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(cluster::run(Path::new("/usr"), opts, &runner));
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap_or_default();
    (r, summary)
}

fn library_options(dir: &Path) -> Options {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut opts = Options::new(dir.join("bundle"));
    opts.work_parent = Some(tmp);
    opts
}

#[test]
fn slurmd_that_cannot_reach_the_controller_is_reported() {
    let Some(Ready) = debian_slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut opts = library_options(dir.path());
    opts.start_controller = false;
    opts.idle_timeout = Duration::from_secs(6);
    let (r, summary) = run_library(dir.path(), &opts);
    let err = format!("{:#}", r.unwrap_err());
    assert!(
        err.contains("the node did not become idle within 6s"),
        "{err}"
    );
    assert!(
        err.contains("slurmd could not register with slurmctld"),
        "{err}"
    );
    assert!(summary.contains("| node idle | ❌ "), "{summary}");
    let slurmd = std::fs::read_to_string(dir.path().join("bundle/slurmd.log")).unwrap();
    assert!(
        slurmd.contains("Unable to register") || slurmd.contains("Unable to contact"),
        "{slurmd}"
    );
    let pids = bundle_pids(&dir.path().join("bundle"));
    let names: Vec<&str> = pids.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["munged", "slurmd"]);
    assert_all_gone(&pids, dir.path());
}

#[test]
fn a_batch_job_that_fails_is_reported() {
    let Some(Ready) = debian_slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut opts = library_options(dir.path());
    opts.batch_extra = Some("echo the-job-says-goodbye; exit 1".into());
    let (r, summary) = run_library(dir.path(), &opts);
    let err = format!("{:#}", r.unwrap_err());
    assert!(err.contains("ended FAILED with ExitCode 1:0"), "{err}");
    assert!(err.contains("the-job-says-goodbye"), "{err}");
    assert!(summary.contains("| srun -N1 hostname | ✅ "), "{summary}");
    assert!(summary.contains("| sbatch --wrap | ❌ "), "{summary}");
    let pids = bundle_pids(&dir.path().join("bundle"));
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert_all_gone(&pids, dir.path());
}

#[test]
fn the_deadline_stops_the_daemons() {
    let Some(Ready) = debian_slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut opts = library_options(dir.path());
    // The deadline passes while the batch job runs: slurmd leaves running jobs alone when it
    // stops, so the job's processes must be swept too.
    opts.timeout = Duration::from_secs(6);
    opts.batch_extra = Some("sleep 120".into());
    let (r, summary) = run_library(dir.path(), &opts);
    let err = format!("{:#}", r.unwrap_err());
    assert!(err.contains("did not finish within 6s"), "{err}");
    assert!(summary.contains("| srun -N1 hostname | ✅ "), "{summary}");
    assert!(summary.contains("| smoke test | ❌ "), "{summary}");
    assert!(
        summary.contains("leftover job process(es) killed"),
        "{summary}"
    );
    assert!(summary.contains("Cluster smoke test failed"), "{summary}");
    let pids = bundle_pids(&dir.path().join("bundle"));
    assert!(pids.iter().any(|(n, _)| n == "munged"), "{pids:?}");
    assert_all_gone(&pids, dir.path());
}

#[test]
fn sigint_stops_the_daemons() {
    signal_stops_the_daemons("INT");
}

#[test]
fn sigterm_stops_the_daemons() {
    signal_stops_the_daemons("TERM");
}

fn signal_stops_the_daemons(sig: &str) {
    let Some(Ready) = debian_slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut child = smoke_cmd(dir.path(), Path::new("/usr"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until all three daemons are up (slurmd writes its pid file last).
    let pids = support::wait_for_pid_files(&dir.path().join("tmp"), Duration::from_secs(30));
    let pids = match pids {
        Ok(p) => p,
        Err(e) => {
            let _ = child.kill();
            panic!("{e}");
        }
    };
    support::signal(child.id(), sig);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("cancelled by SIG{sig}")),
        "{stdout}"
    );
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert_all_gone(&pids, dir.path());
    let bundle = bundle_pids(&dir.path().join("work").join(cluster::DEBUG_BUNDLE));
    assert_all_gone(&bundle, dir.path());
}

#[test]
fn an_unprivileged_user_runs_the_cluster_as_itself() {
    let Some(Ready) = debian_slurm() else { return };
    if !rustix::process::getuid().is_root() {
        // Already unprivileged: the other tests cover this user.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for sub in ["work", "tmp"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    std::fs::write(dir.path().join("summary.md"), "").unwrap();
    // munged refuses group- or world-writable directories: the tree is nobody's, 0755.
    let st = std::process::Command::new("chown")
        .args(["-R", "nobody"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let d = dir.path().display();
    let script = format!(
        "cd {d}/work && exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin TMPDIR={d}/tmp GITHUB_ACTIONS=true GITHUB_STEP_SUMMARY={d}/summary.md {} --prefix /usr --cluster-smoke",
        common::bin("test-install").display()
    );
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(summary.contains("| sbatch --wrap | ✅ job "), "{summary}");
    let bundle = dir.path().join("work").join(cluster::DEBUG_BUNDLE);
    let conf = std::fs::read_to_string(bundle.join("slurm.conf")).unwrap();
    assert!(conf.contains("\nSlurmUser=65534\n"), "{conf}");
    let pids = bundle_pids(&bundle);
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert_all_gone(&pids, dir.path());
}
