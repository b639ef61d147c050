//! The Spack side of a build: what to build ([`Job`]), where everything goes ([`Layout`]),
//! the generated environment ([`env`]), the steps run inside the build container ([`Step`]),
//! the embedded package repository ([`repo`]) and what a finished build reports ([`stats`]).
//!
//! Every path a job writes (install tree, view, modules, stage, buildcache, logs) lives under
//! a per-build namespace directory, so concurrent builds on one runner never collide. Only
//! Spack's misc cache is shared between builds under one output directory; downloaded sources
//! are shared between legs and runs through the runner's cache ([`crate::builder::caches`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use sha2::{Digest, Sha256};

use crate::catalog::{Arch, Catalog, GccVersion, Platform, PlatformName, SlurmRelease};
use crate::gha::Runner;

pub(crate) mod env;
pub(crate) mod keys;
pub mod pins;
pub mod repo;
pub(crate) mod stats;

use env::{
    Concretizer, Config, Environment, External, ExtraAttributes, InstallTree, Lmod, Mirror,
    ModuleSet, Modules, PackageSettings, Reuse, ReuseSource, SpackYaml, View, ViewDescriptor,
};

/// Install-tree padding that lets binaries relocate (without it: "CannotGrowString").
pub const PADDED_LENGTH: u32 = 128;

/// File name (in the environment directory) of the armored public keys a Slurm build trusts:
/// the keys pinned by fingerprint or given as files, checked by the host before the build.
pub const TRUSTED_KEYS_FILE: &str = "trusted-keys.asc";

/// Where the build directory tree is mounted inside the build container.
pub const CONTAINER_ROOT: &str = "/slurm-factory";

/// Where the shared source cache is mounted (read-only) inside the build container, when the
/// runner keeps one (see [`crate::builder::caches::sources`]); absent otherwise.
pub const CONTAINER_SOURCE_MIRROR: &str = "/slurm-factory/source-mirror";

/// The name of the shared source cache among the environment's mirrors.
pub const SOURCE_MIRROR_NAME: &str = "slurm-factory-sources";

/// The shared source cache as a source-only mirror. Every environment lists it, whether or
/// not the runner keeps caches (a missing mirror directory is a miss, and the environment, so
/// the leg's fingerprint, does not depend on where it runs).
fn source_mirror() -> Mirror {
    Mirror {
        url: format!("file://{CONTAINER_SOURCE_MIRROR}"),
        binary: false,
        source: true,
        signed: false,
    }
}

/// The packages built next to Slurm, as Spack specs (before the compiler is added).
pub const SLURM_COMPANIONS: &[&str] = &[
    "munge",
    "pmix@5",
    "openmpi@5 schedulers=slurm",
    "hdf5",
    "hwloc@2",
    "curl",
    "openssl@3",
    "libjwt",
    "lua",
    "readline",
    "json-c",
    "http-parser",
    "libyaml",
    "librdkafka",
];

/// Build-only tools that must never land in the view even if something pulls them in at run time.
pub const VIEW_EXCLUDES: &[&str] = &[
    "autoconf", "automake", "cmake", "gcc", "gmake", "libtool", "m4", "meson", "ninja", "pkgconf",
];

/// Packages that get Lmod modules.
pub const MODULE_PACKAGES: &[&str] = &["slurm", "openmpi"];

/// What one build produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// A GCC toolchain into a compiler buildcache.
    Compiler(CompilerJob),
    /// Slurm and its stack into a Slurm buildcache, a view and modules.
    Slurm(SlurmJob),
}

/// A GCC toolchain build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompilerJob {
    /// The GCC version to build.
    pub gcc: GccVersion,
    /// The architecture name.
    pub arch: Arch,
    /// The build platform: the OS image the toolchain is built in (its system GCC bootstraps
    /// it, its glibc is the artifacts' floor).
    pub platform: Platform,
    /// Spack's `target=` for portable binaries.
    pub spack_target: String,
}

/// A Slurm build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmJob {
    /// The Slurm release (series and Spack version).
    pub slurm: SlurmRelease,
    /// The GCC toolchain everything is compiled with.
    pub gcc: GccVersion,
    /// Build with NVML (CUDA) and ROCm SMI.
    pub gpu: bool,
    /// The architecture name.
    pub arch: Arch,
    /// The build platform (the OS image; its glibc is the artifacts' floor).
    pub platform: Platform,
    /// Spack's `target=` for portable binaries.
    pub spack_target: String,
    /// URL of the signed compiler buildcache the toolchain is installed from.
    pub compiler_mirror: String,
    /// URL of an existing signed Slurm buildcache to reuse dependencies from, if any.
    pub slurm_mirror: Option<String>,
    /// The pinned public keys the build trusts (armored), checked by the host against the
    /// pinned fingerprints before the build; placed at [`Layout::host_trusted_keys`].
    pub trusted_keyring: Vec<u8>,
    /// Where the GCC toolchain comes from.
    pub toolchain: Toolchain,
}

/// Where a Slurm build's GCC toolchain comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    /// Installed (binaries only) from the signed compiler buildcache, whose key is pinned.
    Buildcache,
    /// Built from source in the same container first (no key pinned: about an hour more).
    /// Such a build reads no buildcache at all: with no trusted key nothing can be reused.
    Source,
}

impl fmt::Display for Toolchain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Toolchain::Buildcache => "buildcache",
            Toolchain::Source => "source",
        })
    }
}

impl Job {
    /// A compiler job for `gcc` on `arch` on the catalog's default platform, checked against
    /// the catalog.
    pub fn compiler(catalog: &Catalog, gcc: GccVersion, arch: Arch) -> Result<Job> {
        Job::compiler_on(catalog, gcc, arch, None)
    }

    /// A compiler job for `gcc` on `arch` on `platform` (default: the catalog's), checked
    /// against the catalog.
    pub fn compiler_on(
        catalog: &Catalog,
        gcc: GccVersion,
        arch: Arch,
        platform: Option<&PlatformName>,
    ) -> Result<Job> {
        if catalog.compiler(&gcc).is_none() {
            bail!(
                "GCC {gcc} is not in the catalog; known toolchains: {}",
                join(catalog.compiler_versions())
            );
        }
        let spack_target = target_of(catalog, &arch)?;
        let platform = platform_of(catalog, platform)?;
        Ok(Job::Compiler(CompilerJob {
            gcc,
            arch,
            platform,
            spack_target,
        }))
    }

    /// `compiler` or `slurm`.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::Compiler(_) => "compiler",
            Job::Slurm(_) => "slurm",
        }
    }

    /// The GCC version involved.
    pub fn gcc(&self) -> &GccVersion {
        match self {
            Job::Compiler(c) => &c.gcc,
            Job::Slurm(s) => &s.gcc,
        }
    }

    /// The architecture.
    pub fn arch(&self) -> &Arch {
        match self {
            Job::Compiler(c) => &c.arch,
            Job::Slurm(s) => &s.arch,
        }
    }

    /// The build platform.
    pub fn platform(&self) -> &Platform {
        match self {
            Job::Compiler(c) => &c.platform,
            Job::Slurm(s) => &s.platform,
        }
    }

    /// A short human-readable name: `gcc-13.4.0-amd64-el8`,
    /// `slurm-25.11-gcc13.4.0-gpu-amd64-el8`.
    pub fn label(&self) -> String {
        match self {
            Job::Compiler(c) => format!("gcc-{}-{}-{}", c.gcc, c.arch, c.platform.name),
            Job::Slurm(s) => format!(
                "slurm-{}-gcc{}-{}-{}-{}",
                s.slurm.version,
                s.gcc,
                if s.gpu { "gpu" } else { "cpu" },
                s.arch,
                s.platform.name
            ),
        }
    }

    /// A stable hash of what this job builds (not of where it runs).
    pub fn fingerprint(&self) -> String {
        let text = match self {
            Job::Compiler(c) => format!(
                "compiler\0{}\0{}\0{}\0{}",
                c.gcc, c.arch, c.spack_target, c.platform.name
            ),
            Job::Slurm(s) => format!(
                "slurm\0{}\0{}\0{}\0{}\0{}\0{}",
                s.slurm.spack, s.gcc, s.gpu, s.arch, s.spack_target, s.platform.name
            ),
        };
        hex::encode(&Sha256::digest(text.as_bytes())[..6])
    }

    /// The per-build namespace of this job in run `run`.
    pub fn namespace(&self, run: &RunId) -> Namespace {
        Namespace(format!("{}-{}-{}", self.label(), self.fingerprint(), run.0))
    }

    /// Where a Slurm job's toolchain comes from (`None` for a compiler job).
    pub fn toolchain(&self) -> Option<Toolchain> {
        match self {
            Job::Compiler(_) => None,
            Job::Slurm(s) => Some(s.toolchain),
        }
    }

    /// Sets where a Slurm job's toolchain comes from. [`Toolchain::Source`] also drops the
    /// Slurm buildcache mirror: a build that trusts no key reads no buildcache.
    pub fn with_toolchain(mut self, toolchain: Toolchain) -> Job {
        if let Job::Slurm(s) = &mut self {
            s.toolchain = toolchain;
            if toolchain == Toolchain::Source {
                s.slurm_mirror = None;
            }
        }
        self
    }

    /// The root specs of the environment.
    pub fn specs(&self) -> Vec<String> {
        match self {
            Job::Compiler(c) => vec![toolchain_spec(&c.gcc)],
            Job::Slurm(s) => {
                let gpu = if s.gpu { "+nvml +rsmi" } else { "~nvml ~rsmi" };
                let compiler = format!("%gcc@{}", s.gcc);
                let mut specs = vec![format!(
                    "slurm_factory.slurm@{} sysconfdir=/etc/slurm {gpu} {compiler}",
                    s.slurm.spack
                )];
                specs.extend(SLURM_COMPANIONS.iter().map(|c| format!("{c} {compiler}")));
                specs
            }
        }
    }

    fn spack_target(&self) -> &str {
        match self {
            Job::Compiler(j) => &j.spack_target,
            Job::Slurm(j) => &j.spack_target,
        }
    }

    /// Where a Slurm job installs its GCC toolchain (in the container): a fixed prefix, so the
    /// Slurm environment can name it as an external compiler before it exists.
    pub fn toolchain_prefix(&self, layout: &Layout) -> String {
        format!("{}/gcc-{}", layout.container(Area::Toolchain), self.gcc())
    }

    /// The environment a Slurm job installs its toolchain with: from the compiler buildcache
    /// only (`install --cache-only`), or, for [`Toolchain::Source`], the same environment
    /// without any mirror, built from source with the image's compiler as `build-compiler`
    /// builds it; `None` for a compiler job.
    ///
    /// The toolchain is installed apart and then declared as an *external* compiler of the
    /// Slurm environment ([`Job::environment`]), never reused into it as a concrete spec: a
    /// reused toolchain drags along its own dependencies (gmp, mpfr, zlib, ...) built by the
    /// image's GCC 13, and Spack 1.0's solver then bounds every `gcc-runtime` node from below
    /// by that runtime (`compatible_runtime`), which no toolchain older than GCC 13 can meet.
    pub fn toolchain_environment(&self, layout: &Layout) -> Option<SpackYaml> {
        let Job::Slurm(s) = self else { return None };
        let c = |area: Area| layout.container(area);
        let mirrors = match s.toolchain {
            Toolchain::Buildcache => BTreeMap::from([(
                "slurm-factory-compiler".to_owned(),
                Mirror {
                    url: s.compiler_mirror.clone(),
                    binary: true,
                    source: false,
                    signed: true,
                },
            )]),
            Toolchain::Source => BTreeMap::new(),
        };
        let mut mirrors = mirrors;
        mirrors.insert(SOURCE_MIRROR_NAME.to_owned(), source_mirror());
        Some(SpackYaml {
            spack: Environment {
                specs: vec![toolchain_spec(&s.gcc)],
                repos: slurm_factory_repo(layout),
                concretizer: reuse_all(),
                config: Config {
                    // Unpadded, with a fixed projection for gcc: the prefix is known in advance.
                    // Relocating from the compiler job's padded prefix to a shorter one is fine.
                    install_tree: InstallTree {
                        root: c(Area::Toolchain),
                        padded_length: None,
                        projections: BTreeMap::from([
                            ("gcc".to_owned(), "gcc-{version}".to_owned()),
                            ("all".to_owned(), "deps/{name}-{version}-{hash}".to_owned()),
                        ]),
                    },
                    build_stage: vec![c(Area::Stage)],
                    source_cache: c(Area::Sources),
                    misc_cache: layout.container_cache(CacheArea::Misc),
                },
                packages: BTreeMap::from([(
                    "all".to_owned(),
                    PackageSettings {
                        require: vec![format!("target={}", s.spack_target)],
                        ..PackageSettings::default()
                    },
                )]),
                mirrors,
                view: View::Disabled(false),
                modules: None,
            },
        })
    }

    /// The Spack environment this job runs, with container paths from `layout`.
    pub fn environment(&self, layout: &Layout) -> SpackYaml {
        let c = |area: Area| layout.container(area);
        let mut packages = BTreeMap::new();
        packages.insert(
            "all".to_owned(),
            PackageSettings {
                require: vec![format!("target={}", self.spack_target())],
                ..PackageSettings::default()
            },
        );
        let mut mirrors = BTreeMap::from([(SOURCE_MIRROR_NAME.to_owned(), source_mirror())]);
        let mut view = View::Disabled(false);
        let mut modules = None;
        if let Job::Slurm(s) = self {
            // The toolchain, installed by the `toolchain` step, is an external compiler that
            // Spack may not build (see `toolchain_environment` for why it is not reused).
            let prefix = self.toolchain_prefix(layout);
            packages.insert(
                "gcc".to_owned(),
                PackageSettings {
                    externals: vec![External {
                        spec: format!("gcc@{} languages=c,c++,fortran", s.gcc),
                        prefix: prefix.clone(),
                        extra_attributes: Some(ExtraAttributes {
                            compilers: BTreeMap::from([
                                ("c".to_owned(), format!("{prefix}/bin/gcc")),
                                ("cxx".to_owned(), format!("{prefix}/bin/g++")),
                                ("fortran".to_owned(), format!("{prefix}/bin/gfortran")),
                            ]),
                        }),
                    }],
                    buildable: Some(false),
                    ..PackageSettings::default()
                },
            );
            // Roots carry `%gcc@V` (hard); transitive dependencies prefer it (soft).
            for lang in ["c", "cxx", "fortran"] {
                packages.insert(
                    lang.to_owned(),
                    PackageSettings {
                        prefer: vec![format!("gcc@{}", s.gcc)],
                        ..PackageSettings::default()
                    },
                );
            }
            if let Some(url) = &s.slurm_mirror {
                mirrors.insert(
                    "slurm-factory-slurm".to_owned(),
                    Mirror {
                        url: url.clone(),
                        binary: true,
                        source: false,
                        signed: true,
                    },
                );
            }
            let mut views = BTreeMap::new();
            views.insert(
                "default".to_owned(),
                ViewDescriptor {
                    root: c(Area::View),
                    link: "run".to_owned(),
                    link_type: "hardlink".to_owned(),
                    exclude: VIEW_EXCLUDES.iter().map(|s| (*s).to_owned()).collect(),
                    projections: BTreeMap::from([("all".to_owned(), ".".to_owned())]),
                },
            );
            view = View::Views(views);
            let roots: Vec<String> = self.specs().iter().map(|s| spec_name(s)).collect();
            modules = Some(Modules {
                default: ModuleSet {
                    roots: BTreeMap::from([("lmod".to_owned(), c(Area::Modules))]),
                    enable: vec!["lmod".to_owned()],
                    use_view: "default".to_owned(),
                    arch_folder: false,
                    lmod: Lmod {
                        core_compilers: vec![format!("gcc@{}", s.gcc)],
                        hierarchy: Vec::new(),
                        hash_length: 0,
                        exclude_implicits: true,
                        include: MODULE_PACKAGES.iter().map(|s| (*s).to_owned()).collect(),
                        exclude: roots
                            .into_iter()
                            .filter(|r| !MODULE_PACKAGES.contains(&r.as_str()))
                            .collect(),
                        projections: BTreeMap::from([(
                            "all".to_owned(),
                            "{name}/{version}".to_owned(),
                        )]),
                    },
                },
            });
        }
        SpackYaml {
            spack: Environment {
                specs: self.specs(),
                // Every job lists the embedded repository first, so `gcc` is always
                // `slurm_factory.gcc` (the builtin recipe plus the releases the pin lacks).
                repos: slurm_factory_repo(layout),
                concretizer: reuse_all(),
                config: Config {
                    install_tree: InstallTree {
                        root: c(Area::Install),
                        padded_length: Some(PADDED_LENGTH),
                        projections: BTreeMap::new(),
                    },
                    build_stage: vec![c(Area::Stage)],
                    source_cache: c(Area::Sources),
                    misc_cache: layout.container_cache(CacheArea::Misc),
                },
                packages,
                mirrors,
                view,
                modules,
            },
        }
    }

    /// The steps run in the build container, in order.
    pub fn steps(&self, layout: &Layout) -> Vec<Step> {
        let env = layout.container(Area::Env);
        let spack = |args: &[&str]| -> Vec<String> {
            let mut v = vec!["spack".to_owned(), "-e".to_owned(), env.clone()];
            v.extend(args.iter().map(|s| (*s).to_owned()));
            v
        };
        let cache = layout.container(Area::Buildcache);
        let mut steps = Vec::new();
        if let Job::Slurm(s) = self {
            let toolchain_env = layout.container(Area::ToolchainEnv);
            let mut install = vec![
                "spack".to_owned(),
                "-e".to_owned(),
                toolchain_env,
                "install".to_owned(),
            ];
            match s.toolchain {
                Toolchain::Buildcache => {
                    // Only the pinned keys the host checked and placed in the environment
                    // directory; never what a mirror publishes (`spack buildcache keys
                    // --install --trust`). The keyring (SPACK_GNUPGHOME) is shared by the
                    // toolchain and Slurm environments.
                    let keys = layout.container_trusted_keys();
                    steps.push(Step::new(
                        "trust-keys",
                        "Trust the pinned signing keys of the compiler and Slurm buildcaches",
                        spack(&["gpg", "trust", &keys]),
                    ));
                    install.extend(["--cache-only".to_owned(), "--fail-fast".to_owned()]);
                    steps.push(Step::new(
                        "toolchain",
                        "Install the GCC toolchain from the compiler buildcache (binaries only)",
                        install,
                    ));
                }
                Toolchain::Source => {
                    install.push("--fail-fast".to_owned());
                    steps.push(Step::new(
                        "toolchain",
                        "Build the GCC toolchain from source (the compiler buildcache is not read; about an hour)",
                        install,
                    ));
                }
            }
        }
        steps.push(Step::new(
            "concretize",
            "Concretize the environment",
            spack(&["concretize", "--force"]),
        ));
        steps.push(Step::new(
            "install",
            "Install (reuse from buildcaches, build the rest)",
            spack(&["install", "--fail-fast"]),
        ));
        steps.push(Step::new(
            "push",
            "Push everything, build dependencies included, to the local unsigned buildcache",
            spack(&[
                "buildcache",
                "push",
                "--unsigned",
                "--update-index",
                "--with-build-dependencies",
                &cache,
            ]),
        ));
        if matches!(self, Job::Slurm(_)) {
            steps.push(Step::new(
                "view",
                "Regenerate the merged, hardlinked view",
                spack(&["env", "view", "regenerate"]),
            ));
            steps.push(Step::new(
                "modules",
                "Generate the Lmod modules",
                spack(&["module", "lmod", "refresh", "--delete-tree", "--yes-to-all"]),
            ));
        }
        steps
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// Builds a Slurm job from its parts, checked against the catalog.
#[derive(Debug, Clone)]
pub struct SlurmJobRequest {
    /// The release series, e.g. `25.11`.
    pub slurm: crate::catalog::SlurmVersion,
    /// The toolchain.
    pub gcc: GccVersion,
    /// GPU support.
    pub gpu: bool,
    /// The architecture.
    pub arch: Arch,
    /// The build platform; default: the catalog's default platform.
    pub platform: Option<PlatformName>,
    /// Compiler buildcache URL; default: the catalog's CDN URL for `gcc`.
    pub compiler_mirror: Option<String>,
    /// Slurm buildcache URL to reuse from; default: the catalog's CDN URL for (slurm, gcc).
    pub slurm_mirror: Option<String>,
}

impl SlurmJobRequest {
    /// Resolves the request against the catalog.
    pub fn resolve(self, catalog: &Catalog) -> Result<Job> {
        let Some(release) = catalog.slurm_release(&self.slurm) else {
            bail!(
                "Slurm {} is not in the catalog; known releases: {}",
                self.slurm,
                join(catalog.slurm_versions())
            );
        };
        if catalog.compiler(&self.gcc).is_none() {
            bail!(
                "GCC {} is not in the catalog; known toolchains: {}",
                self.gcc,
                join(catalog.compiler_versions())
            );
        }
        let spack_target = target_of(catalog, &self.arch)?;
        let platform = platform_of(catalog, self.platform.as_ref())?;
        let compiler_mirror = self.compiler_mirror.unwrap_or_else(|| {
            catalog.cdn_url(&catalog.compiler_prefix(&self.gcc, &self.arch, &platform.name))
        });
        let variant = crate::catalog::Variant {
            gpu: self.gpu,
            arch: self.arch.clone(),
            platform: platform.name.clone(),
        };
        let slurm_mirror = Some(self.slurm_mirror.unwrap_or_else(|| {
            catalog.cdn_url(&catalog.slurm_prefix(&self.slurm, &self.gcc, &variant))
        }));
        Ok(Job::Slurm(SlurmJob {
            slurm: release.clone(),
            gcc: self.gcc,
            gpu: self.gpu,
            arch: self.arch,
            platform,
            spack_target,
            compiler_mirror,
            slurm_mirror,
            trusted_keyring: Vec::new(),
            toolchain: Toolchain::Buildcache,
        }))
    }
}

/// The root spec of a GCC toolchain build (and of a Slurm job's toolchain install).
pub fn toolchain_spec(gcc: &GccVersion) -> String {
    format!("gcc@{gcc} +binutils +piclibs languages=c,c++,fortran")
}

fn slurm_factory_repo(layout: &Layout) -> BTreeMap<String, String> {
    BTreeMap::from([(
        "slurm_factory".to_owned(),
        format!(
            "{}/{}",
            layout.container(Area::SpackRepo),
            repo::REPO_SUBDIR
        ),
    )])
}

fn reuse_all() -> Concretizer {
    Concretizer {
        unify: true,
        reuse: Reuse {
            roots: true,
            from: ["local", "buildcache"]
                .into_iter()
                .map(|kind| ReuseSource {
                    kind: kind.to_owned(),
                })
                .collect(),
        },
    }
}

/// The catalog platform named `name` (default: the catalog's default platform).
fn platform_of(catalog: &Catalog, name: Option<&PlatformName>) -> Result<Platform> {
    let name = name.unwrap_or(&catalog.platforms.default);
    Ok(catalog.platform_named(&name.0)?.clone())
}

fn target_of(catalog: &Catalog, arch: &Arch) -> Result<String> {
    match catalog.target(arch) {
        Some(t) => Ok(t.spack_target.clone()),
        None => bail!(
            "architecture {:?} is not in the catalog; known: {}",
            arch.0,
            catalog
                .architectures
                .targets
                .iter()
                .map(|t| t.name.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn join<T: fmt::Display>(items: Vec<T>) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The package name of a spec string: `openmpi@5 schedulers=slurm` → `openmpi`,
/// `slurm_factory.slurm@25-11-6-1 ...` → `slurm`.
pub fn spec_name(spec: &str) -> String {
    let first = spec.split_whitespace().next().unwrap_or_default();
    let name = first.split('@').next().unwrap_or_default();
    name.rsplit('.').next().unwrap_or_default().to_owned()
}

/// One command run in the build container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Short name (`concretize`, `install`, ...), used in file and container names.
    pub name: String,
    /// What the step does, as a log group title.
    pub title: String,
    /// The command and its arguments.
    pub argv: Vec<String>,
}

impl Step {
    /// A step.
    pub fn new(name: &str, title: &str, argv: Vec<String>) -> Step {
        Step {
            name: name.to_owned(),
            title: title.to_owned(),
            argv,
        }
    }

    /// The command as a shell-readable line (for logs and `--dry-run`).
    pub fn command_line(&self) -> String {
        self.argv
            .iter()
            .map(|a| {
                if a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=@,:+%".contains(c))
                    && !a.is_empty()
                {
                    a.clone()
                } else {
                    format!("'{}'", a.replace('\'', "'\\''"))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Identifies one run of a workflow: `GITHUB_RUN_ID-GITHUB_RUN_ATTEMPT` inside Actions, a random
/// id elsewhere. Part of every namespace, and a label on every container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunId(String);

impl RunId {
    /// The run id of the current workflow run, or a fresh random one outside Actions.
    pub fn from_runner(runner: &Runner) -> RunId {
        match (
            runner.var("GITHUB_RUN_ID"),
            runner.var("GITHUB_RUN_ATTEMPT"),
        ) {
            (Some(id), attempt) if RunId::valid(id) => {
                let attempt = attempt.filter(|a| RunId::valid(a)).unwrap_or("1");
                RunId(format!("{id}-{attempt}"))
            }
            _ => RunId(format!(
                "local{}",
                &uuid::Uuid::new_v4().simple().to_string()[..10]
            )),
        }
    }

    /// A run id from text: letters, digits, `-`, `_` and `.`, at most 64 characters.
    pub fn new(s: &str) -> Result<RunId> {
        if RunId::valid(s) {
            Ok(RunId(s.to_owned()))
        } else {
            bail!("{s:?} is not a usable run id: use 1 to 64 letters, digits, '-', '_' or '.'")
        }
    }

    fn valid(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The per-build namespace: a directory name unique to (job, run).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace(String);

impl Namespace {
    /// The namespace as a directory name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A directory of one build's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// The Spack environment (`spack.yaml`, `spack.lock`).
    Env,
    /// The install tree.
    Install,
    /// The merged view.
    View,
    /// Lmod modules.
    Modules,
    /// Build stages (kept on failure).
    Stage,
    /// The unsigned local buildcache.
    Buildcache,
    /// Step logs and the full build log.
    Logs,
    /// The debug bundle written on failure.
    Debug,
    /// `$HOME` of the container user (Spack's user config and cache).
    Home,
    /// GnuPG home for the public keys of trusted mirrors.
    Gpg,
    /// The embedded `slurm_factory` package repository.
    SpackRepo,
    /// The environment that installs a Slurm job's toolchain from the compiler buildcache.
    ToolchainEnv,
    /// The toolchain's install tree (`gcc-<version>` and its dependencies).
    Toolchain,
    /// Spack's source cache of this build: every source it fetched (from the shared cache's
    /// mirror or the network), offered to the shared cache afterwards.
    Sources,
}

/// The directory under an output directory that holds one namespace per build.
pub const BUILDS_DIR: &str = "builds";

impl Area {
    /// The areas a pipeline keeps as the leg's artifact: the logs and (on failure) the debug
    /// bundle. See [`Layout::artifact_globs`].
    pub const ARTIFACTS: [Area; 2] = [Area::Logs, Area::Debug];

    /// Every area, in creation order.
    pub const ALL: [Area; 14] = [
        Area::Env,
        Area::Install,
        Area::View,
        Area::Modules,
        Area::Stage,
        Area::Buildcache,
        Area::Logs,
        Area::Debug,
        Area::Home,
        Area::Gpg,
        Area::SpackRepo,
        Area::ToolchainEnv,
        Area::Toolchain,
        Area::Sources,
    ];

    /// The directory name.
    pub fn dir(self) -> &'static str {
        match self {
            Area::Env => "env",
            Area::Install => "install",
            Area::View => "view",
            Area::Modules => "modules",
            Area::Stage => "stage",
            Area::Buildcache => "buildcache",
            Area::Logs => "logs",
            Area::Debug => "debug",
            Area::Home => "home",
            Area::Gpg => "gpg",
            Area::SpackRepo => "spack-repo",
            Area::ToolchainEnv => "toolchain-env",
            Area::Toolchain => "toolchain",
            Area::Sources => "sources",
        }
    }
}

/// A directory shared by every build under one output directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheArea {
    /// Spack's misc cache.
    Misc,
}

impl CacheArea {
    /// The directory name.
    pub fn dir(self) -> &'static str {
        match self {
            CacheArea::Misc => "misc",
        }
    }
}

/// Where a build's files live, on the host and in the container.
///
/// Host: `<output>/builds/<namespace>/<area>` and `<output>/cache/misc`.
/// Container: the same tree under [`CONTAINER_ROOT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    output: PathBuf,
    namespace: Namespace,
}

impl Layout {
    /// The layout of `namespace` under the output directory `output` (made absolute).
    pub fn new(output: &Path, namespace: Namespace) -> Result<Layout> {
        let output = if output.is_absolute() {
            output.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| anyhow::anyhow!("cannot read the current directory: {e}"))?
                .join(output)
        };
        Ok(Layout { output, namespace })
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The output directory.
    pub fn output(&self) -> &Path {
        &self.output
    }

    /// The namespace directory on the host.
    pub fn build_dir(&self) -> PathBuf {
        self.output.join(BUILDS_DIR).join(self.namespace.as_str())
    }

    /// Glob patterns, relative to an output directory, matching every file of the
    /// [`Area::ARTIFACTS`] of any build under it. The pipelines upload exactly these (the
    /// generator reads them), so what a failed build writes is what the run keeps.
    pub fn artifact_globs() -> Vec<String> {
        Area::ARTIFACTS
            .iter()
            .map(|a| format!("{BUILDS_DIR}/*/{}/**", a.dir()))
            .collect()
    }

    /// The shared cache directory on the host.
    pub fn cache_dir(&self) -> PathBuf {
        self.output.join("cache")
    }

    /// An area on the host.
    pub fn host(&self, area: Area) -> PathBuf {
        self.build_dir().join(area.dir())
    }

    /// The namespace directory in the container.
    pub fn container_build_dir(&self) -> String {
        format!("{CONTAINER_ROOT}/builds/{}", self.namespace)
    }

    /// The shared cache directory in the container.
    pub fn container_cache_dir(&self) -> String {
        format!("{CONTAINER_ROOT}/cache")
    }

    /// The pinned public keys a Slurm build trusts, on the host (written before the build).
    pub fn host_trusted_keys(&self) -> PathBuf {
        self.host(Area::Env).join(TRUSTED_KEYS_FILE)
    }

    /// The pinned public keys a Slurm build trusts, in the container.
    pub fn container_trusted_keys(&self) -> String {
        format!("{}/{TRUSTED_KEYS_FILE}", self.container(Area::Env))
    }

    /// An area in the container.
    pub fn container(&self, area: Area) -> String {
        format!("{}/{}", self.container_build_dir(), area.dir())
    }

    /// A shared cache in the container.
    pub fn container_cache(&self, area: CacheArea) -> String {
        format!("{}/{}", self.container_cache_dir(), area.dir())
    }

    /// A shared cache on the host.
    pub fn host_cache(&self, area: CacheArea) -> PathBuf {
        self.cache_dir().join(area.dir())
    }

    /// The environment variables of every step's container.
    pub fn container_env(&self) -> Vec<(String, String)> {
        vec![
            ("HOME".to_owned(), self.container(Area::Home)),
            ("USER".to_owned(), "builder".to_owned()),
            ("LOGNAME".to_owned(), "builder".to_owned()),
            ("SPACK_GNUPGHOME".to_owned(), self.container(Area::Gpg)),
            (
                "SPACK_USER_CONFIG_PATH".to_owned(),
                format!("{}/.spack", self.container(Area::Home)),
            ),
            (
                "SPACK_USER_CACHE_PATH".to_owned(),
                format!("{}/.spack", self.container(Area::Home)),
            ),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ]
    }

    /// Creates every directory of the namespace and the shared caches.
    pub fn create(&self) -> Result<()> {
        for area in Area::ALL {
            let p = self.host(area);
            std::fs::create_dir_all(&p)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", p.display()))?;
        }
        let p = self.host_cache(CacheArea::Misc);
        std::fs::create_dir_all(&p)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", p.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_names() {
        assert_eq!(
            spec_name("openmpi@5 schedulers=slurm %gcc@13.4.0"),
            "openmpi"
        );
        assert_eq!(spec_name("slurm_factory.slurm@25-11-6-1 ~nvml"), "slurm");
        assert_eq!(spec_name("json-c %gcc@1.2.3"), "json-c");
    }

    #[test]
    fn run_ids_are_checked() {
        assert!(RunId::new("123-1").is_ok());
        for bad in ["", "a/b", "../x", "a b", &"x".repeat(65)] {
            assert!(RunId::new(bad).is_err(), "{bad:?}");
        }
        let r = Runner::from_vars([("GITHUB_RUN_ID", "42"), ("GITHUB_RUN_ATTEMPT", "3")]);
        assert_eq!(RunId::from_runner(&r).as_str(), "42-3");
        let r = Runner::from_vars([("GITHUB_RUN_ID", "4/2")]);
        assert!(RunId::from_runner(&r).as_str().starts_with("local"));
    }

    #[test]
    fn namespaces_differ_per_job_and_run() {
        let cat = Catalog::embedded();
        let req = |gpu, platform: &str| SlurmJobRequest {
            slurm: "25.11".parse().unwrap(),
            gcc: "13.4.0".parse().unwrap(),
            gpu,
            arch: Arch("amd64".into()),
            platform: Some(PlatformName(platform.into())),
            compiler_mirror: None,
            slurm_mirror: None,
        };
        let a = req(false, "el8").resolve(&cat).unwrap();
        let b = req(true, "el8").resolve(&cat).unwrap();
        let c = req(false, "el9").resolve(&cat).unwrap();
        let r1 = RunId::new("1-1").unwrap();
        let r2 = RunId::new("2-1").unwrap();
        assert_ne!(a.namespace(&r1), b.namespace(&r1));
        assert_ne!(a.namespace(&r1), c.namespace(&r1));
        assert!(
            a.namespace(&r1)
                .as_str()
                .starts_with("slurm-25.11-gcc13.4.0-cpu-amd64-el8-")
        );
        let err = req(false, "sles15").resolve(&cat).unwrap_err().to_string();
        assert!(
            err.contains("\"sles15\" is not a platform of the catalog"),
            "{err}"
        );
        assert_ne!(a.namespace(&r1), a.namespace(&r2));
        assert_eq!(a.namespace(&r1), a.namespace(&r1));
    }
}
