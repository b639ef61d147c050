//! The input fingerprint of one leg: a stable SHA-256 of everything that can change what the leg
//! builds, with each ingredient and its own hash, so a plan can tell which ingredient changed.
//!
//! Ingredients (each hashed from a canonical form, so formatting-only edits change nothing):
//! - `tool`: the slurm-factory version (its generators and packers);
//! - `leg`: the cell as the catalog resolves it (kind, GCC, Slurm release and its Spack version,
//!   GPU, architecture and Spack target), as canonical JSON of the typed values, never the
//!   catalog's text;
//! - `environment`: the Spack environment the leg runs (the generated `spack.yaml`, parsed and
//!   re-serialized as canonical JSON, with a fixed namespace in place of the run's);
//! - `spack-repo`: every file of the `slurm_factory` package repository (path and bytes) that
//!   can change the leg's DAG: a compiler leg leaves out the recipes only Slurm's DAG holds
//!   ([`SLURM_ONLY_PACKAGES`]), so a Slurm recipe edit rebuilds the Slurm and tarball legs and
//!   no toolchain;
//! - `docker`: every file of the build image's context (the Dockerfile pins the base image by
//!   digest and Spack and spack-packages by commit, shown as their own ingredients too);
//! - `toolchain` (Slurm and tarball legs): the fingerprint of the compiler leg whose buildcache
//!   the leg installs its GCC from (same GCC, architecture and platform, computed from the same
//!   sources), so a toolchain rebuilt from other inputs rebuilds the legs built with it.
//!
//! The workflows and the rest of the catalog (buckets, timeouts, runner labels) are not
//! ingredients: they change where and how a leg runs, not what it builds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::spack::{CompilerJob, Job, Layout, RunId};

/// One ingredient: what it is, briefly, and its SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ingredient {
    /// A short human description (a version, a file count, a commit).
    pub value: String,
    /// SHA-256 of the ingredient's canonical bytes, hex.
    pub sha256: String,
}

/// The fingerprint of one leg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fingerprint {
    /// The leg's label (`slurm-25.11-gcc13.4.0-cpu-amd64`, `gcc-13.4.0-amd64`).
    pub leg: String,
    /// `sha256:<hex>` over the ingredients' names and hashes.
    pub fingerprint: String,
    /// Every ingredient by name.
    pub ingredients: BTreeMap<&'static str, Ingredient>,
}

/// The files an ingredient is made of: (path relative to its root, bytes).
pub type Files = Vec<(String, Vec<u8>)>;

/// Where the package repository and the image context come from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// A checkout: `<root>/spack-repo` and `<root>/docker` (what a plan job sees); `None`: the
    /// copies embedded in this binary (what its builds use).
    checkout: Option<PathBuf>,
    /// The image context a build uses instead of `docker/<platform>/` (`--docker-context`,
    /// `SLURM_FACTORY_DOCKER_CONTEXT`): the `docker` ingredient is then what that build packs
    /// ([`crate::docker::context::context_files`]), so a stamp vouches for the image used.
    docker_context: Option<PathBuf>,
}

impl Sources {
    /// The copies embedded in this binary.
    pub fn embedded() -> Sources {
        Sources::default()
    }

    /// A checkout at `root`: `<root>/spack-repo` and `<root>/docker`.
    pub fn checkout(root: impl Into<PathBuf>) -> Sources {
        Sources {
            checkout: Some(root.into()),
            docker_context: None,
        }
    }

    /// These sources with the image context `dir` in place of `docker/<platform>/` (`None`
    /// leaves them as they are).
    pub fn with_docker_context(mut self, dir: Option<PathBuf>) -> Sources {
        if dir.is_some() {
            self.docker_context = dir;
        }
        self
    }

    fn spack_repo(&self) -> Result<Files> {
        match &self.checkout {
            None => {
                let mut files: Files = crate::spack::repo::FILES
                    .iter()
                    .map(|(p, t)| ((*p).to_owned(), t.as_bytes().to_vec()))
                    .collect();
                files.sort();
                Ok(files)
            }
            Some(root) => files_under(
                &root
                    .join("spack-repo")
                    .join(crate::spack::repo::REPO_SUBDIR),
            )
            .map(|f| {
                f.into_iter()
                    .map(|(p, b)| (format!("{}/{p}", crate::spack::repo::REPO_SUBDIR), b))
                    .collect()
            }),
        }
    }

    /// The image context of `platform`: the custom context, else `docker/<platform>/`.
    fn docker(&self, platform: &crate::catalog::PlatformName) -> Result<Files> {
        if let Some(dir) = &self.docker_context {
            return Ok(crate::docker::context::context_files(dir, platform)?
                .into_iter()
                .map(|(p, b, _)| (p.to_string_lossy().into_owned(), b))
                .collect());
        }
        match &self.checkout {
            None => {
                let d =
                    crate::docker::context::embedded_dockerfile(platform).with_context(|| {
                        format!("this binary has no Dockerfile for platform {platform}")
                    })?;
                Ok(vec![("Dockerfile".to_owned(), d.as_bytes().to_vec())])
            }
            Some(root) => files_under(&root.join("docker").join(&platform.0)),
        }
    }
}

/// Packages of the repository that only a Slurm DAG holds (Slurm and its own dependencies):
/// not part of a compiler leg's `spack-repo` ingredient.
pub const SLURM_ONLY_PACKAGES: &[&str] = &["slurm", "s2n_tls"];

/// Whether the repository file `path` (relative to the repository root's parent,
/// `spack_repo/slurm_factory/...`) can change a leg of `job`.
fn in_dag(job: &Job, path: &str) -> bool {
    match job {
        Job::Slurm(_) => true,
        Job::Compiler(_) => !SLURM_ONLY_PACKAGES.iter().any(|p| {
            path.starts_with(&format!(
                "{}/packages/{p}/",
                crate::spack::repo::REPO_SUBDIR
            ))
        }),
    }
}

/// Every regular file under `dir` (sorted, relative paths with `/`), skipping Python bytecode.
fn files_under(dir: &Path) -> Result<Files> {
    fn walk(root: &Path, dir: &Path, out: &mut Files) -> Result<()> {
        let rd =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for e in rd {
            let e = e?;
            let p = e.path();
            let ft = e.file_type()?;
            let name = e.file_name();
            if name == "__pycache__" || p.extension().is_some_and(|x| x == "pyc") {
                continue;
            }
            if ft.is_dir() {
                walk(root, &p, out)?;
            } else if ft.is_file() {
                let rel = p.strip_prefix(root).unwrap_or(&p);
                let rel = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((
                    rel,
                    std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?,
                ));
            } else {
                bail!(
                    "{} is neither a file nor a directory; a fingerprint covers regular files only",
                    p.display()
                );
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hash of a file set: each file as `<path>\0<len>\0<bytes>`, in path order.
fn hash_files(files: &Files) -> String {
    let mut h = Sha256::new();
    for (p, b) in files {
        h.update(p.as_bytes());
        h.update([0]);
        h.update(b.len().to_string().as_bytes());
        h.update([0]);
        h.update(b);
    }
    hex::encode(h.finalize())
}

/// The `ARG <name>=<value>` of a Dockerfile.
fn dockerfile_arg(dockerfile: &str, name: &str) -> Option<String> {
    dockerfile.lines().find_map(|l| {
        l.trim()
            .strip_prefix("ARG ")
            .and_then(|a| a.strip_prefix(name))
            .and_then(|a| a.strip_prefix('='))
            .map(str::to_owned)
    })
}

/// The leg as the catalog resolves it, as canonical JSON.
fn leg_json(job: &Job, tarball: bool) -> serde_json::Value {
    match job {
        Job::Compiler(c) => serde_json::json!({
            "kind": "compiler",
            "gcc": c.gcc.to_string(),
            "arch": c.arch.to_string(),
            "spack_target": c.spack_target,
            "platform": c.platform.name.to_string(),
            "image": c.platform.image_ref(),
        }),
        Job::Slurm(s) => serde_json::json!({
            "kind": if tarball { "tarball" } else { "slurm" },
            "gcc": s.gcc.to_string(),
            "slurm": s.slurm.version.to_string(),
            "slurm_spack": s.slurm.spack.to_string(),
            "gpu": s.gpu,
            "arch": s.arch.to_string(),
            "spack_target": s.spack_target,
            "platform": s.platform.name.to_string(),
            "image": s.platform.image_ref(),
        }),
    }
}

/// Computes the fingerprint of `job` (a tarball leg when `tarball`).
pub fn of(job: &Job, tarball: bool, sources: &Sources) -> Result<Fingerprint> {
    let mut ingredients = BTreeMap::new();
    let tool = format!("slurm-factory {}", env!("CARGO_PKG_VERSION"));
    ingredients.insert(
        "tool",
        Ingredient {
            sha256: sha256_hex(tool.as_bytes()),
            value: tool,
        },
    );
    let leg = leg_json(job, tarball);
    let leg_text = serde_json::to_string(&leg)?;
    ingredients.insert(
        "leg",
        Ingredient {
            sha256: sha256_hex(leg_text.as_bytes()),
            value: leg_text,
        },
    );
    // The environment with a fixed namespace: the run id is not an input.
    let layout = Layout::new(
        Path::new("/fingerprint"),
        job.namespace(&RunId::new("fingerprint")?),
    )?;
    let yaml = job.environment(&layout).render("")?;
    let parsed: serde_json::Value =
        yaml_serde::from_str(&yaml).context("cannot read back the generated spack.yaml")?;
    let canonical = serde_json::to_string(&parsed)?;
    ingredients.insert(
        "environment",
        Ingredient {
            value: format!("spack.yaml, {} lines", yaml.lines().count()),
            sha256: sha256_hex(canonical.as_bytes()),
        },
    );
    let repo: Files = sources
        .spack_repo()?
        .into_iter()
        .filter(|(p, _)| in_dag(job, p))
        .collect();
    ingredients.insert(
        "spack-repo",
        Ingredient {
            value: format!("{} files", repo.len()),
            sha256: hash_files(&repo),
        },
    );
    let docker = sources.docker(&job.platform().name)?;
    let dockerfile = docker
        .iter()
        .find(|(p, _)| p == "Dockerfile")
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .context("the image context has no Dockerfile")?;
    ingredients.insert(
        "docker",
        Ingredient {
            value: match &sources.docker_context {
                Some(d) => format!("{} files of --docker-context {}", docker.len(), d.display()),
                None => format!("{} files", docker.len()),
            },
            sha256: hash_files(&docker),
        },
    );
    for (name, arg) in [
        ("spack", "SPACK_COMMIT"),
        ("spack-packages", "SPACK_PACKAGES_COMMIT"),
    ] {
        // A custom context may install Spack its own way: its files are the `docker`
        // ingredient either way.
        let v = match dockerfile_arg(&dockerfile, arg) {
            Some(v) => v,
            None if sources.docker_context.is_some() => format!("(no ARG {arg} in the context)"),
            None => bail!("the Dockerfile has no `ARG {arg}=<commit>`"),
        };
        ingredients.insert(
            name,
            Ingredient {
                sha256: sha256_hex(v.as_bytes()),
                value: v,
            },
        );
    }
    if let Job::Slurm(s) = job {
        let toolchain = of(
            &Job::Compiler(CompilerJob {
                gcc: s.gcc.clone(),
                arch: s.arch.clone(),
                platform: s.platform.clone(),
                spack_target: s.spack_target.clone(),
            }),
            false,
            sources,
        )
        .context("cannot fingerprint the leg's toolchain (its compiler leg)")?;
        let sha256 = toolchain
            .fingerprint
            .strip_prefix("sha256:")
            .unwrap_or(&toolchain.fingerprint)
            .to_owned();
        ingredients.insert(
            "toolchain",
            Ingredient {
                value: format!("{} {}", toolchain.leg, toolchain.fingerprint),
                sha256,
            },
        );
    }
    let mut h = Sha256::new();
    for (name, i) in &ingredients {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(i.sha256.as_bytes());
        h.update(b"\n");
    }
    let label = match (job, tarball) {
        (Job::Slurm(_), true) => format!("{}-tarball", job.label()),
        _ => job.label(),
    };
    Ok(Fingerprint {
        leg: label,
        fingerprint: format!("sha256:{}", hex::encode(h.finalize())),
        ingredients,
    })
}

impl Fingerprint {
    /// The text form: the fingerprint, then one line per ingredient.
    pub fn text(&self) -> String {
        let mut s = format!("{}  {}\n", self.leg, self.fingerprint);
        for (name, i) in &self.ingredients {
            let value: String = if i.value.chars().count() > 60 {
                i.value.chars().take(57).chain("...".chars()).collect()
            } else {
                i.value.clone()
            };
            s.push_str(&format!(
                "  {name:<15} {value:<60} {}\n",
                &i.sha256[..16.min(i.sha256.len())]
            ));
        }
        s
    }

    /// The ingredients whose hash differs from `other`'s (or that only one has).
    pub fn changed_from(&self, other: &Fingerprint) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self
            .ingredients
            .iter()
            .filter(|(n, i)| other.ingredients.get(*n).map(|o| &o.sha256) != Some(&i.sha256))
            .map(|(n, _)| *n)
            .collect();
        for n in other.ingredients.keys() {
            if !self.ingredients.contains_key(n) {
                names.push(n);
            }
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::spack::SlurmJobRequest;

    fn slurm_job(catalog: &Catalog, gpu: bool) -> Job {
        slurm_job_on(catalog, gpu, None)
    }

    fn slurm_job_on(catalog: &Catalog, gpu: bool, platform: Option<&str>) -> Job {
        SlurmJobRequest {
            slurm: "25.11".parse().unwrap(),
            gcc: "13.4.0".parse().unwrap(),
            gpu,
            arch: catalog.architectures.default.clone(),
            platform: platform.map(|p| crate::catalog::PlatformName(p.into())),
            compiler_mirror: None,
            slurm_mirror: None,
        }
        .resolve(catalog)
        .unwrap()
    }

    fn c_default() -> crate::catalog::PlatformName {
        Catalog::embedded().platforms.default
    }

    #[test]
    fn stable_and_sensitive_to_what_changes_the_bits() {
        let c = Catalog::embedded();
        let a = of(&slurm_job(&c, false), false, &Sources::embedded()).unwrap();
        let b = of(&slurm_job(&c, false), false, &Sources::embedded()).unwrap();
        assert_eq!(a, b, "the same leg has the same fingerprint");
        assert!(a.fingerprint.starts_with("sha256:") && a.fingerprint.len() == 71);
        let gpu = of(&slurm_job(&c, true), false, &Sources::embedded()).unwrap();
        assert_ne!(a.fingerprint, gpu.fingerprint);
        assert_eq!(gpu.changed_from(&a), ["environment", "leg"]);
        let tarball = of(&slurm_job(&c, false), true, &Sources::embedded()).unwrap();
        assert_eq!(tarball.changed_from(&a), ["leg"]);
        // Another platform: another image (docker), leg and namespace.
        let el9 = of(
            &slurm_job_on(&c, false, Some("el9")),
            false,
            &Sources::embedded(),
        )
        .unwrap();
        assert_eq!(
            el9.changed_from(&a),
            ["docker", "environment", "leg", "toolchain"]
        );
        assert!(
            a.ingredients["leg"].value.contains("\"platform\":\"el8\""),
            "{}",
            a.text()
        );
        for name in [
            "tool",
            "leg",
            "environment",
            "spack-repo",
            "docker",
            "spack",
            "spack-packages",
            "toolchain",
        ] {
            assert!(a.ingredients.contains_key(name), "{name}");
        }
        // The toolchain is the compiler leg the Slurm leg installs its GCC from: its whole
        // fingerprint, so any change to that leg (its environment too) changes this one.
        let gcc = Job::compiler_on(
            &c,
            "13.4.0".parse().unwrap(),
            c.architectures.default.clone(),
            None,
        )
        .unwrap();
        let toolchain = of(&gcc, false, &Sources::embedded()).unwrap();
        assert_eq!(
            format!("sha256:{}", a.ingredients["toolchain"].sha256),
            toolchain.fingerprint
        );
        assert!(
            a.ingredients["toolchain"]
                .value
                .starts_with("gcc-13.4.0-amd64-el8 sha256:"),
            "{}",
            a.text()
        );
        assert!(!toolchain.ingredients.contains_key("toolchain"));
        assert!(a.text().contains("spack-repo"), "{}", a.text());
    }

    #[test]
    fn a_catalog_reformatted_gives_the_same_fingerprint_and_a_version_change_does_not() {
        let text = include_str!("../catalog.yaml");
        let base = of(
            &slurm_job(&Catalog::parse(text, "catalog").unwrap(), false),
            false,
            &Sources::embedded(),
        )
        .unwrap();
        // Whitespace, comments and flow style: the same typed values.
        let reformatted = format!(
            "# reformatted\n{}",
            text.replace(
                "- { version: \"25.11\", spack: \"25-11-6-1\" }",
                "-   version:   \"25.11\"\n        spack: \"25-11-6-1\"   # moved"
            )
        );
        assert_ne!(reformatted, text);
        let same = of(
            &slurm_job(&Catalog::parse(&reformatted, "catalog").unwrap(), false),
            false,
            &Sources::embedded(),
        )
        .unwrap();
        assert_eq!(base.fingerprint, same.fingerprint);
        // A new patch release of 25.11 changes the leg and its environment.
        let bumped = text.replace("spack: \"25-11-6-1\"", "spack: \"25-11-7-1\"");
        let c = Catalog::parse(&bumped, "catalog").unwrap();
        let changed = of(&slurm_job(&c, false), false, &Sources::embedded()).unwrap();
        assert_ne!(base.fingerprint, changed.fingerprint);
        assert!(changed.changed_from(&base).contains(&"leg"));
    }

    #[test]
    fn a_recipe_change_in_a_checkout_changes_the_legs_whose_dag_holds_it() {
        let root = tempfile::tempdir().unwrap();
        let repo = root
            .path()
            .join("spack-repo")
            .join(crate::spack::repo::REPO_SUBDIR);
        crate::spack::repo::write_to(&root.path().join("spack-repo")).unwrap();
        std::fs::create_dir_all(root.path().join("docker/el8")).unwrap();
        std::fs::write(
            root.path().join("docker/el8/Dockerfile"),
            crate::docker::context::embedded_dockerfile(&c_default()).unwrap(),
        )
        .unwrap();
        let c = Catalog::embedded();
        let job = slurm_job(&c, false);
        let embedded = of(&job, false, &Sources::embedded()).unwrap();
        let checkout = Sources::checkout(root.path().to_owned());
        let same = of(&job, false, &checkout).unwrap();
        assert_eq!(
            embedded.fingerprint,
            same.fingerprint,
            "{}\n{}",
            embedded.text(),
            same.text()
        );
        let recipe = repo.join("packages/slurm/package.py");
        let mut text = std::fs::read_to_string(&recipe).unwrap();
        text.push_str("\n# a changed recipe\n");
        std::fs::write(&recipe, text).unwrap();
        let changed = of(&job, false, &checkout).unwrap();
        assert_eq!(changed.changed_from(&same), ["spack-repo"]);
        // A Slurm recipe is not in a toolchain's DAG: the compiler leg keeps its fingerprint;
        // the gcc recipe is in both.
        let gcc = Job::compiler_on(
            &c,
            "13.4.0".parse().unwrap(),
            c.architectures.default.clone(),
            None,
        )
        .unwrap();
        let toolchain = of(&gcc, false, &Sources::embedded()).unwrap();
        assert_eq!(of(&gcc, false, &checkout).unwrap(), toolchain);
        let recipe = repo.join("packages/gcc/package.py");
        let mut text = std::fs::read_to_string(&recipe).unwrap();
        text.push_str("\n# a changed recipe\n");
        std::fs::write(&recipe, text).unwrap();
        assert_eq!(
            of(&gcc, false, &checkout).unwrap().changed_from(&toolchain),
            ["spack-repo"]
        );
        // The Slurm leg sees the recipe in its own DAG and in its toolchain's.
        assert_eq!(
            of(&job, false, &checkout).unwrap().changed_from(&changed),
            ["spack-repo", "toolchain"]
        );
        let tarball = of(&job, true, &checkout).unwrap();
        assert!(
            tarball
                .changed_from(&of(&job, true, &Sources::embedded()).unwrap())
                .contains(&"toolchain")
        );
    }

    #[test]
    fn a_custom_image_context_is_the_docker_ingredient_as_it_is() {
        let c = Catalog::embedded();
        let gcc = Job::compiler_on(
            &c,
            "13.4.0".parse().unwrap(),
            c.architectures.default.clone(),
            None,
        )
        .unwrap();
        let embedded = of(&gcc, false, &Sources::embedded()).unwrap();
        // A context holding just the embedded Dockerfile is the embedded context.
        let ctx = tempfile::tempdir().unwrap();
        let dockerfile = crate::docker::context::embedded_dockerfile(&c_default()).unwrap();
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
        let custom = Sources::embedded().with_docker_context(Some(ctx.path().to_owned()));
        assert_eq!(
            of(&gcc, false, &custom).unwrap().fingerprint,
            embedded.fingerprint
        );
        // One more file (a site CA) is another image: `docker` changes, for the Slurm legs
        // their toolchain's too, since it builds from the same context.
        std::fs::write(ctx.path().join("site-ca.pem"), "a site CA\n").unwrap();
        let with_ca = of(&gcc, false, &custom).unwrap();
        assert_eq!(with_ca.changed_from(&embedded), ["docker"]);
        assert!(
            with_ca.ingredients["docker"]
                .value
                .starts_with("2 files of --docker-context "),
            "{}",
            with_ca.text()
        );
        let slurm = slurm_job(&c, false);
        assert_eq!(
            of(&slurm, false, &custom)
                .unwrap()
                .changed_from(&of(&slurm, false, &Sources::embedded()).unwrap()),
            ["docker", "toolchain"]
        );
        // Laid out like docker/: the platform's directory is the context, as the build picks.
        let laid_out = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(laid_out.path().join("el8")).unwrap();
        std::fs::write(laid_out.path().join("el8/Dockerfile"), dockerfile).unwrap();
        std::fs::write(laid_out.path().join("README"), "not in the el8 context").unwrap();
        let laid_out = Sources::embedded().with_docker_context(Some(laid_out.path().to_owned()));
        assert_eq!(
            of(&gcc, false, &laid_out).unwrap().fingerprint,
            embedded.fingerprint
        );
        // A context that installs Spack its own way (no pinned commits) is still fingerprinted.
        std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        let own = of(&gcc, false, &custom).unwrap();
        assert_eq!(
            own.changed_from(&embedded),
            ["docker", "spack", "spack-packages"]
        );
        assert_eq!(
            own.ingredients["spack"].value,
            "(no ARG SPACK_COMMIT in the context)"
        );
        // A context without a Dockerfile is refused, as the build refuses it.
        std::fs::remove_file(ctx.path().join("Dockerfile")).unwrap();
        let e = of(&gcc, false, &custom).unwrap_err();
        assert!(format!("{e:#}").contains("there is no Dockerfile"), "{e:#}");
    }

    #[test]
    fn workflows_src_is_no_ingredient_so_reformatting_it_changes_nothing() {
        // A checkout with spack-repo/, docker/ and workflows-src/, as the plan job sees it.
        let root = tempfile::tempdir().unwrap();
        crate::spack::repo::write_to(&root.path().join("spack-repo")).unwrap();
        std::fs::create_dir_all(root.path().join("docker/el8")).unwrap();
        std::fs::write(
            root.path().join("docker/el8/Dockerfile"),
            crate::docker::context::embedded_dockerfile(&c_default()).unwrap(),
        )
        .unwrap();
        let wf = root.path().join("workflows-src/workflows");
        std::fs::create_dir_all(&wf).unwrap();
        let src = include_str!("../workflows-src/workflows/build-and-publish-slurm-all.yaml");
        std::fs::write(wf.join("build-and-publish-slurm-all.yaml"), src).unwrap();
        let c = Catalog::embedded();
        let checkout = Sources::checkout(root.path().to_owned());
        let base = of(&slurm_job(&c, false), false, &checkout).unwrap();
        // Whitespace only: trailing spaces, blank lines, a reindented comment.
        let reformatted = format!(
            "\n# comment\n{}\n\n",
            src.replace("\njobs:\n", "\njobs:   \n\n")
        );
        assert_ne!(reformatted, src);
        std::fs::write(wf.join("build-and-publish-slurm-all.yaml"), reformatted).unwrap();
        assert_eq!(of(&slurm_job(&c, false), false, &checkout).unwrap(), base);
        // The workflows say where and how a leg runs, not what it builds: the build of a
        // leg is pinned by the catalog (a version change there changes the `leg` ingredient,
        // tested above), the recipes and the image.
        std::fs::write(
            wf.join("build-and-publish-slurm-all.yaml"),
            src.replace("timeout_minutes: 30", "timeout_minutes: 45"),
        )
        .unwrap();
        assert_eq!(of(&slurm_job(&c, false), false, &checkout).unwrap(), base);
    }
}
