//! The version catalog: what can be built and where it is published.
//!
//! The data lives in `catalog.yaml` at the repository root and is embedded in every binary
//! ([`Catalog::embedded`]); `--catalog <path>` loads another file ([`Catalog::load`]).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The catalog file embedded at compile time.
pub const EMBEDDED: &str = include_str!("../catalog.yaml");

fn is_version_text(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

macro_rules! version_newtype {
    ($(#[$doc:meta])* $name:ident, $parts:expr, $example:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The version as written, e.g. `
            #[doc = $example]
            /// `.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = anyhow::Error;
            fn from_str(s: &str) -> Result<Self> {
                if is_version_text(s) && s.split('.').count() == $parts {
                    Ok($name(s.to_owned()))
                } else {
                    bail!(
                        "{s:?} is not a {} version: expected {} dot-separated numbers, like {}",
                        stringify!($name).trim_end_matches("Version"),
                        $parts,
                        $example
                    )
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = anyhow::Error;
            fn try_from(s: String) -> Result<Self> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

version_newtype!(
    /// A GCC toolchain version, `MAJOR.MINOR.PATCH` (e.g. `13.4.0`).
    ///
    /// ```
    /// use slurm_factory::catalog::GccVersion;
    /// let v: GccVersion = "13.4.0".parse().unwrap();
    /// assert_eq!(v.as_str(), "13.4.0");
    /// assert!("13.4.0; rm -rf /".parse::<GccVersion>().is_err());
    /// ```
    GccVersion,
    3,
    "13.4.0"
);
version_newtype!(
    /// A Slurm release series, `YY.MM` (e.g. `25.11`).
    SlurmVersion,
    2,
    "25.11"
);

/// Checks one catalog string with `ok`, naming the field and what is allowed.
fn check_field(field: &str, value: &str, ok: fn(&str) -> Result<(), &'static str>) -> Result<()> {
    ok(value)
        .map_err(|why| anyhow::anyhow!("catalog field {field} = {value:?} is not allowed: {why}"))
}

fn is_arch_name(s: &str) -> Result<(), &'static str> {
    let ok = (1..=16).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    ok.then_some(())
        .ok_or("an architecture name is 1 to 16 lower-case letters, digits or '_', starting with a letter (amd64, arm64)")
}

fn is_fingerprint(s: &str) -> Result<(), &'static str> {
    let ok = matches!(s.len(), 40 | 64)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
    ok.then_some(())
        .ok_or("a pinned key is its full fingerprint: 40 upper-case hex digits, no spaces")
}

fn is_spack_target(s: &str) -> Result<(), &'static str> {
    let ok = (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    ok.then_some(())
        .ok_or("a Spack target is 1 to 32 lower-case letters, digits or '_' (x86_64_v2, aarch64)")
}

fn is_runner_label(s: &str) -> Result<(), &'static str> {
    let ok = (1..=100).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !s.contains("..");
    ok.then_some(())
        .ok_or("a runner label is 1 to 100 letters, digits, '-', '_' or '.', starting with a letter or digit")
}

fn is_bucket(s: &str) -> Result<(), &'static str> {
    let ok = (3..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !s.contains("..")
        && !s.split('.').all(|p| p.bytes().all(|b| b.is_ascii_digit()));
    ok.then_some(())
        .ok_or("an S3 bucket name is 3 to 63 lower-case letters, digits, '-' or '.', starting and ending with a letter or digit")
}

fn is_https_base_url(s: &str) -> Result<(), &'static str> {
    const WHY: &str = "a base URL is https://host[:port][/path] (http:// only to a loopback host: localhost or 127.x.y.z, for a local mirror or a rehearsal), with a lower-case host and path segments of letters, digits, '-', '_', '.' or '~' (no query, no '..', no spaces)";
    let rest = match (s.strip_prefix("https://"), s.strip_prefix("http://")) {
        (Some(rest), _) => rest,
        (None, Some(rest)) if crate::net::plain_http_allowed(s, false) => rest,
        _ => return Err(WHY),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = authority.split_once(':').unwrap_or((authority, ""));
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    let port_ok = port.is_empty() || (port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()));
    let path_ok = path.trim_end_matches('/').is_empty()
        || path.trim_end_matches('/').split('/').all(is_path_segment);
    (host_ok && port_ok && path_ok && s.len() <= 2048)
        .then_some(())
        .ok_or(WHY)
}

fn is_path_segment(seg: &str) -> bool {
    !seg.is_empty()
        && seg != "."
        && seg != ".."
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// Checks a key or prefix template: `/`-separated segments of safe characters and the
/// placeholders `{gcc}`, `{slurm}`, `{arch}`, `{variant}`, `{platform}`; each of `required`
/// must appear.
fn check_template(field: &str, value: &str, required: &[&str]) -> Result<()> {
    let plain = value
        .replace("{platform}", "platform")
        .replace("{gcc}", "gcc")
        .replace("{slurm}", "slurm")
        .replace("{arch}", "arch")
        .replace("{variant}", "-variant");
    let ok = !value.is_empty()
        && value.len() <= 512
        && plain.split('/').all(is_path_segment)
        && !plain.contains("..");
    if !ok {
        bail!(
            "catalog field {field} = {value:?} is not allowed: an object key template is '/'-separated segments of letters, digits, '-', '_', '.' or '~' and the placeholders {{gcc}}, {{slurm}}, {{arch}}, {{variant}}, {{platform}} (no leading '/', no '..', no spaces)"
        );
    }
    for r in required {
        if !value.contains(r) {
            bail!(
                "catalog field {field} = {value:?} lacks the placeholder {r}: without it, builds of different versions, variants (CPU/GPU, architecture) or platforms (el8, el9, ...) would overwrite each other"
            );
        }
    }
    Ok(())
}

/// The Spack version of the Slurm package, in SchedMD tag form (e.g. `25-11-6-1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpackSlurmVersion(String);

impl SpackSlurmVersion {
    /// The tag form, e.g. `25-11-6-1`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The upstream release this tag builds, e.g. `25.11.6` for `25-11-6-1`.
    pub fn release(&self) -> String {
        let parts: Vec<&str> = self.0.split('-').collect();
        parts[..3].join(".")
    }
}

impl TryFrom<String> for SpackSlurmVersion {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<Self> {
        let parts: Vec<&str> = s.split('-').collect();
        if parts.len() == 4
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            Ok(SpackSlurmVersion(s))
        } else {
            bail!("{s:?} is not a SchedMD tag version like 25-11-6-1")
        }
    }
}

impl From<SpackSlurmVersion> for String {
    fn from(v: SpackSlurmVersion) -> String {
        v.0
    }
}

impl fmt::Display for SpackSlurmVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A target architecture name (`amd64`, `arm64`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Arch(pub String);

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One GCC toolchain of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compiler {
    /// The GCC version.
    pub version: GccVersion,
    /// Whether it is paired with Slurm in the default matrix.
    pub slurm: bool,
}

/// The compilers section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compilers {
    /// The default toolchain.
    pub default: GccVersion,
    /// All toolchains, newest first.
    pub versions: Vec<Compiler>,
}

/// One Slurm release of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmRelease {
    /// The release series.
    pub version: SlurmVersion,
    /// The Spack version string of `slurm_factory.slurm`.
    pub spack: SpackSlurmVersion,
}

/// The Slurm section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmReleases {
    /// The default release.
    pub default: SlurmVersion,
    /// All releases, newest first.
    pub releases: Vec<SlurmRelease>,
}

/// One target architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The architecture name.
    pub name: Arch,
    /// Spack's `target=` for portable binaries.
    pub spack_target: String,
    /// The self-hosted runner labels that build for it.
    pub runner_labels: Vec<String>,
}

/// The architectures section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architectures {
    /// The default architecture.
    pub default: Arch,
    /// All targets.
    pub targets: Vec<Target>,
}

/// A build platform's name (`el8`, `el9`, `ubuntu24.04`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PlatformName(pub String);

impl fmt::Display for PlatformName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_platform_name(s: &str) -> Result<(), &'static str> {
    let ok = (1..=24).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.');
    ok.then_some(()).ok_or(
        "a platform name is 1 to 24 lower-case letters, digits or '.', starting with a letter (el8, ubuntu24.04)",
    )
}

fn is_image_ref(s: &str) -> Result<(), &'static str> {
    let ok = (1..=200).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b':'))
        && !s.contains("..")
        && !s.contains('@');
    ok.then_some(()).ok_or(
        "an image reference is registry/repository:tag in letters, digits and . - _ / : (the digest goes in its own field)",
    )
}

fn is_digest(s: &str) -> Result<(), &'static str> {
    let ok = s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    ok.then_some(())
        .ok_or("a digest is sha256: followed by 64 lower-case hex digits")
}

/// One build platform: the OS image a build runs in and the glibc its artifacts may need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// The platform name.
    pub name: PlatformName,
    /// The OS, for people (`Rocky Linux 8`).
    pub os: String,
    /// The build image (registry/repository:tag).
    pub image: String,
    /// The image's index digest, when recorded (`None`: still to be recorded).
    pub digest: Option<String>,
    /// The image's glibc: the highest `GLIBC_x.y` an artifact built there may need.
    pub glibc: String,
    /// The image's system compiler (bootstraps the catalog's GCC toolchains).
    pub system_gcc: GccVersion,
}

impl Platform {
    /// Refuses an artifact whose glibc `floor` is above this platform's glibc, naming the file
    /// and the symbol version that raised it. `what` names the artifact.
    pub fn check_floor(&self, floor: &crate::glibc_floor::Floor, what: &str) -> Result<()> {
        if let Some(need) = &floor.glibc
            && need.version > self.glibc_version()
        {
            bail!(
                "{what} needs glibc {} but the catalog promises platform {} ({}) runs it with glibc {}: {} needs {}. Build it on the {} image ({}), or publish it for a platform whose glibc is {} or newer",
                need.version,
                self.name,
                self.os,
                self.glibc,
                need.file.display(),
                need.name,
                self.name,
                self.image_ref(),
                need.version
            );
        }
        Ok(())
    }

    /// The glibc floor as a comparable version.
    pub fn glibc_version(&self) -> crate::glibc_floor::Version {
        crate::glibc_floor::Version::parse(&self.glibc)
            .expect("validated when the catalog was loaded")
    }

    /// The pinned image (`image@digest`), or an error when the catalog records no digest: a
    /// build never runs on an image it cannot name exactly.
    pub fn pinned_image(&self) -> Result<String> {
        match &self.digest {
            Some(d) => Ok(format!("{}@{d}", self.image)),
            None => bail!(
                "platform {} ({}) has no image digest in the catalog (platforms.images[{}].digest is null), so its build image cannot be pinned; record the multi-arch index digest of {} (`docker buildx imagetools inspect {}`) in catalog.yaml and in its Dockerfile, or choose another platform",
                self.name,
                self.os,
                self.name,
                self.image,
                self.image
            ),
        }
    }

    /// The image reference to pull: `image@digest` when the digest is recorded.
    pub fn image_ref(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{d}", self.image),
            None => self.image.clone(),
        }
    }
}

/// The platforms section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platforms {
    /// The default platform (the lowest floor).
    pub default: PlatformName,
    /// All platforms.
    pub images: Vec<Platform>,
}

/// Job timeouts in minutes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// A compiler build.
    pub compiler: u32,
    /// A Slurm buildcache build.
    pub slurm: u32,
    /// A tarball build.
    pub tarball: u32,
}

/// The axes besides the versions that change a build's bits: GPU support (NVML, ROCm SMI),
/// the architecture and the build platform (the OS image, and so the glibc floor). Every
/// published path carries them (the `{variant}` placeholder, see [`Catalog::variant_suffix`],
/// and `{platform}`), so no two builds write the same prefix or key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Variant {
    /// Built with GPU support.
    pub gpu: bool,
    /// The target architecture.
    pub arch: Arch,
    /// The build platform.
    pub platform: PlatformName,
}

/// Where things are published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// The buildcache bucket.
    pub buildcache_bucket: String,
    /// The public CDN in front of the buildcache bucket.
    pub cdn_url: String,
    /// Prefix of a compiler buildcache; `{gcc}`, `{variant}` (and `{arch}`) are replaced.
    pub compiler_prefix: String,
    /// Prefix of a Slurm buildcache; `{slurm}`, `{gcc}`, `{variant}` (and `{arch}`) are replaced.
    pub slurm_prefix: String,
    /// The public tarball bucket.
    pub tarball_bucket: String,
    /// Key of a tarball; `{slurm}`, `{gcc}`, `{variant}` (and `{arch}`) are replaced.
    pub tarball_key: String,
    /// Public base URL of the tarball bucket.
    pub tarball_url: String,
    /// Pinned fingerprints of the keys that sign the published buildcaches. A Slurm build
    /// trusts the compiler cache's key only if its fingerprint is listed here (or given with
    /// `--trusted-fingerprint` / `--trusted-key`); empty means nothing is trusted by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_fingerprints: Vec<String>,
}

/// A size in bytes, written `<whole number><unit>` with unit `B`, `KiB`, `MiB`, `GiB` or `TiB`
/// (`50GiB`); at least 1 MiB and at most 1 PiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ByteSize(u64);

const BYTE_UNITS: [(&str, u64); 5] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<ByteSize> {
        let why = || {
            anyhow::anyhow!(
                "{s:?} is not a size: write a whole number and a unit (B, KiB, MiB, GiB or TiB), e.g. 50GiB, between 1MiB and 1024TiB"
            )
        };
        let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
        if digits.is_empty() || digits.len() > 16 {
            return Err(why());
        }
        let (_, scale) = BYTE_UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .ok_or_else(why)?;
        let n: u64 = digits.parse().map_err(|_| why())?;
        let bytes = n.checked_mul(*scale).ok_or_else(why)?;
        if !((1 << 20)..=(1 << 50)).contains(&bytes) {
            return Err(why());
        }
        Ok(ByteSize(bytes))
    }
}

impl TryFrom<String> for ByteSize {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<ByteSize> {
        s.parse()
    }
}

impl From<ByteSize> for String {
    fn from(b: ByteSize) -> String {
        b.to_string()
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, scale) = BYTE_UNITS
            .iter()
            .find(|(_, scale)| self.0.is_multiple_of(*scale))
            .copied()
            .unwrap_or(("B", 1));
        write!(f, "{}{unit}", self.0 / scale)
    }
}

/// The caches a self-hosted runner keeps between runs (Spack's downloaded sources and the
/// build images), shared by the legs that run on it (see `crate::builder::caches`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caches {
    /// Whether builds keep caches at all (`--cache-dir` overrides it either way).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// The root directory (absolute); none: `$RUNNER_TOOL_CACHE/slurm-factory` on a runner,
    /// else `$XDG_CACHE_HOME/slurm-factory` or `~/.cache/slurm-factory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// The size cap of the Spack source cache (least recently used files go first).
    pub source_cache_max: ByteSize,
    /// The size cap of the saved build images (least recently used go first).
    pub image_cache_max: ByteSize,
}

fn enabled_by_default() -> bool {
    true
}

impl Default for Caches {
    fn default() -> Caches {
        Caches {
            enabled: true,
            dir: None,
            source_cache_max: ByteSize(50 << 30),
            image_cache_max: ByteSize(20 << 30),
        }
    }
}

/// A cache root in the catalog: an absolute path of plain components (no `.`, `..`, `~`,
/// control characters or `${{`), at most 1024 bytes.
fn is_cache_dir(s: &str) -> Result<(), &'static str> {
    let ok = s.len() <= 1024
        && s.starts_with('/')
        && !s.contains("${{")
        && !s.chars().any(char::is_control)
        && s.split('/').skip(1).all(|c| !matches!(c, "." | ".."))
        && !s.contains("//");
    ok.then_some(()).ok_or(
        "a cache directory is an absolute path without '.', '..', '//', control characters or '${{' (leave it out for the runner's default)",
    )
}

/// The whole catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// GCC toolchains.
    pub compilers: Compilers,
    /// Slurm releases.
    pub slurm: SlurmReleases,
    /// Target architectures.
    pub architectures: Architectures,
    /// Build platforms (OS images and their glibc floors).
    pub platforms: Platforms,
    /// Job timeouts.
    pub timeouts: Timeouts,
    /// Publishing locations.
    pub publish: Publish,
    /// The caches a self-hosted runner keeps between runs (defaults when left out).
    #[serde(default)]
    pub caches: Caches,
}

impl Catalog {
    /// The catalog embedded in this binary.
    pub fn embedded() -> Catalog {
        Catalog::parse(EMBEDDED, "embedded catalog.yaml")
            .expect("the embedded catalog.yaml is checked by the test suite")
    }

    /// Loads and validates a catalog file.
    pub fn load(path: &Path) -> Result<Catalog> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the catalog {}", path.display()))?;
        Catalog::parse(&text, &path.display().to_string())
    }

    /// The embedded catalog, or the file at `path` when given.
    pub fn load_or_embedded(path: Option<&Path>) -> Result<Catalog> {
        match path {
            Some(p) => Catalog::load(p),
            None => Ok(Catalog::embedded()),
        }
    }

    /// Parses and validates catalog text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Catalog> {
        let c: Catalog = yaml_serde::from_str(text)
            .with_context(|| format!("{origin} is not a valid version catalog"))?;
        c.validate()
            .with_context(|| format!("{origin} is inconsistent"))?;
        Ok(c)
    }

    fn validate(&self) -> Result<()> {
        self.validate_fields()?;
        let mut seen = std::collections::HashSet::new();
        for c in &self.compilers.versions {
            if !seen.insert(c.version.as_str()) {
                bail!("compiler {} is listed twice", c.version);
            }
        }
        if self.compiler(&self.compilers.default).is_none() {
            bail!(
                "the default compiler {} is not listed",
                self.compilers.default
            );
        }
        let mut seen = std::collections::HashSet::new();
        for r in &self.slurm.releases {
            if !seen.insert(r.version.as_str()) {
                bail!("Slurm {} is listed twice", r.version);
            }
            let rel = r.spack.release();
            if !rel.starts_with(&format!("{}.", r.version)) {
                bail!(
                    "Slurm {} has Spack version {} from another series",
                    r.version,
                    r.spack
                );
            }
        }
        if self.slurm_release(&self.slurm.default).is_none() {
            bail!(
                "the default Slurm release {} is not listed",
                self.slurm.default
            );
        }
        let mut seen = std::collections::HashSet::new();
        for t in &self.architectures.targets {
            if !seen.insert(&t.name) {
                bail!("architecture {} is listed twice", t.name);
            }
            if t.runner_labels.is_empty() {
                bail!("architecture {} has no runner labels", t.name);
            }
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.platforms.images {
            if !seen.insert(&p.name) {
                bail!("platform {} is listed twice", p.name);
            }
        }
        let mut suffixes = std::collections::HashSet::new();
        for v in self.variants() {
            if !suffixes.insert((v.platform.clone(), self.variant_suffix(&v))) {
                bail!(
                    "architecture {} gives the path suffix {:?} twice (is an architecture named \"gpu\"?): rename it, or two builds would publish to one prefix",
                    v.arch,
                    self.variant_suffix(&v)
                );
            }
        }
        let Some(default) = self.platform(&self.platforms.default) else {
            bail!(
                "the default platform {} is not listed",
                self.platforms.default
            );
        };
        if let Some(lower) = self
            .platforms
            .images
            .iter()
            .find(|p| p.glibc_version() < default.glibc_version())
        {
            bail!(
                "the default platform {} has glibc {}, but {} has the lower {}: the default must be the lowest floor, so the public artifacts run on the oldest supported clusters",
                default.name,
                default.glibc,
                lower.name,
                lower.glibc
            );
        }
        if self.target(&self.architectures.default).is_none() {
            bail!(
                "the default architecture {} is not listed",
                self.architectures.default
            );
        }
        Ok(())
    }

    /// The catalog's own strings end up in workflow files, job outputs, object keys and URLs:
    /// each is held to a strict character set (no whitespace, newlines, `::`, `${{`, `..`).
    fn validate_fields(&self) -> Result<()> {
        for t in &self.architectures.targets {
            check_field("architectures.targets[].name", &t.name.0, is_arch_name)?;
            check_field(
                &format!("architectures.targets[{}].spack_target", t.name),
                &t.spack_target,
                is_spack_target,
            )?;
            let mut seen = std::collections::HashSet::new();
            for l in &t.runner_labels {
                check_field(
                    &format!("architectures.targets[{}].runner_labels[]", t.name),
                    l,
                    is_runner_label,
                )?;
                if !seen.insert(l) {
                    bail!("architecture {} lists runner label {l:?} twice", t.name);
                }
            }
        }
        check_field(
            "architectures.default",
            &self.architectures.default.0,
            is_arch_name,
        )?;
        check_field(
            "platforms.default",
            &self.platforms.default.0,
            is_platform_name,
        )?;
        for p in &self.platforms.images {
            check_field("platforms.images[].name", &p.name.0, is_platform_name)?;
            let f = |k: &str| format!("platforms.images[{}].{k}", p.name);
            check_field(&f("image"), &p.image, is_image_ref)?;
            if let Some(d) = &p.digest {
                check_field(&f("digest"), d, is_digest)?;
            }
            check_field(&f("glibc"), &p.glibc, |s| {
                (crate::glibc_floor::Version::parse(s).is_some_and(|v| v.0.len() == 2))
                    .then_some(())
                    .ok_or("a glibc version is two dot-separated numbers, like 2.28")
            })?;
            check_field(&f("os"), &p.os, |s| {
                ((1..=64).contains(&s.len())
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b' ' | b'.' | b'-')))
                .then_some(())
                .ok_or("an OS name is up to 64 letters, digits, spaces, '.' or '-'")
            })?;
        }
        let p = &self.publish;
        check_field("publish.buildcache_bucket", &p.buildcache_bucket, is_bucket)?;
        check_field("publish.tarball_bucket", &p.tarball_bucket, is_bucket)?;
        check_field("publish.cdn_url", &p.cdn_url, is_https_base_url)?;
        check_field("publish.tarball_url", &p.tarball_url, is_https_base_url)?;
        check_template(
            "publish.compiler_prefix",
            &p.compiler_prefix,
            &["{gcc}", "{variant}", "{platform}"],
        )?;
        check_template(
            "publish.slurm_prefix",
            &p.slurm_prefix,
            &["{slurm}", "{gcc}", "{variant}", "{platform}"],
        )?;
        check_template(
            "publish.tarball_key",
            &p.tarball_key,
            &["{slurm}", "{gcc}", "{variant}", "{platform}"],
        )?;
        for f in &p.signing_fingerprints {
            check_field("publish.signing_fingerprints[]", f, is_fingerprint)?;
        }
        if let Some(d) = &self.caches.dir {
            check_field("caches.dir", d, is_cache_dir)?;
        }
        Ok(())
    }

    /// The compiler entry for `v`.
    pub fn compiler(&self, v: &GccVersion) -> Option<&Compiler> {
        self.compilers.versions.iter().find(|c| &c.version == v)
    }

    /// The Slurm entry for `v`.
    pub fn slurm_release(&self, v: &SlurmVersion) -> Option<&SlurmRelease> {
        self.slurm.releases.iter().find(|r| &r.version == v)
    }

    /// The target named `a`.
    pub fn target(&self, a: &Arch) -> Option<&Target> {
        self.architectures.targets.iter().find(|t| &t.name == a)
    }

    /// Where `tarball-publish --publish` uploads the tarball of `slurm` built with `gcc` on
    /// `platform` for `arch` (the default architecture when `None`), with or without GPU
    /// support: `s3://<publish.tarball_bucket>/<publish.tarball_key>`. An architecture the
    /// catalog does not have is an error.
    pub fn tarball_destination(
        &self,
        slurm: &SlurmVersion,
        gcc: &GccVersion,
        gpu: bool,
        arch: Option<Arch>,
        platform: &Platform,
    ) -> Result<String> {
        let arch = arch.unwrap_or_else(|| self.architectures.default.clone());
        if self.target(&arch).is_none() {
            anyhow::bail!("--arch {arch} is not an architecture of the catalog");
        }
        let variant = Variant {
            gpu,
            arch,
            platform: platform.name.clone(),
        };
        Ok(format!(
            "s3://{}/{}",
            self.publish.tarball_bucket,
            self.tarball_key(slurm, gcc, &variant)
        ))
    }

    /// The platform named `p`.
    pub fn platform(&self, p: &PlatformName) -> Option<&Platform> {
        self.platforms.images.iter().find(|x| &x.name == p)
    }

    /// The platform named `name` (trimmed), else the catalog's default one.
    pub fn platform_or_default(&self, name: Option<&str>) -> Result<&Platform> {
        match name {
            Some(p) => self.platform_named(p.trim()),
            None => self
                .platform(&self.platforms.default)
                .context("the catalog's default platform is validated when it is loaded"),
        }
    }

    /// The platform named `name`, or an error listing the catalog's platforms.
    pub fn platform_named(&self, name: &str) -> Result<&Platform> {
        self.platform(&PlatformName(name.to_owned()))
            .with_context(|| {
                format!(
                    "{name:?} is not a platform of the catalog; choose one of {}",
                    self.platforms
                        .images
                        .iter()
                        .map(|p| p.name.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// Every compiler version, in catalog order.
    pub fn compiler_versions(&self) -> Vec<GccVersion> {
        self.compilers
            .versions
            .iter()
            .map(|c| c.version.clone())
            .collect()
    }

    /// The compilers paired with Slurm by default, in catalog order.
    pub fn slurm_compilers(&self) -> Vec<GccVersion> {
        self.compilers
            .versions
            .iter()
            .filter(|c| c.slurm)
            .map(|c| c.version.clone())
            .collect()
    }

    /// Every Slurm release, in catalog order.
    pub fn slurm_versions(&self) -> Vec<SlurmVersion> {
        self.slurm
            .releases
            .iter()
            .map(|r| r.version.clone())
            .collect()
    }

    /// The path suffix of a build variant (see [`Variant`]): empty for a CPU build of the
    /// default architecture (the seed's paths), else `-gpu`, `-<arch>` or `-gpu-<arch>`.
    pub fn variant_suffix(&self, v: &Variant) -> String {
        let mut s = String::new();
        if v.gpu {
            s.push_str("-gpu");
        }
        if v.arch != self.architectures.default {
            s.push('-');
            s.push_str(&v.arch.0);
        }
        s
    }

    fn fill(
        &self,
        template: &str,
        slurm: Option<&SlurmVersion>,
        gcc: &GccVersion,
        v: &Variant,
    ) -> String {
        let t = template
            .replace("{platform}", &v.platform.0)
            .replace("{gcc}", gcc.as_str())
            .replace("{arch}", &v.arch.0)
            .replace("{variant}", &self.variant_suffix(v));
        match slurm {
            Some(s) => t.replace("{slurm}", s.as_str()),
            None => t,
        }
    }

    /// Prefix (inside the buildcache bucket) of the compiler buildcache of `gcc` built for
    /// `arch` on `platform`. A toolchain has no GPU variant.
    pub fn compiler_prefix(
        &self,
        gcc: &GccVersion,
        arch: &Arch,
        platform: &PlatformName,
    ) -> String {
        let v = Variant {
            gpu: false,
            arch: arch.clone(),
            platform: platform.clone(),
        };
        self.fill(&self.publish.compiler_prefix, None, gcc, &v)
    }

    /// Prefix of the Slurm buildcache of (`slurm`, `gcc`) in variant `v`: one Slurm spec per
    /// prefix, so `spack install --cache-only slurm` and test-install see exactly one candidate.
    pub fn slurm_prefix(&self, slurm: &SlurmVersion, gcc: &GccVersion, v: &Variant) -> String {
        self.fill(&self.publish.slurm_prefix, Some(slurm), gcc, v)
    }

    /// Object key of the tarball of (`slurm`, `gcc`) in variant `v`.
    pub fn tarball_key(&self, slurm: &SlurmVersion, gcc: &GccVersion, v: &Variant) -> String {
        self.fill(&self.publish.tarball_key, Some(slurm), gcc, v)
    }

    /// Public URL of the tarball of (`slurm`, `gcc`) in variant `v`.
    pub fn tarball_url(&self, slurm: &SlurmVersion, gcc: &GccVersion, v: &Variant) -> String {
        format!(
            "{}/{}",
            self.publish.tarball_url.trim_end_matches('/'),
            self.tarball_key(slurm, gcc, v)
        )
    }

    /// Every variant the catalog can build: CPU and GPU for each architecture and platform.
    pub fn variants(&self) -> Vec<Variant> {
        let mut all = Vec::new();
        for p in &self.platforms.images {
            for t in &self.architectures.targets {
                for gpu in [false, true] {
                    all.push(Variant {
                        gpu,
                        arch: t.name.clone(),
                        platform: p.name.clone(),
                    });
                }
            }
        }
        all
    }

    /// The pinned signing-key fingerprints (validated when the catalog was loaded).
    pub fn signing_fingerprints(&self) -> Vec<crate::pgp::KeyFingerprint> {
        self.publish
            .signing_fingerprints
            .iter()
            .filter_map(|f| f.parse().ok())
            .collect()
    }

    /// Public URL of a buildcache prefix through the CDN.
    pub fn cdn_url(&self, prefix: &str) -> String {
        format!("{}/{}", self.publish.cdn_url.trim_end_matches('/'), prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_matches_the_supported_set() {
        let c = Catalog::embedded();
        assert_eq!(c.compiler_versions().len(), 9);
        assert_eq!(c.slurm_compilers().len(), 8);
        assert!(!c.slurm_compilers().contains(&"15.2.0".parse().unwrap()));
        assert_eq!(c.slurm_versions().len(), 4);
        assert_eq!(c.compilers.default.as_str(), "13.4.0");
        assert_eq!(c.slurm.default.as_str(), "25.11");
        let r = c.slurm_release(&"25.11".parse().unwrap()).unwrap();
        assert_eq!(r.spack.as_str(), "25-11-6-1");
        assert_eq!(r.spack.release(), "25.11.6");
    }

    #[test]
    fn prefixes_and_urls_follow_the_templates() {
        let c = Catalog::embedded();
        let s: SlurmVersion = "25.11".parse().unwrap();
        let g: GccVersion = "13.4.0".parse().unwrap();
        let el8 = PlatformName("el8".into());
        let v = |gpu: bool, arch: &str, platform: &str| Variant {
            gpu,
            arch: Arch(arch.into()),
            platform: PlatformName(platform.into()),
        };
        let amd = Arch("amd64".into());
        // A CPU build of the default architecture: the platform, then the seed's layout.
        assert_eq!(
            c.compiler_prefix(&g, &amd, &el8),
            "compilers/el8/13.4.0/buildcache"
        );
        assert_eq!(
            c.slurm_prefix(&s, &g, &v(false, "amd64", "el8")),
            "slurm/el8/25.11/13.4.0/buildcache"
        );
        assert_eq!(
            c.tarball_url(&s, &g, &v(false, "amd64", "el8")),
            "https://vantage-public-assets.s3.amazonaws.com/slurm-factory/el8/25.11/13.4.0/slurm-25.11-gcc13.4.0-el8-software.tar.gz"
        );
        // Every other variant and platform is apart.
        assert_eq!(
            c.compiler_prefix(&g, &Arch("arm64".into()), &el8),
            "compilers/el8/13.4.0-arm64/buildcache"
        );
        assert_eq!(
            c.compiler_prefix(&g, &amd, &PlatformName("ubuntu24.04".into())),
            "compilers/ubuntu24.04/13.4.0/buildcache"
        );
        assert_eq!(
            c.slurm_prefix(&s, &g, &v(true, "amd64", "el9")),
            "slurm/el9/25.11/13.4.0-gpu/buildcache"
        );
        assert_eq!(
            c.slurm_prefix(&s, &g, &v(true, "arm64", "el8")),
            "slurm/el8/25.11/13.4.0-gpu-arm64/buildcache"
        );
        assert_eq!(
            c.tarball_key(&s, &g, &v(true, "arm64", "ubuntu24.04")),
            "slurm-factory/ubuntu24.04/25.11/13.4.0-gpu-arm64/slurm-25.11-gcc13.4.0-gpu-arm64-ubuntu24.04-software.tar.gz"
        );
        let mut templated = c.clone();
        templated.publish.tarball_key = "t/{arch}/{slurm}-{gcc}{variant}-{platform}.tgz".into();
        assert_eq!(
            templated.tarball_key(&s, &g, &v(true, "amd64", "el9")),
            "t/amd64/25.11-13.4.0-gpu-el9.tgz"
        );
    }

    #[test]
    fn cache_sizes_parse_and_print_back() {
        for (text, bytes) in [
            ("50GiB", 50u64 << 30),
            ("1MiB", 1 << 20),
            ("1536MiB", 1536 << 20),
        ] {
            let b: ByteSize = text.parse().unwrap();
            assert_eq!((b.bytes(), b.to_string().as_str()), (bytes, text));
        }
        for bad in [
            "", "GiB", "5", "5gb", "5 GiB", "+5GiB", "1KiB", "2048TiB", "5GiB5",
        ] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?} accepted");
        }
        let c = Catalog::embedded().caches;
        assert!(c.enabled && c.dir.is_none());
        assert_eq!(c.source_cache_max.bytes(), 50 << 30);
        // Left out of a catalog, the section takes its defaults.
        let text = EMBEDDED.split("\ncaches:").next().unwrap();
        assert_eq!(
            Catalog::parse(text, "old").unwrap().caches,
            Caches::default()
        );
    }

    #[test]
    fn versions_reject_non_versions() {
        for bad in ["", "13.4", "13.4.0; rm -rf /", "$(id)", "13..0", "1.2.3.4"] {
            assert!(bad.parse::<GccVersion>().is_err(), "{bad:?} accepted");
        }
        assert!("25.11.1".parse::<SlurmVersion>().is_err());
    }

    #[test]
    fn hostile_catalog_fields_are_rejected() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "name: amd64",
                "name: \"amd64\\n::set-output\"",
                "architectures.targets[].name",
            ),
            (
                "name: arm64",
                "name: \"arm 64\"",
                "architectures.targets[].name",
            ),
            (
                "spack_target: aarch64",
                "spack_target: \"aarch64 ^gcc\"",
                "spack_target",
            ),
            (
                "spack_target: x86_64_v2",
                "spack_target: \"${{ github.token }}\"",
                "spack_target",
            ),
            (
                "[self-hosted, linux, x64]",
                "[self-hosted, \"linux\\nx\"]",
                "runner_labels",
            ),
            (
                "[self-hosted, linux, x64]",
                "[self-hosted, \"::stop-commands::x\"]",
                "runner_labels",
            ),
            (
                "[self-hosted, linux, arm64]",
                "[self-hosted, \"${{ secrets.X }}\"]",
                "runner_labels",
            ),
            (
                "[self-hosted, linux, arm64]",
                "[self-hosted, self-hosted]",
                "twice",
            ),
            (
                "buildcache_bucket: slurm-factory-spack-buildcache-4b670",
                "buildcache_bucket: \"b/../other\"",
                "publish.buildcache_bucket",
            ),
            (
                "tarball_bucket: vantage-public-assets",
                "tarball_bucket: \"Vantage Assets\"",
                "publish.tarball_bucket",
            ),
            (
                "cdn_url: https://slurm-factory-spack-binary-cache.vantagecompute.ai",
                "cdn_url: \"http://cdn.example.com\"",
                "publish.cdn_url",
            ),
            (
                "cdn_url: https://slurm-factory-spack-binary-cache.vantagecompute.ai",
                "cdn_url: \"https://cdn.example.com/a/../b\"",
                "publish.cdn_url",
            ),
            (
                "tarball_url: https://vantage-public-assets.s3.amazonaws.com",
                "tarball_url: \"https://x.example.com/?q=${{ x }}\"",
                "publish.tarball_url",
            ),
            (
                "compiler_prefix: \"compilers/{platform}/{gcc}{variant}/buildcache\"",
                "compiler_prefix: \"compilers/{platform}/{gcc}{variant}/../buildcache\"",
                "publish.compiler_prefix",
            ),
            (
                "compiler_prefix: \"compilers/{platform}/{gcc}{variant}/buildcache\"",
                "compiler_prefix: \"/compilers/{platform}/{gcc}{variant}\"",
                "publish.compiler_prefix",
            ),
            (
                "slurm_prefix: \"slurm/{platform}/{slurm}/{gcc}{variant}/buildcache\"",
                "slurm_prefix: \"slurm/{platform}/{gcc}{variant}/buildcache\"",
                "lacks the placeholder {slurm}",
            ),
            (
                "slurm_prefix: \"slurm/{platform}/{slurm}/{gcc}{variant}/buildcache\"",
                "slurm_prefix: \"slurm/{platform}/{slurm}/{gcc}/buildcache\"",
                "lacks the placeholder {variant}",
            ),
            ("- name: arm64", "- name: gpu", "path suffix"),
            (
                "slurm_prefix: \"slurm/{platform}/{slurm}/{gcc}{variant}/buildcache\"",
                "slurm_prefix: \"slurm/{slurm}/{gcc}{variant}/buildcache\"",
                "lacks the placeholder {platform}",
            ),
            (
                "compiler_prefix: \"compilers/{platform}/{gcc}{variant}/buildcache\"",
                "compiler_prefix: \"compilers/{gcc}{variant}/buildcache\"",
                "lacks the placeholder {platform}",
            ),
            (
                "slurm_prefix: \"slurm/{platform}/{slurm}/{gcc}{variant}/buildcache\"",
                "slurm_prefix: \"slurm/{platform}/{slurm}/{gcc}{variant}/{evil}\"",
                "publish.slurm_prefix",
            ),
            (
                "slurm_prefix: \"slurm/{platform}/{slurm}/{gcc}{variant}/buildcache\"",
                "slurm_prefix: \"slurm/{platform}/{slurm}/{gcc}{variant}/build cache\"",
                "publish.slurm_prefix",
            ),
            (
                "source_cache_max: 50GiB",
                "source_cache_max: 50GiB\n  dir: \"/var/cache/../../etc\"",
                "caches.dir",
            ),
            (
                "source_cache_max: 50GiB",
                "source_cache_max: 50GiB\n  dir: \"runner-cache\"",
                "caches.dir",
            ),
            (
                "source_cache_max: 50GiB",
                "source_cache_max: 50GiB\n  dir: \"/cache\\n::add-mask::x\"",
                "caches.dir",
            ),
            (
                "source_cache_max: 50GiB",
                "source_cache_max: 50GiB\n  dir: \"/cache/${{ secrets.X }}\"",
                "caches.dir",
            ),
            (
                "source_cache_max: 50GiB",
                "source_cache_max: \"-5GiB\"",
                "not a size",
            ),
            (
                "source_cache_max: 50GiB",
                "source_cache_max: 99999999999999999TiB",
                "not a size",
            ),
            (
                "source_cache_max: 50GiB",
                "source_cache_max: 18446744073709551615GiB",
                "not a size",
            ),
            (
                "image_cache_max: 20GiB",
                "image_cache_max: 20 GB",
                "not a size",
            ),
            (
                "image_cache_max: 20GiB",
                "image_cache_max: 0B",
                "not a size",
            ),
            (
                "image_cache_max: 20GiB",
                "image_cache_max: 20GiB\n  evict: everything",
                "unknown field",
            ),
        ];
        for (from, to, needle) in cases {
            assert!(EMBEDDED.contains(from), "{from}");
            let text = EMBEDDED.replacen(from, to, 1);
            let err = format!("{:#}", Catalog::parse(&text, "hostile").unwrap_err());
            assert!(err.contains(needle), "{to}: {err}");
            assert!(!err.contains('\n'), "the message escapes newlines: {err}");
        }
    }

    #[test]
    fn platforms_default_to_the_lowest_glibc_floor() {
        let c = Catalog::embedded();
        let names: Vec<&str> = c
            .platforms
            .images
            .iter()
            .map(|p| p.name.0.as_str())
            .collect();
        assert_eq!(names, ["el8", "el9", "ubuntu24.04"]);
        let el8 = c.platform_named("el8").unwrap();
        assert_eq!(c.platforms.default, el8.name);
        assert_eq!(el8.glibc, "2.28");
        assert_eq!(el8.system_gcc.as_str(), "8.5.0");
        assert_eq!(
            el8.pinned_image().unwrap(),
            "docker.io/rockylinux/rockylinux:8@sha256:e8a49c5403b687db05d4d67333fa45808fbe74f36e683cec7abb1f7d0f2338c6"
        );
        assert_eq!(c.platform_named("el9").unwrap().glibc, "2.34");
        let u = c.platform_named("ubuntu24.04").unwrap();
        assert_eq!(u.glibc, "2.39");
        // The same digest docker/ubuntu24.04/Dockerfile pins (every platform's is checked in
        // docker::context's tests).
        let dockerfile = include_str!("../docker/ubuntu24.04/Dockerfile");
        let pinned = u.image_ref().replace("docker.io/library/", "");
        assert!(dockerfile.contains(&format!("FROM {pinned}")), "{pinned}");
        let err = c.platform_named("sles15").unwrap_err().to_string();
        assert!(err.contains("el8, el9, ubuntu24.04"), "{err}");
    }

    #[test]
    fn platform_mistakes_are_rejected() {
        for (from, to, needle) in [
            ("default: el8", "default: el9", "must be the lowest floor"),
            (
                "default: el8",
                "default: sles15",
                "default platform sles15 is not listed",
            ),
            (
                "glibc: \"2.34\"",
                "glibc: \"2.x\"",
                "two dot-separated numbers",
            ),
            (
                "digest: \"sha256:8101994123cf3d0a8fee517bee7f39e555c7d92bd2d9eb3303cc988a0eeed00f\"",
                "digest: \"sha256:abc\"",
                "64 lower-case hex",
            ),
            (
                "image: docker.io/rockylinux/rockylinux:9",
                "image: docker.io/rockylinux/rockylinux:9@sha256:00",
                "own field",
            ),
            ("- name: el9", "- name: el8", "platform el8 is listed twice"),
        ] {
            let text = EMBEDDED.replacen(from, to, 1);
            assert_ne!(text, EMBEDDED, "{from}");
            let err = format!("{:#}", Catalog::parse(&text, "test").unwrap_err());
            assert!(err.contains(needle), "{to}: {err}");
        }
    }

    #[test]
    fn a_platform_without_a_digest_cannot_be_pinned() {
        let text = EMBEDDED.replacen(
            "digest: \"sha256:8101994123cf3d0a8fee517bee7f39e555c7d92bd2d9eb3303cc988a0eeed00f\"",
            "digest: null",
            1,
        );
        assert_ne!(text, EMBEDDED);
        let c = Catalog::parse(&text, "test").unwrap();
        let err = c
            .platform_named("el9")
            .unwrap()
            .pinned_image()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("platform el9 (Rocky Linux 9) has no image digest")
                && err
                    .contains("docker buildx imagetools inspect docker.io/rockylinux/rockylinux:9"),
            "{err}"
        );
    }

    #[test]
    fn inconsistent_catalogs_are_rejected() {
        let text = EMBEDDED.replace("default: \"13.4.0\"", "default: \"13.9.0\"");
        let err = Catalog::parse(&text, "test").unwrap_err();
        assert!(format!("{err:#}").contains("13.9.0"));
    }
}
