//! `tarball-publish`: package the view and modules into a relocatable tarball and publish it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

use super::args::{S3Args, SigningKeyArgs, publish_target};
use super::{bool_flag_or_input, flag_or_input};
use crate::gha::Runner;
use crate::tarball::publish::{self, Request, Source};

/// Package a Slurm view as a relocatable, reproducible tarball with Lmod modules, write
/// SHA256SUMS and a detached OpenPGP signature, and publish all three to S3.
///
/// The archive holds view/ (RPATHs rewritten to $ORIGIN, text paths as @SLURM_FACTORY_PREFIX@),
/// modules/ (slurm, and openmpi when built) and data/ (install.sh, slurm.conf/cgroup.conf
/// templates, MANIFEST, spack.lock; when binaries have build prefixes compiled in, this program
/// as data/bin/tarball-publish, which install.sh runs as `relocate` to rewrite them in place).
/// After unpacking: `sh <prefix>/data/install.sh`, then
/// `module use <prefix>/modules; module load slurm`. The signing key comes from GPG_PRIVATE_KEY
/// (with GPG_PASSPHRASE, GPG_KEY_ID) or --key-file; SOURCE_DATE_EPOCH sets every timestamp.
#[derive(Debug, Parser)]
#[command(
    name = "tarball-publish",
    version,
    after_help = "Examples:\n  tarball-publish --build-dir ./slurm-factory-build --slurm-version 25.11 --compiler-version 13.4.0\n  tarball-publish --view ./ns/view --modules ./ns/modules --slurm-version 25.11 --compiler-version 13.4.0 --output ./out\n  GPG_PRIVATE_KEY=\"$(cat key.asc)\" tarball-publish --build-dir ./out --slurm-version 25.11 --compiler-version 13.4.0 --destination s3://vantage-public-assets/slurm-factory/25.11/13.4.0/"
)]
pub struct Args {
    /// Not publishing: finish installing an unpacked tarball (what data/install.sh runs)
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Output directory of `build-slurm` (holds the build's view/, modules/ and env/) [input: build_dir]
    #[arg(long, conflicts_with = "view")]
    pub build_dir: Option<PathBuf>,
    /// The view to pack, instead of --build-dir (env/ and modules/ beside it are used when present)
    #[arg(long)]
    pub view: Option<PathBuf>,
    /// Spack's generated Lmod modules (read for package versions; the tarball ships its own)
    #[arg(long, requires = "view")]
    pub modules: Option<PathBuf>,
    /// The build's spack.lock (default: env/spack.lock beside the view)
    #[arg(long)]
    pub spack_lock: Option<PathBuf>,
    /// Spack's install tree root of the build (default: from env/spack.yaml beside the view)
    #[arg(long)]
    pub build_prefix: Option<String>,
    /// Slurm release of the build [input: slurm_version]
    #[arg(long)]
    pub slurm_version: Option<String>,
    /// GCC toolchain of the build [input: compiler_version]
    #[arg(long)]
    pub compiler_version: Option<String>,
    /// Where the tarball, SHA256SUMS and .asc are written (default: <build-dir>/tarball)
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Upload to s3://bucket/dir/ or file:///dir, or to the full key of the tarball (…/name.tar.gz); the catalog's publish.tarball_* with --publish [input: destination]
    #[arg(long)]
    pub destination: Option<String>,
    /// Upload to the catalog's default location (s3://<tarball_bucket>/<tarball_key>; the catalog is the embedded one, or SLURM_FACTORY_CATALOG)
    #[arg(long, conflicts_with = "destination")]
    pub publish: bool,
    /// With --publish: the build has GPU support (the key carries -gpu)
    #[arg(long, requires = "publish")]
    pub gpu: bool,
    /// With --publish: the build's architecture (default: the catalog's; others carry -<arch>)
    #[arg(long, requires = "publish")]
    pub arch: Option<String>,
    /// The catalog platform the build ran on (el8, el9, ubuntu24.04): refuse a tarball that needs a newer glibc than it has (the generated workflows always pass the leg's); without it the floor is only recorded, except with --publish, which keys the tarball under the catalog's default platform and checks it against that [input: platform]
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub key: SigningKeyArgs,
    /// The leg being published, as the workflow passes `${{ toJSON(matrix) }}`: after the
    /// upload, a signed build stamp with the leg's fingerprint (recomputed here and checked
    /// against the plan's) is written beside the tarball; without it, no stamp [input: leg]
    #[arg(long, value_name = "JSON")]
    pub leg: Option<String>,
    /// Build and sign, but upload nothing [input: dry_run]
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub s3: S3Args,
}

/// What `tarball-publish` does besides publishing.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Rewrite the build prefixes compiled into the binaries of a tarball unpacked at ROOT to
    /// ROOT/view (data/install.sh runs the copy the tarball carries; run that script instead)
    Relocate {
        /// The directory the tarball was unpacked into (holds view/, modules/, data/)
        root: PathBuf,
    },
}

/// Runs `tarball-publish`.
pub async fn run(args: Args, runner: Runner) -> Result<()> {
    if let Some(Command::Relocate { root }) = args.command {
        let done = crate::tarball::prefixes::relocate_unpacked(&root)?;
        println!(
            "relocated compiled-in paths in {} of {} binaries to {}",
            done.rewritten, done.listed, done.view
        );
        return Ok(());
    }
    let slurm = flag_or_input(args.slurm_version, &runner, "slurm_version")
        .context("no Slurm version: pass --slurm-version (e.g. 25.11)")?
        .parse()?;
    let gcc = flag_or_input(args.compiler_version, &runner, "compiler_version")
        .context("no compiler version: pass --compiler-version (e.g. 13.4.0)")?
        .parse()?;
    let source = match (
        args.view,
        args.build_dir
            .or_else(|| runner.input("build_dir").map(PathBuf::from)),
    ) {
        (Some(view), _) => Source::View {
            view,
            modules: args.modules,
        },
        (None, Some(dir)) => Source::BuildDir(dir),
        (None, None) => {
            anyhow::bail!("nothing to pack: pass --build-dir (build-slurm's output_dir) or --view")
        }
    };
    let mut destination =
        flag_or_input(args.destination, &runner, "destination").filter(|d| !d.trim().is_empty());
    let catalog =
        crate::catalog::Catalog::load_or_embedded(super::catalog_path(None, &runner).as_deref())?;
    let platform =
        flag_or_input(args.platform, &runner, "platform").filter(|p| !p.trim().is_empty());
    // With --publish the key names a platform (the default one unless given), so the floor is
    // checked against that platform.
    let platform = match (platform, args.publish) {
        (None, false) => None,
        (p, _) => Some(catalog.platform_or_default(p.as_deref())?.clone()),
    };
    if let (true, Some(p)) = (args.publish, &platform) {
        let arch = args.arch.map(crate::catalog::Arch);
        destination = Some(catalog.tarball_destination(&slurm, &gcc, args.gpu, arch, p)?);
    }
    // The leg's fingerprint, the key and the S3 settings are checked before hours of packing
    // could be wasted.
    let leg = flag_or_input(args.leg, &runner, "leg").filter(|l| !l.trim().is_empty());
    let stamp = match (leg, &destination) {
        (Some(json), Some(_)) => Some(publish::leg_fingerprint(
            &json,
            &catalog,
            super::docker_context(None, &runner),
        )?),
        _ => None,
    };
    if let Some(d) = &destination {
        publish::Destination::parse(d, "slurm.tar.gz")?;
    }
    let (publish, local_key) = match destination {
        Some(d) if !args.key.is_given(&runner) => anyhow::bail!(
            "refusing to publish {d} unsigned: set GPG_PRIVATE_KEY (the armored secret key; GPG_PASSPHRASE if it is protected) or pass --key-file <secret key file>. Nothing was packed or uploaded."
        ),
        Some(d) => (Some(publish_target(d, &args.key, &args.s3, &runner)?), None),
        None if args.key.is_given(&runner) => (None, Some(args.key.load(&runner)?)),
        None => (None, None),
    };
    let request = Request {
        platform,
        source,
        spack_lock: args.spack_lock,
        build_prefix: args.build_prefix,
        slurm,
        gcc,
        output: args.output,
        publish,
        local_key,
        dry_run: bool_flag_or_input(args.dry_run.then_some(true), &runner, "dry_run", false)?,
        stamp,
    };
    publish::run(&runner, request).await
}
