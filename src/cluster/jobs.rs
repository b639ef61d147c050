//! The checks run against the smoke cluster with the installation's own client commands:
//! the node becomes `idle` (`sinfo`), `srun -N1 hostname` runs, and a `sbatch --wrap` job
//! writes its file and ends `COMPLETED` (`squeue`, `scontrol show job`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::config::{Installation, PARTITION};
use super::daemons::Daemons;

/// How often the cluster is polled.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Longest a single client command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the installation's client commands against the smoke cluster (`SLURM_CONF`).
#[derive(Debug, Clone)]
pub(crate) struct Clients {
    /// The installation.
    pub install: Installation,
    /// The generated `slurm.conf`.
    pub conf: PathBuf,
}

/// What a client command printed.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

impl Output {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// `stderr` (or stdout) trimmed to its last lines, for error messages.
    pub(crate) fn tail(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let lines: Vec<&str> = text.trim().lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

impl Clients {
    /// Runs `program args` with `SLURM_CONF` set, killed after `limit`.
    pub(crate) async fn run<S: AsRef<OsStr>>(
        &self,
        program: &Path,
        args: &[S],
        limit: Duration,
    ) -> Result<Output> {
        let name = program.file_name().map_or_else(
            || program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let child = tokio::process::Command::new(program)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(limit, child)
            .await
            .with_context(|| format!("`{name}` did not finish within {}s", limit.as_secs()))?
            .with_context(|| format!("cannot run {}", program.display()))?;
        Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Polls `sinfo -h -o %T` until the node reports `idle`, a daemon exits, or `limit`
    /// passes. Returns how long it took.
    pub(crate) async fn wait_idle(
        &self,
        daemons: &mut Daemons,
        limit: Duration,
    ) -> Result<Duration> {
        let started = Instant::now();
        let mut last;
        loop {
            if let Some((name, status)) = daemons.exited() {
                bail!(
                    "{name} exited ({status}) before the node became idle; its log below says why"
                );
            }
            let args = ["-h", "-o", "%T", "-p", PARTITION];
            match self.run(&self.install.sinfo, &args, COMMAND_TIMEOUT).await {
                Ok(o) if o.ok() => {
                    let state = o.stdout.trim().to_owned();
                    if state == "idle" {
                        return Ok(started.elapsed());
                    }
                    last = format!("node state `{state}`");
                }
                Ok(o) => last = format!("sinfo failed: {}", o.tail()),
                Err(e) => last = format!("{e:#}"),
            }
            if started.elapsed() >= limit {
                bail!(
                    "the node did not become idle within {}s (last: {last}); slurmd could not register with slurmctld. Check that both daemons run from this installation and can reach each other on 127.0.0.1 (see their logs below)",
                    limit.as_secs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `srun -N1 hostname`; the step must print this node's name.
    pub(crate) async fn srun_hostname(&self, node: &str) -> Result<String> {
        let args = ["-N1", "-n1", "-t", "1", "hostname"];
        let o = self
            .run(&self.install.srun, &args, COMMAND_TIMEOUT)
            .await
            .context("srun -N1 hostname")?;
        if !o.ok() {
            bail!(
                "srun -N1 hostname failed (exit {:?}): {}. slurmd could not launch a job step; see the slurmd log below",
                o.code,
                o.tail()
            );
        }
        let printed = o.stdout.trim();
        let short = printed.split('.').next().unwrap_or_default();
        if short != node {
            bail!(
                "srun -N1 hostname printed {printed:?}, not this node's name {node:?}: the step did not run where the cluster says it did"
            );
        }
        Ok(printed.to_owned())
    }

    /// Submits `sbatch --wrap <command>` with its output in `jobs/` and returns the job id.
    pub(crate) async fn sbatch(&self, jobs: &Path, command: &str) -> Result<u64> {
        let out = jobs.join("job-%j.out");
        let args = [
            "--parsable".as_ref(),
            "-N1".as_ref(),
            "-t".as_ref(),
            "1".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            "--wrap".as_ref(),
            OsStr::new(command),
        ];
        let o = self
            .run(&self.install.sbatch, &args, COMMAND_TIMEOUT)
            .await
            .context("sbatch --wrap")?;
        if !o.ok() {
            bail!(
                "sbatch was refused (exit {:?}): {}. slurmctld did not accept a batch job; see its log below",
                o.code,
                o.tail()
            );
        }
        // `--parsable` prints `id` or `id;cluster`.
        let id = o.stdout.trim().split(';').next().unwrap_or_default();
        id.parse()
            .with_context(|| format!("sbatch printed {:?}, not a job id", o.stdout.trim()))
    }

    /// Waits until job `id` leaves the queue (`squeue`) and returns its final `JobState` and
    /// `ExitCode` from `scontrol -o show job`.
    pub(crate) async fn wait_job(&self, id: u64, limit: Duration) -> Result<JobEnd> {
        let started = Instant::now();
        let id_s = id.to_string();
        loop {
            let q = self
                .run(
                    &self.install.squeue,
                    &["-h", "-j", id_s.as_str(), "-o", "%T"],
                    COMMAND_TIMEOUT,
                )
                .await?;
            let queued = q.stdout.trim();
            let listed = q.ok() && !queued.is_empty() && !is_final(queued);
            if !listed {
                let end = self.job_state(id).await?;
                if is_final(&end.state) {
                    return Ok(end);
                }
            }
            if started.elapsed() >= limit {
                let end = self.job_state(id).await.ok();
                bail!(
                    "batch job {id} did not finish within {}s (state {}); the scheduler did not start it or slurmd did not run it, see the logs below",
                    limit.as_secs(),
                    end.map_or_else(|| queued.to_owned(), |e| e.state)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn job_state(&self, id: u64) -> Result<JobEnd> {
        let id_s = id.to_string();
        let o = self
            .run(
                &self.install.scontrol,
                &["-o", "show", "job", id_s.as_str()],
                COMMAND_TIMEOUT,
            )
            .await?;
        if !o.ok() {
            bail!("scontrol show job {id} failed: {}", o.tail());
        }
        JobEnd::parse(&o.stdout).with_context(|| format!("scontrol show job {id}"))
    }
}

/// A job's state as `scontrol -o show job` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobEnd {
    /// `JobState` (`COMPLETED`, `FAILED`, …).
    pub state: String,
    /// `ExitCode` (`exit:signal`, `0:0` for success).
    pub exit_code: String,
}

impl JobEnd {
    /// Reads `JobState=` and `ExitCode=` from one line of `scontrol -o show job`, e.g.
    /// `JobId=3 JobName=wrap JobState=FAILED Reason=NonZeroExitCode ExitCode=1:0`.
    pub(crate) fn parse(line: &str) -> Result<JobEnd> {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(str::to_owned)
        };
        match (field("JobState="), field("ExitCode=")) {
            (Some(state), Some(exit_code)) => Ok(JobEnd { state, exit_code }),
            _ => bail!(
                "no JobState/ExitCode in {:?}",
                line.chars().take(300).collect::<String>()
            ),
        }
    }

    /// Whether the job succeeded.
    pub(crate) fn succeeded(&self) -> bool {
        self.state == "COMPLETED" && self.exit_code == "0:0"
    }
}

/// Whether `state` is a job state the job never leaves.
fn is_final(state: &str) -> bool {
    matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "CANCELLED"
            | "TIMEOUT"
            | "NODE_FAIL"
            | "OUT_OF_MEMORY"
            | "BOOT_FAIL"
            | "DEADLINE"
            | "PREEMPTED"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ends_are_read_from_scontrol_lines() {
        let j = JobEnd::parse(
            "JobId=3 JobName=wrap JobState=FAILED Reason=NonZeroExitCode ExitCode=1:0 X=Y",
        )
        .unwrap();
        assert_eq!((j.state.as_str(), j.exit_code.as_str()), ("FAILED", "1:0"));
        assert!(!j.succeeded());
        assert!(JobEnd::parse("JobId=3 JobState=COMPLETED").is_err());
    }

    #[test]
    fn job_state_parsing_needs_both_fields() {
        assert!(JobEnd::parse("JobId=1 JobState=COMPLETED").is_err());
        let j = JobEnd::parse("JobId=1 JobState=COMPLETED Reason=None ExitCode=0:0").unwrap();
        assert!(j.succeeded());
        let j = JobEnd::parse("JobState=COMPLETED ExitCode=0:15").unwrap();
        assert!(!j.succeeded());
        assert!(is_final("FAILED") && !is_final("RUNNING") && !is_final("COMPLETING"));
    }
}
