//! Installing a spec and its link/run dependencies from a Spack v3 buildcache, without Spack:
//! pick the spec from the index, verify every manifest's signature and every blob's sha256
//! (before anything is extracted), then extract each tarball with the hardened extractor and
//! relocate it into the new install tree, dependencies first.
//!
//! **Layout.** Each spec goes to `<root>/<platform>-<target>/<name>-<version>-<hash>`, Spack's
//! default projection (`{architecture.platform}-{architecture.target}/{name}-{version}-{hash}`),
//! so `<root>` is a Spack-style install tree and the build's store root maps onto it. Dependents'
//! RPATHs, scripts and links are rewritten to the dependencies' new prefixes.
//!
//! **Trust.** The index is unsigned, so it is only used to find the requested spec's hash; the
//! chosen spec is matched against `--spec` again in its signed spec blob. The dependency
//! closure comes from the root's spec blob, whose digest is in the signed manifest; every
//! dependency's own manifest is verified as well. Only bytes whose sha256 matches a signed
//! record are extracted.
//!
//! **Compilers.** `%gcc@13.4.0` in `--spec` selects by compiler. Spack 1.0 records compilers
//! as dependencies: a direct dependency whose edge provides the virtual `c`, `cxx` or
//! `fortran` (`"parameters": {"virtuals": ["c", "cxx"]}`) is a compiler of the node, and its
//! version is that dependency node's. Older specs carry a `"compiler": {"name", "version"}`
//! field instead; both are read. A spec matches when any of its compilers does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::extract::{self, Limits, Options, check_links_confined, remove_tree};
use super::sbang;
use crate::buildcache::layout::{self, BlobRecord, SpecId};
use crate::buildcache::{Storage, read_index, verify};
use crate::pgp::{KeyFingerprint, TrustedKeys};
use crate::relocate::{BuildInfo, PrefixMap, Relocated, relocate_package};

/// Which spec to install: `name`, `name@version`, `name%compiler@version`, `/hash`,
/// `name/hash`, or any of these together in Spack's order (`name@version%compiler@version/hash`).
/// A version matches itself and the versions it is a prefix of at a separator (`25.11` matches
/// `25.11.6`, as in Spack); a hash may be abbreviated to a unique prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecQuery {
    /// Package name.
    pub name: Option<String>,
    /// Version (or a prefix of it at a separator).
    pub version: Option<String>,
    /// The compiler it was built with.
    pub compiler: Option<CompilerQuery>,
    /// DAG hash or a prefix of it.
    pub hash: Option<String>,
}

/// `%name` or `%name@version` of a [`SpecQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompilerQuery {
    /// Compiler package name (`gcc`).
    pub name: String,
    /// Its version (or a prefix of it at a separator).
    pub version: Option<String>,
}

/// Whether `have` is `want` or a longer version starting with `want` and a separator, as Spack's
/// `@25.11` is satisfied by `25.11.6`.
fn version_matches(want: &str, have: &str) -> bool {
    have == want
        || have
            .strip_prefix(want)
            .is_some_and(|rest| rest.starts_with(['.', '-', '_']))
}

impl SpecQuery {
    /// Parses the `--spec` argument.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = || {
            anyhow::anyhow!(
                "--spec {s:?} is not understood: give name, name@version, name@version%compiler@version, /hash or name@version/hash (e.g. demo-app@2.0, slurm%gcc@13.4.0 or /resh3sd)"
            )
        };
        let (head, hash) = match s.split_once('/') {
            Some((h, hash)) => (h, Some(hash)),
            None => (s, None),
        };
        let (head, compiler) = match head.split_once('%') {
            Some((h, c)) => (h, Some(c)),
            None => (head, None),
        };
        let (name, version) = match head.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (head, None),
        };
        let ok = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'))
        };
        let compiler = match compiler {
            None => None,
            Some(c) => {
                let (cname, cversion) = match c.split_once('@') {
                    Some((n, v)) => (n, Some(v)),
                    None => (c, None),
                };
                if !ok(cname) || cversion.is_some_and(|v| !ok(v)) {
                    return Err(bad());
                }
                Some(CompilerQuery {
                    name: cname.to_owned(),
                    version: cversion.map(str::to_owned),
                })
            }
        };
        let q = SpecQuery {
            name: (!name.is_empty()).then(|| name.to_owned()),
            version: version.map(str::to_owned),
            compiler,
            hash: hash.map(str::to_owned),
        };
        if q.name.as_deref().is_some_and(|n| !ok(n))
            || q.version.as_deref().is_some_and(|v| !ok(v))
            || q.hash.as_deref().is_some_and(|h| !ok(h))
            || (q.name.is_none() && q.hash.is_none())
        {
            return Err(bad());
        }
        Ok(q)
    }

    /// Whether `n` matches; its compilers' versions are looked up in `versions` (DAG hash →
    /// version of every node known).
    fn matches(&self, n: &Node, versions: &BTreeMap<String, String>) -> bool {
        self.name.as_deref().is_none_or(|x| x == n.name)
            && self
                .version
                .as_deref()
                .is_none_or(|x| version_matches(x, &n.version))
            && self.hash.as_deref().is_none_or(|x| n.hash.starts_with(x))
            && self.compiler.as_ref().is_none_or(|c| {
                n.compilers(versions).iter().any(|(name, version)| {
                    *name == c.name
                        && c.version.as_deref().is_none_or(|want| {
                            version.as_deref().is_some_and(|v| version_matches(want, v))
                        })
                })
            })
    }
}

impl fmt::Display for SpecQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = &self.name {
            f.write_str(n)?;
        }
        if let Some(v) = &self.version {
            write!(f, "@{v}")?;
        }
        if let Some(c) = &self.compiler {
            write!(f, "%{}", c.name)?;
            if let Some(v) = &c.version {
                write!(f, "@{v}")?;
            }
        }
        if let Some(h) = &self.hash {
            write!(f, "/{h}")?;
        }
        Ok(())
    }
}

/// A compiler of a node as its spec records it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CompilerRef {
    /// Spack ≥ 1.0: a direct dependency providing `c`, `cxx` or `fortran` (its version is the
    /// dependency node's).
    Dependency {
        /// The dependency's package name.
        name: String,
        /// Its DAG hash.
        hash: String,
    },
    /// Spack < 1.0: the node's own `compiler` field.
    Field {
        /// Compiler name.
        name: String,
        /// Compiler version.
        version: Option<String>,
    },
}

/// The parts of a spec node the installer needs (read from Spack's node JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    name: String,
    version: String,
    hash: String,
    platform: String,
    target: String,
    /// Dependency hashes with link or run type.
    runtime_deps: Vec<String>,
    /// An external (not built by Spack, e.g. the system glibc): never fetched nor relocated.
    external: bool,
    /// The compilers it was built with.
    compiler_refs: Vec<CompilerRef>,
}

#[derive(Deserialize)]
struct RawNode {
    name: String,
    #[serde(default)]
    version: serde_json::Value,
    hash: String,
    #[serde(default)]
    arch: Option<RawArch>,
    #[serde(default)]
    dependencies: Vec<RawDep>,
    #[serde(default)]
    external: Option<serde_json::Value>,
    #[serde(default)]
    compiler: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawArch {
    platform: String,
    target: serde_json::Value,
}

#[derive(Deserialize)]
struct RawDep {
    #[serde(default)]
    name: Option<String>,
    hash: String,
    #[serde(default)]
    parameters: Option<RawDepParams>,
}

#[derive(Deserialize)]
struct RawDepParams {
    #[serde(default)]
    deptypes: Vec<String>,
    #[serde(default)]
    virtuals: Vec<String>,
}

/// The virtuals a compiler provides to its dependents (Spack 1.0's language virtuals).
const LANGUAGE_VIRTUALS: [&str; 3] = ["c", "cxx", "fortran"];

/// The compilers a node records: dependencies providing a language virtual, and the legacy
/// `compiler` field (`{"name": "gcc", "version": "13.4.0"}`, or `"gcc@13.4.0"`).
fn compiler_refs(deps: &[RawDep], field: Option<&serde_json::Value>) -> Vec<CompilerRef> {
    let mut out: Vec<CompilerRef> = deps
        .iter()
        .filter(|d| {
            d.parameters.as_ref().is_some_and(|p| {
                p.virtuals
                    .iter()
                    .any(|v| LANGUAGE_VIRTUALS.contains(&v.as_str()))
            })
        })
        .filter_map(|d| {
            Some(CompilerRef::Dependency {
                name: d.name.clone()?,
                hash: d.hash.clone(),
            })
        })
        .collect();
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match field {
        Some(serde_json::Value::Object(o)) => {
            if let Some(name) = o.get("name").and_then(text) {
                out.push(CompilerRef::Field {
                    name,
                    version: o.get("version").and_then(text),
                });
            }
        }
        Some(serde_json::Value::String(s)) => {
            let (name, version) = match s.split_once('@') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (s.clone(), None),
            };
            out.push(CompilerRef::Field { name, version });
        }
        _ => {}
    }
    out
}

fn safe_component(what: &str, s: &str) -> Result<()> {
    if s.is_empty()
        || s == "."
        || s == ".."
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+' | b'='))
    {
        bail!("the spec's {what} {s:?} cannot be part of an install path");
    }
    Ok(())
}

impl Node {
    fn parse(raw: &serde_json::value::RawValue) -> Result<Self> {
        let r: RawNode = serde_json::from_str(raw.get()).context("malformed spec node")?;
        let version = match r.version {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            other => bail!("spec {}: unsupported version {other}", r.name),
        };
        let arch = r
            .arch
            .with_context(|| format!("spec {}: no arch (not a concrete spec)", r.name))?;
        let target = match arch.target {
            serde_json::Value::String(s) => s,
            serde_json::Value::Object(o) => o
                .get("name")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .with_context(|| format!("spec {}: arch target without a name", r.name))?,
            other => bail!("spec {}: unsupported target {other}", r.name),
        };
        let compiler_refs = compiler_refs(&r.dependencies, r.compiler.as_ref());
        let n = Node {
            compiler_refs,
            runtime_deps: r
                .dependencies
                .iter()
                .filter(|d| {
                    d.parameters
                        .as_ref()
                        .is_none_or(|p| crate::buildcache::layout::is_runtime_edge(&p.deptypes))
                })
                .map(|d| d.hash.clone())
                .collect(),
            external: r.external.is_some_and(|e| !e.is_null()),
            name: r.name,
            version,
            hash: r.hash,
            platform: arch.platform,
            target,
        };
        safe_component("name", &n.name)?;
        safe_component("version", &n.version)?;
        safe_component("platform", &n.platform)?;
        safe_component("target", &n.target)?;
        if n.hash.len() != 32 || !n.hash.bytes().all(|b| b.is_ascii_alphanumeric()) {
            bail!("spec {}: {:?} is not a DAG hash", n.name, n.hash);
        }
        Ok(n)
    }

    fn id(&self) -> SpecId {
        SpecId {
            name: self.name.clone(),
            version: self.version.clone(),
            hash: self.hash.clone(),
        }
    }

    /// `(name, version)` of each compiler, versions of dependency compilers from `versions`
    /// (`None` when that node is not known).
    fn compilers(&self, versions: &BTreeMap<String, String>) -> Vec<(String, Option<String>)> {
        self.compiler_refs
            .iter()
            .map(|c| match c {
                CompilerRef::Dependency { name, hash } => {
                    (name.clone(), versions.get(hash).cloned())
                }
                CompilerRef::Field { name, version } => (name.clone(), version.clone()),
            })
            .collect()
    }

    /// `name@version%compiler@version/hash7`, for lists of candidates.
    fn describe(&self, versions: &BTreeMap<String, String>) -> String {
        let mut s = format!("{}@{}", self.name, self.version);
        let mut seen = BTreeSet::new();
        for (name, version) in self.compilers(versions) {
            let c = match version {
                Some(v) => format!("%{name}@{v}"),
                None => format!("%{name}"),
            };
            if seen.insert(c.clone()) {
                s.push_str(&c);
            }
        }
        s.push('/');
        s.push_str(&self.hash[..7]);
        s
    }

    /// Spack's default projection below the install root.
    fn rel_prefix(&self) -> PathBuf {
        PathBuf::from(format!("{}-{}", self.platform, self.target))
            .join(format!("{}-{}-{}", self.name, self.version, self.hash))
    }
}

/// A spec that the core verified ([`verify::verify_spec`]), with what the installer needs.
#[derive(Debug, Clone)]
struct VerifiedSpec {
    node: Node,
    tarball: BlobRecord,
    signer: KeyFingerprint,
    /// The DAG from the signed spec blob, by hash.
    dag: BTreeMap<String, Node>,
}

/// Verifies `id` with the buildcache core (signature against `trusted`, the manifest parsed
/// from the signed text only, every blob's size and sha256, the spec blob describing `id`) and
/// reads the installer's view of it. Unsigned manifests are never accepted here.
async fn verified(
    storage: &dyn Storage,
    trusted: &TrustedKeys,
    id: &SpecId,
) -> Result<VerifiedSpec> {
    let v = verify::verify_spec(storage, trusted, id, &verify::VerifyOptions::default())
        .await
        .map_err(|r| {
            anyhow::anyhow!(
                "{r}; the buildcache is damaged, was tampered with, or is not signed by a trusted key"
            )
        })?;
    let signer = v
        .signer
        .with_context(|| format!("{id}: the manifest is not signed"))?;
    let dag: BTreeMap<String, Node> = v
        .nodes
        .iter()
        .map(|n| Node::parse(&n.raw).map(|p| (p.hash.clone(), p)))
        .collect::<Result<_>>()
        .with_context(|| format!("{id}: spec blob"))?;
    let node = dag
        .get(&id.hash)
        .cloned()
        .with_context(|| format!("{id}: the spec blob does not describe it"))?;
    let tarball = v
        .manifest
        .blob(layout::TARBALL_MEDIA_TYPE)
        .cloned()
        .with_context(|| format!("{id}: the manifest lists no install tarball"))?;
    Ok(VerifiedSpec {
        node,
        tarball,
        signer,
        dag,
    })
}

/// The link/run closure of `root` in `dag`, dependencies first; externals (system packages
/// Spack does not build) are left out, as `spack install` leaves them out.
fn runtime_closure(root: &str, dag: &BTreeMap<String, Node>) -> Result<Vec<String>> {
    fn visit(
        h: &str,
        dag: &BTreeMap<String, Node>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if !seen.insert(h.to_owned()) {
            return Ok(());
        }
        let n = dag
            .get(h)
            .with_context(|| format!("dependency {h} is not in the signed spec DAG"))?;
        if n.external {
            return Ok(());
        }
        for d in &n.runtime_deps {
            visit(d, dag, seen, order)?;
        }
        order.push(h.to_owned());
        Ok(())
    }
    let mut order = Vec::new();
    visit(root, dag, &mut BTreeSet::new(), &mut order)?;
    Ok(order)
}

/// One installed spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The spec.
    pub id: SpecId,
    /// Its new prefix.
    pub prefix: PathBuf,
    /// Who signed its manifest.
    pub signer: KeyFingerprint,
    /// What relocation changed (`None` when it was already installed).
    pub relocated: Option<Relocated>,
}

/// Finds the one spec matching `query` in the buildcache's index.
async fn find(storage: &dyn Storage, query: &SpecQuery) -> Result<SpecId> {
    let (index, _) = read_index(storage).await?.with_context(|| {
        format!(
            "{} has no index (v3/manifests/index/index.manifest.json); publish it with sign-and-upload or `spack buildcache update-index`",
            storage.url()
        )
    })?;
    let mut all = Vec::new();
    // Every record's version, binaries or not: compilers are usually only dependencies.
    // Records without a binary (externals, build dependencies) are read only for that, and
    // leniently: they are never installed, so they need not make safe install paths.
    let mut versions = BTreeMap::new();
    for (hash, rec) in index.records() {
        if rec.in_buildcache {
            let node = Node::parse(&rec.spec).with_context(|| format!("index record {hash}"))?;
            versions.insert(node.hash.clone(), node.version.clone());
            all.push(node);
        } else if let Ok(n) = layout::SpecNode::from_raw(rec.spec.clone()) {
            versions.insert(n.hash, n.version);
        }
    }
    all.sort_by(|a, b| (&a.name, &a.version, &a.hash).cmp(&(&b.name, &b.version, &b.hash)));
    let hits: Vec<&Node> = all.iter().filter(|n| query.matches(n, &versions)).collect();
    let list = |ns: &[&Node]| {
        ns.iter()
            .map(|n| n.describe(&versions))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match hits.as_slice() {
        [one] => Ok(one.id()),
        [] => bail!(
            "no spec matching {query} in {} (it has: {}); check --spec",
            storage.url(),
            list(&all.iter().collect::<Vec<_>>())
        ),
        many => bail!(
            "{query} is ambiguous in {}: {}; add @version, %compiler@version or /hash to --spec",
            storage.url(),
            list(many)
        ),
    }
}

/// Installs the spec matching `query` and its link/run dependencies from `storage` into the
/// install tree `root`, after verifying everything against `trusted`. On any failure, the
/// prefixes this call created (and the `sbang` it put in place) are removed again.
pub async fn install(
    storage: &dyn Storage,
    trusted: &TrustedKeys,
    query: &SpecQuery,
    root: &Path,
    limits: Limits,
) -> Result<Vec<Installed>> {
    if trusted.is_empty() {
        bail!("no trusted keys: pass --trusted-key <file> or --trusted-fingerprint <fpr>");
    }
    if !root.is_absolute() {
        bail!("--prefix {} must be an absolute path", root.display());
    }
    let root_id = find(storage, query).await?;
    let root_spec = verified(storage, trusted, &root_id).await?;
    // The index is unsigned: the signed spec must say what the index said.
    let signed_versions: BTreeMap<String, String> = root_spec
        .dag
        .values()
        .map(|n| (n.hash.clone(), n.version.clone()))
        .collect();
    if !query.matches(&root_spec.node, &signed_versions) {
        bail!(
            "the index lists {root_id} as matching {query}, but its signed spec is {}; the index is stale or was tampered with",
            root_spec.node.describe(&signed_versions)
        );
    }

    let order = runtime_closure(&root_id.hash, &root_spec.dag)?;

    // Every dependency's manifest is verified at once (the reads overlap).
    let specs: Vec<VerifiedSpec> = futures::future::try_join_all(order.iter().map(|h| {
        let root_spec = &root_spec;
        let root_hash = &root_id.hash;
        async move {
            if h == root_hash {
                Ok(root_spec.clone())
            } else {
                verified(storage, trusted, &root_spec.dag[h].id()).await
            }
        }
    }))
    .await?;
    let new_prefix_of: BTreeMap<String, PathBuf> = root_spec
        .dag
        .values()
        .filter(|n| !n.external)
        .map(|n| (n.hash.clone(), root.join(n.rel_prefix())))
        .collect();

    // Fetch and check every tarball still to install. Checked tarballs wait in private
    // temporary files (not in memory: a GPU closure holds gigabytes).
    let spill = tempfile::Builder::new()
        .prefix("slurm-factory-fetch-")
        .tempdir()
        .context("cannot create a private temporary directory for the fetched tarballs")?;
    let mut fetched: Vec<Option<PathBuf>> = Vec::new();
    for spec in &specs {
        if std::fs::symlink_metadata(root.join(spec.node.rel_prefix())).is_ok() {
            check_installed(root, &spec.node.rel_prefix(), &spec.node.id())?;
            fetched.push(None);
            continue;
        }
        let file = spill.path().join(format!("{}.tar.gz", fetched.len()));
        fetch_tarball(storage, spec, &file).await?;
        fetched.push(Some(file));
    }
    // The directories this run creates for the root, removed again (when empty) on failure.
    let new_dirs: Vec<PathBuf> = root
        .ancestors()
        .take_while(|a| std::fs::symlink_metadata(a).is_err())
        .map(Path::to_owned)
        .collect();
    std::fs::create_dir_all(root)
        .with_context(|| format!("cannot create the install root {}", root.display()))?;
    let staging = Staging::new(root)?;
    let result = stage_all(&specs, &fetched, &staging, root, &new_prefix_of, limits)
        .and_then(|staged| commit(&specs, staged, &staging, root, query));
    drop(spill);
    staging.remove();
    if result.is_err() {
        for d in &new_dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
    result
}

/// A private directory inside the install root where prefixes are extracted and relocated
/// before they are moved into place (same file system, so the move is a rename).
struct Staging {
    dir: PathBuf,
}

impl Staging {
    fn new(root: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(".slurm-factory-staging-")
            .tempdir_in(root)
            .with_context(|| format!("cannot create a staging directory in {}", root.display()))?
            .keep();
        Ok(Staging { dir })
    }
    fn remove(&self) {
        remove_tree(&self.dir);
    }
}

/// A spec extracted and relocated in the staging directory.
struct Staged {
    /// Where it is now (`None`: it was installed before this run).
    at: Option<PathBuf>,
    relocated: Option<Relocated>,
    floor: crate::glibc_floor::Floor,
    needs_sbang: bool,
    symlinks: Vec<PathBuf>,
}

/// Extracts and relocates every fetched spec into the staging directory, all at once (one
/// thread per spec and per file within it, as the machine allows): nothing depends on another
/// spec being in place, since relocation only writes the final prefixes into the files.
fn stage_all(
    specs: &[VerifiedSpec],
    fetched: &[Option<PathBuf>],
    staging: &Staging,
    root: &Path,
    new_prefix_of: &BTreeMap<String, PathBuf>,
    limits: Limits,
) -> Result<Vec<Staged>> {
    use rayon::prelude::*;
    specs
        .par_iter()
        .zip(fetched.par_iter())
        .map(|(spec, file)| match file {
            None => Ok(Staged {
                at: None,
                relocated: None,
                floor: Default::default(),
                needs_sbang: false,
                symlinks: Vec::new(),
            }),
            Some(file) => stage_one(spec, file, &staging.dir, root, new_prefix_of, limits),
        })
        .collect()
}

/// Extracts `spec`'s checked tarball `fetched` into `<staging>/<hash>` and relocates it for its
/// final prefix under `root`; computes its glibc floor from the relocated files.
fn stage_one(
    spec: &VerifiedSpec,
    fetched: &Path,
    staging: &Path,
    root: &Path,
    new_prefix_of: &BTreeMap<String, PathBuf>,
    limits: Limits,
) -> Result<Staged> {
    let id = spec.node.id();
    let key = spec.tarball.key()?;
    let open = || -> Result<_> {
        let f = std::fs::File::open(fetched).with_context(|| {
            format!(
                "{id}: cannot read its checked tarball {}",
                fetched.display()
            )
        })?;
        Ok(flate2::read::GzDecoder::new(
            std::io::BufReader::with_capacity(1 << 20, f),
        ))
    };
    let found = extract::inspect_spack_tarball(open()?, limits)
        .with_context(|| format!("{id}: install tarball {key}"))?;
    let info = BuildInfo::parse(&found.buildinfo)
        .with_context(|| format!("{id}: .spack/binary_distribution"))?;
    let mut absolute = vec![info.buildpath.clone()];
    absolute.extend(info.old_prefixes()?.into_values());
    absolute.extend(info.sbang_install_path.clone());
    let opts = Options {
        limits,
        strip: Some(found.prefix.clone()),
        absolute_link_prefixes: absolute,
    };
    let at = staging.join(&spec.node.hash);
    let x = extract::extract_fresh(open()?, &at, &opts)
        .with_context(|| format!("{id}: install tarball {key}"))?;
    let new_sbang = root.join(sbang::REL_PATH);
    let map = PrefixMap::for_spec(&info, new_prefix_of, root, &new_sbang)?;
    let relocated =
        relocate_package(&at, &info, &map).with_context(|| format!("{id}: cannot relocate it"))?;
    let needs_sbang = sbang::needed(&at, &info, &new_sbang)?;
    let floor = crate::glibc_floor::scan_dir(&at)
        .with_context(|| format!("{id}: cannot compute the glibc floor of its install tarball"))?;
    Ok(Staged {
        at: Some(at),
        relocated: Some(relocated),
        floor,
        needs_sbang,
        symlinks: x.symlinks,
    })
}

/// Refuses a glibc floor above the host's, then makes the staged tree durable (one `syncfs`)
/// and moves each staged prefix into place, dependencies first, without replacing anything
/// (`RENAME_NOREPLACE`); the renames are made durable by syncing their parent directories. On
/// any failure, the prefixes moved so far and an `sbang` put in place are removed again.
fn commit(
    specs: &[VerifiedSpec],
    staged: Vec<Staged>,
    staging: &Staging,
    root: &Path,
    query: &SpecQuery,
) -> Result<Vec<Installed>> {
    let mut floor = crate::glibc_floor::Floor::default();
    for (spec, s) in specs.iter().zip(&staged) {
        floor.merge(s.floor.clone(), &spec.node.id().to_string());
    }
    if floor.glibc.is_some() {
        crate::glibc_floor::check_host(
            &floor,
            &crate::glibc_floor::host_glibc()?,
            &query.to_string(),
        )?;
    }
    let had_sbang = std::fs::symlink_metadata(root.join(sbang::REL_PATH)).is_ok();
    let mut created: Vec<PathBuf> = Vec::new();
    let undo = |created: &[PathBuf]| {
        for p in created {
            remove_tree(p);
        }
        if !had_sbang {
            sbang::uninstall(root);
        }
    };
    let result = (|| -> Result<Vec<Installed>> {
        if staged.iter().any(|s| s.needs_sbang) {
            sbang::install(root)?;
        }
        if staged.iter().any(|s| s.at.is_some()) {
            let dir = std::fs::File::open(&staging.dir)
                .with_context(|| format!("cannot open {}", staging.dir.display()))?;
            rustix::fs::syncfs(&dir).with_context(|| {
                format!(
                    "cannot flush the installed files to disk (syncfs on {})",
                    staging.dir.display()
                )
            })?;
        }
        let mut parents = BTreeSet::new();
        let mut done = Vec::new();
        for (spec, s) in specs.iter().zip(staged) {
            let rel = spec.node.rel_prefix();
            let prefix = root.join(&rel);
            if let Some(at) = &s.at {
                let parent = prefix.parent().expect("a prefix has a parent");
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
                rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    at,
                    rustix::fs::CWD,
                    &prefix,
                    rustix::fs::RenameFlags::NOREPLACE,
                )
                .with_context(|| {
                    format!(
                        "{}: cannot move it into place at {} (it appeared meanwhile, or the install root spans file systems)",
                        spec.node.id(),
                        prefix.display()
                    )
                })?;
                created.push(prefix.clone());
                parents.insert(parent.to_owned());
                let links: Vec<PathBuf> = s.symlinks.iter().map(|l| rel.join(l)).collect();
                check_links_confined(root, &links).with_context(|| {
                    format!(
                        "{}: cannot relocate into {}",
                        spec.node.id(),
                        prefix.display()
                    )
                })?;
            }
            done.push(Installed {
                id: spec.node.id(),
                prefix,
                signer: spec.signer.clone(),
                relocated: s.relocated,
            });
        }
        if !parents.is_empty() {
            parents.insert(root.to_owned());
        }
        for p in parents {
            std::fs::File::open(&p)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("cannot flush the directory {} to disk", p.display()))?;
        }
        Ok(done)
    })();
    if result.is_err() {
        undo(&created);
    }
    result
}

/// Fetches the install tarball of `spec` into the private file `file` and checks it against
/// the sha256 and size of its signed manifest.
async fn fetch_tarball(storage: &dyn Storage, spec: &VerifiedSpec, file: &Path) -> Result<()> {
    let id = spec.node.id();
    let rec = &spec.tarball;
    let key = rec.key()?;
    if rec.compression != "gzip" {
        bail!(
            "{id}: unsupported install tarball compression {:?}",
            rec.compression
        );
    }
    let mut out = std::fs::File::create(file)
        .with_context(|| format!("{id}: cannot keep its tarball in {}", file.display()))?;
    // Streamed into the private file while it is hashed: the bytes checked are the bytes
    // extracted, and memory stays bounded.
    let (sha, n) = storage
        .copy_to(&key, &mut out, rec.content_length)
        .await
        .with_context(|| format!("{id}: install tarball {key}"))?
        .with_context(|| format!("{id}: install tarball {key} disappeared"))?;
    if n != rec.content_length || sha.as_str() != rec.checksum {
        bail!(
            "{id}: install tarball {key} does not match the sha256 in its signed manifest; the buildcache is damaged or was tampered with"
        );
    }
    Ok(())
}

/// An existing prefix counts as installed only when its `.spack/spec.json` (read without
/// following links) describes exactly `id`: the same DAG hash at the root. Anything else (no
/// spec file, an unreadable one, another build) is refused, naming the path.
fn check_installed(root: &Path, rel: &Path, id: &SpecId) -> Result<()> {
    let prefix = root.join(rel);
    let marker = extract::no_follow_path(root, &rel.join(".spack/spec.json"))?;
    let remove = "remove it or choose another --prefix";
    match std::fs::symlink_metadata(&marker) {
        Ok(m) if m.is_file() => {
            if m.len() > layout::SPEC_JSON_MAX_BYTES {
                bail!(
                    "{id}: {} is {} bytes, too large for a spec file; {remove}",
                    marker.display(),
                    m.len()
                );
            }
        }
        _ => bail!(
            "{id}: {} exists but is not an installed Spack prefix (no .spack/spec.json); {remove}",
            prefix.display()
        ),
    }
    let bytes =
        std::fs::read(&marker).with_context(|| format!("cannot read {}", marker.display()))?;
    let nodes = layout::parse_spec_blob(&bytes, "none").map_err(|e| {
        anyhow::anyhow!(
            "{id}: {} is not a readable Spack spec file ({e:#}); the install there is damaged: {remove}",
            marker.display()
        )
    })?;
    match nodes.first() {
        Some(n) if n.hash == id.hash => Ok(()),
        Some(n) => bail!(
            "{id}: {} holds another build: its .spack/spec.json is {}@{}/{}, not /{}; {remove}",
            prefix.display(),
            n.name,
            n.version,
            n.hash,
            id.hash
        ),
        None => bail!(
            "{id}: {} describes no spec; the install there is damaged: {remove}",
            marker.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(json: &str) -> (String, Node) {
        let raw = serde_json::value::RawValue::from_string(json.to_owned()).unwrap();
        let n = Node::parse(&raw).unwrap();
        (n.hash.clone(), n)
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccc";
    const G: &str = "gggggggggggggggggggggggggggggggg";
    const L: &str = "llllllllllllllllllllllllllllllll";

    fn dep(h: &str, types: &str) -> String {
        format!(
            r#"{{"name":"x","hash":"{h}","parameters":{{"deptypes":[{types}],"virtuals":[]}}}}"#
        )
    }

    fn spec(name: &str, h: &str, deps: &[String], extra: &str) -> String {
        format!(
            r#"{{"name":"{name}","version":"1.0","arch":{{"platform":"linux","platform_os":"debian12","target":{{"name":"x86_64_v3","vendor":"GenuineIntel"}}}},"hash":"{h}","dependencies":[{}]{extra}}}"#,
            deps.join(",")
        )
    }

    #[test]
    fn closure_takes_link_and_run_deps_first_and_skips_build_deps_and_externals() {
        let dag: BTreeMap<String, Node> = [
            node(&spec(
                "app",
                A,
                &[
                    dep(B, r#""build","link""#),
                    dep(G, r#""build""#),
                    dep(L, r#""link""#),
                ],
                "",
            )),
            node(&spec("lib", B, &[dep(C, r#""run""#)], "")),
            node(&spec("tool", C, &[], "")),
            node(&spec("gcc", G, &[], "")),
            node(&spec(
                "glibc",
                L,
                &[],
                r#","external":{"path":"/usr","module":null}"#,
            )),
        ]
        .into_iter()
        .collect();
        assert_eq!(runtime_closure(A, &dag).unwrap(), vec![C, B, A]);
        assert_eq!(
            dag[A].rel_prefix(),
            PathBuf::from(format!("linux-x86_64_v3/app-1.0-{A}"))
        );
        let mut broken = dag.clone();
        broken.remove(B);
        assert!(
            runtime_closure(A, &broken)
                .unwrap_err()
                .to_string()
                .contains("not in the signed spec DAG")
        );
    }

    #[test]
    fn nodes_that_would_make_unsafe_paths_are_refused() {
        for bad in [
            spec("../evil", A, &[], ""),
            spec("app", A, &[], "").replace(r#""version":"1.0""#, r#""version":"..""#),
            spec("app", A, &[], "").replace("x86_64_v3", "x/../../y"),
            spec("app", "short", &[], ""),
        ] {
            let raw = serde_json::value::RawValue::from_string(bad.clone()).unwrap();
            assert!(Node::parse(&raw).is_err(), "{bad}");
        }
    }

    #[test]
    fn spec_queries() {
        let q = SpecQuery::parse("demo-app@2.0/resh3sd").unwrap();
        assert_eq!(q.to_string(), "demo-app@2.0/resh3sd");
        assert_eq!(SpecQuery::parse("/abc").unwrap().name, None);
        let q = SpecQuery::parse("slurm@25.11%gcc@13.4.0/abc").unwrap();
        assert_eq!(
            q.compiler,
            Some(CompilerQuery {
                name: "gcc".into(),
                version: Some("13.4.0".into())
            })
        );
        assert_eq!(q.version.as_deref(), Some("25.11"));
        assert_eq!(q.to_string(), "slurm@25.11%gcc@13.4.0/abc");
        let q = SpecQuery::parse("slurm%gcc").unwrap();
        assert_eq!(q.to_string(), "slurm%gcc");
        assert_eq!(q.compiler.unwrap().version, None);
        for bad in [
            "",
            "@1",
            "a/b/c",
            "a b",
            "/",
            "slurm%",
            "slurm%@13",
            "slurm%gcc@",
            "%gcc@13",
            "a%b%c",
        ] {
            assert!(SpecQuery::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_match_themselves_and_longer_versions_at_a_separator() {
        assert!(version_matches("13.4.0", "13.4.0"));
        assert!(version_matches("13", "13.4.0"));
        assert!(version_matches("25-11", "25-11-6-1"));
        assert!(!version_matches("13.4", "13.40.1"));
        assert!(!version_matches("1", "13.4.0"));
        assert!(!version_matches("13.4.0", "13.4"));
    }

    /// A Spack 1.0 node built with `compiler` providing c and cxx (a build dependency),
    /// linking gcc-runtime.
    fn built_with(name: &str, h: &str, compiler: &str, runtime: &str) -> String {
        spec(
            name,
            h,
            &[
                format!(
                    r#"{{"name":"gcc","hash":"{compiler}","parameters":{{"deptypes":["build"],"virtuals":["c","cxx"]}}}}"#
                ),
                format!(
                    r#"{{"name":"gcc-runtime","hash":"{runtime}","parameters":{{"deptypes":["link"],"virtuals":[]}}}}"#
                ),
            ],
            "",
        )
    }

    #[test]
    fn compilers_come_from_language_virtuals_or_the_legacy_field() {
        const G13: &str = "g13g13g13g13g13g13g13g13g13g13g1";
        const G14: &str = "g14g14g14g14g14g14g14g14g14g14g1";
        const R: &str = "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr";
        let versions: BTreeMap<String, String> = [
            (G13.to_owned(), "13.4.0".to_owned()),
            (G14.to_owned(), "14.2.0".to_owned()),
        ]
        .into_iter()
        .collect();
        let (_, a) = node(&built_with("slurm", A, G13, R));
        let (_, b) = node(&built_with("slurm", B, G14, R));
        let q = |s: &str| SpecQuery::parse(s).unwrap();
        assert!(q("slurm%gcc@13.4.0").matches(&a, &versions));
        assert!(!q("slurm%gcc@13.4.0").matches(&b, &versions));
        assert!(q("slurm@1.0%gcc@14").matches(&b, &versions));
        assert!(q("slurm%gcc").matches(&a, &versions));
        assert!(!q("slurm%clang").matches(&a, &versions));
        // gcc-runtime provides no language: not a compiler.
        assert!(!q("slurm%gcc-runtime").matches(&a, &versions));
        // A compiler node whose version is unknown matches only a version-less query.
        assert!(!q("slurm%gcc@13.4.0").matches(&a, &BTreeMap::new()));
        assert_eq!(
            a.describe(&versions),
            format!("slurm@1.0%gcc@13.4.0/{}", &A[..7])
        );
        // Spack < 1.0: the compiler field, as an object or a string.
        let (_, old) = node(&spec(
            "slurm",
            C,
            &[],
            r#","compiler":{"name":"gcc","version":"12.3.0"}"#,
        ));
        assert!(q("slurm%gcc@12.3").matches(&old, &versions));
        assert!(!q("slurm%gcc@13").matches(&old, &versions));
        let (_, old) = node(&spec("slurm", C, &[], r#","compiler":"gcc@12.3.0""#));
        assert!(q("slurm%gcc@12.3.0").matches(&old, &versions));
    }
}
