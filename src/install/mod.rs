//! The Spack-free verifying installer behind `test-install`.
//!
//! - [`extract`]: hardened tar extraction (no absolute paths, `..`, escaping links, devices,
//!   FIFOs, setuid/setgid, overwrites, or bombs).
//! - [`crate::relocate`] (shared with the tarball packer): Spack 1.0's relocation of an
//!   extracted binary package.
//! - [`buildcache`]: pick a spec from a buildcache's index, verify its and its dependencies'
//!   signed manifests and blobs, extract and relocate them into a new install tree.
//! - [`sbang`]: the `sbang` that relocated scripts with long interpreter paths run through.
//! - [`tarball`]: verify (`.asc`, `SHA256SUMS`), unpack and run the install script of the
//!   relocatable Slurm tarball.
//! - [`ldso`]: which file each `DT_NEEDED` resolves to, found as glibc's loader finds it.
//! - [`smoke`]: version checks, the library check, Lmod and compiler hello worlds.
//! - [`summary`]: the per-check table written to the job summary.

pub mod buildcache;
pub mod extract;
pub mod ldso;
pub mod sbang;
pub mod smoke;
pub mod summary;
pub mod tarball;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::buildcache::Storage;
use crate::buildcache::trust::Pins;
use crate::gha::Runner;
use crate::pgp::TrustedKeys;
use summary::{Check, Report};

/// What to install.
#[derive(Debug)]
pub enum Source {
    /// A spec and its link/run dependencies from a buildcache.
    Buildcache {
        /// The opened buildcache.
        storage: Box<dyn Storage>,
        /// Which spec.
        spec: buildcache::SpecQuery,
    },
    /// The relocatable tarball (a path, `file://` or `https://` URL).
    Tarball(String),
    /// Nothing: only run the smoke checks on an existing prefix.
    Nothing,
}

/// What the user asked to install, before anything is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// `--buildcache <url> --spec <spec>`.
    Buildcache {
        /// The buildcache URL.
        url: String,
        /// The `--spec` text.
        spec: String,
    },
    /// `--tarball <file|url>`.
    Tarball(String),
    /// `--check-only`.
    Nothing,
}

/// Opens what `what` names and resolves the trusted keys: every key file, plus, for each pinned
/// fingerprint no key file gives, the key published under exactly that fingerprint next to
/// what is installed: for a buildcache its key manifest
/// ([`crate::buildcache::trust::Pins::resolve`]), for a tarball the `<FPR>.pub.asc` beside it
/// ([`tarball::published_key`]). A published key that was not pinned is never trusted.
/// Refuses to go on without a trusted key unless nothing is installed.
pub async fn prepare(
    what: What,
    pins: &Pins,
    open: &crate::buildcache::storage::OpenOptions,
    runner: &Runner,
) -> Result<(Source, TrustedKeys)> {
    let allow_insecure_http = open.allow_insecure_http;
    let (source, trusted) = match what {
        What::Buildcache { url, spec } => {
            let spec = buildcache::SpecQuery::parse(&spec)?;
            use crate::buildcache::storage;
            let storage: Box<dyn Storage> =
                storage::open(&storage::Location::parse(&url)?, open, runner).await?;
            let trusted = pins.resolve(storage.as_ref()).await?;
            (Source::Buildcache { storage, spec }, trusted)
        }
        What::Tarball(t) => {
            let trusted = pins
                .trusted_keys(|fpr| {
                    let t = &t;
                    async move { tarball::published_key(t, &fpr, allow_insecure_http).await }
                })
                .await?;
            (Source::Tarball(t), trusted)
        }
        What::Nothing => {
            if !pins.fingerprints.is_empty() {
                bail!(
                    "--trusted-fingerprint resolves the key published beside a buildcache or a tarball; --check-only installs nothing, so drop it"
                );
            }
            (Source::Nothing, pins.given_by_files()?.0)
        }
    };
    for f in trusted.fingerprints() {
        runner.info(&format!("trusting {f}"));
    }
    if !matches!(source, Source::Nothing) && trusted.is_empty() {
        bail!(
            "no trusted keys: pass --trusted-key <public key file> (or --trusted-fingerprint <fpr> for a buildcache); nothing is installed unverified"
        );
    }
    Ok((source, trusted))
}

/// A `test-install` run.
#[derive(Debug)]
pub struct Request {
    /// What to install.
    pub source: Source,
    /// Where: the install tree (buildcache) or the unpack directory (tarball).
    pub prefix: PathBuf,
    /// Keys whose signatures are accepted.
    pub trusted: TrustedKeys,
    /// Run the compiler hello worlds against `<prefix>/bin` (automatic when a `gcc` spec is
    /// installed: against its prefix).
    pub compiler: bool,
    /// Accept plain `http://` tarball URLs.
    pub allow_insecure_http: bool,
    /// Extraction caps.
    pub limits: extract::Limits,
}

/// Installs what `req` names, runs the smoke checks and returns their report. An `Err` means
/// the install itself was refused (verification, extraction, relocation); failed smoke checks
/// are in the report.
pub async fn run(req: Request, runner: &Runner) -> Result<Report> {
    let prefix = &req.prefix;
    if !prefix.is_absolute() {
        bail!(
            "--prefix {} must be an absolute path (for example /opt/slurm-factory)",
            prefix.display()
        );
    }
    let mut report = Report::default();
    let mut bins: Vec<PathBuf> = Vec::new();
    let mut scan: Vec<PathBuf> = Vec::new();
    let mut modules: Option<PathBuf> = None;
    let mut compilers: Vec<PathBuf> = Vec::new();
    match req.source {
        Source::Buildcache { storage, spec } => {
            report.title = format!(
                "`{spec}` from `{}` into `{}`",
                storage.url(),
                prefix.display()
            );
            let done =
                buildcache::install(storage.as_ref(), &req.trusted, &spec, prefix, req.limits)
                    .await?;
            for s in &done {
                let what = match &s.relocated {
                    Some(r) => format!(
                        "verified (signer {}), installed and relocated: {} ELF, {} links, {} text, {} binaries",
                        s.signer, r.elf, r.links, r.text, r.binary
                    ),
                    None => format!("verified (signer {}), already installed", s.signer),
                };
                runner.info(&format!("{} -> {}: {what}", s.id, s.prefix.display()));
                report
                    .checks
                    .push(Check::pass(format!("install `{}`", s.id), what));
                bins.push(s.prefix.join("bin"));
                bins.push(s.prefix.join("sbin"));
                scan.push(s.prefix.clone());
                if s.id.name == "gcc" {
                    compilers.push(s.prefix.clone());
                }
            }
        }
        Source::Tarball(src) => {
            report.title = format!("`{src}` into `{}`", prefix.display());
            let dl = tarball::download(&src, req.allow_insecure_http, req.limits.max_bytes).await?;
            let t = tarball::install(&dl, &req.trusted, prefix, req.limits)?;
            runner.info(&format!(
                "{}: signature by {} and SHA256SUMS verified, {} entries unpacked, install script ran",
                dl.file_name, t.signer, t.entries
            ));
            report.checks.push(Check::pass(
                format!("install `{}`", dl.file_name),
                format!(
                    "signed by {}, sha256 {}, install script ran; {}",
                    t.signer,
                    t.sha256,
                    t.floor.describe()
                ),
            ));
            let view = prefix.join("view");
            bins.push(view.join("bin"));
            bins.push(view.join("sbin"));
            scan.push(view);
            modules = Some(prefix.join("modules"));
        }
        Source::Nothing => {
            report.title = format!("checks of the existing prefix `{}`", prefix.display());
            bins.push(prefix.join("bin"));
            bins.push(prefix.join("sbin"));
            if prefix.join("modules").is_dir() {
                modules = Some(prefix.join("modules"));
            }
            if req.compiler {
                scan.extend(
                    ["gcc", "g++", "gfortran"]
                        .iter()
                        .map(|c| prefix.join("bin").join(c)),
                );
            } else {
                scan.push(prefix.clone());
            }
        }
    }
    if req.compiler && compilers.is_empty() {
        compilers.push(prefix.clone());
    }
    let conf = smoke::SlurmConf::for_checks()?;
    report
        .checks
        .extend(smoke::slurm_versions(&bins, &conf.path));
    let elves = smoke::dynamic_elf_files_or_self(&scan);
    report.checks.push(smoke::libraries_resolve(&elves));
    if let Some(m) = modules {
        if smoke::lmod_available() {
            let bin = bins.iter().find(|b| b.join("sinfo").is_file());
            report.checks.push(smoke::module_load(
                &m,
                "slurm",
                bin.map(PathBuf::as_path),
                &conf.path,
            ));
        } else {
            runner.info("Lmod is not installed: skipping `module load slurm`");
        }
    }
    for c in &compilers {
        report.checks.extend(smoke::compiler_hello_worlds(c));
    }
    Ok(report)
}

/// Whether `p` exists as a regular file (for callers deciding what to check).
pub fn is_file(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file())
}
