//! The build container, on the Docker engine API (bollard).
//!
//! [`Engine::connect`] fails fast when no engine is reachable. [`Engine::build_image`] builds the
//! image from a [`BuildContext`] (layer cache on unless `no_cache`). [`Engine::run_steps`] runs
//! each step in its own short-lived container with the same mounts, environment and user,
//! streaming its output live inside a log group with workflow commands stopped (so nothing the
//! build prints can become an annotation, a masked value or an output), teeing it into log files,
//! and removing the container afterwards. The job deadline and SIGINT/SIGTERM ([`Cancel`]) stop
//! and remove the running container.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    AttachContainerOptions, BuildImageOptions, CreateContainerOptions, ListContainersOptions,
    RemoveContainerOptions, WaitContainerOptions,
};
use futures::StreamExt;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::gha::Runner;
use crate::spack::Step;
use crate::spack::stats::StepTime;

pub mod context;
pub mod user;

pub use context::BuildContext;
pub use user::UserSpec;

/// Label on every image and container slurm-factory creates (`true`).
pub const LABEL_MANAGED: &str = "io.slurm-factory.managed";
/// Label carrying the run id (see [`crate::spack::RunId`]).
pub const LABEL_RUN: &str = "io.slurm-factory.run-id";
/// Label carrying the build namespace.
pub const LABEL_NAMESPACE: &str = "io.slurm-factory.namespace";
/// Label carrying the step name.
pub const LABEL_STEP: &str = "io.slurm-factory.step";

/// How long connecting to the engine may take before we give up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A connected Docker engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    endpoint: String,
}

/// Why a build stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A step exited non-zero.
    StepFailed {
        /// The step.
        step: String,
        /// Its exit code.
        code: i64,
    },
    /// The job deadline passed during a step (or the image build).
    TimedOut {
        /// The step running when time ran out.
        step: String,
        /// The job timeout.
        timeout: Duration,
    },
    /// SIGINT or SIGTERM arrived (a cancelled run).
    Cancelled {
        /// The step running.
        step: String,
        /// `SIGINT` or `SIGTERM`.
        signal: &'static str,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::StepFailed { step, code } => {
                write!(f, "step `{step}` failed with exit code {code}")
            }
            Failure::TimedOut { step, timeout } => write!(
                f,
                "step `{step}` was stopped: the job timeout of {} ran out (raise --timeout-minutes if the build needs longer)",
                human(*timeout)
            ),
            Failure::Cancelled { step, signal } => write!(
                f,
                "cancelled by {signal} during step `{step}`; its container was stopped and removed"
            ),
        }
    }
}

/// Formats a duration as `1h 02m 03s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) if d.as_millis() < 10_000 && s < 10 => format!("{:.1}s", d.as_secs_f64()),
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, s) => format!("{h}h {m:02}m {s:02}s"),
    }
}

/// SIGINT/SIGTERM listeners, installed once at the start of a build so a cancelled run never
/// leaves its container behind.
#[derive(Debug)]
pub struct Cancel {
    term: Signal,
    int: Signal,
}

impl Cancel {
    /// Installs the listeners.
    pub fn install() -> Result<Cancel> {
        Ok(Cancel {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    /// Resolves when a signal arrives, with its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// A host directory mounted into every step's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Host path (absolute).
    pub host: PathBuf,
    /// Container path.
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// How to build the image.
#[derive(Debug, Clone)]
pub struct ImageBuild {
    /// Ignore Docker's layer cache.
    pub no_cache: bool,
    /// Host file receiving the image build log.
    pub log: PathBuf,
    /// When the job must end.
    pub deadline: Instant,
    /// The job timeout, for messages.
    pub timeout: Duration,
}

/// How to run a build's steps.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The image.
    pub image: String,
    /// Mounts.
    pub mounts: Vec<BindMount>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory in the container.
    pub workdir: String,
    /// The user the steps run as.
    pub user: UserSpec,
    /// Labels on every container (the managed label is added).
    pub labels: BTreeMap<String, String>,
    /// Container names are `<name_prefix>-<step>`.
    pub name_prefix: String,
    /// Host directory receiving `build.log` and one log per step.
    pub log_dir: PathBuf,
    /// When the job must end.
    pub deadline: Instant,
    /// The job timeout, for messages.
    pub timeout: Duration,
}

/// What [`Engine::run_steps`] did.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Timings of the steps that ran (including a failed one).
    pub steps: Vec<StepTime>,
    /// Why the build stopped early, if it did.
    pub failure: Option<Failure>,
}

impl Engine {
    /// Connects to the engine named by `DOCKER_HOST` (default: the local socket) and checks it
    /// answers, negotiating the API version. Fails fast with an actionable message otherwise.
    pub async fn connect() -> Result<Engine> {
        let endpoint = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let fail = |why: String| {
            anyhow!(
                "cannot reach the Docker engine at {endpoint}: {why}. The build runs Spack inside a Docker container: start the Docker daemon, make sure this user may use it (e.g. membership of the `docker` group), or point DOCKER_HOST at a running engine. `--dry-run` shows the plan without Docker"
            )
        };
        let docker = Docker::connect_with_local_defaults().map_err(|e| fail(e.to_string()))?;
        let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| fail(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|e| fail(e.to_string()))?;
        tokio::time::timeout(CONNECT_TIMEOUT, docker.ping())
            .await
            .map_err(|_| fail(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|e| fail(e.to_string()))?;
        Ok(Engine { docker, endpoint })
    }

    /// The endpoint this engine was reached at.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The underlying client.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Builds the image for `ctx`, tagged [`BuildContext::image_tag`], streaming the build log
    /// into a log group (workflow commands stopped) and into `log`. Docker's layer cache is used
    /// unless `no_cache`. Returns the tag.
    pub async fn build_image(
        &self,
        ctx: &BuildContext,
        opts: &ImageBuild,
        runner: &Runner,
        cancel: &mut Cancel,
    ) -> Result<std::result::Result<String, Failure>> {
        let ImageBuild {
            no_cache,
            log,
            deadline,
            timeout: job_timeout,
        } = opts;
        let (no_cache, log) = (*no_cache, log.as_path());
        let tag = ctx.image_tag();
        let options = BuildImageOptions {
            t: Some(tag.clone()),
            nocache: no_cache,
            rm: true,
            forcerm: true,
            labels: Some(HashMap::from([(
                LABEL_MANAGED.to_owned(),
                "true".to_owned(),
            )])),
            ..Default::default()
        };
        let mut file = open_log(log)?;
        let group = runner.group(&format!(
            "Build image {tag} from {}{}",
            ctx.origin(),
            if no_cache { " (no cache)" } else { "" }
        ));
        let mut untrusted = runner.untrusted_log();
        let mut stream = self.docker.build_image(
            options,
            None,
            Some(bollard::body_full(ctx.tar().to_vec().into())),
        );
        let timeout = tokio::time::Instant::from_std(*deadline);
        let mut error = None;
        let outcome = loop {
            tokio::select! {
                item = stream.next() => match item {
                    None => break None,
                    Some(Ok(info)) => {
                        if let Some(text) = info.stream.as_deref().or(info.status.as_deref()) {
                            file.write_all(text.as_bytes())?;
                            untrusted.write_bytes(text.as_bytes());
                        }
                        if let Some(detail) = info.error_detail {
                            error = Some(detail.message.unwrap_or_default());
                        }
                    }
                    Some(Err(e)) => {
                        error = Some(e.to_string());
                        break None;
                    }
                },
                _ = tokio::time::sleep_until(timeout) => break Some(Failure::TimedOut {
                    step: "image".to_owned(),
                    timeout: *job_timeout,
                }),
                sig = cancel.recv() => break Some(Failure::Cancelled {
                    step: "image".to_owned(),
                    signal: sig,
                }),
            }
        };
        untrusted.finish();
        drop(group);
        if let Some(f) = outcome {
            return Ok(Err(f));
        }
        if let Some(e) = error {
            bail!(
                "building the image from {} failed: {e}. The full build log is {}",
                ctx.origin(),
                log.display()
            );
        }
        Ok(Ok(tag))
    }

    /// Runs `steps` in order, one container each, stopping at the first failure, the deadline
    /// or a signal. Every container is removed before this returns.
    pub async fn run_steps(
        &self,
        spec: &RunSpec,
        steps: &[Step],
        runner: &Runner,
        cancel: &mut Cancel,
    ) -> Result<RunReport> {
        std::fs::create_dir_all(&spec.log_dir)
            .with_context(|| format!("cannot create {}", spec.log_dir.display()))?;
        let mut report = RunReport::default();
        let mut build_log = open_log(&spec.log_dir.join("build.log"))?;
        for (i, step) in steps.iter().enumerate() {
            let step_log = spec.log_dir.join(format!("{:02}-{}.log", i + 1, step.name));
            let started = Instant::now();
            let result = self
                .run_one(spec, step, runner, cancel, &step_log, &mut build_log)
                .await;
            report.steps.push(StepTime {
                name: step.name.clone(),
                duration: started.elapsed(),
            });
            match result? {
                None => {}
                Some(failure) => {
                    report.failure = Some(failure);
                    break;
                }
            }
        }
        Ok(report)
    }

    async fn run_one(
        &self,
        spec: &RunSpec,
        step: &Step,
        runner: &Runner,
        cancel: &mut Cancel,
        step_log: &Path,
        build_log: &mut std::fs::File,
    ) -> Result<Option<Failure>> {
        let mut labels: HashMap<String, String> = spec
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.insert(LABEL_MANAGED.to_owned(), "true".to_owned());
        labels.insert(LABEL_STEP.to_owned(), step.name.clone());
        let name = format!("{}-{}", spec.name_prefix, step.name);
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(step.argv.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            user: Some(spec.user.to_string()),
            working_dir: Some(spec.workdir.clone()),
            labels: Some(labels),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            host_config: Some(HostConfig {
                mounts: Some(
                    spec.mounts
                        .iter()
                        .map(|m| Mount {
                            target: Some(m.container.clone()),
                            source: Some(m.host.display().to_string()),
                            typ: Some(MountType::BIND),
                            read_only: Some(m.read_only),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };

        let group = runner.group(&format!("{}: {}", step.name, step.title));
        runner.info(&format!("$ {}", step.command_line()));
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .with_context(|| format!("cannot create the container for step `{}`", step.name))?;
        let id = created.id;
        let result = self
            .drive(&id, spec, step, runner, cancel, step_log, build_log)
            .await;
        self.remove(&id).await;
        drop(group);
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn drive(
        &self,
        id: &str,
        spec: &RunSpec,
        step: &Step,
        runner: &Runner,
        cancel: &mut Cancel,
        step_log: &Path,
        build_log: &mut std::fs::File,
    ) -> Result<Option<Failure>> {
        let mut file = open_log(step_log)?;
        writeln!(build_log, "==> step {}: {}", step.name, step.command_line())?;
        let attached = self
            .docker
            .attach_container(
                id,
                Some(AttachContainerOptions {
                    stdout: true,
                    stderr: true,
                    stream: true,
                    logs: true,
                    ..Default::default()
                }),
            )
            .await
            .with_context(|| format!("cannot attach to the container of step `{}`", step.name))?;
        let mut output = attached.output;
        self.docker
            .start_container(id, None)
            .await
            .with_context(|| format!("cannot start the container of step `{}`", step.name))?;

        // Everything the container prints is untrusted: stop workflow commands around it.
        let mut untrusted = runner.untrusted_log();
        let deadline = tokio::time::Instant::from_std(spec.deadline);
        let early = loop {
            tokio::select! {
                chunk = output.next() => match chunk {
                    None => break None,
                    Some(Ok(out)) => {
                        let bytes = out.into_bytes();
                        file.write_all(&bytes)?;
                        build_log.write_all(&bytes)?;
                        untrusted.write_bytes(&bytes);
                    }
                    Some(Err(e)) => {
                        runner.info(&format!("[slurm-factory] log stream interrupted: {e}"));
                        break None;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => break Some(Failure::TimedOut {
                    step: step.name.clone(),
                    timeout: spec.timeout,
                }),
                sig = cancel.recv() => break Some(Failure::Cancelled {
                    step: step.name.clone(),
                    signal: sig,
                }),
            }
        };
        untrusted.finish();
        if early.is_some() {
            return Ok(early);
        }

        let mut wait = self.docker.wait_container(
            id,
            Some(WaitContainerOptions {
                condition: "not-running".to_owned(),
            }),
        );
        let code = tokio::select! {
            r = wait.next() => match r {
                Some(Ok(resp)) => resp.status_code,
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                Some(Err(e)) => return Err(anyhow!("waiting for step `{}` failed: {e}", step.name)),
                None => bail!("the engine ended the wait for step `{}` without an exit code", step.name),
            },
            _ = tokio::time::sleep_until(deadline) => return Ok(Some(Failure::TimedOut {
                step: step.name.clone(),
                timeout: spec.timeout,
            })),
            sig = cancel.recv() => return Ok(Some(Failure::Cancelled {
                step: step.name.clone(),
                signal: sig,
            })),
        };
        writeln!(build_log, "==> step {} exited with code {code}", step.name)?;
        if code != 0 {
            return Ok(Some(Failure::StepFailed {
                step: step.name.clone(),
                code,
            }));
        }
        Ok(None)
    }

    /// Force-removes a container (stopping it first if it runs). Errors are ignored: the
    /// container may already be gone.
    pub async fn remove(&self, id: &str) {
        let _ = self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await;
    }

    /// Whether the engine has the image `tag`.
    pub async fn has_image(&self, tag: &str) -> Result<bool> {
        match self.docker.inspect_image(tag).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(anyhow!("cannot inspect the image {tag}: {e}")),
        }
    }

    /// Writes the image `tag` as a `docker save` archive into `out`; returns its size.
    pub async fn save_image(&self, tag: &str, out: &mut std::fs::File) -> Result<u64> {
        let mut stream = self.docker.export_image(tag);
        let mut bytes = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("cannot export the image {tag}"))?;
            out.write_all(&chunk)?;
            bytes += chunk.len() as u64;
        }
        Ok(bytes)
    }

    /// Loads a `docker save` archive (read from `file`) into the engine.
    pub async fn load_image(&self, file: std::fs::File) -> Result<()> {
        let file = tokio::fs::File::from_std(file);
        let chunks = futures::stream::unfold(file, |mut f| async move {
            use tokio::io::AsyncReadExt as _;
            let mut buf = vec![0u8; 1 << 20];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(buf.into()), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        });
        let mut progress = self.docker.import_image_stream(
            bollard::query_parameters::ImportImageOptions {
                quiet: true,
                ..Default::default()
            },
            chunks,
            None,
        );
        while let Some(item) = progress.next().await {
            let info = item.context("the engine refused the image archive")?;
            if let Some(detail) = info.error_detail {
                bail!(
                    "the engine refused the image archive: {}",
                    detail.message.unwrap_or_default()
                );
            }
        }
        Ok(())
    }

    /// Ids of the containers (running or not) carrying label `key=value`.
    pub async fn containers_labelled(&self, key: &str, value: &str) -> Result<Vec<String>> {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{key}={value}")])]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .context("cannot list containers")?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }
}

fn open_log(path: &Path) -> Result<std::fs::File> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the log file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_secs(75)), "1m 15s");
        assert_eq!(human(Duration::from_secs(3723)), "1h 02m 03s");
    }
}
