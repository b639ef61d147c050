//! `test-install`: the Spack-free verifying installer (see [`crate::install`]).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;

use super::args::{S3Args, TrustArgs};
use super::{bool_flag_or_input, flag_or_input};
use crate::cluster;
use crate::gha::Runner;
use crate::install::{self, Request, What, extract::Limits};

/// Install from a signed buildcache or a signed relocatable tarball without Spack, verifying
/// every signature and checksum first, then smoke-test the result. Exits non-zero when
/// anything is refused or any check fails.
#[derive(Debug, Parser)]
#[command(
    name = "test-install",
    version,
    after_help = "Examples:\n  test-install --buildcache file:///srv/mirror --spec demo-app@2.0 --prefix /opt/spack --trusted-key signer.pub.asc\n  test-install --buildcache s3://bucket/compilers/13.4.0/buildcache --spec gcc@13.4.0 --prefix /opt/gcc --trusted-key signer.asc\n  test-install --buildcache https://cdn.example.org/slurm/25.11/13.4.0/buildcache --spec slurm%gcc@13.4.0 --prefix /opt/sw --trusted-fingerprint <FPR>\n  test-install --tarball ./slurm-25.11-gcc13.4.0-software.tar.gz --prefix /opt/slurm --trusted-key signer.asc\n  test-install --tarball https://host/dir/slurm-25.11-gcc13.4.0-software.tar.gz --prefix /opt/slurm --trusted-fingerprint <FPR>   # key: dir/<FPR>.pub.asc\n  test-install --check-only --compiler --prefix /usr\n  test-install --prefix /usr --cluster-smoke   # throwaway cluster from an existing install: srun, sbatch\n\nBuildcache specs go to <prefix>/<platform>-<target>/<name>-<version>-<hash> (Spack's default layout)."
)]
pub struct Args {
    /// Buildcache URL to install from: file://, s3:// or https:// [input: buildcache]
    #[arg(long, conflicts_with = "tarball")]
    pub buildcache: Option<String>,
    /// Spec to install: name, name@version, name@version%compiler@version, /hash or name@version/hash [input: spec]
    #[arg(long)]
    pub spec: Option<String>,
    /// Relocatable tarball (path, file:// or https:// URL); SHA256SUMS and <tarball>.asc must be beside it [input: tarball]
    #[arg(long)]
    pub tarball: Option<String>,
    /// Install prefix (absolute; must be new or empty for a tarball) [input: prefix]
    #[arg(long)]
    pub prefix: Option<PathBuf>,
    // --trusted-key / --trusted-fingerprint: a fingerprint resolves against the keys published
    // beside the buildcache (its key manifests) or the tarball (<FPR>.pub.asc).
    #[command(flatten)]
    #[allow(missing_docs)]
    pub trust: TrustArgs,
    /// Install nothing; run the smoke checks on --prefix [input: check_only]
    #[arg(long, conflicts_with_all = ["buildcache", "tarball"])]
    pub check_only: bool,
    /// Also compile and run hello world in C, C++ and Fortran with <prefix>/bin/{gcc,g++,gfortran} [input: compiler]
    #[arg(long)]
    pub compiler: bool,
    /// Accept plain http:// URLs to hosts other than loopback (private mirrors; loopback needs no flag; signatures are checked either way) [input: allow_insecure_http]
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// Start a throwaway single-host Slurm cluster from the installation (slurmctld, slurmd,
    /// MUNGE or auth/slurm) and run `srun` and `sbatch` jobs on it; alone (no --buildcache,
    /// --tarball or --check-only) it tests the existing installation in --prefix [input: cluster_smoke]
    #[arg(long)]
    pub cluster_smoke: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub s3: S3Args,
}

/// Runs `test-install`.
pub async fn run(args: Args, runner: Runner) -> Result<()> {
    let buildcache = flag_or_input(args.buildcache, &runner, "buildcache");
    let tarball = flag_or_input(args.tarball, &runner, "tarball");
    let check_only = bool_flag_or_input(
        args.check_only.then_some(true),
        &runner,
        "check_only",
        false,
    )?;
    let compiler = bool_flag_or_input(args.compiler.then_some(true), &runner, "compiler", false)?;
    let allow_http = bool_flag_or_input(
        args.allow_insecure_http.then_some(true),
        &runner,
        "allow_insecure_http",
        false,
    )?;
    let open = crate::buildcache::storage::OpenOptions {
        allow_insecure_http: allow_http,
        writable: false,
        s3: args.s3.resolve(&runner)?,
    };
    let prefix = args
        .prefix
        .or_else(|| runner.input("prefix").map(PathBuf::from))
        .context("no install prefix: pass --prefix /absolute/dir")?;
    let cluster_smoke = bool_flag_or_input(
        args.cluster_smoke.then_some(true),
        &runner,
        "cluster_smoke",
        false,
    )?;
    if cluster_smoke && buildcache.is_none() && tarball.is_none() && !check_only {
        return smoke_cluster(&prefix, &runner).await;
    }
    let pins = args.trust.resolve(&runner)?;
    let what = match (buildcache, tarball, check_only) {
        (Some(url), None, false) => What::Buildcache {
            url,
            spec: flag_or_input(args.spec, &runner, "spec").context(
                "--buildcache needs --spec <name|name@version|name%compiler@version|/hash>",
            )?,
        },
        (None, Some(t), false) => What::Tarball(t),
        (None, None, true) => What::Nothing,
        (None, None, false) => bail!(
            "nothing to install: pass --buildcache <url> --spec <spec>, --tarball <file|url>, or --check-only"
        ),
        _ => bail!("give exactly one of --buildcache, --tarball and --check-only"),
    };
    let (source, trusted) = install::prepare(what, &pins, &open, &runner).await?;
    let report = install::run(
        Request {
            source,
            prefix: prefix.clone(),
            trusted,
            compiler,
            allow_insecure_http: allow_http,
            limits: Limits::default(),
        },
        &runner,
    )
    .await?;
    for c in &report.checks {
        if c.ok {
            runner.info(&format!("ok      {}: {}", c.name, c.detail));
        } else {
            runner.error(&format!("FAILED  {}: {}", c.name, c.detail));
        }
    }
    runner.append_summary(&report.markdown())?;
    if !report.ok() {
        let n = report.failures().count();
        bail!(
            "{n} smoke check(s) failed (see above and the job summary); the install does not work as published"
        );
    }
    if cluster_smoke {
        smoke_cluster(&prefix, &runner).await?;
    }
    Ok(())
}

/// `--cluster-smoke`: the cluster smoke test of the Slurm in `prefix` (or installed below it),
/// with its debug bundle in the current directory.
async fn smoke_cluster(prefix: &std::path::Path, runner: &Runner) -> Result<()> {
    let root = cluster::config::find_slurm_root(prefix)?;
    let opts = cluster::Options::new(PathBuf::from(cluster::DEBUG_BUNDLE));
    cluster::run(&root, &opts, runner).await?;
    Ok(())
}
