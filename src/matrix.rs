//! Turning user input into a validated build matrix.
//!
//! [`plan`] takes a [`Catalog`] and a [`Request`] (the raw `compiler_versions`, `slurm_versions`,
//! `architectures` and `platforms` inputs plus the [`Kind`] of build) and returns a [`Matrix`] whose JSON is
//! exactly what GitHub's `strategy.matrix` expects: `{"include":[...]}`, one [`MatrixEntry`] per
//! job, each carrying every field a downstream job needs.
//!
//! Inputs are untrusted (they come from `workflow_dispatch` forms): every value is checked
//! against a strict character set, the version syntax and the catalog before anything is built,
//! and each error names the bad value and lists the supported ones.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub mod skip;

use crate::catalog::{
    Arch, Catalog, GccVersion, PlatformName, SlurmVersion, SpackSlurmVersion, Variant,
};

/// GitHub's limit on the number of jobs one matrix can generate.
pub const GITHUB_MATRIX_LIMIT: usize = 256;

/// The longest input accepted, in bytes. The whole catalog spelled out is under 200 bytes.
pub const MAX_INPUT_LEN: usize = 4096;

/// What a matrix builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// GCC toolchains into compiler buildcaches: one job per compiler and architecture.
    Compiler,
    /// Slurm into Slurm buildcaches: one job per Slurm release, compiler and architecture.
    Slurm,
    /// Relocatable Slurm tarballs: like [`Kind::Slurm`].
    Tarball,
}

impl Kind {
    /// Every kind, in the order they are documented.
    pub const ALL: [Kind; 3] = [Kind::Compiler, Kind::Slurm, Kind::Tarball];

    /// The name used in inputs and in the matrix (`compiler`, `slurm`, `tarball`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Compiler => "compiler",
            Kind::Slurm => "slurm",
            Kind::Tarball => "tarball",
        }
    }

    fn timeout(self, catalog: &Catalog) -> u32 {
        match self {
            Kind::Compiler => catalog.timeouts.compiler,
            Kind::Slurm => catalog.timeouts.slurm,
            Kind::Tarball => catalog.timeouts.tarball,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = MatrixError;
    fn from_str(s: &str) -> Result<Self, MatrixError> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| MatrixError::UnknownKind {
                value: shown(s.trim()),
            })
    }
}

/// One of the list inputs of `prepare-matrix`, named as in the action's `with:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// `compiler_versions`
    CompilerVersions,
    /// `slurm_versions`
    SlurmVersions,
    /// `architectures`
    Architectures,
    /// `platforms`
    Platforms,
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Input::CompilerVersions => "compiler_versions",
            Input::SlurmVersions => "slurm_versions",
            Input::Architectures => "architectures",
            Input::Platforms => "platforms",
        })
    }
}

/// Why a request was rejected. Every message names the bad value and the supported ones.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MatrixError {
    /// `kind` is not one of [`Kind::ALL`].
    #[error("kind {value:?} is not supported; use one of: compiler, slurm, tarball")]
    UnknownKind {
        /// The value given (shortened when long).
        value: String,
    },
    /// An input is empty (or only separators).
    #[error(
        "{input} is empty; give `all` or a comma/space separated list of supported values: {supported}"
    )]
    Empty {
        /// The input.
        input: Input,
        /// The supported values, comma separated.
        supported: String,
    },
    /// An input is implausibly long.
    #[error(
        "{input} is {len} bytes long, over the limit of {MAX_INPUT_LEN}; give `all` or a short list of supported values: {supported}"
    )]
    TooLong {
        /// The input.
        input: Input,
        /// Its length in bytes.
        len: usize,
        /// The supported values, comma separated.
        supported: String,
    },
    /// An input contains a character that never appears in a version list (shell
    /// metacharacters, quotes, colons, ...).
    #[error(
        "{input} {value:?} contains {ch:?}, which cannot appear in a version list (only letters, digits, '.', '-', '_', commas and whitespace can); supported values: {supported}"
    )]
    ForbiddenCharacter {
        /// The input.
        input: Input,
        /// The whole value given (shortened when long).
        value: String,
        /// The first forbidden character.
        ch: char,
        /// The supported values, comma separated.
        supported: String,
    },
    /// `all` was mixed with other values.
    #[error(
        "{input}: `all` cannot be combined with other values; give either `all` or a list of supported values: {supported}"
    )]
    AllWithOthers {
        /// The input.
        input: Input,
        /// The supported values, comma separated.
        supported: String,
    },
    /// Values that are not versions of the right shape.
    #[error(
        "{input}: {} not {what}; supported values: {supported}",
        listed(values, "is", "are")
    )]
    NotAVersion {
        /// The input.
        input: Input,
        /// The bad values.
        values: Vec<String>,
        /// What was expected, e.g. "a GCC version like 13.4.0".
        what: &'static str,
        /// The supported values, comma separated.
        supported: String,
    },
    /// Well-formed values that the catalog does not have.
    #[error(
        "{input}: {} not in the catalog; supported values: {supported}",
        listed(values, "is", "are")
    )]
    Unknown {
        /// The input.
        input: Input,
        /// The unknown values.
        values: Vec<String>,
        /// The supported values, comma separated.
        supported: String,
    },
    /// A value listed twice.
    #[error(
        "{input}: {value} is listed more than once; list each value once (supported values: {supported})"
    )]
    Duplicate {
        /// The input.
        input: Input,
        /// The repeated value.
        value: String,
        /// The supported values, comma separated.
        supported: String,
    },
    /// The matrix would exceed [`GITHUB_MATRIX_LIMIT`].
    #[error(
        "the {kind} matrix would have {count} jobs, over GitHub's limit of {GITHUB_MATRIX_LIMIT} jobs per matrix; request fewer versions or architectures, or split the run"
    )]
    TooLarge {
        /// The kind of build.
        kind: Kind,
        /// The number of jobs requested.
        count: usize,
    },
}

/// Shortens a value for an error message.
fn shown(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}…")
    }
}

/// "`a`, `b` and 3 more are" / "`a` is".
fn listed(values: &[String], one: &str, many: &str) -> String {
    const MAX: usize = 5;
    let mut s = values
        .iter()
        .take(MAX)
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if values.len() > MAX {
        s.push_str(&format!(" and {} more", values.len() - MAX));
    }
    format!("{s} {}", if values.len() == 1 { one } else { many })
}

/// What to build: the raw inputs of `prepare-matrix`.
///
/// Each list is `all` or a comma/whitespace separated list; `None` means "not given".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What the matrix builds.
    pub kind: Kind,
    /// GCC versions. Not given or `all`: every compiler for [`Kind::Compiler`], the
    /// Slurm-paired compilers (the catalog's `slurm: true`) otherwise. Any catalog compiler may
    /// be named explicitly.
    pub compiler_versions: Option<String>,
    /// Slurm releases. Not given or `all`: every release. Validated but unused for
    /// [`Kind::Compiler`].
    pub slurm_versions: Option<String>,
    /// Target architectures. Not given: the catalog's default; `all`: every target.
    pub architectures: Option<String>,
    /// Build platforms (`el8`, `el9`, `ubuntu24.04`). Not given: the catalog's default (the
    /// lowest glibc floor); `all`: every platform.
    pub platforms: Option<String>,
    /// Slurm and tarball legs build with GPU support (their prefixes and keys carry `-gpu`);
    /// ignored for [`Kind::Compiler`] (a toolchain has no GPU variant).
    pub gpu: bool,
}

impl Request {
    /// A request for `kind` with every list left at its default.
    pub fn new(kind: Kind) -> Self {
        Request {
            kind,
            compiler_versions: None,
            slurm_versions: None,
            architectures: None,
            platforms: None,
            gpu: false,
        }
    }
}

/// One job of a build matrix. The field names are a contract with the generated workflows,
/// which read them as `${{ matrix.<field> }}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixEntry {
    /// Human label, e.g. `Slurm 25.11 · GCC 13.4.0 · amd64`.
    pub name: String,
    /// What the job builds.
    pub kind: Kind,
    /// The GCC toolchain.
    pub compiler_version: GccVersion,
    /// The Slurm release (slurm and tarball jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_version: Option<SlurmVersion>,
    /// The Spack version of Slurm, SchedMD tag form (slurm and tarball jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_spack_version: Option<SpackSlurmVersion>,
    /// The target architecture.
    pub arch: Arch,
    /// The build platform (the OS image the job builds in).
    pub platform: PlatformName,
    /// The platform's glibc: the floor every artifact of the job must stay under.
    pub glibc_floor: String,
    /// Built with GPU support (always false for compiler jobs).
    pub gpu: bool,
    /// Spack's `target=` for the architecture.
    pub spack_target: String,
    /// The runner labels (`runs-on`).
    pub runs_on: Vec<String>,
    /// Buildcache prefix in the buildcache bucket: the compiler's for compiler jobs, the
    /// Slurm one otherwise.
    pub buildcache_prefix: String,
    /// Public URL of that buildcache through the CDN.
    pub buildcache_url: String,
    /// Object key of the tarball in the tarball bucket (tarball jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tarball_key: Option<String>,
    /// Public URL of the tarball (tarball jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tarball_url: Option<String>,
    /// Name of the job's uploaded artifact, unique within the matrix.
    pub artifact_name: String,
    /// The job's timeout.
    pub timeout_minutes: u32,
    /// The leg's input fingerprint, `sha256:<hex>` ([`crate::fingerprint`]), set by
    /// prepare-matrix; the publish step recomputes it and refuses to stamp a leg whose own
    /// computation differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The fingerprint's ingredients: name → SHA-256, so a mismatch names what differs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ingredients: BTreeMap<String, String>,
}

impl MatrixEntry {
    /// The leg `json` (a matrix entry, as a workflow passes `${{ toJSON(matrix) }}`) of `kind`
    /// and its fingerprint as this binary computes it from `sources` (the sources embedded in
    /// it, which the build container cannot touch), checked against the one the plan recorded.
    /// The one check of the build steps (before anything is built) and the publish steps
    /// (before anything is stamped); `refused` says what did not happen (`nothing was built`).
    pub fn leg_fingerprint(
        json: &str,
        kinds: &[Kind],
        catalog: &Catalog,
        sources: &crate::fingerprint::Sources,
        refused: &str,
    ) -> anyhow::Result<(MatrixEntry, crate::fingerprint::Fingerprint)> {
        use anyhow::Context;
        let e: MatrixEntry = serde_json::from_str(json).context(
            "the `leg` input is not a matrix entry of prepare-matrix (pass `${{ toJSON(matrix) }}`)",
        )?;
        if !kinds.contains(&e.kind) {
            anyhow::bail!(
                "the `leg` input is a {} leg; this step takes {} legs; {refused}",
                e.kind,
                kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            );
        }
        let own = e.compute_fingerprint(catalog, sources)?;
        e.check_fingerprint(&own, refused)?;
        Ok((e, own))
    }

    /// The job this leg runs, and whether it is a tarball leg.
    pub fn job(&self, catalog: &Catalog) -> anyhow::Result<(crate::spack::Job, bool)> {
        use anyhow::Context;
        Ok(match self.kind {
            Kind::Compiler => (
                crate::spack::Job::compiler_on(
                    catalog,
                    self.compiler_version.clone(),
                    self.arch.clone(),
                    Some(&self.platform),
                )?,
                false,
            ),
            Kind::Slurm | Kind::Tarball => {
                let slurm = self
                    .slurm_version
                    .clone()
                    .with_context(|| format!("leg {} has no slurm_version", self.name))?;
                let job = crate::spack::SlurmJobRequest {
                    slurm,
                    gcc: self.compiler_version.clone(),
                    gpu: self.gpu,
                    arch: self.arch.clone(),
                    platform: Some(self.platform.clone()),
                    compiler_mirror: None,
                    slurm_mirror: None,
                }
                .resolve(catalog)?;
                (job, self.kind == Kind::Tarball)
            }
        })
    }

    /// Computes this leg's input fingerprint from `sources`.
    pub fn compute_fingerprint(
        &self,
        catalog: &Catalog,
        sources: &crate::fingerprint::Sources,
    ) -> anyhow::Result<crate::fingerprint::Fingerprint> {
        let (job, tarball) = self.job(catalog)?;
        crate::fingerprint::of(&job, tarball, sources)
    }

    /// Records `f` as this leg's fingerprint.
    pub fn set_fingerprint(&mut self, f: &crate::fingerprint::Fingerprint) {
        self.fingerprint = Some(f.fingerprint.clone());
        self.ingredients = f
            .ingredients
            .iter()
            .map(|(k, i)| ((*k).to_owned(), i.sha256.clone()))
            .collect();
    }

    /// Checks that `own` (the publishing binary's computation) is the fingerprint the plan
    /// recorded for this leg; the error names the ingredients that differ, then `refused`.
    pub fn check_fingerprint(
        &self,
        own: &crate::fingerprint::Fingerprint,
        refused: &str,
    ) -> anyhow::Result<()> {
        let Some(planned) = &self.fingerprint else {
            anyhow::bail!(
                "leg {} carries no fingerprint: the plan job's prepare-matrix is older than this binary; run the pipeline again; {refused}",
                self.name
            );
        };
        if *planned == own.fingerprint {
            return Ok(());
        }
        let mut differ: Vec<&str> = own
            .ingredients
            .iter()
            .filter(|(n, i)| self.ingredients.get(**n) != Some(&i.sha256))
            .map(|(n, _)| *n)
            .collect();
        differ.extend(
            self.ingredients
                .keys()
                .filter(|n| !own.ingredients.contains_key(n.as_str()))
                .map(String::as_str),
        );
        anyhow::bail!(
            "leg {}: the plan fingerprinted it as {planned}, but this binary computes {} (differing ingredients: {}). The plan and the legs must run binaries of the same commit with the same catalog and image context; {refused}",
            self.name,
            own.fingerprint,
            if differ.is_empty() {
                "none named".to_owned()
            } else {
                differ.join(", ")
            }
        )
    }
}

/// A validated build matrix: serializes to GitHub's `{"include":[...]}` form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matrix {
    /// The jobs, in catalog order.
    pub include: Vec<MatrixEntry>,
}

impl Matrix {
    /// The number of jobs.
    pub fn len(&self) -> usize {
        self.include.len()
    }

    /// Whether there are no jobs: never for a matrix from [`plan`], but a plan whose every leg
    /// is already built ([`skip`]) is empty, and `{"include":[]}` is its valid JSON (the
    /// generated workflows skip the jobs after the plan when `count` is 0).
    pub fn is_empty(&self) -> bool {
        self.include.is_empty()
    }

    /// The compact JSON for `strategy.matrix: ${{ fromJSON(...) }}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a matrix always serializes")
    }

    /// A Markdown table of the jobs, for the job summary.
    pub fn summary_markdown(&self) -> String {
        let kind = self.include.first().map(|e| e.kind);
        let (what, slurm, tarball) = match kind {
            Some(Kind::Compiler) | None => ("compiler", false, false),
            Some(Kind::Slurm) => ("Slurm buildcache", true, false),
            Some(Kind::Tarball) => ("Slurm tarball", true, true),
        };
        let n = self.len();
        let mut md = format!(
            "### Build matrix: {n} {what} job{}\n\n",
            if n == 1 { "" } else { "s" }
        );
        let mut head = vec!["Job"];
        if slurm {
            head.extend(["Slurm", "Spack version"]);
        }
        head.extend([
            "GCC",
            "Arch",
            "Platform",
            "glibc floor",
            "Runner labels",
            "Buildcache",
        ]);
        if tarball {
            head.push("Tarball");
        }
        head.push("Timeout");
        md.push_str(&format!("| {} |\n", head.join(" | ")));
        md.push_str(&format!("|{}\n", "---|".repeat(head.len())));
        for e in &self.include {
            let mut row = vec![cell(&e.name)];
            if slurm {
                row.push(code(e.slurm_version.as_ref().map_or("", |v| v.as_str())));
                row.push(code(
                    e.slurm_spack_version.as_ref().map_or("", |v| v.as_str()),
                ));
            }
            row.push(code(e.compiler_version.as_str()));
            row.push(code(&e.arch.0));
            row.push(code(&e.platform.0));
            row.push(code(&e.glibc_floor));
            row.push(code(&e.runs_on.join(", ")));
            row.push(format!(
                "[{}]({})",
                cell(&e.buildcache_prefix),
                e.buildcache_url
            ));
            if tarball {
                row.push(match (&e.tarball_key, &e.tarball_url) {
                    (Some(k), Some(u)) => format!("[{}]({u})", cell(k)),
                    _ => String::new(),
                });
            }
            row.push(format!("{} min", e.timeout_minutes));
            md.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        md
    }
}

/// Escapes a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn code(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("`{}`", cell(s))
    }
}

fn allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ',' | ' ' | '\t' | '\n' | '\r')
}

/// Parses one list input into catalog values, in catalog order.
struct ListSpec<'a, T> {
    input: Input,
    /// Every value the catalog knows, in catalog order.
    known: Vec<T>,
    /// What `all` (and a missing input) selects.
    all: Vec<T>,
    /// What a missing input selects.
    default: Vec<T>,
    /// Syntax check and conversion of one token.
    parse: &'a dyn Fn(&str) -> Option<T>,
    /// What a token should look like.
    what: &'static str,
}

impl<T: Clone + PartialEq + fmt::Display> ListSpec<'_, T> {
    fn supported(&self) -> String {
        let mut s: Vec<String> = self.known.iter().map(ToString::to_string).collect();
        s.push("all".into());
        s.join(", ")
    }

    fn select(&self, raw: Option<&str>) -> Result<Vec<T>, MatrixError> {
        let input = self.input;
        let Some(raw) = raw else {
            return Ok(self.default.clone());
        };
        if raw.len() > MAX_INPUT_LEN {
            return Err(MatrixError::TooLong {
                input,
                len: raw.len(),
                supported: self.supported(),
            });
        }
        if let Some(ch) = raw.chars().find(|c| !allowed_char(*c)) {
            return Err(MatrixError::ForbiddenCharacter {
                input,
                value: shown(raw),
                ch,
                supported: self.supported(),
            });
        }
        let tokens: Vec<&str> = raw
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|t| !t.is_empty())
            .collect();
        if tokens.is_empty() {
            return Err(MatrixError::Empty {
                input,
                supported: self.supported(),
            });
        }
        if tokens.iter().any(|t| t.eq_ignore_ascii_case("all")) {
            if tokens.len() > 1 {
                return Err(MatrixError::AllWithOthers {
                    input,
                    supported: self.supported(),
                });
            }
            return Ok(self.all.clone());
        }
        let mut bad = Vec::new();
        let mut parsed = Vec::new();
        for t in &tokens {
            match (self.parse)(t) {
                Some(v) => parsed.push(v),
                None => bad.push(shown(t)),
            }
        }
        if !bad.is_empty() {
            return Err(MatrixError::NotAVersion {
                input,
                values: bad,
                what: self.what,
                supported: self.supported(),
            });
        }
        let unknown: Vec<String> = parsed
            .iter()
            .filter(|v| !self.known.contains(v))
            .map(ToString::to_string)
            .collect();
        if !unknown.is_empty() {
            return Err(MatrixError::Unknown {
                input,
                values: unknown,
                supported: self.supported(),
            });
        }
        for (i, v) in parsed.iter().enumerate() {
            if parsed[..i].contains(v) {
                return Err(MatrixError::Duplicate {
                    input,
                    value: v.to_string(),
                    supported: self.supported(),
                });
            }
        }
        Ok(self
            .known
            .iter()
            .filter(|k| parsed.contains(k))
            .cloned()
            .collect())
    }
}

/// Validates `request` against `catalog` and expands it into a matrix. Every input is checked
/// (even one the kind does not use) before anything is built.
pub fn plan(catalog: &Catalog, request: &Request) -> Result<Matrix, MatrixError> {
    let kind = request.kind;
    let all_compilers = catalog.compiler_versions();
    let paired = match kind {
        Kind::Compiler => all_compilers.clone(),
        Kind::Slurm | Kind::Tarball => catalog.slurm_compilers(),
    };
    let parse_gcc = |t: &str| t.parse::<GccVersion>().ok();
    let compilers = ListSpec {
        input: Input::CompilerVersions,
        known: all_compilers,
        all: paired.clone(),
        default: paired,
        parse: &parse_gcc,
        what: "a GCC version like 13.4.0",
    }
    .select(request.compiler_versions.as_deref())?;

    let slurm_all = catalog.slurm_versions();
    let parse_slurm = |t: &str| t.parse::<SlurmVersion>().ok();
    let slurms = ListSpec {
        input: Input::SlurmVersions,
        known: slurm_all.clone(),
        all: slurm_all.clone(),
        default: slurm_all,
        parse: &parse_slurm,
        what: "a Slurm release like 25.11",
    }
    .select(request.slurm_versions.as_deref())?;

    let arch_all: Vec<Arch> = catalog
        .architectures
        .targets
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let parse_arch = |t: &str| Some(Arch(t.to_owned()));
    let archs = ListSpec {
        input: Input::Architectures,
        known: arch_all.clone(),
        all: arch_all,
        default: vec![catalog.architectures.default.clone()],
        parse: &parse_arch,
        what: "an architecture",
    }
    .select(request.architectures.as_deref())?;

    let platform_all: Vec<PlatformName> = catalog
        .platforms
        .images
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let parse_platform = |t: &str| Some(PlatformName(t.to_owned()));
    let platforms = ListSpec {
        input: Input::Platforms,
        known: platform_all.clone(),
        all: platform_all,
        default: vec![catalog.platforms.default.clone()],
        parse: &parse_platform,
        what: "a platform",
    }
    .select(request.platforms.as_deref())?;

    let slurm_axis = match kind {
        Kind::Compiler => 1,
        Kind::Slurm | Kind::Tarball => slurms.len(),
    };
    let count = slurm_axis * compilers.len() * archs.len() * platforms.len();
    if count > GITHUB_MATRIX_LIMIT {
        return Err(MatrixError::TooLarge { kind, count });
    }

    let mut include = Vec::with_capacity(count);
    let slurm_opts: Vec<Option<&SlurmVersion>> = match kind {
        Kind::Compiler => vec![None],
        Kind::Slurm | Kind::Tarball => slurms.iter().map(Some).collect(),
    };
    for platform in &platforms {
        for slurm in &slurm_opts {
            for gcc in &compilers {
                for arch in &archs {
                    let variant = Variant {
                        gpu: request.gpu && kind != Kind::Compiler,
                        arch: arch.clone(),
                        platform: platform.clone(),
                    };
                    include.push(entry(catalog, kind, *slurm, gcc, &variant));
                }
            }
        }
    }
    let mut names = HashSet::new();
    for e in &include {
        assert!(
            names.insert(e.artifact_name.as_str()),
            "artifact name {} generated twice: the catalog validation should have caught this",
            e.artifact_name
        );
    }
    Ok(Matrix { include })
}

fn entry(
    catalog: &Catalog,
    kind: Kind,
    slurm: Option<&SlurmVersion>,
    gcc: &GccVersion,
    variant: &Variant,
) -> MatrixEntry {
    let arch = &variant.arch;
    let target = catalog
        .target(arch)
        .expect("architectures were validated against the catalog");
    let release = slurm.map(|s| {
        catalog
            .slurm_release(s)
            .expect("Slurm releases were validated against the catalog")
    });
    let platform = catalog
        .platform(&variant.platform)
        .expect("platforms were validated against the catalog");
    let p = &platform.name;
    let (name, prefix, artifact) = match (kind, slurm) {
        (Kind::Compiler, _) | (_, None) => (
            format!("GCC {gcc} · {arch} · {p}"),
            catalog.compiler_prefix(gcc, arch, p),
            format!("gcc-{gcc}-{arch}-{p}"),
        ),
        (Kind::Slurm, Some(s)) => (
            format!("Slurm {s} · GCC {gcc} · {arch} · {p}"),
            catalog.slurm_prefix(s, gcc, variant),
            format!("slurm-{s}-gcc{gcc}-{arch}-{p}"),
        ),
        (Kind::Tarball, Some(s)) => (
            format!("Slurm {s} tarball · GCC {gcc} · {arch} · {p}"),
            catalog.slurm_prefix(s, gcc, variant),
            format!("slurm-{s}-gcc{gcc}-{arch}-{p}-tarball"),
        ),
    };
    let (tarball_key, tarball_url) = match (kind, slurm) {
        (Kind::Tarball, Some(s)) => (
            Some(catalog.tarball_key(s, gcc, variant)),
            Some(catalog.tarball_url(s, gcc, variant)),
        ),
        _ => (None, None),
    };
    MatrixEntry {
        name,
        kind,
        compiler_version: gcc.clone(),
        slurm_version: slurm.cloned(),
        slurm_spack_version: release.map(|r| r.spack.clone()),
        arch: arch.clone(),
        platform: p.clone(),
        glibc_floor: platform.glibc.clone(),
        gpu: variant.gpu,
        spack_target: target.spack_target.clone(),
        runs_on: target.runner_labels.clone(),
        buildcache_url: catalog.cdn_url(&prefix),
        buildcache_prefix: prefix,
        tarball_key,
        tarball_url,
        artifact_name: artifact,
        timeout_minutes: kind.timeout(catalog),
        fingerprint: None,
        ingredients: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: Kind, gcc: Option<&str>, slurm: Option<&str>, arch: Option<&str>) -> Request {
        Request {
            kind,
            compiler_versions: gcc.map(Into::into),
            slurm_versions: slurm.map(Into::into),
            architectures: arch.map(Into::into),
            platforms: None,
            gpu: false,
        }
    }

    #[test]
    fn defaults_and_all() {
        let c = Catalog::embedded();
        assert_eq!(plan(&c, &Request::new(Kind::Compiler)).unwrap().len(), 9);
        assert_eq!(plan(&c, &Request::new(Kind::Slurm)).unwrap().len(), 32);
        let m = plan(&c, &req(Kind::Slurm, Some("all"), Some("all"), Some("all"))).unwrap();
        assert_eq!(m.len(), 64);
        let m = plan(&c, &req(Kind::Tarball, Some("15.2.0"), Some("25.11"), None)).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(
            m.include[0].artifact_name,
            "slurm-25.11-gcc15.2.0-amd64-el8-tarball"
        );
        assert_eq!(m.include[0].platform.0, "el8");
        assert_eq!(m.include[0].glibc_floor, "2.28");
    }

    #[test]
    fn the_platform_axis_defaults_to_the_lowest_floor_and_multiplies() {
        let c = Catalog::embedded();
        let mut r = req(Kind::Slurm, Some("13.4.0"), Some("25.11"), None);
        let m = plan(&c, &r).unwrap();
        let got: Vec<&str> = m.include.iter().map(|e| e.platform.0.as_str()).collect();
        assert_eq!(got, ["el8"]);
        r.platforms = Some("ubuntu24.04, el8".into());
        let m = plan(&c, &r).unwrap();
        let got: Vec<(&str, &str)> = m
            .include
            .iter()
            .map(|e| (e.platform.0.as_str(), e.buildcache_prefix.as_str()))
            .collect();
        // Catalog order, each with its own prefix.
        assert_eq!(
            got,
            [
                ("el8", "slurm/el8/25.11/13.4.0/buildcache"),
                ("ubuntu24.04", "slurm/ubuntu24.04/25.11/13.4.0/buildcache"),
            ]
        );
        r.platforms = Some("all".into());
        assert_eq!(plan(&c, &r).unwrap().len(), 3);
        r.platforms = Some("el8 sles15".into());
        let e = plan(&c, &r).unwrap_err();
        assert!(
            e.to_string()
                .contains("platforms: \"sles15\" is not in the catalog; supported values: el8, el9, ubuntu24.04, all"),
            "{e}"
        );
        r.platforms = Some("el8;id".into());
        assert!(matches!(
            plan(&c, &r).unwrap_err(),
            MatrixError::ForbiddenCharacter {
                input: Input::Platforms,
                ..
            }
        ));
        r.platforms = Some("el8,el8".into());
        assert!(matches!(
            plan(&c, &r).unwrap_err(),
            MatrixError::Duplicate {
                input: Input::Platforms,
                ..
            }
        ));
        // Every platform of every kind at once stays under GitHub's limit or is refused.
        let all = Request {
            kind: Kind::Tarball,
            compiler_versions: Some("all".into()),
            slurm_versions: Some("all".into()),
            architectures: Some("all".into()),
            platforms: Some("all".into()),
            gpu: true,
        };
        let n = 8 * 4 * 2 * 3;
        assert_eq!(plan(&c, &all).unwrap().len(), n);
    }

    #[test]
    fn lists_are_put_in_catalog_order() {
        let c = Catalog::embedded();
        let m = plan(
            &c,
            &req(Kind::Compiler, Some("7.5.0,\n13.4.0  15.2.0"), None, None),
        )
        .unwrap();
        let got: Vec<&str> = m
            .include
            .iter()
            .map(|e| e.compiler_version.as_str())
            .collect();
        assert_eq!(got, ["15.2.0", "13.4.0", "7.5.0"]);
    }

    #[test]
    fn errors_name_the_value() {
        let c = Catalog::embedded();
        let e = plan(&c, &req(Kind::Slurm, None, Some("25.11 99.01"), None)).unwrap_err();
        assert_eq!(
            e,
            MatrixError::Unknown {
                input: Input::SlurmVersions,
                values: vec!["99.01".into()],
                supported: "26.05, 25.11, 24.11, 23.11, all".into()
            }
        );
        let e = plan(&c, &req(Kind::Slurm, Some("13.4.0 all"), None, None)).unwrap_err();
        assert!(matches!(e, MatrixError::AllWithOthers { .. }));
        let e = plan(&c, &req(Kind::Slurm, Some("13.4"), None, None)).unwrap_err();
        assert!(
            e.to_string().contains("\"13.4\" is not a GCC version"),
            "{e}"
        );
        assert!("cmake".parse::<Kind>().is_err());
    }
}
