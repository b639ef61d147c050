//! The build engine of `build-compiler` and `build-slurm`: a resolved [`Request`] either prints
//! its plan (`--dry-run`: the generated `spack.yaml`, the Dockerfile and the steps, without
//! touching Docker or the disk) or is [`execute`]d: connect to Docker (failing fast), create the
//! build's namespace, build the image, run the steps, and report the outputs (`$GITHUB_OUTPUT`
//! and the job summary). The argument surfaces are in [`crate::cli::builder`].

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::buildcache::publish::PublishMode;
use crate::buildcache::publish::{PublishTarget, Publisher};
use crate::buildcache::trust::Pins;
use crate::docker::{
    BindMount, BuildContext, Cancel, Engine, Failure, ImageBuild, LABEL_NAMESPACE, LABEL_RUN,
    RunSpec, UserSpec, human,
};
use crate::gha::Runner;
use crate::spack::keys;
use crate::spack::stats::{self, BuildStats};
use crate::spack::{Area, CONTAINER_SOURCE_MIRROR, Job, Layout, RunId, Toolchain, repo};
use caches::CacheSettings;

pub mod caches;
pub mod leg;
pub(crate) mod resources;
pub(crate) mod summary;

pub use resources::{LEG_DISK_BYTES, LEG_MEMORY_BYTES, resource_warnings};
pub use summary::report;

/// Default `--output-dir`.
pub const DEFAULT_OUTPUT_DIR: &str = "slurm-factory-build";

/// The build's timeout: `flag` minutes, else the input `timeout_minutes` (text), else
/// `default`; a timeout of 0 minutes or an input that is not a whole number is refused.
pub fn build_timeout(flag: Option<u32>, input: Option<String>, default: u32) -> Result<Duration> {
    let minutes = match (flag, input) {
        (Some(m), _) => m,
        (None, Some(t)) => t.parse().map_err(|_| {
            anyhow!("input timeout_minutes is {t:?}, not a whole number of minutes")
        })?,
        (None, None) => default,
    };
    if minutes == 0 {
        bail!("--timeout-minutes must be at least 1");
    }
    Ok(Duration::from_secs(u64::from(minutes) * 60))
}

/// A build as its command line resolved it.
#[derive(Debug)]
pub struct Request {
    /// What to build.
    pub job: Job,
    /// How to execute it.
    pub opts: BuildOptions,
    /// Print the plan and stop.
    pub dry_run: bool,
    /// What to publish, and where, after a successful build (`None` for a dry run).
    pub publish: Option<(PublishMode, PublishTarget)>,
    /// How to reach `s3://` mirrors.
    pub s3: crate::s3::S3Settings,
    /// The pinned keys a Slurm build trusts.
    pub trust: Option<Pins>,
}

/// How to execute a job (the library-level form of the common flags).
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Output directory (namespaces go under `builds/`, Spack's misc cache under `cache/`).
    pub output_dir: PathBuf,
    /// Build context directory; `None`: the embedded `docker/`.
    pub docker_context: Option<PathBuf>,
    /// Ignore Docker's layer cache and the image cache.
    pub no_cache: bool,
    /// Job timeout (image build included).
    pub timeout: Duration,
    /// Run the containers as this uid:gid; `None`: as this process's user.
    pub user: Option<UserSpec>,
    /// The run id (part of the namespace, and a container label).
    pub run_id: RunId,
    /// Where the runner keeps caches between runs (sources, images), if anywhere.
    pub caches: CacheSettings,
}

/// What [`execute`] produced.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    /// Where everything is.
    pub layout: Layout,
    /// The image the steps ran in.
    pub image: Option<String>,
    /// Built vs reused packages and timings.
    pub stats: BuildStats,
    /// Why the build stopped early, if it did.
    pub failure: Option<Failure>,
    /// The debug bundle written on failure.
    pub debug_bundle: Option<PathBuf>,
}

impl BuildOutcome {
    /// The error a failed build returns (with the debug bundle named).
    pub fn error(&self) -> Option<anyhow::Error> {
        let failure = self.failure.as_ref()?;
        let mut msg = format!("{failure}. Full log: {}", self.log().display());
        if let Some(b) = &self.debug_bundle {
            let _ = write!(msg, "; debug bundle: {}", b.display());
        }
        Some(anyhow!(msg))
    }

    /// The full build log.
    pub fn log(&self) -> PathBuf {
        self.layout.host(Area::Logs).join("build.log")
    }
}

/// Runs `job`: connects to Docker (first, so a missing engine changes nothing on disk), lays out
/// the namespace, builds the image and runs the steps. A failed, timed-out or cancelled build is
/// an `Ok` outcome with `failure` set (and a debug bundle); infrastructure errors are `Err`.
pub async fn execute(job: &Job, opts: &BuildOptions, runner: &Runner) -> Result<BuildOutcome> {
    let started = Instant::now();
    let deadline = started + opts.timeout;
    let mut cancel = Cancel::install()?;
    let ctx = BuildContext::load(opts.docker_context.as_deref(), job.platform())?;
    let engine = Engine::connect().await?;

    let layout = Layout::new(&opts.output_dir, job.namespace(&opts.run_id))?;
    layout.create()?;
    let env_file = write_namespace(job, &layout)?;
    let user = match opts.user {
        Some(u) => u,
        None => UserSpec::current()?,
    };
    user.own_tree(&layout.build_dir())?;
    user.own_tree(&layout.cache_dir())?;
    runner.info(&format!(
        "Building {job} in namespace {} (Docker at {}, as {user}, timeout {})",
        layout.namespace(),
        engine.endpoint(),
        human(opts.timeout)
    ));

    let mut outcome = BuildOutcome {
        layout: layout.clone(),
        image: None,
        stats: BuildStats::default(),
        failure: None,
        debug_bundle: None,
    };
    // `no_cache` bypasses the image cache as it bypasses Docker's layer cache.
    let image_cache = match opts.no_cache {
        true => None,
        false => usable(opts.caches.images(), "image", runner),
    };
    let loaded = match &image_cache {
        Some(c) => caches::images::load_if_cached(&engine, &ctx, c, runner).await,
        None => false,
    };
    let image = if loaded {
        Ok(ctx.image_tag())
    } else {
        engine
            .build_image(
                &ctx,
                &ImageBuild {
                    no_cache: opts.no_cache,
                    log: layout.host(Area::Logs).join("image-build.log"),
                    deadline,
                    timeout: opts.timeout,
                },
                runner,
                &mut cancel,
            )
            .await?
    };
    let image = match image {
        Ok(tag) => tag,
        Err(failure) => {
            outcome.failure = Some(failure);
            outcome.stats.total = started.elapsed();
            return Ok(outcome);
        }
    };
    if let (Some(c), false) = (&image_cache, loaded) {
        caches::images::save(&engine, &ctx, c, runner).await;
    }
    outcome.image = Some(image.clone());

    let mut mounts = vec![
        BindMount {
            host: layout.build_dir(),
            container: layout.container_build_dir(),
            read_only: false,
        },
        BindMount {
            host: layout.cache_dir(),
            container: layout.container_cache_dir(),
            read_only: false,
        },
    ];
    // The shared source cache, read-only: Spack reads it as a source mirror and fetches what
    // it lacks into the build's own source cache, which is offered to it after the build.
    let source_cache = usable(opts.caches.sources(), "source", runner);
    if let Some(c) = &source_cache {
        mounts.push(BindMount {
            host: c.path().to_path_buf(),
            container: CONTAINER_SOURCE_MIRROR.to_owned(),
            read_only: true,
        });
    }

    let spec = RunSpec {
        image,
        mounts,
        env: layout.container_env(),
        workdir: layout.container(Area::Home),
        user,
        labels: [
            (LABEL_RUN.to_owned(), opts.run_id.as_str().to_owned()),
            (
                LABEL_NAMESPACE.to_owned(),
                layout.namespace().as_str().to_owned(),
            ),
        ]
        .into(),
        name_prefix: format!("slurm-factory-{}", layout.namespace()),
        log_dir: layout.host(Area::Logs),
        deadline,
        timeout: opts.timeout,
    };
    let report = engine
        .run_steps(&spec, &job.steps(&layout), runner, &mut cancel)
        .await?;
    outcome.stats.steps = report.steps;
    outcome.stats.census = stats::census(&layout.host(Area::Install))?;
    outcome.failure = report.failure;
    if let Some(c) = &source_cache {
        caches::sources::promote_reported(
            &layout.host(Area::Sources),
            c,
            outcome.failure.is_none(),
            runner,
        );
    }
    if outcome.failure.is_some() {
        let lock = layout.host(Area::Env).join("spack.lock");
        let log = outcome.log();
        let bundle = layout.host(Area::Debug);
        stats::collect_debug_bundle(
            &layout.host(Area::Stage),
            &bundle,
            &[
                ("build.log", log.as_path()),
                ("spack.yaml", env_file.as_path()),
                ("spack.lock", lock.as_path()),
            ],
        )?;
        outcome.debug_bundle = Some(bundle);
    }
    outcome.stats.total = started.elapsed();
    Ok(outcome)
}

/// The cache `opened` names, or `None` with a warning when it cannot be used (a build never
/// fails for its cache).
fn usable(
    opened: Result<Option<caches::CacheDir>>,
    what: &str,
    runner: &Runner,
) -> Option<caches::CacheDir> {
    opened.unwrap_or_else(|e| {
        runner.warning(&format!(
            "the {what} cache cannot be used, so this build runs without it: {e:#}"
        ));
        None
    })
}

/// Writes what the steps read into the namespace: the environment(s), the Spack repository
/// and, for a toolchain from the buildcache, the pinned keys. Returns the environment file.
fn write_namespace(job: &Job, layout: &Layout) -> Result<PathBuf> {
    let env_file = layout.host(Area::Env).join("spack.yaml");
    std::fs::write(&env_file, render_environment(job, layout)?)
        .with_context(|| format!("cannot write {}", env_file.display()))?;
    if let Some(text) = render_toolchain_environment(job, layout)? {
        let file = layout.host(Area::ToolchainEnv).join("spack.yaml");
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    repo::write_to(&layout.host(Area::SpackRepo))?;
    if let Job::Slurm(s) = job
        && s.toolchain == Toolchain::Buildcache
    {
        if s.trusted_keyring.is_empty() {
            bail!(
                "no pinned signing key was resolved for {job}: pass --trusted-fingerprint or --trusted-key"
            );
        }
        std::fs::write(layout.host_trusted_keys(), &s.trusted_keyring)
            .with_context(|| format!("cannot write {}", layout.host_trusted_keys().display()))?;
    }
    Ok(env_file)
}

/// The `spack.yaml` text of `job` in `layout`.
pub fn render_environment(job: &Job, layout: &Layout) -> Result<String> {
    job.environment(layout).render(&format!(
        "Generated by slurm-factory {} for {job}; do not edit (it is regenerated per build).",
        env!("CARGO_PKG_VERSION")
    ))
}

/// The `spack.yaml` text of the environment that installs a Slurm job's toolchain, if any.
pub fn render_toolchain_environment(job: &Job, layout: &Layout) -> Result<Option<String>> {
    job.toolchain_environment(layout)
        .map(|env| {
            env.render(&format!(
                "Generated by slurm-factory {} for the toolchain of {job}; do not edit.",
                env!("CARGO_PKG_VERSION")
            ))
        })
        .transpose()
}

/// The `--dry-run` report: environment, Dockerfile, mounts, caches and steps.
pub fn plan(
    job: &Job,
    layout: &Layout,
    ctx: &BuildContext,
    caches: &CacheSettings,
) -> Result<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Build plan for {job} (namespace {}); nothing was run.",
        layout.namespace()
    );
    let p = job.platform();
    let _ = writeln!(
        out,
        "Platform: {} ({}, glibc {}: the artifacts' floor), image {}.",
        p.name,
        p.os,
        p.glibc,
        p.image_ref()
    );
    match job.toolchain() {
        Some(Toolchain::Buildcache) => {
            let _ = writeln!(
                out,
                "Toolchain: GCC {} from the signed compiler buildcache (pinned keys only).",
                job.gcc()
            );
        }
        Some(Toolchain::Source) => {
            let _ = writeln!(
                out,
                "Toolchain: GCC {} built from source first (no pinned key: about an hour more; no buildcache is read).",
                job.gcc()
            );
        }
        None => {}
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "==> spack.yaml ({})",
        layout.host(Area::Env).join("spack.yaml").display()
    );
    out.push_str(&render_environment(job, layout)?);
    if let Some(text) = render_toolchain_environment(job, layout)? {
        let _ = writeln!(
            out,
            "\n==> toolchain spack.yaml ({})",
            layout.host(Area::ToolchainEnv).join("spack.yaml").display()
        );
        out.push_str(&text);
    }
    let _ = writeln!(
        out,
        "\n==> Dockerfile (from {}, image {})",
        ctx.origin(),
        ctx.image_tag()
    );
    out.push_str(ctx.dockerfile());
    let _ = writeln!(out, "\n==> Mounts");
    let _ = writeln!(
        out,
        "{} -> {}",
        layout.build_dir().display(),
        layout.container_build_dir()
    );
    let _ = writeln!(
        out,
        "{} -> {}",
        layout.cache_dir().display(),
        layout.container_cache_dir()
    );
    match &caches.root {
        Some(root) => {
            let _ = writeln!(
                out,
                "{} -> {CONTAINER_SOURCE_MIRROR} (read-only: the shared source cache, capped at {})",
                root.join(caches::SOURCES_DIR).display(),
                caches::human_bytes(caches.source_max)
            );
            let _ = writeln!(
                out,
                "Image cache: {} (capped at {})",
                root.join(caches::IMAGES_DIR)
                    .join(caches::images::entry_name(ctx))
                    .display(),
                caches::human_bytes(caches.image_max)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "No runner caches (--cache-dir off or caches.enabled: false)."
            );
        }
    }
    let _ = writeln!(out, "\n==> Steps");
    for (i, step) in job.steps(layout).iter().enumerate() {
        let _ = writeln!(
            out,
            "{}. {}: {}\n   {}",
            i + 1,
            step.name,
            step.title,
            step.command_line()
        );
    }
    Ok(out)
}

/// Runs a resolved build: prints the plan (`dry_run`), or checks the host, prepares publishing
/// and the pinned keys (both fail in seconds, before anything is built), executes the job,
/// reports it and publishes its buildcache.
pub async fn run(request: Request, runner: Runner) -> Result<()> {
    let Request {
        mut job,
        opts,
        dry_run,
        publish,
        s3,
        trust,
    } = request;
    if dry_run {
        let layout = Layout::new(&opts.output_dir, job.namespace(&opts.run_id))?;
        let ctx = BuildContext::load(opts.docker_context.as_deref(), job.platform())?;
        runner.info(&plan(&job, &layout, &ctx, &opts.caches)?);
        return Ok(());
    }
    if job.arch().0 != host_arch() {
        bail!(
            "this machine is {} but the build targets {}: cross-building is not supported; run it on a {} runner (see runner_labels in the catalog)",
            host_arch(),
            job.arch(),
            job.arch()
        );
    }
    for w in resources::resource_warnings(
        resources::memory_total(),
        resources::disk_free(&opts.output_dir),
    ) {
        runner.warning(&w);
    }
    let open = crate::buildcache::storage::OpenOptions {
        s3,
        ..Default::default()
    };
    // The key (loaded by the caller), the destination, the credentials and the bucket are
    // checked before the (hours-long) build, so a bad secret fails in seconds.
    let publisher = match publish {
        Some((scope, target)) => {
            let dest = target.destination.clone();
            Some(
                Publisher::prepare(&runner, target, scope, false)
                    .await
                    .with_context(|| {
                        format!("--publish {scope} to {dest} cannot work, so nothing was built")
                    })?,
            )
        }
        None => None,
    };

    // The pinned keys are resolved before the build, like the publish key: a wrong pin fails
    // in seconds, and the build trusts nothing the mirror chose.
    if let (Some(pins), Job::Slurm(s)) = (&trust, &mut job)
        && s.toolchain == Toolchain::Buildcache
    {
        s.trusted_keyring = keys::keyring(pins, &s.compiler_mirror, &open, &runner)
            .await
            .with_context(|| {
                format!(
                    "cannot resolve the pinned signing key(s) of the compiler buildcache {}, so nothing was built",
                    s.compiler_mirror
                )
            })?;
    }
    let outcome = execute(&job, &opts, &runner).await?;
    summary::report(&job, &outcome, &runner)?;
    if let Some(err) = outcome.error() {
        return Err(err);
    }
    if let Some(publisher) = publisher {
        publisher
            .publish(&runner, &outcome.layout.host(Area::Buildcache))
            .await?;
    }
    Ok(())
}
/// The catalog name of this machine's architecture.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
