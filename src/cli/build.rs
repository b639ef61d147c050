//! `build-compiler` and `build-slurm`: run the Spack build inside the build container.
//!
//! Both turn their arguments into a [`Job`], then either print the plan (`--dry-run`: the
//! generated `spack.yaml`, the Dockerfile and the steps, without touching Docker or the disk) or
//! [`execute`] it: connect to Docker (failing fast), create the build's namespace, build the
//! image, run the steps, and report the outputs (`$GITHUB_OUTPUT` and the job summary).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;

use crate::catalog::{Arch, Catalog, GccVersion, SlurmVersion};
use crate::docker::{
    BindMount, BuildContext, Cancel, Engine, Failure, ImageBuild, LABEL_NAMESPACE, LABEL_RUN,
    RunSpec, UserSpec, human,
};
use crate::gha::Runner;
use crate::spack::stats::{self, BuildStats};
use crate::spack::{Area, Job, Layout, RunId, SlurmJobRequest, repo};

use super::sign_and_upload::{Publisher, S3Flags};
use super::{bool_flag_or_input, flag_or_input};
use crate::buildcache::sign::PublishMode;

/// Default `--output-dir`.
pub const DEFAULT_OUTPUT_DIR: &str = "slurm-factory-build";

/// Options shared by both builders.
#[derive(Debug, clap::Args)]
pub struct CommonBuildArgs {
    /// Target architecture: amd64 or arm64 [input: arch]
    #[arg(long)]
    pub arch: Option<String>,
    /// Directory that receives the build's outputs (buildcache, view, modules, logs) [input: output_dir]
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Rebuild the container image without Docker's layer cache [input: no_cache]
    #[arg(long)]
    pub no_cache: bool,
    /// Print the generated spack.yaml, Dockerfile and steps without touching Docker [input: dry_run]
    #[arg(long)]
    pub dry_run: bool,
    /// Job timeout in minutes (default from the catalog) [input: timeout_minutes]
    #[arg(long)]
    pub timeout_minutes: Option<u32>,
    /// Use this catalog file instead of the embedded one [input: catalog]
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// With --publish: read the armored signing key from this file instead of GPG_PRIVATE_KEY [input: key_file]
    #[arg(long, help_heading = "Publishing")]
    pub key_file: Option<PathBuf>,
    /// With --publish to s3://: S3-compatible endpoint (path-style) [input: endpoint_url] [env: AWS_ENDPOINT_URL]
    #[arg(long, help_heading = "Publishing")]
    pub endpoint_url: Option<String>,
    /// With --publish to s3://: AWS region [input: region]
    #[arg(long, help_heading = "Publishing")]
    pub region: Option<String>,
    /// With --publish to s3://: IAM role to assume with the job's OIDC token [input: role_arn] [env: AWS_ROLE_ARN]
    #[arg(long, help_heading = "Publishing")]
    pub role_arn: Option<String>,
    /// Build the container image from this directory (holding a Dockerfile) instead of the
    /// embedded docker/ definition, e.g. to add a site proxy or CA. The image must provide
    /// `spack` on PATH [input: docker_context]
    #[arg(long, value_name = "DIR")]
    pub docker_context: Option<PathBuf>,
}

/// Build a relocatable GCC toolchain into an unsigned local Spack buildcache.
#[derive(Debug, Parser)]
#[command(
    name = "build-compiler",
    version,
    after_help = "Examples:\n  build-compiler --compiler-version 13.4.0 --dry-run\n  build-compiler --compiler-version 14.2.0 --output-dir ./out\n  build-compiler --compiler-version 13.4.0 --publish s3://my-bucket/compilers/13.4.0/buildcache"
)]
pub struct CompilerArgs {
    /// GCC version to build (default from the catalog) [input: compiler_version]
    #[arg(long)]
    pub compiler_version: Option<String>,
    /// After building, sign and publish the buildcache to this URL (file:// or s3://) [input: publish_to]
    #[arg(long)]
    pub publish: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonBuildArgs,
}

/// Build Slurm and its dependencies into an unsigned local Spack buildcache, a view and modules.
#[derive(Debug, Parser)]
#[command(
    name = "build-slurm",
    version,
    after_help = "Examples:\n  build-slurm --slurm-version 25.11 --compiler-version 13.4.0\n  build-slurm --slurm-version 24.11 --compiler-version 11.5.0 --gpu --dry-run\n  build-slurm --publish all --destination s3://my-bucket/slurm/25.11/13.4.0/buildcache\n  build-slurm --docker-context ./site-docker --no-cache --timeout-minutes 600"
)]
pub struct SlurmArgs {
    /// Slurm release to build (default from the catalog) [input: slurm_version]
    #[arg(long)]
    pub slurm_version: Option<String>,
    /// GCC toolchain to build with (default from the catalog) [input: compiler_version]
    #[arg(long)]
    pub compiler_version: Option<String>,
    /// Build with NVIDIA NVML and AMD ROCm SMI support [input: gpu]
    #[arg(long)]
    pub gpu: bool,
    /// What to publish after the build: all, slurm-only or none [input: publish]
    #[arg(long)]
    pub publish: Option<String>,
    /// Where to publish (file:// or s3://); default from the catalog [input: destination]
    #[arg(long)]
    pub destination: Option<String>,
    /// URL of the signed compiler buildcache to take the toolchain from [input: compiler_buildcache]
    #[arg(long)]
    pub compiler_buildcache: Option<String>,
    /// Pinned fingerprint of the compiler cache's signing key (repeatable; default: the
    /// catalog's publish.signing_fingerprints) [input: trusted_fingerprints, one per line]
    #[arg(long = "trusted-fingerprint")]
    pub trusted_fingerprints: Vec<String>,
    /// Public key file to trust for the compiler cache (repeatable) [input: trusted_keys]
    #[arg(long = "trusted-key")]
    pub trusted_keys: Vec<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonBuildArgs,
}

/// How to execute a job (the library-level form of the common flags).
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Output directory (namespaces go under `builds/`, shared caches under `cache/`).
    pub output_dir: PathBuf,
    /// Build context directory; `None`: the embedded `docker/`.
    pub docker_context: Option<PathBuf>,
    /// Ignore Docker's layer cache.
    pub no_cache: bool,
    /// Job timeout (image build included).
    pub timeout: Duration,
    /// Run the containers as this uid:gid; `None`: as this process's user.
    pub user: Option<UserSpec>,
    /// The run id (part of the namespace, and a container label).
    pub run_id: RunId,
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
    let ctx = BuildContext::load(opts.docker_context.as_deref())?;
    let engine = Engine::connect().await?;

    let layout = Layout::new(&opts.output_dir, job.namespace(&opts.run_id))?;
    layout.create()?;
    let env_file = layout.host(Area::Env).join("spack.yaml");
    std::fs::write(&env_file, render_environment(job, &layout)?)
        .with_context(|| format!("cannot write {}", env_file.display()))?;
    if let Some(text) = render_toolchain_environment(job, &layout)? {
        let file = layout.host(Area::ToolchainEnv).join("spack.yaml");
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    repo::write_to(&layout.host(Area::SpackRepo))?;
    if let Job::Slurm(s) = job {
        if s.trusted_keyring.is_empty() {
            bail!(
                "no pinned signing key was resolved for {job}: pass --trusted-fingerprint or --trusted-key"
            );
        }
        std::fs::write(layout.host_trusted_keys(), &s.trusted_keyring)
            .with_context(|| format!("cannot write {}", layout.host_trusted_keys().display()))?;
    }
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
    let image = engine
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
        .await?;
    let image = match image {
        Ok(tag) => tag,
        Err(failure) => {
            outcome.failure = Some(failure);
            outcome.stats.total = started.elapsed();
            return Ok(outcome);
        }
    };
    outcome.image = Some(image.clone());

    let spec = RunSpec {
        image,
        mounts: vec![
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
        ],
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

/// The `--dry-run` report: environment, Dockerfile, mounts and steps.
pub fn plan(job: &Job, layout: &Layout, ctx: &BuildContext) -> Result<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Build plan for {job} (namespace {}); nothing was run.\n",
        layout.namespace()
    );
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
    let _ = writeln!(out, "\n==> Steps");
    for (i, step) in job.steps(layout).iter().enumerate() {
        let _ = writeln!(out, "{}. {}: {}", i + 1, step.name, step.command_line());
    }
    Ok(out)
}

struct Resolved {
    job: Job,
    opts: BuildOptions,
    dry_run: bool,
    /// (mode, destination) when the build publishes its cache.
    publish: Option<(String, String)>,
    key_file: Option<PathBuf>,
    s3: S3Flags,
    /// The pinned keys a Slurm build trusts.
    trust: Option<crate::spack::keys::PinnedTrust>,
}

fn publish_options(common: &CommonBuildArgs, runner: &Runner) -> (Option<PathBuf>, S3Flags) {
    let key_file = common
        .key_file
        .clone()
        .or_else(|| runner.input("key_file").map(PathBuf::from));
    let s3 = S3Flags {
        endpoint_url: flag_or_input(common.endpoint_url.clone(), runner, "endpoint_url"),
        region: flag_or_input(common.region.clone(), runner, "region"),
        role_arn: flag_or_input(common.role_arn.clone(), runner, "role_arn"),
    };
    (key_file, s3)
}

fn common_options(
    common: &CommonBuildArgs,
    runner: &Runner,
    catalog: &Catalog,
    default_timeout: u32,
) -> Result<(Arch, BuildOptions, bool)> {
    let arch = flag_or_input(common.arch.clone(), runner, "arch")
        .map(Arch)
        .unwrap_or_else(|| catalog.architectures.default.clone());
    let output_dir = common
        .output_dir
        .clone()
        .or_else(|| runner.input("output_dir").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OUTPUT_DIR));
    let docker_context = common
        .docker_context
        .clone()
        .or_else(|| runner.input("docker_context").map(PathBuf::from));
    let no_cache = bool_flag_or_input(common.no_cache.then_some(true), runner, "no_cache", false)?;
    let dry_run = bool_flag_or_input(common.dry_run.then_some(true), runner, "dry_run", false)?;
    let minutes = match common.timeout_minutes {
        Some(m) => m,
        None => match runner.input("timeout_minutes") {
            Some(t) => t.parse().map_err(|_| {
                anyhow!("input timeout_minutes is {t:?}, not a whole number of minutes")
            })?,
            None => default_timeout,
        },
    };
    if minutes == 0 {
        bail!("--timeout-minutes must be at least 1");
    }
    Ok((
        arch,
        BuildOptions {
            output_dir,
            docker_context,
            no_cache,
            timeout: Duration::from_secs(u64::from(minutes) * 60),
            user: None,
            run_id: RunId::from_runner(runner),
        },
        dry_run,
    ))
}

fn load_catalog(common: &CommonBuildArgs, runner: &Runner) -> Result<Catalog> {
    let path = common
        .catalog
        .clone()
        .or_else(|| runner.input("catalog").map(PathBuf::from));
    Catalog::load_or_embedded(path.as_deref())
}

fn resolve_compiler(args: &CompilerArgs, runner: &Runner) -> Result<Resolved> {
    let catalog = load_catalog(&args.common, runner)?;
    let (arch, opts, dry_run) =
        common_options(&args.common, runner, &catalog, catalog.timeouts.compiler)?;
    let gcc: GccVersion =
        match flag_or_input(args.compiler_version.clone(), runner, "compiler_version") {
            Some(v) => v.parse()?,
            None => catalog.compilers.default.clone(),
        };
    let job = Job::compiler(&catalog, gcc, arch)?;
    let publish = flag_or_input(args.publish.clone(), runner, "publish_to")
        .map(|dest| ("all".to_owned(), dest));
    let (key_file, s3) = publish_options(&args.common, runner);
    Ok(Resolved {
        job,
        opts,
        dry_run,
        publish,
        key_file,
        s3,
        trust: None,
    })
}

fn resolve_slurm(args: &SlurmArgs, runner: &Runner) -> Result<Resolved> {
    let catalog = load_catalog(&args.common, runner)?;
    let (arch, opts, dry_run) =
        common_options(&args.common, runner, &catalog, catalog.timeouts.slurm)?;
    let slurm: SlurmVersion =
        match flag_or_input(args.slurm_version.clone(), runner, "slurm_version") {
            Some(v) => v.parse()?,
            None => catalog.slurm.default.clone(),
        };
    let gcc: GccVersion =
        match flag_or_input(args.compiler_version.clone(), runner, "compiler_version") {
            Some(v) => v.parse()?,
            None => catalog.compilers.default.clone(),
        };
    let gpu = bool_flag_or_input(args.gpu.then_some(true), runner, "gpu", false)?;
    let job = SlurmJobRequest {
        slurm: slurm.clone(),
        gcc: gcc.clone(),
        gpu,
        arch,
        compiler_mirror: flag_or_input(
            args.compiler_buildcache.clone(),
            runner,
            "compiler_buildcache",
        ),
        slurm_mirror: None,
    }
    .resolve(&catalog)?;
    let scope =
        flag_or_input(args.publish.clone(), runner, "publish").unwrap_or_else(|| "none".into());
    let publish = match scope.as_str() {
        "none" => None,
        "all" | "slurm-only" => {
            let dest = flag_or_input(args.destination.clone(), runner, "destination")
                .unwrap_or_else(|| {
                    format!(
                        "s3://{}/{}",
                        catalog.publish.buildcache_bucket,
                        catalog.slurm_prefix(&slurm, &gcc)
                    )
                });
            Some((scope, dest))
        }
        other => bail!("--publish {other:?} is not one of: all, slurm-only, none"),
    };
    let mut fprs = args.trusted_fingerprints.clone();
    if fprs.is_empty() {
        fprs = runner.input_list("trusted_fingerprints");
    }
    let mut key_files = args.trusted_keys.clone();
    if key_files.is_empty() {
        key_files = runner
            .input_list("trusted_keys")
            .into_iter()
            .map(PathBuf::from)
            .collect();
    }
    let trust = crate::spack::keys::PinnedTrust::resolve(key_files, &fprs, &catalog)?;
    let (key_file, s3) = publish_options(&args.common, runner);
    Ok(Resolved {
        job,
        opts,
        dry_run,
        publish,
        key_file,
        s3,
        trust: Some(trust),
    })
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

async fn run(resolved: Resolved, runner: Runner) -> Result<()> {
    let Resolved {
        mut job,
        opts,
        dry_run,
        publish,
        key_file,
        s3,
        trust,
    } = resolved;
    if dry_run {
        let layout = Layout::new(&opts.output_dir, job.namespace(&opts.run_id))?;
        let ctx = BuildContext::load(opts.docker_context.as_deref())?;
        runner.info(&plan(&job, &layout, &ctx)?);
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
    for w in resource_warnings(memory_total(), disk_free(&opts.output_dir)) {
        runner.warning(&w);
    }
    // The key, the destination, the credentials and the bucket are checked before the
    // (hours-long) build, so a bad secret fails in seconds and nothing is built.
    let publisher = match &publish {
        Some((scope, dest)) => Some(
            Publisher::prepare(
                &runner,
                dest,
                key_file.as_deref(),
                s3,
                scope.parse::<PublishMode>()?,
                false,
            )
            .await
            .with_context(|| {
                format!("--publish {scope} to {dest} cannot work, so nothing was built")
            })?,
        ),
        None => None,
    };

    // The pinned keys are resolved before the build, like the publish key: a wrong pin fails
    // in seconds, and the build trusts nothing the mirror chose.
    if let (Some(trust), Job::Slurm(s)) = (&trust, &mut job) {
        s.trusted_keyring = trust.keyring(&s.compiler_mirror).await.with_context(|| {
            format!(
                "cannot resolve the pinned signing key(s) of the compiler buildcache {}, so nothing was built",
                s.compiler_mirror
            )
        })?;
    }
    let outcome = execute(&job, &opts, &runner).await?;
    report(&job, &outcome, &runner)?;
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

/// Memory a leg needs: the runner requirement is 32 GB; the kernel reports a little less.
pub const LEG_MEMORY_BYTES: u64 = 30 * 1024 * 1024 * 1024;
/// Free disk a leg needs under its output directory (stages, install tree, view, buildcache and
/// caches of a GPU Slurm build, with headroom; the runner requirement is a 500 GB disk).
pub const LEG_DISK_BYTES: u64 = 200 * 1000 * 1000 * 1000;

/// Warnings for a runner below what a leg needs (`None`: could not be measured).
pub fn resource_warnings(memory: Option<u64>, disk_free: Option<u64>) -> Vec<String> {
    let gb = |b: u64| b as f64 / 1e9;
    let mut out = Vec::new();
    if let Some(m) = memory.filter(|m| *m < LEG_MEMORY_BYTES) {
        out.push(format!(
            "this runner has {:.1} GB of memory; a leg needs about {:.0} GB (runner requirement: 32 GB). Expect the build to fail or swap",
            gb(m),
            gb(LEG_MEMORY_BYTES)
        ));
    }
    if let Some(d) = disk_free.filter(|d| *d < LEG_DISK_BYTES) {
        out.push(format!(
            "only {:.1} GB are free under the output directory; a leg needs about {:.0} GB (runner requirement: a 500 GB disk). Free space or pass --output-dir on a larger disk",
            gb(d),
            gb(LEG_DISK_BYTES)
        ));
    }
    out
}

/// `MemTotal` of /proc/meminfo in bytes.
fn memory_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Bytes available to unprivileged users on the file system of `dir` (or of its nearest
/// existing ancestor: the output directory is created later).
fn disk_free(dir: &Path) -> Option<u64> {
    let abs = std::path::absolute(dir).ok()?;
    let existing = abs.ancestors().find(|p| p.exists())?;
    let st = rustix::fs::statvfs(existing).ok()?;
    st.f_bavail.checked_mul(st.f_frsize)
}

/// Writes a finished build's outputs to `$GITHUB_OUTPUT` and its summary to the job summary.
pub fn report(job: &Job, outcome: &BuildOutcome, runner: &Runner) -> Result<()> {
    let l = &outcome.layout;
    let slurm = matches!(job, Job::Slurm(_));
    let path = |p: PathBuf| p.display().to_string();
    let mut outputs: Vec<(&str, String)> = vec![
        ("namespace", l.namespace().to_string()),
        ("buildcache_path", path(l.host(Area::Buildcache))),
        ("spack_lock", path(l.host(Area::Env).join("spack.lock"))),
        ("build_log", path(outcome.log())),
        (
            "packages_built",
            outcome.stats.census.built.len().to_string(),
        ),
        (
            "packages_reused",
            outcome.stats.census.reused.len().to_string(),
        ),
        (
            "duration_seconds",
            outcome.stats.total.as_secs().to_string(),
        ),
    ];
    if slurm {
        outputs.push(("view_path", path(l.host(Area::View))));
        outputs.push(("modules_path", path(l.host(Area::Modules))));
    }
    if let Some(b) = &outcome.debug_bundle {
        outputs.push(("debug_bundle", path(b.clone())));
    }
    for (k, v) in &outputs {
        runner.set_output(k, v)?;
    }

    let mut md = String::new();
    let status = match &outcome.failure {
        None => "succeeded".to_owned(),
        Some(f) => format!("failed: {f}"),
    };
    let _ = writeln!(md, "### {job}: {status}\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    for (k, v) in &outputs {
        let _ = writeln!(md, "| {k} | `{v}` |");
    }
    let _ = writeln!(md, "| time | {} |", human(outcome.stats.total));
    if let Some(image) = &outcome.image {
        let _ = writeln!(md, "| image | `{image}` |");
    }
    if !outcome.stats.steps.is_empty() {
        let _ = writeln!(md, "\n| step | time |\n|---|---|");
        for s in &outcome.stats.steps {
            let _ = writeln!(md, "| {} | {} |", s.name, human(s.duration));
        }
    }
    let census = &outcome.stats.census;
    if !census.built.is_empty() || !census.reused.is_empty() {
        let list = |v: &[stats::Installed]| {
            v.iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            md,
            "\n<details><summary>{} built, {} reused from buildcaches</summary>\n\nBuilt: {}\n\nReused: {}\n</details>",
            census.built.len(),
            census.reused.len(),
            list(&census.built),
            list(&census.reused)
        );
    }
    runner.append_summary(&md)
}

/// Runs `build-compiler`.
pub async fn run_compiler(args: CompilerArgs, runner: Runner) -> Result<()> {
    let resolved = resolve_compiler(&args, &runner)?;
    run(resolved, runner).await
}

/// Runs `build-slurm`.
pub async fn run_slurm(args: SlurmArgs, runner: Runner) -> Result<()> {
    let resolved = resolve_slurm(&args, &runner)?;
    run(resolved, runner).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runners_below_a_legs_needs_get_a_warning_each() {
        assert!(resource_warnings(Some(LEG_MEMORY_BYTES), Some(LEG_DISK_BYTES)).is_empty());
        assert!(resource_warnings(None, None).is_empty());
        let w = resource_warnings(Some(8 << 30), Some(50_000_000_000));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("8.6 GB of memory"), "{}", w[0]);
        assert!(w[1].contains("only 50.0 GB are free"), "{}", w[1]);
        assert!(disk_free(Path::new("/definitely/not/here")).is_some());
        assert!(memory_total().is_some_and(|m| m > 0));
    }
}
