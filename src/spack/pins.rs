//! The version lists of the pinned builtin packages (`spack-repo/pins/`), and the check that
//! every version the catalog names exists at the pin or is added by `spack-repo`.
//!
//! The lists are data extracted from the spack-packages commit that every
//! `docker/<platform>/Dockerfile` pins, by `scripts/check-matrix --pins` (real Spack loading the real recipes). CI cannot run Spack,
//! so the data is committed and this check runs on it: a catalog that names a GCC the pin lacks
//! fails here instead of after hours on a runner.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::catalog::Catalog;

use super::{SLURM_COMPANIONS, repo, spec_name};

/// One version of a pinned package.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PinnedVersion {
    /// The version, e.g. `14.2.0`.
    pub version: String,
    /// Deprecated versions do not concretize unless `config:deprecated` is set.
    pub deprecated: bool,
}

/// The version lists recorded for one spack-packages commit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Pins {
    /// The spack-packages commit the lists were extracted from.
    pub spack_packages_commit: String,
    /// Its tag, for people.
    pub spack_packages_tag: String,
    /// Versions by builtin package name.
    pub packages: BTreeMap<String, Vec<PinnedVersion>>,
}

impl Pins {
    /// Parses a `spack-repo/pins/spack-packages-<commit>.json` file.
    pub fn parse(text: &str, origin: &str) -> Result<Pins> {
        let pins: Pins =
            serde_json::from_str(text).with_context(|| format!("{origin} is not a pins file"))?;
        if pins.spack_packages_commit.len() != 40
            || !pins
                .spack_packages_commit
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        {
            bail!(
                "{origin}: spack_packages_commit {:?} is not a 40-hex commit",
                pins.spack_packages_commit
            );
        }
        Ok(pins)
    }

    /// `4b8bb351 (v2025.07.0)`: how messages name the pin.
    pub fn name(&self) -> String {
        format!(
            "spack-packages {} ({})",
            &self.spack_packages_commit[..8],
            self.spack_packages_tag
        )
    }

    fn versions(&self, package: &str) -> &[PinnedVersion] {
        self.packages.get(package).map_or(&[], Vec::as_slice)
    }
}

/// The `SPACK_PACKAGES_COMMIT` build argument of the Dockerfile.
pub fn dockerfile_pin(dockerfile: &str) -> Result<String> {
    let pins: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ARG SPACK_PACKAGES_COMMIT="))
        .collect();
    match pins.as_slice() {
        [one] if one.len() == 40 && one.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok((*one).to_owned())
        }
        _ => bail!(
            "a docker/<platform>/Dockerfile must have exactly one `ARG SPACK_PACKAGES_COMMIT=<40 hex>` line; found {pins:?}"
        ),
    }
}

/// The versions a recipe declares with `version("...")`, in order.
pub fn recipe_versions(package_py: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = package_py;
    while let Some(at) = rest.find("version(") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "version(".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
            continue;
        }
        let args = rest.trim_start();
        if let Some(quoted) = args.strip_prefix('"')
            && let Some(end) = quoted.find('"')
        {
            out.push(quoted[..end].to_owned());
        }
    }
    out
}

/// The versions the embedded `slurm_factory` repository declares for `package`.
pub fn repo_versions(package: &str) -> Vec<String> {
    let path = format!("{}/packages/{package}/package.py", repo::REPO_SUBDIR);
    repo::FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, text)| recipe_versions(text))
        .unwrap_or_default()
}

/// Every problem of `catalog` against `pins` and the embedded repository: GCC versions neither
/// the pin (undeprecated) nor `spack-repo` has, Slurm versions `spack-repo`'s recipe lacks, and
/// companion constraints (`pmix@5`, ...) no pinned version satisfies. Empty when all is well.
pub fn check_catalog(catalog: &Catalog, pins: &Pins) -> Vec<String> {
    let mut problems = Vec::new();
    let ours_gcc = repo_versions("gcc");
    for c in &catalog.compilers.versions {
        let v = c.version.to_string();
        if ours_gcc.contains(&v) {
            continue;
        }
        match pins.versions("gcc").iter().find(|p| p.version == v) {
            Some(p) if !p.deprecated => {}
            Some(_) => problems.push(format!(
                "catalog.yaml names GCC {v}, which {} has only as a deprecated version (Spack \
                 refuses to concretize it): pick another release, or add {v} to \
                 spack-repo/spack_repo/slurm_factory/packages/gcc/package.py",
                pins.name()
            )),
            None => problems.push(format!(
                "catalog.yaml names GCC {v}, which {} (pinned in docker/<platform>/Dockerfile) lacks and \
                 spack-repo does not add: add `version(\"{v}\", sha256=...)` with its published \
                 checksum to spack-repo/spack_repo/slurm_factory/packages/gcc/package.py, or move \
                 the pin (then re-run scripts/check-matrix --pins)",
                pins.name()
            )),
        }
    }
    let ours_slurm = repo_versions("slurm");
    for r in &catalog.slurm.releases {
        let v = r.spack.as_str();
        if !ours_slurm.iter().any(|o| o == v) {
            let builtin = if pins.versions("slurm").iter().any(|p| p.version == v) {
                "has it, but builds use slurm_factory.slurm"
            } else {
                "lacks it too"
            };
            problems.push(format!(
                "catalog.yaml builds Slurm {} as {v}, which spack-repo's slurm recipe does not \
                 declare ({} {builtin}): add `version(\"{v}\", sha256=...)` to \
                 spack-repo/spack_repo/slurm_factory/packages/slurm/package.py",
                r.version,
                pins.name()
            ));
        }
    }
    for spec in SLURM_COMPANIONS {
        let name = spec_name(spec);
        let Some(constraint) = spec
            .split_whitespace()
            .next()
            .and_then(|s| s.split_once('@'))
            .map(|(_, c)| c)
        else {
            if pins.versions(&name).is_empty() {
                problems.push(format!(
                    "Slurm companion {name} has no recorded versions at {}",
                    pins.name()
                ));
            }
            continue;
        };
        let ok = pins.versions(&name).iter().any(|p| {
            !p.deprecated
                && (p.version == constraint || p.version.starts_with(&format!("{constraint}.")))
        });
        if !ok {
            problems.push(format!(
                "Slurm companion `{spec}` matches no undeprecated version of {name} at {}",
                pins.name()
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_versions_reads_both_call_forms_and_skips_methods() {
        let py = r#"
    version("15.2.0", sha256="ab")
    version(
        "26-05-1-1",
        sha256="cd",
    )
    def url_for_version(self, version):
        return self.version("x")
"#;
        assert_eq!(recipe_versions(py), ["15.2.0", "26-05-1-1"]);
    }

    #[test]
    fn embedded_repo_adds_gcc_15_2_0() {
        assert_eq!(repo_versions("gcc"), ["15.2.0"]);
        assert!(repo_versions("slurm").contains(&"25-11-6-1".to_owned()));
    }

    #[test]
    fn dockerfile_pin_wants_exactly_one_commit() {
        let c = "4b8bb3514838ce9e8bbc2ca7f98e62dbd7100c63";
        assert_eq!(
            dockerfile_pin(&format!("FROM x\nARG SPACK_PACKAGES_COMMIT={c}\n")).unwrap(),
            c
        );
        assert!(dockerfile_pin("ARG SPACK_PACKAGES_COMMIT=main\n").is_err());
        assert!(
            dockerfile_pin(&format!(
                "ARG SPACK_PACKAGES_COMMIT={c}\nARG SPACK_PACKAGES_COMMIT={c}\n"
            ))
            .is_err()
        );
    }
}
