//! The smoke cluster's daemons as child processes, each in its own process group, and the
//! guard that always stops them: [`Daemons::stop`] on every normal path (success, failure,
//! timeout, signal), and [`Drop`] as the last resort (a panic, a dropped future).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::process::{Pid, Signal, kill_process_group};

/// How long a daemon gets to exit after SIGTERM before its process group is killed.
const GRACE: Duration = Duration::from_secs(5);

/// One started daemon.
#[derive(Debug)]
pub(crate) struct Daemon {
    /// `munged`, `slurmctld` or `slurmd`.
    pub name: &'static str,
    /// Its process id, which is also its process group id.
    pub pid: u32,
    child: tokio::process::Child,
    exited: Option<ExitStatus>,
}

/// How a daemon ended when it was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stopped {
    /// The daemon.
    pub name: &'static str,
    /// Its pid.
    pub pid: u32,
    /// What happened, for the report: `exited on SIGTERM`, `killed after 5 s`, `had already
    /// exited with status 1`.
    pub how: String,
}

/// The started daemons. Stops them all, in reverse start order, whatever happens.
#[derive(Debug, Default)]
pub(crate) struct Daemons {
    list: Vec<Daemon>,
}

/// What to start.
#[derive(Debug, Clone)]
pub(crate) struct Launch<'a> {
    /// Name in reports.
    pub name: &'static str,
    /// The executable.
    pub program: &'a Path,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Extra environment variables.
    pub env: Vec<(&'static str, OsString)>,
    /// Where stdout and stderr go.
    pub output: PathBuf,
}

impl Daemons {
    /// Starts a daemon in a new process group (so stopping it also stops what it forked),
    /// stdin closed and output appended to `launch.output`.
    pub(crate) fn spawn(&mut self, launch: Launch<'_>) -> Result<u32> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.output)
            .with_context(|| format!("cannot create {}", launch.output.display()))?;
        let err = out.try_clone()?;
        let mut cmd = tokio::process::Command::new(launch.program);
        cmd.args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(false);
        let child = cmd.spawn().with_context(|| {
            format!(
                "cannot start {} ({}); check it exists and is executable",
                launch.name,
                launch.program.display()
            )
        })?;
        let pid = child
            .id()
            .context("a just-started daemon has no pid (it was already reaped)")?;
        self.list.push(Daemon {
            name: launch.name,
            pid,
            child,
            exited: None,
        });
        Ok(pid)
    }

    /// The started daemons' names and pids, in start order.
    pub(crate) fn pids(&self) -> Vec<(&'static str, u32)> {
        self.list.iter().map(|d| (d.name, d.pid)).collect()
    }

    /// The first daemon that has exited (it should run until stopped), with its status.
    pub(crate) fn exited(&mut self) -> Option<(&'static str, ExitStatus)> {
        for d in &mut self.list {
            if d.exited.is_none()
                && let Ok(Some(st)) = d.child.try_wait()
            {
                d.exited = Some(st);
            }
            if let Some(st) = d.exited {
                return Some((d.name, st));
            }
        }
        None
    }

    /// Stops every daemon, last started first: SIGTERM to its process group, then SIGKILL to
    /// the group after [`GRACE`]. Each is reaped, so none is left running or as a zombie.
    pub(crate) async fn stop(&mut self) -> Vec<Stopped> {
        let mut out = Vec::new();
        while let Some(mut d) = self.list.pop() {
            let how = stop_one(&mut d).await;
            out.push(Stopped {
                name: d.name,
                pid: d.pid,
                how,
            });
        }
        out
    }
}

async fn stop_one(d: &mut Daemon) -> String {
    let group = Pid::from_raw(i32::try_from(d.pid).unwrap_or(i32::MAX));
    if let Some(st) = d.exited.or_else(|| d.child.try_wait().ok().flatten()) {
        // The leader is gone; whatever it forked into its group goes too.
        if let Some(g) = group {
            let _ = kill_process_group(g, Signal::KILL);
        }
        return format!("had already exited ({st})");
    }
    let started = Instant::now();
    if let Some(g) = group {
        let _ = kill_process_group(g, Signal::TERM);
    }
    let how = match tokio::time::timeout(GRACE, d.child.wait()).await {
        Ok(Ok(st)) => format!(
            "stopped by SIGTERM in {:.1}s ({st})",
            started.elapsed().as_secs_f64()
        ),
        _ => {
            let _ = d.child.start_kill();
            let _ = d.child.wait().await;
            format!(
                "did not stop within {}s of SIGTERM; killed",
                GRACE.as_secs()
            )
        }
    };
    // Anything the daemon forked into its group (a slurmstepd, a job step) goes with it.
    if let Some(g) = group {
        let _ = kill_process_group(g, Signal::KILL);
    }
    how
}

/// SIGKILLs every process whose environment holds exactly `entry` (`SLURM_CONF=<our
/// slurm.conf>`): job steps and `slurmstepd`s of the smoke cluster that outlived `slurmd`
/// (Slurm keeps running jobs when `slurmd` stops, by design). Only this cluster's processes
/// carry that entry. Returns the pids killed.
pub(crate) fn sweep(entry: &[u8]) -> Vec<u32> {
    let me = std::process::id();
    let mut killed = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return killed;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(p.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|e| e == entry)
            && let Some(p) = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
            && rustix::process::kill_process(p, Signal::KILL).is_ok()
        {
            killed.push(pid);
        }
    }
    killed
}

impl Drop for Daemons {
    /// The last resort when [`Daemons::stop`] did not run (a panic, a cancelled future):
    /// SIGKILL every remaining process group. Tokio reaps the children in the background.
    fn drop(&mut self) {
        for d in &mut self.list {
            if let Some(g) = Pid::from_raw(i32::try_from(d.pid).unwrap_or(i32::MAX)) {
                let _ = kill_process_group(g, Signal::KILL);
            }
            let _ = d.child.start_kill();
        }
    }
}
