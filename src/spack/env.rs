//! A typed model of the Spack environment file (`spack.yaml`) for Spack 1.0.
//!
//! Only the keys slurm-factory writes are modelled. Field order is the order Spack's own docs
//! use; maps are `BTreeMap`s, so the rendered YAML is byte-for-byte deterministic for a given
//! job (the snapshot tests rely on that).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Serialize;

/// The whole file: `spack: {...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpackYaml {
    /// The environment.
    pub spack: Environment,
}

impl SpackYaml {
    /// Renders the file as YAML, with a header comment naming what generated it.
    pub fn render(&self, header: &str) -> Result<String> {
        let body = yaml_serde::to_string(self).context("cannot serialize spack.yaml")?;
        let mut out = String::new();
        for line in header.lines() {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&body);
        Ok(out)
    }
}

/// The `spack:` mapping of an environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Environment {
    /// Root specs.
    pub specs: Vec<String>,
    /// Extra package repositories by namespace (path inside the container).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub repos: BTreeMap<String, String>,
    /// Concretizer settings.
    pub concretizer: Concretizer,
    /// `config:` settings (install tree, stage, caches).
    pub config: Config,
    /// `packages:` requirements and preferences.
    pub packages: BTreeMap<String, PackageSettings>,
    /// Binary mirrors to read from.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub mirrors: BTreeMap<String, Mirror>,
    /// The environment view (`false` for none).
    pub view: View,
    /// Module generation, when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modules: Option<Modules>,
}

/// `concretizer:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Concretizer {
    /// Concretize all roots together (one configuration per package).
    pub unify: bool,
    /// What to reuse instead of building.
    pub reuse: Reuse,
}

/// `concretizer: reuse:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reuse {
    /// Whether roots may be reused too (not only dependencies).
    pub roots: bool,
    /// Sources of reusable specs.
    pub from: Vec<ReuseSource>,
}

/// One `reuse: from:` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReuseSource {
    /// `local`, `buildcache`, `external` or `environment`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// `config:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Where packages are installed.
    pub install_tree: InstallTree,
    /// Where builds are staged (kept on failure for the debug bundle).
    pub build_stage: Vec<String>,
    /// Downloaded sources, shared across builds.
    pub source_cache: String,
    /// Spack's misc cache (indexes, repo caches), shared across builds.
    pub misc_cache: String,
}

/// `config: install_tree:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstallTree {
    /// The install root.
    pub root: String,
    /// Pad the root to this length so binaries can be relocated to longer prefixes (none: no
    /// padding, so install prefixes are exactly `root` + projection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub padded_length: Option<u32>,
    /// Install prefixes by spec, relative to `root` (none: Spack's default layout).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub projections: BTreeMap<String, String>,
}

/// One entry of `packages:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PackageSettings {
    /// Hard requirements.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub require: Vec<String>,
    /// Soft preferences.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prefer: Vec<String>,
    /// Installations Spack uses as they are, never building them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub externals: Vec<External>,
    /// `false`: never build this package (only externals or reused specs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buildable: Option<bool>,
}

/// One entry of `packages: <name>: externals:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct External {
    /// The spec the installation satisfies, e.g. `gcc@7.5.0 languages=c,c++,fortran`.
    pub spec: String,
    /// Its prefix.
    pub prefix: String,
    /// Compiler executables, for a compiler.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_attributes: Option<ExtraAttributes>,
}

/// `extra_attributes:` of an external.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtraAttributes {
    /// Compiler executables by language (`c`, `cxx`, `fortran`).
    pub compilers: BTreeMap<String, String>,
}

/// One entry of `mirrors:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mirror {
    /// The mirror URL.
    pub url: String,
    /// Whether it serves binaries.
    pub binary: bool,
    /// Whether it serves sources.
    pub source: bool,
    /// Whether its spec manifests must carry a trusted signature.
    pub signed: bool,
}

/// `view:` — either `false` or named views.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum View {
    /// No view.
    Disabled(bool),
    /// Named views.
    Views(BTreeMap<String, ViewDescriptor>),
}

/// One named view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViewDescriptor {
    /// Where the view is written.
    pub root: String,
    /// Which nodes: `run` = roots and their link/run dependencies, no build-only tools.
    pub link: String,
    /// `hardlink`, `symlink` or `copy`.
    pub link_type: String,
    /// Specs never linked into the view.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Where each package lands in the view; `{all: "."}` merges everything into the root.
    pub projections: BTreeMap<String, String>,
}

/// `modules:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Modules {
    /// The default module set.
    pub default: ModuleSet,
}

/// One module set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleSet {
    /// Module roots by module system.
    pub roots: BTreeMap<String, String>,
    /// Enabled module systems.
    pub enable: Vec<String>,
    /// Point modules at this view instead of the install tree, so they move with the view.
    pub use_view: String,
    /// Put modules under an architecture folder (`false`: directly under the root).
    pub arch_folder: bool,
    /// Lmod settings.
    pub lmod: Lmod,
}

/// `modules: default: lmod:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lmod {
    /// Compilers whose packages go in the `Core` tree.
    pub core_compilers: Vec<String>,
    /// Virtual dependencies that add hierarchy levels (none: a flat Core tree).
    pub hierarchy: Vec<String>,
    /// Hash suffix length in module names (0: none).
    pub hash_length: u32,
    /// Skip modules for packages that were not explicitly requested.
    pub exclude_implicits: bool,
    /// Always generate these.
    pub include: Vec<String>,
    /// Never generate these.
    pub exclude: Vec<String>,
    /// Module file names.
    pub projections: BTreeMap<String, String>,
}
