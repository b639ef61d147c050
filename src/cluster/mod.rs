//! The cluster smoke test of an installed Slurm: start a throwaway single-host cluster from the
//! installation (controller, node daemon and, before Slurm 23.11, our own `munged`), check
//! that the node becomes idle and that `srun` and `sbatch` run jobs, then always stop the
//! daemons. `sinfo --version` only proves a binary loads; this proves the build schedules.
//!
//! [`run`] is the entry point; `test-install --cluster-smoke` calls it on `--prefix` (and
//! after an install). Pieces:
//!
//! - [`config`]: the installation's commands and `PluginDir`, the Slurm version, this host,
//!   free loopback ports and the generated `slurm.conf` and keys;
//! - `daemons`: the daemons as child processes in their own process groups, stopped on
//!   every path (the guard's `Drop` is the last resort);
//! - [`jobs`]: the `sinfo`/`srun`/`sbatch`/`squeue`/`scontrol` checks;
//! - [`report`]: the job-summary table, log tails inside `::group::`, the debug bundle.

pub mod config;
pub(crate) mod daemons;
pub(crate) mod jobs;
pub(crate) mod report;

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::docker::Cancel;
use crate::gha::Runner;
use config::{Auth, ClusterConfig, Host, Installation, SlurmVersion};
use daemons::{Daemons, Launch};
use jobs::{Clients, POLL};
use report::Check;

/// The debug bundle directory `test-install --cluster-smoke` writes, relative to the current
/// directory (the pipelines' artifact glob `**/debug-bundle*` picks it up).
pub const DEBUG_BUNDLE: &str = "debug-bundle-cluster-smoke";

/// How the smoke test runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory receiving the daemons' logs, `slurm.conf`, the jobs' output and
    /// `daemons.txt` (the started daemons' pids), on success and failure.
    pub debug_bundle: PathBuf,
    /// The whole test must finish within this time; the daemons are stopped when it passes.
    pub timeout: Duration,
    /// How long the node may take to become `idle`.
    pub idle_timeout: Duration,
    /// How long the batch job may take from submission to its end.
    pub job_timeout: Duration,
    /// Where the throwaway directory is created (default: the system temporary directory).
    pub work_parent: Option<PathBuf>,
    /// Shell commands the batch job runs after writing its file. Tests pass `exit 1` to
    /// prove that a failing job is reported.
    pub batch_extra: Option<String>,
    /// Start slurmctld (always, except in the test that proves an unreachable controller is
    /// reported).
    pub start_controller: bool,
}

impl Options {
    /// The defaults, with the debug bundle in `debug_bundle`.
    pub fn new(debug_bundle: PathBuf) -> Options {
        Options {
            debug_bundle,
            timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(45),
            job_timeout: Duration::from_secs(45),
            work_parent: None,
            batch_extra: None,
            start_controller: true,
        }
    }
}

/// A passed smoke test.
#[derive(Debug, Clone)]
pub struct Report {
    /// The Slurm version found.
    pub version: SlurmVersion,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// The daemons that were started (and stopped), with their pids.
    pub daemons: Vec<(&'static str, u32)>,
    /// The debug bundle.
    pub bundle: PathBuf,
}

/// Runs the cluster smoke test against the Slurm installed in `prefix` (whose `bin/` and
/// `sbin/` hold the commands). Writes the job-summary table and the debug bundle; on failure
/// prints the daemons' log tails in groups and returns an error saying which check failed.
/// No daemon outlives this call, whatever happens (including SIGINT/SIGTERM).
pub async fn run(prefix: &Path, opts: &Options, runner: &Runner) -> Result<Report> {
    // Checked before anything is started or written.
    let install = Installation::discover(prefix)?;
    let host = Host::detect()?;
    let parent = opts.work_parent.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("slurm-smoke-")
        .tempdir_in(&parent)
        .with_context(|| {
            format!(
                "cannot create a throwaway directory in {}; set TMPDIR to a writable directory",
                parent.display()
            )
        })?;
    // Daemons and jobs (possibly another user's) traverse it; the keys inside stay 0600.
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))?;
    let dir = work.path().to_owned();

    let version = detect_version(&install, &dir).await?;
    let auth = if version.has_auth_slurm() {
        Auth::Slurm
    } else {
        Auth::Munge {
            socket: dir.join("munge").join("munge.socket"),
        }
    };
    let (controller_port, node_port) = config::free_ports()?;
    let cfg = ClusterConfig {
        dir: dir.clone(),
        plugin_dir: install.plugin_dir.clone(),
        host,
        controller_port,
        node_port,
        auth,
        user: config::slurm_user(),
    };
    cfg.write(version)?;
    runner.info(&format!(
        "cluster smoke test: Slurm {version} from {}, {} with PluginDir {}, node {} on 127.0.0.1 (ports {controller_port}/{node_port}), in {}",
        prefix.display(),
        cfg.auth.name(),
        install.plugin_dir.display(),
        cfg.host.name,
        dir.display()
    ));

    let mut checks = vec![Check::pass(
        "Slurm version",
        format!("{version} from {}, {}", prefix.display(), cfg.auth.name()),
        None,
    )];
    let mut daemons = Daemons::default();
    let mut cancel = Cancel::install()?;
    let clients = Clients {
        install: install.clone(),
        conf: cfg.conf_path(),
    };
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let outcome = tokio::select! {
        r = tokio::time::timeout_at(deadline, smoke(&clients, &cfg, opts, &mut daemons, &mut checks)) => match r {
            Ok(r) => r,
            Err(_) => Err(anyhow!(
                "the cluster smoke test did not finish within {}s; the daemons were stopped (raise the timeout only if their logs show slow progress)",
                opts.timeout.as_secs()
            )),
        },
        sig = cancel.recv() => Err(anyhow!("cancelled by {sig}; the daemons were stopped")),
    };
    if let Err(e) = &outcome
        && checks.last().is_none_or(|c| c.passed)
    {
        checks.push(Check::fail("smoke test", format!("{e:#}"), None));
    }

    let pids = stop_all(&mut daemons, &cfg, &mut checks).await;

    let logs = log_files(&cfg);
    let mut bundle_files = logs.clone();
    bundle_files.push(("slurm.conf".to_owned(), cfg.conf_path()));
    bundle_files.extend(job_files(&dir.join("jobs")));
    let bundled = report::write_bundle(&opts.debug_bundle, &bundle_files, &pids);

    let failed = outcome.is_err();
    let title = if failed {
        "Cluster smoke test failed"
    } else {
        "Cluster smoke test passed"
    };
    if failed {
        report::print_tails(runner, &logs);
    }
    runner.append_summary(&report::summary(title, &checks))?;
    bundled?;
    runner.info(&format!(
        "cluster smoke test: daemon logs, slurm.conf and job output are in {}",
        opts.debug_bundle.display()
    ));
    outcome.with_context(|| {
        format!(
            "cluster smoke test of {} failed (Slurm {version}); the daemons' logs are in the debug bundle {}",
            prefix.display(),
            opts.debug_bundle.display()
        )
    })?;
    Ok(Report {
        version,
        checks,
        daemons: pids,
        bundle: opts.debug_bundle.clone(),
    })
}

/// Stops the daemons (and sweeps what jobs left behind), records it in `checks`, and returns
/// the daemons' pids (for the debug bundle).
async fn stop_all(
    daemons: &mut Daemons,
    cfg: &ClusterConfig,
    checks: &mut Vec<Check>,
) -> Vec<(&'static str, u32)> {
    let pids = daemons.pids();
    let stopped = daemons.stop().await;
    let mut stop_detail: Vec<String> = stopped
        .iter()
        .map(|s| format!("{} (pid {}) {}", s.name, s.pid, s.how))
        .collect();
    let mut marker = b"SLURM_CONF=".to_vec();
    marker.extend_from_slice(cfg.conf_path().as_os_str().as_encoded_bytes());
    let swept = daemons::sweep(&marker);
    if !swept.is_empty() {
        stop_detail.push(format!("{} leftover job process(es) killed", swept.len()));
    }
    if !stopped.is_empty() {
        checks.push(Check::pass("daemons stopped", stop_detail.join("; "), None));
    }
    pids
}

/// The checks, in order; every step records its row in `checks`.
async fn smoke(
    clients: &Clients,
    cfg: &ClusterConfig,
    opts: &Options,
    daemons: &mut Daemons,
    checks: &mut Vec<Check>,
) -> Result<()> {
    let started = Instant::now();
    let log = cfg.log_dir();
    let conf = cfg.conf_path();
    let env = vec![("SLURM_CONF", conf.clone().into_os_string())];

    if let Auth::Munge { socket } = &cfg.auth {
        let pid = record(
            checks,
            "munged started",
            start_munged(clients, cfg, socket, daemons).await,
        )?;
        if let Some(c) = checks.last_mut() {
            c.detail = format!("pid {pid}, own key and socket");
        }
    }

    if opts.start_controller {
        let pid = daemons.spawn(Launch {
            name: "slurmctld",
            program: &clients.install.slurmctld,
            args: vec!["-D".into(), "-f".into(), conf.clone().into_os_string()],
            env: env.clone(),
            output: log.join("slurmctld.out"),
        });
        let pid = record(checks, "slurmctld started", pid)?;
        let t = Instant::now();
        let up = wait_controller(clients, daemons, opts.idle_timeout).await;
        record(checks, "slurmctld started", up)?;
        if let Some(c) = checks.last_mut() {
            c.detail = format!(
                "pid {pid}, answering after {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
    }

    let pid = daemons.spawn(Launch {
        name: "slurmd",
        program: &clients.install.slurmd,
        args: vec![
            "-D".into(),
            "-f".into(),
            conf.clone().into_os_string(),
            "-N".into(),
            OsString::from(&cfg.host.name),
        ],
        env,
        output: log.join("slurmd.out"),
    });
    let pid = record(checks, "slurmd started", pid)?;
    if let Some(c) = checks.last_mut() {
        c.detail = format!("pid {pid}");
    }

    let idle = clients.wait_idle(daemons, opts.idle_timeout).await;
    let idle = record(checks, "node idle", idle)?;
    if let Some(c) = checks.last_mut() {
        c.detail = format!(
            "{} idle after {:.1} s ({:.1} s since start)",
            cfg.host.name,
            idle.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    }

    let t = Instant::now();
    let printed = clients.srun_hostname(&cfg.host.name).await;
    let printed = record(checks, "srun -N1 hostname", printed)?;
    if let Some(c) = checks.last_mut() {
        c.detail = format!("printed {printed}");
        c.took = Some(t.elapsed());
    }

    let t = Instant::now();
    let done = batch(clients, cfg, opts).await;
    let detail = record(checks, "sbatch --wrap", done)?;
    if let Some(c) = checks.last_mut() {
        c.detail = detail;
        c.took = Some(t.elapsed());
    }
    Ok(())
}

/// Records `r` as a passed (detail filled in by the caller) or failed row named `name`.
fn record<T>(checks: &mut Vec<Check>, name: &str, r: Result<T>) -> Result<T> {
    match r {
        Ok(v) => {
            if checks.last().is_none_or(|c| c.name != name) {
                checks.push(Check::pass(name, "ok", None));
            }
            Ok(v)
        }
        Err(e) => {
            if checks.last().is_some_and(|c| c.name == name) {
                checks.pop();
            }
            checks.push(Check::fail(name, format!("{e:#}"), None));
            Err(e)
        }
    }
}

/// Submits the batch job, waits for its end and checks its file.
async fn batch(clients: &Clients, cfg: &ClusterConfig, opts: &Options) -> Result<String> {
    let jobs = cfg.dir.join("jobs");
    let token = format!("slurm-factory-smoke-{}", uuid::Uuid::new_v4().simple());
    let file = jobs.join("sbatch-ok.txt");
    let mut command = format!("echo {token} > {}", file.display());
    if let Some(extra) = &opts.batch_extra {
        command.push_str("; ");
        command.push_str(extra);
    }
    let id = clients.sbatch(&jobs, &command).await?;
    let end = clients.wait_job(id, opts.job_timeout).await?;
    if !end.succeeded() {
        let out = report::tail(&jobs.join(format!("job-{id}.out")), 5);
        bail!(
            "batch job {id} ended {} with ExitCode {} (expected COMPLETED 0:0); its output: {}. The job's own command failed or slurmd could not run it; see the job output and the slurmd log",
            end.state,
            end.exit_code,
            if out.trim().is_empty() {
                "(empty)".to_owned()
            } else {
                out.replace('\n', " | ")
            }
        );
    }
    let written = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "batch job {id} ended COMPLETED but did not write {}: the job did not run its command",
            file.display()
        )
    })?;
    if written.trim() != token {
        bail!(
            "batch job {id} wrote {:?} to {}, not the token it was given",
            written.trim(),
            file.display()
        );
    }
    Ok(format!(
        "job {id} {} (ExitCode {}), file written",
        end.state, end.exit_code
    ))
}

/// Reads the version with `sinfo --version`. Slurm before 23.02 parses a configuration even
/// for that, so a minimal stub is given; `slurmctld -V` is the fallback.
async fn detect_version(install: &Installation, dir: &Path) -> Result<SlurmVersion> {
    let stub = dir.join("version-probe.conf");
    std::fs::write(&stub, "ClusterName=probe\nSlurmctldHost=localhost\n")?;
    let clients = Clients {
        install: install.clone(),
        conf: stub.clone(),
    };
    let limit = Duration::from_secs(15);
    let mut seen = Vec::new();
    for (program, flag) in [(&install.sinfo, "--version"), (&install.slurmctld, "-V")] {
        match clients.run(program, &[flag], limit).await {
            Ok(o) => match SlurmVersion::parse(&o.stdout) {
                Ok(v) => {
                    let _ = std::fs::remove_file(&stub);
                    return Ok(v);
                }
                Err(_) => seen.push(format!("{} {flag}: {}", program.display(), o.tail())),
            },
            Err(e) => seen.push(format!("{e:#}")),
        }
    }
    bail!(
        "cannot tell which Slurm this is: {}. The installation's commands do not run (missing libraries? run `ldd` on them)",
        seen.join("; ")
    )
}

/// Starts our own `munged` (the installation's, else the host's) in the foreground with a
/// fresh key, socket, pid and seed inside the throwaway directory (it logs to stderr, kept
/// as `munged.out`), and waits for its socket.
async fn start_munged(
    clients: &Clients,
    cfg: &ClusterConfig,
    socket: &Path,
    daemons: &mut Daemons,
) -> Result<u32> {
    let munged = find_munged(&clients.install.prefix).context(
        "Slurm before 23.11 authenticates with MUNGE, but no munged was found in the installation's sbin/, on PATH or in /usr/sbin; install MUNGE (Debian: munge)",
    )?;
    let keys = cfg.dir.join("keys");
    let run = cfg.dir.join("munge");
    std::fs::create_dir_all(&keys)?;
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700))?;
    std::fs::create_dir_all(&run)?;
    // munged requires its socket directory to be traversable by everyone.
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755))?;
    let key = keys.join("munge.key");
    config::write_key(&key)?;
    let arg = |k: &str, p: &Path| {
        let mut s = OsString::from(k);
        s.push(p);
        s
    };
    let pid = daemons.spawn(Launch {
        name: "munged",
        program: &munged,
        args: vec![
            "-F".into(),
            arg("--key-file=", &key),
            arg("--socket=", socket),
            arg("--pid-file=", &run.join("munged.pid")),
            arg("--seed-file=", &run.join("munged.seed")),
        ],
        env: vec![],
        output: cfg.log_dir().join("munged.out"),
    })?;
    let started = Instant::now();
    while !socket.exists() {
        if let Some((name, status)) = daemons.exited() {
            bail!(
                "{name} ({}) exited ({status}) before creating its socket; its log below says why",
                munged.display()
            );
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!(
                "{} did not create its socket {} within 10s",
                munged.display(),
                socket.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(pid)
}

fn find_munged(prefix: &Path) -> Option<PathBuf> {
    let mut candidates = vec![prefix.join("sbin/munged")];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("munged")));
    }
    candidates.push(PathBuf::from("/usr/sbin/munged"));
    candidates.into_iter().find(|p| p.is_file())
}

/// Waits until slurmctld answers `sinfo` (in any state).
async fn wait_controller(clients: &Clients, daemons: &mut Daemons, limit: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        if let Some((name, status)) = daemons.exited() {
            bail!(
                "{name} exited ({status}) while starting; its log below says why (a wrong PluginDir, a port in use, a bad slurm.conf)"
            );
        }
        let o = clients
            .run(
                &clients.install.sinfo,
                &["-h", "-o", "%T"],
                Duration::from_secs(10),
            )
            .await;
        match o {
            Ok(o) if o.code == Some(0) => return Ok(()),
            Ok(o) if started.elapsed() >= limit => bail!(
                "slurmctld did not answer within {}s: {}; see its log below",
                limit.as_secs(),
                o.tail()
            ),
            Err(e) if started.elapsed() >= limit => return Err(e),
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

/// The daemons' logs (their log files and captured output), named as in the debug bundle.
fn log_files(cfg: &ClusterConfig) -> Vec<(String, PathBuf)> {
    let log = cfg.log_dir();
    [
        "slurmctld.log",
        "slurmctld.out",
        "slurmd.log",
        "slurmd.out",
        "munged.out",
    ]
    .iter()
    .map(|n| ((*n).to_owned(), log.join(n)))
    .collect()
}

/// The batch jobs' files (`job-N.out`, `sbatch-ok.txt`), named `jobs-<name>`.
fn job_files(jobs: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(jobs)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            (
                format!("jobs-{}", e.file_name().to_string_lossy()),
                e.path(),
            )
        })
        .collect();
    out.sort();
    out
}
