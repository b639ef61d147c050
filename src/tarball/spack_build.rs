//! What the tarball needs to know about the Spack build that made the view: where its
//! namespace directory is, the install tree and view roots it configured (`env/spack.yaml`),
//! and the concrete specs of its `spack.lock`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The directories of one build (a namespace directory written by `build-slurm`).
#[derive(Debug, Clone)]
pub(crate) struct BuildDir {
    /// `<ns>/view`.
    pub(crate) view: PathBuf,
    /// `<ns>/modules`, when present.
    pub(crate) modules: Option<PathBuf>,
    /// `<ns>/env/spack.lock`, when present.
    pub(crate) spack_lock: Option<PathBuf>,
    /// `<ns>/env/spack.yaml`, when present.
    pub(crate) spack_yaml: Option<PathBuf>,
}

impl BuildDir {
    /// The build under `dir`: `dir` itself when it holds `view/`, else its one namespace that
    /// does: build-slurm's output directory holds one namespace per build under `builds/`
    /// (`<output_dir>/builds/<namespace>/view`); a directory of namespaces is searched too.
    pub(crate) fn find(dir: &Path) -> Result<BuildDir> {
        if dir.join("view").is_dir() {
            return Ok(Self::at(dir));
        }
        let entries = std::fs::read_dir(dir).with_context(|| {
            format!(
                "cannot read the build directory {}; pass build-slurm's output_dir",
                dir.display()
            )
        })?;
        let mut found = Vec::new();
        let mut children: Vec<PathBuf> = Vec::new();
        for e in entries {
            children.push(e?.path());
        }
        let builds = dir.join("builds");
        if builds.is_dir() {
            for e in std::fs::read_dir(&builds)
                .with_context(|| format!("cannot read {}", builds.display()))?
            {
                children.push(e?.path());
            }
        }
        for p in children {
            if p.join("view").is_dir() {
                found.push(p);
            }
        }
        found.sort();
        match found.as_slice() {
            [one] => Ok(Self::at(one)),
            [] => bail!(
                "{} holds no build with a view/ directory; pass build-slurm's output_dir, or --view",
                dir.display()
            ),
            many => bail!(
                "{} holds {} builds ({}); pass the one to pack with --view",
                dir.display(),
                many.len(),
                many.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The build whose view is `view` (`<ns>/view`); siblings are used when present.
    pub(crate) fn of_view(view: &Path) -> BuildDir {
        let ns = view.parent().unwrap_or(Path::new("."));
        BuildDir {
            view: view.to_owned(),
            ..Self::at(ns)
        }
    }

    fn at(ns: &Path) -> BuildDir {
        let some =
            |p: PathBuf, dir: bool| (if dir { p.is_dir() } else { p.is_file() }).then_some(p);
        BuildDir {
            view: ns.join("view"),
            modules: some(ns.join("modules"), true),
            spack_lock: some(ns.join("env/spack.lock"), false),
            spack_yaml: some(ns.join("env/spack.yaml"), false),
        }
    }
}

/// The install tree root and view root `spack.yaml` configures.
pub(crate) fn roots(spack_yaml: &Path) -> Result<(String, Option<String>)> {
    let text = std::fs::read_to_string(spack_yaml)
        .with_context(|| format!("cannot read {}", spack_yaml.display()))?;
    let doc: yaml_serde::Value = yaml_serde::from_str(&text)
        .with_context(|| format!("{} is not valid YAML", spack_yaml.display()))?;
    let spack = &doc["spack"];
    let root = spack["config"]["install_tree"]["root"]
        .as_str()
        .with_context(|| {
            format!(
                "{} sets no spack.config.install_tree.root; pass the build's install tree root with --build-prefix",
                spack_yaml.display()
            )
        })?
        .to_owned();
    let view = match &spack["view"] {
        yaml_serde::Value::Mapping(m) => m
            .values()
            .find_map(|v| v["root"].as_str())
            .map(str::to_owned),
        _ => None,
    };
    Ok((root, view))
}

/// The concrete specs of a `spack.lock`.
#[derive(Debug, Clone)]
pub(crate) struct Lock {
    specs: Vec<(String, String, String)>,
}

impl Lock {
    /// Reads `path` (Spack's JSON lockfile, `concrete_specs` keyed by DAG hash).
    pub(crate) fn read(path: &Path) -> Result<Lock> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let doc: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a Spack lockfile (not JSON)", path.display()))?;
        let specs = doc["concrete_specs"].as_object().with_context(|| {
            format!(
                "{} has no concrete_specs; pass the spack.lock of a concretized environment",
                path.display()
            )
        })?;
        let mut out: Vec<(String, String, String)> = specs
            .iter()
            .filter_map(|(hash, s)| {
                let name = s["name"].as_str()?;
                let version = s["version"].as_str().unwrap_or("?");
                Some((name.to_owned(), version.to_owned(), hash.clone()))
            })
            .collect();
        out.sort();
        Ok(Lock { specs: out })
    }

    /// `name@version/hash` of every concrete spec, sorted.
    pub(crate) fn specs(&self) -> Vec<String> {
        self.specs
            .iter()
            .map(|(n, v, h)| format!("{n}@{v}/{h}"))
            .collect()
    }

    /// The version of package `name`, when exactly one is in the lock and it is a plain
    /// version string.
    pub(crate) fn version_of(&self, name: &str) -> Option<String> {
        let mut it = self.specs.iter().filter(|(n, _, _)| n == name);
        let (_, v, _) = it.next()?;
        (it.next().is_none() && plain_version(v)).then(|| v.clone())
    }
}

/// The version of `name` in Spack's generated Lmod tree (`<dir>/[Core/]<name>/<version>.lua`).
pub(crate) fn module_version(dir: &Path, name: &str) -> Option<String> {
    for sub in [dir.join(name), dir.join("Core").join(name)] {
        let Ok(rd) = std::fs::read_dir(&sub) else {
            continue;
        };
        let mut versions: Vec<String> = rd
            .filter_map(|e| {
                let n = e.ok()?.file_name().into_string().ok()?;
                n.strip_suffix(".lua").map(str::to_owned)
            })
            .filter(|v| plain_version(v))
            .collect();
        versions.sort();
        if versions.len() == 1 {
            return versions.pop();
        }
    }
    None
}

fn plain_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && !v.starts_with('.')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_namespace_of_build_slurms_output_directory() {
        let d = tempfile::tempdir().unwrap();
        // build-slurm writes <output_dir>/builds/<namespace>/{view,env,modules}.
        let ns = d
            .path()
            .join("builds/slurm-25.11-gcc13.4.0-cpu-amd64-abc-1-1");
        std::fs::create_dir_all(ns.join("view/bin")).unwrap();
        std::fs::create_dir_all(d.path().join("cache/source")).unwrap();
        assert_eq!(BuildDir::find(d.path()).unwrap().view, ns.join("view"));
        // The namespace itself, and a directory of namespaces, work too.
        assert_eq!(BuildDir::find(&ns).unwrap().view, ns.join("view"));
        assert_eq!(
            BuildDir::find(&d.path().join("builds")).unwrap().view,
            ns.join("view")
        );
        // Two builds are ambiguous: both are named.
        std::fs::create_dir_all(d.path().join("builds/other/view")).unwrap();
        let e = BuildDir::find(d.path()).unwrap_err().to_string();
        assert!(e.contains("holds 2 builds") && e.contains("other"), "{e}");
    }

    #[test]
    fn reads_lock_and_yaml() {
        let d = tempfile::tempdir().unwrap();
        let lock = d.path().join("spack.lock");
        std::fs::write(
            &lock,
            r#"{"_meta":{"lockfile-version":6},"roots":[],"concrete_specs":{
              "aaaa":{"name":"slurm","version":"25-11-6-1"},
              "bbbb":{"name":"openmpi","version":"5.0.8"}}}"#,
        )
        .unwrap();
        let l = Lock::read(&lock).unwrap();
        assert_eq!(l.specs(), ["openmpi@5.0.8/bbbb", "slurm@25-11-6-1/aaaa"]);
        assert_eq!(l.version_of("openmpi").as_deref(), Some("5.0.8"));
        assert_eq!(l.version_of("hdf5"), None);
        let y = d.path().join("spack.yaml");
        std::fs::write(
            &y,
            "spack:\n  config:\n    install_tree:\n      root: /slurm-factory/ns/install\n      padded_length: 128\n  view:\n    default:\n      root: /slurm-factory/ns/view\n",
        )
        .unwrap();
        assert_eq!(
            roots(&y).unwrap(),
            (
                "/slurm-factory/ns/install".into(),
                Some("/slurm-factory/ns/view".into())
            )
        );
        std::fs::write(&lock, "not json").unwrap();
        assert!(Lock::read(&lock).is_err());
    }
}
